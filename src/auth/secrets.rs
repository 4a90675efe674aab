//! API keys and session tokens: random, URL-safe, shown once; only their SHA-256 is kept.
//! Keys carry 256 random bits, so a plain hash (no slow KDF) is what protects them at rest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every API key starts with, so that leaked keys are recognisable (secret scanners).
pub const KEY_PREFIX: &str = "mcpp_";
/// What every browser session token starts with.
pub const SESSION_PREFIX: &str = "mcps_";
/// Characters of a key kept in the clear to tell keys apart in listings.
const SHOWN: usize = KEY_PREFIX.len() + 6;

/// A new random secret: `prefix` + 32 random bytes, base64url without padding (43 chars).
pub fn generate(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The part of a key shown in listings (`mcpp_AbCdEf…`).
pub fn shown_prefix(key: &str) -> String {
    format!("{}…", key.chars().take(SHOWN).collect::<String>())
}

/// Compares in time independent of where the hashes differ.
pub fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `text` has the shape of a key (checked before hashing: bounds the work a request
/// with a huge header can cause).
pub fn looks_like(text: &str, prefix: &str) -> bool {
    text.len() == prefix.len() + 43
        && text.starts_with(prefix)
        && text[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_url_safe_and_carry_their_prefix() {
        let a = generate(KEY_PREFIX).expect("random");
        let b = generate(KEY_PREFIX).expect("random");
        assert_ne!(a, b);
        assert!(looks_like(&a, KEY_PREFIX), "{a}");
        assert_eq!(a.len(), 48);
        assert!(!looks_like(&a, SESSION_PREFIX));
        assert!(!looks_like(&format!("{a}x"), KEY_PREFIX));
    }

    #[test]
    fn hashes_compare_equal_only_for_the_same_key() {
        let key = generate(KEY_PREFIX).expect("random");
        assert!(same(&hash(&key), &hash(&key)));
        assert!(!same(&hash(&key), &hash("mcpp_other")));
        assert!(shown_prefix(&key).starts_with(&key[..11]));
        assert!(!shown_prefix(&key).contains(&key[11..]));
    }
}
