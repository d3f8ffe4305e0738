//! The user portal at `/` (apps, profile, sign-out) and the broker's own sign-in links
//! (`/login/<connection>`), which start a login that ends on the portal or the admin console.

use super::oidc_routes::{browser_cookie, browser_cookie_name, found, session_cookie_name, AutoPost, Field};
use super::{AppState, WebError};
use crate::flow::{self, BrokerPage};
use crate::saml::AuthnStart;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(portal_handler)).route("/login/{connection}", web::get().to(login_handler));
}

#[derive(Serialize)]
struct PortalPage {
    name: String,
    email: String,
    roles: String,
    groups: String,
    connections: String,
    apps: Vec<AppLink>,
    logout_token: String,
}

#[derive(Serialize)]
struct AppLink {
    client_id: String,
    launch_url: String,
}

#[derive(Serialize)]
pub(super) struct SignInPage {
    pub heading: &'static str,
    pub connections: Vec<ConnectionLink>,
    pub admin_link: bool,
}

#[derive(Serialize)]
pub(super) struct ConnectionLink {
    pub display_name: String,
    pub href: String,
}

/// The sign-in page listing every connection; `for_admin` sends the login on to `/admin/sso`.
pub(super) fn sign_in_page(state: &AppState, for_admin: bool) -> Result<HttpResponse, WebError> {
    let suffix = if for_admin { "?for=admin" } else { "" };
    let page = SignInPage {
        heading: if for_admin { "Admin sign-in" } else { "Sign in" },
        connections: state
            .cfg
            .connections
            .iter()
            .map(|c| ConnectionLink {
                display_name: c.display_name.clone(),
                href: format!("/login/{}{suffix}", c.id),
            })
            .collect(),
        admin_link: !for_admin,
    };
    state.views.page("signin", &page)
}

fn dash(v: &str) -> String {
    if v.is_empty() {
        "—".into()
    } else {
        v.to_string()
    }
}

async fn portal_handler(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let Some(cookie) = req.cookie(&session_cookie_name(&state)).map(|c| c.value().to_string()) else {
        return sign_in_page(&state, false);
    };
    let now = state.clock.now();
    let (st, c2) = (state.clone(), cookie.clone());
    let Some(p) = state.db(move |c| crate::console::portal::portal(c, &st.cfg, &c2, now)).await? else {
        return sign_in_page(&state, false);
    };
    let u = &p.user;
    let name = u
        .display_name
        .clone()
        .or_else(|| match (&u.given_name, &u.family_name) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (g, f) => g.clone().or(f.clone()),
        })
        .or(u.email.clone())
        .unwrap_or_default();
    let connections: Vec<String> = p
        .identities
        .iter()
        .map(|i| {
            state
                .cfg
                .connection(&i.connection_id)
                .map(|c| c.display_name.clone())
                .unwrap_or(i.connection_id.clone())
        })
        .collect();
    let page = PortalPage {
        name,
        email: dash(u.email.as_deref().unwrap_or_default()),
        roles: dash(&p.roles.join(", ")),
        groups: dash(&p.groups.join(", ")),
        connections: dash(&connections.join(", ")),
        apps: p
            .apps
            .into_iter()
            .map(|a| AppLink { client_id: a.client_id, launch_url: a.launch_url })
            .collect(),
        // The existing logout form's confirmation token, bound to this session.
        logout_token: flow::logout::confirm_token(&cookie),
    };
    state.views.page("portal", &page)
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(rename = "for")]
    target: Option<String>,
}

async fn login_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<LoginQuery>,
) -> Result<HttpResponse, WebError> {
    let page = match q.target.as_deref() {
        Some("admin") => BrokerPage::AdminSso,
        _ => BrokerPage::Portal,
    };
    start_broker_login(&state, &req, &path, page).await
}

/// Sends the browser to the connection's IdP for a login that ends on `page`.
pub(super) async fn start_broker_login(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    connection_id: &str,
    page: BrokerPage,
) -> Result<HttpResponse, WebError> {
    if state.cfg.connection(connection_id).is_none() {
        return Err(WebError::NotFound);
    }
    let now = state.clock.now();
    let existing =
        req.cookie(&browser_cookie_name(state)).map(|c| c.value().to_string()).filter(|v| v.len() >= 32);
    let browser = existing.clone().unwrap_or_else(|| crate::oidc::random_token(32));
    let (st, b, id) = (state.clone(), browser.clone(), connection_id.to_string());
    let start = state
        .db(move |c| {
            let connection = st.live_connection(st.cfg.connection(&id).ok_or(WebError::NotFound)?);
            flow::start_broker_login(c, &st.cfg, &connection, page, &b, now).map_err(WebError::from)
        })
        .await?;
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
    if existing.is_none() {
        resp.add_cookie(&browser_cookie(state, browser)).map_err(|e| WebError::internal(&e))?;
    }
    Ok(resp)
}
