//! Users, their federated identities (connection, subject) and their role grants.

use super::schema::{federated_identities, user_roles, users};
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub groups_json: String,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: Option<&'a str>,
    pub email_verified: bool,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub groups_json: &'a str,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

/// The profile columns a re-sync may change.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = users, treat_none_as_null = true)]
pub struct ProfileUpdate<'a> {
    pub email: Option<&'a str>,
    pub email_verified: bool,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub groups_json: &'a str,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, PartialEq, Eq)]
#[diesel(table_name = user_roles)]
pub struct RoleRow {
    pub user_id: String,
    pub role: String,
    pub source: String,
    pub source_detail: Option<String>,
    pub granted_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = user_roles)]
pub struct NewRole<'a> {
    pub user_id: &'a str,
    pub role: &'a str,
    pub source: &'a str,
    pub source_detail: Option<&'a str>,
    pub granted_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = federated_identities)]
pub struct NewIdentity<'a> {
    pub connection_id: &'a str,
    pub subject: &'a str,
    pub user_id: &'a str,
    pub created_at: i64,
    pub last_login_at: i64,
}

/// The user behind (connection, subject), if that identity has logged in before.
pub fn by_identity(conn: &mut DbConnection, connection: &str, subject: &str) -> QueryResult<Option<User>> {
    federated_identities::table
        .inner_join(users::table)
        .filter(federated_identities::connection_id.eq(connection))
        .filter(federated_identities::subject.eq(subject))
        .select(User::as_select())
        .get_result(conn)
        .optional()
}

pub fn by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<User>> {
    users::table.find(id).select(User::as_select()).get_result(conn).optional()
}

/// The account that holds `email` as its own: the one with it verified, or else one an admin
/// pre-created (no identity yet). Unverified addresses from other logins claim nothing.
pub fn email_holder(conn: &mut DbConnection, email: &str) -> QueryResult<Option<(String, bool)>> {
    let candidates: Vec<(String, bool)> = users::table
        .filter(users::email.eq(email))
        .select((users::id, users::email_verified))
        .order(users::email_verified.desc())
        .load(conn)?;
    for (id, verified) in candidates {
        if verified {
            return Ok(Some((id, true)));
        }
        let identities: i64 = federated_identities::table
            .filter(federated_identities::user_id.eq(&id))
            .count()
            .get_result(conn)?;
        if identities == 0 {
            return Ok(Some((id, false)));
        }
    }
    Ok(None)
}

pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    users::table.count().get_result(conn)
}

pub fn insert(conn: &mut DbConnection, user: &NewUser<'_>) -> QueryResult<()> {
    diesel::insert_into(users::table).values(user).execute(conn).map(|_| ())
}

pub fn insert_identity(conn: &mut DbConnection, identity: &NewIdentity<'_>) -> QueryResult<()> {
    diesel::insert_into(federated_identities::table).values(identity).execute(conn).map(|_| ())
}

pub fn record_login(
    conn: &mut DbConnection,
    connection: &str,
    subject: &str,
    user_id: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::update(federated_identities::table.find((connection, subject)))
        .set(federated_identities::last_login_at.eq(now))
        .execute(conn)?;
    diesel::update(users::table.find(user_id)).set(users::last_login_at.eq(Some(now))).execute(conn)?;
    Ok(())
}

pub fn update_profile(conn: &mut DbConnection, user_id: &str, update: &ProfileUpdate<'_>) -> QueryResult<()> {
    diesel::update(users::table.find(user_id)).set(update).execute(conn).map(|_| ())
}

pub fn roles(conn: &mut DbConnection, user_id: &str) -> QueryResult<Vec<RoleRow>> {
    user_roles::table
        .filter(user_roles::user_id.eq(user_id))
        .order((user_roles::role, user_roles::source))
        .select(RoleRow::as_select())
        .load(conn)
}

pub fn insert_role(conn: &mut DbConnection, role: &NewRole<'_>) -> QueryResult<()> {
    diesel::insert_into(user_roles::table).values(role).execute(conn).map(|_| ())
}

pub fn delete_role(conn: &mut DbConnection, user_id: &str, role: &str, source: &str) -> QueryResult<usize> {
    diesel::delete(user_roles::table.find((user_id, role, source))).execute(conn)
}

/// Whether the user already has an identity on this connection.
pub fn has_identity_on(conn: &mut DbConnection, user_id: &str, connection: &str) -> QueryResult<bool> {
    let n: i64 = federated_identities::table
        .filter(federated_identities::user_id.eq(user_id))
        .filter(federated_identities::connection_id.eq(connection))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}
