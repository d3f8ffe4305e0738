//! OIDC clients as an admin manages them (console and `ssobroker client`): the list across the
//! config file and the database, registration, changes, secret rotation. Generated secrets are
//! returned once and stored as SHA-256.

use super::{admin_event, Actor, ConsoleError};
use crate::config::{self, Config};
use crate::flow::{clients::from_row, RequestMeta};
use crate::oidc::{Client, Secret};
use crate::store::{self, clients::ClientRow, DbConnection};
use chrono::{DateTime, Utc};

/// Where a client is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `[[clients]]` in the config file: read-only here.
    Config,
    /// Registered at run time (console or `ssobroker client add`).
    Database,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Database => "database",
        }
    }
}

/// Every client: the config file's first, then the registered ones.
pub fn list(conn: &mut DbConnection, cfg: &Config) -> Result<Vec<(Client, Source)>, ConsoleError> {
    let mut rows: Vec<(Client, Source)> = cfg.clients.iter().map(|c| (c.clone(), Source::Config)).collect();
    rows.extend(store::clients::all(conn)?.into_iter().map(|r| (from_row(r), Source::Database)));
    Ok(rows)
}

pub fn find(conn: &mut DbConnection, cfg: &Config, id: &str) -> Result<(Client, Source), ConsoleError> {
    if let Some(c) = cfg.client(id) {
        return Ok((c.clone(), Source::Config));
    }
    registered(conn, id)?.map(|r| (from_row(r), Source::Database)).ok_or(ConsoleError::NotFound)
}

/// A registered client's row. An id no registration accepts (a NUL, which PostgreSQL refuses in
/// text; a space; a slash) is simply not there, on either backend, and is never queried.
fn registered(conn: &mut DbConnection, id: &str) -> diesel::QueryResult<Option<ClientRow>> {
    if config::check_client_id(id).is_err() {
        return Ok(None);
    }
    store::clients::by_id(conn, id)
}

/// A client to register.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_roles: Vec<String>,
    /// No secret; PKCE S256 required.
    pub public: bool,
    pub issue_refresh_token: bool,
    pub launch_url: Option<String>,
}

/// Registers a client; returns its generated secret (None for a public client), to be shown
/// once.
pub fn create(
    conn: &mut DbConnection,
    cfg: &Config,
    new: NewClient,
    actor: &Actor,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<Option<Secret>, ConsoleError> {
    let id = new.client_id.trim().to_string();
    crate::config::check_client_id(&id).map_err(ConsoleError::Invalid)?;
    let s = checked(ClientSettings {
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        allowed_roles: new.allowed_roles,
        issue_refresh_token: new.issue_refresh_token,
        launch_url: new.launch_url,
    })?;
    let (secret, hash) = if new.public {
        (None, None)
    } else {
        let (s, h) = crate::oidc::generate_client_secret();
        (Some(s), Some(h))
    };
    let ts = now.timestamp();
    let exists = || ConsoleError::Refused(format!("client {id:?} already exists"));
    store::transaction(conn, |c| -> Result<(), ConsoleError> {
        if cfg.client(&id).is_some() || store::clients::by_id(c, &id)?.is_some() {
            return Err(exists());
        }
        store::clients::insert(
            c,
            &ClientRow {
                client_id: id.clone(),
                secret_hash: hash,
                redirect_uris: json(&s.redirect_uris),
                post_logout_redirect_uris: json(&s.post_logout_redirect_uris),
                allowed_roles: json(&s.allowed_roles),
                issue_refresh_token: s.issue_refresh_token,
                created_at: ts,
                updated_at: ts,
                launch_url: s.launch_url.clone(),
            },
        )?;
        let detail = serde_json::json!({
            "redirect_uris": s.redirect_uris, "allowed_roles": s.allowed_roles, "public": new.public,
            "launch_url": s.launch_url,
        });
        store::audit::insert(c, &admin_event(now, "client.created", actor, meta, None, Some(&id), detail))?;
        Ok(())
    })
    .map_err(|e| match e {
        // A concurrent registration of the same id (a double click) got there first.
        ConsoleError::Store(e) if store::is_unique_violation(&e) => exists(),
        e => e,
    })?;
    Ok(secret)
}

/// What create and update store, checked the same way; the allowed roles come back trimmed and
/// without duplicates.
fn checked(s: ClientSettings) -> Result<ClientSettings, ConsoleError> {
    if s.redirect_uris.is_empty() {
        return Err(ConsoleError::Invalid("at least one redirect URI is required".into()));
    }
    for u in s.redirect_uris.iter().chain(&s.post_logout_redirect_uris) {
        config::check_redirect_uri(u).map_err(|e| ConsoleError::Invalid(format!("{u:?}: {e}")))?;
    }
    if let Some(u) = &s.launch_url {
        config::check_launch_url(u).map_err(|e| ConsoleError::Invalid(format!("launch URL {u:?}: {e}")))?;
    }
    let mut roles = Vec::new();
    for r in &s.allowed_roles {
        let r = super::valid_role(r)?;
        // The console lists allowed roles comma-separated: "a,b" would come back from the next
        // save as "a" and "b", letting in the users of either.
        if r.contains(',') {
            return Err(ConsoleError::Invalid(format!(
                "role {r:?}: an allowed role has no commas (the console lists them comma-separated)"
            )));
        }
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    Ok(ClientSettings { allowed_roles: roles, ..s })
}

/// Config-file clients are read-only here: `what` is the change refused.
fn not_in_config(cfg: &Config, client_id: &str, what: &str) -> Result<(), ConsoleError> {
    match cfg.client(client_id) {
        Some(_) => Err(ConsoleError::Refused(format!(
            "client {client_id:?} is defined in the config file; change {what} there"
        ))),
        None => Ok(()),
    }
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// What an admin may change of a registered client: everything but its id and type (a secret
/// has its own rotation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_roles: Vec<String>,
    pub issue_refresh_token: bool,
    pub launch_url: Option<String>,
}

impl ClientSettings {
    pub fn of(c: &Client) -> Self {
        ClientSettings {
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            allowed_roles: c.allowed_roles.clone(),
            issue_refresh_token: c.issue_refresh_token,
            launch_url: c.launch_url.clone(),
        }
    }
}

/// Changes a registered client's settings; returns false when nothing changed (no audit row).
/// Tokens already issued stay valid; narrower `allowed_roles` take effect at the next
/// authorize or refresh, which check them.
pub fn update(
    conn: &mut DbConnection,
    cfg: &Config,
    client_id: &str,
    settings: ClientSettings,
    actor: &Actor,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<bool, ConsoleError> {
    not_in_config(cfg, client_id, "it")?;
    let new = checked(settings)?;
    store::transaction(conn, |c| -> Result<bool, ConsoleError> {
        let Some(row) = registered(c, client_id)? else {
            return Err(ConsoleError::Refused(format!("no registered client {client_id:?}")));
        };
        let old = ClientSettings::of(&from_row(row.clone()));
        if old == new {
            return Ok(false);
        }
        store::clients::set_settings(
            c,
            &ClientRow {
                redirect_uris: json(&new.redirect_uris),
                post_logout_redirect_uris: json(&new.post_logout_redirect_uris),
                allowed_roles: json(&new.allowed_roles),
                issue_refresh_token: new.issue_refresh_token,
                launch_url: new.launch_url.clone(),
                updated_at: now.timestamp(),
                ..row
            },
        )?;
        // Only what changed, from and to, so the row reads as the change it was.
        let mut changed = serde_json::Map::new();
        let mut field = |name: &str, from: serde_json::Value, to: serde_json::Value| {
            if from != to {
                changed.insert(name.into(), serde_json::json!({ "from": from, "to": to }));
            }
        };
        field("redirect_uris", old.redirect_uris.into(), new.redirect_uris.into());
        field(
            "post_logout_redirect_uris",
            old.post_logout_redirect_uris.into(),
            new.post_logout_redirect_uris.into(),
        );
        field("allowed_roles", old.allowed_roles.into(), new.allowed_roles.into());
        field("issue_refresh_token", old.issue_refresh_token.into(), new.issue_refresh_token.into());
        field("launch_url", old.launch_url.into(), new.launch_url.into());
        let detail = serde_json::Value::Object(changed);
        store::audit::insert(
            c,
            &admin_event(now, "client.updated", actor, meta, None, Some(client_id), detail),
        )?;
        Ok(true)
    })
}

/// Replaces a registered confidential client's secret; returns the new one, to be shown once.
pub fn rotate_secret(
    conn: &mut DbConnection,
    cfg: &Config,
    client_id: &str,
    actor: &Actor,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<Secret, ConsoleError> {
    not_in_config(cfg, client_id, "its secret")?;
    let Some(row) = registered(conn, client_id)? else {
        return Err(ConsoleError::Refused(format!("no registered client {client_id:?}")));
    };
    if row.secret_hash.is_none() {
        return Err(ConsoleError::Refused(format!("client {client_id:?} is public: it has no secret")));
    }
    let (secret, hash) = crate::oidc::generate_client_secret();
    store::transaction(conn, |c| -> Result<(), ConsoleError> {
        store::clients::set_secret(c, client_id, &hash, now.timestamp())?;
        let row = admin_event(
            now,
            "client.secret_rotated",
            actor,
            meta,
            None,
            Some(client_id),
            serde_json::json!({}),
        );
        store::audit::insert(c, &row)?;
        Ok(())
    })?;
    Ok(secret)
}

/// Splits a comma list (or one entry a line) into trimmed, non-empty entries: allowed roles.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(['\n', ',', '\r']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Splits a textarea into its trimmed, non-empty lines: URIs, which may hold commas
/// (`?scope=a,b` is one URI; split at the comma it would read as two).
pub fn split_lines(s: &str) -> Vec<String> {
    s.split(['\n', '\r']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}
