//! The overview page: users, today's logins and failures by reason, recent first-time logins,
//! certificates expiring soon.

use super::connections::{self, CertInfo, EXPIRY_WARNING_DAYS};
use super::ConsoleError;
use crate::config::Config;
use crate::store::admin::{self as q, AuditFilter};
use crate::store::audit::AuditEvent;
use crate::store::{users, DbConnection};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Overview {
    pub users: i64,
    pub logins_today: i64,
    /// (reason, count), most frequent first.
    pub failures_today: Vec<(String, i64)>,
    /// `user.provisioned` events, newest first, with the user's email where known.
    pub first_logins: Vec<(AuditEvent, Option<String>)>,
    /// (connection id, certificate) for certificates expiring within the warning period.
    pub expiring: Vec<(String, CertInfo)>,
}

pub fn overview(conn: &mut DbConnection, cfg: &Config, now: DateTime<Utc>) -> Result<Overview, ConsoleError> {
    // "Today" is the UTC day: the audit log and its exports are in UTC too.
    let midnight = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
    let users = users::count(conn)?;
    let logins_today = q::count_kind(conn, "login.succeeded", midnight)?;
    let failures_today = q::count_by_reason(conn, "login.failed", midnight)?
        .into_iter()
        .map(|(r, n)| (r.unwrap_or_else(|| "unknown".into()), n))
        .collect();
    let filter = AuditFilter { kind: Some("user.provisioned".into()), limit: 10, ..AuditFilter::default() };
    let mut events = q::audit_events(conn, &filter)?;
    events.reverse();
    let ids: Vec<String> = events.iter().filter_map(|e| e.user_id.clone()).collect();
    let emails: BTreeMap<String, String> =
        q::emails_of(conn, &ids)?.into_iter().filter_map(|(id, e)| e.map(|e| (id, e))).collect();
    let first_logins = events
        .into_iter()
        .map(|e| {
            let email = e.user_id.as_ref().and_then(|id| emails.get(id).cloned());
            (e, email)
        })
        .collect();
    let mut expiring = Vec::new();
    for c in &cfg.connections {
        for cert in connections::certs(c) {
            if cert.days_left(now) < EXPIRY_WARNING_DAYS {
                expiring.push((c.id.clone(), cert));
            }
        }
    }
    expiring.sort_by_key(|(_, c)| c.not_after);
    Ok(Overview { users, logins_today, failures_today, first_logins, expiring })
}
