//! OIDC endpoints: discovery, JWKS, authorize, token, userinfo.

use super::{request_meta, AppState, WebError};
use crate::config::Config;
use crate::flow::{self, RequestMeta, Route};
use crate::oidc::{self, AuthorizeError, AuthorizeParams, TokenParams};
use crate::saml::AuthnStart;
use crate::store;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;

const SESSION_COOKIE: &str = "ssobroker_session";
/// Identifies the browser that starts a login, so the ACS can refuse a response posted from
/// another browser (login CSRF).
const BROWSER_COOKIE: &str = "ssobroker_browser";

/// Cookie names carry the `__Host-` prefix on https: browsers then refuse such a cookie unless
/// it is Secure, host-only and Path=/, so a sibling subdomain cannot plant one.
pub fn cookie_name(state: &AppState, base: &'static str) -> String {
    if state.cfg.issuer_is_https {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

pub fn session_cookie_name(state: &AppState) -> String {
    cookie_name(state, SESSION_COOKIE)
}

pub fn browser_cookie_name(state: &AppState) -> String {
    cookie_name(state, BROWSER_COOKIE)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/openid-configuration", web::get().to(discovery_handler))
        .route("/jwks", web::get().to(jwks_handler))
        .route("/authorize", web::get().to(authorize_get_handler))
        .route("/authorize", web::post().to(authorize_post_handler))
        .service(
            web::resource("/token")
                .wrap(actix_web::middleware::from_fn(super::ops::rate_limit_token))
                // Malformed token requests get OAuth's JSON error, not the HTML page.
                .app_data(web::FormConfig::default().limit(64 * 1024).error_handler(|e, _| {
                    tracing::info!(error = %e, "malformed token request");
                    WebError::oauth(StatusCode::BAD_REQUEST, "invalid_request", "malformed token request")
                        .into()
                }))
                .route(web::post().to(token_handler)),
        )
        .service(web::resource("/revoke").app_data(oauth_form()).route(web::post().to(revoke_handler)))
        .service(
            web::resource("/introspect").app_data(oauth_form()).route(web::post().to(introspect_handler)),
        )
        .route("/logout", web::get().to(logout_get_handler))
        .route("/logout", web::post().to(logout_post_handler))
        .route("/userinfo", web::get().to(userinfo_get_handler))
        .route("/userinfo", web::post().to(userinfo_post_handler));
}

/// Malformed form posts to the OAuth endpoints get OAuth's JSON error, not the HTML page.
fn oauth_form() -> web::FormConfig {
    web::FormConfig::default().limit(64 * 1024).error_handler(|e, _| {
        tracing::info!(error = %e, "malformed OAuth request");
        WebError::oauth(StatusCode::BAD_REQUEST, "invalid_request", "malformed request").into()
    })
}

async fn discovery_handler(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.discovery_json().as_str().to_owned())
}

async fn jwks_handler(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(state.jwks_json().as_str().to_owned())
}

pub fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", location))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// The broker session cookie: HttpOnly, SameSite=Lax (it must ride the IdP's POST back and the
/// app's top-level GET), Secure when the issuer is https.
pub fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(session_cookie_name(state), value)
        .path("/")
        .http_only(true)
        .secure(state.cfg.issuer_is_https)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(state.cfg.session_ttl.num_seconds()))
        .finish()
}

/// The browser cookie must ride the IdP's cross-site POST to the ACS: SameSite=None, which
/// browsers accept only with Secure, i.e. on https. On http it is Lax (same-site setups only).
pub(super) fn browser_cookie(state: &AppState, value: String) -> Cookie<'static> {
    let same_site = if state.cfg.issuer_is_https { SameSite::None } else { SameSite::Lax };
    Cookie::build(browser_cookie_name(state), value)
        .path("/")
        .http_only(true)
        .secure(state.cfg.issuer_is_https)
        .same_site(same_site)
        .finish()
}

async fn authorize_get_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<AuthorizeParams>,
) -> Result<HttpResponse, WebError> {
    authorize(state, req, q.into_inner()).await
}

async fn authorize_post_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    f: web::Form<AuthorizeParams>,
) -> Result<HttpResponse, WebError> {
    authorize(state, req, f.into_inner()).await
}

/// An auto-submitting form (SAML HTTP-POST binding).
#[derive(Serialize)]
pub struct AutoPost {
    /// The page heading ("Continuing sign-in…", "Signing out…").
    pub heading: &'static str,
    pub action: String,
    pub fields: Vec<Field>,
    pub dev_banner: bool,
}

#[derive(Serialize)]
pub struct Field {
    pub name: &'static str,
    pub value: String,
}

#[derive(Serialize)]
struct LoginPage {
    connections: Vec<ConnectionLink>,
    hidden: Vec<Hidden>,
    unknown_domain: bool,
}

#[derive(Serialize)]
struct ConnectionLink {
    display_name: String,
    href: String,
}

#[derive(Serialize)]
struct Hidden {
    name: &'static str,
    value: String,
}

/// What `/authorize` decided on the blocking pool, for the async side to answer.
enum AuthorizeStep {
    /// Back to the app (a code from the broker session, or an OAuth error).
    Redirect(String),
    /// To the IdP; `browser` is the new browser cookie's value when the browser had none.
    Start { start: AuthnStart, browser: Option<String> },
    /// The login page.
    Picker { unknown_domain: bool },
}

async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: AuthorizeParams,
) -> Result<HttpResponse, WebError> {
    let now = state.clock.now();
    let meta = request_meta(&req);
    let session = req.cookie(&session_cookie_name(&state)).map(|c| c.value().to_string());
    let browser =
        req.cookie(&browser_cookie_name(&state)).map(|c| c.value().to_string()).filter(|v| v.len() >= 32);
    let st = state.clone();
    let step =
        state.blocking(move |db| authorize_step(db, &st, &params, session, browser, &meta, now)).await?;
    match step {
        AuthorizeStep::Redirect(url) => Ok(found(&url)),
        AuthorizeStep::Start { start, browser } => {
            let mut resp = match start {
                AuthnStart::Redirect(r) => found(&r.url),
                AuthnStart::Post { url, saml_request, relay_state, .. } => state.views.page(
                    "autopost",
                    &AutoPost {
                        heading: "Continuing sign-in…",
                        action: url,
                        fields: vec![
                            Field { name: "SAMLRequest", value: saml_request },
                            Field { name: "RelayState", value: relay_state },
                        ],
                        dev_banner: false,
                    },
                )?,
            };
            if let Some(browser) = browser {
                resp.add_cookie(&browser_cookie(&state, browser)).map_err(|e| WebError::internal(&e))?;
            }
            Ok(resp)
        }
        AuthorizeStep::Picker { unknown_domain } => Ok(login_page(&state, &req, unknown_domain)?),
    }
}

/// The whole database side of `/authorize` in one blocking call: the client (looked up once and
/// used for both the validation and an SSO code), the broker session, the login transaction.
#[allow(clippy::too_many_arguments)]
fn authorize_step(
    db: &mut store::Checkout<'_>,
    state: &AppState,
    params: &AuthorizeParams,
    session: Option<String>,
    browser: Option<String>,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<AuthorizeStep, WebError> {
    let cfg = &state.cfg;
    let client = match params.client_id.as_deref() {
        Some(id) => lookup_client(db, cfg, id)?,
        None => None,
    };
    let valid = match oidc::validate_authorize(params, client.as_ref()) {
        Ok(v) => v,
        Err(AuthorizeError::NoRedirect { description }) => return Err(WebError::bad_request(description)),
        Err(AuthorizeError::Redirect { redirect_uri, code, description, state: st }) => {
            return Ok(AuthorizeStep::Redirect(oidc::authorize_error_redirect(
                &redirect_uri,
                code,
                &description,
                st.as_deref(),
                &cfg.issuer,
            )));
        }
    };
    if let Some(cookie) = session.filter(|_| !valid.prompts("login")) {
        let sso = flow::issue_code_for_session(db.conn()?, cfg, client.as_ref(), &cookie, &valid, meta, now)?;
        if let Some(redirect) = sso {
            return Ok(AuthorizeStep::Redirect(redirect));
        }
    }
    if valid.prompts("none") {
        return Ok(AuthorizeStep::Redirect(oidc::authorize_error_redirect(
            &valid.redirect_uri,
            "login_required",
            "no broker session",
            valid.state.as_deref(),
            &cfg.issuer,
        )));
    }
    match flow::choose_connection(cfg, valid.idp_hint.as_deref(), valid.login_hint.as_deref()) {
        Route::Connection(connection) => {
            let new_browser = browser.is_none().then(|| oidc::random_token(32));
            let bound = browser.as_deref().or(new_browser.as_deref()).unwrap_or_default();
            let connection = state.live_connection(connection);
            let start = flow::start_login(db.conn()?, cfg, &connection, &valid, bound, now)?;
            Ok(AuthorizeStep::Start { start, browser: new_browser })
        }
        Route::Picker { unknown_domain } => Ok(AuthorizeStep::Picker { unknown_domain }),
    }
}

/// The connection picker, re-entering /authorize with the same request.
fn login_page(state: &AppState, req: &HttpRequest, unknown_domain: bool) -> Result<HttpResponse, WebError> {
    let base: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k != "idp_hint" && k != "login_hint")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let href = |id: &str| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.extend_pairs(base.iter()).append_pair("idp_hint", id);
        format!("/authorize?{}", s.finish())
    };
    let keep = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
    ];
    let hidden = keep
        .iter()
        .filter_map(|k| base.iter().find(|(n, _)| n == k).map(|(_, v)| Hidden { name: k, value: v.clone() }))
        .collect();
    let page = LoginPage {
        connections: state
            .cfg
            .connections
            .iter()
            .map(|c| ConnectionLink { display_name: c.display_name.clone(), href: href(&c.id) })
            .collect(),
        hidden,
        unknown_domain,
    };
    state.views.page("login", &page)
}

/// Finds and authenticates the client of a `/token`, `/revoke` or `/introspect` request, inside
/// the request's one blocking call. An argon2 secret is checked after the connection went back
/// to the pool, so wrong-secret floods cannot starve it; a generated secret (one SHA-256) is
/// checked while holding it, which saves PostgreSQL a second checkout test.
fn authenticated_client(
    db: &mut store::Checkout<'_>,
    cfg: &Config,
    basic: Option<(String, String)>,
    params: &TokenParams,
) -> Result<crate::oidc::Client, WebError> {
    let client = match oidc::presented_client_id(basic.as_ref(), params) {
        Some(id) => lookup_client(db, cfg, id)?,
        None => None,
    };
    if client.as_ref().and_then(|c| c.secret_hash.as_deref()).is_some_and(oidc::secret_check_is_slow) {
        db.release();
    }
    Ok(oidc::authenticate_client(client.as_ref(), basic, params)?.clone())
}

/// The Basic credentials of a request, if it sent any.
fn basic_auth(req: &HttpRequest) -> Result<Option<(String, String)>, WebError> {
    match req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
        Some(h) => Ok(Some(oidc::decode_basic_auth(h)?)),
        None => Ok(None),
    }
}

fn no_store_json(body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(body)
}

async fn token_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TokenParams>,
) -> Result<HttpResponse, WebError> {
    let params = form.into_inner();
    let grant_label = match oidc::token::grant_type(&params) {
        Ok(oidc::token::GrantType::AuthorizationCode) => "authorization_code",
        Ok(oidc::token::GrantType::RefreshToken) => "refresh_token",
        Err(_) => "unsupported",
    };
    let result = token(&state, &req, params).await;
    let outcome = match &result {
        Ok(_) => "issued",
        Err(WebError::OAuth { code, .. }) => code,
        Err(_) => "error",
    };
    state.metrics.token_grant(grant_label, outcome);
    result
}

async fn token(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    params: TokenParams,
) -> Result<HttpResponse, WebError> {
    let grant_type = oidc::token::grant_type(&params)?;
    if grant_type == oidc::token::GrantType::AuthorizationCode {
        oidc::token::code_from_params(&params)?;
    } else if params.refresh_token.is_none() {
        return Err(WebError::oauth(StatusCode::BAD_REQUEST, "invalid_request", "missing refresh_token"));
    }
    let now = state.clock.now();
    let meta = request_meta(req);
    let basic = basic_auth(req)?;
    let st = state.clone();
    let response = state
        .blocking(move |db| -> Result<_, WebError> {
            let client = authenticated_client(db, &st.cfg, basic, &params)?;
            let c = db.conn()?;
            let response = match grant_type {
                oidc::token::GrantType::AuthorizationCode => flow::exchange_code(
                    c,
                    &st.cfg,
                    &st.keys(),
                    &client,
                    params.code.as_deref().unwrap_or_default(),
                    params.redirect_uri.as_deref(),
                    params.code_verifier.as_deref(),
                    &meta,
                    now,
                ),
                oidc::token::GrantType::RefreshToken => {
                    let token = params.refresh_token.as_ref().map(|t| t.expose()).unwrap_or_default();
                    flow::refresh(c, &st.cfg, &st.keys(), &client, token, &meta, now)
                }
            };
            Ok(response?)
        })
        .await?;
    Ok(no_store_json(&response))
}

/// RFC 7009: always 200 for an authenticated client, whatever the token was.
async fn revoke_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TokenParams>,
) -> Result<HttpResponse, WebError> {
    let now = state.clock.now();
    let meta = request_meta(&req);
    let basic = basic_auth(&req)?;
    let params = form.into_inner();
    let st = state.clone();
    state
        .blocking(move |db| -> Result<(), WebError> {
            let client = authenticated_client(db, &st.cfg, basic, &params)?;
            let Some(token) = params.token.as_ref().filter(|t| !t.expose().is_empty()) else {
                return Err(WebError::oauth(StatusCode::BAD_REQUEST, "invalid_request", "missing token"));
            };
            Ok(flow::revoke(db.conn()?, &st.cfg, &st.keys(), &client, token.expose(), &meta, now)?)
        })
        .await?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).finish())
}

/// RFC 7662, for confidential clients only: a public client cannot prove who is asking.
async fn introspect_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TokenParams>,
) -> Result<HttpResponse, WebError> {
    let now = state.clock.now();
    let basic = basic_auth(&req)?;
    let params = form.into_inner();
    let st = state.clone();
    let answer = state
        .blocking(move |db| -> Result<_, WebError> {
            let client = authenticated_client(db, &st.cfg, basic, &params)?;
            if client.is_public() {
                return Err(WebError::oauth(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "introspection needs client authentication",
                ));
            }
            let Some(token) = params.token.as_ref().filter(|t| !t.expose().is_empty()) else {
                return Err(WebError::oauth(StatusCode::BAD_REQUEST, "invalid_request", "missing token"));
            };
            Ok(flow::introspect(db.conn()?, &st.cfg, &st.keys(), &client, token.expose(), now)?)
        })
        .await?;
    Ok(no_store_json(&answer))
}

#[derive(serde::Deserialize)]
struct BearerForm {
    access_token: Option<String>,
}

async fn userinfo_get_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, WebError> {
    userinfo(state, req, None).await
}

async fn userinfo_post_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Option<web::Form<BearerForm>>,
) -> Result<HttpResponse, WebError> {
    userinfo(state, req, form.map(|f| f.into_inner())).await
}

async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Option<BearerForm>,
) -> Result<HttpResponse, WebError> {
    let from_header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|h| {
        h.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim().to_string())
    });
    let token = from_header.or_else(|| form.and_then(|f| f.access_token));
    let Some(token) = token else {
        return Err(WebError::OAuth {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_token",
            description: "missing bearer token".into(),
            bearer: true,
        });
    };
    let now = state.clock.now();
    let st = state.clone();
    let claims = state.db(move |c| flow::userinfo(c, &st.cfg, &st.keys(), &token, now)).await?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(claims))
}

#[derive(serde::Deserialize, Default)]
struct LogoutParams {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    /// Set by our own confirmation form.
    confirm: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct LogoutPage {
    title: &'static str,
    confirm: bool,
    hidden: Vec<Hidden>,
    /// Single logout reached the IdP and it ended its own session.
    idp_signed_out: bool,
    /// The IdP answered our LogoutRequest without ending its own session.
    idp_incomplete: bool,
    /// Where the app asked to go after signing out (a registered post_logout_redirect_uri),
    /// when this page stops on the way to say something the user should know.
    continue_to: Option<String>,
}

impl LogoutPage {
    /// `idp`: none when the IdP took no part, else whether it ended its own session.
    pub(crate) fn signed_out(idp: Option<bool>) -> Self {
        LogoutPage {
            title: "Signed out",
            confirm: false,
            hidden: vec![],
            idp_signed_out: idp == Some(true),
            idp_incomplete: idp == Some(false),
            continue_to: None,
        }
    }

    /// The IdP kept its session although the app's sign-out reached it: the user is told before
    /// going on to the app, which would otherwise look like a complete sign-out.
    pub(crate) fn idp_incomplete_then(continue_to: String) -> Self {
        LogoutPage { continue_to: Some(continue_to), ..Self::signed_out(Some(false)) }
    }
}

async fn logout_get_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<LogoutParams>,
) -> Result<HttpResponse, WebError> {
    logout(state, req, q.into_inner(), false).await
}

async fn logout_post_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    f: web::Form<LogoutParams>,
) -> Result<HttpResponse, WebError> {
    logout(state, req, f.into_inner(), true).await
}

/// RP-initiated logout 1.0. Validation errors render a page and never redirect. Without an
/// id_token_hint for this session's user, the user confirms with a form bound to the session.
async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    p: LogoutParams,
    posted: bool,
) -> Result<HttpResponse, WebError> {
    let page_err = |e: oidc::OidcError| match e {
        oidc::OidcError::Protocol { description, .. } => WebError::bad_request(description),
        other => WebError::internal(&other),
    };
    let hint = match p.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => Some(oidc::logout::verify_hint(&state.keys(), &state.cfg.issuer, h).map_err(page_err)?),
        None => None,
    };
    let wanted =
        hint.as_ref().map(|h| h.client_id.clone()).or_else(|| p.client_id.clone()).filter(|c| !c.is_empty());
    let known = match &wanted {
        Some(id) => find_client(&state, id).await?,
        None => None,
    };
    let client = oidc::logout::logout_client(hint.as_ref(), p.client_id.as_deref(), |id| {
        known.as_ref().filter(|c| c.client_id == id)
    })
    .map_err(page_err)?;
    let redirect =
        oidc::logout::post_logout_redirect(client, p.post_logout_redirect_uri.as_deref(), p.state.as_deref())
            .map_err(page_err)?;
    let client_id = client.map(|c| c.client_id.clone());
    let now = state.clock.now();
    let meta = request_meta(&req);
    let cookie_name = session_cookie_name(&state);
    let mut onward = None;
    if let Some(cookie) = req.cookie(&cookie_name).map(|c| c.value().to_string()) {
        let c2 = cookie.clone();
        let user = state.db(move |c| flow::logout::session_user(c, &c2, now)).await?;
        if let Some(user) = user {
            let confirm = if posted { p.confirm.as_deref() } else { None };
            if !flow::logout::may_end_without_asking(&cookie, &user, hint.as_ref(), confirm) {
                let mut hidden =
                    vec![Hidden { name: "confirm", value: flow::logout::confirm_token(&cookie) }];
                for (name, v) in [
                    ("client_id", &client_id),
                    ("post_logout_redirect_uri", &p.post_logout_redirect_uri),
                    ("state", &p.state),
                ] {
                    if let Some(v) = v {
                        hidden.push(Hidden { name, value: v.clone() });
                    }
                }
                return state.views.page(
                    "logout",
                    &LogoutPage {
                        title: "Sign out",
                        confirm: true,
                        hidden,
                        idp_signed_out: false,
                        idp_incomplete: false,
                        continue_to: None,
                    },
                );
            }
            let cid = client_id.clone();
            let (st, after) = (state.clone(), redirect.clone());
            onward = state
                .db(move |c| -> Result<_, WebError> {
                    let ended = flow::logout::end_session(c, &cookie, cid.as_deref(), &meta, now)?;
                    Ok(ended.and_then(|ended| start_single_logout(c, &st, &ended, after.as_deref(), now)))
                })
                .await?;
        }
    }
    let mut resp = match (onward, redirect) {
        // The IdP's LogoutResponse comes back to /saml/{id}/slo, which then goes on to `redirect`.
        (Some(outbound), _) => outbound_response(&state, outbound, "Signing out…")?,
        (None, Some(url)) => found(&url),
        (None, None) => state.views.page("logout", &LogoutPage::signed_out(None))?,
    };
    let mut gone =
        Cookie::build(cookie_name, "").path("/").http_only(true).secure(state.cfg.issuer_is_https).finish();
    gone.make_removal();
    resp.add_cookie(&gone).map_err(|e| WebError::internal(&e))?;
    Ok(resp)
}

/// Our LogoutRequest to the IdP of a session that just ended, when its connection has single
/// logout. A failure here is logged and the sign-out goes on without it: the broker session has
/// already ended, which is what the user asked for.
fn start_single_logout(
    conn: &mut store::DbConnection,
    state: &AppState,
    ended: &flow::logout::EndedSession,
    redirect_to: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<crate::saml::Outbound> {
    let connection = state.cfg.connection(&ended.connection_id)?;
    let live = state.live_connection(connection);
    match flow::logout::start_idp_logout(conn, &live, ended, redirect_to, now) {
        Ok(outbound) => outbound,
        Err(e) => {
            let reference = super::error::reference_id();
            tracing::error!(reference = %reference, connection = %connection.id, error = %e,
                "single logout could not start; the broker session ended without it");
            None
        }
    }
}

/// Sends the browser on with a SAML message: a redirect, or an auto-submitting form.
pub fn outbound_response(
    state: &AppState,
    outbound: crate::saml::Outbound,
    heading: &'static str,
) -> Result<HttpResponse, WebError> {
    match outbound {
        crate::saml::Outbound::Redirect(url) => Ok(found(&url)),
        crate::saml::Outbound::Post { url, field, value, relay_state } => {
            let mut fields = vec![Field { name: field, value }];
            if let Some(relay_state) = relay_state {
                fields.push(Field { name: "RelayState", value: relay_state });
            }
            state.views.page("autopost", &AutoPost { heading, action: url, fields, dev_banner: false })
        }
    }
}

/// A client from the config file, or else from the database (`ssobroker client add`); the
/// connection is taken only for the second.
fn lookup_client(
    db: &mut store::Checkout<'_>,
    cfg: &Config,
    id: &str,
) -> Result<Option<crate::oidc::Client>, WebError> {
    if let Some(c) = cfg.client(id) {
        return Ok(Some(c.clone()));
    }
    Ok(flow::clients::lookup(db.conn()?, cfg, id)?)
}

/// `lookup_client` for a handler with nothing else to do on the blocking pool.
async fn find_client(state: &web::Data<AppState>, id: &str) -> Result<Option<crate::oidc::Client>, WebError> {
    if let Some(c) = state.cfg.client(id) {
        return Ok(Some(c.clone()));
    }
    let (st, id) = (state.clone(), id.to_string());
    state.db(move |c| flow::clients::lookup(c, &st.cfg, &id)).await
}
