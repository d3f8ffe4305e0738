//! Administration commands on the store: users and the audit log.
//!
//! Each command opens the configured database, does its work in one transaction where it
//! writes, records an audit row naming the CLI as the actor, and prints a table (or JSON with
//! `--json`). Nothing printed here is secret: sessions and grants are only counted.

use crate::clock::{Clock, SystemClock};
use crate::console::Actor;
use crate::flow::RequestMeta;
use crate::provisioning::RoleSource;
use crate::store::admin::{self as q, AuditFilter, IdentityRow};
use crate::store::audit::AuditEvent;
use crate::store::users::{self, NewRole, NewUser, RoleRow, User};
use crate::store::{self, DbConnection, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;

/// `ssobroker user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user before their first login; roles are granted with source `manual`.
    Add {
        #[arg(long)]
        email: String,
        /// A role to grant (repeatable).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        given_name: Option<String>,
        #[arg(long)]
        family_name: Option<String>,
    },
    /// List users, oldest first.
    List {
        /// Only users whose email, name or id contains this text (case-insensitive).
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a user: profile, identities, roles, live sessions and recent audit events.
    Show {
        /// User id or email.
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user and revoke their sessions and grants (their access tokens stop working).
    Disable {
        /// User id or email.
        user: String,
    },
    /// Enable a disabled user (they sign in again; revoked sessions stay revoked).
    Enable {
        /// User id or email.
        user: String,
    },
    /// Grant or remove manual roles.
    Roles {
        #[command(subcommand)]
        command: RolesCommand,
    },
    /// Delete a user with their identities, roles, sessions and grants.
    Delete {
        /// User id or email.
        user: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// `ssobroker user roles …`
#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Grant a role with source `manual` (kept across IdP re-syncs).
    Add {
        /// User id or email.
        user: String,
        role: String,
    },
    /// Remove a manual role grant (roles from the IdP or default_roles are managed by the broker).
    Remove {
        /// User id or email.
        user: String,
        role: String,
    },
}

/// `ssobroker audit …`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events at or after this time: RFC 3339 (2026-12-03T10:00:00Z), a date (2026-12-03,
    /// UTC) or a duration back from now (30m, 24h, 7d, 2w).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events about this user (id or email; the id of a deleted user works too).
    #[arg(long)]
    pub user: Option<String>,
    /// Only this kind (e.g. login.failed), or a prefix ending in `*` (e.g. `user.*`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only events recorded under this support reference (the code on a user's error page).
    #[arg(long)]
    pub reference: Option<String>,
    /// The most recent N matching events (printed oldest first).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// One JSON object per line with every column (`detail` as JSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid configuration: {0}")]
    Config(crate::config::ConfigError),
    #[error("database: {0}")]
    Store(StoreError),
    #[error("database: {0}")]
    Query(diesel::result::Error),
    #[error("no user {0:?} (give a user id or an email; `ssobroker user list` shows them)")]
    UnknownUser(String),
    #[error("several users have the email {email:?} ({ids}); give the user id instead")]
    AmbiguousEmail { email: String, ids: String },
    #[error("a user with the email {email:?} already exists (id {id})")]
    DuplicateEmail { email: String, id: String },
    /// A bad argument value, with the argument named in the message.
    #[error("{0}")]
    Invalid(String),
    /// The command cannot do what was asked; the message says why and what to do instead.
    #[error("{0}")]
    Refused(String),
    #[error("output: {0}")]
    Io(std::io::Error),
}

// Spelled out instead of `#[from]` so the error is not also reported as its own cause.
impl From<diesel::result::Error> for AdminError {
    fn from(e: diesel::result::Error) -> Self {
        AdminError::Query(e)
    }
}
impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}
impl From<std::io::Error> for AdminError {
    fn from(e: std::io::Error) -> Self {
        AdminError::Io(e)
    }
}

const ACTOR: &str = "cli";
/// How many audit events `user show` lists.
const RECENT_AUDIT: i64 = 10;

/// Runs a `user` command against the database of the config file at `config`.
pub fn user(config: &Path, cmd: UserCommand) -> Result<(), AdminError> {
    let mut conn = open(config)?;
    let mut out = std::io::stdout().lock();
    quiet_broken_pipe(run_user(&mut conn, cmd, SystemClock.now(), &mut out))
}

/// Runs `audit` against the database of the config file at `config`.
pub fn audit(config: &Path, args: AuditArgs) -> Result<(), AdminError> {
    let mut conn = open(config)?;
    let mut out = std::io::stdout().lock();
    quiet_broken_pipe(run_audit(&mut conn, &args, SystemClock.now(), &mut out))
}

fn open(config: &Path) -> Result<store::PooledDb, AdminError> {
    let cfg = crate::config::load(config).map_err(AdminError::Config)?;
    // One connection: a command is a short sequence of statements; migrations run on connect.
    let pool = store::connect(&cfg.database, 1)?;
    Ok(pool.get().map_err(StoreError::from)?)
}

/// `ssobroker user list | head` closes stdout early; that is not a failure.
fn quiet_broken_pipe(r: Result<(), AdminError>) -> Result<(), AdminError> {
    match r {
        Err(AdminError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

pub fn run_user(
    conn: &mut DbConnection,
    cmd: UserCommand,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    match cmd {
        UserCommand::Add { email, roles, name, given_name, family_name } => {
            let profile = NewProfile { email, roles, display_name: name, given_name, family_name };
            add(conn, profile, now, out)
        }
        UserCommand::List { search, limit, json } => list(conn, search.as_deref(), limit, json, out),
        UserCommand::Show { user, json } => show(conn, &user, now, json, out),
        UserCommand::Disable { user } => disable(conn, &user, now, out),
        UserCommand::Enable { user } => enable(conn, &user, now, out),
        UserCommand::Roles { command: RolesCommand::Add { user, role } } => {
            role_add(conn, &user, &role, now, out)
        }
        UserCommand::Roles { command: RolesCommand::Remove { user, role } } => {
            role_remove(conn, &user, &role, now, out)
        }
        UserCommand::Delete { user, yes } => delete(conn, &user, yes, now, out),
    }
}

/// Finds a user by id, else by email (case-insensitive).
pub fn resolve(conn: &mut DbConnection, key: &str) -> Result<User, AdminError> {
    let key = key.trim();
    if let Some(u) = users::by_id(conn, key)? {
        return Ok(u);
    }
    let ids = q::ids_by_email(conn, key)?;
    match ids.as_slice() {
        [] => Err(AdminError::UnknownUser(key.to_string())),
        [id] => users::by_id(conn, id)?.ok_or_else(|| AdminError::UnknownUser(key.to_string())),
        _ => Err(AdminError::AmbiguousEmail { email: key.to_string(), ids: ids.join(", ") }),
    }
}

fn audit_event(now: DateTime<Utc>, kind: &str, user_id: &str, detail: Value) -> AuditEvent {
    crate::console::admin_event(
        now,
        kind,
        &Actor::cli(),
        &RequestMeta::default(),
        Some(user_id),
        None,
        detail,
    )
}

/// How a user is named in messages: the email when there is one, and always the id.
fn label(u: &User) -> String {
    match &u.email {
        Some(e) => format!("{e} ({})", u.id),
        None => u.id.clone(),
    }
}

struct NewProfile {
    email: String,
    roles: Vec<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
}

fn add(
    conn: &mut DbConnection,
    p: NewProfile,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    // Stored lowercased, as JIT stores asserted emails, so lookups and the conflict check agree.
    let email = p.email.trim().to_ascii_lowercase();
    if !looks_like_email(&email) {
        return Err(AdminError::Invalid(format!("--email: {:?} is not an email address", p.email)));
    }
    let mut roles = Vec::new();
    for r in &p.roles {
        let r = valid_role(r)?;
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    roles.sort();
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let (display_name, given_name, family_name) =
        (text(&p.display_name), text(&p.given_name), text(&p.family_name));
    let id = uuid::Uuid::new_v4().to_string();
    let ts = now.timestamp();
    store::transaction(conn, |c| -> Result<(), AdminError> {
        if let Some(existing) = q::ids_by_email(c, &email)?.into_iter().next() {
            return Err(AdminError::DuplicateEmail { email: email.clone(), id: existing });
        }
        users::insert(
            c,
            &NewUser {
                id: &id,
                email: Some(&email),
                // Typed by an administrator, not asserted by an IdP.
                email_verified: false,
                given_name: given_name.as_deref(),
                family_name: family_name.as_deref(),
                display_name: display_name.as_deref(),
                groups_json: "[]",
                disabled: false,
                created_at: ts,
                updated_at: ts,
                last_login_at: None,
            },
        )?;
        for role in &roles {
            users::insert_role(
                c,
                &NewRole {
                    user_id: &id,
                    role,
                    source: RoleSource::Manual.as_str(),
                    source_detail: None,
                    granted_at: ts,
                },
            )?;
        }
        let detail =
            json!({"actor": ACTOR, "email": email, "roles": roles, "source": RoleSource::Manual.as_str()});
        store::audit::insert(c, &audit_event(now, "user.created", &id, detail))?;
        Ok(())
    })?;
    let granted = if roles.is_empty() {
        "no roles".to_string()
    } else {
        format!("roles {} (manual)", roles.join(", "))
    };
    writeln!(out, "created user {id} ({email}) with {granted}")?;
    Ok(())
}

/// The same rule JIT applies to asserted addresses.
fn looks_like_email(s: &str) -> bool {
    crate::provisioning::looks_like_email(s)
}

fn valid_role(r: &str) -> Result<String, AdminError> {
    let r = r.trim();
    if r.is_empty() || r.len() > 128 || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AdminError::Invalid(format!("role {r:?}: a role is 1-128 characters without spaces")));
    }
    Ok(r.to_string())
}

/// The name apps see: the display name, else given and family name.
fn full_name(u: &User) -> Option<String> {
    u.display_name.clone().or_else(|| match (&u.given_name, &u.family_name) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (Some(g), None) => Some(g.clone()),
        (None, Some(f)) => Some(f.clone()),
        (None, None) => None,
    })
}

fn groups(u: &User) -> Vec<String> {
    serde_json::from_str(&u.groups_json).unwrap_or_default()
}

fn time(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

fn opt(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// Distinct role names, sorted (a role held from two sources counts once).
fn role_names(rows: &[RoleRow]) -> Vec<String> {
    let mut names: Vec<String> = rows.iter().map(|r| r.role.clone()).collect();
    names.sort();
    names.dedup();
    names
}

fn list(
    conn: &mut DbConnection,
    search: Option<&str>,
    limit: i64,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let found = q::list_users(conn, search, limit)?;
    let ids: Vec<String> = found.iter().map(|u| u.id.clone()).collect();
    let mut roles: BTreeMap<String, Vec<RoleRow>> = BTreeMap::new();
    for r in q::roles_of(conn, &ids)? {
        roles.entry(r.user_id.clone()).or_default().push(r);
    }
    let no_roles = Vec::new();
    if as_json {
        for u in &found {
            let names = role_names(roles.get(&u.id).unwrap_or(&no_roles));
            let line = json!({
                "id": u.id, "email": u.email, "email_verified": u.email_verified, "name": full_name(u),
                "given_name": u.given_name, "family_name": u.family_name, "display_name": u.display_name,
                "disabled": u.disabled, "roles": names, "created_at": u.created_at,
                "last_login_at": u.last_login_at,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|u| {
            vec![
                u.id.clone(),
                opt(u.email.as_deref()),
                opt(full_name(u).as_deref()),
                if u.disabled { "yes" } else { "no" }.to_string(),
                opt(Some(&role_names(roles.get(&u.id).unwrap_or(&no_roles)).join(","))),
                time(u.created_at),
                u.last_login_at.map(time).unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    table(out, &["ID", "EMAIL", "NAME", "DISABLED", "ROLES", "CREATED", "LAST LOGIN"], &rows)?;
    if rows.is_empty() {
        writeln!(out, "(no users{})", search.map(|s| format!(" matching {s:?}")).unwrap_or_default())?;
    }
    Ok(())
}

fn show(
    conn: &mut DbConnection,
    key: &str,
    now: DateTime<Utc>,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let u = resolve(conn, key)?;
    let identities = q::identities(conn, &u.id)?;
    let roles = users::roles(conn, &u.id)?;
    let live = q::live_session_count(conn, &u.id, now.timestamp())?;
    let filter = AuditFilter { user_id: Some(u.id.clone()), limit: RECENT_AUDIT, ..AuditFilter::default() };
    let events = q::audit_events(conn, &filter)?;
    if as_json {
        let doc = json!({
            "id": u.id, "email": u.email, "email_verified": u.email_verified, "name": full_name(&u),
            "given_name": u.given_name, "family_name": u.family_name, "display_name": u.display_name,
            "groups": groups(&u), "disabled": u.disabled, "created_at": u.created_at,
            "updated_at": u.updated_at, "last_login_at": u.last_login_at,
            "identities": identities.iter().map(identity_json).collect::<Vec<_>>(),
            "roles": roles.iter().map(|r| json!({
                "role": r.role, "source": r.source, "group": r.source_detail, "granted_at": r.granted_at,
            })).collect::<Vec<_>>(),
            "live_sessions": live,
            "recent_audit": events.iter().map(event_json).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).map_err(std::io::Error::from)?)?;
        return Ok(());
    }
    let email = match &u.email {
        Some(e) if u.email_verified => format!("{e} (verified)"),
        Some(e) => e.clone(),
        None => "-".into(),
    };
    let fields = [
        ("id", u.id.clone()),
        ("email", email),
        ("name", opt(full_name(&u).as_deref())),
        ("given name", opt(u.given_name.as_deref())),
        ("family name", opt(u.family_name.as_deref())),
        ("groups", opt(Some(&groups(&u).join(", ")))),
        ("status", if u.disabled { "disabled" } else { "enabled" }.to_string()),
        ("created", time(u.created_at)),
        ("updated", time(u.updated_at)),
        ("last login", u.last_login_at.map(time).unwrap_or_else(|| "never".into())),
        ("live sessions", live.to_string()),
    ];
    for (k, v) in fields {
        writeln!(out, "{k:<14}{v}")?;
    }
    writeln!(out, "\nidentities")?;
    if identities.is_empty() {
        writeln!(out, "  (none yet: linked at the first login)")?;
    } else {
        let rows: Vec<Vec<String>> = identities
            .iter()
            .map(|i| {
                vec![i.connection_id.clone(), i.subject.clone(), time(i.created_at), time(i.last_login_at)]
            })
            .collect();
        indented_table(out, &["CONNECTION", "SUBJECT", "LINKED", "LAST LOGIN"], &rows)?;
    }
    writeln!(out, "\nroles")?;
    if roles.is_empty() {
        writeln!(out, "  (none)")?;
    } else {
        let rows: Vec<Vec<String>> = roles
            .iter()
            .map(|r| {
                vec![r.role.clone(), r.source.clone(), opt(r.source_detail.as_deref()), time(r.granted_at)]
            })
            .collect();
        indented_table(out, &["ROLE", "SOURCE", "GROUP", "GRANTED"], &rows)?;
    }
    writeln!(out, "\nrecent audit events")?;
    if events.is_empty() {
        writeln!(out, "  (none)")?;
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    time(e.at),
                    e.kind.clone(),
                    opt(e.connection_id.as_deref()),
                    opt(e.client_id.as_deref()),
                    opt(e.ip.as_deref()),
                    opt(e.reason.as_deref()),
                ]
            })
            .collect();
        indented_table(out, &["TIME", "KIND", "CONNECTION", "CLIENT", "IP", "REASON"], &rows)?;
    }
    Ok(())
}

fn identity_json(i: &IdentityRow) -> Value {
    json!({
        "connection": i.connection_id, "subject": i.subject,
        "created_at": i.created_at, "last_login_at": i.last_login_at,
    })
}

fn disable(
    conn: &mut DbConnection,
    key: &str,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let u = resolve(conn, key)?;
    // Not skipped when already disabled: running it again is how an admin makes sure nothing of
    // the user still works, and that attempt belongs in the audit log too.
    // One transaction: a user is never left disabled with a session or token still working.
    let (sessions, grants) = store::transaction(conn, |c| -> Result<(usize, usize), AdminError> {
        q::set_disabled(c, &u.id, true, now.timestamp())?;
        let sessions = q::revoke_sessions(c, &u.id)?;
        let grants = q::revoke_grants(c, &u.id)?;
        let detail = json!({"actor": ACTOR, "sessions_revoked": sessions, "grants_revoked": grants});
        store::audit::insert(c, &audit_event(now, "user.disabled", &u.id, detail))?;
        Ok((sessions, grants))
    })?;
    let was = if u.disabled { " (was already disabled)" } else { "" };
    writeln!(
        out,
        "disabled {}{was}: revoked {sessions} session(s) and {grants} grant(s); their access tokens no longer work",
        label(&u)
    )?;
    Ok(())
}

fn enable(
    conn: &mut DbConnection,
    key: &str,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let u = resolve(conn, key)?;
    if !u.disabled {
        writeln!(out, "{} is already enabled; nothing changed", label(&u))?;
        return Ok(());
    }
    store::transaction(conn, |c| -> Result<(), AdminError> {
        q::set_disabled(c, &u.id, false, now.timestamp())?;
        store::audit::insert(c, &audit_event(now, "user.enabled", &u.id, json!({"actor": ACTOR})))?;
        Ok(())
    })?;
    // Revoked sessions are not brought back: the user signs in again at their IdP.
    writeln!(out, "enabled {}; they can sign in again", label(&u))?;
    Ok(())
}

/// How a non-manual grant is described: where it comes from and where to change it.
fn provenance(r: &RoleRow) -> String {
    match (RoleSource::parse(&r.source), &r.source_detail) {
        (Some(RoleSource::Idp), Some(group)) => format!("the IdP (group {group:?})"),
        (Some(RoleSource::Idp), None) => "the IdP".into(),
        (Some(RoleSource::Default), _) => "the connection's default_roles".into(),
        _ => format!("source {:?}", r.source),
    }
}

fn role_add(
    conn: &mut DbConnection,
    key: &str,
    role: &str,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let u = resolve(conn, key)?;
    let role = valid_role(role)?;
    let held = users::roles(conn, &u.id)?;
    // The console's grant: the same checks, row and audit event (actor `cli`), and a concurrent
    // grant of the same role answered as a repeat.
    let granted =
        crate::console::users::add_role(conn, &u.id, &role, &Actor::cli(), &RequestMeta::default(), now)
            .map_err(|e| match e {
                crate::console::ConsoleError::Store(e) => AdminError::Query(e),
                e => AdminError::Refused(e.to_string()),
            })?;
    if !granted {
        writeln!(out, "{} already has role {role} (manual); nothing changed", label(&u))?;
        return Ok(());
    }
    writeln!(out, "granted role {role} (manual) to {}", label(&u))?;
    if let Some(other) = held.iter().find(|r| r.role == role) {
        // Worth saying: the manual grant is what keeps the role if the IdP side changes.
        writeln!(
            out,
            "note: they also hold it from {}; the manual grant stays if that goes away",
            provenance(other)
        )?;
    }
    Ok(())
}

fn role_remove(
    conn: &mut DbConnection,
    key: &str,
    role: &str,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let u = resolve(conn, key)?;
    let role = role.trim().to_string();
    let manual = RoleSource::Manual.as_str();
    let held = users::roles(conn, &u.id)?;
    let others: Vec<&RoleRow> = held.iter().filter(|r| r.role == role && r.source != manual).collect();
    if !held.iter().any(|r| r.role == role && r.source == manual) {
        return Err(match others.as_slice() {
            [] => AdminError::Refused(format!("{} does not have role {role}", label(&u))),
            _ => AdminError::Refused(format!(
                "{} has role {role} only from {}, which the broker keeps in sync at each login; \
                 change it there (IdP groups, role_mapping or default_roles), not here",
                label(&u),
                others.iter().map(|r| provenance(r)).collect::<Vec<_>>().join(" and ")
            )),
        });
    }
    store::transaction(conn, |c| -> Result<(), AdminError> {
        users::delete_role(c, &u.id, &role, manual)?;
        let detail = json!({"actor": ACTOR, "role": role, "source": manual});
        store::audit::insert(c, &audit_event(now, "role.revoked", &u.id, detail))?;
        Ok(())
    })?;
    writeln!(out, "removed role {role} (manual) from {}", label(&u))?;
    for r in others {
        writeln!(out, "note: they still hold {role} from {}", provenance(r))?;
    }
    Ok(())
}

fn delete(
    conn: &mut DbConnection,
    key: &str,
    yes: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let u = resolve(conn, key)?;
    if !yes && !confirm(&format!("Delete user {} and everything linked to it? [y/N] ", label(&u)))? {
        return Err(AdminError::Refused(format!(
            "not deleted: {} (confirm at the prompt, or pass --yes)",
            label(&u)
        )));
    }
    let [identities, roles, sessions, grants] =
        store::transaction(conn, |c| -> Result<[i64; 4], AdminError> {
            let counts = q::dependent_counts(c, &u.id)?;
            // The rest goes by ON DELETE CASCADE (SQLite: the pool turns foreign keys on).
            q::delete_user(c, &u.id)?;
            // The audit row keeps the email: afterwards it is the only record of who this id was.
            let detail = json!({"actor": ACTOR, "email": u.email});
            store::audit::insert(c, &audit_event(now, "user.deleted", &u.id, detail))?;
            Ok(counts)
        })?;
    writeln!(
        out,
        "deleted {} with {identities} identity(ies), {roles} role grant(s), {sessions} session(s) and {grants} grant(s)",
        label(&u)
    )?;
    Ok(())
}

/// Asks on the terminal; without one (scripts, pipes) the answer is no, so `--yes` is explicit.
fn confirm(prompt: &str) -> Result<bool, AdminError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

pub fn run_audit(
    conn: &mut DbConnection,
    args: &AuditArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let since = args.since.as_deref().map(|s| parse_since(s, now)).transpose()?;
    let user_id = match args.user.as_deref() {
        None => None,
        Some(key) => match resolve(conn, key) {
            Ok(u) => Some(u.id),
            // A deleted user's history stays in the log under their id.
            Err(AdminError::UnknownUser(_)) if q::audit_mentions_user(conn, key.trim())? => {
                Some(key.trim().to_string())
            }
            Err(e) => return Err(e),
        },
    };
    let filter = AuditFilter {
        since: since.map(|t| t.timestamp()),
        user_id,
        kind: args.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(str::to_string),
        reference: args
            .reference
            .as_deref()
            .map(|r| {
                crate::console::audit::parse_reference(r).map_err(|e| AdminError::Invalid(format!("--{e}")))
            })
            .transpose()?,
        limit: args.limit,
        ..AuditFilter::default()
    };
    let events = q::audit_events(conn, &filter)?;
    if args.json {
        for e in &events {
            writeln!(out, "{}", event_json(e))?;
        }
        return Ok(());
    }
    // Show who by email where the user still exists; ids are unwieldy in a table.
    let mut ids: Vec<String> = events.iter().filter_map(|e| e.user_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let emails: BTreeMap<String, String> =
        q::emails_of(conn, &ids)?.into_iter().filter_map(|(id, email)| email.map(|e| (id, e))).collect();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let who = e.user_id.as_ref().map(|id| emails.get(id).cloned().unwrap_or_else(|| id.clone()));
            vec![
                time(e.at),
                e.kind.clone(),
                opt(who.as_deref()),
                opt(e.connection_id.as_deref()),
                opt(e.client_id.as_deref()),
                opt(e.ip.as_deref()),
                opt(e.reason.as_deref()),
                opt(crate::console::audit::reference_of(e).as_deref()),
                opt(e.actor.as_deref()),
            ]
        })
        .collect();
    table(
        out,
        &["TIME", "KIND", "USER", "CONNECTION", "CLIENT", "IP", "REASON", "REFERENCE", "ACTOR"],
        &rows,
    )?;
    if rows.is_empty() {
        writeln!(out, "(no matching events)")?;
    }
    Ok(())
}

fn event_json(e: &AuditEvent) -> Value {
    crate::console::audit::event_json(e)
}

/// `--since`: an RFC 3339 time, a date (midnight UTC), or a duration back from `now`
/// (`<n>s|m|h|d|w`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, AdminError> {
    crate::console::audit::parse_time(s, now).map_err(|e| AdminError::Invalid(format!("--since {e}")))
}

fn table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    write_table(out, "", headers, rows)
}

fn indented_table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    write_table(out, "  ", headers, rows)
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn write_table(
    out: &mut dyn Write,
    indent: &str,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    // Cells hold IdP-supplied text: escape control characters so none can forge a row.
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| printable(c)).collect()).collect();
    let rows = &rows;
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> std::io::Result<()> {
        let mut text = String::from(indent);
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut headers.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// Control characters (newlines, ESC) escaped for terminal output.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_dates_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z").unwrap().with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).unwrap().to_rfc3339_opts(SecondsFormat::Secs, true);
        assert_eq!(at("24h"), "2026-12-02T12:00:00Z");
        assert_eq!(at("7d"), "2026-11-26T12:00:00Z");
        assert_eq!(at("30m"), "2026-12-03T11:30:00Z");
        assert_eq!(at("2w"), "2026-11-19T12:00:00Z");
        assert_eq!(at("2026-12-01T08:00:00+01:00"), "2026-12-01T07:00:00Z");
        assert_eq!(at("2026-12-01"), "2026-12-01T00:00:00Z");
        for bad in ["", "h", "24", "24y", "-1d", "yesterday", "99999999999999999999d"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_and_roles_are_checked() {
        assert!(looks_like_email("ada@example.com"));
        for bad in ["ada", "@example.com", "ada@localhost", "a da@example.com", "ada@example.com."] {
            assert!(!looks_like_email(bad), "{bad:?}");
        }
        assert_eq!(valid_role(" admin ").unwrap(), "admin");
        assert!(valid_role("").is_err());
        assert!(valid_role("two words").is_err());
    }

    #[test]
    fn tables_align() {
        let mut out = Vec::new();
        let rows = vec![vec!["a".to_string(), "long value".to_string(), "x".to_string()]];
        table(&mut out, &["ONE", "TWO", "THREE"], &rows).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "ONE  TWO         THREE\na    long value  x\n");
    }
}
