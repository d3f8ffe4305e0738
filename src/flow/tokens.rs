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
    pub scope: String,
}

fn invalid_grant(description: &str) -> FlowError {
    FlowError::Oidc(oidc::OidcError::Protocol { code: "invalid_grant", description: description.into() })
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
/// when there is no usable session.
pub fn issue_code_for_session(
    conn: &mut DbConnection,
    cfg: &Config,
    session_cookie: &str,
    req: &ValidAuthorize,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<Option<String>, FlowError> {
    let ts = now.timestamp();
    let session_id = token_hash(session_cookie);
    let Some(session) = grants::live_session(conn, &session_id, ts)? else { return Ok(None) };
    // max_age: an authentication older than the app accepts sends the user back to the IdP.
    if req.max_age.is_some_and(|m| ts - session.auth_time > m) {
        return Ok(None);
    }
    let roles: Vec<String> = users::roles(conn, &session.user_id)?.into_iter().map(|r| r.role).collect();
    let allowed = cfg
        .client(&req.client_id)
        .map(|c| c.allowed_roles.is_empty() || c.allowed_roles.iter().any(|r| roles.contains(r)))
        .unwrap_or(false);
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
        store::audit::insert(
            conn,
            &audit_row(
                now,
                "token.failed",
                meta,
                user,
                None,
                Some(&client.client_id),
                Some(reason),
                serde_json::json!({}),
            ),
        )
    };
    let Some(grant) = grants::grant_by_code(conn, &token_hash(code))? else {
        fail(conn, None, "code_unknown")?;
        return Err(invalid_grant("unknown or expired code"));
    };
    if grant.code_used {
        store::transaction(conn, |c| -> Result<(), FlowError> {
            grants::revoke_grant(c, &grant.id)?;
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
            fail(c, Some(&grant.user_id), "code_reused")?;
            Ok(())
        })?;
        return Err(invalid_grant("code already used"));
    }
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
    let id_token = keys.sign_id_token(
        &IdTokenInput {
            issuer: &cfg.issuer,
            client_id: &client.client_id,
            user: &user,
            nonce: grant.nonce.as_deref(),
            auth_time: DateTime::from_timestamp(grant.auth_time, 0).unwrap_or(now),
            issued_at: now,
            expires_at: now + cfg.id_token_ttl,
            acr: grant.acr.as_deref(),
            amr: &amr,
        },
        &access_token,
        Some(code),
    )?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: cfg.access_token_ttl.num_seconds(),
        id_token,
        scope: grant.scope,
    })
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
