//! Our own AuthnRequest (samael's IDs carry only 32 random bits) and its HTTP-Redirect encoding.

use std::io::Write;

use base64::Engine;
use chrono::{DateTime, Utc};
use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::sign::SIG_RSA_SHA256;
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

    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    let deflated = encoder
        .write_all(xml.as_bytes())
        .and_then(|()| encoder.finish())
        .map_err(|e| SamlError::Metadata(format!("cannot deflate AuthnRequest: {e}")))?;
    let saml_request = base64::engine::general_purpose::STANDARD.encode(deflated);

    let mut url = url::Url::parse(&sp.idp.sso_url)
        .map_err(|e| SamlError::Metadata(format!("IdP SSO URL {:?} is invalid: {e}", sp.idp.sso_url)))?;
    let key = signing_key(sp)?;
    let mut ours = url::form_urlencoded::Serializer::new(String::new());
    ours.append_pair("SAMLRequest", &saml_request);
    if !relay_state.is_empty() {
        ours.append_pair("RelayState", relay_state);
    }
    if key.is_some() {
        ours.append_pair("SigAlg", SIG_RSA_SHA256);
    }
    let mut ours = ours.finish();
    if let Some(key) = key {
        // The binding signs these exact encoded bytes (SAML bindings 3.4.4.1), not a re-encoding.
        let signature = key
            .sign_b64(ours.as_bytes())
            .map_err(|e| SamlError::Metadata(format!("cannot sign the AuthnRequest: {e}")))?;
        ours.push_str("&Signature=");
        ours.extend(url::form_urlencoded::byte_serialize(signature.as_bytes()));
    }
    // Parameters already in the IdP's SSO URL stay first and outside the signature.
    let query = match url.query() {
        Some(existing) if !existing.is_empty() => format!("{existing}&{ours}"),
        _ => ours,
    };
    url.set_query(Some(&query));
    Ok(AuthnRedirect { request_id, url: url.into() })
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
