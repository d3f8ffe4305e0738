//! PKCE (RFC 7636), S256 only: "plain" gives no protection once the challenge leaks, so the
//! broker never accepts it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// RFC 7636 §4.1: code_verifier = 43*128unreserved.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A syntactically valid S256 challenge: BASE64URL-no-pad of 32 bytes, i.e. 43 characters that
/// decode canonically (the last character carries 2 unused bits, which must be zero).
pub fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|bytes| bytes.len() == 32)
}

/// True when BASE64URL(SHA256(verifier)) equals the stored challenge. The comparison is
/// constant-time so a network observer cannot learn the challenge byte by byte.
pub fn verify_s256(challenge: &str, verifier: &str) -> bool {
    if !valid_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    // Lengths are public (always 43 for a computed value); ct_eq returns false on mismatch.
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

// Tests may panic on a broken fixture; the deny is for production paths.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert!(valid_challenge(CHALLENGE));
        assert!(verify_s256(CHALLENGE, VERIFIER));
        // openidconnect (the RP side) agrees.
        let pkce = openidconnect::PkceCodeChallenge::from_code_verifier_sha256(
            &openidconnect::PkceCodeVerifier::new(VERIFIER.into()),
        );
        assert_eq!(pkce.as_str(), CHALLENGE);
    }

    #[test]
    fn wrong_verifier_refused() {
        let mut other = VERIFIER.to_owned();
        other.replace_range(0..1, "e");
        assert!(!verify_s256(CHALLENGE, &other));
        // "plain" style: the challenge itself as verifier.
        assert!(!verify_s256(CHALLENGE, CHALLENGE));
        assert!(!verify_s256(CHALLENGE, ""));
    }

    #[test]
    fn verifier_syntax_enforced() {
        // Right hash, wrong syntax: too short / too long / forbidden characters.
        for v in
            ["a".repeat(42), "a".repeat(129), format!("{}+", "a".repeat(42)), format!("{} ", "a".repeat(43))]
        {
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
            assert!(!verify_s256(&challenge, &v), "{v:?}");
        }
        for v in ["a".repeat(43), "~._-".repeat(32)] {
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
            assert!(verify_s256(&challenge, &v), "{v:?}");
        }
    }

    #[test]
    fn challenge_syntax() {
        assert!(!valid_challenge(""));
        assert!(!valid_challenge(&CHALLENGE[..42]));
        assert!(!valid_challenge(&format!("{CHALLENGE}A")));
        assert!(!valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"), "not url-safe");
        assert!(!valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"), "trailing bits");
        assert!(!valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="));
    }
}
