//! The provider after the first login: refresh rotation and replay, revocation, introspection,
//! RP-initiated logout, session idle time.

use crate::both_backends;
use crate::support::*;
use serde_json::Value;

async fn tokens_with_refresh(app: &TestApp) -> Result<Value, Box<dyn std::error::Error>> {
    let url = app.auth_url(&[]).replace("scope=openid+email+profile", "scope=openid+email+offline_access");
    let at = app.authorize(&url).await?;
    let q = redirect_query(
        app.post_signed(
            &app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]),
            Some(&at.relay_state),
        )
        .await?,
    )
    .await?;
    let r = app.token(&q["code"]).await?;
    assert_eq!(r.status(), 200);
    Ok(r.json().await?)
}

async fn refresh_with(
    app: &TestApp,
    client: (&str, Option<&str>),
    token: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::new()
        .post(format!("{}/token", app.base))
        .basic_auth(client.0, client.1)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
}

async fn userinfo_status(app: &TestApp, access: &str) -> Result<u16, reqwest::Error> {
    Ok(reqwest::Client::new()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(access)
        .send()
        .await?
        .status()
        .as_u16())
}

fn s(v: &Value, k: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(v[k].as_str().ok_or(format!("no {k} in {v}"))?.to_string())
}

async fn refresh_rotation(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let first = tokens_with_refresh(&app).await?;
    let r1 = s(&first, "refresh_token")?;
    let resp = refresh_with(&app, (CLIENT_ID, Some(CLIENT_SECRET)), &r1).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let second: Value = resp.json().await?;
    let r2 = s(&second, "refresh_token")?;
    assert_ne!(r1, r2, "rotated on every use");
    assert!(second["id_token"].is_string());
    assert_eq!(userinfo_status(&app, &s(&second, "access_token")?).await?, 200);
    // Another client cannot use it.
    let other = refresh_with(&app, (PUBLIC_CLIENT_ID, None), &r2).await?;
    assert_eq!(other.json::<Value>().await?["error"], "invalid_grant");
    // Replaying the rotated-away token: the whole family and its grant die.
    let before = app.counts()?;
    let replay = refresh_with(&app, (CLIENT_ID, Some(CLIENT_SECRET)), &r1).await?;
    assert_eq!(replay.status(), 400);
    assert_eq!(replay.json::<Value>().await?["error"], "invalid_grant");
    assert_eq!(app.counts()?["refresh_tokens"], before["refresh_tokens"], "no token issued");
    let newest = refresh_with(&app, (CLIENT_ID, Some(CLIENT_SECRET)), &r2).await?;
    assert_eq!(
        newest.json::<Value>().await?["error"],
        "invalid_grant",
        "the newest token of the family is dead too"
    );
    assert_eq!(userinfo_status(&app, &s(&second, "access_token")?).await?, 401);
    assert_eq!(userinfo_status(&app, &s(&first, "access_token")?).await?, 401);
    assert!(app.audit()?.iter().any(|e| e.reason.as_deref() == Some("refresh_replayed")));
    Ok(())
}
both_backends!(refresh_rotates_and_replay_kills_family, refresh_rotation);

async fn no_offline_access(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    let t: Value = app.token(&q["code"]).await?.json().await?;
    assert!(t.get("refresh_token").is_none(), "no refresh token without offline_access: {t}");
    Ok(())
}
both_backends!(refresh_only_with_offline_access, no_offline_access);

async fn refresh_disabled_user(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let t = tokens_with_refresh(&app).await?;
    {
        use diesel::prelude::*;
        let mut c = app.pool.get()?;
        diesel::update(ssobroker::store::schema::users::table)
            .set(ssobroker::store::schema::users::disabled.eq(true))
            .execute(&mut c)?;
    }
    let r = refresh_with(&app, (CLIENT_ID, Some(CLIENT_SECRET)), &s(&t, "refresh_token")?).await?;
    assert_eq!(r.json::<Value>().await?["error"], "invalid_grant");
    Ok(())
}
both_backends!(refresh_refused_for_disabled_user, refresh_disabled_user);

async fn revocation_and_introspection(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let t = tokens_with_refresh(&app).await?;
    let access = s(&t, "access_token")?;
    let http = reqwest::Client::new();
    let introspect = |token: String, auth: Option<(&'static str, Option<&'static str>)>| {
        let mut rb = http.post(format!("{}/introspect", app.base)).form(&[("token", token)]);
        if let Some((id, secret)) = auth {
            rb = rb.basic_auth(id, secret);
        }
        rb.send()
    };
    let r = introspect(access.clone(), Some((CLIENT_ID, Some(CLIENT_SECRET)))).await?;
    let v: Value = r.json().await?;
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], CLIENT_ID);
    assert!(v["sub"].is_string() && v["exp"].is_i64());
    assert_eq!(
        introspect(access.clone(), None).await?.status(),
        401,
        "introspection needs client authentication"
    );
    assert_eq!(
        introspect(access.clone(), Some((PUBLIC_CLIENT_ID, None))).await?.status(),
        401,
        "public clients cannot introspect"
    );
    let v: Value =
        introspect(s(&t, "refresh_token")?, Some((CLIENT_ID, Some(CLIENT_SECRET)))).await?.json().await?;
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "refresh_token");
    // Revocation: unknown tokens are fine; the refresh token takes its grant with it.
    let revoke = |token: String| {
        http.post(format!("{}/revoke", app.base))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", token)])
            .send()
    };
    assert_eq!(revoke("not-a-token".into()).await?.status(), 200);
    let unauth = http
        .post(format!("{}/revoke", app.base))
        .form(&[("token", "x"), ("client_id", CLIENT_ID)])
        .send()
        .await?;
    assert_eq!(unauth.status(), 401);
    assert_eq!(revoke(s(&t, "refresh_token")?).await?.status(), 200);
    let r = refresh_with(&app, (CLIENT_ID, Some(CLIENT_SECRET)), &s(&t, "refresh_token")?).await?;
    assert_eq!(r.json::<Value>().await?["error"], "invalid_grant");
    assert_eq!(userinfo_status(&app, &access).await?, 401);
    let v: Value = introspect(access, Some((CLIENT_ID, Some(CLIENT_SECRET)))).await?.json().await?;
    assert_eq!(v, serde_json::json!({"active": false}));
    Ok(())
}
both_backends!(revocation_and_introspection_work, revocation_and_introspection);

async fn logout(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    let t: Value = app.token(&q["code"]).await?.json().await?;
    let id_token = s(&t, "id_token")?;
    let logout_url = |extra: &[(&str, &str)]| {
        let mut u = url::Url::parse(&format!("{}/logout", app.base)).unwrap_or_else(|_| unreachable!());
        for (k, v) in extra {
            u.query_pairs_mut().append_pair(k, v);
        }
        u.to_string()
    };
    // An unregistered post_logout_redirect_uri: an error page, never a redirect, session kept.
    let r = app
        .browser
        .get(logout_url(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let sso = app.browser.get(app.auth_url(&[])).send().await?;
    assert!(redirect_query(sso).await?.contains_key("code"), "the session survived the bad request");
    // Without a hint the user must confirm; a forged confirmation does nothing.
    let page = app.browser.get(logout_url(&[])).send().await?.text().await?;
    assert!(page.contains("name=\"confirm\""), "{page}");
    let forged = app
        .browser
        .post(format!("{}/logout", app.base))
        .form(&[("confirm", "0000")])
        .send()
        .await?
        .text()
        .await?;
    assert!(forged.contains("name=\"confirm\""), "still asking");
    // With the hint and a registered URI: straight back to the app with state.
    let r = app
        .browser
        .get(logout_url(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", POST_LOGOUT_URI),
            ("state", "bye"),
        ]))
        .send()
        .await?;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"].to_str()?, format!("{POST_LOGOUT_URI}?state=bye"));
    assert!(app.audit()?.iter().any(|e| e.kind == "logout"));
    // The broker session is gone: the next authorize goes to the IdP.
    let r = app.browser.get(app.auth_url(&[])).send().await?;
    assert!(r.headers()["location"].to_str()?.starts_with("https://idp.test/sso"));
    Ok(())
}
both_backends!(rp_initiated_logout, logout);

#[actix_web::test]
async fn idle_session_needs_the_idp_again() -> TestResult {
    let app = app(Backend::Sqlite).with_config(|c| c.session_idle_seconds = 600).start().await?;
    app.login_code("ada@example.com", &[]).await?;
    app.clock.advance(chrono::Duration::minutes(5));
    assert!(
        redirect_query(app.browser.get(app.auth_url(&[])).send().await?).await?.contains_key("code"),
        "active: SSO"
    );
    app.clock.advance(chrono::Duration::minutes(9));
    assert!(
        redirect_query(app.browser.get(app.auth_url(&[])).send().await?).await?.contains_key("code"),
        "used 9 min ago: still live"
    );
    app.clock.advance(chrono::Duration::minutes(11));
    let r = app.browser.get(app.auth_url(&[])).send().await?;
    assert!(r.headers()["location"].to_str()?.starts_with("https://idp.test/sso"), "idle too long");
    Ok(())
}

async fn refresh_rechecks_roles(b: Backend) -> TestResult {
    let app = app(b).with_config(|c| c.clients[0].allowed_roles = vec!["admin".into()]).start().await?;
    let url = app.auth_url(&[]).replace("scope=openid+email+profile", "scope=openid+offline_access");
    let at = app.authorize(&url).await?;
    let q = redirect_query(
        app.post_signed(
            &app.response(Some(&at.request_id), "ada@example.com", &["IT-Admins"]),
            Some(&at.relay_state),
        )
        .await?,
    )
    .await?;
    let t: Value = app.token(&q["code"]).await?.json().await?;
    // The IdP drops the group; the next login re-syncs the roles.
    let mut app = app;
    app.new_browser()?;
    let q = app.login_code("ada@example.com", &[]).await?;
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    let r = refresh_with(&app, (CLIENT_ID, Some(CLIENT_SECRET)), &s(&t, "refresh_token")?).await?;
    assert_eq!(r.json::<Value>().await?["error"], "invalid_grant", "roles are checked again at refresh");
    assert_eq!(userinfo_status(&app, &s(&t, "access_token")?).await?, 401, "and the family is revoked");
    Ok(())
}
both_backends!(refresh_rechecks_client_roles, refresh_rechecks_roles);

#[actix_web::test]
async fn logout_ends_what_the_session_issued() -> TestResult {
    let app = app(Backend::Sqlite).with_config(|c| c.clients[0].issue_refresh_token = true).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    let t: Value = app.token(&q["code"]).await?.json().await?;
    let refresh = s(&t, "refresh_token")?;
    let hint = s(&t, "id_token")?;
    let r = app.browser.get(format!("{}/logout?id_token_hint={hint}", app.base)).send().await?;
    assert_eq!(r.status(), 200, "logged-out page");
    let r = refresh_with(&app, (CLIENT_ID, Some(CLIENT_SECRET)), &refresh).await?;
    assert_eq!(
        r.json::<Value>().await?["error"],
        "invalid_grant",
        "a session-bound refresh token ends with the session"
    );
    assert_eq!(userinfo_status(&app, &s(&t, "access_token")?).await?, 401);
    Ok(())
}

#[actix_web::test]
async fn an_old_hint_does_not_end_a_new_session_unasked() -> TestResult {
    let mut app = app(Backend::Sqlite).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    let old_hint = s(&app.token(&q["code"]).await?.json::<Value>().await?, "id_token")?;
    app.new_browser()?;
    app.login_code("ada@example.com", &[]).await?;
    let page =
        app.browser.get(format!("{}/logout?id_token_hint={old_hint}", app.base)).send().await?.text().await?;
    assert!(page.contains("name=\"confirm\""), "a hint from another session needs the user's confirmation");
    assert!(
        redirect_query(app.browser.get(app.auth_url(&[])).send().await?).await?.contains_key("code"),
        "session intact"
    );
    Ok(())
}
