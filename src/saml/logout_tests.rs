//! Single logout tests: our messages checked by verifiers other than our own, the dev IdP's
//! accepted, and each way an inbound logout message can be bent refused with its exact reason.

use std::collections::HashMap;
use std::error::Error;
use std::sync::OnceLock;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::sign::SIG_RSA_SHA256;
use super::tests::{idp, now, replace_once, sp, span, TestResult, IDP_ENTITY, SP_ENTITY};
use super::*;
use crate::devidp::tests::{xmlsec1_available, xmlsec1_verify};
use crate::devidp::{
    parse_logout_request, redirect_query_unsigned, DevIdp, LogoutRequestSpec, LogoutResponseSpec, SigAlg,
};

const OUR_SLO: &str = "https://broker.example/saml/acme/slo";
/// With a query of its own, which must stay first and outside the signature.
const IDP_SLO: &str = "https://idp.example/slo?tenant=7";
const IDP_SLO_RESPONSE: &str = "https://idp.example/slo/return";
const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
const ALICE: &str = "alice@example.com";

type Res<T> = Result<T, Box<dyn Error>>;

fn sp_key() -> Res<&'static SpSigningKey> {
    static KEY: OnceLock<SpSigningKey> = OnceLock::new();
    if KEY.get().is_none() {
        let generated = SpSigningKey::generate(SP_ENTITY)?;
        let _ = KEY.set(SpSigningKey::from_pem(generated.key_pem.as_bytes(), generated.cert_pem.as_bytes())?);
    }
    Ok(KEY.get().ok_or("SP key not initialised")?)
}

/// An attacker's IdP: same entity ID, its own key, its certificate in every KeyInfo it signs.
fn attacker() -> Res<&'static DevIdp> {
    static IDP: OnceLock<DevIdp> = OnceLock::new();
    if IDP.get().is_none() {
        let _ = IDP.set(DevIdp::generate(IDP_ENTITY, "https://idp.example/sso")?);
    }
    Ok(IDP.get().ok_or("attacker IdP not initialised")?)
}

/// The SP with single logout on: our SLO URL, a signing key, and the IdP's SLO endpoint.
fn slo_sp(binding: SsoBinding) -> Res<SpSettings> {
    let mut sp = sp(idp()?);
    sp.slo_url = OUR_SLO.into();
    sp.signing_key = Some(sp_key()?.clone());
    sp.idp.slo = Some(SloEndpoint { binding, url: IDP_SLO.into(), response_url: IDP_SLO_RESPONSE.into() });
    Ok(sp)
}

/// The IdP's side of our messages: trusts the SP certificate and expects `destination`.
fn mirror(destination: &str) -> Res<SpSettings> {
    let mut mirror = sp(idp()?);
    mirror.idp.entity_id = SP_ENTITY.into();
    mirror.idp.signing_certs = vec![sp_key()?.cert_der().to_vec()];
    mirror.slo_url = destination.into();
    Ok(mirror)
}

fn request_spec() -> Res<LogoutRequestSpec> {
    Ok(LogoutRequestSpec::new(idp()?, OUR_SLO, ALICE, now()))
}

fn response_spec() -> Res<LogoutResponseSpec> {
    Ok(LogoutResponseSpec::new(idp()?, OUR_SLO, "_our_request", now()))
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(text: &str) -> Res<String> {
    Ok(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text)?)?)
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `xml` signed by `signer` (enveloped), base64 for the POST binding.
fn signed_post_by(signer: &DevIdp, xml: &str, id: &str, alg: SigAlg) -> Res<String> {
    Ok(b64(&signer.sign_message(xml, id, alg)?))
}

fn signed_post(xml: &str, id: &str) -> Res<String> {
    signed_post_by(idp()?, xml, id, SigAlg::RsaSha256)
}

fn request_post(spec: &LogoutRequestSpec) -> Res<String> {
    signed_post_by(idp()?, &idp()?.logout_request_xml(spec), &spec.id, spec.alg)
}

fn request_redirect(spec: &LogoutRequestSpec, relay_state: Option<&str>) -> Res<String> {
    Ok(idp()?.redirect_query("SAMLRequest", &idp()?.logout_request_xml(spec), relay_state, spec.alg)?)
}

fn response_post(spec: &LogoutResponseSpec) -> Res<String> {
    signed_post_by(idp()?, &idp()?.logout_response_xml(spec), &spec.id, spec.alg)
}

fn response_redirect(spec: &LogoutResponseSpec, relay_state: Option<&str>) -> Res<String> {
    Ok(idp()?.redirect_query("SAMLResponse", &idp()?.logout_response_xml(spec), relay_state, spec.alg)?)
}

fn redirect(raw_query: &str) -> Inbound<'_> {
    Inbound::Redirect { raw_query }
}

fn post(message_b64: &str) -> Inbound<'_> {
    Inbound::Post { message_b64, relay_state: None }
}

fn rejection<T: std::fmt::Debug>(result: Result<T, SamlError>) -> Res<Reason> {
    match result {
        Ok(v) => Err(format!("accepted: {v:?}").into()),
        Err(e) => Ok(e.reason().ok_or_else(|| format!("not a rejection: {e}"))?),
    }
}

fn request_refused(sp: &SpSettings, inbound: Inbound<'_>) -> Res<Reason> {
    rejection(verify_logout_request(sp, inbound, now()))
}

fn response_refused(sp: &SpSettings, inbound: Inbound<'_>) -> Res<Reason> {
    rejection(verify_logout_response(sp, inbound, now()))
}

/// The raw value of a query parameter.
fn raw_param<'q>(query: &'q str, name: &str) -> Res<&'q str> {
    let prefix = format!("{name}=");
    Ok(query.split('&').find_map(|p| p.strip_prefix(prefix.as_str())).ok_or("no such parameter")?)
}

fn decoded_params(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// A query whose signature covers `signed` exactly as given, by `key`, with `sp` trusting the
/// key's certificate.
fn sign_raw(sp: &mut SpSettings, signed: &str) -> Res<String> {
    let key = sp_key()?;
    sp.idp.signing_certs = vec![key.cert_der().to_vec()];
    Ok(format!("{signed}&Signature={}", enc(&key.sign_b64(signed.as_bytes())?)))
}

fn strip_declaration(xml: &str) -> &str {
    match xml.find("?>") {
        Some(end) if xml.starts_with("<?xml") => xml[end + 2..].trim_start(),
        _ => xml,
    }
}

fn subject() -> LogoutSubject {
    LogoutSubject {
        name_id: ALICE.into(),
        name_id_format: Some(xml::NAMEID_EMAIL.into()),
        session_index: Some("_session<1>".into()),
        name_qualifier: Some("https://idp.example/adfs/services/trust".into()),
        sp_name_qualifier: Some(SP_ENTITY.into()),
    }
}

/// openssl alone (no XML library): RSA-SHA256 over the signed part of our query, with the
/// certificate the SP metadata publishes.
fn openssl_verifies_query(ours: &str) -> Res<bool> {
    let (signed, signature) = ours.rsplit_once("&Signature=").ok_or("no Signature")?;
    let signature = decoded_params(&format!("s={signature}")).remove("s").ok_or("no value")?;
    let signature = base64::engine::general_purpose::STANDARD.decode(signature)?;
    let key = X509::from_der(sp_key()?.cert_der())?.public_key()?;
    let mut verifier = openssl::sign::Verifier::new(MessageDigest::sha256(), &key)?;
    verifier.update(signed.as_bytes())?;
    Ok(verifier.verify(&signature)?)
}

fn sp_cert_pem() -> Res<String> {
    Ok(String::from_utf8(X509::from_der(sp_key()?.cert_der())?.to_pem()?)?)
}

// ---------------------------------------------------------------- our messages out

/// The NameID goes back exactly as asserted, qualifiers included (SAML core 3.3.4): ADFS and
/// Shibboleth match them and otherwise keep their session.
#[test]
fn our_logout_request_names_the_subject_with_its_qualifiers() -> TestResult {
    let sp = slo_sp(SsoBinding::Post)?;
    let out = logout_request(&sp, &subject(), None, now())?;
    let Outbound::Post { value, .. } = &out.outbound else { return Err("not a POST".into()) };
    let xml = unb64(value)?;
    let doc = roxmltree::Document::parse(&xml)?;
    let name_id =
        doc.descendants().find(|n| n.has_tag_name((xml::NS_ASSERTION, "NameID"))).ok_or("no NameID")?;
    assert_eq!(name_id.attribute("NameQualifier"), Some("https://idp.example/adfs/services/trust"));
    assert_eq!(name_id.attribute("SPNameQualifier"), Some(SP_ENTITY));
    assert_eq!(name_id.attribute("Format"), Some(xml::NAMEID_EMAIL));
    assert_eq!(name_id.text(), Some(ALICE));
    if xmlsec1_available() {
        assert!(xmlsec1_verify(&xml, &sp_cert_pem()?, 1)?);
    }
    Ok(())
}

#[test]
fn our_logout_request_redirect_verifies_and_round_trips() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let relay = "back to/app?x=1&y=é";
    let out = logout_request(&sp, &subject(), Some(relay), now())?;
    let Outbound::Redirect(url) = &out.outbound else { return Err("not a redirect".into()) };
    let (base, query) = url.split_once('?').ok_or("no query")?;
    assert_eq!(base, "https://idp.example/slo");
    let ours = query.strip_prefix("tenant=7&").ok_or("the IdP's own parameter is not first")?;
    let names: Vec<&str> = ours.split('&').filter_map(|p| p.split_once('=').map(|(k, _)| k)).collect();
    assert_eq!(names, ["SAMLRequest", "RelayState", "SigAlg", "Signature"]);
    assert!(openssl_verifies_query(ours)?);

    let params = decoded_params(ours);
    assert_eq!(params["SigAlg"], SIG_RSA_SHA256);
    assert_eq!(params["RelayState"], relay);
    let parsed = parse_logout_request(&params["SAMLRequest"], true)?;
    assert_eq!(parsed.id, out.request_id);
    assert_eq!(parsed.issuer.as_deref(), Some(SP_ENTITY));
    assert_eq!(parsed.destination.as_deref(), Some(IDP_SLO));
    assert_eq!(parsed.name_id, ALICE);
    assert_eq!(parsed.name_id_format.as_deref(), Some(xml::NAMEID_EMAIL));
    assert_eq!(parsed.session_indexes, ["_session<1>"]);

    // Our own verifier, in the IdP's seat, reads it back (NotOnOrAfter included).
    let v = verify_logout_request(&mirror(IDP_SLO)?, redirect(query), now() + Duration::minutes(4))?;
    assert_eq!((v.id.as_str(), v.name_id.as_str()), (out.request_id.as_str(), ALICE));
    assert_eq!(v.session_indexes, ["_session<1>"]);
    assert_eq!(v.relay_state.as_deref(), Some(relay));
    Ok(())
}

#[test]
fn our_logout_request_post_verifies_with_xmlsec1() -> TestResult {
    let sp = slo_sp(SsoBinding::Post)?;
    let subject = LogoutSubject {
        name_id_format: None,
        session_index: None,
        name_qualifier: None,
        sp_name_qualifier: None,
        ..subject()
    };
    let out = logout_request(&sp, &subject, Some("rs"), now())?;
    let Outbound::Post { url, field, value, relay_state } = &out.outbound else {
        return Err("not a POST".into());
    };
    assert_eq!((url.as_str(), *field, relay_state.as_deref()), (IDP_SLO, "SAMLRequest", Some("rs")));
    let xml = unb64(value)?;
    // Schema order: Issuer, Signature, NameID; no Format or SessionIndex when unknown.
    let at = |needle: &str| xml.find(needle).ok_or(format!("{needle} missing"));
    assert!(at("<saml:Issuer>")? < at("<ds:Signature")? && at("<ds:Signature")? < at("<saml:NameID>")?);
    assert!(!xml.contains("SessionIndex") && !xml.contains("Format=") && !xml.contains("Qualifier"));
    if xmlsec1_available() {
        assert!(xmlsec1_verify(&xml, &sp_cert_pem()?, 1)?);
        assert!(!xmlsec1_verify(&xml, &attacker()?.cert_pem(), 1)?);
    } else {
        eprintln!("xmlsec1 not installed; skipping the independent verification");
    }
    let parsed = parse_logout_request(value, false)?;
    assert_eq!((parsed.id.as_str(), parsed.name_id.as_str()), (out.request_id.as_str(), ALICE));
    assert!(parsed.session_indexes.is_empty() && parsed.name_id_format.is_none());
    let v = verify_logout_request(&mirror(IDP_SLO)?, post(value), now())?;
    assert_eq!(v.id, out.request_id);
    Ok(())
}

#[test]
fn our_logout_response_both_bindings() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let Outbound::Redirect(url) = logout_response(&sp, "_their_request", STATUS_SUCCESS, Some("r s"), now())?
    else {
        return Err("not a redirect".into());
    };
    let query = url.strip_prefix(&format!("{IDP_SLO_RESPONSE}?")).ok_or("not to the ResponseLocation")?;
    assert!(openssl_verifies_query(query)?);
    let v = verify_logout_response(&mirror(IDP_SLO_RESPONSE)?, redirect(query), now())?;
    assert_eq!(v.in_response_to, "_their_request");
    assert_eq!(v.relay_state.as_deref(), Some("r s"));
    assert!(v.succeeded());

    let sp = slo_sp(SsoBinding::Post)?;
    let Outbound::Post { url, field, value, relay_state } =
        logout_response(&sp, "_their_request", STATUS_RESPONDER, None, now())?
    else {
        return Err("not a POST".into());
    };
    assert_eq!((url.as_str(), field, relay_state), (IDP_SLO_RESPONSE, "SAMLResponse", None));
    if xmlsec1_available() {
        assert!(xmlsec1_verify(&unb64(&value)?, &sp_cert_pem()?, 1)?);
    }
    let v = verify_logout_response(&mirror(IDP_SLO_RESPONSE)?, post(&value), now())?;
    assert_eq!((v.status.as_str(), v.sub_status.as_deref()), (STATUS_RESPONDER, None));
    assert!(!v.succeeded());
    Ok(())
}

#[test]
fn outbound_needs_a_key_and_an_idp_endpoint() -> TestResult {
    let mut no_key = slo_sp(SsoBinding::Redirect)?;
    no_key.signing_key = None;
    let mut no_slo = slo_sp(SsoBinding::Post)?;
    no_slo.idp.slo = None;
    for sp in [&no_key, &no_slo] {
        assert!(matches!(logout_request(sp, &subject(), None, now()), Err(SamlError::Metadata(_))));
        assert!(matches!(
            logout_response(sp, "_x", STATUS_SUCCESS, None, now()),
            Err(SamlError::Metadata(_))
        ));
    }
    Ok(())
}

#[test]
fn authn_request_redirect_still_signed_over_the_encoded_bytes() -> TestResult {
    let mut sp = slo_sp(SsoBinding::Redirect)?;
    sp.sign_authn_requests = true;
    sp.idp.sso_url = "https://idp.example/sso?a=b".into();
    let r = authn_request_redirect(&sp, "state", now())?;
    let ours = r.url.split_once("?a=b&").ok_or("existing parameter not first")?.1;
    assert!(ours.starts_with("SAMLRequest=") && ours.contains("&RelayState=state&SigAlg="));
    assert!(openssl_verifies_query(ours)?);
    Ok(())
}

// ---------------------------------------------------------------- the IdP's messages in

#[test]
fn accepts_idp_logout_request_both_bindings() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let mut spec = request_spec()?;
    spec.session_indexes = vec![" _idx1 ".into(), "_idx2".into(), " ".into()];
    let relay = "https://app.example/after?a=1&b=é ü";
    let q = request_redirect(&spec, Some(relay))?;
    let b = request_post(&spec)?;
    for (inbound, relay_state) in [
        (redirect(&q), Some(relay)),
        (Inbound::Post { message_b64: &b, relay_state: Some("rs") }, Some("rs")),
        (post(&b), None),
    ] {
        let v = verify_logout_request(&sp, inbound, now())?;
        assert_eq!(v.id, spec.id);
        assert_eq!(v.issuer, IDP_ENTITY);
        assert_eq!(v.issue_instant, now());
        assert_eq!(v.name_id, ALICE);
        assert_eq!(v.name_id_format.as_deref(), Some(xml::NAMEID_EMAIL));
        assert_eq!(v.session_indexes, ["_idx1", "_idx2"]);
        assert_eq!(v.replay_until, now() + Duration::minutes(5) + Duration::seconds(120));
        assert_eq!(v.relay_state.as_deref(), relay_state);
    }
    Ok(())
}

#[test]
fn accepts_idp_logout_response_both_bindings() -> TestResult {
    let sp = slo_sp(SsoBinding::Post)?;
    let spec = response_spec()?;
    let partial = LogoutResponseSpec { sub_status: Some(STATUS_PARTIAL_LOGOUT.into()), ..response_spec()? };
    for (spec, succeeded) in [(spec, true), (partial, false)] {
        let q = response_redirect(&spec, Some("rs"))?;
        let b = response_post(&spec)?;
        for inbound in [redirect(&q), post(&b)] {
            let v = verify_logout_response(&sp, inbound, now())?;
            assert_eq!(v.id, spec.id);
            assert_eq!(v.in_response_to, "_our_request");
            assert_eq!(v.status, STATUS_SUCCESS);
            assert_eq!(v.sub_status, spec.sub_status);
            assert_eq!(v.succeeded(), succeeded);
        }
        assert_eq!(verify_logout_response(&sp, redirect(&q), now())?.relay_state.as_deref(), Some("rs"));
    }
    Ok(())
}

#[test]
fn accepts_ecdsa_query_signature() -> TestResult {
    let (key, cert) = ec_key_and_cert()?;
    let mut sp = slo_sp(SsoBinding::Redirect)?;
    sp.idp.signing_certs = vec![cert.to_der()?];
    let unsigned = redirect_query_unsigned("SAMLRequest", &idp()?.logout_request_xml(&request_spec()?), None);
    let signed = format!("{unsigned}&SigAlg={}", enc(ECDSA_SHA256));
    let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &key)?;
    signer.update(signed.as_bytes())?;
    let der = openssl::ecdsa::EcdsaSig::from_der(&signer.sign_to_vec()?)?;
    // XML-DSig's ECDSA value is r || s, each the size of the curve order.
    let mut raw = der.r().to_vec_padded(32)?;
    raw.extend(der.s().to_vec_padded(32)?);
    let query =
        format!("{signed}&Signature={}", enc(&base64::engine::general_purpose::STANDARD.encode(&raw)));
    assert_eq!(verify_logout_request(&sp, redirect(&query), now())?.name_id, ALICE);

    // The same signature named as RSA finds no RSA certificate to check it.
    let as_rsa = query.replace(&enc(ECDSA_SHA256), &enc(SIG_RSA_SHA256));
    assert_eq!(request_refused(&sp, redirect(&as_rsa))?, Reason::SignatureInvalid);
    Ok(())
}

fn ec_key_and_cert() -> Res<(PKey<Private>, X509)> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
    let mut name = openssl::x509::X509NameBuilder::new()?;
    name.append_entry_by_text("CN", "ec idp")?;
    let name = name.build();
    let mut builder = openssl::x509::X509Builder::new()?;
    builder.set_version(2)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    builder.set_not_before(openssl::asn1::Asn1Time::from_unix(946_684_800)?.as_ref())?;
    builder.set_not_after(openssl::asn1::Asn1Time::days_from_now(1)?.as_ref())?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((key, builder.build()))
}

#[test]
fn refuses_unsigned_both_bindings() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let xml = idp()?.logout_request_xml(&request_spec()?);
    let q = redirect_query_unsigned("SAMLRequest", &xml, Some("rs"));
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::SignatureMissing);
    assert_eq!(request_refused(&sp, post(&b64(&xml)))?, Reason::SignatureMissing);
    // A Signature without SigAlg, or SigAlg without Signature.
    let signed = request_redirect(&request_spec()?, None)?;
    let sig_alg = format!("&SigAlg={}", raw_param(&signed, "SigAlg")?);
    assert_eq!(request_refused(&sp, redirect(&signed.replace(&sig_alg, "")))?, Reason::SignatureMissing);
    let no_signature = signed.split("&Signature=").next().ok_or("no query")?;
    assert_eq!(request_refused(&sp, redirect(no_signature))?, Reason::SignatureMissing);

    let response = idp()?.logout_response_xml(&response_spec()?);
    let q = redirect_query_unsigned("SAMLResponse", &response, None);
    assert_eq!(response_refused(&sp, redirect(&q))?, Reason::SignatureMissing);
    assert_eq!(response_refused(&sp, post(&b64(&response)))?, Reason::SignatureMissing);
    Ok(())
}

#[test]
fn refuses_tampered_message() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let q = request_redirect(&request_spec()?, None)?;
    let evil = request_redirect(&LogoutRequestSpec::new(idp()?, OUR_SLO, "admin@example.com", now()), None)?;
    let spliced = q.replace(raw_param(&q, "SAMLRequest")?, raw_param(&evil, "SAMLRequest")?);
    assert_eq!(request_refused(&sp, redirect(&spliced))?, Reason::SignatureInvalid);

    let spec = request_spec()?;
    let signed = idp()?.sign_message(&idp()?.logout_request_xml(&spec), &spec.id, SigAlg::RsaSha256)?;
    let tampered = replace_once(&signed, ">alice@example.com<", ">admin@example.com<")?;
    assert_eq!(request_refused(&sp, post(&b64(&tampered)))?, Reason::SignatureInvalid);
    Ok(())
}

#[test]
fn refuses_tampered_or_added_relay_state() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let q = request_redirect(&request_spec()?, Some("one"))?;
    let tampered = replace_once(&q, "RelayState=one", "RelayState=two")?;
    assert_eq!(request_refused(&sp, redirect(&tampered))?, Reason::SignatureInvalid);
    let without = request_redirect(&request_spec()?, None)?;
    let added = replace_once(&without, "&SigAlg=", "&RelayState=evil&SigAlg=")?;
    assert_eq!(request_refused(&sp, redirect(&added))?, Reason::SignatureInvalid);
    let q = response_redirect(&response_spec()?, Some("one"))?;
    let tampered = replace_once(&q, "RelayState=one", "RelayState=two")?;
    assert_eq!(response_refused(&sp, redirect(&tampered))?, Reason::SignatureInvalid);
    Ok(())
}

#[test]
fn refuses_another_key_even_with_its_cert_in_key_info() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let evil = attacker()?;
    let spec = request_spec()?;
    let xml = evil.logout_request_xml(&spec);
    let q = evil.redirect_query("SAMLRequest", &xml, None, SigAlg::RsaSha256)?;
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::SignatureInvalid);
    // The enveloped signature carries the attacker's certificate in KeyInfo; only pinned
    // certificates count.
    let b = signed_post_by(evil, &xml, &spec.id, SigAlg::RsaSha256)?;
    assert!(unb64(&b)?.contains(&base64::engine::general_purpose::STANDARD.encode(evil.cert_der())));
    assert_eq!(request_refused(&sp, post(&b))?, Reason::SignatureInvalid);
    let response = evil.logout_response_xml(&response_spec()?);
    let q = evil.redirect_query("SAMLResponse", &response, None, SigAlg::RsaSha256)?;
    assert_eq!(response_refused(&sp, redirect(&q))?, Reason::SignatureInvalid);
    Ok(())
}

#[test]
fn no_pinned_certificate_is_no_trusted_key() -> TestResult {
    let mut sp = slo_sp(SsoBinding::Redirect)?;
    sp.idp.signing_certs.clear();
    let spec = request_spec()?;
    assert_eq!(request_refused(&sp, redirect(&request_redirect(&spec, None)?))?, Reason::NoTrustedKey);
    assert_eq!(request_refused(&sp, post(&request_post(&spec)?))?, Reason::NoTrustedKey);
    Ok(())
}

#[test]
fn sha1_only_with_the_opt_in_and_never_a_panic() -> TestResult {
    let mut sp = slo_sp(SsoBinding::Redirect)?;
    let spec = LogoutRequestSpec { alg: SigAlg::RsaSha1, ..request_spec()? };
    let q = request_redirect(&spec, None)?;
    assert!(raw_param(&q, "SigAlg")?.ends_with("rsa-sha1"));
    let b = request_post(&spec)?;
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::AlgorithmNotAllowed);
    assert_eq!(request_refused(&sp, post(&b))?, Reason::AlgorithmNotAllowed);
    sp.allow_sha1 = true;
    assert_eq!(verify_logout_request(&sp, redirect(&q), now())?.id, spec.id);
    assert_eq!(verify_logout_request(&sp, post(&b), now())?.id, spec.id);
    Ok(())
}

#[test]
fn refuses_unknown_sig_alg() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let q = request_redirect(&request_spec()?, None)?;
    let sig_alg = raw_param(&q, "SigAlg")?;
    for other in [
        "http://www.w3.org/2000/09/xmldsig#dsa-sha1",
        "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "",
    ] {
        let q = q.replace(sig_alg, &enc(other));
        assert_eq!(request_refused(&sp, redirect(&q))?, Reason::AlgorithmNotAllowed, "{other}");
    }
    Ok(())
}

#[test]
fn refuses_repeated_parameters() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let q = request_redirect(&request_spec()?, Some("one"))?;
    for name in ["SAMLRequest", "RelayState", "SigAlg", "Signature"] {
        let repeated = format!("{q}&{name}={}", raw_param(&q, name)?);
        assert_eq!(request_refused(&sp, redirect(&repeated))?, Reason::Malformed, "{name}");
        // A percent-encoded name is the same parameter.
        let disguised = format!("{q}&{}={}", name.replacen('S', "%53", 1), raw_param(&q, name)?);
        assert_eq!(request_refused(&sp, redirect(&disguised))?, Reason::Malformed, "{name} encoded");
    }
    Ok(())
}

#[test]
fn refuses_the_other_kind_of_message() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let request_q = request_redirect(&request_spec()?, None)?;
    let request_b = request_post(&request_spec()?)?;
    let response_q = response_redirect(&response_spec()?, None)?;
    let response_b = response_post(&response_spec()?)?;
    assert_eq!(response_refused(&sp, redirect(&request_q))?, Reason::NotALogoutMessage);
    assert_eq!(response_refused(&sp, post(&request_b))?, Reason::NotALogoutMessage);
    assert_eq!(request_refused(&sp, redirect(&response_q))?, Reason::NotALogoutMessage);
    assert_eq!(request_refused(&sp, post(&response_b))?, Reason::NotALogoutMessage);
    // A LogoutResponse under the SAMLRequest name, signed as such.
    let xml = idp()?.logout_response_xml(&response_spec()?);
    let q = idp()?.redirect_query("SAMLRequest", &xml, None, SigAlg::RsaSha256)?;
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::NotALogoutMessage);
    // Both parameters, or neither.
    let both = format!("{request_q}&SAMLResponse={}", raw_param(&response_q, "SAMLResponse")?);
    assert_eq!(request_refused(&sp, redirect(&both))?, Reason::NotALogoutMessage);
    assert_eq!(request_refused(&sp, redirect("RelayState=x"))?, Reason::NotALogoutMessage);
    // A Response is no logout message either.
    let login = idp()?.sign_response_b64(&crate::devidp::ResponseSpec::new(
        idp()?,
        SP_ENTITY,
        OUR_SLO,
        None,
        ALICE,
        now(),
    ))?;
    assert_eq!(request_refused(&sp, post(&login))?, Reason::NotALogoutMessage);
    Ok(())
}

#[test]
fn refuses_wrong_issuer() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let spec = LogoutRequestSpec { issuer: "https://evil.example".into(), ..request_spec()? };
    assert_eq!(request_refused(&sp, redirect(&request_redirect(&spec, None)?))?, Reason::IssuerMismatch);
    assert_eq!(request_refused(&sp, post(&request_post(&spec)?))?, Reason::IssuerMismatch);
    let spec = LogoutResponseSpec { issuer: "https://evil.example".into(), ..response_spec()? };
    assert_eq!(response_refused(&sp, post(&response_post(&spec)?))?, Reason::IssuerMismatch);
    // No Issuer at all.
    let spec = request_spec()?;
    let xml = idp()?.logout_request_xml(&spec);
    let (s, e) = span(&xml, "<saml:Issuer>", "</saml:Issuer>")?;
    let no_issuer = format!("{}{}", &xml[..s], &xml[e..]);
    let q = idp()?.redirect_query("SAMLRequest", &no_issuer, None, SigAlg::RsaSha256)?;
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::IssuerMismatch);
    Ok(())
}

#[test]
fn refuses_wrong_or_missing_destination() -> TestResult {
    let mut sp = slo_sp(SsoBinding::Redirect)?;
    for destination in [Some("https://broker.example/saml/other/slo"), None] {
        let spec = LogoutRequestSpec { destination: destination.map(str::to_string), ..request_spec()? };
        let q = request_redirect(&spec, None)?;
        assert_eq!(request_refused(&sp, redirect(&q))?, Reason::DestinationMismatch);
        assert_eq!(request_refused(&sp, post(&request_post(&spec)?))?, Reason::DestinationMismatch);
        let spec = LogoutResponseSpec { destination: destination.map(str::to_string), ..response_spec()? };
        assert_eq!(response_refused(&sp, post(&response_post(&spec)?))?, Reason::DestinationMismatch);
    }
    // Single logout off: no Destination can match, not even an empty one.
    sp.slo_url = String::new();
    let spec = LogoutRequestSpec { destination: Some(String::new()), ..request_spec()? };
    assert_eq!(request_refused(&sp, post(&request_post(&spec)?))?, Reason::DestinationMismatch);
    Ok(())
}

#[test]
fn issue_instant_window_and_not_on_or_after() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let at = |issue_instant: DateTime<Utc>| -> Res<LogoutRequestSpec> {
        Ok(LogoutRequestSpec { issue_instant, not_on_or_after: None, ..request_spec()? })
    };
    // Five minutes old plus the minute of skew is the edge; one second later it is expired.
    let edge = now() - Duration::minutes(6) + Duration::seconds(1);
    assert!(verify_logout_request(&sp, redirect(&request_redirect(&at(edge)?, None)?), now()).is_ok());
    let old = now() - Duration::minutes(6);
    assert_eq!(request_refused(&sp, redirect(&request_redirect(&at(old)?, None)?))?, Reason::Expired);
    assert_eq!(request_refused(&sp, post(&request_post(&at(old)?)?))?, Reason::Expired);
    let skewed = now() + Duration::seconds(60);
    assert!(verify_logout_request(&sp, post(&request_post(&at(skewed)?)?), now()).is_ok());
    let future = now() + Duration::seconds(61);
    assert_eq!(request_refused(&sp, post(&request_post(&at(future)?)?))?, Reason::NotYetValid);
    let spec = LogoutResponseSpec { issue_instant: old, ..response_spec()? };
    assert_eq!(response_refused(&sp, post(&response_post(&spec)?))?, Reason::Expired);

    let expired =
        LogoutRequestSpec { not_on_or_after: Some(now() - Duration::seconds(61)), ..request_spec()? };
    assert_eq!(request_refused(&sp, redirect(&request_redirect(&expired, None)?))?, Reason::Expired);
    let within_skew =
        LogoutRequestSpec { not_on_or_after: Some(now() - Duration::seconds(59)), ..request_spec()? };
    assert!(verify_logout_request(&sp, post(&request_post(&within_skew)?), now()).is_ok());

    // No IssueInstant, or one that is not a dateTime.
    let spec = request_spec()?;
    let xml = idp()?.logout_request_xml(&spec);
    let instant = format!(r#" IssueInstant="{}""#, xml::format_time(now()));
    let missing = replace_once(&xml, &instant, "")?;
    assert_eq!(request_refused(&sp, post(&signed_post(&missing, &spec.id)?))?, Reason::MissingTimeBounds);
    let junk = replace_once(&xml, &instant, r#" IssueInstant="yesterday""#)?;
    assert_eq!(request_refused(&sp, post(&signed_post(&junk, &spec.id)?))?, Reason::Malformed);
    Ok(())
}

#[test]
fn refuses_doctype() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let spec = request_spec()?;
    let signed = idp()?.sign_message(&idp()?.logout_request_xml(&spec), &spec.id, SigAlg::RsaSha256)?;
    let dtd = format!(r#"<!DOCTYPE x [<!ENTITY e "alice">]>{}"#, strip_declaration(&signed));
    assert_eq!(request_refused(&sp, post(&b64(&dtd)))?, Reason::DtdForbidden);
    let xml = format!("<!DOCTYPE x>{}", idp()?.logout_request_xml(&spec));
    let q = idp()?.redirect_query("SAMLRequest", &xml, None, SigAlg::RsaSha256)?;
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::DtdForbidden);
    Ok(())
}

#[test]
fn refuses_comment_inside_name_id() -> TestResult {
    let sp = slo_sp(SsoBinding::Post)?;
    let spec = LogoutRequestSpec::new(idp()?, OUR_SLO, "admin@example.com.evil.example", now());
    let xml = idp()?.logout_request_xml(&spec);
    let signed = idp()?.sign_message(&xml, &spec.id, SigAlg::RsaSha256)?;
    let injected = replace_once(&signed, "admin@example.com.evil", "admin@example.com<!---->.evil")?;
    assert_eq!(request_refused(&sp, post(&b64(&injected)))?, Reason::SignaturePolicy);
    // Even when the comment was there when the IdP signed.
    let commented = replace_once(&xml, "admin@example.com.evil", "admin@example.com<!---->.evil")?;
    assert_eq!(request_refused(&sp, post(&signed_post(&commented, &spec.id)?))?, Reason::SignaturePolicy);
    let q = idp()?.redirect_query("SAMLRequest", &commented, None, SigAlg::RsaSha256)?;
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::SignaturePolicy);
    Ok(())
}

#[test]
fn refuses_signature_wrapping() -> TestResult {
    let sp = slo_sp(SsoBinding::Post)?;
    let spec = request_spec()?;
    let signed = idp()?.sign_message(&idp()?.logout_request_xml(&spec), &spec.id, SigAlg::RsaSha256)?;
    let signed = strip_declaration(&signed);
    let evil_spec = LogoutRequestSpec {
        id: "_evil".into(),
        ..LogoutRequestSpec::new(idp()?, OUR_SLO, "admin@example.com", now())
    };
    let evil = idp()?.logout_request_xml(&evil_spec);

    // The signed request wrapped in an unsigned one.
    let wrapped = replace_once(
        &evil,
        "</saml:Issuer>",
        &format!("</saml:Issuer><samlp:Extensions>{signed}</samlp:Extensions>"),
    )?;
    assert_eq!(request_refused(&sp, post(&b64(&wrapped)))?, Reason::SignaturePolicy);
    // A second, unsigned request inside the signed one.
    let (_, sig_end) = span(signed, "<ds:Signature", "</ds:Signature>")?;
    let inner =
        format!("{}<samlp:Extensions>{}</samlp:Extensions>{}", &signed[..sig_end], evil, &signed[sig_end..]);
    assert_eq!(request_refused(&sp, post(&b64(&inner)))?, Reason::SignaturePolicy);
    // The Signature moved off the root.
    let (s, e) = span(signed, "<ds:Signature", "</ds:Signature>")?;
    let moved =
        format!("{}<samlp:Extensions>{}</samlp:Extensions>{}", &signed[..s], &signed[s..e], &signed[e..]);
    assert_eq!(request_refused(&sp, post(&b64(&moved)))?, Reason::SignaturePolicy);
    // Two Signatures on the root.
    let twice = format!("{}{}{}", &signed[..e], &signed[s..e], &signed[e..]);
    assert_eq!(request_refused(&sp, post(&b64(&twice)))?, Reason::SignaturePolicy);
    Ok(())
}

#[test]
fn refuses_signature_inside_a_redirect_message() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let spec = request_spec()?;
    let enveloped = idp()?.sign_message(&idp()?.logout_request_xml(&spec), &spec.id, SigAlg::RsaSha256)?;
    let q = idp()?.redirect_query("SAMLRequest", &enveloped, None, SigAlg::RsaSha256)?;
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::SignaturePolicy);
    Ok(())
}

#[test]
fn name_id_must_be_plain_and_present() -> TestResult {
    let sp = slo_sp(SsoBinding::Post)?;
    let spec = request_spec()?;
    let xml = idp()?.logout_request_xml(&spec);
    let (s, e) = span(&xml, "<saml:NameID", "</saml:NameID>")?;
    let with = |replacement: &str| format!("{}{}{}", &xml[..s], replacement, &xml[e..]);
    let cases = [
        (
            r#"<saml:EncryptedID><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml:EncryptedID>"#,
            Reason::EncryptedUnsupported,
        ),
        ("", Reason::NameIdInvalid),
        (r#"<saml:BaseID NameQualifier="x"/>"#, Reason::NameIdInvalid),
        ("<saml:NameID>  </saml:NameID>", Reason::NameIdInvalid),
        ("<saml:NameID><saml:Issuer>x</saml:Issuer></saml:NameID>", Reason::NameIdInvalid),
        ("<saml:NameID>a</saml:NameID><saml:NameID>b</saml:NameID>", Reason::NameIdInvalid),
    ];
    for (replacement, reason) in cases {
        let b = signed_post(&with(replacement), &spec.id)?;
        assert_eq!(request_refused(&sp, post(&b))?, reason, "{replacement}");
    }
    Ok(())
}

#[test]
fn logout_response_needs_in_response_to_and_status() -> TestResult {
    let sp = slo_sp(SsoBinding::Post)?;
    let spec = LogoutResponseSpec { in_response_to: String::new(), ..response_spec()? };
    assert_eq!(response_refused(&sp, post(&response_post(&spec)?))?, Reason::InResponseToMismatch);
    let spec = response_spec()?;
    let xml = idp()?.logout_response_xml(&spec);
    let without = replace_once(&xml, r#" InResponseTo="_our_request""#, "")?;
    assert_eq!(response_refused(&sp, post(&signed_post(&without, &spec.id)?))?, Reason::InResponseToMismatch);
    let (s, e) = span(&xml, "<samlp:Status>", "</samlp:Status>")?;
    let no_status = format!("{}{}", &xml[..s], &xml[e..]);
    assert_eq!(response_refused(&sp, post(&signed_post(&no_status, &spec.id)?))?, Reason::Malformed);
    Ok(())
}

#[test]
fn refuses_deflate_bomb_and_oversized_input() -> TestResult {
    let mut sp = slo_sp(SsoBinding::Redirect)?;
    sp.max_response_bytes = 16 * 1024;
    // Signed by the IdP and tiny on the wire, but a megabyte inflated.
    let spec = LogoutRequestSpec { name_id: "a".repeat(1024 * 1024), ..request_spec()? };
    let q = request_redirect(&spec, None)?;
    assert!(q.len() < 8 * 1024);
    assert_eq!(request_refused(&sp, redirect(&q))?, Reason::TooLarge);
    let huge = format!("SAMLRequest={}", "A".repeat(200 * 1024));
    assert_eq!(request_refused(&sp, redirect(&huge))?, Reason::TooLarge);
    assert_eq!(request_refused(&sp, post(&"A".repeat(200 * 1024)))?, Reason::TooLarge);
    Ok(())
}

#[test]
fn refuses_bad_encoding_after_a_valid_signature() -> TestResult {
    let sig_alg = enc(SIG_RSA_SHA256);
    let not_deflate = enc(&b64("<samlp:LogoutRequest/>"));
    let not_utf8 = {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, &[0xff, 0xfe, 0x3c])?;
        enc(&base64::engine::general_purpose::STANDARD.encode(e.finish()?))
    };
    for (value, reason) in [
        ("%25%25not-base64", Reason::BadEncoding),
        (&not_deflate, Reason::BadEncoding),
        (&not_utf8, Reason::Malformed),
    ] {
        let mut sp = slo_sp(SsoBinding::Redirect)?;
        let q = sign_raw(&mut sp, &format!("SAMLRequest={value}&SigAlg={sig_alg}"))?;
        assert_eq!(request_refused(&sp, redirect(&q))?, reason, "{value}");
    }
    let sp = slo_sp(SsoBinding::Post)?;
    assert_eq!(request_refused(&sp, post("not base64!"))?, Reason::BadEncoding);
    assert_eq!(
        request_refused(&sp, post(&base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe])))?,
        Reason::Malformed
    );
    Ok(())
}

// ---------------------------------------------------------------- metadata

/// The dev IdP's metadata with `services` where SingleLogoutService belongs.
fn idp_metadata_with(services: &str) -> Res<String> {
    replace_once(
        &idp()?.metadata_xml(),
        "\n    <md:NameIDFormat>",
        &format!("{services}\n    <md:NameIDFormat>"),
    )
}

fn slo_service(binding: &str, location: &str, response_location: Option<&str>) -> String {
    let response = response_location.map_or_else(String::new, |r| format!(r#" ResponseLocation="{r}""#));
    format!(r#"<md:SingleLogoutService Binding="{binding}" Location="{location}"{response}/>"#)
}

#[test]
fn idp_metadata_single_logout_service() -> TestResult {
    let soap = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP";
    let cases = [
        (
            // Redirect preferred whatever the order.
            slo_service(xml::BINDING_POST, "https://idp.example/slo/post", None)
                + &slo_service(xml::BINDING_REDIRECT, "https://idp.example/slo", None),
            Some(SloEndpoint {
                binding: SsoBinding::Redirect,
                url: "https://idp.example/slo".into(),
                response_url: "https://idp.example/slo".into(),
            }),
        ),
        (
            slo_service(soap, "https://idp.example/soap", None)
                + &slo_service(
                    xml::BINDING_POST,
                    "https://idp.example/slo",
                    Some("https://idp.example/slo/done"),
                ),
            Some(SloEndpoint {
                binding: SsoBinding::Post,
                url: "https://idp.example/slo".into(),
                response_url: "https://idp.example/slo/done".into(),
            }),
        ),
        (slo_service(soap, "https://idp.example/soap", None), None),
        (String::new(), None),
    ];
    for (services, expected) in cases {
        assert_eq!(parse_idp_metadata(&idp_metadata_with(&services)?)?.slo, expected, "{services}");
    }
    for bad in [
        slo_service(xml::BINDING_REDIRECT, "ftp://idp.example/slo", None),
        slo_service(xml::BINDING_REDIRECT, "not a url", None),
        slo_service(xml::BINDING_POST, "https://idp.example/slo", Some("javascript:alert(1)")),
    ] {
        let result = parse_idp_metadata(&idp_metadata_with(&bad)?);
        assert!(matches!(result, Err(SamlError::Metadata(_))), "{bad}: {result:?}");
    }
    Ok(())
}

#[test]
fn dev_idp_metadata_publishes_its_slo_url() -> TestResult {
    let mut dev = idp()?.clone();
    assert_eq!(parse_idp_metadata(&dev.metadata_xml())?.slo, None);
    dev.slo_url = Some("https://idp.example/slo".into());
    let xml = dev.metadata_xml();
    assert_eq!(xml.matches("<md:SingleLogoutService").count(), 2);
    let parsed = parse_idp_metadata(&xml)?;
    assert_eq!(parsed.slo, dev.idp_metadata().slo);
    assert_eq!(parsed.slo.map(|s| s.binding), Some(SsoBinding::Redirect));
    Ok(())
}

#[test]
fn sp_metadata_lists_single_logout_only_with_a_key() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    let xml = sp_metadata_xml(&sp);
    let services: Vec<usize> = xml.match_indices("<md:SingleLogoutService").map(|(i, _)| i).collect();
    assert_eq!(services.len(), 2);
    for binding in [xml::BINDING_REDIRECT, xml::BINDING_POST] {
        assert!(
            xml.contains(&format!(r#"<md:SingleLogoutService Binding="{binding}" Location="{OUR_SLO}"/>"#))
        );
    }
    // Schema order: KeyDescriptor, SingleLogoutService, NameIDFormat.
    let last_key = xml.rfind("</md:KeyDescriptor>").ok_or("no KeyDescriptor")?;
    let first_format = xml.find("<md:NameIDFormat>").ok_or("no NameIDFormat")?;
    assert!(services.iter().all(|&i| last_key < i && i < first_format));

    let mut no_key = sp.clone();
    no_key.signing_key = None;
    let mut off = sp;
    off.slo_url = String::new();
    for sp in [no_key, off] {
        assert!(!sp_metadata_xml(&sp).contains("SingleLogoutService"));
    }
    Ok(())
}

#[test]
fn dev_idp_parse_logout_request_refuses_junk() {
    for (junk, deflated) in
        [("", true), ("!!!", false), ("aGVsbG8=", false), ("PHNhbWxwOkF1dGhuUmVxdWVzdC8+", false)]
    {
        assert!(parse_logout_request(junk, deflated).is_err(), "{junk}");
    }
}

#[test]
fn blank_session_indexes_alone_are_refused_not_read_as_every_session() -> TestResult {
    let sp = slo_sp(SsoBinding::Redirect)?;
    for blanks in [vec![String::new()], vec!["  ".into(), String::new()]] {
        let spec = LogoutRequestSpec { session_indexes: blanks, ..request_spec()? };
        assert_eq!(request_refused(&sp, redirect(&request_redirect(&spec, None)?))?, Reason::Malformed);
        assert_eq!(request_refused(&sp, post(&request_post(&spec)?))?, Reason::Malformed);
    }
    let none = verify_logout_request(&sp, redirect(&request_redirect(&request_spec()?, None)?), now())?;
    assert!(none.session_indexes.is_empty());
    Ok(())
}

/// What a refusal's detail says goes to the log. Before any signature is checked, the message
/// is anyone's: a detail quoting it must stay short, or each request writes the attacker's
/// hundred kilobytes into the log.
#[test]
fn unsigned_input_is_not_copied_into_the_refusal_detail() -> TestResult {
    let sp = slo_sp(SsoBinding::Post)?;
    let spec = request_spec()?;
    let signed = idp()?.sign_message(&idp()?.logout_request_xml(&spec), &spec.id, SigAlg::RsaSha256)?;
    let long = "R".repeat(100_000);
    let cases = [
        (format!(r#"<{long} xmlns="urn:x"/>"#), Reason::NotALogoutMessage),
        (
            format!(r#"<samlp:{long} xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>"#),
            Reason::NotALogoutMessage,
        ),
        (
            replace_once(
                &signed,
                "</saml:NameID>",
                &format!(r#"</saml:NameID><x ID="{long}"/><y ID="{long}"/>"#),
            )?,
            Reason::SignaturePolicy,
        ),
    ];
    for (xml, reason) in cases {
        let err = verify_logout_request(&sp, post(&b64(&xml)), now()).err().ok_or("accepted")?;
        assert_eq!(err.reason(), Some(reason));
        let detail = err.to_string();
        assert!(detail.len() < 256, "{} bytes of detail: {}", detail.len(), &detail[..200]);
        assert!(detail.contains("RRRR"), "the detail still says what it was: {detail}");
    }
    // Cut on a character boundary.
    assert_eq!(xml::excerpt("é"), "\"é\"");
    assert!(xml::excerpt(&"é".repeat(100)).ends_with("… (200 bytes)"));
    Ok(())
}
