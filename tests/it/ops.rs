//! The operational surface: `/metrics` counts logins and refusals with the right labels,
//! `/readyz` follows the database down and back up without a restart, per-address rate limits
//! answer 429 and write nothing, request ids are echoed, and the real binary logs JSON lines with
//! the request id and stops cleanly on SIGTERM.

use crate::both_backends;
use crate::support::*;
use base64::Engine;
use ssobroker::config::{DatabaseUrl, RateLimit};
use std::time::{Duration, Instant};

fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// The value of the sample `series` (name plus labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics_text(app: &TestApp) -> Result<String, Box<dyn std::error::Error>> {
    let resp = reqwest::get(format!("{}/metrics", app.base)).await?;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers().get("content-type").ok_or("no content type")?.to_str()?.to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    Ok(resp.text().await?)
}

async fn counts_login_and_refusal(backend: Backend) -> TestResult {
    let mut app = app(backend).start().await?;
    // One good login, through to the token endpoint.
    let q = app.login_code("ada@example.com", &["Engineering"]).await?;
    assert_eq!(app.token(q.get("code").ok_or("no code")?).await?.status(), 200);
    // One refusal: a response whose signed NameID was edited.
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let xml = app.idp.sign_response(&app.response(Some(&at.request_id), "bob@example.com", &[]))?;
    let tampered = xml.replace("bob@example.com</saml:NameID>", "admin@example.com</saml:NameID>");
    assert_eq!(app.post_acs(&b64(&tampered), Some(&at.relay_state)).await?.status(), 403);
    let audited = app.audit()?.into_iter().rfind(|e| e.kind == "login.failed").ok_or("no audit row")?;
    assert_eq!(audited.reason.as_deref(), Some("signature_invalid"));

    let text = metrics_text(&app).await?;
    let login = |result: &str, reason: &str| {
        sample(
            &text,
            &format!(
                r#"ssobroker_logins_total{{connection="{CONNECTION}",result="{result}",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(login("succeeded", ""), Some(1.0), "{text}");
    assert_eq!(login("refused", "signature_invalid"), Some(1.0), "the audit reason is the label: {text}");
    assert_eq!(sample(&text, r#"ssobroker_jit_users_created_total{connection="okta"}"#), Some(1.0));
    assert_eq!(
        sample(&text, r#"ssobroker_token_grants_total{grant_type="authorization_code",result="issued"}"#),
        Some(1.0)
    );
    // Latency by route pattern, never by raw path.
    assert_eq!(
        sample(
            &text,
            r#"ssobroker_http_request_duration_seconds_count{method="POST",route="/saml/{connection}/acs",status="403"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("/saml/okta/acs"), "raw paths are not labels");
    let expiry = text
        .lines()
        .find(|l| l.starts_with(r#"ssobroker_idp_certificate_expiry_seconds{connection="okta",cert=""#))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .ok_or("no certificate expiry gauge")?;
    assert!(expiry > 86400.0, "the test IdP's certificate is valid for a while: {expiry}");
    assert!(sample(&text, "ssobroker_db_pool_max_connections") == Some(4.0), "{text}");
    assert!(sample(&text, r#"ssobroker_db_pool_connections{state="idle"}"#).is_some());

    // A second good login of the same person is a login, not a creation.
    app.new_browser()?;
    app.login_code("ada@example.com", &["Engineering"]).await?;
    let text = metrics_text(&app).await?;
    assert_eq!(
        sample(&text, r#"ssobroker_logins_total{connection="okta",result="succeeded",reason=""}"#),
        Some(2.0)
    );
    assert_eq!(sample(&text, r#"ssobroker_jit_users_created_total{connection="okta"}"#), Some(1.0));
    Ok(())
}
both_backends!(metrics_count_a_login_and_a_refusal, counts_login_and_refusal);

#[actix_web::test]
async fn metrics_bearer_token_and_off() -> TestResult {
    let token = "scrape-token-0123456789";
    let app = app(Backend::Sqlite)
        .with_config(move |c| c.metrics.bearer_token = Some(token.into()))
        .start()
        .await?;
    let url = format!("{}/metrics", app.base);
    let http = reqwest::Client::new();
    let no = http.get(&url).send().await?;
    assert_eq!(no.status(), 401);
    assert!(no.headers().get("www-authenticate").is_some());
    assert_eq!(http.get(&url).bearer_auth("scrape-token-wrong-000000").send().await?.status(), 401);
    assert_eq!(http.get(&url).bearer_auth(token).send().await?.status(), 200);

    let off = crate::support::app(Backend::Sqlite).with_config(|c| c.metrics.enabled = false).start().await?;
    assert_eq!(reqwest::get(format!("{}/metrics", off.base)).await?.status(), 404);
    Ok(())
}

async fn readyz(app: &TestApp) -> Result<(u16, serde_json::Value), Box<dyn std::error::Error>> {
    let resp = reqwest::get(format!("{}/readyz", app.base)).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

/// Polls /readyz until it answers `want` (the pool reconnects in the background).
async fn wait_ready(app: &TestApp, want: u16) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(app).await?;
        if status == want {
            return Ok(body);
        }
        if Instant::now() > deadline {
            return Err(format!("/readyz stayed {status} ({body}), wanted {want}").into());
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Makes this test's database unreachable for the broker, and back. SQLite: another process's
/// writer holds the lock (an open file keeps answering reads; nothing can be written). PostgreSQL:
/// the database refuses new connections and the broker's are terminated — only this test's
/// database, never the shared server.
enum Outage {
    Sqlite(diesel::SqliteConnection),
    Postgres { admin: diesel::PgConnection, name: String },
}

impl Outage {
    fn start(app: &TestApp) -> Result<Self, Box<dyn std::error::Error>> {
        use diesel::connection::SimpleConnection;
        use diesel::{Connection, RunQueryDsl};
        match &app.cfg.database {
            DatabaseUrl::Sqlite(path) => {
                let mut c = diesel::SqliteConnection::establish(&path.to_string_lossy())?;
                c.batch_execute("BEGIN IMMEDIATE")?;
                Ok(Outage::Sqlite(c))
            }
            DatabaseUrl::Postgres(url) => {
                let name = url::Url::parse(url)?.path().trim_start_matches('/').to_string();
                let mut admin = diesel::PgConnection::establish(&std::env::var("TEST_DATABASE_URL")?)?;
                diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .execute(&mut admin)?;
                diesel::sql_query(format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                ))
                .execute(&mut admin)?;
                Ok(Outage::Postgres { admin, name })
            }
        }
    }

    fn end(self) -> Result<(), Box<dyn std::error::Error>> {
        use diesel::connection::SimpleConnection;
        use diesel::RunQueryDsl;
        match self {
            Outage::Sqlite(mut c) => c.batch_execute("ROLLBACK")?,
            Outage::Postgres { mut admin, name } => {
                diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                    .execute(&mut admin)?;
            }
        }
        Ok(())
    }
}

async fn readyz_follows_database(backend: Backend) -> TestResult {
    let mut app = app(backend).start().await?;
    let (status, body) = readyz(&app).await?;
    assert_eq!((status, body["database"].as_str()), (200, Some("ok")), "{body}");
    assert_eq!(body["signing_keys"], "ok");

    let outage = Outage::start(&app)?;
    let started = Instant::now();
    let body = wait_ready(&app, 503).await?;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["database"], "unreachable");
    assert!(started.elapsed() < Duration::from_secs(10), "the probe answers within its timeout");
    // Liveness does not depend on the database: no restart is asked for.
    assert_eq!(reqwest::get(format!("{}/healthz", app.base)).await?.status(), 200);

    outage.end()?;
    let body = wait_ready(&app, 200).await?;
    assert_eq!(body["status"], "ready");
    // The same process serves logins again.
    app.new_browser()?;
    let q = app.login_code("ada@example.com", &[]).await?;
    assert!(q.contains_key("code"));
    Ok(())
}
both_backends!(readyz_fails_while_database_unreachable_and_recovers, readyz_follows_database);

#[actix_web::test]
async fn rate_limits_answer_429_and_write_nothing() -> TestResult {
    let app = app(Backend::Sqlite)
        .with_config(|c| {
            c.rate_limits.acs = RateLimit { per_minute: 1, burst: 2 };
            c.rate_limits.token = RateLimit { per_minute: 1, burst: 2 };
        })
        .start()
        .await?;
    let acs = || app.post_acs("not-a-saml-response", None);
    assert_eq!(acs().await?.status(), 403);
    assert_eq!(acs().await?.status(), 403);
    let before = app.counts()?;
    let resp = acs().await?;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers().get("retry-after").ok_or("no Retry-After")?.to_str()?.parse()?;
    assert!((1..=60).contains(&retry), "{retry}");
    let body = resp.text().await?;
    assert!(body.contains("Too many"), "a generic page: {body}");
    assert!(!body.contains("saml") && !body.contains("Support reference"));
    assert_eq!(app.counts()?, before, "a throttled ACS post writes nothing, not even an audit row");

    let token = || {
        reqwest::Client::new()
            .post(format!("{}/token", app.base))
            .basic_auth(CLIENT_ID, Some("wrong-secret-0000000000"))
            .form(&[("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", REDIRECT_URI)])
            .send()
    };
    assert_eq!(token().await?.status(), 401);
    assert_eq!(token().await?.status(), 401);
    let resp = token().await?;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["error"], "temporarily_unavailable");

    // Other routes are not limited.
    assert_eq!(reqwest::get(format!("{}/jwks", app.base)).await?.status(), 200);
    let text = metrics_text(&app).await?;
    assert_eq!(sample(&text, r#"ssobroker_rate_limited_total{limit="acs"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"ssobroker_rate_limited_total{limit="token"}"#), Some(1.0));
    assert_eq!(
        sample(
            &text,
            r#"ssobroker_token_grants_total{grant_type="authorization_code",result="invalid_client"}"#
        ),
        Some(2.0)
    );
    Ok(())
}

#[actix_web::test]
async fn forwarded_for_only_from_trusted_proxies() -> TestResult {
    let limited = |c: &mut ssobroker::config::FileConfig| {
        c.rate_limits.acs = RateLimit { per_minute: 1, burst: 1 };
    };
    let post = |base: &str, from: &str| {
        reqwest::Client::new()
            .post(format!("{base}/saml/{CONNECTION}/acs"))
            .header("X-Forwarded-For", from)
            .form(&[("SAMLResponse", "not-a-saml-response")])
            .send()
    };
    // No trusted proxy: the header is the client's say-so and changes nothing.
    let direct = app(Backend::Sqlite).with_config(limited).start().await?;
    assert_eq!(post(&direct.base, "203.0.113.1").await?.status(), 403);
    assert_eq!(post(&direct.base, "203.0.113.2").await?.status(), 429, "a forged header evades nothing");
    assert_eq!(direct.audit()?.pop().ok_or("no audit row")?.ip.as_deref(), Some("127.0.0.1"));

    // Behind a trusted proxy: each forwarded client has its own allowance and is the audited ip.
    let proxied = app(Backend::Sqlite)
        .with_config(move |c| {
            limited(c);
            c.trusted_proxies = vec!["127.0.0.1".into()];
        })
        .start()
        .await?;
    assert_eq!(post(&proxied.base, "198.51.100.7, 203.0.113.1").await?.status(), 403);
    assert_eq!(proxied.audit()?.pop().ok_or("no audit row")?.ip.as_deref(), Some("203.0.113.1"));
    assert_eq!(post(&proxied.base, "203.0.113.1").await?.status(), 429);
    assert_eq!(post(&proxied.base, "203.0.113.2").await?.status(), 403);
    Ok(())
}

#[actix_web::test]
async fn request_id_echoed_or_made() -> TestResult {
    let app = app(Backend::Sqlite).start().await?;
    let http = reqwest::Client::new();
    let get = |path: &str, id: Option<&str>| {
        let mut r = http.get(format!("{}{path}", app.base));
        if let Some(id) = id {
            r = r.header("X-Request-Id", id);
        }
        r.send()
    };
    let id_of = |r: &reqwest::Response| {
        r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string).unwrap_or_default()
    };
    assert_eq!(id_of(&get("/healthz", Some("lb-7f3a:42")).await?), "lb-7f3a:42");
    assert_eq!(id_of(&get("/no-such-page", Some("abc")).await?), "abc", "error responses too");
    let made = id_of(&get("/healthz", None).await?);
    assert!(made.len() == 32 && made.chars().all(|c| c.is_ascii_hexdigit()), "{made}");
    let replaced = id_of(&get("/healthz", Some("has spaces {\"and\": json}")).await?);
    assert_eq!(replaced.len(), 32, "an unsafe id is replaced: {replaced}");
    let long = "a".repeat(200);
    assert_eq!(id_of(&get("/healthz", Some(&long)).await?).len(), 32);
    Ok(())
}

/// The real binary: JSON log lines on stderr with the request id (also from the blocking
/// threads that do the database work), nothing of the SAML response, and a clean exit on SIGTERM.
#[test]
fn binary_logs_json_and_stops_on_sigterm() -> TestResult {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir()?;
    let idp = ssobroker::devidp::DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
    std::fs::write(dir.path().join("idp.xml"), idp.metadata_xml())?;
    let config = dir.path().join("ssobroker.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:1\"\nlisten = \"127.0.0.1:0\"\n\
             database_url = \"sqlite://{}\"\nlog_format = \"json\"\nshutdown_timeout_seconds = 5\n\
             [[connections]]\nid = \"okta\"\nmetadata_file = \"idp.xml\"\n",
            dir.path().join("broker.db").display()
        ),
    )?;
    let token = "metrics-token-from-env-0123";
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssobroker"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("SSOBROKER_METRICS_BEARER_TOKEN", token)
        .env_remove("SSOBROKER_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let next_line = |lines: &mut Vec<String>, timeout: Duration| -> Option<String> {
        let l = rx.recv_timeout(timeout).ok()?;
        lines.push(l.clone());
        Some(l)
    };
    let saml = b64("<samlp:Response>secret-assertion-content</samlp:Response>");
    let result = (|| -> TestResult {
        let address = loop {
            let line = next_line(&mut lines, Duration::from_secs(30)).ok_or("no start-up line")?;
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
            if v["message"] == "ssobroker listening" {
                break v["address"].as_str().ok_or("no address")?.to_string();
            }
        };
        let base = format!("http://{address}");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let http = reqwest::Client::new();
            let r = http.get(format!("{base}/jwks")).header("X-Request-Id", "jwks-req-1").send().await?;
            assert_eq!(r.status(), 200);
            let r = http
                .post(format!("{base}/saml/okta/acs"))
                .header("X-Request-Id", "acs-req-1")
                .form(&[("SAMLResponse", saml.as_str())])
                .send()
                .await?;
            assert_eq!(r.status(), 403);
            // The token came from SSOBROKER_METRICS_BEARER_TOKEN.
            assert_eq!(http.get(format!("{base}/metrics")).send().await?.status(), 401);
            assert_eq!(http.get(format!("{base}/metrics")).bearer_auth(token).send().await?.status(), 200);
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
        // Collect what the requests logged.
        while next_line(&mut lines, Duration::from_millis(500)).is_some() {}

        // The shell's built-in kill: no procps needed.
        let status = Command::new("sh").args(["-c", &format!("kill -TERM {}", child.id())]).status()?;
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        let exit = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                return Err("still running 15 s after SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        while next_line(&mut lines, Duration::from_millis(500)).is_some() {}
        assert!(exit.success(), "exit after SIGTERM: {exit:?}");
        Ok(())
    })();
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("broker stderr:\n{}", lines.join("\n"));
        return result;
    }

    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    for v in &parsed {
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(), "{v}");
    }
    let of_request = |id: &str| parsed.iter().filter(|v| v["span"]["request_id"] == id).collect::<Vec<_>>();
    let jwks = of_request("jwks-req-1");
    assert!(jwks.iter().any(|v| v["path"] == "/jwks" && v["status"] == 200), "access line: {jwks:?}");
    let acs = of_request("acs-req-1");
    assert!(
        acs.iter().any(|v| v["message"] == "login refused"),
        "the refusal, logged on a blocking thread, carries the request id: {acs:?}"
    );
    let all = lines.join("\n");
    assert!(!all.contains("secret-assertion-content") && !all.contains(&saml), "no SAML in the logs");
    assert!(!all.contains(token), "no metrics token in the logs");
    assert!(parsed.iter().any(|v| v["message"] == "ssobroker stopped"), "{all}");
    Ok(())
}
