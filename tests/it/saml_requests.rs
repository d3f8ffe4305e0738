//! Signed AuthnRequests through the running broker: an IdP whose metadata says
//! `WantAuthnRequestsSigned` gets requests signed with a key the broker generated once and
//! stored, published in SP metadata; the login then completes as usual.

use base64::Engine;

use crate::both_backends;
use crate::support::*;

fn metadata_cert(xml: &str, usage: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let at = xml.find(&format!(r#"<md:KeyDescriptor use="{usage}">"#)).ok_or("no KeyDescriptor")?;
    let start = xml[at..].find("<ds:X509Certificate>").ok_or("no certificate")? + at + 20;
    let end = xml[start..].find("</ds:X509Certificate>").ok_or("no certificate end")? + start;
    Ok(base64::engine::general_purpose::STANDARD.decode(&xml[start..end])?)
}

async fn signed_requests(backend: Backend) -> TestResult {
    let app = app(backend)
        .with_metadata(|xml| {
            xml.replace(r#"WantAuthnRequestsSigned="false""#, r#"WantAuthnRequestsSigned="true""#)
        })
        .start()
        .await?;
    let metadata = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", app.base)).await?.text().await?;
    assert!(metadata.contains(r#"AuthnRequestsSigned="true""#), "{metadata}");
    let cert = metadata_cert(&metadata, "signing")?;

    // The redirect carries SigAlg and a Signature over the exact query bytes.
    let resp = app.browser.get(app.auth_url(&[])).send().await?;
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str()?.to_string();
    let query = location.split_once('?').ok_or("no query")?.1;
    let (signed, signature) = query.split_once("&Signature=").ok_or("unsigned AuthnRequest")?;
    assert!(signed.contains("&SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256"));
    let signature: String =
        url::form_urlencoded::parse(format!("s={signature}").as_bytes()).next().ok_or("sig")?.1.into_owned();
    let public = openssl::x509::X509::from_der(&cert)?.public_key()?;
    let mut verifier = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public)?;
    verifier.update(signed.as_bytes())?;
    assert!(verifier.verify(&base64::engine::general_purpose::STANDARD.decode(signature)?)?);

    // The login completes (the dev IdP answers the signed request like any other).
    let q = app.login_code("ada@example.com", &[]).await?;
    assert!(q.contains_key("code"), "{q:?}");

    // The key is stored once; another instance starting on the database signs with the same one.
    let mut conn = app.pool.get()?;
    let stored = ssobroker::store::sp_keys::get(&mut conn, CONNECTION)?.ok_or("no stored SP key")?;
    let stored_cert = openssl::x509::X509::from_pem(stored.cert_pem.as_bytes())?.to_der()?;
    assert_eq!(stored_cert, cert);
    let mut other = (*app.cfg).clone();
    other.connections[0].sp.signing_key = None;
    ssobroker::flow::sp_keys::ensure_signing_keys(&mut conn, &mut other, app.now())?;
    let again = other.connections[0].sp.signing_key.as_ref().ok_or("no key")?;
    assert_eq!(again.cert_der(), cert.as_slice());
    Ok(())
}
both_backends!(authn_requests_signed_when_the_idp_wants_them, signed_requests);

async fn unsigned_by_default(backend: Backend) -> TestResult {
    let app = app(backend).start().await?;
    let resp = app.browser.get(app.auth_url(&[])).send().await?;
    let location = resp.headers()["location"].to_str()?.to_string();
    assert!(!location.contains("Signature=") && !location.contains("SigAlg="), "{location}");
    let metadata = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", app.base)).await?.text().await?;
    assert!(metadata.contains(r#"AuthnRequestsSigned="false""#));
    let mut conn = app.pool.get()?;
    assert!(ssobroker::store::sp_keys::get(&mut conn, CONNECTION)?.is_none(), "no key generated needlessly");
    Ok(())
}
both_backends!(authn_requests_unsigned_by_default, unsigned_by_default);
