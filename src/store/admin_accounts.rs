//! Admin console persistence: local administrator accounts, admin sessions, and the counts of
//! recent failed sign-ins that throttling reads.

use super::schema::{admin_accounts, admin_sessions, audit_events};
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = admin_accounts)]
pub struct AdminAccount {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = admin_sessions)]
pub struct AdminSession {
    /// SHA-256 of the cookie value.
    pub id: String,
    pub actor: String,
    pub user_id: Option<String>,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen_at: i64,
    pub revoked: bool,
    /// For an SSO admin: the broker session (its id) this console session came from.
    pub broker_session_id: Option<String>,
}

pub fn account(conn: &mut DbConnection, name: &str) -> QueryResult<Option<AdminAccount>> {
    admin_accounts::table.find(name).select(AdminAccount::as_select()).first(conn).optional()
}

pub fn accounts(conn: &mut DbConnection) -> QueryResult<Vec<AdminAccount>> {
    admin_accounts::table.order(admin_accounts::name).select(AdminAccount::as_select()).load(conn)
}

pub fn insert_account(conn: &mut DbConnection, a: &AdminAccount) -> QueryResult<()> {
    diesel::insert_into(admin_accounts::table).values(a).execute(conn).map(|_| ())
}

pub fn set_password(conn: &mut DbConnection, name: &str, hash: &str, now: i64) -> QueryResult<usize> {
    diesel::update(admin_accounts::table.find(name))
        .set((admin_accounts::password_hash.eq(hash), admin_accounts::updated_at.eq(now)))
        .execute(conn)
}

pub fn record_login(conn: &mut DbConnection, name: &str, now: i64) -> QueryResult<()> {
    diesel::update(admin_accounts::table.find(name))
        .set(admin_accounts::last_login_at.eq(Some(now)))
        .execute(conn)
        .map(|_| ())
}

/// Ends every session of an actor (a password change signs the account out everywhere).
pub fn revoke_sessions_of(conn: &mut DbConnection, actor: &str) -> QueryResult<usize> {
    diesel::update(
        admin_sessions::table
            .filter(admin_sessions::actor.eq(actor))
            .filter(admin_sessions::revoked.eq(false)),
    )
    .set(admin_sessions::revoked.eq(true))
    .execute(conn)
}

pub fn insert_session(conn: &mut DbConnection, s: &AdminSession) -> QueryResult<()> {
    diesel::insert_into(admin_sessions::table).values(s).execute(conn).map(|_| ())
}

/// A session that is neither revoked, expired, nor idle since before `idle_cutoff`.
pub fn live_session(
    conn: &mut DbConnection,
    id: &str,
    now: i64,
    idle_cutoff: i64,
) -> QueryResult<Option<AdminSession>> {
    admin_sessions::table
        .filter(admin_sessions::id.eq(id))
        .filter(admin_sessions::revoked.eq(false))
        .filter(admin_sessions::expires_at.gt(now))
        .filter(admin_sessions::last_seen_at.gt(idle_cutoff))
        .select(AdminSession::as_select())
        .first(conn)
        .optional()
}

pub fn touch_session(conn: &mut DbConnection, id: &str, now: i64) -> QueryResult<()> {
    diesel::update(admin_sessions::table.find(id))
        .set(admin_sessions::last_seen_at.eq(now))
        .execute(conn)
        .map(|_| ())
}

pub fn revoke_session(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
    diesel::update(admin_sessions::table.find(id))
        .set(admin_sessions::revoked.eq(true))
        .execute(conn)
        .map(|_| ())
}

/// Failed admin sign-ins since `since` (unix seconds) that throttling counts, matching the
/// given actor and/or IP. Refusals for throttling itself are not counted, so a blocked
/// attacker's retries do not extend the block forever.
pub fn recent_failures(
    conn: &mut DbConnection,
    since: i64,
    actor: Option<&str>,
    ip: Option<&str>,
    throttled_reason: &str,
) -> QueryResult<i64> {
    let mut q = audit_events::table
        .filter(audit_events::kind.eq("admin.login_failed"))
        .filter(audit_events::at.ge(since))
        .filter(audit_events::reason.ne(throttled_reason))
        .into_boxed();
    if let Some(a) = actor {
        q = q.filter(audit_events::actor.eq(a.to_string()));
    }
    if let Some(ip) = ip {
        q = q.filter(audit_events::ip.eq(ip.to_string()));
    }
    q.count().get_result(conn)
}
