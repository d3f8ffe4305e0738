//! OIDC checks from the outside: redirect_uri, PKCE, single-use codes, client authentication,
//! client access by role. Each refusal writes nothing but its audit row.

use crate::both_backends;
use crate::support::*;

fn changed_only_audit(
    before: &std::collections::BTreeMap<&'static str, i64>,
    after: &std::collections::BTreeMap<&'static str, i64>,
    audit_rows: i64,
) {
    for (t, n) in after {
        let expected = before[t] + if *t == "audit_events" { audit_rows } else { 0 };
        assert_eq!(*n, expected, "table {t}");
    }
}

async fn authorize_redirect_mismatch(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let before = app.counts()?;
    let url = app.auth_url(&[]).replace("127.0.0.1%3A9%2Fcallback", "127.0.0.1%3A9%2Fcallback%2Fevil");
    let resp = app.browser.get(&url).send().await?;
    assert_eq!(resp.status(), 400, "an unregistered redirect_uri gets an error page");
    assert!(resp.headers().get("location").is_none(), "never a redirect to an unregistered URI");
    let unknown =
        app.browser.get(app.auth_url(&[]).replace("client_id=dashboard", "client_id=nobody")).send().await?;
    assert_eq!(unknown.status(), 400);
    changed_only_audit(&before, &app.counts()?, 0);
    Ok(())
}
both_backends!(redirect_uri_must_match_exactly, authorize_redirect_mismatch);

async fn wrong_verifier(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    let before = app.counts()?;
    let resp = reqwest::Client::new()
        .post(format!("{}/token", app.base))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", "x".repeat(43).as_str()),
        ])
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["error"], "invalid_grant");
    changed_only_audit(&before, &app.counts()?, 1);
    assert_eq!(app.audit()?.pop().ok_or("no audit")?.kind, "token.failed");
    Ok(())
}
both_backends!(wrong_pkce_verifier_refused, wrong_verifier);

async fn reused_code(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    let first = app.token(&q["code"]).await?;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "no-store");
    let tokens: serde_json::Value = first.json().await?;
    let access = tokens["access_token"].as_str().ok_or("no access token")?.to_string();
    let userinfo = |t: String| {
        let base = app.base.clone();
        async move { reqwest::Client::new().get(format!("{base}/userinfo")).bearer_auth(t).send().await }
    };
    assert_eq!(userinfo(access.clone()).await?.status(), 200);
    let second = app.token(&q["code"]).await?;
    assert_eq!(second.status(), 400);
    assert_eq!(second.json::<serde_json::Value>().await?["error"], "invalid_grant");
    // The reuse revoked what the code had issued.
    let after = userinfo(access).await?;
    assert_eq!(after.status(), 401);
    assert!(after.headers()["www-authenticate"].to_str()?.contains("invalid_token"));
    Ok(())
}
both_backends!(reused_code_revokes_tokens, reused_code);

async fn token_checks(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    let code = q["code"].as_str();
    let http = reqwest::Client::new();
    let token_url = format!("{}/token", app.base);
    // Wrong secret.
    let r = http
        .post(&token_url)
        .basic_auth(CLIENT_ID, Some("wrong-secret-wrong-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<serde_json::Value>().await?["error"], "invalid_client");
    // Another redirect_uri than the one the code was issued for.
    let r = http
        .post(&token_url)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    assert_eq!(r.json::<serde_json::Value>().await?["error"], "invalid_grant");
    // Another client (the public one) presenting this client's code.
    let r = http
        .post(&token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
            ("client_id", PUBLIC_CLIENT_ID),
        ])
        .send()
        .await?;
    assert_eq!(r.json::<serde_json::Value>().await?["error"], "invalid_grant");
    // After all that the code still works for its owner (failed attempts do not burn it)...
    let before = app.counts()?;
    app.clock.advance(chrono::Duration::minutes(2));
    // ...but not once it has expired.
    let r = app.token(code).await?;
    assert_eq!(r.json::<serde_json::Value>().await?["error"], "invalid_grant");
    changed_only_audit(&before, &app.counts()?, 1);
    Ok(())
}
both_backends!(token_endpoint_checks, token_checks);

async fn access_denied_by_role(b: Backend) -> TestResult {
    let app = app(b).with_config(|c| c.clients[0].allowed_roles = vec!["admin".into()]).start().await?;
    let q = app.login_code("ada@example.com", &["Engineering"]).await?;
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
    assert!(!q.contains_key("code"));
    assert_eq!(app.counts()?["auth_grants"], 0);
    assert!(app
        .audit()?
        .iter()
        .any(|e| e.kind == "client_access_denied" && e.client_id.as_deref() == Some(CLIENT_ID)));
    // An admin gets in.
    let mut app = app;
    app.new_browser()?;
    let q = app.login_code("root@example.com", &["IT-Admins"]).await?;
    assert!(q.contains_key("code"));
    Ok(())
}
both_backends!(client_allowed_roles_enforced, access_denied_by_role);

#[actix_web::test]
async fn authorize_request_errors_redirect_to_client() -> TestResult {
    let app = app(Backend::Sqlite).start().await?;
    // Public client without PKCE.
    let url = format!(
        "{}/authorize?response_type=code&client_id={PUBLIC_CLIENT_ID}&redirect_uri={}&scope=openid&state=s",
        app.base,
        urlencode(REDIRECT_URI)
    );
    let q = redirect_query(app.browser.get(&url).send().await?).await?;
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "s");
    // plain PKCE refused.
    let url = app.auth_url(&[]).replace("code_challenge_method=S256", "code_challenge_method=plain");
    let q = redirect_query(app.browser.get(&url).send().await?).await?;
    assert_eq!(q["error"], "invalid_request");
    // prompt=none without a session.
    let q = redirect_query(app.browser.get(app.auth_url(&[("prompt", "none")])).send().await?).await?;
    assert_eq!(q["error"], "login_required");
    Ok(())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A client id no registration accepts (a NUL byte, which PostgreSQL refuses in text; a space;
/// a slash) is an unknown client at every endpoint that takes one — a clear 4xx, never a 500,
/// and nothing written. (In a form body the NUL reaches the client lookup, which must not ask
/// the database.)
async fn impossible_client_ids(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let before = app.counts()?;
    for id in ["a\0b", "a b", "../dashboard"] {
        let url = app.auth_url(&[]).replace("client_id=dashboard", &format!("client_id={}", urlencode(id)));
        let resp = client.get(&url).send().await?;
        assert_eq!(resp.status(), 400, "{id:?} at /authorize");
        let page = resp.text().await?;
        // A NUL never reaches the handler: the address itself is refused.
        let why = if id.contains('\0') { "NUL character" } else { "unknown client" };
        assert!(page.contains(why), "{id:?}: {page}");
        let logout = format!(
            "{}/logout?client_id={}&post_logout_redirect_uri={}",
            app.base,
            urlencode(id),
            urlencode(POST_LOGOUT_URI)
        );
        assert_eq!(client.get(&logout).send().await?.status(), 400, "{id:?} at /logout");
        let resp = client
            .post(format!("{}/token", app.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("client_id", id),
                ("client_secret", "s"),
            ])
            .send()
            .await?;
        assert_eq!(resp.status(), 401, "{id:?} at /token");
        let body: serde_json::Value = resp.json().await?;
        assert_eq!(body["error"], "invalid_client");
    }
    let after = app.counts()?;
    // Refused token requests are audited (token.failed); nothing else is written.
    let audit_rows = after["audit_events"] - before["audit_events"];
    let mut rest = after.clone();
    rest.insert("audit_events", before["audit_events"]);
    assert_eq!(rest, before, "nothing but audit rows");
    assert!(audit_rows <= 3, "at most one row per refused token request: {audit_rows}");
    Ok(())
}
both_backends!(impossible_client_ids_are_unknown_clients, impossible_client_ids);

/// The values /authorize stores and echoes (state, nonce, login_hint) refuse control
/// characters, in a POSTed form too (where the address check does not look): a NUL in them was
/// a 500 on PostgreSQL, both when a login transaction stores them and when a signed-in browser
/// gets a code at once. The client hears invalid_request (a bad state is not echoed); nothing is
/// written.
async fn control_characters_in_pass_through_values(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let good: Vec<(String, String)> =
        url::Url::parse(&app.auth_url(&[]))?.query_pairs().into_owned().collect();
    let with = |field: &str, value: &str| {
        let mut f: Vec<(String, String)> = good.iter().filter(|(k, _)| k != field).cloned().collect();
        f.push((field.into(), value.into()));
        f
    };
    // First without a session (the values would go into a login transaction), then with one
    // (into the code's grant).
    for signed_in in [false, true] {
        if signed_in {
            app.login_code("ada@example.com", &[]).await?;
        }
        let before = app.counts()?;
        for field in ["state", "nonce", "login_hint"] {
            for bad in ["a\0b", "a\nb"] {
                let resp = app
                    .browser
                    .post(format!("{}/authorize", app.base))
                    .form(&with(field, bad))
                    .send()
                    .await?;
                let q = redirect_query(resp).await?;
                assert_eq!(q["error"], "invalid_request", "{field} {bad:?} (signed in: {signed_in})");
                assert_eq!(q["error_description"], format!("{field} contains a control character"));
                let state = if field == "state" { None } else { Some("st-1") };
                assert_eq!(q.get("state").map(String::as_str), state, "{field}: a bad state is not echoed");
            }
        }
        assert_eq!(app.counts()?, before, "nothing written (signed in: {signed_in})");
    }
    // The same browser's next well-formed request works.
    let q =
        redirect_query(app.browser.post(format!("{}/authorize", app.base)).form(&good).send().await?).await?;
    assert!(q.contains_key("code"), "{q:?}");
    Ok(())
}
both_backends!(control_characters_in_pass_through_values_refused, control_characters_in_pass_through_values);
