//! Development IdP: a clearly labelled SAML IdP that signs responses with its own generated key.
//!
//! Used only by `ssobroker demo` and by the tests. Never mounted by `serve`.
//!
//! Responses are built as text and signed with samael's `Crypto::sign_xml` (xmlsec), so the
//! broker's validator is exercised against the same library family real IdPs interoperate with.
//! samael's own `Signature::template` digests with SHA-1 and is not used.

use std::io::Read;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder};
use samael::crypto::CryptoProvider;

use crate::saml::xml::{
    child, children_named, escape, format_time, is, parse_strict, random_id, text_content, BINDING_POST,
    BINDING_REDIRECT, CM_BEARER, NAMEID_EMAIL, NAMEID_UNSPECIFIED, NS_ASSERTION, NS_DSIG, NS_METADATA,
    NS_PROTOCOL, STATUS_SUCCESS,
};
use crate::saml::{IdpMetadata, SloEndpoint, SsoBinding};

/// Longest inflated AuthnRequest accepted; real ones are well under 4 KiB.
const MAX_AUTHN_REQUEST_BYTES: u64 = 64 * 1024;

const SIG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SIG_RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const DIGEST_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const DIGEST_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const AC_PASSWORD_PROTECTED: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
const AC_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified";

#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    #[error("key or certificate: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("bad AuthnRequest: {0}")]
    BadRequest(String),
}

/// A development IdP with its own RSA-2048 key and self-signed certificate.
#[derive(Clone)]
pub struct DevIdp {
    /// PKCS#1 DER, the form xmlsec loads.
    key_der: Vec<u8>,
    cert_der: Vec<u8>,
    pub entity_id: String,
    pub sso_url: String,
    /// The IdP's SingleLogoutService (published in its metadata for HTTP-Redirect and
    /// HTTP-POST), if it has one.
    pub slo_url: Option<String>,
}

impl std::fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIdp")
            .field("entity_id", &self.entity_id)
            .field("sso_url", &self.sso_url)
            .finish_non_exhaustive()
    }
}

/// Which elements carry a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    Response,
    Assertion,
    Both,
    Unsigned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    RsaSha256,
    /// rsa-sha1 with a sha1 digest, for testing the `allow_sha1` opt-in.
    RsaSha1,
}

/// Everything that goes into one Response. `new` gives a valid one; tests change fields to
/// build the invalid ones.
#[derive(Debug, Clone)]
pub struct ResponseSpec {
    pub issuer: String,
    pub audience: Option<String>,
    pub recipient: String,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub name_id: String,
    pub name_id_format: String,
    /// NameQualifier and SPNameQualifier on the NameID (ADFS and Shibboleth send them).
    pub name_qualifiers: Option<(String, String)>,
    pub attributes: Vec<(String, Vec<String>)>,
    pub issue_instant: DateTime<Utc>,
    pub not_before: Option<DateTime<Utc>>,
    /// Used for both Conditions and the bearer SubjectConfirmationData.
    pub not_on_or_after: Option<DateTime<Utc>>,
    pub assertion_id: String,
    pub response_id: String,
    pub status: String,
    pub sign: SignMode,
    pub alg: SigAlg,
    pub authn_context_class: Option<String>,
    /// Encrypt the Assertion (after its own signature, before the Response's) to this SP key.
    pub encryption: Option<Encryption>,
}

/// How the dev IdP encrypts an Assertion: to an RSA public key (SubjectPublicKeyInfo DER) with
/// rsa-oaep-mgf1p and aes256-gcm (or aes256-cbc).
#[derive(Debug, Clone)]
pub struct Encryption {
    pub public_key_der: Vec<u8>,
    pub gcm: bool,
}

impl ResponseSpec {
    /// A valid response: issued `now`, valid for five minutes, random IDs, status Success,
    /// Assertion signed with rsa-sha256. The NameID format is emailAddress when `name_id`
    /// contains an `@`, unspecified otherwise.
    pub fn new(
        idp: &DevIdp,
        sp_entity_id: &str,
        acs_url: &str,
        in_response_to: Option<&str>,
        name_id: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let name_id_format = if name_id.contains('@') { NAMEID_EMAIL } else { NAMEID_UNSPECIFIED };
        ResponseSpec {
            issuer: idp.entity_id.clone(),
            audience: Some(sp_entity_id.to_string()),
            recipient: acs_url.to_string(),
            destination: Some(acs_url.to_string()),
            in_response_to: in_response_to.map(str::to_string),
            name_id: name_id.to_string(),
            name_id_format: name_id_format.to_string(),
            name_qualifiers: None,
            attributes: Vec::new(),
            issue_instant: now,
            not_before: Some(now),
            not_on_or_after: Some(now + Duration::minutes(5)),
            assertion_id: random_id(),
            response_id: random_id(),
            status: STATUS_SUCCESS.to_string(),
            sign: SignMode::Assertion,
            alg: SigAlg::RsaSha256,
            authn_context_class: Some(AC_PASSWORD_PROTECTED.to_string()),
            encryption: None,
        }
    }

    /// Adds one attribute (builder style).
    pub fn with_attribute(mut self, name: &str, values: &[&str]) -> Self {
        self.attributes.push((name.to_string(), values.iter().map(|v| v.to_string()).collect()));
        self
    }
}

/// The parts of an AuthnRequest the dev IdP needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthnRequest {
    pub id: String,
    pub acs_url: Option<String>,
    pub issuer: Option<String>,
}

impl DevIdp {
    /// A fresh key and self-signed certificate (one per test keeps tests independent).
    pub fn generate(entity_id: &str, sso_url: &str) -> Result<Self, DevIdpError> {
        let rsa = Rsa::generate(2048)?;
        let key_der = rsa.private_key_to_der()?;
        let pkey = PKey::from_rsa(rsa)?;

        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", "ssobroker development IdP - not for production")?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(63, MsbOption::MAYBE_ZERO, false)?;

        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&pkey)?;
        // From 2000 so tests may pin any plausible clock; SAML trust is by pinning anyway.
        let not_before = Asn1Time::from_unix(946_684_800)?;
        let not_after = Asn1Time::days_from_now(3650)?;
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.sign(&pkey, MessageDigest::sha256())?;
        let cert_der = builder.build().to_der()?;

        Ok(DevIdp {
            key_der,
            cert_der,
            entity_id: entity_id.to_string(),
            sso_url: sso_url.to_string(),
            slo_url: None,
        })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    fn cert_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.cert_der)
    }

    pub fn cert_pem(&self) -> String {
        let b64 = self.cert_b64();
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// IdP metadata: one signing KeyDescriptor, the SSO service at `sso_url` (HTTP-Redirect) and,
    /// with a `slo_url`, the SingleLogoutService there (HTTP-Redirect and HTTP-POST).
    pub fn metadata_xml(&self) -> String {
        format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                "\n",
                r#"<md:EntityDescriptor xmlns:md="{md}" xmlns:ds="{ds}" entityID="{entity}">"#,
                "\n  ",
                r#"<md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="{proto}">"#,
                "\n    ",
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                "\n    <md:NameIDFormat>{email}</md:NameIDFormat>",
                "\n    ",
                r#"<md:SingleSignOnService Binding="{redirect}" Location="{sso}"/>"#,
                "{slo}",
                "\n  </md:IDPSSODescriptor>\n</md:EntityDescriptor>\n"
            ),
            md = NS_METADATA,
            ds = NS_DSIG,
            entity = escape(&self.entity_id),
            proto = NS_PROTOCOL,
            cert = self.cert_b64(),
            email = NAMEID_EMAIL,
            redirect = BINDING_REDIRECT,
            sso = escape(&self.sso_url),
            slo = self.slo_url.as_deref().map_or_else(String::new, |url| {
                // SingleLogoutService comes before NameIDFormat in the schema.
                [BINDING_REDIRECT, BINDING_POST]
                    .iter()
                    .map(|b| {
                        format!(
                            "\n    <md:SingleLogoutService Binding=\"{b}\" Location=\"{}\"/>",
                            escape(url)
                        )
                    })
                    .collect()
            }),
        )
    }

    /// The same trust data `metadata_xml` carries, without a parse round trip.
    pub fn idp_metadata(&self) -> IdpMetadata {
        IdpMetadata {
            entity_id: self.entity_id.clone(),
            sso_url: self.sso_url.clone(),
            sso_binding: SsoBinding::Redirect,
            signing_certs: vec![self.cert_der.clone()],
            want_authn_requests_signed: false,
            slo: self.slo_url.as_ref().map(|url| SloEndpoint {
                binding: SsoBinding::Redirect,
                url: url.clone(),
                response_url: url.clone(),
            }),
        }
    }

    /// The signed (or, for `SignMode::Unsigned`, plain) Response XML text.
    pub fn sign_response(&self, spec: &ResponseSpec) -> Result<String, DevIdpError> {
        if let Some(encryption) = &spec.encryption {
            return self.sign_encrypted(spec, encryption);
        }
        match spec.sign {
            SignMode::Unsigned => Ok(response_xml(spec, None, None)),
            SignMode::Assertion => {
                let template = self.signature_template(&spec.assertion_id, spec.alg);
                self.sign(&response_xml(spec, None, Some(&template)))
            }
            SignMode::Response => {
                let template = self.signature_template(&spec.response_id, spec.alg);
                self.sign(&response_xml(spec, Some(&template), None))
            }
            SignMode::Both => {
                // sign_xml fills the first template in document order, and the Response
                // signature must cover the finished Assertion signature: inner first.
                let inner = self.signature_template(&spec.assertion_id, spec.alg);
                let signed = self.sign(&response_xml(spec, None, Some(&inner)))?;
                self.sign_message(&signed, &spec.response_id, spec.alg)
            }
        }
    }

    /// Sign the Assertion (if asked), encrypt it, then sign the Response (if asked): the order
    /// real IdPs use, so the Response signature covers the ciphertext.
    fn sign_encrypted(&self, spec: &ResponseSpec, encryption: &Encryption) -> Result<String, DevIdpError> {
        let inner = matches!(spec.sign, SignMode::Assertion | SignMode::Both);
        let outer = matches!(spec.sign, SignMode::Response | SignMode::Both);
        let xml = if inner {
            let template = self.signature_template(&spec.assertion_id, spec.alg);
            self.sign(&response_xml(spec, None, Some(&template)))?
        } else {
            response_xml(spec, None, None)
        };
        let start = xml.find("<saml:Assertion ").ok_or_else(|| DevIdpError::Sign("no Assertion".into()))?;
        let end_tag = "</saml:Assertion>";
        let end =
            xml.find(end_tag).ok_or_else(|| DevIdpError::Sign("no Assertion end".into()))? + end_tag.len();
        let data =
            crate::saml::encrypt_for_tests(&xml[start..end], &encryption.public_key_der, encryption.gcm)
                .map_err(DevIdpError::Sign)?;
        let xml = format!(
            "{}<saml:EncryptedAssertion>{data}</saml:EncryptedAssertion>{}",
            &xml[..start],
            &xml[end..]
        );
        if !outer {
            return Ok(xml);
        }
        self.sign_message(&xml, &spec.response_id, spec.alg)
    }

    /// `sign_response`, base64-encoded as the HTTP-POST binding's `SAMLResponse` value.
    pub fn sign_response_b64(&self, spec: &ResponseSpec) -> Result<String, DevIdpError> {
        Ok(base64::engine::general_purpose::STANDARD.encode(self.sign_response(spec)?))
    }

    fn sign(&self, xml: &str) -> Result<String, DevIdpError> {
        let _guard = crate::saml::xmlsec_lock();
        samael::crypto::Crypto::sign_xml(xml, &self.key_der)
            .map_err(|e| DevIdpError::Sign(format!("{e} ({e:?})")))
    }

    fn signature_template(&self, reference_id: &str, alg: SigAlg) -> String {
        let (method, digest) = match alg {
            SigAlg::RsaSha256 => (SIG_RSA_SHA256, DIGEST_SHA256),
            SigAlg::RsaSha1 => (SIG_RSA_SHA1, DIGEST_SHA1),
        };
        crate::saml::signature_template(reference_id, method, digest, &self.cert_der)
    }
}

fn response_xml(
    spec: &ResponseSpec,
    response_signature: Option<&str>,
    assertion_signature: Option<&str>,
) -> String {
    let mut x = String::with_capacity(4096);
    x.push_str(&format!(
        r#"<samlp:Response xmlns:samlp="{}" xmlns:saml="{}" ID="{}" Version="2.0" IssueInstant="{}""#,
        NS_PROTOCOL,
        NS_ASSERTION,
        escape(&spec.response_id),
        format_time(spec.issue_instant),
    ));
    if let Some(destination) = &spec.destination {
        x.push_str(&format!(r#" Destination="{}""#, escape(destination)));
    }
    if let Some(irt) = &spec.in_response_to {
        x.push_str(&format!(r#" InResponseTo="{}""#, escape(irt)));
    }
    x.push('>');
    x.push_str(&format!("<saml:Issuer>{}</saml:Issuer>", escape(&spec.issuer)));
    x.push_str(response_signature.unwrap_or_default());
    x.push_str(&format!(
        r#"<samlp:Status><samlp:StatusCode Value="{}"/></samlp:Status>"#,
        escape(&spec.status)
    ));

    x.push_str(&format!(
        r#"<saml:Assertion ID="{}" Version="2.0" IssueInstant="{}">"#,
        escape(&spec.assertion_id),
        format_time(spec.issue_instant),
    ));
    x.push_str(&format!("<saml:Issuer>{}</saml:Issuer>", escape(&spec.issuer)));
    x.push_str(assertion_signature.unwrap_or_default());

    let qualifiers = spec.name_qualifiers.as_ref().map_or_else(String::new, |(name, sp)| {
        format!(r#" NameQualifier="{}" SPNameQualifier="{}""#, escape(name), escape(sp))
    });
    x.push_str(&format!(
        r#"<saml:Subject><saml:NameID{qualifiers} Format="{}">{}</saml:NameID>"#,
        escape(&spec.name_id_format),
        escape(&spec.name_id),
    ));
    x.push_str(&format!(r#"<saml:SubjectConfirmation Method="{CM_BEARER}"><saml:SubjectConfirmationData"#));
    if let Some(irt) = &spec.in_response_to {
        x.push_str(&format!(r#" InResponseTo="{}""#, escape(irt)));
    }
    if let Some(t) = spec.not_on_or_after {
        x.push_str(&format!(r#" NotOnOrAfter="{}""#, format_time(t)));
    }
    x.push_str(&format!(
        r#" Recipient="{}"/></saml:SubjectConfirmation></saml:Subject>"#,
        escape(&spec.recipient)
    ));

    if spec.not_before.is_some() || spec.not_on_or_after.is_some() || spec.audience.is_some() {
        x.push_str("<saml:Conditions");
        if let Some(t) = spec.not_before {
            x.push_str(&format!(r#" NotBefore="{}""#, format_time(t)));
        }
        if let Some(t) = spec.not_on_or_after {
            x.push_str(&format!(r#" NotOnOrAfter="{}""#, format_time(t)));
        }
        x.push('>');
        if let Some(audience) = &spec.audience {
            x.push_str(&format!(
                "<saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>",
                escape(audience)
            ));
        }
        x.push_str("</saml:Conditions>");
    }

    x.push_str(&format!(
        r#"<saml:AuthnStatement AuthnInstant="{}" SessionIndex="{}"><saml:AuthnContext><saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
        format_time(spec.issue_instant),
        escape(&spec.assertion_id),
        escape(spec.authn_context_class.as_deref().unwrap_or(AC_UNSPECIFIED)),
    ));

    if !spec.attributes.is_empty() {
        x.push_str("<saml:AttributeStatement>");
        for (name, values) in &spec.attributes {
            x.push_str(&format!(
                r#"<saml:Attribute Name="{}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">"#,
                escape(name)
            ));
            for value in values {
                x.push_str(&format!("<saml:AttributeValue>{}</saml:AttributeValue>", escape(value)));
            }
            x.push_str("</saml:Attribute>");
        }
        x.push_str("</saml:AttributeStatement>");
    }
    x.push_str("</saml:Assertion></samlp:Response>");
    x
}

/// One LogoutRequest from the dev IdP. `new` gives a valid one; tests change fields to build
/// the invalid ones.
#[derive(Debug, Clone)]
pub struct LogoutRequestSpec {
    pub id: String,
    pub issuer: String,
    pub destination: Option<String>,
    pub issue_instant: DateTime<Utc>,
    pub not_on_or_after: Option<DateTime<Utc>>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_indexes: Vec<String>,
    pub alg: SigAlg,
}

impl LogoutRequestSpec {
    /// Issued `now` by `idp` to `destination` (the SP's SingleLogoutService) for `name_id`
    /// (every session: no SessionIndex), valid five minutes, rsa-sha256, a random ID.
    pub fn new(idp: &DevIdp, destination: &str, name_id: &str, now: DateTime<Utc>) -> Self {
        let name_id_format = if name_id.contains('@') { NAMEID_EMAIL } else { NAMEID_UNSPECIFIED };
        LogoutRequestSpec {
            id: random_id(),
            issuer: idp.entity_id.clone(),
            destination: Some(destination.to_string()),
            issue_instant: now,
            not_on_or_after: Some(now + Duration::minutes(5)),
            name_id: name_id.to_string(),
            name_id_format: Some(name_id_format.to_string()),
            session_indexes: Vec::new(),
            alg: SigAlg::RsaSha256,
        }
    }
}

/// One LogoutResponse from the dev IdP.
#[derive(Debug, Clone)]
pub struct LogoutResponseSpec {
    pub id: String,
    pub issuer: String,
    pub destination: Option<String>,
    pub in_response_to: String,
    pub issue_instant: DateTime<Utc>,
    pub status: String,
    pub sub_status: Option<String>,
    pub alg: SigAlg,
}

impl LogoutResponseSpec {
    /// Success, issued `now` by `idp` to `destination`, answering `in_response_to`.
    pub fn new(idp: &DevIdp, destination: &str, in_response_to: &str, now: DateTime<Utc>) -> Self {
        LogoutResponseSpec {
            id: random_id(),
            issuer: idp.entity_id.clone(),
            destination: Some(destination.to_string()),
            in_response_to: in_response_to.to_string(),
            issue_instant: now,
            status: STATUS_SUCCESS.to_string(),
            sub_status: None,
            alg: SigAlg::RsaSha256,
        }
    }
}

/// The SP's LogoutRequest as the dev IdP reads it (no signature check: tests verify that
/// themselves against the SP metadata's certificate).
#[derive(Debug, Clone)]
pub struct ParsedLogoutRequest {
    pub id: String,
    pub issuer: Option<String>,
    pub destination: Option<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_indexes: Vec<String>,
}

impl DevIdp {
    /// The LogoutRequest XML, unsigned.
    pub fn logout_request_xml(&self, spec: &LogoutRequestSpec) -> String {
        let mut x = message_start("LogoutRequest", &spec.id, spec.issue_instant, spec.destination.as_deref());
        if let Some(t) = spec.not_on_or_after {
            x.push_str(&format!(r#" NotOnOrAfter="{}""#, format_time(t)));
        }
        x.push_str(&format!("><saml:Issuer>{}</saml:Issuer><saml:NameID", escape(&spec.issuer)));
        if let Some(format) = &spec.name_id_format {
            x.push_str(&format!(r#" Format="{}""#, escape(format)));
        }
        x.push_str(&format!(">{}</saml:NameID>", escape(&spec.name_id)));
        for index in &spec.session_indexes {
            x.push_str(&format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(index)));
        }
        x.push_str("</samlp:LogoutRequest>");
        x
    }

    /// The LogoutResponse XML, unsigned.
    pub fn logout_response_xml(&self, spec: &LogoutResponseSpec) -> String {
        let mut x =
            message_start("LogoutResponse", &spec.id, spec.issue_instant, spec.destination.as_deref());
        x.push_str(&format!(
            r#" InResponseTo="{}"><saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{}""#,
            escape(&spec.in_response_to),
            escape(&spec.issuer),
            escape(&spec.status),
        ));
        match &spec.sub_status {
            Some(sub) => {
                x.push_str(&format!(r#"><samlp:StatusCode Value="{}"/></samlp:StatusCode>"#, escape(sub)))
            }
            None => x.push_str("/>"),
        }
        x.push_str("</samlp:Status></samlp:LogoutResponse>");
        x
    }

    /// An enveloped signature (HTTP-POST binding) over the root element with `id`, placed after
    /// its Issuer.
    pub fn sign_message(&self, xml: &str, id: &str, alg: SigAlg) -> Result<String, DevIdpError> {
        let marker = "</saml:Issuer>";
        let at = xml
            .find(marker)
            .map(|i| i + marker.len())
            .ok_or_else(|| DevIdpError::Sign("no Issuer".into()))?;
        let template = self.signature_template(id, alg);
        self.sign(&format!("{}{}{}", &xml[..at], template, &xml[at..]))
    }

    /// HTTP-Redirect binding: the raw query `param=…[&RelayState=…]&SigAlg=…&Signature=…`
    /// (`param` is SAMLRequest or SAMLResponse; the XML deflated and base64-encoded), signed
    /// with the IdP key.
    pub fn redirect_query(
        &self,
        param: &str,
        xml: &str,
        relay_state: Option<&str>,
        alg: SigAlg,
    ) -> Result<String, DevIdpError> {
        let (method, digest) = match alg {
            SigAlg::RsaSha256 => (SIG_RSA_SHA256, MessageDigest::sha256()),
            SigAlg::RsaSha1 => (SIG_RSA_SHA1, MessageDigest::sha1()),
        };
        let key = PKey::from_rsa(Rsa::private_key_from_der(&self.key_der)?)?;
        let sign = |data: &[u8]| -> Result<String, String> {
            let mut signer = openssl::sign::Signer::new(digest, &key).map_err(|e| e.to_string())?;
            signer.update(data).map_err(|e| e.to_string())?;
            let signature = signer.sign_to_vec().map_err(|e| e.to_string())?;
            Ok(base64::engine::general_purpose::STANDARD.encode(signature))
        };
        crate::saml::encode_query(param, xml, relay_state, Some((method, &sign))).map_err(DevIdpError::Sign)
    }
}

/// HTTP-Redirect binding without a signature: `param=…[&RelayState=…]`.
pub fn redirect_query_unsigned(param: &str, xml: &str, relay_state: Option<&str>) -> String {
    // Deflating into a Vec cannot fail; the error arm only exists for the signer.
    crate::saml::encode_query(param, xml, relay_state, None).unwrap_or_default()
}

/// `<samlp:{root} … ID IssueInstant [Destination]`, the start tag left open for the rest.
fn message_start(root: &str, id: &str, issue_instant: DateTime<Utc>, destination: Option<&str>) -> String {
    let mut x = format!(
        r#"<samlp:{root} xmlns:samlp="{NS_PROTOCOL}" xmlns:saml="{NS_ASSERTION}" ID="{}" Version="2.0" IssueInstant="{}""#,
        escape(id),
        format_time(issue_instant),
    );
    if let Some(destination) = destination {
        x.push_str(&format!(r#" Destination="{}""#, escape(destination)));
    }
    x
}

/// Decodes the SP's LogoutRequest: an HTTP-Redirect `SAMLRequest` value (base64 of raw
/// DEFLATE, already URL-decoded) or, with `deflated: false`, an HTTP-POST one (base64 XML).
pub fn parse_logout_request(saml_request: &str, deflated: bool) -> Result<ParsedLogoutRequest, DevIdpError> {
    let bad = |m: &str| DevIdpError::BadRequest(m.to_string());
    let xml = decode_request(saml_request, deflated)?;
    let doc = parse_strict(&xml).map_err(|e| DevIdpError::BadRequest(format!("not XML: {e}")))?;
    let root = doc.root_element();
    if !is(root, NS_PROTOCOL, "LogoutRequest") {
        return Err(bad("root is not samlp:LogoutRequest"));
    }
    let id = root.attribute("ID").filter(|id| !id.is_empty()).ok_or_else(|| bad("no ID"))?.to_string();
    let name_id = child(root, NS_ASSERTION, "NameID").ok_or_else(|| bad("no NameID"))?;
    Ok(ParsedLogoutRequest {
        id,
        issuer: child(root, NS_ASSERTION, "Issuer").map(|i| text_content(i).trim().to_string()),
        destination: root.attribute("Destination").map(str::to_string),
        name_id: text_content(name_id).trim().to_string(),
        name_id_format: name_id.attribute("Format").map(str::to_string),
        session_indexes: children_named(root, NS_PROTOCOL, "SessionIndex")
            .map(|s| text_content(s).trim().to_string())
            .collect(),
    })
}

/// The SP's LogoutResponse as the dev IdP reads it (no signature check, as for requests).
#[derive(Debug, Clone)]
pub struct ParsedLogoutResponse {
    pub in_response_to: Option<String>,
    /// Top-level StatusCode value.
    pub status: String,
}

pub fn parse_logout_response(
    saml_response: &str,
    deflated: bool,
) -> Result<ParsedLogoutResponse, DevIdpError> {
    let bad = |m: &str| DevIdpError::BadRequest(m.to_string());
    let xml = decode_request(saml_response, deflated)?;
    let doc = parse_strict(&xml).map_err(|e| DevIdpError::BadRequest(format!("not XML: {e}")))?;
    let root = doc.root_element();
    if !is(root, NS_PROTOCOL, "LogoutResponse") {
        return Err(bad("root is not samlp:LogoutResponse"));
    }
    let status = child(root, NS_PROTOCOL, "Status")
        .and_then(|s| child(s, NS_PROTOCOL, "StatusCode"))
        .and_then(|c| c.attribute("Value"))
        .ok_or_else(|| bad("no StatusCode"))?;
    Ok(ParsedLogoutResponse {
        in_response_to: root.attribute("InResponseTo").map(str::to_string),
        status: status.to_string(),
    })
}

/// A request's XML from its binding value: base64 of raw DEFLATE (HTTP-Redirect, already
/// URL-decoded) or, with `deflated: false`, plain base64 (HTTP-POST).
fn decode_request(saml_request: &str, deflated: bool) -> Result<String, DevIdpError> {
    let bad = |m: String| DevIdpError::BadRequest(m);
    let compact: Vec<u8> = saml_request.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let mut xml = String::new();
    let read = if deflated {
        flate2::read::DeflateDecoder::new(bytes.as_slice())
            .take(MAX_AUTHN_REQUEST_BYTES + 1)
            .read_to_string(&mut xml)
    } else {
        bytes.as_slice().take(MAX_AUTHN_REQUEST_BYTES + 1).read_to_string(&mut xml)
    };
    read.map_err(|e| bad(format!("not (raw DEFLATE of) UTF-8: {e}")))?;
    if xml.len() as u64 > MAX_AUTHN_REQUEST_BYTES {
        return Err(bad("too large".into()));
    }
    Ok(xml)
}

/// Decodes an HTTP-Redirect `SAMLRequest` value (base64 of raw DEFLATE, already URL-decoded).
pub fn parse_authn_request(saml_request: &str) -> Result<ParsedAuthnRequest, DevIdpError> {
    let bad = |m: String| DevIdpError::BadRequest(m);
    let xml = decode_request(saml_request, true)?;
    let doc = parse_strict(&xml).map_err(|e| bad(format!("not XML: {e}")))?;
    let root = doc.root_element();
    if !is(root, NS_PROTOCOL, "AuthnRequest") {
        return Err(bad("root is not samlp:AuthnRequest".into()));
    }
    let id = root.attribute("ID").filter(|id| !id.is_empty()).ok_or_else(|| bad("no ID".into()))?.to_string();
    Ok(ParsedAuthnRequest {
        id,
        acs_url: root.attribute("AssertionConsumerServiceURL").map(str::to_string),
        issuer: child(root, NS_ASSERTION, "Issuer").map(|i| text_content(i).trim().to_string()),
    })
}

#[cfg(test)]
pub(crate) mod tests;
