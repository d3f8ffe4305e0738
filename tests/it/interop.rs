//! Interoperability with third-party implementations: samlify (Node.js) is the company's SAML
//! IdP and publishes the metadata the broker trusts, openid-client (Node.js) is the downstream
//! OIDC app; tests/interop/interop.mjs drives them as the browser would. Nothing on the SAML or
//! OIDC wire here comes from the broker's own crates or its dev IdP. Beyond login, the RP
//! refreshes (rotation), replays a used refresh token, and logs out (RP-initiated logout).

use crate::both_backends;
use crate::support::*;
use ssobroker::config::FileClient;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const CONN: &str = "samlify";
const IDP_ENTITY_ID: &str = "https://idp.interop.test/metadata";
const IDP_SSO_URL: &str = "https://idp.interop.test/sso";
const RP_ID: &str = "interop-rp";
// Characters that RFC 6749 §2.3.1 says a client must form-encode inside Basic credentials: a
// strict RP encodes them, so the broker's decoding is exercised too.
const RP_SECRET: &str = "interop:secret/with+special chars&=0123456789";
const RP_REDIRECT: &str = "http://127.0.0.1:9/interop/callback";
const RP_POST_LOGOUT: &str = "http://127.0.0.1:9/interop/signed-out";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

/// Why the interop tests cannot run, if they cannot: a missing toolchain fails loudly (a
/// silent skip would let CI pass without ever talking to a third-party implementation).
fn preflight() -> Result<(), String> {
    let modules = interop_dir().join("node_modules");
    for pkg in ["samlify", "openid-client", "@authenio/samlify-node-xmllint"] {
        if !modules.join(pkg).join("package.json").is_file() {
            return Err(format!(
                "{} lacks {pkg}: run .ci/test (it runs `npm ci --prefix tests/interop`), or set \
                 SSOBROKER_SKIP_INTEROP=1 to skip the third-party interop tests",
                modules.display()
            ));
        }
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => {
            Err("`node` is not on PATH: run .ci/test (it installs Node.js), or set SSOBROKER_SKIP_INTEROP=1"
                .into())
        }
    }
}

/// The node command line shared by every mode.
fn node(mode: &str, key: &Path, cert: &Path) -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(interop_dir())
        .arg("interop.mjs")
        .arg(mode)
        .arg("--key")
        .arg(key)
        .arg("--cert")
        .arg(cert)
        .args(["--entity-id", IDP_ENTITY_ID, "--sso-url", IDP_SSO_URL]);
    cmd
}

/// A running node: stderr goes to a file, so a chatty failure cannot fill a pipe and stall
/// the child while stdout is being read.
struct Node {
    child: Child,
    stderr: tempfile::NamedTempFile,
}

fn spawn(mut cmd: Command, stdin: Stdio) -> Result<Node, String> {
    let stderr = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let err_file = stderr.reopen().map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    Ok(Node { child, stderr })
}

/// Reads what is left of stdout, waits, and returns all of stdout, or an error with stderr.
fn finish(mut node: Node, already: String) -> Result<String, String> {
    let mut out = already;
    if let Some(mut s) = node.child.stdout.take() {
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    }
    let status = node.child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        let err = std::fs::read_to_string(node.stderr.path()).unwrap_or_default();
        return Err(format!("interop.mjs failed ({status}):\n{err}\nstdout: {out}"));
    }
    Ok(out)
}

/// Runs node on the blocking pool: the broker serves on this test's runtime, so waiting for
/// the child here must not block it.
async fn run(cmd: Command) -> Result<String, Box<dyn std::error::Error>> {
    let out = actix_web::rt::task::spawn_blocking(move || finish(spawn(cmd, Stdio::null())?, String::new()))
        .await??;
    Ok(out)
}

/// The script's result: the last line it printed, as JSON.
fn result(out: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("interop.mjs printed no JSON result ({e}): {out}").into())
}

struct Idp {
    _dir: tempfile::TempDir,
    key: PathBuf,
    cert: PathBuf,
}

impl Idp {
    /// Key pair + the metadata samlify writes for it (what an admin would paste).
    async fn new() -> Result<(Idp, PathBuf), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (key, cert) = key_pair(dir.path(), "idp", "samlify interop IdP")?;
        let xml = run(node("metadata", &key, &cert)).await?;
        assert!(xml.contains(r#"use="signing""#), "samlify metadata has a signing key: {xml}");
        let metadata = dir.path().join("samlify-idp.xml");
        std::fs::write(&metadata, xml)?;
        Ok((Idp { _dir: dir, key, cert }, metadata))
    }

    fn login(&self, app: &TestApp, email: &str, groups: &[&str], sign: &str) -> Command {
        let mut cmd = node("login", &self.key, &self.cert);
        cmd.args(["--base", &app.base, "--connection", CONN])
            .args(["--client-id", RP_ID, "--client-secret", RP_SECRET, "--redirect-uri", RP_REDIRECT])
            .args(["--email", email, "--first", "Ada", "--last", "Lovelace"])
            .args(["--groups", &groups.join(","), "--sign", sign]);
        cmd
    }
}

/// The samlify IdP as the only connection, and the openid-client app as a confidential client.
async fn broker(backend: Backend, metadata: PathBuf) -> Result<TestApp, Box<dyn std::error::Error>> {
    app(backend)
        .with_config(move |c| {
            let conn = &mut c.connections[0];
            conn.id = CONN.into();
            conn.display_name = Some("samlify".into());
            conn.metadata_file = metadata;
            c.clients.push(FileClient {
                client_secret: Some(RP_SECRET.into()),
                post_logout_redirect_uris: vec![RP_POST_LOGOUT.into()],
                ..FileClient::new(RP_ID, RP_REDIRECT)
            });
        })
        .start()
        .await
}

/// One whole login through the third-party parties; returns what the RP verified. With
/// `lifecycle` the RP goes on to refresh, replay and log out (`v["lifecycle"]`).
async fn rp_login(
    app: &TestApp,
    idp: &Idp,
    email: &str,
    groups: &[&str],
    sign: &str,
    lifecycle: bool,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    // samlify and openid-client read the wall clock; the broker's pinned clock follows it.
    app.clock.set(chrono::Utc::now());
    let mut cmd = idp.login(app, email, groups, sign);
    if lifecycle {
        cmd.args(["--refresh-and-logout", "--post-logout-redirect-uri", RP_POST_LOGOUT]);
    }
    let out = run(cmd).await?;
    let v = result(&out)?;
    assert_eq!(v["email"], email, "{v}");
    assert_eq!(v["email_verified"], true, "{v}");
    assert_eq!(v["given_name"], "Ada", "{v}");
    assert_eq!(v["family_name"], "Lovelace", "{v}");
    assert_eq!(v["groups"], serde_json::json!(groups), "{v}");
    assert_eq!(v["id_token_alg"], "RS256", "{v}");
    assert!(v["auth_time"].is_number(), "{v}");
    assert_eq!(v["userinfo"]["sub"], v["sub"], "{v}");
    assert_eq!(v["userinfo"]["email"], email, "{v}");
    assert_eq!(v["scope"], "openid email profile offline_access", "{v}");
    assert_eq!(v["refresh_token"], true, "offline_access gives a refresh token: {v}");
    Ok(v)
}

/// What openid-client saw after login 1: refresh, replay, logout (see refreshAndLogout).
fn assert_lifecycle(v: &serde_json::Value, sub: &serde_json::Value, email: &str) {
    let l = &v["lifecycle"];
    assert!(l["end_session_endpoint"].as_str().is_some_and(|e| e.ends_with("/logout")), "{l}");
    // The refresh grant rotated the refresh token and issued tokens that verify and work.
    let r = &l["refresh"];
    assert_eq!(r["rotated"], true, "a new refresh token on every use: {l}");
    assert_eq!(r["new_access_token"], true, "{l}");
    assert_eq!(r["new_id_token"], true, "{l}");
    assert_eq!(r["sub"], *sub, "{l}");
    assert_eq!(r["nonce"], serde_json::Value::Null, "a refreshed ID token carries no nonce: {l}");
    assert_eq!(r["userinfo_sub"], *sub, "the new access token works at userinfo: {l}");
    assert_eq!(r["userinfo_email"], email, "{l}");
    // The used refresh token again: invalid_grant, and the whole family is gone with it.
    assert_eq!(l["replay_error"], "invalid_grant", "{l}");
    assert_eq!(l["rotated_after_replay"], "invalid_grant", "replay revoked the rotated token: {l}");
    assert_eq!(l["userinfo_after_replay"], "invalid_token", "replay revoked the grant's access tokens: {l}");
    // RP-initiated logout: SSO before it, the IdP again after it. samlify's metadata lists a
    // SingleLogoutService, so the logout went through it: our signed LogoutRequest, verified by
    // samlify against our SP metadata, and samlify's signed LogoutResponse.
    assert_eq!(l["sso_before_logout"], "app", "the broker session answered without the IdP: {l}");
    let slo = &l["slo"];
    assert_eq!(slo["name_id"], email, "{l}");
    assert_eq!(slo["session_index"], true, "{l}");
    assert_eq!(slo["signature_checked"], true, "{l}");
    assert_eq!(slo["tamper_rejected"], true, "samlify really checks our signature: {l}");
    assert_eq!(slo["answer_signed"], true, "{l}");
    assert!(slo["answer_to"].as_str().is_some_and(|a| a.ends_with("/slo")), "{l}");
    assert_eq!(l["logout"]["status"], 302, "{l}");
    assert_eq!(l["logout"]["location"], RP_POST_LOGOUT, "{l}");
    assert_eq!(l["logout"]["state_ok"], true, "state comes back to the app: {l}");
    assert_eq!(l["logout"]["cleared"], serde_json::json!(["ssobroker_session"]), "{l}");
    assert_eq!(l["after_logout"], "idp", "the old session cookie no longer logs in: {l}");
}

async fn third_party_login(backend: Backend) -> TestResult {
    if std::env::var("SSOBROKER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("SSOBROKER_SKIP_INTEROP=1: third-party interop test skipped");
        return Ok(());
    }
    preflight()?;
    let (idp, metadata) = Idp::new().await?;
    let app = broker(backend, metadata).await?;

    // First login: JIT provisioning, default role plus the role mapped from Engineering; then
    // refresh, replay and logout.
    let first =
        rp_login(&app, &idp, "ada@example.com", &["Engineering", "Everyone"], "assertion", true).await?;
    assert_eq!(first["roles"], serde_json::json!(["engineer", "user"]), "{first}");
    assert_eq!(first["userinfo"]["roles"], first["roles"], "{first}");
    assert_lifecycle(&first, &first["sub"], "ada@example.com");
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1);
    assert_eq!(counts["federated_identities"], 1);
    // The login's transaction was consumed; the one left is the post-logout probe's, which
    // stopped at the IdP.
    assert_eq!(counts["login_transactions"], 1);
    assert_eq!(counts["sessions"], 1, "one login, one session (now ended)");
    assert_eq!(counts["auth_grants"], 2, "the login's grant and the SSO probe's code");
    assert_eq!(counts["refresh_tokens"], 2, "the original and its rotation");
    let audit = app.audit()?;
    let failed = |reason: &str| {
        audit.iter().filter(|e| e.kind == "token.failed" && e.reason.as_deref() == Some(reason)).count()
    };
    assert_eq!(failed("refresh_replayed"), 1, "the replay is audited");
    assert_eq!(failed("refresh_inactive"), 1, "the rotated token, dead after the replay");
    let logouts: Vec<_> = audit.iter().filter(|e| e.kind == "logout").collect();
    assert_eq!(logouts.len(), 1, "one logout audited");
    assert_eq!(logouts[0].client_id.as_deref(), Some(RP_ID));
    assert_eq!(logouts[0].connection_id.as_deref(), Some(CONN));

    // Second login, new browser (each node run has its own cookie jar), response and
    // assertion both signed: same sub, still one user.
    let second = rp_login(&app, &idp, "ada@example.com", &["Engineering", "Everyone"], "both", false).await?;
    assert_eq!(second["sub"], first["sub"], "a second login keeps the sub");
    assert_eq!(second["roles"], first["roles"]);
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1, "no second user");
    assert_eq!(counts["federated_identities"], 1);
    let kinds: Vec<String> = app.audit()?.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "user.provisioned").count(), 1);
    // login.succeeded: login 1, the SSO probe before the logout, login 2.
    assert_eq!(kinds.iter().filter(|k| *k == "login.succeeded").count(), 3);

    // Tampered: NameID edited after samlify signed. The script stops right before the ACS
    // post so the snapshot excludes the login transaction its /authorize opened.
    app.clock.set(chrono::Utc::now());
    let mut cmd = idp.login(&app, "ada@example.com", &["Engineering"], "assertion");
    cmd.args(["--tamper", "--pause-before-acs"]);
    let (node, reader, seen, paused) = actix_web::rt::task::spawn_blocking(move || {
        let mut node = spawn(cmd, Stdio::piped())?;
        let mut reader = BufReader::new(node.child.stdout.take().ok_or("no stdout")?);
        // Everything up to the pause marker; an empty read is EOF (node ended early).
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                break Ok::<_, String>((node, reader, seen, false));
            }
            let paused = line.contains(r#""stage":"at_acs""#);
            seen.push_str(&line);
            if paused {
                break Ok((node, reader, seen, true));
            }
        }
    })
    .await??;
    if !paused {
        let why = match finish(node, seen) {
            Ok(out) => format!("it exited without pausing: {out}"),
            Err(e) => e,
        };
        return Err(format!("tamper run did not reach the ACS: {why}").into());
    }
    let before = app.counts()?;
    let out = actix_web::rt::task::spawn_blocking(move || {
        let (mut node, mut reader) = (node, reader);
        node.child.stdin.take().ok_or("no stdin")?.write_all(b"go\n").map_err(|e| e.to_string())?;
        let mut out = String::new();
        reader.read_to_string(&mut out).map_err(|e| e.to_string())?;
        finish(node, out)
    })
    .await??;
    let v = result(&out)?;
    assert_eq!(v["acs_status"], 403, "tampered response refused: {v}");
    assert_eq!(v["set_cookie"], false, "no session for a refused login: {v}");
    assert_eq!(v["support_reference"], true, "error page carries a reference: {v}");
    let after = app.counts()?;
    for (table, n) in &after {
        let expected = before[table] + i64::from(*table == "audit_events");
        assert_eq!(*n, expected, "table {table} changed on the refused login");
    }
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(last.kind, "login.failed");
    assert_eq!(last.reason.as_deref(), Some("signature_invalid"));
    assert_eq!(last.connection_id.as_deref(), Some(CONN));
    Ok(())
}
both_backends!(samlify_idp_and_openid_client_rp, third_party_login);
