//! IdP metadata from a URL: fetched at start and stored, two signing certificates trusted at
//! once (rollover), a start while the URL is down uses the stored copy, a refresh that drops a
//! certificate stops trusting it, every change audited; `ssobroker connection refresh`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::both_backends;
use crate::support::*;
use ssobroker::devidp::DevIdp;

/// A tiny HTTP server answering every request with the current document, or 503 when unset.
struct MetadataServer {
    url: String,
    body: Arc<Mutex<Option<String>>>,
    trickle: Arc<std::sync::atomic::AtomicBool>,
}

impl MetadataServer {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/idp/metadata", listener.local_addr()?);
        let body: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let shared = Arc::clone(&body);
        let trickle = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slow = Arc::clone(&trickle);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                if slow.load(std::sync::atomic::Ordering::SeqCst) {
                    // Headers at once, then one byte a second: every read succeeds, none ends.
                    std::thread::spawn(move || {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
                        while stream.write_all(b"<").is_ok() {
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                    });
                    continue;
                }
                let current = shared.lock().map(|b| b.clone()).unwrap_or(None);
                let reply = match current {
                    Some(doc) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/samlmetadata+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                        doc.len()
                    ),
                    None => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string(),
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Ok(MetadataServer { url, body, trickle })
    }

    fn serve(&self, doc: Option<String>) {
        if let Ok(mut b) = self.body.lock() {
            *b = doc;
        }
    }
}

/// `metadata` with the signing certificate of `other` added (an IdP rolling its key over).
fn with_second_cert(metadata: &str, other: &DevIdp) -> String {
    let descriptor = format!(
        r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, other.cert_der())
    );
    metadata.replacen("</md:KeyDescriptor>", &format!("</md:KeyDescriptor>{descriptor}"), 1)
}

/// authorize → response signed by `idp` → ACS at `base`; the redirect's query.
async fn login_at(
    app: &TestApp,
    base: &str,
    idp: &DevIdp,
    email: &str,
) -> Result<reqwest::Response, Box<dyn std::error::Error>> {
    let at = app.authorize(&app.auth_url(&[]).replace(&app.base, base)).await?;
    let spec = app.response(Some(&at.request_id), email, &[]);
    let b64 = idp.sign_response_b64(&spec)?;
    Ok(app.post_acs_at(base, &b64, Some(&at.relay_state)).await?)
}

async fn metadata_url(backend: Backend) -> TestResult {
    let server = Arc::new(MetadataServer::start()?);
    let next = DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
    let (srv, url, next_for_config) = (Arc::clone(&server), server.url.clone(), next.clone());
    let mut app = app(backend)
        .with_config(move |f| {
            let file = std::mem::take(&mut f.connections[0].metadata_file);
            let current = std::fs::read_to_string(file).unwrap_or_default();
            srv.serve(Some(with_second_cert(&current, &next_for_config)));
            f.connections[0].metadata_url = Some(url);
        })
        .start()
        .await?;
    assert_eq!(app.connection().sp.idp.signing_certs.len(), 2, "both certificates trusted");
    let changes = |app: &TestApp| -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
        Ok(app
            .audit()?
            .into_iter()
            .filter(|e| e.kind == "trust.changed")
            .map(|e| serde_json::from_str(&e.detail))
            .collect::<Result<_, _>>()?)
    };
    let first = changes(&app)?;
    assert_eq!(first.len(), 1, "the first copy is a trust change");
    assert_eq!(first[0]["certs_added"].as_array().map(Vec::len), Some(2));

    // Responses signed with either certificate log in.
    let base = app.base.clone();
    let current = app.idp.clone();
    assert!(redirect_query(login_at(&app, &base, &current, "ada@example.com").await?)
        .await?
        .contains_key("code"));
    app.new_browser()?;
    assert!(redirect_query(login_at(&app, &base, &next, "ada@example.com").await?)
        .await?
        .contains_key("code"));

    // The URL goes down; a broker starting now runs on the stored copy.
    server.serve(None);
    let mut cfg = (*app.cfg).clone();
    cfg.connections[0].sp.idp.signing_certs.clear();
    let pool = ssobroker::store::connect(&cfg.database, 4)?;
    let state = ssobroker::web::AppState::new(cfg, pool, Arc::new(app.clock.clone()), None)?;
    assert_eq!(state.cfg.connections[0].sp.idp.signing_certs.len(), 2, "from the stored copy");
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let second = format!("http://{}", listener.local_addr()?);
    let server2 = ssobroker::web::serve(state, listener, 1)?;
    let handle = server2.handle();
    actix_web::rt::spawn(server2);
    app.new_browser()?;
    let q = redirect_query(login_at(&app, &second, &next, "ada@example.com").await?).await?;
    assert!(q.contains_key("code"), "login through the instance started from the stored copy");
    drop(handle.stop(false));

    // A refresh while the URL is down changes nothing.
    assert_eq!(app.state.refresh_trust().await?, 0);

    // The IdP finishes its rollover: the old certificate goes, and so does our trust in it.
    let metadata = next.metadata_xml();
    server.serve(Some(metadata));
    assert_eq!(app.state.refresh_trust().await?, 1);
    let last = changes(&app)?.pop().ok_or("no trust change")?;
    assert_eq!(last["certs_removed"].as_array().map(Vec::len), Some(1), "{last}");
    assert_eq!(last["certs_added"].as_array().map(Vec::len), Some(0), "{last}");
    app.new_browser()?;
    let at = app.authorize(&app.auth_url(&[])).await?;
    let before = app.counts()?;
    let spec = app.response(Some(&at.request_id), "ada@example.com", &[]);
    let resp = app.post_acs_at(&base, &current.sign_response_b64(&spec)?, Some(&at.relay_state)).await?;
    assert_refused(&app, resp, &before, "signature_invalid").await?;
    app.new_browser()?;
    assert!(redirect_query(login_at(&app, &base, &next, "ada@example.com").await?)
        .await?
        .contains_key("code"));
    assert_eq!(app.counts()?["users"], 1);
    Ok(())
}
both_backends!(metadata_url_rollover_outage_and_refresh, metadata_url);

async fn no_copy_no_start(backend: Backend) -> TestResult {
    let server = MetadataServer::start()?;
    let url = server.url.clone();
    let started = app(backend)
        .with_config(move |f| {
            f.connections[0].metadata_file = PathBuf::new();
            f.connections[0].metadata_url = Some(url);
        })
        .start()
        .await;
    assert!(started.is_err(), "no metadata and no stored copy: the broker must not start");
    Ok(())
}
both_backends!(metadata_url_down_without_copy_refuses_start, no_copy_no_start);

#[test]
fn connection_refresh_command() -> TestResult {
    let server = MetadataServer::start()?;
    let idp = DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("ssobroker.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:9\"\ndatabase_url = \"sqlite://{}\"\n[[connections]]\nid = \"okta\"\nmetadata_url = \"{}\"\n",
            dir.path().join("b.db").display(),
            server.url
        ),
    )?;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ssobroker"))
            .args(["connection", "refresh", "okta", "--config"])
            .arg(&config)
            .output()
    };
    server.serve(Some(idp.metadata_xml()));
    let out = run()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("fetched metadata of https://idp.test/metadata") && stdout.contains("trust changed")
    );
    assert!(stdout.contains("signing certificate sha256:"));
    // An admin's change on the command line: the actor column says so, as for the CLI's other
    // changes (the console's Actor column, `ssobroker audit`'s ACTOR).
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_ssobroker"))
        .args(["audit", "--kind", "trust.changed", "--json", "--config"])
        .arg(&config)
        .output()?;
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&audit.stdout).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["actor"].as_str(), rows[0]["detail"]["by"].as_str()), (Some("cli"), Some("cli")));
    let out = run()?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));
    server.serve(None);
    let out = run()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 503"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad config key is named with the file.
    std::fs::write(
        &config,
        "issuer = \"http://127.0.0.1:9\"\n[[connections]]\nid = \"okta\"\nmetadata_url = \"ftp://x\"\n",
    )?;
    let out = run()?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("connections[0].metadata_url"));
    Ok(())
}

async fn file_changes(backend: Backend) -> TestResult {
    let app = app(backend).start().await?;
    let trust_rows = |app: &TestApp| -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
        Ok(app
            .audit()?
            .into_iter()
            .filter(|e| e.kind == "trust.changed")
            .map(|e| serde_json::from_str(&e.detail))
            .collect::<Result<_, _>>()?)
    };
    let rows = trust_rows(&app)?;
    assert_eq!(rows.len(), 1, "the first start records the file's trust");
    assert_eq!(rows[0]["first_copy"], true);

    // A restart with the same file changes nothing.
    let restart =
        |cfg: ssobroker::config::Config| -> Result<ssobroker::web::AppState, Box<dyn std::error::Error>> {
            let pool = ssobroker::store::connect(&cfg.database, 2)?;
            Ok(ssobroker::web::AppState::new(cfg, pool, Arc::new(app.clock.clone()), None)?)
        };
    restart((*app.cfg).clone())?;
    assert_eq!(trust_rows(&app)?.len(), 1);

    // The admin adds the IdP's next certificate to the file: the next start audits it.
    let path = app.connection().metadata_file.clone().ok_or("no metadata file")?;
    let next = DevIdp::generate("https://idp.test/metadata", "https://idp.test/sso")?;
    let edited = with_second_cert(&std::fs::read_to_string(&path)?, &next);
    std::fs::write(&path, &edited)?;
    let mut cfg = (*app.cfg).clone();
    cfg.connections[0].sp.idp = ssobroker::saml::parse_idp_metadata(&edited)?;
    restart(cfg)?;
    let rows = trust_rows(&app)?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["certs_added"].as_array().map(Vec::len), Some(1), "{}", rows[1]);
    assert!(rows[1]["source"].as_str().is_some_and(|s| s.starts_with("file:")));
    Ok(())
}
both_backends!(metadata_file_changes_are_audited, file_changes);

/// A metadata URL that answers but never finishes (a byte a second) cannot hold a refresh: the
/// whole fetch is bounded, and the stored copy stays trusted.
async fn trickling(backend: Backend) -> TestResult {
    let server = Arc::new(MetadataServer::start()?);
    let (srv, url) = (Arc::clone(&server), server.url.clone());
    let app = app(backend)
        .with_config(move |f| {
            let file = std::mem::take(&mut f.connections[0].metadata_file);
            srv.serve(Some(std::fs::read_to_string(file).unwrap_or_default()));
            f.connections[0].metadata_url = Some(url);
        })
        .start()
        .await?;
    server.trickle.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    assert_eq!(app.state.refresh_trust().await?, 0, "nothing changes");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "bounded: {:?}", started.elapsed());
    let q = app.login_code("ada@example.com", &[]).await?;
    assert!(q.contains_key("code"), "still trusting the stored copy");
    Ok(())
}
both_backends!(metadata_url_trickling_is_cut_off, trickling);

/// A refresh that brings `WantAuthnRequestsSigned` and a SingleLogoutService takes effect at
/// once: a `metadata_url` connection has its SP signing key from the start.
async fn refresh_brings_signing_and_slo(backend: Backend) -> TestResult {
    let server = Arc::new(MetadataServer::start()?);
    let (srv, url) = (Arc::clone(&server), server.url.clone());
    let mut app = app(backend)
        .with_config(move |f| {
            let file = std::mem::take(&mut f.connections[0].metadata_file);
            srv.serve(Some(std::fs::read_to_string(file).unwrap_or_default()));
            f.connections[0].metadata_url = Some(url);
        })
        .start()
        .await?;
    let to_idp = |resp: reqwest::Response| -> Result<String, Box<dyn std::error::Error>> {
        Ok(resp.headers().get("location").ok_or("no Location")?.to_str()?.to_string())
    };
    let sp_metadata = format!("{}/saml/{CONNECTION}/metadata", app.base);
    assert!(!to_idp(app.browser.get(app.auth_url(&[])).send().await?)?.contains("&Signature="));
    assert!(!reqwest::get(&sp_metadata).await?.text().await?.contains("SingleLogoutService"));

    let mut idp = app.idp.clone();
    idp.slo_url = Some("https://idp.test/slo".into());
    let wants =
        idp.metadata_xml().replace(r#"WantAuthnRequestsSigned="false""#, r#"WantAuthnRequestsSigned="true""#);
    server.serve(Some(wants));
    assert_eq!(app.state.refresh_trust().await?, 1);
    app.new_browser()?;
    assert!(to_idp(app.browser.get(app.auth_url(&[])).send().await?)?.contains("&Signature="));
    let xml = reqwest::get(&sp_metadata).await?.text().await?;
    assert!(xml.contains("SingleLogoutService") && xml.contains(r#"AuthnRequestsSigned="true""#), "{xml}");

    // And a sign-out now goes on to the IdP's new endpoint.
    assert!(redirect_query(login_at(&app, &app.base.clone(), &idp, "ada@example.com").await?)
        .await?
        .contains_key("code"));
    let page = app.browser.get(format!("{}/logout", app.base)).send().await?.text().await?;
    let confirm =
        page.split("name=\"confirm\" value=\"").nth(1).and_then(|s| s.split('"').next()).ok_or("no form")?;
    let resp = app.browser.post(format!("{}/logout", app.base)).form(&[("confirm", confirm)]).send().await?;
    assert!(to_idp(resp)?.starts_with("https://idp.test/slo?SAMLRequest="));
    Ok(())
}
both_backends!(metadata_refresh_brings_request_signing_and_single_logout, refresh_brings_signing_and_slo);

/// Two instances storing a connection's first metadata copy at the same moment (a rollout of
/// several replicas on one PostgreSQL): both find no row and both insert; the loser's insert
/// turns into an update instead of failing its start-up.
async fn first_copy_race(b: Backend) -> TestResult {
    use ssobroker::store::idp_metadata::{get, put, StoredMetadata};
    let app = app(b).start().await?;
    for round in 0..20 {
        let id = format!("race-{round}");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let writers: Vec<_> = (0..2)
            .map(|n| {
                let (pool, barrier, id) = (app.pool.clone(), barrier.clone(), id.clone());
                std::thread::spawn(move || -> Result<(), String> {
                    let mut c = pool.get().map_err(|e| e.to_string())?;
                    let row = StoredMetadata {
                        connection_id: id,
                        source_url: "https://idp.test/metadata".into(),
                        xml: format!("<copy n=\"{n}\"/>"),
                        fetched_at: n,
                    };
                    barrier.wait();
                    put(&mut c, &row).map_err(|e| e.to_string())
                })
            })
            .collect();
        for w in writers {
            w.join().map_err(|_| "writer panicked")??;
        }
        let mut c = app.pool.get()?;
        let stored = get(&mut c, &id)?.ok_or("no copy stored")?;
        assert!(stored.xml.starts_with("<copy n="), "one of the two copies: {}", stored.xml);
    }
    Ok(())
}
both_backends!(first_metadata_copy_race_is_an_update, first_copy_race);
