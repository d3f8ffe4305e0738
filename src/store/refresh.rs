//! Refresh tokens: one row per issued token (SHA-256 id), grouped in families by rotation.

use super::schema::refresh_tokens;
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub id: String,
    pub family_id: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub scope: String,
    pub created_at: i64,
    /// Absolute end of the family: rotation never extends it.
    pub expires_at: i64,
    pub used: bool,
    pub revoked: bool,
}

pub fn insert(conn: &mut DbConnection, t: &RefreshToken) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table).values(t).execute(conn).map(|_| ())
}

pub fn by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<RefreshToken>> {
    refresh_tokens::table.find(id).select(RefreshToken::as_select()).get_result(conn).optional()
}

/// Marks a token rotated; false when another request rotated it first (a replay).
pub fn mark_used(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
    let n = diesel::update(refresh_tokens::table.find(id).filter(refresh_tokens::used.eq(false)))
        .set(refresh_tokens::used.eq(true))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn revoke_family(conn: &mut DbConnection, family_id: &str) -> QueryResult<usize> {
    diesel::update(refresh_tokens::table.filter(refresh_tokens::family_id.eq(family_id)))
        .set(refresh_tokens::revoked.eq(true))
        .execute(conn)
}

/// Revokes every family that started from this grant (a reused code, a revoked grant).
pub fn revoke_by_grant(conn: &mut DbConnection, grant_id: &str) -> QueryResult<usize> {
    diesel::update(refresh_tokens::table.filter(refresh_tokens::grant_id.eq(grant_id)))
        .set(refresh_tokens::revoked.eq(true))
        .execute(conn)
}
