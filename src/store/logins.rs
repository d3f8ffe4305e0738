//! Pending logins (one per AuthnRequest) and the assertion replay cache, shared by all instances.

use super::schema::{login_transactions, saml_replay};
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = login_transactions)]
pub struct LoginTransaction {
    /// SHA-256 of the RelayState handle the browser carries.
    pub id: String,
    pub request_id: String,
    pub connection_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    /// SHA-256 of the browser cookie of whoever started the login (login CSRF defence).
    pub browser_binding: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert(conn: &mut DbConnection, t: &LoginTransaction) -> QueryResult<()> {
    diesel::insert_into(login_transactions::table).values(t).execute(conn).map(|_| ())
}

pub fn by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<LoginTransaction>> {
    login_transactions::table.find(id).select(LoginTransaction::as_select()).get_result(conn).optional()
}

/// Takes the open transaction for `request_id` out of the table. One `DELETE … RETURNING` makes
/// the consumption atomic across instances (only one caller gets the row) in one round trip.
pub fn consume(
    conn: &mut DbConnection,
    connection: &str,
    request_id: &str,
) -> QueryResult<Option<LoginTransaction>> {
    diesel::delete(
        login_transactions::table
            .filter(login_transactions::request_id.eq(request_id))
            .filter(login_transactions::connection_id.eq(connection)),
    )
    .returning(login_transactions::all_columns)
    .get_result(conn)
    .optional()
}

/// Records an assertion ID; a unique violation means it was seen before (a replay).
pub fn record_assertion(
    conn: &mut DbConnection,
    connection: &str,
    assertion_id: &str,
    expires_at: i64,
) -> QueryResult<()> {
    diesel::insert_into(saml_replay::table)
        .values((
            saml_replay::connection_id.eq(connection),
            saml_replay::assertion_id.eq(assertion_id),
            saml_replay::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .map(|_| ())
}
