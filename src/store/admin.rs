//! Queries behind the administration commands: finding and listing users, their identities,
//! sessions and audit history, and the writes an administrator makes (disable, delete).

use super::audit::AuditEvent;
use super::schema::{audit_events, auth_grants, federated_identities, sessions, user_roles, users};
use super::users::{RoleRow, User};
use super::DbConnection;
use diesel::prelude::*;

diesel::define_sql_function! {
    /// SQL `lower()`: the same on both backends, so email matching is case-insensitive even
    /// for rows written before emails were lowercased.
    fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = federated_identities)]
pub struct IdentityRow {
    pub connection_id: String,
    pub subject: String,
    pub created_at: i64,
    pub last_login_at: i64,
}

/// The ids of users whose email equals `email` ignoring case (normally zero or one: the column
/// has no unique index, so more than one is reported rather than assumed away).
pub fn ids_by_email(conn: &mut DbConnection, email: &str) -> QueryResult<Vec<String>> {
    users::table
        .filter(lower(users::email).eq(email.to_lowercase()))
        .order(users::created_at.asc())
        .select(users::id)
        .load(conn)
}

type Backend = <DbConnection as diesel::Connection>::Backend;

/// Users, oldest first, optionally only those whose id, email or name contains `search`
/// (case-insensitive).
pub fn list_users(conn: &mut DbConnection, search: Option<&str>, limit: i64) -> QueryResult<Vec<User>> {
    list_users_page(conn, search, 0, limit)
}

/// One page of `list_users`: `limit` users after skipping `offset`.
pub fn list_users_page(
    conn: &mut DbConnection,
    search: Option<&str>,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<User>> {
    searched_users(search)
        .select(User::as_select())
        .order((users::created_at.asc(), users::id.asc()))
        .offset(offset)
        .limit(limit)
        .load(conn)
}

/// How many users `list_users` would find without a limit.
pub fn count_users(conn: &mut DbConnection, search: Option<&str>) -> QueryResult<i64> {
    searched_users(search).count().get_result(conn)
}

fn searched_users(search: Option<&str>) -> users::BoxedQuery<'static, Backend> {
    let mut query = users::table.into_boxed();
    if let Some(s) = search {
        let pattern = format!("%{}%", escape_like(&s.to_lowercase()));
        query = query.filter(
            lower(users::email)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(users::display_name).like(pattern.clone()).escape('\\'))
                .or(lower(users::given_name).like(pattern.clone()).escape('\\'))
                .or(lower(users::family_name).like(pattern.clone()).escape('\\'))
                .or(users::id.like(pattern).escape('\\')),
        );
    }
    query
}

/// `%` and `_` in admin input are literal text, not wildcards.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The role grants of several users at once (for listings), ordered by user, role, source.
pub fn roles_of(conn: &mut DbConnection, user_ids: &[String]) -> QueryResult<Vec<RoleRow>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    user_roles::table
        .filter(user_roles::user_id.eq_any(user_ids))
        .order((user_roles::user_id, user_roles::role, user_roles::source))
        .select(RoleRow::as_select())
        .load(conn)
}

/// Emails of the given user ids (users that no longer exist are simply absent).
pub fn emails_of(conn: &mut DbConnection, user_ids: &[String]) -> QueryResult<Vec<(String, Option<String>)>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    users::table.filter(users::id.eq_any(user_ids)).select((users::id, users::email)).load(conn)
}

pub fn identities(conn: &mut DbConnection, user_id: &str) -> QueryResult<Vec<IdentityRow>> {
    federated_identities::table
        .filter(federated_identities::user_id.eq(user_id))
        .order((federated_identities::connection_id, federated_identities::subject))
        .select(IdentityRow::as_select())
        .load(conn)
}

/// Sessions that could still sign the user in to an app (not revoked, not expired).
pub fn live_session_count(conn: &mut DbConnection, user_id: &str, now: i64) -> QueryResult<i64> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked.eq(false))
        .filter(sessions::expires_at.gt(now))
        .count()
        .get_result(conn)
}

/// How many rows would go with the user on delete: identities, role grants, sessions, grants.
pub fn dependent_counts(conn: &mut DbConnection, user_id: &str) -> QueryResult<[i64; 4]> {
    Ok([
        federated_identities::table
            .filter(federated_identities::user_id.eq(user_id))
            .count()
            .get_result(conn)?,
        user_roles::table.filter(user_roles::user_id.eq(user_id)).count().get_result(conn)?,
        sessions::table.filter(sessions::user_id.eq(user_id)).count().get_result(conn)?,
        auth_grants::table.filter(auth_grants::user_id.eq(user_id)).count().get_result(conn)?,
    ])
}

pub fn set_disabled(conn: &mut DbConnection, user_id: &str, disabled: bool, now: i64) -> QueryResult<usize> {
    diesel::update(users::table.find(user_id))
        .set((users::disabled.eq(disabled), users::updated_at.eq(now)))
        .execute(conn)
}

/// Revokes every session of the user that is not revoked yet; returns how many.
pub fn revoke_sessions(conn: &mut DbConnection, user_id: &str) -> QueryResult<usize> {
    diesel::update(sessions::table.filter(sessions::user_id.eq(user_id)).filter(sessions::revoked.eq(false)))
        .set(sessions::revoked.eq(true))
        .execute(conn)
}

/// Revokes every authorization grant of the user (their codes and access tokens stop working).
pub fn revoke_grants(conn: &mut DbConnection, user_id: &str) -> QueryResult<usize> {
    diesel::update(
        auth_grants::table.filter(auth_grants::user_id.eq(user_id)).filter(auth_grants::revoked.eq(false)),
    )
    .set(auth_grants::revoked.eq(true))
    .execute(conn)
}

/// Deletes the user; identities, roles, sessions and grants go with it (ON DELETE CASCADE).
pub fn delete_user(conn: &mut DbConnection, user_id: &str) -> QueryResult<usize> {
    diesel::delete(users::table.find(user_id)).execute(conn)
}

/// Whether any audit event names this user id (the user may have been deleted since).
pub fn audit_mentions_user(conn: &mut DbConnection, user_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(audit_events::table.filter(audit_events::user_id.eq(user_id))))
        .get_result(conn)
}

/// The user's sessions, newest first (revoked and expired ones too, for the admin's view).
pub fn sessions_of(
    conn: &mut DbConnection,
    user_id: &str,
    limit: i64,
) -> QueryResult<Vec<super::grants::Session>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .order(sessions::created_at.desc())
        .limit(limit)
        .select(super::grants::Session::as_select())
        .load(conn)
}

/// What `audit` filters on; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    pub user_id: Option<String>,
    pub connection_id: Option<String>,
    /// An exact kind, or a prefix when it ends in `*` (e.g. `user.*`).
    pub kind: Option<String>,
    /// A support reference as written in `detail` (`{"reference":"…"}`); the caller checks
    /// its form.
    pub reference: Option<String>,
    pub limit: i64,
}

/// The most recent `limit` events matching the filter, returned oldest first (like `tail`).
pub fn audit_events(conn: &mut DbConnection, f: &AuditFilter) -> QueryResult<Vec<AuditEvent>> {
    let mut query = audit_events::table.select(AuditEvent::as_select()).into_boxed();
    if let Some(since) = f.since {
        query = query.filter(audit_events::at.ge(since));
    }
    if let Some(until) = f.until {
        query = query.filter(audit_events::at.lt(until));
    }
    if let Some(user) = &f.user_id {
        query = query.filter(audit_events::user_id.eq(user.clone()));
    }
    if let Some(connection) = &f.connection_id {
        query = query.filter(audit_events::connection_id.eq(connection.clone()));
    }
    if let Some(kind) = &f.kind {
        query = match kind.strip_suffix('*') {
            Some(prefix) => {
                query.filter(audit_events::kind.like(format!("{}%", escape_like(prefix))).escape('\\'))
            }
            None => query.filter(audit_events::kind.eq(kind.clone())),
        };
    }
    if let Some(reference) = &f.reference {
        // The rows a reference belongs to carry it as their detail's first key, and serde_json
        // writes compactly: anchored at the start, a reference quoted deeper inside another
        // row's detail (an export's filter, say) does not match.
        let pattern = format!("{{\"reference\":\"{}\"%", escape_like(reference));
        query = query.filter(audit_events::detail.like(pattern).escape('\\'));
    }
    let mut rows: Vec<AuditEvent> =
        query.order((audit_events::at.desc(), audit_events::id.desc())).limit(f.limit).load(conn)?;
    rows.reverse();
    Ok(rows)
}

/// Events of `kind` since `since`, counted per reason (NULL reasons as None).
pub fn count_by_reason(
    conn: &mut DbConnection,
    kind: &str,
    since: i64,
) -> QueryResult<Vec<(Option<String>, i64)>> {
    audit_events::table
        .filter(audit_events::kind.eq(kind))
        .filter(audit_events::at.ge(since))
        .group_by(audit_events::reason)
        .select((audit_events::reason, diesel::dsl::count_star()))
        .order(diesel::dsl::count_star().desc())
        .load(conn)
}

/// Events of `kind` since `since`.
pub fn count_kind(conn: &mut DbConnection, kind: &str, since: i64) -> QueryResult<i64> {
    audit_events::table
        .filter(audit_events::kind.eq(kind))
        .filter(audit_events::at.ge(since))
        .count()
        .get_result(conn)
}

/// The newest event of `kind` on a connection (for its status: last success, last failure).
pub fn last_on_connection(
    conn: &mut DbConnection,
    kind: &str,
    connection_id: &str,
) -> QueryResult<Option<AuditEvent>> {
    audit_events::table
        .filter(audit_events::kind.eq(kind))
        .filter(audit_events::connection_id.eq(connection_id))
        .order((audit_events::at.desc(), audit_events::id.desc()))
        .select(AuditEvent::as_select())
        .first(conn)
        .optional()
}
