//! Signing keys end to end: ES256 and EdDSA logins checked by a real relying party (the
//! `openidconnect` crate), and a rotation picked up by a running broker — new tokens under the new
//! kid, old tokens good until the old key retires, then the old key gone.

use crate::both_backends;
use crate::support::*;
use chrono::Duration;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;
use ssobroker::config::{self, DatabaseUrl, FileConfig};
use ssobroker::keys_cli::{self, KeysCommand};
use ssobroker::oidc::keys::{BrokerIdToken, SigningAlg};
use ssobroker::web::AppState;
use std::process::{Command, Stdio};
use std::sync::Arc;

type Error = Box<dyn std::error::Error>;

fn jose_header(jwt: &str) -> Result<Value, Error> {
    let part = jwt.split('.').next().ok_or("no header")?;
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

async fn get_json(url: &str) -> Result<Value, Error> {
    Ok(reqwest::get(url).await?.json().await?)
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_string))
        .collect()
}

/// A whole login through the real RP, which accepts only `alg`; returns the raw ID token.
async fn rp_login(app: &TestApp, alg: SigningAlg, email: &str) -> Result<String, Error> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone())?, &http).await?;
    assert_eq!(meta.id_token_signing_alg_values_supported(), &vec![alg.jws()], "discovery names the alg");
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(CLIENT_ID.into()),
        Some(ClientSecret::new(CLIENT_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into())?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let at = app.authorize(auth_url.as_str()).await?;
    let q = redirect_query(
        app.post_signed(&app.response(Some(&at.request_id), email, &["Engineering"]), Some(&at.relay_state))
            .await?,
    )
    .await?;
    let code = q.get("code").ok_or("no code")?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))?
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await?;
    let id_token = tokens.id_token().ok_or("no id_token")?;
    // The RP takes the algorithms it accepts from discovery; left at the library's default
    // (RS256 only) it would refuse the token, so discovery must name the algorithm.
    let rs256_only =
        client.id_token_verifier().set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
    assert!(id_token.claims(&rs256_only, &nonce).is_err(), "{alg} refused by an RS256-only RP");
    let rp = client.id_token_verifier();
    let claims = id_token.claims(&rp, &nonce)?;
    assert_eq!(claims.email().map(|e| e.as_str()), Some(email));
    let broker: BrokerIdToken = id_token.to_string().parse()?;
    assert_eq!(broker.claims(&rp, &nonce)?.additional_claims().roles, vec!["engineer", "user"]);
    let info: openidconnect::core::CoreUserInfoClaims =
        client.user_info(tokens.access_token().clone(), None)?.request_async(&http).await?;
    assert_eq!(info.subject().as_str(), claims.subject().as_str());
    Ok(id_token.to_string())
}

async fn login_with_alg(backend: Backend, alg: SigningAlg) -> TestResult {
    let app = app(backend).with_config(move |c| c.signing_alg = alg.as_str().into()).start().await?;
    let id_token = rp_login(&app, alg, "ada@example.com").await?;
    let header = jose_header(&id_token)?;
    assert_eq!(header["alg"], alg.as_str());
    let jwks = get_json(&format!("{}/jwks", app.base)).await?;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(jwks["keys"][0]["alg"], alg.as_str());
    assert_eq!(jwks["keys"][0]["use"], "sig");
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    // The first start made one key, of the configured algorithm.
    let keys = keys_cli::list(&mut *app.pool.get()?, app.now())?;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].alg, alg.as_str());
    Ok(())
}

async fn es256_login(backend: Backend) -> TestResult {
    login_with_alg(backend, SigningAlg::Es256).await
}
both_backends!(es256_login_verified_by_rp, es256_login);

async fn eddsa_login(backend: Backend) -> TestResult {
    login_with_alg(backend, SigningAlg::EdDsa).await
}
both_backends!(eddsa_login_verified_by_rp, eddsa_login);

struct Tokens {
    id_token: String,
    access_token: String,
}

async fn login_tokens(app: &TestApp, email: &str) -> Result<Tokens, Error> {
    let q = app.login_code(email, &[]).await?;
    let resp = app.token(q.get("code").ok_or("no code")?).await?;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await?;
    Ok(Tokens {
        id_token: body["id_token"].as_str().ok_or("no id_token")?.to_string(),
        access_token: body["access_token"].as_str().ok_or("no access_token")?.to_string(),
    })
}

/// Verifies an ID token like an RP that fetched /jwks just now (at the broker's clock).
async fn verify_against_jwks(app: &TestApp, id_token: &str) -> Result<(), Error> {
    let jwks: CoreJsonWebKeySet = reqwest::get(format!("{}/jwks", app.base)).await?.json().await?;
    let now = app.now();
    let rp = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(CLIENT_ID.into()),
        ClientSecret::new(CLIENT_SECRET.into()),
        IssuerUrl::new(app.base.clone())?,
        jwks,
    )
    .set_allowed_algs(SigningAlg::ALL.map(SigningAlg::jws))
    .set_time_fn(move || now);
    let token: BrokerIdToken = id_token.parse()?;
    token.claims(&rp, &Nonce::new("n-1".into()))?;
    Ok(())
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> Result<u16, Error> {
    let resp =
        reqwest::Client::new().get(format!("{}/userinfo", app.base)).bearer_auth(access_token).send().await?;
    Ok(resp.status().as_u16())
}

fn list_json(app: &TestApp) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    keys_cli::run_keys(
        &mut *app.pool.get()?,
        &app.cfg,
        KeysCommand::List { json: true },
        app.now(),
        &mut out,
    )?;
    String::from_utf8(out)?.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

fn state_of<'a>(list: &'a [Value], kid: &str) -> Option<&'a str> {
    list.iter().find(|k| k["kid"] == kid).and_then(|k| k["state"].as_str())
}

async fn rotation(backend: Backend) -> TestResult {
    let mut app = app(backend).start().await?;
    let before = login_tokens(&app, "ada@example.com").await?;
    let kid_a = jose_header(&before.id_token)?["kid"].as_str().ok_or("no kid")?.to_string();
    assert_eq!(jose_header(&before.access_token)?["kid"], kid_a.as_str(), "one key signs both");
    assert_eq!(jose_header(&before.id_token)?["alg"], "RS256");
    assert_eq!(kids(&get_json(&format!("{}/jwks", app.base)).await?), vec![kid_a.clone()]);

    // `ssobroker keys rotate --alg ES256`, as the library function the binary calls.
    let mut out = Vec::new();
    let rotate = KeysCommand::Rotate { alg: Some(SigningAlg::Es256) };
    keys_cli::run_keys(&mut *app.pool.get()?, &app.cfg, rotate, app.now(), &mut out)?;
    let printed = String::from_utf8(out)?;
    assert!(printed.contains(&format!("previous key {kid_a} (RS256): published until")), "{printed}");
    let list = list_json(&app)?;
    let kid_b = list
        .iter()
        .find(|k| k["state"] == "current")
        .and_then(|k| k["kid"].as_str())
        .ok_or("no current")?
        .to_string();
    assert_ne!(kid_a, kid_b);
    assert!(printed.starts_with(&format!("new current key: {kid_b} (ES256)")), "{printed}");
    // Published until every token of A has expired: longest TTL + one refresh period + skew.
    let retire = list
        .iter()
        .find(|k| k["kid"] == kid_a.as_str())
        .and_then(|k| k["published_until"].as_i64())
        .ok_or("no date")?;
    assert_eq!(state_of(&list, &kid_a), Some("published"));
    assert_eq!(retire, app.now().timestamp() + 3600 + 60 + 120);
    let audit = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(audit.kind, "key.rotated");
    assert!(audit.detail.contains(&kid_b) && audit.detail.contains(&kid_a), "{}", audit.detail);

    // The running broker picks the rotation up on its next refresh, without a restart.
    assert!(app.state.refresh_keys().await?, "the rotation is a change");
    assert!(!app.state.refresh_keys().await?, "nothing new the second time");
    app.new_browser()?;
    let after = login_tokens(&app, "bob@example.com").await?;
    for jwt in [&after.id_token, &after.access_token] {
        let h = jose_header(jwt)?;
        assert_eq!(h["kid"], kid_b.as_str());
        assert_eq!(h["alg"], "ES256");
    }
    let mut published = kids(&get_json(&format!("{}/jwks", app.base)).await?);
    published.sort();
    let mut both = vec![kid_a.clone(), kid_b.clone()];
    both.sort();
    assert_eq!(published, both, "the old key stays published");
    let discovery = get_json(&format!("{}/.well-known/openid-configuration", app.base)).await?;
    assert_eq!(discovery["id_token_signing_alg_values_supported"], serde_json::json!(["ES256", "RS256"]));
    verify_against_jwks(&app, &before.id_token).await?;
    verify_against_jwks(&app, &after.id_token).await?;
    assert_eq!(userinfo_status(&app, &before.access_token).await?, 200, "old access token still works");
    assert_eq!(userinfo_status(&app, &after.access_token).await?, 200);

    // A restart with yet another signing_alg keeps the current key: switching is a rotation.
    let mut other = (*app.cfg).clone();
    other.signing_alg = SigningAlg::EdDsa;
    let restarted = AppState::new(other, app.pool.clone(), Arc::new(app.clock.clone()), None)?;
    assert_eq!(restarted.keys().current_kid(), kid_b);
    assert_eq!(list_json(&app)?.len(), 2, "no key created");

    // Past retirement: A leaves the JWKS and verifies nothing.
    app.clock.advance(Duration::seconds(retire - app.now().timestamp()));
    assert!(app.state.refresh_keys().await?);
    assert_eq!(kids(&get_json(&format!("{}/jwks", app.base)).await?), vec![kid_b.clone()]);
    let discovery = get_json(&format!("{}/.well-known/openid-configuration", app.base)).await?;
    assert_eq!(discovery["id_token_signing_alg_values_supported"], serde_json::json!(["ES256"]));
    assert_eq!(userinfo_status(&app, &before.access_token).await?, 401);
    let list = list_json(&app)?;
    assert_eq!(state_of(&list, &kid_a), Some("retired"));
    assert_eq!(state_of(&list, &kid_b), Some("current"));
    let mut table = Vec::new();
    keys_cli::run_keys(
        &mut *app.pool.get()?,
        &app.cfg,
        KeysCommand::List { json: false },
        app.now(),
        &mut table,
    )?;
    let table = String::from_utf8(table)?;
    assert!(table.lines().any(|l| l.starts_with(&kid_a) && l.ends_with("retired")), "{table}");

    // The binary reads the same database.
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("ssobroker.toml");
    let database_url = match &app.cfg.database {
        DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatabaseUrl::Postgres(url) => url.clone(),
    };
    std::fs::write(&config, format!("database_url = {database_url:?}\n"))?;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ssobroker"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("SSOBROKER_DATABASE_URL")
            .env_remove("SSOBROKER_SIGNING_ALG")
            .stdin(Stdio::null())
            .output()
    };
    let out = run(&["keys", "list"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout)?;
    assert!(stdout.starts_with("KID "), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with(&kid_b) && l.ends_with("current")), "{stdout}");
    let out = run(&["keys", "rotate", "--alg", "HS256"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected RS256, ES256 or EdDSA"));
    Ok(())
}
both_backends!(rotation_keeps_old_tokens_until_retirement, rotation);

#[test]
fn signing_alg_is_validated() {
    let dir = std::path::Path::new(".");
    let cfg = config::validate(FileConfig::default(), "t.toml", dir).map_err(|e| e.to_string());
    assert_eq!(cfg.map(|c| c.signing_alg), Ok(SigningAlg::Rs256), "RS256 by default");
    let raw = FileConfig { signing_alg: "EdDSA".into(), ..FileConfig::default() };
    assert_eq!(config::validate(raw, "t.toml", dir).map(|c| c.signing_alg).ok(), Some(SigningAlg::EdDsa));
    let raw = FileConfig { signing_alg: "es256".into(), ..FileConfig::default() };
    let err = config::validate(raw, "t.toml", dir).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("t.toml: signing_alg: \"es256\": must be RS256, ES256 or EdDSA"), "{err}");
}
