//! The admin console and the user portal as decisions and database work: who may sign in to
//! the console (local accounts, SSO admins), throttling, console sessions and CSRF tokens, what
//! each console page shows and what each admin action changes (always with an audit row naming
//! the admin), and which apps the portal offers a user. No HTTP: the web room extracts, calls
//! these, and renders. `web → console → store`.

pub mod audit;
pub mod auth;
pub mod clients;
pub mod connections;
pub mod overview;
pub mod portal;
pub mod users;

use crate::flow::{audit_row, RequestMeta};
use crate::store::audit::AuditEvent;
use chrono::{DateTime, SecondsFormat, Utc};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("database: {0}")]
    Store(#[from] diesel::result::Error),
    /// Bad input; the message names the field and is safe to show.
    #[error("{0}")]
    Invalid(String),
    /// The action cannot be done; the message says why and is safe to show.
    #[error("{0}")]
    Refused(String),
    #[error("not found")]
    NotFound,
    #[error("internal: {0}")]
    Internal(String),
}

/// Who made an administrative change, as written to the audit row's `actor` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// A local admin account.
    pub fn local(name: &str) -> Self {
        Actor(format!("local:{name}"))
    }
    /// A user holding `admin_role`, signed in through their IdP.
    pub fn sso(user_id: &str) -> Self {
        Actor(format!("sso:{user_id}"))
    }
    /// The `ssobroker` command line on the server.
    pub fn cli() -> Self {
        Actor("cli".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An audit row for an admin action: `user_id` is the user acted on (if any), the actor goes in
/// its own column and in `detail` (where the CLI has always put it).
pub(crate) fn admin_event(
    now: DateTime<Utc>,
    kind: &str,
    actor: &Actor,
    meta: &RequestMeta,
    user_id: Option<&str>,
    client_id: Option<&str>,
    mut detail: serde_json::Value,
) -> AuditEvent {
    if let Some(map) = detail.as_object_mut() {
        map.insert("actor".into(), serde_json::Value::String(actor.0.clone()));
    }
    let mut row = audit_row(now, kind, meta, user_id, None, client_id, None, detail);
    row.actor = Some(actor.0.clone());
    row
}

/// Unix seconds as RFC 3339 UTC, for pages and exports.
pub fn time(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// A role name: 1-128 characters without spaces (the rule the CLI applies too).
pub fn valid_role(r: &str) -> Result<String, ConsoleError> {
    let r = r.trim();
    if r.is_empty() || r.len() > 128 || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConsoleError::Invalid(format!("role {r:?}: a role is 1-128 characters without spaces")));
    }
    Ok(r.to_string())
}
