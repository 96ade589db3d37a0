//! Where the key-encryption keys (KEK) come from. The current KEK: the
//! `TOKEN_AUTHORITY_KEK` environment variable (base64 of 32 bytes), else
//! the output of `keys.kek_command`, else the file `keys.kek_file`. The
//! previous KEK (accepted while the KEK changes, see `kek_ring`):
//! `TOKEN_AUTHORITY_PREVIOUS_KEK`, else `keys.previous_kek_command`, else
//! `keys.previous_kek_file`. A file is generated (mode 0600) only for the
//! current KEK and only when the database holds nothing sealed yet, so a
//! KEK can never be silently replaced.
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use zeroize::Zeroizing;

use super::{kek_command, Kek};
use crate::error::{Error, Result};

pub const KEK_ENV: &str = "TOKEN_AUTHORITY_KEK";
pub const PREVIOUS_KEK_ENV: &str = "TOKEN_AUTHORITY_PREVIOUS_KEK";

/// The `keys` settings that say where the KEKs come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KekSources {
    pub file: Option<PathBuf>,
    pub command: Option<String>,
    pub previous_file: Option<PathBuf>,
    pub previous_command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekOrigin {
    Environment(&'static str),
    /// Printed by the configured command (not shown: it may name secrets).
    Command,
    File(PathBuf),
    /// Written on this start: the database had no sealed secret yet.
    Generated(PathBuf),
}

/// Whether a missing current KEK file may be generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing<'a> {
    /// Yes: the database holds nothing sealed.
    Generate,
    /// No; the database's values are sealed under this KEK, if known.
    Refuse(Option<&'a str>),
}

/// Loads the current KEK.
pub async fn load(sources: &KekSources, if_missing: IfMissing<'_>) -> Result<(Kek, KekOrigin)> {
    if let Some(kek) = from_env(KEK_ENV)? {
        if sources.command.is_some() {
            tracing::warn!("keys.kek_command is ignored: {KEK_ENV} is set");
        }
        return Ok((kek, KekOrigin::Environment(KEK_ENV)));
    }
    if let Some(command) = &sources.command {
        let kek =
            kek_command::run("keys.kek_command", command, kek_command::COMMAND_TIMEOUT).await?;
        return Ok((kek, KekOrigin::Command));
    }
    let missing = || {
        let sealed = match if_missing {
            IfMissing::Refuse(Some(id)) => {
                format!(" (the database's keys are sealed under KEK {id})")
            }
            _ => String::new(),
        };
        Error::KeyStore(format!(
            "no key-encryption key: set {KEK_ENV}, keys.kek_command or keys.kek_file{sealed}"
        ))
    };
    let path = sources.file.as_deref().ok_or_else(missing)?;
    match read_file(path)? {
        Some(kek) => Ok((kek, KekOrigin::File(path.to_owned()))),
        None if if_missing == IfMissing::Generate => {
            let kek = generate_file(path)?;
            Ok((kek, KekOrigin::Generated(path.to_owned())))
        }
        None => Err(missing()),
    }
}

/// Loads the previous KEK, if one is configured; never generates one.
pub async fn load_previous(sources: &KekSources) -> Result<Option<(Kek, KekOrigin)>> {
    if let Some(kek) = from_env(PREVIOUS_KEK_ENV)? {
        if sources.previous_command.is_some() || sources.previous_file.is_some() {
            tracing::warn!("keys.previous_kek_command and keys.previous_kek_file are ignored: {PREVIOUS_KEK_ENV} is set");
        }
        return Ok(Some((kek, KekOrigin::Environment(PREVIOUS_KEK_ENV))));
    }
    if let Some(command) = &sources.previous_command {
        let setting = "keys.previous_kek_command";
        let kek = kek_command::run(setting, command, kek_command::COMMAND_TIMEOUT).await?;
        return Ok(Some((kek, KekOrigin::Command)));
    }
    let Some(path) = sources.previous_file.as_deref() else {
        return Ok(None);
    };
    match read_file(path)? {
        Some(kek) => Ok(Some((kek, KekOrigin::File(path.to_owned())))),
        None => Err(Error::KeyStore(format!(
            "keys.previous_kek_file {} does not exist",
            path.display()
        ))),
    }
}

fn from_env(name: &str) -> Result<Option<Kek>> {
    let Some(value) = std::env::var_os(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let value = Zeroizing::new(value.to_string_lossy().into_owned());
    decode(&value)
        .map(Some)
        .map_err(|e| Error::KeyStore(format!("{name}: {e}")))
}

/// The KEK in the file at `path`, or `None` if there is no such file.
pub fn read_file(path: &Path) -> Result<Option<Kek>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            warn_if_readable_by_others(path);
            decode(&text)
                .map(Some)
                .map_err(|e| Error::KeyStore(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::KeyStore(format!("reading {}: {e}", path.display()))),
    }
}

pub(super) fn decode(text: &str) -> std::result::Result<Kek, String> {
    let text = text.trim();
    let bytes = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
        .ok_or("is not base64")?;
    Kek::new(&bytes).map_err(|e| e.to_string())
}

fn generate_file(path: &Path) -> Result<Kek> {
    let failed = |e: std::io::Error| {
        Error::KeyStore(format!(
            "writing a new key-encryption key to {}: {e}",
            path.display()
        ))
    };
    let bytes = Kek::random_bytes().map_err(|e| Error::KeyStore(e.to_string()))?;
    let kek = Kek::new(bytes.as_ref()).map_err(|e| Error::KeyStore(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(failed)?;
    let encoded = Zeroizing::new(STANDARD.encode(bytes.as_ref()));
    file.write_all(encoded.as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .and_then(|_| file.sync_all())
        .map_err(failed)?;
    tracing::warn!(
        path = %path.display(),
        kek_id = %kek.id(),
        "generated a key-encryption key; back it up: without it the signing keys cannot be decrypted. \
         In production, provide {KEK_ENV} from a secret store instead"
    );
    Ok(kek)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "key-encryption key file is readable by other users; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    // These tests never set KEK_ENV (tests run in parallel in one process).

    fn file_source(path: &Path) -> KekSources {
        KekSources {
            file: Some(path.to_owned()),
            ..KekSources::default()
        }
    }

    #[tokio::test]
    async fn generates_once_then_reads_back_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let (first, origin) = load(&file_source(&path), IfMissing::Generate)
            .await
            .unwrap();
        assert_eq!(origin, KekOrigin::Generated(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, origin) = load(&file_source(&path), IfMissing::Generate)
            .await
            .unwrap();
        assert_eq!(origin, KekOrigin::File(path));
        assert_eq!(first.id(), second.id());
    }

    #[tokio::test]
    async fn never_generates_when_the_database_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let err = load(
            &file_source(&path),
            IfMissing::Refuse(Some("0123456789abcdef")),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("0123456789abcdef"), "{err}");
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let sources = file_source(&path);
        std::fs::write(&path, "not a key").unwrap();
        assert!(load(&sources, IfMissing::Generate).await.is_err());
        std::fs::write(&path, STANDARD.encode([7u8; 16])).unwrap();
        assert!(load(&sources, IfMissing::Generate).await.is_err());
    }

    #[tokio::test]
    async fn the_command_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kek");
        let printed = dir.path().join("printed");
        std::fs::write(&file, STANDARD.encode([1u8; 32])).unwrap();
        std::fs::write(&printed, STANDARD.encode([2u8; 32])).unwrap();
        let sources = KekSources {
            command: Some(format!("cat '{}'", printed.display())),
            ..file_source(&file)
        };
        let (kek, origin) = load(&sources, IfMissing::Generate).await.unwrap();
        assert_eq!(origin, KekOrigin::Command);
        assert_eq!(kek.id(), Kek::new(&[2u8; 32]).unwrap().id());
    }

    #[tokio::test]
    async fn a_previous_kek_is_optional_but_never_generated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old");
        assert!(load_previous(&KekSources::default())
            .await
            .unwrap()
            .is_none());
        let sources = KekSources {
            previous_file: Some(path.clone()),
            ..KekSources::default()
        };
        let err = load_previous(&sources).await.unwrap_err();
        assert!(err.to_string().contains("keys.previous_kek_file"), "{err}");
        assert!(!path.exists());
        std::fs::write(&path, STANDARD.encode([3u8; 32])).unwrap();
        let (kek, _) = load_previous(&sources).await.unwrap().unwrap();
        assert_eq!(kek.id(), Kek::new(&[3u8; 32]).unwrap().id());
    }
}
