//! Single logout messages: our signed LogoutRequest / LogoutResponse out (HTTP-Redirect or
//! HTTP-POST), and the IdP's in, verified against its pinned certificates before anything in
//! them is read.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use roxmltree::Node;

use super::policy::{check_signature, scan};
use super::redirect::{sp_redirect_url, verify_query};
use super::validate::{
    decode_base64_capped, parse_untrusted, read_name_id, status_codes, time_attr, utf8_xml,
    verify_and_reduce, Window,
};
use super::xml::{
    child, children_named, escape, excerpt, format_time, is, parse_strict, random_id, text_content,
    NS_ASSERTION, NS_PROTOCOL,
};
use super::{reject, Reason, SamlError, SloEndpoint, SpSettings, SpSigningKey, SsoBinding};

/// How long our LogoutRequest is valid (its NotOnOrAfter).
const REQUEST_LIFETIME_MINUTES: i64 = 10;
/// How old an inbound message's IssueInstant may be (plus the clock skew). Logout messages
/// travel through one browser redirect; a longer-lived one is a replay.
const MAX_MESSAGE_AGE_MINUTES: i64 = 5;

pub const STATUS_SUCCESS: &str = super::xml::STATUS_SUCCESS;
pub const STATUS_REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
/// Second-level status: the responder ended some but not all sessions.
pub const STATUS_PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";

/// Whose IdP session a LogoutRequest ends: the NameID (with its Format and qualifiers) from the
/// assertion that started the broker session, and that assertion's SessionIndex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutSubject {
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub name_qualifier: Option<String>,
    pub sp_name_qualifier: Option<String>,
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
    let (slo, key) = slo_and_key(sp)?;
    let request_id = random_id();
    // The NameID exactly as asserted, qualifiers included: IdPs such as ADFS and Shibboleth
    // match all of it (SAML core 3.3.4) and otherwise keep their session.
    let attr = |name: &str, value: &Option<String>| {
        value.as_deref().map_or_else(String::new, |v| format!(r#" {name}="{}""#, escape(v)))
    };
    let format = [
        attr("NameQualifier", &subject.name_qualifier),
        attr("SPNameQualifier", &subject.sp_name_qualifier),
        attr("Format", &subject.name_id_format),
    ]
    .concat();
    let session_index = subject
        .session_index
        .as_deref()
        .map_or_else(String::new, |s| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(s)));
    let xml = format!(
        concat!(
            r#"<samlp:LogoutRequest xmlns:samlp="{protocol}" xmlns:saml="{assertion}" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{destination}" NotOnOrAfter="{until}">"#,
            "<saml:Issuer>{issuer}</saml:Issuer>",
            "<saml:NameID{format}>{name_id}</saml:NameID>",
            "{session_index}",
            "</samlp:LogoutRequest>"
        ),
        protocol = NS_PROTOCOL,
        assertion = NS_ASSERTION,
        id = escape(&request_id),
        instant = format_time(now),
        destination = escape(&slo.url),
        until = format_time(now + Duration::minutes(REQUEST_LIFETIME_MINUTES)),
        issuer = escape(&sp.entity_id),
        format = format,
        name_id = escape(&subject.name_id),
        session_index = session_index,
    );
    let outbound = send(slo.binding, &slo.url, key, "SAMLRequest", &xml, &request_id, relay_state)?;
    Ok(LogoutRequestOut { request_id, outbound })
}

/// Builds our signed LogoutResponse to the IdP's LogoutRequest `in_response_to`.
pub fn logout_response(
    sp: &SpSettings,
    in_response_to: &str,
    status: &str,
    relay_state: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Outbound, SamlError> {
    let (slo, key) = slo_and_key(sp)?;
    let id = random_id();
    let xml = format!(
        concat!(
            r#"<samlp:LogoutResponse xmlns:samlp="{protocol}" xmlns:saml="{assertion}" ID="{id}" InResponseTo="{irt}" Version="2.0" IssueInstant="{instant}" Destination="{destination}">"#,
            "<saml:Issuer>{issuer}</saml:Issuer>",
            r#"<samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status>"#,
            "</samlp:LogoutResponse>"
        ),
        protocol = NS_PROTOCOL,
        assertion = NS_ASSERTION,
        id = escape(&id),
        irt = escape(in_response_to),
        instant = format_time(now),
        destination = escape(&slo.response_url),
        issuer = escape(&sp.entity_id),
        status = escape(status),
    );
    send(slo.binding, &slo.response_url, key, "SAMLResponse", &xml, &id, relay_state)
}

fn slo_and_key(sp: &SpSettings) -> Result<(&SloEndpoint, &SpSigningKey), SamlError> {
    let slo = sp
        .idp
        .slo
        .as_ref()
        .ok_or_else(|| SamlError::Metadata("the IdP metadata has no SingleLogoutService".into()))?;
    // Unsigned front-channel logout would let any page sign the user out (SAML profiles 4.4.3).
    let key = sp.signing_key.as_ref().ok_or_else(|| {
        SamlError::Metadata("logout messages must be signed but there is no SP signing key".into())
    })?;
    Ok((slo, key))
}

/// Signs `xml` (root ID `id`) for `binding`, to be carried to `url` in `field`.
fn send(
    binding: SsoBinding,
    url: &str,
    key: &SpSigningKey,
    field: &'static str,
    xml: &str,
    id: &str,
    relay_state: Option<&str>,
) -> Result<Outbound, SamlError> {
    let what = if field == "SAMLRequest" { "LogoutRequest" } else { "LogoutResponse" };
    let relay_state = relay_state.filter(|r| !r.is_empty());
    match binding {
        SsoBinding::Redirect => {
            sp_redirect_url(url, field, xml, relay_state, Some(key), what).map(Outbound::Redirect)
        }
        SsoBinding::Post => {
            url::Url::parse(url)
                .map_err(|e| SamlError::Metadata(format!("IdP {what} URL {url:?} is invalid: {e}")))?;
            let signed = key
                .sign_xml(xml, id)
                .map_err(|e| SamlError::Metadata(format!("cannot sign the {what}: {e}")))?;
            Ok(Outbound::Post {
                url: url.to_string(),
                field,
                // The POST binding carries the XML base64-encoded, not deflated.
                value: base64::engine::general_purpose::STANDARD.encode(signed),
                relay_state: relay_state.map(str::to_string),
            })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
}

impl Kind {
    fn root(self) -> &'static str {
        match self {
            Kind::Request => "LogoutRequest",
            Kind::Response => "LogoutResponse",
        }
    }

    fn param(self) -> &'static str {
        match self {
            Kind::Request => "SAMLRequest",
            Kind::Response => "SAMLResponse",
        }
    }

    fn other(self) -> Kind {
        match self {
            Kind::Request => Kind::Response,
            Kind::Response => Kind::Request,
        }
    }
}

/// Verifies and reads an IdP's LogoutRequest (signature required, Issuer, Destination, times).
pub fn verify_logout_request(
    sp: &SpSettings,
    inbound: Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<VerifiedLogoutRequest, SamlError> {
    let message = verified_message(sp, inbound, Kind::Request)?;
    let doc = parse_verified(&message.xml)?;
    let root = doc.root_element();
    let header = read_header(sp, root, Kind::Request, now)?;
    if let Some(until) = time_attr(root, "NotOnOrAfter")? {
        Window::new(now, sp.clock_skew).check(None, until, "LogoutRequest")?;
    }
    if children_named(root, NS_ASSERTION, "NameID").nth(1).is_some() {
        return Err(reject(Reason::NameIdInvalid, "more than one NameID"));
    }
    let (name_id, name_id_format) = read_name_id(root)?;
    let named = children_named(root, NS_PROTOCOL, "SessionIndex").count();
    let session_indexes: Vec<String> = children_named(root, NS_PROTOCOL, "SessionIndex")
        .map(|s| text_content(s).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    // A request that names sessions, all by blank indexes, must not become one that names none
    // (every session of the NameID).
    if named > 0 && session_indexes.is_empty() {
        return Err(reject(Reason::Malformed, "every SessionIndex is empty"));
    }
    // After this the IssueInstant check refuses the request anyway, so the replay cache can
    // let the ID go.
    let skew = sp.clock_skew.max(Duration::zero());
    let replay_until = header
        .issue_instant
        .checked_add_signed(Duration::minutes(MAX_MESSAGE_AGE_MINUTES) + skew + skew)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    Ok(VerifiedLogoutRequest {
        id: header.id,
        issuer: header.issuer,
        issue_instant: header.issue_instant,
        name_id,
        name_id_format,
        session_indexes,
        replay_until,
        relay_state: message.relay_state,
    })
}

/// Verifies and reads an IdP's LogoutResponse (signature required, Issuer, Destination, times).
/// InResponseTo is returned, not checked: the caller consumes it from its pending logouts.
pub fn verify_logout_response(
    sp: &SpSettings,
    inbound: Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<VerifiedLogoutResponse, SamlError> {
    let message = verified_message(sp, inbound, Kind::Response)?;
    let doc = parse_verified(&message.xml)?;
    let root = doc.root_element();
    let header = read_header(sp, root, Kind::Response, now)?;
    let in_response_to = root
        .attribute("InResponseTo")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| reject(Reason::InResponseToMismatch, "the LogoutResponse has no InResponseTo"))?
        .to_string();
    let (status, sub_status) = status_codes(root);
    let status = status.ok_or_else(|| reject(Reason::Malformed, "the LogoutResponse has no StatusCode"))?;
    Ok(VerifiedLogoutResponse {
        id: header.id,
        in_response_to,
        status: status.to_string(),
        sub_status: sub_status.map(str::to_string),
        relay_state: message.relay_state,
    })
}

/// A message whose signature verified: `xml` holds only signed content.
struct Verified {
    xml: String,
    relay_state: Option<String>,
}

/// Decodes the message, runs the checks that come before any verification and verifies the
/// signature of whichever binding carried it.
fn verified_message(sp: &SpSettings, inbound: Inbound<'_>, kind: Kind) -> Result<Verified, SamlError> {
    match inbound {
        Inbound::Redirect { raw_query } => {
            let query = verify_query(sp, raw_query, kind.param(), kind.other().param())?;
            let (_, doc) = parse_raw(sp, &query.xml, kind)?;
            // The binding says a signature inside the message MUST be removed (bindings 3.4.4.1);
            // one left there is unverified and, to a reader that trusts it, a second signature.
            if !scan(doc.root_element()).signatures.is_empty() {
                return Err(reject(Reason::SignaturePolicy, "ds:Signature inside an HTTP-Redirect message"));
            }
            drop(doc);
            Ok(Verified { xml: query.xml, relay_state: query.relay_state })
        }
        Inbound::Post { message_b64, relay_state } => {
            let xml = utf8_xml(
                decode_base64_capped(message_b64, sp.max_response_bytes, kind.param())?,
                kind.param(),
            )?;
            let (xml, doc) = parse_raw(sp, &xml, kind)?;
            let root = doc.root_element();
            let signature = match scan(root).signatures.as_slice() {
                [] => {
                    return Err(reject(
                        Reason::SignatureMissing,
                        format!("the {} is not signed", kind.root()),
                    ))
                }
                [one] if one.parent_element() == Some(root) => *one,
                [_] => {
                    return Err(reject(
                        Reason::SignaturePolicy,
                        format!("the Signature is not on the {}", kind.root()),
                    ))
                }
                _ => return Err(reject(Reason::SignaturePolicy, "more than one Signature")),
            };
            let uses_sha1 = check_signature(signature, root, sp.allow_sha1)?;
            if sp.idp.signing_certs.is_empty() {
                return Err(reject(Reason::NoTrustedKey, "the connection has no IdP signing certificate"));
            }
            let reduced = verify_and_reduce(sp, xml, uses_sha1)?;
            let reduced_doc = parse_verified(&reduced)?;
            let signed_root = reduced_doc.root_element();
            if !is(signed_root, NS_PROTOCOL, kind.root())
                || signed_root.attribute("ID") != root.attribute("ID")
            {
                return Err(reject(
                    Reason::SignatureInvalid,
                    format!("the verified element is not the {} of the message", kind.root()),
                ));
            }
            drop(reduced_doc);
            Ok(Verified { xml: reduced, relay_state: relay_state.map(str::to_string) })
        }
    }
}

/// The checks on the document as it arrived, before anything in it is trusted: size, no DTD,
/// a strict parse, nothing a signature could be split around, and the expected root.
fn parse_raw<'i>(
    sp: &SpSettings,
    xml: &'i str,
    kind: Kind,
) -> Result<(&'i str, roxmltree::Document<'i>), SamlError> {
    let (xml, doc) = parse_untrusted(xml, sp.max_response_bytes)?;
    let root = doc.root_element();
    if !is(root, NS_PROTOCOL, kind.root()) {
        return Err(reject(
            Reason::NotALogoutMessage,
            format!("expected samlp:{}, root element is {}", kind.root(), excerpt(root.tag_name().name())),
        ));
    }
    scan(root).refuse_comments_and_duplicate_ids()?;
    // Another message of the same kind nested inside (signature wrapping): only one of the two
    // is what the signature covers, and nothing legitimate nests them.
    if root.descendants().skip(1).any(|n| n.is_element() && n.tag_name().name() == kind.root()) {
        return Err(reject(Reason::SignaturePolicy, format!("a {} inside the {}", kind.root(), kind.root())));
    }
    Ok((xml, doc))
}

fn parse_verified(xml: &str) -> Result<roxmltree::Document<'_>, SamlError> {
    parse_strict(xml.strip_prefix('\u{feff}').unwrap_or(xml))
        .map_err(|e| reject(Reason::SignatureInvalid, format!("verified output does not parse: {e}")))
}

struct Header {
    id: String,
    issuer: String,
    issue_instant: DateTime<Utc>,
}

/// What both kinds of logout message must say, read from verified content: SAML 2.0, an ID,
/// the IdP as Issuer, our SingleLogoutService as Destination (bindings 3.4.5.2 / 3.5.5.2
/// require it on signed messages) and a fresh IssueInstant.
fn read_header(
    sp: &SpSettings,
    root: Node<'_, '_>,
    kind: Kind,
    now: DateTime<Utc>,
) -> Result<Header, SamlError> {
    // The root was checked on the raw document; the verified one is checked again because it is
    // the one read.
    if !is(root, NS_PROTOCOL, kind.root()) {
        return Err(reject(Reason::NotALogoutMessage, format!("expected samlp:{}", kind.root())));
    }
    if root.attribute("Version") != Some("2.0") {
        return Err(reject(Reason::Malformed, format!("the {} is not SAML 2.0", kind.root())));
    }
    let id = root
        .attribute("ID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| reject(Reason::Malformed, format!("the {} has no ID", kind.root())))?
        .to_string();
    let issuer = child(root, NS_ASSERTION, "Issuer")
        .map(|i| text_content(i).trim().to_string())
        .ok_or_else(|| reject(Reason::IssuerMismatch, format!("the {} has no Issuer", kind.root())))?;
    if issuer != sp.idp.entity_id {
        return Err(reject(Reason::IssuerMismatch, format!("{} Issuer {}", kind.root(), excerpt(&issuer))));
    }
    match root.attribute("Destination") {
        // An empty slo_url means single logout is off; no Destination may match it.
        Some(d) if d == sp.slo_url && !sp.slo_url.is_empty() => {}
        Some(d) => return Err(reject(Reason::DestinationMismatch, format!("Destination {}", excerpt(d)))),
        None => {
            return Err(reject(
                Reason::DestinationMismatch,
                format!("the {} has no Destination", kind.root()),
            ))
        }
    }
    let issue_instant = time_attr(root, "IssueInstant")?.ok_or_else(|| {
        reject(Reason::MissingTimeBounds, format!("the {} has no IssueInstant", kind.root()))
    })?;
    let oldest = issue_instant
        .checked_add_signed(Duration::minutes(MAX_MESSAGE_AGE_MINUTES))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    Window::new(now, sp.clock_skew).check(Some(issue_instant), oldest, "IssueInstant")?;
    Ok(Header { id, issuer, issue_instant })
}
