//! Changing the key-encryption key of a running cluster (docs/kek-rotation.md):
//! replicas restarted one by one with the new KEK and the previous one,
//! `keys rewrap`, then restarted with the new KEK only; and a KEK printed
//! by `keys.kek_command`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::common::*;
use token_authority::app::App;
use token_authority::cli::keys_rewrap::{self, RewrapArgs};
use token_authority::domain::audit::AuditKind;
use token_authority::domain::keys::{sealed_by, Kek};
use token_authority::proto as pb;
use token_authority::storage::Store;

/// Writes a fresh random KEK to `path`; returns its id.
fn write_kek(path: &Path) -> String {
    let bytes = Kek::random_bytes().expect("random");
    std::fs::write(path, STANDARD.encode(bytes.as_ref())).expect("write kek");
    Kek::new(bytes.as_ref()).expect("kek").id()
}

/// Sealed values per KEK id, read from the rows themselves.
async fn sealed_ids(store: &Store) -> BTreeMap<String, u64> {
    let keys = store.signing_keys().await.expect("keys");
    let secrets = store.secret_values().await.expect("secrets");
    let mut ids = BTreeMap::new();
    for value in keys.iter().map(|k| k.private_key.clone()).chain(secrets) {
        let id = sealed_by(&value).expect("every value is sealed");
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// Sessions issued before and during the change, and every access token.
struct Traffic {
    sessions: Vec<pb::TokenPair>,
    access_tokens: Vec<String>,
}

impl Traffic {
    async fn issue(&mut self, on: &TestServer, subject: &str) {
        let pair = on.issue("acme", subject).await;
        self.access_tokens.push(pair.access_token.clone());
        self.sessions.push(pair);
    }

    /// Every session refreshes (on replicas in turn) and every access token
    /// issued so far validates on every replica.
    async fn still_works(&mut self, replicas: &[&TestServer], step: &str) {
        for replica in replicas {
            replica.authority.sync_from_store().await.expect("sync");
        }
        for (i, session) in self.sessions.iter_mut().enumerate() {
            let replica = replicas[i % replicas.len()];
            let refreshed = replica
                .refresh(&session.refresh_token)
                .await
                .unwrap_or_else(|e| panic!("{step}: session {i} refreshes: {e}"));
            self.access_tokens.push(refreshed.access_token.clone());
            *session = refreshed;
        }
        for (r, replica) in replicas.iter().enumerate() {
            for (t, token) in self.access_tokens.iter().enumerate() {
                replica
                    .validate(token)
                    .await
                    .unwrap_or_else(|e| panic!("{step}: token {t} validates on replica {r}: {e}"));
            }
        }
    }
}

/// Restarts `server` with these KEK files.
async fn restart_with(
    mut server: TestServer,
    current: &Path,
    previous: Option<&Path>,
) -> TestServer {
    server.config.keys.kek_file = Some(current.to_owned());
    server.config.keys.previous_kek_file = previous.map(Path::to_owned);
    server.restart().await
}

/// `token-authority` on `database_url`, with `env` settings and no KEK
/// from this process's environment.
fn cli(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_token-authority"))
        .args(args)
        .arg("--database-url")
        .arg(database_url)
        .env_remove("TOKEN_AUTHORITY_CONFIG")
        .env_remove("TOKEN_AUTHORITY_KEK")
        .env_remove("TOKEN_AUTHORITY_PREVIOUS_KEK")
        .env("TOKEN_AUTHORITY_LOG__FILTER", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("token-authority runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

async fn replicas_move_to_a_new_kek_without_downtime(backend: Backend) {
    let keks = tempfile::tempdir().unwrap();
    let (old, new): (PathBuf, PathBuf) = (keks.path().join("old"), keks.path().join("new"));
    let old_id = write_kek(&old);
    let new_id = write_kek(&new);
    let a = TestServer::start_with(backend, |c| c.keys.kek_file = Some(old.clone())).await;
    let b = a.replica(0).await;
    let mut traffic = Traffic {
        sessions: Vec::new(),
        access_tokens: Vec::new(),
    };
    traffic.issue(&a, "alice").await;
    traffic.issue(&b, "bob").await;
    assert_eq!(
        sealed_ids(&a.store).await,
        BTreeMap::from([(old_id.clone(), 2)])
    );

    // Restarting with the new KEK alone, before the rewrap, is refused.
    let mut early = a.config.clone();
    early.keys.kek_file = Some(new.clone());
    let refused = App::build(early, a.clock.clone()).await;
    let message = refused
        .err()
        .expect("the new KEK alone refuses to start")
        .to_string();
    assert!(message.contains(&old_id), "{message}");

    // (a) Replica A restarts with new + old; B still holds only old.
    let a = restart_with(a, &new, Some(&old)).await;
    traffic.still_works(&[&a, &b], "A holds both").await;
    // A key rotated now is sealed under old: B must open it.
    let rotated = a.rotate_key("", Some(Duration::ZERO)).await;
    assert_eq!(
        sealed_ids(&a.store).await,
        BTreeMap::from([(old_id.clone(), 3)]),
        "while the database is all under the old KEK, new values are too"
    );
    b.authority
        .sync_from_store()
        .await
        .expect("B opens the rotated key");
    traffic.issue(&a, "carol").await;
    traffic.issue(&b, "dave").await;
    traffic.still_works(&[&a, &b], "after a rotation").await;

    let b = restart_with(b, &new, Some(&old)).await;
    traffic.still_works(&[&a, &b], "both hold both").await;

    // (b) The rewrap, through the real binary.
    let url = a.config.database.url.clone();
    let env = [
        ("TOKEN_AUTHORITY_KEYS__KEK_FILE", path_str(&new)),
        ("TOKEN_AUTHORITY_KEYS__PREVIOUS_KEK_FILE", path_str(&old)),
    ];
    let out = cli(&url, &["keys", "rewrap"], &env);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "re-sealed 2 signing keys and 1 secrets under KEK {new_id}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "KEK {old_id} no longer seals any row: remove it from the configuration"
        )),
        "{stdout}"
    );
    assert_eq!(
        sealed_ids(&a.store).await,
        BTreeMap::from([(new_id.clone(), 3)])
    );

    // Again, through the function the command calls: nothing left to do.
    let report = keys_rewrap::rewrap(
        &a.store,
        &a.config.keys,
        &RewrapArgs::default(),
        a.authority.now(),
        "test",
    )
    .await
    .expect("second rewrap");
    assert_eq!((report.resealed.keys, report.resealed.secrets), (0, 0));
    assert_eq!(report.target_kek_id, new_id);
    assert_eq!(report.unused(), [old_id.as_str()]);
    assert_eq!(
        sealed_ids(&a.store).await,
        BTreeMap::from([(new_id.clone(), 3)])
    );
    let audited = a.audit_events(AuditKind::KekRewrapped, 2).await;
    assert_eq!(audited.len(), 2, "{audited:?}");
    traffic.still_works(&[&a, &b], "after the rewrap").await;

    // From now on replicas seal under the new KEK.
    let later = b.rotate_key("", Some(Duration::ZERO)).await;
    assert_ne!(later.kid, rotated.kid);
    assert_eq!(
        sealed_ids(&a.store).await,
        BTreeMap::from([(new_id.clone(), 4)])
    );

    // (c) Restart each with the new KEK only.
    let a = restart_with(a, &new, None).await;
    traffic.still_works(&[&a, &b], "A holds only new").await;
    let b = restart_with(b, &new, None).await;
    traffic.still_works(&[&a, &b], "both hold only new").await;

    let mut stale = a.config.clone();
    stale.keys.kek_file = Some(old.clone());
    let refused = App::build(stale, a.clock.clone()).await;
    let message = refused
        .err()
        .expect("only the old KEK refuses to start")
        .to_string();
    assert!(message.contains(&new_id), "{message}");
}

async fn a_key_rotated_before_the_first_restart_stays_openable(backend: Backend) {
    // A replica not yet restarted (old KEK only) rotating while another
    // holds both: the rewrap still takes everything to the new KEK.
    let keks = tempfile::tempdir().unwrap();
    let (old, new) = (keks.path().join("old"), keks.path().join("new"));
    let old_id = write_kek(&old);
    let new_id = write_kek(&new);
    let a = TestServer::start_with(backend, |c| c.keys.kek_file = Some(old.clone())).await;
    let b = a.replica(0).await;
    let a = restart_with(a, &new, Some(&old)).await;
    b.rotate_key("", Some(Duration::ZERO)).await;
    a.authority
        .sync_from_store()
        .await
        .expect("A opens B's key");
    let report = keys_rewrap::rewrap(
        &a.store,
        &a.config.keys,
        &RewrapArgs {
            new_kek_file: Some(new.clone()),
            new_kek_command: None,
        },
        a.authority.now(),
        "test",
    )
    .await
    .expect("rewrap");
    assert_eq!((report.resealed.keys, report.resealed.secrets), (2, 1));
    assert!(report.still_used().is_empty());
    assert_eq!(report.unused(), [old_id.as_str()]);
    assert_eq!(sealed_ids(&a.store).await, BTreeMap::from([(new_id, 3)]));
}

async fn a_kek_printed_by_a_command_opens_the_keys(backend: Backend) {
    let keks = tempfile::tempdir().unwrap();
    let (old, new) = (keks.path().join("old"), keks.path().join("new"));
    write_kek(&old);
    let new_id = write_kek(&new);
    let server = TestServer::start_with(backend, |c| c.keys.kek_file = Some(old.clone())).await;
    let url = server.config.database.url.clone();
    let missing = keks.path().join("missing");

    // In a configuration file; the command wins over keys.kek_file.
    let config = keks.path().join("authority.toml");
    std::fs::write(
        &config,
        format!(
            "[keys]\nkek_file = {:?}\nkek_command = {:?}\n",
            path_str(&missing),
            format!("cat '{}'", old.display())
        ),
    )
    .unwrap();
    let listed = cli(&url, &["--config", path_str(&config), "keys", "list"], &[]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(!missing.exists(), "no KEK file generated");

    // A failing command refuses, naming itself and its status, not stdout.
    let failing = "head -c 24 /dev/zero | tr '\\0' Q; echo vault: permission denied >&2; exit 7";
    let refused = cli(
        &url,
        &["keys", "list"],
        &[("TOKEN_AUTHORITY_KEYS__KEK_COMMAND", failing)],
    );
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains(failing), "{stderr}");
    assert!(stderr.contains("exited with status 7"), "{stderr}");
    assert!(stderr.contains("vault: permission denied"), "{stderr}");
    assert!(
        !stderr.contains("QQQQQQQQ"),
        "the command's stdout leaked: {stderr}"
    );

    // keys rewrap --new-kek-command: the configured KEK is the old one.
    let command = format!("cat '{}'", new.display());
    let old_env = [("TOKEN_AUTHORITY_KEYS__KEK_FILE", path_str(&old))];
    let out = cli(
        &url,
        &["keys", "rewrap", "--new-kek-command", &command],
        &old_env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        sealed_ids(&server.store).await,
        BTreeMap::from([(new_id.clone(), 2)])
    );

    let only_old = cli(&url, &["keys", "list"], &old_env);
    assert!(!only_old.status.success());
    assert!(
        text(&only_old.stderr).contains(&new_id),
        "{}",
        text(&only_old.stderr)
    );
    let by_command = cli(
        &url,
        &["keys", "list"],
        &[("TOKEN_AUTHORITY_KEYS__KEK_COMMAND", &command)],
    );
    assert!(by_command.status.success(), "{}", text(&by_command.stderr));
}

/// Sessions waiting for an advisory lock (the keys lock) in this test's
/// database.
async fn advisory_lock_waiters(db: &sea_orm::DatabaseConnection) -> i64 {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ))
        .await
        .expect("pg_locks")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_key_added_while_the_rewrap_waits_for_the_keys_lock_is_rewrapped_too() {
    use sea_orm::{
        ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, Statement, TransactionTrait,
    };
    use token_authority::storage::entities::signing_key;
    use token_authority::storage::keys::KEYS_LOCK;

    let keks = tempfile::tempdir().unwrap();
    let (old, new) = (keks.path().join("old"), keks.path().join("new"));
    let old_id = write_kek(&old);
    let new_id = write_kek(&new);
    let server =
        TestServer::start_with(Backend::Postgres, |c| c.keys.kek_file = Some(old.clone())).await;
    let server = restart_with(server, &new, Some(&old)).await;

    // A replica adding a key holds the keys lock (as add_signing_key does).
    let db = sea_orm::Database::connect(server.config.database.url.as_str())
        .await
        .expect("connect");
    let adding = db.begin().await.expect("begin");
    adding
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_advisory_xact_lock({KEYS_LOCK})"),
        ))
        .await
        .expect("lock");

    let (store, keys, now) = (
        server.store.clone(),
        server.config.keys.clone(),
        server.authority.now(),
    );
    let rewrap = tokio::spawn(async move {
        keys_rewrap::rewrap(&store, &keys, &RewrapArgs::default(), now, "test").await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while advisory_lock_waiters(&db).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rewrap never waited for the keys lock"
        );
        assert!(
            !rewrap.is_finished(),
            "the rewrap ran without the keys lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The key the replica adds is sealed under the old KEK (the database
    // is all under it): the same key material under another kid.
    let existing = server.store.signing_keys().await.expect("keys").remove(0);
    let old_kek = Kek::new(
        &STANDARD
            .decode(std::fs::read_to_string(&old).unwrap())
            .unwrap(),
    )
    .unwrap();
    let pkcs8 = old_kek
        .open(
            &format!("signing_key/{}", existing.kid),
            &existing.private_key,
        )
        .expect("opens under old");
    let kid = "added-meanwhile";
    signing_key::Entity::insert(signing_key::ActiveModel {
        kid: Set(kid.into()),
        algorithm: Set(existing.algorithm.clone()),
        private_key: Set(old_kek.seal(&format!("signing_key/{kid}"), &pkcs8).unwrap()),
        public_key: Set(existing.public_key.clone()),
        created_at: Set(existing.created_at),
        retired_at: Set(Some(existing.activates_at)),
        activates_at: Set(existing.activates_at - 1),
        withdrawn_at: Set(None),
    })
    .exec_without_returning(&adding)
    .await
    .expect("insert");
    adding.commit().await.expect("commit");

    let report = rewrap.await.expect("task").expect("rewrap");
    assert_eq!((report.resealed.keys, report.resealed.secrets), (2, 1));
    assert_eq!(report.unused(), [old_id.as_str()]);
    assert_eq!(
        sealed_ids(&server.store).await,
        BTreeMap::from([(new_id, 3)])
    );
}

crate::on_both_backends!(
    replicas_move_to_a_new_kek_without_downtime,
    a_key_rotated_before_the_first_restart_stays_openable,
    a_kek_printed_by_a_command_opens_the_keys,
);
