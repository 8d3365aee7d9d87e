//! The console's keyed hashes and the random secrets and codes it hands out.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{CODE_DIGITS, CodeChannel};
use crate::Result;

/// The key of the codes' and identifiers' hashes, derived from the data key.
#[derive(Clone)]
pub struct ConsoleKey([u8; 32]);

impl std::fmt::Debug for ConsoleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleKey(<redacted>)")
    }
}

impl ConsoleKey {
    pub fn from_data_key(data_key_base64: &str) -> Result<Self> {
        Ok(Self(crate::crypto::derive_key(
            data_key_base64,
            b"sanyu-console-sign-in-v1",
        )?))
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = crate::crypto::hmac_sha256(&self.0);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn hex(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    pub(super) fn code_hash(&self, challenge: Uuid, code: &str) -> String {
        self.hex(&[b"code", challenge.as_bytes(), code.as_bytes()])
    }

    pub(super) fn code_matches(&self, challenge: Uuid, code: &str, stored: &str) -> bool {
        let Ok(stored) = hex::decode(stored) else {
            return false;
        };
        self.mac(&[b"code", challenge.as_bytes(), code.as_bytes()])
            .verify_slice(&stored)
            .is_ok()
    }

    pub(super) fn link_hash(&self, token: &str) -> String {
        self.hex(&[b"link", token.as_bytes()])
    }

    pub(super) fn identifier_hash(&self, identifier: &str) -> String {
        self.hex(&[b"identifier", normalize(identifier).as_bytes()])
    }

    /// The keyed hash of the address a challenge's code went to.
    pub(super) fn sent_to_hash(
        &self,
        challenge: Uuid,
        channel: CodeChannel,
        address: &str,
    ) -> String {
        self.hex(&[
            b"sent-to",
            challenge.as_bytes(),
            channel.as_str().as_bytes(),
            address.trim().as_bytes(),
        ])
    }
}

fn normalize(identifier: &str) -> String {
    identifier.trim().to_lowercase()
}

pub(super) fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(super) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn random_code() -> String {
    let n: u32 = rand::rng().random_range(0..10u32.pow(CODE_DIGITS as u32));
    format!("{n:0width$}", width = CODE_DIGITS)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn key() -> ConsoleKey {
        ConsoleKey::from_data_key(&STANDARD.encode([7u8; 32])).expect("key")
    }

    #[test]
    fn a_code_hash_is_bound_to_its_challenge_and_code() {
        let k = key();
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let h = k.code_hash(a, "123456");
        assert!(k.code_matches(a, "123456", &h));
        assert!(!k.code_matches(a, "123457", &h));
        assert!(!k.code_matches(b, "123456", &h));
        assert!(!h.contains("123456"));
    }

    #[test]
    fn codes_have_six_digits() {
        for _ in 0..200 {
            let c = random_code();
            assert_eq!(c.len(), CODE_DIGITS);
            assert!(c.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn a_link_hash_is_keyed_and_holds_no_token() {
        let k = key();
        let other = ConsoleKey::from_data_key(&STANDARD.encode([8u8; 32])).expect("key");
        let token = random_secret();
        assert_eq!(token.len(), 43);
        assert_eq!(k.link_hash(&token), k.link_hash(&token));
        assert_ne!(k.link_hash(&token), other.link_hash(&token));
        assert_ne!(k.link_hash(&token), k.identifier_hash(&token));
        assert!(!k.link_hash(&token).contains(&token));
    }

    #[test]
    fn identifiers_hash_without_case_or_spaces() {
        let k = key();
        assert_eq!(
            k.identifier_hash(" Zhang@School.cn "),
            k.identifier_hash("zhang@school.cn")
        );
    }
}
