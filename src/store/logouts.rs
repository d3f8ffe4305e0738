//! Single logout state: our LogoutRequests awaiting the IdP's answer, and the broker sessions an
//! IdP's LogoutRequest names.

use super::grants::Session;
use super::schema::{saml_logouts, sessions};
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = saml_logouts)]
pub struct PendingLogout {
    /// The LogoutRequest ID, matched against the LogoutResponse's InResponseTo.
    pub request_id: String,
    pub connection_id: String,
    pub user_id: String,
    /// Where the browser goes once the IdP answers (an already validated post-logout URI);
    /// none: the broker's "signed out" page.
    pub redirect_to: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert(conn: &mut DbConnection, p: &PendingLogout) -> QueryResult<()> {
    diesel::insert_into(saml_logouts::table).values(p).execute(conn).map(|_| ())
}

/// Takes the pending logout for `request_id` out of the table: one `DELETE … RETURNING`, so
/// only one caller (on any instance) gets it. Expired rows are not returned.
pub fn consume(
    conn: &mut DbConnection,
    connection: &str,
    request_id: &str,
    now: i64,
) -> QueryResult<Option<PendingLogout>> {
    diesel::delete(
        saml_logouts::table
            .filter(saml_logouts::request_id.eq(request_id))
            .filter(saml_logouts::connection_id.eq(connection))
            .filter(saml_logouts::expires_at.gt(now)),
    )
    .returning(saml_logouts::all_columns)
    .get_result(conn)
    .optional()
}

/// The unrevoked, unexpired sessions of one connection for this NameID; with session indexes,
/// only the sessions started by those IdP sessions.
pub fn sessions_for_subject(
    conn: &mut DbConnection,
    connection: &str,
    name_id: &str,
    session_indexes: &[String],
    now: i64,
) -> QueryResult<Vec<Session>> {
    let mut query = sessions::table
        .filter(sessions::connection_id.eq(connection))
        .filter(sessions::saml_name_id.eq(name_id))
        .filter(sessions::revoked.eq(false))
        .filter(sessions::expires_at.gt(now))
        .select(Session::as_select())
        .into_boxed();
    if !session_indexes.is_empty() {
        query = query.filter(sessions::saml_session_index.eq_any(session_indexes.to_vec()));
    }
    query.load(conn)
}
