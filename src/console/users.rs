//! The users pages and the changes an admin makes to a user: search, detail, disable/enable,
//! manual roles, session revocation. Each change is one transaction with its audit row.

use super::{admin_event, Actor, ConsoleError};
use crate::flow::RequestMeta;
use crate::provisioning::RoleSource;
use crate::store::admin::{self as q, AuditFilter, IdentityRow};
use crate::store::audit::AuditEvent;
use crate::store::grants::Session;
use crate::store::users::{self, NewRole, RoleRow, User};
use crate::store::{self, DbConnection};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeMap;

pub const PAGE_SIZE: i64 = 25;
const RECENT_AUDIT: i64 = 20;
const RECENT_SESSIONS: i64 = 20;

/// One page of the user list.
#[derive(Debug)]
pub struct UserPage {
    pub users: Vec<(User, Vec<String>)>,
    pub total: i64,
    /// 1-based.
    pub page: i64,
    pub pages: i64,
}

pub fn search(conn: &mut DbConnection, search: Option<&str>, page: i64) -> Result<UserPage, ConsoleError> {
    let search = search.map(str::trim).filter(|s| !s.is_empty());
    let total = q::count_users(conn, search)?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let found = q::list_users_page(conn, search, (page - 1) * PAGE_SIZE, PAGE_SIZE)?;
    let ids: Vec<String> = found.iter().map(|u| u.id.clone()).collect();
    let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in q::roles_of(conn, &ids)? {
        let names = roles.entry(r.user_id).or_default();
        if !names.contains(&r.role) {
            names.push(r.role);
        }
    }
    let users = found
        .into_iter()
        .map(|u| {
            let r = roles.remove(&u.id).unwrap_or_default();
            (u, r)
        })
        .collect();
    Ok(UserPage { users, total, page, pages })
}

#[derive(Debug)]
pub struct UserDetail {
    pub user: User,
    pub identities: Vec<IdentityRow>,
    pub roles: Vec<RoleRow>,
    pub sessions: Vec<Session>,
    /// Newest first.
    pub events: Vec<AuditEvent>,
}

pub fn detail(conn: &mut DbConnection, user_id: &str) -> Result<UserDetail, ConsoleError> {
    let user = users::by_id(conn, user_id)?.ok_or(ConsoleError::NotFound)?;
    let identities = q::identities(conn, user_id)?;
    let roles = users::roles(conn, user_id)?;
    let sessions = q::sessions_of(conn, user_id, RECENT_SESSIONS)?;
    let filter =
        AuditFilter { user_id: Some(user_id.to_string()), limit: RECENT_AUDIT, ..AuditFilter::default() };
    let mut events = q::audit_events(conn, &filter)?;
    events.reverse();
    Ok(UserDetail { user, identities, roles, sessions, events })
}

/// Whether a session can still be used (for the detail page).
pub fn session_live(s: &Session, now: i64) -> bool {
    !s.revoked && s.expires_at > now
}

/// How a role grant came about, in words.
pub fn provenance(r: &RoleRow) -> String {
    match (RoleSource::parse(&r.source), &r.source_detail) {
        (Some(RoleSource::Idp), Some(group)) => format!("IdP group {group}"),
        (Some(RoleSource::Idp), None) => "IdP".into(),
        (Some(RoleSource::Default), _) => "connection default".into(),
        (Some(RoleSource::Manual), _) => "manual".into(),
        (None, _) => r.source.clone(),
    }
}

fn user(conn: &mut DbConnection, user_id: &str) -> Result<User, ConsoleError> {
    users::by_id(conn, user_id)?.ok_or(ConsoleError::NotFound)
}

/// Disables the user and revokes their sessions and grants in one transaction, so they are
/// never left disabled with something still working. Returns (sessions, grants) revoked.
pub fn disable(
    conn: &mut DbConnection,
    user_id: &str,
    actor: &Actor,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<(usize, usize), ConsoleError> {
    let u = user(conn, user_id)?;
    store::transaction(conn, |c| -> Result<(usize, usize), ConsoleError> {
        q::set_disabled(c, &u.id, true, now.timestamp())?;
        let sessions = q::revoke_sessions(c, &u.id)?;
        let grants = q::revoke_grants(c, &u.id)?;
        let detail =
            json!({"sessions_revoked": sessions, "grants_revoked": grants, "was_disabled": u.disabled});
        store::audit::insert(c, &admin_event(now, "user.disabled", actor, meta, Some(&u.id), None, detail))?;
        Ok((sessions, grants))
    })
}

/// Enables a disabled user; false when they were not disabled (nothing written).
pub fn enable(
    conn: &mut DbConnection,
    user_id: &str,
    actor: &Actor,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<bool, ConsoleError> {
    let u = user(conn, user_id)?;
    if !u.disabled {
        return Ok(false);
    }
    store::transaction(conn, |c| -> Result<(), ConsoleError> {
        q::set_disabled(c, &u.id, false, now.timestamp())?;
        store::audit::insert(
            c,
            &admin_event(now, "user.enabled", actor, meta, Some(&u.id), None, json!({})),
        )?;
        Ok(())
    })?;
    Ok(true)
}

/// Grants a manual role; false when the user already holds it manually (nothing written).
pub fn add_role(
    conn: &mut DbConnection,
    user_id: &str,
    role: &str,
    actor: &Actor,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<bool, ConsoleError> {
    let u = user(conn, user_id)?;
    let role = super::valid_role(role)?;
    let manual = RoleSource::Manual.as_str();
    if users::roles(conn, &u.id)?.iter().any(|r| r.role == role && r.source == manual) {
        return Ok(false);
    }
    let granted = store::transaction(conn, |c| -> Result<(), ConsoleError> {
        let grant = NewRole {
            user_id: &u.id,
            role: &role,
            source: manual,
            source_detail: None,
            granted_at: now.timestamp(),
        };
        users::insert_role(c, &grant)?;
        let detail = json!({"role": role, "source": manual});
        store::audit::insert(c, &admin_event(now, "role.granted", actor, meta, Some(&u.id), None, detail))?;
        Ok(())
    });
    match granted {
        Ok(()) => Ok(true),
        // A concurrent grant of the same role (a double click) got there first, with its row.
        Err(ConsoleError::Store(e)) if store::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes a manual role grant. Roles from the IdP or the connection's defaults are the
/// broker's to keep in sync and are refused with where to change them.
pub fn remove_role(
    conn: &mut DbConnection,
    user_id: &str,
    role: &str,
    actor: &Actor,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<(), ConsoleError> {
    let u = user(conn, user_id)?;
    let role = role.trim().to_string();
    let manual = RoleSource::Manual.as_str();
    let held = users::roles(conn, &u.id)?;
    if !held.iter().any(|r| r.role == role && r.source == manual) {
        let others: Vec<String> = held.iter().filter(|r| r.role == role).map(provenance).collect();
        return Err(ConsoleError::Refused(if others.is_empty() {
            format!("the user does not have role {role}")
        } else {
            format!(
                "role {role} comes from {} only, which the broker keeps in sync at each login; change it \
                 there (IdP groups, role_mapping or default_roles)",
                others.join(" and ")
            )
        }));
    }
    store::transaction(conn, |c| -> Result<(), ConsoleError> {
        users::delete_role(c, &u.id, &role, manual)?;
        let detail = json!({"role": role, "source": manual});
        store::audit::insert(c, &admin_event(now, "role.revoked", actor, meta, Some(&u.id), None, detail))?;
        Ok(())
    })
}

/// Ends the user's broker sessions (they sign in at their IdP again at the next app login), and
/// what those sessions handed out, as a logout does (`offline_access` grants stay).
pub fn revoke_sessions(
    conn: &mut DbConnection,
    user_id: &str,
    actor: &Actor,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<usize, ConsoleError> {
    let u = user(conn, user_id)?;
    store::transaction(conn, |c| -> Result<usize, ConsoleError> {
        let live: Vec<String> = q::sessions_of(c, &u.id, i64::MAX)?
            .into_iter()
            .filter(|s| session_live(s, now.timestamp()))
            .map(|s| s.id)
            .collect();
        for id in &live {
            crate::store::grants::revoke_session_grants(c, id)?;
        }
        let n = q::revoke_sessions(c, &u.id)?;
        let detail = json!({"sessions_revoked": n});
        store::audit::insert(
            c,
            &admin_event(now, "user.sessions_revoked", actor, meta, Some(&u.id), None, detail),
        )?;
        Ok(n)
    })
}
