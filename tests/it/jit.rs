//! JIT policy through the real ACS: anchors, email changes and collisions, linking, manual mode,
//! disabled users, manual roles, MFA.

use crate::both_backends;
use crate::support::*;
use ssobroker::provisioning::ProvisioningMode;
use ssobroker::store::{self, users};

const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const MS_OID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";

/// One login with a custom response; returns the redirect's query (code or error).
async fn login_with(
    app: &TestApp,
    edit: impl FnOnce(&mut ssobroker::devidp::ResponseSpec),
) -> Result<(reqwest::Response, std::collections::BTreeMap<&'static str, i64>), Box<dyn std::error::Error>> {
    let at = app.authorize(&app.auth_url(&[("prompt", "login")])).await?;
    let mut spec = app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]);
    edit(&mut spec);
    let before = app.counts()?;
    Ok((app.post_signed(&spec, Some(&at.relay_state)).await?, before))
}

fn set_email(spec: &mut ssobroker::devidp::ResponseSpec, email: &str) {
    for (name, values) in spec.attributes.iter_mut() {
        if name == "email" {
            *values = vec![email.to_string()];
        }
    }
}

async fn pre_create(app: &TestApp, email: &str, role: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut c = app.pool.get()?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = app.now().timestamp();
    users::insert(
        &mut c,
        &users::NewUser {
            id: &id,
            email: Some(email),
            email_verified: false,
            given_name: None,
            family_name: None,
            display_name: None,
            groups_json: "[]",
            disabled: false,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        },
    )?;
    users::insert_role(
        &mut c,
        &users::NewRole { user_id: &id, role, source: "manual", source_detail: None, granted_at: now },
    )?;
    Ok(id)
}

async fn email_change_keeps_user(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let (r, _) = login_with(&app, |s| s.name_id = "00u-ada".into()).await?;
    assert_eq!(r.status(), 302);
    let (r, _) = login_with(&app, |s| {
        s.name_id = "00u-ada".into();
        set_email(s, "ada.lovelace@example.com");
    })
    .await?;
    assert_eq!(r.status(), 302);
    let mut c = app.pool.get()?;
    assert_eq!(users::count(&mut c)?, 1, "an email change updates the profile, never a second user");
    let u = users::by_identity(&mut c, CONNECTION, "00u-ada")?.ok_or("no user")?;
    assert_eq!(u.email.as_deref(), Some("ada.lovelace@example.com"));
    Ok(())
}
both_backends!(email_change_same_user, email_change_keeps_user);

async fn email_collision(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let (r, _) = login_with(&app, |s| s.name_id = "00u-ada".into()).await?;
    assert_eq!(r.status(), 302);
    // Another subject asserting the same email: refused, not merged.
    let (r, before) = login_with(&app, |s| s.name_id = "00u-mallory".into()).await?;
    assert_refused(&app, r, &before, "email_conflict").await
}
both_backends!(email_collision_refused, email_collision);

async fn transient(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let (r, before) = login_with(&app, |s| {
        s.name_id = "_a7f3".into();
        s.name_id_format = TRANSIENT.into();
    })
    .await?;
    assert_refused(&app, r, &before, "transient_name_id").await
}
both_backends!(transient_name_id_refused, transient);

async fn anchor_attribute(b: Backend) -> TestResult {
    let app =
        app(b).with_config(|c| c.connections[0].attributes.subject = Some(MS_OID.into())).start().await?;
    let (r, _) = login_with(&app, |s| {
        s.name_id = "_t1".into();
        s.name_id_format = TRANSIENT.into();
        s.attributes.push((MS_OID.into(), vec!["oid-123".into()]));
    })
    .await?;
    assert_eq!(r.status(), 302, "a transient NameID is fine with an anchor attribute");
    let (r, _) = login_with(&app, |s| {
        s.name_id = "_t2".into();
        s.name_id_format = TRANSIENT.into();
        set_email(s, "ada.l@example.com");
        s.attributes.push((MS_OID.into(), vec!["oid-123".into()]));
    })
    .await?;
    assert_eq!(r.status(), 302);
    assert_eq!(app.counts()?["users"], 1, "keyed on the anchor, not the NameID");
    let (r, before) = login_with(&app, |s| s.name_id = "00u-x".into()).await?;
    assert_refused(&app, r, &before, "subject_missing").await
}
both_backends!(anchor_attribute_keys_identity, anchor_attribute);

async fn manual_mode(b: Backend) -> TestResult {
    let app =
        app(b).with_config(|c| c.connections[0].provisioning = ProvisioningMode::Manual).start().await?;
    let (r, before) = login_with(&app, |s| {
        s.name_id = "stranger@example.com".into();
        set_email(s, "stranger@example.com");
    })
    .await?;
    assert_refused(&app, r, &before, "not_provisioned").await?;
    let id = pre_create(&app, "ada@example.com", "auditor").await?;
    let (r, _) = login_with(&app, |_| {}).await?;
    let q = redirect_query(r).await?;
    let tokens: serde_json::Value = app.token(&q["code"]).await?.json().await?;
    let claims = decode_claims(tokens["id_token"].as_str().ok_or("no id_token")?)?;
    assert_eq!(claims["sub"], id.as_str(), "the pre-created user was linked");
    let roles: Vec<&str> =
        claims["roles"].as_array().ok_or("roles")?.iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(roles, vec!["auditor", "engineer"], "manual role kept, IdP role added");
    assert!(app.audit()?.iter().any(|e| e.kind == "user.linked"));
    Ok(())
}
both_backends!(manual_mode_admits_only_precreated, manual_mode);

async fn link_by_email(b: Backend) -> TestResult {
    let app = app(b).with_config(|c| c.connections[0].link_by_email = true).start().await?;
    let id = pre_create(&app, "ada@example.com", "auditor").await?;
    let (r, _) = login_with(&app, |_| {}).await?;
    assert_eq!(r.status(), 302);
    let mut c = app.pool.get()?;
    assert_eq!(users::by_identity(&mut c, CONNECTION, "ada@example.com")?.map(|u| u.id), Some(id.clone()));
    // A second subject with the same email is not linked onto the now-linked account.
    drop(c);
    let (r, before) = login_with(&app, |s| s.name_id = "other-subject".into()).await?;
    assert_refused(&app, r, &before, "email_conflict").await
}
both_backends!(link_by_email_links_once, link_by_email);

/// Several different subjects with the same address logging in at the same moment: exactly one
/// is linked to the account, the others are refused as a conflict — the check-then-link race
/// cannot give one account two identities on one connection (a unique index backs the check).
async fn simultaneous_links(b: Backend) -> TestResult {
    let app = app(b).with_config(|c| c.connections[0].link_by_email = true).start().await?;
    let id = pre_create(&app, "ada@example.com", "auditor").await?;
    let answers = racing_logins(&app, "ada@example.com", 6).await?;
    let mut statuses: Vec<u16> = Vec::new();
    for a in answers {
        statuses.push(a?.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [302, 403, 403, 403, 403, 403], "one link, the rest refused");
    let mut c = app.pool.get()?;
    let linked: Vec<String> = (0..6)
        .filter_map(|n| users::by_identity(&mut c, CONNECTION, &format!("subject-{n}")).transpose())
        .map(|u| u.map(|u| u.id))
        .collect::<Result<_, _>>()?;
    assert_eq!(linked, [id], "one identity on this connection, on the pre-created account");
    let conflicts = app.audit()?.iter().filter(|e| e.reason.as_deref() == Some("email_conflict")).count();
    assert_eq!(conflicts, 5);
    Ok(())
}
both_backends!(simultaneous_links_link_once, simultaneous_links);

async fn disabled(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let (r, _) = login_with(&app, |_| {}).await?;
    assert_eq!(r.status(), 302);
    {
        use diesel::prelude::*;
        let mut c = app.pool.get()?;
        diesel::update(store::schema::users::table)
            .set(store::schema::users::disabled.eq(true))
            .execute(&mut c)?;
    }
    let (r, before) = login_with(&app, |_| {}).await?;
    assert_refused(&app, r, &before, "user_disabled").await
}
both_backends!(disabled_user_refused, disabled);

async fn manual_role_survives(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let (r, _) = login_with(&app, |_| {}).await?;
    assert_eq!(r.status(), 302);
    let user_id = {
        let mut c = app.pool.get()?;
        let u = users::by_identity(&mut c, CONNECTION, "ada@example.com")?.ok_or("no user")?;
        users::insert_role(
            &mut c,
            &users::NewRole {
                user_id: &u.id,
                role: "auditor",
                source: "manual",
                source_detail: None,
                granted_at: 0,
            },
        )?;
        u.id
    };
    let (r, _) = login_with(&app, |s| s.attributes.retain(|(n, _)| n != "groups")).await?;
    assert_eq!(r.status(), 302);
    let mut c = app.pool.get()?;
    let roles: Vec<(String, String)> =
        users::roles(&mut c, &user_id)?.into_iter().map(|r| (r.role, r.source)).collect();
    assert_eq!(
        roles,
        vec![("auditor".into(), "manual".into()), ("user".into(), "default".into())],
        "group gone → engineer gone; manual and default stay"
    );
    Ok(())
}
both_backends!(manual_role_survives_relogin, manual_role_survives);

/// A role listed twice in `default_roles` is granted once: the first login does not fail on a
/// duplicate row (it did, after its retries, with a sign-in failure blaming the IdP).
async fn repeated_default_roles(b: Backend) -> TestResult {
    let app = app(b)
        .with_config(|c| c.connections[0].default_roles = vec!["user".into(), "user".into()])
        .start()
        .await?;
    let q = app.login_code("ada@example.com", &[]).await?;
    assert!(q.contains_key("code"), "{q:?}");
    let mut c = app.pool.get()?;
    let u = users::by_identity(&mut c, CONNECTION, "ada@example.com")?.ok_or("no user")?;
    let roles: Vec<(String, String)> =
        users::roles(&mut c, &u.id)?.into_iter().map(|r| (r.role, r.source)).collect();
    assert_eq!(roles, vec![("user".into(), "default".into())]);
    Ok(())
}
both_backends!(default_roles_listed_twice_are_one_grant, repeated_default_roles);

async fn mfa(b: Backend) -> TestResult {
    let app = app(b).with_config(|c| c.connections[0].require_mfa = true).start().await?;
    let (r, before) = login_with(&app, |_| {}).await?; // password only
    assert_refused(&app, r, &before, "mfa_required").await?;
    let (r, _) =
        login_with(&app, |s| s.authn_context_class = Some("https://refeds.org/profile/mfa".into())).await?;
    let q = redirect_query(r).await?;
    let tokens: serde_json::Value = app.token(&q["code"]).await?.json().await?;
    let claims = decode_claims(tokens["id_token"].as_str().ok_or("no id_token")?)?;
    assert_eq!(claims["acr"], "https://refeds.org/profile/mfa");
    assert_eq!(claims["amr"], serde_json::json!(["mfa"]));
    Ok(())
}
both_backends!(mfa_required_and_proven, mfa);

/// The payload of a JWT the test just received from /token (signature checked in e2e tests).
fn decode_claims(jwt: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).ok_or("not a JWT")?;
    Ok(serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?)
}

async fn email_takeover_on_relogin(b: Backend) -> TestResult {
    // A known user whose IdP now asserts another account's address: refused, nothing changed.
    let app = app(b).start().await?;
    let (r, _) = login_with(&app, |s| {
        s.name_id = "victim".into();
        set_email(s, "victim@example.com");
    })
    .await?;
    assert_eq!(r.status(), 302);
    let (r, _) = login_with(&app, |s| {
        s.name_id = "mallory".into();
        set_email(s, "mallory@example.com");
    })
    .await?;
    assert_eq!(r.status(), 302);
    let (r, before) = login_with(&app, |s| {
        s.name_id = "mallory".into();
        set_email(s, "victim@example.com");
    })
    .await?;
    assert_refused(&app, r, &before, "email_conflict").await?;
    let mut c = app.pool.get()?;
    let m = users::by_identity(&mut c, CONNECTION, "mallory")?.ok_or("mallory")?;
    assert_eq!(m.email.as_deref(), Some("mallory@example.com"));
    Ok(())
}
both_backends!(relogin_cannot_take_another_users_email, email_takeover_on_relogin);

/// `n` first logins of different subjects (`subject-0` …) with one address, their responses
/// posted to the ACS at the same moment; the answers in order.
async fn racing_logins(
    app: &TestApp,
    email: &str,
    n: usize,
) -> Result<Vec<Result<reqwest::Response, reqwest::Error>>, Box<dyn std::error::Error>> {
    let mut posts = Vec::new();
    for i in 0..n {
        let at = app.authorize(&app.auth_url(&[])).await?;
        let mut spec = app.response(Some(&at.request_id), email, &[]);
        spec.name_id = format!("subject-{i}");
        posts.push((app.idp.sign_response_b64(&spec)?, at.relay_state));
    }
    Ok(futures_util::future::join_all(posts.iter().map(|(b64, relay)| app.post_acs(b64, Some(relay)))).await)
}

async fn racing_same_email(b: Backend) -> TestResult {
    // Ten different subjects racing to be first with one address: one account gets it.
    let app = app(b).start().await?;
    let results = racing_logins(&app, "shared@example.com", 10).await?;
    let ok = results.into_iter().filter(|r| r.as_ref().is_ok_and(|r| r.status() == 302)).count();
    assert_eq!(ok, 1, "exactly one subject gets the address");
    assert_eq!(app.counts()?["users"], 1);
    Ok(())
}
both_backends!(racing_subjects_one_email_one_account, racing_same_email);

async fn no_takeover_through_a_second_connection(b: Backend) -> TestResult {
    // A connection without `domains` asserting an address another connection owns: stored
    // unverified, it neither locks the real owner out nor gets linked to them.
    let app = app(b)
        .with_config(|c| {
            c.connections[0].link_by_email = true;
            let mut partner = c.connections[0].clone();
            partner.id = "partner".into();
            partner.domains = vec![];
            partner.link_by_email = false;
            c.connections.push(partner);
        })
        .start()
        .await?;
    let partner_acs = format!("{}/saml/partner/acs", app.base);
    let partner_sp = app.cfg.connection("partner").ok_or("partner")?.sp.clone();
    // The attacker signs in at `partner` as victim@example.com.
    let at = app.authorize(&app.auth_url(&[("idp_hint", "partner")])).await?;
    let spec = ssobroker::devidp::ResponseSpec::new(
        &app.idp,
        &partner_sp.entity_id,
        &partner_acs,
        Some(&at.request_id),
        "attacker-1",
        app.now(),
    )
    .with_attribute("email", &["victim@example.com"])
    .with_attribute("groups", &["IT-Admins"]);
    let resp = app
        .browser
        .post(&partner_acs)
        .form(&[("SAMLResponse", app.idp.sign_response_b64(&spec)?), ("RelayState", at.relay_state.clone())])
        .send()
        .await?;
    assert_eq!(resp.status(), 302);
    let mut c = app.pool.get()?;
    let attacker = users::by_identity(&mut c, "partner", "attacker-1")?.ok_or("attacker account")?;
    assert!(!attacker.email_verified, "partner is not authoritative for example.com");
    drop(c);
    // The real victim at the connection that owns example.com gets their own, verified account.
    let mut app = app;
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&[("idp_hint", CONNECTION)])).await?;
    let mut spec = app.response(Some(&at.request_id), "victim@example.com", &[]);
    spec.name_id = "victim-1".into();
    let r = app.post_signed(&spec, Some(&at.relay_state)).await?;
    assert_eq!(r.status(), 302, "not locked out");
    let mut c = app.pool.get()?;
    let victim = users::by_identity(&mut c, CONNECTION, "victim-1")?.ok_or("victim account")?;
    assert_ne!(victim.id, attacker.id, "never linked to the attacker's account");
    assert!(victim.email_verified);
    Ok(())
}
both_backends!(second_connection_cannot_claim_an_owned_address, no_takeover_through_a_second_connection);
