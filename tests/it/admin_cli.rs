//! `ssobroker user …` and `ssobroker audit`, as an admin meets them: the real binary against the
//! database a running broker uses, on SQLite and PostgreSQL.

use crate::both_backends;
use crate::support::{app, fresh_postgres_database, Backend, TestApp, TestResult, CONNECTION};
use serde_json::Value;
use ssobroker::config::DatabaseUrl;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub(crate) type Error = Box<dyn std::error::Error>;

/// The binary with a config file that names only the database (all an admin command needs).
pub(crate) struct Cli {
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cli {
    pub(crate) fn new(database_url: &str) -> Result<Self, Error> {
        Self::with_config(database_url, "")
    }

    /// Like `new`, with more of the broker's config appended (e.g. `[[clients]]`).
    pub(crate) fn with_config(database_url: &str, extra: &str) -> Result<Self, Error> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("ssobroker.toml");
        std::fs::write(&config, format!("database_url = {database_url:?}\n{extra}"))?;
        Ok(Cli { config, _dir: dir })
    }

    pub(crate) fn for_app(app: &TestApp) -> Result<Self, Error> {
        Self::new(&Self::database_of(app))
    }

    pub(crate) fn database_of(app: &TestApp) -> String {
        match &app.cfg.database {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Result<Output, Error> {
        Ok(Command::new(env!("CARGO_BIN_EXE_ssobroker"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            // Only the file decides where the data is; no prompt can wait on a terminal.
            .env_remove("SSOBROKER_DATABASE_URL")
            .env_remove("SSOBROKER_CONFIG")
            .stdin(Stdio::null())
            .output()?)
    }

    /// Runs a command that must succeed with `input` on stdin; returns its stdout.
    pub(crate) fn run_with_stdin(&self, args: &[&str], input: &str) -> Result<String, Error> {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssobroker"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("SSOBROKER_DATABASE_URL")
            .env_remove("SSOBROKER_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().ok_or("no stdin")?.write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs a command that must succeed; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> Result<String, Error> {
        let out = self.run(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} failed: {stderr}");
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs a command that must fail; returns its stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> Result<String, Error> {
        let out = self.run(args)?;
        assert!(!out.status.success(), "{args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed on failure: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(String::from_utf8(out.stderr)?)
    }

    /// Runs a `--json` command whose output is one JSON object per line.
    pub(crate) fn json_lines(&self, args: &[&str]) -> Result<Vec<Value>, Error> {
        let mut rows = Vec::new();
        for line in self.ok(args)?.lines() {
            let v: Value = serde_json::from_str(line).map_err(|e| format!("{line:?}: {e}"))?;
            assert!(v.is_object(), "{line}");
            rows.push(v);
        }
        Ok(rows)
    }

    pub(crate) fn json(&self, args: &[&str]) -> Result<Value, Error> {
        Ok(serde_json::from_str(&self.ok(args)?)?)
    }
}

fn kinds(rows: &[Value]) -> Vec<&str> {
    rows.iter().filter_map(|r| r["kind"].as_str()).collect()
}

/// (role, source, group) of `user show --json`.
fn roles(shown: &Value) -> Vec<(String, String, Option<String>)> {
    shown["roles"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().map(str::to_string);
                    (s("role").unwrap_or_default(), s("source").unwrap_or_default(), s("group"))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> Result<u16, Error> {
    let resp =
        reqwest::Client::new().get(format!("{}/userinfo", app.base)).bearer_auth(access_token).send().await?;
    Ok(resp.status().as_u16())
}

/// A whole login of `email` through the broker; returns the access token.
async fn login(app: &TestApp, email: &str, groups: &[&str]) -> Result<String, Error> {
    let q = app.login_code(email, groups).await?;
    let tok = app.token(&q["code"]).await?;
    assert_eq!(tok.status(), 200);
    let body: Value = tok.json().await?;
    Ok(body["access_token"].as_str().ok_or("no access_token")?.to_string())
}

async fn lifecycle(backend: Backend) -> TestResult {
    let app = app(backend).start().await?;
    let cli = Cli::for_app(&app)?;
    let token = login(&app, "ada@example.com", &["Engineering"]).await?;
    assert_eq!(userinfo_status(&app, &token).await?, 200);

    // add: a pre-created user with manual roles, email stored lowercased.
    let out = cli.ok(&[
        "user",
        "add",
        "--email",
        "Grace@Example.com",
        "--role",
        "auditor",
        "--role",
        "admin",
        "--name",
        "Grace Hopper",
    ])?;
    assert!(out.contains("created user") && out.contains("grace@example.com"), "{out}");
    let err = cli.fails(&["user", "add", "--email", "GRACE@example.COM"])?;
    assert!(err.contains("already exists") && err.contains("grace@example.com"), "{err}");
    let err = cli.fails(&["user", "add", "--email", "ADA@example.com"])?;
    assert!(err.contains("already exists"), "a JIT-provisioned email counts too: {err}");

    // list and search.
    let table = cli.ok(&["user", "list"])?;
    assert!(table.starts_with("ID") && table.contains("LAST LOGIN"), "{table}");
    assert!(table.contains("ada@example.com") && table.contains("Grace Hopper"), "{table}");
    let listed = cli.json_lines(&["user", "list", "--json"])?;
    assert_eq!(listed.len(), 2);
    let grace = listed.iter().find(|u| u["email"] == "grace@example.com").ok_or("grace not listed")?;
    assert_eq!(grace["roles"], serde_json::json!(["admin", "auditor"]));
    assert_eq!(grace["last_login_at"], Value::Null);
    let ada = listed.iter().find(|u| u["email"] == "ada@example.com").ok_or("ada not listed")?;
    assert_eq!(ada["roles"], serde_json::json!(["engineer", "user"]));
    assert_eq!(ada["name"], "Ada Lovelace");
    let ada_id = ada["id"].as_str().ok_or("no id")?.to_string();
    let found = cli.json_lines(&["user", "list", "--search", "HOPPER", "--json"])?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["email"], "grace@example.com");
    assert_eq!(cli.json_lines(&["user", "list", "--search", "%", "--json"])?.len(), 0, "% is literal");
    assert_eq!(cli.json_lines(&["user", "list", "--limit", "1", "--json"])?.len(), 1);

    // show: identities, roles with source and group, live sessions, recent audit.
    let shown = cli.json(&["user", "show", "ADA@example.com", "--json"])?;
    assert_eq!(shown["id"], ada_id.as_str());
    assert_eq!(shown["identities"][0]["connection"], CONNECTION);
    assert_eq!(shown["identities"][0]["subject"], "ada@example.com");
    assert_eq!(shown["live_sessions"], 1);
    assert_eq!(
        roles(&shown),
        vec![
            ("engineer".into(), "idp".into(), Some("Engineering".into())),
            ("user".into(), "default".into(), None),
        ]
    );
    let recent = shown["recent_audit"].as_array().ok_or("no recent_audit")?;
    assert!(recent.iter().any(|e| e["kind"] == "user.provisioned"), "{recent:?}");
    let text = cli.ok(&["user", "show", &ada_id])?;
    for want in
        ["ada@example.com (verified)", "live sessions 1", "engineer", "Engineering", "login.succeeded"]
    {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    assert!(
        cli.ok(&["user", "show", "grace@example.com"])?.contains("(none yet"),
        "no identity before login"
    );

    // roles: manual grants only.
    assert!(cli.ok(&["user", "roles", "add", "ada@example.com", "ops"])?.contains("granted role ops"));
    assert!(cli.ok(&["user", "roles", "add", "ada@example.com", "ops"])?.contains("nothing changed"));
    let shown = cli.json(&["user", "show", &ada_id, "--json"])?;
    assert!(roles(&shown).contains(&("ops".into(), "manual".into(), None)));
    let err = cli.fails(&["user", "roles", "remove", "ada@example.com", "engineer"])?;
    assert!(err.contains("only from the IdP") && err.contains("Engineering"), "{err}");
    let err = cli.fails(&["user", "roles", "remove", "ada@example.com", "user"])?;
    assert!(err.contains("default_roles"), "{err}");
    let err = cli.fails(&["user", "roles", "remove", "ada@example.com", "nope"])?;
    assert!(err.contains("does not have role nope"), "{err}");
    assert!(cli.ok(&["user", "roles", "remove", "ada@example.com", "ops"])?.contains("removed role ops"));
    let shown = cli.json(&["user", "show", &ada_id, "--json"])?;
    assert_eq!(roles(&shown).len(), 2, "engineer and user remain");

    // disable: sessions and grants revoked in the same step; the access token dies.
    let out = cli.ok(&["user", "disable", "ada@example.com"])?;
    assert!(out.contains("revoked 1 session(s) and 1 grant(s)"), "{out}");
    {
        use diesel::prelude::*;
        use ssobroker::store::schema::{auth_grants, sessions};
        let mut conn = app.pool.get()?;
        let live: i64 = sessions::table
            .filter(sessions::user_id.eq(&ada_id))
            .filter(sessions::revoked.eq(false))
            .count()
            .get_result(&mut conn)?;
        let usable: i64 = auth_grants::table
            .filter(auth_grants::user_id.eq(&ada_id))
            .filter(auth_grants::revoked.eq(false))
            .count()
            .get_result(&mut conn)?;
        assert_eq!((live, usable), (0, 0));
    }
    assert_eq!(userinfo_status(&app, &token).await?, 401);
    // The browser's broker session no longer answers: /authorize goes to the IdP again.
    app.authorize(&app.auth_url(&[])).await?;
    assert_eq!(cli.json(&["user", "show", &ada_id, "--json"])?["disabled"], true);

    // enable: old tokens stay dead, a new login works.
    assert!(cli.ok(&["user", "enable", &ada_id])?.contains("enabled"));
    assert_eq!(userinfo_status(&app, &token).await?, 401, "revoked grants are not revived");
    let token = login(&app, "ada@example.com", &["Engineering"]).await?;
    assert_eq!(userinfo_status(&app, &token).await?, 200);

    // delete: identities, roles, sessions and grants go with the user.
    let err = cli.fails(&["user", "delete", "ada@example.com"])?;
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(app.counts()?["users"], 2, "nothing deleted without --yes");
    let out = cli.ok(&["user", "delete", "ada@example.com", "--yes"])?;
    assert!(out.contains("deleted ada@example.com") && out.contains("1 identity"), "{out}");
    let counts = app.counts()?;
    assert_eq!(counts["users"], 1);
    assert_eq!(counts["federated_identities"], 0);
    assert_eq!(counts["user_roles"], 2, "only grace's roles are left");
    assert_eq!((counts["sessions"], counts["auth_grants"]), (0, 0));
    assert_eq!(userinfo_status(&app, &token).await?, 401);
    let err = cli.fails(&["user", "show", "ada@example.com"])?;
    assert!(err.contains("no user \"ada@example.com\""), "{err}");

    // Every change is audited with the CLI as the actor.
    let mine = cli.json_lines(&["audit", "--user", &ada_id, "--json"])?;
    let admin_rows: Vec<&Value> = mine.iter().filter(|r| r["detail"]["actor"] == "cli").collect();
    assert_eq!(
        admin_rows.iter().filter_map(|r| r["kind"].as_str()).collect::<Vec<_>>(),
        vec!["role.granted", "role.revoked", "user.disabled", "user.enabled", "user.deleted"]
    );
    let disabled = admin_rows[2];
    assert_eq!(disabled["detail"]["sessions_revoked"], 1);
    assert_eq!(disabled["detail"]["grants_revoked"], 1);
    assert_eq!(admin_rows[0]["detail"]["source"], "manual");
    assert_eq!(admin_rows[4]["detail"]["email"], "ada@example.com", "the deleted email stays on record");
    assert!(mine.iter().any(|r| r["kind"] == "user.provisioned"), "the broker's own rows too");
    let created = cli.json_lines(&["audit", "--user", "grace@example.com", "--json"])?;
    assert_eq!(kinds(&created), vec!["user.created"]);
    assert_eq!(created[0]["detail"]["roles"], serde_json::json!(["admin", "auditor"]));
    let table = cli.ok(&["audit", "--kind", "user.*"])?;
    assert!(table.starts_with("TIME") && table.contains("REASON"), "{table}");
    assert!(
        table.contains("grace@example.com") && table.contains(&ada_id),
        "deleted users show by id:\n{table}"
    );
    assert!(!table.contains("login.succeeded"), "{table}");
    Ok(())
}
both_backends!(user_commands_on_a_live_broker, lifecycle);

async fn fresh(backend: Backend) -> TestResult {
    let dir = tempfile::tempdir()?;
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_database()?),
    };
    let url = match &pg {
        None => format!("sqlite://{}", dir.path().join("admin.db").display()),
        Some(db) => db.url.clone(),
    };
    let cli = Cli::new(&url)?;
    // The first command on an empty database applies the migrations.
    assert!(cli.ok(&["user", "list"])?.contains("(no users)"));
    cli.ok(&["user", "add", "--email", "bob@example.com", "--given-name", "Bob", "--family-name", "Smith"])?;
    let err = cli.fails(&["user", "add", "--email", " BOB@Example.com "])?;
    assert!(err.contains("already exists"), "{err}");
    let err = cli.fails(&["user", "add", "--email", "not-an-email"])?;
    assert!(err.contains("not an email address"), "{err}");
    let err = cli.fails(&["user", "add", "--email", "c@example.com", "--role", "two words"])?;
    assert!(err.contains("role"), "{err}");
    assert_eq!(cli.json_lines(&["user", "list", "--json"])?.len(), 1, "refused adds wrote nothing");
    let bob = cli.json(&["user", "show", "bob@example.com", "--json"])?;
    assert_eq!(bob["name"], "Bob Smith");
    assert_eq!(bob["email_verified"], false);
    assert_eq!(bob["identities"], serde_json::json!([]));
    assert_eq!(bob["live_sessions"], 0);

    // Unknown users: non-zero exit with the name in the message, for every command.
    let unknown = "nobody@example.com";
    for args in [
        vec!["user", "show", unknown],
        vec!["user", "disable", unknown],
        vec!["user", "enable", "00000000-0000-0000-0000-000000000000"],
        vec!["user", "roles", "add", unknown, "admin"],
        vec!["user", "roles", "remove", unknown, "admin"],
        vec!["user", "delete", unknown, "--yes"],
        vec!["audit", "--user", unknown],
        vec!["audit", "--user", "no-such-id"],
    ] {
        let err = cli.fails(&args)?;
        assert!(
            err.contains("no user")
                && (err.contains(unknown) || err.contains("00000000") || err.contains("no-such-id")),
            "{args:?}: {err}"
        );
    }

    // audit --since: a row from three days ago, written the way the broker writes rows.
    {
        let cfg_url = DatabaseUrl::parse(&url)?;
        let pool = ssobroker::store::connect(&cfg_url, 1)?;
        let mut conn = pool.get()?;
        let old = chrono::Utc::now() - chrono::Duration::days(3);
        let row = ssobroker::flow::audit_row(
            old,
            "login.failed",
            &ssobroker::flow::RequestMeta { ip: Some("192.0.2.7".into()), user_agent: None },
            None,
            Some(CONNECTION),
            Some("dashboard"),
            Some("audience_mismatch"),
            serde_json::json!({"reference": "0a1b2c3d4e5f"}),
        );
        ssobroker::store::audit::insert(&mut conn, &row)?;
    }
    let all = cli.json_lines(&["audit", "--json"])?;
    assert_eq!(kinds(&all), vec!["login.failed", "user.created"], "oldest first");
    for key in
        ["id", "at", "kind", "user_id", "connection_id", "client_id", "ip", "user_agent", "reason", "detail"]
    {
        assert!(all[0].get(key).is_some(), "{key} missing in {}", all[0]);
    }
    assert_eq!(all[0]["detail"]["reference"], "0a1b2c3d4e5f", "detail is parsed JSON");
    assert_eq!(all[0]["reason"], "audience_mismatch");
    assert_eq!(kinds(&cli.json_lines(&["audit", "--since", "24h", "--json"])?), vec!["user.created"]);
    assert_eq!(cli.json_lines(&["audit", "--since", "7d", "--json"])?.len(), 2);
    let since = (chrono::Utc::now() - chrono::Duration::days(4)).to_rfc3339();
    assert_eq!(cli.json_lines(&["audit", "--since", &since, "--json"])?.len(), 2);
    assert_eq!(cli.json_lines(&["audit", "--since", "2099-01-01T00:00:00Z", "--json"])?.len(), 0);
    assert_eq!(kinds(&cli.json_lines(&["audit", "--kind", "login.failed", "--json"])?), vec!["login.failed"]);
    assert_eq!(cli.json_lines(&["audit", "--kind", "login", "--json"])?.len(), 0, "kinds match exactly");
    assert_eq!(
        kinds(&cli.json_lines(&["audit", "--limit", "1", "--json"])?),
        vec!["user.created"],
        "the newest"
    );
    let table = cli.ok(&["audit", "--kind", "login.failed"])?;
    for want in ["audience_mismatch", "192.0.2.7", "dashboard", CONNECTION] {
        assert!(table.contains(want), "{want:?} missing in:\n{table}");
    }
    assert!(table.contains("REFERENCE") && table.contains("0a1b2c3d4e5f"), "{table}");
    assert_eq!(
        kinds(&cli.json_lines(&["audit", "--reference", "0A1B2C3D4E5F", "--json"])?),
        vec!["login.failed"]
    );
    assert_eq!(cli.json_lines(&["audit", "--reference", "0a1b2c3d4e50", "--json"])?.len(), 0);
    let err = cli.fails(&["audit", "--reference", "%"])?;
    assert!(err.contains("--reference") && err.contains("not a support reference"), "{err}");
    let table = cli.ok(&["audit", "--kind", "user.created"])?;
    assert!(table.contains("ACTOR") && table.contains("cli"), "who made the change: {table}");
    assert!(cli.ok(&["audit", "--kind", "nothing.here"])?.contains("(no matching events)"));
    let err = cli.fails(&["audit", "--since", "yesterday"])?;
    assert!(err.contains("--since") && err.contains("24h"), "{err}");
    Ok(())
}
both_backends!(user_commands_on_a_fresh_database, fresh);
