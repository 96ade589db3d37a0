//! The Validate path (the same `Validator` the server and sidecars use):
//! arbitrary strings, and tokens correctly signed with the real keys over a
//! header and payload of the fuzzer's choosing, so that everything behind
//! the signature check is fuzzed too. Never a panic; whatever validates
//! satisfies every check; a cache hit answers as the miss did.
#![no_main]
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use token_authority::verify::clock::{Clock, Millis, SystemClock};
use token_authority::verify::access_token::{self, AccessClaims};
use token_authority::verify::caller::Caller;
use token_authority::verify::keys::{generate, KeyAlgorithm, PublicKey, SigningKey, VerifyingKeys};
use token_authority::verify::model::ValidateRequest;
use token_authority::verify::validator::Validator;
use uuid::Uuid;

const ISSUER: &str = "token-authority";

struct Fixture {
    validator: Validator,
    signers: Vec<SigningKey>,
    /// One genuine token per key, to start mutations from.
    genuine: Vec<String>,
    revoked: Uuid,
    now: Millis,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let now = SystemClock.now_millis();
        let validator = Validator::new(ISSUER.into(), 1024, 60_000);
        let mut signers = Vec::new();
        let mut publics = Vec::new();
        for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            let key = generate(algorithm).expect("key");
            signers.push(SigningKey::from_pkcs8(&key.kid, algorithm, &key.pkcs8).expect("parse"));
            publics.push(PublicKey {
                kid: key.kid,
                algorithm,
                key: key.public_key,
            });
        }
        validator.set_keys(Arc::new(VerifyingKeys::new(publics)));
        let revoked = Uuid::now_v7();
        validator.revoke(&[(revoked, now + 3_600_000)]);
        let genuine = signers
            .iter()
            .map(|signer| {
                let claims = AccessClaims {
                    iss: ISSUER.into(),
                    sub: "alice".into(),
                    aud: "api".into(),
                    exp: now / 1000 + 900,
                    iat: now / 1000,
                    nbf: now / 1000,
                    jti: "j".into(),
                    sid: Uuid::now_v7().to_string(),
                    tenant: "acme".into(),
                    scope: "read".into(),
                    client_id: "login".into(),
                    act: None,
                    cnf: None,
                    extra: Default::default(),
                };
                access_token::sign(signer, &claims).expect("sign")
            })
            .collect();
        Fixture {
            validator,
            signers,
            genuine,
            revoked,
            now,
        }
    })
}

fn signed(signer: &SigningKey, header: &str, payload: &[u8]) -> String {
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = signer.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let signer = &f.signers[usize::from(mode >> 4) % f.signers.len()];
    let token = match mode % 4 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        // The genuine header, the fuzzer's payload, a valid signature.
        1 => signed(signer, &signer.encoded_header, rest),
        // The fuzzer's header and payload, a valid signature.
        2 => {
            let cut = rest.first().map_or(0, |&b| usize::from(b)) % (rest.len() + 1);
            let (header, payload) = rest.split_at(cut);
            signed(signer, &URL_SAFE_NO_PAD.encode(header), payload)
        }
        // A genuine token with the fuzzer's bytes spliced in.
        _ => {
            let mut token = f.genuine[usize::from(mode >> 4) % f.genuine.len()]
                .clone()
                .into_bytes();
            for edit in rest.chunks_exact(2) {
                let at = usize::from(edit[0]) % token.len();
                token[at] = edit[1];
            }
            String::from_utf8_lossy(&token).into_owned()
        }
    };
    let request = ValidateRequest {
        access_token: token,
        expected_audience: if mode & 8 == 0 { String::new() } else { "api".into() },
        expected_tenant_id: String::new(),
        ..Default::default()
    };
    let caller = Caller::anonymous();
    let first = f.validator.validate(&caller, &request, f.now);
    if let Ok(valid) = &first {
        let c = &valid.claims;
        assert_eq!(c.iss, ISSUER);
        assert!(c.exp * 1000 > f.now, "expired token accepted");
        assert!(c.nbf * 1000 <= f.now, "not-yet-valid token accepted");
        let session = Uuid::try_parse(&c.sid).expect("session id is a UUID");
        assert_ne!(session, f.revoked, "revoked session accepted");
        if !request.expected_audience.is_empty() {
            assert_eq!(c.aud, request.expected_audience);
        }
    }
    // The second call may be a cache hit: it must answer the same.
    let second = f.validator.validate(&caller, &request, f.now);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.reason(), b.reason()),
        _ => panic!("cache changed the verdict: {first:?} then {second:?}"),
    }
});
