//! Whole logins with a real OIDC relying party (the `openidconnect` crate): discovery →
//! authorize → IdP → ACS → token → ID token verified against JWKS → userinfo.

use crate::both_backends;
use crate::support::*;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use ssobroker::devidp::SignMode;
use ssobroker::oidc::keys::BrokerIdToken;

fn rp_http() -> Result<reqwest::Client, reqwest::Error> {
    // openidconnect asks for a client that does not follow redirects (SSRF hygiene).
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()
}

/// One full login through the real RP; returns (sub, roles, email).
async fn rp_login(
    app: &TestApp,
    email: &str,
    groups: &[&str],
    sign: SignMode,
) -> Result<(String, Vec<String>, Option<String>), Box<dyn std::error::Error>> {
    let http = rp_http()?;
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone())?, &http).await?;
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(CLIENT_ID.into()),
        Some(ClientSecret::new(CLIENT_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into())?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let at = app.authorize(auth_url.as_str()).await?;
    let mut spec = app.response(Some(&at.request_id), email, groups);
    spec.sign = sign;
    let q = redirect_query(app.post_signed(&spec, Some(&at.relay_state)).await?).await?;
    assert_eq!(q.get("state").map(String::as_str), Some(csrf.secret().as_str()));
    assert_eq!(q.get("iss").map(String::as_str), Some(app.base.as_str()));
    let code = q.get("code").ok_or("no code")?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))?
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await?;
    let id_token = tokens.id_token().ok_or("no id_token")?;
    // Verified by the library against the broker's JWKS, issuer, audience, nonce and expiry.
    let claims = id_token.claims(&client.id_token_verifier(), &nonce)?;
    assert_eq!(claims.email().map(|e| e.as_str()), Some(email));
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(claims.given_name().and_then(|n| n.get(None)).map(|n| n.as_str()), Some("Ada"));
    assert_eq!(claims.family_name().and_then(|n| n.get(None)).map(|n| n.as_str()), Some("Lovelace"));
    assert!(claims.auth_time().is_some());
    // roles/groups are broker claims: read them through the broker's token type, same verifier.
    let broker: BrokerIdToken = id_token.to_string().parse()?;
    let broker_claims = broker.claims(&client.id_token_verifier(), &nonce)?;
    let roles = broker_claims.additional_claims().roles.clone();
    assert_eq!(
        broker_claims.additional_claims().groups,
        groups.iter().map(|g| g.to_string()).collect::<Vec<_>>()
    );
    let info: openidconnect::core::CoreUserInfoClaims =
        client.user_info(tokens.access_token().clone(), None)?.request_async(&http).await?;
    assert_eq!(info.subject().as_str(), claims.subject().as_str());
    assert_eq!(info.email().map(|e| e.as_str()), Some(email));
    Ok((claims.subject().to_string(), roles, claims.email().map(|e| e.to_string())))
}

async fn full_login_and_relogin(backend: Backend) -> TestResult {
    let mut app = app(backend).start().await?;
    let (sub, roles, _) =
        rp_login(&app, "ada@example.com", &["Engineering", "Everyone"], SignMode::Assertion).await?;
    assert_eq!(roles, vec!["engineer", "user"]);
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1);
    assert_eq!(counts["federated_identities"], 1);
    assert_eq!(counts["login_transactions"], 0, "the login transaction was consumed");

    // The same person again, from a fresh browser (no SSO): same sub, no second user.
    app.new_browser()?;
    let (sub2, _, _) =
        rp_login(&app, "ada@example.com", &["Engineering", "Everyone"], SignMode::Response).await?;
    assert_eq!(sub, sub2);
    assert_eq!(app.counts()?["users"], 1);
    let kinds: Vec<String> = app.audit()?.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "user.provisioned").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "login.succeeded").count(), 2);
    let provisioned =
        app.audit()?.into_iter().find(|e| e.kind == "user.provisioned").ok_or("no provisioning row")?;
    assert_eq!(provisioned.client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(provisioned.connection_id.as_deref(), Some(CONNECTION));
    assert!(provisioned.ip.is_some());
    Ok(())
}
both_backends!(full_login_and_relogin_same_sub, full_login_and_relogin);

async fn both_signed(backend: Backend) -> TestResult {
    let app = app(backend).start().await?;
    rp_login(&app, "bob@example.com", &[], SignMode::Both).await?;
    Ok(())
}
both_backends!(response_and_assertion_signed, both_signed);

async fn group_removed_role_removed(backend: Backend) -> TestResult {
    let mut app = app(backend).start().await?;
    let (_, roles, _) =
        rp_login(&app, "ada@example.com", &["Engineering", "IT-Admins"], SignMode::Assertion).await?;
    assert_eq!(roles, vec!["admin", "engineer", "user"]);
    app.new_browser()?;
    let (_, roles, _) = rp_login(&app, "ada@example.com", &["Engineering"], SignMode::Assertion).await?;
    assert_eq!(roles, vec!["engineer", "user"], "the IdP removed IT-Admins, so admin goes");
    let revoked: Vec<_> = app.audit()?.into_iter().filter(|e| e.kind == "role.revoked").collect();
    assert_eq!(revoked.len(), 1);
    assert!(revoked[0].detail.contains("admin"));
    Ok(())
}
both_backends!(group_removal_revokes_role, group_removed_role_removed);

async fn sso_second_app(backend: Backend) -> TestResult {
    let app = app(backend).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    assert!(q.contains_key("code"));
    // Same browser, second authorize: the broker session answers without the IdP.
    let resp = app.browser.get(app.auth_url(&[])).send().await?;
    let q2 = redirect_query(resp).await?;
    let code = q2.get("code").ok_or("no SSO code")?;
    let tok = app.token(code).await?;
    assert_eq!(tok.status(), 200);
    // prompt=login forces the IdP again.
    let resp = app.browser.get(app.auth_url(&[("prompt", "login")])).send().await?;
    assert_eq!(resp.status(), 302);
    assert!(resp.headers()["location"].to_str()?.starts_with("https://idp.test/sso?SAMLRequest="));
    Ok(())
}
both_backends!(sso_without_idp_trip, sso_second_app);

async fn public_client_pkce(backend: Backend) -> TestResult {
    let app = app(backend).start().await?;
    let http = rp_http()?;
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone())?, &http).await?;
    let client = CoreClient::from_provider_metadata(meta, ClientId::new(PUBLIC_CLIENT_ID.into()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into())?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let at = app.authorize(auth_url.as_str()).await?;
    let q = redirect_query(
        app.post_signed(&app.response(Some(&at.request_id), "eve@example.com", &[]), Some(&at.relay_state))
            .await?,
    )
    .await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))?
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await?;
    let claims = tokens.id_token().ok_or("no id_token")?.claims(&client.id_token_verifier(), &nonce)?;
    assert_eq!(claims.email().map(|e| e.as_str()), Some("eve@example.com"));
    Ok(())
}
both_backends!(public_client_with_pkce, public_client_pkce);

#[actix_web::test]
async fn discovery_jwks_and_sp_metadata() -> TestResult {
    let app = app(Backend::Sqlite).start().await?;
    let d: serde_json::Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", app.base)).await?.json().await?;
    assert_eq!(d["issuer"], app.base.as_str());
    assert_eq!(d["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    let jwks: serde_json::Value = reqwest::get(format!("{}/jwks", app.base)).await?.json().await?;
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert!(jwks["keys"][0]["kid"].is_string());
    let resp = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", app.base)).await?;
    assert_eq!(resp.headers()["content-type"], "application/samlmetadata+xml");
    let xml = resp.text().await?;
    assert!(xml.contains(&format!("entityID=\"{}/saml/{CONNECTION}/metadata\"", app.base)));
    assert!(xml.contains(&format!("Location=\"{}/saml/{CONNECTION}/acs\"", app.base)));
    let headers = reqwest::get(format!("{}/authorize", app.base)).await?;
    assert_eq!(headers.status(), 400);
    assert!(headers.headers()["content-security-policy"].to_str()?.contains("frame-ancestors 'none'"));
    assert_eq!(headers.headers()["x-content-type-options"], "nosniff");
    Ok(())
}

async fn post_binding_idp(backend: Backend) -> TestResult {
    // Google Workspace, OneLogin and JumpCloud metadata list only an HTTP-POST sign-on service.
    let app = app(backend)
        .with_metadata(|xml| {
            xml.replace(
                "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
                "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
            )
        })
        .start()
        .await?;
    let resp = app.browser.get(app.auth_url(&[])).send().await?;
    assert_eq!(resp.status(), 200, "an auto-submitting form, not a redirect");
    let page = resp.text().await?;
    assert!(page.contains("action=\"https://idp.test/sso\""), "{page}");
    let field = |name: &str| -> Option<String> {
        let start = page.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
        let end = page[start..].find('"')? + start;
        Some(page[start..end].replace("&#x3D;", "=").replace("&#x2F;", "/"))
    };
    let request = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        field("SAMLRequest").ok_or("no SAMLRequest")?,
    )?;
    let request = String::from_utf8(request)?;
    let id_start = request.find(" ID=\"").ok_or("no ID")? + 5;
    let request_id = &request[id_start..id_start + request[id_start..].find('"').ok_or("bad ID")?];
    let relay = field("RelayState").ok_or("no RelayState")?;
    let q = redirect_query(
        app.post_signed(&app.response(Some(request_id), "gw@example.com", &[]), Some(&relay)).await?,
    )
    .await?;
    assert!(q.contains_key("code"));
    Ok(())
}
both_backends!(idp_with_post_binding_only, post_binding_idp);

async fn concurrent_first_logins(backend: Backend) -> TestResult {
    // Twenty first logins of one person at the same moment: one user, one identity, no errors.
    let app = app(backend).start().await?;
    let mut posts = Vec::new();
    for _ in 0..20 {
        let at = app.authorize(&app.auth_url(&[])).await?;
        let b64 = app.idp.sign_response_b64(&app.response(
            Some(&at.request_id),
            "rush@example.com",
            &["Engineering"],
        ))?;
        posts.push((b64, at.relay_state));
    }
    let results =
        futures_util::future::join_all(posts.iter().map(|(b64, relay)| app.post_acs(b64, Some(relay)))).await;
    for r in results {
        let r = r?;
        assert_eq!(r.status(), 302, "every racer gets its code: {}", r.text().await?);
    }
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1);
    assert_eq!(counts["federated_identities"], 1);
    assert_eq!(counts["auth_grants"], 20);
    let provisioned = app.audit()?.into_iter().filter(|e| e.kind == "user.provisioned").count();
    assert_eq!(provisioned, 1);
    Ok(())
}
both_backends!(simultaneous_first_logins_make_one_user, concurrent_first_logins);

#[actix_web::test]
async fn login_page_and_home_realm_discovery() -> TestResult {
    let app = app(Backend::Sqlite)
        .with_config(|c| {
            let mut second = c.connections[0].clone();
            second.id = "entra".into();
            second.display_name = Some("Contoso <Entra>".into());
            second.domains = vec!["contoso.com".into()];
            c.connections.push(second);
        })
        .start()
        .await?;
    // Two connections, no hint: the login page lists both and offers the email field.
    let evil_state = "\"><script>alert(1)</script>";
    let resp = app
        .browser
        .get(app.auth_url(&[]).replace("state=st-1", &format!("state={}", urlencode(evil_state))))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await?;
    assert!(page.contains("Continue with Okta"));
    assert!(page.contains("Continue with Contoso &lt;Entra&gt;"), "names are escaped");
    assert!(page.contains("idp_hint&#x3D;entra"), "links re-enter /authorize with the hint (HTML-escaped)");
    assert!(page.contains("name=\"login_hint\""));
    assert!(!page.contains("<script>alert(1)"), "request values are escaped");
    // login_hint routes by domain; idp_hint by id; an unknown domain goes back to the page.
    let to_idp = |resp: reqwest::Response| {
        resp.status() == 302
            && resp.headers()["location"].to_str().is_ok_and(|l| l.starts_with("https://idp.test/sso"))
    };
    assert!(to_idp(app.browser.get(app.auth_url(&[("login_hint", "Bob@Contoso.com")])).send().await?));
    assert!(to_idp(app.browser.get(app.auth_url(&[("idp_hint", "entra")])).send().await?));
    let unknown = app.browser.get(app.auth_url(&[("login_hint", "bob@elsewhere.org")])).send().await?;
    assert_eq!(unknown.status(), 200);
    assert!(unknown.text().await?.contains("No sign-in service is configured for that email domain"));
    let open = app.counts()?["login_transactions"];
    assert_eq!(open, 2, "each routed request opened one login transaction");
    Ok(())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn housekeeping(backend: Backend) -> TestResult {
    let app = app(backend).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    assert_eq!(app.token(&q["code"]).await?.status(), 200);
    app.authorize(&app.auth_url(&[("prompt", "login")])).await?; // an abandoned login
    let mut conn = app.pool.get()?;
    let now = app.now().timestamp();
    assert_eq!(ssobroker::store::purge_expired(&mut conn, now, now - 3600)?, 0, "nothing live is purged");
    let later = now + 30 * 86400;
    assert!(ssobroker::store::purge_expired(&mut conn, later, later - 3600)? >= 4);
    let counts = app.counts()?;
    for table in ["login_transactions", "saml_replay", "sessions", "auth_grants"] {
        assert_eq!(counts[table], 0, "{table} purged");
    }
    assert_eq!(counts["users"], 1, "accounts stay");
    Ok(())
}
both_backends!(expired_login_state_is_purged, housekeeping);

#[actix_web::test]
async fn claims_follow_the_granted_scopes() -> TestResult {
    let app = app(Backend::Sqlite).start().await?;
    let url = app.auth_url(&[]).replace("scope=openid+email+profile", "scope=openid");
    let at = app.authorize(&url).await?;
    let q = redirect_query(
        app.post_signed(
            &app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]),
            Some(&at.relay_state),
        )
        .await?,
    )
    .await?;
    let tokens: serde_json::Value = app.token(&q["code"]).await?.json().await?;
    let payload = tokens["id_token"].as_str().ok_or("no id_token")?.split('.').nth(1).ok_or("jwt")?;
    let claims: serde_json::Value = serde_json::from_slice(&base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        payload,
    )?)?;
    assert!(claims.get("email").is_none() && claims.get("given_name").is_none(), "{claims}");
    assert_eq!(claims["roles"], serde_json::json!(["engineer", "user"]), "roles always travel");
    let info: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(tokens["access_token"].as_str().ok_or("no access token")?)
        .send()
        .await?
        .json()
        .await?;
    assert!(
        info.get("email").is_none() && info.get("family_name").is_none(),
        "no nulls, no unscoped claims: {info}"
    );
    assert!(info["sub"].is_string());
    Ok(())
}

#[actix_web::test]
async fn prompt_and_max_age() -> TestResult {
    let app = app(Backend::Sqlite).start().await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    assert!(q.contains_key("code"));
    let saml_request = |resp: &reqwest::Response| -> Result<String, Box<dyn std::error::Error>> {
        let loc = url::Url::parse(resp.headers()["location"].to_str()?)?;
        let v = loc.query_pairs().find(|(k, _)| k == "SAMLRequest").ok_or("no SAMLRequest")?.1.to_string();
        let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v)?;
        let mut xml = String::new();
        std::io::Read::read_to_string(&mut flate2::read::DeflateDecoder::new(&raw[..]), &mut xml)?;
        Ok(xml)
    };
    // prompt=login: back to the IdP, and the IdP is told not to reuse its own session.
    let r = app.browser.get(app.auth_url(&[("prompt", "login")])).send().await?;
    assert!(saml_request(&r)?.contains("ForceAuthn=\"true\""));
    // max_age older than the session's authentication: the same.
    app.clock.advance(chrono::Duration::minutes(5));
    let r = app.browser.get(app.auth_url(&[("max_age", "60")])).send().await?;
    assert!(saml_request(&r)?.contains("ForceAuthn=\"true\""));
    // A generous max_age is answered from the session.
    let r = app.browser.get(app.auth_url(&[("max_age", "3600")])).send().await?;
    assert!(redirect_query(r).await?.contains_key("code"));
    // Whitespace around prompt values does not change their meaning.
    let mut fresh = app;
    fresh.new_browser()?;
    let r = fresh.browser.get(fresh.auth_url(&[("prompt", " none ")])).send().await?;
    assert_eq!(redirect_query(r).await?["error"], "login_required");
    Ok(())
}

#[actix_web::test]
async fn malformed_token_requests_get_oauth_json() -> TestResult {
    let app = app(Backend::Sqlite).start().await?;
    let r = reqwest::Client::new()
        .post(format!("{}/token", app.base))
        .json(&serde_json::json!({"grant_type": "authorization_code"}))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await?["error"], "invalid_request");
    Ok(())
}
