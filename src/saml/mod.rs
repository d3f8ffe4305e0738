//! Upstream SAML 2.0 service provider: IdP metadata, AuthnRequest, SP metadata, response validation.
//!
//! Knows XML and samael; nothing of actix or diesel. Every check the broker adds on top of samael
//! (see SAML-NOTES in the design folder) lives here and returns a stable reason code.

mod decrypt;
mod logout;
mod metadata;
mod policy;
mod redirect;
mod request;
mod sign;
mod validate;
pub(crate) mod xml;

#[cfg(test)]
mod fuzz_seeds;
#[cfg(test)]
mod logout_tests;
#[cfg(test)]
mod tests;

pub use decrypt::{encrypt_for_tests, DecryptionKey};
pub use logout::{
    logout_request, logout_response, verify_logout_request, verify_logout_response, Inbound,
    LogoutRequestOut, LogoutSubject, Outbound, VerifiedLogoutRequest, VerifiedLogoutResponse,
    STATUS_PARTIAL_LOGOUT, STATUS_REQUESTER, STATUS_RESPONDER, STATUS_SUCCESS,
};
pub use metadata::{parse_idp_metadata, sp_metadata_xml};
pub(crate) use redirect::encode_query;
pub use request::{authn_request, authn_request_redirect};
pub(crate) use sign::signature_template;
pub use sign::{GeneratedSpKey, SpSigningKey};
pub(crate) use validate::xmlsec_lock;
pub use validate::{validate_post_response, validate_response_xml};

use chrono::{DateTime, Duration, Utc};

/// Where the IdP wants AuthnRequests sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsoBinding {
    Redirect,
    Post,
}

/// What the broker trusts about one upstream IdP, read from its metadata file.
#[derive(Debug, Clone)]
pub struct IdpMetadata {
    pub entity_id: String,
    pub sso_url: String,
    pub sso_binding: SsoBinding,
    /// DER of every signing certificate (KeyDescriptor use="signing" or no use).
    pub signing_certs: Vec<Vec<u8>>,
    /// The IdP's metadata says `WantAuthnRequestsSigned="true"`.
    pub want_authn_requests_signed: bool,
    /// The IdP's SingleLogoutService (HTTP-Redirect preferred, else HTTP-POST), if it has one.
    pub slo: Option<SloEndpoint>,
}

/// Where the IdP takes LogoutRequests (`url`) and LogoutResponses (`response_url`: the
/// metadata's ResponseLocation, else Location), over one binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SloEndpoint {
    pub binding: SsoBinding,
    pub url: String,
    pub response_url: String,
}

/// One connection's SP-side settings: everything response validation needs.
#[derive(Debug, Clone)]
pub struct SpSettings {
    pub entity_id: String,
    pub acs_url: String,
    pub idp: IdpMetadata,
    pub allow_sha1: bool,
    pub clock_skew: Duration,
    /// Maximum size of the decoded XML document in bytes.
    pub max_response_bytes: usize,
    /// AuthnContextClassRef values the AuthnRequest asks for (empty: none requested).
    pub requested_authn_context: Vec<String>,
    /// The SP's keys for EncryptedAssertion, current first (more than one during a rollover).
    pub decryption_keys: Vec<DecryptionKey>,
    /// DER of the certificate SP metadata advertises for encryption.
    pub encryption_cert: Option<Vec<u8>>,
    /// Sign AuthnRequests (the connection or the IdP metadata asks for it).
    pub sign_authn_requests: bool,
    /// The key AuthnRequests are signed with: configured, or generated and stored at start.
    /// Logout messages are signed with it too.
    pub signing_key: Option<SpSigningKey>,
    /// Our SingleLogoutService URL (`<issuer>/saml/<id>/slo`): the Destination inbound logout
    /// messages must name. Empty: single logout is off for the connection (not in SP metadata).
    pub slo_url: String,
}

/// The AuthnRequest, ready to send over HTTP-Redirect.
#[derive(Debug, Clone)]
pub struct AuthnRedirect {
    /// The AuthnRequest ID, kept in the login transaction and matched against InResponseTo.
    pub request_id: String,
    /// The full URL to redirect the browser to (SAMLRequest + RelayState).
    pub url: String,
}

/// How the browser is sent to the IdP with the AuthnRequest.
#[derive(Debug, Clone)]
pub enum AuthnStart {
    Redirect(AuthnRedirect),
    /// An auto-submitting form posting `SAMLRequest` and `RelayState` to `url`.
    Post {
        request_id: String,
        url: String,
        saml_request: String,
        relay_state: String,
    },
}

impl AuthnStart {
    pub fn request_id(&self) -> &str {
        match self {
            AuthnStart::Redirect(r) => &r.request_id,
            AuthnStart::Post { request_id, .. } => request_id,
        }
    }
}

/// What a fully validated response asserts about the user. Every field was covered by a
/// verified signature from a pinned certificate.
#[derive(Debug, Clone)]
pub struct ValidatedAssertion {
    pub assertion_id: String,
    pub issuer: String,
    pub in_response_to: Option<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    /// The NameID's NameQualifier and SPNameQualifier, as asserted (single logout sends them
    /// back: SAML core 3.3.4 matches a NameID with its qualifiers).
    pub name_qualifier: Option<String>,
    pub sp_name_qualifier: Option<String>,
    pub session_index: Option<String>,
    pub authn_instant: Option<DateTime<Utc>>,
    pub authn_context_class: Option<String>,
    /// The latest time this assertion can still be presented; the replay cache keeps its ID
    /// until then. This is the earliest NotOnOrAfter (Conditions, bearer confirmation) plus the
    /// clock skew, because validation accepts it that long.
    pub valid_until: DateTime<Utc>,
    /// Attribute Name → values, in document order. FriendlyName is recorded too when present.
    pub attributes: Vec<SamlAttribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlAttribute {
    pub name: String,
    pub friendly_name: Option<String>,
    pub values: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("metadata: {0}")]
    Metadata(String),
    #[error("rejected: {reason}: {detail}")]
    Rejected { reason: Reason, detail: String },
}

/// Stable reason codes for refused responses (audit rows, logs, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TooLarge,
    BadEncoding,
    Malformed,
    DtdForbidden,
    NotAResponse,
    StatusNotSuccess,
    NoAssertion,
    MultipleAssertions,
    EncryptedUnsupported,
    DecryptionFailed,
    NoTrustedKey,
    SignatureMissing,
    SignaturePolicy,
    AlgorithmNotAllowed,
    SignatureInvalid,
    IssuerMismatch,
    AudienceMismatch,
    RecipientMismatch,
    DestinationMismatch,
    Expired,
    NotYetValid,
    MissingTimeBounds,
    InResponseToMismatch,
    NameIdInvalid,
    /// A logout endpoint got something other than a LogoutRequest / LogoutResponse.
    NotALogoutMessage,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::BadEncoding => "bad_encoding",
            Reason::Malformed => "malformed_xml",
            Reason::DtdForbidden => "dtd_forbidden",
            Reason::NotAResponse => "not_a_response",
            Reason::StatusNotSuccess => "status_not_success",
            Reason::NoAssertion => "no_assertion",
            Reason::MultipleAssertions => "multiple_assertions",
            Reason::EncryptedUnsupported => "encrypted_assertion_unsupported",
            Reason::DecryptionFailed => "decryption_failed",
            Reason::NoTrustedKey => "no_trusted_key",
            Reason::SignatureMissing => "signature_missing",
            Reason::SignaturePolicy => "signature_policy",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::RecipientMismatch => "recipient_mismatch",
            Reason::DestinationMismatch => "destination_mismatch",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::MissingTimeBounds => "missing_time_bounds",
            Reason::InResponseToMismatch => "in_response_to_mismatch",
            Reason::NameIdInvalid => "name_id_invalid",
            Reason::NotALogoutMessage => "not_a_logout_message",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl SamlError {
    pub fn reason(&self) -> Option<Reason> {
        match self {
            SamlError::Rejected { reason, .. } => Some(*reason),
            SamlError::Metadata(_) => None,
        }
    }
}

pub(crate) fn reject(reason: Reason, detail: impl Into<String>) -> SamlError {
    // Details quote attacker-controlled text (unsigned status values, parser messages): escape
    // control characters so nothing can forge a log line or a report line.
    let detail: String = detail
        .into()
        .chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect();
    SamlError::Rejected { reason, detail }
}
