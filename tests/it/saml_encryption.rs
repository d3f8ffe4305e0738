//! Encrypted assertions through the running broker: the connection's SP key pair from config,
//! published in SP metadata, used at the ACS in every signing mode; wrong keys and unsigned
//! encrypted assertions refused with nothing written but the audit row.

use std::path::{Path, PathBuf};

use base64::Engine;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509};

use crate::both_backends;
use crate::support::*;
use ssobroker::devidp::{Encryption, SignMode};

/// (key file, cert file, public key DER, cert DER).
type SpPair = (PathBuf, PathBuf, Vec<u8>, Vec<u8>);

/// An SP key pair as PEM files in `dir`.
fn sp_pair(dir: &Path, name: &str) -> Result<SpPair, Box<dyn std::error::Error>> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_text("CN", "broker SP encryption")?;
    let subject = subject.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    cert.set_subject_name(&subject)?;
    cert.set_issuer_name(&subject)?;
    cert.set_pubkey(&key)?;
    cert.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    cert.set_not_after(Asn1Time::days_from_now(365)?.as_ref())?;
    cert.sign(&key, MessageDigest::sha256())?;
    let cert = cert.build();
    let key_file = dir.join(format!("{name}.key"));
    let cert_file = dir.join(format!("{name}.crt"));
    std::fs::write(&key_file, key.private_key_to_pem_pkcs8()?)?;
    std::fs::write(&cert_file, cert.to_pem()?)?;
    Ok((key_file, cert_file, key.public_key_to_der()?, cert.to_der()?))
}

async fn encrypted_logins(backend: Backend) -> TestResult {
    let dir = tempfile::tempdir()?;
    let (key_file, cert_file, public, cert_der) = sp_pair(dir.path(), "sp")?;
    let (_, _, other_public, _) = sp_pair(dir.path(), "other")?;
    let mut app = app(backend)
        .with_config(move |f| {
            f.connections[0].sp_key_file = Some(key_file);
            f.connections[0].sp_cert_file = Some(cert_file);
        })
        .start()
        .await?;

    // SP metadata tells the IdP what to encrypt to.
    let metadata = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", app.base)).await?.text().await?;
    assert!(metadata.contains(r#"<md:KeyDescriptor use="encryption">"#), "{metadata}");
    assert!(metadata.contains(&base64::engine::general_purpose::STANDARD.encode(&cert_der)));

    // The three shapes real IdPs send: Shibboleth/ADFS (only the inner Assertion signed),
    // Okta/Entra (Response signed around the ciphertext) and both.
    for (mode, gcm) in [(SignMode::Assertion, false), (SignMode::Response, true), (SignMode::Both, false)] {
        app.new_browser()?;
        let at = app.authorize(&app.auth_url(&[])).await?;
        let mut spec = app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]);
        spec.sign = mode;
        spec.encryption = Some(Encryption { public_key_der: public.clone(), gcm });
        let q = redirect_query(app.post_signed(&spec, Some(&at.relay_state)).await?).await?;
        let code = q.get("code").ok_or(format!("{mode:?}: no code in {q:?}"))?;
        let tokens: serde_json::Value = app.token(code).await?.json().await?;
        assert!(tokens["id_token"].is_string(), "{mode:?}: {tokens}");
    }
    assert_eq!(app.counts()?["users"], 1);

    // Encrypted for another key: refused, nothing written but the audit row.
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let before = app.counts()?;
    let mut spec = app.response(Some(&at.request_id), "eve@example.com", &[]);
    spec.encryption = Some(Encryption { public_key_der: other_public, gcm: true });
    let resp = app.post_signed(&spec, Some(&at.relay_state)).await?;
    assert_refused(&app, resp, &before, "decryption_failed").await?;

    // Encrypted but signed by nobody: the ciphertext proves nothing about who wrote it.
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let before = app.counts()?;
    let mut spec = app.response(Some(&at.request_id), "eve@example.com", &[]);
    spec.sign = SignMode::Unsigned;
    spec.encryption = Some(Encryption { public_key_der: public.clone(), gcm: true });
    let resp = app.post_signed(&spec, Some(&at.relay_state)).await?;
    assert_refused(&app, resp, &before, "signature_missing").await?;
    Ok(())
}
both_backends!(encrypted_assertions_log_in, encrypted_logins);

async fn without_key(backend: Backend) -> TestResult {
    let app = app(backend).start().await?;
    let metadata = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", app.base)).await?.text().await?;
    assert!(!metadata.contains("KeyDescriptor"), "no key, no encryption advertised");
    let dir = tempfile::tempdir()?;
    let (_, _, public, _) = sp_pair(dir.path(), "sp")?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let before = app.counts()?;
    let mut spec = app.response(Some(&at.request_id), "ada@example.com", &[]);
    spec.encryption = Some(Encryption { public_key_der: public, gcm: true });
    let resp = app.post_signed(&spec, Some(&at.relay_state)).await?;
    assert_refused(&app, resp, &before, "encrypted_assertion_unsupported").await
}
both_backends!(encrypted_assertion_without_sp_key_refused, without_key);

#[test]
fn sp_key_config_is_checked_at_start() -> TestResult {
    use ssobroker::config::{self, FileConfig, FileConnection};
    let dir = tempfile::tempdir()?;
    let idp = ssobroker::devidp::DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
    std::fs::write(dir.path().join("idp.xml"), idp.metadata_xml())?;
    let (key_a, cert_a, _, _) = sp_pair(dir.path(), "a")?;
    let (_, cert_b, _, _) = sp_pair(dir.path(), "b")?;
    let file = |key: Option<PathBuf>, cert: Option<PathBuf>| FileConfig {
        issuer: "https://sso.example.com".into(),
        database_url: "sqlite://unused.db".into(),
        connections: vec![FileConnection {
            sp_key_file: key,
            sp_cert_file: cert,
            ..FileConnection::new("okta", "idp.xml")
        }],
        ..FileConfig::default()
    };
    let reason = |f: FileConfig| match config::validate(f, "t.toml", dir.path()) {
        Ok(_) => "accepted".to_string(),
        Err(e) => format!("{}: {}", e.key, e.reason),
    };
    assert_eq!(reason(file(Some(key_a.clone()), Some(cert_a.clone()))), "accepted");
    assert!(reason(file(Some(key_a.clone()), Some(cert_b))).contains("does not match"));
    assert!(reason(file(Some(key_a), None)).starts_with("connections[0].sp_cert_file"));
    assert!(reason(file(None, Some(cert_a.clone()))).starts_with("connections[0].sp_key_file"));
    // A certificate where the key should be.
    assert!(reason(file(Some(cert_a.clone()), Some(cert_a))).contains("not a PEM private key"));
    Ok(())
}
