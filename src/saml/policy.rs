//! Checks on a raw response or logout message before xmlsec sees it: document shape and signature policy.
//!
//! xmlsec runs Reference transforms (XSLT, XPath, external URIs) before it checks the signature
//! value and has no allow-list of its own (SAML-NOTES L14). So everything a Signature may ask
//! for is pinned down here first: where it sits, what it references, how it canonicalises and
//! which algorithms it uses.

use std::collections::HashSet;

use roxmltree::{Document, Node, NodeType};

use super::xml::{child_elements, is, NS_ASSERTION, NS_DSIG, NS_XML};
use super::{reject, Reason, SamlError};

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

pub(crate) const STRONG_SIGNATURE_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
const STRONG_DIGESTS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
pub(crate) const SHA1_SIGNATURE_METHOD: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const SHA1_DIGEST: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

/// The one assertion of a response, as it sits in the raw document.
#[derive(Clone, Copy)]
pub(crate) enum RawAssertion<'a, 'i> {
    Plain(Node<'a, 'i>),
    /// An `EncryptedAssertion`; its content is checked again once decrypted.
    Encrypted(Node<'a, 'i>),
}

impl<'a, 'i> RawAssertion<'a, 'i> {
    pub fn node(self) -> Node<'a, 'i> {
        match self {
            RawAssertion::Plain(n) | RawAssertion::Encrypted(n) => n,
        }
    }
}

/// What the raw checks learned that later stages need.
pub(crate) struct RawChecked<'a, 'i> {
    /// The one Assertion or EncryptedAssertion, a direct child of the Response.
    pub assertion: RawAssertion<'a, 'i>,
    /// Some signature uses SHA-1 (only possible with `allow_sha1`). samael's allow-list has no
    /// SHA-1 entry, so the caller then has to rely on this module's allow-list alone.
    pub uses_sha1: bool,
    /// The Response itself carries a Signature (not yet verified).
    pub response_signed: bool,
    /// Some element carries a Signature.
    pub any_signature: bool,
}

/// Structure and signature policy of the raw document whose root is already known to be a
/// samlp:Response. Whether a missing signature is acceptable is the caller's call: it may sit
/// inside an EncryptedAssertion, or have been verified on the Response before decryption.
pub(crate) fn check_raw<'a, 'i>(
    doc: &'a Document<'i>,
    allow_sha1: bool,
) -> Result<RawChecked<'a, 'i>, SamlError> {
    let root = doc.root_element();
    // Counted by local name in any namespace: a look-alike `saml:Assertion` bound to another
    // namespace is a second assertion to anything that reads by prefix.
    let assertions: Vec<RawAssertion> = root
        .descendants()
        .filter(|n| n.is_element())
        .filter_map(|n| match n.tag_name().name() {
            "Assertion" => Some(RawAssertion::Plain(n)),
            "EncryptedAssertion" => Some(RawAssertion::Encrypted(n)),
            _ => None,
        })
        .collect();
    let scan = scan(root);

    let raw_assertion = match assertions.as_slice() {
        [] => return Err(reject(Reason::NoAssertion, "the response has no Assertion")),
        [one] => *one,
        many => {
            return Err(reject(
                Reason::MultipleAssertions,
                format!("the document holds {} Assertion or EncryptedAssertion elements", many.len()),
            ))
        }
    };
    let assertion = raw_assertion.node();
    if let RawAssertion::Encrypted(node) = raw_assertion {
        if !is(node, NS_ASSERTION, "EncryptedAssertion") {
            return Err(reject(Reason::NoAssertion, "EncryptedAssertion in a foreign namespace"));
        }
    }
    if assertion.parent_element() != Some(root) {
        return Err(reject(Reason::NoAssertion, "the Assertion is not a direct child of the Response"));
    }
    scan.refuse_comments_and_duplicate_ids()?;

    let signatures = scan.signatures;
    let any_signature = !signatures.is_empty();
    let mut uses_sha1 = false;
    let mut signed_parents = Vec::new();
    // A Signature on an EncryptedAssertion signs ciphertext nobody reads as an assertion.
    let signable = match raw_assertion {
        RawAssertion::Plain(a) => Some(a),
        RawAssertion::Encrypted(_) => None,
    };
    for signature in signatures {
        let parent = signature
            .parent_element()
            .filter(|p| *p == root || Some(*p) == signable)
            .ok_or_else(|| policy("a Signature is not a direct child of the Response or the Assertion"))?;
        if signed_parents.contains(&parent.id()) {
            return Err(policy("more than one Signature on one element"));
        }
        signed_parents.push(parent.id());
        uses_sha1 |= check_signature(signature, parent, allow_sha1)?;
    }

    let response_signed = signed_parents.contains(&root.id());
    Ok(RawChecked { assertion: raw_assertion, uses_sha1, response_signed, any_signature })
}

/// What one pass over a raw document found: its Signatures, and what no signed SAML message
/// may hold.
pub(crate) struct Scan<'a, 'i> {
    /// Every ds:Signature element, in document order.
    pub signatures: Vec<Node<'a, 'i>>,
    comment_or_pi: bool,
    duplicate_id: Option<&'a str>,
}

pub(crate) fn scan<'a, 'i>(root: Node<'a, 'i>) -> Scan<'a, 'i> {
    let mut found = Scan { signatures: Vec::new(), comment_or_pi: false, duplicate_id: None };
    let mut ids = HashSet::new();
    for node in root.descendants() {
        match node.node_type() {
            NodeType::Comment | NodeType::PI => found.comment_or_pi = true,
            NodeType::Element => {
                if is(node, NS_DSIG, "Signature") {
                    found.signatures.push(node);
                }
                // Both kinds resolve a "#id" Reference in libxml2: ID is registered by samael,
                // xml:id by libxml2 itself.
                for attr in node.attributes() {
                    let is_id = match attr.namespace() {
                        None => attr.name() == "ID",
                        Some(ns) => ns == NS_XML && attr.name() == "id",
                    };
                    if is_id && !ids.insert(attr.value()) && found.duplicate_id.is_none() {
                        found.duplicate_id = Some(attr.value());
                    }
                }
            }
            _ => {}
        }
    }
    found
}

impl Scan<'_, '_> {
    pub(crate) fn refuse_comments_and_duplicate_ids(&self) -> Result<(), SamlError> {
        // A comment splits a text node; a verifier that ignores it and a reader that stops at
        // it would see different NameIDs (SAML-NOTES L5). Nothing legitimate needs one.
        if self.comment_or_pi {
            return Err(policy("comment or processing instruction inside the message"));
        }
        if let Some(id) = self.duplicate_id {
            return Err(reject(
                Reason::SignaturePolicy,
                format!("duplicate ID value {}", super::xml::excerpt(id)),
            ));
        }
        Ok(())
    }
}

fn policy(detail: &str) -> SamlError {
    reject(Reason::SignaturePolicy, detail)
}

/// One enveloped signature over its parent. Returns whether it uses SHA-1.
pub(crate) fn check_signature(
    signature: Node<'_, '_>,
    parent: Node<'_, '_>,
    allow_sha1: bool,
) -> Result<bool, SamlError> {
    let parent_id = parent
        .attribute("ID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| policy("the signed element has no ID"))?;

    if signature
        .descendants()
        .any(|n| is(n, NS_DSIG, "Object") || is(n, NS_DSIG, "Manifest") || is(n, NS_DSIG, "RetrievalMethod"))
    {
        return Err(policy("Object, Manifest or RetrievalMethod inside a Signature"));
    }

    let parts: Vec<Node> = child_elements(signature).collect();
    let signed_info = match parts.as_slice() {
        [si, sv] | [si, sv, _]
            if is(*si, NS_DSIG, "SignedInfo")
                && is(*sv, NS_DSIG, "SignatureValue")
                && parts.get(2).is_none_or(|k| is(*k, NS_DSIG, "KeyInfo")) =>
        {
            *si
        }
        _ => return Err(policy("Signature children are not SignedInfo, SignatureValue, KeyInfo")),
    };

    let info: Vec<Node> = child_elements(signed_info).collect();
    let [c14n, method, reference] = info.as_slice() else {
        return Err(policy("SignedInfo must hold exactly one Reference"));
    };
    if !is(*c14n, NS_DSIG, "CanonicalizationMethod")
        || !is(*method, NS_DSIG, "SignatureMethod")
        || !is(*reference, NS_DSIG, "Reference")
    {
        return Err(policy("SignedInfo must hold exactly one Reference"));
    }

    if c14n.attribute("Algorithm") != Some(EXC_C14N) || !only_inclusive_namespaces(*c14n) {
        return Err(policy("CanonicalizationMethod is not exclusive C14N without comments"));
    }
    let mut uses_sha1 = algorithm_allowed(
        method.attribute("Algorithm"),
        STRONG_SIGNATURE_METHODS,
        SHA1_SIGNATURE_METHOD,
        allow_sha1,
        "SignatureMethod",
    )?;
    if child_elements(*method).next().is_some() {
        return Err(policy("SignatureMethod has parameters"));
    }

    let expected_uri = format!("#{parent_id}");
    if reference.attribute("URI") != Some(expected_uri.as_str()) {
        return Err(policy("the Reference URI is not \"#\" + the ID of the signed element"));
    }
    let mut digest = None;
    let mut digest_value = false;
    for (index, part) in child_elements(*reference).enumerate() {
        if index == 0 && is(part, NS_DSIG, "Transforms") {
            check_transforms(part)?;
        } else if digest.is_none() && is(part, NS_DSIG, "DigestMethod") {
            digest = Some(part);
        } else if digest.is_some() && !digest_value && is(part, NS_DSIG, "DigestValue") {
            digest_value = true;
        } else {
            return Err(policy("unexpected element inside Reference"));
        }
    }
    let digest = digest
        .filter(|_| digest_value)
        .ok_or_else(|| policy("Reference lacks DigestMethod or DigestValue"))?;
    uses_sha1 |= algorithm_allowed(
        digest.attribute("Algorithm"),
        STRONG_DIGESTS,
        SHA1_DIGEST,
        allow_sha1,
        "DigestMethod",
    )?;
    Ok(uses_sha1)
}

fn check_transforms(transforms: Node<'_, '_>) -> Result<(), SamlError> {
    let mut seen = Vec::new();
    for transform in child_elements(transforms) {
        if !is(transform, NS_DSIG, "Transform") {
            return Err(policy("unexpected element inside Transforms"));
        }
        let algorithm = transform.attribute("Algorithm").unwrap_or_default();
        let allowed = match algorithm {
            ENVELOPED => child_elements(transform).next().is_none(),
            EXC_C14N => only_inclusive_namespaces(transform),
            _ => false,
        };
        if !allowed || seen.contains(&algorithm) {
            return Err(policy("only the enveloped-signature and exclusive C14N transforms are allowed"));
        }
        seen.push(algorithm);
    }
    Ok(())
}

/// Exclusive C14N's only parameter is an InclusiveNamespaces prefix list.
fn only_inclusive_namespaces(node: Node<'_, '_>) -> bool {
    child_elements(node).all(|c| is(c, EXC_C14N, "InclusiveNamespaces"))
}

/// Ok(true) when the algorithm is SHA-1 and SHA-1 is allowed.
pub(crate) fn algorithm_allowed(
    algorithm: Option<&str>,
    strong: &[&str],
    sha1: &str,
    allow_sha1: bool,
    what: &str,
) -> Result<bool, SamlError> {
    match algorithm {
        Some(a) if strong.contains(&a) => Ok(false),
        Some(a) if a == sha1 && allow_sha1 => Ok(true),
        other => Err(reject(
            Reason::AlgorithmNotAllowed,
            format!("{what} {} is not allowed", super::xml::excerpt(other.unwrap_or_default())),
        )),
    }
}
