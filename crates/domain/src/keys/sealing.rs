//! Secrets at rest: AES-256-GCM under a key-encryption key (KEK) that never
//! enters the database. A sealed value is
//! `"TAS1" ‖ KEK id (8) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`; the
//! additional data binds it to its label (e.g. `signing_key/<kid>`), so a
//! sealed value copied into another row does not open.
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"TAS1";
const ID_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
pub const KEK_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the key-encryption key must be {KEK_LEN} bytes, got {0}")]
    BadKek(usize),
    #[error(
        "sealed under key-encryption key {sealed}, but the configured key-encryption key is {configured}"
    )]
    WrongKek { sealed: String, configured: String },
    #[error(
        "sealed under key-encryption key {sealed}, which is not configured (configured: {held})"
    )]
    UnknownKek { sealed: String, held: String },
    #[error("sealed value is corrupt or was tampered with")]
    Corrupt,
    #[error("the system random number generator failed")]
    Random,
}

pub struct Kek {
    key: LessSafeKey,
    id: [u8; ID_LEN],
    rng: SystemRandom,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("id", &self.id()).finish()
    }
}

impl Kek {
    pub fn new(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != KEK_LEN {
            return Err(SealError::BadKek(bytes.len()));
        }
        let key =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadKek(bytes.len()))?;
        let mut fingerprint = ring::digest::Context::new(&ring::digest::SHA256);
        fingerprint.update(b"token-authority/kek-id/v1");
        fingerprint.update(bytes);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&fingerprint.finish().as_ref()[..ID_LEN]);
        Ok(Self {
            key: LessSafeKey::new(key),
            id,
            rng: SystemRandom::new(),
        })
    }

    /// 32 fresh random bytes for a new KEK.
    pub fn random_bytes() -> Result<Zeroizing<[u8; KEK_LEN]>, SealError> {
        let mut bytes = Zeroizing::new([0u8; KEK_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| SealError::Random)?;
        Ok(bytes)
    }

    /// A public fingerprint of the KEK, safe to log: tells which KEK sealed what.
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    pub fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&self.id, label)),
                &mut body,
            )
            .map_err(|_| SealError::Corrupt)?;
        out.extend_from_slice(&body);
        body.iter_mut().for_each(|b| *b = 0);
        Ok(out)
    }

    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if !is_sealed(sealed) {
            return Err(SealError::Corrupt);
        }
        let id = &sealed[MAGIC.len()..MAGIC.len() + ID_LEN];
        if id != self.id {
            return Err(SealError::WrongKek {
                sealed: hex(id),
                configured: self.id(),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[MAGIC.len() + ID_LEN..HEADER_LEN]);
        let mut body = Zeroizing::new(sealed[HEADER_LEN..].to_vec());
        let plaintext_len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&self.id, label)),
                body.as_mut_slice(),
            )
            .map_err(|_| SealError::Corrupt)?
            .len();
        body.truncate(plaintext_len);
        Ok(body)
    }
}

/// Whether `blob` has the sealed layout (as opposed to a plaintext value
/// written by a version before sealing existed).
pub fn is_sealed(blob: &[u8]) -> bool {
    blob.len() >= HEADER_LEN + TAG_LEN && blob.starts_with(MAGIC)
}

/// The id of the KEK a sealed value was sealed under.
pub fn sealed_by(blob: &[u8]) -> Option<String> {
    is_sealed(blob).then(|| hex(&blob[MAGIC.len()..MAGIC.len() + ID_LEN]))
}

fn aad(id: &[u8], label: &str) -> Vec<u8> {
    [MAGIC.as_slice(), id, label.as_bytes()].concat()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> Kek {
        Kek::new(&[byte; KEK_LEN]).unwrap()
    }

    #[test]
    fn sealed_value_opens_under_its_label_only() {
        let k = kek(1);
        let sealed = k.seal("signing_key/a", b"private").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        assert_eq!(
            k.open("signing_key/a", &sealed).unwrap().as_slice(),
            b"private"
        );
        assert!(matches!(
            k.open("signing_key/b", &sealed),
            Err(SealError::Corrupt)
        ));
    }

    #[test]
    fn another_kek_is_named_not_guessed() {
        let sealed = kek(1).seal("x", b"secret").unwrap();
        match kek(2).open("x", &sealed) {
            Err(SealError::WrongKek { sealed, configured }) => {
                assert_eq!(sealed, kek(1).id());
                assert_eq!(configured, kek(2).id());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let k = kek(1);
        let mut sealed = k.seal("x", b"secret").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(k.open("x", &sealed), Err(SealError::Corrupt)));
        assert!(k.open("x", b"TAS1").is_err());
        assert!(Kek::new(&[0; 16]).is_err());
    }
}
