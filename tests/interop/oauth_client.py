"""An OAuth 2.0 client nobody here wrote (Authlib's requests client) against
our HTTP endpoints: RFC 8414 metadata, the refresh_token grant with both
client authentication methods, reuse detection, and RFC 7009 revocation.
Prints one JSON line per step; the Rust test (tests/api/oauth_http.rs)
asserts them.

usage: oauth_client.py BASE_URL CLIENT_ID CLIENT_SECRET REFRESH_A REFRESH_B ACCESS_C
"""
import json
import os
import sys

# Our test server speaks plain HTTP on loopback; Authlib insists on HTTPS
# unless told otherwise.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import authlib  # noqa: E402
import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402

base, client_id, secret, refresh_a, refresh_b, access_c = sys.argv[1:7]


def out(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def session(refresh_token, method="client_secret_basic", client_secret=secret):
    token = {"refresh_token": refresh_token, "access_token": "", "token_type": "Bearer"}
    return OAuth2Session(
        client_id,
        client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        token=token,
    )


def refresh_error(client, endpoint):
    try:
        client.refresh_token(endpoint)
    except Exception as e:  # Authlib's OAuthError carries error/description
        return {"error": getattr(e, "error", repr(e)), "description": getattr(e, "description", "")}
    return {"error": None}


out("versions", authlib=authlib.__version__, requests=requests.__version__)
meta = requests.get(base + "/.well-known/oauth-authorization-server", timeout=5).json()
token_endpoint = meta["token_endpoint"]
revocation_endpoint = meta["revocation_endpoint"]
out(
    "metadata",
    issuer=meta["issuer"],
    token_endpoint=token_endpoint,
    revocation_endpoint=revocation_endpoint,
    grant_types=meta["grant_types_supported"],
    auth_methods=meta["token_endpoint_auth_methods_supported"],
)

first = session(refresh_a).refresh_token(token_endpoint)
out(
    "refresh_basic",
    rotated=first["refresh_token"] != refresh_a,
    token_type=first["token_type"],
    expires_in=first["expires_in"],
    scope=first.get("scope"),
    access_token=first["access_token"],
)
second = session(first["refresh_token"], "client_secret_post").refresh_token(token_endpoint)
out("refresh_post", rotated=second["refresh_token"] != first["refresh_token"])

out("wrong_secret", **refresh_error(session(second["refresh_token"], client_secret="tak_wrong"), token_endpoint))
out("replay", **refresh_error(session(refresh_a), token_endpoint))
out("after_replay", **refresh_error(session(second["refresh_token"]), token_endpoint))

client = session(refresh_b)
revoked = client.revoke_token(revocation_endpoint, token=refresh_b, token_type_hint="refresh_token")
out("revoke_refresh", status=revoked.status_code, cache_control=revoked.headers.get("Cache-Control"))
out("after_revoke", **refresh_error(session(refresh_b), token_endpoint))
revoked = client.revoke_token(revocation_endpoint, token=access_c, token_type_hint="access_token")
out("revoke_access", status=revoked.status_code)
revoked = client.revoke_token(revocation_endpoint, token="not-a-token")
out("revoke_garbage", status=revoked.status_code)
