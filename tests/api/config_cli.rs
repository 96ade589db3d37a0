//! `config check`, `config defaults` and `--version`, through the real binary.
use std::process::{Command, Output};

fn binary(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_token-authority"))
        .args(args)
        .current_dir(dir)
        .env_remove("TOKEN_AUTHORITY_CONFIG")
        .output()
        .expect("run token-authority")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_defaults_print_a_file_that_config_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = binary(&["config", "defaults"], dir.path());
    assert!(defaults.status.success(), "{}", text(&defaults.stderr));
    let toml = text(&defaults.stdout);
    for line in [
        "[database]",
        "publish_ahead = \"20m\"",
        "[health]",
        "# public_url =",
    ] {
        assert!(toml.contains(line), "{line} missing:\n{toml}");
    }
    std::fs::write(dir.path().join("defaults.toml"), &toml).unwrap();
    let check = binary(
        &["--config", "defaults.toml", "config", "check"],
        dir.path(),
    );
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("configuration is valid"));
    // Nothing was opened or created: the check touches no database.
    assert!(!dir.path().join("token-authority.db").exists());
}

#[test]
fn config_check_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        r#"
listen = "0.0.0.0:50051"
[tokens]
access_ttl = "0s"
issuer = "token-authority"
[http]
listen = "127.0.0.1:8080"
"#,
    )
    .unwrap();
    let check = binary(&["--config", "bad.toml", "config", "check"], dir.path());
    assert!(!check.status.success());
    let errors = text(&check.stderr);
    for problem in [
        "tokens.access_ttl must be greater than zero",
        "tokens.issuer (\"token-authority\") must be an http(s) URL",
        "refusing to listen on 0.0.0.0:50051 without authentication",
        "3 problem(s)",
    ] {
        assert!(errors.contains(problem), "{problem} missing:\n{errors}");
    }

    std::fs::write(
        dir.path().join("typo.toml"),
        "[tokens]\nacess_ttl = \"1m\"\n",
    )
    .unwrap();
    let check = binary(&["--config", "typo.toml", "config", "check"], dir.path());
    assert!(!check.status.success());
    assert!(
        text(&check.stderr).contains("unknown field: found `acess_ttl`"),
        "{}",
        text(&check.stderr)
    );

    let missing = binary(&["--config", "nope.toml", "config", "check"], dir.path());
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("nope.toml does not exist"));
}

#[test]
fn version_names_the_git_revision() {
    let dir = tempfile::tempdir().unwrap();
    let version = text(&binary(&["--version"], dir.path()).stdout);
    assert!(
        version.starts_with(&format!("token-authority {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned());
    match head {
        Some(head) => assert!(
            version.contains(&format!("({head})")),
            "{version} vs {head}"
        ),
        None => assert!(version.contains("(unknown)"), "{version}"),
    }
}
