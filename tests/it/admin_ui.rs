//! The admin console and the user portal over real HTTP, as an admin and a user meet them: an
//! admin account made with the real `ssobroker admin create`, the sign-in form (wrong
//! passwords refused, then throttled), CSRF on every action, finding and disabling the user a
//! login created, the refused next login in the audit page and its exports, SSO admins, and
//! the portal listing only the apps a user's roles allow.

use crate::admin_cli::Cli;
use crate::both_backends;
use crate::support::*;
use ssobroker::config::FileClient;

type Error = Box<dyn std::error::Error>;

/// A browser of its own for the admin (cookies kept, redirects by hand).
fn admin_browser() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()
}

/// The value of the first hidden `name` input on a page.
fn hidden(page: &str, name: &str) -> Result<String, Error> {
    let marker = format!("name=\"{name}\" value=\"");
    let i = page.find(&marker).ok_or_else(|| format!("no {name} field on the page: {page}"))? + marker.len();
    Ok(page[i..i + page[i..].find('"').ok_or("unclosed value")?].to_string())
}

/// Creates an admin with the real binary; returns the generated password it printed.
fn create_admin(app: &TestApp, name: &str) -> Result<String, Error> {
    let cli = Cli::for_app(app)?;
    let out = cli.ok(&["admin", "create", name])?;
    assert!(out.contains(&format!("created admin {name}")), "{out}");
    let pw = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .ok_or_else(|| format!("no password printed: {out}"))?
        .trim()
        .to_string();
    assert!(pw.len() >= 20);
    Ok(pw)
}

/// Posts the sign-in form as the page rendered it.
async fn sign_in(
    app: &TestApp,
    browser: &reqwest::Client,
    name: &str,
    pw: &str,
) -> Result<reqwest::Response, Error> {
    let page = browser.get(format!("{}/admin/login", app.base)).send().await?.text().await?;
    let csrf = hidden(&page, "csrf")?;
    Ok(browser
        .post(format!("{}/admin/login", app.base))
        .form(&[("name", name), ("password", pw), ("csrf", csrf.as_str())])
        .send()
        .await?)
}

/// Signs in and returns the session's CSRF token (read from the overview page).
async fn signed_in(app: &TestApp, browser: &reqwest::Client, name: &str, pw: &str) -> Result<String, Error> {
    let resp = sign_in(app, browser, name, pw).await?;
    assert_eq!(resp.status(), 303, "sign-in: {}", resp.text().await?);
    assert_eq!(resp.headers().get("location").and_then(|v| v.to_str().ok()), Some("/admin"));
    let cookie =
        resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let overview = browser.get(format!("{}/admin", app.base)).send().await?;
    assert_eq!(overview.status(), 200);
    let page = overview.text().await?;
    assert!(page.contains("Overview"), "{page}");
    hidden(&page, "csrf")
}

async fn get_text(browser: &reqwest::Client, url: String) -> Result<(u16, String), Error> {
    let resp = browser.get(url).send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn admin_journey(b: Backend) -> TestResult {
    let mut app = app(b).start().await?;
    let pw = create_admin(&app, "alice")?;
    let admin = admin_browser()?;

    // Not signed in: every page sends the browser to the sign-in form.
    let resp = admin.get(format!("{}/admin/users", app.base)).send().await?;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers().get("location").and_then(|v| v.to_str().ok()), Some("/admin/login"));

    // A user signs in at their IdP (JIT creates them).
    let q = app.login_code("ada@example.com", &["Engineering"]).await?;
    assert!(q.contains_key("code"));

    let csrf = signed_in(&app, &admin, "alice", &pw).await?;

    // Find the user the login created.
    let (status, page) = get_text(&admin, format!("{}/admin/users?q=ADA@", app.base)).await?;
    assert_eq!(status, 200);
    assert!(page.contains("ada@example.com"), "{page}");
    let id = {
        let i = page.find("href=\"/admin/users/").ok_or("no user link")? + "href=\"/admin/users/".len();
        page[i..i + page[i..].find('"').ok_or("unclosed")?].to_string()
    };
    let (status, page) = get_text(&admin, format!("{}/admin/users/{id}", app.base)).await?;
    assert_eq!(status, 200);
    assert!(page.contains("engineer") && page.contains("IdP group Engineering"), "roles with their source");
    assert!(page.contains("login.succeeded"), "recent audit on the detail page");
    assert!(page.contains(CONNECTION), "identities");

    // CSRF: a missing or wrong token changes nothing.
    let before = app.counts()?;
    let disable = format!("{}/admin/users/{id}/disable", app.base);
    let resp = admin.post(&disable).form(&[("x", "1")]).send().await?;
    assert_eq!(resp.status(), 403);
    let resp = admin.post(&disable).form(&[("csrf", "forged")]).send().await?;
    assert_eq!(resp.status(), 403);
    let resp = admin
        .post(&disable)
        .header("Origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(resp.status(), 403, "another site's form");
    // Another admin session's token is not this one's.
    let (_, other_page) = get_text(&admin_browser()?, format!("{}/admin/login", app.base)).await?;
    let other_token = hidden(&other_page, "csrf")?;
    let resp = admin.post(&disable).form(&[("csrf", other_token.as_str())]).send().await?;
    assert_eq!(resp.status(), 403);
    assert_eq!(app.counts()?, before, "refused forms wrote nothing");

    // Disable them, with the page's token.
    let resp = admin.post(&disable).form(&[("csrf", csrf.as_str())]).send().await?;
    assert_eq!(resp.status(), 303);
    let (_, page) = get_text(&admin, format!("{}/admin/users/{id}?done=disabled", app.base)).await?;
    assert!(page.contains("disabled"), "{page}");
    // (Found by kind: the CLI's rows carry the real clock, the broker's the test's pinned one.)
    let last = app.audit()?.into_iter().rev().find(|e| e.kind == "user.disabled").ok_or("no audit row")?;
    assert_eq!(last.actor.as_deref(), Some("local:alice"), "the admin is the actor");
    assert_eq!(last.user_id.as_deref(), Some(id.as_str()));

    // Their next login is refused, and the admin sees it in the audit log.
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let resp = app
        .post_signed(
            &app.response(Some(&at.request_id), "ada@example.com", &["Engineering"]),
            Some(&at.relay_state),
        )
        .await?;
    assert_eq!(resp.status(), 403);
    let refusal = resp.text().await?;
    assert!(refusal.contains("Your account cannot sign in here"), "an account refusal says so: {refusal}");
    let (status, page) =
        get_text(&admin, format!("{}/admin/audit?kind=login.failed&user=ada@example.com", app.base)).await?;
    assert_eq!(status, 200);
    assert!(page.contains("user_disabled"), "{page}");
    let (_, overview) = get_text(&admin, format!("{}/admin", app.base)).await?;
    assert!(overview.contains("user_disabled"), "failures today by reason");

    // The support reference the user quotes finds exactly that row (pasted as shown, any case).
    let reference = refusal
        .split("Support reference: <code>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .ok_or("no support reference on the refusal page")?
        .to_string();
    let by_ref = |r: &str| {
        let q: String = url::form_urlencoded::byte_serialize(r.as_bytes()).collect();
        get_text(&admin, format!("{}/admin/audit?reference={q}", app.base))
    };
    let (status, page) = by_ref(&format!("Support reference: {}", reference.to_uppercase())).await?;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<td><code>login.failed</code></td>").count(), 1, "{page}");
    assert_eq!(page.matches("<td><code>").count(), 1, "only that row: {page}");
    assert!(page.contains(&format!("<code>{reference}</code>")), "the Reference column: {page}");
    let (_, page) = by_ref("0123456789ab").await?;
    assert!(page.contains("No matching events"), "{page}");
    // An export by that reference is audited with the filter in its detail; the reference
    // still finds the refusal alone, not the export row that quotes it.
    let csv = admin.get(format!("{}/admin/audit.csv?reference={reference}", app.base)).send().await?;
    assert_eq!(csv.status(), 200);
    assert!(app.audit()?.iter().any(|e| e.kind == "audit.exported" && e.detail.contains(&reference)));
    let (_, page) = by_ref(&reference).await?;
    assert_eq!(page.matches("<td><code>").count(), 1, "the export row is not a match: {page}");
    // Wildcards and junk are refused with the field named, not matched against everything.
    for junk in ["%", "_", "\"' OR 1=1 --"] {
        let (status, page) = by_ref(junk).await?;
        assert_eq!(status, 200);
        assert!(
            page.contains("reference: ") && page.contains("is not a support reference"),
            "{junk}: {page}"
        );
        assert!(!page.contains("<td><code>"), "{junk}: no rows");
    }

    // Exports: the same filter, every column.
    let resp = admin.get(format!("{}/admin/audit.csv?user={id}", app.base)).send().await?;
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .starts_with("text/csv"));
    let csv = resp.text().await?;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,time,kind,user_id,connection_id,client_id,ip,user_agent,reason,actor,detail")
    );
    assert!(
        csv.contains(",\"user.disabled\",")
            && csv.contains(",\"user_disabled\",")
            && csv.contains("local:alice"),
        "{csv}"
    );
    let jsonl = admin
        .get(format!("{}/admin/audit.jsonl?user={id}&kind=user.*", app.base))
        .send()
        .await?
        .text()
        .await?;
    let rows: Vec<serde_json::Value> = jsonl.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["kind"].as_str().is_some_and(|k| k.starts_with("user."))));
    assert!(rows.iter().any(|r| r["kind"] == "user.disabled" && r["actor"] == "local:alice"));

    // Enable again, grant and remove a manual role; each audited with the admin as actor.
    let resp = admin
        .post(format!("{}/admin/users/{id}/enable", app.base))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(resp.status(), 303);
    let add = format!("{}/admin/users/{id}/roles/add", app.base);
    assert_eq!(
        admin.post(&add).form(&[("csrf", csrf.as_str()), ("role", "auditor")]).send().await?.status(),
        303
    );
    let remove = format!("{}/admin/users/{id}/roles/remove", app.base);
    let resp = admin.post(&remove).form(&[("csrf", csrf.as_str()), ("role", "engineer")]).send().await?;
    assert_eq!(resp.status(), 400, "an IdP role is not removed here");
    assert_eq!(
        admin.post(&remove).form(&[("csrf", csrf.as_str()), ("role", "auditor")]).send().await?.status(),
        303
    );
    let kinds: Vec<(String, Option<String>)> =
        app.audit()?.into_iter().filter(|e| e.actor.is_some()).map(|e| (e.kind, e.actor)).collect();
    for k in ["user.enabled", "role.granted", "role.revoked", "admin.login_succeeded"] {
        assert!(
            kinds.iter().any(|(kind, actor)| kind == k && actor.as_deref() == Some("local:alice")),
            "{k}: {kinds:?}"
        );
    }

    // The other pages render.
    for path in [
        "/admin/connections",
        &format!("/admin/connections/{CONNECTION}"),
        "/admin/clients",
        &format!("/admin/clients/{CLIENT_ID}"),
    ] {
        let (status, page) = get_text(&admin, format!("{}{path}", app.base)).await?;
        assert_eq!(status, 200, "{path}: {page}");
    }
    let (_, page) = get_text(&admin, format!("{}/admin/connections/{CONNECTION}", app.base)).await?;
    assert!(page.contains(&app.connection().sp.acs_url) && page.contains(&app.connection().sp.entity_id));
    assert!(page.contains("Audience URI (SP Entity ID)"), "Okta's field names");

    // Sign out: the session no longer opens pages.
    let resp =
        admin.post(format!("{}/admin/logout", app.base)).form(&[("csrf", csrf.as_str())]).send().await?;
    assert_eq!(resp.status(), 303);
    let to = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (_, page) = get_text(&admin, format!("{}{to}", app.base)).await?;
    assert!(page.contains("You are signed out of the admin console."), "{to}: {page}");
    assert_eq!(admin.get(format!("{}/admin", app.base)).send().await?.status(), 303);
    Ok(())
}
both_backends!(admin_finds_disables_and_audits, admin_journey);

async fn wrong_passwords(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let pw = create_admin(&app, "bob")?;
    let browser = admin_browser()?;
    // The form's own token is required.
    let resp = browser
        .post(format!("{}/admin/login", app.base))
        .form(&[("name", "bob"), ("password", pw.as_str()), ("csrf", "x")])
        .send()
        .await?;
    assert_eq!(resp.status(), 403);
    assert!(resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap_or("").starts_with("ssobroker_admin=")));
    // A forged form cookie whose decoded value holds a line break (long enough, and matching
    // the form) is no token of ours: refused like a missing one, and never echoed into a
    // Set-Cookie header (that was a 500).
    let before = app.counts()?;
    for odd in [format!("%0A{}", "a".repeat(42)), format!("%00{}", "a".repeat(42)), "a%3Bb".repeat(9)] {
        let decoded: String = url::form_urlencoded::parse(format!("x={odd}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let resp = reqwest::Client::new()
            .post(format!("{}/admin/login", app.base))
            .header("cookie", format!("ssobroker_admin_form={odd}"))
            .form(&[("name", "bob"), ("password", "not the password"), ("csrf", decoded.as_str())])
            .send()
            .await?;
        assert_eq!(resp.status(), 403, "{odd}");
        let cookies: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|c| c.to_str().ok())
            .map(String::from)
            .collect();
        assert!(cookies.iter().all(|c| !c.contains("aaaaaaaaaa") && !c.contains("a;b")), "{cookies:?}");
        assert!(resp.text().await?.contains("The sign-in form expired"), "{odd}");
    }
    assert_eq!(app.counts()?, before, "nothing written, not even a failed sign-in");
    for _ in 0..5 {
        let resp = sign_in(&app, &browser, "bob", "not the password").await?;
        assert_eq!(resp.status(), 401);
        assert!(resp.text().await?.contains("Wrong admin name or password"));
    }
    // Throttled: even the right password is not checked now.
    let resp = sign_in(&app, &browser, "bob", &pw).await?;
    assert_eq!(resp.status(), 429);
    let reasons: Vec<Option<String>> =
        app.audit()?.into_iter().filter(|e| e.kind == "admin.login_failed").map(|e| e.reason).collect();
    assert_eq!(reasons.iter().filter(|r| r.as_deref() == Some("bad_password")).count(), 5);
    assert_eq!(reasons.last().cloned().flatten().as_deref(), Some("throttled"));
    // Another account from the same IP is not blocked by bob's failures, and an unknown name
    // is refused the same way as a wrong password.
    let carol = create_admin(&app, "carol")?;
    let resp = sign_in(&app, &browser, "nobody", "whatever-password").await?;
    assert_eq!(resp.status(), 401);
    signed_in(&app, &admin_browser()?, "carol", &carol).await?;
    Ok(())
}
both_backends!(wrong_password_refused_and_throttled, wrong_passwords);

async fn password_change(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let cli = Cli::for_app(&app)?;
    let out =
        cli.run_with_stdin(&["admin", "create", "dora", "--password-stdin"], "correct horse battery\n")?;
    assert!(out.contains("created admin dora") && !out.contains("password:"), "{out}");
    let browser = admin_browser()?;
    signed_in(&app, &browser, "dora", "correct horse battery").await?;
    let out =
        cli.run_with_stdin(&["admin", "passwd", "dora", "--password-stdin"], "another long secret\n")?;
    assert!(out.contains("ended 1 console session"), "{out}");
    assert_eq!(
        browser.get(format!("{}/admin", app.base)).send().await?.status(),
        303,
        "signed out everywhere"
    );
    assert_eq!(sign_in(&app, &admin_browser()?, "dora", "correct horse battery").await?.status(), 401);
    signed_in(&app, &admin_browser()?, "dora", "another long secret").await?;
    let err = cli.fails(&["admin", "create", "dora"])?;
    assert!(err.contains("already exists"), "{err}");
    Ok(())
}
both_backends!(admin_passwords_from_stdin, password_change);

async fn sso_admins(b: Backend) -> TestResult {
    let mut app = app(b).with_config(|c| c.admin_role = Some("admin".into())).start().await?;
    // A user holding the admin role (IT-Admins → admin) signs in through the IdP.
    app.login_code("root@example.com", &["IT-Admins"]).await?;
    let resp = app.browser.get(format!("{}/admin/sso", app.base)).send().await?;
    assert_eq!(resp.status(), 200);
    let cookie =
        resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(cookie.starts_with("ssobroker_admin=") && cookie.contains("SameSite=Strict"), "{cookie}");
    let (status, page) = get_text(&app.browser, format!("{}/admin/users", app.base)).await?;
    assert_eq!(status, 200);
    assert!(page.contains("root@example.com"), "the SSO admin is named: {page}");
    let ok = app.audit()?.into_iter().rev().find(|e| e.kind == "admin.login_succeeded").ok_or("no row")?;
    assert!(ok.actor.as_deref().is_some_and(|a| a.starts_with("sso:")));

    // Without the role: refused and audited.
    app.new_browser()?;
    app.login_code("plain@example.com", &["Engineering"]).await?;
    let resp = app.browser.get(format!("{}/admin/sso", app.base)).send().await?;
    assert_eq!(resp.status(), 403);
    let last = app.audit()?.into_iter().rev().find(|e| e.kind == "admin.login_failed").ok_or("no row")?;
    assert_eq!(last.reason.as_deref(), Some("not_admin"));

    // Without a broker session: off to the IdP, and back to /admin/sso afterwards.
    app.new_browser()?;
    let resp = app.browser.get(format!("{}/admin/sso", app.base)).send().await?;
    assert_eq!(resp.status(), 302);
    let location =
        resp.headers().get("location").and_then(|v| v.to_str().ok()).ok_or("no location")?.to_string();
    let url = url::Url::parse(&location)?;
    let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let req = ssobroker::devidp::parse_authn_request(q.get("SAMLRequest").ok_or("no SAMLRequest")?)?;
    let resp = app
        .post_signed(
            &app.response(Some(&req.id), "root@example.com", &["IT-Admins"]),
            q.get("RelayState").map(String::as_str),
        )
        .await?;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers().get("location").and_then(|v| v.to_str().ok()), Some("/admin/sso"));
    assert_eq!(app.browser.get(format!("{}/admin/sso", app.base)).send().await?.status(), 200);
    let (status, page) = get_text(&app.browser, format!("{}/admin", app.base)).await?;
    assert_eq!(status, 200);

    // The console's sign-out goes on to the single sign-on sign-out: otherwise /admin/sso would
    // reopen the console at once, without the IdP.
    let csrf = hidden(&page, "csrf")?;
    let resp = app
        .browser
        .post(format!("{}/admin/logout", app.base))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers().get("location").and_then(|v| v.to_str().ok()), Some("/logout"));
    let row =
        app.audit()?.into_iter().rev().find(|e| e.kind == "admin.logout").ok_or("no admin.logout row")?;
    assert!(row.user_id.is_some(), "the SSO admin's user is on the row");
    let (status, page) = get_text(&app.browser, format!("{}/logout", app.base)).await?;
    assert_eq!(status, 200);
    assert!(page.contains("name=\"confirm\""), "the broker asks to confirm the sign-out: {page}");
    assert!(page.contains("<a href=\"/\">Cancel: stay signed in</a>"), "and offers a way back: {page}");
    Ok(())
}
both_backends!(sso_admins_sign_in_through_their_idp, sso_admins);

async fn portal_apps(b: Backend) -> TestResult {
    let mut app = app(b)
        .with_config(|c| {
            c.connections[0].allow_idp_initiated = true;
            c.clients.push(FileClient {
                allowed_roles: vec!["engineer".into()],
                launch_url: Some("https://wiki.example.com/".into()),
                ..FileClient::new("wiki", "https://wiki.example.com/cb")
            });
            c.clients.push(FileClient {
                allowed_roles: vec!["finance".into()],
                launch_url: Some("https://ledger.example.com/".into()),
                ..FileClient::new("ledger", "https://ledger.example.com/cb")
            });
            c.clients.push(FileClient {
                launch_url: Some("https://intranet.example.com/".into()),
                ..FileClient::new("intranet", "https://intranet.example.com/cb")
            });
        })
        .start()
        .await?;
    // A database client with a launch URL, registered from the console's room.
    {
        use ssobroker::console::{clients, Actor};
        let mut c = app.pool.get()?;
        let new = clients::NewClient {
            client_id: "payroll".into(),
            redirect_uris: vec!["https://payroll.example.com/cb".into()],
            allowed_roles: vec!["engineer".into()],
            launch_url: Some("https://payroll.example.com/".into()),
            ..clients::NewClient::default()
        };
        clients::create(&mut c, &app.cfg, new, &Actor::cli(), &Default::default(), app.now())?;
    }

    // No session: a sign-in page listing the connections.
    let (status, page) = get_text(&app.browser, format!("{}/", app.base)).await?;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("/login/{CONNECTION}")) && page.contains("Continue with Okta"), "{page}");

    // An IdP-initiated login lands on the portal.
    let resp = app.post_signed(&app.response(None, "eve@example.com", &["Engineering"]), None).await?;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers().get("location").and_then(|v| v.to_str().ok()), Some("/"));
    let (status, page) = get_text(&app.browser, format!("{}/", app.base)).await?;
    assert_eq!(status, 200);
    assert!(page.contains("https://wiki.example.com/"), "engineer may open the wiki: {page}");
    assert!(page.contains("https://intranet.example.com/"), "no allowed_roles: everyone");
    assert!(page.contains("https://payroll.example.com/"), "database clients too");
    assert!(!page.contains("ledger.example.com"), "finance only");
    assert!(!page.contains(CLIENT_ID), "clients without launch_url are not listed");
    assert!(page.contains("eve@example.com") && page.contains("engineer"), "profile");

    // Sign out with the portal's form.
    let token = hidden(&page, "confirm")?;
    let resp =
        app.browser.post(format!("{}/logout", app.base)).form(&[("confirm", token.as_str())]).send().await?;
    assert_eq!(resp.status(), 200);
    let (_, page) = get_text(&app.browser, format!("{}/", app.base)).await?;
    assert!(page.contains("Continue with Okta"), "signed out: {page}");

    // The portal's own sign-in link: IdP, then back to the portal.
    app.new_browser()?;
    let resp = app.browser.get(format!("{}/login/{CONNECTION}", app.base)).send().await?;
    assert_eq!(resp.status(), 302);
    let location =
        resp.headers().get("location").and_then(|v| v.to_str().ok()).ok_or("no location")?.to_string();
    let q: std::collections::BTreeMap<String, String> =
        url::Url::parse(&location)?.query_pairs().into_owned().collect();
    let req = ssobroker::devidp::parse_authn_request(q.get("SAMLRequest").ok_or("no SAMLRequest")?)?;
    let resp = app
        .post_signed(
            &app.response(Some(&req.id), "fin@example.com", &[]),
            q.get("RelayState").map(String::as_str),
        )
        .await?;
    assert_eq!(resp.headers().get("location").and_then(|v| v.to_str().ok()), Some("/"));
    let (_, page) = get_text(&app.browser, format!("{}/", app.base)).await?;
    assert!(page.contains("https://intranet.example.com/") && !page.contains("wiki.example.com"), "{page}");
    let last = app.audit()?.into_iter().rev().find(|e| e.kind == "login.succeeded").ok_or("no row")?;
    assert_eq!(last.client_id, None, "a portal login names no client");
    Ok(())
}
both_backends!(portal_shows_allowed_apps_only, portal_apps);

async fn per_address_limit(b: Backend) -> TestResult {
    let app = app(b)
        .with_config(|c| c.rate_limits.admin_login = ssobroker::config::RateLimit { per_minute: 1, burst: 2 })
        .start()
        .await?;
    let browser = admin_browser()?;
    for _ in 0..2 {
        assert_eq!(sign_in(&app, &browser, "mallory", "guess-guess-guess").await?.status(), 401);
    }
    let before = app.counts()?;
    let resp = sign_in(&app, &browser, "mallory", "guess-guess-guess").await?;
    assert_eq!(resp.status(), 429, "the per-address limiter in front of the form");
    assert_eq!(app.counts()?, before, "refused before any work: no audit row, no session");
    Ok(())
}
both_backends!(admin_sign_in_rate_limited_per_address, per_address_limit);

/// Client ids become URL path segments on the console: anything but letters, digits and
/// `- _ . : @` is refused everywhere a client is registered, and nothing is written.
async fn client_ids_are_path_safe(b: Backend) -> TestResult {
    use ssobroker::console::{clients, Actor};
    let app = app(b).start().await?;
    let before = app.counts()?;
    let mut c = app.pool.get()?;
    for id in ["../users/x/disable?", "a/b", "..", "has space", "tab\tid", "café", ""] {
        let new = clients::NewClient {
            client_id: id.into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            ..clients::NewClient::default()
        };
        let refused = clients::create(&mut c, &app.cfg, new, &Actor::cli(), &Default::default(), app.now());
        assert!(refused.is_err(), "{id:?} accepted");
    }
    drop(c);
    assert_eq!(app.counts()?, before, "refused registrations write nothing");

    // The same rule for the CLI and the config file.
    let dir = tempfile::tempdir()?;
    let cli = Cli::new(&format!("sqlite://{}", dir.path().join("c.db").display()))?;
    let err = cli.fails(&["client", "add", "../x", "--redirect-uri", "https://app.example.com/cb"])?;
    assert!(err.contains("client id"), "{err}");
    let started = app_with_client_id(b, "../x").await;
    assert!(started.is_err(), "a config client id with a path is refused at start");
    Ok(())
}
both_backends!(client_ids_must_be_path_safe, client_ids_are_path_safe);

async fn app_with_client_id(b: Backend, id: &'static str) -> Result<TestApp, Box<dyn std::error::Error>> {
    app(b)
        .with_config(move |c| c.clients.push(FileClient::new(id, "https://app.example.com/cb")))
        .start()
        .await
}

/// A registered client's settings change in the console: each refusal says why, keeps what the
/// admin typed and writes nothing; a change is audited (only what changed, from and to) and
/// takes effect at the next authorize; a config-file client is not editable here.
async fn client_settings(b: Backend) -> TestResult {
    use ssobroker::console::{clients, Actor};
    let app = app(b).start().await?;
    let pw = create_admin(&app, "alice")?;
    let admin = admin_browser()?;
    let csrf = signed_in(&app, &admin, "alice", &pw).await?;
    let first = "http://127.0.0.1:9/mobile";
    let second = "http://127.0.0.1:9/mobile-2";
    {
        let mut c = app.pool.get()?;
        let new = clients::NewClient {
            client_id: "mobile".into(),
            redirect_uris: vec![first.into()],
            allowed_roles: vec!["finance".into()],
            ..clients::NewClient::default()
        };
        clients::create(&mut c, &app.cfg, new, &Actor::cli(), &Default::default(), app.now())?;
    }
    let url = format!("{}/admin/clients/mobile", app.base);
    let (status, page) = get_text(&admin, url.clone()).await?;
    assert_eq!(status, 200);
    assert!(page.contains(&format!(">{first}</textarea>")) && page.contains("value=\"finance\""), "{page}");
    let mobile_auth = |redirect: &str| {
        app.auth_url(&[]).replace("client_id=dashboard", "client_id=mobile").replace(
            &url::form_urlencoded::byte_serialize(REDIRECT_URI.as_bytes()).collect::<String>(),
            &url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
        )
    };
    assert!(app.authorize(&mobile_auth(second)).await.is_err(), "not registered yet");
    let stored = |app: &TestApp| -> Result<clients::ClientSettings, Error> {
        let mut c = app.pool.get()?;
        Ok(clients::ClientSettings::of(&clients::find(&mut c, &app.cfg, "mobile")?.0))
    };
    let before = (app.counts()?, stored(&app)?);

    let form = |redirects: &str, post_logout: &str, roles: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("redirect_uris", redirects.to_string()),
            ("post_logout_redirect_uris", post_logout.to_string()),
            ("allowed_roles", roles.to_string()),
            ("launch_url", String::new()),
        ]
    };
    for (fields, why) in [
        (form("", "", ""), "at least one redirect URI"),
        (form(first, "javascript://app.example/%0Aalert(1)", ""), "javascript scheme is not allowed"),
        (form(&format!("{first}#frag"), "", ""), "fragment"),
        (form(first, "", "has space"), "a role is 1-128 characters without spaces"),
    ] {
        let resp = admin.post(&url).form(&fields).send().await?;
        assert_eq!(resp.status(), 400, "{why}");
        let page = resp.text().await?;
        assert!(page.contains(why), "{why}: {page}");
        assert_eq!((app.counts()?, stored(&app)?), before, "{why}: nothing written");
    }
    // What the admin typed stays in the form after a refusal.
    let page = admin.post(&url).form(&form("", "", "has space")).send().await?.text().await?;
    assert!(page.contains("value=\"has space\""), "{page}");
    // Without the session's token, from another site, or for a config-file client: refused.
    let no_token: Vec<(&str, String)> = form(second, "", "").into_iter().skip(1).collect();
    assert_eq!(admin.post(&url).form(&no_token).send().await?.status(), 403);
    let cross =
        admin.post(&url).header("Origin", "https://evil.example").form(&form(second, "", "")).send().await?;
    assert_eq!(cross.status(), 403);
    let resp = admin
        .post(format!("{}/admin/clients/{CLIENT_ID}", app.base))
        .form(&form(second, "", ""))
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await?.contains("defined in the config file"));
    assert_eq!((app.counts()?, stored(&app)?), before, "refused: nothing written");

    // A change: post/redirect/get, saved, audited with only what changed. Fields the form does
    // not have (the id, the type, the secret) are ignored, not applied.
    let secret_of = |app: &TestApp| -> Result<Option<String>, Error> {
        let mut c = app.pool.get()?;
        Ok(ssobroker::store::clients::by_id(&mut c, "mobile")?.ok_or("no row")?.secret_hash)
    };
    let secret_before = secret_of(&app)?;
    assert!(secret_before.is_some(), "a confidential client");
    let mut fields = form(&format!("{first}\n{second}"), "", "");
    fields.extend([("public", "on".into()), ("client_id", "evil".into()), ("secret_hash", "x".into())]);
    let resp = admin.post(&url).form(&fields).send().await?;
    assert_eq!(resp.status(), 303);
    assert_eq!(secret_of(&app)?, secret_before, "still confidential, same secret");
    assert!(app.audit()?.iter().all(|e| e.client_id.as_deref() != Some("evil")));
    let to = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(to, "/admin/clients/mobile?done=updated");
    let (_, page) = get_text(&admin, format!("{}{to}", app.base)).await?;
    assert!(page.contains("Saved.") && page.contains(second), "{page}");
    let now = stored(&app)?;
    assert_eq!(now.redirect_uris, [first, second]);
    assert!(now.allowed_roles.is_empty(), "every user again");
    let row =
        app.audit()?.into_iter().rev().find(|e| e.kind == "client.updated").ok_or("no client.updated")?;
    assert_eq!((row.actor.as_deref(), row.client_id.as_deref()), (Some("local:alice"), Some("mobile")));
    let detail: serde_json::Value = serde_json::from_str(&row.detail)?;
    assert_eq!(detail["redirect_uris"]["to"], serde_json::json!([first, second]), "{detail}");
    assert_eq!(detail["allowed_roles"], serde_json::json!({"from": ["finance"], "to": []}), "{detail}");
    assert!(detail.get("launch_url").is_none(), "unchanged fields are not listed: {detail}");
    app.authorize(&mobile_auth(second)).await?;
    // The same form again changes nothing and writes nothing.
    let counted = app.counts()?;
    assert_eq!(
        admin.post(&url).form(&form(&format!("{first}\n{second}"), "", "")).send().await?.status(),
        303
    );
    assert_eq!(app.counts()?, counted);
    Ok(())
}
both_backends!(client_settings_change_in_the_console, client_settings);

/// The settings form shows each redirect URI on a line of its own and the allowed roles
/// comma-separated; what it shows must come back as it was, or an unrelated edit changes them.
async fn client_settings_round_trip(b: Backend) -> TestResult {
    use ssobroker::console::clients;
    let app = app(b).start().await?;
    let pw = create_admin(&app, "alice")?;
    let admin = admin_browser()?;
    let csrf = signed_in(&app, &admin, "alice", &pw).await?;
    let cli = Cli::for_app(&app)?;
    // A comma is legal in a URI's query (RFC 3986 sub-delims); here one URI that reads like two.
    let uri = "http://127.0.0.1:9/cb?next=http://127.0.0.1:9/a,http://127.0.0.1:8/other";
    cli.ok(&["client", "add", "mobile", "--redirect-uri", uri, "--post-logout-redirect-uri", uri])?;
    let stored = |app: &TestApp| -> Result<clients::ClientSettings, Error> {
        let mut c = app.pool.get()?;
        Ok(clients::ClientSettings::of(&clients::find(&mut c, &app.cfg, "mobile")?.0))
    };
    assert_eq!(stored(&app)?.redirect_uris, [uri]);

    // A role with a comma could never come back from the form as one role: refused at the CLI
    // (else the next console save would split it and let in users of either half).
    let before = (app.counts()?, stored(&app)?);
    let err = cli.fails(&["client", "update", "mobile", "--allowed-role", "finance,emea"])?;
    assert!(err.contains("role \"finance,emea\": an allowed role has no commas"), "{err}");
    let err =
        cli.fails(&["client", "add", "web", "--redirect-uri", uri, "--allowed-role", "finance,emea"])?;
    assert!(err.contains("an allowed role has no commas"), "{err}");
    assert_eq!((app.counts()?, stored(&app)?), before, "refused: nothing written");

    // The form as the page fills it, with only the refresh-token box ticked.
    let url = format!("{}/admin/clients/mobile", app.base);
    let resp = admin
        .post(&url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("redirect_uris", uri),
            ("post_logout_redirect_uris", uri),
            ("allowed_roles", ""),
            ("launch_url", ""),
            ("refresh_tokens", "on"),
        ])
        .send()
        .await?;
    assert_eq!(resp.status(), 303, "{}", resp.text().await?);
    let now = stored(&app)?;
    assert_eq!(now.redirect_uris, [uri], "the URI is kept whole");
    assert_eq!(now.post_logout_redirect_uris, [uri]);
    assert!(now.issue_refresh_token);
    let row =
        app.audit()?.into_iter().rev().find(|e| e.kind == "client.updated").ok_or("no client.updated")?;
    let detail: serde_json::Value = serde_json::from_str(&row.detail)?;
    assert!(detail.get("redirect_uris").is_none(), "only the box changed: {detail}");

    // Registering in the console: the same URI is one URI, and a role with a comma is two roles.
    let resp = admin
        .post(format!("{}/admin/clients", app.base))
        .form(&[
            ("csrf", csrf.as_str()),
            ("client_id", "web"),
            ("redirect_uris", uri),
            ("allowed_roles", "finance,emea"),
        ])
        .send()
        .await?;
    assert_eq!(resp.status(), 200, "{}", resp.text().await?);
    let mut c = app.pool.get()?;
    let web = clients::ClientSettings::of(&clients::find(&mut c, &app.cfg, "web")?.0);
    assert_eq!(web.redirect_uris, [uri]);
    assert_eq!(web.allowed_roles, ["finance", "emea"]);
    Ok(())
}
both_backends!(client_settings_round_trip_commas, client_settings_round_trip);

/// A client id no registration accepts (a space, a slash, markup; a NUL is refused before, see
/// below) is not a client: the pages and forms answer 404 on both backends, never a database
/// error.
async fn client_ids_that_cannot_exist(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let pw = create_admin(&app, "alice")?;
    let admin = admin_browser()?;
    let csrf = signed_in(&app, &admin, "alice", &pw).await?;
    let before = app.counts()?;
    for id in ["a%20b", "a%2Fb", "a%3Cb%3E"] {
        let url = format!("{}/admin/clients/{id}", app.base);
        assert_eq!(admin.get(&url).send().await?.status(), 404, "GET {id}");
        let resp =
            admin.post(&url).form(&[("csrf", csrf.as_str()), ("redirect_uris", REDIRECT_URI)]).send().await?;
        assert_eq!(resp.status(), 404, "POST {id}");
        assert!(resp.text().await?.contains("There is nothing at this address."), "POST {id}");
        // Rotation answers as for any client that is not registered.
        let resp = admin.post(format!("{url}/rotate-secret")).form(&[("csrf", csrf.as_str())]).send().await?;
        assert_eq!(resp.status(), 400, "rotate {id}");
        assert!(resp.text().await?.contains("no registered client"), "rotate {id}");
    }
    assert_eq!(app.counts()?, before, "nothing written");
    Ok(())
}
both_backends!(client_ids_that_cannot_exist_are_not_found, client_ids_that_cannot_exist);

/// A NUL character (percent-encoded) in an address is refused before any handler reads it, with
/// the page's usual headers: on PostgreSQL it reached queries as an error (a 500), on SQLite as
/// a miss. Nothing is written, and the console session goes on working.
async fn nul_in_addresses(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let pw = create_admin(&app, "alice")?;
    let admin = admin_browser()?;
    let csrf = signed_in(&app, &admin, "alice", &pw).await?;
    let base = &app.base;
    let before = app.counts()?;
    let gets = [
        format!("{base}/admin/users?q=a%00b"),
        format!("{base}/admin/users/a%00b"),
        format!("{base}/admin/audit?user=a%00b"),
        format!("{base}/admin/audit?kind=a%00b"),
        format!("{base}/admin/audit?connection=a%00B"),
        format!("{base}/admin/audit.csv?user=a%00b"),
        format!("{base}/admin/clients/a%00b"),
        format!("{base}/authorize?client_id=a%00b"),
    ];
    for u in gets {
        let resp = admin.get(&u).send().await?;
        assert_eq!(resp.status(), 400, "{u}");
        assert!(resp.headers().contains_key("content-security-policy"), "{u}: security headers too");
        assert!(resp.text().await?.contains("NUL character"), "{u}");
    }
    for u in [format!("{base}/admin/users/a%00b/disable"), format!("{base}/admin/clients/a%00b")] {
        let resp = admin.post(&u).form(&[("csrf", csrf.as_str())]).send().await?;
        assert_eq!(resp.status(), 400, "{u}");
    }
    // In a form body the address check does not see it: a URI with a NUL (or any control
    // character) is refused by the settings checks, on the form again.
    for (field, value) in
        [("redirect_uris", "https://app.example/cb\0x"), ("launch_url", "https://app.example/\0")]
    {
        let mut fields = vec![("csrf", csrf.clone()), ("client_id", "newapp".into())];
        fields.push(("redirect_uris", if field == "redirect_uris" { value } else { REDIRECT_URI }.into()));
        if field == "launch_url" {
            fields.push(("launch_url", value.into()));
        }
        let resp = admin.post(format!("{base}/admin/clients")).form(&fields).send().await?;
        let st = resp.status();
        let page = resp.text().await?;
        assert_eq!(st, 400, "{field}: the form again, as a refusal");
        assert!(page.contains("contains a control character"), "{field}: {page}");
        assert!(
            page.contains(r#"name="client_id" required value="newapp""#),
            "{field}: what was typed stays"
        );
    }
    assert_eq!(app.counts()?, before, "nothing written");
    assert_eq!(admin.get(format!("{base}/admin/users?q=ab")).send().await?.status(), 200);
    Ok(())
}
both_backends!(nul_characters_in_addresses_are_refused, nul_in_addresses);

/// A double (or eightfold) submit of the same grant or registration: one wins with its audit
/// row, the others are answered as for a repeat — never a 500 from the losing insert.
async fn double_submits(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    app.login_code("ada@example.com", &[]).await?;
    let user_id = app.audit()?.iter().find_map(|e| e.user_id.clone()).ok_or("no user")?;
    let pw = create_admin(&app, "alice")?;
    let admin = admin_browser()?;
    let csrf = signed_in(&app, &admin, "alice", &pw).await?;
    let add = format!("{}/admin/users/{user_id}/roles/add", app.base);
    let register = format!("{}/admin/clients", app.base);
    let grants =
        (0..8).map(|_| admin.post(&add).form(&[("csrf", csrf.as_str()), ("role", "auditor")]).send());
    let registrations = (0..8).map(|_| {
        admin
            .post(&register)
            .form(&[("csrf", csrf.as_str()), ("client_id", "twice"), ("redirect_uris", REDIRECT_URI)])
            .send()
    });
    let (grants, registrations) =
        tokio::join!(futures_util::future::join_all(grants), futures_util::future::join_all(registrations));
    for r in grants {
        assert_eq!(r?.status(), 303, "a repeated grant is done, not an error");
    }
    let mut created = 0;
    for r in registrations {
        let r = r?;
        let status = r.status();
        let page = r.text().await?;
        match status.as_u16() {
            200 => created += 1,
            400 => assert!(page.contains("already exists"), "{page}"),
            other => panic!("registration answered {other}: {page}"),
        }
    }
    assert_eq!(created, 1, "one registration");
    let audit = app.audit()?;
    assert_eq!(audit.iter().filter(|e| e.kind == "role.granted").count(), 1);
    assert_eq!(audit.iter().filter(|e| e.kind == "client.created").count(), 1);
    Ok(())
}
both_backends!(double_submits_are_repeats_not_errors, double_submits);
