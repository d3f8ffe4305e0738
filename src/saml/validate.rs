//! Response validation: decode, pre-checks, xmlsec verification, then reading only signed data.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use roxmltree::Node;
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer, CryptoProvider, ReduceMode};

use super::decrypt::decrypt_assertion;
use super::policy::{check_raw, RawAssertion};
use super::xml::{
    child, child_elements, children_named, escape, excerpt, is, parse_strict, parse_time, text_content,
    CM_BEARER, NS_ASSERTION, NS_DSIG, NS_PROTOCOL, NS_XSI, STATUS_SUCCESS,
};
use super::{reject, Reason, SamlAttribute, SamlError, SpSettings, ValidatedAssertion};

/// samael's allow-list twin of the policy module's strong algorithms.
const SAMAEL_ALLOWED: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// Validates a base64 `SAMLResponse` form value as posted to the ACS (HTTP-POST binding).
///
/// The POST binding is never DEFLATEd; a deflated body is refused as malformed rather than
/// inflated (no decompression-bomb surface).
pub fn validate_post_response(
    sp: &SpSettings,
    saml_response_b64: &str,
    now: DateTime<Utc>,
) -> Result<ValidatedAssertion, SamlError> {
    let bytes = decode_base64_capped(saml_response_b64, sp.max_response_bytes, "SAMLResponse")?;
    let xml = utf8_xml(bytes, "SAMLResponse")?;
    validate_response_xml(sp, &xml, now)
}

/// Longest base64 text that can decode to `max` bytes: base64 grows 4/3, plus the line breaks
/// some encoders insert every 64-76 characters.
pub(super) fn max_encoded(max: usize) -> usize {
    max.saturating_mul(3) / 2 + 64
}

/// Decodes a base64 binding value (`what` names it) of at most `max` decoded bytes, refusing
/// an oversized one before decoding it.
pub(super) fn decode_base64_capped(value: &str, max: usize, what: &str) -> Result<Vec<u8>, SamlError> {
    let trimmed = value.trim();
    if trimmed.len() > max_encoded(max) {
        return Err(reject(Reason::TooLarge, format!("encoded {what} of {} bytes", trimmed.len())));
    }
    let compact: Vec<u8> = trimmed.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.len() / 4 * 3 > max.saturating_add(3) {
        return Err(reject(Reason::TooLarge, format!("encoded {what} of {} bytes", compact.len())));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| reject(Reason::BadEncoding, format!("{what} is not base64: {e}")))?;
    if bytes.len() > max {
        return Err(reject(Reason::TooLarge, format!("decoded {what} of {} bytes", bytes.len())));
    }
    Ok(bytes)
}

pub(super) fn utf8_xml(bytes: Vec<u8>, what: &str) -> Result<String, SamlError> {
    String::from_utf8(bytes)
        .map_err(|_| reject(Reason::Malformed, format!("decoded {what} is not UTF-8 XML")))
}

/// The checks an inbound document gets before any parser runs, then the strict parse. Returns
/// the document without its byte order mark, and its tree.
pub(super) fn parse_untrusted(xml: &str, max: usize) -> Result<(&str, roxmltree::Document<'_>), SamlError> {
    if xml.len() > max {
        return Err(reject(Reason::TooLarge, format!("document of {} bytes", xml.len())));
    }
    // Refused before any parser runs: libxml2 (inside samael) recovers and would expand entities.
    if xml.contains("<!DOCTYPE") {
        return Err(reject(Reason::DtdForbidden, "document type declaration"));
    }
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let doc = parse_strict(xml).map_err(|e| reject(Reason::Malformed, e.to_string()))?;
    Ok((xml, doc))
}

/// Validates a decoded response document. InResponseTo is returned, not checked: the caller
/// consumes it from its login transactions.
pub fn validate_response_xml(
    sp: &SpSettings,
    xml: &str,
    now: DateTime<Utc>,
) -> Result<ValidatedAssertion, SamlError> {
    let (xml, doc) = parse_untrusted(xml, sp.max_response_bytes)?;
    let response = doc.root_element();
    if !is(response, NS_PROTOCOL, "Response") {
        return Err(reject(
            Reason::NotAResponse,
            format!("root element is {}", excerpt(response.tag_name().name())),
        ));
    }
    // Checked first so an IdP-side failure is reported as such rather than as "no assertion".
    // It can only refuse, so reading it unsigned is harmless.
    check_status(response)?;

    let raw = check_raw(&doc, sp.allow_sha1)?;
    if sp.idp.signing_certs.is_empty() {
        return Err(reject(Reason::NoTrustedKey, "the connection has no IdP signing certificate"));
    }
    match raw.assertion {
        RawAssertion::Plain(assertion) => {
            if !raw.any_signature {
                return Err(reject(Reason::SignatureMissing, "no ds:Signature in the response"));
            }
            validate_signed(sp, xml, response, assertion, raw.uses_sha1, false, now)
        }
        RawAssertion::Encrypted(_) => validate_encrypted(sp, xml, raw.response_signed, raw.uses_sha1, now),
    }
}

/// The plain path: xmlsec verifies, then only the verified output is read. `response_verified`
/// says the Response around the assertion was verified earlier (before decryption).
fn validate_signed(
    sp: &SpSettings,
    xml: &str,
    response: Node<'_, '_>,
    raw_assertion: Node<'_, '_>,
    uses_sha1: bool,
    response_verified: bool,
    now: DateTime<Utc>,
) -> Result<ValidatedAssertion, SamlError> {
    let reduced = if child(response, NS_DSIG, "Signature").is_some() {
        verify_and_reduce(sp, xml, uses_sha1)?
    } else {
        verify_and_reduce(sp, &standalone_assertion(xml, raw_assertion)?, uses_sha1)?
    };
    let reduced_doc = parse_strict(&reduced)
        .map_err(|e| reject(Reason::SignatureInvalid, format!("verified output does not parse: {e}")))?;
    let signed_root = reduced_doc.root_element();
    let assertion = signed_assertion(signed_root)?;
    if assertion.attribute("ID") != raw_assertion.attribute("ID") {
        return Err(reject(
            Reason::SignatureInvalid,
            "the verified Assertion is not the Assertion of the response",
        ));
    }

    let mut validated = read_assertion(sp, assertion, now)?;
    if validated.in_response_to.is_none() {
        // Only a signed Response's InResponseTo may stand in for the assertion's: an unsigned
        // one would let an unsolicited assertion pass as solicited.
        if is(signed_root, NS_PROTOCOL, "Response") {
            validated.in_response_to = signed_root.attribute("InResponseTo").map(str::to_string);
        } else if response_verified {
            validated.in_response_to = response.attribute("InResponseTo").map(str::to_string);
        }
    }
    check_envelope(sp, response, &validated)?;
    Ok(validated)
}

/// EncryptedAssertion: with a signed Response, its signature is verified first and only the
/// verified output is decrypted (no decryption oracle for forged responses); without one, the
/// decrypted Assertion must carry its own signature. The plaintext replaces the
/// EncryptedAssertion and the result goes through the same checks as a plain response.
fn validate_encrypted(
    sp: &SpSettings,
    xml: &str,
    response_signed: bool,
    uses_sha1: bool,
    now: DateTime<Utc>,
) -> Result<ValidatedAssertion, SamlError> {
    if sp.decryption_keys.is_empty() {
        return Err(reject(Reason::EncryptedUnsupported, "the connection has no SP decryption key"));
    }
    let base = if response_signed { verify_and_reduce(sp, xml, uses_sha1)? } else { xml.to_string() };
    let base_doc = parse_strict(&base)
        .map_err(|e| reject(Reason::SignatureInvalid, format!("verified output does not parse: {e}")))?;
    let root = base_doc.root_element();
    let mut encrypted = children_named(root, NS_ASSERTION, "EncryptedAssertion");
    let (Some(encrypted), None, true) =
        (encrypted.next(), encrypted.next(), is(root, NS_PROTOCOL, "Response"))
    else {
        return Err(reject(
            Reason::SignatureInvalid,
            "no single EncryptedAssertion in the verified Response",
        ));
    };
    let plaintext = decrypt_assertion(encrypted, &sp.decryption_keys)?;
    // The Response signature covered the ciphertext; it cannot cover the spliced plaintext, so
    // it goes (it has done its job).
    let verified_signature = child(root, NS_DSIG, "Signature").filter(|_| response_signed);
    let spliced = splice_plaintext(&base, encrypted, &plaintext, verified_signature)?;

    let doc = parse_strict(&spliced)
        .map_err(|e| reject(Reason::DecryptionFailed, format!("decrypted assertion does not parse: {e}")))?;
    let response = doc.root_element();
    let raw = check_raw(&doc, sp.allow_sha1)?;
    let RawAssertion::Plain(assertion) = raw.assertion else {
        return Err(reject(Reason::MultipleAssertions, "an EncryptedAssertion inside an EncryptedAssertion"));
    };
    if raw.any_signature {
        validate_signed(sp, &spliced, response, assertion, raw.uses_sha1, response_signed, now)
    } else if response_signed {
        let mut validated = read_assertion(sp, assertion, now)?;
        if validated.in_response_to.is_none() {
            validated.in_response_to = response.attribute("InResponseTo").map(str::to_string);
        }
        check_envelope(sp, response, &validated)?;
        Ok(validated)
    } else {
        Err(reject(Reason::SignatureMissing, "neither the Response nor the decrypted Assertion is signed"))
    }
}

/// Puts the decrypted Assertion where the EncryptedAssertion was (and drops `remove`). The
/// plaintext was serialised in the context of the EncryptedData, so namespaces declared on the
/// EncryptedAssertion or EncryptedData and not at the Response are declared on it.
fn splice_plaintext(
    base: &str,
    encrypted: Node<'_, '_>,
    plaintext: &str,
    remove: Option<Node<'_, '_>>,
) -> Result<String, SamlError> {
    let mut element = plaintext.trim_start_matches('\u{feff}').trim();
    if element.starts_with("<?xml") {
        let end =
            element.find("?>").ok_or_else(|| reject(Reason::DecryptionFailed, "bad XML declaration"))?;
        element = element[end + 2..].trim_start();
    }
    if !element.starts_with('<') || element.starts_with("<!") || element.starts_with("<?") {
        return Err(reject(Reason::DecryptionFailed, "the decrypted data is not an element"));
    }
    let tag_end = start_tag_end(element)
        .ok_or_else(|| reject(Reason::DecryptionFailed, "the decrypted element has no start tag"))?;
    let tag = &element[..tag_end];
    let name_end = tag[1..]
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .map(|i| i + 1)
        .unwrap_or(tag.len());
    let context = encrypted.parent_element().map(|p| p.namespaces().collect::<Vec<_>>()).unwrap_or_default();
    let scope = child_elements(encrypted).next().unwrap_or(encrypted);
    let mut declarations = String::new();
    for ns in scope.namespaces() {
        if context.iter().any(|c| c.name() == ns.name() && c.uri() == ns.uri()) {
            continue;
        }
        let attr = match ns.name() {
            Some(prefix) => format!("xmlns:{prefix}"),
            None => "xmlns".to_string(),
        };
        if declares(tag, &attr) {
            continue;
        }
        declarations.push_str(&format!(" {attr}=\"{}\"", escape(ns.uri())));
    }
    let replacement = format!("{}{}{}", &element[..name_end], declarations, &element[name_end..]);

    let mut edits = vec![(encrypted.range(), replacement)];
    if let Some(node) = remove {
        edits.push((node.range(), String::new()));
    }
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = base.to_string();
    for (range, text) in edits {
        out.replace_range(range, &text);
    }
    Ok(out)
}

/// The byte index just past the `>` that ends the first start tag (quotes respected).
fn start_tag_end(element: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in element.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i + 1),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// The Assertion alone, as its own document, with every namespace in scope at it declared on
/// its start tag. Used when only the Assertion is signed: given the whole response, samael
/// 0.0.22 moves the verified Assertion up to the document root and never frees the Response it
/// unlinks there (nor libxml's namespace list), so every such call leaked about as much memory
/// as the unsigned wrapper held, megabytes for a padded one (found by fuzzing with
/// LeakSanitizer). The signature verifies the same: C14N reads the namespaces in scope, wherever
/// they were declared; an xml:lang or xml:space inherited from the Response (inclusive C14N,
/// without an exc-c14n transform) is lost and the signature then fails, which is the safe side.
fn standalone_assertion(xml: &str, assertion: Node<'_, '_>) -> Result<String, SamlError> {
    let element = &xml[assertion.range()];
    let tag_end = start_tag_end(element)
        .ok_or_else(|| reject(Reason::Malformed, "the Assertion has no readable start tag"))?;
    let tag = &element[..tag_end];
    let name_end = tag[1..]
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .map(|i| i + 1)
        .unwrap_or(tag.len());
    let mut declarations = String::new();
    for ns in assertion.namespaces() {
        let attr = match ns.name() {
            Some("xml") => continue,
            Some(prefix) => format!("xmlns:{prefix}"),
            None => "xmlns".to_string(),
        };
        if !declares(tag, &attr) {
            declarations.push_str(&format!(" {attr}=\"{}\"", escape(ns.uri())));
        }
    }
    Ok(format!("{}{}{}", &element[..name_end], declarations, &element[name_end..]))
}

/// Whether a start tag already declares `attr` (`xmlns` or `xmlns:p`).
fn declares(tag: &str, attr: &str) -> bool {
    tag.match_indices(attr).any(|(i, _)| {
        let before_ok = tag[..i].ends_with(char::is_whitespace);
        let rest = tag[i + attr.len()..].trim_start();
        before_ok && rest.starts_with('=')
    })
}

fn check_status(response: Node<'_, '_>) -> Result<(), SamlError> {
    match status_codes(response) {
        (Some(STATUS_SUCCESS), _) => Ok(()),
        (Some(other), sub) => Err(reject(
            Reason::StatusNotSuccess,
            format!("status {other} {}", sub.unwrap_or_default()).trim_end().to_string(),
        )),
        (None, _) => Err(reject(Reason::StatusNotSuccess, "no StatusCode")),
    }
}

/// The top-level StatusCode value of a Response or LogoutResponse, and the one nested in it.
pub(super) fn status_codes<'a>(message: Node<'a, '_>) -> (Option<&'a str>, Option<&'a str>) {
    let top = child(message, NS_PROTOCOL, "Status").and_then(|s| child(s, NS_PROTOCOL, "StatusCode"));
    let sub = top.and_then(|c| child(c, NS_PROTOCOL, "StatusCode")).and_then(|c| c.attribute("Value"));
    (top.and_then(|c| c.attribute("Value")), sub)
}

/// Serialises xmlsec use: libxml2/xmlsec keep global state (SAML-NOTES L15) and a login is
/// rare enough that one verification at a time costs nothing noticeable.
pub(crate) fn xmlsec_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// xmlsec verifies `xml` against the IdP's pinned certificates; the result holds only what a
/// verified signature covered (SAML-NOTES L3).
pub(super) fn verify_and_reduce(sp: &SpSettings, xml: &str, uses_sha1: bool) -> Result<String, SamlError> {
    let certs: Vec<CertificateDer> =
        sp.idp.signing_certs.iter().map(|der| CertificateDer::from(der.clone())).collect();
    // samael has no SHA-1 entry; with SHA-1 opted in, policy::check_raw is the allow-list.
    let allowed = if uses_sha1 { None } else { Some(SAMAEL_ALLOWED) };
    let _guard = xmlsec_lock();
    samael::crypto::Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &certs,
        ReduceMode::ValidateAndMarkNoAncestors,
        allowed,
    )
    .map_err(|e| reject(Reason::SignatureInvalid, format!("{e} ({e:?})")))
}

/// The verified output's root is the Response (Response signed) or the Assertion (only the
/// Assertion signed).
fn signed_assertion<'a, 'i>(root: Node<'a, 'i>) -> Result<Node<'a, 'i>, SamlError> {
    if is(root, NS_ASSERTION, "Assertion") {
        return Ok(root);
    }
    if is(root, NS_PROTOCOL, "Response") {
        let mut assertions = children_named(root, NS_ASSERTION, "Assertion");
        if let (Some(a), None) = (assertions.next(), assertions.next()) {
            return Ok(a);
        }
    }
    Err(reject(Reason::SignatureInvalid, "no single signed Assertion in the verified output"))
}

pub(super) fn time_attr(node: Node<'_, '_>, name: &str) -> Result<Option<DateTime<Utc>>, SamlError> {
    match node.attribute(name) {
        None => Ok(None),
        Some(v) => parse_time(v)
            .map(Some)
            .ok_or_else(|| reject(Reason::Malformed, format!("{name} {} is not a dateTime", excerpt(v)))),
    }
}

pub(super) struct Window {
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
}

impl Window {
    pub(super) fn new(now: DateTime<Utc>, skew: Duration) -> Self {
        let skew = skew.max(Duration::zero());
        Window {
            earliest: now.checked_sub_signed(skew).unwrap_or(DateTime::<Utc>::MIN_UTC),
            latest: now.checked_add_signed(skew).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    pub(super) fn check(
        &self,
        not_before: Option<DateTime<Utc>>,
        not_on_or_after: DateTime<Utc>,
        what: &str,
    ) -> Result<(), SamlError> {
        if let Some(nb) = not_before {
            if self.latest < nb {
                return Err(reject(Reason::NotYetValid, format!("{what} NotBefore {nb}")));
            }
        }
        if self.earliest >= not_on_or_after {
            return Err(reject(Reason::Expired, format!("{what} NotOnOrAfter {not_on_or_after}")));
        }
        Ok(())
    }
}

fn read_assertion(
    sp: &SpSettings,
    assertion: Node<'_, '_>,
    now: DateTime<Utc>,
) -> Result<ValidatedAssertion, SamlError> {
    let window = Window::new(now, sp.clock_skew);
    let assertion_id = assertion
        .attribute("ID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| reject(Reason::Malformed, "the Assertion has no ID"))?
        .to_string();

    let issuer = child(assertion, NS_ASSERTION, "Issuer")
        .map(|i| text_content(i).trim().to_string())
        .ok_or_else(|| reject(Reason::IssuerMismatch, "the Assertion has no Issuer"))?;
    if issuer != sp.idp.entity_id {
        return Err(reject(Reason::IssuerMismatch, format!("Assertion Issuer {}", excerpt(&issuer))));
    }

    let subject = child(assertion, NS_ASSERTION, "Subject")
        .ok_or_else(|| reject(Reason::NameIdInvalid, "the Assertion has no Subject"))?;
    let (name_id, name_id_format) = read_name_id(subject)?;
    let (name_qualifier, sp_name_qualifier) = child(subject, NS_ASSERTION, "NameID")
        .map(|n| {
            (
                n.attribute("NameQualifier").map(str::to_string),
                n.attribute("SPNameQualifier").map(str::to_string),
            )
        })
        .unwrap_or_default();
    let (in_response_to, confirmation_until) = read_bearer_confirmation(sp, subject, &window)?;

    let conditions = child(assertion, NS_ASSERTION, "Conditions")
        .ok_or_else(|| reject(Reason::MissingTimeBounds, "the Assertion has no Conditions"))?;
    let not_before = time_attr(conditions, "NotBefore")?;
    let conditions_until = time_attr(conditions, "NotOnOrAfter")?
        .ok_or_else(|| reject(Reason::MissingTimeBounds, "Conditions without NotOnOrAfter"))?;
    window.check(not_before, conditions_until, "Conditions")?;
    check_audience(sp, conditions)?;

    let authn = child(assertion, NS_ASSERTION, "AuthnStatement");
    let authn_instant = match authn {
        Some(a) => time_attr(a, "AuthnInstant")?,
        None => None,
    };
    let session_index = authn.and_then(|a| a.attribute("SessionIndex")).map(str::to_string);
    let authn_context_class = authn
        .and_then(|a| child(a, NS_ASSERTION, "AuthnContext"))
        .and_then(|c| child(c, NS_ASSERTION, "AuthnContextClassRef"))
        .map(|r| text_content(r).trim().to_string())
        .filter(|r| !r.is_empty());

    // The replay cache must hold the ID for as long as a skewed clock would still accept it.
    let until = conditions_until.min(confirmation_until);
    let valid_until = until.checked_add_signed(sp.clock_skew.max(Duration::zero())).unwrap_or(until);

    Ok(ValidatedAssertion {
        assertion_id,
        issuer,
        in_response_to,
        name_id,
        name_id_format,
        name_qualifier,
        sp_name_qualifier,
        session_index,
        authn_instant,
        authn_context_class,
        valid_until,
        attributes: read_attributes(assertion),
    })
}

/// The NameID child of `subject` (an assertion's Subject, or a LogoutRequest).
pub(super) fn read_name_id(subject: Node<'_, '_>) -> Result<(String, Option<String>), SamlError> {
    let Some(name_id) = child(subject, NS_ASSERTION, "NameID") else {
        if child(subject, NS_ASSERTION, "EncryptedID").is_some() {
            return Err(reject(Reason::EncryptedUnsupported, "EncryptedID"));
        }
        return Err(reject(Reason::NameIdInvalid, "the Subject has no NameID"));
    };
    if child_elements(name_id).next().is_some() {
        return Err(reject(Reason::NameIdInvalid, "NameID has child elements"));
    }
    let value = text_content(name_id).trim().to_string();
    if value.is_empty() {
        return Err(reject(Reason::NameIdInvalid, "NameID is empty"));
    }
    Ok((value, name_id.attribute("Format").map(str::to_string)))
}

/// Finds a bearer SubjectConfirmation that holds for us. Errors describe the first bearer
/// confirmation when none does.
fn read_bearer_confirmation(
    sp: &SpSettings,
    subject: Node<'_, '_>,
    window: &Window,
) -> Result<(Option<String>, DateTime<Utc>), SamlError> {
    let mut first_error = None;
    let bearers = children_named(subject, NS_ASSERTION, "SubjectConfirmation")
        .filter(|c| c.attribute("Method") == Some(CM_BEARER));
    for confirmation in bearers {
        match check_confirmation(sp, confirmation, window) {
            Ok(found) => return Ok(found),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| reject(Reason::RecipientMismatch, "no bearer SubjectConfirmation")))
}

fn check_confirmation(
    sp: &SpSettings,
    confirmation: Node<'_, '_>,
    window: &Window,
) -> Result<(Option<String>, DateTime<Utc>), SamlError> {
    let data = child(confirmation, NS_ASSERTION, "SubjectConfirmationData").ok_or_else(|| {
        reject(Reason::RecipientMismatch, "bearer SubjectConfirmation without SubjectConfirmationData")
    })?;
    match data.attribute("Recipient") {
        Some(r) if r == sp.acs_url => {}
        Some(r) => return Err(reject(Reason::RecipientMismatch, format!("Recipient {}", excerpt(r)))),
        None => return Err(reject(Reason::RecipientMismatch, "SubjectConfirmationData without Recipient")),
    }
    let until = time_attr(data, "NotOnOrAfter")?
        .ok_or_else(|| reject(Reason::MissingTimeBounds, "SubjectConfirmationData without NotOnOrAfter"))?;
    window.check(time_attr(data, "NotBefore")?, until, "SubjectConfirmationData")?;
    Ok((data.attribute("InResponseTo").map(str::to_string), until))
}

/// Every AudienceRestriction must name us (SAML core 2.5.1.4); at least one is required
/// because samael treats a missing one as "any audience" (SAML-NOTES L8).
fn check_audience(sp: &SpSettings, conditions: Node<'_, '_>) -> Result<(), SamlError> {
    let mut restrictions = children_named(conditions, NS_ASSERTION, "AudienceRestriction").peekable();
    if restrictions.peek().is_none() {
        return Err(reject(Reason::AudienceMismatch, "no AudienceRestriction"));
    }
    for restriction in restrictions {
        let ours = children_named(restriction, NS_ASSERTION, "Audience")
            .any(|a| text_content(a).trim() == sp.entity_id);
        if !ours {
            let seen: Vec<String> = children_named(restriction, NS_ASSERTION, "Audience")
                .map(|a| text_content(a).trim().to_string())
                .collect();
            return Err(reject(Reason::AudienceMismatch, format!("audiences {}", excerpt(&seen.join(", ")))));
        }
    }
    Ok(())
}

fn read_attributes(assertion: Node<'_, '_>) -> Vec<SamlAttribute> {
    let mut attributes = Vec::new();
    for statement in children_named(assertion, NS_ASSERTION, "AttributeStatement") {
        for attribute in children_named(statement, NS_ASSERTION, "Attribute") {
            let Some(name) = attribute.attribute("Name") else {
                continue;
            };
            let values = children_named(attribute, NS_ASSERTION, "AttributeValue")
                .filter(|v| !matches!(v.attribute((NS_XSI, "nil")), Some("true" | "1")))
                .map(|v| text_content(v).trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            attributes.push(SamlAttribute {
                name: name.to_string(),
                friendly_name: attribute.attribute("FriendlyName").map(str::to_string),
                values,
            });
        }
    }
    attributes
}

/// The Response wrapper may be unsigned, but what it says must not contradict the signed
/// assertion or our endpoint (SAML-NOTES L7, L17).
fn check_envelope(
    sp: &SpSettings,
    response: Node<'_, '_>,
    validated: &ValidatedAssertion,
) -> Result<(), SamlError> {
    if let Some(destination) = response.attribute("Destination") {
        if destination != sp.acs_url {
            return Err(reject(Reason::DestinationMismatch, format!("Destination {}", excerpt(destination))));
        }
    }
    if let Some(issuer) = child(response, NS_ASSERTION, "Issuer") {
        let issuer = text_content(issuer);
        if issuer.trim() != sp.idp.entity_id {
            return Err(reject(
                Reason::IssuerMismatch,
                format!("Response Issuer {}", excerpt(issuer.trim())),
            ));
        }
    }
    if let (Some(outer), Some(inner)) =
        (response.attribute("InResponseTo"), validated.in_response_to.as_deref())
    {
        if outer != inner {
            return Err(reject(
                Reason::InResponseToMismatch,
                format!("Response InResponseTo {}, assertion {}", excerpt(outer), excerpt(inner)),
            ));
        }
    }
    Ok(())
}
