//! Ending a broker session: RP-initiated logout, and single logout with the IdP (our
//! LogoutRequest when a session ends here, the IdP's LogoutRequest ending sessions here).

use super::{audit_row, FlowError, RequestMeta};
use crate::config::Connection;
use crate::oidc::token_hash;
use crate::saml::{LogoutSubject, Outbound, VerifiedLogoutRequest, VerifiedLogoutResponse};
use crate::store::{self, grants, logouts, DbConnection};
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

/// A session that just ended, with what single logout needs to end the IdP's session too.
#[derive(Debug, Clone)]
pub struct EndedSession {
    pub user_id: String,
    pub connection_id: String,
    /// None for sessions from before single logout was recorded.
    pub subject: Option<LogoutSubject>,
}

/// Revokes the session and audits it; returns the session when there was one to end.
pub fn end_session(
    conn: &mut DbConnection,
    cookie: &str,
    client_id: Option<&str>,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<Option<EndedSession>, FlowError> {
    let id = token_hash(cookie);
    let Some(session) = grants::live_session(conn, &id, now.timestamp(), i64::MIN)? else { return Ok(None) };
    // Two sign-outs of one session at once (a double click, a retry): only the one that revoked
    // it audits and goes on to the IdP, so the IdP gets one LogoutRequest.
    let ended = store::transaction(conn, |c| -> Result<bool, FlowError> {
        if !revoke(c, &id)? {
            return Ok(false);
        }
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
        Ok(true)
    })?;
    if !ended {
        return Ok(None);
    }
    let subject = session.saml_name_id.clone().map(|name_id| LogoutSubject {
        name_id,
        name_id_format: session.saml_name_id_format.clone(),
        session_index: session.saml_session_index.clone(),
        name_qualifier: session.saml_name_qualifier.clone(),
        sp_name_qualifier: session.saml_sp_name_qualifier.clone(),
    });
    Ok(Some(EndedSession { user_id: session.user_id, connection_id: session.connection_id, subject }))
}

/// Ends one session and what it handed out, except grants the app asked to keep
/// (`offline_access`); false when it had ended already.
fn revoke(conn: &mut DbConnection, session_id: &str) -> Result<bool, FlowError> {
    let ended = grants::revoke_session(conn, session_id)? > 0;
    grants::revoke_session_grants(conn, session_id)?;
    Ok(ended)
}

/// How long the IdP has to answer our LogoutRequest.
const PENDING_LOGOUT_TTL_SECONDS: i64 = 600;

/// Single logout at the IdP for a session that just ended here: our signed LogoutRequest, and a
/// pending row so that the IdP's answer (at whichever instance it arrives) finds where the
/// browser goes next (`redirect_to`, already validated; none: our "signed out" page). None when
/// the connection has no single logout or the session no NameID.
pub fn start_idp_logout(
    conn: &mut DbConnection,
    connection: &Connection,
    ended: &EndedSession,
    redirect_to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Outbound>, FlowError> {
    let (Some(_), Some(subject)) = (connection.slo_to_idp(), ended.subject.as_ref()) else { return Ok(None) };
    if connection.id != ended.connection_id {
        return Ok(None);
    }
    let out = crate::saml::logout_request(&connection.sp, subject, None, now)?;
    logouts::insert(
        conn,
        &logouts::PendingLogout {
            request_id: out.request_id.clone(),
            connection_id: connection.id.clone(),
            user_id: ended.user_id.clone(),
            redirect_to: redirect_to.map(str::to_string),
            created_at: now.timestamp(),
            expires_at: now.timestamp() + PENDING_LOGOUT_TTL_SECONDS,
        },
    )?;
    Ok(Some(out.outbound))
}

/// Where the browser goes after the IdP answered our LogoutRequest.
#[derive(Debug, Clone)]
pub struct IdpLogoutAnswer {
    pub redirect_to: Option<String>,
    /// The IdP ended its session (Success without PartialLogout).
    pub idp_signed_out: bool,
}

/// The IdP's (verified) LogoutResponse: consumes our pending LogoutRequest, once.
pub fn finish_idp_logout(
    conn: &mut DbConnection,
    connection: &Connection,
    response: &VerifiedLogoutResponse,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<IdpLogoutAnswer, FlowError> {
    let Some(pending) = logouts::consume(conn, &connection.id, &response.in_response_to, now.timestamp())?
    else {
        return Err(FlowError::refused(
            "logout_response_unknown",
            "no pending LogoutRequest of this connection has this InResponseTo (unknown, answered or expired)",
        ));
    };
    let idp_signed_out = response.succeeded();
    store::audit::insert(
        conn,
        &audit_row(
            now,
            "logout.idp_answered",
            meta,
            Some(&pending.user_id),
            Some(&connection.id),
            None,
            (!idp_signed_out).then_some("idp_logout_incomplete"),
            serde_json::json!({
                "status": response.status,
                "sub_status": response.sub_status,
                "request_id": pending.request_id,
            }),
        ),
    )?;
    Ok(IdpLogoutAnswer { redirect_to: pending.redirect_to, idp_signed_out })
}

/// The IdP's (verified) LogoutRequest: ends the sessions it names, once per request ID. Returns
/// how many sessions ended (none is still a success for the IdP: they may have ended here
/// already).
pub fn idp_initiated_logout(
    conn: &mut DbConnection,
    connection: &Connection,
    request: &VerifiedLogoutRequest,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<usize, FlowError> {
    store::transaction(conn, |c| -> Result<usize, FlowError> {
        // The replay cache is shared with assertions; the prefix keeps the two kinds of ID apart.
        let replay_key = format!("LogoutRequest:{}", request.id);
        if let Err(e) =
            store::logins::record_assertion(c, &connection.id, &replay_key, request.replay_until.timestamp())
        {
            return Err(if store::is_unique_violation(&e) {
                FlowError::refused("logout_request_replayed", "LogoutRequest ID seen before")
            } else {
                FlowError::Store(e)
            });
        }
        let sessions = logouts::sessions_for_subject(
            c,
            &connection.id,
            &request.name_id,
            &request.session_indexes,
            now.timestamp(),
        )?;
        for s in &sessions {
            revoke(c, &s.id)?;
        }
        let mut users: Vec<&str> = sessions.iter().map(|s| s.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        store::audit::insert(
            c,
            &audit_row(
                now,
                "logout.idp_initiated",
                meta,
                users.first().copied(),
                Some(&connection.id),
                None,
                None,
                serde_json::json!({
                    "sessions_ended": sessions.len(),
                    "request_id": request.id,
                    "session_indexes": request.session_indexes.len(),
                }),
            ),
        )?;
        Ok(sessions.len())
    })
}

/// Audits a refused logout message (`logout.refused`, the reason code and the reference shown
/// to the user).
pub fn audit_refused(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    meta: &RequestMeta,
    connection_id: &str,
    err: &FlowError,
    reference: &str,
) -> Result<(), diesel::result::Error> {
    let row = audit_row(
        now,
        "logout.refused",
        meta,
        None,
        Some(connection_id),
        None,
        Some(super::failure_reason(err)),
        serde_json::json!({ "reference": reference }),
    );
    store::audit::insert(conn, &row)
}
