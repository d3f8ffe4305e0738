//! Test harness: a real broker on 127.0.0.1:0 with a fresh database (SQLite file or a new
//! PostgreSQL database), a per-test development IdP key, a cookie-keeping "browser", and a
//! pinned clock.

use base64::Engine;
use chrono::{DateTime, Utc};
use ssobroker::clock::FixedClock;
use ssobroker::config::{self, Config, FileClient, FileConfig, FileConnection};
use ssobroker::devidp::{DevIdp, ResponseSpec};
use ssobroker::provisioning::Vendor;
use ssobroker::store::{self, DbPool};
use ssobroker::web::AppState;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const CLIENT_ID: &str = "dashboard";
pub const CLIENT_SECRET: &str = "dashboard-secret-0123456789";
pub const PUBLIC_CLIENT_ID: &str = "spa";
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
pub const POST_LOGOUT_URI: &str = "http://127.0.0.1:9/signed-out";
pub const CONNECTION: &str = "okta";

/// Runs the body once per backend; the PostgreSQL variant needs `TEST_DATABASE_URL`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[actix_web::test]
            async fn sqlite() -> $crate::support::TestResult {
                $body($crate::support::Backend::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() -> $crate::support::TestResult {
                if std::env::var("TEST_DATABASE_URL").is_err() {
                    eprintln!("TEST_DATABASE_URL not set: PostgreSQL variant skipped");
                    return Ok(());
                }
                $body($crate::support::Backend::Postgres).await
            }
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub idp: DevIdp,
    pub clock: FixedClock,
    pub pool: DbPool,
    pub cfg: Arc<Config>,
    /// The running broker's state (shared with the server), e.g. to reload its keys.
    pub state: AppState,
    pub browser: reqwest::Client,
    server: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
    // Declared after `pool` and `state`, so their connections close before the drop.
    _pg: Option<PgTestDatabase>,
}

type ConfigTweak = Box<dyn FnOnce(&mut FileConfig)>;

pub struct Builder {
    backend: Backend,
    tweak: Vec<ConfigTweak>,
    metadata_edit: Option<fn(String) -> String>,
    now: DateTime<Utc>,
    idp_slo: Option<String>,
}

impl Builder {
    pub fn with_config(mut self, f: impl FnOnce(&mut FileConfig) + 'static) -> Self {
        self.tweak.push(Box::new(f));
        self
    }

    /// Rewrites the IdP metadata file before the broker reads it.
    #[allow(dead_code)]
    pub fn with_metadata(mut self, f: fn(String) -> String) -> Self {
        self.metadata_edit = Some(f);
        self
    }

    /// The IdP publishes a SingleLogoutService at this URL (single logout then comes on).
    #[allow(dead_code)]
    pub fn with_idp_slo(mut self, url: &str) -> Self {
        self.idp_slo = Some(url.to_string());
        self
    }

    /// Pins the broker's clock (default: now).
    #[allow(dead_code)]
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    pub async fn start(self) -> Result<TestApp, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut idp = DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
        idp.slo_url = self.idp_slo;
        let metadata = dir.path().join("idp.xml");
        let xml = idp.metadata_xml();
        std::fs::write(&metadata, self.metadata_edit.map(|f| f(xml.clone())).unwrap_or(xml))?;
        let mut pg = None;
        let database_url = match self.backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("broker.db").display()),
            Backend::Postgres => {
                let db = fresh_postgres_database()?;
                let url = db.url.clone();
                pg = Some(db);
                url
            }
        };
        let mut file = FileConfig {
            issuer: base.clone(),
            listen: "127.0.0.1:0".into(),
            database_url,
            connections: vec![FileConnection {
                display_name: Some("Okta".into()),
                vendor: Vendor::Okta,
                domains: vec!["example.com".into()],
                default_roles: vec!["user".into()],
                role_mapping: [
                    ("Engineering".to_string(), vec!["engineer".to_string()]),
                    ("IT-Admins".to_string(), vec!["admin".to_string()]),
                ]
                .into_iter()
                .collect(),
                ..FileConnection::new(CONNECTION, metadata)
            }],
            clients: vec![
                FileClient {
                    client_secret: Some(CLIENT_SECRET.into()),
                    post_logout_redirect_uris: vec![POST_LOGOUT_URI.into()],
                    ..FileClient::new(CLIENT_ID, REDIRECT_URI)
                },
                FileClient::new(PUBLIC_CLIENT_ID, REDIRECT_URI),
            ],
            // Every test request comes from 127.0.0.1, and some tests send hundreds; the ops
            // tests turn limits on where they test them.
            rate_limits: ssobroker::config::FileRateLimits::off(),
            ..FileConfig::default()
        };
        for t in self.tweak {
            t(&mut file);
        }
        let cfg = config::validate(file, "test.toml", dir.path())?;
        let pool = store::connect(&cfg.database, 4)?;
        let clock = FixedClock::at(self.now);
        let state = AppState::new(cfg, pool.clone(), Arc::new(clock.clone()), None)?;
        let cfg = state.cfg.clone();
        let server = ssobroker::web::serve(state.clone(), listener, 2)?;
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(TestApp { base, idp, clock, pool, cfg, state, browser, server: handle, _dir: dir, _pg: pg })
    }
}

/// A second broker on the same database and configuration as a `TestApp` — two instances behind a
/// load balancer without sticky routing. Only `base` differs: the issuer (and so the ACS URL the
/// IdP addresses) stays the first instance's, as it would be the balancer's.
pub struct Instance {
    pub base: String,
    #[allow(dead_code)]
    pub state: AppState,
    server: actix_web::dev::ServerHandle,
}

impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

impl TestApp {
    /// Starts another instance: its own pool, key loading and HTTP server, sharing only the
    /// database (and the test's clock, since both stand for one wall clock).
    pub fn another_instance(&self) -> Result<Instance, Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let pool = store::connect(&self.cfg.database, 4)?;
        let state = AppState::new((*self.cfg).clone(), pool, Arc::new(self.clock.clone()), None)?;
        let server = ssobroker::web::serve(state.clone(), listener, 2)?;
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok(Instance { base, state, server: handle })
    }
}

/// A new, empty database on the test server for one test, dropped when the guard goes.
/// Dropping matters: left behind, a few hundred databases per run make the server's crash
/// recovery (an fsync of every file) slow enough to fail the next run's start-up.
pub struct PgTestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

pub fn fresh_postgres_database() -> Result<PgTestDatabase, Box<dyn std::error::Error>> {
    use diesel::{Connection, RunQueryDsl};
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .map_err(|_| "TEST_DATABASE_URL is not set (the PostgreSQL admin URL)")?;
    let mut admin = diesel::PgConnection::establish(&admin_url)
        .map_err(|e| format!("cannot connect to TEST_DATABASE_URL: {e}"))?;
    let name = format!("ssobroker_test_{}", uuid::Uuid::new_v4().simple());
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
    let mut url = url::Url::parse(&admin_url)?;
    url.set_path(&format!("/{name}"));
    Ok(PgTestDatabase { url: url.to_string(), admin_url, name })
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        use diesel::{Connection, RunQueryDsl};
        // FORCE ends the pool's idle connections (PostgreSQL 13+).
        let dropped = diesel::PgConnection::establish(&self.admin_url).and_then(|mut admin| {
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut admin)
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
        });
        if let Err(e) = dropped {
            eprintln!("test database {} not dropped: {e}", self.name);
        }
    }
}

pub fn app(backend: Backend) -> Builder {
    Builder { backend, tweak: Vec::new(), metadata_edit: None, now: Utc::now(), idp_slo: None }
}

/// What the IdP saw: the AuthnRequest ID and the RelayState to echo.
#[derive(Debug, Clone)]
pub struct AtIdp {
    pub request_id: String,
    pub relay_state: String,
}

impl TestApp {
    pub fn connection(&self) -> &ssobroker::config::Connection {
        &self.cfg.connections[0]
    }

    pub fn now(&self) -> DateTime<Utc> {
        use ssobroker::clock::Clock;
        self.clock.now()
    }

    /// A valid response for `request_id` about `email`, with the usual Okta attributes.
    pub fn response(&self, request_id: Option<&str>, email: &str, groups: &[&str]) -> ResponseSpec {
        let sp = &self.connection().sp;
        ResponseSpec::new(&self.idp, &sp.entity_id, &sp.acs_url, request_id, email, self.now())
            .with_attribute("email", &[email])
            .with_attribute("firstName", &["Ada"])
            .with_attribute("lastName", &["Lovelace"])
            .with_attribute("groups", groups)
    }

    /// Follows /authorize to the IdP and reads the AuthnRequest the broker sent.
    pub async fn authorize(&self, auth_url: &str) -> Result<AtIdp, Box<dyn std::error::Error>> {
        let resp = self.browser.get(auth_url).send().await?;
        if resp.status() != 302 {
            return Err(format!("authorize answered {}: {}", resp.status(), resp.text().await?).into());
        }
        let location = resp.headers().get("location").ok_or("no Location")?.to_str()?.to_string();
        let url = url::Url::parse(&location)?;
        let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        let parsed = ssobroker::devidp::parse_authn_request(q.get("SAMLRequest").ok_or("no SAMLRequest")?)?;
        Ok(AtIdp { request_id: parsed.id, relay_state: q.get("RelayState").ok_or("no RelayState")?.clone() })
    }

    /// Posts a SAMLResponse to the ACS like the IdP's auto-submitting form would.
    pub async fn post_acs(
        &self,
        saml_response_b64: &str,
        relay_state: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.post_acs_at(&self.base, saml_response_b64, relay_state).await
    }

    /// `post_acs` to the instance at `base` (the browser and its cookies stay the same).
    pub async fn post_acs_at(
        &self,
        base: &str,
        saml_response_b64: &str,
        relay_state: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut form = vec![("SAMLResponse", saml_response_b64)];
        if let Some(r) = relay_state {
            form.push(("RelayState", r));
        }
        self.browser.post(format!("{base}/saml/{CONNECTION}/acs")).form(&form).send().await
    }

    pub async fn post_signed(
        &self,
        spec: &ResponseSpec,
        relay_state: Option<&str>,
    ) -> Result<reqwest::Response, Box<dyn std::error::Error>> {
        let b64 = self.idp.sign_response_b64(spec)?;
        Ok(self.post_acs(&b64, relay_state).await?)
    }

    pub fn counts(&self) -> Result<BTreeMap<&'static str, i64>, Box<dyn std::error::Error>> {
        let mut c = self.pool.get()?;
        Ok(store::table_counts(&mut c)?)
    }

    pub fn audit(&self) -> Result<Vec<store::audit::AuditEvent>, Box<dyn std::error::Error>> {
        let mut c = self.pool.get()?;
        Ok(store::audit::all(&mut c)?)
    }

    /// A simple authorize URL for the confidential client (PKCE S256 with a fixed verifier).
    pub fn auth_url(&self, extra: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&format!("{}/authorize", self.base)).unwrap_or_else(|_| unreachable!());
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("scope", "openid email profile")
            .append_pair("state", "st-1")
            .append_pair("nonce", "n-1")
            .append_pair("code_challenge", &pkce_challenge(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        url.to_string()
    }

    /// A whole login up to the code: authorize → IdP → ACS; returns the redirect's query.
    pub async fn login_code(
        &self,
        email: &str,
        groups: &[&str],
    ) -> Result<BTreeMap<String, String>, Box<dyn std::error::Error>> {
        let at = self.authorize(&self.auth_url(&[])).await?;
        let resp = self
            .post_signed(&self.response(Some(&at.request_id), email, groups), Some(&at.relay_state))
            .await?;
        redirect_query(resp).await
    }

    /// Exchanges a code at /token with client_secret_basic and the fixed verifier.
    pub async fn token(&self, code: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.token_at(&self.base, code).await
    }

    /// `token` at the instance at `base`.
    pub async fn token_at(&self, base: &str, code: &str) -> Result<reqwest::Response, reqwest::Error> {
        reqwest::Client::new()
            .post(format!("{base}/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
    }

    /// A new browser without the broker session cookie (another person, or a private window).
    pub fn new_browser(&mut self) -> Result<(), reqwest::Error> {
        self.browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the workers so a long test run does not pile up servers.
        drop(self.server.stop(false));
    }
}

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// Reads a 302 to the app and returns its query parameters.
pub async fn redirect_query(
    resp: reqwest::Response,
) -> Result<BTreeMap<String, String>, Box<dyn std::error::Error>> {
    if resp.status() != 302 {
        return Err(format!("expected a redirect, got {}: {}", resp.status(), resp.text().await?).into());
    }
    let location = resp.headers().get("location").ok_or("no Location")?.to_str()?.to_string();
    if !location.starts_with(REDIRECT_URI) {
        return Err(format!("redirect to unexpected place: {location}").into());
    }
    Ok(url::Url::parse(&location)?.query_pairs().into_owned().collect())
}

/// Asserts a refused ACS post: generic 403 page, one new `login.failed` audit row with the
/// reason, and no other table changed.
pub async fn assert_refused(
    app: &TestApp,
    resp: reqwest::Response,
    before: &BTreeMap<&'static str, i64>,
    reason: &str,
) -> TestResult {
    let status = resp.status();
    let set_cookie = resp.headers().get("set-cookie").is_some();
    let body = resp.text().await?;
    assert_eq!(status, 403, "expected refusal ({reason}), got {status}: {body}");
    assert!(!set_cookie, "a refused login must not set a session cookie");
    assert!(body.contains("Support reference"), "error page carries a reference id");
    assert!(!body.contains("Signature") && !body.contains("saml"), "no internal or SAML text on the page");
    let after = app.counts()?;
    for (table, n) in &after {
        let expected = before[table] + i64::from(*table == "audit_events");
        assert_eq!(*n, expected, "table {table} changed on a refused login ({reason})");
    }
    let last = app.audit()?.pop().ok_or("no audit row")?;
    assert_eq!(last.kind, "login.failed");
    assert_eq!(last.reason.as_deref(), Some(reason), "audit reason");
    assert_eq!(last.connection_id.as_deref(), Some(CONNECTION));
    if !["unsolicited_response", "in_response_to_unknown", "assertion_replayed"].contains(&reason) {
        assert_eq!(last.client_id.as_deref(), Some(CLIENT_ID), "the audit row names the client");
    }
    assert!(last.ip.is_some());
    Ok(())
}

/// A fresh RSA key and self-signed certificate as PEM files `<name>-key.pem` and
/// `<name>-cert.pem` in `dir` (for a third-party IdP, or an SP encryption key).
pub fn key_pair(
    dir: &std::path::Path,
    name: &str,
    cn: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf), Box<dyn std::error::Error>> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let pkey = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_text("CN", cn)?;
    let subject = subject.build();
    let mut serial = BigNum::new()?;
    serial.rand(63, MsbOption::MAYBE_ZERO, false)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(&subject)?;
    b.set_pubkey(&pkey)?;
    // Valid from yesterday: a certificate minted this second must not look "not yet valid".
    let not_before = Asn1Time::from_unix(Utc::now().timestamp() - 86_400)?;
    let not_after = Asn1Time::days_from_now(30)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.sign(&pkey, MessageDigest::sha256())?;
    let key = dir.join(format!("{name}-key.pem"));
    let cert = dir.join(format!("{name}-cert.pem"));
    std::fs::write(&key, pkey.private_key_to_pem_pkcs8()?)?;
    std::fs::write(&cert, b.build().to_pem()?)?;
    Ok((key, cert))
}

/// Decodes the entities handlebars writes into attribute values.
pub fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find(';') else { break };
        let entity = &rest[i + 1..i + end];
        let decoded = match entity {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[i..i + end + 1]),
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The action of the first form on a page and its named inputs with their values, decoded (an
/// auto-submitting page as a browser would post it).
pub fn form(page: &str) -> Result<(String, BTreeMap<String, String>), Box<dyn std::error::Error>> {
    let start = page.find("<form").ok_or("no form on the page")?;
    let f = &page[start..page[start..].find("</form>").map(|e| start + e).ok_or("unclosed form")?];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let i = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(unescape(&tag[i..i + tag[i..].find('"')?]))
    };
    let action = attr(f, "action").ok_or("form without action")?;
    let mut fields = BTreeMap::new();
    for piece in f.split("<input").skip(1) {
        let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
        if let Some(name) = attr(tag, "name") {
            fields.insert(name, attr(tag, "value").unwrap_or_default());
        }
    }
    Ok((action, fields))
}
