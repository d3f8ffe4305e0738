//! Client lookup across the two registries: the config file first, then clients registered
//! with `ssobroker client add` (stored in the database, so every instance sees them).

use super::FlowError;
use crate::config::Config;
use crate::oidc::Client;
use crate::store::{clients::ClientRow, DbConnection};

pub fn lookup(conn: &mut DbConnection, cfg: &Config, id: &str) -> Result<Option<Client>, FlowError> {
    if let Some(c) = cfg.client(id) {
        return Ok(Some(c.clone()));
    }
    // An id no registration accepts is unknown without asking the database (PostgreSQL refuses
    // a NUL in text outright, which would turn a hostile client_id into a 500).
    if crate::config::check_client_id(id).is_err() {
        return Ok(None);
    }
    Ok(crate::store::clients::by_id(conn, id)?.map(from_row))
}

pub fn from_row(row: ClientRow) -> Client {
    let list = |json: &str| serde_json::from_str::<Vec<String>>(json).unwrap_or_default();
    Client {
        redirect_uris: list(&row.redirect_uris),
        post_logout_redirect_uris: list(&row.post_logout_redirect_uris),
        allowed_roles: list(&row.allowed_roles),
        client_id: row.client_id,
        secret_hash: row.secret_hash,
        issue_refresh_token: row.issue_refresh_token,
        launch_url: row.launch_url,
    }
}
