//! Small XML helpers shared by the SAML room: namespaces, escaping, strict parsing, SAML times.

use chrono::{DateTime, NaiveDateTime, Utc};
use roxmltree::{Document, Node, ParsingOptions};

pub(crate) const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub(crate) const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub(crate) const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub(crate) const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub(crate) const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

pub(crate) const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub(crate) const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
pub(crate) const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub(crate) const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
pub(crate) const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
pub(crate) const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub(crate) const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

/// Upper bound on nodes per document. The byte cap already bounds this; the limit keeps a
/// pathological small-node document from costing more memory than its size suggests.
const NODES_LIMIT: u32 = 200_000;

/// Escapes text for use both in element content and in double- or single-quoted attributes.
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Attribute-value normalisation would turn raw whitespace controls into spaces.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            _ => out.push(c),
        }
    }
    out
}

/// A piece of an unverified document for an error detail (which is logged): quoted, at most
/// 64 characters, with the full length when cut.
pub(crate) fn excerpt(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// Deepest element nesting accepted. SAML documents are about a dozen levels deep; roxmltree
/// recurses per level, so unbounded depth would overflow the stack of the worker thread.
const MAX_DEPTH: usize = 64;
/// Most attributes (namespace declarations included) accepted on one element. roxmltree checks
/// each attribute against every earlier one of its element, so a quarter-megabyte start tag of
/// 23,000 attributes cost about a minute of CPU (found with a hand-made input run through the
/// fuzz target). SAML elements carry fewer than a dozen.
const MAX_ATTRIBUTES: usize = 64;
/// Most `xmlns` declarations accepted in one document. roxmltree copies every namespace in
/// scope into each element that declares one, so many declarations cost quadratic time.
const MAX_NAMESPACE_DECLARATIONS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub(crate) enum XmlError {
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_NAMESPACE_DECLARATIONS} namespace declarations")]
    TooManyNamespaces,
    #[error("more than {MAX_ATTRIBUTES} attributes on one element")]
    TooManyAttributes,
    #[error("not well-formed: {0}")]
    Scan(String),
    #[error(transparent)]
    Parse(#[from] roxmltree::Error),
}

/// A flat, non-recursive pass that bounds depth, attributes per element and namespace
/// declarations before the recursive parser sees the document.
fn prescan(xml: &str) -> Result<(), XmlError> {
    use quick_xml::events::{BytesStart, Event};
    // One BOM was stripped by the caller; another is content before the document.
    if xml.starts_with('\u{feff}') {
        return Err(XmlError::Scan("a byte order mark inside the document".into()));
    }
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut depth, mut namespaces) = (0usize, 0usize);
    let mut check_attributes = |e: &BytesStart<'_>| -> Result<(), XmlError> {
        for (index, attr) in e.attributes().with_checks(false).enumerate() {
            if index >= MAX_ATTRIBUTES {
                return Err(XmlError::TooManyAttributes);
            }
            let attr = attr.map_err(|e| XmlError::Scan(e.to_string()))?;
            if attr.key.as_ref().starts_with(b"xmlns") {
                // XInclude is never part of SAML: refuse it outright rather than trust that
                // no layer ever processes it.
                if attr.value.as_ref().starts_with(b"http://www.w3.org/2001/XInclude")
                    || attr.value.as_ref().starts_with(b"http://www.w3.org/2003/XInclude")
                {
                    return Err(XmlError::Scan("XInclude namespace".into()));
                }
                namespaces += 1;
                if namespaces > MAX_NAMESPACE_DECLARATIONS {
                    return Err(XmlError::TooManyNamespaces);
                }
            }
        }
        Ok(())
    };
    loop {
        match reader.read_event().map_err(|e| XmlError::Scan(e.to_string()))? {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                check_attributes(&e)?;
            }
            Event::Empty(e) => {
                if depth + 1 > MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                check_attributes(&e)?;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            // The bytes are decoded as UTF-8; a declaration claiming anything else means two
            // parsers could read two different documents.
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| XmlError::Scan(e.to_string()))?;
                    if !enc.as_ref().eq_ignore_ascii_case(b"utf-8") {
                        return Err(XmlError::Scan(
                            "the XML declaration names an encoding other than UTF-8".into(),
                        ));
                    }
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// Non-recovering parse with DTDs refused (roxmltree never fetches anything), after the
/// depth and namespace bounds.
pub(crate) fn parse_strict(xml: &str) -> Result<Document<'_>, XmlError> {
    prescan(xml)?;
    let options = ParsingOptions { allow_dtd: false, nodes_limit: NODES_LIMIT };
    Ok(Document::parse_with_options(xml, options)?)
}

pub(crate) fn is(node: Node<'_, '_>, ns: &str, local: &str) -> bool {
    node.is_element() && node.tag_name().name() == local && node.tag_name().namespace() == Some(ns)
}

pub(crate) fn child_elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|n| n.is_element())
}

pub(crate) fn children_named<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children().filter(move |n| is(*n, ns, local))
}

pub(crate) fn child<'a, 'i: 'a>(node: Node<'a, 'i>, ns: &'a str, local: &'a str) -> Option<Node<'a, 'i>> {
    children_named(node, ns, local).next()
}

/// Concatenation of every text node below `node`, in document order.
pub(crate) fn text_content(node: Node<'_, '_>) -> String {
    node.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect()
}

/// SAML times are xs:dateTime in UTC. Some IdPs omit the `Z`; such values are read as UTC.
pub(crate) fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc())
}

pub(crate) fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A fresh SAML ID: "_" + 128 random bits in hex (XML IDs must not start with a digit).
pub(crate) fn random_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    // ThreadRng is a CSPRNG (ChaCha, reseeded from the OS).
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape(r#"a&b<c>"d'e"#), "a&amp;b&lt;c&gt;&quot;d&apos;e");
    }

    #[test]
    fn times_with_and_without_zone() {
        assert!(parse_time("2016-07-25T23:20:14.859Z").is_some());
        assert!(parse_time("2017-03-08T07:53:39Z").is_some());
        assert!(parse_time("2017-03-08T07:53:39").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn ids_are_128_bit_hex() {
        let id = random_id();
        assert_eq!(id.len(), 33);
        assert!(id.starts_with('_'));
        assert_ne!(id, random_id());
    }
}
