//! Every log line of the in-process servers goes to a file when
//! `TA_TEST_LOG_DIR` is set (scripts/test.sh sets it), at the most verbose
//! level of our own code, so that scripts/check-test-logs.sh can prove that
//! no token, key or secret ever reaches a log.
use std::sync::Once;

static CAPTURE: Once = Once::new();

pub const LOG_DIR_VAR: &str = "TA_TEST_LOG_DIR";

/// The filter for everything logged during tests, ours and child processes'.
pub const FILTER: &str = "info,token_authority=trace";

pub fn capture() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    CAPTURE.call_once(|| {
        // The OTel bridge always, as in the binary: in-process servers'
        // RPC spans reach their own collectors through it.
        let file = std::env::var_os(LOG_DIR_VAR).map(|dir| {
            std::fs::create_dir_all(&dir).expect("log dir");
            let path = std::path::Path::new(&dir).join(format!("api-{}.log", std::process::id()));
            let file = std::fs::File::create(path).expect("log file");
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .with_filter(tracing_subscriber::EnvFilter::new(FILTER))
        });
        let _ = tracing_subscriber::registry()
            .with(token_authority::telemetry::otel_layer())
            .with(file)
            .try_init();
    });
}

/// Where a child process should write its log: the shared log directory
/// when capturing, else `fallback`.
pub fn child_log_path(name: &str, fallback: &std::path::Path) -> std::path::PathBuf {
    match std::env::var_os(LOG_DIR_VAR) {
        Some(dir) => {
            std::fs::create_dir_all(&dir).expect("log dir");
            std::path::Path::new(&dir).join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()))
        }
        None => fallback.to_owned(),
    }
}
