//! The admin console over HTTP: sign-in (password or SSO), sign-out, the pages and the actions.
//! Decisions live in `crate::console`; here: cookies, CSRF checks on every POST, rendering.
//!
//! The console session cookie is HttpOnly, SameSite=Strict, Secure and `__Host-` on https.
//! Every state-changing form carries the session's synchronizer token (compared in constant
//! time); the sign-in form, before any session exists, uses a double-submit cookie. A POST
//! whose `Origin` header names another site is refused as well.

use super::oidc_routes::{cookie_name, session_cookie_name};
use super::portal_routes::{sign_in_page, start_broker_login};
use super::{request_meta, AppState, WebError};
use crate::console::{self, auth::ConsoleSession, Actor};
use crate::flow::BrokerPage;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

const ADMIN_COOKIE: &str = "ssobroker_admin";
const LOGIN_FORM_COOKIE: &str = "ssobroker_admin_form";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        // The per-address limiter in front (cheap, in memory, before the body is read); the
        // per-account throttle in `console::auth` behind it (in the database).
        web::resource("/admin/login")
            .route(web::get().to(login_page_handler))
            .route(web::post().to(login_handler).wrap(from_fn(super::ops::rate_limit_admin_login))),
    )
    .route("/admin/sso", web::get().to(sso_handler))
    .route("/admin/logout", web::post().to(logout_handler))
    .route("/admin", web::get().to(overview_handler))
    .route("/admin/", web::get().to(overview_handler))
    .route("/admin/users", web::get().to(users_handler))
    .route("/admin/users/{id}", web::get().to(user_handler))
    .route("/admin/users/{id}/disable", web::post().to(disable_handler))
    .route("/admin/users/{id}/enable", web::post().to(enable_handler))
    .route("/admin/users/{id}/sessions/revoke", web::post().to(revoke_sessions_handler))
    .route("/admin/users/{id}/roles/add", web::post().to(role_add_handler))
    .route("/admin/users/{id}/roles/remove", web::post().to(role_remove_handler))
    .route("/admin/audit", web::get().to(audit_handler))
    .route("/admin/audit.csv", web::get().to(audit_csv_handler))
    .route("/admin/audit.jsonl", web::get().to(audit_jsonl_handler))
    .route("/admin/connections", web::get().to(connections_handler))
    .route("/admin/connections/{id}", web::get().to(connection_handler))
    .route("/admin/clients", web::get().to(clients_handler))
    .route("/admin/clients", web::post().to(client_create_handler))
    .route("/admin/clients/{id}", web::get().to(client_handler))
    .route("/admin/clients/{id}", web::post().to(client_update_handler))
    .route("/admin/clients/{id}/rotate-secret", web::post().to(client_rotate_handler));
}

fn admin_cookie_name(state: &AppState) -> String {
    cookie_name(state, ADMIN_COOKIE)
}

/// A cookie only the console uses: HttpOnly, SameSite=Strict (never sent on a cross-site
/// request, so no other site can act with it), Secure on https. No Max-Age: the server ends
/// the session (idle and absolute timeouts); the browser forgets it when closed.
fn strict_cookie(state: &AppState, name: String, value: String) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .secure(state.cfg.issuer_is_https)
        .same_site(SameSite::Strict)
        .finish()
}

fn removal(state: &AppState, name: String) -> Cookie<'static> {
    let mut c = strict_cookie(state, name, String::new());
    c.make_removal();
    c
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

fn forbidden(message: &str) -> WebError {
    WebError::Page {
        status: StatusCode::FORBIDDEN,
        title: "Not allowed",
        message: message.into(),
        reference: None,
    }
}

/// A POST from a page of another origin (when the browser says so) is refused outright.
/// Under this site's `Referrer-Policy: no-referrer` a browser sends `Origin: null` even for a
/// same-origin form (Fetch, "append a request `Origin` header"), so there the browser-set
/// `Sec-Fetch-Site` decides; a browser that sends it must say `same-origin`.
fn same_origin(state: &AppState, req: &HttpRequest) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let fetch_site = header("sec-fetch-site");
    if fetch_site.is_some_and(|site| site != "same-origin") {
        return false;
    }
    match header("origin") {
        None => true,
        Some("null") => fetch_site == Some("same-origin"),
        Some(origin) => url::Url::parse(&state.cfg.issuer)
            .map(|u| u.origin().ascii_serialization() == origin)
            .unwrap_or(false),
    }
}

/// The signed-in admin, or a redirect to the sign-in page.
async fn admin(state: &web::Data<AppState>, req: &HttpRequest) -> Result<ConsoleSession, WebError> {
    let Some(cookie) = req.cookie(&admin_cookie_name(state)).map(|c| c.value().to_string()) else {
        return Err(WebError::AdminSignIn);
    };
    let now = state.clock.now();
    let st = state.clone();
    state
        .db(move |c| console::auth::console_session(c, &st.cfg, &cookie, now))
        .await?
        .ok_or(WebError::AdminSignIn)
}

/// The signed-in admin for a state-changing form: the CSRF token must match the session's.
async fn admin_post(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    csrf: Option<&str>,
) -> Result<ConsoleSession, WebError> {
    let session = admin(state, req).await?;
    if !same_origin(state, req) || !session.csrf_ok(csrf) {
        tracing::warn!(
            actor = session.actor.as_str(),
            path = req.path(),
            "admin form refused: CSRF check failed"
        );
        return Err(forbidden(
            "This form did not come from an admin console page of this session. Reload the page and try again.",
        ));
    }
    Ok(session)
}

#[derive(Serialize)]
struct Nav {
    admin: String,
    csrf: String,
    section: &'static str,
    notice: Option<String>,
}

fn nav(s: &ConsoleSession, section: &'static str, notice: Option<String>) -> Nav {
    Nav { admin: s.display.clone(), csrf: s.csrf_token().to_string(), section, notice }
}

fn time(t: i64) -> String {
    console::time(t)
}

fn opt_time(t: Option<i64>) -> String {
    t.map(time).unwrap_or_else(|| "never".into())
}

// ---- sign-in ----------------------------------------------------------------------------

#[derive(Serialize)]
struct LoginPage {
    csrf: String,
    name: String,
    error: Option<&'static str>,
    /// Just signed out of the console (shown as a notice, not an error).
    signed_out: bool,
    sso: bool,
    sso_role: String,
}

fn login_page(
    state: &AppState,
    token: String,
    name: String,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let page = LoginPage {
        csrf: token.clone(),
        name,
        error,
        signed_out: false,
        sso: state.cfg.admin_role.is_some(),
        sso_role: state.cfg.admin_role.clone().unwrap_or_default(),
    };
    let mut resp = state.views.page("admin_login", &page)?;
    *resp.status_mut() = status;
    resp.add_cookie(&strict_cookie(state, cookie_name(state, LOGIN_FORM_COOKIE), token))
        .map_err(|e| WebError::internal(&e))?;
    Ok(resp)
}

#[derive(Deserialize)]
struct LoginQuery {
    signed_out: Option<String>,
}

async fn login_page_handler(
    state: web::Data<AppState>,
    q: web::Query<LoginQuery>,
) -> Result<HttpResponse, WebError> {
    let token = crate::oidc::random_token(32);
    let page = LoginPage {
        csrf: token.clone(),
        name: String::new(),
        error: None,
        signed_out: q.signed_out.is_some(),
        sso: state.cfg.admin_role.is_some(),
        sso_role: state.cfg.admin_role.clone().unwrap_or_default(),
    };
    let mut resp = state.views.page("admin_login", &page)?;
    resp.add_cookie(&strict_cookie(&state, cookie_name(&state, LOGIN_FORM_COOKIE), token))
        .map_err(|e| WebError::internal(&e))?;
    Ok(resp)
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: crate::oidc::Secret,
    csrf: Option<String>,
}

async fn login_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, WebError> {
    let LoginForm { name, password, csrf } = form.into_inner();
    let form_cookie = req.cookie(&cookie_name(&state, LOGIN_FORM_COOKIE)).map(|c| c.value().to_string());
    if !same_origin(&state, &req)
        || !console::auth::login_form_token_ok(form_cookie.as_deref(), csrf.as_deref())
    {
        return login_page(
            &state,
            crate::oidc::random_token(32),
            name,
            Some("The sign-in form expired. Please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let now = state.clock.now();
    let meta = request_meta(&req);
    let (n, m) = (name.clone(), meta.clone());
    let prepared = state.db(move |c| console::auth::prepare_sign_in(c, &n, &m, now)).await?;
    let stored_hash = match prepared {
        console::auth::Prepared::Throttled => {
            // Each page gets a fresh form token: the cookie the request carried is never sent
            // back (its decoded value could hold characters no Set-Cookie header may carry).
            return login_page(
                &state,
                crate::oidc::random_token(32),
                name,
                Some("Too many failed sign-ins. Wait 15 minutes and try again."),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        console::auth::Prepared::Verify { stored_hash } => stored_hash,
    };
    // argon2 on the blocking pool, holding no database connection.
    let exists = stored_hash.is_some();
    let matched =
        web::block(move || console::auth::password_matches(stored_hash.as_deref(), password.expose()))
            .await
            .map_err(|e| WebError::internal(&e))?;
    let (st, n) = (state.clone(), name.clone());
    let cookie =
        state.db(move |c| console::auth::finish_sign_in(c, &st.cfg, &n, exists, matched, &meta, now)).await?;
    let Some(cookie) = cookie else {
        return login_page(
            &state,
            crate::oidc::random_token(32),
            name,
            Some("Wrong admin name or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let mut resp = see_other("/admin");
    resp.add_cookie(&strict_cookie(&state, admin_cookie_name(&state), cookie))
        .map_err(|e| WebError::internal(&e))?;
    resp.add_cookie(&removal(&state, cookie_name(&state, LOGIN_FORM_COOKIE)))
        .map_err(|e| WebError::internal(&e))?;
    Ok(resp)
}

#[derive(Serialize)]
struct ContinuePage {
    location: &'static str,
}

async fn sso_handler(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, WebError> {
    use console::auth::SsoOutcome;
    let broker = req.cookie(&session_cookie_name(&state)).map(|c| c.value().to_string());
    let now = state.clock.now();
    let meta = request_meta(&req);
    let st = state.clone();
    let outcome =
        state.db(move |c| console::auth::sso_sign_in(c, &st.cfg, broker.as_deref(), &meta, now)).await?;
    match outcome {
        SsoOutcome::NotConfigured => Err(forbidden(
            "Signing in to the admin console through an identity provider is not enabled (admin_role).",
        )),
        SsoOutcome::NotAdmin => Err(forbidden("Your account does not hold the administrator role.")),
        SsoOutcome::NoBrokerSession => match state.cfg.connections.as_slice() {
            [only] => start_broker_login(&state, &req, &only.id, BrokerPage::AdminSso).await,
            _ => sign_in_page(&state, true),
        },
        SsoOutcome::SignedIn { cookie } => {
            // Arriving here through the IdP's cross-site POST and redirects, the browser would
            // not send the SameSite=Strict cookie with a redirect: a page of ours moves on.
            let mut resp = state.views.page("admin_continue", &ContinuePage { location: "/admin" })?;
            resp.add_cookie(&strict_cookie(&state, admin_cookie_name(&state), cookie))
                .map_err(|e| WebError::internal(&e))?;
            Ok(resp)
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    let session = admin_post(&state, &req, form.csrf.as_deref()).await?;
    let now = state.clock.now();
    let meta = request_meta(&req);
    let sso_lives = state.db(move |c| console::auth::sign_out(c, &session, &meta, now)).await?;
    // An SSO admin goes on to the broker's sign-out (its confirmation, then the IdP's single
    // logout); otherwise `/admin/sso` would reopen the console without asking anyone.
    let mut resp = see_other(if sso_lives { "/logout" } else { "/admin/login?signed_out=1" });
    resp.add_cookie(&removal(&state, admin_cookie_name(&state))).map_err(|e| WebError::internal(&e))?;
    Ok(resp)
}

// ---- overview ---------------------------------------------------------------------------

#[derive(Serialize)]
struct OverviewPage {
    nav: Nav,
    users: i64,
    logins_today: i64,
    failures_total: i64,
    today: String,
    failures_today: Vec<ReasonCount>,
    first_logins: Vec<FirstLogin>,
    warning_days: i64,
    expiring: Vec<ExpiringCert>,
}

#[derive(Serialize)]
struct ReasonCount {
    reason: String,
    count: i64,
}

#[derive(Serialize)]
struct FirstLogin {
    time: String,
    user_id: Option<String>,
    who: String,
    connection: String,
}

#[derive(Serialize)]
struct ExpiringCert {
    connection: String,
    subject: String,
    not_after: String,
    days_left: i64,
    expired: bool,
}

async fn overview_handler(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    let now = state.clock.now();
    let st = state.clone();
    let o = state.db(move |c| console::overview::overview(c, &st.live_config(), now)).await?;
    let page = OverviewPage {
        nav: nav(&session, "overview", None),
        users: o.users,
        logins_today: o.logins_today,
        failures_total: o.failures_today.iter().map(|(_, n)| n).sum(),
        today: now.format("%Y-%m-%d").to_string(),
        failures_today: o
            .failures_today
            .into_iter()
            .map(|(reason, count)| ReasonCount { reason, count })
            .collect(),
        first_logins: o
            .first_logins
            .into_iter()
            .map(|(e, email)| FirstLogin {
                time: time(e.at),
                who: email.or(e.user_id.clone()).unwrap_or_default(),
                user_id: e.user_id,
                connection: e.connection_id.unwrap_or_default(),
            })
            .collect(),
        warning_days: console::connections::EXPIRY_WARNING_DAYS,
        expiring: o
            .expiring
            .into_iter()
            .map(|(connection, c)| ExpiringCert {
                connection,
                subject: c.subject.clone(),
                not_after: c.not_after.format("%Y-%m-%d %H:%M").to_string(),
                days_left: c.days_left(now),
                expired: c.not_after <= now,
            })
            .collect(),
    };
    state.views.page("admin_overview", &page)
}

// ---- users ------------------------------------------------------------------------------

#[derive(Deserialize)]
struct UsersQuery {
    q: Option<String>,
    page: Option<i64>,
}

#[derive(Serialize)]
struct UsersPage {
    nav: Nav,
    q: String,
    total: i64,
    page: i64,
    pages: i64,
    prev: Option<String>,
    next: Option<String>,
    users: Vec<UserRow>,
}

#[derive(Serialize)]
struct UserRow {
    id: String,
    email: String,
    name: String,
    roles: String,
    disabled: bool,
    last_login: String,
}

fn full_name(u: &crate::store::users::User) -> String {
    u.display_name
        .clone()
        .or_else(|| match (&u.given_name, &u.family_name) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (g, f) => g.clone().or(f.clone()),
        })
        .unwrap_or_default()
}

async fn users_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<UsersQuery>,
) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    let UsersQuery { q, page } = q.into_inner();
    let search = q.clone().unwrap_or_default();
    let s2 = search.clone();
    let found = state.db(move |c| console::users::search(c, Some(&s2), page.unwrap_or(1))).await?;
    let link = |p: i64| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if !search.is_empty() {
            s.append_pair("q", &search);
        }
        s.append_pair("page", &p.to_string());
        format!("/admin/users?{}", s.finish())
    };
    let page = UsersPage {
        nav: nav(&session, "users", None),
        total: found.total,
        page: found.page,
        pages: found.pages,
        prev: (found.page > 1).then(|| link(found.page - 1)),
        next: (found.page < found.pages).then(|| link(found.page + 1)),
        users: found
            .users
            .into_iter()
            .map(|(u, roles)| UserRow {
                email: u.email.clone().unwrap_or_else(|| u.id.clone()),
                name: full_name(&u),
                roles: roles.join(", "),
                disabled: u.disabled,
                last_login: opt_time(u.last_login_at),
                id: u.id,
            })
            .collect(),
        q: search,
    };
    state.views.page("admin_users", &page)
}

#[derive(Serialize)]
struct UserPage {
    nav: Nav,
    id: String,
    email: String,
    email_verified: bool,
    name: String,
    groups: String,
    disabled: bool,
    created: String,
    last_login: String,
    roles: Vec<RoleView>,
    identities: Vec<IdentityView>,
    sessions: Vec<SessionView>,
    events: Vec<EventView>,
}

#[derive(Serialize)]
struct RoleView {
    role: String,
    source: String,
    granted: String,
    removable: bool,
}

#[derive(Serialize)]
struct IdentityView {
    connection: String,
    subject: String,
    created: String,
    last_login: String,
}

#[derive(Serialize)]
struct SessionView {
    created: String,
    connection: String,
    last_seen: String,
    expires: String,
    live: bool,
}

#[derive(Serialize)]
struct EventView {
    time: String,
    kind: String,
    user_id: Option<String>,
    who: String,
    connection: String,
    client: String,
    reason: Option<String>,
    actor: String,
    ip: String,
    reference: Option<String>,
}

fn event_views(
    events: Vec<crate::store::audit::AuditEvent>,
    emails: &std::collections::BTreeMap<String, String>,
) -> Vec<EventView> {
    events
        .into_iter()
        .map(|e| EventView {
            reference: console::audit::reference_of(&e),
            time: time(e.at),
            who: e
                .user_id
                .as_ref()
                .map(|id| emails.get(id).cloned().unwrap_or_else(|| id.clone()))
                .unwrap_or_default(),
            user_id: e.user_id,
            kind: e.kind,
            connection: e.connection_id.unwrap_or_default(),
            client: e.client_id.unwrap_or_default(),
            reason: e.reason,
            actor: e.actor.unwrap_or_default(),
            ip: e.ip.unwrap_or_default(),
        })
        .collect()
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "disabled" => "User disabled: their sessions and tokens were revoked.",
        "enabled" => "User enabled: they can sign in again.",
        "already_enabled" => "The user was already enabled; nothing changed.",
        "role_added" => "Role granted.",
        "role_held" => "The user already holds that role manually; nothing changed.",
        "role_removed" => "Role removed.",
        "sessions_revoked" => "Sessions revoked.",
        _ => return None,
    };
    Some(text.into())
}

async fn user_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<DoneQuery>,
) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    let id = path.into_inner();
    let d = state.db(move |c| console::users::detail(c, &id)).await?;
    let now = state.clock.now().timestamp();
    let u = &d.user;
    let emails: std::collections::BTreeMap<String, String> =
        u.email.iter().map(|e| (u.id.clone(), e.clone())).collect();
    let page = UserPage {
        nav: nav(&session, "users", notice(q.done.as_deref())),
        id: u.id.clone(),
        email: u.email.clone().unwrap_or_else(|| u.id.clone()),
        email_verified: u.email_verified,
        name: full_name(u),
        groups: serde_json::from_str::<Vec<String>>(&u.groups_json).unwrap_or_default().join(", "),
        disabled: u.disabled,
        created: time(u.created_at),
        last_login: opt_time(u.last_login_at),
        roles: d
            .roles
            .iter()
            .map(|r| RoleView {
                role: r.role.clone(),
                source: console::users::provenance(r),
                granted: time(r.granted_at),
                removable: r.source == crate::provisioning::RoleSource::Manual.as_str(),
            })
            .collect(),
        identities: d
            .identities
            .iter()
            .map(|i| IdentityView {
                connection: i.connection_id.clone(),
                subject: i.subject.clone(),
                created: time(i.created_at),
                last_login: time(i.last_login_at),
            })
            .collect(),
        sessions: d
            .sessions
            .iter()
            .map(|s| SessionView {
                created: time(s.created_at),
                connection: s.connection_id.clone(),
                last_seen: time(s.last_seen_at),
                expires: time(s.expires_at),
                live: console::users::session_live(s, now),
            })
            .collect(),
        events: event_views(d.events, &emails),
    };
    state.views.page("admin_user", &page)
}

/// Runs a user action for the signed-in admin and goes back to the user's page.
async fn user_action<F>(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    csrf: Option<String>,
    action: F,
) -> Result<HttpResponse, WebError>
where
    F: FnOnce(
            &mut crate::store::DbConnection,
            &str,
            &Actor,
            &crate::flow::RequestMeta,
            chrono::DateTime<chrono::Utc>,
        ) -> Result<&'static str, console::ConsoleError>
        + Send
        + 'static,
{
    let session = admin_post(&state, &req, csrf.as_deref()).await?;
    let now = state.clock.now();
    let meta = request_meta(&req);
    let id2 = id.clone();
    let done = state.db(move |c| action(c, &id2, &session.actor, &meta, now)).await?;
    let target: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    Ok(see_other(&format!("/admin/users/{target}?done={done}")))
}

async fn disable_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    user_action(state, req, path.into_inner(), form.into_inner().csrf, |c, id, a, m, now| {
        console::users::disable(c, id, a, m, now).map(|_| "disabled")
    })
    .await
}

async fn enable_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    user_action(state, req, path.into_inner(), form.into_inner().csrf, |c, id, a, m, now| {
        console::users::enable(c, id, a, m, now)
            .map(|changed| if changed { "enabled" } else { "already_enabled" })
    })
    .await
}

async fn revoke_sessions_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    user_action(state, req, path.into_inner(), form.into_inner().csrf, |c, id, a, m, now| {
        console::users::revoke_sessions(c, id, a, m, now).map(|_| "sessions_revoked")
    })
    .await
}

#[derive(Deserialize)]
struct RoleForm {
    csrf: Option<String>,
    role: String,
}

async fn role_add_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, WebError> {
    let RoleForm { csrf, role } = form.into_inner();
    user_action(state, req, path.into_inner(), csrf, move |c, id, a, m, now| {
        console::users::add_role(c, id, &role, a, m, now)
            .map(|added| if added { "role_added" } else { "role_held" })
    })
    .await
}

async fn role_remove_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, WebError> {
    let RoleForm { csrf, role } = form.into_inner();
    user_action(state, req, path.into_inner(), csrf, move |c, id, a, m, now| {
        console::users::remove_role(c, id, &role, a, m, now).map(|_| "role_removed")
    })
    .await
}

// ---- audit ------------------------------------------------------------------------------

#[derive(Serialize)]
struct AuditPage {
    nav: Nav,
    q: AuditForm,
    query: String,
    limit: i64,
    error: Option<String>,
    kinds: &'static [&'static str],
    events: Vec<EventView>,
}

/// The filter as shown back in the form (strict templates want every field present).
#[derive(Serialize)]
struct AuditForm {
    kind: String,
    user: String,
    connection: String,
    since: String,
    until: String,
    reference: String,
}

const KINDS: &[&str] = &[
    "login.succeeded",
    "login.failed",
    "user.provisioned",
    "user.linked",
    "user.updated",
    "user.disabled",
    "user.enabled",
    "user.sessions_revoked",
    "role.granted",
    "role.revoked",
    "client_access_denied",
    "token.failed",
    "token.revoked",
    "logout*",
    "logout",
    "logout.idp_answered",
    "logout.idp_initiated",
    "logout.refused",
    "admin.login_succeeded",
    "admin.login_failed",
    "admin.logout",
    "admin.*",
    "client.*",
    "user.*",
    "trust.changed",
    "key.rotated",
    "groups.overage",
    "audit.exported",
];

async fn audit_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<console::audit::AuditQuery>,
) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    let q = q.into_inner();
    let now = state.clock.now();
    let q2 = q.clone();
    let result = state
        .db(move |c| -> Result<_, WebError> {
            match shown_on_form(q2.resolve(c, now, console::audit::PAGE_LIMIT))? {
                Ok(filter) => Ok(Ok(console::audit::events(c, &filter)?)),
                Err(m) => Ok(Err(m)),
            }
        })
        .await?;
    let (events, error) = match result {
        Ok((events, emails)) => (event_views(events, &emails), None),
        Err(message) => (Vec::new(), Some(message)),
    };
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    let page = AuditPage {
        nav: nav(&session, "audit", None),
        query: q.query_string(),
        q: AuditForm {
            kind: s(&q.kind),
            user: s(&q.user),
            connection: s(&q.connection),
            since: s(&q.since),
            until: s(&q.until),
            reference: s(&q.reference),
        },
        limit: console::audit::PAGE_LIMIT,
        error,
        kinds: KINDS,
        events,
    };
    state.views.page("admin_audit", &page)
}

async fn audit_export(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: console::audit::AuditQuery,
    csv: bool,
) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    let now = state.clock.now();
    let meta = request_meta(&req);
    let body = state
        .db(move |c| -> Result<String, console::ConsoleError> {
            let filter = q.resolve(c, now, console::audit::EXPORT_LIMIT)?;
            let events = crate::store::admin::audit_events(c, &filter)?;
            // Reading the whole trail out is itself worth a row.
            let detail = serde_json::json!({"format": if csv { "csv" } else { "jsonl" }, "rows": events.len(), "filter": q});
            let row = console::admin_event(now, "audit.exported", &session.actor, &meta, None, None, detail);
            crate::store::audit::insert(c, &row)?;
            Ok(if csv { console::audit::to_csv(&events) } else { console::audit::to_json_lines(&events) })
        })
        .await?;
    let (ctype, ext) =
        if csv { ("text/csv; charset=utf-8", "csv") } else { ("application/x-ndjson", "jsonl") };
    Ok(HttpResponse::Ok()
        .content_type(ctype)
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"ssobroker-audit-{}.{ext}\"", now.format("%Y%m%dT%H%M%SZ")),
        ))
        .body(body))
}

async fn audit_csv_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<console::audit::AuditQuery>,
) -> Result<HttpResponse, WebError> {
    audit_export(state, req, q.into_inner(), true).await
}

async fn audit_jsonl_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<console::audit::AuditQuery>,
) -> Result<HttpResponse, WebError> {
    audit_export(state, req, q.into_inner(), false).await
}

// ---- connections ------------------------------------------------------------------------

#[derive(Serialize)]
struct ConnectionsPage {
    nav: Nav,
    connections: Vec<ConnectionRow>,
}

#[derive(Serialize)]
struct ConnectionRow {
    id: String,
    display_name: String,
    vendor: &'static str,
    health: &'static str,
    health_class: &'static str,
    last_success: String,
    last_failure: String,
    cert_expiry: String,
}

fn health_class(h: &str) -> &'static str {
    match h {
        "working" => "ok",
        "no logins yet" => "warn",
        _ => "bad",
    }
}

fn last_failure(f: &Option<(i64, String)>) -> String {
    match f {
        Some((at, reason)) => format!("{} ({reason})", time(*at)),
        None => "never".into(),
    }
}

async fn connections_handler(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    let now = state.clock.now();
    let st = state.clone();
    let all = state.db(move |c| console::connections::all(c, &st.live_config())).await?;
    let page = ConnectionsPage {
        nav: nav(&session, "connections", None),
        connections: all
            .iter()
            .map(|s| {
                let health = s.health(now);
                ConnectionRow {
                    id: s.connection.id.clone(),
                    display_name: s.connection.display_name.clone(),
                    vendor: console::connections::vendor_name(s.connection.policy.vendor),
                    health,
                    health_class: health_class(health),
                    last_success: opt_time(s.last_success),
                    last_failure: last_failure(&s.last_failure),
                    cert_expiry: s
                        .certs
                        .iter()
                        .map(|c| c.not_after)
                        .max()
                        .map(|t| format!("{} ({} days)", t.format("%Y-%m-%d"), (t - now).num_days()))
                        .unwrap_or_default(),
                }
            })
            .collect(),
    };
    state.views.page("admin_connections", &page)
}

#[derive(Serialize)]
struct ConnectionPage {
    nav: Nav,
    id: String,
    display_name: String,
    vendor: &'static str,
    health: &'static str,
    health_class: &'static str,
    entity_id: String,
    acs_url: String,
    metadata_url: String,
    /// The SP signing certificate download, when the connection has a key.
    signing_cert_url: Option<String>,
    idp_entity_id: String,
    idp_sso_url: String,
    last_success: String,
    last_failure: String,
    domains: String,
    idp_initiated: bool,
    single_logout: String,
    certs: Vec<CertView>,
    steps: Vec<console::connections::Step>,
}

#[derive(Serialize)]
struct CertView {
    subject: String,
    not_after: String,
    days_left: i64,
    class: &'static str,
}

async fn connection_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    let now = state.clock.now();
    let id = path.into_inner();
    if state.cfg.connection(&id).is_none() {
        return Err(WebError::NotFound);
    }
    let st = state.clone();
    let s = state
        .db(move |c| {
            let connection =
                st.live_connection(st.cfg.connection(&id).ok_or(console::ConsoleError::NotFound)?);
            console::connections::status(c, &connection)
        })
        .await?;
    let c = &s.connection;
    let health = s.health(now);
    let page = ConnectionPage {
        nav: nav(&session, "connections", None),
        id: c.id.clone(),
        display_name: c.display_name.clone(),
        vendor: console::connections::vendor_name(c.policy.vendor),
        health,
        health_class: health_class(health),
        entity_id: c.sp.entity_id.clone(),
        acs_url: c.sp.acs_url.clone(),
        metadata_url: format!("{}/saml/{}/metadata", state.cfg.issuer, c.id),
        signing_cert_url: c
            .sp
            .signing_key
            .as_ref()
            .map(|_| format!("{}/saml/{}/signing-certificate.pem", state.cfg.issuer, c.id)),
        idp_entity_id: c.sp.idp.entity_id.clone(),
        idp_sso_url: c.sp.idp.sso_url.clone(),
        last_success: opt_time(s.last_success),
        last_failure: last_failure(&s.last_failure),
        domains: if c.domains.is_empty() { "any".into() } else { c.domains.join(", ") },
        idp_initiated: c.allow_idp_initiated,
        single_logout: console::connections::single_logout_summary(c),
        certs: s
            .certs
            .iter()
            .map(|cert| {
                let days = cert.days_left(now);
                CertView {
                    subject: cert.subject.clone(),
                    not_after: cert.not_after.format("%Y-%m-%d %H:%M").to_string(),
                    days_left: days,
                    class: if cert.not_after <= now {
                        "bad"
                    } else if days < console::connections::EXPIRY_WARNING_DAYS {
                        "warn"
                    } else {
                        "ok"
                    },
                }
            })
            .collect(),
        steps: console::connections::setup_steps(c, &state.cfg.issuer),
    };
    state.views.page("admin_connection", &page)
}

// ---- clients ----------------------------------------------------------------------------

#[derive(Serialize)]
struct ClientsPage {
    nav: Nav,
    error: Option<String>,
    /// What the registration form shows: empty, or what the admin typed when refused.
    form: NewClientForm,
    clients: Vec<ClientView>,
}

#[derive(Serialize)]
struct ClientView {
    id: String,
    kind: &'static str,
    source: &'static str,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    allowed_roles: String,
    issue_refresh_token: bool,
    launch_url: String,
}

fn client_view(c: crate::oidc::Client, source: console::clients::Source) -> ClientView {
    ClientView {
        kind: if c.is_public() { "public" } else { "confidential" },
        source: source.as_str(),
        allowed_roles: if c.allowed_roles.is_empty() { "any".into() } else { c.allowed_roles.join(", ") },
        issue_refresh_token: c.issue_refresh_token,
        launch_url: c.launch_url.unwrap_or_default(),
        redirect_uris: c.redirect_uris,
        post_logout_redirect_uris: c.post_logout_redirect_uris,
        id: c.client_id,
    }
}

/// The clients list with the registration form; `refused` is a refused registration: the
/// reason and what the admin typed, shown again.
async fn clients_page(
    state: &web::Data<AppState>,
    session: &ConsoleSession,
    refused: Option<(String, NewClientForm)>,
) -> Result<HttpResponse, WebError> {
    let st = state.clone();
    let all = state.db(move |c| console::clients::list(c, &st.cfg)).await?;
    let (error, form) = match refused {
        Some((m, typed)) => (Some(m), typed),
        None => (None, NewClientForm::default()),
    };
    let page = ClientsPage {
        nav: nav(session, "clients", None),
        clients: all.into_iter().map(|(c, s)| client_view(c, s)).collect(),
        error: error.clone(),
        form,
    };
    let mut resp = state.views.page("admin_clients", &page)?;
    if error.is_some() {
        *resp.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(resp)
}

async fn clients_handler(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    clients_page(&state, &session, None).await
}

/// A refusal the admin can act on (bad input, a change that cannot be made) comes back as the
/// message to show on the form again; anything else is an internal error.
fn shown_on_form<T>(r: Result<T, console::ConsoleError>) -> Result<Result<T, String>, WebError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(console::ConsoleError::Invalid(m) | console::ConsoleError::Refused(m)) => Ok(Err(m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Serialize, Deserialize, Default)]
struct NewClientForm {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    public: Option<String>,
    /// The fields a registered client can change later (and the CSRF token).
    #[serde(flatten)]
    settings: ClientForm,
}

#[derive(Serialize)]
struct ClientPage {
    nav: Nav,
    secret: Option<String>,
    rotatable: bool,
    from_config: bool,
    /// What the edit form shows: the stored settings, or what the admin typed when refused.
    form: ClientForm,
    error: Option<String>,
    done: bool,
    #[serde(flatten)]
    client: ClientView,
}

/// A registered client's settings as the edit form's fields.
#[derive(Serialize, Deserialize, Default)]
struct ClientForm {
    #[serde(default, skip_serializing)]
    csrf: Option<String>,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    post_logout_redirect_uris: String,
    #[serde(default)]
    allowed_roles: String,
    #[serde(default)]
    launch_url: String,
    #[serde(default)]
    refresh_tokens: Option<String>,
}

impl ClientForm {
    fn of(c: &crate::oidc::Client) -> Self {
        ClientForm {
            csrf: None,
            redirect_uris: c.redirect_uris.join("\n"),
            post_logout_redirect_uris: c.post_logout_redirect_uris.join("\n"),
            allowed_roles: c.allowed_roles.join(", "),
            launch_url: c.launch_url.clone().unwrap_or_default(),
            refresh_tokens: c.issue_refresh_token.then(|| "on".into()),
        }
    }

    fn settings(&self) -> console::clients::ClientSettings {
        let lines = console::clients::split_lines;
        console::clients::ClientSettings {
            redirect_uris: lines(&self.redirect_uris),
            post_logout_redirect_uris: lines(&self.post_logout_redirect_uris),
            allowed_roles: console::clients::split_list(&self.allowed_roles),
            issue_refresh_token: self.refresh_tokens.is_some(),
            launch_url: Some(self.launch_url.trim().to_string()).filter(|s| !s.is_empty()),
        }
    }
}

async fn client_create_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<NewClientForm>,
) -> Result<HttpResponse, WebError> {
    let f = form.into_inner();
    let session = admin_post(&state, &req, f.settings.csrf.as_deref()).await?;
    let settings = f.settings.settings();
    let new = console::clients::NewClient {
        client_id: f.client_id.trim().to_string(),
        redirect_uris: settings.redirect_uris,
        post_logout_redirect_uris: settings.post_logout_redirect_uris,
        allowed_roles: settings.allowed_roles,
        public: f.public.is_some(),
        issue_refresh_token: settings.issue_refresh_token,
        launch_url: settings.launch_url,
    };
    let now = state.clock.now();
    let meta = request_meta(&req);
    let (st, actor, id) = (state.clone(), session.actor.clone(), new.client_id.clone());
    let created = state
        .db(move |c| -> Result<_, WebError> {
            shown_on_form(console::clients::create(c, &st.cfg, new, &actor, &meta, now))
        })
        .await?;
    match created {
        Err(message) => clients_page(&state, &session, Some((message, f))).await,
        Ok(secret) => {
            let notice = secret.map(|s| ClientNotice::Secret(s.expose().to_string())).unwrap_or_default();
            client_page(&state, &session, id, notice).await
        }
    }
}

/// What the client page shows besides the client: a secret shown once, or the edit form's
/// outcome.
#[derive(Default)]
enum ClientNotice {
    #[default]
    None,
    Secret(String),
    Updated,
    /// A refused edit: the message and what the admin typed.
    Refused(String, ClientForm),
}

async fn client_page(
    state: &web::Data<AppState>,
    session: &ConsoleSession,
    id: String,
    notice: ClientNotice,
) -> Result<HttpResponse, WebError> {
    let st = state.clone();
    let (client, source) = state.db(move |c| console::clients::find(c, &st.cfg, &id)).await?;
    let from_config = source == console::clients::Source::Config;
    let (secret, done, error, form) = match notice {
        ClientNotice::None => (None, false, None, ClientForm::of(&client)),
        ClientNotice::Secret(s) => (Some(s), false, None, ClientForm::of(&client)),
        ClientNotice::Updated => (None, true, None, ClientForm::of(&client)),
        ClientNotice::Refused(m, typed) => (None, false, Some(m), typed),
    };
    let refused = error.is_some();
    let page = ClientPage {
        nav: nav(session, "clients", None),
        secret,
        rotatable: !from_config && !client.is_public(),
        from_config,
        form,
        error,
        done,
        client: client_view(client, source),
    };
    let mut resp = state.views.page("admin_client", &page)?;
    if refused {
        *resp.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(resp)
}

#[derive(Deserialize)]
struct ClientQuery {
    done: Option<String>,
}

async fn client_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<ClientQuery>,
) -> Result<HttpResponse, WebError> {
    let session = admin(&state, &req).await?;
    let notice = if q.done.is_some() { ClientNotice::Updated } else { ClientNotice::None };
    client_page(&state, &session, path.into_inner(), notice).await
}

async fn client_update_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<ClientForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    let session = admin_post(&state, &req, form.csrf.as_deref()).await?;
    let id = path.into_inner();
    let settings = form.settings();
    let now = state.clock.now();
    let meta = request_meta(&req);
    let (st, actor, id2) = (state.clone(), session.actor.clone(), id.clone());
    let outcome = state
        .db(move |c| -> Result<_, WebError> {
            shown_on_form(
                console::clients::update(c, &st.cfg, &id2, settings, &actor, &meta, now).map(|_| ()),
            )
        })
        .await?;
    match outcome {
        // Post/redirect/get: a reload shows the page, it does not post again.
        Ok(()) => Ok(see_other(&format!("/admin/clients/{id}?done=updated"))),
        Err(message) => client_page(&state, &session, id, ClientNotice::Refused(message, form)).await,
    }
}

async fn client_rotate_handler(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    let session = admin_post(&state, &req, form.csrf.as_deref()).await?;
    let id = path.into_inner();
    let now = state.clock.now();
    let meta = request_meta(&req);
    let (st, actor, id2) = (state.clone(), session.actor.clone(), id.clone());
    let secret =
        state.db(move |c| console::clients::rotate_secret(c, &st.cfg, &id2, &actor, &meta, now)).await?;
    client_page(&state, &session, id, ClientNotice::Secret(secret.expose().to_string())).await
}
