//! Ending a broker session (RP-initiated logout).

use super::{audit_row, FlowError, RequestMeta};
use crate::oidc::token_hash;
use crate::store::{self, grants, DbConnection};
use chrono::{DateTime, Utc};
use sha2::Digest;
use subtle::ConstantTimeEq;

/// The user of a live session cookie, if any.
pub fn session_user(
    conn: &mut DbConnection,
    cookie: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, FlowError> {
    Ok(grants::live_session(conn, &token_hash(cookie), now.timestamp(), i64::MIN)?.map(|s| s.user_id))
}

/// A logout confirmation token tied to the session cookie: a cross-site page cannot know it,
/// so it cannot log the user out with a forged form.
pub fn confirm_token(cookie: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("ssobroker-logout\0{cookie}").as_bytes()))
}

pub fn confirm_token_ok(cookie: &str, presented: &str) -> bool {
    bool::from(confirm_token(cookie).as_bytes().ct_eq(presented.as_bytes()))
}

/// Whether a logout request may end this session now. Only an id_token_hint from this very
/// session (its `sid`) or our own confirmation form does it (OIDC RP-initiated logout §2): an
/// old or leaked ID token, or a cross-site form, must not end a session by itself.
pub fn may_end_without_asking(
    cookie: &str,
    session_user: &str,
    hint: Option<&crate::oidc::logout::Hint>,
    confirmation: Option<&str>,
) -> bool {
    let this_sid = super::tokens::session_sid(&token_hash(cookie));
    let hinted = hint.is_some_and(|h| h.sub == session_user && h.sid.as_deref() == Some(this_sid.as_str()));
    hinted || confirmation.is_some_and(|t| confirm_token_ok(cookie, t))
}

/// Revokes the session and audits it; returns whether there was one to end.
pub fn end_session(
    conn: &mut DbConnection,
    cookie: &str,
    client_id: Option<&str>,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<bool, FlowError> {
    let id = token_hash(cookie);
    let Some(session) = grants::live_session(conn, &id, now.timestamp(), i64::MIN)? else { return Ok(false) };
    store::transaction(conn, |c| -> Result<(), FlowError> {
        grants::revoke_session(c, &id)?;
        // What the session handed out ends with it, except grants the app asked to keep
        // (`offline_access`).
        grants::revoke_session_grants(c, &id)?;
        store::audit::insert(
            c,
            &audit_row(
                now,
                "logout",
                meta,
                Some(&session.user_id),
                Some(&session.connection_id),
                client_id,
                None,
                serde_json::json!({}),
            ),
        )?;
        Ok(())
    })?;
    Ok(true)
}
