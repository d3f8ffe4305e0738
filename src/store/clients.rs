//! OIDC clients registered from the CLI (JSON arrays for the URI and role lists).

use super::schema::clients;
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = clients)]
pub struct ClientRow {
    pub client_id: String,
    /// `sha256$…` for generated secrets, an argon2 PHC string for chosen ones; None: public.
    pub secret_hash: Option<String>,
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub allowed_roles: String,
    pub issue_refresh_token: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Where the user portal opens the app; None: not listed in the portal.
    pub launch_url: Option<String>,
}

pub fn by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<ClientRow>> {
    clients::table.find(id).select(ClientRow::as_select()).get_result(conn).optional()
}

pub fn all(conn: &mut DbConnection) -> QueryResult<Vec<ClientRow>> {
    clients::table.order(clients::client_id).select(ClientRow::as_select()).load(conn)
}

pub fn insert(conn: &mut DbConnection, row: &ClientRow) -> QueryResult<()> {
    diesel::insert_into(clients::table).values(row).execute(conn).map(|_| ())
}

pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(clients::table.find(id)).execute(conn)
}

pub fn set_secret(conn: &mut DbConnection, id: &str, secret_hash: &str, now: i64) -> QueryResult<usize> {
    diesel::update(clients::table.find(id))
        .set((clients::secret_hash.eq(Some(secret_hash)), clients::updated_at.eq(now)))
        .execute(conn)
}

/// Replaces what an admin may change of a registered client (not its id, type or secret).
pub fn set_settings(conn: &mut DbConnection, row: &ClientRow) -> QueryResult<usize> {
    diesel::update(clients::table.find(&row.client_id))
        .set((
            clients::redirect_uris.eq(&row.redirect_uris),
            clients::post_logout_redirect_uris.eq(&row.post_logout_redirect_uris),
            clients::allowed_roles.eq(&row.allowed_roles),
            clients::issue_refresh_token.eq(row.issue_refresh_token),
            clients::launch_url.eq(&row.launch_url),
            clients::updated_at.eq(row.updated_at),
        ))
        .execute(conn)
}
