//! `ssobroker client …`: OIDC clients registered in the database, beside those in the config
//! file. Generated secrets are shown once and stored as SHA-256 (256 random bits need no slow
//! hash, and `/token` stays fast).

use crate::config::{self, Config};
use crate::console::clients::{self, ClientSettings, NewClient};
use crate::console::Actor;
use crate::flow::{clients::from_row, RequestMeta};
use crate::store::{self, DbConnection};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its generated secret once (none with --public).
    Add {
        client_id: String,
        /// Exact redirect URI (repeat for several).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// Only users holding one of these roles get tokens (repeat for several).
        #[arg(long = "allowed-role")]
        allowed_roles: Vec<String>,
        /// A public client (no secret; PKCE S256 required).
        #[arg(long)]
        public: bool,
        /// Issue refresh tokens even without `offline_access`.
        #[arg(long)]
        refresh_tokens: bool,
        /// List the app in the user portal, opening this URL.
        #[arg(long)]
        launch_url: Option<String>,
    },
    /// Change a registered client: each list given replaces that list; the rest stays.
    Update {
        client_id: String,
        /// The redirect URIs (repeat for several; replaces all of them).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// The post-logout redirect URIs (repeat; replaces all of them).
        #[arg(long = "post-logout-redirect-uri", conflicts_with = "clear_post_logout_redirect_uris")]
        post_logout_redirect_uris: Vec<String>,
        #[arg(long)]
        clear_post_logout_redirect_uris: bool,
        /// The allowed roles (repeat; replaces all of them).
        #[arg(long = "allowed-role", conflicts_with = "clear_allowed_roles")]
        allowed_roles: Vec<String>,
        /// Every user may use the client again.
        #[arg(long)]
        clear_allowed_roles: bool,
        /// Issue refresh tokens even without `offline_access` (true or false).
        #[arg(long)]
        refresh_tokens: Option<bool>,
        #[arg(long, conflicts_with = "no_launch_url")]
        launch_url: Option<String>,
        /// Take the app out of the user portal.
        #[arg(long)]
        no_launch_url: bool,
    },
    /// List clients from the config file and the database.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show { client_id: String },
    /// Remove a registered client; its grants and refresh tokens stop working.
    Remove { client_id: String },
    /// Replace a registered client's secret; prints the new one once.
    RotateSecret { client_id: String },
}

fn open(path: &Path) -> anyhow::Result<(Config, store::DbPool)> {
    let cfg = config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let pool = store::connect(&cfg.database, 1).context("database")?;
    Ok((cfg, pool))
}

fn audit(conn: &mut DbConnection, kind: &str, client_id: &str) -> anyhow::Result<()> {
    let row = crate::console::admin_event(
        chrono::Utc::now(),
        kind,
        &Actor::cli(),
        &RequestMeta::default(),
        None,
        Some(client_id),
        serde_json::json!({}),
    );
    Ok(store::audit::insert(conn, &row)?)
}

pub fn client(path: &Path, command: ClientCommand) -> anyhow::Result<()> {
    let (cfg, pool) = open(path)?;
    let mut conn = pool.get()?;
    let now = chrono::Utc::now();
    match command {
        ClientCommand::Add {
            client_id,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_roles,
            public,
            refresh_tokens,
            launch_url,
        } => {
            let new = NewClient {
                client_id: client_id.clone(),
                redirect_uris,
                post_logout_redirect_uris,
                allowed_roles,
                public,
                issue_refresh_token: refresh_tokens,
                launch_url,
            };
            let secret = clients::create(&mut conn, &cfg, new, &Actor::cli(), &RequestMeta::default(), now)?;
            println!("registered client {client_id}");
            match secret {
                Some(s) => println!("client_secret: {}\n(shown once: store it in the app now)", s.expose()),
                None => println!("public client: no secret; the app must use PKCE S256"),
            }
        }
        ClientCommand::Update {
            client_id,
            redirect_uris,
            post_logout_redirect_uris,
            clear_post_logout_redirect_uris,
            allowed_roles,
            clear_allowed_roles,
            refresh_tokens,
            launch_url,
            no_launch_url,
        } => {
            // A config-file client is refused by `update` itself, with the reason.
            let old = match clients::find(&mut conn, &cfg, &client_id) {
                Ok((c, _)) => ClientSettings::of(&c),
                Err(crate::console::ConsoleError::NotFound) => bail!("no registered client {client_id:?}"),
                Err(e) => return Err(e.into()),
            };
            let replace = |given: Vec<String>, clear: bool, old: Vec<String>| {
                if clear || !given.is_empty() {
                    given
                } else {
                    old
                }
            };
            let settings = ClientSettings {
                redirect_uris: replace(redirect_uris, false, old.redirect_uris),
                post_logout_redirect_uris: replace(
                    post_logout_redirect_uris,
                    clear_post_logout_redirect_uris,
                    old.post_logout_redirect_uris,
                ),
                allowed_roles: replace(allowed_roles, clear_allowed_roles, old.allowed_roles),
                issue_refresh_token: refresh_tokens.unwrap_or(old.issue_refresh_token),
                launch_url: if no_launch_url { None } else { launch_url.or(old.launch_url) },
            };
            let changed = clients::update(
                &mut conn,
                &cfg,
                &client_id,
                settings,
                &Actor::cli(),
                &RequestMeta::default(),
                now,
            )?;
            if changed {
                println!("updated client {client_id}");
            } else {
                println!("client {client_id} unchanged");
            }
        }
        ClientCommand::List { json } => {
            let mut rows: Vec<(crate::oidc::Client, &str)> =
                cfg.clients.iter().map(|c| (c.clone(), "config")).collect();
            rows.extend(store::clients::all(&mut conn)?.into_iter().map(|r| (from_row(r), "database")));
            for (c, source) in rows {
                if json {
                    println!("{}", describe(&c, source));
                } else {
                    let kind = if c.is_public() { "public" } else { "confidential" };
                    println!("{:<24} {:<12} {:<9} {}", c.client_id, kind, source, c.redirect_uris.join(" "));
                }
            }
        }
        ClientCommand::Show { client_id } => {
            let (c, source) = match cfg.client(&client_id) {
                Some(c) => (c.clone(), "config"),
                None => match store::clients::by_id(&mut conn, &client_id)? {
                    Some(r) => (from_row(r), "database"),
                    None => bail!("no client {client_id:?}"),
                },
            };
            println!("{}", serde_json::to_string_pretty(&describe(&c, source))?);
        }
        ClientCommand::Remove { client_id } => {
            if cfg.client(&client_id).is_some() {
                bail!("client {client_id:?} is defined in the config file; remove it there");
            }
            let removed = store::transaction(&mut conn, |c| -> anyhow::Result<usize> {
                let n = store::clients::delete(c, &client_id)?;
                if n > 0 {
                    revoke_client_grants(c, &client_id)?;
                    audit(c, "client.removed", &client_id)?;
                }
                Ok(n)
            })?;
            if removed == 0 {
                bail!("no registered client {client_id:?}");
            }
            println!("removed client {client_id}; its tokens no longer work");
        }
        ClientCommand::RotateSecret { client_id } => {
            let secret = clients::rotate_secret(
                &mut conn,
                &cfg,
                &client_id,
                &Actor::cli(),
                &RequestMeta::default(),
                now,
            )?;
            println!(
                "new client_secret for {client_id}: {}\n(shown once; the old secret no longer works)",
                secret.expose()
            );
        }
    }
    Ok(())
}

fn describe(c: &crate::oidc::Client, source: &str) -> serde_json::Value {
    serde_json::json!({
        "client_id": c.client_id,
        "type": if c.is_public() { "public" } else { "confidential" },
        "source": source,
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "allowed_roles": c.allowed_roles,
        "issue_refresh_token": c.issue_refresh_token,
        "launch_url": c.launch_url,
    })
}

/// A removed client's grants and refresh tokens are revoked, so tokens it holds stop working.
fn revoke_client_grants(conn: &mut DbConnection, client_id: &str) -> diesel::QueryResult<()> {
    use crate::store::schema::{auth_grants, refresh_tokens};
    use diesel::prelude::*;
    diesel::update(auth_grants::table.filter(auth_grants::client_id.eq(client_id)))
        .set(auth_grants::revoked.eq(true))
        .execute(conn)?;
    diesel::update(refresh_tokens::table.filter(refresh_tokens::client_id.eq(client_id)))
        .set(refresh_tokens::revoked.eq(true))
        .execute(conn)?;
    Ok(())
}
