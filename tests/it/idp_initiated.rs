//! IdP-initiated SSO (opt-in per connection): the user lands on the portal, or on the
//! connection's `idp_initiated_client` when it admits them; never an unsolicited code; the
//! assertion cannot be replayed; without the opt-in it is refused.

use crate::both_backends;
use crate::support::*;
use ssobroker::config::FileClient;

async fn idp_initiated(b: Backend) -> TestResult {
    let mut app = app(b)
        .with_config(|c| {
            c.connections[0].allow_idp_initiated = true;
            c.connections[0].idp_initiated_client = Some("wiki".into());
            c.clients.push(FileClient {
                allowed_roles: vec!["engineer".into()],
                launch_url: Some("https://wiki.example.com/start".into()),
                ..FileClient::new("wiki", "https://wiki.example.com/cb")
            });
        })
        .start()
        .await?;
    let location =
        |r: &reqwest::Response| r.headers().get("location").and_then(|v| v.to_str().ok()).map(String::from);

    // An engineer lands on the wiki's own start page (which will run /authorize), not on a
    // redirect_uri with a code.
    let spec = app.response(None, "eng@example.com", &["Engineering"]);
    let b64 = app.idp.sign_response_b64(&spec)?;
    let resp = app.post_acs(&b64, None).await?;
    assert_eq!(resp.status(), 302);
    assert_eq!(location(&resp).as_deref(), Some("https://wiki.example.com/start"));
    assert_eq!(app.counts()?["auth_grants"], 0, "no code for an unsolicited response");

    // The same assertion again (another browser): a replay.
    app.new_browser()?;
    let before = app.counts()?;
    let resp = app.post_acs(&b64, None).await?;
    assert_refused(&app, resp, &before, "assertion_replayed").await?;

    // Someone the wiki does not admit lands on the portal.
    app.new_browser()?;
    let resp = app.post_signed(&app.response(None, "sales@example.com", &["Sales"]), None).await?;
    assert_eq!(location(&resp).as_deref(), Some("/"));
    assert_eq!(app.counts()?["auth_grants"], 0);
    Ok(())
}
both_backends!(idp_initiated_lands_on_the_app_or_portal, idp_initiated);

async fn not_allowed(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let before = app.counts()?;
    let resp = app.post_signed(&app.response(None, "eng@example.com", &["Engineering"]), None).await?;
    assert_refused(&app, resp, &before, "unsolicited_response").await
}
both_backends!(idp_initiated_refused_without_opt_in, not_allowed);

#[test]
fn idp_initiated_client_needs_the_opt_in() -> TestResult {
    use ssobroker::config::{self, FileConfig, FileConnection};
    let dir = tempfile::tempdir()?;
    let idp = ssobroker::devidp::DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
    std::fs::write(dir.path().join("idp.xml"), idp.metadata_xml())?;
    let file = FileConfig {
        issuer: "https://sso.example.com".into(),
        connections: vec![FileConnection {
            idp_initiated_client: Some("wiki".into()),
            ..FileConnection::new("okta", "idp.xml")
        }],
        ..FileConfig::default()
    };
    let e = config::validate(file, "t.toml", dir.path()).err().ok_or("accepted")?;
    assert_eq!(e.key, "connections[0].idp_initiated_client");
    Ok(())
}
