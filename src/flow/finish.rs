//! Finishing a login after the SAML room accepted the response: one transaction that consumes
//! the login transaction, records the assertion ID, provisions the user, and issues a session
//! and a code. Any refusal rolls all of it back.

use super::{audit_row, FlowError, RequestMeta};
use crate::config::{Config, Connection};
use crate::oidc::{code_redirect, random_token, token_hash};
use crate::provisioning::{
    self, Decision, EmailOwner, Existing, Grant, Profile, RoleSource, Upstream, UpstreamAttribute,
};
use crate::saml::ValidatedAssertion;
use crate::store::{self, grants, users, DbConnection};
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

pub struct FinishInput<'a> {
    pub cfg: &'a Config,
    pub connection: &'a Connection,
    pub assertion: &'a ValidatedAssertion,
    pub relay_state: Option<&'a str>,
    /// The browser cookie sent with the ACS post, if any.
    pub browser: Option<&'a str>,
    pub meta: &'a RequestMeta,
    pub now: DateTime<Utc>,
}

#[derive(Debug)]
/// `created`: this login provisioned the user (JIT), for the metrics.
pub enum LoginOutcome {
    /// Back to the app with a code; `session` is the new broker session cookie value.
    Code { redirect: String, session: String, user_id: String, created: bool },
    /// The user exists but the client's `allowed_roles` excludes them.
    AccessDenied { redirect: String, session: String, user_id: String, created: bool },
    /// Signed in to the broker only, no app: an IdP-initiated login (allowed on this
    /// connection) or a login the broker started for its own pages. `return_to` is a local
    /// path the broker chose (the portal `/` or `/admin/sso`), never input from the request.
    Portal { session: String, user_id: String, return_to: String, created: bool },
}

/// Runs the whole login; a lost race on first login (unique violation) is retried so
/// simultaneous first logins end up as one user and no error page.
pub fn finish_login(conn: &mut DbConnection, input: &FinishInput<'_>) -> Result<LoginOutcome, FlowError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store::transaction(conn, |c| finish_once(c, input)) {
            Err(FlowError::Store(e)) if attempt < 4 && store::is_unique_violation(&e) => continue,
            Err(FlowError::Race) if attempt < 4 => continue,
            other => return other,
        }
    }
}

fn finish_once(conn: &mut DbConnection, input: &FinishInput<'_>) -> Result<LoginOutcome, FlowError> {
    let FinishInput { cfg, connection, assertion, relay_state, browser, meta, now } = *input;
    let ts = now.timestamp();

    // A write first: on SQLite this takes the write lock at once, so the transaction never has
    // to upgrade a read lock (which fails instead of waiting). A duplicate is a replay.
    if let Err(e) = store::logins::record_assertion(
        conn,
        &connection.id,
        &assertion.assertion_id,
        assertion.valid_until.timestamp(),
    ) {
        return Err(if store::is_unique_violation(&e) {
            FlowError::refused("assertion_replayed", "assertion ID seen before")
        } else {
            FlowError::Store(e)
        });
    }

    let txn = match &assertion.in_response_to {
        Some(request_id) => {
            let Some(txn) = store::logins::consume(conn, &connection.id, request_id)? else {
                return Err(FlowError::refused(
                    "in_response_to_unknown",
                    "no open login for this InResponseTo",
                ));
            };
            let client_id = Some(txn.client_id.clone()).filter(|c| c != super::BROKER_CLIENT);
            let refuse = |reason, detail: &str| FlowError::Refused {
                reason,
                detail: detail.into(),
                client_id: client_id.clone(),
                user_id: None,
            };
            if txn.expires_at <= ts {
                return Err(refuse("login_expired", "login transaction expired"));
            }
            // The RelayState must be the handle this browser was given for this request, so a
            // response cannot be carried into someone else's login.
            let relay_ok = relay_state
                .map(|r| bool::from(token_hash(r).as_bytes().ct_eq(txn.id.as_bytes())))
                .unwrap_or(false);
            if !relay_ok {
                return Err(refuse("relay_state_mismatch", "RelayState does not belong to this request"));
            }
            // Login CSRF: a response the attacker obtained for their own account must not sign
            // the victim's browser in, so the post has to come from the browser that started it.
            if cfg.bind_login_to_browser {
                let same = match (&txn.browser_binding, browser) {
                    (Some(bound), Some(b)) => bool::from(token_hash(b).as_bytes().ct_eq(bound.as_bytes())),
                    _ => false,
                };
                if !same {
                    return Err(refuse("browser_mismatch", "the login was started in another browser"));
                }
            }
            Some(txn)
        }
        None if connection.allow_idp_initiated => None,
        None => return Err(FlowError::refused("unsolicited_response", "IdP-initiated login not allowed")),
    };
    let client_id = txn.as_ref().map(|t| t.client_id.clone()).filter(|c| c != super::BROKER_CLIENT);
    let with_client = |e: FlowError| match e {
        FlowError::Refused { reason, detail, user_id, .. } => {
            FlowError::Refused { reason, detail, client_id: client_id.clone(), user_id }
        }
        other => other,
    };

    let prov =
        provision(conn, connection, assertion, meta, now, client_id.as_deref()).map_err(with_client)?;
    let user_id = prov.user_id.clone();
    let amr = serde_json::to_string(&prov.amr).unwrap_or_else(|_| "[]".into());
    let role_rows = users::roles(conn, &user_id)?;
    let mut roles: Vec<String> = role_rows.into_iter().map(|r| r.role).collect();
    roles.dedup();

    let session = random_token(32);
    grants::insert_session(
        conn,
        &grants::Session {
            id: token_hash(&session),
            user_id: user_id.clone(),
            connection_id: connection.id.clone(),
            auth_time: assertion.authn_instant.unwrap_or(now).timestamp().min(ts),
            created_at: ts,
            expires_at: (now + cfg.session_ttl).timestamp(),
            revoked: false,
            acr: prov.acr.clone(),
            amr: amr.clone(),
            last_seen_at: ts,
            saml_name_id: Some(assertion.name_id.clone()),
            saml_name_id_format: assertion.name_id_format.clone(),
            saml_session_index: assertion.session_index.clone(),
            saml_name_qualifier: assertion.name_qualifier.clone(),
            saml_sp_name_qualifier: assertion.sp_name_qualifier.clone(),
        },
    )?;

    // No app to return to: the portal after an IdP-initiated login, or the broker page that
    // started this login (the transaction's redirect_uri, written by `start_broker_login`).
    let own_page = match &txn {
        None => Some((idp_initiated_landing(conn, cfg, connection, &roles)?, true)),
        Some(t) if t.client_id == super::BROKER_CLIENT => Some((t.redirect_uri.clone(), false)),
        Some(_) => None,
    };
    if let Some((return_to, idp_initiated)) = own_page {
        store::audit::insert(
            conn,
            &audit_row(
                now,
                "login.succeeded",
                meta,
                Some(&user_id),
                Some(&connection.id),
                None,
                None,
                serde_json::json!({"idp_initiated": idp_initiated, "roles": roles}),
            ),
        )?;
        return Ok(LoginOutcome::Portal { session, user_id, return_to, created: prov.created });
    }
    let Some(txn) = txn else {
        return Err(FlowError::refused("unsolicited_response", "no login transaction"));
    };

    let allowed = super::clients::lookup(conn, cfg, &txn.client_id)?.is_some_and(|c| c.admits(&roles));
    if !allowed {
        store::audit::insert(
            conn,
            &audit_row(
                now,
                "client_access_denied",
                meta,
                Some(&user_id),
                Some(&connection.id),
                Some(&txn.client_id),
                Some("client_access_denied"),
                serde_json::json!({"roles": roles}),
            ),
        )?;
        let redirect = crate::oidc::authorize_error_redirect(
            &txn.redirect_uri,
            "access_denied",
            "your roles do not allow this application",
            txn.state.as_deref(),
            &cfg.issuer,
        );
        return Ok(LoginOutcome::AccessDenied { redirect, session, user_id, created: prov.created });
    }

    let code = random_token(32);
    grants::insert_grant(
        conn,
        &grants::Grant {
            id: uuid::Uuid::new_v4().to_string(),
            code_hash: token_hash(&code),
            client_id: txn.client_id.clone(),
            user_id: user_id.clone(),
            session_id: Some(token_hash(&session)),
            redirect_uri: txn.redirect_uri.clone(),
            scope: txn.scope.clone(),
            nonce: txn.nonce.clone(),
            code_challenge: txn.code_challenge.clone(),
            auth_time: assertion.authn_instant.unwrap_or(now).timestamp().min(ts),
            created_at: ts,
            code_expires_at: (now + cfg.code_ttl).timestamp(),
            code_used: false,
            revoked: false,
            acr: prov.acr.clone(),
            amr: amr.clone(),
        },
    )?;
    store::audit::insert(
        conn,
        &audit_row(
            now,
            "login.succeeded",
            meta,
            Some(&user_id),
            Some(&connection.id),
            Some(&txn.client_id),
            None,
            serde_json::json!({"roles": roles}),
        ),
    )?;
    let redirect = code_redirect(&txn.redirect_uri, &code, txn.state.as_deref(), &cfg.issuer);
    Ok(LoginOutcome::Code { redirect, session, user_id, created: prov.created })
}

/// The outcome of provisioning for the rest of the login.
pub(crate) struct Provisioned {
    pub user_id: String,
    /// A new user was created (not a login or a link).
    pub created: bool,
    pub acr: Option<String>,
    pub amr: Vec<String>,
}

/// Applies the JIT decision for this assertion.
/// What the JIT policy decides for an assertion, read from the database without writing:
/// the login applies it, `ssobroker explain` prints it.
#[derive(Debug)]
pub struct ProvisioningPlan {
    pub upstream: Upstream,
    pub assessment: provisioning::Assessment,
    pub existing: Option<Existing>,
    pub decision: Decision,
}

/// What the SAML room verified, in the provisioning room's terms.
pub fn upstream_of(assertion: &ValidatedAssertion) -> Upstream {
    Upstream {
        subject: assertion.name_id.clone(),
        name_id_format: assertion.name_id_format.clone(),
        authn_context: assertion.authn_context_class.clone(),
        attributes: assertion
            .attributes
            .iter()
            .map(|a| UpstreamAttribute {
                name: a.name.clone(),
                friendly_name: a.friendly_name.clone(),
                values: a.values.clone(),
            })
            .collect(),
    }
}

/// Plans provisioning for this assertion (read-only). A policy refusal is a `Refused` error.
pub fn plan_provisioning(
    conn: &mut DbConnection,
    connection: &Connection,
    assertion: &ValidatedAssertion,
) -> Result<ProvisioningPlan, FlowError> {
    let upstream = upstream_of(assertion);
    let policy = &connection.policy;
    let assessment = provisioning::assess(policy, &upstream).map_err(|r| refused(r, None))?;
    let subject = assessment.subject.as_str();
    let existing = match users::by_identity(conn, &connection.id, subject)? {
        Some(u) => Some(Existing {
            user_id: u.id.clone(),
            disabled: u.disabled,
            profile: stored_profile(&u),
            idp_roles: idp_grants(conn, &u.id)?,
        }),
        None => None,
    };
    let email_changed = |e: &Existing| e.profile.email != assessment.profile.email;
    // Only an address this connection is authoritative for can collide with or link to an
    // account; any other is stored unverified and claims nothing.
    let email = assessment.profile.email.as_ref().filter(|_| assessment.email_authoritative);
    let email_owner = match (&existing, email) {
        (Some(e), Some(email)) if email_changed(e) && policy.update_on_login => {
            users::email_holder(conn, email)?.map(|(user_id, verified)| EmailOwner {
                user_id,
                pre_created: !verified,
                linked_here: true,
            })
        }
        (None, Some(email)) => match users::email_holder(conn, email)? {
            Some((user_id, verified)) => {
                // A simultaneous first login of this same person may have committed between the
                // identity lookup and this one (PostgreSQL reads per statement): start over.
                if users::by_identity(conn, &connection.id, subject)?.is_some() {
                    return Err(FlowError::Race);
                }
                let linked_here = users::has_identity_on(conn, &user_id, &connection.id)?;
                Some(EmailOwner { user_id, pre_created: !verified, linked_here })
            }
            None => None,
        },
        _ => None,
    };
    let decision = provisioning::decide(policy, &assessment, existing.as_ref(), email_owner.as_ref());
    if let Decision::Deny(reason) = decision {
        return Err(refused(reason, existing.map(|e| e.user_id)));
    }
    Ok(ProvisioningPlan { upstream, assessment, existing, decision })
}

fn refused(reason: provisioning::DenyReason, user_id: Option<String>) -> FlowError {
    FlowError::Refused {
        reason: reason.code(),
        detail: "provisioning policy".into(),
        client_id: None,
        user_id,
    }
}

/// Applies the JIT decision for this assertion.
fn provision(
    conn: &mut DbConnection,
    connection: &Connection,
    assertion: &ValidatedAssertion,
    meta: &RequestMeta,
    now: DateTime<Utc>,
    client_id: Option<&str>,
) -> Result<Provisioned, FlowError> {
    let ts = now.timestamp();
    let ProvisioningPlan { upstream, assessment, existing, decision } =
        plan_provisioning(conn, connection, assertion)?;
    let subject = assessment.subject.as_str();
    let audit = |conn: &mut DbConnection,
                 kind: &str,
                 user: Option<&str>,
                 reason: Option<&str>,
                 detail: serde_json::Value| {
        store::audit::insert(
            conn,
            &audit_row(now, kind, meta, user, Some(&connection.id), client_id, reason, detail),
        )
    };
    let created = matches!(decision, Decision::Create { .. });
    let user_id = match decision {
        Decision::Deny(reason) => return Err(refused(reason, existing.map(|e| e.user_id))),
        Decision::Create { profile, grants } => {
            let id = uuid::Uuid::new_v4().to_string();
            let groups_json = serde_json::to_string(&profile.groups).unwrap_or_else(|_| "[]".into());
            users::insert(
                conn,
                &users::NewUser {
                    id: &id,
                    email: profile.email.as_deref(),
                    // Verified only when this IdP is the authority for the address's domain.
                    email_verified: assessment.email_authoritative,
                    given_name: profile.given_name.as_deref(),
                    family_name: profile.family_name.as_deref(),
                    display_name: profile.display_name.as_deref(),
                    groups_json: &groups_json,
                    disabled: false,
                    created_at: ts,
                    updated_at: ts,
                    last_login_at: Some(ts),
                },
            )?;
            users::insert_identity(
                conn,
                &users::NewIdentity {
                    connection_id: &connection.id,
                    subject,
                    user_id: &id,
                    created_at: ts,
                    last_login_at: ts,
                },
            )?;
            for g in &grants {
                users::insert_role(
                    conn,
                    &users::NewRole {
                        user_id: &id,
                        role: &g.role,
                        source: g.source.as_str(),
                        source_detail: g.detail.as_deref(),
                        granted_at: ts,
                    },
                )?;
            }
            let used: Vec<&str> = upstream.attributes.iter().map(|a| a.name.as_str()).collect();
            let roles: Vec<serde_json::Value> = grants
                .iter()
                .map(|g| serde_json::json!({"role": g.role, "source": g.source.as_str(), "group": g.detail}))
                .collect();
            audit(
                conn,
                "user.provisioned",
                Some(&id),
                None,
                serde_json::json!({
                    "email": profile.email, "groups": profile.groups, "roles": roles, "attributes": used,
                }),
            )?;
            id
        }
        Decision::Link { user_id, profile, idp_roles } => {
            if users::by_id(conn, &user_id)?.is_some_and(|u| u.disabled) {
                return Err(refused(provisioning::DenyReason::UserDisabled, Some(user_id)));
            }
            users::insert_identity(
                conn,
                &users::NewIdentity {
                    connection_id: &connection.id,
                    subject,
                    user_id: &user_id,
                    created_at: ts,
                    last_login_at: ts,
                },
            )?;
            audit(
                conn,
                "user.linked",
                Some(&user_id),
                None,
                serde_json::json!({"email": profile.email, "subject": subject}),
            )?;
            let current = idp_grants(conn, &user_id)?;
            apply_profile(conn, &user_id, &profile, assessment.email_authoritative, ts, &audit)?;
            if let Some(new_roles) = idp_roles {
                apply_idp_roles(conn, &user_id, &current, &new_roles, ts, &audit)?;
            }
            users::record_login(conn, &connection.id, subject, &user_id, ts)?;
            user_id
        }
        Decision::Login { profile: new_profile, idp_roles } => {
            let Some(user) = existing else {
                return Err(FlowError::refused("internal_error", "login decision without user"));
            };
            if let Some(p) = new_profile {
                apply_profile(conn, &user.user_id, &p, assessment.email_authoritative, ts, &audit)?;
            }
            if let Some(new_roles) = idp_roles {
                apply_idp_roles(conn, &user.user_id, &user.idp_roles, &new_roles, ts, &audit)?;
            }
            users::record_login(conn, &connection.id, subject, &user.user_id, ts)?;
            user.user_id
        }
    };
    if assessment.groups_overage {
        // Entra sends a link instead of the groups when a user has too many: roles from groups
        // were kept as they were, and the admin needs to know.
        audit(
            conn,
            "groups.overage",
            Some(&user_id),
            Some("groups_overage"),
            serde_json::json!({"note": "IdP sent a groups link instead of the groups; IdP-sourced roles left unchanged"}),
        )?;
    }
    Ok(Provisioned { user_id, created, acr: assessment.acr, amr: assessment.amr })
}

fn idp_grants(conn: &mut DbConnection, user_id: &str) -> Result<Vec<Grant>, diesel::result::Error> {
    Ok(users::roles(conn, user_id)?
        .into_iter()
        .filter(|r| r.source == RoleSource::Idp.as_str())
        .map(|r| Grant { role: r.role, source: RoleSource::Idp, detail: r.source_detail })
        .collect())
}

type AuditFn<'a> = dyn Fn(
        &mut DbConnection,
        &str,
        Option<&str>,
        Option<&str>,
        serde_json::Value,
    ) -> Result<(), diesel::result::Error>
    + 'a;

fn apply_profile(
    conn: &mut DbConnection,
    user_id: &str,
    p: &Profile,
    email_verified: bool,
    ts: i64,
    audit: &AuditFn<'_>,
) -> Result<(), FlowError> {
    let groups_json = serde_json::to_string(&p.groups).unwrap_or_else(|_| "[]".into());
    users::update_profile(
        conn,
        user_id,
        &users::ProfileUpdate {
            email: p.email.as_deref(),
            email_verified: email_verified && p.email.is_some(),
            given_name: p.given_name.as_deref(),
            family_name: p.family_name.as_deref(),
            display_name: p.display_name.as_deref(),
            groups_json: &groups_json,
            updated_at: ts,
        },
    )?;
    audit(
        conn,
        "user.updated",
        Some(user_id),
        None,
        serde_json::json!({"email": p.email, "groups": p.groups}),
    )?;
    Ok(())
}

/// Makes the user's IdP-sourced grants equal `new`, auditing each change; other sources stay.
fn apply_idp_roles(
    conn: &mut DbConnection,
    user_id: &str,
    current: &[Grant],
    new: &[Grant],
    ts: i64,
    audit: &AuditFn<'_>,
) -> Result<(), FlowError> {
    for old in current.iter().filter(|o| !new.iter().any(|n| n.role == o.role)) {
        users::delete_role(conn, user_id, &old.role, RoleSource::Idp.as_str())?;
        audit(
            conn,
            "role.revoked",
            Some(user_id),
            None,
            serde_json::json!({"role": old.role, "source": "idp", "group": old.detail}),
        )?;
    }
    for n in new.iter().filter(|n| !current.iter().any(|o| o.role == n.role)) {
        users::insert_role(
            conn,
            &users::NewRole {
                user_id,
                role: &n.role,
                source: "idp",
                source_detail: n.detail.as_deref(),
                granted_at: ts,
            },
        )?;
        audit(
            conn,
            "role.granted",
            Some(user_id),
            None,
            serde_json::json!({"role": n.role, "source": "idp", "group": n.detail}),
        )?;
    }
    Ok(())
}

/// The profile as stored, for comparison with what the IdP now asserts.
pub(crate) fn stored_profile(u: &users::User) -> Profile {
    Profile {
        email: u.email.clone(),
        given_name: u.given_name.clone(),
        family_name: u.family_name.clone(),
        display_name: u.display_name.clone(),
        groups: serde_json::from_str(&u.groups_json).unwrap_or_default(),
    }
}

/// Where an IdP-initiated login goes: the connection's `idp_initiated_client` when it admits the
/// user and has a `launch_url` (the app then starts its own /authorize, answered from the broker
/// session: never an unsolicited code), else the portal.
fn idp_initiated_landing(
    conn: &mut DbConnection,
    cfg: &Config,
    connection: &Connection,
    roles: &[String],
) -> Result<String, FlowError> {
    if let Some(id) = &connection.idp_initiated_client {
        if let Some(client) = super::clients::lookup(conn, cfg, id)? {
            if let Some(url) = client.launch_url.clone().filter(|_| client.admits(roles)) {
                return Ok(url);
            }
        }
    }
    Ok("/".to_string())
}
