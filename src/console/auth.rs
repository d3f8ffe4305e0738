//! Who may use the admin console: local accounts (argon2id password hashes) and SSO admins
//! (users holding `admin_role`), sign-in throttling, console sessions and their CSRF tokens.
//!
//! Throttling counts recent `admin.login_failed` audit rows in the database, so it holds across
//! restarts and across several broker instances sharing one database. Within
//! `THROTTLE_WINDOW_SECS` a sign-in is refused (without checking the password) after
//! `MAX_FAILURES_ACCOUNT_IP` failures for the same account from the same IP, `MAX_FAILURES_IP`
//! failures from one IP for any accounts, or `MAX_FAILURES_ACCOUNT` failures for one account
//! from anywhere. Refusals for throttling are audited (`reason = throttled`) but not counted,
//! so a blocked client is let in again once its failures age out of the window. Concurrent
//! guesses racing the check can overshoot a limit by the number in flight; the per-address
//! rate limiter in front of `POST /admin/login` (`rate_limits.admin_login`) bounds that.

use super::{admin_event, Actor, ConsoleError};
use crate::config::Config;
use crate::flow::RequestMeta;
use crate::oidc::{random_token, token_hash};
use crate::store::admin_accounts::{self as store_admin, AdminAccount, AdminSession};
use crate::store::{self, users, DbConnection};
use chrono::{DateTime, Utc};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

pub const THROTTLE_WINDOW_SECS: i64 = 15 * 60;
pub const MAX_FAILURES_ACCOUNT_IP: i64 = 5;
pub const MAX_FAILURES_IP: i64 = 20;
pub const MAX_FAILURES_ACCOUNT: i64 = 50;
const THROTTLED: &str = "throttled";
/// Chosen passwords must be at least this long (generated ones are 24 characters).
pub const MIN_PASSWORD_LEN: usize = 12;

/// A console account name: 1-64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn valid_account_name(name: &str) -> Result<String, ConsoleError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        return Err(ConsoleError::Invalid(format!(
            "{name:?}: an admin name is 1-64 letters, digits, '.', '_', '-' or '@'"
        )));
    }
    Ok(name.to_string())
}

pub fn check_new_password(password: &str) -> Result<(), ConsoleError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ConsoleError::Invalid(format!(
            "a password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(ConsoleError::Invalid("a password must be at most 1024 bytes".into()));
    }
    Ok(())
}

/// 18 random bytes, 24 URL-safe characters (144 bits).
pub fn generate_password() -> String {
    random_token(18)
}

/// argon2id with the crate's default (OWASP) parameters. Slow by design: call it off the async
/// workers and without holding a database connection.
pub fn hash_password(password: &str) -> Result<String, ConsoleError> {
    crate::oidc::hash_client_secret(password).map_err(|e| ConsoleError::Internal(e.to_string()))
}

/// Checks a password against the account's hash. Without an account it still runs argon2
/// against a fixed hash, so the answer takes as long whether or not the name exists.
pub fn password_matches(stored: Option<&str>, presented: &str) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    match stored {
        Some(phc) => crate::oidc::verify_client_secret(phc, presented),
        None => {
            let dummy = DUMMY.get_or_init(|| hash_password("no such account").unwrap_or_default());
            let _ = crate::oidc::verify_client_secret(dummy, presented);
            false
        }
    }
}

pub fn create_account(
    conn: &mut DbConnection,
    name: &str,
    password_hash: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(), ConsoleError> {
    let name = valid_account_name(name)?;
    let exists = || {
        ConsoleError::Refused(format!("admin {name:?} already exists (use `ssobroker admin passwd {name}`)"))
    };
    store::transaction(conn, |c| -> Result<(), ConsoleError> {
        if store_admin::account(c, &name)?.is_some() {
            return Err(exists());
        }
        let ts = now.timestamp();
        store_admin::insert_account(
            c,
            &AdminAccount {
                name: name.clone(),
                password_hash: password_hash.to_string(),
                created_at: ts,
                updated_at: ts,
                last_login_at: None,
            },
        )?;
        let detail = serde_json::json!({"admin": name});
        store::audit::insert(
            c,
            &admin_event(now, "admin.created", actor, &RequestMeta::default(), None, None, detail),
        )?;
        Ok(())
    })
    .map_err(|e| match e {
        // Two runs creating the same name at once: the loser hears what a later run would.
        ConsoleError::Store(e) if store::is_unique_violation(&e) => exists(),
        e => e,
    })
}

/// Replaces an account's password and ends its console sessions.
pub fn set_account_password(
    conn: &mut DbConnection,
    name: &str,
    password_hash: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<usize, ConsoleError> {
    let name = valid_account_name(name)?;
    store::transaction(conn, |c| -> Result<usize, ConsoleError> {
        if store_admin::set_password(c, &name, password_hash, now.timestamp())? == 0 {
            return Err(ConsoleError::Refused(format!(
                "no admin {name:?} (create it with `ssobroker admin create {name}`)"
            )));
        }
        let ended = store_admin::revoke_sessions_of(c, Actor::local(&name).as_str())?;
        let detail = serde_json::json!({"admin": name, "sessions_ended": ended});
        let row =
            admin_event(now, "admin.password_changed", actor, &RequestMeta::default(), None, None, detail);
        store::audit::insert(c, &row)?;
        Ok(ended)
    })
}

pub fn accounts(conn: &mut DbConnection) -> Result<Vec<AdminAccount>, ConsoleError> {
    Ok(store_admin::accounts(conn)?)
}

/// The actor a sign-in attempt is recorded under. Names that are not valid account names are
/// cut and cleaned: they are attacker-chosen text headed for the audit log.
fn attempt_actor(name: &str) -> Actor {
    match valid_account_name(name) {
        Ok(n) => Actor::local(&n),
        Err(_) => {
            let cleaned: String =
                name.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect();
            Actor::local(&cleaned)
        }
    }
}

/// The first step of a local sign-in, before the (slow) password check.
#[derive(Debug)]
pub enum Prepared {
    /// Too many recent failures: refused and audited; the password was not looked at.
    Throttled,
    /// Check the password against this hash (None: no such account; check anyway).
    Verify { stored_hash: Option<String> },
}

pub fn prepare_sign_in(
    conn: &mut DbConnection,
    name: &str,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<Prepared, ConsoleError> {
    let actor = attempt_actor(name);
    let since = now.timestamp() - THROTTLE_WINDOW_SECS;
    let ip = meta.ip.as_deref();
    let pair = store_admin::recent_failures(conn, since, Some(actor.as_str()), ip, THROTTLED)?;
    let from_ip = match ip {
        Some(ip) => store_admin::recent_failures(conn, since, None, Some(ip), THROTTLED)?,
        None => 0,
    };
    let account = store_admin::recent_failures(conn, since, Some(actor.as_str()), None, THROTTLED)?;
    if pair >= MAX_FAILURES_ACCOUNT_IP || from_ip >= MAX_FAILURES_IP || account >= MAX_FAILURES_ACCOUNT {
        let detail = serde_json::json!({"failures_account_ip": pair, "failures_ip": from_ip, "failures_account": account});
        let mut row = admin_event(now, "admin.login_failed", &actor, meta, None, None, detail);
        row.reason = Some(THROTTLED.into());
        store::audit::insert(conn, &row)?;
        return Ok(Prepared::Throttled);
    }
    let stored_hash = match valid_account_name(name) {
        Ok(n) => store_admin::account(conn, &n)?.map(|a| a.password_hash),
        Err(_) => None,
    };
    Ok(Prepared::Verify { stored_hash })
}

/// The last step of a local sign-in: a console session when the password matched, else an
/// audited failure. Returns the new session's cookie value.
pub fn finish_sign_in(
    conn: &mut DbConnection,
    cfg: &Config,
    name: &str,
    account_exists: bool,
    matched: bool,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<Option<String>, ConsoleError> {
    let actor = attempt_actor(name);
    if !(matched && account_exists) {
        let reason = if account_exists { "bad_password" } else { "unknown_account" };
        let mut row = admin_event(now, "admin.login_failed", &actor, meta, None, None, serde_json::json!({}));
        row.reason = Some(reason.into());
        store::audit::insert(conn, &row)?;
        return Ok(None);
    }
    let name = valid_account_name(name)?;
    store::transaction(conn, |c| -> Result<Option<String>, ConsoleError> {
        store_admin::record_login(c, &name, now.timestamp())?;
        let cookie = new_session(c, cfg, &actor, None, now)?;
        let row = admin_event(
            now,
            "admin.login_succeeded",
            &actor,
            meta,
            None,
            None,
            serde_json::json!({"method": "password"}),
        );
        store::audit::insert(c, &row)?;
        Ok(Some(cookie))
    })
}

/// `sso`: the user and broker session of an SSO admin (none for a local account).
fn new_session(
    conn: &mut DbConnection,
    cfg: &Config,
    actor: &Actor,
    sso: Option<(&str, &str)>,
    now: DateTime<Utc>,
) -> Result<String, ConsoleError> {
    let cookie = random_token(32);
    let ts = now.timestamp();
    store_admin::insert_session(
        conn,
        &AdminSession {
            id: token_hash(&cookie),
            actor: actor.as_str().to_string(),
            user_id: sso.map(|(user, _)| user.to_string()),
            csrf_token: random_token(32),
            created_at: ts,
            expires_at: (now + cfg.admin_session_ttl).timestamp(),
            last_seen_at: ts,
            revoked: false,
            broker_session_id: sso.map(|(_, session)| session.to_string()),
        },
    )?;
    Ok(cookie)
}

/// What `/admin/sso` finds.
#[derive(Debug)]
pub enum SsoOutcome {
    /// `admin_role` is not set: only local accounts may sign in.
    NotConfigured,
    /// No live broker session: the user has to sign in at their IdP first.
    NoBrokerSession,
    /// Signed in at the IdP, but without `admin_role` (audited).
    NotAdmin,
    /// A console session for the user; the cookie value to set.
    SignedIn { cookie: String },
}

/// Turns a live broker session of a user holding `admin_role` into a console session.
pub fn sso_sign_in(
    conn: &mut DbConnection,
    cfg: &Config,
    broker_cookie: Option<&str>,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<SsoOutcome, ConsoleError> {
    let Some(admin_role) = cfg.admin_role.as_deref() else { return Ok(SsoOutcome::NotConfigured) };
    let Some(cookie) = broker_cookie else { return Ok(SsoOutcome::NoBrokerSession) };
    let idle_cutoff = (now - cfg.session_idle).timestamp();
    let Some(session) =
        crate::store::grants::live_session(conn, &token_hash(cookie), now.timestamp(), idle_cutoff)?
    else {
        return Ok(SsoOutcome::NoBrokerSession);
    };
    let actor = Actor::sso(&session.user_id);
    let holds = users::roles(conn, &session.user_id)?.iter().any(|r| r.role == admin_role);
    if !holds {
        let mut row = admin_event(
            now,
            "admin.login_failed",
            &actor,
            meta,
            Some(&session.user_id),
            None,
            serde_json::json!({}),
        );
        row.reason = Some("not_admin".into());
        row.connection_id = Some(session.connection_id.clone());
        store::audit::insert(conn, &row)?;
        return Ok(SsoOutcome::NotAdmin);
    }
    store::transaction(conn, |c| -> Result<SsoOutcome, ConsoleError> {
        let cookie = new_session(c, cfg, &actor, Some((&session.user_id, &session.id)), now)?;
        let mut row = admin_event(
            now,
            "admin.login_succeeded",
            &actor,
            meta,
            Some(&session.user_id),
            None,
            serde_json::json!({"method": "sso", "role": admin_role}),
        );
        row.connection_id = Some(session.connection_id.clone());
        store::audit::insert(c, &row)?;
        Ok(SsoOutcome::SignedIn { cookie })
    })
}

/// A signed-in admin, as a request sees them.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    /// The session's database key (hash of the cookie).
    pub id: String,
    pub actor: Actor,
    /// How the page names the admin.
    pub display: String,
    csrf: String,
    /// An SSO admin's user and the broker session the console session came from.
    sso: Option<(String, String)>,
}

impl ConsoleSession {
    /// The synchronizer token every state-changing form carries.
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    /// Whether a form's token is this session's (constant-time).
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes())))
    }
}

/// The console session behind a cookie, if it is live; marks it used (idle timeout). An SSO
/// admin's session also ends when their user is disabled or no longer holds `admin_role`, and
/// with the broker session it came from (a sign-out here or at the IdP, an admin ending the
/// user's sessions): the console is never a way to outlast the IdP's decision.
pub fn console_session(
    conn: &mut DbConnection,
    cfg: &Config,
    cookie: &str,
    now: DateTime<Utc>,
) -> Result<Option<ConsoleSession>, ConsoleError> {
    let id = token_hash(cookie);
    let idle_cutoff = (now - cfg.admin_session_idle).timestamp();
    let Some(s) = store_admin::live_session(conn, &id, now.timestamp(), idle_cutoff)? else {
        return Ok(None);
    };
    let display = match &s.user_id {
        None => s.actor.strip_prefix("local:").unwrap_or(&s.actor).to_string(),
        Some(user_id) => {
            let Some(role) = cfg.admin_role.as_deref() else { return Ok(None) };
            // The console has its own idle timeout; the broker session only has to be unrevoked
            // and unexpired.
            let Some(broker) = s.broker_session_id.as_deref() else { return Ok(None) };
            let origin = crate::store::grants::live_session(conn, broker, now.timestamp(), i64::MIN)?;
            if origin.is_none_or(|o| o.user_id != *user_id) {
                return Ok(None);
            }
            let user = users::by_id(conn, user_id)?;
            let Some(user) = user.filter(|u| !u.disabled) else { return Ok(None) };
            if !users::roles(conn, user_id)?.iter().any(|r| r.role == role) {
                return Ok(None);
            }
            user.email.unwrap_or_else(|| user_id.clone())
        }
    };
    store_admin::touch_session(conn, &id, now.timestamp())?;
    let actor = match &s.user_id {
        Some(u) => Actor::sso(u),
        None => Actor(s.actor.clone()),
    };
    let sso = s.user_id.clone().zip(s.broker_session_id.clone());
    Ok(Some(ConsoleSession { id: s.id, actor, display, csrf: s.csrf_token, sso }))
}

/// Ends the console session. Returns whether the broker session an SSO admin came through is
/// still live: signing out of the console alone would let `/admin/sso` open it again without
/// the IdP, so the admin is offered the single sign-on sign-out next.
pub fn sign_out(
    conn: &mut DbConnection,
    session: &ConsoleSession,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<bool, ConsoleError> {
    let user_id = session.sso.as_ref().map(|(user, _)| user.as_str());
    store::transaction(conn, |c| -> Result<(), ConsoleError> {
        store_admin::revoke_session(c, &session.id)?;
        store::audit::insert(
            c,
            &admin_event(now, "admin.logout", &session.actor, meta, user_id, None, serde_json::json!({})),
        )?;
        Ok(())
    })?;
    Ok(match &session.sso {
        Some((_, broker)) => {
            crate::store::grants::live_session(conn, broker, now.timestamp(), i64::MIN)?.is_some()
        }
        None => false,
    })
}

/// The sign-in form's anti-forgery check (double submit): the form's hidden token must equal
/// the value of the HttpOnly, SameSite=Strict cookie set with the form. A cross-site page can
/// neither read the cookie nor make the browser send it. Only a value shaped like the tokens we
/// issue (`random_token(32)`: 43 base64url characters) counts.
pub fn login_form_token_ok(cookie: Option<&str>, presented: Option<&str>) -> bool {
    match (cookie, presented) {
        (Some(c), Some(p)) if crate::oidc::is_token(c, 32) => bool::from(c.as_bytes().ct_eq(p.as_bytes())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_checked() {
        assert_eq!(valid_account_name(" alice ").ok().as_deref(), Some("alice"));
        for bad in ["", "a b", "x\ty", &"a".repeat(65), "ålice"] {
            assert!(valid_account_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough pw").is_ok());
        assert_eq!(generate_password().len(), 24);
    }

    #[test]
    fn password_checks() {
        let Ok(hash) = hash_password("correct horse battery") else { panic!("hash") };
        assert!(password_matches(Some(&hash), "correct horse battery"));
        assert!(!password_matches(Some(&hash), "wrong"));
        assert!(!password_matches(None, "correct horse battery"));
    }

    #[test]
    fn login_form_token() {
        let t = "a".repeat(43);
        assert!(login_form_token_ok(Some(&t), Some(&t)));
        assert!(!login_form_token_ok(Some(&t), Some("b")));
        assert!(!login_form_token_ok(None, Some(&t)));
        assert!(!login_form_token_ok(Some("short"), Some("short")));
        let real = crate::oidc::random_token(32);
        assert!(login_form_token_ok(Some(&real), Some(&real)));
        // Long enough but not a token of ours (a decoded cookie can hold a line break).
        let odd = format!("\n{}", "a".repeat(42));
        assert!(!login_form_token_ok(Some(&odd), Some(&odd)));
        let long = "a".repeat(64);
        assert!(!login_form_token_ok(Some(&long), Some(&long)));
    }
}
