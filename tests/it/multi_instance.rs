//! Two broker instances on one PostgreSQL database with no sticky routing (issue 7, item 3): a
//! login started on one finishes on the other, replays and reused codes are caught across
//! instances, and tokens signed by one verify with the other's JWKS. PostgreSQL only: SQLite is
//! the single-node backend.

use crate::support::*;
use openidconnect::core::{CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{ClientId, ClientSecret, IssuerUrl, Nonce};
use serde_json::Value;
use ssobroker::oidc::keys::BrokerIdToken;

fn skip() -> bool {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        eprintln!("TEST_DATABASE_URL not set: the two-instance test needs PostgreSQL, skipped");
        return true;
    }
    false
}

fn str_of(v: &Value, key: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(v[key].as_str().ok_or_else(|| format!("no {key} in {v}"))?.to_string())
}

async fn userinfo_status(base: &str, access: &str) -> Result<u16, reqwest::Error> {
    Ok(reqwest::Client::new()
        .get(format!("{base}/userinfo"))
        .bearer_auth(access)
        .send()
        .await?
        .status()
        .as_u16())
}

/// Verifies an ID token the way an app would, but with the JWKS served by `base`.
async fn verify_id_token_with(
    base: &str,
    issuer: &str,
    id_token: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let jwks: CoreJsonWebKeySet = reqwest::get(format!("{base}/jwks")).await?.json().await?;
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(CLIENT_ID.into()),
        ClientSecret::new(CLIENT_SECRET.into()),
        IssuerUrl::new(issuer.into())?,
        jwks,
    );
    let token: BrokerIdToken = id_token.parse()?;
    let claims = token.claims(&verifier, &Nonce::new("n-1".into()))?;
    Ok(claims.subject().to_string())
}

#[actix_web::test]
async fn login_crosses_instances_on_one_postgres() -> TestResult {
    if skip() {
        return Ok(());
    }
    let app = app(Backend::Postgres).start().await?;
    let b = app.another_instance()?;
    let a = app.base.clone();

    // Both instances publish the same keys: the first start created them, the second loaded them.
    let jwks_a = reqwest::get(format!("{a}/jwks")).await?.text().await?;
    let jwks_b = reqwest::get(format!("{}/jwks", b.base)).await?.text().await?;
    assert_eq!(jwks_a, jwks_b, "one set of signing keys for both instances");

    // /authorize on A, the IdP's POST lands on B, /token on A.
    let at = app.authorize(&app.auth_url(&[])).await?;
    let signed = app.idp.sign_response_b64(&app.response(
        Some(&at.request_id),
        "ada@example.com",
        &["Engineering"],
    ))?;
    let q = redirect_query(app.post_acs_at(&b.base, &signed, Some(&at.relay_state)).await?).await?;
    let code = q.get("code").ok_or("no code")?.clone();
    assert_eq!(q.get("iss").map(String::as_str), Some(a.as_str()), "one issuer for both instances");

    // The same response again, to the other instance: the replay cache is the shared table.
    let before = app.counts()?;
    let replay = app.post_acs_at(&a, &signed, Some(&at.relay_state)).await?;
    assert_refused(&app, replay, &before, "assertion_replayed").await?;

    let resp = app.token_at(&a, &code).await?;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await?;
    let access = str_of(&tokens, "access_token")?;
    // Signed on A, verified with B's JWKS and accepted by B's /userinfo.
    let sub = verify_id_token_with(&b.base, &a, &str_of(&tokens, "id_token")?).await?;
    assert_eq!(userinfo_status(&b.base, &access).await?, 200);
    let info: Value = reqwest::Client::new()
        .get(format!("{}/userinfo", b.base))
        .bearer_auth(&access)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(info["sub"], sub.as_str());

    // The code, already redeemed on A, is refused on B, and that reuse revokes what A issued.
    let reuse = app.token_at(&b.base, &code).await?;
    assert_eq!(reuse.status(), 400);
    assert_eq!(reuse.json::<Value>().await?["error"], "invalid_grant");
    assert_eq!(userinfo_status(&a, &access).await?, 401, "a reused code revokes its tokens on A");
    assert_eq!(userinfo_status(&b.base, &access).await?, 401, "… and on B");

    // A second login of the same person the other way round: /authorize on B, ACS on A,
    // /token on B. Still one user with one federated identity and one set of roles.
    let mut app = app;
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&[]).replacen(&a, &b.base, 1)).await?;
    let resp = app
        .post_acs_at(
            &a,
            &app.idp.sign_response_b64(&app.response(
                Some(&at.request_id),
                "ada@example.com",
                &["Engineering"],
            ))?,
            Some(&at.relay_state),
        )
        .await?;
    let q = redirect_query(resp).await?;
    let resp = app.token_at(&b.base, q.get("code").ok_or("no code")?).await?;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await?;
    assert_eq!(verify_id_token_with(&a, &a, &str_of(&tokens, "id_token")?).await?, sub, "same sub");
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1, "the user exists once");
    assert_eq!(counts["federated_identities"], 1);
    assert_eq!(counts["user_roles"], 2, "user + engineer, not duplicated");
    assert_eq!(counts["login_transactions"], 0, "both login transactions consumed");
    assert_eq!(counts["signing_keys"], 1, "the second instance created no key of its own");
    drop(b);
    Ok(())
}

/// Simultaneous first logins of one person, one on each instance: one account.
#[actix_web::test]
async fn simultaneous_first_logins_on_two_instances_make_one_user() -> TestResult {
    if skip() {
        return Ok(());
    }
    let mut app = app(Backend::Postgres).start().await?;
    let b = app.another_instance()?;
    let a = app.base.clone();
    let mut posts = Vec::new();
    for (i, base) in [&a, &b.base, &a, &b.base].into_iter().enumerate() {
        app.new_browser()?;
        let at = app.authorize(&app.auth_url(&[]).replacen(&a, base, 1)).await?;
        let signed =
            app.idp.sign_response_b64(&app.response(Some(&at.request_id), "grace@example.com", &[]))?;
        // Each ACS on the instance the login did not start on.
        let target = if i % 2 == 0 { b.base.clone() } else { a.clone() };
        let browser = app.browser.clone();
        posts.push(async move {
            browser
                .post(format!("{target}/saml/{CONNECTION}/acs"))
                .form(&[("SAMLResponse", signed.as_str()), ("RelayState", at.relay_state.as_str())])
                .send()
                .await
        });
    }
    for resp in futures_util::future::join_all(posts).await {
        redirect_query(resp?).await?;
    }
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1);
    assert_eq!(counts["federated_identities"], 1);
    drop(b);
    Ok(())
}
