"""Verifies an access token the way a third-party service would: PyJWT,
with the key fetched from the authority's /.well-known/jwks.json.

usage: verify_jwt.py <jwks url> <token> <issuer> <audience>
Prints {"kid": ..., "claims": {...}}; exits non-zero if the token fails.
"""
import json
import sys

import jwt

jwks_url, token, issuer, audience = sys.argv[1:5]
signing_key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
claims = jwt.decode(
    token,
    signing_key,
    algorithms=["EdDSA", "ES256"],
    audience=audience,
    issuer=issuer,
    options={"require": ["exp", "iat", "sub", "aud", "iss"]},
    # The test server's clock and this process's may differ by a second.
    leeway=5,
)
print(json.dumps({"kid": signing_key.key_id, "claims": claims}))
