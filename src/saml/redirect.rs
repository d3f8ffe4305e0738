//! The HTTP-Redirect binding (SAML bindings 3.4): DEFLATE + base64 in the query string and the
//! query signature over the exact encoded bytes, for messages going out and coming in.

use std::io::{Read, Write};

use base64::Engine;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};

use super::policy::{algorithm_allowed, SHA1_SIGNATURE_METHOD, STRONG_SIGNATURE_METHODS};
use super::sign::SIG_RSA_SHA256;
use super::validate::{decode_base64_capped, utf8_xml};
use super::{reject, Reason, SamlError, SpSettings, SpSigningKey};

/// Signs the exact bytes the binding signs; returns the base64 `Signature` value.
pub(crate) type QuerySigner<'a> = &'a dyn Fn(&[u8]) -> Result<String, String>;

/// `param=<deflated, base64>[&RelayState=…][&SigAlg=…&Signature=…]`, form-encoded. With a
/// signer, `sig_alg` names its algorithm and the signature covers everything before it.
pub(crate) fn encode_query(
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
    signer: Option<(&str, QuerySigner<'_>)>,
) -> Result<String, String> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    let deflated = encoder
        .write_all(xml.as_bytes())
        .and_then(|()| encoder.finish())
        .map_err(|e| format!("cannot deflate: {e}"))?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair(param, &base64::engine::general_purpose::STANDARD.encode(deflated));
    if let Some(relay_state) = relay_state.filter(|r| !r.is_empty()) {
        query.append_pair("RelayState", relay_state);
    }
    if let Some((sig_alg, _)) = signer {
        query.append_pair("SigAlg", sig_alg);
    }
    let mut query = query.finish();
    if let Some((_, sign)) = signer {
        // The binding signs these exact encoded bytes (SAML bindings 3.4.4.1), not a re-encoding.
        let signature = sign(query.as_bytes()).map_err(|e| format!("cannot sign: {e}"))?;
        query.push_str("&Signature=");
        query.extend(url::form_urlencoded::byte_serialize(signature.as_bytes()));
    }
    Ok(query)
}

/// The SP's message to `endpoint`, signed with `key` when there is one: the URL to redirect the
/// browser to. Parameters already in the endpoint URL stay first and outside the signature.
pub(super) fn sp_redirect_url(
    endpoint: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
    key: Option<&SpSigningKey>,
    what: &str,
) -> Result<String, SamlError> {
    let mut url = url::Url::parse(endpoint)
        .map_err(|e| SamlError::Metadata(format!("IdP {what} URL {endpoint:?} is invalid: {e}")))?;
    let sign = key.map(|k| move |data: &[u8]| k.sign_b64(data).map_err(|e| e.to_string()));
    let signer = sign.as_ref().map(|f| (SIG_RSA_SHA256, f as QuerySigner<'_>));
    let ours = encode_query(param, xml, relay_state, signer)
        .map_err(|e| SamlError::Metadata(format!("{what}: {e}")))?;
    let query = match url.query() {
        Some(existing) if !existing.is_empty() => format!("{existing}&{ours}"),
        _ => ours,
    };
    url.set_query(Some(&query));
    Ok(url.into())
}

/// A message that arrived over HTTP-Redirect, its query signature verified.
pub(super) struct VerifiedQuery {
    pub xml: String,
    /// Percent-decoded.
    pub relay_state: Option<String>,
}

/// One query parameter: the value as received (what the signature covers) and decoded.
struct Param<'q> {
    raw: &'q str,
    decoded: String,
}

/// Verifies the query signature of a `param` message (`other` is the parameter of the other
/// kind of message) against the IdP's pinned certificates, and only then decodes the message.
pub(super) fn verify_query(
    sp: &SpSettings,
    raw_query: &str,
    param: &str,
    other: &str,
) -> Result<VerifiedQuery, SamlError> {
    // Percent-encoding at most triples the base64 text; the rest is SigAlg, Signature and a
    // RelayState.
    let cap = super::validate::max_encoded(sp.max_response_bytes).saturating_mul(3).saturating_add(16 * 1024);
    if raw_query.len() > cap {
        return Err(reject(Reason::TooLarge, format!("query string of {} bytes", raw_query.len())));
    }
    let names = [param, other, "RelayState", "SigAlg", "Signature"];
    let mut found: [Option<Param<'_>>; 5] = Default::default();
    for part in raw_query.split('&').filter(|p| !p.is_empty()) {
        let raw = part.split_once('=').map_or("", |(_, v)| v);
        let Some((name, decoded)) = url::form_urlencoded::parse(part.as_bytes()).next() else { continue };
        let Some(index) = names.iter().position(|n| *n == name) else { continue };
        // Two values for one parameter: the verifier and the reader could each take another.
        if found[index].is_some() {
            return Err(reject(Reason::Malformed, format!("{} appears more than once", names[index])));
        }
        found[index] = Some(Param { raw, decoded: decoded.into_owned() });
    }
    let [message, other_message, relay_state, sig_alg, signature] = found;
    let message = match (message, other_message) {
        (Some(m), None) => m,
        _ => return Err(reject(Reason::NotALogoutMessage, format!("expected {param} alone"))),
    };
    let (Some(sig_alg), Some(signature)) = (sig_alg, signature) else {
        return Err(reject(Reason::SignatureMissing, "SigAlg or Signature missing from the query"));
    };
    let uses_sha1 = algorithm_allowed(
        Some(&sig_alg.decoded),
        STRONG_SIGNATURE_METHODS,
        SHA1_SIGNATURE_METHOD,
        sp.allow_sha1,
        "SigAlg",
    )?;
    let (digest, key_type) = match sig_alg.decoded.rsplit('#').next() {
        _ if uses_sha1 => (MessageDigest::sha1(), Id::RSA),
        Some("rsa-sha256") => (MessageDigest::sha256(), Id::RSA),
        Some("rsa-sha384") => (MessageDigest::sha384(), Id::RSA),
        Some("rsa-sha512") => (MessageDigest::sha512(), Id::RSA),
        Some("ecdsa-sha256") => (MessageDigest::sha256(), Id::EC),
        Some("ecdsa-sha384") => (MessageDigest::sha384(), Id::EC),
        Some("ecdsa-sha512") => (MessageDigest::sha512(), Id::EC),
        _ => return Err(reject(Reason::AlgorithmNotAllowed, "SigAlg has no verifier")),
    };
    if sp.idp.signing_certs.is_empty() {
        return Err(reject(Reason::NoTrustedKey, "the connection has no IdP signing certificate"));
    }

    let mut signed = format!("{param}={}", message.raw);
    if let Some(relay_state) = &relay_state {
        signed.push_str("&RelayState=");
        signed.push_str(relay_state.raw);
    }
    signed.push_str("&SigAlg=");
    signed.push_str(sig_alg.raw);
    let signature_bytes = decode_base64_capped(&signature.decoded, 1024, "Signature")
        .map_err(|e| reject(Reason::SignatureInvalid, e.to_string()))?;
    let verified = sp.idp.signing_certs.iter().any(|der| {
        let key = openssl::x509::X509::from_der(der).and_then(|c| c.public_key());
        key.is_ok_and(|key| {
            key.id() == key_type && verifies(&key, digest, signed.as_bytes(), &signature_bytes)
        })
    });
    if !verified {
        return Err(reject(
            Reason::SignatureInvalid,
            "no pinned IdP certificate verifies the query signature",
        ));
    }

    let deflated = decode_base64_capped(&message.decoded, sp.max_response_bytes, param)?;
    let xml = utf8_xml(inflate(&deflated, sp.max_response_bytes)?, param)?;
    Ok(VerifiedQuery { xml, relay_state: relay_state.map(|r| r.decoded) })
}

/// RSA PKCS#1 v1.5, or ECDSA whose XML-DSig value is r || s (RFC 4050) and OpenSSL wants DER.
fn verifies(key: &PKey<Public>, digest: MessageDigest, data: &[u8], signature: &[u8]) -> bool {
    let der;
    let signature = if key.id() == Id::EC {
        let half = signature.len() / 2;
        if half == 0 || !signature.len().is_multiple_of(2) {
            return false;
        }
        let sig = openssl::bn::BigNum::from_slice(&signature[..half])
            .and_then(|r| openssl::bn::BigNum::from_slice(&signature[half..]).map(|s| (r, s)))
            .and_then(|(r, s)| openssl::ecdsa::EcdsaSig::from_private_components(r, s))
            .and_then(|sig| sig.to_der());
        match sig {
            Ok(d) => der = d,
            Err(_) => return false,
        }
        der.as_slice()
    } else {
        signature
    };
    openssl::sign::Verifier::new(digest, key)
        .and_then(|mut v| v.update(data).and_then(|()| v.verify(signature)))
        .unwrap_or(false)
}

/// Raw DEFLATE, stopped one byte past `max` so a bomb costs no more than `max` of memory.
fn inflate(deflated: &[u8], max: usize) -> Result<Vec<u8>, SamlError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| reject(Reason::BadEncoding, format!("not raw DEFLATE: {e}")))?;
    if out.len() > max {
        return Err(reject(Reason::TooLarge, format!("inflates to more than {max} bytes")));
    }
    Ok(out)
}
