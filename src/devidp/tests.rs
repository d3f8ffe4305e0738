//! Dev IdP tests: its output must satisfy an independent verifier (the xmlsec1 command).

use std::error::Error;
use std::process::Command;

use chrono::{DateTime, Utc};

use super::*;

type TestResult = Result<(), Box<dyn Error>>;

pub(crate) fn xmlsec1_available() -> bool {
    Command::new("xmlsec1").arg("--version").output().is_ok()
}

/// Verifies the n-th signature (1-based, document order) against the pinned certificate,
/// with the signature's own KeyInfo ignored by pinning (`--pubkey-cert-pem`).
pub(crate) fn xmlsec1_verify(xml: &str, cert_pem: &str, nth: usize) -> Result<bool, Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let xml_path = dir.path().join("response.xml");
    let cert_path = dir.path().join("idp.pem");
    std::fs::write(&xml_path, xml)?;
    std::fs::write(&cert_path, cert_pem)?;
    let xpath = format!("(//*[local-name()='Signature' and namespace-uri()='{NS_DSIG}'])[{nth}]");
    let status = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(&cert_path)
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:Response"])
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"])
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:LogoutRequest"])
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:LogoutResponse"])
        .arg("--node-xpath")
        .arg(&xpath)
        .arg(&xml_path)
        .output()?
        .status;
    Ok(status.success())
}

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(1_700_000_000)
}

#[test]
fn signatures_verify_with_xmlsec1() -> TestResult {
    if !xmlsec1_available() {
        eprintln!("xmlsec1 not installed; skipping the independent verification");
        return Ok(());
    }
    let idp = DevIdp::generate("https://idp.example", "https://idp.example/sso")?;
    let other = DevIdp::generate("https://idp.example", "https://idp.example/sso")?;
    let base = ResponseSpec::new(&idp, "sp", "https://sp.example/acs", None, "bob", now());
    for (mode, count) in [(SignMode::Assertion, 1), (SignMode::Response, 1), (SignMode::Both, 2)] {
        for alg in [SigAlg::RsaSha256, SigAlg::RsaSha1] {
            let spec = ResponseSpec { sign: mode, alg, ..base.clone() };
            let xml = idp.sign_response(&spec)?;
            for nth in 1..=count {
                assert!(xmlsec1_verify(&xml, &idp.cert_pem(), nth)?, "{mode:?} {alg:?} #{nth}");
                assert!(!xmlsec1_verify(&xml, &other.cert_pem(), nth)?, "{mode:?} {alg:?} #{nth}");
            }
        }
    }
    Ok(())
}

#[test]
fn unsigned_has_no_signature() -> TestResult {
    let idp = DevIdp::generate("https://idp.example", "https://idp.example/sso")?;
    let spec = ResponseSpec {
        sign: SignMode::Unsigned,
        ..ResponseSpec::new(&idp, "sp", "https://sp.example/acs", None, "bob", now())
    };
    assert!(!idp.sign_response(&spec)?.contains("Signature"));
    Ok(())
}

#[test]
fn cert_pem_parses_and_matches_der() -> TestResult {
    let idp = DevIdp::generate("https://idp.example", "https://idp.example/sso")?;
    let cert = openssl::x509::X509::from_pem(idp.cert_pem().as_bytes())?;
    assert_eq!(cert.to_der()?, idp.cert_der());
    assert!(!format!("{idp:?}").contains("key_der"));
    Ok(())
}

#[test]
fn parse_authn_request_refuses_junk() {
    for junk in ["", "!!!", "aGVsbG8=", "PHNhbWxwOkF1dGhuUmVxdWVzdC8+"] {
        assert!(parse_authn_request(junk).is_err(), "{junk}");
    }
}

#[test]
fn logout_messages_verify_independently() -> TestResult {
    let idp = DevIdp::generate("https://idp.example", "https://idp.example/sso")?;
    let other = DevIdp::generate("https://idp.example", "https://idp.example/sso")?;
    let cert = openssl::x509::X509::from_der(idp.cert_der())?.public_key()?;
    for alg in [SigAlg::RsaSha256, SigAlg::RsaSha1] {
        let request =
            LogoutRequestSpec { alg, ..LogoutRequestSpec::new(&idp, "https://sp/slo", "bob", now()) };
        let response =
            LogoutResponseSpec { alg, ..LogoutResponseSpec::new(&idp, "https://sp/slo", "_r", now()) };
        let messages = [
            ("SAMLRequest", idp.logout_request_xml(&request), request.id.clone()),
            ("SAMLResponse", idp.logout_response_xml(&response), response.id.clone()),
        ];
        for (param, xml, id) in messages {
            if xmlsec1_available() {
                let signed = idp.sign_message(&xml, &id, alg)?;
                assert!(xmlsec1_verify(&signed, &idp.cert_pem(), 1)?, "{param} {alg:?}");
                assert!(!xmlsec1_verify(&signed, &other.cert_pem(), 1)?, "{param} {alg:?}");
            }
            // The query signature, checked with openssl alone over the bytes before &Signature=.
            let query = idp.redirect_query(param, &xml, Some("r s"), alg)?;
            let (signed, signature) = query.rsplit_once("&Signature=").ok_or("no Signature")?;
            assert!(signed.starts_with(&format!("{param}=")) && signed.contains("&RelayState=r+s&SigAlg="));
            let signature: String = url::form_urlencoded::parse(format!("s={signature}").as_bytes())
                .map(|(_, v)| v.into_owned())
                .collect();
            let digest = if alg == SigAlg::RsaSha1 { MessageDigest::sha1() } else { MessageDigest::sha256() };
            let mut verifier = openssl::sign::Verifier::new(digest, &cert)?;
            verifier.update(signed.as_bytes())?;
            assert!(verifier.verify(&base64::engine::general_purpose::STANDARD.decode(signature)?)?);
            let unsigned = redirect_query_unsigned(param, &xml, Some("r s"));
            assert_eq!(signed.split("&SigAlg=").next(), Some(unsigned.as_str()));
        }
    }
    Ok(())
}
