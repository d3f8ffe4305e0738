//! Our own AuthnRequest (samael's IDs carry only 32 random bits) and its HTTP-Redirect encoding.

use base64::Engine;
use chrono::{DateTime, Utc};

use super::redirect::sp_redirect_url;
use super::xml::{
    escape, format_time, random_id, BINDING_POST, NAMEID_UNSPECIFIED, NS_ASSERTION, NS_PROTOCOL,
};
use super::{AuthnRedirect, AuthnStart, SamlError, SpSettings, SpSigningKey, SsoBinding};

/// Builds the AuthnRequest for the binding the IdP's metadata offers: HTTP-Redirect when it has
/// one, else HTTP-POST (Google Workspace, OneLogin and JumpCloud metadata list only POST).
/// `force_authn` asks the IdP to authenticate the user again even with a live IdP session.
pub fn authn_request(
    sp: &SpSettings,
    relay_state: &str,
    now: DateTime<Utc>,
    force_authn: bool,
) -> Result<AuthnStart, SamlError> {
    match sp.idp.sso_binding {
        SsoBinding::Redirect => redirect_with(sp, relay_state, now, force_authn).map(AuthnStart::Redirect),
        SsoBinding::Post => {
            let request_id = random_id();
            let mut xml = authn_request_xml(sp, &request_id, now, force_authn);
            if let Some(key) = signing_key(sp)? {
                xml = key
                    .sign_xml(&xml, &request_id)
                    .map_err(|e| SamlError::Metadata(format!("cannot sign the AuthnRequest: {e}")))?;
            }
            url::Url::parse(&sp.idp.sso_url).map_err(|e| {
                SamlError::Metadata(format!("IdP SSO URL {:?} is invalid: {e}", sp.idp.sso_url))
            })?;
            Ok(AuthnStart::Post {
                request_id,
                url: sp.idp.sso_url.clone(),
                // The POST binding carries the XML base64-encoded, not deflated.
                saml_request: base64::engine::general_purpose::STANDARD.encode(xml),
                relay_state: relay_state.to_string(),
            })
        }
    }
}

/// Builds an AuthnRequest with a fresh 128-bit ID and encodes it for HTTP-Redirect.
///
/// The request is signed when the connection signs requests. It is built for the Redirect binding even when the IdP metadata
/// lists only HTTP-POST (`sp.idp.sso_binding`); choosing a binding is the caller's job.
pub fn authn_request_redirect(
    sp: &SpSettings,
    relay_state: &str,
    now: DateTime<Utc>,
) -> Result<AuthnRedirect, SamlError> {
    redirect_with(sp, relay_state, now, false)
}

fn redirect_with(
    sp: &SpSettings,
    relay_state: &str,
    now: DateTime<Utc>,
    force_authn: bool,
) -> Result<AuthnRedirect, SamlError> {
    let request_id = random_id();
    let xml = authn_request_xml(sp, &request_id, now, force_authn);
    let url = sp_redirect_url(
        &sp.idp.sso_url,
        "SAMLRequest",
        &xml,
        Some(relay_state),
        signing_key(sp)?,
        "AuthnRequest",
    )?;
    Ok(AuthnRedirect { request_id, url })
}

fn signing_key(sp: &SpSettings) -> Result<Option<&SpSigningKey>, SamlError> {
    if !sp.sign_authn_requests {
        return Ok(None);
    }
    sp.signing_key.as_ref().map(Some).ok_or_else(|| {
        SamlError::Metadata("AuthnRequests must be signed but there is no SP signing key".into())
    })
}

fn authn_request_xml(sp: &SpSettings, request_id: &str, now: DateTime<Utc>, force_authn: bool) -> String {
    format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="{protocol}" xmlns:saml="{assertion}" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{destination}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="{binding}"{force}>"#,
            "<saml:Issuer>{issuer}</saml:Issuer>",
            r#"<samlp:NameIDPolicy AllowCreate="true" Format="{format}"/>"#,
            "{requested}",
            "</samlp:AuthnRequest>"
        ),
        requested = requested_authn_context(&sp.requested_authn_context),
        force = if force_authn { r#" ForceAuthn="true""# } else { "" },
        protocol = NS_PROTOCOL,
        assertion = NS_ASSERTION,
        id = escape(request_id),
        instant = format_time(now),
        destination = escape(&sp.idp.sso_url),
        acs = escape(&sp.acs_url),
        binding = BINDING_POST,
        issuer = escape(&sp.entity_id),
        format = NAMEID_UNSPECIFIED,
    )
}

/// `RequestedAuthnContext` asking for at least one of these classes (e.g. MFA), or nothing.
fn requested_authn_context(classes: &[String]) -> String {
    if classes.is_empty() {
        return String::new();
    }
    let refs: String = classes
        .iter()
        .map(|c| format!("<saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef>", escape(c)))
        .collect();
    format!(r#"<samlp:RequestedAuthnContext Comparison="exact">{refs}</samlp:RequestedAuthnContext>"#)
}
