//! Single logout messages: our signed LogoutRequest / LogoutResponse out (HTTP-Redirect or
//! HTTP-POST), and the IdP's in, verified against its pinned certificates before anything in
//! them is read.

use chrono::{DateTime, Utc};

use super::{SamlError, SpSettings};

pub const STATUS_SUCCESS: &str = super::xml::STATUS_SUCCESS;
pub const STATUS_REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
/// Second-level status: the responder ended some but not all sessions.
pub const STATUS_PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";

/// Whose IdP session a LogoutRequest ends: the NameID (and its Format) from the assertion that
/// started the broker session, and that assertion's SessionIndex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutSubject {
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
}

/// A message for the browser to carry to the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Redirect to this URL (HTTP-Redirect binding, signature in the query).
    Redirect(String),
    /// An auto-submitting form (HTTP-POST binding, enveloped signature): `field` is
    /// `SAMLRequest` or `SAMLResponse`, `value` the base64 XML.
    Post { url: String, field: &'static str, value: String, relay_state: Option<String> },
}

/// Our LogoutRequest: its ID (matched against the LogoutResponse's InResponseTo) and how to
/// send it.
#[derive(Debug, Clone)]
pub struct LogoutRequestOut {
    pub request_id: String,
    pub outbound: Outbound,
}

/// A logout message as it arrived at our SingleLogoutService.
#[derive(Debug, Clone, Copy)]
pub enum Inbound<'a> {
    /// HTTP-Redirect: the raw (still percent-encoded) query string, because the signature is
    /// over the exact bytes the IdP sent.
    Redirect { raw_query: &'a str },
    /// HTTP-POST: the `SAMLRequest` / `SAMLResponse` form value (base64, not deflated) and the
    /// `RelayState` field.
    Post { message_b64: &'a str, relay_state: Option<&'a str> },
}

/// A LogoutRequest whose signature verified against the IdP's certificates; every field was
/// covered by it.
#[derive(Debug, Clone)]
pub struct VerifiedLogoutRequest {
    pub id: String,
    pub issuer: String,
    pub issue_instant: DateTime<Utc>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    /// Empty: every session of this NameID.
    pub session_indexes: Vec<String>,
    /// How long the request ID must stay in the replay cache.
    pub replay_until: DateTime<Utc>,
    /// The RelayState to hand back with our LogoutResponse.
    pub relay_state: Option<String>,
}

/// A verified LogoutResponse.
#[derive(Debug, Clone)]
pub struct VerifiedLogoutResponse {
    pub id: String,
    pub in_response_to: String,
    /// Top-level StatusCode value.
    pub status: String,
    /// Second-level StatusCode value (e.g. PartialLogout), if any.
    pub sub_status: Option<String>,
    pub relay_state: Option<String>,
}

impl VerifiedLogoutResponse {
    /// The IdP ended its session (Success without PartialLogout).
    pub fn succeeded(&self) -> bool {
        self.status == STATUS_SUCCESS && self.sub_status.as_deref() != Some(STATUS_PARTIAL_LOGOUT)
    }
}

/// Builds our signed LogoutRequest for the IdP's SingleLogoutService.
pub fn logout_request(
    sp: &SpSettings,
    subject: &LogoutSubject,
    relay_state: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LogoutRequestOut, SamlError> {
    let _ = (sp, subject, relay_state, now);
    todo!()
}

/// Builds our signed LogoutResponse to the IdP's LogoutRequest `in_response_to`.
pub fn logout_response(
    sp: &SpSettings,
    in_response_to: &str,
    status: &str,
    relay_state: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Outbound, SamlError> {
    let _ = (sp, in_response_to, status, relay_state, now);
    todo!()
}

/// Verifies and reads an IdP's LogoutRequest (signature required, Issuer, Destination, times).
pub fn verify_logout_request(
    sp: &SpSettings,
    inbound: Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<VerifiedLogoutRequest, SamlError> {
    let _ = (sp, inbound, now);
    todo!()
}

/// Verifies and reads an IdP's LogoutResponse (signature required, Issuer, Destination, times).
/// InResponseTo is returned, not checked: the caller consumes it from its pending logouts.
pub fn verify_logout_response(
    sp: &SpSettings,
    inbound: Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<VerifiedLogoutResponse, SamlError> {
    let _ = (sp, inbound, now);
    todo!()
}
