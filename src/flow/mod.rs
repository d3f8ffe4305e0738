//! The brokered login as database work: start (login transaction), finish (replay cache, JIT,
//! session, code — one transaction), and the audit rows. No HTTP; the web room calls these from
//! `web::block` and renders what they return.

pub mod clients;
mod finish;
pub mod logout;
pub mod sp_keys;
mod tokens;
pub mod trust;

pub use finish::{finish_login, plan_provisioning, upstream_of, FinishInput, LoginOutcome, ProvisioningPlan};
pub use tokens::{
    exchange_code, introspect, issue_code_for_session, refresh, revoke, userinfo, TokenResponse,
};

use crate::config::{Config, Connection};
use crate::oidc::{random_token, token_hash, ValidAuthorize};
use crate::store::{self, audit::AuditEvent, logins::LoginTransaction, DbConnection};
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The login is refused for a stable, auditable reason (shown to the user only as a
    /// generic page with a reference id).
    #[error("refused: {reason}")]
    Refused { reason: &'static str, detail: String, client_id: Option<String>, user_id: Option<String> },
    #[error(transparent)]
    Oidc(#[from] crate::oidc::OidcError),
    #[error(transparent)]
    Saml(#[from] crate::saml::SamlError),
    #[error("database: {0}")]
    Store(#[from] diesel::result::Error),
    /// Another login of the same person committed while this one ran: run it again.
    #[error("concurrent first login")]
    Race,
}

impl FlowError {
    pub(crate) fn refused(reason: &'static str, detail: impl Into<String>) -> Self {
        FlowError::Refused { reason, detail: detail.into(), client_id: None, user_id: None }
    }
}

/// Who made the request, for audit rows.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Builds an audit row; `detail` is JSON without secrets or raw SAML.
#[allow(clippy::too_many_arguments)]
pub fn audit_row(
    now: DateTime<Utc>,
    kind: &str,
    meta: &RequestMeta,
    user_id: Option<&str>,
    connection_id: Option<&str>,
    client_id: Option<&str>,
    reason: Option<&str>,
    detail: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        // Time-ordered ids keep events of the same second in the order they happened.
        id: uuid::Uuid::now_v7().to_string(),
        at: now.timestamp(),
        kind: kind.to_string(),
        user_id: user_id.map(str::to_string),
        connection_id: connection_id.map(str::to_string),
        client_id: client_id.map(str::to_string),
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.as_ref().map(|ua| ua.chars().take(256).collect()),
        reason: reason.map(str::to_string),
        detail: detail.to_string(),
        actor: None,
    }
}

/// Starts an SP-initiated login: stores the pending authorize request under a fresh RelayState
/// handle and returns how to send the browser to the IdP.
pub fn start_login(
    conn: &mut DbConnection,
    cfg: &Config,
    connection: &Connection,
    req: &ValidAuthorize,
    browser: &str,
    now: DateTime<Utc>,
) -> Result<crate::saml::AuthnStart, FlowError> {
    // The browser carries only this opaque handle; the database keeps its hash.
    let relay = random_token(32);
    // prompt=login and max_age need a fresh authentication, not the IdP's own session.
    let force_authn = req.prompts("login") || req.max_age.is_some();
    let start = crate::saml::authn_request(&connection.sp, &relay, now, force_authn)?;
    let txn = LoginTransaction {
        id: token_hash(&relay),
        request_id: start.request_id().to_string(),
        connection_id: connection.id.clone(),
        client_id: req.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        scope: req.scope.clone(),
        state: req.state.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        browser_binding: Some(token_hash(browser)),
        created_at: now.timestamp(),
        expires_at: (now + cfg.login_timeout).timestamp(),
    };
    store::logins::insert(conn, &txn)?;
    Ok(start)
}

/// The stable reason code of a failed login: the audit row's `reason` and the metrics label.
pub fn failure_reason(err: &FlowError) -> &'static str {
    match err {
        FlowError::Refused { reason, .. } => reason,
        FlowError::Saml(e) => e.reason().map(|r| r.code()).unwrap_or("saml_error"),
        FlowError::Oidc(_) => "oidc_error",
        FlowError::Store(_) | FlowError::Race => "internal_error",
    }
}

/// The client id of a login the broker starts for its own pages (portal, admin console). Empty:
/// config validation and `client add` refuse an empty client id, so no app can have it.
pub const BROKER_CLIENT: &str = "";

/// A broker page a login can return to. Only these paths are ever stored, so the value read
/// back at the ACS is never a redirect target chosen by the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerPage {
    /// The user portal at `/`.
    Portal,
    /// The admin console's SSO sign-in, `/admin/sso`.
    AdminSso,
}

impl BrokerPage {
    pub fn path(self) -> &'static str {
        match self {
            BrokerPage::Portal => "/",
            BrokerPage::AdminSso => "/admin/sso",
        }
    }
}

/// Starts a login for the broker's own pages (no app, no code at the end): the IdP's answer
/// creates a broker session and sends the browser to `page`.
pub fn start_broker_login(
    conn: &mut DbConnection,
    cfg: &Config,
    connection: &Connection,
    page: BrokerPage,
    browser: &str,
    now: DateTime<Utc>,
) -> Result<crate::saml::AuthnStart, FlowError> {
    let relay = random_token(32);
    let start = crate::saml::authn_request(&connection.sp, &relay, now, false)?;
    let txn = LoginTransaction {
        id: token_hash(&relay),
        request_id: start.request_id().to_string(),
        connection_id: connection.id.clone(),
        client_id: BROKER_CLIENT.to_string(),
        redirect_uri: page.path().to_string(),
        scope: "openid".into(),
        state: None,
        nonce: None,
        code_challenge: None,
        browser_binding: Some(token_hash(browser)),
        created_at: now.timestamp(),
        expires_at: (now + cfg.login_timeout).timestamp(),
    };
    store::logins::insert(conn, &txn)?;
    Ok(start)
}

/// Records a refused login (its own small transaction: the refused work was rolled back). When
/// the refusal came before the login transaction was read, the RelayState still tells which
/// client the login was for.
pub fn audit_failure(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    meta: &RequestMeta,
    connection_id: &str,
    relay_state: Option<&str>,
    err: &FlowError,
    reference: &str,
) -> Result<(), diesel::result::Error> {
    let reason = failure_reason(err);
    let (client, user) = match err {
        FlowError::Refused { client_id, user_id, .. } => (client_id.as_deref(), user_id.as_deref()),
        _ => (None, None),
    };
    let from_relay = match (client, relay_state) {
        (None, Some(r)) => store::logins::by_id(conn, &token_hash(r))?
            .filter(|t| t.connection_id == connection_id)
            .map(|t| t.client_id)
            .filter(|c| c != BROKER_CLIENT),
        _ => None,
    };
    let row = audit_row(
        now,
        "login.failed",
        meta,
        user,
        Some(connection_id),
        client.or(from_relay.as_deref()),
        Some(reason),
        serde_json::json!({ "reference": reference }),
    );
    store::audit::insert(conn, &row)
}

/// Where an authorize request goes when no session answers it.
#[derive(Debug)]
pub enum Route<'a> {
    Connection(&'a Connection),
    /// Show the login page (with a notice when the hinted email's domain is unknown).
    Picker {
        unknown_domain: bool,
    },
}

/// Home-realm discovery: `idp_hint`, else the domain of `login_hint`, else the only
/// connection, else the login page.
pub fn choose_connection<'a>(cfg: &'a Config, idp_hint: Option<&str>, login_hint: Option<&str>) -> Route<'a> {
    if let Some(c) = idp_hint.and_then(|id| cfg.connection(id)) {
        return Route::Connection(c);
    }
    if let Some(hint) = login_hint.filter(|h| h.contains('@')) {
        let found = cfg
            .connections
            .iter()
            .find(|c| !c.domains.is_empty() && crate::provisioning::email_domain_allowed(hint, &c.domains));
        return match found {
            Some(c) => Route::Connection(c),
            None if cfg.connections.len() == 1 => Route::Connection(&cfg.connections[0]),
            None => Route::Picker { unknown_domain: true },
        };
    }
    match cfg.connections.as_slice() {
        [only] => Route::Connection(only),
        _ => Route::Picker { unknown_domain: false },
    }
}
