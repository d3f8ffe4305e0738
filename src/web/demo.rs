//! Demo-only routes: the development IdP (a form that signs a SAML response, single logout both
//! ways) and a sample app registered as an OIDC client. Mounted only when the state carries a
//! `DemoState`.

use super::oidc_routes::{found, AutoPost, Field};
use super::{AppState, WebError};
use crate::devidp::{
    parse_authn_request, parse_logout_request, parse_logout_response, DevIdp, LogoutRequestSpec,
    LogoutResponseSpec, ResponseSpec, SigAlg,
};
use crate::oidc::{random_token, Secret};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Digest;

pub struct DemoState {
    pub idp: DevIdp,
    pub connection_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
    /// Where the sample app reaches the broker's token and userinfo endpoints.
    pub broker_url: String,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dev-idp/sso", web::get().to(idp_form_handler))
        .route("/dev-idp/sso", web::post().to(idp_submit_handler))
        .route("/dev-idp/metadata", web::get().to(idp_metadata_handler))
        .route("/dev-idp/slo", web::get().to(idp_slo_handler))
        .route("/dev-idp/logout", web::post().to(idp_logout_handler))
        .route("/demo-app/", web::get().to(app_home_handler))
        .route("/demo-app/login", web::get().to(app_login_handler))
        .route("/demo-app/callback", web::get().to(app_callback_handler));
}

fn demo(state: &AppState) -> Result<&DemoState, WebError> {
    state.demo.as_deref().ok_or(WebError::NotFound)
}

async fn idp_metadata_handler(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok().content_type("application/samlmetadata+xml").body(demo(&state)?.idp.metadata_xml()))
}

#[derive(Deserialize)]
struct SsoQuery {
    #[serde(rename = "SAMLRequest")]
    saml_request: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

#[derive(Serialize)]
struct IdpForm {
    request_id: String,
    relay_state: String,
}

async fn idp_form_handler(
    state: web::Data<AppState>,
    q: web::Query<SsoQuery>,
) -> Result<HttpResponse, WebError> {
    demo(&state)?;
    let parsed = parse_authn_request(&q.saml_request)
        .map_err(|_| WebError::bad_request("Not a valid AuthnRequest."))?;
    state.views.page(
        "devidp",
        &IdpForm { request_id: parsed.id, relay_state: q.relay_state.clone().unwrap_or_default() },
    )
}

#[derive(Deserialize)]
struct IdpSubmit {
    request_id: String,
    relay_state: String,
    email: String,
    given_name: String,
    family_name: String,
    groups: String,
}

async fn idp_submit_handler(
    state: web::Data<AppState>,
    f: web::Form<IdpSubmit>,
) -> Result<HttpResponse, WebError> {
    let d = demo(&state)?;
    let connection = state.cfg.connection(&d.connection_id).ok_or(WebError::NotFound)?;
    let f = f.into_inner();
    // XML 1.0 cannot carry control characters: the signer would fail on them (a 500).
    let typed = [&f.request_id, &f.email, &f.given_name, &f.family_name, &f.groups];
    if typed.iter().any(|v| v.chars().any(char::is_control)) {
        return Err(WebError::bad_request(
            "A field holds a control character, which a SAML response cannot carry.",
        ));
    }
    let groups: Vec<&str> = f.groups.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
    let spec = ResponseSpec::new(
        &d.idp,
        &connection.sp.entity_id,
        &connection.sp.acs_url,
        Some(&f.request_id),
        f.email.trim(),
        state.clock.now(),
    )
    .with_attribute("email", &[f.email.trim()])
    .with_attribute("firstName", &[f.given_name.trim()])
    .with_attribute("lastName", &[f.family_name.trim()])
    .with_attribute("groups", &groups);
    let signed = d.idp.sign_response_b64(&spec).map_err(|e| WebError::internal(&e))?;
    let page = AutoPost {
        heading: "Continuing sign-in…",
        action: connection.sp.acs_url.clone(),
        fields: vec![
            Field { name: "SAMLResponse", value: signed },
            Field { name: "RelayState", value: f.relay_state },
        ],
        dev_banner: true,
    };
    state.views.page("autopost", &page)
}

#[derive(Deserialize)]
struct SloQuery {
    #[serde(rename = "SAMLRequest")]
    saml_request: Option<String>,
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

#[derive(Serialize)]
struct IdpSignedOut {
    /// The broker confirmed that its sessions for the user ended.
    confirmed: bool,
    status: String,
}

/// The dev IdP's single logout service. The broker's LogoutRequest (HTTP-Redirect): the dev IdP
/// keeps no sessions, so it answers Success at once with a signed LogoutResponse to the
/// broker's single logout service. The broker's LogoutResponse (to a sign-out started here):
/// a page that says what the broker answered.
async fn idp_slo_handler(
    state: web::Data<AppState>,
    q: web::Query<SloQuery>,
) -> Result<HttpResponse, WebError> {
    let d = demo(&state)?;
    let connection = state.cfg.connection(&d.connection_id).ok_or(WebError::NotFound)?;
    if let Some(answer) = &q.saml_response {
        let answer = parse_logout_response(answer, true)
            .map_err(|_| WebError::bad_request("Not a valid LogoutResponse."))?;
        let confirmed = answer.status == crate::saml::STATUS_SUCCESS;
        let status = answer.status.rsplit(':').next().unwrap_or_default().to_string();
        return state.views.page("devidp_signed_out", &IdpSignedOut { confirmed, status });
    }
    let saml_request =
        q.saml_request.as_deref().ok_or_else(|| WebError::bad_request("No SAMLRequest or SAMLResponse."))?;
    let request = parse_logout_request(saml_request, true)
        .map_err(|_| WebError::bad_request("Not a valid LogoutRequest."))?;
    let spec = LogoutResponseSpec::new(&d.idp, &connection.sp.slo_url, &request.id, state.clock.now());
    let query = d
        .idp
        .redirect_query(
            "SAMLResponse",
            &d.idp.logout_response_xml(&spec),
            q.relay_state.as_deref(),
            SigAlg::RsaSha256,
        )
        .map_err(|e| WebError::internal(&e))?;
    Ok(found(&format!("{}?{query}", connection.sp.slo_url)))
}

#[derive(Deserialize)]
struct IdpLogout {
    name_id: String,
}

/// A sign-out that starts at the IdP (as when a user signs out of Okta's dashboard): the dev
/// IdP's signed LogoutRequest for every session of the NameID goes to the broker's single
/// logout service, whose LogoutResponse comes back to `/dev-idp/slo`.
async fn idp_logout_handler(
    state: web::Data<AppState>,
    f: web::Form<IdpLogout>,
) -> Result<HttpResponse, WebError> {
    let d = demo(&state)?;
    let connection = state.cfg.connection(&d.connection_id).ok_or(WebError::NotFound)?;
    let name_id = f.name_id.trim();
    if name_id.is_empty() {
        return Err(WebError::bad_request("No NameID to sign out."));
    }
    let spec = LogoutRequestSpec::new(&d.idp, &connection.sp.slo_url, name_id, state.clock.now());
    let query = d
        .idp
        .redirect_query("SAMLRequest", &d.idp.logout_request_xml(&spec), None, SigAlg::RsaSha256)
        .map_err(|e| WebError::internal(&e))?;
    Ok(found(&format!("{}?{query}", connection.sp.slo_url)))
}

#[derive(Serialize, Default)]
struct AppPage {
    client_id: String,
    claims: Option<String>,
    userinfo: Option<String>,
    error: Option<String>,
    /// RP-initiated logout with this login's ID token (and on to the IdP's single logout).
    logout_url: Option<String>,
    /// The NameID the dev IdP asserted (the email typed there), for a sign-out at the IdP.
    name_id: Option<String>,
    /// Back from the broker's sign-out (the `state` the logout link sent, matched to the
    /// app's cookie, so a hand-typed URL claims nothing).
    signed_out: bool,
}

#[derive(Deserialize)]
struct HomeQuery {
    state: Option<String>,
}

/// The `state` of the app's logout link, as a real relying party keeps it (RP-Initiated
/// Logout §3): the broker echoes it on the way back, and only a match means "our sign-out".
const LOGOUT_COOKIE: &str = "demo_app_logout";

fn app_cookie(name: &str, value: String) -> Cookie<'static> {
    Cookie::build(name.to_owned(), value).path("/demo-app/").http_only(true).same_site(SameSite::Lax).finish()
}

async fn app_home_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<HomeQuery>,
) -> Result<HttpResponse, WebError> {
    use subtle::ConstantTimeEq;
    let d = demo(&state)?;
    let expected = req.cookie(LOGOUT_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    let signed_out = match q.state.as_deref() {
        Some(st) if !expected.is_empty() => bool::from(st.as_bytes().ct_eq(expected.as_bytes())),
        _ => false,
    };
    let mut resp = state
        .views
        .page("demo_app", &AppPage { client_id: d.client_id.clone(), signed_out, ..Default::default() })?;
    if signed_out {
        resp.add_removal_cookie(&app_cookie(LOGOUT_COOKIE, String::new()))
            .map_err(|e| WebError::internal(&e))?;
    }
    Ok(resp)
}

const APP_COOKIE: &str = "demo_app_login";

async fn app_login_handler(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    let d = demo(&state)?;
    let (st, nonce, verifier) = (random_token(16), random_token(16), random_token(32));
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut url =
        url::Url::parse(&format!("{}/authorize", d.broker_url)).map_err(|e| WebError::internal(&e))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &d.client_id)
        .append_pair("redirect_uri", &d.redirect_uri)
        .append_pair("scope", "openid email profile")
        .append_pair("state", &st)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut resp = found(url.as_str());
    resp.add_cookie(&app_cookie(APP_COOKIE, format!("{st}.{verifier}")))
        .map_err(|e| WebError::internal(&e))?;
    Ok(resp)
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Tokens {
    id_token: String,
    access_token: String,
}

async fn app_callback_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<Callback>,
) -> Result<HttpResponse, WebError> {
    let d = demo(&state)?;
    let page = |error: String| {
        state.views.page(
            "demo_app",
            &AppPage { client_id: d.client_id.clone(), error: Some(error), ..Default::default() },
        )
    };
    if let Some(e) = &q.error {
        return page(format!("The broker answered: {e}"));
    }
    let cookie = req.cookie(APP_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    let (expected_state, verifier) = cookie.split_once('.').unwrap_or(("", ""));
    let (Some(code), Some(st)) = (&q.code, &q.state) else { return page("Missing code or state.".into()) };
    if expected_state.is_empty() || st != expected_state {
        return page("State mismatch: start the login again.".into());
    }
    let client = awc::Client::default();
    let mut resp = client
        .post(format!("{}/token", d.broker_url))
        .basic_auth(&d.client_id, d.client_secret.expose())
        .send_form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", d.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .await
        .map_err(|e| WebError::internal(&e))?;
    if !resp.status().is_success() {
        let body = resp.body().await.unwrap_or_default();
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if error["error"] == "invalid_grant" {
            // What a reload of this page does: the code in its URL was spent by the first load.
            return page(
                "This page came from a one-time authorization code that was already used (a reload, or \
                 the back button). As OAuth 2.0 requires, the broker refused it and revoked the tokens \
                 issued for it. Log in again."
                    .into(),
            );
        }
        return page(format!("Token request failed: {}", String::from_utf8_lossy(&body)));
    }
    let tokens: Tokens = resp.json().await.map_err(|e| WebError::internal(&e))?;
    let payload = tokens.id_token.split('.').nth(1).unwrap_or_default();
    let claims: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut ui = client
        .get(format!("{}/userinfo", d.broker_url))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .map_err(|e| WebError::internal(&e))?;
    let userinfo: serde_json::Value = ui.json().await.map_err(|e| WebError::internal(&e))?;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let logout_state = random_token(16);
    let mut logout_url =
        url::Url::parse(&format!("{}/logout", d.broker_url)).map_err(|e| WebError::internal(&e))?;
    logout_url
        .query_pairs_mut()
        .append_pair("id_token_hint", &tokens.id_token)
        .append_pair("post_logout_redirect_uri", &format!("{}/demo-app/", d.broker_url))
        .append_pair("state", &logout_state);
    let mut resp = state.views.page(
        "demo_app",
        &AppPage {
            client_id: d.client_id.clone(),
            claims: Some(pretty(&claims)),
            userinfo: Some(pretty(&userinfo)),
            error: None,
            logout_url: Some(logout_url.into()),
            name_id: claims["email"].as_str().map(str::to_string),
            signed_out: false,
        },
    )?;
    resp.add_cookie(&app_cookie(LOGOUT_COOKIE, logout_state)).map_err(|e| WebError::internal(&e))?;
    Ok(resp)
}
