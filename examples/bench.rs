//! Load benchmark: complete brokered logins (or the refresh grant alone) against a real
//! `ssobroker serve` process over loopback HTTP.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench -- --concurrency 8 --logins 3000
//! cargo run --release --example bench -- --database postgres://postgres:postgres@127.0.0.1:5432/postgres
//! cargo run --release --example bench -- --refresh-only --seconds 20 --json
//! ```
//!
//! The bench writes a config (one connection whose IdP is a development IdP of this process, no
//! clients in the file), starts `target/<profile>/ssobroker serve` on an empty database (that
//! start is timed as the cold start: migrations and the first signing key), registers the client
//! with `ssobroker client add` (a generated secret: SHA-256 check at /token), restarts the broker
//! (the warm start), warms up and then measures. Each login is a fresh browser: GET /authorize →
//! AuthnRequest ID and RelayState from the redirect → a response signed by the development IdP
//! on the bench's own signing threads → POST to the ACS (with the browser cookie) → /token
//! (client_secret_basic + PKCE S256) → /userinfo. Broker CPU comes from its utime+stime in
//! /proc/<pid>/stat, peak RSS from VmHWM.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use chrono::Utc;
use clap::Parser;
use ssobroker::devidp::{parse_authn_request, DevIdp, ResponseSpec};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const CONNECTION: &str = "bench";
const CLIENT_ID: &str = "bench-app";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const ARGON2_SECRET: &str = "bench-config-secret-0123456789";

#[derive(Parser, Debug, Clone)]
#[command(about = "Load benchmark of brokered SAML → OIDC logins against a real `ssobroker serve`")]
struct Args {
    /// Simultaneous virtual browsers (requests in flight).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Distinct users (emails). A user's first measured login is a JIT creation, later ones re-logins.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// Measured logins (refreshes with --refresh-only).
    #[arg(long, default_value_t = 2000)]
    logins: u64,
    /// Measure for this many seconds instead of a number of logins.
    #[arg(long)]
    seconds: Option<f64>,
    /// Unmeasured operations before measuring (separate users, so they do not count as JIT).
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// `sqlite` (a file in a temporary directory) or a postgres:// URL of a server on which a
    /// fresh database is created for the run (and dropped afterwards).
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Keep the PostgreSQL database and the run directory (config, SQLite file, broker log).
    #[arg(long)]
    keep: bool,
    /// `signing_alg` of the broker's token signing key: RS256, ES256 or EdDSA.
    #[arg(long, default_value = "RS256")]
    alg: String,
    /// Benchmark only the refresh grant: one login per virtual browser with offline_access,
    /// then rotate refresh tokens as fast as possible.
    #[arg(long)]
    refresh_only: bool,
    /// Put the client in the config file with `client_secret` (argon2id verified at every
    /// /token) instead of registering it with `ssobroker client add` (SHA-256).
    #[arg(long)]
    argon2_secret: bool,
    /// Threads of the bench's own signing IdP (xmlsec signs one document at a time per process).
    #[arg(long, default_value_t = 1)]
    sign_threads: usize,
    /// Async worker threads of the bench's HTTP client.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// The broker binary (default: `ssobroker` in the target directory of this example).
    #[arg(long)]
    broker: Option<PathBuf>,
    /// SSOBROKER_LOG of the broker; its log goes to broker.log in the run directory.
    #[arg(long, default_value = "info")]
    broker_log: String,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Resilience check instead of a benchmark: logins under load while PostgreSQL is restarted
    /// (`pg-restart`, with --pg-restart-cmd) or the broker is SIGKILLed and started again
    /// (`broker-kill`); then checks that the broker recovered and that no half-created user or
    /// lost login exists. Exits non-zero when a check fails. Default duration 20 s.
    #[arg(long, value_parser = ["pg-restart", "broker-kill"])]
    chaos: Option<String>,
    /// Seconds into the measured load at which --chaos strikes.
    #[arg(long, default_value_t = 6.0)]
    chaos_at: f64,
    /// The command that restarts PostgreSQL for --chaos pg-restart (run with `sh -c`).
    #[arg(long, default_value = "pg_ctlcluster 15 main restart")]
    pg_restart_cmd: String,
    /// Broker processes on the one database, behind no sticky routing: each login's steps go to
    /// different instances (authorize on one, the ACS on the next, /token and /userinfo
    /// alternating), as a round-robin load balancer would send them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4))]
    instances: u16,
    /// Before measuring, make the database hold this many users (user0…user<N-1>@example.com)
    /// as if each had logged in once: one real login, then SQL copies of its user, identity and
    /// roles. The measured logins are then re-logins of users spread over all N (--users is
    /// ignored), for the cost of a login on a large user table.
    #[arg(long, default_value_t = 0)]
    seed_users: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.users == 0 || args.sign_threads == 0 || args.client_threads == 0 {
        bail!("--concurrency, --users, --sign-threads and --client-threads must be at least 1");
    }
    if args.instances > 1 && args.chaos.is_some() {
        bail!("--chaos drives one instance; --instances needs a plain run");
    }
    let broker_bin = match &args.broker {
        Some(p) => p.clone(),
        None => default_broker_path()?,
    };
    if !broker_bin.is_file() {
        bail!("{} not found: run `cargo build --release` first (or pass --broker)", broker_bin.display());
    }
    let dir = tempfile::Builder::new().prefix("ssobroker-bench-").tempdir()?;
    let run_dir = dir.path().to_path_buf();
    let mut pg = None;
    let database_url = if args.database == "sqlite" {
        format!("sqlite://{}", run_dir.join("broker.db").display())
    } else if args.database.starts_with("postgres://") || args.database.starts_with("postgresql://") {
        let (url, db) = create_postgres_database(&args.database)?;
        pg = Some(PgDatabase { admin_url: args.database.clone(), name: db, keep: args.keep });
        url
    } else {
        bail!("--database is `sqlite` or a postgres:// URL");
    };
    let pg_name = pg.as_ref().map(|p: &PgDatabase| p.name.clone());
    let result = run(&args, &broker_bin, &run_dir, &database_url, pg_name);
    if args.keep {
        let kept = dir.keep();
        eprintln!("run directory kept: {}", kept.display());
    }
    drop(pg);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string(&report.json)?);
    } else {
        print!("{}", report.table);
    }
    Ok(())
}

struct Report {
    table: String,
    json: serde_json::Value,
}

fn run(
    args: &Args,
    broker_bin: &Path,
    run_dir: &Path,
    database_url: &str,
    pg_name: Option<String>,
) -> Result<Report> {
    let ports: Vec<u16> = (0..args.instances).map(|_| free_port()).collect::<Result<_>>()?;
    let port = ports[0];
    // Every instance has the same configuration, so the same issuer (the balancer's address in
    // a real deployment); only where it listens differs.
    let issuer = format!("http://127.0.0.1:{port}");
    let idp = DevIdp::generate("https://idp.bench.invalid/metadata", "https://idp.bench.invalid/sso")?;
    std::fs::write(run_dir.join("idp.xml"), idp.metadata_xml())?;
    let config = run_dir.join("ssobroker.toml");
    std::fs::write(&config, config_toml(&issuer, port, database_url, &args.alg, args.argon2_secret))?;
    let log_path = run_dir.join("broker.log");

    // Cold start: empty database, so migrations and the first signing key are part of it.
    let mut cold = Broker::spawn(broker_bin, &config, &log_path, &args.broker_log)?;
    let ready_cold = cold.wait_ready(port, &log_path)?;
    let secret =
        if args.argon2_secret { ARGON2_SECRET.to_string() } else { register_client(broker_bin, &config)? };
    cold.stop();
    let mut broker = Broker::spawn(broker_bin, &config, &log_path, &args.broker_log)?;
    let ready_warm = broker.wait_ready(port, &log_path)?;
    let mut others = Vec::new();
    for &p in &ports[1..] {
        let mut b = Broker::spawn_listening(broker_bin, &config, &log_path, &args.broker_log, Some(p))?;
        b.wait_ready(p, &log_path)?;
        others.push(b);
    }

    let signer = Signer::start(&idp, args.sign_threads);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        // Bounded, so a hung request shows as a failure (the resilience checks need to see it).
        .timeout(Duration::from_secs(60))
        .build()?;
    let ctx = Arc::new(Ctx {
        http,
        sp_entity_id: format!("{issuer}/saml/{CONNECTION}/metadata"),
        acs_url: format!("{issuer}/saml/{CONNECTION}/acs"),
        instances: ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect(),
        base: issuer,
        secret,
        idp,
        signer,
        seq: AtomicU64::new(0),
        pg: pg_name.map(|name| (args.database.clone(), name)),
        issued: args.chaos.as_ref().map(|_| Mutex::new(Vec::new())),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    if let Some(mode) = &args.chaos {
        let restart = Restart { bin: broker_bin, config: &config, log: &log_path, port };
        return chaos_run(args, mode, &ctx, &rt, broker, &restart, database_url);
    }
    if args.seed_users > 1 {
        let t = Instant::now();
        rt.block_on(login(&ctx, "user0@example.com", "openid email profile"))?;
        seed_users(database_url, args.seed_users)?;
        eprintln!("seeded {} users in {:.1} s", args.seed_users, t.elapsed().as_secs_f64());
    }
    let clk_tck = clock_ticks_per_second();
    let pids: Vec<u32> = std::iter::once(broker.pid()).chain(others.iter().map(Broker::pid)).collect();
    let outcome = rt.block_on(load(args, &ctx, &pids));
    let mem: Vec<Memory> = pids.iter().map(|&p| broker_memory(p)).collect();
    broker.stop();
    for b in &mut others {
        b.stop();
    }
    let outcome = outcome?;
    Ok(report(args, &outcome, &mem, ready_cold, ready_warm, clk_tck))
}

// ---------------------------------------------------------------------------------------------
// The broker process

fn default_broker_path() -> Result<PathBuf> {
    // target/<profile>/examples/bench → target/<profile>/ssobroker
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot locate the target directory from {}", exe.display()))?;
    Ok(profile_dir.join(format!("ssobroker{}", std::env::consts::EXE_SUFFIX)))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A TOML basic string (JSON string escapes are valid TOML).
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn config_toml(issuer: &str, port: u16, database_url: &str, alg: &str, argon2_client: bool) -> String {
    let mut t = format!(
        "issuer = {}\nlisten = {}\ndatabase_url = {}\nsigning_alg = {}\n\n",
        toml_str(issuer),
        toml_str(&format!("127.0.0.1:{port}")),
        toml_str(database_url),
        toml_str(alg),
    );
    // Every request of the bench comes from 127.0.0.1, standing for thousands of users: the
    // per-address limits would measure the limiter, not the broker.
    t.push_str(concat!(
        "[rate_limits]\ntoken = { per_minute = 0, burst = 0 }\nacs = { per_minute = 0, burst = 0 }\n",
        "admin_login = { per_minute = 0, burst = 0 }\n\n"
    ));
    t.push_str(&format!(
        concat!(
            "[[connections]]\nid = {}\ndisplay_name = \"Bench IdP\"\nvendor = \"okta\"\n",
            "metadata_file = \"idp.xml\"\ndomains = [\"example.com\"]\ndefault_roles = [\"user\"]\n",
            "role_mapping = {{ \"Engineering\" = [\"engineer\"] }}\n\n"
        ),
        toml_str(CONNECTION)
    ));
    if argon2_client {
        t.push_str(&format!(
            "[[clients]]\nclient_id = {}\nclient_secret = {}\nredirect_uris = [{}]\n",
            toml_str(CLIENT_ID),
            toml_str(ARGON2_SECRET),
            toml_str(REDIRECT_URI)
        ));
    }
    t
}

/// `ssobroker client add`: a generated secret, stored as SHA-256.
fn register_client(broker_bin: &Path, config: &Path) -> Result<String> {
    let out = Command::new(broker_bin)
        .args(["client", "add", CLIENT_ID, "--redirect-uri", REDIRECT_URI, "--config"])
        .arg(config)
        .env("SSOBROKER_LOG", "warn")
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("ssobroker client add failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| anyhow!("no client_secret in the output of ssobroker client add: {stdout}"))
}

struct Broker {
    child: Option<Child>,
    started: Instant,
    /// The pid of the process `stop` ended (for the resilience report).
    pid_before_stop: u32,
}

impl Broker {
    fn spawn(bin: &Path, config: &Path, log: &Path, level: &str) -> Result<Self> {
        Self::spawn_listening(bin, config, log, level, None)
    }

    /// `spawn` with another listening port than the config's (a second instance).
    fn spawn_listening(
        bin: &Path,
        config: &Path,
        log: &Path,
        level: &str,
        port: Option<u16>,
    ) -> Result<Self> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let started = Instant::now();
        let mut cmd = Command::new(bin);
        if let Some(p) = port {
            cmd.env("SSOBROKER_LISTEN", format!("127.0.0.1:{p}"));
        }
        let child = cmd
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("SSOBROKER_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Broker { child: Some(child), started, pid_before_stop: 0 })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Time from spawn to the first 200 on /healthz.
    fn wait_ready(&mut self, port: u16, log: &Path) -> Result<Duration> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if healthz_ok(addr) {
                return Ok(self.started.elapsed());
            }
            if let Some(status) = self.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!("the broker exited ({status}) before it was ready:\n{}", tail.join("\n"));
            }
            if self.started.elapsed() > Duration::from_secs(60) {
                bail!("the broker was not ready after 60 s (see {})", log.display());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.pid_before_stop = child.id();
            // SIGKILL; the benchmark is over and the database is thrown away.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn healthz_ok(addr: SocketAddr) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        Ok(buf.starts_with(b"HTTP/1.1 200"))
    };
    probe().unwrap_or(false)
}

struct PgDatabase {
    admin_url: String,
    name: String,
    keep: bool,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("PostgreSQL database kept: {}", self.name);
            return;
        }
        use diesel::{Connection, RunQueryDsl};
        let dropped =
            diesel::PgConnection::establish(&self.admin_url).map_err(|e| e.to_string()).and_then(|mut c| {
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                    .execute(&mut c)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = dropped {
            eprintln!("could not drop database {}: {e}", self.name);
        }
    }
}

/// A new database on the server of `admin_url`; returns its URL and name.
fn create_postgres_database(admin_url: &str) -> Result<(String, String)> {
    use diesel::{Connection, RunQueryDsl};
    let mut admin = diesel::PgConnection::establish(admin_url).context("connect to PostgreSQL")?;
    let name = format!("ssobroker_bench_{}", uuid::Uuid::new_v4().simple());
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&format!("/{name}"));
    Ok((url.to_string(), name))
}

/// Copies user0 (logged in once by the bench) into user1…user<n-1>: the user row, the
/// federated identity and the roles, with the email and subject renamed, in one transaction.
fn seed_users(database_url: &str, n: u64) -> Result<()> {
    use diesel::connection::SimpleConnection;
    use ssobroker::store::DbConnection;
    let url = ssobroker::config::DatabaseUrl::parse(database_url).map_err(|e| anyhow!(e))?;
    let pool = ssobroker::store::open_existing(&url)?;
    let mut c = pool.get()?;
    let last = n - 1;
    let numbers = match &*c {
        DbConnection::Postgres(_) => format!("SELECT generate_series(1, {last}) AS i"),
        DbConnection::Sqlite(_) => {
            format!("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {last}) SELECT i FROM s")
        }
    };
    let template = "(SELECT id FROM users WHERE email = 'user0@example.com')";
    let sql = format!(
        "BEGIN;
         CREATE TEMPORARY TABLE seed_numbers AS {numbers};
         INSERT INTO users (id, email, email_verified, given_name, family_name, display_name, groups_json,
                            disabled, created_at, updated_at, last_login_at)
           SELECT 'seed-' || s.i, 'user' || s.i || '@example.com', u.email_verified, u.given_name, u.family_name,
                  u.display_name, u.groups_json, u.disabled, u.created_at, u.updated_at, u.last_login_at
           FROM users u, seed_numbers s WHERE u.id = {template};
         INSERT INTO federated_identities (connection_id, subject, user_id, created_at, last_login_at)
           SELECT f.connection_id, replace(f.subject, 'user0@', 'user' || s.i || '@'), 'seed-' || s.i,
                  f.created_at, f.last_login_at
           FROM federated_identities f, seed_numbers s WHERE f.user_id = {template};
         INSERT INTO user_roles (user_id, role, source, source_detail, granted_at)
           SELECT 'seed-' || s.i, r.role, r.source, r.source_detail, r.granted_at
           FROM user_roles r, seed_numbers s WHERE r.user_id = {template};
         DROP TABLE seed_numbers;
         COMMIT;"
    );
    c.batch_execute(&sql).context("seed users")?;
    if let DbConnection::Postgres(pg) = &mut *c {
        // Fresh statistics, as a long-running database would have.
        pg.batch_execute("ANALYZE")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// /proc readings

/// utime and stime (clock ticks) of a /proc/…/stat file.
fn stat_ticks(path: &str) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: field 3 (state) is f[0], utime (14) f[11], stime (15) f[12].
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Busy and total ticks of the whole machine (first line of /proc/stat).
fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    peak_kb: u64,
    rss_kb: u64,
    threads: u64,
}

fn broker_memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory { peak_kb: field("VmHWM:"), rss_kb: field("VmRSS:"), threads: field("Threads:") }
}

/// CPU of the brokers (summed over instances), of this process and of the machine at one instant.
#[derive(Debug, Clone, Default)]
struct CpuSnapshot {
    broker: (u64, u64),
    /// utime+stime of each instance.
    per_instance: Vec<u64>,
    bench: (u64, u64),
    signing: u64,
    machine_busy: u64,
    machine_total: u64,
}

fn cpu_snapshot(broker_pids: &[u32], signer: &Signer) -> CpuSnapshot {
    let (machine_busy, machine_total) = machine_ticks().unwrap_or_default();
    let each: Vec<(u64, u64)> =
        broker_pids.iter().map(|p| stat_ticks(&format!("/proc/{p}/stat")).unwrap_or_default()).collect();
    CpuSnapshot {
        broker: each.iter().fold((0, 0), |(u, s), (eu, es)| (u + eu, s + es)),
        per_instance: each.iter().map(|(u, s)| u + s).collect(),
        bench: stat_ticks("/proc/self/stat").unwrap_or_default(),
        signing: signer.cpu_ticks(),
        machine_busy,
        machine_total,
    }
}

#[derive(diesel::QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// utime+stime of each PostgreSQL server process connected to the run's database (a local
/// server only: the pids must be in this machine's /proc).
fn pg_backend_ticks(pg: Option<&(String, String)>) -> BTreeMap<u32, u64> {
    use diesel::{Connection, RunQueryDsl};
    let Some((admin_url, name)) = pg else { return BTreeMap::new() };
    let Ok(mut conn) = diesel::PgConnection::establish(admin_url) else { return BTreeMap::new() };
    let pids: Vec<BackendPid> = diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .load(&mut conn)
        .unwrap_or_default();
    pids.into_iter()
        .filter_map(|p| {
            let pid = u32::try_from(p.pid).ok()?;
            let (u, s) = stat_ticks(&format!("/proc/{pid}/stat"))?;
            Some((pid, u + s))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The development IdP's signing threads

struct SignJob {
    spec: ResponseSpec,
    reply: tokio::sync::oneshot::Sender<Result<(String, Duration), String>>,
}

/// Signs responses on dedicated threads, so the IdP's RSA work neither blocks the HTTP client
/// nor hides in its numbers; each thread tracks its own CPU time.
struct Signer {
    tx: Mutex<Option<mpsc::Sender<SignJob>>>,
    ticks: Arc<Vec<AtomicU64>>,
}

impl Signer {
    fn start(idp: &DevIdp, threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<SignJob>();
        let rx = Arc::new(Mutex::new(rx));
        let ticks: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
        for i in 0..threads {
            let (rx, ticks, idp) = (Arc::clone(&rx), Arc::clone(&ticks), idp.clone());
            std::thread::spawn(move || {
                let start = stat_ticks("/proc/thread-self/stat").map(|(u, s)| u + s).unwrap_or(0);
                loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let t = Instant::now();
                    let signed = idp.sign_response_b64(&job.spec).map_err(|e| e.to_string());
                    let took = t.elapsed();
                    let _ = job.reply.send(signed.map(|s| (s, took)));
                    if let Some((u, s)) = stat_ticks("/proc/thread-self/stat") {
                        if let Some(slot) = ticks.get(i) {
                            slot.store((u + s).saturating_sub(start), Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        Signer { tx: Mutex::new(Some(tx)), ticks }
    }

    async fn sign(&self, spec: ResponseSpec) -> Result<(String, Duration)> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        {
            let guard = self.tx.lock().map_err(|_| anyhow!("signer lock poisoned"))?;
            let tx = guard.as_ref().ok_or_else(|| anyhow!("signer stopped"))?;
            tx.send(SignJob { spec, reply }).map_err(|_| anyhow!("signer threads gone"))?;
        }
        rx.await.map_err(|_| anyhow!("signer dropped the job"))?.map_err(|e| anyhow!("signing: {e}"))
    }

    fn cpu_ticks(&self) -> u64 {
        self.ticks.iter().map(|t| t.load(Ordering::Relaxed)).sum()
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One login, one refresh

struct Ctx {
    http: reqwest::Client,
    /// The issuer: instance 0, and the base of the URLs the broker puts in its documents.
    base: String,
    /// Where each instance listens (one entry without --instances).
    instances: Vec<String>,
    sp_entity_id: String,
    acs_url: String,
    secret: String,
    idp: DevIdp,
    signer: Signer,
    seq: AtomicU64,
    /// PostgreSQL admin URL and the run's database, to find its server processes.
    pg: Option<(String, String)>,
    /// Under --chaos: every code the broker issued, to check afterwards that it is intact.
    issued: Option<Mutex<Vec<Issued>>>,
}

/// A login that got a code from the ACS (its commit happened), and what /token made of it.
#[derive(Debug, Clone)]
struct Issued {
    email: String,
    code: String,
    verifier: String,
    access_token: Option<String>,
}

const STEP_NAMES: [&str; 6] = ["total", "authorize", "sign", "acs", "token", "userinfo"];
const TOTAL: usize = 0;
const AUTHORIZE: usize = 1;
const SIGN: usize = 2;
const ACS: usize = 3;
const TOKEN: usize = 4;
const USERINFO: usize = 5;

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// Microseconds per step (see STEP_NAMES); a refresh fills only TOTAL and TOKEN.
    us: [u64; 6],
    /// The bench's signing time inside the signer thread.
    sign_work_us: u64,
    /// This login created the user (its first).
    jit: bool,
}

fn pkce_pair(seq: u64) -> (String, String) {
    use sha2::Digest;
    let verifier = format!("bench-verifier-{seq:020}-0123456789abcdefghijklmnop");
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn us(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

fn query_of(location: &str) -> Result<BTreeMap<String, String>> {
    Ok(url::Url::parse(location)?.query_pairs().into_owned().collect())
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn expect_redirect(resp: reqwest::Response, step: &str) -> Result<(String, Vec<String>)> {
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect();
    if resp.status() != 302 {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("{step}: expected 302, got {status}: {}", body.chars().take(200).collect::<String>());
    }
    let loc = location(&resp).ok_or_else(|| anyhow!("{step}: 302 without Location"))?;
    Ok((loc, cookies))
}

async fn expect_json(resp: reqwest::Response, step: &str) -> Result<serde_json::Value> {
    let status = resp.status();
    if status != 200 {
        let body = resp.text().await.unwrap_or_default();
        bail!("{step}: expected 200, got {status}: {}", body.chars().take(200).collect::<String>());
    }
    Ok(resp.json().await?)
}

impl Ctx {
    /// The instance that serves `step` of login `seq`: /authorize round-robin, the ACS on the
    /// next instance (never the one that started the login, with two or more), /token and
    /// /userinfo alternating independently of both, so every combination occurs.
    fn instance(&self, seq: u64, step: usize) -> &str {
        let n = self.instances.len() as u64;
        let i = match step {
            AUTHORIZE => seq % n,
            ACS => (seq + 1) % n,
            TOKEN => (seq / n) % n,
            _ => (seq / n + 1) % n,
        };
        self.instances.get(i as usize).map(String::as_str).unwrap_or(self.base.as_str())
    }
}

/// A complete brokered login by a fresh browser. Returns the timings and the token response.
async fn login(ctx: &Ctx, email: &str, scope: &str) -> Result<(Sample, serde_json::Value)> {
    let seq = ctx.seq.fetch_add(1, Ordering::Relaxed);
    let (verifier, challenge) = pkce_pair(seq);
    let state = format!("st{seq}");
    let mut url = url::Url::parse(&format!("{}/authorize", ctx.instance(seq, AUTHORIZE)))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("nonce", &format!("n{seq}"))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut s = Sample::default();
    let t0 = Instant::now();

    let resp = ctx.http.get(url.as_str()).send().await?;
    let (to_idp, cookies) = expect_redirect(resp, "authorize").await?;
    let t1 = Instant::now();
    s.us[AUTHORIZE] = us(t1 - t0);

    let q = query_of(&to_idp)?;
    let saml_request = q.get("SAMLRequest").ok_or_else(|| anyhow!("authorize: no SAMLRequest"))?;
    let relay_state = q.get("RelayState").ok_or_else(|| anyhow!("authorize: no RelayState"))?.clone();
    let request = parse_authn_request(saml_request)?;
    let spec =
        ResponseSpec::new(&ctx.idp, &ctx.sp_entity_id, &ctx.acs_url, Some(&request.id), email, Utc::now())
            .with_attribute("email", &[email])
            .with_attribute("firstName", &["Bench"])
            .with_attribute("lastName", &["User"])
            .with_attribute("groups", &["Engineering", "Everyone"]);
    let (saml_response, sign_work) = ctx.signer.sign(spec).await?;
    s.sign_work_us = us(sign_work);
    let t2 = Instant::now();
    s.us[SIGN] = us(t2 - t1);

    // The IdP posts to the issuer's ACS URL; a balancer may hand it to any instance.
    let acs_url = format!("{}/saml/{CONNECTION}/acs", ctx.instance(seq, ACS));
    let mut acs = ctx
        .http
        .post(&acs_url)
        .form(&[("SAMLResponse", saml_response.as_str()), ("RelayState", relay_state.as_str())]);
    if !cookies.is_empty() {
        acs = acs.header("cookie", cookies.join("; "));
    }
    let (to_app, _) = expect_redirect(acs.send().await?, "acs").await?;
    let t3 = Instant::now();
    s.us[ACS] = us(t3 - t2);
    if !to_app.starts_with(REDIRECT_URI) {
        bail!("acs: redirect to {to_app}");
    }
    let q = query_of(&to_app)?;
    if let Some(e) = q.get("error") {
        bail!("acs: error={e} {}", q.get("error_description").map(String::as_str).unwrap_or_default());
    }
    let code = q.get("code").ok_or_else(|| anyhow!("acs: no code"))?;
    if q.get("state") != Some(&state) {
        bail!("acs: state mismatch");
    }
    let issued_at = ctx.issued.as_ref().and_then(|log| {
        let mut log = log.lock().ok()?;
        log.push(Issued {
            email: email.to_string(),
            code: code.clone(),
            verifier: verifier.clone(),
            access_token: None,
        });
        Some(log.len() - 1)
    });

    let resp = ctx
        .http
        .post(format!("{}/token", ctx.instance(seq, TOKEN)))
        .basic_auth(CLIENT_ID, Some(&ctx.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await?;
    let tokens = expect_json(resp, "token").await?;
    let t4 = Instant::now();
    s.us[TOKEN] = us(t4 - t3);
    let access = tokens
        .get("access_token")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("token: no access_token"))?;
    if let (Some(log), Some(i)) = (&ctx.issued, issued_at) {
        if let Some(entry) = log.lock().map_err(|_| anyhow!("poisoned"))?.get_mut(i) {
            entry.access_token = Some(access.to_string());
        }
    }

    let resp =
        ctx.http.get(format!("{}/userinfo", ctx.instance(seq, USERINFO))).bearer_auth(access).send().await?;
    let info = expect_json(resp, "userinfo").await?;
    let t5 = Instant::now();
    s.us[USERINFO] = us(t5 - t4);
    s.us[TOTAL] = us(t5 - t0);
    if info.get("email").and_then(|v| v.as_str()) != Some(email) {
        bail!("userinfo: email is {:?}, expected {email}", info.get("email"));
    }
    Ok((s, tokens))
}

/// One refresh grant; returns the timing and the rotated refresh token.
async fn refresh(ctx: &Ctx, token: &str) -> Result<(Sample, String)> {
    let seq = ctx.seq.fetch_add(1, Ordering::Relaxed);
    let t0 = Instant::now();
    let resp = ctx
        .http
        .post(format!("{}/token", ctx.instance(seq, TOKEN)))
        .basic_auth(CLIENT_ID, Some(&ctx.secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await?;
    let tokens = expect_json(resp, "refresh").await?;
    let took = us(t0.elapsed());
    let next = tokens
        .get("refresh_token")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("refresh: no refresh_token"))?;
    let mut s = Sample::default();
    s.us[TOTAL] = took;
    s.us[TOKEN] = took;
    Ok((s, next.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Phases

#[derive(Debug, Clone, Copy)]
struct Limit {
    count: Option<u64>,
    duration: Option<Duration>,
}

#[derive(Debug, Default)]
struct Phase {
    samples: Vec<Sample>,
    errors: BTreeMap<String, u64>,
    wall: Duration,
}

/// Runs `op(worker, index)` on `concurrency` workers until the limit: a worker takes the next
/// index and stops when the count is reached or the time is up (it finishes what it started).
async fn run_phase<F, Fut>(concurrency: usize, limit: Limit, op: F) -> Result<Phase>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Sample>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..concurrency {
        let (op, next) = (Arc::clone(&op), Arc::clone(&next));
        handles.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if limit.count.is_some_and(|n| i >= n)
                    || limit.duration.is_some_and(|d| started.elapsed() >= d)
                {
                    break;
                }
                match op(w, i).await {
                    Ok(s) => samples.push(s),
                    Err(e) => {
                        let msg: String = e.to_string().chars().take(160).collect();
                        *errors.entry(msg).or_default() += 1;
                        // Do not spin on a broken broker.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (samples, errors)
        }));
    }
    let mut phase = Phase::default();
    for h in handles {
        let (samples, errors) = h.await?;
        phase.samples.extend(samples);
        for (k, v) in errors {
            *phase.errors.entry(k).or_default() += v;
        }
    }
    phase.wall = started.elapsed();
    Ok(phase)
}

struct Outcome {
    phase: Phase,
    before: CpuSnapshot,
    after: CpuSnapshot,
    load_before: String,
    load_after: String,
    setup_errors: BTreeMap<String, u64>,
    /// CPU ticks of the PostgreSQL server processes serving the run's database.
    db_before: BTreeMap<u32, u64>,
    db_after: BTreeMap<u32, u64>,
}

async fn load(args: &Args, ctx: &Arc<Ctx>, broker_pids: &[u32]) -> Result<Outcome> {
    let limit = Limit {
        count: if args.seconds.is_some() { None } else { Some(args.logins) },
        duration: args.seconds.map(Duration::from_secs_f64),
    };
    let warmup = Limit { count: Some(args.warmup), duration: None };
    let phase = if args.refresh_only {
        // One refresh-token chain per virtual browser (rotation makes each token single-use).
        let scope = "openid email profile offline_access";
        let mut chains = Vec::new();
        for w in 0..args.concurrency {
            let (_, tokens) = login(ctx, &format!("refresh{w}@example.com"), scope).await?;
            let rt = tokens
                .get("refresh_token")
                .and_then(|v| v.as_str())
                .ok_or_else(|| anyhow!("no refresh_token for scope offline_access"))?;
            chains.push(Mutex::new(rt.to_string()));
        }
        let chains = Arc::new(chains);
        let make_op = || {
            let (ctx, chains) = (Arc::clone(ctx), Arc::clone(&chains));
            move |w: usize, _i: u64| {
                let (ctx, chains) = (Arc::clone(&ctx), Arc::clone(&chains));
                async move {
                    let slot = chains.get(w).ok_or_else(|| anyhow!("no chain {w}"))?;
                    let current = slot.lock().map_err(|_| anyhow!("poisoned"))?.clone();
                    match refresh(&ctx, &current).await {
                        Ok((s, next)) => {
                            *slot.lock().map_err(|_| anyhow!("poisoned"))? = next;
                            Ok(s)
                        }
                        Err(e) => {
                            // The chain is broken: start a new one with a fresh login.
                            let (_, tokens) = login(&ctx, &format!("refresh{w}@example.com"), scope).await?;
                            if let Some(rt) = tokens.get("refresh_token").and_then(|v| v.as_str()) {
                                *slot.lock().map_err(|_| anyhow!("poisoned"))? = rt.to_string();
                            }
                            Err(e)
                        }
                    }
                }
            }
        };
        let w = run_phase(args.concurrency, warmup, make_op()).await?;
        measure(args, ctx, broker_pids, limit, make_op(), w.errors).await?
    } else {
        let scope = "openid email profile";
        let warm_op = {
            let ctx = Arc::clone(ctx);
            move |_w: usize, i: u64| {
                let ctx = Arc::clone(&ctx);
                async move { login(&ctx, &format!("warmup{i}@example.com"), scope).await.map(|(s, _)| s) }
            }
        };
        let w = run_phase(args.concurrency, warmup, warm_op).await?;
        let (users, seeded) = (args.users, args.seed_users);
        let op = {
            let ctx = Arc::clone(ctx);
            move |_w: usize, i: u64| {
                let ctx = Arc::clone(&ctx);
                async move {
                    // Seeded: every login a re-login, users spread over the whole table (a
                    // multiplicative hash, so consecutive logins hit distant rows).
                    let user = if seeded > 1 { i.wrapping_mul(2_654_435_761) % seeded } else { i % users };
                    let (mut s, _) = login(&ctx, &format!("user{user}@example.com"), scope).await?;
                    s.jit = seeded <= 1 && i < users;
                    Ok(s)
                }
            }
        };
        measure(args, ctx, broker_pids, limit, op, w.errors).await?
    };
    Ok(phase)
}

async fn measure<F, Fut>(
    args: &Args,
    ctx: &Arc<Ctx>,
    broker_pids: &[u32],
    limit: Limit,
    op: F,
    setup_errors: BTreeMap<String, u64>,
) -> Result<Outcome>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Sample>> + Send + 'static,
{
    if !args.json {
        eprintln!(
            "broker pid {broker_pids:?}: measuring {} …",
            match (args.seconds, args.refresh_only) {
                (Some(s), _) => format!("for {s} s"),
                (None, true) => format!("{} refreshes", args.logins),
                (None, false) => format!("{} logins", args.logins),
            }
        );
    }
    let load_before = loadavg();
    let db_before = pg_backend_ticks(ctx.pg.as_ref());
    let before = cpu_snapshot(broker_pids, &ctx.signer);
    let phase = run_phase(args.concurrency, limit, op).await?;
    let after = cpu_snapshot(broker_pids, &ctx.signer);
    let db_after = pg_backend_ticks(ctx.pg.as_ref());
    Ok(Outcome {
        phase,
        before,
        after,
        load_before,
        load_after: loadavg(),
        setup_errors,
        db_before,
        db_after,
    })
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Debug, Clone, Copy, Default)]
struct Dist {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles, in milliseconds.
fn dist(mut v: Vec<u64>) -> Dist {
    if v.is_empty() {
        return Dist::default();
    }
    v.sort_unstable();
    let at = |p: f64| {
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v.get(rank.saturating_sub(1).min(v.len() - 1)).copied().unwrap_or(0) as f64 / 1000.0
    };
    Dist { n: v.len(), p50: at(50.0), p90: at(90.0), p99: at(99.0), max: at(100.0) }
}

impl Dist {
    fn json(&self) -> serde_json::Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        serde_json::json!({"n": self.n, "p50": r(self.p50), "p90": r(self.p90), "p99": r(self.p99), "max": r(self.max)})
    }
}

fn report(
    args: &Args,
    o: &Outcome,
    mems: &[Memory],
    ready_cold: Duration,
    ready_warm: Duration,
    clk_tck: u64,
) -> Report {
    let ok = o.phase.samples.len() as u64;
    let errors: u64 = o.phase.errors.values().sum();
    // The largest instance (one instance: the broker).
    let mem = mems.iter().copied().max_by_key(|m| m.peak_kb).unwrap_or_default();
    let instance_ticks: Vec<u64> =
        o.after.per_instance.iter().zip(&o.before.per_instance).map(|(a, b)| a.saturating_sub(*b)).collect();
    let per_op = ok.max(1) as f64;
    let ms = |ticks: u64| ticks as f64 * 1000.0 / clk_tck as f64;
    let broker_user = o.after.broker.0.saturating_sub(o.before.broker.0);
    let broker_sys = o.after.broker.1.saturating_sub(o.before.broker.1);
    let broker_ticks = broker_user + broker_sys;
    let bench_ticks = (o.after.bench.0 + o.after.bench.1).saturating_sub(o.before.bench.0 + o.before.bench.1);
    let sign_ticks = o.after.signing.saturating_sub(o.before.signing);
    let busy = o.after.machine_busy.saturating_sub(o.before.machine_busy);
    let total = o.after.machine_total.saturating_sub(o.before.machine_total).max(1);
    // A server process that started during the run counts from zero.
    let db_ticks: u64 =
        o.db_after.iter().map(|(pid, t)| t.saturating_sub(o.db_before.get(pid).copied().unwrap_or(0))).sum();
    let others = busy.saturating_sub(broker_ticks + bench_ticks + db_ticks);
    let wall = o.phase.wall.as_secs_f64();
    let rate = ok as f64 / wall.max(1e-9);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    let step = |i: usize, filter: &dyn Fn(&Sample) -> bool| {
        dist(o.phase.samples.iter().filter(|s| filter(s)).map(|s| s.us[i]).collect())
    };
    let all = |_: &Sample| true;
    let broker_rtt = dist(
        o.phase.samples.iter().map(|s| s.us[AUTHORIZE] + s.us[ACS] + s.us[TOKEN] + s.us[USERINFO]).collect(),
    );
    let sign_work = dist(o.phase.samples.iter().map(|s| s.sign_work_us).collect());
    let rows: Vec<(&str, Dist)> = if args.refresh_only {
        vec![("refresh (/token)", step(TOTAL, &all))]
    } else {
        vec![
            ("login (complete)", step(TOTAL, &all)),
            ("  broker requests", broker_rtt),
            ("  GET /authorize", step(AUTHORIZE, &all)),
            ("  IdP signing (bench)", step(SIGN, &all)),
            ("    of which signing", sign_work),
            ("  POST ACS", step(ACS, &all)),
            ("    JIT (first login)", step(ACS, &|s| s.jit)),
            ("    re-login", step(ACS, &|s| !s.jit)),
            ("  POST /token", step(TOKEN, &all)),
            ("  GET /userinfo", step(USERINFO, &all)),
        ]
    };
    let (what, whats) = if args.refresh_only { ("refresh", "refreshes") } else { ("login", "logins") };
    let database = if args.database == "sqlite" { "sqlite" } else { "postgres" };
    let secret = if args.argon2_secret { "argon2id (config client_secret)" } else { "sha256 (client add)" };
    let jit = o.phase.samples.iter().filter(|s| s.jit).count();

    let mut t = String::new();
    t.push_str(&format!(
        "ssobroker bench · {} · {}{} · {} · concurrency {} · {} · client secret {}\n",
        if args.refresh_only { "refresh grant" } else { "complete logins" },
        database,
        if args.instances > 1 { format!(" · {} broker instances", args.instances) } else { String::new() },
        args.alg,
        args.concurrency,
        if args.refresh_only {
            format!("{} chains", args.concurrency)
        } else {
            format!("{} users", args.users)
        },
        secret,
    ));
    t.push_str(&format!(
        "machine: {cpus} CPUs · load {} → {} · busy {:.0}% of all CPUs during the run, {:.2} CPU-s by other processes\n",
        o.load_before,
        o.load_after,
        busy as f64 * 100.0 / total as f64,
        ms(others) / 1000.0
    ));
    t.push_str(&format!(
        "broker ready (spawn → first 200 on /healthz): cold {:.0} ms (empty database: migrations + first key), warm {:.0} ms\n\n",
        ready_cold.as_secs_f64() * 1000.0,
        ready_warm.as_secs_f64() * 1000.0
    ));
    t.push_str(&format!(
        "{ok} {whats} ok, {errors} errors in {wall:.2} s  →  {rate:.1} {whats}/s{}\n",
        if args.refresh_only { String::new() } else { format!(" ({jit} JIT creations)") }
    ));
    t.push_str(&format!(
        "broker CPU      {:>8.3} ms/{what}  (user {:.3}, sys {:.3}; {:.1} CPU-s total)\n",
        ms(broker_ticks) / per_op,
        ms(broker_user) / per_op,
        ms(broker_sys) / per_op,
        ms(broker_ticks) / 1000.0
    ));
    if !o.db_after.is_empty() {
        t.push_str(&format!(
            "PostgreSQL CPU  {:>8.3} ms/{what}  ({} server processes of the run's database; broker + PostgreSQL {:.3})\n",
            ms(db_ticks) / per_op,
            o.db_after.len(),
            ms(broker_ticks + db_ticks) / per_op
        ));
    }
    t.push_str(&format!(
        "bench CPU       {:>8.3} ms/{what}  (of which IdP signing {:.3})\n",
        ms(bench_ticks) / per_op,
        ms(sign_ticks) / per_op
    ));
    if args.instances > 1 {
        let each: Vec<String> =
            instance_ticks.iter().enumerate().map(|(i, t)| format!("#{i} {:.3}", ms(*t) / per_op)).collect();
        t.push_str(&format!(
            "  per instance    {} ms/{what} (all of the run's {whats} / CPU of each)\n",
            each.join(", ")
        ));
    }
    for (i, m) in mems.iter().enumerate() {
        t.push_str(&format!(
            "broker memory   {}peak RSS {:.1} MB (VmHWM), RSS at end {:.1} MB, {} threads\n",
            if mems.len() > 1 { format!("#{i} ") } else { String::new() },
            m.peak_kb as f64 / 1024.0,
            m.rss_kb as f64 / 1024.0,
            m.threads
        ));
    }
    t.push('\n');
    t.push_str(&format!(
        "{:<24} {:>7} {:>9} {:>9} {:>9} {:>9}\n",
        "latency (ms)", "n", "p50", "p90", "p99", "max"
    ));
    for (name, d) in &rows {
        if d.n > 0 {
            t.push_str(&format!(
                "{:<24} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                name, d.n, d.p50, d.p90, d.p99, d.max
            ));
        }
    }
    for (label, errs) in [("errors", &o.phase.errors), ("warm-up errors", &o.setup_errors)] {
        if !errs.is_empty() {
            t.push_str(&format!("\n{label}:\n"));
            for (msg, n) in errs.iter().take(10) {
                t.push_str(&format!("  {n:>6} × {msg}\n"));
            }
        }
    }

    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let latency: serde_json::Map<String, serde_json::Value> = if args.refresh_only {
        [("refresh".to_string(), step(TOTAL, &all).json())].into_iter().collect()
    } else {
        let mut m: serde_json::Map<String, serde_json::Value> =
            STEP_NAMES.iter().enumerate().map(|(i, n)| (n.to_string(), step(i, &all).json())).collect();
        m.insert("broker_requests".into(), broker_rtt.json());
        m.insert("sign_work".into(), sign_work.json());
        m.insert("acs_jit".into(), step(ACS, &|s| s.jit).json());
        m.insert("acs_relogin".into(), step(ACS, &|s| !s.jit).json());
        m
    };
    let json = serde_json::json!({
        "date": Utc::now().to_rfc3339(),
        "mode": if args.refresh_only { "refresh" } else { "login" },
        "database": database,
        "alg": args.alg,
        "client_secret": if args.argon2_secret { "argon2id" } else { "sha256" },
        "concurrency": args.concurrency,
        "instances": args.instances,
        "broker_cpu_ms_per_op_by_instance": instance_ticks.iter().map(|t| r3(ms(*t) / per_op)).collect::<Vec<_>>(),
        "users": args.users,
        "warmup": args.warmup,
        "ok": ok,
        "errors": errors,
        "jit": jit,
        "wall_s": r3(wall),
        "per_s": r3(rate),
        "broker_cpu_ms_per_op": r3(ms(broker_ticks) / per_op),
        "broker_cpu_user_ms_per_op": r3(ms(broker_user) / per_op),
        "broker_cpu_sys_ms_per_op": r3(ms(broker_sys) / per_op),
        "bench_cpu_ms_per_op": r3(ms(bench_ticks) / per_op),
        "postgres_cpu_ms_per_op": if o.db_after.is_empty() { serde_json::Value::Null } else { r3(ms(db_ticks) / per_op).into() },
        "bench_sign_cpu_ms_per_op": r3(ms(sign_ticks) / per_op),
        "broker_peak_rss_mb": r3(mem.peak_kb as f64 / 1024.0),
        "broker_rss_end_mb": r3(mem.rss_kb as f64 / 1024.0),
        "broker_threads": mem.threads,
        "ready_cold_ms": r3(ready_cold.as_secs_f64() * 1000.0),
        "ready_warm_ms": r3(ready_warm.as_secs_f64() * 1000.0),
        "latency_ms": latency,
        "machine": {
            "cpus": cpus,
            "loadavg_before": o.load_before,
            "loadavg_after": o.load_after,
            "busy_pct": r3(busy as f64 * 100.0 / total as f64),
            "other_processes_cpu_s": r3(ms(others) / 1000.0),
        },
        "error_messages": o.phase.errors,
        "warmup_errors": o.setup_errors,
    });
    Report { table: t, json }
}

// ---------------------------------------------------------------------------------------------
// Resilience (--chaos): PostgreSQL restarted or the broker SIGKILLed under load

/// How to start the broker again after --chaos broker-kill.
struct Restart<'a> {
    bin: &'a Path,
    config: &'a Path,
    log: &'a Path,
    port: u16,
}

/// One login's end under --chaos: when it ended (since the load started), how long it took,
/// and why it failed.
struct Event {
    at: Duration,
    took: Duration,
    failure: Option<String>,
}

/// What a failed login saw: an answer from the broker, or none at all.
fn failure_class(msg: &str) -> &'static str {
    if msg.contains(", got 5") {
        "HTTP 5xx"
    } else if msg.contains(", got 4") {
        "HTTP 4xx"
    } else {
        "no HTTP answer (connection refused/reset/timeout)"
    }
}

/// Database or driver text in an error page (the bench keeps the first 200 characters).
fn leaks_internals(msg: &str) -> bool {
    let m = msg.to_lowercase();
    ["postgres", "diesel", "r2d2", "sqlite", "connection refused", "server closed", "terminating", "sql"]
        .iter()
        .any(|w| m.split_once(", got ").is_some_and(|(_, body)| body.contains(w)))
}

struct Strike {
    hit: Duration,
    back: Duration,
    detail: String,
}

#[allow(clippy::too_many_arguments)]
fn chaos_run(
    args: &Args,
    mode: &str,
    ctx: &Arc<Ctx>,
    rt: &tokio::runtime::Runtime,
    broker: Broker,
    restart: &Restart<'_>,
    database_url: &str,
) -> Result<Report> {
    let scope = "openid email profile";
    let duration = Duration::from_secs_f64(args.seconds.unwrap_or(20.0));
    let strike_at = Duration::from_secs_f64(args.chaos_at);
    let first_pid = broker.pid();
    let broker = Arc::new(Mutex::new(broker));
    let warm = {
        let ctx = Arc::clone(ctx);
        move |_w: usize, i: u64| {
            let ctx = Arc::clone(&ctx);
            async move { login(&ctx, &format!("warmup{i}@example.com"), scope).await.map(|(s, _)| s) }
        }
    };
    rt.block_on(run_phase(args.concurrency, Limit { count: Some(args.warmup), duration: None }, warm))?;
    if let Some(log) = &ctx.issued {
        log.lock().map_err(|_| anyhow!("poisoned"))?.clear();
    }
    eprintln!(
        "broker pid {first_pid}: {mode} at {:.1} s into {:.1} s of logins …",
        args.chaos_at,
        duration.as_secs_f64()
    );

    let started = Instant::now();
    let striker = {
        let (mode, cmd, broker) = (mode.to_string(), args.pg_restart_cmd.clone(), Arc::clone(&broker));
        let (bin, config, log, port, level) = (
            restart.bin.to_path_buf(),
            restart.config.to_path_buf(),
            restart.log.to_path_buf(),
            restart.port,
            args.broker_log.clone(),
        );
        std::thread::spawn(move || -> Result<Strike> {
            std::thread::sleep(strike_at.saturating_sub(started.elapsed()));
            let hit = started.elapsed();
            let detail = if mode == "pg-restart" {
                let out = Command::new("sh").arg("-c").arg(&cmd).output()?;
                if !out.status.success() {
                    bail!("`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                format!("`{cmd}` took {:.2} s", (started.elapsed() - hit).as_secs_f64())
            } else {
                let mut b = broker.lock().map_err(|_| anyhow!("poisoned"))?;
                b.stop(); // SIGKILL
                let mut fresh = Broker::spawn(&bin, &config, &log, &level)?;
                let ready = fresh.wait_ready(port, &log)?;
                let detail = format!(
                    "SIGKILL pid {}, new pid {} ready {:.0} ms after its spawn",
                    b.pid_before_stop,
                    fresh.pid(),
                    ready.as_secs_f64() * 1000.0
                );
                *b = fresh;
                detail
            };
            Ok(Strike { hit, back: started.elapsed(), detail })
        })
    };

    let events: Arc<Mutex<Vec<Event>>> = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut workers = Vec::new();
        for _ in 0..args.concurrency {
            let (ctx, events, next, users) =
                (Arc::clone(ctx), Arc::clone(&events), Arc::clone(&next), args.users);
            workers.push(tokio::spawn(async move {
                while started.elapsed() < duration {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let r = login(&ctx, &format!("user{}@example.com", i % users), scope).await;
                    let failed = r.is_err();
                    if let Ok(mut ev) = events.lock() {
                        ev.push(Event {
                            at: started.elapsed(),
                            took: t.elapsed(),
                            failure: r.err().map(|e| e.to_string()),
                        });
                    }
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    });
    let strike = striker.join().map_err(|_| anyhow!("chaos thread panicked"))??;
    let events = std::mem::take(&mut *events.lock().map_err(|_| anyhow!("poisoned"))?);
    let pid_now = broker.lock().map_err(|_| anyhow!("poisoned"))?.pid();

    let mut checks: Vec<(String, bool)> = Vec::new();
    let mut t = String::new();
    t.push_str(&format!(
        "ssobroker resilience · {mode} · {} · concurrency {} · {} users\n{} at {:.2} s, back at {:.2} s ({})\n\n",
        if args.database == "sqlite" { "sqlite" } else { "postgres" },
        args.concurrency,
        args.users,
        mode,
        strike.hit.as_secs_f64(),
        strike.back.as_secs_f64(),
        strike.detail
    ));
    // The timeline, per second.
    let secs = duration.as_secs() as usize + 2;
    let mut per_sec = vec![(0u64, BTreeMap::<&str, u64>::new()); secs];
    for e in &events {
        let Some(slot) = per_sec.get_mut((e.at.as_secs() as usize).min(secs - 1)) else { continue };
        match &e.failure {
            None => slot.0 += 1,
            Some(m) => *slot.1.entry(failure_class(m)).or_default() += 1,
        }
    }
    t.push_str("second   logins ok   failed\n");
    for (i, (ok, failed)) in per_sec.iter().enumerate() {
        let f: Vec<String> = failed.iter().map(|(k, n)| format!("{n} × {k}")).collect();
        t.push_str(&format!("{i:>6}   {ok:>9}   {}\n", f.join(", ")));
    }
    let failures: Vec<&Event> = events.iter().filter(|e| e.failure.is_some()).collect();
    let ok_total = events.len() - failures.len();
    t.push_str(&format!("\n{} logins ok, {} failed\n", ok_total, failures.len()));
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for f in &failures {
        let first_line = f.failure.as_deref().unwrap_or_default().lines().next().unwrap_or_default();
        let msg: String = first_line.chars().take(140).collect();
        *kinds.entry(msg).or_default() += 1;
    }
    for (m, n) in kinds.iter().take(8) {
        t.push_str(&format!("  {n:>6} × {m}\n"));
    }
    let slowest_failure = failures.iter().map(|e| e.took).max().unwrap_or_default();
    let last_failure = failures.iter().map(|e| e.at).max();
    t.push_str(&format!(
        "slowest failed login {:.0} ms; last failure at {}\n\n",
        slowest_failure.as_secs_f64() * 1000.0,
        last_failure.map(|a| format!("{:.2} s", a.as_secs_f64())).unwrap_or_else(|| "—".into())
    ));

    // Recovery: nothing fails before the strike, and the last third of the run after the strike
    // is failure-free with logins going through.
    let settle = strike.back + (duration.saturating_sub(strike.back)) / 3;
    checks
        .push(("no failure before the strike".into(), !failures.iter().any(|e| e.at + e.took < strike.hit)));
    checks.push((
        format!("no failure after {:.1} s (recovered)", settle.as_secs_f64()),
        !failures.iter().any(|e| e.at > settle),
    ));
    checks.push((
        "logins succeed after the strike".into(),
        events.iter().any(|e| e.failure.is_none() && e.at > strike.back + Duration::from_millis(500)),
    ));
    checks.push((
        "no failure shows database internals".into(),
        !failures.iter().any(|e| e.failure.as_deref().is_some_and(leaks_internals)),
    ));
    if mode == "pg-restart" {
        checks.push((
            format!("the broker kept running (pid {first_pid}, no restart)"),
            pid_now == first_pid && Path::new(&format!("/proc/{first_pid}")).exists(),
        ));
        checks.push((
            "every failure during the outage was an HTTP answer".into(),
            failures
                .iter()
                .all(|e| e.failure.as_deref().is_some_and(|m| failure_class(m) != failure_class(""))),
        ));
        // The pool waits at most 5 s for a connection, then the request gets its error page.
        checks.push(("failed logins answered within 10 s".into(), slowest_failure < Duration::from_secs(10)));
    }

    // Integrity: every code the broker handed out belongs to a whole user, and is usable (or was
    // consumed by a /token whose answer the kill swallowed).
    let issued =
        ctx.issued.as_ref().map(|l| l.lock().map(|v| v.clone()).unwrap_or_default()).unwrap_or_default();
    let (mut tokens_ok, mut tokens_bad, mut redeemed, mut consumed, mut redeem_bad) = (0, 0, 0, 0, 0);
    rt.block_on(async {
        for i in &issued {
            match &i.access_token {
                Some(access) => {
                    let r = ctx.http.get(format!("{}/userinfo", ctx.base)).bearer_auth(access).send().await;
                    if r.is_ok_and(|r| r.status() == 200) {
                        tokens_ok += 1;
                    } else {
                        tokens_bad += 1;
                    }
                }
                None => {
                    let r = ctx
                        .http
                        .post(format!("{}/token", ctx.base))
                        .basic_auth(CLIENT_ID, Some(&ctx.secret))
                        .form(&[
                            ("grant_type", "authorization_code"),
                            ("code", i.code.as_str()),
                            ("redirect_uri", REDIRECT_URI),
                            ("code_verifier", i.verifier.as_str()),
                        ])
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => redeemed += 1,
                        Ok(r) if r.status() == 400 => consumed += 1,
                        _ => redeem_bad += 1,
                    }
                }
            }
        }
    });
    t.push_str(&format!(
        "codes issued during the run: {}; tokens still valid {tokens_ok}, invalid {tokens_bad}; \
         codes whose /token failed: redeemed now {redeemed}, already consumed {consumed}, other {redeem_bad}\n",
        issued.len()
    ));
    checks.push(("every access token issued is still valid".into(), tokens_bad == 0));
    checks.push((
        "every code whose /token failed is redeemable now".into(),
        redeem_bad == 0 && (consumed == 0 || mode == "broker-kill"),
    ));
    if mode == "broker-kill" {
        // A /token that committed just before the kill: its code is spent and, reused, revokes.
        checks.push((
            format!("codes spent by an interrupted /token ≤ concurrency ({consumed})"),
            consumed <= args.concurrency,
        ));
    }

    let db = integrity(database_url, &issued)?;
    t.push_str(&format!(
        "database: {} users, {} without a federated identity, {} without a role, {} without a user.provisioned audit row; \
         {} of {} emails that got a code have no complete user\n",
        db.users, db.no_identity, db.no_role, db.no_audit, db.missing, db.emails
    ));
    checks.push((
        "no half-created user (identity, roles, audit row)".into(),
        db.no_identity + db.no_role + db.no_audit == 0,
    ));
    checks.push(("every login that got a code has its complete user".into(), db.missing == 0));

    t.push('\n');
    for (name, ok) in &checks {
        t.push_str(&format!("{} {name}\n", if *ok { "PASS" } else { "FAIL" }));
    }
    let passed = checks.iter().all(|(_, ok)| *ok);
    let json = serde_json::json!({
        "mode": mode,
        "database": if args.database == "sqlite" { "sqlite" } else { "postgres" },
        "strike_s": strike.hit.as_secs_f64(),
        "back_s": strike.back.as_secs_f64(),
        "detail": strike.detail,
        "ok": ok_total,
        "failed": failures.len(),
        "slowest_failure_ms": slowest_failure.as_secs_f64() * 1000.0,
        "checks": checks.iter().map(|(n, ok)| serde_json::json!({"check": n, "pass": ok})).collect::<Vec<_>>(),
        "pass": passed,
    });
    if let Ok(mut b) = broker.lock() {
        b.stop();
    }
    if !passed {
        print!("{t}");
        bail!("resilience check failed");
    }
    Ok(Report { table: t, json })
}

struct Integrity {
    users: i64,
    no_identity: i64,
    no_role: i64,
    no_audit: i64,
    emails: usize,
    missing: usize,
}

/// Reads the run's database directly: users missing a part of their provisioning, and emails
/// that got a code but have no complete user.
fn integrity(database_url: &str, issued: &[Issued]) -> Result<Integrity> {
    use diesel::dsl::{exists, not};
    use diesel::prelude::*;
    use ssobroker::store::schema::{audit_events, federated_identities, user_roles, users};
    let url = ssobroker::config::DatabaseUrl::parse(database_url).map_err(|e| anyhow!(e))?;
    let pool = ssobroker::store::open_existing(&url)?;
    let mut c = pool.get()?;
    let has_identity = federated_identities::table.filter(federated_identities::user_id.eq(users::id));
    let has_role = user_roles::table.filter(user_roles::user_id.eq(users::id));
    let has_audit = audit_events::table
        .filter(audit_events::user_id.eq(users::id.nullable()))
        .filter(audit_events::kind.eq("user.provisioned"));
    let complete: Vec<String> = users::table
        .filter(exists(has_identity))
        .filter(exists(has_role))
        .select(users::email.assume_not_null())
        .load(&mut c)?;
    let complete: std::collections::BTreeSet<String> = complete.into_iter().collect();
    let emails: std::collections::BTreeSet<&str> = issued.iter().map(|i| i.email.as_str()).collect();
    Ok(Integrity {
        users: users::table.count().get_result(&mut c)?,
        no_identity: users::table.filter(not(exists(has_identity))).count().get_result(&mut c)?,
        no_role: users::table.filter(not(exists(has_role))).count().get_result(&mut c)?,
        no_audit: users::table.filter(not(exists(has_audit))).count().get_result(&mut c)?,
        emails: emails.len(),
        missing: emails.iter().filter(|e| !complete.contains(**e)).count(),
    })
}
