//! `ssobroker client …`: clients registered in the database work like config clients, their
//! generated secrets verify, rotation and removal take effect at once.

use crate::admin_cli::Cli;
use crate::both_backends;
use crate::support::*;
use serde_json::Value;

async fn token_status(
    app: &TestApp,
    client: &str,
    secret: &str,
    code: &str,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let r = reqwest::Client::new()
        .post(format!("{}/token", app.base))
        .basic_auth(client, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await?))
}

async fn registered_clients(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    // The admin's config names the same database and the config file's own client.
    let cli = Cli::with_config(
        &Cli::database_of(&app),
        &format!("[[clients]]\nclient_id = \"{CLIENT_ID}\"\nredirect_uris = [\"{REDIRECT_URI}\"]\n"),
    )?;
    let out =
        cli.ok(&["client", "add", "mobile", "--redirect-uri", REDIRECT_URI, "--allowed-role", "user"])?;
    let secret =
        out.lines().find_map(|l| l.strip_prefix("client_secret: ")).ok_or("no secret printed")?.to_string();
    assert!(secret.len() >= 43, "a generated, high-entropy secret");
    assert!(cli
        .fails(&["client", "add", "mobile", "--redirect-uri", REDIRECT_URI])?
        .contains("already exists"));
    assert!(cli
        .fails(&["client", "add", CLIENT_ID, "--redirect-uri", REDIRECT_URI])?
        .contains("already exists"));
    assert!(cli
        .fails(&["client", "add", "x", "--redirect-uri", "https://a.example/cb#frag"])?
        .contains("fragment"));
    // A script URI is absolute too, and a post-logout URI can become a link on our sign-out page.
    assert!(cli
        .fails(&[
            "client",
            "add",
            "x",
            "--redirect-uri",
            REDIRECT_URI,
            "--post-logout-redirect-uri",
            "javascript://app.example/%0Aalert(1)"
        ])?
        .contains("javascript scheme is not allowed"));
    let list = cli.json_lines(&["client", "list", "--json"])?;
    assert!(list.iter().any(|c| c["client_id"] == "mobile" && c["source"] == "database"));
    assert!(list.iter().any(|c| c["client_id"] == CLIENT_ID && c["source"] == "config"));
    assert!(!cli.ok(&["client", "show", "mobile"])?.contains(&secret), "the secret is never shown again");

    // A whole login for the registered client, its secret checked at /token.
    let at = app.authorize(&app.auth_url(&[]).replace("client_id=dashboard", "client_id=mobile")).await?;
    let q = redirect_query(
        app.post_signed(&app.response(Some(&at.request_id), "ada@example.com", &[]), Some(&at.relay_state))
            .await?,
    )
    .await?;
    let (status, tokens) = token_status(&app, "mobile", &secret, &q["code"]).await?;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().ok_or("no access token")?.to_string();

    // Update: a list given replaces that list, the rest stays; refusals change nothing.
    let show = |cli: &Cli| cli.json(&["client", "show", "mobile"]);
    let before = show(&cli)?;
    for (args, why) in [
        (vec!["--redirect-uri", "https://a.example/cb#frag"], "fragment"),
        (vec!["--post-logout-redirect-uri", "javascript://a.example/%0Aalert(1)"], "javascript scheme"),
        (vec!["--allowed-role", "two words"], "a role is"),
    ] {
        let err = cli.fails(&[&["client", "update", "mobile"][..], &args].concat())?;
        assert!(err.contains(why), "{why}: {err}");
        assert_eq!(show(&cli)?, before, "{why}: nothing changed");
    }
    assert!(cli.fails(&["client", "update", CLIENT_ID, "--refresh-tokens", "true"])?.contains("config file"));
    assert!(cli
        .fails(&["client", "update", "nope", "--refresh-tokens", "true"])?
        .contains("no registered client"));
    let out = cli.ok(&[
        "client",
        "update",
        "mobile",
        "--post-logout-redirect-uri",
        "http://127.0.0.1:9/bye",
        "--clear-allowed-roles",
        "--refresh-tokens",
        "true",
    ])?;
    assert!(out.contains("updated client mobile"), "{out}");
    let after = show(&cli)?;
    assert_eq!(after["redirect_uris"], before["redirect_uris"], "not given: kept");
    assert_eq!(after["post_logout_redirect_uris"], serde_json::json!(["http://127.0.0.1:9/bye"]));
    assert_eq!(after["allowed_roles"], serde_json::json!([]));
    assert_eq!(after["issue_refresh_token"], true);
    assert!(cli.ok(&["client", "update", "mobile", "--refresh-tokens", "true"])?.contains("unchanged"));
    let updates: Vec<_> = app.audit()?.into_iter().filter(|e| e.kind == "client.updated").collect();
    assert_eq!(updates.len(), 1, "one change, one row");
    assert_eq!(updates[0].actor.as_deref(), Some("cli"));

    // Rotation: the old secret stops working at once, the new one works.
    let out = cli.ok(&["client", "rotate-secret", "mobile"])?;
    let new_secret = out.split_whitespace().find(|w| w.len() >= 43).ok_or("no new secret")?.to_string();
    assert_eq!(token_status(&app, "mobile", &secret, "no-such-code").await?.0, 401);
    let (status, body) = token_status(&app, "mobile", &new_secret, "no-such-code").await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "authenticated, then the code is refused"
    );

    // Removal: the client is gone and what it held is revoked.
    assert!(cli.fails(&["client", "remove", CLIENT_ID])?.contains("config file"));
    cli.ok(&["client", "remove", "mobile"])?;
    assert_eq!(token_status(&app, "mobile", &new_secret, "no-such-code").await?.0, 401);
    let ui = reqwest::Client::new().get(format!("{}/userinfo", app.base)).bearer_auth(&access).send().await?;
    assert_eq!(ui.status(), 401);
    let kinds: Vec<String> = app.audit()?.into_iter().map(|e| e.kind).collect();
    for k in ["client.created", "client.secret_rotated", "client.removed"] {
        assert!(kinds.iter().any(|x| x == k), "{k} audited");
    }
    let audit = app.audit()?;
    let created = audit.iter().find(|e| e.kind == "client.created").ok_or("no client.created")?;
    assert_eq!(created.actor.as_deref(), Some("cli"), "the CLI is named as the actor");
    Ok(())
}
both_backends!(registered_client_lifecycle, registered_clients);
