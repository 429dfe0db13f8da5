//! Secrets sealed at rest: a credential devmesh must use again (a tool's token, an
//! upstream's client secret) is stored only as a [`Sealed`] text, never in clear.
//!
//! - **Cipher**: ChaCha20-Poly1305 (RFC 8439) with a random 96-bit nonce per value.
//! - **Keys**: one key per organization, derived with HKDF-SHA256 (RFC 5869) from the
//!   operator's master key (`secrets.master_key`, 32 bytes in base64) with the
//!   organization's id in `info`: a value sealed for one organization cannot be opened
//!   as another's.
//! - **Bound to its place**: the caller names what the value is (`"tool:<id>:auth"`), as
//!   associated data; a sealed value copied to another row or field does not open.
//! - **Key versions**: each value records the id of the master key that sealed it (the
//!   first 8 bytes of SHA-256 over the key, in hex), so `devmesh secrets rotate` can
//!   re-seal values under a new master key while the old one is still configured in
//!   `secrets.previous_master_keys`.
//!
//! The text form is `dmsealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`.
//! Without a master key nothing can be sealed: [`SealError::NoMasterKey`] says how to set
//! one. A key is never generated silently, since a lost key loses every sealed value.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use crate::config::SecretsConfig;

const PREFIX: &str = "dmsealed:v1:";
const NONCE_LEN: usize = 12;
const HKDF_INFO: &[u8] = b"devmesh organization key v1\0";

/// Why a value could not be sealed or opened. None of them carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "no master key is configured, so credentials cannot be stored: set secrets.master_key \
         (or DEVMESH_SECRETS__MASTER_KEY) to 32 random bytes in base64, for example the output \
         of `openssl rand -base64 32`, and keep it safe: values sealed under it cannot be read without it"
    )]
    NoMasterKey,
    #[error(
        "the value was sealed under master key {0}, which is not configured (neither \
         secrets.master_key nor secrets.previous_master_keys)"
    )]
    UnknownKey(String),
    #[error("the sealed value is damaged or belongs elsewhere: it does not open")]
    Corrupt,
}

/// A master key and its id.
struct MasterKey {
    id: String,
    bytes: [u8; 32],
}

impl MasterKey {
    fn parse(key: &str, text: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| format!("{key} is not base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|v: Vec<u8>| format!("{key} holds {} bytes, not 32", v.len()))?;
        let digest = Sha256::digest(bytes);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { id, bytes })
    }

    fn cipher(&self, organization_id: &str) -> ChaCha20Poly1305 {
        let hkdf = Hkdf::<Sha256>::new(None, &self.bytes);
        let mut key = [0u8; 32];
        let info = [HKDF_INFO, organization_id.as_bytes()].concat();
        hkdf.expand(&info, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        ChaCha20Poly1305::new(&key.into())
    }
}

/// A sealed value as stored: `dmsealed:v1:<key id>:<data>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed(pub String);

impl Sealed {
    /// The id of the master key that sealed it; `None` for text that is not a sealed value.
    pub fn key_id(&self) -> Option<&str> {
        self.0
            .strip_prefix(PREFIX)?
            .split_once(':')
            .map(|(id, _)| id)
    }
}

/// Seals and opens values with the configured master keys. Cheap to share.
pub struct Sealer {
    current: Option<MasterKey>,
    previous: Vec<MasterKey>,
}

impl Sealer {
    /// The sealer of a configuration; an error names the key that is not a valid
    /// master key (checked when the configuration loads).
    pub fn from_config(config: &SecretsConfig) -> Result<Self, String> {
        let current = config
            .master_key
            .as_ref()
            .map(|k| MasterKey::parse("secrets.master_key", k.expose()))
            .transpose()?;
        let previous = config
            .previous_master_keys
            .iter()
            .map(|k| MasterKey::parse("secrets.previous_master_keys", k.expose()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { current, previous })
    }

    /// Whether values can be sealed (a master key is configured).
    pub fn can_seal(&self) -> bool {
        self.current.is_some()
    }

    /// The current master key's id, as sealed values record it.
    pub fn current_key_id(&self) -> Option<&str> {
        self.current.as_ref().map(|k| k.id.as_str())
    }

    /// Seals `plaintext` for `organization_id`, bound to `purpose` (what and where the
    /// value is, such as `"tool:<id>:auth"`).
    pub fn seal(
        &self,
        organization_id: &str,
        purpose: &str,
        plaintext: &[u8],
    ) -> Result<Sealed, SealError> {
        let key = self.current.as_ref().ok_or(SealError::NoMasterKey)?;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let sealed = key
            .cipher(organization_id)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)?;
        let mut data = nonce_bytes.to_vec();
        data.extend_from_slice(&sealed);
        Ok(Sealed(format!(
            "{PREFIX}{}:{}",
            key.id,
            URL_SAFE_NO_PAD.encode(data)
        )))
    }

    /// Opens a value sealed for `organization_id` and `purpose`.
    pub fn open(
        &self,
        organization_id: &str,
        purpose: &str,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, SealError> {
        let rest = sealed.0.strip_prefix(PREFIX).ok_or(SealError::Corrupt)?;
        let (id, data) = rest.split_once(':').ok_or(SealError::Corrupt)?;
        let key = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let data = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| SealError::Corrupt)?;
        if data.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, ciphertext) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| SealError::Corrupt)?;
        key.cipher(organization_id)
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)
    }

    /// Opens a value and seals it again under the current master key; `None` when it is
    /// sealed under the current key already.
    pub fn reseal(
        &self,
        organization_id: &str,
        purpose: &str,
        sealed: &Sealed,
    ) -> Result<Option<Sealed>, SealError> {
        let current = self.current_key_id().ok_or(SealError::NoMasterKey)?;
        if sealed.key_id() == Some(current) {
            return Ok(None);
        }
        let plain = self.open(organization_id, purpose, sealed)?;
        self.seal(organization_id, purpose, &plain).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretString;

    fn key(byte: u8) -> SecretString {
        SecretString::new(STANDARD.encode([byte; 32]))
    }

    fn sealer(current: Option<u8>, previous: &[u8]) -> Sealer {
        Sealer::from_config(&SecretsConfig {
            master_key: current.map(key),
            previous_master_keys: previous.iter().map(|b| key(*b)).collect(),
        })
        .unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_organization_and_purpose() {
        let s = sealer(Some(1), &[]);
        let sealed = s.seal("org-a", "tool:1:auth", b"ghp_secret").unwrap();
        assert!(!sealed.0.contains("ghp_secret"));
        assert_eq!(
            s.open("org-a", "tool:1:auth", &sealed).unwrap(),
            b"ghp_secret"
        );
        assert_eq!(
            s.open("org-b", "tool:1:auth", &sealed),
            Err(SealError::Corrupt)
        );
        assert_eq!(
            s.open("org-a", "tool:2:auth", &sealed),
            Err(SealError::Corrupt)
        );
        // Two seals of one value differ (a fresh nonce each time).
        assert_ne!(
            sealed,
            s.seal("org-a", "tool:1:auth", b"ghp_secret").unwrap()
        );
    }

    #[test]
    fn damaged_values_and_missing_keys_are_named() {
        let s = sealer(Some(1), &[]);
        let sealed = s.seal("org", "p", b"x").unwrap();
        let mut damaged = sealed.0.clone();
        let last = damaged.pop().unwrap();
        damaged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            s.open("org", "p", &Sealed(damaged)),
            Err(SealError::Corrupt)
        );
        assert_eq!(
            s.open("org", "p", &Sealed("plain".into())),
            Err(SealError::Corrupt)
        );
        assert_eq!(
            s.open(
                "org",
                "p",
                &Sealed(format!("{PREFIX}{}:", sealed.key_id().unwrap()))
            ),
            Err(SealError::Corrupt)
        );
        let other = sealer(Some(2), &[]);
        assert!(matches!(
            other.open("org", "p", &sealed),
            Err(SealError::UnknownKey(_))
        ));
        let none = sealer(None, &[]);
        assert_eq!(none.seal("org", "p", b"x"), Err(SealError::NoMasterKey));
        assert!(
            SealError::NoMasterKey
                .to_string()
                .contains("secrets.master_key")
        );
    }

    #[test]
    fn rotation_reseals_under_the_new_key_while_the_old_one_is_configured() {
        let old = sealer(Some(1), &[]);
        let sealed = old.seal("org", "p", b"token").unwrap();
        let rotated = sealer(Some(2), &[1]);
        let resealed = rotated.reseal("org", "p", &sealed).unwrap().unwrap();
        assert_eq!(resealed.key_id(), rotated.current_key_id());
        assert_ne!(resealed.key_id(), sealed.key_id());
        assert_eq!(rotated.open("org", "p", &resealed).unwrap(), b"token");
        assert_eq!(rotated.reseal("org", "p", &resealed).unwrap(), None);
        // Once the old key is dropped, only re-sealed values open.
        let new_only = sealer(Some(2), &[]);
        assert!(new_only.open("org", "p", &resealed).is_ok());
        assert!(matches!(
            new_only.open("org", "p", &sealed),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        let bad = |text: &str| {
            Sealer::from_config(&SecretsConfig {
                master_key: Some(SecretString::new(text)),
                previous_master_keys: vec![],
            })
            .err()
            .unwrap()
        };
        assert!(bad("not base64!").contains("not base64"));
        assert!(bad(&STANDARD.encode([0u8; 16])).contains("16 bytes, not 32"));
    }
}
