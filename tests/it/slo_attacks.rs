//! Red-team tests of single logout: hostile input at `/saml/{connection}/slo` (HTTP-Redirect and
//! HTTP-POST) and around the sign-out that sends our LogoutRequest. Every refusal is asserted
//! exactly (status, audit reason, no other table changed, the sessions alive); the attacks the
//! broker must survive without refusing (a parameter order, a foreign signed message for the
//! attacker's own account) are asserted by their effect.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use ssobroker::devidp::{parse_logout_request, LogoutRequestSpec, LogoutResponseSpec, ResponseSpec, SigAlg};

use crate::both_backends;
use crate::support::*;

const IDP_SLO: &str = "https://idp.test/slo";
const OTHER: &str = "other";
const SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

fn slo_url(app: &TestApp) -> String {
    slo_url_of(app, CONNECTION)
}

fn slo_url_of(app: &TestApp, connection: &str) -> String {
    format!("{}/saml/{connection}/slo", app.base)
}

fn location(resp: &reqwest::Response) -> Result<String, Box<dyn std::error::Error>> {
    Ok(resp.headers().get("location").ok_or("no Location")?.to_str()?.to_string())
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn b64(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

/// The raw (still encoded) value of a query parameter.
fn raw_param<'q>(query: &'q str, name: &str) -> Result<&'q str, Box<dyn std::error::Error>> {
    let prefix = format!("{name}=");
    Ok(query.split('&').find_map(|p| p.strip_prefix(prefix.as_str())).ok_or("no such parameter")?)
}

/// Live (unrevoked, unexpired) sessions of `name_id` on `connection`.
fn live_on(app: &TestApp, connection: &str, name_id: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let mut c = app.pool.get()?;
    Ok(ssobroker::store::logouts::sessions_for_subject(
        &mut c,
        connection,
        name_id,
        &[],
        app.now().timestamp(),
    )?
    .len())
}

fn live(app: &TestApp, name_id: &str) -> Result<usize, Box<dyn std::error::Error>> {
    live_on(app, CONNECTION, name_id)
}

/// Logs `browser` in through /authorize on `connection` as `email`; returns the ID token and
/// the SessionIndex the IdP asserted.
async fn login_with(
    app: &TestApp,
    browser: &reqwest::Client,
    connection: &str,
    email: &str,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let resp = browser.get(app.auth_url(&[("idp_hint", connection)])).send().await?;
    let to_idp = url::Url::parse(&location(&resp)?)?;
    let q: BTreeMap<String, String> = to_idp.query_pairs().into_owned().collect();
    let request = ssobroker::devidp::parse_authn_request(&q["SAMLRequest"])?;
    let c = app.cfg.connection(connection).ok_or("no such connection")?;
    let spec =
        ResponseSpec::new(&app.idp, &c.sp.entity_id, &c.sp.acs_url, Some(&request.id), email, app.now())
            .with_attribute("email", &[email])
            .with_attribute("groups", &["Engineering"]);
    let session_index = spec.assertion_id.clone();
    let b64 = app.idp.sign_response_b64(&spec)?;
    let resp = browser
        .post(format!("{}/saml/{connection}/acs", app.base))
        .form(&[("SAMLResponse", b64.as_str()), ("RelayState", q["RelayState"].as_str())])
        .send()
        .await?;
    let q = redirect_query(resp).await?;
    let tokens: serde_json::Value = app.token(&q["code"]).await?.json().await?;
    Ok((tokens["id_token"].as_str().ok_or("no id_token")?.to_string(), session_index))
}

async fn login(app: &TestApp, email: &str) -> Result<(String, String), Box<dyn std::error::Error>> {
    login_with(app, &app.browser, CONNECTION, email).await
}

/// Whether `browser` still holds a live broker session: /authorize answers with a code at once.
async fn has_session(app: &TestApp, browser: &reqwest::Client) -> Result<bool, Box<dyn std::error::Error>> {
    let resp = browser.get(app.auth_url(&[("idp_hint", CONNECTION)])).send().await?;
    Ok(location(&resp)?.starts_with(REDIRECT_URI))
}

fn new_browser() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()
}

/// A refused logout message: a generic 400 page with a reference, one `logout.refused` audit
/// row with the reason for `connection`, no other table changed and no cookie touched.
async fn assert_refused_on(
    app: &TestApp,
    connection: &str,
    resp: reqwest::Response,
    before: &BTreeMap<&'static str, i64>,
    reason: &str,
) -> TestResult {
    let status = resp.status();
    let set_cookie = resp.headers().get("set-cookie").is_some();
    let body = resp.text().await?;
    assert_eq!(status, 400, "expected refusal ({reason}), got {status}: {body}");
    assert!(!set_cookie, "a refused logout message must not touch the session cookie ({reason})");
    // The heading depends on the message's kind (a refused answer to our own request comes
    // after the broker session ended); the page is generic either way.
    let headings = ["Sign-out failed", "Sign-out not confirmed", "Already signed out"];
    assert!(
        headings.iter().any(|h| body.contains(h)) && body.contains("Support reference"),
        "generic page: {body}"
    );
    for internal in
        ["Signature", "saml", "SAML", "LogoutRequest", "LogoutResponse", "xmlsec", "NameID", "ada@"]
    {
        assert!(!body.contains(internal), "{internal:?} on the refusal page ({reason})");
    }
    let after = app.counts()?;
    for (table, n) in &after {
        let expected = before[table] + i64::from(*table == "audit_events");
        assert_eq!(*n, expected, "table {table} changed on a refused logout message ({reason})");
    }
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!((last.kind.as_str(), last.reason.as_deref()), ("logout.refused", Some(reason)));
    assert_eq!(last.connection_id.as_deref(), Some(connection));
    assert!(last.user_id.is_none(), "a refusal names nobody");
    Ok(())
}

async fn assert_refused(
    app: &TestApp,
    resp: reqwest::Response,
    before: &BTreeMap<&'static str, i64>,
    reason: &str,
) -> TestResult {
    assert_refused_on(app, CONNECTION, resp, before, reason).await
}

/// GETs `/slo?{query}` and asserts the refusal and that ada's session lives on.
async fn refused_get(app: &TestApp, name: &str, query: &str, reason: &str) -> TestResult {
    let before = app.counts()?;
    let resp = app.browser.get(format!("{}?{query}", slo_url(app))).send().await?;
    assert_refused(app, resp, &before, reason).await.map_err(|e| format!("{name}: {e}"))?;
    assert_eq!(live(app, "ada@example.com")?, 1, "{name}: the session lives on");
    Ok(())
}

/// POSTs `fields` to `/slo` and asserts the refusal and that ada's session lives on.
async fn refused_post(app: &TestApp, name: &str, fields: &[(&str, &str)], reason: &str) -> TestResult {
    let before = app.counts()?;
    let resp = app.browser.post(slo_url(app)).form(fields).send().await?;
    assert_refused(app, resp, &before, reason).await.map_err(|e| format!("{name}: {e}"))?;
    assert_eq!(live(app, "ada@example.com")?, 1, "{name}: the session lives on");
    Ok(())
}

fn request_query(app: &TestApp, spec: &LogoutRequestSpec, relay: Option<&str>) -> Result<String, String> {
    app.idp
        .redirect_query("SAMLRequest", &app.idp.logout_request_xml(spec), relay, spec.alg)
        .map_err(|e| e.to_string())
}

fn signed_post(app: &TestApp, xml: &str, id: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(b64(&app.idp.sign_message(xml, id, SigAlg::RsaSha256)?))
}

// ------------------------------------------------------------------ HTTP-Redirect differentials

async fn redirect_differentials(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    let now = app.now();
    let spec = || LogoutRequestSpec::new(&app.idp, &slo_url(&app), "ada@example.com", now);
    // Signed with a RelayState holding a space ("+"), a plus ("%2B") and a slash ("%2F").
    let signed = request_query(&app, &spec(), Some("a b+c/d"))?;
    let relay = raw_param(&signed, "RelayState")?;
    assert_eq!(relay, "a+b%2Bc%2Fd");
    let message = raw_param(&signed, "SAMLRequest")?;
    let sig_alg = raw_param(&signed, "SigAlg")?;
    let signature = raw_param(&signed, "Signature")?;

    let cases: Vec<(&str, String, &str)> = vec![
        // The same decoded RelayState in other bytes: the signature is over the bytes sent.
        ("%20 for +", signed.replacen("RelayState=a+b", "RelayState=a%20b", 1), "signature_invalid"),
        ("lower-case hex", signed.replacen("%2Bc%2Fd", "%2bc%2fd", 1), "signature_invalid"),
        ("unencoded slash", signed.replacen("c%2Fd", "c/d", 1), "signature_invalid"),
        // Another RelayState under the IdP's signature.
        ("other relay", signed.replacen(relay, "https%3A%2F%2Fevil.example%2F", 1), "signature_invalid"),
        ("relay dropped", signed.replacen(&format!("&RelayState={relay}"), "", 1), "signature_invalid"),
        (
            "relay emptied",
            signed.replacen(&format!("RelayState={relay}"), "RelayState=", 1),
            "signature_invalid",
        ),
        (
            "relay without =",
            signed.replacen(&format!("RelayState={relay}"), "RelayState", 1),
            "signature_invalid",
        ),
        // The message double-encoded, or its base64 "+" left for the form decoder to turn into a
        // space.
        (
            "double-encoded message",
            signed.replacen(message, &message.replace('%', "%25"), 1),
            "signature_invalid",
        ),
        ("+ left raw", signed.replacen(message, &message.replace("%2B", "+"), 1), "signature_invalid"),
        // Duplicates, plain and disguised by percent-encoding the name, in front of the real one.
        ("duplicate message first", format!("SAMLRequest={message}&{signed}"), "malformed_xml"),
        ("disguised duplicate", format!("{signed}&SAML%52equest={message}"), "malformed_xml"),
        ("disguised relay", format!("{signed}&%52elayState=evil"), "malformed_xml"),
        ("duplicate SigAlg", format!("{signed}&SigAlg={}", enc(SHA256)), "malformed_xml"),
        ("duplicate Signature", format!("{signed}&Signature={signature}"), "malformed_xml"),
        ("empty duplicate Signature", format!("{signed}&Signature="), "malformed_xml"),
        // Algorithm confusion: the name is checked against the allow-list before any key.
        (
            "dsa",
            signed.replacen(sig_alg, &enc("http://www.w3.org/2000/09/xmldsig#dsa-sha1"), 1),
            "algorithm_not_allowed",
        ),
        (
            "hmac",
            signed.replacen(sig_alg, &enc("http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"), 1),
            "algorithm_not_allowed",
        ),
        ("unknown", signed.replacen(sig_alg, "urn%3Anone", 1), "algorithm_not_allowed"),
        ("empty SigAlg", signed.replacen(sig_alg, "", 1), "algorithm_not_allowed"),
        (
            "case-changed SigAlg",
            signed.replacen(sig_alg, &enc("http://www.w3.org/2001/04/xmldsig-more#RSA-SHA256"), 1),
            "algorithm_not_allowed",
        ),
        (
            "SigAlg with a suffix",
            signed.replacen(sig_alg, &enc(&format!("{SHA256}#rsa-sha1")), 1),
            "algorithm_not_allowed",
        ),
        // The RSA signature relabelled ECDSA: no EC certificate is pinned.
        (
            "relabelled ecdsa",
            signed.replacen(sig_alg, &enc("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"), 1),
            "signature_invalid",
        ),
        (
            "rsa-sha512 label",
            signed.replacen(sig_alg, &enc("http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"), 1),
            "signature_invalid",
        ),
        // Broken signature values.
        ("empty Signature", signed.replacen(signature, "", 1), "signature_invalid"),
        ("Signature not base64", signed.replacen(signature, "%25%25%25", 1), "signature_invalid"),
        (
            "Signature truncated",
            signed.replacen(signature, &signature[..signature.len() / 2], 1),
            "signature_invalid",
        ),
        ("huge Signature", signed.replacen(signature, &"QUFB".repeat(4096), 1), "signature_invalid"),
        ("one-byte Signature", signed.replacen(signature, "AA%3D%3D", 1), "signature_invalid"),
        // Missing pieces.
        ("no SigAlg", signed.replacen(&format!("&SigAlg={sig_alg}"), "", 1), "signature_missing"),
        ("no Signature", signed.replacen(&format!("&Signature={signature}"), "", 1), "signature_missing"),
        (
            "SigAlg name only",
            signed.replacen(&format!("&SigAlg={sig_alg}"), "&SigAlg", 1),
            "algorithm_not_allowed",
        ),
        ("empty message", signed.replacen(message, "", 1), "signature_invalid"),
    ];
    for (name, query, reason) in cases {
        refused_get(&app, name, &query, reason).await?;
    }

    // rsa-sha1, properly signed, without the opt-in: refused, and no panic (SAML-NOTES L12).
    let sha1 = request_query(&app, &LogoutRequestSpec { alg: SigAlg::RsaSha1, ..spec() }, None)?;
    refused_get(&app, "rsa-sha1", &sha1, "algorithm_not_allowed").await?;

    // Unknown parameters around the signed ones, and another order: the signature still covers
    // exactly what is read, so this is the IdP's request and it is honoured.
    let shuffled = format!(
        "Signature={signature}&x=1&SigAlg={sig_alg}&RelayState={relay}&%20=&SAMLRequest={message}&&="
    );
    let resp = app.browser.get(format!("{}?{shuffled}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 302, "{}", resp.text().await?);
    let back = url::Url::parse(&location(&resp)?)?;
    let q: BTreeMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["RelayState"], "a b+c/d", "the signed RelayState goes back to the IdP, decoded once");
    assert_eq!(live(&app, "ada@example.com")?, 0);
    Ok(())
}
both_backends!(redirect_binding_parser_differentials_are_refused, redirect_differentials);

// ------------------------------------------------------------------ wrong message, wrong purpose

async fn cross_purpose(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    let slo = slo_url(&app);
    let now = app.now();
    let request = LogoutRequestSpec::new(&app.idp, &slo, "ada@example.com", now);
    let response = LogoutResponseSpec::new(&app.idp, &slo, "_never-sent", now);

    // A signed LogoutResponse carried as a SAMLRequest, both bindings.
    let xml = app.idp.logout_response_xml(&response);
    let q = app.idp.redirect_query("SAMLRequest", &xml, None, SigAlg::RsaSha256)?;
    refused_get(&app, "response as request (redirect)", &q, "not_a_logout_message").await?;
    refused_post(
        &app,
        "response as request (post)",
        &[("SAMLRequest", &signed_post(&app, &xml, &response.id)?)],
        "not_a_logout_message",
    )
    .await?;
    // A signed LogoutRequest carried as a SAMLResponse (it could name a pending request's ID).
    let xml = app.idp.logout_request_xml(&request);
    let q = app.idp.redirect_query("SAMLResponse", &xml, None, SigAlg::RsaSha256)?;
    refused_get(&app, "request as response (redirect)", &q, "not_a_logout_message").await?;
    refused_post(
        &app,
        "request as response (post)",
        &[("SAMLResponse", &signed_post(&app, &xml, &request.id)?)],
        "not_a_logout_message",
    )
    .await?;
    // The signed redirect query of a request under the response's parameter name: the parameter
    // name is part of the signed bytes.
    let q = request_query(&app, &request, None)?;
    let renamed = q.replacen("SAMLRequest=", "SAMLResponse=", 1);
    refused_get(&app, "renamed parameter", &renamed, "signature_invalid").await?;
    // An AuthnRequest-like message the IdP signed (same namespace, another root).
    let authn = app.idp.logout_request_xml(&request).replace("LogoutRequest", "AuthnRequest");
    let q = app.idp.redirect_query("SAMLRequest", &authn, None, SigAlg::RsaSha256)?;
    refused_get(&app, "authn request", &q, "not_a_logout_message").await?;
    // A LogoutRequest in a look-alike namespace.
    let foreign = app
        .idp
        .logout_request_xml(&request)
        .replace("urn:oasis:names:tc:SAML:2.0:protocol", "urn:oasis:names:tc:SAML:2.0:protocol#");
    let q = app.idp.redirect_query("SAMLRequest", &foreign, None, SigAlg::RsaSha256)?;
    refused_get(&app, "foreign namespace", &q, "not_a_logout_message").await?;
    // The IdP's signed login Response for ada, posted as a logout message of either kind.
    let login_response = app.idp.sign_response_b64(&app.response(None, "ada@example.com", &[]))?;
    refused_post(
        &app,
        "login response as request",
        &[("SAMLRequest", &login_response)],
        "not_a_logout_message",
    )
    .await?;
    refused_post(
        &app,
        "login response as response",
        &[("SAMLResponse", &login_response)],
        "not_a_logout_message",
    )
    .await?;
    // The signed LogoutRequest wrapped in a Response, or carrying an Assertion.
    let signed =
        app.idp.sign_message(&app.idp.logout_request_xml(&request), &request.id, SigAlg::RsaSha256)?;
    let body = signed.split_once("?>").map_or(signed.as_str(), |(_, rest)| rest);
    let wrapped = format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_w" Version="2.0">{body}</samlp:Response>"#
    );
    refused_post(&app, "wrapped in a Response", &[("SAMLRequest", &b64(&wrapped))], "not_a_logout_message")
        .await?;
    Ok(())
}
both_backends!(messages_of_another_kind_or_purpose_are_refused, cross_purpose);

// ------------------------------------------------------------------ HTTP-POST wrapping

async fn post_wrapping(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    login_with(&app, &new_browser()?, CONNECTION, "boss@example.com").await?;
    let slo = slo_url(&app);
    let now = app.now();
    // The attacker holds a LogoutRequest the IdP signed for ada (e.g. one already used) and
    // wants boss signed out.
    let mine = LogoutRequestSpec::new(&app.idp, &slo, "ada@example.com", now);
    let signed = app.idp.sign_message(&app.idp.logout_request_xml(&mine), &mine.id, SigAlg::RsaSha256)?;
    let signed = signed.split_once("?>").map_or(signed.as_str(), |(_, rest)| rest).to_string();
    let (sig_start, sig_end) = {
        let s = signed.find("<ds:Signature").ok_or("no Signature")?;
        let e = signed.find("</ds:Signature>").ok_or("no Signature end")? + "</ds:Signature>".len();
        (s, e)
    };
    let signature = &signed[sig_start..sig_end];
    let evil = LogoutRequestSpec {
        id: "_evil".into(),
        ..LogoutRequestSpec::new(&app.idp, &slo, "boss@example.com", now)
    };
    let evil_xml = app.idp.logout_request_xml(&evil);

    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    // The evil request with the signed one inside (XSW1/2 style), in Extensions or elsewhere.
    cases.push((
        "signed one in Extensions",
        evil_xml.replacen(
            "</saml:Issuer>",
            &format!("</saml:Issuer><samlp:Extensions>{signed}</samlp:Extensions>"),
            1,
        ),
        "signature_policy",
    ));
    // The evil request carrying the signature copied from the signed one (its Reference names
    // another ID).
    cases.push((
        "copied signature",
        evil_xml.replacen("</saml:Issuer>", &format!("</saml:Issuer>{signature}"), 1),
        "signature_policy",
    ));
    // The same ID on the evil root, the signed original hidden in Extensions: duplicate IDs.
    let same_id = evil_xml.replacen(r#"ID="_evil""#, &format!(r#"ID="{}""#, mine.id), 1);
    cases.push((
        "same ID twice",
        same_id.replacen(
            "</saml:Issuer>",
            &format!("</saml:Issuer>{signature}<samlp:Extensions>{signed}</samlp:Extensions>"),
            1,
        ),
        "signature_policy",
    ));
    // The signed request with a second NameID or SessionIndex added after signing.
    cases.push((
        "NameID added",
        signed.replacen("</saml:NameID>", "</saml:NameID><saml:NameID>boss@example.com</saml:NameID>", 1),
        "signature_invalid",
    ));
    cases.push((
        "SessionIndex added",
        signed.replacen("</saml:NameID>", "</saml:NameID><samlp:SessionIndex>x</samlp:SessionIndex>", 1),
        "signature_invalid",
    ));
    // An xml:id duplicating the signed ID on an injected element.
    cases.push((
        "xml:id duplicate",
        signed.replacen(
            "</saml:NameID>",
            &format!(r#"</saml:NameID><samlp:Extensions xml:id="{}"/>"#, mine.id),
            1,
        ),
        "signature_policy",
    ));
    // The signature moved into the NameID, or after the root.
    cases.push((
        "signature outside root",
        format!("{}{}", &signed[..sig_start], &signed[sig_end..]).replacen(
            "</saml:NameID>",
            &format!("</saml:NameID><samlp:Extensions>{signature}</samlp:Extensions>"),
            1,
        ),
        "signature_policy",
    ));
    // A processing instruction or a comment.
    cases.push((
        "processing instruction",
        signed.replacen("</saml:NameID>", "</saml:NameID><?x y?>", 1),
        "signature_policy",
    ));
    cases.push((
        "comment in NameID",
        signed.replacen("ada@example.com", "ada@example.com<!--x-->", 1),
        "signature_policy",
    ));
    // An XSLT transform smuggled into the signature.
    cases.push((
        "xslt transform",
        signed.replacen(
            "<ds:Transforms>",
            r#"<ds:Transforms><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"/>"#,
            1,
        ),
        "signature_policy",
    ));
    // Entities.
    cases.push(("doctype", format!("<!DOCTYPE x [<!ENTITY a \"boss\">]>{signed}"), "dtd_forbidden"));
    for (name, xml, reason) in cases {
        refused_post(&app, name, &[("SAMLRequest", &b64(&xml))], reason).await?;
        assert_eq!(live(&app, "boss@example.com")?, 1, "{name}: boss is still signed in");
    }
    // And the signed original still does only what it says.
    let resp = app.browser.post(&slo).form(&[("SAMLRequest", b64(&signed).as_str())]).send().await?;
    assert_eq!(resp.status(), 302);
    assert_eq!((live(&app, "ada@example.com")?, live(&app, "boss@example.com")?), (0, 1));
    Ok(())
}
both_backends!(post_binding_signature_wrapping_is_refused, post_wrapping);

// ------------------------------------------------------------------ SessionIndex and NameID

async fn session_index_tricks(b: Backend) -> TestResult {
    let mut app = app(b).with_idp_slo(IDP_SLO).start().await?;
    let (_, first) = login(&app, "ada@example.com").await?;
    app.new_browser()?;
    login(&app, "ada@example.com").await?;
    assert_eq!(live(&app, "ada@example.com")?, 2);
    let slo = slo_url(&app);

    // Signed requests that name sessions nobody has end none of ada's sessions: SQL or glob
    // wildcards, a prefix, another case or spelling of the NameID.
    // A request naming only blank indexes is refused rather than read as naming none.
    for (name, indexes) in [
        ("empty SessionIndex", vec![String::new()]),
        ("blank SessionIndexes", vec!["   ".into(), String::new()]),
    ] {
        let spec = LogoutRequestSpec {
            session_indexes: indexes,
            ..LogoutRequestSpec::new(&app.idp, &slo, "ada@example.com", app.now())
        };
        let q = request_query(&app, &spec, None)?;
        let before = app.counts()?;
        let resp = app.browser.get(format!("{slo}?{q}")).send().await?;
        assert_refused(&app, resp, &before, "malformed_xml").await.map_err(|e| format!("{name}: {e}"))?;
        assert_eq!(live(&app, "ada@example.com")?, 2, "{name}: no session of ada ended");
    }
    let tricks: Vec<(&str, &str, Vec<&str>)> = vec![
        ("wildcard %", "ada@example.com", vec!["%"]),
        ("wildcard *", "ada@example.com", vec!["*"]),
        ("prefix of the index", "ada@example.com", vec![&first[..first.len() - 1]]),
        ("upper-case NameID", "ADA@example.com", vec![]),
        ("NameID wildcard", "%", vec![]),
        ("NameID prefix", "ada@", vec![]),
    ];
    for (name, name_id, indexes) in tricks {
        let mut spec = LogoutRequestSpec::new(&app.idp, &slo, name_id, app.now());
        spec.session_indexes = indexes.iter().map(|s| s.to_string()).collect();
        let q = request_query(&app, &spec, None)?;
        let resp = app.browser.get(format!("{slo}?{q}")).send().await?;
        assert_eq!(resp.status(), 302, "{name}: a signed request is answered");
        assert_eq!(live(&app, "ada@example.com")?, 2, "{name}: no session of ada ended");
        let last = app.audit()?.pop().ok_or("no audit row")?;
        assert_eq!(last.kind, "logout.idp_initiated", "{name}");
        let detail: serde_json::Value = serde_json::from_str(&last.detail)?;
        assert_eq!(detail["sessions_ended"], 0, "{name}");
    }

    // The real index next to a bogus one ends exactly that session.
    let mut spec = LogoutRequestSpec::new(&app.idp, &slo, "ada@example.com", app.now());
    spec.session_indexes = vec!["nope".into(), first.clone()];
    let q = request_query(&app, &spec, None)?;
    assert_eq!(app.browser.get(format!("{slo}?{q}")).send().await?.status(), 302);
    assert_eq!(live(&app, "ada@example.com")?, 1);
    Ok(())
}
both_backends!(session_index_and_name_id_tricks_end_nothing_more, session_index_tricks);

// ------------------------------------------------------------------ other connection

/// A second connection trusting the same IdP (one ADFS or Keycloak realm behind two
/// connections): only Destination tells their messages apart.
fn with_other_connection(b: Backend) -> Builder {
    app(b).with_idp_slo(IDP_SLO).with_config(|c| {
        let metadata = c.connections[0].metadata_file.clone();
        c.connections.push(ssobroker::config::FileConnection {
            vendor: ssobroker::provisioning::Vendor::Okta,
            default_roles: vec!["user".into()],
            ..ssobroker::config::FileConnection::new(OTHER, metadata)
        });
    })
}

async fn cross_connection(b: Backend) -> TestResult {
    let app = with_other_connection(b).start().await?;
    login(&app, "ada@example.com").await?;
    let okta_browser = app.browser.clone();
    let other_browser = new_browser()?;
    // Ada also has a session through the other connection, same NameID.
    login_with(&app, &other_browser, OTHER, "ada@example.com").await?;
    assert_eq!((live(&app, "ada@example.com")?, live_on(&app, OTHER, "ada@example.com")?), (1, 1));

    // Okta's signed LogoutRequest replayed at the other connection's endpoint.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "ada@example.com", app.now());
    let q = request_query(&app, &spec, None)?;
    let before = app.counts()?;
    let resp = okta_browser.get(format!("{}?{q}", slo_url_of(&app, OTHER))).send().await?;
    assert_refused_on(&app, OTHER, resp, &before, "destination_mismatch").await?;
    // A POST one too.
    let signed = signed_post(&app, &app.idp.logout_request_xml(&spec), &spec.id)?;
    let before = app.counts()?;
    let resp =
        okta_browser.post(slo_url_of(&app, OTHER)).form(&[("SAMLRequest", signed.as_str())]).send().await?;
    assert_refused_on(&app, OTHER, resp, &before, "destination_mismatch").await?;
    assert_eq!((live(&app, "ada@example.com")?, live_on(&app, OTHER, "ada@example.com")?), (1, 1));

    // The other connection's own request ends only its session, not okta's.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url_of(&app, OTHER), "ada@example.com", app.now());
    let q = request_query(&app, &spec, None)?;
    let resp = other_browser.get(format!("{}?{q}", slo_url_of(&app, OTHER))).send().await?;
    assert_eq!(resp.status(), 302);
    assert_eq!((live(&app, "ada@example.com")?, live_on(&app, OTHER, "ada@example.com")?), (1, 0));
    assert!(has_session(&app, &okta_browser).await?, "okta's browser keeps its session");

    // A sign-out at okta leaves a pending request; the IdP's answer addressed to the other
    // connection (or sent there) does not consume it.
    let page = okta_browser.get(format!("{}/logout", app.base)).send().await?.text().await?;
    let confirm =
        page.split("name=\"confirm\" value=\"").nth(1).and_then(|s| s.split('"').next()).ok_or("no form")?;
    let resp = okta_browser.post(format!("{}/logout", app.base)).form(&[("confirm", confirm)]).send().await?;
    let to_idp = location(&resp)?;
    let q: BTreeMap<String, String> = url::Url::parse(&to_idp)?.query_pairs().into_owned().collect();
    let ours = parse_logout_request(&q["SAMLRequest"], true)?;
    for destination in [slo_url_of(&app, OTHER), slo_url(&app)] {
        let spec = LogoutResponseSpec::new(&app.idp, &destination, &ours.id, app.now());
        let q = app.idp.redirect_query(
            "SAMLResponse",
            &app.idp.logout_response_xml(&spec),
            None,
            SigAlg::RsaSha256,
        )?;
        let before = app.counts()?;
        let resp = okta_browser.get(format!("{}?{q}", slo_url_of(&app, OTHER))).send().await?;
        let reason =
            if destination == slo_url(&app) { "destination_mismatch" } else { "logout_response_unknown" };
        assert_refused_on(&app, OTHER, resp, &before, reason).await?;
    }
    assert_eq!(app.counts()?["saml_logouts"], 1, "okta's pending request is still there");
    Ok(())
}
both_backends!(messages_for_one_connection_do_nothing_at_another, cross_connection);

// ------------------------------------------------------------------ logout CSRF

/// Mallory, a user of the same IdP, signs out there and keeps the signed LogoutRequest the IdP
/// sent her browser (or, signing out here, the IdP's signed LogoutResponse) instead of following
/// it. Every such message is genuine, single-use and about her, and she can mint them at will;
/// a page of hers sends Ada's browser to it. Only Mallory's sessions may end: Ada's browser
/// keeps its session cookie and Ada stays signed in.
async fn logout_csrf(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    let ada = app.browser.clone();
    let mallory = new_browser()?;
    login_with(&app, &mallory, CONNECTION, "mallory@example.com").await?;

    // Her IdP-initiated LogoutRequest, carried by Ada's browser.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "mallory@example.com", app.now());
    let q = request_query(&app, &spec, None)?;
    let resp = ada.get(format!("{}?{q}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 302);
    assert_eq!(live(&app, "mallory@example.com")?, 0, "the request did what it says");
    assert_eq!(live(&app, "ada@example.com")?, 1);
    assert!(has_session(&app, &ada).await?, "Ada's browser kept its session cookie");

    // Her sign-out here, answered by the IdP, the answer carried by Ada's browser.
    login_with(&app, &mallory, CONNECTION, "mallory@example.com").await?;
    let page = mallory.get(format!("{}/logout", app.base)).send().await?.text().await?;
    let confirm =
        page.split("name=\"confirm\" value=\"").nth(1).and_then(|s| s.split('"').next()).ok_or("no form")?;
    let resp = mallory.post(format!("{}/logout", app.base)).form(&[("confirm", confirm)]).send().await?;
    let q: BTreeMap<String, String> =
        url::Url::parse(&location(&resp)?)?.query_pairs().into_owned().collect();
    let ours = parse_logout_request(&q["SAMLRequest"], true)?;
    let spec = LogoutResponseSpec::new(&app.idp, &slo_url(&app), &ours.id, app.now());
    let q = app.idp.redirect_query(
        "SAMLResponse",
        &app.idp.logout_response_xml(&spec),
        None,
        SigAlg::RsaSha256,
    )?;
    let resp = ada.get(format!("{}?{q}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 200, "the signed-out page");
    assert_eq!(app.counts()?["saml_logouts"], 0);
    assert!(has_session(&app, &ada).await?, "Ada's browser kept its session cookie");

    // Ada's own IdP sign-out still clears her browser's cookie.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "ada@example.com", app.now());
    let q = request_query(&app, &spec, None)?;
    let resp = ada.get(format!("{}?{q}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 302);
    let cleared = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().is_ok_and(|c| c.contains("Max-Age=0")));
    assert!(cleared, "the signed-out user's cookie goes");
    assert!(!has_session(&app, &ada).await?);
    Ok(())
}
both_backends!(a_foreign_signed_logout_message_leaves_the_carrying_browser_signed_in, logout_csrf);

// ------------------------------------------------------------------ disabled user

async fn disabled_user(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    {
        let mut c = app.pool.get()?;
        let user =
            ssobroker::store::users::by_identity(&mut c, CONNECTION, "ada@example.com")?.ok_or("no user")?;
        ssobroker::store::admin::set_disabled(&mut c, &user.id, true, app.now().timestamp())?;
    }
    // The IdP's sign-out of a disabled user still ends the sessions the broker has for them.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "ada@example.com", app.now());
    let q = request_query(&app, &spec, None)?;
    let resp = app.browser.get(format!("{}?{q}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 302);
    assert_eq!(live(&app, "ada@example.com")?, 0);
    Ok(())
}
both_backends!(a_disabled_users_sessions_still_end, disabled_user);

// ------------------------------------------------------------------ replay across instances

async fn replay_across_instances(b: Backend) -> TestResult {
    let mut app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    let second = app.another_instance()?;
    let at = |base: &str| format!("{base}/saml/{CONNECTION}/slo");

    // One LogoutRequest at both instances at once: exactly one is accepted.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "ada@example.com", app.now());
    let q = request_query(&app, &spec, None)?;
    let (r1, r2) = futures_util::join!(
        app.browser.get(format!("{}?{q}", at(&app.base))).send(),
        new_browser()?.get(format!("{}?{q}", at(&second.base))).send()
    );
    let mut statuses = [r1?.status().as_u16(), r2?.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [302, 400], "one instance accepts, the other refuses the replay");
    let refused = app.audit()?.into_iter().filter(|a| a.kind == "logout.refused").collect::<Vec<_>>();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].reason.as_deref(), Some("logout_request_replayed"));
    // And later, at either.
    for base in [&app.base, &second.base] {
        let before = app.counts()?;
        let resp = new_browser()?.get(format!("{}?{q}", at(base))).send().await?;
        assert_refused(&app, resp, &before, "logout_request_replayed").await?;
    }

    // A LogoutResponse consumed at the second instance is unknown at the first.
    app.new_browser()?;
    let (id_token, _) = login(&app, "ada@example.com").await?;
    let resp = app.browser.get(format!("{}/logout?id_token_hint={id_token}", app.base)).send().await?;
    let q: BTreeMap<String, String> =
        url::Url::parse(&location(&resp)?)?.query_pairs().into_owned().collect();
    let ours = parse_logout_request(&q["SAMLRequest"], true)?;
    let spec = LogoutResponseSpec::new(&app.idp, &slo_url(&app), &ours.id, app.now());
    let q = app.idp.redirect_query(
        "SAMLResponse",
        &app.idp.logout_response_xml(&spec),
        None,
        SigAlg::RsaSha256,
    )?;
    let resp = app.browser.get(format!("{}?{q}", at(&second.base))).send().await?;
    assert_eq!(resp.status(), 200);
    let before = app.counts()?;
    let resp = app.browser.get(format!("{}?{q}", at(&app.base))).send().await?;
    assert_refused(&app, resp, &before, "logout_response_unknown").await?;
    Ok(())
}
both_backends!(replays_are_refused_across_instances, replay_across_instances);

// ------------------------------------------------------------------ hostile sizes and shapes

async fn pathological(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    let slo = slo_url(&app);
    let spec = LogoutRequestSpec::new(&app.idp, &slo, "ada@example.com", app.now());
    let xml = app.idp.logout_request_xml(&spec);
    let max = app.connection().sp.max_response_bytes;
    let deep = xml.replacen(
        "</saml:NameID>",
        &format!("</saml:NameID>{}{}", "<a>".repeat(5000), "</a>".repeat(5000)),
        1,
    );
    let attrs: String = (0..20_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let many_attributes = xml.replacen("<saml:NameID", &format!("<saml:NameID{attrs}"), 1);
    let namespaces: String = (0..5_000).map(|i| format!(" xmlns:n{i}=\"urn:n{i}\"")).collect();
    let many_namespaces = xml.replacen("<saml:NameID", &format!("<saml:NameID{namespaces}"), 1);
    let huge_name_id = xml.replacen("ada@example.com", &"a".repeat(max / 2), 1);
    let long_root = format!("<{} xmlns=\"urn:x\"/>", "R".repeat(max / 2));
    let many_ids: String = (0..10_000).map(|i| format!("<x ID=\"i{i}\"/>")).collect();
    let ids = xml.replacen("</saml:NameID>", &format!("</saml:NameID>{many_ids}"), 1);
    let billion_laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">{}]>{xml}",
        (1..10)
            .map(|i| format!("<!ENTITY b{i} \"{}\">", format!("&b{};", i - 1).repeat(10)))
            .collect::<String>()
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("deep nesting", b64(&deep), "malformed_xml"),
        ("many attributes", b64(&many_attributes), "malformed_xml"),
        ("many namespaces", b64(&many_namespaces), "malformed_xml"),
        ("huge NameID", b64(&huge_name_id), "signature_missing"),
        ("long root name", b64(&long_root), "not_a_logout_message"),
        ("many IDs", b64(&ids), "signature_missing"),
        ("billion laughs", b64(&billion_laughs), "dtd_forbidden"),
        ("too large", b64(&"x".repeat(max + 1)), "too_large"),
        ("utf-16", base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b'<', 0]), "malformed_xml"),
        ("empty", String::new(), "malformed_xml"),
    ];
    for (name, value, reason) in cases {
        let started = Instant::now();
        refused_post(&app, name, &[("SAMLRequest", &value)], reason).await?;
        assert!(started.elapsed() < Duration::from_secs(5), "{name} took {:?}", started.elapsed());
    }
    // A body past the form limit, and a query past the binding's cap: plain 4xx, no work.
    let before = app.counts()?;
    let body = format!("SAMLRequest={}", "A".repeat(max * 3));
    let resp = app
        .browser
        .post(&slo)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let resp = app.browser.get(format!("{slo}?SAMLRequest={}", "A".repeat(64 * 1024))).send().await;
    assert!(resp.map_or(true, |r| r.status().is_client_error()));
    assert_eq!(app.counts()?, before);

    // Both kinds, a kind only in the query of a POST, a repeated form field: a plain 400 that
    // names no SAML internals, nothing written.
    let both = format!("{slo}?SAMLRequest=a&SAMLResponse=b");
    let before = app.counts()?;
    for resp in [
        app.browser.get(&both).send().await?,
        app.browser.post(&both).form(&[("RelayState", "x")]).send().await?,
        app.browser.post(&slo).form(&[("SAMLRequest", "a"), ("SAMLRequest", "b")]).send().await?,
    ] {
        assert_eq!(resp.status(), 400);
        assert!(resp.headers().get("set-cookie").is_none());
        let body = resp.text().await?;
        assert!(!body.contains("duplicate") && !body.contains("xmlsec"), "{body}");
    }
    assert_eq!(app.counts()?, before);
    // A message parameter without a value is a message without a signature.
    refused_get(&app, "SAMLRequest without =", "SAMLRequest", "signature_missing").await?;

    // Every worker is still alive: a valid request after all that is honoured.
    let q = request_query(&app, &spec, None)?;
    let resp = app.browser.get(format!("{slo}?{q}")).send().await?;
    assert_eq!(resp.status(), 302);
    assert_eq!(live(&app, "ada@example.com")?, 0);
    Ok(())
}
both_backends!(hostile_sizes_and_shapes_are_refused_quickly, pathological);

// ------------------------------------------------------------------ our answer over HTTP-POST

/// The IdP takes logout messages over HTTP-POST only.
fn post_only(metadata: String) -> String {
    metadata
        .lines()
        .filter(|l| !(l.contains("SingleLogoutService") && l.contains("HTTP-Redirect")))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn relay_state_in_our_form(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).with_metadata(post_only).start().await?;
    login(&app, "ada@example.com").await?;
    // Over HTTP-POST the RelayState is outside the signature: an attacker holding a signed
    // request picks any. It goes back to the IdP escaped, in our form to the IdP's endpoint.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "ada@example.com", app.now());
    let signed = signed_post(&app, &app.idp.logout_request_xml(&spec), &spec.id)?;
    let evil = r#""><script>alert(1)</script><form action="https://evil.example/"#;
    let resp = app
        .browser
        .post(slo_url(&app))
        .form(&[("SAMLRequest", signed.as_str()), ("RelayState", evil)])
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await?;
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains(r#"name="RelayState" value="&quot;&gt;&lt;script&gt;"#), "{page}");
    assert!(page.contains(&format!("action=\"{IDP_SLO}\"")), "the form goes to the IdP's endpoint: {page}");
    assert_eq!(live(&app, "ada@example.com")?, 0);
    Ok(())
}
both_backends!(an_unsigned_relay_state_goes_back_escaped, relay_state_in_our_form);

// ------------------------------------------------------------------ script URIs as sign-out links

/// A `javascript:` URI that still parses as an absolute URL (`javascript://host/…`, where the
/// browser runs what follows the `%0A` after the `//` comment).
const SCRIPT_URI: &str = "javascript://app.example/%0Aalert(document.domain)";

/// An app registered (from the CLI, before script URIs were refused) with a `javascript:`
/// post-logout URI. A Location header of that kind is inert, but the page that stops an app's
/// sign-out the IdP could not complete links on to the post-logout URI: a script link in the
/// broker's own origin, one click from every user who signs out of that app. The broker
/// refuses such a post-logout URI like an unregistered one: a page, nothing ended, no
/// LogoutRequest to the IdP.
async fn script_post_logout_uri(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    {
        let mut c = app.pool.get()?;
        let json = |v: &[&str]| serde_json::to_string(v).unwrap_or_default();
        ssobroker::store::clients::insert(
            &mut c,
            &ssobroker::store::clients::ClientRow {
                client_id: "legacy".into(),
                secret_hash: None,
                redirect_uris: json(&[REDIRECT_URI]),
                post_logout_redirect_uris: json(&[SCRIPT_URI]),
                allowed_roles: "[]".into(),
                issue_refresh_token: false,
                created_at: app.now().timestamp(),
                updated_at: app.now().timestamp(),
                launch_url: None,
            },
        )?;
    }
    login(&app, "ada@example.com").await?;
    let confirm_page = app.browser.get(format!("{}/logout", app.base)).send().await?.text().await?;
    let confirm = confirm_page
        .split("name=\"confirm\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no confirmation form")?
        .to_string();
    let before = app.counts()?;
    let asked = app
        .browser
        .get(format!(
            "{}/logout?client_id=legacy&post_logout_redirect_uri={}&state=s",
            app.base,
            enc(SCRIPT_URI)
        ))
        .send()
        .await?;
    // Our own confirmation form, posted with the script URI: the way on to the IdP.
    let confirmed = app
        .browser
        .post(format!("{}/logout", app.base))
        .form(&[
            ("confirm", confirm.as_str()),
            ("client_id", "legacy"),
            ("post_logout_redirect_uri", SCRIPT_URI),
            ("state", "s"),
        ])
        .send()
        .await?;
    for (name, resp) in [("GET", asked), ("confirmed POST", confirmed)] {
        let status = resp.status();
        let body = resp.text().await?;
        assert_eq!(status, 400, "{name}: refused like an unregistered URI: {body}");
        assert!(!body.contains("javascript:"), "{name}: no script link: {body}");
    }
    assert_eq!(app.counts()?, before, "nothing ended, no pending LogoutRequest, no audit row");
    assert_eq!(live(&app, "ada@example.com")?, 1, "ada's session lives on");
    assert!(has_session(&app, &app.browser).await?, "ada's browser kept its session cookie");
    Ok(())
}
both_backends!(a_script_post_logout_uri_is_refused, script_post_logout_uri);
