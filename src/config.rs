//! Typed, layered configuration: defaults → TOML file → `SSOBROKER_*` environment, validated once
//! at start-up with the file, the key and the reason.

use crate::oidc::Client;
use crate::provisioning::{AttributeOverrides, Policy, ProvisioningMode, Vendor};
use crate::saml::{IdpMetadata, SpSettings};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration problem, reported as file + key + reason.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {}{reason}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// The file format (what admins write). Unknown keys are refused so typos fail loudly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub issuer: String,
    pub listen: String,
    pub database_url: String,
    /// Allowed clock difference with IdPs, in seconds.
    pub clock_skew_seconds: u64,
    /// How long a started login may take at the IdP.
    pub login_timeout_seconds: u64,
    pub code_ttl_seconds: u64,
    pub id_token_ttl_seconds: u64,
    pub access_token_ttl_seconds: u64,
    pub session_ttl_seconds: u64,
    /// A broker session unused this long ends (SSO needs a fresh IdP login).
    pub session_idle_seconds: u64,
    /// Absolute lifetime of a refresh token family; rotation never extends it.
    pub refresh_token_ttl_seconds: u64,
    /// Cap on the posted SAMLResponse (decoded bytes).
    pub max_saml_response_bytes: usize,
    /// Algorithm of new signing keys: "RS256", "ES256" or "EdDSA". Existing keys keep theirs;
    /// `ssobroker keys rotate --alg` switches a running deployment.
    pub signing_alg: String,
    /// Require the ACS post to come from the browser that started the login. Default: on for
    /// an https issuer (the cookie must be SameSite=None; Secure to ride the IdP's cross-site
    /// POST, which browsers only keep on https).
    #[serde(default)]
    pub bind_login_to_browser: Option<bool>,
    /// Log lines as "text" (readable) or "json" (one object per line, for log shippers).
    pub log_format: String,
    /// On SIGTERM/SIGINT, how long in-flight requests may take before the workers stop.
    pub shutdown_timeout_seconds: u64,
    /// How often expired login state (login transactions, replay entries, codes, sessions,
    /// refresh tokens) is deleted.
    pub housekeeping_interval_seconds: u64,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client.
    /// Empty: the TCP peer is the client and the header is ignored.
    pub trusted_proxies: Vec<String>,
    pub metrics: FileMetrics,
    pub rate_limits: FileRateLimits,
    /// Users holding this role may sign in to the admin console through their IdP. None (the
    /// default): only local admin accounts (`ssobroker admin create`) may.
    #[serde(default)]
    pub admin_role: Option<String>,
    /// An admin console session unused this long ends.
    pub admin_session_idle_seconds: u64,
    /// Absolute lifetime of an admin console session.
    pub admin_session_ttl_seconds: u64,
    #[serde(default)]
    pub connections: Vec<FileConnection>,
    #[serde(default)]
    pub clients: Vec<FileClient>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            issuer: "http://127.0.0.1:8080".into(),
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://data/ssobroker.db".into(),
            clock_skew_seconds: 120,
            login_timeout_seconds: 600,
            code_ttl_seconds: 60,
            id_token_ttl_seconds: 300,
            access_token_ttl_seconds: 3600,
            session_ttl_seconds: 8 * 3600,
            session_idle_seconds: 2 * 3600,
            refresh_token_ttl_seconds: 30 * 86400,
            max_saml_response_bytes: 256 * 1024,
            signing_alg: crate::oidc::keys::RS256.into(),
            bind_login_to_browser: None,
            log_format: "text".into(),
            shutdown_timeout_seconds: 30,
            housekeeping_interval_seconds: 300,
            trusted_proxies: Vec::new(),
            metrics: FileMetrics::default(),
            rate_limits: FileRateLimits::default(),
            admin_role: None,
            admin_session_idle_seconds: 30 * 60,
            admin_session_ttl_seconds: 8 * 3600,
            connections: Vec::new(),
            clients: Vec::new(),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileMetrics {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>` (the broker usually
    /// faces the internet; the counters name connections and refusal reasons).
    pub bearer_token: Option<String>,
}

impl Default for FileMetrics {
    fn default() -> Self {
        FileMetrics { enabled: true, bearer_token: None }
    }
}

impl std::fmt::Debug for FileMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMetrics")
            .field("enabled", &self.enabled)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// `[rate_limits]`: per client address, each `{ per_minute, burst }`; `per_minute = 0` turns
/// a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileRateLimits {
    /// `POST /token` (app servers: many users behind one address, so generous).
    pub token: RateLimit,
    /// `POST /saml/<id>/acs` (browsers; a company's users may share one NAT address).
    pub acs: RateLimit,
    /// Admin sign-in attempts (password guessing).
    pub admin_login: RateLimit,
}

impl Default for FileRateLimits {
    fn default() -> Self {
        FileRateLimits {
            token: RateLimit { per_minute: 600, burst: 100 },
            acs: RateLimit { per_minute: 120, burst: 60 },
            admin_login: RateLimit { per_minute: 10, burst: 5 },
        }
    }
}

impl FileRateLimits {
    /// Every limit off (tests that send hundreds of requests from 127.0.0.1).
    pub fn off() -> Self {
        let off = RateLimit { per_minute: 0, burst: 0 };
        FileRateLimits { token: off, acs: off, admin_login: off }
    }
}

/// A sustained rate with a burst allowance (GCRA: the burst refills at `per_minute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?}: must be \"text\" or \"json\"")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConnection {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub vendor: Vendor,
    /// The IdP metadata as a file (what the admin downloaded) ...
    #[serde(default)]
    pub metadata_file: PathBuf,
    /// ... or fetched from the IdP: at start, then every `metadata_refresh_seconds`; the last
    /// good copy is kept in the database and used while the URL is unreachable.
    #[serde(default)]
    pub metadata_url: Option<String>,
    #[serde(default = "default_metadata_refresh")]
    pub metadata_refresh_seconds: u64,
    #[serde(default)]
    pub sp_entity_id: Option<String>,
    /// Keep an ACS URL the IdP already knows (a proxy must route it to `/saml/<id>/acs`).
    #[serde(default)]
    pub acs_url: Option<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub default_roles: Vec<String>,
    #[serde(default)]
    pub role_mapping: BTreeMap<String, Vec<String>>,
    #[serde(default = "yes")]
    pub update_on_login: bool,
    #[serde(default)]
    pub provisioning: ProvisioningMode,
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// SHA-1 signatures are refused unless the connection opts in (OneLogin and Auth0 still
    /// default to them).
    #[serde(default)]
    pub allow_sha1: bool,
    /// Link a first login to an existing user with the same email in one of `domains`.
    #[serde(default)]
    pub link_by_email: bool,
    /// Only groups matching these patterns go into the `groups` claim.
    #[serde(default)]
    pub groups_filter: Vec<String>,
    /// Refuse logins that do not prove a second factor (`mfa_required`).
    #[serde(default)]
    pub require_mfa: bool,
    /// AuthnContextClassRef values that count as MFA (default: the standard MFA classes).
    #[serde(default)]
    pub mfa_authn_contexts: Option<Vec<String>>,
    /// AuthnContextClassRef values to ask for in the AuthnRequest (for IdPs that honour it).
    #[serde(default)]
    pub requested_authn_context: Vec<String>,
    /// The SP's RSA private key (PEM) for EncryptedAssertion, with its certificate in
    /// `sp_cert_file` (published in SP metadata for the IdP to encrypt to).
    #[serde(default)]
    pub sp_key_file: Option<PathBuf>,
    #[serde(default)]
    pub sp_cert_file: Option<PathBuf>,
    /// With `allow_idp_initiated`: the client (with a `launch_url`) an IdP-initiated login opens
    /// when the user's roles admit it; otherwise, and by default, the portal.
    #[serde(default)]
    pub idp_initiated_client: Option<String>,
    /// Sign AuthnRequests. Unset: sign when the IdP metadata says `WantAuthnRequestsSigned`.
    /// Signed with the `sp_key_file` pair, else with a key the broker generates and stores.
    #[serde(default)]
    pub sign_authn_requests: Option<bool>,
    /// Single logout with the IdP. Unset: on when the IdP metadata publishes a
    /// SingleLogoutService. `true`: also before it does (SP metadata then lists our endpoint and
    /// signing certificate for the IdP admin to enter first). `false`: off.
    #[serde(default)]
    pub single_logout: Option<bool>,
    /// Earlier SP keys still accepted for decryption during a key rollover.
    #[serde(default)]
    pub previous_sp_key_files: Vec<PathBuf>,
    #[serde(default)]
    pub attributes: AttributeOverrides,
}

fn default_metadata_refresh() -> u64 {
    3600
}

fn yes() -> bool {
    true
}

impl FileConnection {
    /// A connection with every optional setting at its default.
    pub fn new(id: &str, metadata_file: impl Into<PathBuf>) -> Self {
        FileConnection {
            id: id.to_string(),
            display_name: None,
            vendor: Vendor::Generic,
            metadata_file: metadata_file.into(),
            metadata_url: None,
            metadata_refresh_seconds: default_metadata_refresh(),
            sp_entity_id: None,
            acs_url: None,
            domains: Vec::new(),
            default_roles: Vec::new(),
            role_mapping: BTreeMap::new(),
            update_on_login: true,
            provisioning: ProvisioningMode::Jit,
            allow_idp_initiated: false,
            allow_sha1: false,
            link_by_email: false,
            groups_filter: Vec::new(),
            require_mfa: false,
            mfa_authn_contexts: None,
            requested_authn_context: Vec::new(),
            sp_key_file: None,
            sp_cert_file: None,
            sign_authn_requests: None,
            single_logout: None,
            idp_initiated_client: None,
            previous_sp_key_files: Vec::new(),
            attributes: AttributeOverrides::default(),
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClient {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// Issue refresh tokens even when the app does not ask for `offline_access`.
    #[serde(default)]
    pub issue_refresh_token: bool,
    /// Where the user portal opens the app; apps without one are not listed there.
    #[serde(default)]
    pub launch_url: Option<String>,
}

impl FileClient {
    /// A public client (no secret) with one redirect URI and every option at its default.
    pub fn new(client_id: &str, redirect_uri: &str) -> Self {
        FileClient {
            client_id: client_id.to_string(),
            client_secret: None,
            client_secret_hash: None,
            redirect_uris: vec![redirect_uri.to_string()],
            post_logout_redirect_uris: Vec::new(),
            allowed_roles: Vec::new(),
            issue_refresh_token: false,
            launch_url: None,
        }
    }
}

impl std::fmt::Debug for FileClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .field("redirect_uris", &self.redirect_uris)
            .finish_non_exhaustive()
    }
}

/// Where the data lives; the variant is chosen from the URL scheme, unknown schemes refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// For logs: the backend and where, never the password.
    pub fn describe(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite {}", p.display()),
            DatabaseUrl::Postgres(u) => match url::Url::parse(u) {
                Ok(url) => format!("postgres {}{}", url.host_str().unwrap_or("?"), url.path()),
                Err(_) => "postgres".into(),
            },
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("sqlite://") {
            if rest.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(rest)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(s.to_string()))
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }
}

/// One upstream IdP connection, validated and with its metadata loaded.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub display_name: String,
    pub domains: Vec<String>,
    pub allow_idp_initiated: bool,
    /// The configured choice (unset: follow the IdP metadata's WantAuthnRequestsSigned).
    pub sign_authn_requests: Option<bool>,
    /// The configured choice (unset: follow the IdP metadata's SingleLogoutService).
    pub single_logout: Option<bool>,
    /// Where an IdP-initiated login lands when that client admits the user (else the portal).
    pub idp_initiated_client: Option<String>,
    /// Where the IdP metadata comes from when it is fetched rather than a file.
    pub metadata_url: Option<MetadataUrl>,
    /// The metadata file (resolved), when the metadata comes from one.
    pub metadata_file: Option<PathBuf>,
    pub sp: SpSettings,
    pub policy: Policy,
}

impl Connection {
    /// Single logout is on for this connection: configured so, or left unset while the IdP
    /// metadata publishes a SingleLogoutService.
    pub fn single_logout_on(&self) -> bool {
        self.single_logout.unwrap_or(self.sp.idp.slo.is_some())
    }

    /// The connection needs an SP signing key: for AuthnRequests, or for logout messages. A
    /// `metadata_url` connection has one unless both are configured off: a refresh may bring
    /// `WantAuthnRequestsSigned` or a SingleLogoutService, and the key must then be there.
    pub fn needs_signing_key(&self) -> bool {
        let refreshed = self.metadata_url.is_some()
            && !(self.sign_authn_requests == Some(false) && self.single_logout == Some(false));
        self.sp.sign_authn_requests || self.single_logout_on() || refreshed
    }

    /// This connection with refreshed IdP metadata: what the metadata decides (signed
    /// AuthnRequests, single logout) follows it unless the configuration decides.
    pub fn with_metadata(&self, idp: IdpMetadata) -> Connection {
        let mut live = self.clone();
        live.sp.idp = idp;
        if live.sign_authn_requests.is_none() {
            live.sp.sign_authn_requests = live.sp.idp.want_authn_requests_signed;
        }
        live
    }

    /// The SP settings our SP metadata describes: our SingleLogoutService only while single
    /// logout is on (the endpoint answers only then).
    pub fn advertised_sp(&self) -> SpSettings {
        let mut sp = self.sp.clone();
        if !self.single_logout_on() {
            sp.slo_url.clear();
        }
        sp
    }

    /// Our single logout service answers: single logout on and not configured off.
    pub fn slo_service_on(&self) -> bool {
        self.single_logout_on() && !self.sp.slo_url.is_empty()
    }

    /// Where a sign-out sends our LogoutRequest: single logout on, the IdP publishes an
    /// endpoint, and there is a key to sign with.
    pub fn slo_to_idp(&self) -> Option<&crate::saml::SloEndpoint> {
        let ready = self.slo_service_on() && self.sp.signing_key.is_some();
        self.sp.idp.slo.as_ref().filter(|_| ready)
    }
}

/// A connection's metadata URL and how often it is fetched again.
#[derive(Debug, Clone)]
pub struct MetadataUrl {
    pub url: String,
    pub refresh: chrono::Duration,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public base URL without a trailing slash.
    pub issuer: String,
    pub issuer_is_https: bool,
    pub listen: SocketAddr,
    pub database: DatabaseUrl,
    pub login_timeout: chrono::Duration,
    pub code_ttl: chrono::Duration,
    pub id_token_ttl: chrono::Duration,
    pub access_token_ttl: chrono::Duration,
    pub session_ttl: chrono::Duration,
    /// Algorithm for the first key and the default for `keys rotate`.
    pub signing_alg: crate::oidc::keys::SigningAlg,
    pub session_idle: chrono::Duration,
    pub refresh_token_ttl: chrono::Duration,
    pub bind_login_to_browser: bool,
    pub log_format: LogFormat,
    pub shutdown_timeout: std::time::Duration,
    pub housekeeping_interval: std::time::Duration,
    pub trusted_proxies: crate::ops::TrustedProxies,
    /// `None`: `/metrics` is not served.
    pub metrics: Option<MetricsSettings>,
    pub rate_limits: FileRateLimits,
    /// See `FileConfig::admin_role`.
    pub admin_role: Option<String>,
    pub admin_session_idle: chrono::Duration,
    pub admin_session_ttl: chrono::Duration,
    pub connections: Vec<Connection>,
    pub clients: Vec<Client>,
}

#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub bearer_token: Option<crate::oidc::Secret>,
}

impl Config {
    pub fn connection(&self, id: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.id == id)
    }
    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == id)
    }
}

/// Scalar settings that may come from the environment (`SSOBROKER_ISSUER`, …). Other
/// `SSOBROKER_*` variables (the CLI's own, the tests') are not configuration.
const ENV_KEYS: [&str; 21] = [
    "issuer",
    "listen",
    "database_url",
    "clock_skew_seconds",
    "login_timeout_seconds",
    "code_ttl_seconds",
    "id_token_ttl_seconds",
    "access_token_ttl_seconds",
    "session_ttl_seconds",
    "session_idle_seconds",
    "refresh_token_ttl_seconds",
    "max_saml_response_bytes",
    "signing_alg",
    "bind_login_to_browser",
    "log_format",
    "shutdown_timeout_seconds",
    "housekeeping_interval_seconds",
    "trusted_proxies",
    "admin_role",
    "admin_session_idle_seconds",
    "admin_session_ttl_seconds",
];

/// Loads defaults → `path` → `SSOBROKER_*` env and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file_name = path.display().to_string();
    if !path.exists() {
        return Err(ConfigError {
            file: file_name,
            // The whole file is missing: there is no key to name.
            key: String::new(),
            reason: "file not found (copy ssobroker.example.toml or pass --config)".into(),
        });
    }
    let figment = Figment::from(Serialized::defaults(FileConfig::default()))
        .merge(Toml::file(path))
        .merge(Env::prefixed("SSOBROKER_").only(&ENV_KEYS))
        // The metrics token is a secret: deployments pass it in the environment.
        .merge(
            Env::prefixed("SSOBROKER_")
                .only(&["metrics_bearer_token"])
                .map(|_| "metrics.bearer_token".into()),
        );
    let raw: FileConfig = figment.extract().map_err(|e| figment_error(&file_name, e))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    validate(raw, &file_name, &base).map_err(|mut e| {
        // A top-level value set in the environment wins over the file: blame the variable.
        let var = format!("SSOBROKER_{}", e.key.to_ascii_uppercase());
        if ENV_KEYS.contains(&e.key.as_str()) && std::env::var_os(&var).is_some() {
            e.file = format!("environment ({var})");
        }
        e
    })
}

fn figment_error(file: &str, e: figment::Error) -> ConfigError {
    // `connections.0.vendor` → `connections[0].vendor`, the form validate() uses.
    let mut key = String::new();
    for part in &e.path {
        if part.chars().all(|c| c.is_ascii_digit()) {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    if key.is_empty() {
        key.push('-');
    }
    // The source tells whether the value came from the file or the environment.
    let file = match &e.metadata {
        Some(m) if m.name.contains("environment") => "environment (SSOBROKER_*)".to_string(),
        _ => file.to_string(),
    };
    ConfigError { file, key, reason: e.kind.to_string() }
}

/// A registrable redirect URI: absolute, no fragment (RFC 6749 §3.1.2), and not a scheme a
/// browser runs as script (`javascript://host/%0A…` is an absolute URL too): a post-logout URI
/// can end up as a link on the broker's own sign-out page.
pub fn check_redirect_uri(u: &str) -> Result<(), String> {
    no_control_characters(u)?;
    let parsed = url::Url::parse(u).map_err(|e| e.to_string())?;
    if crate::oidc::logout::runs_script(&parsed) {
        return Err(format!("the {} scheme is not allowed", parsed.scheme()));
    }
    if parsed.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    if parsed.cannot_be_a_base() {
        return Err("must be an absolute URL".into());
    }
    Ok(())
}

/// The URL parser drops tabs and line breaks and escapes other control characters, so such a URI
/// would be registered as text no redirect could ever carry unchanged (and a NUL as text
/// PostgreSQL refuses): refused rather than stored.
fn no_control_characters(u: &str) -> Result<(), String> {
    if u.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(())
}

/// Client ids appear in URL paths (`/admin/clients/<id>`) and forms: letters, digits and
/// `- _ . : @` only, so an id can never turn a link into another path.
pub fn check_client_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!("{id:?}: a client id is 1-128 letters, digits or - _ . : @"))
    }
}

/// A portal launch link: an absolute http(s) URL (a `javascript:` link would run in the portal).
pub fn check_launch_url(u: &str) -> Result<(), String> {
    no_control_characters(u)?;
    let parsed = url::Url::parse(u).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http(s) URL".into());
    }
    Ok(())
}

type SpKeys = (Vec<crate::saml::DecryptionKey>, Option<Vec<u8>>, Option<crate::saml::SpSigningKey>);

/// Reads a connection's SP key pair (it decrypts and, when requests are signed, signs): the current key (whose public half must match the
/// certificate) first, then the keys of a rollover.
fn sp_keys(
    c: &FileConnection,
    base_dir: &Path,
    key: &dyn Fn(&str) -> String,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<SpKeys, ConfigError> {
    let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) };
    let read_key = |name: &str, p: &Path| {
        let path = resolve(p);
        let pem = std::fs::read(&path).map_err(|e| err(&key(name), format!("{}: {e}", path.display())))?;
        crate::saml::DecryptionKey::from_pem(&pem)
            .map_err(|e| err(&key(name), format!("{}: {e}", path.display())))
    };
    let (current, cert, signing) = match (&c.sp_key_file, &c.sp_cert_file) {
        (None, None) => (None, None, None),
        (Some(k), Some(cert_file)) => {
            let decryption_key = read_key("sp_key_file", k)?;
            let path = resolve(cert_file);
            let pem = std::fs::read(&path)
                .map_err(|e| err(&key("sp_cert_file"), format!("{}: {e}", path.display())))?;
            let cert = openssl::x509::X509::from_pem(&pem).map_err(|_| {
                err(&key("sp_cert_file"), format!("{}: not a PEM certificate", path.display()))
            })?;
            let cert_public = cert.public_key().and_then(|p| p.public_key_to_der()).unwrap_or_default();
            if cert_public != decryption_key.public_key_der() {
                return Err(err(&key("sp_cert_file"), "the certificate does not match sp_key_file".into()));
            }
            let der = cert.to_der().map_err(|e| err(&key("sp_cert_file"), e.to_string()))?;
            let key_pem = std::fs::read(resolve(k)).map_err(|e| err(&key("sp_key_file"), e.to_string()))?;
            let signing = crate::saml::SpSigningKey::from_pem(&key_pem, &pem)
                .map_err(|e| err(&key("sp_key_file"), e))?;
            (Some(decryption_key), Some(der), Some(signing))
        }
        (Some(_), None) => return Err(err(&key("sp_cert_file"), "sp_key_file needs sp_cert_file".into())),
        (None, Some(_)) => return Err(err(&key("sp_key_file"), "sp_cert_file needs sp_key_file".into())),
    };
    let mut keys: Vec<_> = current.into_iter().collect();
    for p in &c.previous_sp_key_files {
        keys.push(read_key("previous_sp_key_files", p)?);
    }
    Ok((keys, cert, signing))
}

/// Turns the file form into the typed config; every problem names its key.
pub fn validate(raw: FileConfig, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let err = |key: &str, reason: String| ConfigError { file: file.into(), key: key.into(), reason };
    let issuer_url = url::Url::parse(&raw.issuer).map_err(|e| {
        err("issuer", format!("must be an absolute http(s) URL such as https://sso.example.com ({e})"))
    })?;
    if !matches!(issuer_url.scheme(), "http" | "https") {
        return Err(err("issuer", "must be an http(s) URL".into()));
    }
    if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
        return Err(err("issuer", "must not have a query or fragment".into()));
    }
    let issuer = raw.issuer.trim_end_matches('/').to_string();
    let listen: SocketAddr = raw
        .listen
        .parse()
        .map_err(|e| err("listen", format!("{e} (expected host:port, e.g. 127.0.0.1:8080)")))?;
    let database = DatabaseUrl::parse(&raw.database_url).map_err(|r| err("database_url", r))?;
    let secs = |key: &str, v: u64, max: u64| {
        if v == 0 || v > max {
            Err(err(key, format!("must be between 1 and {max} seconds")))
        } else {
            Ok(chrono::Duration::seconds(v as i64))
        }
    };
    let clock_skew = if raw.clock_skew_seconds > 600 {
        return Err(err("clock_skew_seconds", "must be at most 600".into()));
    } else {
        chrono::Duration::seconds(raw.clock_skew_seconds as i64)
    };
    let login_timeout = secs("login_timeout_seconds", raw.login_timeout_seconds, 3600)?;
    let code_ttl = secs("code_ttl_seconds", raw.code_ttl_seconds, 600)?;
    let id_token_ttl = secs("id_token_ttl_seconds", raw.id_token_ttl_seconds, 86400)?;
    let access_token_ttl = secs("access_token_ttl_seconds", raw.access_token_ttl_seconds, 86400)?;
    let session_ttl = secs("session_ttl_seconds", raw.session_ttl_seconds, 30 * 86400)?;
    let session_idle = secs("session_idle_seconds", raw.session_idle_seconds, 30 * 86400)?;
    let refresh_token_ttl = secs("refresh_token_ttl_seconds", raw.refresh_token_ttl_seconds, 366 * 86400)?;
    if raw.max_saml_response_bytes < 1024 || raw.max_saml_response_bytes > 4 * 1024 * 1024 {
        return Err(err("max_saml_response_bytes", "must be between 1024 and 4194304".into()));
    }
    let log_format = raw.log_format.parse().map_err(|r| err("log_format", r))?;
    if raw.shutdown_timeout_seconds > 3600 {
        return Err(err("shutdown_timeout_seconds", "must be at most 3600".into()));
    }
    // A day at most: beyond that the tables grow by a day of logins between passes.
    let housekeeping_interval =
        secs("housekeeping_interval_seconds", raw.housekeeping_interval_seconds, 86400)?
            .to_std()
            .map_err(|e| err("housekeeping_interval_seconds", e.to_string()))?;
    let mut proxies = Vec::new();
    for (i, p) in raw.trusted_proxies.iter().enumerate() {
        proxies.push(
            crate::ops::TrustedProxies::parse_entry(p)
                .map_err(|r| err(&format!("trusted_proxies[{i}]"), r))?,
        );
    }
    let metrics = if raw.metrics.enabled {
        let bearer_token = match raw.metrics.bearer_token {
            Some(t) if t.len() < 16 => {
                return Err(err("metrics.bearer_token", "must be at least 16 characters".into()))
            }
            t => t.map(crate::oidc::Secret::new),
        };
        Some(MetricsSettings { bearer_token })
    } else {
        None
    };
    for (name, l) in [
        ("token", raw.rate_limits.token),
        ("acs", raw.rate_limits.acs),
        ("admin_login", raw.rate_limits.admin_login),
    ] {
        if l.per_minute > 0 && l.burst == 0 {
            return Err(err(
                &format!("rate_limits.{name}.burst"),
                "must be at least 1 when per_minute is set".into(),
            ));
        }
    }
    let admin_session_idle = secs("admin_session_idle_seconds", raw.admin_session_idle_seconds, 86400)?;
    let admin_session_ttl = secs("admin_session_ttl_seconds", raw.admin_session_ttl_seconds, 7 * 86400)?;
    let admin_role = match raw.admin_role.as_deref().map(str::trim) {
        None => None,
        Some(r)
            if r.is_empty() || r.len() > 128 || r.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            return Err(err("admin_role", "a role is 1-128 characters without spaces".into()));
        }
        Some(r) => Some(r.to_string()),
    };
    let signing_alg = raw
        .signing_alg
        .parse()
        .map_err(|_| err("signing_alg", format!("{:?}: must be RS256, ES256 or EdDSA", raw.signing_alg)))?;

    let mut connections: Vec<Connection> = Vec::new();
    for (i, c) in raw.connections.into_iter().enumerate() {
        let key = |k: &str| format!("connections[{i}].{k}");
        if c.id.is_empty()
            || c.id.len() > 64
            || !c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(err(&key("id"), "must be 1-64 characters of letters, digits, '-' or '_'".into()));
        }
        if connections.iter().any(|o| o.id == c.id) {
            return Err(err(&key("id"), format!("duplicate connection id {:?}", c.id)));
        }
        let (idp, metadata_url, metadata_file) =
            match (&c.metadata_url, c.metadata_file.as_os_str().is_empty()) {
                (None, true) => {
                    return Err(err(&key("metadata_file"), "set metadata_file or metadata_url".into()));
                }
                (Some(_), false) => {
                    return Err(err(
                        &key("metadata_url"),
                        "set metadata_file or metadata_url, not both".into(),
                    ));
                }
                (None, false) => {
                    let metadata_path = if c.metadata_file.is_absolute() {
                        c.metadata_file.clone()
                    } else {
                        base_dir.join(&c.metadata_file)
                    };
                    let xml = std::fs::read_to_string(&metadata_path).map_err(|e| {
                        err(&key("metadata_file"), format!("{}: {e}", metadata_path.display()))
                    })?;
                    let idp: IdpMetadata = crate::saml::parse_idp_metadata(&xml).map_err(|e| {
                        err(&key("metadata_file"), format!("{}: {e}", metadata_path.display()))
                    })?;
                    if idp.signing_certs.is_empty() {
                        // samael verifies nothing when it finds no signing key; refuse to start instead.
                        return Err(err(
                            &key("metadata_file"),
                            "IdP metadata has no signing certificate".into(),
                        ));
                    }
                    (idp, None, Some(metadata_path))
                }
                (Some(url), true) => {
                    let parsed = url::Url::parse(url)
                        .map_err(|e| err(&key("metadata_url"), format!("{url:?}: {e}")))?;
                    // Plain http only to this machine (tests, a sidecar): metadata is the trust anchor.
                    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
                    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
                        return Err(err(&key("metadata_url"), format!("{url:?}: must be an https URL")));
                    }
                    if !(60..=7 * 86400).contains(&c.metadata_refresh_seconds) {
                        return Err(err(
                            &key("metadata_refresh_seconds"),
                            "must be between 60 and 604800".into(),
                        ));
                    }
                    // Filled from the fetched (or stored) copy before the server starts
                    // (flow::trust::load_at_start); nothing reads it before then.
                    let pending = IdpMetadata {
                        entity_id: String::new(),
                        sso_url: String::new(),
                        sso_binding: crate::saml::SsoBinding::Redirect,
                        signing_certs: Vec::new(),
                        want_authn_requests_signed: false,
                        slo: None,
                    };
                    let source = MetadataUrl {
                        url: url.clone(),
                        refresh: chrono::Duration::seconds(c.metadata_refresh_seconds as i64),
                    };
                    (pending, Some(source), None)
                }
            };
        if c.idp_initiated_client.is_some() && !c.allow_idp_initiated {
            return Err(err(&key("idp_initiated_client"), "needs allow_idp_initiated = true".into()));
        }
        let mut domains = Vec::new();
        for d in &c.domains {
            let d = crate::provisioning::normalize_domain_rule(d)
                .map_err(|r| err(&key("domains"), format!("{d:?}: {r}")))?;
            domains.push(d);
        }
        let sp_entity_id =
            c.sp_entity_id.clone().unwrap_or_else(|| format!("{issuer}/saml/{}/metadata", c.id));
        let (decryption_keys, encryption_cert, signing_key) = sp_keys(&c, base_dir, &key, &err)?;
        let sign_authn_requests = c.sign_authn_requests.unwrap_or(idp.want_authn_requests_signed);
        let sp = SpSettings {
            entity_id: sp_entity_id,
            acs_url: c.acs_url.clone().unwrap_or_else(|| format!("{issuer}/saml/{}/acs", c.id)),
            idp,
            allow_sha1: c.allow_sha1,
            requested_authn_context: c.requested_authn_context.clone(),
            clock_skew,
            max_response_bytes: raw.max_saml_response_bytes,
            decryption_keys,
            encryption_cert,
            sign_authn_requests,
            signing_key,
            slo_url: if c.single_logout == Some(false) {
                String::new()
            } else {
                format!("{issuer}/saml/{}/slo", c.id)
            },
        };
        if (c.link_by_email || c.provisioning == ProvisioningMode::Manual) && domains.is_empty() {
            // Linking by email is only safe for addresses in domains this IdP owns.
            let key_name = if c.link_by_email { "link_by_email" } else { "provisioning" };
            return Err(err(
                &key(key_name),
                "linking users by email needs `domains` (the domains this IdP owns)".into(),
            ));
        }
        let policy = Policy {
            domains: domains.clone(),
            default_roles: c.default_roles.clone(),
            role_mapping: c.role_mapping.clone(),
            update_on_login: c.update_on_login,
            mode: c.provisioning,
            link_by_email: c.link_by_email,
            groups_filter: c.groups_filter.clone(),
            require_mfa: c.require_mfa,
            mfa_contexts: c
                .mfa_authn_contexts
                .clone()
                .unwrap_or_else(crate::provisioning::default_mfa_contexts),
            ..Policy::for_vendor(c.vendor, &c.attributes)
        };
        connections.push(Connection {
            display_name: c.display_name.clone().unwrap_or_else(|| c.id.clone()),
            id: c.id,
            domains,
            allow_idp_initiated: c.allow_idp_initiated,
            sign_authn_requests: c.sign_authn_requests,
            single_logout: c.single_logout,
            idp_initiated_client: c.idp_initiated_client.clone(),
            metadata_url,
            metadata_file,
            sp,
            policy,
        });
    }

    // Each connection learns which domains the others own (see Policy::foreign_domains).
    let all_domains: Vec<(String, Vec<String>)> =
        connections.iter().map(|c| (c.id.clone(), c.domains.clone())).collect();
    for c in &mut connections {
        c.policy.foreign_domains =
            all_domains.iter().filter(|(id, _)| id != &c.id).flat_map(|(_, d)| d.iter().cloned()).collect();
    }

    let mut clients: Vec<Client> = Vec::new();
    for (i, c) in raw.clients.into_iter().enumerate() {
        let key = |k: &str| format!("clients[{i}].{k}");
        check_client_id(&c.client_id).map_err(|r| err(&key("client_id"), r))?;
        if clients.iter().any(|o| o.client_id == c.client_id) {
            return Err(err(&key("client_id"), format!("duplicate client id {:?}", c.client_id)));
        }
        let secret_hash = match (&c.client_secret, &c.client_secret_hash) {
            (Some(_), Some(_)) => {
                return Err(err(
                    &key("client_secret"),
                    "give client_secret or client_secret_hash, not both".into(),
                ))
            }
            (Some(s), None) => {
                if s.len() < 16 {
                    return Err(err(&key("client_secret"), "must be at least 16 characters".into()));
                }
                Some(
                    crate::oidc::hash_client_secret(s)
                        .map_err(|e| err(&key("client_secret"), e.to_string()))?,
                )
            }
            (None, Some(h)) => {
                // Parse it now: a placeholder or truncated hash would otherwise start fine and
                // then fail every token request.
                if !crate::oidc::valid_secret_hash(h) {
                    return Err(err(
                        &key("client_secret_hash"),
                        "must be an argon2 PHC string (from `ssobroker hash-secret`)".into(),
                    ));
                }
                Some(h.clone())
            }
            (None, None) => None,
        };
        if c.redirect_uris.is_empty() {
            return Err(err(&key("redirect_uris"), "at least one redirect URI is required".into()));
        }
        for (field, uris) in
            [("redirect_uris", &c.redirect_uris), ("post_logout_redirect_uris", &c.post_logout_redirect_uris)]
        {
            for u in uris {
                check_redirect_uri(u).map_err(|r| err(&key(field), format!("{u:?}: {r}")))?;
            }
        }
        if let Some(u) = &c.launch_url {
            check_launch_url(u).map_err(|r| err(&key("launch_url"), format!("{u:?}: {r}")))?;
        }
        clients.push(Client {
            launch_url: c.launch_url,
            client_id: c.client_id,
            secret_hash,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            allowed_roles: c.allowed_roles,
            issue_refresh_token: c.issue_refresh_token,
        });
    }

    Ok(Config {
        bind_login_to_browser: raw.bind_login_to_browser.unwrap_or(issuer_url.scheme() == "https"),
        issuer_is_https: issuer_url.scheme() == "https",
        issuer,
        listen,
        database,
        login_timeout,
        code_ttl,
        id_token_ttl,
        access_token_ttl,
        session_ttl,
        signing_alg,
        session_idle,
        refresh_token_ttl,
        log_format,
        shutdown_timeout: std::time::Duration::from_secs(raw.shutdown_timeout_seconds),
        housekeeping_interval,
        trusted_proxies: crate::ops::TrustedProxies::new(proxies),
        metrics,
        rate_limits: raw.rate_limits,
        admin_role,
        admin_session_idle,
        admin_session_ttl,
        connections,
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_schemes() {
        assert_eq!(DatabaseUrl::parse("sqlite://data/x.db"), Ok(DatabaseUrl::Sqlite("data/x.db".into())));
        assert!(matches!(DatabaseUrl::parse("postgres://u@h/db"), Ok(DatabaseUrl::Postgres(_))));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn control_characters_in_registered_urls() {
        for u in [
            "https://app.example/cb\0x",
            "https://app.example/c\tb",
            "https://app.example/cb\n",
            "\u{1}https://a.example/",
        ] {
            assert_eq!(check_redirect_uri(u), Err("contains a control character".into()), "{u:?}");
            assert_eq!(check_launch_url(u), Err("contains a control character".into()), "{u:?}");
        }
        assert_eq!(check_redirect_uri("https://app.example/cb?x=1,2&é=ü"), Ok(()));
        assert_eq!(check_launch_url("https://app.example/é"), Ok(()));
    }

    #[test]
    fn unknown_key_names_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "issuer = \"http://x\"\nlisten_typo = 1\n").unwrap();
        let e = load(&p).unwrap_err();
        assert!(e.reason.contains("listen_typo"), "{e}");
    }

    #[test]
    fn operations_settings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "log_format = \"json\"\nshutdown_timeout_seconds = 5\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
             [metrics]\nbearer_token = \"0123456789abcdef0123\"\n\
             [rate_limits]\nacs = { per_minute = 6, burst = 2 }\n",
        )
        .unwrap();
        let cfg = load(&p).unwrap();
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.shutdown_timeout, std::time::Duration::from_secs(5));
        assert!(cfg.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(!cfg.trusted_proxies.contains("11.1.2.3".parse().unwrap()));
        let token = cfg.metrics.as_ref().and_then(|m| m.bearer_token.as_ref()).unwrap();
        assert_eq!(token.expose(), "0123456789abcdef0123");
        assert!(!format!("{cfg:?}").contains("0123456789abcdef0123"), "the token is redacted");
        assert_eq!(cfg.rate_limits.acs, RateLimit { per_minute: 6, burst: 2 });
        assert_eq!(cfg.rate_limits.token, FileRateLimits::default().token);

        std::fs::write(&p, "trusted_proxies = [\"proxy.local\"]\n").unwrap();
        assert_eq!(load(&p).unwrap_err().key, "trusted_proxies[0]");
        std::fs::write(&p, "log_format = \"xml\"\n").unwrap();
        assert_eq!(load(&p).unwrap_err().key, "log_format");
        std::fs::write(&p, "[metrics]\nbearer_token = \"short\"\n").unwrap();
        assert_eq!(load(&p).unwrap_err().key, "metrics.bearer_token");
        std::fs::write(&p, "[rate_limits]\ntoken = { per_minute = 5, burst = 0 }\n").unwrap();
        assert_eq!(load(&p).unwrap_err().key, "rate_limits.token.burst");
        std::fs::write(&p, "[metrics]\nenabled = false\n").unwrap();
        assert!(load(&p).unwrap().metrics.is_none());
        assert_eq!(load(&p).unwrap().housekeeping_interval, std::time::Duration::from_secs(300));
        std::fs::write(&p, "housekeeping_interval_seconds = 5\n").unwrap();
        assert_eq!(load(&p).unwrap().housekeeping_interval, std::time::Duration::from_secs(5));
        for bad in ["0", "86401"] {
            std::fs::write(&p, format!("housekeeping_interval_seconds = {bad}\n")).unwrap();
            assert_eq!(load(&p).unwrap_err().key, "housekeeping_interval_seconds");
        }
    }

    #[test]
    fn bad_listen_names_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "issuer = \"http://x\"\nlisten = \"nope\"\n").unwrap();
        let e = load(&p).unwrap_err();
        assert_eq!(e.key, "listen");
    }
}
