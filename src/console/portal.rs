//! The user portal: for a live broker session, the user's profile as the broker knows it and
//! the apps their roles open (clients with a `launch_url` whose `allowed_roles` admit them).

use super::ConsoleError;
use crate::config::Config;
use crate::oidc::token_hash;
use crate::store::admin::{self as q, IdentityRow};
use crate::store::users::{self, User};
use crate::store::{grants, DbConnection};
use chrono::{DateTime, Utc};

#[derive(Debug)]
pub struct App {
    pub client_id: String,
    pub launch_url: String,
}

#[derive(Debug)]
pub struct Portal {
    pub user: User,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub identities: Vec<IdentityRow>,
    pub apps: Vec<App>,
}

/// The portal for the broker session behind `cookie`; None when it is not live (then the page
/// offers the sign-in links). Using the portal counts as activity for the idle timeout.
pub fn portal(
    conn: &mut DbConnection,
    cfg: &Config,
    cookie: &str,
    now: DateTime<Utc>,
) -> Result<Option<Portal>, ConsoleError> {
    let id = token_hash(cookie);
    let idle_cutoff = (now - cfg.session_idle).timestamp();
    let Some(session) = grants::live_session(conn, &id, now.timestamp(), idle_cutoff)? else {
        return Ok(None);
    };
    grants::touch_session(conn, &id, now.timestamp())?;
    let Some(user) = users::by_id(conn, &session.user_id)? else { return Ok(None) };
    let mut roles: Vec<String> = users::roles(conn, &user.id)?.into_iter().map(|r| r.role).collect();
    roles.sort();
    roles.dedup();
    let groups: Vec<String> = serde_json::from_str(&user.groups_json).unwrap_or_default();
    let identities = q::identities(conn, &user.id)?;
    let apps = super::clients::list(conn, cfg)?
        .into_iter()
        .filter(|(c, _)| c.admits(&roles))
        .filter_map(|(c, _)| c.launch_url.map(|launch_url| App { client_id: c.client_id, launch_url }))
        .collect();
    Ok(Some(Portal { user, roles, groups, identities, apps }))
}
