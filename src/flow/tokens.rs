//! Codes and tokens: SSO from a live broker session, the code exchange, and userinfo.

use super::{audit_row, finish::stored_profile, FlowError, RequestMeta};
use crate::config::Config;
use crate::oidc::{
    self, code_redirect, random_token, token_hash, AccessTokenClaims, Client, IdTokenInput, KeySet,
    StoredGrant, UserClaims, ValidAuthorize,
};
use crate::store::{self, grants, users, DbConnection};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub id_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

fn invalid_grant(description: &str) -> FlowError {
    FlowError::Oidc(oidc::OidcError::Protocol { code: "invalid_grant", description: description.into() })
}

/// The audit row of a refused token request.
fn token_failed(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    meta: &RequestMeta,
    client: &Client,
    user: Option<&str>,
    reason: &str,
    grant_type: &str,
) -> Result<(), diesel::result::Error> {
    let detail = serde_json::json!({ "grant_type": grant_type });
    store::audit::insert(
        conn,
        &audit_row(now, "token.failed", meta, user, None, Some(&client.client_id), Some(reason), detail),
    )
}

/// The claims of a user as they stand now (profile + role names).
fn user_claims(conn: &mut DbConnection, user_id: &str) -> Result<Option<UserClaims>, FlowError> {
    let Some(u) = users::by_id(conn, user_id)? else { return Ok(None) };
    if u.disabled {
        return Ok(None);
    }
    let mut roles: Vec<String> = users::roles(conn, user_id)?.into_iter().map(|r| r.role).collect();
    roles.dedup();
    let p = stored_profile(&u);
    let name = p.display_name.clone().or_else(|| match (&p.given_name, &p.family_name) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (Some(g), None) => Some(g.clone()),
        (None, Some(f)) => Some(f.clone()),
        (None, None) => None,
    });
    Ok(Some(UserClaims {
        sub: u.id,
        email_verified: p.email.as_ref().map(|_| u.email_verified),
        email: p.email,
        name,
        given_name: p.given_name,
        family_name: p.family_name,
        roles,
        groups: p.groups,
    }))
}

/// SSO: with a live broker session, a code is issued without a trip to the IdP. Returns None
/// when there is no usable session. `client` is the request's client as `/authorize` looked it
/// up for the validation (None: unknown, so access is denied).
pub fn issue_code_for_session(
    conn: &mut DbConnection,
    cfg: &Config,
    client: Option<&Client>,
    session_cookie: &str,
    req: &ValidAuthorize,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<Option<String>, FlowError> {
    let ts = now.timestamp();
    let session_id = token_hash(session_cookie);
    let idle_cutoff = (now - cfg.session_idle).timestamp();
    let Some(session) = grants::live_session(conn, &session_id, ts, idle_cutoff)? else { return Ok(None) };
    // max_age: an authentication older than the app accepts sends the user back to the IdP.
    if req.max_age.is_some_and(|m| ts - session.auth_time > m) {
        return Ok(None);
    }
    let roles: Vec<String> = users::roles(conn, &session.user_id)?.into_iter().map(|r| r.role).collect();
    let allowed = client.filter(|c| c.client_id == req.client_id).is_some_and(|c| c.admits(&roles));
    if !allowed {
        store::audit::insert(
            conn,
            &audit_row(
                now,
                "client_access_denied",
                meta,
                Some(&session.user_id),
                Some(&session.connection_id),
                Some(&req.client_id),
                Some("client_access_denied"),
                serde_json::json!({"sso": true}),
            ),
        )?;
        return Ok(Some(oidc::authorize_error_redirect(
            &req.redirect_uri,
            "access_denied",
            "your roles do not allow this application",
            req.state.as_deref(),
            &cfg.issuer,
        )));
    }
    let code = random_token(32);
    store::transaction(conn, |c| -> Result<(), FlowError> {
        grants::touch_session(c, &session_id, ts)?;
        grants::insert_grant(
            c,
            &grants::Grant {
                id: uuid::Uuid::new_v4().to_string(),
                code_hash: token_hash(&code),
                client_id: req.client_id.clone(),
                user_id: session.user_id.clone(),
                session_id: Some(session_id.clone()),
                redirect_uri: req.redirect_uri.clone(),
                scope: req.scope.clone(),
                nonce: req.nonce.clone(),
                code_challenge: req.code_challenge.clone(),
                auth_time: session.auth_time,
                created_at: ts,
                code_expires_at: (now + cfg.code_ttl).timestamp(),
                code_used: false,
                revoked: false,
                acr: session.acr.clone(),
                amr: session.amr.clone(),
            },
        )?;
        store::audit::insert(
            c,
            &audit_row(
                now,
                "login.succeeded",
                meta,
                Some(&session.user_id),
                Some(&session.connection_id),
                Some(&req.client_id),
                None,
                serde_json::json!({"sso": true}),
            ),
        )?;
        Ok(())
    })?;
    Ok(Some(code_redirect(&req.redirect_uri, &code, req.state.as_deref(), &cfg.issuer)))
}

/// The authorization_code grant. A reused code revokes the grant it was issued for, so
/// tokens minted from it stop working; a failed check writes only its audit row.
#[allow(clippy::too_many_arguments)]
pub fn exchange_code(
    conn: &mut DbConnection,
    cfg: &Config,
    keys: &KeySet,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<TokenResponse, FlowError> {
    let fail = |conn: &mut DbConnection, user: Option<&str>, reason: &str| {
        token_failed(conn, now, meta, client, user, reason, "authorization_code")
    };
    let Some(grant) = grants::grant_by_code(conn, &token_hash(code))? else {
        fail(conn, None, "code_unknown")?;
        return Err(invalid_grant("unknown or expired code"));
    };
    if grant.code_used {
        store::transaction(conn, |c| -> Result<(), FlowError> {
            grants::revoke_grant(c, &grant.id)?;
            store::refresh::revoke_by_grant(c, &grant.id)?;
            fail(c, Some(&grant.user_id), "code_reused")?;
            Ok(())
        })?;
        return Err(invalid_grant("code already used"));
    }
    let stored = StoredGrant {
        client_id: grant.client_id.clone(),
        redirect_uri: grant.redirect_uri.clone(),
        code_challenge: grant.code_challenge.clone(),
        expires_at: DateTime::from_timestamp(grant.code_expires_at, 0).unwrap_or_default(),
        used: grant.code_used,
    };
    if let Err(e) = oidc::check_code_grant(&stored, &client.client_id, redirect_uri, code_verifier, now) {
        fail(conn, Some(&grant.user_id), e.code())?;
        return Err(e.into());
    }
    let Some(user) = user_claims(conn, &grant.user_id)?.map(|u| u.scoped(&grant.scope)) else {
        fail(conn, Some(&grant.user_id), "user_disabled")?;
        return Err(invalid_grant("user unavailable"));
    };
    if grant.revoked || !grants::use_code(conn, &grant.id)? {
        // Lost a race with another exchange of the same code: that is a reuse too.
        store::transaction(conn, |c| -> Result<(), FlowError> {
            grants::revoke_grant(c, &grant.id)?;
            store::refresh::revoke_by_grant(c, &grant.id)?;
            fail(c, Some(&grant.user_id), "code_reused")?;
            Ok(())
        })?;
        return Err(invalid_grant("code already used"));
    }
    let wants_refresh = client.issue_refresh_token || grant.scope.split(' ').any(|s| s == "offline_access");
    let refresh_token = if wants_refresh {
        let token = random_token(32);
        store::refresh::insert(
            conn,
            &store::refresh::RefreshToken {
                id: token_hash(&token),
                family_id: uuid::Uuid::new_v4().to_string(),
                grant_id: grant.id.clone(),
                client_id: client.client_id.clone(),
                user_id: grant.user_id.clone(),
                session_id: grant.session_id.clone(),
                scope: grant.scope.clone(),
                created_at: now.timestamp(),
                expires_at: (now + cfg.refresh_token_ttl).timestamp(),
                used: false,
                revoked: false,
            },
        )?;
        Some(token)
    } else {
        None
    };
    mint(cfg, keys, client, &grant, &user, Some(code), refresh_token, now)
}

/// Signs the access and ID tokens for a grant (code exchange or refresh).
#[allow(clippy::too_many_arguments)]
fn mint(
    cfg: &Config,
    keys: &KeySet,
    client: &Client,
    grant: &grants::Grant,
    user: &UserClaims,
    code: Option<&str>,
    refresh_token: Option<String>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, FlowError> {
    let access_claims = AccessTokenClaims {
        iss: cfg.issuer.clone(),
        sub: user.sub.clone(),
        aud: client.client_id.clone(),
        client_id: client.client_id.clone(),
        scope: grant.scope.clone(),
        exp: now + cfg.access_token_ttl,
        iat: now,
        jti: random_token(16),
        grant_id: grant.id.clone(),
    };
    let access_token = keys.sign_access_token(&access_claims)?;
    let amr: Vec<String> = serde_json::from_str(&grant.amr).unwrap_or_default();
    let sid = grant.session_id.as_deref().map(session_sid);
    let id_token = keys.sign_id_token(
        &IdTokenInput {
            issuer: &cfg.issuer,
            client_id: &client.client_id,
            user,
            // The nonce belongs to the authentication request; refreshed ID tokens omit it.
            nonce: code.and(grant.nonce.as_deref()),
            auth_time: DateTime::from_timestamp(grant.auth_time, 0).unwrap_or(now),
            issued_at: now,
            expires_at: now + cfg.id_token_ttl,
            acr: grant.acr.as_deref(),
            amr: &amr,
            sid: sid.as_deref(),
        },
        &access_token,
        code,
    )?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: cfg.access_token_ttl.num_seconds(),
        id_token,
        refresh_token,
        scope: grant.scope.clone(),
    })
}

/// The refresh_token grant: rotates the token; a token presented twice means it leaked, so
/// the whole family and the grant behind it are revoked.
pub fn refresh(
    conn: &mut DbConnection,
    cfg: &Config,
    keys: &KeySet,
    client: &Client,
    token: &str,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<TokenResponse, FlowError> {
    let ts = now.timestamp();
    let fail = |conn: &mut DbConnection, user: Option<&str>, reason: &str| {
        token_failed(conn, now, meta, client, user, reason, "refresh_token")
    };
    let Some(row) = store::refresh::by_id(conn, &token_hash(token))? else {
        fail(conn, None, "refresh_unknown")?;
        return Err(invalid_grant("unknown refresh token"));
    };
    if row.client_id != client.client_id {
        fail(conn, Some(&row.user_id), "refresh_wrong_client")?;
        return Err(invalid_grant("refresh token was issued to another client"));
    }
    let kill_family = |conn: &mut DbConnection, reason: &str| -> Result<(), FlowError> {
        store::transaction(conn, |c| -> Result<(), FlowError> {
            store::refresh::revoke_family(c, &row.family_id)?;
            grants::revoke_grant(c, &row.grant_id)?;
            fail(c, Some(&row.user_id), reason)?;
            Ok(())
        })
    };
    if row.used {
        kill_family(conn, "refresh_replayed")?;
        return Err(invalid_grant("refresh token already used"));
    }
    if row.revoked || row.expires_at <= ts {
        fail(conn, Some(&row.user_id), "refresh_inactive")?;
        return Err(invalid_grant("refresh token revoked or expired"));
    }
    let grant = grants::grant_by_id(conn, &row.grant_id)?.filter(|g| !g.revoked);
    let user = user_claims(conn, &row.user_id)?;
    let (Some(grant), Some(user)) = (grant, user) else {
        fail(conn, Some(&row.user_id), "refresh_grant_revoked")?;
        return Err(invalid_grant("the grant behind this token was revoked"));
    };
    // Without offline_access a refresh token lives only as long as the browser session.
    if !row.scope.split(' ').any(|s| s == "offline_access") {
        let idle_cutoff = (now - cfg.session_idle).timestamp();
        let live = match &row.session_id {
            Some(sid) => grants::live_session(conn, sid, ts, idle_cutoff)?.is_some(),
            None => false,
        };
        if !live {
            fail(conn, Some(&row.user_id), "refresh_session_ended")?;
            return Err(invalid_grant("the session this token belongs to has ended"));
        }
    }
    // Roles can change after the token was issued: the client's access rule applies again.
    if !client.admits(&user.roles) {
        kill_family(conn, "client_access_denied")?;
        return Err(invalid_grant("your roles no longer allow this application"));
    }
    let next = random_token(32);
    let rotated = store::transaction(conn, |c| -> Result<bool, FlowError> {
        if !store::refresh::mark_used(c, &row.id)? {
            return Ok(false);
        }
        store::refresh::insert(
            c,
            &store::refresh::RefreshToken {
                id: token_hash(&next),
                created_at: ts,
                used: false,
                revoked: false,
                ..row.clone()
            },
        )?;
        Ok(true)
    })?;
    if !rotated {
        // Two requests raced with the same token: one of them is not the client.
        kill_family(conn, "refresh_replayed")?;
        return Err(invalid_grant("refresh token already used"));
    }
    let user = user.scoped(&grant.scope);
    mint(cfg, keys, client, &grant, &user, None, Some(next), now)
}

/// RFC 7009 revocation. Unknown tokens and tokens of other clients are ignored (the answer is
/// the same either way, so it reveals nothing).
pub fn revoke(
    conn: &mut DbConnection,
    cfg: &Config,
    keys: &KeySet,
    client: &Client,
    token: &str,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<(), FlowError> {
    let audit = |conn: &mut DbConnection, user: &str, what: &str| {
        store::audit::insert(
            conn,
            &audit_row(
                now,
                "token.revoked",
                meta,
                Some(user),
                None,
                Some(&client.client_id),
                None,
                serde_json::json!({"token": what}),
            ),
        )
    };
    if let Some(row) = store::refresh::by_id(conn, &token_hash(token))? {
        if row.client_id == client.client_id {
            store::transaction(conn, |c| -> Result<(), FlowError> {
                store::refresh::revoke_family(c, &row.family_id)?;
                grants::revoke_grant(c, &row.grant_id)?;
                audit(c, &row.user_id, "refresh_token")?;
                Ok(())
            })?;
        }
        return Ok(());
    }
    if let Ok(claims) = keys.verify_access_token(token, &cfg.issuer, now) {
        if claims.client_id == client.client_id {
            store::transaction(conn, |c| -> Result<(), FlowError> {
                grants::revoke_grant(c, &claims.grant_id)?;
                store::refresh::revoke_by_grant(c, &claims.grant_id)?;
                audit(c, &claims.sub, "access_token")?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// RFC 7662 introspection for an authenticated client. Access tokens of any client (the caller
/// may be a resource server); refresh tokens only the caller's own.
pub fn introspect(
    conn: &mut DbConnection,
    cfg: &Config,
    keys: &KeySet,
    client: &Client,
    token: &str,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, FlowError> {
    let inactive = serde_json::json!({"active": false});
    if let Ok(claims) = keys.verify_access_token(token, &cfg.issuer, now) {
        let live = grants::grant_by_id(conn, &claims.grant_id)?
            .is_some_and(|g| !g.revoked && g.user_id == claims.sub)
            && user_claims(conn, &claims.sub)?.is_some();
        if !live {
            return Ok(inactive);
        }
        return Ok(serde_json::json!({
            "active": true, "token_type": "Bearer", "scope": claims.scope, "client_id": claims.client_id,
            "sub": claims.sub, "aud": claims.aud, "iss": claims.iss,
            "exp": claims.exp.timestamp(), "iat": claims.iat.timestamp(),
        }));
    }
    if let Some(row) = store::refresh::by_id(conn, &token_hash(token))? {
        let live = row.client_id == client.client_id
            && !row.used
            && !row.revoked
            && row.expires_at > now.timestamp()
            && grants::grant_by_id(conn, &row.grant_id)?.is_some_and(|g| !g.revoked)
            && user_claims(conn, &row.user_id)?.is_some();
        if live {
            return Ok(serde_json::json!({
                "active": true, "token_type": "refresh_token", "scope": row.scope, "client_id": row.client_id,
                "sub": row.user_id, "iss": cfg.issuer, "exp": row.expires_at, "iat": row.created_at,
            }));
        }
    }
    Ok(inactive)
}

/// /userinfo: the claims behind a valid, unrevoked access token of an enabled user.
pub fn userinfo(
    conn: &mut DbConnection,
    cfg: &Config,
    keys: &KeySet,
    bearer: &str,
    now: DateTime<Utc>,
) -> Result<UserClaims, FlowError> {
    let invalid = || {
        FlowError::Oidc(oidc::OidcError::Protocol {
            code: "invalid_token",
            description: "token is not valid".into(),
        })
    };
    let claims = keys.verify_access_token(bearer, &cfg.issuer, now).map_err(|_| invalid())?;
    let Some(grant) = grants::grant_by_id(conn, &claims.grant_id)? else { return Err(invalid()) };
    if grant.revoked || grant.user_id != claims.sub {
        return Err(invalid());
    }
    Ok(user_claims(conn, &claims.sub)?.ok_or_else(invalid)?.scoped(&grant.scope))
}

/// The `sid` claim for a session: a hash of its (already hashed) key.
pub fn session_sid(session_id: &str) -> String {
    token_hash(&format!("sid:{session_id}"))
}
