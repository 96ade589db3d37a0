// A Node client of Token Authority: Issue, Validate, Refresh, Revoke, then the
// error a revoked session answers, read from its google.rpc.ErrorInfo.
//
// The repository's protos are loaded at run time (@grpc/proto-loader): ours,
// and google/rpc/{status,error_details}.proto from proto/vendor.
//
//   node examples/node/client.mjs [--address 127.0.0.1:50051] [--key tak_...]
//
// TA_ADDRESS and TA_BEARER_KEY are the defaults of --address and --key.
// Without a key no authorization header is sent (a server without callers).
// Exits 1 on any answer other than the expected one.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import path from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const protoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../proto");

class Unexpected extends Error {}

function load() {
  const definition = protoLoader.loadSync(
    [
      "token_authority/v1/token_authority.proto",
      "google/rpc/status.proto",
      "google/rpc/error_details.proto",
    ],
    {
      includeDirs: [protoRoot, path.join(protoRoot, "vendor")],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    },
  );
  return { definition, api: grpc.loadPackageDefinition(definition) };
}

// The payload of a JWT, unverified: what a resource server would read.
function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

// The google.rpc.ErrorInfo in an error's grpc-status-details-bin trailer.
function errorInfo(definition, error) {
  const errorInfoType = "type.googleapis.com/google.rpc.ErrorInfo";
  for (const bytes of error.metadata?.get("grpc-status-details-bin") ?? []) {
    const status = definition["google.rpc.Status"].deserialize(bytes);
    const detail = status.details.find((any) => any.type_url === errorInfoType);
    if (detail) {
      return definition["google.rpc.ErrorInfo"].deserialize(detail.value);
    }
  }
  throw new Unexpected(`no ErrorInfo in ${grpc.status[error.code]}: ${error.details}`);
}

// The ErrorInfo reason of an error, or what stands in for it.
function reasonOf(definition, error) {
  try {
    return errorInfo(definition, error).reason;
  } catch {
    return "no ErrorInfo";
  }
}

function expect(condition, what) {
  if (!condition) {
    throw new Unexpected(what);
  }
}

async function walkthrough(definition, client, metadata, tenant, subject) {
  const call = (name, request) => {
    console.log(`> ${name}`);
    return new Promise((resolve, reject) => {
      client[name](request, metadata, { deadline: Date.now() + 10_000 }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
  };

  const issued = (
    await call("Issue", {
      tenant_id: tenant,
      subject,
      audience: "api",
      scopes: ["read", "write"],
      device: { name: "node example" },
    })
  ).tokens;
  const claims = jwtClaims(issued.access_token);
  console.log(`  session ${issued.session_id}`);
  console.log(`  access token claims: sub=${claims.sub} client_id=${claims.client_id} jti=${claims.jti}`);
  expect(claims.sub === subject, `sub is ${claims.sub}`);

  const validated = await call("Validate", {
    access_token: issued.access_token,
    expected_audience: "api",
  });
  console.log(
    `  valid=${validated.valid} subject=${validated.claims.subject} client_id=${validated.claims.client_id}`,
  );
  expect(validated.valid && validated.claims.session_id === issued.session_id, "Validate");

  const refreshed = (await call("Refresh", { refresh_token: issued.refresh_token })).tokens;
  console.log(
    `  same session: ${refreshed.session_id === issued.session_id}; new refresh token: ${refreshed.refresh_token !== issued.refresh_token}`,
  );
  expect(refreshed.session_id === issued.session_id, "Refresh changed the session");
  expect(jwtClaims(refreshed.access_token).jti !== claims.jti, "Refresh kept the jti");

  const revoked = await call("Revoke", {
    tenant_id: tenant,
    refresh_token: refreshed.refresh_token,
    reason: "node example",
  });
  console.log(`  revoked sessions: ${revoked.revoked_sessions}`);
  expect(revoked.revoked_sessions === 1, "Revoke");

  let error;
  try {
    await call("Refresh", { refresh_token: refreshed.refresh_token });
  } catch (caught) {
    error = caught;
  }
  expect(error !== undefined, "Refresh of a revoked session succeeded");
  if (error.code === undefined) {
    throw error;
  }
  const info = errorInfo(definition, error);
  console.log(`  error: ${grpc.status[error.code]}: ${error.details}`);
  console.log(`  ErrorInfo: reason=${info.reason} domain=${info.domain}`);
  expect(error.code === grpc.status.UNAUTHENTICATED, `code ${grpc.status[error.code]}`);
  expect(info.reason === "SESSION_REVOKED" && info.domain === "token-authority", "ErrorInfo");
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      address: { type: "string", default: process.env.TA_ADDRESS ?? "127.0.0.1:50051" },
      key: { type: "string", default: process.env.TA_BEARER_KEY ?? "" },
      tenant: { type: "string", default: "acme" },
      subject: { type: "string", default: "alice" },
    },
  });
  const metadata = new grpc.Metadata();
  if (args.key) {
    metadata.set("authorization", `Bearer ${args.key}`);
  }
  const { definition, api } = load();
  const client = new api.token_authority.v1.TokenAuthority(
    args.address,
    grpc.credentials.createInsecure(),
  );
  try {
    await walkthrough(definition, client, metadata, args.tenant, args.subject);
  } catch (problem) {
    if (problem instanceof Unexpected) {
      console.error(`unexpected answer: ${problem.message}`);
    } else if (problem.code !== undefined) {
      console.error(
        `unexpected error: ${grpc.status[problem.code]}: ${problem.details} (${reasonOf(definition, problem)})`,
      );
    } else {
      console.error(`unexpected error: ${problem}`);
    }
    return 1;
  } finally {
    client.close();
  }
  console.log("ok: Issue, Validate, Refresh, Revoke, and SESSION_REVOKED read from ErrorInfo");
  return 0;
}

process.exitCode = await main();
