//! The audit log page and its exports: filters typed by an admin (kind, user, connection,
//! time, support reference), and the CSV and JSON-lines renderings.

use super::ConsoleError;
use crate::store::admin::{self as q, AuditFilter};
use crate::store::audit::AuditEvent;
use crate::store::{users, DbConnection};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Rows on the page (the newest matching ones).
pub const PAGE_LIMIT: i64 = 200;
/// Rows in an export.
pub const EXPORT_LIMIT: i64 = 100_000;

/// The filter as typed in the form (all optional; empty means no filter).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub kind: Option<String>,
    /// A user id or email.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub connection: Option<String>,
    /// RFC 3339, a date, or a duration back from now (`24h`).
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    /// The support reference a user quotes from an error page.
    #[serde(default)]
    pub reference: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

impl AuditQuery {
    /// The store filter. An email that names no user matches nothing (not everything).
    pub fn resolve(
        &self,
        conn: &mut DbConnection,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<AuditFilter, ConsoleError> {
        let user_id = match given(&self.user) {
            None => None,
            Some(key) => Some(match users::by_id(conn, &key)? {
                Some(u) => u.id,
                None => q::ids_by_email(conn, &key)?.into_iter().next().unwrap_or(key),
            }),
        };
        let time = |field: &str, v: &Option<String>| -> Result<Option<i64>, ConsoleError> {
            given(v)
                .map(|s| {
                    parse_time(&s, now)
                        .map(|t| t.timestamp())
                        .map_err(|e| ConsoleError::Invalid(format!("{field}: {e}")))
                })
                .transpose()
        };
        Ok(AuditFilter {
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            user_id,
            connection_id: given(&self.connection),
            kind: given(&self.kind),
            reference: given(&self.reference).map(|r| parse_reference(&r)).transpose()?,
            limit,
        })
    }

    /// The same filter as a query string, for export links and paging.
    pub fn query_string(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("kind", &self.kind),
            ("user", &self.user),
            ("connection", &self.connection),
            ("since", &self.since),
            ("until", &self.until),
            ("reference", &self.reference),
        ] {
            if let Some(v) = given(v) {
                s.append_pair(k, &v);
            }
        }
        s.finish()
    }
}

/// The matching events, newest first, with the email of each user that still exists.
pub fn events(
    conn: &mut DbConnection,
    filter: &AuditFilter,
) -> Result<(Vec<AuditEvent>, BTreeMap<String, String>), ConsoleError> {
    let mut events = q::audit_events(conn, filter)?;
    events.reverse();
    let mut ids: Vec<String> = events.iter().filter_map(|e| e.user_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let emails = q::emails_of(conn, &ids)?.into_iter().filter_map(|(id, e)| e.map(|e| (id, e))).collect();
    Ok((events, emails))
}

/// A support reference as the error pages print it (12 hexadecimal digits; case and a quoted
/// "Support reference:" prefix forgiven, since admins paste what users send them).
pub fn parse_reference(s: &str) -> Result<String, ConsoleError> {
    let s = s.trim();
    let s = s.strip_prefix("Support reference:").unwrap_or(s).trim().to_ascii_lowercase();
    if (4..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(ConsoleError::Invalid(format!(
            "reference: {s:?} is not a support reference (the hexadecimal code on an error page, e.g. 341d04dbfbc0)"
        )))
    }
}

/// The support reference an event was recorded under, if any (refusals shown to a user).
pub fn reference_of(e: &AuditEvent) -> Option<String> {
    let detail: Value = serde_json::from_str(&e.detail).ok()?;
    detail.get("reference")?.as_str().map(str::to_string)
}

/// `since`/`until`: an RFC 3339 time, a date (midnight UTC), or a duration back from `now`
/// (`<n>s|m|h|d|w`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    // What an HTML datetime-local field sends (read as UTC).
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
        return Ok(t.and_utc());
    }
    let bad = || {
        format!(
            "{s:?}: expected an RFC 3339 time (2026-12-03T10:00:00Z), a date (2026-12-03) or a duration \
             such as 30m, 24h, 7d"
        )
    };
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(unit_at);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let back = n.checked_mul(secs).and_then(chrono::Duration::try_seconds).ok_or_else(bad)?;
    now.checked_sub_signed(back).ok_or_else(bad)
}

/// Every column of an audit row; `detail` as JSON (kept as a string if it is not JSON).
pub fn event_json(e: &AuditEvent) -> Value {
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or_else(|_| Value::String(e.detail.clone()));
    json!({
        "id": e.id, "at": e.at, "kind": e.kind, "user_id": e.user_id, "connection_id": e.connection_id,
        "client_id": e.client_id, "ip": e.ip, "user_agent": e.user_agent, "reason": e.reason,
        "actor": e.actor, "detail": detail,
    })
}

/// JSON lines, oldest first: one object per event with every column.
pub fn to_json_lines(events: &[AuditEvent]) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&event_json(e).to_string());
        out.push('\n');
    }
    out
}

const CSV_HEADER: [&str; 11] = [
    "id",
    "time",
    "kind",
    "user_id",
    "connection_id",
    "client_id",
    "ip",
    "user_agent",
    "reason",
    "actor",
    "detail",
];

/// CSV (RFC 4180), oldest first. Cells hold IdP- and browser-supplied text, so a cell that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) gets a leading `'`.
pub fn to_csv(events: &[AuditEvent]) -> String {
    let mut out = String::new();
    // The header is ours: plain names, as spreadsheets and `csv` readers expect.
    out.push_str(&CSV_HEADER.join(","));
    out.push_str("\r\n");
    for e in events {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        push_row(
            &mut out,
            [
                e.id.clone(),
                super::time(e.at),
                e.kind.clone(),
                opt(&e.user_id),
                opt(&e.connection_id),
                opt(&e.client_id),
                opt(&e.ip),
                opt(&e.user_agent),
                opt(&e.reason),
                opt(&e.actor),
                e.detail.clone(),
            ]
            .into_iter(),
        );
    }
    out
}

fn push_row(out: &mut String, cells: impl Iterator<Item = String>) {
    let mut first = true;
    for cell in cells {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&csv_cell(&cell));
    }
    out.push_str("\r\n");
}

fn csv_cell(cell: &str) -> String {
    let neutral = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    };
    // Always quoted: spreadsheets in `;`-separating locales would otherwise split an unquoted
    // cell at `;` and read the rest as a formula.
    format!("\"{}\"", neutral.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_neutralises_formulas() {
        assert_eq!(csv_cell("plain"), "\"plain\"");
        assert_eq!(csv_cell("a;=cmd|' /C calc'!A0"), "\"a;=cmd|' /C calc'!A0\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=cmd()"), "\"'=cmd()\"");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_cell("{\"a\":1}"), "\"{\"\"a\"\":1}\"");
    }

    #[test]
    fn times() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z").map(|t| t.with_timezone(&Utc));
        let Ok(now) = now else { panic!("time") };
        let at = |s: &str| parse_time(s, now).map(|t| t.timestamp());
        assert_eq!(at("24h"), Ok(now.timestamp() - 86_400));
        assert_eq!(at("2026-12-03T10:00"), Ok(now.timestamp() - 7200));
        assert!(at("yesterday").is_err());
    }

    #[test]
    fn references() {
        assert_eq!(parse_reference(" 341D04DBFBC0 ").ok().as_deref(), Some("341d04dbfbc0"));
        assert_eq!(parse_reference("Support reference: 341d04dbfbc0").ok().as_deref(), Some("341d04dbfbc0"));
        // LIKE wildcards, quotes and JSON never reach the query.
        for bad in ["%", "_", "341d04\"", "abc", "341d04dbfbc0z", "' OR 1=1 --", &"a".repeat(33)] {
            assert!(matches!(parse_reference(bad), Err(ConsoleError::Invalid(_))), "{bad}");
        }
        let event = |detail: &str| AuditEvent {
            id: "e".into(),
            at: 0,
            kind: "login.failed".into(),
            user_id: None,
            connection_id: None,
            client_id: None,
            ip: None,
            user_agent: None,
            reason: None,
            detail: detail.into(),
            actor: None,
        };
        assert_eq!(reference_of(&event(r#"{"reference":"341d04dbfbc0"}"#)).as_deref(), Some("341d04dbfbc0"));
        assert_eq!(reference_of(&event(r#"{"reference":7}"#)), None);
        assert_eq!(reference_of(&event("not json")), None);
    }
}
