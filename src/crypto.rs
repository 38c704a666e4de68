//! Secrets: API tokens (random, stored as SHA-256 hashes) and integration API keys
//! (stored encrypted with XChaCha20-Poly1305, an AEAD, under a key from the environment).

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// The prefix of every API token, so leaked tokens are easy to recognise.
pub const TOKEN_PREFIX: &str = "iofold_";

/// The encryption key used outside production when none is configured. Public on purpose:
/// it protects nothing, and the server warns when it is used.
pub const DEVELOPMENT_KEY_HEX: &str = "6465762d6f6e6c792d696f666f6c642d6b65792d6e6f742d7365637265742121";

/// Fills a buffer from the operating system's random source.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// A new API token secret: the prefix and 32 random bytes in hex.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(random_bytes::<32>()))
}

/// The SHA-256 hash of a token, in hex: what `api_tokens.token_hash` stores.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// SHA-256 in hex of any text.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Encrypts and decrypts integration API keys.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// The stored form's version tag.
const SEALED_PREFIX: &str = "v1:";

impl SecretBox {
    /// A box for a 32-byte key given as 64 hex characters.
    pub fn from_hex(key_hex: &str) -> Result<Self, String> {
        let key = hex::decode(key_hex.trim()).map_err(|_| "must be 64 hexadecimal characters (32 bytes)".to_owned())?;
        if key.len() != 32 {
            return Err(format!("must be 32 bytes (64 hexadecimal characters), got {} bytes", key.len()));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| "invalid key length".to_owned())?;
        Ok(Self { cipher })
    }

    /// Encrypts a secret: `v1:` and hex of a random 24-byte nonce followed by the ciphertext.
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce_bytes = random_bytes::<24>();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let ciphertext = self
            .cipher
            .encrypt(nonce, plaintext.as_bytes())
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory input");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", hex::encode(out))
    }

    /// Decrypts what [`SecretBox::seal`] produced; `None` when it was sealed under another key
    /// or altered.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let bytes = hex::decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plaintext = self.cipher.decrypt(XNonce::from_slice(nonce), ciphertext).ok()?;
        String::from_utf8(plaintext).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_round_trip_and_resist_tampering() {
        let secret_box = SecretBox::from_hex(DEVELOPMENT_KEY_HEX).unwrap();
        let sealed = secret_box.seal("sk-lf-123");
        assert!(!sealed.contains("sk-lf-123"));
        assert_ne!(sealed, secret_box.seal("sk-lf-123"), "a fresh nonce every time");
        assert_eq!(secret_box.open(&sealed).as_deref(), Some("sk-lf-123"));
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(secret_box.open(&tampered), None);
        let other = SecretBox::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(other.open(&sealed), None);
        assert!(SecretBox::from_hex("abcd").is_err());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
