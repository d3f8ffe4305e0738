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
    Ok(())
}
both_backends!(registered_client_lifecycle, registered_clients);
