//! `ssobroker explain`: a captured SAMLResponse through the ACS checks and the JIT policy as a
//! dry run, so an admin can debug a mapping before going live. Reads, never writes.

use crate::config::{self, Connection};
use crate::flow::{plan_provisioning, FlowError};
use crate::oidc::UserClaims;
use crate::provisioning::{Decision, Grant, RoleSource};
use crate::saml::{self, ValidatedAssertion};
use crate::store::{self, users, DbConnection};
use anyhow::Context;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use std::path::Path;

/// Runs the dry run and prints the report; returns whether the login would succeed.
pub fn explain(
    config_path: &Path,
    connection_id: &str,
    at: Option<&str>,
    input: &Path,
) -> anyhow::Result<bool> {
    let cfg = config::load(config_path).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let connection = cfg.connection(connection_id).with_context(|| {
        let ids: Vec<&str> = cfg.connections.iter().map(|c| c.id.as_str()).collect();
        format!("no connection {connection_id:?} (configured: {})", ids.join(", "))
    })?;
    let now: DateTime<Utc> = match at {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--at {t:?}: not an RFC 3339 time"))?
            .into(),
        None => Utc::now(),
    };
    // A captured response is kilobytes; refuse anything far beyond the ACS cap before reading.
    let size = std::fs::metadata(input).with_context(|| format!("read {}", input.display()))?.len();
    let cap = (connection.sp.max_response_bytes as u64) * 2;
    if size > cap {
        anyhow::bail!("{}: {size} bytes is more than the ACS would accept ({cap})", input.display());
    }
    let raw = std::fs::read(input).with_context(|| format!("read {}", input.display()))?;
    // Read-only: no database is created and no migration applied.
    let pool = store::open_existing(&cfg.database)
        .context("database (explain reads an existing broker database)")?;
    let mut conn = pool.get().context("database")?;
    let mut connection = connection.clone();
    if connection.metadata_url.is_some() {
        // What the running brokers trust: the stored copy of the fetched metadata.
        let stored = store::idp_metadata::get(&mut conn, &connection.id)?
            .context("no stored copy of this connection's metadata_url yet (start the broker once)")?;
        connection.sp.idp = saml::parse_idp_metadata(&stored.xml)?;
    }
    let (report, ok) = report(&mut conn, &connection, &raw, now, at.is_some())?;
    print!("{report}");
    Ok(ok)
}

/// The whole report as text (separate from printing so tests can read it).
pub fn report(
    conn: &mut DbConnection,
    connection: &Connection,
    raw: &[u8],
    now: DateTime<Utc>,
    pinned: bool,
) -> anyhow::Result<(String, bool)> {
    let mut out = String::new();
    let sp = &connection.sp;
    writeln!(out, "connection   {} ({})", connection.id, connection.display_name)?;
    writeln!(out, "SP entity ID {}", sp.entity_id)?;
    writeln!(out, "ACS URL      {}", sp.acs_url)?;
    writeln!(out, "checked at   {}{}", now.to_rfc3339(), if pinned { " (pinned with --at)" } else { "" })?;
    writeln!(out)?;

    let text = String::from_utf8_lossy(raw);
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    // A file saved from the browser's form post is base64; one saved from a SAML tracer is XML.
    let result = if trimmed.starts_with('<') {
        saml::validate_response_xml(sp, trimmed, now)
    } else {
        saml::validate_post_response(sp, trimmed, now)
    };
    let assertion = match result {
        Ok(a) => a,
        Err(e) => {
            let reason = e.reason().map(|r| r.code()).unwrap_or("invalid");
            writeln!(out, "SAML checks  REFUSED: {reason}")?;
            writeln!(out, "             {e}")?;
            writeln!(
                out,
                "\nThe ACS would refuse this response (audit reason `{reason}`); nothing else was checked."
            )?;
            return Ok((out, false));
        }
    };
    writeln!(out, "SAML checks  passed")?;
    for check in [
        "well-formed XML, no DTD, depth and namespace bounds",
        "exactly one Assertion, no EncryptedAssertion",
        "signature policy (exc-c14n, one Reference to the signed element, allowed transforms)",
        "signature verified with the connection's pinned certificate(s); only signed content read",
        "algorithms allowed (SHA-256 or better unless allow_sha1)",
        "status Success; Issuer is the IdP; Audience is our entity ID",
        "Recipient and Destination are our ACS URL",
        "NotBefore / NotOnOrAfter within the clock skew",
    ] {
        writeln!(out, "  ok  {check}")?;
    }
    match &assertion.in_response_to {
        Some(id) => writeln!(
            out,
            "  --  InResponseTo {id}: a live login must match an open login transaction (not checked here)"
        )?,
        None => writeln!(
            out,
            "  --  no InResponseTo: IdP-initiated, accepted live only with allow_idp_initiated"
        )?,
    }
    writeln!(
        out,
        "  --  assertion ID {}: a live login records it once in the replay cache (not recorded here)",
        assertion.assertion_id
    )?;
    writeln!(out)?;
    assertion_section(&mut out, &assertion)?;

    let plan = match plan_provisioning(conn, connection, &assertion) {
        Ok(p) => p,
        Err(FlowError::Refused { reason, .. }) => {
            writeln!(out, "JIT policy   REFUSED: {reason}")?;
            writeln!(out, "\nThe login would be refused (audit reason `{reason}`).")?;
            return Ok((out, false));
        }
        Err(e) => return Err(anyhow::anyhow!("reading the database: {e}")),
    };
    let a = &plan.assessment;
    writeln!(out, "JIT policy")?;
    writeln!(out, "  identity     ({}, {})", connection.id, a.subject)?;
    let current: Vec<Grant> = match &plan.decision {
        Decision::Login { .. } | Decision::Link { .. } => {
            let user_id = match &plan.decision {
                Decision::Link { user_id, .. } => user_id.clone(),
                _ => plan.existing.as_ref().map(|e| e.user_id.clone()).unwrap_or_default(),
            };
            users::roles(conn, &user_id)?
                .into_iter()
                .filter_map(|r| {
                    RoleSource::parse(&r.source).map(|source| Grant {
                        role: r.role,
                        source,
                        detail: r.source_detail,
                    })
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let keep_non_idp =
        |grants: &[Grant]| grants.iter().filter(|g| g.source != RoleSource::Idp).cloned().collect::<Vec<_>>();
    let (sub, profile, grants) = match &plan.decision {
        Decision::Create { profile, grants } => {
            writeln!(out, "  decision     create a new user")?;
            ("(new user id)".to_string(), profile.clone(), grants.clone())
        }
        Decision::Link { user_id, profile, idp_roles } => {
            writeln!(out, "  decision     link this identity to existing user {user_id}")?;
            let mut g = keep_non_idp(&current);
            g.extend(idp_roles.clone().unwrap_or_else(|| {
                current.iter().filter(|g| g.source == RoleSource::Idp).cloned().collect()
            }));
            (user_id.clone(), profile.clone(), g)
        }
        Decision::Login { profile, idp_roles } => {
            let existing = plan.existing.as_ref().context("login decision without a user")?;
            writeln!(
                out,
                "  decision     known user {}: profile {}, IdP roles {}",
                existing.user_id,
                if profile.is_some() { "updated" } else { "unchanged" },
                if idp_roles.is_some() { "re-synced" } else { "unchanged" }
            )?;
            let mut g = keep_non_idp(&current);
            g.extend(idp_roles.clone().unwrap_or_else(|| existing.idp_roles.clone()));
            (existing.user_id.clone(), profile.clone().unwrap_or_else(|| existing.profile.clone()), g)
        }
        Decision::Deny(_) => unreachable_refusal()?,
    };
    if a.groups_overage {
        writeln!(
            out,
            "  warning      the IdP sent a groups link (overage): IdP-sourced roles are left as they are"
        )?;
    }
    writeln!(out, "  roles")?;
    let mut sorted = grants.clone();
    sorted.sort();
    for g in &sorted {
        let from = g.detail.as_deref().map(|d| format!(" (group {d:?})")).unwrap_or_default();
        writeln!(out, "    {:<20} {}{from}", g.role, g.source.as_str())?;
    }
    if sorted.is_empty() {
        writeln!(out, "    (none)")?;
    }
    let mut roles: Vec<String> = sorted.iter().map(|g| g.role.clone()).collect();
    roles.dedup();
    let name = profile.display_name.clone().or_else(|| match (&profile.given_name, &profile.family_name) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (g, f) => g.clone().or(f.clone()),
    });
    let claims = UserClaims {
        sub,
        email_verified: profile.email.as_ref().map(|_| a.email_authoritative),
        email: profile.email.clone(),
        name,
        given_name: profile.given_name.clone(),
        family_name: profile.family_name.clone(),
        roles,
        groups: profile.groups.clone(),
    };
    let mut json = serde_json::to_value(&claims)?;
    if let Some(map) = json.as_object_mut() {
        if let Some(acr) = &a.acr {
            map.insert("acr".into(), acr.clone().into());
        }
        if !a.amr.is_empty() {
            map.insert("amr".into(), a.amr.clone().into());
        }
    }
    writeln!(out, "\nID token claims (scope openid email profile)")?;
    writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    writeln!(out, "\nThe login would succeed. Nothing was written.")?;
    Ok((out, true))
}

fn unreachable_refusal<T>() -> anyhow::Result<T> {
    Err(anyhow::anyhow!("a refusal is reported before this point"))
}

fn assertion_section(out: &mut String, a: &ValidatedAssertion) -> std::fmt::Result {
    writeln!(out, "Assertion")?;
    writeln!(out, "  issuer       {}", a.issuer)?;
    writeln!(out, "  NameID       {} ({})", a.name_id, a.name_id_format.as_deref().unwrap_or("no format"))?;
    if let Some(c) = &a.authn_context_class {
        writeln!(out, "  authn class  {c}")?;
    }
    writeln!(out, "  valid until  {}", a.valid_until.to_rfc3339())?;
    writeln!(out, "  attributes")?;
    for attr in &a.attributes {
        let friendly = attr.friendly_name.as_deref().map(|f| format!(" ({f})")).unwrap_or_default();
        writeln!(out, "    {}{friendly} = {:?}", attr.name, attr.values)?;
    }
    if a.attributes.is_empty() {
        writeln!(out, "    (none)")?;
    }
    writeln!(out)
}
