//! The audit trail: one row per security-relevant event, never secrets or raw SAML.

use super::schema::audit_events;
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: String,
    pub at: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub connection_id: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub reason: Option<String>,
    pub detail: String,
    /// Who made an administrative change (`cli`, `local:<name>`, `sso:<user id>`); None for
    /// events the broker records on its own.
    pub actor: Option<String>,
}

pub fn insert(conn: &mut DbConnection, e: &AuditEvent) -> QueryResult<()> {
    diesel::insert_into(audit_events::table).values(e).execute(conn).map(|_| ())
}

pub fn all(conn: &mut DbConnection) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .order((audit_events::at.asc(), audit_events::id.asc()))
        .select(AuditEvent::as_select())
        .load(conn)
}
