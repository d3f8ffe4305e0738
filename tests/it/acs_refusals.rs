//! Every SAML check at the ACS, from the outside: the bad response is refused with a stable
//! reason, the page is generic, and nothing but one audit row is written.

use crate::both_backends;
use crate::support::*;
use base64::Engine;
use ssobroker::devidp::{DevIdp, ResponseSpec, SigAlg};

fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// Starts a real login and returns the app, the IdP-side request and the counts before the ACS.
async fn started(
    backend: Backend,
) -> Result<(TestApp, AtIdp, std::collections::BTreeMap<&'static str, i64>), Box<dyn std::error::Error>> {
    let app = app(backend).start().await?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let before = app.counts()?;
    Ok((app, at, before))
}

/// Signs `spec`, lets `tamper` edit the signed XML, posts it, and checks the refusal.
async fn refused_with(
    backend: Backend,
    reason: &str,
    edit_spec: impl FnOnce(&mut ResponseSpec, &TestApp),
    tamper: impl FnOnce(String) -> String,
) -> TestResult {
    let (app, at, before) = started(backend).await?;
    let mut spec = app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]);
    edit_spec(&mut spec, &app);
    let xml = tamper(app.idp.sign_response(&spec)?);
    let resp = app.post_acs(&b64(&xml), Some(&at.relay_state)).await?;
    assert_refused(&app, resp, &before, reason).await
}

async fn tampered_name_id(b: Backend) -> TestResult {
    refused_with(
        b,
        "signature_invalid",
        |_, _| {},
        |x| x.replace("ada@example.com</saml:NameID>", "admin@example.com</saml:NameID>"),
    )
    .await
}
both_backends!(tampered_signature, tampered_name_id);

async fn attacker_key(b: Backend) -> TestResult {
    // Signed by a key the broker never pinned; its certificate rides along in KeyInfo.
    let (app, at, before) = started(b).await?;
    let attacker = DevIdp::generate(&app.idp.entity_id, &app.idp.sso_url)?;
    let spec = app.response(Some(&at.request_id), "ada@example.com", &[]);
    let xml = attacker.sign_response(&spec)?;
    assert!(xml.contains("X509Certificate"), "the attacker's cert is carried in the message");
    let resp = app.post_acs(&b64(&xml), Some(&at.relay_state)).await?;
    assert_refused(&app, resp, &before, "signature_invalid").await
}
both_backends!(cert_carried_in_message, attacker_key);

async fn comment_in_name_id(b: Backend) -> TestResult {
    refused_with(
        b,
        "signature_policy",
        |_, _| {},
        |x| x.replace("ada@example.com</saml:NameID>", "ada@example.com<!---->.evil.org</saml:NameID>"),
    )
    .await
}
both_backends!(comment_inside_name_id, comment_in_name_id);

async fn two_assertions(b: Backend) -> TestResult {
    refused_with(
        b,
        "multiple_assertions",
        |_, _| {},
        |x| {
            // A second, unsigned assertion appended after the signed one.
            let start = x.find("<saml:Assertion").unwrap_or(0);
            let end = x.find("</saml:Assertion>").map(|e| e + "</saml:Assertion>".len()).unwrap_or(0);
            let evil =
                x[start..end].replace("ada@example.com", "admin@example.com").replace("ID=\"", "ID=\"evil");
            x.replacen("</samlp:Response>", &format!("{evil}</samlp:Response>"), 1)
        },
    )
    .await
}
both_backends!(two_assertions_refused, two_assertions);

async fn dtd(b: Backend) -> TestResult {
    refused_with(
        b,
        "dtd_forbidden",
        |_, _| {},
        |x| {
            let body = x.trim_start_matches(|c| c != '<').to_string();
            let body = if body.starts_with("<?xml") {
                body[body.find("?>").map(|i| i + 2).unwrap_or(0)..].to_string()
            } else {
                body
            };
            format!("<!DOCTYPE r [<!ENTITY e SYSTEM \"http://127.0.0.1:9/canary\">]>{body}")
        },
    )
    .await
}
both_backends!(doctype_refused, dtd);

async fn wrong_audience(b: Backend) -> TestResult {
    refused_with(b, "audience_mismatch", |s, _| s.audience = Some("https://other-sp.example".into()), |x| x)
        .await
}
both_backends!(wrong_audience_refused, wrong_audience);

async fn no_audience(b: Backend) -> TestResult {
    refused_with(b, "audience_mismatch", |s, _| s.audience = None, |x| x).await
}
both_backends!(missing_audience_refused, no_audience);

async fn wrong_recipient(b: Backend) -> TestResult {
    refused_with(
        b,
        "recipient_mismatch",
        |s, _| {
            s.recipient = "https://evil.example/acs".into();
            s.destination = None;
        },
        |x| x,
    )
    .await
}
both_backends!(wrong_recipient_refused, wrong_recipient);

async fn wrong_destination(b: Backend) -> TestResult {
    refused_with(
        b,
        "destination_mismatch",
        |s, _| s.destination = Some("https://evil.example/acs".into()),
        |x| x,
    )
    .await
}
both_backends!(wrong_destination_refused, wrong_destination);

async fn wrong_issuer(b: Backend) -> TestResult {
    refused_with(b, "issuer_mismatch", |s, _| s.issuer = "https://other-idp.example".into(), |x| x).await
}
both_backends!(wrong_issuer_refused, wrong_issuer);

async fn expired(b: Backend) -> TestResult {
    refused_with(
        b,
        "expired",
        |s, app| {
            // Beyond the 2-minute skew.
            s.issue_instant = app.now() - chrono::Duration::minutes(10);
            s.not_before = Some(app.now() - chrono::Duration::minutes(10));
            s.not_on_or_after = Some(app.now() - chrono::Duration::minutes(3));
        },
        |x| x,
    )
    .await
}
both_backends!(expired_refused, expired);

async fn not_yet_valid(b: Backend) -> TestResult {
    refused_with(
        b,
        "not_yet_valid",
        |s, app| {
            s.not_before = Some(app.now() + chrono::Duration::minutes(3));
            s.not_on_or_after = Some(app.now() + chrono::Duration::minutes(8));
        },
        |x| x,
    )
    .await
}
both_backends!(not_yet_valid_refused, not_yet_valid);

async fn skew_tolerated(b: Backend) -> TestResult {
    // One minute in the future is inside the default 2-minute skew: accepted.
    let app = app(b).start().await?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let mut spec = app.response(Some(&at.request_id), "ada@example.com", &[]);
    spec.not_before = Some(app.now() + chrono::Duration::minutes(1));
    let q = redirect_query(app.post_signed(&spec, Some(&at.relay_state)).await?).await?;
    assert!(q.contains_key("code"));
    Ok(())
}
both_backends!(clock_skew_tolerated, skew_tolerated);

async fn sha1(b: Backend) -> TestResult {
    refused_with(b, "algorithm_not_allowed", |s, _| s.alg = SigAlg::RsaSha1, |x| x).await
}
both_backends!(sha1_refused_by_default, sha1);

async fn failed_status(b: Backend) -> TestResult {
    refused_with(
        b,
        "status_not_success",
        |s, _| {
            s.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".into();
            s.sign = ssobroker::devidp::SignMode::Response;
        },
        |x| x,
    )
    .await
}
both_backends!(non_success_status_refused, failed_status);

async fn signature_removed(b: Backend) -> TestResult {
    refused_with(b, "signature_missing", |s, _| s.sign = ssobroker::devidp::SignMode::Unsigned, |x| x).await
}
both_backends!(unsigned_refused, signature_removed);

async fn replay(b: Backend) -> TestResult {
    let mut app = app(b).start().await?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let b64 = app.idp.sign_response_b64(&app.response(Some(&at.request_id), "ada@example.com", &[]))?;
    let first = app.post_acs(&b64, Some(&at.relay_state)).await?;
    assert_eq!(first.status(), 302);
    let before = app.counts()?;
    app.new_browser()?;
    let second = app.post_acs(&b64, Some(&at.relay_state)).await?;
    assert_refused(&app, second, &before, "assertion_replayed").await
}
both_backends!(replayed_assertion_refused, replay);

async fn unknown_in_response_to(b: Backend) -> TestResult {
    let (app, at, before) = started(b).await?;
    let spec = app.response(Some("_not-a-request-we-sent"), "ada@example.com", &[]);
    let resp = app.post_signed(&spec, Some(&at.relay_state)).await?;
    assert_refused(&app, resp, &before, "in_response_to_unknown").await
}
both_backends!(unknown_in_response_to_refused, unknown_in_response_to);

async fn relay_state_swapped(b: Backend) -> TestResult {
    // A response for this request carried with another login's RelayState.
    let (app, at, _) = started(b).await?;
    let other = app.authorize(&app.auth_url(&[])).await?;
    let before = app.counts()?;
    let resp = app
        .post_signed(&app.response(Some(&at.request_id), "ada@example.com", &[]), Some(&other.relay_state))
        .await?;
    assert_refused(&app, resp, &before, "relay_state_mismatch").await
}
both_backends!(relay_state_must_match_request, relay_state_swapped);

async fn unsolicited(b: Backend) -> TestResult {
    let (app, _, before) = started(b).await?;
    let resp = app.post_signed(&app.response(None, "ada@example.com", &[]), None).await?;
    assert_refused(&app, resp, &before, "unsolicited_response").await
}
both_backends!(unsolicited_refused, unsolicited);

async fn domain_look_alike(b: Backend) -> TestResult {
    let (app, at, before) = started(b).await?;
    let resp = app
        .post_signed(
            &app.response(Some(&at.request_id), "ada@example.com.evil.org", &[]),
            Some(&at.relay_state),
        )
        .await?;
    assert_refused(&app, resp, &before, "domain_not_allowed").await
}
both_backends!(domain_look_alike_refused, domain_look_alike);

async fn login_expired(b: Backend) -> TestResult {
    let (app, at, before) = started(b).await?;
    app.clock.advance(chrono::Duration::minutes(11));
    let resp = app
        .post_signed(&app.response(Some(&at.request_id), "ada@example.com", &[]), Some(&at.relay_state))
        .await?;
    assert_refused(&app, resp, &before, "login_expired").await
}
both_backends!(stale_login_transaction_refused, login_expired);

#[actix_web::test]
async fn garbage_inputs_refused() -> TestResult {
    let (app, at, mut before) = started(Backend::Sqlite).await?;
    let cases: Vec<(String, &str)> = vec![
        ("%%%not base64%%%".into(), "bad_encoding"),
        (b64("<samlp:Response"), "malformed_xml"),
        (b64("<notsaml/>"), "not_a_response"),
    ];
    for (input, reason) in &cases {
        let resp = app.post_acs(input, Some(&at.relay_state)).await?;
        assert_refused(&app, resp, &before, reason).await?;
        before = app.counts()?;
    }
    // Oversized body: refused before any parsing.
    let big = "A".repeat(600 * 1024);
    let resp = app.post_acs(&big, Some(&at.relay_state)).await?;
    assert!(
        resp.status() == 400 || resp.status() == 403 || resp.status() == 413,
        "oversized body got {}",
        resp.status()
    );
    // The worker is still healthy.
    assert_eq!(reqwest::get(format!("{}/healthz", app.base)).await?.status(), 200);
    Ok(())
}

async fn other_browser(b: Backend) -> TestResult {
    // Login CSRF: a valid response for a login started in one browser, posted from another.
    let mut app = app(b).with_config(|c| c.bind_login_to_browser = Some(true)).start().await?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let b64 = app.idp.sign_response_b64(&app.response(Some(&at.request_id), "ada@example.com", &[]))?;
    let starter = app.browser.clone();
    app.new_browser()?;
    let before = app.counts()?;
    let resp = app.post_acs(&b64, Some(&at.relay_state)).await?;
    assert_refused(&app, resp, &before, "browser_mismatch").await?;
    // The browser that started the login still completes it (the refusal consumed nothing).
    app.browser = starter;
    let q = redirect_query(app.post_acs(&b64, Some(&at.relay_state)).await?).await?;
    assert!(q.contains_key("code"));
    Ok(())
}
both_backends!(response_from_another_browser_refused, other_browser);

#[actix_web::test]
async fn parser_bombs_refused_cheaply() -> TestResult {
    // Deep nesting (a recursive parser would overflow its stack) and a namespace bomb (quadratic
    // in roxmltree): both refused by the flat pre-scan, and the broker stays up.
    let (app, at, mut before) = started(Backend::Sqlite).await?;
    let deep = format!(
        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\">{}{}</samlp:Response>",
        "<a>".repeat(20_000),
        "</a>".repeat(20_000)
    );
    let decls: String = (0..2000).map(|i| format!(" xmlns:n{i}=\"urn:x:{i}\"")).collect();
    let children: String = (0..2000).map(|i| format!("<c xmlns:m{i}=\"urn:y\"/>")).collect();
    let bomb = format!("<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"{decls}>{children}</samlp:Response>");
    for doc in [deep, bomb] {
        let started_at = std::time::Instant::now();
        let resp = app.post_acs(&b64(&doc), Some(&at.relay_state)).await?;
        assert_refused(&app, resp, &before, "malformed_xml").await?;
        assert!(started_at.elapsed() < std::time::Duration::from_secs(5), "refused quickly");
        before = app.counts()?;
    }
    assert_eq!(reqwest::get(format!("{}/healthz", app.base)).await?.status(), 200);
    Ok(())
}
