//! The README's run command path: the real `ssobroker demo` binary, walked like a browser
//! (cookies, redirects by hand, forms as the pages render them) from the sample app's login
//! link through the development IdP to the claims page, and back out through single logout.

use crate::support::{form, unescape, TestResult};
use std::process::{Child, Command, Stdio};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn demo_login_end_to_end() -> TestResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{port}");
    let _demo = Demo(
        // From a fresh working directory with the default (relative) data dir, as README runs it.
        Command::new(env!("CARGO_BIN_EXE_ssobroker"))
            .args(["demo", "--listen", &listen])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://{listen}");
    let browser =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()?;
    let mut up = false;
    for _ in 0..100 {
        if browser.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "demo did not come up on {base}");

    let home = browser.get(format!("{base}/demo-app/")).send().await?.text().await?;
    assert!(home.contains("/demo-app/login"), "the sample app offers a login link");
    // Follow redirects by hand: app → /authorize → development IdP.
    let mut url = format!("{base}/demo-app/login");
    let mut idp_page = String::new();
    for _ in 0..5 {
        let resp = browser.get(&url).send().await?;
        if resp.status() == 302 {
            url = resp.headers()["location"].to_str()?.to_string();
            if url.starts_with('/') {
                url = format!("{base}{url}");
            }
        } else {
            assert_eq!(resp.status(), 200);
            idp_page = resp.text().await?;
            break;
        }
    }
    assert!(idp_page.contains("Development identity provider"), "the dev IdP is clearly labelled");
    let (action, mut fields) = form(&idp_page)?;
    // A control character (a NUL) cannot go into the signed XML: a clear 400, not a 500.
    fields.insert("given_name".into(), "Gr\0ace".into());
    let resp = browser.post(format!("{base}{action}")).form(&fields).send().await?;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await?.contains("control character"));
    fields.insert("email".into(), "grace@example.com".into());
    fields.insert("given_name".into(), "Grace".into());
    fields.insert("family_name".into(), "Hopper".into());
    fields.insert("groups".into(), "Engineering".into());
    let autopost = browser.post(format!("{base}{action}")).form(&fields).send().await?.text().await?;
    let (acs, saml_fields) = form(&autopost)?;
    assert!(acs.ends_with("/saml/dev-idp/acs"));
    let resp = browser.post(&acs).form(&saml_fields).send().await?;
    assert_eq!(resp.status(), 302, "the ACS accepts the dev IdP's signed response");
    let callback = resp.headers()["location"].to_str()?.to_string();
    let page = browser.get(&callback).send().await?.text().await?;
    let page = unescape(&page);
    assert!(page.contains("\"email\": \"grace@example.com\""), "claims shown: {page}");
    assert!(page.contains("\"engineer\""), "role from the Engineering group: {page}");
    assert!(page.contains("\"sub\""));
    // A reload spends the code again: the broker refuses it and the app says why, in words.
    let reload = unescape(&browser.get(&callback).send().await?.text().await?);
    assert!(reload.contains("already used (a reload") && !reload.contains("\"sub\""), "{reload}");
    // The sign-out notice answers only this app's own logout state, not a typed URL.
    let typed = reqwest::Client::new().get(format!("{base}/demo-app/?state=signed-out")).send().await?;
    assert!(!typed.text().await?.contains("Signed out:"), "no claim without the app's own state");

    // Log out: the broker, then the dev IdP (our LogoutRequest, its signed LogoutResponse), then
    // back to the sample app.
    let logout = page
        .split("href=\"")
        .map(|s| &s[..s.find('"').unwrap_or(s.len())])
        .find(|h| h.contains("/logout?"))
        .ok_or("the claims page offers a logout link")?
        .to_string();
    let mut url = logout;
    let mut hops = Vec::new();
    let mut home = String::new();
    for _ in 0..5 {
        let resp = browser.get(&url).send().await?;
        if resp.status() != 302 {
            home = resp.text().await?;
            break;
        }
        url = resp.headers()["location"].to_str()?.to_string();
        if url.starts_with('/') {
            url = format!("{base}{url}");
        }
        hops.push(url.split('?').next().unwrap_or_default().to_string());
    }
    assert_eq!(
        hops,
        [format!("{base}/dev-idp/slo"), format!("{base}/saml/dev-idp/slo"), format!("{base}/demo-app/")],
        "logout walks the broker, the IdP's single logout and back to the app"
    );
    assert!(home.contains("Signed out:"), "the sample app says so ({url}): {home}");
    let again = browser.get(&url).send().await?.text().await?;
    assert!(!again.contains("Signed out:"), "its logout state is spent: {again}");
    let resp = browser.get(format!("{base}/demo-app/login")).send().await?;
    let to = resp.headers()["location"].to_str()?.to_string();
    let resp = browser.get(&to).send().await?;
    let idp = resp.headers()["location"].to_str()?.to_string();
    assert!(idp.contains("/dev-idp/sso"), "signed out: the next login goes to the IdP again");

    // Signed in again, then signed out at the IdP: its LogoutRequest reaches the broker, whose
    // LogoutResponse comes back to the IdP's page.
    let idp = if idp.starts_with('/') { format!("{base}{idp}") } else { idp };
    let idp_page = browser.get(&idp).send().await?.text().await?;
    let (action, fields) = form(&idp_page)?;
    let autopost = browser.post(format!("{base}{action}")).form(&fields).send().await?.text().await?;
    let (acs, saml_fields) = form(&autopost)?;
    let resp = browser.post(&acs).form(&saml_fields).send().await?;
    let callback = resp.headers()["location"].to_str()?.to_string();
    let page = browser.get(&callback).send().await?.text().await?;
    let (action, fields) = form(&page)?;
    assert_eq!(
        (action.as_str(), fields.get("name_id").map(String::as_str)),
        ("/dev-idp/logout", Some("ada@example.com"))
    );
    let mut resp = browser.post(format!("{base}{action}")).form(&fields).send().await?;
    let mut hops = Vec::new();
    while resp.status() == 302 && hops.len() < 5 {
        let mut to = resp.headers()["location"].to_str()?.to_string();
        if to.starts_with('/') {
            to = format!("{base}{to}");
        }
        hops.push(to.split('?').next().unwrap_or_default().to_string());
        resp = browser.get(&to).send().await?;
    }
    assert_eq!(hops, [format!("{base}/saml/dev-idp/slo"), format!("{base}/dev-idp/slo")]);
    let done = resp.text().await?;
    assert!(done.contains("Development IdP: signed out") && done.contains("Success"), "{done}");
    let resp = browser.get(format!("{base}/demo-app/login")).send().await?;
    let to = resp.headers()["location"].to_str()?.to_string();
    let resp = browser.get(&to).send().await?;
    assert!(
        resp.headers()["location"].to_str()?.contains("/dev-idp/sso"),
        "signed out at the IdP: the broker session ended too"
    );
    assert!(dir.path().join("data/demo/ssobroker.db").exists(), "SQLite under the default data dir");
    // The CLI config the demo writes works from any directory (README's admin steps use it).
    let cli = dir.path().join("data/demo/cli.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_ssobroker"))
        .args(["user", "list", "--config"])
        .arg(&cli)
        .current_dir(std::env::temp_dir())
        .output()?;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.contains("grace@example.com"), "{listed}");
    Ok(())
}

#[actix_web::test]
async fn demo_on_a_taken_port_stops_before_anything() -> TestResult {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let listen = taken.local_addr()?.to_string();
    let dir = tempfile::tempdir()?;
    let out = Command::new(env!("CARGO_BIN_EXE_ssobroker"))
        .args(["demo", "--listen", &listen, "--data-dir", "here"])
        .current_dir(dir.path())
        .output()?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("listen on {listen}")) && stderr.contains("in use"), "{stderr}");
    assert!(!stdout.contains("password"), "no banner (and no password) for a demo that never ran: {stdout}");
    assert!(!dir.path().join("here").exists(), "nothing written");
    Ok(())
}
