//! `ssobroker keys …`: rotate the signing key and list the keys with their state.
//!
//! A rotation makes a new key current at once; the previous one stays in the JWKS until every
//! token it can have signed has expired. Running brokers pick the change up from the database on
//! their next key refresh (`KEY_REFRESH_SECONDS`), so no restart is needed. Nothing printed here
//! is secret: only kids, algorithms and times.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::flow::RequestMeta;
use crate::oidc::keys::{self, KeyLife, KeyState, SigningAlg, KEY_REFRESH_SECONDS};
use crate::store::grants::{self, SigningKeyRow};
use crate::store::{self, DbConnection, StoreError};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use clap::Subcommand;
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// `ssobroker keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key current; the previous one stays published until its tokens expire.
    Rotate {
        /// Algorithm of the new key: RS256, ES256 or EdDSA (default: `signing_alg` from the config).
        #[arg(long, value_name = "ALG")]
        alg: Option<SigningAlg>,
    },
    /// List the signing keys (current, published, retired; newest first): kid, algorithm, created, state.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("invalid configuration: {0}")]
    Config(crate::config::ConfigError),
    #[error("database: {0}")]
    Store(StoreError),
    #[error("database: {0}")]
    Query(diesel::result::Error),
    #[error("{0}")]
    Key(crate::oidc::OidcError),
    #[error("output: {0}")]
    Io(std::io::Error),
}

// Spelled out instead of `#[from]` so the error is not also reported as its own cause.
impl From<diesel::result::Error> for KeysError {
    fn from(e: diesel::result::Error) -> Self {
        KeysError::Query(e)
    }
}
impl From<StoreError> for KeysError {
    fn from(e: StoreError) -> Self {
        KeysError::Store(e)
    }
}
impl From<crate::oidc::OidcError> for KeysError {
    fn from(e: crate::oidc::OidcError) -> Self {
        KeysError::Key(e)
    }
}
impl From<std::io::Error> for KeysError {
    fn from(e: std::io::Error) -> Self {
        KeysError::Io(e)
    }
}

/// Runs a `keys` command against the database of the config file at `config`.
pub fn keys(config: &Path, cmd: KeysCommand) -> Result<(), KeysError> {
    let cfg = crate::config::load(config).map_err(KeysError::Config)?;
    // One connection: a command is a short sequence of statements; migrations run on connect.
    let pool = store::connect(&cfg.database, 1)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    let mut out = std::io::stdout().lock();
    match run_keys(&mut conn, &cfg, cmd, SystemClock.now(), &mut out) {
        // `ssobroker keys list | head` closes stdout early; that is not a failure.
        Err(KeysError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

pub fn run_keys(
    conn: &mut DbConnection,
    cfg: &Config,
    cmd: KeysCommand,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), KeysError> {
    match cmd {
        KeysCommand::Rotate { alg } => {
            let alg = alg.unwrap_or(cfg.signing_alg);
            let r = rotate(conn, cfg, alg, now)?;
            writeln!(out, "new current key: {} ({alg})", r.kid)?;
            for (kid, alg) in &r.rotated {
                writeln!(
                    out,
                    "previous key {kid} ({alg}): published until {}, then retired",
                    time(r.retired_at)
                )?;
            }
            writeln!(out, "running brokers switch within {KEY_REFRESH_SECONDS} s; no restart needed")?;
            if alg != cfg.signing_alg {
                writeln!(
                    out,
                    "note: the config says signing_alg = \"{}\"; set it to \"{alg}\" to match (brokers warn at start until then)",
                    cfg.signing_alg
                )?;
            }
            Ok(())
        }
        KeysCommand::List { json } => print_list(&list(conn, now)?, json, out),
    }
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The new current key.
    pub kid: String,
    /// The keys it replaced (kid, alg): published until `retired_at`.
    pub rotated: Vec<(String, String)>,
    pub retired_at: DateTime<Utc>,
}

/// Creates a key of `alg` and makes it current; the keys it replaces stay published until every
/// token they can have signed has expired. Records a `key.rotated` audit row in the same
/// transaction.
pub fn rotate(
    conn: &mut DbConnection,
    cfg: &Config,
    alg: SigningAlg,
    now: DateTime<Utc>,
) -> Result<Rotation, KeysError> {
    let key = keys::generate_key(alg)?;
    let retired_at = keys::retirement_time(now, cfg.id_token_ttl, cfg.access_token_ttl, clock_skew(cfg));
    let row = SigningKeyRow {
        kid: key.kid.clone(),
        alg: key.alg.clone(),
        private_pem: key.private_pem,
        created_at: now.timestamp(),
        active: true,
        rotated_at: None,
        retired_at: None,
    };
    store::transaction(conn, |c| -> Result<Rotation, KeysError> {
        let algs: Vec<(String, String)> = grants::all_keys(c)?.into_iter().map(|r| (r.kid, r.alg)).collect();
        let rotated_kids = grants::rotate_key(c, &row, now.timestamp(), retired_at.timestamp())?;
        let rotated: Vec<(String, String)> =
            algs.into_iter().filter(|(kid, _)| rotated_kids.contains(kid)).collect();
        let detail = json!({
            "kid": row.kid,
            "alg": row.alg,
            "rotated": rotated.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            "published_until": retired_at.timestamp(),
        });
        store::audit::insert(
            c,
            &crate::console::admin_event(
                now,
                "key.rotated",
                &crate::console::Actor::cli(),
                &RequestMeta::default(),
                None,
                None,
                detail,
            ),
        )?;
        Ok(Rotation { kid: row.kid.clone(), rotated, retired_at })
    })
}

/// The allowed clock difference: a relying party whose clock runs behind still accepts a token
/// this long after it expired, so the key must stay published that much longer. It is set once
/// for the deployment (`clock_skew_seconds`) and carried by every connection.
fn clock_skew(cfg: &Config) -> Duration {
    cfg.connections.iter().map(|c| c.sp.clock_skew).max().unwrap_or_else(|| {
        Duration::seconds(i64::try_from(crate::config::FileConfig::default().clock_skew_seconds).unwrap_or(0))
    })
}

/// One line of `keys list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub state: KeyState,
}

impl KeyInfo {
    fn state_text(&self) -> String {
        match self.state {
            KeyState::Current => "current".into(),
            KeyState::Published { until: Some(t) } => format!("published until {}", time(t)),
            KeyState::Published { until: None } => "published (until the next rotation)".into(),
            KeyState::Retired => "retired".into(),
        }
    }
}

/// Every key with its state at `now`: the current key, then the published ones, then the retired
/// ones, newest first within each.
pub fn list(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<Vec<KeyInfo>, KeysError> {
    let rows = grants::all_keys(conn)?;
    let at = |t: i64| DateTime::from_timestamp(t, 0);
    let lives: Vec<KeyLife> = rows
        .iter()
        .map(|r| KeyLife {
            active: r.active,
            rotated_at: r.rotated_at.and_then(at),
            retired_at: r.retired_at.and_then(at),
        })
        .collect();
    let mut infos: Vec<KeyInfo> = rows
        .into_iter()
        .zip(keys::key_states(&lives, now))
        .map(|(r, state)| KeyInfo {
            created_at: at(r.created_at).unwrap_or_default(),
            rotated_at: r.rotated_at.and_then(at),
            kid: r.kid,
            alg: r.alg,
            state,
        })
        .collect();
    // Current first, then published, then retired; newest first within each (rows come oldest
    // first, and a stable sort keeps that order among keys created in the same second).
    infos.reverse();
    infos.sort_by_key(|k| match k.state {
        KeyState::Current => 0,
        KeyState::Published { .. } => 1,
        KeyState::Retired => 2,
    });
    Ok(infos)
}

fn print_list(infos: &[KeyInfo], as_json: bool, out: &mut dyn Write) -> Result<(), KeysError> {
    if as_json {
        for k in infos {
            let (state, until) = match k.state {
                KeyState::Current => ("current", None),
                KeyState::Published { until } => ("published", until),
                KeyState::Retired => ("retired", None),
            };
            let line = json!({
                "kid": k.kid, "alg": k.alg, "created_at": k.created_at.timestamp(),
                "rotated_at": k.rotated_at.map(|t| t.timestamp()), "state": state,
                "published_until": until.map(|t| t.timestamp()),
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 4]> =
        infos.iter().map(|k| [k.kid.clone(), k.alg.clone(), time(k.created_at), k.state_text()]).collect();
    let headers = ["KID", "ALG", "CREATED", "STATE"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let [k, a, c, _] = widths;
    writeln!(out, "{:<k$}  {:<a$}  {:<c$}  {}", headers[0], headers[1], headers[2], headers[3])?;
    for [kid, alg, created, state] in &rows {
        writeln!(out, "{kid:<k$}  {alg:<a$}  {created:<c$}  {state}")?;
    }
    if rows.is_empty() {
        writeln!(out, "(no keys yet: the first start of the broker creates one)")?;
    }
    Ok(())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn list_table_aligns_and_names_states() {
        let t = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).single().expect("time");
        let infos = vec![
            KeyInfo {
                kid: "b".repeat(43),
                alg: "ES256".into(),
                created_at: t,
                rotated_at: None,
                state: KeyState::Current,
            },
            KeyInfo {
                kid: "a".repeat(43),
                alg: "RS256".into(),
                created_at: t - Duration::days(30),
                rotated_at: Some(t),
                state: KeyState::Published { until: Some(t + Duration::hours(1)) },
            },
            KeyInfo {
                kid: "old".into(),
                alg: "EdDSA".into(),
                created_at: t,
                rotated_at: Some(t),
                state: KeyState::Retired,
            },
        ];
        let mut out = Vec::new();
        print_list(&infos, false, &mut out).expect("print");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("KID "), "{text}");
        assert!(lines[1].ends_with("ES256  2030-01-02T03:04:05Z  current"), "{text}");
        assert!(
            lines[2].ends_with("RS256  2029-12-03T03:04:05Z  published until 2030-01-02T04:04:05Z"),
            "{text}"
        );
        assert!(lines[3].starts_with("old "), "{text}");
        assert!(lines[3].ends_with("retired"), "{text}");
        let col = lines[0].find("ALG").expect("ALG");
        assert!(
            lines.iter().skip(1).all(|l| l[col..].starts_with(|c: char| c.is_ascii_alphabetic())),
            "{text}"
        );

        let mut out = Vec::new();
        print_list(&infos, true, &mut out).expect("print");
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8(out).expect("utf8").lines().nth(1).expect("line"))
                .expect("json");
        assert_eq!(first["state"], "published");
        assert_eq!(first["published_until"], (t + Duration::hours(1)).timestamp());
        assert_eq!(first["rotated_at"], t.timestamp());
    }
}
