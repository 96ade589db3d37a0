//! A KEK printed by a command (`keys.kek_command`): Vault Agent, a cloud
//! KMS CLI, anything that writes the base64 key on stdout. Its stdout is
//! key material: never logged, never part of an error.
use std::process::Stdio;
use std::time::Duration;

use zeroize::Zeroizing;

use super::kek::decode;
use super::Kek;
use crate::error::{Error, Result};

/// How long a KEK command may run before the start is refused.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this much of the command's stderr goes into an error.
const STDERR_EXCERPT: usize = 200;

/// Runs `command` with `/bin/sh -c` and decodes its stdout as the KEK.
/// `setting` names where the command was configured, for errors.
pub async fn run(setting: &str, command: &str, timeout: Duration) -> Result<Kek> {
    let failed = |why: String| Error::KeyStore(format!("{setting} `{command}` {why}"));
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("could not be started: {e}")))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(failed(format!("failed: {e}"))),
        Err(_) => {
            return Err(failed(format!(
                "did not finish within {} ms (killed)",
                timeout.as_millis()
            )))
        }
    };
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(failed(format!(
            "{}{}",
            exit_status(output.status),
            stderr_excerpt(&output.stderr)
        )));
    }
    let text = std::str::from_utf8(&stdout)
        .map_err(|_| failed("printed something that is not a base64 key".into()))?;
    decode(text).map_err(|e| failed(format!("printed a value that {e}")))
}

fn exit_status(status: std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return format!("was killed by signal {signal}");
    }
    format!("failed ({status})")
}

fn stderr_excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return String::new();
    }
    let mut excerpt: String = text.chars().take(STDERR_EXCERPT).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    format!("; stderr: {excerpt}")
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    use super::*;

    const SETTING: &str = "keys.kek_command";

    fn key_file(dir: &tempfile::TempDir, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join("kek");
        std::fs::write(&path, STANDARD.encode(bytes)).unwrap();
        path
    }

    #[tokio::test]
    async fn the_key_is_what_the_command_prints() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(&dir, &[5; 32]);
        let command = format!("cat '{}'", path.display());
        let kek = run(SETTING, &command, COMMAND_TIMEOUT).await.unwrap();
        assert_eq!(kek.id(), Kek::new(&[5; 32]).unwrap().id());
    }

    #[tokio::test]
    async fn a_failing_command_is_named_with_its_status_and_stderr() {
        let command = "head -c 24 /dev/zero | tr '\\0' Q; echo permission denied >&2; exit 3";
        let err = run(SETTING, command, COMMAND_TIMEOUT).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(command), "{text}");
        assert!(text.contains("status 3"), "{text}");
        assert!(text.contains("permission denied"), "{text}");
        assert!(!text.contains("QQQQQQQQ"), "stdout leaked: {text}");
    }

    #[tokio::test]
    async fn a_long_stderr_is_cut_short() {
        let command = "head -c 5000 /dev/zero | tr '\\0' x >&2; exit 1";
        let err = run(SETTING, command, COMMAND_TIMEOUT).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("xxxx…"), "{text}");
        assert!(text.len() < 400, "{} chars", text.len());
    }

    #[tokio::test]
    async fn output_that_is_not_a_key_is_refused_without_echoing_it() {
        let cases = [
            "echo bm90LWEta2V5IQ== | base64 -d",
            "head -c 16 /dev/zero | base64",
            "true",
        ];
        for command in cases {
            let err = run(SETTING, command, COMMAND_TIMEOUT).await.unwrap_err();
            let text = err.to_string();
            assert!(text.contains(SETTING) && text.contains(command), "{text}");
            assert!(!text.contains("not-a-key!"), "{text}");
            assert!(!text.contains("AAAAAAAAAAAAAAAA"), "{text}");
        }
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_killed_at_the_timeout() {
        let started = std::time::Instant::now();
        let err = run(SETTING, "sleep 30", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("did not finish within 300 ms"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
