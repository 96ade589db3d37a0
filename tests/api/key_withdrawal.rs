//! Withdrawing a compromised signing key: it stops signing and verifying at
//! once here, on other replicas at their next sync (PostgreSQL notifies
//! them), on sidecars through WatchRevocations, and it leaves the JWKS; a
//! pending key takes over without a gap, or a new one is generated.
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::future::join_all;
use tonic::transport::Channel;
use tonic::Code;

use crate::common::*;
use crate::processes::Replica;
use crate::sidecar::SidecarProcess;
use token_authority::domain::audit::AuditKind;
use token_authority::proto::admin_client::AdminClient;
use token_authority::proto::{self as pb, KeyStatus};

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().expect("header");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

async fn withdraw(
    admin: &mut AdminClient<Channel>,
    kid: &str,
) -> Result<pb::WithdrawSigningKeyResponse, tonic::Status> {
    admin
        .withdraw_signing_key(pb::WithdrawSigningKeyRequest {
            kid: kid.into(),
            reason: "key file leaked".into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn withdrawing_the_signing_key_hands_over_to_the_pending_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let before = server.issue("acme", "alice").await;
    let compromised = kid_of(&before.access_token);
    let pending = server.rotate_key("", Some(Duration::from_secs(3600))).await;
    assert_eq!(pending.status, KeyStatus::Pending as i32);

    let mut admin = server.admin_client();
    let answer = withdraw(&mut admin, &compromised).await.unwrap();
    let withdrawn = answer.withdrawn.expect("withdrawn key");
    assert_eq!(withdrawn.kid, compromised);
    assert_eq!(withdrawn.status, KeyStatus::Withdrawn as i32);
    assert!(withdrawn.withdrawn_at.is_some());
    let signing = answer.signing.expect("signing key");
    assert_eq!(signing.kid, pending.kid, "the pending key takes over");
    assert_eq!(signing.status, KeyStatus::Active as i32);
    assert!(!answer.signing_key_generated && !answer.already_withdrawn);

    // At once on this server: the old token, and the key leaves the JWKS.
    assert_error(
        server.validate(&before.access_token).await,
        Code::Unauthenticated,
        "KEY_WITHDRAWN",
    );
    let kids = jwks_kids(&mut server.client()).await;
    assert_eq!(kids, [pending.kid.as_str()]);
    let http = http_get(server.http_addr, "/.well-known/jwks.json", &[]).await;
    assert!(!http.body.contains(&compromised), "{}", http.body);

    // The session refreshes into a token of the successor; new sessions too.
    let refreshed = server.refresh(&before.refresh_token).await.unwrap();
    assert_eq!(kid_of(&refreshed.access_token), pending.kid);
    server.validate(&refreshed.access_token).await.unwrap();
    let fresh = server.issue("acme", "bob").await;
    assert_eq!(kid_of(&fresh.access_token), pending.kid);

    // Audited with the caller and the reason.
    let events = server.audit_events(AuditKind::KeyWithdrawn, 1).await;
    assert_eq!(events.len(), 1);
    let detail = events[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains(&compromised)
            && detail.contains("key file leaked")
            && detail.contains(&pending.kid),
        "{detail}"
    );
    assert_eq!(events[0].subject, "anonymous");

    // Again: nothing changes. Unknown kid: NOT_FOUND.
    let again = withdraw(&mut admin, &compromised).await.unwrap();
    assert!(again.already_withdrawn);
    assert_eq!(
        server.audit_events(AuditKind::KeyWithdrawn, 2).await.len(),
        1
    );
    assert_error(
        withdraw(&mut admin, "no-such-kid").await,
        Code::NotFound,
        "KEY_NOT_FOUND",
    );
    assert_invalid(withdraw(&mut admin, "").await, "kid");

    // The private half is gone from the database; a restart still refuses.
    let rows = server.store.signing_keys().await.unwrap();
    let row = rows.iter().find(|k| k.kid == compromised).unwrap();
    assert!(row.private_key.is_empty());
    let server = server.restart().await;
    assert_error(
        server.validate(&before.access_token).await,
        Code::Unauthenticated,
        "KEY_WITHDRAWN",
    );
    server.validate(&refreshed.access_token).await.unwrap();
}

async fn withdrawing_the_only_key_generates_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let before = server.issue("acme", "alice").await;
    let only = kid_of(&before.access_token);
    let answer = withdraw(&mut server.admin_client(), &only).await.unwrap();
    assert!(answer.signing_key_generated);
    let signing = answer.signing.expect("signing key");
    assert_ne!(signing.kid, only);
    assert_eq!(signing.status, KeyStatus::Active as i32);
    assert_error(
        server.validate(&before.access_token).await,
        Code::Unauthenticated,
        "KEY_WITHDRAWN",
    );
    let refreshed = server.refresh(&before.refresh_token).await.unwrap();
    assert_eq!(kid_of(&refreshed.access_token), signing.kid);
    server.validate(&refreshed.access_token).await.unwrap();
    assert_eq!(
        jwks_kids(&mut server.client()).await,
        [signing.kid.as_str()]
    );
}

/// A retired key (tokens still alive) can be withdrawn too: the signing
/// key is left alone.
async fn withdrawing_a_retired_key_leaves_the_signer_alone(backend: Backend) {
    let server = TestServer::start(backend).await;
    let old = server.issue("acme", "alice").await;
    server.clock.advance(Duration::from_secs(1));
    let new_key = server.rotate_key("", Some(Duration::ZERO)).await;
    let current = server.issue("acme", "bob").await;
    assert_eq!(kid_of(&current.access_token), new_key.kid);
    let answer = withdraw(&mut server.admin_client(), &kid_of(&old.access_token))
        .await
        .unwrap();
    assert!(!answer.signing_key_generated);
    assert_eq!(answer.signing.unwrap().kid, new_key.kid);
    assert_error(
        server.validate(&old.access_token).await,
        Code::Unauthenticated,
        "KEY_WITHDRAWN",
    );
    server.validate(&current.access_token).await.unwrap();
}

crate::on_both_backends!(
    withdrawing_the_signing_key_hands_over_to_the_pending_one,
    withdrawing_the_only_key_generates_one,
    withdrawing_a_retired_key_leaves_the_signer_alone,
);

/// The offline command on a running server's database (SQLite): the server
/// learns of it at its next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_withdraws_a_key_under_a_running_server() {
    let server = TestServer::start(Backend::Sqlite).await;
    let before = server.issue("acme", "alice").await;
    let kid = kid_of(&before.access_token);
    let kek_file = server.config.keys.kek_file.clone().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_token-authority"))
        .args(["keys", "withdraw", &kid, "--reason", "drill"])
        .env("TOKEN_AUTHORITY_DATABASE__URL", &server.config.database.url)
        .env("TOKEN_AUTHORITY_KEYS__KEK_FILE", &kek_file)
        .env("TOKEN_AUTHORITY_LOG__FILTER", crate::logs::FILTER)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("key {kid} withdrawn; new key")),
        "{stdout}"
    );
    assert!(stdout.contains("withdrawn"), "{stdout}");
    let started = Instant::now();
    loop {
        match server.validate(&before.access_token).await {
            Ok(_) => assert!(started.elapsed() < Duration::from_secs(5), "never refused"),
            Err(status) => {
                assert_eq!(reason(&status), "KEY_WITHDRAWN");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "running server refused the key {:?} after the CLI returned",
        started.elapsed()
    );
    let refreshed = server.refresh(&before.refresh_token).await.unwrap();
    assert_ne!(kid_of(&refreshed.access_token), kid);
    server.validate(&refreshed.access_token).await.unwrap();
}

/// Polls every 2 ms until `client` refuses `token` with KEY_WITHDRAWN.
async fn until_refused(mut client: Client, token: String, since: Instant) -> Duration {
    loop {
        match validate_with(&mut client, &token).await {
            Ok(_) => {
                assert!(since.elapsed() < Duration::from_secs(10), "still accepted");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(status) => {
                assert_eq!(reason(&status), "KEY_WITHDRAWN", "{status:?}");
                return since.elapsed();
            }
        }
    }
}

/// Three `serve` processes over one PostgreSQL and a sidecar process
/// following the third: the time until each refuses a token of the
/// withdrawn key, measured; and no gap for tokens of the pending key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_reaches_every_replica_and_sidecar() {
    let url = fresh_postgres_database().await;
    let first = Replica::start(&url, &[]).await;
    let others = join_all((0..2).map(|_| Replica::start(&url, &[]))).await;
    let replicas: Vec<&Replica> = std::iter::once(&first).chain(others.iter()).collect();
    let mut admin = AdminClient::connect(format!("http://{}", first.addr))
        .await
        .unwrap();

    let pending = admin
        .rotate_signing_key(pb::RotateSigningKeyRequest {
            algorithm: String::new(),
            activate_in: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let pair = issue_with(&mut first.client(), "acme", "alice").await;
    let compromised = kid_of(&pair.access_token);
    let sidecar = SidecarProcess::start(replicas[2].addr, &[], &pair.access_token).await;
    // Everyone knows the pending key before the withdrawal (published ahead).
    let started = Instant::now();
    for replica in &replicas {
        let mut client = replica.client();
        while !jwks_kids(&mut client).await.contains(&pending.kid) {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        validate_with(&mut client, &pair.access_token)
            .await
            .unwrap();
    }
    while !jwks_kids(&mut sidecar.client.clone())
        .await
        .contains(&pending.kid)
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let asked = Instant::now();
    let answer = withdraw(&mut admin, &compromised).await.unwrap();
    let answered = asked.elapsed();
    assert_eq!(answer.signing.unwrap().kid, pending.kid);
    // The answering replica refuses from its answer on.
    assert_error(
        validate_with(&mut first.client(), &pair.access_token).await,
        Code::Unauthenticated,
        "KEY_WITHDRAWN",
    );
    let mut verifiers: Vec<(String, Client)> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("replica {i}"), r.client()))
        .collect();
    verifiers.push(("sidecar of replica 2".into(), sidecar.client.clone()));
    let times = join_all(
        verifiers
            .iter()
            .map(|(_, c)| until_refused(c.clone(), pair.access_token.clone(), asked)),
    )
    .await;
    eprintln!("withdrawal answered in {answered:?}; token refused after:");
    for ((name, _), time) in verifiers.iter().zip(&times) {
        eprintln!("  {name}: {time:?}");
    }
    // The others within a poll interval (250 ms) even if the notification
    // were lost, with slack for a loaded machine.
    for time in &times {
        assert!(*time < Duration::from_secs(3), "{times:?}");
    }

    // No gap: a token of the successor, issued right away on any replica,
    // validates everywhere at once.
    for (i, issuer) in replicas.iter().enumerate() {
        let fresh = issue_with(&mut issuer.client(), "acme", &format!("user-{i}")).await;
        assert_eq!(kid_of(&fresh.access_token), pending.kid);
        for (name, client) in &verifiers {
            validate_with(&mut client.clone(), &fresh.access_token)
                .await
                .unwrap_or_else(|e| panic!("{name} refused a token of replica {i}: {e:?}"));
        }
    }
    // The withdrawn key left every key set; its session refreshes.
    for (name, client) in &verifiers {
        let kids = jwks_kids(&mut client.clone()).await;
        assert!(!kids.contains(&compromised), "{name}: {kids:?}");
    }
    let refreshed = refresh_with(&mut replicas[1].client(), &pair.refresh_token)
        .await
        .unwrap();
    validate_with(&mut sidecar.client.clone(), &refreshed.access_token)
        .await
        .unwrap();
}
