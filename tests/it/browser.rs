//! The pages in a real browser: headless Chromium (Debian's `chromium`), driven by
//! playwright-core from tests/interop/browser.mjs, walks the real `ssobroker demo` the way
//! README's "A new admin's first steps" tells a new admin to: a demo login as a new user, the
//! user portal, the admin console (find the user, disable them), the refused next login and
//! its `user_disabled` row in the audit log; then connections, clients and the SSO admin
//! sign-in. It fails on console errors, page errors, 5xx answers and pages wider than a phone.
//! Screenshots of every page land in `target/tmp/browser/` (printed at the end).
//!
//! Also here, without a browser: the console's forms as a browser really posts them. Under the
//! site's `Referrer-Policy: no-referrer` Chromium sends `Origin: null` even from the console's
//! own pages, which an HTTP client never does (the browser run found that sign-in was refused).

use crate::admin_cli::Cli;
use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

/// The PNGs browser.mjs must leave behind: one per page (and phone-sized ones of a few).
const SCREENSHOTS: &[&str] = &[
    "01-demo-app",
    "02-dev-idp",
    "03-demo-app-claims",
    "04-portal",
    "04-portal-phone",
    "05-portal-signed-out",
    "06-portal-sign-in",
    "07-admin-login",
    "07-admin-login-phone",
    "08-admin-overview",
    "08-admin-overview-phone",
    "09-admin-users-search",
    "09-admin-users-search-phone",
    "10-admin-user",
    "11-admin-user-disabled",
    "11-admin-user-disabled-phone",
    "12-dev-idp-again",
    "13-login-refused",
    "13-login-refused-phone",
    "14-admin-audit",
    "15-admin-audit-refused",
    "15-admin-audit-refused-phone",
    "16-admin-connections",
    "17-admin-connection",
    "17-admin-connection-phone",
    "18-admin-clients",
    "19-admin-client",
    "20-admin-client-registered",
    "21-admin-signed-out",
    "22-dev-idp-admin",
    "23-admin-overview-sso",
    "24-admin-sso-signout-offer",
    "25-admin-sso-continue",
    "26-admin-sso-signed-out",
];

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Why the browser test cannot run, if it cannot: missing tools fail loudly, as in interop.rs
/// (a silent skip would let CI pass without a browser ever opening a page).
fn preflight() -> Result<(), String> {
    let hint = "run .ci/test (it installs Debian's chromium and runs `npm ci --prefix tests/interop`), \
                or set SSOBROKER_SKIP_INTEROP=1";
    let pkg = interop_dir().join("node_modules/playwright-core/package.json");
    if !pkg.is_file() {
        return Err(format!("{} is missing: {hint}", pkg.display()));
    }
    if !Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Err(format!("`node` is not on PATH: {hint}"));
    }
    if !Path::new(&chromium()).is_file() {
        return Err(format!("{} is missing: {hint}", chromium()));
    }
    Ok(())
}

/// The running demo; killed when the test ends, however it ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ssobroker demo` in `dir` and returns it with the admin name and password it printed.
fn start_demo(dir: &Path, listen: &str) -> Result<(Demo, String, String), Error> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssobroker"))
        .args(["demo", "--listen", listen])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(dir.join("demo.log"))?))
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let demo = Demo(child);
    // README: "`.ci/demo` prints an admin password at start", on the line
    // `name: admin   password: …   (new on every start)`. Read on a thread: a demo that dies
    // before printing it must not hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["name:", name, "password:", password, ..] = words.as_slice() {
                let _ = tx.send((name.to_string(), password.to_string()));
            }
        }
    });
    let (name, password) = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| {
        format!("the demo printed no admin password; its log: {}", dir.join("demo.log").display())
    })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(listen).is_err() {
        if Instant::now() > deadline {
            return Err(format!("the demo did not listen on {listen}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((demo, name, password))
}

/// PNG files start with this signature.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

#[test]
fn demo_admin_walk_in_chromium() -> TestResult {
    if std::env::var("SSOBROKER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("SSOBROKER_SKIP_INTEROP=1: browser test skipped");
        return Ok(());
    }
    preflight()?;
    let dir = tempfile::tempdir()?;
    // The demo's issuer is its listen address, so the port is fixed before it starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let (_demo, admin, password) = start_demo(dir.path(), &listen)?;

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    // Last run's pictures go: every file left must come from this run.
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new("node")
        .arg(interop_dir().join("browser.mjs"))
        .args([&format!("http://{listen}"), &admin, &password])
        .arg(&shots)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser.mjs failed ({}):\n{stdout}\n{stderr}\ndemo log: {}",
        out.status,
        std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default()
    );
    for name in SCREENSHOTS {
        let file = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        assert!(bytes.starts_with(PNG) && bytes.len() > 1000, "{} is not a real PNG", file.display());
    }
    println!("screenshots: {}", shots.display());
    Ok(())
}

/// The admin sign-in form's hidden token, from the page as served.
async fn login_form(browser: &reqwest::Client, base: &str) -> Result<String, Error> {
    let page = browser.get(format!("{base}/admin/login")).send().await?.text().await?;
    let marker = "name=\"csrf\" value=\"";
    let i = page.find(marker).ok_or("no csrf field")? + marker.len();
    Ok(page[i..i + page[i..].find('"').ok_or("unclosed value")?].to_string())
}

/// Signs in with the given fetch headers; the status the broker answered.
async fn post_login(app: &TestApp, password: &str, headers: &[(&str, &str)]) -> Result<u16, Error> {
    let browser =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()?;
    let csrf = login_form(&browser, &app.base).await?;
    let mut req = browser.post(format!("{}/admin/login", app.base)).form(&[
        ("name", "browser"),
        ("password", password),
        ("csrf", csrf.as_str()),
    ]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Ok(req.send().await?.status().as_u16())
}

#[actix_web::test]
async fn admin_forms_as_browsers_post_them() -> TestResult {
    let app = app(Backend::Sqlite).start().await?;
    let out = Cli::for_app(&app)?.ok(&["admin", "create", "browser"])?;
    let password = out.lines().find_map(|l| l.strip_prefix("password: ")).ok_or("no password")?.trim();
    let own = url::Url::parse(&app.base)?.origin().ascii_serialization();
    // The console's own page, as Chromium posts it under `Referrer-Policy: no-referrer`.
    let from_own_page = [("Origin", "null"), ("Sec-Fetch-Site", "same-origin")];
    assert_eq!(post_login(&app, password, &from_own_page).await?, 303, "Chromium's own-page form");
    assert_eq!(post_login(&app, password, &[("Origin", own.as_str())]).await?, 303);
    assert_eq!(post_login(&app, password, &[]).await?, 303, "a client that sends neither header");
    // Another site's form: an opaque origin the browser does not vouch for, or a browser that
    // says the request crossed sites, whatever Origin says.
    assert_eq!(post_login(&app, password, &[("Origin", "null")]).await?, 403);
    let cross = [("Origin", "null"), ("Sec-Fetch-Site", "cross-site")];
    assert_eq!(post_login(&app, password, &cross).await?, 403);
    let same_site = [("Origin", own.as_str()), ("Sec-Fetch-Site", "same-site")];
    assert_eq!(post_login(&app, password, &same_site).await?, 403);
    assert_eq!(post_login(&app, password, &[("Origin", "https://evil.example")]).await?, 403);
    Ok(())
}
