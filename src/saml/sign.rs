//! The SP's signing key: signed AuthnRequests for IdPs that ask for them (HTTP-Redirect query
//! signature, or an enveloped XML signature for HTTP-POST).

use base64::Engine;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use samael::crypto::CryptoProvider;

use super::xml::{escape, NS_DSIG};

pub(crate) const SIG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const DIGEST_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// An RSA private key with its certificate (published in SP metadata). Debug never prints the
/// key.
#[derive(Clone)]
pub struct SpSigningKey {
    key: PKey<Private>,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for SpSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpSigningKey").field("key", &"<redacted>").finish_non_exhaustive()
    }
}

/// A freshly generated key pair in PEM, for storing.
pub struct GeneratedSpKey {
    pub key_pem: String,
    pub cert_pem: String,
}

impl SpSigningKey {
    /// A key and the certificate for it, both PEM; the certificate must be for this key.
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<Self, String> {
        let key = PKey::private_key_from_pem(key_pem).map_err(|_| "not a PEM private key".to_string())?;
        if key.rsa().is_err() {
            return Err("the SP key must be an RSA key".into());
        }
        let cert = X509::from_pem(cert_pem).map_err(|_| "not a PEM certificate".to_string())?;
        let cert_public = cert.public_key().and_then(|p| p.public_key_to_der()).ok();
        if cert_public.is_none() || cert_public != key.public_key_to_der().ok() {
            return Err("the certificate does not match the key".into());
        }
        let cert_der = cert.to_der().map_err(|e| e.to_string())?;
        Ok(SpSigningKey { key, cert_der })
    }

    /// A new RSA-3072 key and a self-signed certificate naming `entity_id`, valid ten years
    /// (IdPs pin the certificate itself; its dates matter to few of them).
    pub fn generate(entity_id: &str) -> Result<GeneratedSpKey, openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(3072)?)?;
        let mut name = X509NameBuilder::new()?;
        // CN is limited to 64 characters; the entity ID is only a label here.
        let cn: String = format!("ssobroker SP {entity_id}").chars().take(64).collect();
        name.append_entry_by_text("CN", &cn)?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(63, MsbOption::MAYBE_ZERO, false)?;
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        builder.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        builder.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
        builder.set_not_after(Asn1Time::days_from_now(3650)?.as_ref())?;
        builder.sign(&key, MessageDigest::sha256())?;
        let cert = builder.build();
        Ok(GeneratedSpKey {
            key_pem: String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?).into_owned(),
            cert_pem: String::from_utf8_lossy(&cert.to_pem()?).into_owned(),
        })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate as PEM, for IdPs whose console wants a certificate file (Okta's
    /// single logout "Signature Certificate").
    pub fn cert_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.cert_der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// RSA-SHA256 over `data`, base64 (the HTTP-Redirect binding's `Signature` parameter).
    pub(crate) fn sign_b64(&self, data: &[u8]) -> Result<String, openssl::error::ErrorStack> {
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &self.key)?;
        signer.update(data)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(signer.sign_to_vec()?))
    }

    /// An enveloped signature over the element with `id`, inserted after the `<saml:Issuer>`
    /// element that `xml` must contain (schema order: Issuer, Signature, …).
    pub(crate) fn sign_xml(&self, xml: &str, id: &str) -> Result<String, String> {
        let marker = "</saml:Issuer>";
        let at = xml.find(marker).map(|i| i + marker.len()).ok_or("no Issuer to sign after")?;
        let template = signature_template(id, SIG_RSA_SHA256, DIGEST_SHA256, &self.cert_der);
        let templated = format!("{}{}{}", &xml[..at], template, &xml[at..]);
        let key_der = self.key.rsa().and_then(|r| r.private_key_to_der()).map_err(|e| e.to_string())?;
        let _guard = super::xmlsec_lock();
        samael::crypto::Crypto::sign_xml(&templated, &key_der).map_err(|e| format!("{e} ({e:?})"))
    }
}

/// An enveloped-signature template over the element with ID `reference_id` (exclusive C14N,
/// the given algorithms, the certificate in KeyInfo) for xmlsec to fill in: the one shape the
/// broker's signature policy accepts, used for our AuthnRequests and the dev IdP's responses.
pub(crate) fn signature_template(reference_id: &str, method: &str, digest: &str, cert_der: &[u8]) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="{ds}"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="{c14n}"/>"#,
            r#"<ds:SignatureMethod Algorithm="{method}"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="{enveloped}"/><ds:Transform Algorithm="{c14n}"/>"#,
            r#"</ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue/>"#,
            r#"</ds:Reference></ds:SignedInfo><ds:SignatureValue/>"#,
            r#"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate>"#,
            r#"</ds:X509Data></ds:KeyInfo></ds:Signature>"#
        ),
        ds = NS_DSIG,
        c14n = EXC_C14N,
        method = method,
        id = escape(reference_id),
        enveloped = ENVELOPED,
        digest = digest,
        cert = base64::engine::general_purpose::STANDARD.encode(cert_der),
    )
}
