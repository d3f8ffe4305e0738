//! What each CLI command does, kept out of main.rs so it stays a thin argument parser.

use crate::clock::SystemClock;
use crate::config::{self, Config, FileClient, FileConfig, FileConnection, LogFormat};
use crate::devidp::DevIdp;
use crate::oidc::{random_token, Secret};
use crate::provisioning::Vendor;
use crate::web::{self, AppState, DemoState};
use anyhow::Context;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

/// Logs to stderr, as text or as one JSON object per line. Inside a request every line carries
/// its `request_id` (the request span's field: `span.request_id` in JSON).
pub fn init_logging(format: LogFormat) {
    // handlebars logs whole template contexts (SAML responses, claims) at debug: keep it quiet
    // unless asked for by name.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SSOBROKER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive("handlebars=warn".parse().unwrap_or_default());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init()
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    // The error already names file, key and reason; no extra context needed.
    config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

pub fn check_config(path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    println!(
        "{}: ok ({} connection(s), {} client(s), issuer {})",
        path.display(),
        cfg.connections.len(),
        cfg.clients.len(),
        cfg.issuer
    );
    for c in &cfg.connections {
        println!("  connection {}: SP entity ID {} · ACS {}", c.id, c.sp.entity_id, c.sp.acs_url);
        if c.slo_service_on() {
            println!("    single logout: {}", c.sp.slo_url);
        }
        if let Some(source) = &c.metadata_url {
            // Not fatal: a running broker falls back to its stored copy.
            match crate::flow::trust::fetch(&source.url)
                .and_then(|xml| crate::saml::parse_idp_metadata(&xml).map_err(|e| e.to_string()))
            {
                Ok(m) => println!(
                    "    metadata_url ok: {} ({} signing certificate(s))",
                    m.entity_id,
                    m.signing_certs.len()
                ),
                Err(e) => {
                    println!("    metadata_url unreachable now ({e}); the broker would use its stored copy")
                }
            }
        }
    }
    Ok(())
}

pub fn migrate(path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    crate::store::connect(&cfg.database, 1).context("database")?;
    println!("migrations applied");
    Ok(())
}

pub fn serve(path: &Path, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    let cfg = load(path)?;
    init_logging(log_format.unwrap_or(cfg.log_format));
    let listener = bind(&cfg.listen.to_string())?;
    run(cfg, None, listener)
}

fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).with_context(|| format!("listen on {listen}"))
}

fn run(cfg: Config, demo: Option<DemoState>, listener: TcpListener) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let pool = crate::store::connect(&cfg.database, (workers as u32 * 4).max(8)).context("database")?;
    let issuer = cfg.issuer.clone();
    let database = cfg.database.describe();
    let address = listener.local_addr()?;
    let state = AppState::new(cfg, pool, Arc::new(SystemClock), demo)?;
    tracing::info!(issuer = %issuer, address = %address, database = %database, "ssobroker listening");
    actix_web::rt::System::new().block_on(async move {
        let tasks = [
            web::spawn_housekeeping(state.clone()),
            web::spawn_key_refresh(state.clone()),
            web::spawn_trust_refresh(state.clone()),
        ];
        // Returns after SIGTERM/SIGINT once requests in flight finished (or shutdown_timeout).
        let served = web::serve(state, listener, workers)?.await;
        for t in tasks {
            t.abort();
        }
        tracing::info!("ssobroker stopped");
        served
    })?;
    Ok(())
}

pub fn hash_secret() -> anyhow::Result<()> {
    let mut secret = String::new();
    std::io::stdin().read_line(&mut secret).context("read secret from stdin")?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.len() < 16 {
        anyhow::bail!("a client secret must be at least 16 characters");
    }
    println!("{}", crate::oidc::hash_client_secret(secret)?);
    Ok(())
}

pub fn healthcheck(url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).context("--url")?;
    let host = parsed.host_str().context("--url has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((host, port)).context("connect")?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf)?;
    if buf.starts_with("HTTP/1.1 200") {
        println!("ok");
        Ok(())
    } else {
        anyhow::bail!("unhealthy: {}", buf.lines().next().unwrap_or(""))
    }
}

/// The demo's config: one connection to the development IdP, one confidential client (the
/// sample app), SQLite under `data_dir`.
pub fn demo_config(
    listen: &str,
    data_dir: &Path,
    idp: &DevIdp,
    client_secret: &str,
) -> anyhow::Result<FileConfig> {
    let issuer = format!("http://{listen}");
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let metadata = data_dir.join("dev-idp-metadata.xml");
    std::fs::write(&metadata, idp.metadata_xml()).context("write dev IdP metadata")?;
    Ok(FileConfig {
        issuer: issuer.clone(),
        listen: listen.to_string(),
        database_url: format!("sqlite://{}", data_dir.join("ssobroker.db").display()),
        connections: vec![FileConnection {
            display_name: Some("Development IdP".into()),
            // Any SAML IdP: the generic attribute names cover what the dev IdP sends.
            vendor: Vendor::Generic,
            default_roles: vec!["user".into()],
            role_mapping: [
                ("Engineering".to_string(), vec!["engineer".to_string()]),
                ("IT-Admins".to_string(), vec!["admin".to_string()]),
            ]
            .into_iter()
            .collect(),
            // Relative to the config's base directory, which for the demo is `data_dir`.
            ..FileConnection::new("dev-idp", "dev-idp-metadata.xml")
        }],
        clients: vec![FileClient {
            client_secret: Some(client_secret.into()),
            post_logout_redirect_uris: vec![format!("{issuer}/demo-app/")],
            launch_url: Some(format!("{issuer}/demo-app/")),
            ..FileClient::new("sample-app", &format!("{issuer}/demo-app/callback"))
        }],
        // Users the development IdP puts in the IT-Admins group may open the admin console.
        admin_role: Some("admin".into()),
        ..FileConfig::default()
    })
}

/// The demo's local admin: created on the first run, given a fresh password on every run, so
/// the password printed at start always works.
fn demo_admin(cfg: &Config) -> anyhow::Result<String> {
    use crate::console::{auth, Actor};
    let pool = crate::store::connect(&cfg.database, 1).context("database")?;
    let mut conn = pool.get()?;
    let password = auth::generate_password();
    let hash = auth::hash_password(&password)?;
    let now = chrono::Utc::now();
    if crate::store::admin_accounts::account(&mut conn, DEMO_ADMIN)?.is_some() {
        auth::set_account_password(&mut conn, DEMO_ADMIN, &hash, &Actor::cli(), now)?;
    } else {
        auth::create_account(&mut conn, DEMO_ADMIN, &hash, &Actor::cli(), now)?;
    }
    Ok(password)
}

const DEMO_ADMIN: &str = "admin";

pub fn demo(listen: &str, data_dir: &Path) -> anyhow::Result<()> {
    // A taken port fails before anything is generated, written or printed (a banner with a
    // password for a demo that never ran would mislead).
    let listener = bind(listen)?;
    let issuer = format!("http://{listen}");
    let mut idp = DevIdp::generate(&format!("{issuer}/dev-idp/metadata"), &format!("{issuer}/dev-idp/sso"))?;
    // The dev IdP takes part in single logout, so the demo shows a whole sign-out too.
    idp.slo_url = Some(format!("{issuer}/dev-idp/slo"));
    let secret = random_token(32);
    let raw = demo_config(listen, data_dir, &idp, &secret)?;
    let cfg = config::validate(raw, "(demo)", data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let admin_password = demo_admin(&cfg)?;
    // The CLI (`user`, `admin`, `audit`, …) needs a config file; this one names the demo's
    // database with an absolute path, so it works from any directory.
    let db = std::fs::canonicalize(data_dir)
        .with_context(|| format!("resolve {}", data_dir.display()))?
        .join("ssobroker.db");
    let cli_config = data_dir.join("cli.toml");
    std::fs::write(
        &cli_config,
        format!("# Written by `ssobroker demo`: the CLI on the demo database.\nissuer = \"{issuer}\"\ndatabase_url = \"sqlite://{}\"\n", db.display()),
    )
    .with_context(|| format!("write {}", cli_config.display()))?;
    let demo = DemoState {
        idp,
        connection_id: "dev-idp".into(),
        client_id: "sample-app".into(),
        client_secret: Secret::new(secret),
        redirect_uri: format!("{issuer}/demo-app/callback"),
        broker_url: issuer.clone(),
    };
    println!();
    println!("  ssobroker demo — a development IdP and a sample app on SQLite ({})", data_dir.display());
    println!("  Open {issuer}/demo-app/ and click \"Log in with ssobroker\".");
    println!("  The development IdP is for demos and tests only.");
    println!();
    println!("  Admin console: {issuer}/admin/login");
    println!("    name: {DEMO_ADMIN}   password: {admin_password}   (new on every start)");
    println!("    or sign in through the development IdP with the group IT-Admins.");
    println!("  User portal:   {issuer}/");
    println!("  CLI on this database: target/debug/ssobroker user list --config {}", cli_config.display());
    println!();
    run(cfg, Some(demo), listener)
}
