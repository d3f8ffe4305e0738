//! The fuzz target's seed corpus (`fuzz/seeds/acs/`) and the checks that keep it honest.
//!
//! `write_fuzz_seeds` (ignored; run by hand, see fuzz/README.md) signs fresh responses with a new
//! dev IdP key and writes them with that IdP's certificate (`tests/fixtures/fuzz-keys/idp-cert.der`) and the
//! fuzz-only SP key the encrypted ones are encrypted to (`tests/fixtures/fuzz-keys/sp-key.pem`). The
//! other tests run the committed seeds through the fuzz target's settings, so a seed that no
//! longer reaches the stage it was written for shows up in `cargo test`, not as a silently
//! weaker fuzz run. The names and constants here must agree with `fuzz/fuzz_targets/acs.rs`.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::devidp::{DevIdp, Encryption, ResponseSpec, SigAlg, SignMode};

type TestResult = Result<(), Box<dyn Error>>;
/// A seed's file name and bytes.
type Seed = (String, Vec<u8>);

const SP_ENTITY: &str = "https://broker.example/saml/fuzz/metadata";
const ACS: &str = "https://broker.example/saml/fuzz/acs";
const IDP_ENTITY: &str = "https://idp.example/fuzz";
const IDP_SSO: &str = "https://idp.example/fuzz/sso";
const REQUEST_ID: &str = "_f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(1_716_206_400) // 2024-05-20T12:00:00Z
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The test-only key material the seeds are made with (kept under tests/, read by the target).
fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join("fuzz-keys")
}

fn seeds_dir() -> PathBuf {
    fuzz_dir().join("seeds").join("acs")
}

/// The fuzz target's settings, with the committed certificate.
fn fuzz_sp() -> Result<SpSettings, Box<dyn Error>> {
    let cert = std::fs::read(keys_dir().join("idp-cert.der"))?;
    let key = DecryptionKey::from_pem(&std::fs::read(keys_dir().join("sp-key.pem"))?)?;
    Ok(SpSettings {
        entity_id: SP_ENTITY.into(),
        acs_url: ACS.into(),
        idp: IdpMetadata {
            entity_id: IDP_ENTITY.into(),
            sso_url: IDP_SSO.into(),
            sso_binding: SsoBinding::Redirect,
            signing_certs: vec![cert],
            want_authn_requests_signed: false,
            slo: None,
        },
        allow_sha1: true,
        clock_skew: Duration::seconds(60),
        max_response_bytes: 256 * 1024,
        requested_authn_context: vec![],
        decryption_keys: vec![key],
        encryption_cert: None,
        sign_authn_requests: false,
        signing_key: None,
        slo_url: String::new(),
    })
}

/// The fuzz target's input rule: XML-looking input is base64-encoded first.
pub(super) fn fuzz_input(sp: &SpSettings, data: &[u8]) -> Option<Result<ValidatedAssertion, SamlError>> {
    let looks_like_xml =
        data.starts_with(b"\xef\xbb\xbf") || data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    let value = if looks_like_xml {
        base64::engine::general_purpose::STANDARD.encode(data)
    } else {
        std::str::from_utf8(data).ok()?.to_string()
    };
    Some(validate_post_response(sp, &value, now()))
}

fn replace_once(haystack: &str, from: &str, to: &str) -> Result<String, Box<dyn Error>> {
    if !haystack.contains(from) {
        return Err(format!("{from:?} not found").into());
    }
    Ok(haystack.replacen(from, to, 1))
}

fn span(xml: &str, open: &str, close: &str) -> Result<(usize, usize), Box<dyn Error>> {
    let start = xml.find(open).ok_or("open tag not found")?;
    let end = xml[start..].find(close).ok_or("close tag not found")? + start + close.len();
    Ok((start, end))
}

/// An unsigned copy of the response's assertion with another ID and NameID.
fn evil_assertion(xml: &str) -> Result<String, Box<dyn Error>> {
    let (s, e) = span(xml, "<saml:Assertion", "</saml:Assertion>")?;
    let mut evil = xml[s..e].to_string();
    while evil.contains("<ds:Signature") {
        let (s, e) = span(&evil, "<ds:Signature", "</ds:Signature>")?;
        evil.replace_range(s..e, "");
    }
    let evil = replace_once(&evil, "alice@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?;
    let id_at = evil.find("ID=\"").ok_or("no ID")? + 4;
    Ok(format!("{}_evil{}", &evil[..id_at], &evil[id_at + 1..]))
}

fn spec(idp: &DevIdp, mode: SignMode) -> ResponseSpec {
    let mut spec = ResponseSpec::new(idp, SP_ENTITY, ACS, Some(REQUEST_ID), "alice@example.com", now())
        .with_attribute("email", &["alice@example.com"])
        .with_attribute("groups", &["Engineering", "IT Admins"]);
    spec.sign = mode;
    spec
}

/// Every seed: file name and bytes. Names starting with `ok-` must be accepted by the fuzz
/// target's settings; the rest must be refused.
fn build_seeds(idp: &DevIdp, sp_public_der: &[u8]) -> Result<Vec<Seed>, Box<dyn Error>> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s).into_bytes();
    let mut seeds: Vec<Seed> = Vec::new();
    let mut add = |name: &str, xml: String| seeds.push((name.to_string(), xml.into_bytes()));

    let assertion = idp.sign_response(&spec(idp, SignMode::Assertion))?;
    let response = idp.sign_response(&spec(idp, SignMode::Response))?;
    let both = idp.sign_response(&spec(idp, SignMode::Both))?;
    add("ok-assertion-signed.xml", assertion.clone());
    add("ok-response-signed.xml", response.clone());
    add("ok-both-signed.xml", both.clone());
    for (name, mode) in [("ok-sha1-assertion.xml", SignMode::Assertion), ("ok-sha1-both.xml", SignMode::Both)]
    {
        let mut s = spec(idp, mode);
        s.alg = SigAlg::RsaSha1;
        add(name, idp.sign_response(&s)?);
    }
    let mut s = spec(idp, SignMode::Both);
    s.in_response_to = None;
    add("ok-unsolicited.xml", idp.sign_response(&s)?);
    let mut s = spec(idp, SignMode::Assertion);
    s.name_id = "o'brien&co <x>@example.com".into();
    add("ok-escaped-name-id.xml", idp.sign_response(&s)?);
    let mut s = ResponseSpec::new(idp, SP_ENTITY, ACS, Some(REQUEST_ID), "bob", now())
        .with_attribute("mail", &["bob@example.com"]);
    s.sign = SignMode::Response;
    s.authn_context_class = None;
    s.destination = None;
    add("ok-minimal-response-signed.xml", idp.sign_response(&s)?);
    add("ok-bom.xml", format!("\u{feff}{assertion}"));

    // Encrypted: the inner-signed ones (the ADFS / Shibboleth / Okta default) are decrypted
    // before any signature is checked; CBC and GCM both.
    let encryption = |gcm| Some(Encryption { public_key_der: sp_public_der.to_vec(), gcm });
    for (name, mode, gcm) in [
        ("ok-enc-assertion-signed-cbc.xml", SignMode::Assertion, false),
        ("ok-enc-assertion-signed-gcm.xml", SignMode::Assertion, true),
        ("ok-enc-response-signed-gcm.xml", SignMode::Response, true),
        ("ok-enc-both-signed-cbc.xml", SignMode::Both, false),
        ("enc-unsigned.xml", SignMode::Unsigned, true),
    ] {
        let mut s = spec(idp, mode);
        s.encryption = encryption(gcm);
        add(name, idp.sign_response(&s)?);
    }
    let other = openssl::rsa::Rsa::generate(2048)?.public_key_to_der()?;
    let mut s = spec(idp, SignMode::Assertion);
    s.encryption = Some(Encryption { public_key_der: other, gcm: false });
    add("enc-other-key.xml", idp.sign_response(&s)?);

    add("unsigned.xml", idp.sign_response(&spec(idp, SignMode::Unsigned))?);
    let mut s = spec(idp, SignMode::Response);
    s.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".into();
    add("status-responder.xml", idp.sign_response(&s)?);
    let mut s = spec(idp, SignMode::Assertion);
    s.issue_instant = now() - Duration::hours(2);
    s.not_before = Some(now() - Duration::hours(2));
    s.not_on_or_after = Some(now() - Duration::hours(1));
    add("expired.xml", idp.sign_response(&s)?);
    let mut s = spec(idp, SignMode::Assertion);
    s.not_before = None;
    s.not_on_or_after = None;
    add("no-time-bounds.xml", idp.sign_response(&s)?);
    let mut s = spec(idp, SignMode::Assertion);
    s.audience = Some("https://other-sp.example".into());
    add("wrong-audience.xml", idp.sign_response(&s)?);
    let attacker = DevIdp::generate(IDP_ENTITY, IDP_SSO)?;
    add("attacker-key.xml", attacker.sign_response(&spec(&attacker, SignMode::Assertion))?);

    let evil = evil_assertion(&assertion)?;
    add(
        "wrap-second-assertion.xml",
        replace_once(&assertion, "</saml:Assertion>", &format!("</saml:Assertion>{evil}"))?,
    );
    let (s, e) = span(&assertion, "<saml:Assertion", "</saml:Assertion>")?;
    let wrapped = format!("{}{}{}", &assertion[..s], evil, &assertion[e..]);
    add(
        "wrap-original-in-extensions.xml",
        replace_once(
            &wrapped,
            "<samlp:Status>",
            &format!("<samlp:Extensions>{}</samlp:Extensions><samlp:Status>", &assertion[s..e]),
        )?,
    );
    add(
        "wrap-in-advice.xml",
        replace_once(
            &response,
            "<saml:AuthnStatement",
            &format!("<saml:Advice>{evil}</saml:Advice><saml:AuthnStatement"),
        )?,
    );
    add(
        "comment-in-name-id.xml",
        replace_once(&both, "alice@example.com</saml:NameID>", "alice@example<!---->.com</saml:NameID>")?,
    );
    // CDATA around the whole value canonicalises to the same text: accepted, same NameID.
    add(
        "ok-cdata-in-name-id.xml",
        replace_once(
            &assertion,
            "alice@example.com</saml:NameID>",
            "<![CDATA[alice@example.com]]></saml:NameID>",
        )?,
    );
    let body = assertion.trim_start_matches("<?xml version=\"1.0\"?>").trim_start();
    add("doctype-entity.xml", format!("<!DOCTYPE samlp:Response [<!ENTITY e \"admin\">]>\n{body}"));
    add(
        "xinclude.xml",
        replace_once(
            &assertion,
            "<samlp:Status>",
            r#"<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="http://127.0.0.1:9/"/><samlp:Status>"#,
        )?,
    );
    add(
        "xslt-transform.xml",
        replace_once(
            &assertion,
            "<ds:Transforms>",
            r#"<ds:Transforms><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"/></ds:Transform>"#,
        )?,
    );
    add("reference-uri-empty.xml", {
        let id_at = assertion.find("URI=\"#").ok_or("no Reference URI")?;
        let end = assertion[id_at + 5..].find('"').ok_or("unterminated URI")? + id_at + 5;
        format!("{}URI=\"\"{}", &assertion[..id_at], &assertion[end + 1..])
    });
    add("latin1-declaration.xml", format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{body}"));
    add(
        "enc-empty-data.xml",
        format!(
            "{}<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedAssertion>{}",
            &response[..span(&response, "<saml:Assertion", "</saml:Assertion>")?.0],
            &response[span(&response, "<saml:Assertion", "</saml:Assertion>")?.1..]
        ),
    );
    add(
        "deep-nesting.xml",
        format!(
            "<samlp:Response xmlns:samlp=\"{}\">{}{}</samlp:Response>",
            xml::NS_PROTOCOL,
            "<a>".repeat(70),
            "</a>".repeat(70)
        ),
    );
    add(
        "not-a-response.xml",
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"_x\"/>".into(),
    );

    // Form values (not XML): line-wrapped base64, broken base64, a DEFLATEd body.
    let wrapped: Vec<String> =
        b64(&both).chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    seeds.push(("ok-both-signed.b64".into(), format!("{}\r\n", wrapped.join("\r\n")).into_bytes()));
    seeds.push(("bad-base64.txt".into(), b"PHNhbWxwOlJlc3BvbnNl=".to_vec()));
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(assertion.as_bytes())?;
    seeds.push((
        "deflated.b64".into(),
        base64::engine::general_purpose::STANDARD.encode(encoder.finish()?).into_bytes(),
    ));
    Ok(seeds)
}

/// Regenerates `fuzz/seeds/acs/` and `tests/fixtures/fuzz-keys/idp-cert.der` with a new dev IdP key.
#[test]
#[ignore = "writes the fuzz seed corpus; run by hand (fuzz/README.md)"]
fn write_fuzz_seeds() -> TestResult {
    let idp = DevIdp::generate(IDP_ENTITY, IDP_SSO)?;
    let dir = seeds_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(keys_dir())?;
    std::fs::write(keys_dir().join("idp-cert.der"), idp.cert_der())?;
    let sp_key_pem = openssl::rsa::Rsa::generate(2048)?.private_key_to_pem()?;
    std::fs::write(keys_dir().join("sp-key.pem"), &sp_key_pem)?;
    let sp_public_der = DecryptionKey::from_pem(&sp_key_pem)?.public_key_der();
    for (name, bytes) in build_seeds(&idp, &sp_public_der)? {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// The committed seeds still do what their names say under the fuzz target's settings.
#[test]
fn committed_fuzz_seeds_reach_their_stage() -> TestResult {
    let sp = fuzz_sp()?;
    let mut seen = 0;
    for entry in std::fs::read_dir(seeds_dir())? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).ok_or("seed name")?.to_string();
        let data = std::fs::read(&path)?;
        let verdict = fuzz_input(&sp, &data).ok_or_else(|| format!("{name}: not UTF-8"))?;
        match (name.starts_with("ok-"), verdict) {
            (true, Err(e)) => return Err(format!("{name} refused: {e}").into()),
            (false, Ok(v)) => return Err(format!("{name} accepted: {v:?}").into()),
            _ => seen += 1,
        }
    }
    assert!(seen >= 20, "only {seen} seeds in {}", seeds_dir().display());
    Ok(())
}
