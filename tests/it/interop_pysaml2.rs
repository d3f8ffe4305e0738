//! Interoperability with pysaml2 (Python) as the company's SAML IdP: tests/interop/pysaml2_idp.py
//! writes the IdP metadata the broker trusts, loads the broker's SP metadata from its URL, parses
//! the broker's AuthnRequest with pysaml2's own request handling and answers it with
//! `Server.create_authn_response`: the Response signed, the Assertion signed, both, and the
//! Assertion encrypted (in each signing mode) to the encryption certificate the SP metadata
//! publishes for the connection's `sp_key_file`/`sp_cert_file`. This test is the browser: it
//! follows /authorize to the IdP, hands the redirect to the script, posts the form pysaml2
//! rendered to the ACS and redeems the code. Nothing in the SAMLResponse comes from the broker's
//! crates or its dev IdP.
//!
//! pysaml2 7.5 encrypts with tripledes-cbc unless told otherwise (the script's `--encrypt
//! aes256-cbc` swaps its cipher, as a deployment has to); the broker does not decrypt 3DES, so
//! pysaml2 as it ships is refused with `algorithm_not_allowed`, which this test pins too.

use crate::both_backends;
use crate::support::*;
use base64::Engine;
use ssobroker::provisioning::Vendor;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const CONN: &str = "pysaml2";
pub(crate) const IDP_ENTITY_ID: &str = "https://idp.pysaml2.test/metadata";
const IDP_SSO_URL: &str = "https://idp.pysaml2.test/sso";
// A persistent NameID, opaque as pysaml2 IdPs make them: the same person in every mode.
pub(crate) const NAME_ID: &str = "pysaml2-7f3c9a41e0b2d6";
const MAIL: &str = "ada@example.com";
const GROUPS: &[&str] = &["Engineering", "Everyone"];

const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";

pub(crate) fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

/// The interop venv's interpreter (tests/interop/.venv, or the venv named by
/// SSOBROKER_INTEROP_VENV), or why there is none: a missing venv fails loudly (a silent skip
/// would let CI pass without ever talking to pysaml2).
pub(crate) fn python() -> Result<PathBuf, String> {
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

/// Runs the script to its end on the blocking pool (the broker serves on this test's runtime)
/// and returns its stdout, or an error with its stderr.
pub(crate) async fn run(mut cmd: Command) -> Result<String, Box<dyn std::error::Error>> {
    let out = actix_web::rt::task::spawn_blocking(move || cmd.output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("No module named 'saml2'") {
            "\npysaml2 is not in the venv: run .ci/test (it installs tests/interop/requirements.txt)"
        } else {
            ""
        };
        let msg = format!("pysaml2_idp.py failed ({}):\n{stderr}\nstdout: {stdout}{hint}", out.status);
        eprintln!("{msg}");
        return Err(msg.into());
    }
    Ok(stdout)
}

/// The pysaml2 IdP: its key pair, its SingleLogoutService (URL and binding) if it has one, and
/// the metadata pysaml2 writes for it.
pub(crate) struct Idp {
    dir: tempfile::TempDir,
    python: PathBuf,
    key: PathBuf,
    cert: PathBuf,
    slo: Option<(&'static str, &'static str)>,
}

impl Idp {
    async fn new(python: PathBuf) -> Result<(Idp, PathBuf), Box<dyn std::error::Error>> {
        Idp::build(python, None).await
    }

    /// An IdP with a SingleLogoutService at `url` over `binding` (`redirect` or `post`).
    pub(crate) async fn with_slo(
        python: PathBuf,
        url: &'static str,
        binding: &'static str,
    ) -> Result<(Idp, PathBuf), Box<dyn std::error::Error>> {
        Idp::build(python, Some((url, binding))).await
    }

    async fn build(
        python: PathBuf,
        slo: Option<(&'static str, &'static str)>,
    ) -> Result<(Idp, PathBuf), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (key, cert) = key_pair(dir.path(), "idp", "pysaml2 interop IdP")?;
        let idp = Idp { dir, python, key, cert, slo };
        let xml = run(idp.command("metadata")).await?;
        assert!(xml.contains(r#"use="signing""#), "pysaml2 metadata has a signing key: {xml}");
        assert_eq!(xml.contains("SingleLogoutService"), slo.is_some(), "{xml}");
        let metadata = idp.dir.path().join("pysaml2-idp.xml");
        std::fs::write(&metadata, xml)?;
        Ok((idp, metadata))
    }

    pub(crate) fn command(&self, what: &str) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.current_dir(interop_dir())
            .arg("pysaml2_idp.py")
            .arg(what)
            .args(["--entity-id", IDP_ENTITY_ID, "--sso-url", IDP_SSO_URL])
            .arg("--key")
            .arg(&self.key)
            .arg("--cert")
            .arg(&self.cert)
            .args(self.slo.iter().flat_map(|&(url, binding)| ["--slo-url", url, "--slo-binding", binding]))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // pysaml2 imports a cipher mode that cryptography has deprecated; noise on stderr.
            .env("PYTHONWARNINGS", "ignore");
        cmd
    }

    /// The IdP's answer to the browser that arrived at `location`: the HTTP-POST form fields.
    async fn respond(
        &self,
        app: &TestApp,
        location: &str,
        mode: &Mode,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        let mut cmd = self.command("respond");
        cmd.args(["--sp-metadata-url", &format!("{}/saml/{CONN}/metadata", app.base)])
            .args(["--location", location, "--sign", mode.sign])
            .args(["--name-id", NAME_ID, "--mail", MAIL, "--given-name", "Ada", "--surname", "Lovelace"])
            .args(["--groups", &GROUPS.join(",")]);
        if let Some(e) = mode.encrypt {
            cmd.args(["--encrypt", e]);
        }
        let out = run(cmd).await?;
        let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        serde_json::from_str(last)
            .map_err(|e| format!("pysaml2_idp.py printed no JSON form ({e}): {out}").into())
    }
}

/// How pysaml2 is asked to answer.
pub(crate) struct Mode {
    pub(crate) name: &'static str,
    pub(crate) sign: &'static str,
    pub(crate) encrypt: Option<&'static str>,
}

/// What pysaml2 put on the wire, read back so that a mode cannot silently turn into another
/// (a Response that should be signed but is not would still log in when the Assertion is).
#[derive(Debug)]
struct Wire {
    response_signed: bool,
    /// None when the assertion is encrypted (its signature is inside the ciphertext).
    assertion_signed: Option<bool>,
    /// The data and key transport algorithms of the EncryptedAssertion.
    encryption: Option<(String, String)>,
    signature_methods: Vec<String>,
    digest_methods: Vec<String>,
}

fn wire(saml_response_b64: &str) -> Result<Wire, Box<dyn std::error::Error>> {
    let xml = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(saml_response_b64)?)?;
    let doc = roxmltree::Document::parse(&xml)?;
    let root = doc.root_element();
    assert!(root.has_tag_name((NS_PROTOCOL, "Response")), "{xml}");
    let signed = |n: roxmltree::Node| n.children().any(|c| c.has_tag_name((NS_DSIG, "Signature")));
    let child = |n: roxmltree::Node<'_, '_>, ns: &str, name: &str| {
        n.children().find(|c| c.has_tag_name((ns, name))).map(|c| c.id())
    };
    let algorithms = |ns: &str, name: &str| -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name((ns, name)))
            .filter_map(|n| n.attribute("Algorithm").map(str::to_string))
            .collect()
    };
    let assertion = child(root, NS_ASSERTION, "Assertion").and_then(|id| doc.get_node(id));
    let encrypted = child(root, NS_ASSERTION, "EncryptedAssertion").and_then(|id| doc.get_node(id));
    let encryption = encrypted.map(|e| {
        let methods: Vec<String> = e
            .descendants()
            .filter(|n| n.has_tag_name((NS_XENC, "EncryptionMethod")))
            .filter_map(|n| n.attribute("Algorithm").map(str::to_string))
            .collect();
        // EncryptedData's own method comes first in document order, its EncryptedKey's after.
        (methods.first().cloned().unwrap_or_default(), methods.get(1).cloned().unwrap_or_default())
    });
    Ok(Wire {
        response_signed: signed(root),
        assertion_signed: assertion.map(signed),
        encryption,
        signature_methods: algorithms(NS_DSIG, "SignatureMethod"),
        digest_methods: algorithms(NS_DSIG, "DigestMethod"),
    })
}

/// The pysaml2 IdP as the only connection (the Generic attribute preset: pysaml2 sends URI
/// names such as urn:oid:0.9.2342.19200300.100.1.3 with FriendlyNames), with an SP key pair for
/// encrypted assertions.
pub(crate) async fn broker(
    backend: Backend,
    metadata: PathBuf,
    sp: (PathBuf, PathBuf),
) -> Result<TestApp, Box<dyn std::error::Error>> {
    app(backend)
        .with_config(move |c| {
            let conn = &mut c.connections[0];
            conn.id = CONN.into();
            conn.display_name = Some("pysaml2".into());
            conn.vendor = Vendor::Generic;
            conn.metadata_file = metadata;
            conn.sp_key_file = Some(sp.0);
            conn.sp_cert_file = Some(sp.1);
        })
        .start()
        .await
}

/// /authorize in a new browser (no broker session, so every login goes to the IdP), and
/// pysaml2's answer to the AuthnRequest it leads to.
pub(crate) async fn at_idp(
    app: &mut TestApp,
    idp: &Idp,
    mode: &Mode,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    app.new_browser()?;
    // pysaml2 stamps the wall clock; the broker's pinned clock follows it.
    app.clock.set(chrono::Utc::now());
    let resp = app.browser.get(app.auth_url(&[])).send().await?;
    assert_eq!(resp.status(), 302, "{}: /authorize goes to the IdP", mode.name);
    let location = resp.headers().get("location").ok_or("no Location")?.to_str()?.to_string();
    let form = idp.respond(app, &location, mode).await?;
    assert_eq!(
        form["action"],
        app.connection().sp.acs_url,
        "{}: pysaml2 posts to the ACS: {form}",
        mode.name
    );
    Ok(form)
}

/// The browser posts pysaml2's form to the ACS.
pub(crate) async fn post_form(
    app: &TestApp,
    form: &serde_json::Value,
) -> Result<reqwest::Response, Box<dyn std::error::Error>> {
    let saml_response = form["SAMLResponse"].as_str().ok_or("no SAMLResponse")?;
    let relay_state = form["RelayState"].as_str().ok_or("pysaml2 dropped the RelayState")?;
    let fields = [("SAMLResponse", saml_response), ("RelayState", relay_state)];
    Ok(app.browser.post(&app.connection().sp.acs_url).form(&fields).send().await?)
}

/// One whole login with pysaml2 answering as `mode` says; returns what /userinfo says.
async fn login(
    app: &mut TestApp,
    idp: &Idp,
    mode: &Mode,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let m = mode.name;
    let form = at_idp(app, idp, mode).await?;
    let w = wire(form["SAMLResponse"].as_str().ok_or("no SAMLResponse")?)?;
    assert_eq!(w.response_signed, matches!(mode.sign, "response" | "both"), "{m}: {w:?}");
    match mode.encrypt {
        None => {
            assert_eq!(w.encryption, None, "{m}: {w:?}");
            assert_eq!(w.assertion_signed, Some(matches!(mode.sign, "assertion" | "both")), "{m}: {w:?}");
        }
        Some(_) => {
            assert_eq!(w.assertion_signed, None, "{m}: no plaintext Assertion next to the encrypted one");
            let (data, key) = w.encryption.as_ref().ok_or(format!("{m}: no EncryptedAssertion"))?;
            assert_eq!((data.as_str(), key.as_str()), (AES256_CBC, RSA_OAEP_MGF1P), "{m}: {w:?}");
        }
    }
    // The signatures in sight (an encrypted Assertion's own is inside the ciphertext): RSA-SHA256
    // with SHA-256 digests, as asked.
    if w.response_signed || mode.encrypt.is_none() {
        assert!(!w.signature_methods.is_empty(), "{m}: {w:?}");
    }
    assert!(w.signature_methods.iter().all(|a| a == RSA_SHA256), "{m}: {w:?}");
    assert!(w.digest_methods.iter().all(|a| a == SHA256), "{m}: {w:?}");

    let q = redirect_query(post_form(app, &form).await?).await.map_err(|e| format!("{m}: ACS: {e}"))?;
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"), "{m}: {q:?}");
    let code = q.get("code").ok_or(format!("{m}: no code in {q:?}"))?;
    let tokens: serde_json::Value = app.token(code).await?.json().await?;
    let access_token = tokens["access_token"].as_str().ok_or(format!("{m}: no access token: {tokens}"))?;
    assert!(tokens["id_token"].is_string(), "{m}: {tokens}");
    let info: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(access_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(info["email"], MAIL, "{m}: {info}");
    assert_eq!(info["given_name"], "Ada", "{m}: {info}");
    assert_eq!(info["family_name"], "Lovelace", "{m}: {info}");
    assert_eq!(info["groups"], serde_json::json!(GROUPS), "{m}: {info}");
    assert_eq!(info["roles"], serde_json::json!(["engineer", "user"]), "{m}: {info}");
    Ok(info)
}

const MODES: &[Mode] = &[
    Mode { name: "response-signed", sign: "response", encrypt: None },
    Mode { name: "assertion-signed", sign: "assertion", encrypt: None },
    Mode { name: "both-signed", sign: "both", encrypt: None },
    // Shibboleth's and ADFS's shape: an unsigned Response around the signed, encrypted Assertion.
    Mode { name: "encrypted, assertion-signed", sign: "assertion", encrypt: Some("aes256-cbc") },
    // Okta's and Entra ID's: the Response signed around the ciphertext.
    Mode { name: "encrypted, response-signed", sign: "response", encrypt: Some("aes256-cbc") },
    Mode { name: "encrypted, both-signed", sign: "both", encrypt: Some("aes256-cbc") },
];

async fn pysaml2_logins(backend: Backend) -> TestResult {
    if std::env::var("SSOBROKER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("SSOBROKER_SKIP_INTEROP=1: pysaml2 interop test skipped");
        return Ok(());
    }
    let (idp, metadata) = Idp::new(python()?).await?;
    let sp_dir = tempfile::tempdir()?;
    let sp = key_pair(sp_dir.path(), "sp", "broker SP encryption")?;
    let mut app = broker(backend, metadata, sp).await?;
    let sp_metadata = reqwest::get(format!("{}/saml/{CONN}/metadata", app.base)).await?.text().await?;
    assert!(sp_metadata.contains(r#"<md:KeyDescriptor use="encryption">"#), "{sp_metadata}");

    let mut subs = Vec::new();
    for mode in MODES {
        let info = login(&mut app, &idp, mode).await?;
        subs.push(info["sub"].clone());
    }
    // One person, whatever the shape of the response: JIT on the first login, found after.
    assert!(subs.iter().all(|s| s.is_string() && *s == subs[0]), "{subs:?}");
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1);
    assert_eq!(counts["federated_identities"], 1);
    let audit = app.audit()?;
    let kind = |k: &str| audit.iter().filter(|e| e.kind == k).count();
    assert_eq!(kind("user.provisioned"), 1);
    assert_eq!(kind("login.succeeded"), MODES.len());
    assert_eq!(kind("login.failed"), 0);
    assert!(audit
        .iter()
        .filter(|e| e.kind == "login.succeeded")
        .all(|e| e.connection_id.as_deref() == Some(CONN)));

    // pysaml2 as it ships encrypts with tripledes-cbc: a clean refusal, nothing written but the
    // audit row.
    let mode =
        Mode { name: "encrypted with pysaml2's default cipher", sign: "both", encrypt: Some("default") };
    let form = at_idp(&mut app, &idp, &mode).await?;
    let w = wire(form["SAMLResponse"].as_str().ok_or("no SAMLResponse")?)?;
    let (data, _) = w.encryption.ok_or("no EncryptedAssertion")?;
    assert_eq!(data, "http://www.w3.org/2001/04/xmlenc#tripledes-cbc");
    let before = app.counts()?;
    let resp = post_form(&app, &form).await?;
    let status = resp.status();
    let set_cookie = resp.headers().get("set-cookie").is_some();
    let body = resp.text().await?;
    assert_eq!(status, 403, "{body}");
    assert!(!set_cookie, "no session for a refused login");
    assert!(body.contains("Support reference"), "{body}");
    for (table, n) in app.counts()? {
        assert_eq!(n, before[table] + i64::from(table == "audit_events"), "table {table} changed");
    }
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(last.kind, "login.failed");
    assert_eq!(last.reason.as_deref(), Some("algorithm_not_allowed"));
    assert_eq!(last.connection_id.as_deref(), Some(CONN));
    Ok(())
}
both_backends!(pysaml2_idp, pysaml2_logins);
