//! Signing keys: rotation (published before signing, old keys verify until
//! their tokens expire), ES256, scheduled rotation, sealing at rest under
//! the KEK, and what a database dump can reveal.
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use tonic::Code;

use crate::common::*;
use token_authority::app::App;
use token_authority::domain::audit::AuditKind;
use token_authority::domain::keys::{is_sealed, Kek};
use token_authority::proto::{self as pb, KeyStatus};
use token_authority::storage::purge::PurgeKind;

/// `(kid, alg)` from a JWT's header.
fn header_of(jwt: &str) -> (String, String) {
    let header = jwt.split('.').next().expect("header");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("json");
    (
        header["kid"].as_str().expect("kid").to_owned(),
        header["alg"].as_str().expect("alg").to_owned(),
    )
}

fn kek_of(server: &TestServer) -> Kek {
    let path = server.config.keys.kek_file.as_deref().expect("kek file");
    let text = std::fs::read_to_string(path).expect("kek file");
    Kek::new(&STANDARD.decode(text.trim()).expect("base64")).expect("kek")
}

async fn key_statuses(server: &TestServer) -> Vec<(String, i32)> {
    server
        .admin_client()
        .list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| (k.kid, k.status))
        .collect()
}

async fn rotation_publishes_first_then_signs_and_old_tokens_live_out_their_time(backend: Backend) {
    // Shorter than access_ttl (15 min), so that the old token is still alive
    // when the new key signs.
    let server = TestServer::start_with(backend, |c| {
        c.keys.publish_ahead = Duration::from_secs(10 * 60)
    })
    .await;
    let old = server.issue("acme", "alice").await;
    let (old_kid, alg) = header_of(&old.access_token);
    assert_eq!(alg, "EdDSA");

    let new_key = server.rotate_key("", None).await;
    assert_eq!(new_key.status, KeyStatus::Pending as i32);
    assert_ne!(new_key.kid, old_kid);
    // Published at once: every verifier learns it before any token carries it.
    let mut both = vec![old_kid.clone(), new_key.kid.clone()];
    both.sort();
    assert_eq!(jwks_kids(&mut server.client()).await, both);
    let before = server.issue("acme", "bob").await;
    assert_eq!(
        header_of(&before.access_token).0,
        old_kid,
        "pending key does not sign"
    );

    // keys.publish_ahead later the new key signs.
    server
        .clock
        .advance(server.config.keys.publish_ahead + Duration::from_secs(1));
    let after = server.issue("acme", "carol").await;
    assert_eq!(header_of(&after.access_token).0, new_key.kid);
    server.validate(&after.access_token).await.unwrap();
    let claims = server
        .validate(&old.access_token)
        .await
        .expect("old token still valid");
    assert_eq!(claims.key_id, old_kid);
    assert_eq!(
        key_statuses(&server).await,
        vec![
            (new_key.kid.clone(), KeyStatus::Active as i32),
            (old_kid.clone(), KeyStatus::Retired as i32)
        ]
    );
    let listed = server
        .admin_client()
        .list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let retired = listed.iter().find(|k| k.kid == old_kid).unwrap();
    let retired_at = retired.retired_at.as_ref().unwrap().seconds;
    let verifies_until = retired.verifies_until.as_ref().unwrap().seconds;
    assert_eq!(
        verifies_until - retired_at,
        15 * 60 + 60,
        "access_ttl + revocation margin"
    );

    // The old token expires on its own schedule (plus the clock leeway),
    // not because of the rotation.
    server.clock.advance(Duration::from_secs(5 * 60) + LEEWAY);
    assert_error(
        server.validate(&old.access_token).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    server.validate(&after.access_token).await.unwrap();

    // Once no token it signed can be alive, the purge deletes the old key.
    server.clock.advance(Duration::from_secs(12 * 60));
    let report = server.purger.purge_once().await.unwrap();
    assert_eq!(report.deleted(PurgeKind::SigningKeysRetired), 1);
    server.authority.sync_from_store().await.unwrap();
    assert_eq!(
        jwks_kids(&mut server.client()).await,
        vec![new_key.kid.clone()]
    );
    let rotations = server.audit_events(AuditKind::KeyRotated, 2).await;
    let by: Vec<_> = rotations.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(by, vec!["first start", "anonymous"]);
}

async fn es256_keys_sign_tokens_that_verify(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.clock.advance(Duration::from_secs(1));
    let key = server.rotate_key("ES256", Some(Duration::ZERO)).await;
    assert_eq!(
        key.status,
        KeyStatus::Active as i32,
        "activate_in 0 signs at once"
    );
    let pair = server.issue("acme", "alice").await;
    assert_eq!(
        header_of(&pair.access_token),
        (key.kid.clone(), "ES256".into())
    );
    let claims = server.validate(&pair.access_token).await.unwrap();
    assert_eq!(claims.key_id, key.kid);
    let jwks = server
        .client()
        .get_jwks(pb::GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    let ec = jwks.keys.iter().find(|k| k.kid == key.kid).unwrap();
    assert_eq!((ec.kty.as_str(), ec.crv.as_str()), ("EC", "P-256"));
    assert_eq!(URL_SAFE_NO_PAD.decode(&ec.y).unwrap().len(), 32);

    // A signature from another P-256 key under the same kid is refused.
    let (signer, _) = token_authority::verify::keys::ephemeral(
        token_authority::verify::keys::KeyAlgorithm::Es256,
    )
    .unwrap();
    let (head, rest) = pair.access_token.split_once('.').unwrap();
    let payload = rest.split('.').next().unwrap();
    let forged_input = format!("{head}.{payload}");
    let signature = signer.sign(forged_input.as_bytes()).unwrap();
    let forged = format!("{forged_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    assert_error(
        server.validate(&forged).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );

    // A delay beyond a year (or one that would overflow) is refused.
    let far = server
        .admin_client()
        .rotate_signing_key(pb::RotateSigningKeyRequest {
            algorithm: String::new(),
            activate_in: Some(prost_types::Duration {
                seconds: i64::MAX / 1000,
                nanos: 0,
            }),
        })
        .await;
    assert_invalid(far, "activate_in");

    // Unknown algorithms are refused by name.
    let bad = server
        .admin_client()
        .rotate_signing_key(pb::RotateSigningKeyRequest {
            algorithm: "HS256".into(),
            activate_in: None,
        })
        .await;
    assert_invalid(bad, "algorithm");
}

async fn rotations_in_one_millisecond_still_have_a_newest_key(backend: Backend) {
    let server = TestServer::start(backend).await;
    let now_key = pb::RotateSigningKeyRequest {
        algorithm: String::new(),
        activate_in: Some(prost_types::Duration::default()),
    };
    // The clock does not move: all three keys ask to activate at the same time.
    let a = server
        .admin_client()
        .rotate_signing_key(now_key.clone())
        .await
        .unwrap()
        .into_inner();
    let b = server
        .admin_client()
        .rotate_signing_key(now_key)
        .await
        .unwrap()
        .into_inner();
    let millis = |t: Option<prost_types::Timestamp>| {
        let t = t.expect("activates_at");
        t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
    };
    assert_eq!(
        millis(b.activates_at) - millis(a.activates_at),
        1,
        "one millisecond apart"
    );
    server.clock.advance(Duration::from_millis(2));
    let statuses = key_statuses(&server).await;
    assert_eq!(statuses[0], (b.kid.clone(), KeyStatus::Active as i32));
    assert!(statuses[1..]
        .iter()
        .all(|(_, s)| *s == KeyStatus::Retired as i32));
    let pair = server.issue("acme", "alice").await;
    assert_eq!(header_of(&pair.access_token).0, b.kid);
}

async fn scheduled_rotation_adds_exactly_one_key_when_due(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.keys.rotation_interval = Duration::from_secs(3600);
    })
    .await;
    assert_eq!(server.authority.rotate_if_due().await.unwrap(), None);
    server.clock.advance(Duration::from_secs(3601));
    // Replicas check concurrently: one of them adds the key. (The server's
    // own rotation job is a third: on a loaded machine its first check can
    // come after the clock moved, and then it is the one that adds it.)
    let (a, b) = tokio::join!(
        server.authority.rotate_if_due(),
        server.authority.rotate_if_due()
    );
    let added: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert!(added.len() <= 1, "{added:?}");
    assert_eq!(server.authority.rotate_if_due().await.unwrap(), None);
    let statuses = key_statuses(&server).await;
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(statuses[0].1, KeyStatus::Pending as i32);
    if let Some(kid) = added.first() {
        assert_eq!(&statuses[0].0, kid);
    }
    let audited = server.audit_events(AuditKind::KeyRotated, 2).await;
    let by: Vec<_> = audited.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(
        by,
        vec!["first start", "schedule"],
        "one scheduled rotation"
    );
}

async fn a_wrong_or_missing_kek_refuses_to_start(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    server.issue("acme", "alice").await;
    server.stop().await;
    let kek_file = server.config.keys.kek_file.clone().unwrap();
    let right = std::fs::read_to_string(&kek_file).unwrap();

    std::fs::write(&kek_file, STANDARD.encode([9u8; 32])).unwrap();
    let wrong = App::build(server.config.clone(), server.clock.clone()).await;
    let message = wrong.err().expect("refuses a wrong KEK").to_string();
    assert!(
        message.contains("sealed under key-encryption key"),
        "{message}"
    );

    std::fs::remove_file(&kek_file).unwrap();
    let missing = App::build(server.config.clone(), server.clock.clone()).await;
    let message = missing.err().expect("refuses without a KEK").to_string();
    assert!(message.contains("no key-encryption key"), "{message}");
    assert!(!kek_file.exists(), "never generates a KEK over sealed keys");

    std::fs::write(&kek_file, right).unwrap();
    App::build(server.config.clone(), server.clock.clone())
        .await
        .expect("starts with the right KEK");
}

async fn plain_text_keys_of_an_older_version_are_sealed_at_start(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    server.stop().await;
    // Put the database back the way the previous version stored it.
    let kek = kek_of(&server);
    let store = server.store.clone();
    for key in store.signing_keys().await.unwrap() {
        let plain = kek
            .open(&format!("signing_key/{}", key.kid), &key.private_key)
            .unwrap();
        store
            .replace_private_key(&key.kid, plain.to_vec())
            .await
            .unwrap();
    }
    let name = "refresh_token_root_v1";
    let sealed = store.secret(name).await.unwrap().unwrap();
    let plain = kek.open(&format!("server_secret/{name}"), &sealed).unwrap();
    store
        .replace_secret(name, &sealed, plain.to_vec())
        .await
        .unwrap();
    assert!(!is_sealed(&store.secret(name).await.unwrap().unwrap()));

    let server = server.restart().await;
    server.validate(&pair.access_token).await.unwrap();
    server
        .refresh(&pair.refresh_token)
        .await
        .expect("same refresh secret");
    let store = &server.store;
    assert!(store
        .signing_keys()
        .await
        .unwrap()
        .iter()
        .all(|k| is_sealed(&k.private_key)));
    assert!(is_sealed(&store.secret(name).await.unwrap().unwrap()));
}

/// The whole database as bytes: SQLite's files, or PostgreSQL's pg_dump.
fn dump(server: &TestServer) -> Vec<u8> {
    let url = &server.config.database.url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = Path::new(path);
        let dir = path.parent().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with(&name) {
                bytes.extend(std::fs::read(entry.path()).unwrap());
            }
        }
        return bytes;
    }
    let bin = std::env::var("TA_TEST_POSTGRES_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into());
    let output = std::process::Command::new(Path::new(&bin).join("pg_dump"))
        .arg(url)
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Every form a secret could take in a dump.
fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        secret.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        STANDARD.encode(secret).into_bytes(),
        URL_SAFE_NO_PAD.encode(secret).into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn a_database_dump_holds_no_token_or_key_in_plain_text(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.clock.advance(Duration::from_secs(1));
    // An ES256 key as well, so that both kinds of private key are looked for.
    server.rotate_key("ES256", Some(Duration::ZERO)).await;
    let first = server.issue("acme", "dump-subject").await;
    let second = server.refresh(&first.refresh_token).await.unwrap();

    let kek = kek_of(&server);
    let store = &server.store;
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for token in [&first, &second] {
        secrets.push((
            "access token".into(),
            token.access_token.clone().into_bytes(),
        ));
        secrets.push((
            "refresh token".into(),
            token.refresh_token.clone().into_bytes(),
        ));
        let body = token.refresh_token.strip_prefix("rt1_").unwrap();
        secrets.push((
            "refresh token bytes".into(),
            URL_SAFE_NO_PAD.decode(body).unwrap(),
        ));
    }
    let mut publics = Vec::new();
    for key in store.signing_keys().await.unwrap() {
        let private = kek
            .open(&format!("signing_key/{}", key.kid), &key.private_key)
            .unwrap();
        secrets.push((format!("private key {}", key.kid), private.to_vec()));
        publics.push(key.public_key);
    }
    let name = "refresh_token_root_v1";
    let root = kek
        .open(
            &format!("server_secret/{name}"),
            &store.secret(name).await.unwrap().unwrap(),
        )
        .unwrap();
    secrets.push(("refresh-token root secret".into(), root.to_vec()));

    let dump = dump(&server);
    // The dump is real: what is meant to be there is found, in the forms searched.
    assert!(contains(&dump, first.session_id.as_bytes()));
    assert!(contains(&dump, b"dump-subject"));
    for public in &publics {
        assert!(
            encodings(public).iter().any(|form| contains(&dump, form)),
            "public key not found: the search would miss the private one too"
        );
    }
    for (what, secret) in &secrets {
        for form in encodings(secret) {
            assert!(!contains(&dump, &form), "{what} found in the database dump");
        }
    }
}

crate::on_both_backends!(
    rotation_publishes_first_then_signs_and_old_tokens_live_out_their_time,
    es256_keys_sign_tokens_that_verify,
    rotations_in_one_millisecond_still_have_a_newest_key,
    scheduled_rotation_adds_exactly_one_key_when_due,
    a_wrong_or_missing_kek_refuses_to_start,
    plain_text_keys_of_an_older_version_are_sealed_at_start,
    a_database_dump_holds_no_token_or_key_in_plain_text,
);
