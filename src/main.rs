//! Thin CLI: parse arguments, set up logging, hand over to the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "ssobroker", version, about = "SAML 2.0 → OpenID Connect SSO broker with JIT provisioning")]
struct Cli {
    /// Log lines as `text` or `json` (overrides `log_format` in the config).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file (metadata, keys, clients) and exit.
    CheckConfig {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG")]
        config: PathBuf,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG")]
        config: PathBuf,
    },
    /// Exit 0 when the broker at --url answers /healthz (for container health checks).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "SSOBROKER_HEALTHCHECK_URL")]
        url: String,
    },
    /// Read a client secret from stdin and print its argon2 hash for `client_secret_hash`.
    HashSecret,
    /// Manage users: add, list, show, disable, enable, roles, delete.
    User {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: ssobroker::admin::UserCommand,
    },
    /// Admin console accounts: create, passwd, list.
    Admin {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: ssobroker::admin_cli::AdminCommand,
    },
    /// Signing keys: rotate to a new key, list keys and their state.
    Keys {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: ssobroker::keys_cli::KeysCommand,
    },
    /// Manage OIDC clients stored in the database: add, list, show, remove, rotate-secret.
    Client {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: ssobroker::client_cli::ClientCommand,
    },
    /// SAML connections: fetch a connection's metadata_url now.
    Connection {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: ssobroker::connection_cli::ConnectionCommand,
    },
    /// Read the audit log (table, or JSON lines with --json).
    Audit {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        args: ssobroker::admin::AuditArgs,
    },
    /// Dry-run a captured SAMLResponse (XML or base64) through the ACS checks and the JIT policy.
    Explain {
        #[arg(long, short, default_value = "ssobroker.toml", env = "SSOBROKER_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        connection: String,
        /// Check the time window as of this RFC 3339 instant instead of now.
        #[arg(long)]
        at: Option<String>,
        response: PathBuf,
    },
    /// Run the broker with a development IdP and a sample app on SQLite, to see a whole login.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the demo keeps its database and generated IdP metadata.
        #[arg(long, default_value = "data/demo")]
        data_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log_format = cli.log_format.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?;
    if !matches!(cli.command, Command::Serve { .. }) {
        // `serve` starts logging once it has read `log_format` from its config.
        ssobroker::cli::init_logging(log_format.unwrap_or_default());
    }
    match cli.command {
        Command::Serve { config } => ssobroker::cli::serve(&config, log_format),
        Command::CheckConfig { config } => ssobroker::cli::check_config(&config),
        Command::Migrate { config } => ssobroker::cli::migrate(&config),
        Command::Healthcheck { url } => ssobroker::cli::healthcheck(&url),
        Command::HashSecret => ssobroker::cli::hash_secret(),
        Command::User { config, command } => Ok(ssobroker::admin::user(&config, command)?),
        Command::Admin { config, command } => ssobroker::admin_cli::admin(&config, command),
        Command::Keys { config, command } => Ok(ssobroker::keys_cli::keys(&config, command)?),
        Command::Client { config, command } => ssobroker::client_cli::client(&config, command),
        Command::Connection { config, command } => ssobroker::connection_cli::connection(&config, command),
        Command::Audit { config, args } => Ok(ssobroker::admin::audit(&config, args)?),
        Command::Explain { config, connection, at, response } => {
            let ok = ssobroker::explain::explain(&config, &connection, at.as_deref(), &response)?;
            std::process::exit(if ok { 0 } else { 1 })
        }
        Command::Demo { listen, data_dir } => ssobroker::cli::demo(&listen, &data_dir),
    }
}
