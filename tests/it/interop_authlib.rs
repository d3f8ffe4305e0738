//! Interoperability with Authlib (Python) as the downstream OIDC app: tests/interop/authlib_rp.py
//! is the RP and the browser; this test is the SAML IdP (the broker's dev IdP, as in every other
//! test) through a one-line handshake on the script's stdio. Authlib does discovery, code + PKCE
//! with client_secret_basic, ID token validation against the JWKS, userinfo, the refresh grant
//! (rotation, replay) and RP-initiated logout; this test asserts on its JSON summary.

use crate::both_backends;
use crate::support::*;
use ssobroker::config::FileClient;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

const RP_ID: &str = "authlib-rp";
// A secret of characters that need no form-encoding: Authlib puts client_id:secret in the Basic
// header as they are, without the RFC 6749 §2.3.1 form-encoding the broker decodes.
const RP_SECRET: &str = "authlib-secret/0123456789abcdefghijklmnopqrstuvwxyz=";
const RP_REDIRECT: &str = "http://127.0.0.1:9/authlib/callback";
const RP_POST_LOGOUT: &str = "http://127.0.0.1:9/authlib/signed-out";
const EMAIL: &str = "grace@example.com";
const GROUPS: &[&str] = &["Engineering", "Everyone"];

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

/// The venv's interpreter (tests/interop/.venv, or the venv named by SSOBROKER_INTEROP_VENV), or
/// why there is none: a missing venv fails loudly (a silent skip would let CI pass without ever
/// talking to Authlib).
fn python() -> Result<PathBuf, String> {
    let venv = std::env::var_os("SSOBROKER_INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| interop_dir().join(".venv"));
    let python = venv.join("bin").join("python");
    if python.is_file() {
        Ok(python)
    } else {
        Err(format!(
            "{} is missing: run .ci/test (it builds tests/interop/.venv from requirements.txt), or set \
             SSOBROKER_SKIP_INTEROP=1 to skip the third-party interop tests",
            python.display()
        ))
    }
}

/// The running script: stderr goes to a file, so a chatty failure cannot fill a pipe.
struct Rp {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: tempfile::NamedTempFile,
}

impl Rp {
    fn spawn(python: &Path, app: &TestApp) -> Result<Rp, String> {
        let stderr = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let err_file = stderr.reopen().map_err(|e| e.to_string())?;
        let mut child = Command::new(python)
            .current_dir(interop_dir())
            .arg("authlib_rp.py")
            .args(["--base", &app.base, "--client-id", RP_ID, "--client-secret", RP_SECRET])
            .args([
                "--redirect-uri",
                RP_REDIRECT,
                "--post-logout-redirect-uri",
                RP_POST_LOGOUT,
                "--email",
                EMAIL,
            ])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Rp { child, stdout, stderr })
    }

    /// The script's failure, with its stderr (also printed as is: the test's error shows it
    /// escaped on one line).
    fn failed(mut self, what: &str, out: &str) -> String {
        drop(self.child.kill());
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let err = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let msg = format!("authlib_rp.py {what} ({status}):\n{err}\nstdout: {out}");
        eprintln!("{msg}");
        msg
    }

    /// The first line: the browser at the IdP.
    fn at_idp(mut self) -> Result<(Rp, serde_json::Value), String> {
        let mut line = String::new();
        if let Err(e) = self.stdout.read_line(&mut line) {
            return Err(self.failed(&format!("stdout unreadable: {e}"), ""));
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) if v["stage"] == "at_idp" => Ok((self, v)),
            _ => Err(self.failed("did not reach the IdP", &line)),
        }
    }

    /// Hands over the IdP's form and reads the rest: the last line is the JSON result.
    fn finish(mut self, form: &serde_json::Value) -> Result<serde_json::Value, String> {
        let sent = self.child.stdin.take().ok_or("no stdin").and_then(|mut stdin| {
            writeln!(stdin, "{form}").map_err(|_| "stdin closed")
            // stdin drops here: EOF for a script that would read again.
        });
        let mut out = String::new();
        if let Err(e) = self.stdout.read_to_string(&mut out) {
            return Err(self.failed(&format!("stdout unreadable: {e}"), &out));
        }
        let status = match self.child.wait() {
            Ok(s) => s,
            Err(e) => return Err(self.failed(&format!("wait: {e}"), &out)),
        };
        if let Err(e) = sent {
            return Err(self.failed(e, &out));
        }
        if !status.success() {
            return Err(self.failed("failed", &out));
        }
        let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        serde_json::from_str(last).map_err(|e| self.failed(&format!("printed no JSON result ({e})"), &out))
    }
}

async fn authlib_login_refresh_logout(backend: Backend) -> TestResult {
    if std::env::var("SSOBROKER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("SSOBROKER_SKIP_INTEROP=1: Authlib interop test skipped");
        return Ok(());
    }
    let python = python()?;
    let app = app(backend)
        .with_config(|c| {
            c.clients.push(FileClient {
                client_secret: Some(RP_SECRET.into()),
                post_logout_redirect_uris: vec![RP_POST_LOGOUT.into()],
                ..FileClient::new(RP_ID, RP_REDIRECT)
            });
        })
        .start()
        .await?;
    // Authlib checks exp and iat against the wall clock; the broker's pinned clock follows it.
    app.clock.set(chrono::Utc::now());

    // The script runs to the IdP on the blocking pool: the broker serves on this runtime.
    let rp = Rp::spawn(&python, &app)?;
    let (rp, at_idp) = actix_web::rt::task::spawn_blocking(move || rp.at_idp()).await??;

    // The IdP: the AuthnRequest is the broker's, for this IdP; answer it, signed.
    let location = url::Url::parse(at_idp["location"].as_str().ok_or("no location")?)?;
    assert_eq!(
        format!("{}{}", location.origin().ascii_serialization(), location.path()),
        "https://idp.test/sso"
    );
    let q: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    let request = ssobroker::devidp::parse_authn_request(q.get("SAMLRequest").ok_or("no SAMLRequest")?)?;
    assert_eq!(request.issuer.as_deref(), Some(app.connection().sp.entity_id.as_str()));
    let relay_state = q.get("RelayState").ok_or("no RelayState")?;
    let saml_response = app.idp.sign_response_b64(&app.response(Some(&request.id), EMAIL, GROUPS))?;
    let form = serde_json::json!({
        "acs": app.connection().sp.acs_url,
        "SAMLResponse": saml_response,
        "RelayState": relay_state,
    });
    let v = actix_web::rt::task::spawn_blocking(move || rp.finish(&form)).await??;

    // Login: what Authlib verified in the ID token and got from userinfo.
    assert_eq!(v["issuer"], app.base, "{v}");
    assert_eq!(v["id_token_alg"], "RS256", "{v}");
    assert!(v["id_token_kid"].is_string(), "{v}");
    assert_eq!(v["email"], EMAIL, "{v}");
    assert_eq!(v["email_verified"], true, "{v}");
    assert_eq!(v["given_name"], "Ada", "{v}");
    assert_eq!(v["family_name"], "Lovelace", "{v}");
    assert_eq!(v["roles"], serde_json::json!(["engineer", "user"]), "{v}");
    assert_eq!(v["groups"], serde_json::json!(GROUPS), "{v}");
    assert!(v["auth_time"].is_number(), "{v}");
    assert_eq!(v["nonce_ok"], true, "{v}");
    assert_eq!(v["at_hash"], true, "at_hash present and checked against the access token: {v}");
    assert_eq!(v["token_type"], "Bearer", "{v}");
    assert_eq!(v["scope"], "openid email profile offline_access", "{v}");
    assert_eq!(v["userinfo"]["sub"], v["sub"], "{v}");
    assert_eq!(v["userinfo"]["email"], EMAIL, "{v}");
    assert_eq!(v["userinfo"]["roles"], v["roles"], "{v}");

    // Refresh: rotated, the new ID token verified, the new access token works.
    let r = &v["refresh"];
    assert_eq!(r["rotated"], true, "a new refresh token on every use: {v}");
    assert_eq!(r["new_access_token"], true, "{v}");
    assert_eq!(r["new_id_token"], true, "{v}");
    assert_eq!(r["sub"], v["sub"], "{v}");
    assert_eq!(r["nonce"], serde_json::Value::Null, "a refreshed ID token carries no nonce: {v}");
    assert_eq!(r["userinfo_sub"], v["sub"], "{v}");
    assert_eq!(r["userinfo_email"], EMAIL, "{v}");
    // Replay of the used refresh token: invalid_grant, and the family and its grant die.
    assert_eq!(v["replay_error"], "invalid_grant", "{v}");
    assert_eq!(v["rotated_after_replay"], "invalid_grant", "{v}");
    assert_eq!(v["userinfo_after_replay"], "invalid_token", "{v}");
    // RP-initiated logout: SSO before it; 302 to the registered URI with state; the old
    // session cookie leads to the IdP after it.
    assert_eq!(v["sso_before_logout"], "app", "{v}");
    assert_eq!(v["logout"]["status"], 302, "{v}");
    assert_eq!(v["logout"]["location"], RP_POST_LOGOUT, "{v}");
    assert_eq!(v["logout"]["state_ok"], true, "{v}");
    assert_eq!(v["logout"]["cleared"], serde_json::json!(["ssobroker_session"]), "{v}");
    assert_eq!(v["after_logout"], "idp", "{v}");

    // The database agrees.
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1);
    assert_eq!(counts["sessions"], 1, "one login, one session (now ended)");
    assert_eq!(counts["auth_grants"], 2, "the login's grant and the SSO probe's code");
    assert_eq!(counts["refresh_tokens"], 2, "the original and its rotation");
    assert_eq!(counts["login_transactions"], 1, "only the post-logout probe's, stopped at the IdP");
    let audit = app.audit()?;
    let failed = |reason: &str| {
        audit.iter().filter(|e| e.kind == "token.failed" && e.reason.as_deref() == Some(reason)).count()
    };
    assert_eq!(failed("refresh_replayed"), 1, "the replay is audited");
    assert_eq!(failed("refresh_inactive"), 1, "the rotated token, dead after the replay");
    let logouts: Vec<_> = audit.iter().filter(|e| e.kind == "logout").collect();
    assert_eq!(logouts.len(), 1, "one logout audited");
    assert_eq!(logouts[0].client_id.as_deref(), Some(RP_ID));
    assert_eq!(logouts[0].connection_id.as_deref(), Some(CONNECTION));
    assert_eq!(
        audit.iter().filter(|e| e.kind == "login.succeeded").count(),
        2,
        "the login and the SSO probe"
    );
    Ok(())
}
both_backends!(authlib_rp, authlib_login_refresh_logout);
