//! SAML room tests: responses built and signed by the dev IdP, then bent into each failure.

use std::error::Error;
use std::sync::OnceLock;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::devidp::{parse_authn_request, DevIdp, ResponseSpec, SigAlg, SignMode};

pub(super) type TestResult = Result<(), Box<dyn Error>>;

pub(super) const SP_ENTITY: &str = "https://broker.example/saml/acme/metadata";
pub(super) const ACS: &str = "https://broker.example/saml/acme/acs";
pub(super) const IDP_ENTITY: &str = "https://idp.example/entity";
const IDP_SSO: &str = "https://idp.example/sso";
const REQUEST_ID: &str = "_4d6c8f0e2a1b3c5d7e9f00112233445566";

pub(super) fn now() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(1_716_206_400) // 2024-05-20T12:00:00Z
}

/// One key for the whole module: RSA key generation is the slow part of these tests.
pub(super) fn idp() -> Result<&'static DevIdp, Box<dyn Error>> {
    static IDP: OnceLock<DevIdp> = OnceLock::new();
    if IDP.get().is_none() {
        let _ = IDP.set(DevIdp::generate(IDP_ENTITY, IDP_SSO)?);
    }
    Ok(IDP.get().ok_or("dev IdP not initialised")?)
}

pub(super) fn sp(idp: &DevIdp) -> SpSettings {
    SpSettings {
        entity_id: SP_ENTITY.into(),
        acs_url: ACS.into(),
        idp: idp.idp_metadata(),
        allow_sha1: false,
        clock_skew: Duration::seconds(60),
        max_response_bytes: 256 * 1024,
        requested_authn_context: vec![],
        decryption_keys: vec![],
        encryption_cert: None,
        sign_authn_requests: false,
        signing_key: None,
        slo_url: String::new(),
    }
}

fn spec(idp: &DevIdp) -> ResponseSpec {
    ResponseSpec::new(idp, SP_ENTITY, ACS, Some(REQUEST_ID), "alice@example.com", now())
        .with_attribute("email", &["alice@example.com"])
        .with_attribute("groups", &["Engineering", "IT Admins"])
}

fn signed(mode: SignMode) -> Result<(SpSettings, ResponseSpec, String), Box<dyn Error>> {
    let idp = idp()?;
    let mut spec = spec(idp);
    spec.sign = mode;
    let xml = idp.sign_response(&spec)?;
    Ok((sp(idp), spec, xml))
}

fn refused(result: Result<ValidatedAssertion, SamlError>) -> Result<SamlError, Box<dyn Error>> {
    match result {
        Ok(v) => Err(format!("accepted: {v:?}").into()),
        Err(e) => Ok(e),
    }
}

pub(super) fn replace_once(haystack: &str, from: &str, to: &str) -> Result<String, Box<dyn Error>> {
    if !haystack.contains(from) {
        return Err(format!("{from:?} not found").into());
    }
    Ok(haystack.replacen(from, to, 1))
}

pub(super) fn span(xml: &str, open: &str, close: &str) -> Result<(usize, usize), Box<dyn Error>> {
    let start = xml.find(open).ok_or("open tag not found")?;
    let end = xml[start..].find(close).ok_or("close tag not found")? + start + close.len();
    Ok((start, end))
}

fn without_signatures(xml: &str) -> Result<String, Box<dyn Error>> {
    let mut out = xml.to_string();
    while out.contains("<ds:Signature") {
        let (s, e) = span(&out, "<ds:Signature", "</ds:Signature>")?;
        out.replace_range(s..e, "");
    }
    Ok(out)
}

/// An unsigned copy of the response's assertion with another ID and NameID.
fn evil_assertion(xml: &str) -> Result<String, Box<dyn Error>> {
    let (s, e) = span(xml, "<saml:Assertion", "</saml:Assertion>")?;
    let evil = without_signatures(&xml[s..e])?;
    let evil = replace_once(&evil, "alice@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?;
    let id_at = evil.find("ID=\"").ok_or("no ID")? + 4;
    Ok(format!("{}_evil{}", &evil[..id_at], &evil[id_at + 1..]))
}

#[test]
fn accepts_assertion_signed() -> TestResult {
    let (sp, spec, xml) = signed(SignMode::Assertion)?;
    let v = validate_response_xml(&sp, &xml, now())?;
    assert_eq!(v.name_id, "alice@example.com");
    assert_eq!(v.name_id_format.as_deref(), Some(xml::NAMEID_EMAIL));
    assert_eq!(v.issuer, IDP_ENTITY);
    assert_eq!(v.assertion_id, spec.assertion_id);
    assert_eq!(v.in_response_to.as_deref(), Some(REQUEST_ID));
    assert_eq!(v.session_index.as_deref(), Some(spec.assertion_id.as_str()));
    assert_eq!(v.authn_instant, Some(now()));
    assert_eq!(
        v.authn_context_class.as_deref(),
        Some("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")
    );
    assert_eq!(v.valid_until, now() + Duration::minutes(5) + Duration::seconds(60));
    assert_eq!(
        v.attributes,
        vec![
            SamlAttribute {
                name: "email".into(),
                friendly_name: None,
                values: vec!["alice@example.com".into()],
            },
            SamlAttribute {
                name: "groups".into(),
                friendly_name: None,
                values: vec!["Engineering".into(), "IT Admins".into()],
            },
        ]
    );
    Ok(())
}

#[test]
fn accepts_response_signed() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Response)?;
    let v = validate_response_xml(&sp, &xml, now())?;
    assert_eq!(v.name_id, "alice@example.com");
    assert_eq!(v.in_response_to.as_deref(), Some(REQUEST_ID));
    Ok(())
}

#[test]
fn accepts_both_signed() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Both)?;
    assert_eq!(xml.matches("<ds:SignatureValue>").count(), 2);
    let v = validate_response_xml(&sp, &xml, now())?;
    assert_eq!(v.name_id, "alice@example.com");
    assert_eq!(v.attributes.len(), 2);
    Ok(())
}

#[test]
fn accepts_post_binding_with_line_breaks() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&xml);
    let wrapped: Vec<String> =
        b64.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    let v = validate_post_response(&sp, &format!(" {}\r\n", wrapped.join("\r\n")), now())?;
    assert_eq!(v.name_id, "alice@example.com");
    Ok(())
}

#[test]
fn escaped_values_round_trip() -> TestResult {
    let idp = idp()?;
    let mut spec = spec(idp);
    spec.name_id = "o'brien&co <x>@example.com".into();
    let v = validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now())?;
    assert_eq!(v.name_id, "o'brien&co <x>@example.com");
    Ok(())
}

#[test]
fn concurrent_validations_agree() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Both)?;
    let results: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..8).map(|_| s.spawn(|| validate_response_xml(&sp, &xml, now()).is_ok())).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(false)).collect()
    });
    assert!(results.iter().all(|ok| *ok));
    Ok(())
}

#[test]
fn refuses_tampered_name_id() -> TestResult {
    for mode in [SignMode::Assertion, SignMode::Response, SignMode::Both] {
        let (sp, _, xml) = signed(mode)?;
        let forged =
            replace_once(&xml, "alice@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?;
        let err = refused(validate_response_xml(&sp, &forged, now()))?;
        assert!(matches!(err.reason(), Some(Reason::SignatureInvalid)), "{mode:?}: {err}");
    }
    Ok(())
}

#[test]
fn refuses_removed_signature() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let stripped = without_signatures(&xml)?;
    let forged =
        replace_once(&stripped, "alice@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?;
    let err = refused(validate_response_xml(&sp, &forged, now()))?;
    assert!(matches!(err.reason(), Some(Reason::SignatureMissing)), "{err}");
    Ok(())
}

#[test]
fn refuses_unsigned() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Unsigned)?;
    let err = refused(validate_response_xml(&sp, &xml, now()))?;
    assert!(matches!(err.reason(), Some(Reason::SignatureMissing)), "{err}");
    Ok(())
}

#[test]
fn refuses_attacker_key_with_cert_in_key_info() -> TestResult {
    let trusted = idp()?;
    let attacker = DevIdp::generate(IDP_ENTITY, IDP_SSO)?;
    for mode in [SignMode::Assertion, SignMode::Response] {
        let mut spec = spec(&attacker);
        spec.sign = mode;
        let xml = attacker.sign_response(&spec)?;
        assert!(xml.contains("<ds:X509Certificate>"));
        let err = refused(validate_response_xml(&sp(trusted), &xml, now()))?;
        assert!(matches!(err.reason(), Some(Reason::SignatureInvalid)), "{err}");
    }
    Ok(())
}

#[test]
fn refuses_comment_inside_name_id() -> TestResult {
    let idp = idp()?;
    for mode in [SignMode::Assertion, SignMode::Response] {
        let mut spec = spec(idp);
        spec.sign = mode;
        spec.name_id = "admin@victim.example.attacker.example".into();
        let xml = idp.sign_response(&spec)?;
        // Still verifies under exc-c14n (comments are not signed); a naive reader would see
        // only "admin@victim.example".
        let forged =
            replace_once(&xml, "admin@victim.example.attacker", "admin@victim.example<!---->.attacker")?;
        let err = refused(validate_response_xml(&sp(idp), &forged, now()))?;
        assert!(matches!(err.reason(), Some(Reason::SignaturePolicy)), "{err}");
    }
    Ok(())
}

#[test]
fn refuses_comment_or_pi_between_elements() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    for insert in ["<!-- note -->", "<?pi data?>"] {
        let forged = replace_once(&xml, "<saml:Subject>", &format!("<saml:Subject>{insert}"))?;
        let err = refused(validate_response_xml(&sp, &forged, now()))?;
        assert!(matches!(err.reason(), Some(Reason::SignaturePolicy)), "{err}");
    }
    Ok(())
}

#[test]
fn refuses_second_assertion_appended() -> TestResult {
    for mode in [SignMode::Assertion, SignMode::Response] {
        let (sp, _, xml) = signed(mode)?;
        let evil = evil_assertion(&xml)?;
        let forged = replace_once(&xml, "</saml:Assertion>", &format!("</saml:Assertion>{evil}"))?;
        let err = refused(validate_response_xml(&sp, &forged, now()))?;
        assert!(matches!(err.reason(), Some(Reason::MultipleAssertions)), "{err}");
        let forged = replace_once(&xml, "<samlp:Status>", &format!("{evil}<samlp:Status>"))?;
        let err = refused(validate_response_xml(&sp, &forged, now()))?;
        assert!(matches!(err.reason(), Some(Reason::MultipleAssertions)), "{err}");
    }
    Ok(())
}

#[test]
fn refuses_assertion_in_advice() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Response)?;
    let evil = evil_assertion(&xml)?;
    let forged = replace_once(
        &xml,
        "<saml:AuthnStatement",
        &format!("<saml:Advice>{evil}</saml:Advice><saml:AuthnStatement"),
    )?;
    let err = refused(validate_response_xml(&sp, &forged, now()))?;
    assert!(matches!(err.reason(), Some(Reason::MultipleAssertions)), "{err}");
    Ok(())
}

#[test]
fn refuses_assertion_in_extensions_and_key_info() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let evil = evil_assertion(&xml)?;
    let forged = replace_once(
        &xml,
        "<samlp:Status>",
        &format!("<samlp:Extensions>{evil}</samlp:Extensions><samlp:Status>"),
    )?;
    let err = refused(validate_response_xml(&sp, &forged, now()))?;
    assert!(matches!(err.reason(), Some(Reason::MultipleAssertions)), "{err}");
    let forged = replace_once(&xml, "</ds:X509Data>", &format!("</ds:X509Data>{evil}"))?;
    let err = refused(validate_response_xml(&sp, &forged, now()))?;
    assert!(matches!(err.reason(), Some(Reason::MultipleAssertions)), "{err}");
    Ok(())
}

#[test]
fn refuses_wrapping_with_original_moved_to_extensions() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let (s, e) = span(&xml, "<saml:Assertion", "</saml:Assertion>")?;
    let original = &xml[s..e];
    let evil = evil_assertion(&xml)?;
    let forged = format!("{}{}{}", &xml[..s], evil, &xml[e..]);
    let forged = replace_once(
        &forged,
        "<samlp:Status>",
        &format!("<samlp:Extensions>{original}</samlp:Extensions><samlp:Status>"),
    )?;
    let err = refused(validate_response_xml(&sp, &forged, now()))?;
    assert!(matches!(err.reason(), Some(Reason::MultipleAssertions)), "{err}");
    Ok(())
}

#[test]
fn refuses_lone_assertion_outside_response_children() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let (s, e) = span(&xml, "<saml:Assertion", "</saml:Assertion>")?;
    let moved = format!("{}{}", &xml[..s], &xml[e..]);
    let moved = replace_once(
        &moved,
        "<samlp:Status>",
        &format!("<samlp:Extensions>{}</samlp:Extensions><samlp:Status>", &xml[s..e]),
    )?;
    let err = refused(validate_response_xml(&sp, &moved, now()))?;
    assert!(matches!(err.reason(), Some(Reason::NoAssertion)), "{err}");
    let none = format!("{}{}", &xml[..s], &xml[e..]);
    let err = refused(validate_response_xml(&sp, &none, now()))?;
    assert!(matches!(err.reason(), Some(Reason::NoAssertion)), "{err}");
    Ok(())
}

#[test]
fn refuses_doctype_and_entities() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let body = xml.trim_start_matches("<?xml version=\"1.0\"?>").trim_start();
    let with_dtd = format!("<!DOCTYPE samlp:Response [<!ENTITY e \"admin\">]>\n{body}");
    let err = refused(validate_response_xml(&sp, &with_dtd, now()))?;
    assert!(matches!(err.reason(), Some(Reason::DtdForbidden)), "{err}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&with_dtd);
    let err = refused(validate_post_response(&sp, &b64, now()))?;
    assert!(matches!(err.reason(), Some(Reason::DtdForbidden)), "{err}");
    // An entity reference without a DTD is simply not well-formed.
    let with_entity = replace_once(&xml, "alice@example.com</saml:NameID>", "&e;</saml:NameID>")?;
    let err = refused(validate_response_xml(&sp, &with_entity, now()))?;
    assert!(matches!(err.reason(), Some(Reason::Malformed)), "{err}");
    Ok(())
}

#[test]
fn refuses_xslt_and_xpath_transforms() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let xslt = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:copy-of select="document('http://127.0.0.1:9/canary')"/></xsl:template></xsl:stylesheet></ds:Transform>"#;
    let xpath = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>count(//. | //@* | //namespace::*)</ds:XPath></ds:Transform>"#;
    for transform in [xslt, xpath] {
        let forged = replace_once(&xml, "<ds:Transforms>", &format!("<ds:Transforms>{transform}"))?;
        let err = refused(validate_response_xml(&sp, &forged, now()))?;
        assert!(matches!(err.reason(), Some(Reason::SignaturePolicy)), "{err}");
    }
    Ok(())
}

#[test]
fn refuses_other_signature_shapes() -> TestResult {
    let (sp, spec, xml) = signed(SignMode::Assertion)?;
    let c14n = "http://www.w3.org/2001/10/xml-exc-c14n#";
    let cases = [
        // Comments in the canonical form.
        replace_once(&xml, &format!("<ds:CanonicalizationMethod Algorithm=\"{c14n}\"/>"), &format!("<ds:CanonicalizationMethod Algorithm=\"{c14n}WithComments\"/>"))?,
        // Whole-document reference.
        replace_once(&xml, &format!("URI=\"#{}\"", spec.assertion_id), "URI=\"\"")?,
        // Reference to an element other than the Signature's parent.
        replace_once(&xml, &format!("URI=\"#{}\"", spec.assertion_id), &format!("URI=\"#{}\"", spec.response_id))?,
        // ds:Object carrying content.
        replace_once(&xml, "</ds:KeyInfo>", "</ds:KeyInfo><ds:Object><x/></ds:Object>")?,
        // RetrievalMethod in KeyInfo.
        replace_once(&xml, "<ds:KeyInfo>", "<ds:KeyInfo><ds:RetrievalMethod URI=\"http://127.0.0.1:9/\"/>")?,
        // Two References.
        replace_once(&xml, "</ds:SignedInfo>", &format!("<ds:Reference URI=\"#{}\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AA==</ds:DigestValue></ds:Reference></ds:SignedInfo>", spec.assertion_id))?,
    ];
    for forged in &cases {
        let err = refused(validate_response_xml(&sp, forged, now()))?;
        assert!(matches!(err.reason(), Some(Reason::SignaturePolicy)), "{err}");
    }
    // A signature moved below the Assertion (its parent is then the Subject).
    let (s, e) = span(&xml, "<ds:Signature", "</ds:Signature>")?;
    let signature = &xml[s..e];
    let moved = format!("{}{}", &xml[..s], &xml[e..]);
    let moved = replace_once(&moved, "</saml:Subject>", &format!("{signature}</saml:Subject>"))?;
    let err = refused(validate_response_xml(&sp, &moved, now()))?;
    assert!(matches!(err.reason(), Some(Reason::SignaturePolicy)), "{err}");
    Ok(())
}

#[test]
fn refuses_duplicate_ids() -> TestResult {
    let (sp, spec, xml) = signed(SignMode::Assertion)?;
    let forged = replace_once(
        &xml,
        &format!("ID=\"{}\"", spec.response_id),
        &format!("ID=\"{}\"", spec.assertion_id),
    )?;
    let err = refused(validate_response_xml(&sp, &forged, now()))?;
    assert!(matches!(err.reason(), Some(Reason::SignaturePolicy)), "{err}");
    Ok(())
}

#[test]
fn refuses_wrong_or_missing_audience() -> TestResult {
    let idp = idp()?;
    for audience in [Some("https://other-sp.example".to_string()), None] {
        let mut spec = spec(idp);
        spec.audience = audience;
        let err = refused(validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now()))?;
        assert!(matches!(err.reason(), Some(Reason::AudienceMismatch)), "{err}");
    }
    Ok(())
}

#[test]
fn refuses_wrong_recipient() -> TestResult {
    let idp = idp()?;
    let mut spec = spec(idp);
    spec.recipient = format!("{ACS}/other");
    let err = refused(validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now()))?;
    assert!(matches!(err.reason(), Some(Reason::RecipientMismatch)), "{err}");
    Ok(())
}

#[test]
fn refuses_wrong_destination_signed_or_not() -> TestResult {
    let idp = idp()?;
    for mode in [SignMode::Assertion, SignMode::Response] {
        let mut spec = spec(idp);
        spec.sign = mode;
        spec.destination = Some("https://elsewhere.example/acs".into());
        let err = refused(validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now()))?;
        assert!(matches!(err.reason(), Some(Reason::DestinationMismatch)), "{mode:?}: {err}");
    }
    // Destination is optional.
    let mut spec = spec(idp);
    spec.destination = None;
    validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now())?;
    Ok(())
}

#[test]
fn refuses_wrong_issuer() -> TestResult {
    let idp = idp()?;
    let mut spec = spec(idp);
    spec.issuer = "https://evil.example/idp".into();
    let err = refused(validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now()))?;
    assert!(matches!(err.reason(), Some(Reason::IssuerMismatch)), "{err}");
    // Only the unsigned Response's Issuer differs.
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let forged = replace_once(
        &xml,
        &format!("<saml:Issuer>{IDP_ENTITY}</saml:Issuer>"),
        "<saml:Issuer>https://evil.example/idp</saml:Issuer>",
    )?;
    let err = refused(validate_response_xml(&sp, &forged, now()))?;
    assert!(matches!(err.reason(), Some(Reason::IssuerMismatch)), "{err}");
    Ok(())
}

#[test]
fn refuses_in_response_to_disagreement() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let forged = replace_once(
        &xml,
        &format!("InResponseTo=\"{REQUEST_ID}\""),
        "InResponseTo=\"_someone_elses_request\"",
    )?;
    let err = refused(validate_response_xml(&sp, &forged, now()))?;
    assert!(matches!(err.reason(), Some(Reason::InResponseToMismatch)), "{err}");
    Ok(())
}

#[test]
fn unsolicited_response_returns_no_in_response_to() -> TestResult {
    let idp = idp()?;
    let mut spec = spec(idp);
    spec.in_response_to = None;
    let v = validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now())?;
    assert_eq!(v.in_response_to, None);
    Ok(())
}

#[test]
fn time_window_and_skew_edges() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let not_on_or_after = now() + Duration::minutes(5);
    let skew = sp.clock_skew;
    let one = Duration::seconds(1);

    validate_response_xml(&sp, &xml, not_on_or_after + skew - one)?;
    let err = refused(validate_response_xml(&sp, &xml, not_on_or_after + skew))?;
    assert!(matches!(err.reason(), Some(Reason::Expired)), "{err}");
    let err = refused(validate_response_xml(&sp, &xml, now() + Duration::days(1)))?;
    assert!(matches!(err.reason(), Some(Reason::Expired)), "{err}");

    // NotBefore is `now()`.
    validate_response_xml(&sp, &xml, now() - skew)?;
    let err = refused(validate_response_xml(&sp, &xml, now() - skew - one))?;
    assert!(matches!(err.reason(), Some(Reason::NotYetValid)), "{err}");

    let strict = SpSettings { clock_skew: Duration::zero(), ..sp.clone() };
    let err = refused(validate_response_xml(&strict, &xml, not_on_or_after))?;
    assert!(matches!(err.reason(), Some(Reason::Expired)), "{err}");
    Ok(())
}

#[test]
fn refuses_missing_time_bounds() -> TestResult {
    let idp = idp()?;
    let mut spec = spec(idp);
    spec.not_on_or_after = None;
    let err = refused(validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now()))?;
    assert!(matches!(err.reason(), Some(Reason::MissingTimeBounds)), "{err}");
    Ok(())
}

#[test]
fn refuses_non_success_status() -> TestResult {
    let idp = idp()?;
    let mut spec = spec(idp);
    spec.status = "urn:oasis:names:tc:SAML:2.0:status:Requester".into();
    let err = refused(validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now()))?;
    assert!(matches!(err.reason(), Some(Reason::StatusNotSuccess)), "{err}");
    Ok(())
}

#[test]
fn sha1_only_when_allowed() -> TestResult {
    let idp = idp()?;
    for mode in [SignMode::Assertion, SignMode::Both] {
        let mut spec = spec(idp);
        spec.sign = mode;
        spec.alg = SigAlg::RsaSha1;
        let xml = idp.sign_response(&spec)?;
        let err = refused(validate_response_xml(&sp(idp), &xml, now()))?;
        assert!(matches!(err.reason(), Some(Reason::AlgorithmNotAllowed)), "{err}");
        let lenient = SpSettings { allow_sha1: true, ..sp(idp) };
        let v = validate_response_xml(&lenient, &xml, now())?;
        assert_eq!(v.name_id, "alice@example.com");
    }
    // Opting in to SHA-1 does not weaken SHA-256 responses or admit unknown algorithms.
    let lenient = SpSettings { allow_sha1: true, ..sp(idp) };
    let (_, _, xml) = signed(SignMode::Assertion)?;
    validate_response_xml(&lenient, &xml, now())?;
    let md5 = replace_once(
        &xml,
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#md5",
    )?;
    let err = refused(validate_response_xml(&lenient, &md5, now()))?;
    assert!(matches!(err.reason(), Some(Reason::AlgorithmNotAllowed)), "{err}");
    Ok(())
}

/// Found with the fuzz target: one start tag with tens of thousands of attributes, inside the size limit,
/// took roxmltree about a minute (its duplicate-attribute check is quadratic). The prescan now
/// refuses it before any parser builds a tree.
#[test]
fn refuses_start_tag_with_too_many_attributes_quickly() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let attributes: String = (0..20_000).map(|i| format!(" a{i:05}=\"\"")).collect();
    let forged = replace_once(&xml, "<samlp:Response ", &format!("<samlp:Response{attributes} "))?;
    assert!(forged.len() < sp.max_response_bytes);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&forged);
    let started = std::time::Instant::now();
    let err = refused(validate_post_response(&sp, &b64, now()))?;
    assert!(matches!(err.reason(), Some(Reason::Malformed)), "{err}");
    assert!(err.to_string().contains("attributes on one element"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    // 64 attributes on one element are still fine (the signed Response carries a handful).
    let few: String = (0..50).map(|i| format!(" xmlns:p{i}=\"urn:x:{i}\"")).collect();
    let ok = replace_once(&xml, "<samlp:Response ", &format!("<samlp:Response{few} "))?;
    validate_response_xml(&sp, &ok, now())?;
    Ok(())
}

/// Found by fuzzing with LeakSanitizer: with only the Assertion signed, samael never freed the
/// Response wrapper it unlinks, so a response padded with unsigned elements leaked megabytes a
/// call (a DoS for anyone holding one validly signed response, expired or not).
#[cfg(target_os = "linux")]
#[test]
fn assertion_signed_validation_does_not_leak_the_wrapper() -> TestResult {
    fn rss_kib() -> Result<u64, Box<dyn Error>> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).ok_or("VmRSS value")?.parse()?)
    }
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let padding: String = (0..5_000).map(|i| format!("<x ID=\"_p{i}\"/>")).collect();
    let padded = replace_once(
        &xml,
        "<samlp:Status>",
        &format!("<samlp:Extensions>{padding}</samlp:Extensions><samlp:Status>"),
    )?;
    validate_response_xml(&sp, &padded, now())?;
    let before = rss_kib()?;
    for _ in 0..40 {
        validate_response_xml(&sp, &padded, now())?;
    }
    // The leak was about 1.7 MB a call here (68 MB in all); what remains is allocator noise and
    // the other tests running alongside.
    let grown = rss_kib()?.saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB over 40 validations");
    Ok(())
}

#[test]
fn refuses_oversized() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let small = SpSettings { max_response_bytes: 1024, ..sp };
    let err = refused(validate_response_xml(&small, &xml, now()))?;
    assert!(matches!(err.reason(), Some(Reason::TooLarge)), "{err}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&xml);
    let err = refused(validate_post_response(&small, &b64, now()))?;
    assert!(matches!(err.reason(), Some(Reason::TooLarge)), "{err}");
    Ok(())
}

#[test]
fn refuses_bad_base64() -> TestResult {
    let sp = sp(idp()?);
    for bad in ["not base64!", "PHNhbWxwOlJlc3BvbnNl=", "%3Csamlp"] {
        let err = refused(validate_post_response(&sp, bad, now()))?;
        assert!(matches!(err.reason(), Some(Reason::BadEncoding)), "{bad}: {err}");
    }
    Ok(())
}

#[test]
fn refuses_deflated_or_binary_body() -> TestResult {
    use std::io::Write;
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(xml.as_bytes())?;
    let deflated = base64::engine::general_purpose::STANDARD.encode(encoder.finish()?);
    let err = refused(validate_post_response(&sp, &deflated, now()))?;
    assert!(matches!(err.reason(), Some(Reason::Malformed)), "{err}");
    let nul = base64::engine::general_purpose::STANDARD.encode(b"\0<samlp:Response/>");
    let err = refused(validate_post_response(&sp, &nul, now()))?;
    assert!(matches!(err.reason(), Some(Reason::Malformed)), "{err}");
    Ok(())
}

#[test]
fn refuses_non_response_and_garbage() -> TestResult {
    let (sp, _, xml) = signed(SignMode::Assertion)?;
    let (s, e) = span(&xml, "<saml:Assertion", "</saml:Assertion>")?;
    let bare = replace_once(
        &xml[s..e],
        "<saml:Assertion",
        &format!("<saml:Assertion xmlns:saml=\"{}\"", xml::NS_ASSERTION),
    )?;
    let err = refused(validate_response_xml(&sp, &bare, now()))?;
    assert!(matches!(err.reason(), Some(Reason::NotAResponse)), "{err}");
    let other = base64::engine::general_purpose::STANDARD.encode("<notsaml/>");
    let err = refused(validate_post_response(&sp, &other, now()))?;
    assert!(matches!(err.reason(), Some(Reason::NotAResponse)), "{err}");
    for garbage in ["", "<samlp:Response", "<a></b>", &xml[..xml.len() / 2]] {
        let err = refused(validate_response_xml(&sp, garbage, now()))?;
        assert!(matches!(err.reason(), Some(Reason::Malformed)), "{err}");
    }
    Ok(())
}

/// The SP's encryption key pair, generated once for the module.
fn sp_key() -> Result<&'static (DecryptionKey, Vec<u8>), Box<dyn Error>> {
    static KEY: OnceLock<(DecryptionKey, Vec<u8>)> = OnceLock::new();
    if KEY.get().is_none() {
        let rsa = openssl::rsa::Rsa::generate(2048)?;
        let pem = rsa.private_key_to_pem()?;
        let key = DecryptionKey::from_pem(&pem)?;
        let public = key.public_key_der();
        let _ = KEY.set((key, public));
    }
    Ok(KEY.get().ok_or("SP key not initialised")?)
}

/// An encrypted response (signed per `mode`) and settings holding the SP key.
fn encrypted(mode: SignMode, gcm: bool) -> Result<(SpSettings, String), Box<dyn Error>> {
    let idp = idp()?;
    let (key, public) = sp_key()?;
    let mut spec = spec(idp);
    spec.sign = mode;
    spec.encryption = Some(crate::devidp::Encryption { public_key_der: public.clone(), gcm });
    let xml = idp.sign_response(&spec)?;
    let sp = SpSettings { decryption_keys: vec![key.clone()], ..sp(idp) };
    Ok((sp, xml))
}

#[test]
fn accepts_encrypted_assertions_in_every_signing_mode() -> TestResult {
    for mode in [SignMode::Assertion, SignMode::Response, SignMode::Both] {
        for gcm in [true, false] {
            let (sp, xml) = encrypted(mode, gcm)?;
            assert!(xml.contains("EncryptedAssertion") && !xml.contains("<saml:Assertion"), "{mode:?}");
            let v =
                validate_response_xml(&sp, &xml, now()).map_err(|e| format!("{mode:?} gcm={gcm}: {e}"))?;
            assert_eq!(v.name_id, "alice@example.com");
            assert_eq!(v.in_response_to.as_deref(), Some(REQUEST_ID));
            let groups = v.attributes.iter().find(|a| a.name == "groups").ok_or("groups")?;
            assert_eq!(groups.values, ["Engineering", "IT Admins"]);
        }
    }
    Ok(())
}

#[test]
fn refuses_encrypted_assertion_without_a_key() -> TestResult {
    let (sp, xml) = encrypted(SignMode::Response, true)?;
    let sp = SpSettings { decryption_keys: vec![], ..sp };
    let err = refused(validate_response_xml(&sp, &xml, now()))?;
    assert!(matches!(err.reason(), Some(Reason::EncryptedUnsupported)), "{err}");
    Ok(())
}

#[test]
fn refuses_encrypted_assertion_signed_by_nobody() -> TestResult {
    let (sp, xml) = encrypted(SignMode::Unsigned, true)?;
    let err = refused(validate_response_xml(&sp, &xml, now()))?;
    assert!(matches!(err.reason(), Some(Reason::SignatureMissing)), "{err}");
    Ok(())
}

#[test]
fn refuses_encrypted_assertion_for_another_key() -> TestResult {
    let (sp, xml) = encrypted(SignMode::Assertion, false)?;
    let other = DecryptionKey::from_pem(&openssl::rsa::Rsa::generate(2048)?.private_key_to_pem()?)?;
    let sp = SpSettings { decryption_keys: vec![other], ..sp };
    let err = refused(validate_response_xml(&sp, &xml, now()))?;
    assert!(matches!(err.reason(), Some(Reason::DecryptionFailed)), "{err}");
    Ok(())
}

#[test]
fn refuses_rsa_1_5_and_unknown_algorithms() -> TestResult {
    let (sp, xml) = encrypted(SignMode::Assertion, true)?;
    for (from, to) in [
        ("xmlenc#rsa-oaep-mgf1p", "xmlenc#rsa-1_5"),
        ("xmlenc11#aes256-gcm", "xmlenc#tripledes-cbc"),
        ("xmlenc#rsa-oaep-mgf1p", "xmlenc#kw-aes256"),
    ] {
        let bent = replace_once(&xml, from, to)?;
        let err = refused(validate_response_xml(&sp, &bent, now()))?;
        assert!(matches!(err.reason(), Some(Reason::AlgorithmNotAllowed)), "{to}: {err}");
    }
    Ok(())
}

#[test]
fn refuses_garbage_ciphertext_without_panicking() -> TestResult {
    let (sp, xml) = encrypted(SignMode::Assertion, false)?;
    // The second CipherValue is the data (the first is the wrapped key).
    let values: Vec<usize> = xml.match_indices("<xenc:CipherValue>").map(|(i, _)| i).collect();
    let [key_at, data_at] = values[..] else { return Err("two CipherValues expected".into()) };
    let cut = |xml: &str, at: usize, with: &str| -> Result<String, Box<dyn Error>> {
        let open = at + "<xenc:CipherValue>".len();
        let close = xml[open..].find("</xenc:CipherValue>").ok_or("close")? + open;
        Ok(format!("{}{}{}", &xml[..open], with, &xml[close..]))
    };
    for (at, with) in [
        (data_at, ""),
        (data_at, "AAAA"),
        (data_at, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        (data_at, "!!not base64!!"),
        (key_at, ""),
        (key_at, "AAAA"),
    ] {
        let bent = cut(&xml, at, with)?;
        let err = refused(validate_response_xml(&sp, &bent, now()))?;
        assert!(matches!(err.reason(), Some(Reason::DecryptionFailed)), "{with:?}: {err}");
    }
    // A flipped bit in the CBC ciphertext: a refusal (padding or signature), never a panic.
    let open = data_at + "<xenc:CipherValue>".len();
    let body = &xml[open..open + 40];
    let flipped = if body.starts_with('A') { body.replacen('A', "B", 1) } else { format!("A{}", &body[1..]) };
    let bent = format!("{}{}{}", &xml[..open], flipped, &xml[open + 40..]);
    assert!(validate_response_xml(&sp, &bent, now()).is_err());
    Ok(())
}

#[test]
fn signed_response_is_verified_before_decryption() -> TestResult {
    let (sp, xml) = encrypted(SignMode::Response, false)?;
    let values: Vec<usize> = xml.match_indices("<xenc:CipherValue>").map(|(i, _)| i).collect();
    let open = values[1] + "<xenc:CipherValue>".len();
    let bent = format!("{}AAAA{}", &xml[..open], &xml[open + 4..]);
    let err = refused(validate_response_xml(&sp, &bent, now()))?;
    assert!(matches!(err.reason(), Some(Reason::SignatureInvalid)), "{err}");
    Ok(())
}

#[test]
fn refuses_assertion_next_to_encrypted_assertion() -> TestResult {
    let (sp, _, plain) = signed(SignMode::Assertion)?;
    let (s, e) = span(&plain, "<saml:Assertion", "</saml:Assertion>")?;
    let (_, enc) = encrypted(SignMode::Assertion, true)?;
    let (es, ee) = span(&enc, "<saml:EncryptedAssertion>", "</saml:EncryptedAssertion>")?;
    let both = format!("{}{}{}", &plain[..e], &enc[es..ee], &plain[e..]);
    let _ = s;
    let err = refused(validate_response_xml(&sp, &both, now()))?;
    assert!(matches!(err.reason(), Some(Reason::MultipleAssertions)), "{err}");
    Ok(())
}

#[test]
fn sp_metadata_advertises_the_encryption_certificate() -> TestResult {
    let idp = idp()?;
    let sp = SpSettings { encryption_cert: Some(vec![1, 2, 3]), ..sp(idp) };
    let xml = sp_metadata_xml(&sp);
    assert!(xml.contains(r#"<md:KeyDescriptor use="encryption">"#), "{xml}");
    assert!(xml.contains("<ds:X509Certificate>AQID</ds:X509Certificate>"), "{xml}");
    assert!(xml.contains("xmlenc11#aes256-gcm") && !xml.contains("rsa-1_5"), "{xml}");
    assert!(!sp_metadata_xml(&self::sp(idp)).contains("KeyDescriptor"));
    Ok(())
}

#[test]
fn refuses_blank_name_id() -> TestResult {
    let idp = idp()?;
    let mut spec = spec(idp);
    spec.name_id = "  \n ".into();
    let err = refused(validate_response_xml(&sp(idp), &idp.sign_response(&spec)?, now()))?;
    assert!(matches!(err.reason(), Some(Reason::NameIdInvalid)), "{err}");
    Ok(())
}

#[test]
fn refuses_without_trusted_key() -> TestResult {
    let (mut sp, _, xml) = signed(SignMode::Assertion)?;
    sp.idp.signing_certs.clear();
    let err = refused(validate_response_xml(&sp, &xml, now()))?;
    assert!(matches!(err.reason(), Some(Reason::NoTrustedKey)), "{err}");
    Ok(())
}

#[test]
fn metadata_round_trip() -> TestResult {
    let idp = idp()?;
    let md = parse_idp_metadata(&idp.metadata_xml())?;
    assert_eq!(md.entity_id, IDP_ENTITY);
    assert_eq!(md.sso_url, IDP_SSO);
    assert_eq!(md.sso_binding, SsoBinding::Redirect);
    assert_eq!(md.signing_certs, vec![idp.cert_der().to_vec()]);

    let post_only = idp.metadata_xml().replace(xml::BINDING_REDIRECT, xml::BINDING_POST);
    assert_eq!(parse_idp_metadata(&post_only)?.sso_binding, SsoBinding::Post);
    Ok(())
}

#[test]
fn metadata_without_signing_certificate_is_refused() -> TestResult {
    let idp = idp()?;
    let encryption_only = idp.metadata_xml().replace("use=\"signing\"", "use=\"encryption\"");
    match parse_idp_metadata(&encryption_only) {
        Err(SamlError::Metadata(m)) => assert!(m.contains("no signing certificate"), "{m}"),
        other => return Err(format!("expected a metadata error, got {other:?}").into()),
    }
    let (s, e) = span(&idp.metadata_xml(), "<md:KeyDescriptor", "</md:KeyDescriptor>")?;
    let md = idp.metadata_xml();
    let no_keys = format!("{}{}", &md[..s], &md[e..]);
    assert!(matches!(parse_idp_metadata(&no_keys), Err(SamlError::Metadata(_))));
    Ok(())
}

#[test]
fn metadata_rejects_bad_input() -> TestResult {
    let idp = idp()?;
    let md = idp.metadata_xml();
    let bad_cert = md.replace("<ds:X509Certificate>MII", "<ds:X509Certificate>AAAA");
    let two = format!(
        "<md:EntitiesDescriptor xmlns:md=\"{}\">{}{}</md:EntitiesDescriptor>",
        xml::NS_METADATA,
        md.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        md.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
            .replace(IDP_ENTITY, "https://second.example")
    );
    let dtd = format!("<!DOCTYPE x>{}", md.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    for bad in [bad_cert, two, dtd, "<html/>".to_string(), "not xml".to_string()] {
        assert!(matches!(parse_idp_metadata(&bad), Err(SamlError::Metadata(_))), "{bad}");
    }
    Ok(())
}

#[test]
fn sp_metadata_is_escaped_and_complete() -> TestResult {
    let mut sp = sp(idp()?);
    sp.entity_id = "https://broker.example/saml/a&b/metadata".into();
    let xml = sp_metadata_xml(&sp);
    let doc = xml::parse_strict(&xml)?;
    let root = doc.root_element();
    assert_eq!(root.attribute("entityID"), Some(sp.entity_id.as_str()));
    let acs = root
        .descendants()
        .find(|n| xml::is(*n, xml::NS_METADATA, "AssertionConsumerService"))
        .ok_or("no ACS")?;
    assert_eq!(acs.attribute("Location"), Some(ACS));
    assert_eq!(acs.attribute("Binding"), Some(xml::BINDING_POST));
    assert_eq!(acs.attribute("isDefault"), Some("true"));
    let sso = root
        .descendants()
        .find(|n| xml::is(*n, xml::NS_METADATA, "SPSSODescriptor"))
        .ok_or("no SPSSODescriptor")?;
    assert_eq!(sso.attribute("WantAssertionsSigned"), Some("true"));
    assert_eq!(sso.attribute("AuthnRequestsSigned"), Some("false"));
    Ok(())
}

#[test]
fn authn_request_redirect_round_trip() -> TestResult {
    let mut sp = sp(idp()?);
    for (sso, separator) in [(IDP_SSO, "?"), ("https://idp.example/sso?idpid=C0abc", "&")] {
        sp.idp.sso_url = sso.into();
        let redirect = authn_request_redirect(&sp, "opaque state/+=", now())?;
        assert_eq!(redirect.request_id.len(), 33);
        assert!(redirect.url.starts_with(&format!("{sso}{separator}SAMLRequest=")), "{}", redirect.url);
        let url = url::Url::parse(&redirect.url)?;
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("RelayState").as_deref(), Some("opaque state/+="));
        let parsed = parse_authn_request(&get("SAMLRequest").ok_or("no SAMLRequest")?)?;
        assert_eq!(parsed.id, redirect.request_id);
        assert_eq!(parsed.acs_url.as_deref(), Some(ACS));
        assert_eq!(parsed.issuer.as_deref(), Some(SP_ENTITY));
    }
    let a = authn_request_redirect(&sp, "", now())?;
    let b = authn_request_redirect(&sp, "", now())?;
    assert_ne!(a.request_id, b.request_id);
    assert!(!a.url.contains("RelayState"));
    Ok(())
}

/// One generated SP signing key for the module (RSA-3072 generation is slow).
fn sp_signing_key() -> Result<&'static SpSigningKey, Box<dyn Error>> {
    static KEY: OnceLock<SpSigningKey> = OnceLock::new();
    if KEY.get().is_none() {
        let generated = SpSigningKey::generate(SP_ENTITY)?;
        let key = SpSigningKey::from_pem(generated.key_pem.as_bytes(), generated.cert_pem.as_bytes())?;
        let _ = KEY.set(key);
    }
    Ok(KEY.get().ok_or("SP signing key not initialised")?)
}

fn signing_sp(binding: SsoBinding) -> Result<SpSettings, Box<dyn Error>> {
    let idp = idp()?;
    let mut sp = sp(idp);
    sp.idp.sso_binding = binding;
    sp.sign_authn_requests = true;
    sp.signing_key = Some(sp_signing_key()?.clone());
    Ok(sp)
}

/// Verifies an HTTP-Redirect query signature the way an IdP does: over the raw query bytes up
/// to `&Signature=`, with the certificate from our SP metadata.
fn redirect_signature_ok(url: &str, cert_der: &[u8]) -> Result<bool, Box<dyn Error>> {
    let query = url.split_once('?').ok_or("no query")?.1;
    let (signed, signature) = query.split_once("&Signature=").ok_or("no Signature")?;
    let signature: String = url::form_urlencoded::parse(format!("s={signature}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or("bad Signature")?;
    let signature = base64::engine::general_purpose::STANDARD.decode(signature)?;
    let public = openssl::x509::X509::from_der(cert_der)?.public_key()?;
    let mut verifier = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public)?;
    verifier.update(signed.as_bytes())?;
    Ok(verifier.verify(&signature)?)
}

#[test]
fn signs_redirect_authn_requests() -> TestResult {
    let sp = signing_sp(SsoBinding::Redirect)?;
    let AuthnStart::Redirect(r) = authn_request(&sp, "relay-1", now(), false)? else {
        return Err("expected the Redirect binding".into());
    };
    let query = r.url.split_once('?').ok_or("no query")?.1;
    assert!(query.starts_with("SAMLRequest="), "{query}");
    assert!(query.contains("&RelayState=relay-1&SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256&Signature="));
    let cert = sp_signing_key()?.cert_der();
    assert!(redirect_signature_ok(&r.url, cert)?);
    // Any change to the signed parameters breaks it.
    assert!(!redirect_signature_ok(&r.url.replace("relay-1", "relay-2"), cert)?);
    // The request ID never starts with a digit (it is an xs:ID).
    assert!(r.request_id.starts_with('_'));
    Ok(())
}

#[test]
fn signs_post_authn_requests() -> TestResult {
    use samael::crypto::CryptoProvider;
    let sp = signing_sp(SsoBinding::Post)?;
    let AuthnStart::Post { saml_request, request_id, .. } = authn_request(&sp, "relay-1", now(), false)?
    else {
        return Err("expected the POST binding".into());
    };
    let xml = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(saml_request)?)?;
    assert!(xml.contains(&format!(r##"<ds:Reference URI="#{request_id}">"##)), "{xml}");
    let cert = samael::crypto::CertificateDer::from(sp_signing_key()?.cert_der().to_vec());
    let verify = |xml: &str| {
        let _guard = xmlsec_lock();
        samael::crypto::Crypto::reduce_xml_to_signed(
            xml,
            std::slice::from_ref(&cert),
            samael::crypto::ReduceMode::ValidateAndMarkNoAncestors,
        )
        .is_ok()
    };
    assert!(verify(&xml), "the IdP verifies the enveloped signature");
    assert!(!verify(&xml.replace("AllowCreate=\"true\"", "AllowCreate=\"false\"")), "tampering breaks it");
    Ok(())
}

#[test]
fn signing_without_a_key_is_an_error_and_metadata_says_so() -> TestResult {
    let mut sp = signing_sp(SsoBinding::Redirect)?;
    let xml = sp_metadata_xml(&sp);
    assert!(xml.contains(r#"AuthnRequestsSigned="true""#), "{xml}");
    assert!(xml.contains(r#"<md:KeyDescriptor use="signing">"#), "{xml}");
    sp.signing_key = None;
    assert!(authn_request(&sp, "r", now(), false).is_err());
    assert!(sp_metadata_xml(&sp).contains(r#"AuthnRequestsSigned="false""#));
    // An unsigned connection sends neither SigAlg nor Signature.
    let AuthnStart::Redirect(r) = authn_request(&self::sp(idp()?), "r", now(), false)? else {
        return Err("expected the Redirect binding".into());
    };
    assert!(!r.url.contains("SigAlg") && !r.url.contains("Signature"));
    Ok(())
}

#[test]
fn reads_want_authn_requests_signed() -> TestResult {
    let idp = idp()?;
    let plain = parse_idp_metadata(&idp.metadata_xml())?;
    assert!(!plain.want_authn_requests_signed);
    let wants =
        idp.metadata_xml().replace(r#"WantAuthnRequestsSigned="false""#, r#"WantAuthnRequestsSigned="true""#);
    assert!(parse_idp_metadata(&wants)?.want_authn_requests_signed);
    Ok(())
}
