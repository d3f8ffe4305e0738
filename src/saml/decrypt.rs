//! XML Encryption of assertions: unwrap the key with the SP's RSA key, then decrypt the data.
//!
//! samael 0.0.22 decrypts only aes128 and only inside a signed Response (SAML-NOTES L10), while
//! Okta, Entra ID, ADFS and OneLogin use aes256-cbc and Shibboleth, ADFS and Okta often sign only
//! the inner Assertion. So the broker decrypts itself, with OpenSSL primitives and a strict
//! reading of the EncryptedAssertion. The caller decides when decryption may happen (after the
//! signature policy, and after the Response signature when there is one).
//!
//! Every failure is the same `decryption_failed` refusal with no detail the sender can see: CBC
//! and RSA both have oracle attacks, and the ACS answers one generic page whatever went wrong.

use base64::Engine;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use roxmltree::Node;

use super::xml::{child, child_elements, excerpt, is, text_content, NS_DSIG};
use super::{reject, Reason, SamlError};

pub(crate) const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub(crate) const NS_XENC11: &str = "http://www.w3.org/2009/xmlenc11#";

const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";
const TYPE_ENCRYPTED_KEY: &str = "http://www.w3.org/2001/04/xmlenc#EncryptedKey";
const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

/// The data algorithms an SP metadata document advertises, strongest first.
pub(crate) const DATA_ALGORITHMS: &[&str] = &[
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
];
/// The key transport algorithms an SP metadata document advertises.
pub(crate) const KEY_ALGORITHMS: &[&str] = &[RSA_OAEP, RSA_OAEP_MGF1P];

/// Most EncryptedKey elements tried for one EncryptedData (one per recipient is normal).
const MAX_KEYS_TRIED: usize = 4;

/// The SP's private key for encrypted assertions. Debug never prints it.
#[derive(Clone)]
pub struct DecryptionKey(PKey<Private>);

impl DecryptionKey {
    /// An RSA private key from PEM (PKCS#1 or PKCS#8).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let key = PKey::private_key_from_pem(pem).map_err(|_| "not a PEM private key".to_string())?;
        if key.rsa().is_err() {
            return Err("the SP key must be an RSA key (XML Encryption key transport is RSA-OAEP)".into());
        }
        Ok(DecryptionKey(key))
    }

    pub fn public_key_der(&self) -> Vec<u8> {
        self.0.public_key_to_der().unwrap_or_default()
    }

    pub(crate) fn pkey(&self) -> &PKey<Private> {
        &self.0
    }
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecryptionKey(<redacted>)")
    }
}

#[derive(Clone, Copy)]
enum DataAlgorithm {
    Cbc(usize),
    Gcm(usize),
}

impl DataAlgorithm {
    fn from_uri(uri: &str) -> Option<Self> {
        Some(match uri {
            "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => DataAlgorithm::Cbc(16),
            "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => DataAlgorithm::Cbc(24),
            "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => DataAlgorithm::Cbc(32),
            "http://www.w3.org/2009/xmlenc11#aes128-gcm" => DataAlgorithm::Gcm(16),
            "http://www.w3.org/2009/xmlenc11#aes192-gcm" => DataAlgorithm::Gcm(24),
            "http://www.w3.org/2009/xmlenc11#aes256-gcm" => DataAlgorithm::Gcm(32),
            _ => return None,
        })
    }

    fn key_len(self) -> usize {
        match self {
            DataAlgorithm::Cbc(n) | DataAlgorithm::Gcm(n) => n,
        }
    }
}

fn failed(detail: &str) -> SamlError {
    reject(Reason::DecryptionFailed, detail)
}

fn not_allowed(detail: String) -> SamlError {
    reject(Reason::AlgorithmNotAllowed, detail)
}

/// Decrypts the one EncryptedData of an `EncryptedAssertion` and returns the plaintext, which
/// should be a serialised `saml:Assertion` (the caller parses and checks it).
pub(crate) fn decrypt_assertion(
    encrypted_assertion: Node<'_, '_>,
    keys: &[DecryptionKey],
) -> Result<String, SamlError> {
    if keys.is_empty() {
        return Err(reject(Reason::EncryptedUnsupported, "the connection has no SP decryption key"));
    }
    let mut data = None;
    let mut siblings = Vec::new();
    for part in child_elements(encrypted_assertion) {
        if is(part, NS_XENC, "EncryptedData") && data.is_none() {
            data = Some(part);
        } else if is(part, NS_XENC, "EncryptedKey") {
            siblings.push(part);
        } else {
            return Err(failed("unexpected element inside EncryptedAssertion"));
        }
    }
    let data = data.ok_or_else(|| failed("EncryptedAssertion without EncryptedData"))?;
    if data.attribute("Type").is_some_and(|t| t != TYPE_ELEMENT) {
        return Err(failed("EncryptedData Type is not Element"));
    }
    let method = child(data, NS_XENC, "EncryptionMethod")
        .and_then(|m| m.attribute("Algorithm"))
        .ok_or_else(|| failed("EncryptedData without EncryptionMethod"))?;
    let algorithm = DataAlgorithm::from_uri(method)
        .ok_or_else(|| not_allowed(format!("data encryption {} is not allowed", excerpt(method))))?;

    let candidates = key_candidates(data, &siblings)?;
    if candidates.is_empty() {
        return Err(failed("no EncryptedKey for the EncryptedData"));
    }
    // Check every key's algorithm before any RSA work, so a refused algorithm (rsa-1_5) is never
    // run even when another key would do.
    let transports = candidates.iter().map(|k| key_transport(*k)).collect::<Result<Vec<_>, _>>()?;
    let ciphertext = cipher_value(data)?;
    let session_key = transports
        .iter()
        .zip(&candidates)
        .take(MAX_KEYS_TRIED)
        .find_map(|(transport, encrypted_key)| {
            let wrapped = cipher_value(*encrypted_key).ok()?;
            keys.iter().find_map(|key| transport.unwrap(key, &wrapped))
        })
        .ok_or_else(|| failed("no SP key unwraps the EncryptedKey"))?;
    if session_key.len() != algorithm.key_len() {
        return Err(failed("the unwrapped key does not fit the data algorithm"));
    }
    let plaintext = match algorithm {
        DataAlgorithm::Cbc(n) => decrypt_cbc(n, &session_key, &ciphertext),
        DataAlgorithm::Gcm(n) => decrypt_gcm(n, &session_key, &ciphertext),
    }
    .ok_or_else(|| failed("the EncryptedData does not decrypt"))?;
    String::from_utf8(plaintext).map_err(|_| failed("the decrypted assertion is not UTF-8"))
}

/// EncryptedKeys inside the EncryptedData's KeyInfo, or the siblings a RetrievalMethod names,
/// or (Okta's detached form without a reference) every sibling.
fn key_candidates<'a, 'i>(
    data: Node<'a, 'i>,
    siblings: &[Node<'a, 'i>],
) -> Result<Vec<Node<'a, 'i>>, SamlError> {
    let Some(key_info) = child(data, NS_DSIG, "KeyInfo") else {
        return Ok(siblings.to_vec());
    };
    let mut found = Vec::new();
    let mut referenced = false;
    for part in child_elements(key_info) {
        if is(part, NS_XENC, "EncryptedKey") {
            found.push(part);
        } else if is(part, NS_DSIG, "RetrievalMethod") {
            // Only a same-document reference to a sibling; never a fetch.
            if part.attribute("Type") != Some(TYPE_ENCRYPTED_KEY) || child_elements(part).next().is_some() {
                return Err(failed("unsupported RetrievalMethod"));
            }
            let id = part
                .attribute("URI")
                .and_then(|u| u.strip_prefix('#'))
                .ok_or_else(|| failed("RetrievalMethod URI is not a local reference"))?;
            referenced = true;
            found.extend(siblings.iter().filter(|k| k.attribute("Id") == Some(id)).copied());
        } else if !is(part, NS_DSIG, "KeyName") {
            return Err(failed("unexpected element in the EncryptedData KeyInfo"));
        }
    }
    if found.is_empty() && !referenced {
        return Ok(siblings.to_vec());
    }
    Ok(found)
}

struct KeyTransport {
    digest: &'static MdRef,
    mgf1: &'static MdRef,
    label: Option<Vec<u8>>,
}

fn digest_of(uri: &str) -> Option<&'static MdRef> {
    Some(match uri {
        "http://www.w3.org/2000/09/xmldsig#sha1" => Md::sha1(),
        "http://www.w3.org/2001/04/xmlenc#sha256" => Md::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Md::sha384(),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Md::sha512(),
        _ => return None,
    })
}

fn mgf_of(uri: &str) -> Option<&'static MdRef> {
    Some(match uri {
        "http://www.w3.org/2009/xmlenc11#mgf1sha1" => Md::sha1(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha224" => Md::sha224(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha256" => Md::sha256(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha384" => Md::sha384(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha512" => Md::sha512(),
        _ => return None,
    })
}

/// The RSA-OAEP parameters of one EncryptedKey; anything else (rsa-1_5 above all) is refused.
fn key_transport(encrypted_key: Node<'_, '_>) -> Result<KeyTransport, SamlError> {
    let method = child(encrypted_key, NS_XENC, "EncryptionMethod")
        .ok_or_else(|| failed("EncryptedKey without EncryptionMethod"))?;
    let algorithm = method.attribute("Algorithm").unwrap_or_default();
    let oaep11 = match algorithm {
        RSA_OAEP_MGF1P => false,
        RSA_OAEP => true,
        RSA_1_5 => return Err(not_allowed("key transport rsa-1_5 is not allowed (Bleichenbacher)".into())),
        other => return Err(not_allowed(format!("key transport {} is not allowed", excerpt(other)))),
    };
    let mut transport = KeyTransport { digest: Md::sha1(), mgf1: Md::sha1(), label: None };
    for param in child_elements(method) {
        if is(param, NS_DSIG, "DigestMethod") {
            let uri = param.attribute("Algorithm").unwrap_or_default();
            transport.digest = digest_of(uri)
                .ok_or_else(|| not_allowed(format!("OAEP digest {} is not allowed", excerpt(uri))))?;
        } else if oaep11 && is(param, NS_XENC11, "MGF") {
            let uri = param.attribute("Algorithm").unwrap_or_default();
            transport.mgf1 = mgf_of(uri)
                .ok_or_else(|| not_allowed(format!("OAEP MGF {} is not allowed", excerpt(uri))))?;
        } else if is(param, NS_XENC, "OAEPparams") {
            let label = base64::engine::general_purpose::STANDARD
                .decode(compact(&text_content(param)))
                .map_err(|_| failed("OAEPparams is not base64"))?;
            transport.label = Some(label).filter(|l| !l.is_empty());
        } else {
            return Err(failed("unexpected EncryptionMethod parameter on the EncryptedKey"));
        }
    }
    Ok(transport)
}

impl KeyTransport {
    fn unwrap(&self, key: &DecryptionKey, wrapped: &[u8]) -> Option<Vec<u8>> {
        let mut ctx = PkeyCtx::new(key.pkey()).ok()?;
        ctx.decrypt_init().ok()?;
        ctx.set_rsa_padding(Padding::PKCS1_OAEP).ok()?;
        ctx.set_rsa_oaep_md(self.digest).ok()?;
        ctx.set_rsa_mgf1_md(self.mgf1).ok()?;
        if let Some(label) = &self.label {
            ctx.set_rsa_oaep_label(label).ok()?;
        }
        let mut out = Vec::new();
        ctx.decrypt_to_vec(wrapped, &mut out).ok()?;
        Some(out)
    }
}

fn compact(text: &str) -> Vec<u8> {
    text.bytes().filter(|b| !b.is_ascii_whitespace()).collect()
}

/// The base64 CipherValue of an EncryptedData or EncryptedKey (CipherReference would be a
/// fetch and is refused).
fn cipher_value(node: Node<'_, '_>) -> Result<Vec<u8>, SamlError> {
    let value = child(node, NS_XENC, "CipherData")
        .and_then(|d| child(d, NS_XENC, "CipherValue"))
        .ok_or_else(|| failed("no CipherData/CipherValue"))?;
    base64::engine::general_purpose::STANDARD
        .decode(compact(&text_content(value)))
        .map_err(|_| failed("CipherValue is not base64"))
}

fn aes_cbc(key_len: usize) -> Option<Cipher> {
    match key_len {
        16 => Some(Cipher::aes_128_cbc()),
        24 => Some(Cipher::aes_192_cbc()),
        32 => Some(Cipher::aes_256_cbc()),
        _ => None,
    }
}

fn aes_gcm(key_len: usize) -> Option<Cipher> {
    match key_len {
        16 => Some(Cipher::aes_128_gcm()),
        24 => Some(Cipher::aes_192_gcm()),
        32 => Some(Cipher::aes_256_gcm()),
        _ => None,
    }
}

/// IV (16 bytes) then ciphertext; XML Encryption padding: the last byte says how many bytes to
/// drop (1..=16), the others are arbitrary (so not PKCS#7 as OpenSSL checks it).
fn decrypt_cbc(key_len: usize, key: &[u8], input: &[u8]) -> Option<Vec<u8>> {
    const BLOCK: usize = 16;
    if input.len() < 2 * BLOCK || !input.len().is_multiple_of(BLOCK) {
        return None;
    }
    let (iv, ciphertext) = input.split_at(BLOCK);
    let mut crypter = Crypter::new(aes_cbc(key_len)?, Mode::Decrypt, key, Some(iv)).ok()?;
    crypter.pad(false);
    let mut out = vec![0; ciphertext.len() + BLOCK];
    let mut n = crypter.update(ciphertext, &mut out).ok()?;
    n += crypter.finalize(&mut out[n..]).ok()?;
    out.truncate(n);
    let pad = usize::from(*out.last()?);
    if pad == 0 || pad > BLOCK || pad > out.len() {
        return None;
    }
    out.truncate(out.len() - pad);
    Some(out)
}

/// IV (12 bytes), ciphertext, tag (16 bytes).
fn decrypt_gcm(key_len: usize, key: &[u8], input: &[u8]) -> Option<Vec<u8>> {
    const IV: usize = 12;
    const TAG: usize = 16;
    if input.len() < IV + TAG {
        return None;
    }
    let (iv, rest) = input.split_at(IV);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG);
    openssl::symm::decrypt_aead(aes_gcm(key_len)?, key, Some(iv), &[], ciphertext, tag).ok()
}

/// Test and dev-IdP side: encrypts `plaintext` as an EncryptedData for `public_key_der` (an
/// RSA SubjectPublicKeyInfo), aes256-gcm or aes256-cbc, rsa-oaep-mgf1p. Returns the
/// `<xenc:EncryptedData>` element with the EncryptedKey inside its KeyInfo.
pub fn encrypt_for_tests(plaintext: &str, public_key_der: &[u8], gcm: bool) -> Result<String, String> {
    let public = PKey::public_key_from_der(public_key_der).map_err(|e| e.to_string())?;
    let mut key = [0u8; 32];
    openssl::rand::rand_bytes(&mut key).map_err(|e| e.to_string())?;
    let body = if gcm {
        let mut iv = [0u8; 12];
        openssl::rand::rand_bytes(&mut iv).map_err(|e| e.to_string())?;
        let mut tag = [0u8; 16];
        let ct = openssl::symm::encrypt_aead(
            Cipher::aes_256_gcm(),
            &key,
            Some(&iv),
            &[],
            plaintext.as_bytes(),
            &mut tag,
        )
        .map_err(|e| e.to_string())?;
        [&iv[..], &ct, &tag].concat()
    } else {
        let mut iv = [0u8; 16];
        openssl::rand::rand_bytes(&mut iv).map_err(|e| e.to_string())?;
        let ct = openssl::symm::encrypt(Cipher::aes_256_cbc(), &key, Some(&iv), plaintext.as_bytes())
            .map_err(|e| e.to_string())?;
        [&iv[..], &ct].concat()
    };
    let mut ctx = PkeyCtx::new(&public).map_err(|e| e.to_string())?;
    ctx.encrypt_init().map_err(|e| e.to_string())?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(|e| e.to_string())?;
    let mut wrapped = Vec::new();
    ctx.encrypt_to_vec(&key, &mut wrapped).map_err(|e| e.to_string())?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let data_alg = if gcm { DATA_ALGORITHMS[0] } else { DATA_ALGORITHMS[2] };
    Ok(format!(
        concat!(
            r#"<xenc:EncryptedData xmlns:xenc="{xenc}" Type="{ty}">"#,
            r#"<xenc:EncryptionMethod Algorithm="{data_alg}"/>"#,
            r#"<ds:KeyInfo xmlns:ds="{ds}"><xenc:EncryptedKey>"#,
            r#"<xenc:EncryptionMethod Algorithm="{key_alg}"/>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{wrapped}</xenc:CipherValue></xenc:CipherData>"#,
            r#"</xenc:EncryptedKey></ds:KeyInfo>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{body}</xenc:CipherValue></xenc:CipherData>"#,
            r#"</xenc:EncryptedData>"#
        ),
        xenc = NS_XENC,
        ty = TYPE_ELEMENT,
        data_alg = data_alg,
        ds = NS_DSIG,
        key_alg = RSA_OAEP_MGF1P,
        wrapped = b64(&wrapped),
        body = b64(&body),
    ))
}
