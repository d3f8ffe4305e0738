//! Broker sessions, authorization grants (code → tokens) and signing keys.

use super::schema::{auth_grants, sessions, signing_keys, users};
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct Session {
    /// SHA-256 of the cookie value.
    pub id: String,
    pub user_id: String,
    pub connection_id: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
    /// How the user authenticated at the IdP (AuthnContextClassRef), for the ID token.
    pub acr: Option<String>,
    /// JSON array of RFC 8176 method references.
    pub amr: String,
    /// Last request this session answered (idle timeout).
    pub last_seen_at: i64,
    /// The IdP's NameID, its Format and SessionIndex from the assertion that started the
    /// session (single logout), and the NameID's qualifiers.
    pub saml_name_id: Option<String>,
    pub saml_name_id_format: Option<String>,
    pub saml_session_index: Option<String>,
    pub saml_name_qualifier: Option<String>,
    pub saml_sp_name_qualifier: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_grants)]
pub struct Grant {
    pub id: String,
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub created_at: i64,
    pub code_expires_at: i64,
    pub code_used: bool,
    pub revoked: bool,
    pub acr: Option<String>,
    pub amr: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub private_pem: String,
    pub created_at: i64,
    pub active: bool,
    pub rotated_at: Option<i64>,
    pub retired_at: Option<i64>,
}

pub fn insert_session(conn: &mut DbConnection, s: &Session) -> QueryResult<()> {
    diesel::insert_into(sessions::table).values(s).execute(conn).map(|_| ())
}

/// A live session (not revoked, not expired, used after `idle_cutoff`, user not disabled).
pub fn live_session(
    conn: &mut DbConnection,
    id: &str,
    now: i64,
    idle_cutoff: i64,
) -> QueryResult<Option<Session>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(id))
        .filter(sessions::revoked.eq(false))
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::last_seen_at.gt(idle_cutoff))
        .filter(users::disabled.eq(false))
        .select(Session::as_select())
        .get_result(conn)
        .optional()
}

pub fn insert_grant(conn: &mut DbConnection, g: &Grant) -> QueryResult<()> {
    diesel::insert_into(auth_grants::table).values(g).execute(conn).map(|_| ())
}

pub fn grant_by_code(conn: &mut DbConnection, code_hash: &str) -> QueryResult<Option<Grant>> {
    auth_grants::table
        .filter(auth_grants::code_hash.eq(code_hash))
        .select(Grant::as_select())
        .get_result(conn)
        .optional()
}

pub fn grant_by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Grant>> {
    auth_grants::table.find(id).select(Grant::as_select()).get_result(conn).optional()
}

/// Marks the code used; false when another request used it first.
pub fn use_code(conn: &mut DbConnection, grant_id: &str) -> QueryResult<bool> {
    let n = diesel::update(auth_grants::table.find(grant_id).filter(auth_grants::code_used.eq(false)))
        .set(auth_grants::code_used.eq(true))
        .execute(conn)?;
    Ok(n == 1)
}

/// Revokes a grant: tokens minted from it stop working at /userinfo.
pub fn revoke_grant(conn: &mut DbConnection, grant_id: &str) -> QueryResult<()> {
    diesel::update(auth_grants::table.find(grant_id))
        .set(auth_grants::revoked.eq(true))
        .execute(conn)
        .map(|_| ())
}

pub fn active_keys(conn: &mut DbConnection) -> QueryResult<Vec<SigningKeyRow>> {
    signing_keys::table
        .filter(signing_keys::active.eq(true))
        .order((signing_keys::created_at.asc(), signing_keys::kid.asc()))
        .select(SigningKeyRow::as_select())
        .load(conn)
}

pub fn insert_key(conn: &mut DbConnection, k: &SigningKeyRow) -> QueryResult<()> {
    diesel::insert_into(signing_keys::table).values(k).execute(conn).map(|_| ())
}

/// Ends a broker session (logout).
pub fn revoke_session(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::update(sessions::table.find(id).filter(sessions::revoked.eq(false)))
        .set(sessions::revoked.eq(true))
        .execute(conn)
}

/// Records activity on a session (idle timeout).
pub fn touch_session(conn: &mut DbConnection, id: &str, now: i64) -> QueryResult<()> {
    diesel::update(sessions::table.find(id)).set(sessions::last_seen_at.eq(now)).execute(conn).map(|_| ())
}

/// Every signing key, oldest first: the order in which key states are decided.
pub fn all_keys(conn: &mut DbConnection) -> QueryResult<Vec<SigningKeyRow>> {
    signing_keys::table
        .order((signing_keys::created_at.asc(), signing_keys::kid.asc()))
        .select(SigningKeyRow::as_select())
        .load(conn)
}

/// Makes `new` the current key in one transaction: every key not yet rotated gets `rotated_at`
/// and `retired_at` (it stays published until then), and `new` is inserted. Returns the kids of
/// the keys rotated out.
pub fn rotate_key(
    conn: &mut DbConnection,
    new: &SigningKeyRow,
    rotated_at: i64,
    retired_at: i64,
) -> QueryResult<Vec<String>> {
    super::transaction(conn, |c| {
        let unrotated = signing_keys::table.filter(signing_keys::rotated_at.is_null());
        let kids: Vec<String> = unrotated.select(signing_keys::kid).order(signing_keys::kid.asc()).load(c)?;
        diesel::update(unrotated)
            .set((signing_keys::rotated_at.eq(rotated_at), signing_keys::retired_at.eq(retired_at)))
            .execute(c)?;
        insert_key(c, new)?;
        Ok(kids)
    })
}

/// Revokes the grants and refresh tokens issued in a session, except `offline_access` ones.
pub fn revoke_session_grants(conn: &mut DbConnection, session_id: &str) -> QueryResult<()> {
    use super::schema::refresh_tokens;
    diesel::update(
        auth_grants::table
            .filter(auth_grants::session_id.eq(session_id))
            .filter(diesel::dsl::not(auth_grants::scope.like("%offline_access%"))),
    )
    .set(auth_grants::revoked.eq(true))
    .execute(conn)?;
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::session_id.eq(session_id))
            .filter(diesel::dsl::not(refresh_tokens::scope.like("%offline_access%"))),
    )
    .set(refresh_tokens::revoked.eq(true))
    .execute(conn)?;
    Ok(())
}
