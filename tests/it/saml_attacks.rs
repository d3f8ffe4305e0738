//! The SAML attack corpus (issue 5, item 1), through the real ACS on both databases.
//!
//! Every case starts its own login, takes a response the test IdP validly signed for that login
//! (Response-signed, Assertion-signed and both, where the shape applies), bends it into the
//! attack and posts it. Each must be refused as `assert_refused` demands (403 generic page with a
//! reference, no session cookie, no code, exactly one `login.failed` audit row with the exact
//! reason, nothing else written); afterwards the loopback canary must have seen no connection
//! and `/healthz` must still answer 200. The cases are tables; a group collects every failing
//! case (accepted, wrong reason, panic, canary hit) and fails once with all of them named.
//!
//! acs_refusals.rs already covers the plain protocol checks (audience, recipient, destination,
//! issuer, time bounds, SHA-1, replay, unknown InResponseTo, RelayState, browser binding).

use crate::both_backends;
use crate::support::*;
use base64::Engine;
use futures_util::FutureExt;
use ssobroker::config::FileConnection;
use ssobroker::devidp::{DevIdp, ResponseSpec, SignMode};
use std::error::Error;
use std::io::Write;
use std::panic::AssertUnwindSafe;

type Bx = Box<dyn Error>;
type Res = Result<Payload, Bx>;

const NS_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

const ALL: &[SignMode] = &[SignMode::Response, SignMode::Assertion, SignMode::Both];
/// Shapes that need a signed Response.
const RESP: &[SignMode] = &[SignMode::Response, SignMode::Both];
/// Shapes that need a signed Assertion.
const ASSN: &[SignMode] = &[SignMode::Assertion, SignMode::Both];
const BOTH: &[SignMode] = &[SignMode::Both];
const ASSERTION_ONLY: &[SignMode] = &[SignMode::Assertion];

// ---------------------------------------------------------------------------------------------
// Harness

/// A loopback listener the test owns. Nothing in the broker may ever connect to it: any fetch
/// (external entity, DTD, XInclude, XSLT document(), RetrievalMethod, Reference URI) would
/// leave a completed connection in its accept queue.
struct Canary {
    listener: std::net::TcpListener,
    url: String,
}

impl Canary {
    fn open() -> Result<Self, Bx> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        Ok(Canary { listener, url })
    }

    /// Connections made since the last call.
    fn hits(&self) -> usize {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }
}

/// What an attack posts as `SAMLResponse`.
enum Payload {
    /// A document, base64-encoded like the POST binding.
    Xml(String),
    /// Raw bytes (not necessarily UTF-8), base64-encoded.
    Bytes(Vec<u8>),
    /// The form value exactly as given.
    Form(String),
}

impl Payload {
    fn form_value(&self) -> String {
        match self {
            Payload::Xml(x) => b64(x.as_bytes()),
            Payload::Bytes(b) => b64(b),
            Payload::Form(f) => f.clone(),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn xml(x: String) -> Res {
    Ok(Payload::Xml(x))
}

/// What an attack is built from.
struct Ctx<'a> {
    /// The validly signed response for this login.
    xml: &'a str,
    /// The spec it was signed from (IDs, InResponseTo, sign mode).
    spec: &'a ResponseSpec,
    /// The trusted test IdP, for attacks that need a differently built signed response.
    idp: &'a DevIdp,
    /// Another key with the same entity ID; the broker never pinned its certificate.
    attacker: &'a DevIdp,
    /// Base URL of the loopback canary.
    canary: &'a str,
}

struct Case {
    name: &'static str,
    modes: &'static [SignMode],
    reason: &'static str,
    attack: fn(&Ctx<'_>) -> Res,
}

/// Runs `cases` on one fresh broker. Each case × mode: a new browser starts a login, the IdP
/// signs, the attack bends, the ACS must refuse; then the canary and /healthz are checked.
async fn corpus(backend: Backend, cases: &[Case]) -> TestResult {
    let mut app = app(backend).start().await?;
    let canary = Canary::open()?;
    let attacker = DevIdp::generate(&app.idp.entity_id, &app.idp.sso_url)?;
    let mut failures = Vec::new();
    for case in cases {
        for &mode in case.modes {
            let label = format!("{} [{mode:?}] (expected {})", case.name, case.reason);
            app.new_browser()?;
            let at = app.authorize(&app.auth_url(&[])).await?;
            let mut spec = app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]);
            spec.sign = mode;
            let signed = app.idp.sign_response(&spec)?;
            let ctx =
                Ctx { xml: &signed, spec: &spec, idp: &app.idp, attacker: &attacker, canary: &canary.url };
            let payload = (case.attack)(&ctx).map_err(|e| format!("{label}: building the attack: {e}"))?;
            let before = app.counts()?;
            let started = std::time::Instant::now();
            let failure = match app.post_acs(&payload.form_value(), Some(&at.relay_state)).await {
                // A dropped connection (a worker that died) is a failure of this case, not the run.
                Err(e) => Some(format!("no answer: {e}")),
                Ok(resp) => {
                    match AssertUnwindSafe(assert_refused(&app, resp, &before, case.reason))
                        .catch_unwind()
                        .await
                    {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(panic) => Some(panic_text(panic.as_ref())),
                    }
                }
            };
            if let Some(failure) = failure {
                failures.push(format!("{label}: {failure}{}", signed_in_as(&app)?));
            }
            if started.elapsed() > std::time::Duration::from_secs(5) {
                failures.push(format!("{label}: took {:?}", started.elapsed()));
            }
            let hits = canary.hits();
            if hits > 0 {
                failures.push(format!("{label}: the loopback canary was contacted {hits} time(s)"));
            }
            match reqwest::get(format!("{}/healthz", app.base)).await.map(|r| r.status()) {
                Ok(status) if status == 200 => {}
                other => failures.push(format!("{label}: /healthz afterwards: {other:?}")),
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} case(s) not refused as required:\n{}", failures.len(), failures.join("\n")).into())
    }
}

/// For a case the broker accepted: whom it signed in (the user the IdP signed for, or the
/// attacker's pick).
fn signed_in_as(app: &TestApp) -> Result<String, Bx> {
    let Some(last) = app.audit()?.pop() else { return Ok(String::new()) };
    if last.kind != "login.succeeded" {
        return Ok(String::new());
    }
    let mut conn = app.pool.get()?;
    let user = match last.user_id.as_deref() {
        Some(id) => ssobroker::store::users::by_id(&mut conn, id)?,
        None => None,
    };
    Ok(match user {
        Some(u) => format!(" [ACCEPTED: signed in as {:?}, groups {}]", u.email, u.groups_json),
        None => " [ACCEPTED]".to_string(),
    })
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

// ---------------------------------------------------------------------------------------------
// Text surgery on the signed document (it is built by our own IdP, so its shape is known)

fn replace_once(x: &str, from: &str, to: &str) -> Result<String, Bx> {
    if !x.contains(from) {
        return Err(format!("{from:?} not found").into());
    }
    Ok(x.replacen(from, to, 1))
}

fn insert_before(x: &str, anchor: &str, what: &str) -> Result<String, Bx> {
    replace_once(x, anchor, &format!("{what}{anchor}"))
}

fn insert_after(x: &str, anchor: &str, what: &str) -> Result<String, Bx> {
    replace_once(x, anchor, &format!("{anchor}{what}"))
}

/// The first `open`…`close` span (the elements cut this way never nest in the test IdP's output).
fn element<'a>(x: &'a str, open: &str, close: &str) -> Result<&'a str, Bx> {
    let start = x.find(open).ok_or_else(|| format!("{open:?} not found"))?;
    let end = x[start..].find(close).ok_or_else(|| format!("{close:?} not found"))? + start + close.len();
    Ok(&x[start..end])
}

fn assertion(x: &str) -> Result<&str, Bx> {
    element(x, "<saml:Assertion", "</saml:Assertion>")
}

fn with_assertion(x: &str, replacement: &str) -> Result<String, Bx> {
    replace_once(x, assertion(x)?, replacement)
}

/// The document without its `<?xml …?>` declaration.
fn body(x: &str) -> &str {
    match x.find("?>") {
        Some(i) if x.starts_with("<?xml") => x[i + 2..].trim_start(),
        _ => x,
    }
}

fn strip_signatures(x: &str) -> Result<String, Bx> {
    let mut out = x.to_string();
    while out.contains("<ds:Signature") {
        let sig = element(&out, "<ds:Signature", "</ds:Signature>")?.to_string();
        out = out.replacen(&sig, "", 1);
    }
    Ok(out)
}

/// The Signature whose Reference points at `id`.
fn signature_of<'a>(x: &'a str, id: &str) -> Result<&'a str, Bx> {
    let uri = format!("URI=\"#{id}\"");
    let mut rest = x;
    while let Ok(sig) = element(rest, "<ds:Signature", "</ds:Signature>") {
        if sig.contains(&uri) {
            return Ok(sig);
        }
        let end = rest.find(sig).ok_or("lost signature")? + sig.len();
        rest = &rest[end..];
    }
    Err(format!("no signature references {id}").into())
}

/// The assertion's identity changed to the admin's, its groups to IT-Admins and its ID to a
/// fresh one. Keeps any Signature it carries.
fn evil(assertion: &str) -> Result<String, Bx> {
    let a = replace_once(assertion, "ada@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?;
    let a = a.replace(">ada@example.com<", ">admin@example.com<").replace(">Engineering<", ">IT-Admins<");
    replace_once(&a, " ID=\"_", " ID=\"_evil")
}

/// An unsigned forged copy of the response's assertion.
fn evil_assertion(x: &str) -> Result<String, Bx> {
    evil(&strip_signatures(assertion(x)?)?)
}

fn with_ns(assertion: &str) -> Result<String, Bx> {
    replace_once(assertion, "<saml:Assertion ", &format!("<saml:Assertion xmlns:saml=\"{NS_SAML}\" "))
}

/// XSW1/XSW2 parts: (evil Response carrying an evil assertion and no signature, the original
/// Response's signature, the original Response without that signature).
fn evil_response_parts(c: &Ctx<'_>) -> Result<(String, String, String), Bx> {
    let b = body(c.xml);
    let sig = signature_of(b, &c.spec.response_id)?.to_string();
    let orig = replace_once(b, &sig, "")?;
    let evil = with_assertion(&orig, &evil_assertion(&orig)?)?;
    let evil = replace_once(&evil, &format!("ID=\"{}\"", c.spec.response_id), "ID=\"_evilresponse\"")?;
    Ok((evil, sig, orig))
}

/// The first Reference's URI value (the Response's in Response/Both mode).
fn first_reference_uri(x: &str) -> Result<String, Bx> {
    let at = x.find("<ds:Reference URI=\"").ok_or("no Reference")? + "<ds:Reference URI=\"".len();
    let end = x[at..].find('"').ok_or("unterminated URI")? + at;
    Ok(x[at..end].to_string())
}

fn with_first_reference_uri(x: &str, uri: &str) -> Result<String, Bx> {
    let old = first_reference_uri(x)?;
    replace_once(x, &format!("<ds:Reference URI=\"{old}\""), &format!("<ds:Reference URI=\"{uri}\""))
}

fn with_first_transform(x: &str, transform: &str) -> Result<String, Bx> {
    insert_after(x, "<ds:Transforms>", transform)
}

/// Every KeyInfo replaced by `key_info` (empty: KeyInfo removed).
fn with_key_info(x: &str, key_info: &str) -> Result<String, Bx> {
    let mut out = String::new();
    let mut rest = x;
    let mut found = false;
    while let Ok(k) = element(rest, "<ds:KeyInfo>", "</ds:KeyInfo>") {
        let start = rest.find(k).ok_or("lost KeyInfo")?;
        out.push_str(&rest[..start]);
        out.push_str(key_info);
        rest = &rest[start + k.len()..];
        found = true;
    }
    out.push_str(rest);
    if !found {
        return Err("no KeyInfo".into());
    }
    Ok(out)
}

fn attacker_signed(c: &Ctx<'_>) -> Result<String, Bx> {
    let x = c.attacker.sign_response(c.spec)?;
    // The forgery is bound to the trusted IdP's name and this login; only the key differs.
    if x.contains(&b64(c.idp.cert_der())) || !x.contains(&b64(c.attacker.cert_der())) {
        return Err("the attacker's response does not carry the attacker's certificate".into());
    }
    Ok(x)
}

fn rsa_key_value(idp: &DevIdp) -> Result<String, Bx> {
    let rsa = openssl::x509::X509::from_der(idp.cert_der())?.public_key()?.rsa()?;
    Ok(format!(
        "<ds:KeyInfo><ds:KeyValue><ds:RSAKeyValue><ds:Modulus>{}</ds:Modulus><ds:Exponent>{}</ds:Exponent></ds:RSAKeyValue></ds:KeyValue></ds:KeyInfo>",
        b64(&rsa.n().to_vec()),
        b64(&rsa.e().to_vec())
    ))
}

/// The document without its XML declaration, behind `prolog`.
fn behind(prolog: &str, c: &Ctx<'_>) -> String {
    format!("{prolog}{}", body(c.xml))
}

fn resign(c: &Ctx<'_>, edit: impl FnOnce(&mut ResponseSpec)) -> Result<String, Bx> {
    let mut spec = c.spec.clone();
    edit(&mut spec);
    Ok(c.idp.sign_response(&spec)?)
}

/// The document with the first `from` replaced by raw bytes (not necessarily UTF-8).
fn bytes_replacing(c: &Ctx<'_>, from: &str, to: &[u8]) -> Res {
    let at = c.xml.find(from).ok_or_else(|| format!("{from:?} not found"))?;
    let mut out = c.xml.as_bytes()[..at].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&c.xml.as_bytes()[at + from.len()..]);
    Ok(Payload::Bytes(out))
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

// ---------------------------------------------------------------------------------------------
// Signature wrapping and misplaced assertions
//
// When this corpus was written, XSW2, XSW3, XSW4, XSW5 and XSW7 (Assertion-signed), the
// Response moved into Extensions, and the evil assertion in Extensions, KeyInfo or around the
// Response all still verified under samael alone (which then returns only the signed
// content). The broker refuses them before xmlsec runs: the raw document holds more than one
// Assertion, or its one Assertion is not a child of the Response.

const WRAPPING: &[Case] = &[
    Case {
        name: "XSW1: evil Response, original Response inside the moved Signature",
        modes: RESP,
        reason: "multiple_assertions",
        attack: |c| {
            let (evil, sig, orig) = evil_response_parts(c)?;
            let sig = replace_once(&sig, "</ds:Signature>", &format!("{orig}</ds:Signature>"))?;
            xml(insert_after(&evil, "</saml:Issuer>", &sig)?)
        },
    },
    Case {
        name: "XSW2: evil Response, original Response detached before the moved Signature",
        modes: RESP,
        reason: "multiple_assertions",
        attack: |c| {
            let (evil, sig, orig) = evil_response_parts(c)?;
            xml(insert_after(&evil, "</saml:Issuer>", &format!("{orig}{sig}"))?)
        },
    },
    Case {
        name: "XSW3: evil assertion before the signed one",
        modes: ASSN,
        reason: "multiple_assertions",
        attack: |c| xml(insert_before(c.xml, "<saml:Assertion", &evil_assertion(c.xml)?)?),
    },
    Case {
        name: "XSW3 with the signed assertion's ID on the evil copy",
        modes: ASSN,
        reason: "multiple_assertions",
        attack: |c| {
            let copy = strip_signatures(assertion(c.xml)?)?;
            let copy =
                replace_once(&copy, "ada@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?;
            xml(insert_before(c.xml, "<saml:Assertion", &copy)?)
        },
    },
    Case {
        name: "XSW4: evil assertion wrapping the signed one",
        modes: ASSN,
        reason: "multiple_assertions",
        attack: |c| {
            let wrapper = replace_once(
                &evil_assertion(c.xml)?,
                "</saml:Assertion>",
                &format!("{}</saml:Assertion>", assertion(c.xml)?),
            )?;
            xml(with_assertion(c.xml, &wrapper)?)
        },
    },
    Case {
        name: "XSW5: evil assertion carries the signature, unsigned original appended",
        modes: ASSN,
        reason: "multiple_assertions",
        attack: |c| {
            let a = assertion(c.xml)?;
            let doc = with_assertion(c.xml, &evil(a)?)?;
            xml(insert_before(&doc, "</samlp:Response>", &strip_signatures(a)?)?)
        },
    },
    Case {
        name: "XSW6: evil assertion carries the signature, original inside that Signature",
        modes: ASSN,
        reason: "multiple_assertions",
        attack: |c| {
            let a = assertion(c.xml)?;
            let carrier = replace_once(
                &evil(a)?,
                "</ds:Signature>",
                &format!("{}</ds:Signature>", strip_signatures(a)?),
            )?;
            xml(with_assertion(c.xml, &carrier)?)
        },
    },
    Case {
        name: "XSW7: signed assertion moved into Extensions, evil assertion in its place",
        modes: ASSN,
        reason: "multiple_assertions",
        attack: |c| {
            let doc = with_assertion(c.xml, &evil_assertion(c.xml)?)?;
            let ext = format!("<samlp:Extensions>{}</samlp:Extensions>", assertion(c.xml)?);
            xml(insert_before(&doc, "<samlp:Status>", &ext)?)
        },
    },
    Case {
        name: "XSW8: evil assertion carries the signature, original in a ds:Object",
        modes: ASSN,
        reason: "multiple_assertions",
        attack: |c| {
            let a = assertion(c.xml)?;
            let object = format!("<ds:Object>{}</ds:Object></ds:Signature>", strip_signatures(a)?);
            xml(with_assertion(c.xml, &replace_once(&evil(a)?, "</ds:Signature>", &object)?)?)
        },
    },
    Case {
        name: "signed Response moved into a ds:Object of an evil Response",
        modes: RESP,
        reason: "multiple_assertions",
        attack: |c| {
            let (evil, sig, orig) = evil_response_parts(c)?;
            let sig = replace_once(
                &sig,
                "</ds:Signature>",
                &format!("<ds:Object>{orig}</ds:Object></ds:Signature>"),
            )?;
            xml(insert_after(&evil, "</saml:Issuer>", &sig)?)
        },
    },
    Case {
        name: "signed Response moved into the Extensions of an evil Response",
        modes: RESP,
        reason: "multiple_assertions",
        attack: |c| {
            let (evil, _, _) = evil_response_parts(c)?;
            let ext = format!("<samlp:Extensions>{}</samlp:Extensions>", body(c.xml));
            xml(insert_before(&evil, "<samlp:Status>", &ext)?)
        },
    },
    Case {
        name: "signed assertion moved into the Advice of an evil assertion",
        modes: ASSN,
        reason: "multiple_assertions",
        attack: |c| {
            let advice = format!("<saml:Advice>{}</saml:Advice>", assertion(c.xml)?);
            let wrapper = insert_before(&evil_assertion(c.xml)?, "<saml:AuthnStatement", &advice)?;
            xml(with_assertion(c.xml, &wrapper)?)
        },
    },
    Case {
        name: "evil assertion in the Advice of the signed assertion",
        modes: ALL,
        reason: "multiple_assertions",
        attack: |c| {
            let advice = format!("<saml:Advice>{}</saml:Advice>", evil_assertion(c.xml)?);
            xml(with_assertion(c.xml, &insert_before(assertion(c.xml)?, "<saml:AuthnStatement", &advice)?)?)
        },
    },
    Case {
        name: "evil assertion in samlp:Extensions",
        modes: ALL,
        reason: "multiple_assertions",
        attack: |c| {
            let ext = format!("<samlp:Extensions>{}</samlp:Extensions>", evil_assertion(c.xml)?);
            xml(insert_before(c.xml, "<samlp:Status>", &ext)?)
        },
    },
    Case {
        name: "evil assertion inside the signature's KeyInfo",
        modes: ALL,
        reason: "multiple_assertions",
        attack: |c| xml(insert_after(c.xml, "</ds:X509Data>", &evil_assertion(c.xml)?)?),
    },
    Case {
        name: "evil assertion after the root element",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(format!("{}{}", c.xml.trim_end(), with_ns(&evil_assertion(c.xml)?)?)),
    },
    Case {
        name: "evil Response as an ancestor wrapper of the signed Response",
        modes: ALL,
        reason: "no_assertion",
        attack: |c| {
            let b = body(c.xml);
            let open = &b[..b.find('>').ok_or("no root tag")? + 1];
            let open = replace_once(open, &format!("ID=\"{}\"", c.spec.response_id), "ID=\"_evilwrapper\"")?;
            xml(format!(
                "{open}<saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"{SUCCESS}\"/></samlp:Status>{b}</samlp:Response>",
                c.spec.issuer
            ))
        },
    },
    Case {
        name: "evil Response with an evil assertion wrapping the signed Response",
        modes: ALL,
        reason: "multiple_assertions",
        attack: |c| {
            let b = body(c.xml);
            let open = &b[..b.find('>').ok_or("no root tag")? + 1];
            let open = replace_once(open, &format!("ID=\"{}\"", c.spec.response_id), "ID=\"_evilwrapper\"")?;
            xml(format!(
                "{open}<saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"{SUCCESS}\"/></samlp:Status>{}{b}</samlp:Response>",
                c.spec.issuer,
                evil_assertion(c.xml)?
            ))
        },
    },
    Case {
        name: "unsigned foreign ancestor wrapping the signed assertion",
        modes: ALL,
        reason: "no_assertion",
        attack: |c| {
            let wrapped =
                format!("<evil:Wrapper xmlns:evil=\"urn:evil\">{}</evil:Wrapper>", assertion(c.xml)?);
            xml(with_assertion(c.xml, &wrapped)?)
        },
    },
    Case {
        name: "assertion plus EncryptedAssertion",
        modes: ALL,
        reason: "multiple_assertions",
        attack: |c| {
            let enc = "<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>";
            xml(insert_after(c.xml, "</saml:Assertion>", enc)?)
        },
    },
    Case {
        name: "EncryptedAssertion before the signed assertion",
        modes: ALL,
        reason: "multiple_assertions",
        attack: |c| {
            let enc = "<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedAssertion>";
            xml(insert_before(c.xml, "<saml:Assertion", enc)?)
        },
    },
];

async fn wrapping(b: Backend) -> TestResult {
    corpus(b, WRAPPING).await
}
both_backends!(signature_wrapping_refused, wrapping);

// ---------------------------------------------------------------------------------------------
// Signature shape, references, transforms, keys, IDs, namespaces

const XSLT_TRANSFORM: &str = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:copy-of select="document('CANARY/xslt')"/></xsl:template></xsl:stylesheet></ds:Transform>"#;

const SIGNATURES: &[Case] = &[
    Case {
        name: "signatures stripped, NameID changed",
        modes: RESP,
        reason: "signature_missing",
        attack: |c| {
            let x = strip_signatures(c.xml)?;
            xml(replace_once(&x, "ada@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?)
        },
    },
    Case {
        name: "inner signature stripped under a signed Response, NameID changed",
        modes: BOTH,
        reason: "signature_invalid",
        attack: |c| {
            let x = replace_once(c.xml, signature_of(c.xml, &c.spec.assertion_id)?, "")?;
            xml(replace_once(&x, "ada@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?)
        },
    },
    Case {
        name: "Reference URI empty (whole document)",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| xml(with_first_reference_uri(c.xml, "")?),
    },
    Case {
        name: "Reference URI pointing at the other signable element",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            let other = if first_reference_uri(c.xml)? == format!("#{}", c.spec.response_id) {
                &c.spec.assertion_id
            } else {
                &c.spec.response_id
            };
            xml(with_first_reference_uri(c.xml, &format!("#{other}"))?)
        },
    },
    Case {
        name: "Reference URI #xpointer(/)",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| xml(with_first_reference_uri(c.xml, "#xpointer(/)")?),
    },
    Case {
        name: "Reference URI #xpointer(id(...))",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            let id = first_reference_uri(c.xml)?.trim_start_matches('#').to_string();
            xml(with_first_reference_uri(c.xml, &format!("#xpointer(id('{id}'))"))?)
        },
    },
    // samael 0.0.22 on its own dereferences this URI (it connected to the canary when this corpus
    // was written): only the broker's policy keeps the ACS from making pre-authentication requests.
    Case {
        name: "Reference URI to an external (canary) document",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| xml(with_first_reference_uri(c.xml, &format!("{}/reference", c.canary))?),
    },
    Case {
        name: "XSLT transform fetching document() from the canary",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| xml(with_first_transform(c.xml, &XSLT_TRANSFORM.replace("CANARY", c.canary))?),
    },
    Case {
        name: "XPath transform",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            let t = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>count(//. | //@* | //namespace::*)</ds:XPath></ds:Transform>"#;
            xml(with_first_transform(c.xml, t)?)
        },
    },
    Case {
        name: "XPath Filter 2.0 transform",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            let t = r#"<ds:Transform Algorithm="http://www.w3.org/2002/06/xmldsig-filter2"><dsf:XPath xmlns:dsf="http://www.w3.org/2002/06/xmldsig-filter2" Filter="subtract">//*[local-name()='NameID']</dsf:XPath></ds:Transform>"#;
            xml(with_first_transform(c.xml, t)?)
        },
    },
    Case {
        name: "exclusive C14N WithComments transform",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            xml(with_first_transform(
                c.xml,
                r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#WithComments"/>"#,
            )?)
        },
    },
    Case {
        name: "base64 transform",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            xml(with_first_transform(
                c.xml,
                r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#base64"/>"#,
            )?)
        },
    },
    Case {
        name: "inclusive C14N CanonicalizationMethod",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            xml(replace_once(
                c.xml,
                r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
                r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>"#,
            )?)
        },
    },
    Case {
        name: "HMAC SignatureMethod (public key as MAC key)",
        modes: ALL,
        reason: "algorithm_not_allowed",
        attack: |c| {
            xml(replace_once(
                c.xml,
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
            )?)
        },
    },
    Case {
        name: "re-signed by an attacker key, attacker certificate in KeyInfo",
        modes: ALL,
        reason: "signature_invalid",
        attack: |c| xml(attacker_signed(c)?),
    },
    Case {
        name: "re-signed by an attacker key, pinned certificate copied into KeyInfo",
        modes: ALL,
        reason: "signature_invalid",
        attack: |c| {
            let x = attacker_signed(c)?;
            xml(x.replace(&b64(c.attacker.cert_der()), &b64(c.idp.cert_der())))
        },
    },
    Case {
        name: "re-signed by an attacker key, RSAKeyValue in KeyInfo",
        modes: ALL,
        reason: "signature_invalid",
        attack: |c| xml(with_key_info(&attacker_signed(c)?, &rsa_key_value(c.attacker)?)?),
    },
    Case {
        name: "re-signed by an attacker key, RetrievalMethod to the canary",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            let k = format!(
                "<ds:KeyInfo><ds:RetrievalMethod URI=\"{}/key\" Type=\"{NS_DS}X509Data\"/></ds:KeyInfo>",
                c.canary
            );
            xml(with_key_info(&attacker_signed(c)?, &k)?)
        },
    },
    Case {
        name: "re-signed by an attacker key, no KeyInfo",
        modes: ALL,
        reason: "signature_invalid",
        attack: |c| xml(with_key_info(&attacker_signed(c)?, "")?),
    },
    Case {
        name: "duplicate ID: Response ID equals Assertion ID",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            xml(replace_once(
                c.xml,
                &format!("ID=\"{}\"", c.spec.response_id),
                &format!("ID=\"{}\"", c.spec.assertion_id),
            )?)
        },
    },
    Case {
        name: "duplicate ID: decoy element with the signed ID in Extensions",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            let id = first_reference_uri(c.xml)?.trim_start_matches('#').to_string();
            let decoy = format!(
                "<samlp:Extensions><evil:Decoy xmlns:evil=\"urn:evil\" ID=\"{id}\"/></samlp:Extensions>"
            );
            xml(insert_before(c.xml, "<samlp:Status>", &decoy)?)
        },
    },
    Case {
        name: "duplicate ID: decoy xml:id with the signed ID",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| {
            let id = first_reference_uri(c.xml)?.trim_start_matches('#').to_string();
            xml(replace_once(c.xml, "<samlp:Status>", &format!("<samlp:Status xml:id=\"{id}\">"))?)
        },
    },
    Case {
        name: "duplicate ID attribute on the assertion",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(replace_once(c.xml, "<saml:Assertion ", "<saml:Assertion ID=\"_evil\" ")?),
    },
    Case {
        name: "namespace confusion: evil assertion under another prefix",
        modes: ALL,
        reason: "multiple_assertions",
        attack: |c| {
            let e = evil_assertion(c.xml)?.replace("saml:", "a:");
            let e = replace_once(&e, "<a:Assertion ", &format!("<a:Assertion xmlns:a=\"{NS_SAML}\" "))?;
            xml(insert_before(c.xml, "<saml:Assertion", &e)?)
        },
    },
    Case {
        name: "namespace confusion: evil assertion in the default namespace",
        modes: ALL,
        reason: "multiple_assertions",
        attack: |c| {
            let e = evil_assertion(c.xml)?.replace("saml:", "");
            let e = replace_once(&e, "<Assertion ", &format!("<Assertion xmlns=\"{NS_SAML}\" "))?;
            xml(insert_after(c.xml, "</saml:Assertion>", &e)?)
        },
    },
    Case {
        name: "namespace confusion: signatures in a fake ds namespace, NameID changed",
        modes: ALL,
        reason: "signature_missing",
        attack: |c| {
            let x = c.xml.replace(&format!("xmlns:ds=\"{NS_DS}\""), "xmlns:ds=\"urn:fake:xmldsig\"");
            xml(replace_once(&x, "ada@example.com</saml:NameID>", "admin@example.com</saml:NameID>")?)
        },
    },
    Case {
        name: "namespace confusion: signed assertion's saml prefix rebound to a fake namespace",
        modes: ALL,
        reason: "signature_invalid",
        attack: |c| {
            xml(replace_once(
                c.xml,
                "<saml:Assertion ",
                "<saml:Assertion xmlns:saml=\"urn:fake:assertion\" ",
            )?)
        },
    },
    Case {
        name: "namespace confusion: fake-namespace saml:Assertion inside a signed Response",
        modes: RESP,
        reason: "multiple_assertions",
        attack: fake_namespace_assertion,
    },
    Case {
        name: "namespace confusion: root samlp prefix bound to a fake namespace",
        modes: ALL,
        reason: "not_a_response",
        attack: |c| {
            xml(replace_once(
                c.xml,
                "xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"",
                "xmlns:samlp=\"urn:fake:protocol\"",
            )?)
        },
    },
];

async fn signatures(b: Backend) -> TestResult {
    corpus(b, SIGNATURES).await
}
both_backends!(signature_policy_and_keys_refused, signatures);

// ---------------------------------------------------------------------------------------------
// Splits inside values the broker uses (a reader keeping only the first text node would see the
// admin; the signed value is the attacker's own `admin@example.com.evil.org`)

/// How a signed value `head` + `tail` is split: comment, processing instruction or CDATA.
type Split = fn(&str, &str) -> String;

const COMMENT: Split = |h, t| format!("{h}<!---->{t}");
const PI: Split = |h, t| format!("{h}<?x y?>{t}");
const CDATA: Split = |h, t| format!("{h}<![CDATA[{t}]]>");

const EMAIL: &str = "admin@example.com.evil.org";
const GROUP: &str = "IT-Admins.evil.org";

fn split_name_id(c: &Ctx<'_>, split: Split) -> Res {
    let x = resign(c, |s| s.name_id = EMAIL.into())?;
    let forged = split(&EMAIL[..17], &EMAIL[17..]);
    xml(replace_once(&x, &format!(">{EMAIL}</saml:NameID>"), &format!(">{forged}</saml:NameID>"))?)
}

fn split_attribute(c: &Ctx<'_>, name: &str, signed: &str, at: usize, split: Split) -> Res {
    let x = resign(c, |s| {
        for (n, values) in &mut s.attributes {
            if n == name {
                *values = vec![signed.to_string()];
            }
        }
    })?;
    let forged = split(&signed[..at], &signed[at..]);
    xml(replace_once(
        &x,
        &format!(">{signed}</saml:AttributeValue>"),
        &format!(">{forged}</saml:AttributeValue>"),
    )?)
}

/// Comments and PIs are refused by the broker's raw policy. A CDATA section is invisible to
/// that policy (roxmltree merges it into the text) and still verifies under exclusive C14N; it
/// is refused because samael's reduction matches the signed fragment node by node against the
/// document and finds text + CDATA where the signed form has one text node.
const SPLITS: &[Case] = &[
    Case {
        name: "comment split inside NameID",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| split_name_id(c, COMMENT),
    },
    Case {
        name: "processing instruction split inside NameID",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| split_name_id(c, PI),
    },
    Case {
        name: "comment split inside the email attribute",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| split_attribute(c, "email", EMAIL, 17, COMMENT),
    },
    Case {
        name: "processing instruction split inside the email attribute",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| split_attribute(c, "email", EMAIL, 17, PI),
    },
    Case {
        name: "comment split inside the groups attribute",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| split_attribute(c, "groups", GROUP, 9, COMMENT),
    },
    Case {
        name: "processing instruction split inside the groups attribute",
        modes: ALL,
        reason: "signature_policy",
        attack: |c| split_attribute(c, "groups", GROUP, 9, PI),
    },
    Case {
        name: "CDATA split inside NameID",
        modes: ALL,
        reason: "signature_invalid",
        attack: |c| split_name_id(c, CDATA),
    },
    Case {
        name: "CDATA split inside the email attribute",
        modes: ALL,
        reason: "signature_invalid",
        attack: |c| split_attribute(c, "email", EMAIL, 17, CDATA),
    },
    Case {
        name: "CDATA split inside the groups attribute",
        modes: ALL,
        reason: "signature_invalid",
        attack: |c| split_attribute(c, "groups", GROUP, 9, CDATA),
    },
];

async fn splits(b: Backend) -> TestResult {
    corpus(b, SPLITS).await
}
both_backends!(value_splits_refused, splits);

// ---------------------------------------------------------------------------------------------
// Parsers: DTDs, entities, XInclude, malformed and recoverable XML, encodings

const PARSERS: &[Case] = &[
    Case {
        name: "external entity from the canary used in NameID",
        modes: ALL,
        reason: "dtd_forbidden",
        attack: |c| {
            let dtd = format!("<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM \"{}/xxe\">]>", c.canary);
            xml(replace_once(&behind(&dtd, c), "ada@example.com</saml:NameID>", "&xxe;</saml:NameID>")?)
        },
    },
    Case {
        name: "external DTD subset from the canary",
        modes: ALL,
        reason: "dtd_forbidden",
        attack: |c| xml(behind(&format!("<!DOCTYPE samlp:Response SYSTEM \"{}/dtd\">", c.canary), c)),
    },
    Case {
        name: "external parameter entity from the canary",
        modes: ALL,
        reason: "dtd_forbidden",
        attack: |c| {
            xml(behind(&format!("<!DOCTYPE r [<!ENTITY % p SYSTEM \"{}/param\"> %p;]>", c.canary), c))
        },
    },
    Case {
        name: "billion laughs",
        modes: ALL,
        reason: "dtd_forbidden",
        attack: |c| {
            let mut dtd = String::from("<!DOCTYPE samlp:Response [<!ENTITY l0 \"lol\">");
            for i in 1..=9 {
                let p = i - 1;
                dtd.push_str(&format!(
                    "<!ENTITY l{i} \"&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};&l{p};\">"
                ));
            }
            dtd.push_str("]>");
            xml(replace_once(&behind(&dtd, c), "ada@example.com</saml:NameID>", "&l9;</saml:NameID>")?)
        },
    },
    Case {
        name: "UTF-8 BOM, then a DOCTYPE with an external entity",
        modes: ALL,
        reason: "dtd_forbidden",
        attack: |c| {
            xml(behind(&format!("\u{feff}<!DOCTYPE r [<!ENTITY xxe SYSTEM \"{}/bom-xxe\">]>", c.canary), c))
        },
    },
    Case {
        name: "XInclude from the canary inside NameID",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            let inc = format!(
                "<xi:include xmlns:xi=\"http://www.w3.org/2001/XInclude\" href=\"{}/xinclude\" parse=\"text\"/></saml:NameID>",
                c.canary
            );
            xml(replace_once(c.xml, "ada@example.com</saml:NameID>", &inc)?)
        },
    },
    Case {
        name: "unclosed NameID (libxml2 would recover)",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(replace_once(c.xml, "ada@example.com</saml:NameID>", "admin@example.com")?),
    },
    Case {
        name: "document truncated before the root end tag",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(replace_once(c.xml, "</saml:Assertion></samlp:Response>", "</saml:Assertion>")?),
    },
    Case {
        name: "mismatched end tag",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(replace_once(c.xml, "</saml:NameID>", "</saml:Name>")?),
    },
    Case {
        name: "unquoted attribute value",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(replace_once(c.xml, "Version=\"2.0\"", "Version=2.0")?),
    },
    Case {
        name: "bare ampersand in NameID",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            xml(replace_once(c.xml, "ada@example.com</saml:NameID>", "ada&example.com</saml:NameID>")?)
        },
    },
    Case {
        name: "undeclared namespace prefix",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(insert_before(c.xml, "<samlp:Status>", "<evil:X/>")?),
    },
    Case {
        name: "entity reference without a DTD",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(replace_once(c.xml, "ada@example.com</saml:NameID>", "&admin;</saml:NameID>")?),
    },
    Case {
        name: "trailing garbage after the root element",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(format!("{}garbage<", c.xml.trim_end())),
    },
    Case {
        name: "NUL character in NameID",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| bytes_replacing(c, "ada@", b"ada\0@"),
    },
    Case {
        name: "invalid UTF-8 byte in NameID",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| bytes_replacing(c, "ada@", b"ada\xff@"),
    },
    Case {
        name: "overlong UTF-8 encoding of '<'",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| bytes_replacing(c, "</saml:NameID>", b"\xc0\xbc/saml:NameID>"),
    },
    Case {
        name: "UTF-8-encoded surrogate in NameID",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| bytes_replacing(c, "ada@", b"ada\xed\xa0\x80@"),
    },
    Case {
        name: "truncated multi-byte sequence at the end",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            let mut b = c.xml.trim_end().as_bytes().to_vec();
            b.extend_from_slice(b"\xe2\x82");
            Ok(Payload::Bytes(b))
        },
    },
    Case {
        name: "three UTF-8 BOMs",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(format!("\u{feff}\u{feff}\u{feff}{}", c.xml)),
    },
    Case {
        name: "BOM between the XML declaration and the root",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\u{feff}{}", body(c.xml))),
    },
    Case {
        name: "UTF-16LE with its BOM",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            let mut b = vec![0xff, 0xfe];
            b.extend(utf16le(&format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{}", body(c.xml))));
            Ok(Payload::Bytes(b))
        },
    },
    Case {
        name: "UTF-16LE without a BOM hiding a DOCTYPE from a byte search",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            let doc = format!("<!DOCTYPE r [<!ENTITY xxe SYSTEM \"{}/utf16\">]>{}", c.canary, body(c.xml));
            Ok(Payload::Bytes(utf16le(&doc)))
        },
    },
];

async fn parsers(b: Backend) -> TestResult {
    corpus(b, PARSERS).await
}
both_backends!(parser_attacks_refused, parsers);

// ---------------------------------------------------------------------------------------------
// Protocol and transport

const PROTOCOL: &[Case] = &[
    Case {
        name: "unsolicited response (IdP-initiated not allowed)",
        modes: RESP,
        reason: "unsolicited_response",
        attack: |c| xml(resign(c, |s| s.in_response_to = None)?),
    },
    Case {
        name: "unsolicited signed assertion, InResponseTo only on the unsigned Response",
        modes: ASSERTION_ONLY,
        reason: "unsolicited_response",
        attack: |c| {
            let x = resign(c, |s| s.in_response_to = None)?;
            let irt = c.spec.in_response_to.as_deref().ok_or("no request ID")?;
            xml(replace_once(&x, " Version=\"2.0\"", &format!(" InResponseTo=\"{irt}\" Version=\"2.0\""))?)
        },
    },
    Case {
        name: "unsigned Response InResponseTo disagreeing with the signed assertion",
        modes: ASSERTION_ONLY,
        reason: "in_response_to_mismatch",
        attack: |c| {
            let irt = c.spec.in_response_to.as_deref().ok_or("no request ID")?;
            xml(replace_once(c.xml, &format!("InResponseTo=\"{irt}\""), "InResponseTo=\"_another_request\"")?)
        },
    },
    Case {
        name: "signed non-success status (Requester / AuthnFailed)",
        modes: ALL,
        reason: "status_not_success",
        attack: |c| {
            let x = resign(c, |s| s.status = "urn:oasis:names:tc:SAML:2.0:status:Requester".into())?;
            xml(replace_once(
                &x,
                "status:Requester\"/>",
                "status:Requester\"><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:AuthnFailed\"/></samlp:StatusCode>",
            )?)
        },
    },
    Case {
        name: "signed non-success status (Responder) with a nested Success",
        modes: ALL,
        reason: "status_not_success",
        attack: |c| {
            let x = resign(c, |s| s.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".into())?;
            xml(replace_once(
                &x,
                "status:Responder\"/>",
                &format!("status:Responder\"><samlp:StatusCode Value=\"{SUCCESS}\"/></samlp:StatusCode>"),
            )?)
        },
    },
    Case {
        name: "oversized response (decoded above the limit, form below it)",
        modes: ALL,
        reason: "too_large",
        attack: |c| xml(format!("{}{}", c.xml, " ".repeat(270 * 1024))),
    },
    Case {
        name: "oversized encoding (whitespace padding inside the base64)",
        modes: ALL,
        reason: "too_large",
        attack: |c| {
            // Spaces (one byte each once form-encoded) in the middle, so trimming cannot help.
            let s = b64(c.xml.as_bytes());
            Ok(Payload::Form(format!("{}{}{}", &s[..4], " ".repeat(390 * 1024), &s[4..])))
        },
    },
    Case {
        name: "broken base64: characters outside the alphabet",
        modes: ALL,
        reason: "bad_encoding",
        attack: |c| Ok(Payload::Form(format!("%{}", b64(c.xml.as_bytes())))),
    },
    Case {
        name: "broken base64: truncated",
        modes: ALL,
        reason: "bad_encoding",
        attack: |c| {
            let mut s = b64(c.xml.as_bytes());
            let keep = s.trim_end_matches('=').len() - 1;
            s.truncate(keep);
            Ok(Payload::Form(s))
        },
    },
    Case {
        name: "broken base64: URL-safe alphabet",
        modes: ALL,
        reason: "bad_encoding",
        attack: |c| {
            let s = base64::engine::general_purpose::URL_SAFE.encode(c.xml.as_bytes());
            if !s.contains(['-', '_']) {
                return Err("encoding has no URL-safe characters".into());
            }
            Ok(Payload::Form(s))
        },
    },
    Case {
        name: "broken base64: data after the padding",
        modes: ALL,
        reason: "bad_encoding",
        attack: |c| Ok(Payload::Form(format!("{}====PHg+", b64(c.xml.as_bytes())))),
    },
    Case {
        name: "raw DEFLATE body (redirect-binding encoding on the POST binding)",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(c.xml.as_bytes())?;
            Ok(Payload::Bytes(e.finish()?))
        },
    },
    Case {
        name: "zlib-wrapped DEFLATE body",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(c.xml.as_bytes())?;
            Ok(Payload::Bytes(e.finish()?))
        },
    },
    Case {
        name: "gzip body",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(c.xml.as_bytes())?;
            Ok(Payload::Bytes(e.finish()?))
        },
    },
];

async fn protocol(b: Backend) -> TestResult {
    corpus(b, PROTOCOL).await
}
both_backends!(protocol_and_transport_refused, protocol);

// ---------------------------------------------------------------------------------------------
// Findings: documents the broker accepted when this corpus was written. None of them signs in
// anyone but the user the IdP signed for and none fetched anything, but each departs from the
// stated policy (a strict parse; nothing in the document the broker does not understand).
// The reasons below are the codes a fix would naturally give; adjust them with the fix.

fn fake_namespace_assertion(c: &Ctx<'_>) -> Res {
    let e = replace_once(
        &evil_assertion(c.xml)?,
        "<saml:Assertion ",
        "<saml:Assertion xmlns:saml=\"urn:fake:assertion\" ",
    )?;
    xml(insert_before(c.xml, "<saml:Assertion", &e)?)
}

// Lenient documents a recovering parser would take: refused by the strict pre-scan.
const FINDINGS: &[Case] = &[
    Case {
        name: "two UTF-8 BOMs (the second is content before the XML declaration)",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(format!("\u{feff}\u{feff}{}", c.xml)),
    },
    Case {
        name: "XML declaration claiming UTF-16 over UTF-8 bytes",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| xml(replace_once(c.xml, "encoding=\"UTF-8\"", "encoding=\"UTF-16\"")?),
    },
    Case {
        name: "UTF-8 BOM with an XML declaration claiming ISO-8859-1",
        modes: ALL,
        reason: "malformed_xml",
        attack: |c| {
            xml(format!("\u{feff}{}", replace_once(c.xml, "encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"")?))
        },
    },
    Case {
        name: "XInclude from the canary in the unsigned envelope",
        modes: ASSERTION_ONLY,
        reason: "malformed_xml",
        attack: |c| {
            let inc = format!(
                "<samlp:Extensions><xi:include xmlns:xi=\"http://www.w3.org/2001/XInclude\" href=\"{}/xinclude-envelope\"/></samlp:Extensions>",
                c.canary
            );
            xml(insert_before(c.xml, "<samlp:Status>", &inc)?)
        },
    },
    Case {
        name: "namespace confusion: fake-namespace saml:Assertion beside a signed assertion",
        modes: ASSERTION_ONLY,
        reason: "multiple_assertions",
        attack: fake_namespace_assertion,
    },
];

async fn findings(b: Backend) -> TestResult {
    corpus(b, FINDINGS).await
}
both_backends!(lenient_documents_refused, findings);

// ---------------------------------------------------------------------------------------------
// InResponseTo reuse and cross-connection responses, other IdPs, bodies beyond the form limit

async fn assert_healthy(app: &TestApp) -> TestResult {
    assert_eq!(reqwest::get(format!("{}/healthz", app.base)).await?.status(), 200, "/healthz");
    Ok(())
}

async fn in_response_to_reused(b: Backend) -> TestResult {
    let mut app = app(b).start().await?;
    for &mode in ALL {
        app.new_browser()?;
        let at = app.authorize(&app.auth_url(&[])).await?;
        let mut first = app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]);
        first.sign = mode;
        let q = redirect_query(app.post_signed(&first, Some(&at.relay_state)).await?).await?;
        assert!(q.contains_key("code"), "{mode:?}: the genuine response completes the login");
        // A second, freshly signed response (new assertion ID, so not a replay) for the request
        // the first one consumed.
        let mut second = app.response(Some(&at.request_id), "admin@example.com", &["IT-Admins"]);
        second.sign = mode;
        let before = app.counts()?;
        let resp = app.post_signed(&second, Some(&at.relay_state)).await?;
        assert_refused(&app, resp, &before, "in_response_to_unknown").await?;
        assert_healthy(&app).await?;
    }
    Ok(())
}
both_backends!(in_response_to_reused_refused, in_response_to_reused);

/// A broker with a second connection, `other`, trusting a second IdP.
async fn two_connections(b: Backend) -> Result<(TestApp, DevIdp, tempfile::TempDir), Bx> {
    let dir = tempfile::tempdir()?;
    let other = DevIdp::generate("https://idp2.test/metadata", "https://idp2.test/sso")?;
    let metadata = dir.path().join("other-idp.xml");
    std::fs::write(&metadata, other.metadata_xml())?;
    let app = app(b)
        .with_config(move |c| {
            c.connections.push(FileConnection {
                domains: vec!["other.example".into()],
                ..FileConnection::new("other", metadata)
            })
        })
        .start()
        .await?;
    Ok((app, other, dir))
}

async fn cross_connection(b: Backend) -> TestResult {
    let (mut app, other, _dir) = two_connections(b).await?;
    let ours = [("idp_hint", CONNECTION)];
    for &mode in ALL {
        // InResponseTo of a login started on the other connection, in a response our IdP
        // signed for our ACS, carried with that login's RelayState.
        app.new_browser()?;
        let elsewhere = app.authorize(&app.auth_url(&[("idp_hint", "other")])).await?;
        let mut spec = app.response(Some(&elsewhere.request_id), "ada@example.com", &["Engineering"]);
        spec.sign = mode;
        let before = app.counts()?;
        let resp = app.post_signed(&spec, Some(&elsewhere.relay_state)).await?;
        assert_refused(&app, resp, &before, "in_response_to_unknown").await?;
        assert_healthy(&app).await?;

        // Our login, answered by the other connection's IdP: first as that IdP names itself,
        // then impersonating ours. Its certificate is trusted, but only for `other`.
        for issuer in [other.entity_id.clone(), app.idp.entity_id.clone()] {
            app.new_browser()?;
            let at = app.authorize(&app.auth_url(&ours)).await?;
            let mut spec = app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]);
            spec.sign = mode;
            spec.issuer = issuer;
            let before = app.counts()?;
            let resp = app.post_acs(&other.sign_response_b64(&spec)?, Some(&at.relay_state)).await?;
            assert_refused(&app, resp, &before, "signature_invalid").await?;
            assert_healthy(&app).await?;
        }
    }
    // And the whole corpus-style check that a normal login on our connection still works.
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&ours)).await?;
    let q = redirect_query(
        app.post_signed(&app.response(Some(&at.request_id), "ada@example.com", &[]), Some(&at.relay_state))
            .await?,
    )
    .await?;
    assert!(q.contains_key("code"));
    Ok(())
}
both_backends!(cross_connection_refused, cross_connection);

async fn beyond_form_limit(b: Backend) -> TestResult {
    // Twice the response limit is the form limit: such a body never reaches the ACS handler,
    // so there is no audit row either; nothing at all may be written.
    let mut app = app(b).start().await?;
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let xml = app.idp.sign_response(&app.response(Some(&at.request_id), "ada@example.com", &[]))?;
    let padded = format!("{xml}{}", " ".repeat(600 * 1024));
    let before = app.counts()?;
    let resp = app.post_acs(&b64(padded.as_bytes()), Some(&at.relay_state)).await?;
    let status = resp.status();
    let set_cookie = resp.headers().get("set-cookie").is_some();
    let body = resp.text().await?;
    assert!(status == 400 || status == 413, "body beyond the form limit answered {status}");
    assert!(!set_cookie, "no session cookie");
    assert!(!body.contains("Signature") && !body.contains("saml"), "generic page");
    assert_eq!(app.counts()?, before, "nothing written");
    assert_healthy(&app).await
}
both_backends!(body_beyond_form_limit_refused, beyond_form_limit);
