"""A Python client of Token Authority: Issue, Validate, Refresh, Revoke, then
the error a revoked session answers, read from its google.rpc.ErrorInfo.

The stubs are generated at start into a temporary folder from the repository's
protos (grpcio-tools); the google.rpc messages come from googleapis-common-protos.

    python examples/python/client.py [--address 127.0.0.1:50051] [--key tak_...]

TA_ADDRESS and TA_BEARER_KEY are the defaults of --address and --key. Without
a key no authorization header is sent (a server without callers). Exits 1 on
any answer other than the expected one.
"""

import argparse
import base64
import importlib
import json
import os
import pathlib
import sys
import tempfile

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"
PROTOS = ["token_authority/v1/token_authority.proto"]


class Unexpected(Exception):
    """An answer the walkthrough did not expect."""


def generate_stubs(out_dir):
    """Compiles our protos into `out_dir` and returns (messages, services)."""
    well_known = pathlib.Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *PROTOS,
        ]
    )
    if code != 0:
        raise Unexpected(f"protoc failed ({code})")
    sys.path.insert(0, str(out_dir))
    messages = importlib.import_module("token_authority.v1.token_authority_pb2")
    services = importlib.import_module("token_authority.v1.token_authority_pb2_grpc")
    return messages, services


def jwt_claims(token):
    """The payload of a JWT, unverified: what a resource server would read."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def error_info(error):
    """The google.rpc.ErrorInfo in an error's grpc-status-details-bin trailer."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info
    raise Unexpected(f"no ErrorInfo in {error.code().name}: {error.details()}")


def reason_of(error):
    """The ErrorInfo reason of an error, or what stands in for it."""
    try:
        return error_info(error).reason
    except Unexpected:
        return "no ErrorInfo"


def expect(condition, what):
    if not condition:
        raise Unexpected(what)


def walkthrough(pb, stub, metadata, tenant, subject):
    def call(name, request):
        print(f"> {name}")
        return getattr(stub, name)(request, metadata=metadata, timeout=10)

    issued = call(
        "Issue",
        pb.IssueRequest(
            tenant_id=tenant,
            subject=subject,
            audience="api",
            scopes=["read", "write"],
            device=pb.Device(name="python example"),
        ),
    ).tokens
    claims = jwt_claims(issued.access_token)
    print(f"  session {issued.session_id}")
    print(f"  access token claims: sub={claims['sub']} client_id={claims.get('client_id')} jti={claims['jti']}")
    expect(claims["sub"] == subject, f"sub is {claims['sub']}")

    validated = call("Validate", pb.ValidateRequest(access_token=issued.access_token, expected_audience="api"))
    print(f"  valid={validated.valid} subject={validated.claims.subject} client_id={validated.claims.client_id}")
    expect(validated.valid and validated.claims.session_id == issued.session_id, "Validate")

    refreshed = call("Refresh", pb.RefreshRequest(refresh_token=issued.refresh_token)).tokens
    print(f"  same session: {refreshed.session_id == issued.session_id}; new refresh token: {refreshed.refresh_token != issued.refresh_token}")
    expect(refreshed.session_id == issued.session_id, "Refresh changed the session")
    expect(jwt_claims(refreshed.access_token)["jti"] != claims["jti"], "Refresh kept the jti")

    revoked = call(
        "Revoke",
        pb.RevokeRequest(tenant_id=tenant, refresh_token=refreshed.refresh_token, reason="python example"),
    )
    print(f"  revoked sessions: {revoked.revoked_sessions}")
    expect(revoked.revoked_sessions == 1, "Revoke")

    try:
        call("Refresh", pb.RefreshRequest(refresh_token=refreshed.refresh_token))
    except grpc.RpcError as error:
        info = error_info(error)
        print(f"  error: {error.code().name}: {error.details()}")
        print(f"  ErrorInfo: reason={info.reason} domain={info.domain}")
        expect(error.code() == grpc.StatusCode.UNAUTHENTICATED, f"code {error.code().name}")
        expect(info.reason == "SESSION_REVOKED" and info.domain == "token-authority", "ErrorInfo")
    else:
        raise Unexpected("Refresh of a revoked session succeeded")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("TA_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--key", default=os.environ.get("TA_BEARER_KEY", ""), help="bearer key (tak_...)")
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--subject", default="alice")
    args = parser.parse_args()
    metadata = [("authorization", f"Bearer {args.key}")] if args.key else []
    with tempfile.TemporaryDirectory() as out_dir:
        pb, services = generate_stubs(out_dir)
        with grpc.insecure_channel(args.address) as channel:
            stub = services.TokenAuthorityStub(channel)
            try:
                walkthrough(pb, stub, metadata, args.tenant, args.subject)
            except grpc.RpcError as error:
                print(f"unexpected error: {error.code().name}: {error.details()} ({reason_of(error)})", file=sys.stderr)
                return 1
            except Unexpected as problem:
                print(f"unexpected answer: {problem}", file=sys.stderr)
                return 1
    print("ok: Issue, Validate, Refresh, Revoke, and SESSION_REVOKED read from ErrorInfo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
