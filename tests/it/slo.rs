//! Single logout with the IdP: a sign-out here sends our signed LogoutRequest and the IdP's
//! signed LogoutResponse brings the browser back on its way; the IdP's signed LogoutRequest ends
//! the sessions it names and gets our signed LogoutResponse. Every refused message changes
//! nothing but one audit row.

use std::collections::BTreeMap;

use base64::Engine;
use ssobroker::devidp::{
    parse_logout_request, redirect_query_unsigned, DevIdp, LogoutRequestSpec, LogoutResponseSpec, SigAlg,
};

use crate::both_backends;
use crate::support::*;

const IDP_SLO: &str = "https://idp.test/slo";

fn slo_url(app: &TestApp) -> String {
    format!("{}/saml/{CONNECTION}/slo", app.base)
}

fn location(resp: &reqwest::Response) -> Result<String, Box<dyn std::error::Error>> {
    Ok(resp.headers().get("location").ok_or("no Location")?.to_str()?.to_string())
}

/// The SP signing certificate as the IdP admin gets it: from our SP metadata.
async fn sp_signing_cert(app: &TestApp) -> Result<openssl::x509::X509, Box<dyn std::error::Error>> {
    let xml = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", app.base)).await?.text().await?;
    let doc = roxmltree::Document::parse(&xml)?;
    let key = doc
        .descendants()
        .find(|n| n.has_tag_name("KeyDescriptor") && n.attribute("use") == Some("signing"))
        .ok_or("no signing KeyDescriptor in SP metadata")?;
    let b64: String = key
        .descendants()
        .find(|n| n.has_tag_name("X509Certificate"))
        .and_then(|n| n.text())
        .ok_or("no certificate")?
        .split_whitespace()
        .collect();
    Ok(openssl::x509::X509::from_der(&base64::engine::general_purpose::STANDARD.decode(b64)?)?)
}

/// Checks an HTTP-Redirect binding signature (SAML bindings 3.4.4.1) independently of the
/// broker, and returns the decoded parameters.
fn verify_redirect(
    url: &str,
    param: &str,
    cert: &openssl::x509::X509,
) -> Result<BTreeMap<String, String>, Box<dyn std::error::Error>> {
    let query = url.split_once('?').ok_or("no query")?.1;
    let raw: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let mut signed = format!("{param}={}", raw.get(param).ok_or("no message")?);
    if let Some(relay) = raw.get("RelayState") {
        signed.push_str(&format!("&RelayState={relay}"));
    }
    signed.push_str(&format!("&SigAlg={}", raw.get("SigAlg").ok_or("no SigAlg")?));
    let decoded: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    assert_eq!(decoded["SigAlg"], "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256");
    let signature = base64::engine::general_purpose::STANDARD.decode(&decoded["Signature"])?;
    let key = cert.public_key()?;
    let mut verifier = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)?;
    verifier.update(signed.as_bytes())?;
    assert!(verifier.verify(&signature)?, "the broker's redirect signature verifies with its SP certificate");
    Ok(decoded)
}

/// Inflates an HTTP-Redirect message value.
fn inflate(b64: &str) -> Result<String, Box<dyn std::error::Error>> {
    use std::io::Read;
    let deflated = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(deflated.as_slice()).read_to_string(&mut xml)?;
    Ok(xml)
}

/// How many live (unrevoked, unexpired) sessions the IdP's NameID has here.
fn live_sessions(app: &TestApp, name_id: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let mut c = app.pool.get()?;
    Ok(ssobroker::store::logouts::sessions_for_subject(
        &mut c,
        CONNECTION,
        name_id,
        &[],
        app.now().timestamp(),
    )?
    .len())
}

/// Logs in through /authorize and returns the ID token and the SessionIndex the IdP asserted.
async fn login(app: &TestApp, email: &str) -> Result<(String, String), Box<dyn std::error::Error>> {
    let at = app.authorize(&app.auth_url(&[])).await?;
    let spec = app.response(Some(&at.request_id), email, &["Engineering"]);
    let session_index = spec.assertion_id.clone();
    let q = redirect_query(app.post_signed(&spec, Some(&at.relay_state)).await?).await?;
    let tokens: serde_json::Value = app.token(&q["code"]).await?.json().await?;
    let id_token = tokens["id_token"].as_str().ok_or("no id_token")?.to_string();
    Ok((id_token, session_index))
}

/// Whether this browser still has a broker session: /authorize answers with a code at once.
async fn has_session(app: &TestApp) -> Result<bool, Box<dyn std::error::Error>> {
    let resp = app.browser.get(app.auth_url(&[])).send().await?;
    Ok(location(&resp)?.starts_with(REDIRECT_URI))
}

async fn sp_initiated(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    let cert = sp_signing_cert(&app).await?;
    let (id_token, session_index) = login(&app, "ada@example.com").await?;

    // Sign-out at the app: the broker session ends here and the browser goes to the IdP with our
    // signed LogoutRequest for the NameID and SessionIndex the IdP asserted.
    let logout = format!(
        "{}/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=s-1",
        app.base,
        url::form_urlencoded::byte_serialize(POST_LOGOUT_URI.as_bytes()).collect::<String>()
    );
    let resp = app.browser.get(&logout).send().await?;
    assert_eq!(resp.status(), 302);
    let to_idp = location(&resp)?;
    assert!(to_idp.starts_with(&format!("{IDP_SLO}?")), "{to_idp}");
    let q = verify_redirect(&to_idp, "SAMLRequest", &cert)?;
    let request = parse_logout_request(&q["SAMLRequest"], true)?;
    assert_eq!(request.name_id, "ada@example.com");
    assert_eq!(request.session_indexes, vec![session_index]);
    assert_eq!(request.issuer.as_deref(), Some(app.connection().sp.entity_id.as_str()));
    assert_eq!(request.destination.as_deref(), Some(IDP_SLO));
    assert!(!request.id.starts_with(|c: char| c.is_ascii_digit()));
    assert_eq!(live_sessions(&app, "ada@example.com")?, 0, "the broker session ended before the IdP answers");
    assert!(!has_session(&app).await?);
    assert_eq!(app.counts()?["saml_logouts"], 1);

    // The IdP's signed LogoutResponse sends the browser on to the app's post-logout URI.
    let spec = LogoutResponseSpec::new(&app.idp, &slo_url(&app), &request.id, app.now());
    let query = app.idp.redirect_query(
        "SAMLResponse",
        &app.idp.logout_response_xml(&spec),
        None,
        SigAlg::RsaSha256,
    )?;
    let resp = app.browser.get(format!("{}?{query}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 302);
    assert_eq!(location(&resp)?, format!("{POST_LOGOUT_URI}?state=s-1"));
    assert_eq!(app.counts()?["saml_logouts"], 0);
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!((last.kind.as_str(), last.reason.as_deref()), ("logout.idp_answered", None));

    // The same response again: nothing is pending for it any more.
    let before = app.counts()?;
    let resp = app.browser.get(format!("{}?{query}", slo_url(&app))).send().await?;
    assert_logout_refused(&app, resp, &before, "logout_response_unknown").await
}
both_backends!(sp_initiated_logout_round_trip, sp_initiated);

/// The NameID's qualifiers (as ADFS and Shibboleth assert them) go back in our LogoutRequest.
async fn qualified_name_id(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let mut spec = app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]);
    spec.name_qualifiers =
        Some(("http://adfs.example/adfs/services/trust".into(), app.connection().sp.entity_id.clone()));
    let q = redirect_query(app.post_signed(&spec, Some(&at.relay_state)).await?).await?;
    let tokens: serde_json::Value = app.token(&q["code"]).await?.json().await?;
    let id_token = tokens["id_token"].as_str().ok_or("no id_token")?;
    let to_idp =
        location(&app.browser.get(format!("{}/logout?id_token_hint={id_token}", app.base)).send().await?)?;
    let q: BTreeMap<String, String> = url::Url::parse(&to_idp)?.query_pairs().into_owned().collect();
    let xml = inflate(&q["SAMLRequest"])?;
    let doc = roxmltree::Document::parse(&xml)?;
    let name_id = doc.descendants().find(|n| n.has_tag_name("NameID")).ok_or("no NameID")?;
    assert_eq!(name_id.attribute("NameQualifier"), Some("http://adfs.example/adfs/services/trust"), "{xml}");
    assert_eq!(name_id.attribute("SPNameQualifier"), Some(app.connection().sp.entity_id.as_str()), "{xml}");
    assert_eq!(name_id.text(), Some("ada@example.com"));
    Ok(())
}
both_backends!(logout_request_sends_the_name_id_qualifiers_back, qualified_name_id);

async fn sp_initiated_without_app(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    // The portal's sign-out: our confirmation form, no app to return to.
    let cookie_page = app.browser.get(format!("{}/logout", app.base)).send().await?.text().await?;
    let confirm = cookie_page
        .split("name=\"confirm\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no confirmation token")?
        .to_string();
    let resp = app.browser.post(format!("{}/logout", app.base)).form(&[("confirm", confirm)]).send().await?;
    let to_idp = location(&resp)?;
    let q: BTreeMap<String, String> = url::Url::parse(&to_idp)?.query_pairs().into_owned().collect();
    let request = parse_logout_request(&q["SAMLRequest"], true)?;

    // The IdP could not end every session: the broker's page says so.
    let mut spec = LogoutResponseSpec::new(&app.idp, &slo_url(&app), &request.id, app.now());
    spec.sub_status = Some("urn:oasis:names:tc:SAML:2.0:status:PartialLogout".into());
    let query = app.idp.redirect_query(
        "SAMLResponse",
        &app.idp.logout_response_xml(&spec),
        None,
        SigAlg::RsaSha256,
    )?;
    let resp = app.browser.get(format!("{}?{query}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await?;
    assert!(body.contains("Signed out") && body.contains("could not end its own session"), "{body}");
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(last.reason.as_deref(), Some("idp_logout_incomplete"));
    Ok(())
}
both_backends!(sp_initiated_logout_from_the_portal_reports_partial_logout, sp_initiated_without_app);

/// An app's sign-out whose IdP could not end its own session: the user is told so before
/// going on to the app (a bare redirect would look like a complete sign-out).
async fn app_logout_idp_refuses(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    let (id_token, _) = login(&app, "ada@example.com").await?;
    let logout = format!(
        "{}/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=s-2",
        app.base,
        url::form_urlencoded::byte_serialize(POST_LOGOUT_URI.as_bytes()).collect::<String>()
    );
    let to_idp = location(&app.browser.get(&logout).send().await?)?;
    let q: BTreeMap<String, String> = url::Url::parse(&to_idp)?.query_pairs().into_owned().collect();
    let request = parse_logout_request(&q["SAMLRequest"], true)?;
    let mut spec = LogoutResponseSpec::new(&app.idp, &slo_url(&app), &request.id, app.now());
    spec.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".into();
    let query = app.idp.redirect_query(
        "SAMLResponse",
        &app.idp.logout_response_xml(&spec),
        None,
        SigAlg::RsaSha256,
    )?;
    let resp = app.browser.get(format!("{}?{query}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 200, "a page, not a redirect straight to the app");
    let body = resp.text().await?;
    assert!(body.contains("could not end its own session"), "{body}");
    assert!(
        body.contains(&format!(r#"href="{POST_LOGOUT_URI}?state&#x3D;s-2""#)),
        "a link on to the app: {body}"
    );
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(
        (last.kind.as_str(), last.reason.as_deref()),
        ("logout.idp_answered", Some("idp_logout_incomplete"))
    );
    Ok(())
}
both_backends!(app_logout_the_idp_could_not_complete_says_so_before_the_app, app_logout_idp_refuses);

/// Two sign-outs of one session at once (a double click): one `logout` row and one
/// LogoutRequest to the IdP; the other finds the session already ended.
async fn double_sign_out(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    let (id_token, _) = login(&app, "ada@example.com").await?;
    let logout = format!("{}/logout?id_token_hint={id_token}", app.base);
    let (a, b) = tokio::join!(app.browser.get(&logout).send(), app.browser.get(&logout).send());
    let to_idp = [a?, b?].iter().filter(|r| location(r).is_ok_and(|l| l.starts_with(IDP_SLO))).count();
    assert_eq!(to_idp, 1, "one LogoutRequest goes to the IdP");
    assert_eq!(app.counts()?["saml_logouts"], 1, "one pending LogoutRequest");
    let logouts = app.audit()?.into_iter().filter(|r| r.kind == "logout").count();
    assert_eq!(logouts, 1, "one logout row");
    Ok(())
}
both_backends!(a_double_sign_out_sends_one_logout_request, double_sign_out);

async fn idp_initiated(b: Backend) -> TestResult {
    let mut app = app(b).with_idp_slo(IDP_SLO).start().await?;
    let cert = sp_signing_cert(&app).await?;
    let (_, first_index) = login(&app, "ada@example.com").await?;
    let first_browser = app.browser.clone();
    app.new_browser()?;
    login(&app, "ada@example.com").await?;
    assert_eq!(live_sessions(&app, "ada@example.com")?, 2);

    // The IdP ends the first IdP session (HTTP-Redirect): only the broker session it started ends.
    let mut spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "ada@example.com", app.now());
    spec.session_indexes = vec![first_index];
    let query = app.idp.redirect_query(
        "SAMLRequest",
        &app.idp.logout_request_xml(&spec),
        Some("idp-relay"),
        SigAlg::RsaSha256,
    )?;
    let resp = first_browser.get(format!("{}?{query}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 302);
    let back = location(&resp)?;
    assert!(back.starts_with(&format!("{IDP_SLO}?")), "{back}");
    let q = verify_redirect(&back, "SAMLResponse", &cert)?;
    assert_eq!(q["RelayState"], "idp-relay");
    let answer = inflate(&q["SAMLResponse"])?;
    assert!(answer.contains(&format!("InResponseTo=\"{}\"", spec.id)), "{answer}");
    assert!(answer.contains("urn:oasis:names:tc:SAML:2.0:status:Success"), "{answer}");
    assert_eq!(live_sessions(&app, "ada@example.com")?, 1);
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(last.kind, "logout.idp_initiated");
    let detail: serde_json::Value = serde_json::from_str(&last.detail)?;
    assert_eq!(detail["sessions_ended"], 1);
    assert!(has_session(&app).await?, "the other browser's session lives on");

    // Replayed: refused, nothing changes.
    let before = app.counts()?;
    let resp = first_browser.get(format!("{}?{query}", slo_url(&app))).send().await?;
    assert_logout_refused(&app, resp, &before, "logout_request_replayed").await?;
    assert_eq!(live_sessions(&app, "ada@example.com")?, 1);

    // Without a SessionIndex, over HTTP-POST: every session of the NameID ends.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "ada@example.com", app.now());
    let signed = app.idp.sign_message(&app.idp.logout_request_xml(&spec), &spec.id, SigAlg::RsaSha256)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(signed);
    let resp = app.browser.post(slo_url(&app)).form(&[("SAMLRequest", b64.as_str())]).send().await?;
    assert_eq!(resp.status(), 302);
    verify_redirect(&location(&resp)?, "SAMLResponse", &cert)?;
    assert_eq!(live_sessions(&app, "ada@example.com")?, 0);
    assert!(!has_session(&app).await?);
    Ok(())
}
both_backends!(idp_initiated_logout_ends_the_named_sessions, idp_initiated);

/// An admin console session signed in through SSO ends with the broker session it came from: an
/// IdP sign-out (say, after the account was compromised) leaves no console access behind.
async fn console_follows_idp_logout(b: Backend) -> TestResult {
    let app =
        app(b).with_idp_slo(IDP_SLO).with_config(|c| c.admin_role = Some("admin".into())).start().await?;
    app.login_code("root@example.com", &["IT-Admins"]).await?;
    assert_eq!(app.browser.get(format!("{}/admin/sso", app.base)).send().await?.status(), 200);
    assert_eq!(app.browser.get(format!("{}/admin/users", app.base)).send().await?.status(), 200);

    // The IdP's LogoutRequest arrives through another browser (its front channel elsewhere):
    // the admin's browser keeps its cookies, and still loses the console.
    let spec = LogoutRequestSpec::new(&app.idp, &slo_url(&app), "root@example.com", app.now());
    let signed = app.idp.sign_message(&app.idp.logout_request_xml(&spec), &spec.id, SigAlg::RsaSha256)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(signed);
    let elsewhere = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let resp = elsewhere.post(slo_url(&app)).form(&[("SAMLRequest", b64.as_str())]).send().await?;
    assert_eq!(resp.status(), 302);
    let resp = app.browser.get(format!("{}/admin/users", app.base)).send().await?;
    assert_eq!(resp.status(), 303, "the console session ended with the broker session");

    // Signed in again: a sign-out at the broker ends the console too.
    app.login_code("root@example.com", &["IT-Admins"]).await?;
    assert_eq!(app.browser.get(format!("{}/admin/sso", app.base)).send().await?.status(), 200);
    assert_eq!(app.browser.get(format!("{}/admin/users", app.base)).send().await?.status(), 200);
    let page = app.browser.get(format!("{}/logout", app.base)).send().await?.text().await?;
    let confirm = page
        .split("name=\"confirm\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no confirmation token")?
        .to_string();
    app.browser.post(format!("{}/logout", app.base)).form(&[("confirm", confirm)]).send().await?;
    let resp = app.browser.get(format!("{}/admin/users", app.base)).send().await?;
    assert_eq!(resp.status(), 303, "the console session ended with the broker sign-out");
    Ok(())
}
both_backends!(sso_admin_console_ends_with_the_broker_session, console_follows_idp_logout);

/// A refused logout message: a generic 400 page with a reference, one `logout.refused` audit
/// row with the reason, and no other table changed.
async fn assert_logout_refused(
    app: &TestApp,
    resp: reqwest::Response,
    before: &BTreeMap<&'static str, i64>,
    reason: &str,
) -> TestResult {
    let status = resp.status();
    let body = resp.text().await?;
    assert_eq!(status, 400, "expected refusal ({reason}), got {status}: {body}");
    assert!(body.contains("Support reference"), "error page carries a reference id");
    assert!(!body.contains("Signature") && !body.contains("saml:"), "no internal or SAML text on the page");
    let after = app.counts()?;
    for (table, n) in &after {
        let expected = before[table] + i64::from(*table == "audit_events");
        assert_eq!(*n, expected, "table {table} changed on a refused logout message ({reason})");
    }
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!((last.kind.as_str(), last.reason.as_deref()), ("logout.refused", Some(reason)));
    assert_eq!(last.connection_id.as_deref(), Some(CONNECTION));
    Ok(())
}

async fn refusals(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    login(&app, "ada@example.com").await?;
    let slo = slo_url(&app);
    let now = app.now();
    let valid = || LogoutRequestSpec::new(&app.idp, &slo, "ada@example.com", now);
    let attacker = DevIdp::generate(&app.idp.entity_id, &app.idp.sso_url)?;
    let redirect = |idp: &DevIdp, spec: &LogoutRequestSpec, alg| {
        idp.redirect_query("SAMLRequest", &idp.logout_request_xml(spec), None, alg)
    };

    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    let spec = valid();
    cases.push((
        "unsigned",
        redirect_query_unsigned("SAMLRequest", &app.idp.logout_request_xml(&spec), None),
        "signature_missing",
    ));
    cases.push(("another key", redirect(&attacker, &valid(), SigAlg::RsaSha256)?, "signature_invalid"));
    cases.push(("rsa-sha1", redirect(&app.idp, &valid(), SigAlg::RsaSha1)?, "algorithm_not_allowed"));
    let spec = LogoutRequestSpec { issuer: "https://evil.test/metadata".into(), ..valid() };
    cases.push(("wrong issuer", redirect(&app.idp, &spec, SigAlg::RsaSha256)?, "issuer_mismatch"));
    let spec = LogoutRequestSpec { destination: Some(format!("{}/saml/other/slo", app.base)), ..valid() };
    cases.push(("wrong destination", redirect(&app.idp, &spec, SigAlg::RsaSha256)?, "destination_mismatch"));
    let spec = LogoutRequestSpec { destination: None, ..valid() };
    cases.push(("no destination", redirect(&app.idp, &spec, SigAlg::RsaSha256)?, "destination_mismatch"));
    let spec = LogoutRequestSpec { issue_instant: now - chrono::Duration::hours(1), ..valid() };
    cases.push(("stale", redirect(&app.idp, &spec, SigAlg::RsaSha256)?, "expired"));
    let spec = LogoutRequestSpec { issue_instant: now + chrono::Duration::hours(1), ..valid() };
    cases.push(("from the future", redirect(&app.idp, &spec, SigAlg::RsaSha256)?, "not_yet_valid"));
    // The signature over one NameID, the message swapped for another.
    let signed = redirect(&app.idp, &valid(), SigAlg::RsaSha256)?;
    let other = LogoutRequestSpec { name_id: "boss@example.com".into(), ..valid() };
    let swapped_message = redirect_query_unsigned("SAMLRequest", &app.idp.logout_request_xml(&other), None);
    let signature_part = signed.split_once("&SigAlg=").ok_or("no SigAlg")?.1;
    cases.push(("tampered", format!("{swapped_message}&SigAlg={signature_part}"), "signature_invalid"));
    // A LogoutResponse nobody asked for.
    let response = LogoutResponseSpec::new(&app.idp, &slo, "_never-sent", now);
    let query = app.idp.redirect_query(
        "SAMLResponse",
        &app.idp.logout_response_xml(&response),
        None,
        SigAlg::RsaSha256,
    )?;
    cases.push(("unsolicited response", query, "logout_response_unknown"));
    cases.push(("garbage", "SAMLRequest=%%%&SigAlg=x&Signature=y".into(), "algorithm_not_allowed"));

    for (name, query, reason) in cases {
        let before = app.counts()?;
        let resp = app.browser.get(format!("{slo}?{query}")).send().await?;
        assert_logout_refused(&app, resp, &before, reason).await.map_err(|e| format!("{name}: {e}"))?;
        assert_eq!(live_sessions(&app, "ada@example.com")?, 1, "{name}: the session lives on");
    }

    // HTTP-POST: unsigned, a DOCTYPE, a comment splitting the NameID, broken base64.
    let spec = valid();
    let xml = app.idp.logout_request_xml(&spec);
    let signed = app.idp.sign_message(&xml, &spec.id, SigAlg::RsaSha256)?;
    let with_doctype = format!("<!DOCTYPE x [<!ENTITY e \"x\">]>{signed}");
    let with_comment = signed.replacen("ada@example.com", "ada@example.com<!---->.evil", 1);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (name, value, reason) in [
        ("unsigned post", b64(&xml), "signature_missing"),
        ("doctype", b64(&with_doctype), "dtd_forbidden"),
        ("comment", b64(&with_comment), "signature_policy"),
        ("bad base64", "@@not base64@@".to_string(), "bad_encoding"),
    ] {
        let before = app.counts()?;
        let resp = app.browser.post(&slo).form(&[("SAMLRequest", value.as_str())]).send().await?;
        assert_logout_refused(&app, resp, &before, reason).await.map_err(|e| format!("{name}: {e}"))?;
        assert_eq!(live_sessions(&app, "ada@example.com")?, 1, "{name}: the session lives on");
    }

    // Neither or both kinds of message: a plain 400 without touching the database.
    let before = app.counts()?;
    let resp = app.browser.get(format!("{slo}?RelayState=x")).send().await?;
    assert_eq!(resp.status(), 400);
    let resp = app.browser.post(&slo).form(&[("SAMLRequest", "a"), ("SAMLResponse", "b")]).send().await?;
    assert_eq!(resp.status(), 400);
    assert_eq!(app.counts()?, before);
    Ok(())
}
both_backends!(logout_messages_refused_change_nothing, refusals);

async fn sp_metadata(b: Backend) -> TestResult {
    let with = app(b).with_idp_slo(IDP_SLO).start().await?;
    let xml = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", with.base)).await?.text().await?;
    assert!(xml.contains(&format!("Location=\"{}\"", slo_url(&with))), "{xml}");
    assert!(xml.contains("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"));
    // The same certificate as a file, for IdP consoles that want one uploaded.
    let pem = reqwest::get(format!("{}/saml/{CONNECTION}/signing-certificate.pem", with.base))
        .await?
        .text()
        .await?;
    assert_eq!(
        openssl::x509::X509::from_pem(pem.as_bytes())?.to_der()?,
        sp_signing_cert(&with).await?.to_der()?
    );

    // Without an IdP endpoint single logout stays off, unless configured on (the IdP admin
    // enters our endpoint first); configured off, the endpoint does not exist.
    let without = app(b).start().await?;
    let xml = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", without.base)).await?.text().await?;
    assert!(!xml.contains("SingleLogoutService"), "{xml}");
    let pem = reqwest::get(format!("{}/saml/{CONNECTION}/signing-certificate.pem", without.base)).await?;
    assert_eq!(pem.status(), 404, "no SP signing key, no certificate");
    let on = app(b).with_config(|c| c.connections[0].single_logout = Some(true)).start().await?;
    let xml = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", on.base)).await?.text().await?;
    assert!(xml.contains("SingleLogoutService"), "{xml}");
    let off = app(b)
        .with_idp_slo(IDP_SLO)
        .with_config(|c| c.connections[0].single_logout = Some(false))
        .start()
        .await?;
    let xml = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", off.base)).await?.text().await?;
    assert!(!xml.contains("SingleLogoutService"), "{xml}");
    assert_eq!(reqwest::get(slo_url(&off)).await?.status(), 404);

    // Off: a sign-out stays local.
    login(&off, "ada@example.com").await?;
    let page = off.browser.get(format!("{}/logout", off.base)).send().await?.text().await?;
    let confirm =
        page.split("name=\"confirm\" value=\"").nth(1).and_then(|s| s.split('"').next()).ok_or("no form")?;
    let resp = off.browser.post(format!("{}/logout", off.base)).form(&[("confirm", confirm)]).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(off.counts()?["saml_logouts"], 0);
    Ok(())
}
both_backends!(sp_metadata_lists_single_logout_when_on, sp_metadata);

/// The IdP's answer arrives after the user signed in again (a slow IdP, a tab left open): the
/// new session stays, in the database and in the browser's cookie. A reload of the answer
/// says the sign-out is already done rather than asking to sign out again.
async fn late_answer(b: Backend) -> TestResult {
    let app = app(b).with_idp_slo(IDP_SLO).start().await?;
    let (id_token, _) = login(&app, "ada@example.com").await?;
    let resp = app.browser.get(format!("{}/logout?id_token_hint={id_token}", app.base)).send().await?;
    let q: BTreeMap<String, String> =
        url::Url::parse(&location(&resp)?)?.query_pairs().into_owned().collect();
    let request = parse_logout_request(&q["SAMLRequest"], true)?;
    login(&app, "ada@example.com").await?;

    let spec = LogoutResponseSpec::new(&app.idp, &slo_url(&app), &request.id, app.now());
    let query = app.idp.redirect_query(
        "SAMLResponse",
        &app.idp.logout_response_xml(&spec),
        None,
        SigAlg::RsaSha256,
    )?;
    let resp = app.browser.get(format!("{}?{query}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 200, "the broker's signed-out page");
    assert!(resp.headers().get("set-cookie").is_none(), "the newer session's cookie stays");
    assert!(resp.text().await?.contains("identity provider) too"));
    assert_eq!(live_sessions(&app, "ada@example.com")?, 1);
    assert!(has_session(&app).await?);

    let resp = app.browser.get(format!("{}?{query}", slo_url(&app))).send().await?;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await?;
    assert!(body.contains("Already signed out") && body.contains("Support reference"), "{body}");
    assert!(has_session(&app).await?);
    Ok(())
}
both_backends!(late_logout_answer_leaves_a_newer_session_alone, late_answer);
