//! Secrets: client secret hashing (argon2id PHC), a redacting `Secret` newtype, random tokens for
//! codes and sessions, and the hash under which those tokens are stored.

use std::fmt;
use subtle::ConstantTimeEq;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::OidcError;

/// A secret value (client secret, refresh token, …). `Debug` is redacted so it cannot leak
/// through `{:?}` in a log line; no `PartialEq`, so nobody compares it with `==` (not
/// constant-time); no `Serialize`, so it is never echoed back by accident.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value; call sites that need it are few and easy to grep.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// argon2id PHC string for a client secret, with the crate's default (OWASP) parameters.
/// Costly by design (≈40 ms in release): call it off the async workers.
pub fn hash_client_secret(secret: &str) -> Result<String, OidcError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| OidcError::Internal(format!("argon2: {e}")))
}

/// Checks a presented secret against a stored PHC string. The parameters come from the PHC
/// string itself, so hashes made with other costs keep verifying. A malformed PHC string is a
/// refusal, never a pass. argon2's verifier compares the digests in constant time.
pub fn verify_client_secret(phc: &str, presented: &str) -> bool {
    if let Some(expected) = phc.strip_prefix(FAST_PREFIX) {
        return bool::from(token_hash(presented).as_bytes().ct_eq(expected.as_bytes()));
    }
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(presented.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    }
}

/// Stored form of a broker-generated secret: a plain SHA-256 suffices for 256 random bits
/// (nothing to brute-force), and keeps `/token` fast. Human-chosen secrets get argon2.
const FAST_PREFIX: &str = "sha256$";

/// Whether checking a secret against `stored` is deliberately slow (argon2). Such a check must
/// not hold a database connection, or a flood of wrong secrets would starve the pool.
pub fn secret_check_is_slow(stored: &str) -> bool {
    !stored.starts_with(FAST_PREFIX)
}

/// A new high-entropy client secret and its stored form.
pub fn generate_client_secret() -> (Secret, String) {
    let secret = random_token(32);
    let stored = format!("{FAST_PREFIX}{}", token_hash(&secret));
    (Secret::new(secret), stored)
}

/// Whether `stored` is a secret hash this broker can verify.
pub fn valid_secret_hash(stored: &str) -> bool {
    match stored.strip_prefix(FAST_PREFIX) {
        Some(hex) => hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        None => stored.starts_with("$argon2") && PasswordHash::new(stored).is_ok(),
    }
}

/// `bytes` bytes from the OS CSPRNG, base64url without padding: authorization codes, session
/// ids, refresh tokens. Use at least 32 bytes for anything that authorizes.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Whether `v` has the shape `random_token(bytes)` gives (that many bytes' worth of base64url
/// characters): a value sent back as one of our tokens that is anything else is not ours.
pub fn is_token(v: &str, bytes: usize) -> bool {
    v.len() == (bytes * 4).div_ceil(3)
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Hex SHA-256 of a token: the database key for codes and sessions, so a leaked table does not
/// hand out live credentials. A plain hash suffices because the tokens carry 256 random bits
/// (no dictionary to attack), and it keeps lookups indexable.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

// Tests may panic on a broken fixture; the deny is for production paths.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash_client_secret("s3cret with spaces").expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_client_secret(&phc, "s3cret with spaces"));
        assert!(!verify_client_secret(&phc, "s3cret with space"));
        assert!(!verify_client_secret(&phc, ""));
        // Salted: the same secret hashes differently each time.
        assert_ne!(phc, hash_client_secret("s3cret with spaces").expect("hash"));
    }

    #[test]
    fn malformed_phc_refuses() {
        assert!(!verify_client_secret("", ""));
        assert!(!verify_client_secret("plaintext", "plaintext"));
        assert!(!verify_client_secret("$argon2id$garbage", "x"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
        let parsed: Secret = serde_json::from_str("\"abc\"").expect("json");
        assert_eq!(parsed.expose(), "abc");
    }

    #[test]
    fn random_tokens() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, random_token(32));
        assert_eq!(random_token(0), "");
        assert!(is_token(&a, 32) && is_token(&random_token(16), 16));
        assert!(!is_token(&a, 16) && !is_token(&format!("\n{}", &a[1..]), 32) && !is_token(&a[1..], 32));
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

#[cfg(test)]
mod fast_secret_tests {
    use super::*;

    #[test]
    fn generated_secrets_verify_fast_and_exactly() {
        let (secret, stored) = generate_client_secret();
        assert!(stored.starts_with("sha256$") && valid_secret_hash(&stored));
        assert!(!secret_check_is_slow(&stored));
        assert!(secret_check_is_slow(&hash_client_secret("a human-chosen secret").unwrap()));
        assert!(verify_client_secret(&stored, secret.expose()));
        assert!(!verify_client_secret(&stored, "wrong"));
        assert!(!valid_secret_hash("sha256$zz"));
        assert!(!valid_secret_hash("$argon2id$…"));
    }
}
