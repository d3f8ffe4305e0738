//! `ssobroker connection refresh <id>`: fetch a connection's `metadata_url` now and store the copy
//! every instance trusts (running brokers take it at their next metadata refresh).

use std::path::Path;

use anyhow::Context;
use chrono::SecondsFormat;
use clap::Subcommand;

use crate::clock::{Clock, SystemClock};
use crate::flow::trust;
use crate::store;

/// `ssobroker connection …`
#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Fetch the connection's metadata_url now; store it and audit a change of trusted certificates.
    Refresh {
        /// The connection id from the config.
        id: String,
    },
}

pub fn connection(config: &Path, cmd: ConnectionCommand) -> anyhow::Result<()> {
    let cfg = crate::config::load(config).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    match cmd {
        ConnectionCommand::Refresh { id } => {
            let connection =
                cfg.connection(&id).with_context(|| format!("no connection {id:?} in the configuration"))?;
            let pool = store::connect(&cfg.database, 1)?;
            let mut conn = pool.get().context("database")?;
            let now = SystemClock.now();
            let (metadata, changed) = trust::refresh_now(&mut conn, connection, now)?;
            println!("connection {id}: fetched metadata of {}", metadata.entity_id);
            println!("  SSO: {} ({:?})", metadata.sso_url, metadata.sso_binding);
            for der in &metadata.signing_certs {
                let expires = trust::certificate_not_after(der)
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "unknown".into());
                println!("  signing certificate sha256:{} expires {expires}", trust::fingerprint(der));
            }
            println!(
                "  {}",
                if changed {
                    "trust changed (audited as trust.changed); brokers switch at their next refresh"
                } else {
                    "unchanged"
                }
            );
            Ok(())
        }
    }
}
