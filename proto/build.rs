//! Compiles the gRPC contract under `proto/` with protox (pure Rust, no
//! system `protoc`), and keeps descriptor sets for server reflection: ours,
//! the google.rpc error model our statuses carry, and Envoy's
//! external-authorization API (the Rust types of both come from crates,
//! `tonic-types` and `envoy-types`; their vendored protos are only for
//! reflection, and for clients in other languages).
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=token_authority");
    println!("cargo:rerun-if-changed=vendor");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let ours = protox::compile(
        [
            "token_authority/v1/token_authority.proto",
            "token_authority/v1/admin.proto",
        ],
        ["."],
    )?;
    std::fs::write(
        out_dir.join("token_authority_descriptor.bin"),
        ours.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(ours)?;

    let errors = protox::compile(
        ["google/rpc/status.proto", "google/rpc/error_details.proto"],
        ["vendor"],
    )?;
    std::fs::write(
        out_dir.join("google_rpc_descriptor.bin"),
        errors.encode_to_vec(),
    )?;

    let envoy = protox::compile(["envoy/service/auth/v3/external_auth.proto"], ["vendor"])?;
    std::fs::write(
        out_dir.join("envoy_authz_descriptor.bin"),
        envoy.encode_to_vec(),
    )?;
    Ok(())
}
