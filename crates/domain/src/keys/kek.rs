//! Where the key-encryption key (KEK) comes from: the `TOKEN_AUTHORITY_KEK`
//! environment variable (base64 of 32 bytes), else the file
//! `keys.kek_file`. A file is generated (mode 0600) only when the database
//! holds nothing sealed yet, so a KEK can never be silently replaced.
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use zeroize::Zeroizing;

use super::Kek;
use crate::error::{Error, Result};

pub const KEK_ENV: &str = "TOKEN_AUTHORITY_KEK";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekOrigin {
    Environment,
    File(PathBuf),
    /// Written on this start: the database had no sealed secret yet.
    Generated(PathBuf),
}

/// Loads the KEK. `sealed_under` is the id of the KEK the database's
/// secrets are sealed under, if any: when set, nothing is generated.
pub fn load(file: Option<&Path>, sealed_under: Option<&str>) -> Result<(Kek, KekOrigin)> {
    if let Some(value) = std::env::var_os(KEK_ENV).filter(|v| !v.is_empty()) {
        let value = Zeroizing::new(value.to_string_lossy().into_owned());
        let kek = decode(&value).map_err(|e| Error::KeyStore(format!("{KEK_ENV}: {e}")))?;
        return Ok((kek, KekOrigin::Environment));
    }
    let missing = || {
        let sealed = sealed_under
            .map(|id| format!(" (the database's keys are sealed under KEK {id})"))
            .unwrap_or_default();
        Error::KeyStore(format!(
            "no key-encryption key: set {KEK_ENV} or keys.kek_file{sealed}"
        ))
    };
    let path = file.ok_or_else(missing)?;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            warn_if_readable_by_others(path);
            let kek =
                decode(&text).map_err(|e| Error::KeyStore(format!("{}: {e}", path.display())))?;
            Ok((kek, KekOrigin::File(path.to_owned())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && sealed_under.is_none() => {
            let kek = generate_file(path)?;
            Ok((kek, KekOrigin::Generated(path.to_owned())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
        Err(e) => Err(Error::KeyStore(format!("reading {}: {e}", path.display()))),
    }
}

fn decode(text: &str) -> std::result::Result<Kek, String> {
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

    #[test]
    fn generates_once_then_reads_back_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let (first, origin) = load(Some(&path), None).unwrap();
        assert_eq!(origin, KekOrigin::Generated(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, origin) = load(Some(&path), None).unwrap();
        assert_eq!(origin, KekOrigin::File(path));
        assert_eq!(first.id(), second.id());
    }

    #[test]
    fn never_generates_when_the_database_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let err = load(Some(&path), Some("0123456789abcdef")).unwrap_err();
        assert!(err.to_string().contains("0123456789abcdef"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        std::fs::write(&path, "not a key").unwrap();
        assert!(load(Some(&path), None).is_err());
        std::fs::write(&path, STANDARD.encode([7u8; 16])).unwrap();
        assert!(load(Some(&path), None).is_err());
    }
}
