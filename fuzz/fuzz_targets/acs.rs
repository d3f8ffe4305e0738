//! Fuzz target over the ACS validation entry point: a `SAMLResponse` form value in, a verdict out.
//!
//! An input whose first non-blank byte is `<` (or a UTF-8 BOM) is taken as the decoded XML
//! document and base64-encoded before it goes in, so the fuzzer mutates XML structure instead
//! of base64 text; anything else is passed as the form value itself (base64 edge cases). Either
//! way the call is `validate_post_response`, the function the ACS handler calls.
//!
//! Settings and clock are fixed and match the seeds that `fuzz_seeds` writes (see README), so
//! the validly signed seeds are accepted and the fuzzer starts from inputs that reach every
//! stage. Besides crashes, the target checks one property: an accepted response names only a
//! user and attribute values that the seed generator signed. Anything else is a signature bypass
//! and aborts like a crash.

#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use libfuzzer_sys::fuzz_target;
use ssobroker::saml::{validate_post_response, DecryptionKey, IdpMetadata, SpSettings, SsoBinding};

// Must agree with src/saml/fuzz_seeds.rs, which signs the seeds.
const SP_ENTITY: &str = "https://broker.example/saml/fuzz/metadata";
const ACS: &str = "https://broker.example/saml/fuzz/acs";
const IDP_ENTITY: &str = "https://idp.example/fuzz";
const IDP_SSO: &str = "https://idp.example/fuzz/sso";
/// 2024-05-20T12:00:00Z, the seeds' issue instant.
const NOW_UNIX: i64 = 1_716_206_400;
/// The only NameIDs and attribute values the seed generator ever signs.
const SIGNED_NAME_IDS: &[&str] = &["alice@example.com", "o'brien&co <x>@example.com", "bob"];
const SIGNED_VALUES: &[&str] = &["alice@example.com", "Engineering", "IT Admins", "bob@example.com"];

/// The dev IdP certificate the seeds were signed with (public; the key is not kept).
const IDP_CERT_DER: &[u8] = include_bytes!("../../tests/fixtures/fuzz-keys/idp-cert.der");
/// The SP key the encrypted seeds are encrypted to. Generated for fuzzing, used nowhere else.
const SP_KEY_PEM: &[u8] = include_bytes!("../../tests/fixtures/fuzz-keys/sp-key.pem");

fn settings() -> &'static SpSettings {
    static SP: OnceLock<SpSettings> = OnceLock::new();
    SP.get_or_init(|| SpSettings {
        entity_id: SP_ENTITY.into(),
        acs_url: ACS.into(),
        idp: IdpMetadata {
            entity_id: IDP_ENTITY.into(),
            sso_url: IDP_SSO.into(),
            sso_binding: SsoBinding::Redirect,
            signing_certs: vec![IDP_CERT_DER.to_vec()],
            want_authn_requests_signed: false,
            slo: None,
        },
        // The wider configuration: with SHA-1 allowed, samael's own algorithm allow-list is off
        // and the broker's policy module is the only one.
        allow_sha1: true,
        clock_skew: Duration::seconds(60),
        max_response_bytes: 256 * 1024,
        requested_authn_context: vec![],
        // Encrypted seeds include an unsigned Response around an encrypted, signed Assertion:
        // decryption then runs before any signature check, on whatever the fuzzer made of it.
        decryption_keys: vec![DecryptionKey::from_pem(SP_KEY_PEM).expect("tests/fixtures/fuzz-keys/sp-key.pem")],
        encryption_cert: None,
        sign_authn_requests: false,
        signing_key: None,
        slo_url: String::new(),
    })
}

fn looks_like_xml(data: &[u8]) -> bool {
    data.starts_with(b"\xef\xbb\xbf") || data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

fuzz_target!(|data: &[u8]| {
    let form_value: Cow<'_, str> = if looks_like_xml(data) {
        Cow::Owned(base64::engine::general_purpose::STANDARD.encode(data))
    } else {
        // Form values reach the handler as UTF-8 text; other bytes never get this far.
        match std::str::from_utf8(data) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => return,
        }
    };
    let now = DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(NOW_UNIX);
    if let Ok(accepted) = validate_post_response(settings(), &form_value, now) {
        assert!(
            SIGNED_NAME_IDS.contains(&accepted.name_id.as_str()),
            "accepted an unsigned NameID: {accepted:?}"
        );
        for attribute in &accepted.attributes {
            for value in &attribute.values {
                assert!(SIGNED_VALUES.contains(&value.as_str()), "accepted an unsigned value: {accepted:?}");
            }
        }
    }
});
