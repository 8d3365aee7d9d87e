//! Sealing sensitive free text (narratives, notes) at rest with
//! ChaCha20-Poly1305 and a key from configuration.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Result, StoreError};

const NONCE_LEN: usize = 12;

/// The bytes of the data key, from its base64 in configuration.
fn decode_data_key(data_key_base64: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(data_key_base64.trim())
        .map_err(|e| StoreError::DataKey(format!("not base64: {e}")))
}

/// A key for one purpose, derived from the data key: SHA-256 of `label`
/// then the data key's bytes (the console's, the audit chain's and the
/// acknowledgement links' keys).
pub(crate) fn derive_key(data_key_base64: &str, label: &[u8]) -> Result<[u8; 32]> {
    let bytes = decode_data_key(data_key_base64)?;
    let mut hasher = Sha256::new();
    hasher.update(label);
    hasher.update(&bytes);
    Ok(hasher.finalize().into())
}

/// An HMAC-SHA256 under a derived key.
pub(crate) fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// Seals and opens text with the data key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    /// From the base64 of 32 random bytes.
    pub fn from_base64(key: &str) -> Result<Self> {
        let bytes = decode_data_key(key)?;
        if bytes.len() != 32 {
            return Err(StoreError::DataKey(format!(
                "expected 32 bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        })
    }

    /// A fresh random key, base64-encoded (for `sanyu dev` and tests).
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    pub fn seal(&self, plaintext: &str) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| StoreError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Unseal);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| StoreError::Unseal)?;
        String::from_utf8(plain).map_err(|_| StoreError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_with_the_same_key_only() {
        let a = Sealer::from_base64(&Sealer::generate_key()).expect("key");
        let b = Sealer::from_base64(&Sealer::generate_key()).expect("key");
        let sealed = a.seal("他最近常说不想活了").expect("seals");
        assert!(!String::from_utf8_lossy(&sealed).contains("不想活"));
        assert_eq!(a.open(&sealed).expect("opens"), "他最近常说不想活了");
        assert!(b.open(&sealed).is_err());
    }

    #[test]
    fn bad_keys_are_rejected() {
        assert!(Sealer::from_base64("not base64!").is_err());
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
    }
}
