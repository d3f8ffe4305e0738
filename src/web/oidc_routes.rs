//! OIDC endpoints: discovery, JWKS, authorize, token, userinfo.

use super::{request_meta, AppState, WebError};
use crate::flow::{self, Route};
use crate::oidc::{self, AuthorizeError, AuthorizeParams, TokenParams};
use crate::saml::AuthnStart;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
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
                // Malformed token requests get OAuth's JSON error, not the HTML page.
                .app_data(web::FormConfig::default().limit(64 * 1024).error_handler(|e, _| {
                    tracing::info!(error = %e, "malformed token request");
                    WebError::oauth(StatusCode::BAD_REQUEST, "invalid_request", "malformed token request")
                        .into()
                }))
                .route(web::post().to(token_handler)),
        )
        .route("/userinfo", web::get().to(userinfo_get_handler))
        .route("/userinfo", web::post().to(userinfo_post_handler));
}

async fn discovery_handler(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.discovery_json.as_str().to_owned())
}

async fn jwks_handler(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(state.jwks_json.as_str().to_owned())
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
fn browser_cookie(state: &AppState, value: String) -> Cookie<'static> {
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

async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: AuthorizeParams,
) -> Result<HttpResponse, WebError> {
    let client = params.client_id.as_deref().and_then(|id| state.cfg.client(id));
    let valid = match oidc::validate_authorize(&params, client) {
        Ok(v) => v,
        Err(AuthorizeError::NoRedirect { description }) => return Err(WebError::bad_request(description)),
        Err(AuthorizeError::Redirect { redirect_uri, code, description, state: st }) => {
            return Ok(found(&oidc::authorize_error_redirect(
                &redirect_uri,
                code,
                &description,
                st.as_deref(),
                &state.cfg.issuer,
            )));
        }
    };
    let now = state.clock.now();
    let meta = request_meta(&req);
    let prompt_login = valid.prompts("login");
    if let Some(cookie) = req.cookie(&session_cookie_name(&state)).filter(|_| !prompt_login) {
        let (st, v, m) = (state.clone(), valid.clone(), meta.clone());
        let value = cookie.value().to_string();
        if let Some(redirect) =
            state.db(move |c| flow::issue_code_for_session(c, &st.cfg, &value, &v, &m, now)).await?
        {
            return Ok(found(&redirect));
        }
    }
    if valid.prompts("none") {
        return Ok(found(&oidc::authorize_error_redirect(
            &valid.redirect_uri,
            "login_required",
            "no broker session",
            valid.state.as_deref(),
            &state.cfg.issuer,
        )));
    }
    match flow::choose_connection(&state.cfg, valid.idp_hint.as_deref(), valid.login_hint.as_deref()) {
        Route::Connection(connection) => {
            let id = connection.id.clone();
            let st = state.clone();
            let existing = req
                .cookie(&browser_cookie_name(&state))
                .map(|c| c.value().to_string())
                .filter(|v| v.len() >= 32);
            let browser = existing.clone().unwrap_or_else(|| oidc::random_token(32));
            let b = browser.clone();
            let start = state
                .db(move |c| {
                    let connection = st.cfg.connection(&id).ok_or(WebError::NotFound)?;
                    flow::start_login(c, &st.cfg, connection, &valid, &b, now).map_err(WebError::from)
                })
                .await?;
            let mut resp = match start {
                AuthnStart::Redirect(r) => found(&r.url),
                AuthnStart::Post { url, saml_request, relay_state, .. } => state.views.page(
                    "autopost",
                    &AutoPost {
                        action: url,
                        fields: vec![
                            Field { name: "SAMLRequest", value: saml_request },
                            Field { name: "RelayState", value: relay_state },
                        ],
                        dev_banner: false,
                    },
                )?,
            };
            if existing.is_none() {
                resp.add_cookie(&browser_cookie(&state, browser)).map_err(|e| WebError::internal(&e))?;
            }
            Ok(resp)
        }
        Route::Picker { unknown_domain } => {
            // Links and the discovery form re-enter /authorize with the same request.
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
                .filter_map(|k| {
                    base.iter().find(|(n, _)| n == k).map(|(_, v)| Hidden { name: k, value: v.clone() })
                })
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
    }
}

async fn token_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TokenParams>,
) -> Result<HttpResponse, WebError> {
    let params = form.into_inner();
    let basic = match req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
        Some(h) => Some(oidc::decode_basic_auth(h)?),
        None => None,
    };
    let code = oidc::token::code_from_params(&params)?.to_string();
    let now = state.clock.now();
    let meta = request_meta(&req);
    // Client authentication (argon2) first, on the blocking pool but without a database
    // connection, so wrong-secret floods cannot starve the pool.
    let st = state.clone();
    let (client, params) = web::block(move || -> Result<(crate::oidc::Client, TokenParams), WebError> {
        let presented = oidc::presented_client_id(basic.as_ref(), &params).map(str::to_string);
        let client = presented.as_deref().and_then(|id| st.cfg.client(id));
        let client = oidc::authenticate_client(client, basic, &params)?.clone();
        Ok((client, params))
    })
    .await
    .map_err(|e| WebError::internal(&e))??;
    let st = state.clone();
    let response = state
        .db(move |c| {
            flow::exchange_code(
                c,
                &st.cfg,
                &st.keys,
                &client,
                &code,
                params.redirect_uri.as_deref(),
                params.code_verifier.as_deref(),
                &meta,
                now,
            )
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(response))
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
    let claims = state.db(move |c| flow::userinfo(c, &st.cfg, &st.keys, &token, now)).await?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(claims))
}
