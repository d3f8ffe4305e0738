//! Housekeeping under constant load: the scheduled purge (`housekeeping_interval_seconds`) runs
//! while logins go on, the pinned clock moves past every lifetime between rounds, and the tables
//! of login state stay at one round's worth instead of growing with the number of logins.

use crate::both_backends;
use crate::support::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Tables that hold login state with an expiry; housekeeping must keep each bounded.
const EPHEMERAL: [&str; 5] =
    ["login_transactions", "saml_replay", "auth_grants", "sessions", "refresh_tokens"];
const ROUNDS: usize = 5;
const LOGINS_PER_ROUND: usize = 6;
/// Distinct people: re-logins after the first round, so `users` stays bounded too.
const PEOPLE: usize = 3;
/// Longer than every lifetime configured below.
const ADVANCE_SECONDS: i64 = 1300;

/// One complete login with a refresh, plus a login abandoned at the IdP. Every step must work:
/// a purge running meanwhile must not delete anything live.
async fn login_round_trip(app: &mut TestApp, email: &str) -> TestResult {
    app.new_browser()?;
    let q = app.login_code(email, &["Engineering"]).await?;
    let r = app.token(&q["code"]).await?;
    assert_eq!(r.status(), 200, "token: {}", r.text().await?);
    let t: serde_json::Value = r.json().await?;
    let refresh = t["refresh_token"].as_str().ok_or("no refresh_token")?;
    let r = reqwest::Client::new()
        .post(format!("{}/token", app.base))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await?;
    assert_eq!(r.status(), 200, "refresh: {}", r.text().await?);
    let t: serde_json::Value = r.json().await?;
    let access = t["access_token"].as_str().ok_or("no access_token")?;
    let info =
        reqwest::Client::new().get(format!("{}/userinfo", app.base)).bearer_auth(access).send().await?;
    assert_eq!(info.status(), 200);
    app.new_browser()?;
    app.authorize(&app.auth_url(&[])).await?; // abandoned at the IdP
    Ok(())
}

fn ephemeral(counts: &BTreeMap<&'static str, i64>) -> BTreeMap<&'static str, i64> {
    EPHEMERAL.iter().map(|t| (*t, counts[t])).collect()
}

async fn bounded_under_load(backend: Backend) -> TestResult {
    let mut app = app(backend)
        .with_config(|c| {
            c.housekeeping_interval_seconds = 1;
            c.login_timeout_seconds = 600;
            c.code_ttl_seconds = 60;
            c.access_token_ttl_seconds = 300;
            c.id_token_ttl_seconds = 300;
            c.session_ttl_seconds = 900;
            c.session_idle_seconds = 900;
            c.refresh_token_ttl_seconds = 1200;
            c.clients[0].issue_refresh_token = true;
        })
        .start()
        .await?;
    let housekeeping = ssobroker::web::spawn_housekeeping(app.state.clone());
    let mut per_round = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..LOGINS_PER_ROUND {
            login_round_trip(&mut app, &format!("person{}@example.com", i % PEOPLE)).await?;
        }
        let live = ephemeral(&app.counts()?);
        // One round's logins and nothing older: each login leaves one grant, one session, one
        // replay entry and two refresh tokens (the rotated one stays, marked used, for replay
        // detection); each abandoned login one open login transaction.
        let n = LOGINS_PER_ROUND as i64;
        let expected: BTreeMap<&str, i64> = [
            ("login_transactions", n),
            ("saml_replay", n),
            ("auth_grants", n),
            ("sessions", n),
            ("refresh_tokens", 2 * n),
        ]
        .into_iter()
        .collect();
        assert_eq!(live, expected, "round {round}: live login state is this round's only");
        per_round.push(live);

        // Everything of this round expires; the next purge (within a second) must remove it.
        app.clock.advance(chrono::Duration::seconds(ADVANCE_SECONDS));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = ephemeral(&app.counts()?);
            if left.values().all(|n| *n == 0) {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: not purged within 10 s: {left:?}");
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
    housekeeping.abort();
    let counts = app.counts()?;
    assert_eq!(counts["users"], PEOPLE as i64, "accounts stay");
    assert_eq!(counts["federated_identities"], PEOPLE as i64);
    assert_eq!(per_round.len(), ROUNDS);
    Ok(())
}
both_backends!(login_state_stays_bounded_under_load, bounded_under_load);
