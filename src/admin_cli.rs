//! `ssobroker admin …`: local accounts for the admin console. A generated password is printed
//! once; a chosen one is read from stdin (`--password-stdin`), never from the command line,
//! where it would land in shell history and `ps`.

use crate::clock::{Clock, SystemClock};
use crate::console::{auth, Actor};
use crate::store;
use anyhow::Context;
use clap::Subcommand;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin account; prints a generated one-time password unless --password-stdin.
    Create {
        name: String,
        /// Read the password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (generated, or from stdin); ends the account's console sessions.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List admin accounts.
    List,
}

/// The password to set, and whether it was generated (then it is printed).
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((auth::generate_password(), true));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("read password from stdin")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    auth::check_new_password(&pw)?;
    Ok((pw, false))
}

pub fn admin(config: &Path, cmd: AdminCommand) -> anyhow::Result<()> {
    let cfg = crate::config::load(config).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let pool = store::connect(&cfg.database, 1).context("database")?;
    let mut conn = pool.get()?;
    let now = SystemClock.now();
    match cmd {
        AdminCommand::Create { name, password_stdin } => {
            let name = auth::valid_account_name(&name)?;
            let (pw, generated) = password(password_stdin)?;
            let hash = auth::hash_password(&pw)?;
            auth::create_account(&mut conn, &name, &hash, &Actor::cli(), now)?;
            println!("created admin {name}");
            if generated {
                println!("password: {pw}\n(shown once; sign in at {}/admin/login)", cfg.issuer);
            }
        }
        AdminCommand::Passwd { name, password_stdin } => {
            let name = auth::valid_account_name(&name)?;
            let (pw, generated) = password(password_stdin)?;
            let hash = auth::hash_password(&pw)?;
            let ended = auth::set_account_password(&mut conn, &name, &hash, &Actor::cli(), now)?;
            println!("changed the password of admin {name}; ended {ended} console session(s)");
            if generated {
                println!("password: {pw}\n(shown once)");
            }
        }
        AdminCommand::List => {
            for a in auth::accounts(&mut conn)? {
                let last = a.last_login_at.map(crate::console::time).unwrap_or_else(|| "never".into());
                println!(
                    "{:<24} created {}  last sign-in {last}",
                    a.name,
                    crate::console::time(a.created_at)
                );
            }
        }
    }
    Ok(())
}
