// A relying party nobody here wrote: openid-client discovers the issuer
// (GET <issuer>/.well-known/openid-configuration, issuer checked), and jose
// verifies an access token against the discovered jwks_uri, as an API
// gateway or resource server in Node would.
// Usage: node oidc_verify.mjs ISSUER AUDIENCE TOKEN
// Prints one JSON line: {"metadata": …, "payload": …, "header": …} or
// {"error": …}; exits 0 when the token verified.
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [issuer, audience, token] = process.argv.slice(2);
try {
  const config = await client.discovery(new URL(issuer), 'token-authority-interop', undefined, undefined, {
    execute: [client.allowInsecureRequests],
  });
  const metadata = config.serverMetadata();
  const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer: metadata.issuer,
    audience,
    typ: 'at+jwt',
    algorithms: metadata.id_token_signing_alg_values_supported,
  });
  console.log(JSON.stringify({ metadata, payload, header: protectedHeader }));
} catch (e) {
  console.log(JSON.stringify({ error: `${e.code ?? e.name}: ${e.message}` }));
  process.exit(1);
}
