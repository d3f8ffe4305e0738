//! HTTP with actix only: extract, call a room, render or redirect. Views and assets are embedded;
//! `error.rs` is the one place room errors become HTTP responses.

mod admin_routes;
mod demo;
mod error;
mod oidc_routes;
mod ops;
mod portal_routes;
mod saml_routes;
mod views;

pub use demo::DemoState;
pub use error::WebError;
pub use ops::{
    client_ip, rate_limit_acs, rate_limit_admin_login, rate_limit_token, request_context, throttle, Limit,
    RequestContext,
};
pub use views::Views;

use crate::clock::Clock;
use crate::config::{Config, Connection};
use crate::oidc::keys::{self, KeyLife, KeyState, SigningAlg, StoredKey};
use crate::oidc::KeySet;
use crate::store::{self, DbConnection, DbPool};
use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

/// Everything a handler needs, passed in through app data (never a global).
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub pool: DbPool,
    pub clock: Arc<dyn Clock>,
    pub views: Arc<Views>,
    /// Present only under `ssobroker demo` (and in tests that ask for it).
    pub demo: Option<Arc<DemoState>>,
    /// This instance's Prometheus registry.
    pub metrics: Arc<crate::ops::Metrics>,
    /// Per-address rate limits (in memory, per instance).
    pub limits: Arc<crate::ops::RateLimits>,
    /// IdP metadata refreshed from `metadata_url` since the start (see `live_connection`).
    pub trust: Arc<crate::flow::trust::LiveTrust>,
    /// What the last `/readyz` answered, so only changes are logged.
    ready: Arc<AtomicBool>,
    /// The signing keys with the documents that describe them. Shared by every clone and
    /// replaced as a whole by `refresh_keys`; readers take the lock only to clone the `Arc`.
    published: Arc<RwLock<Arc<Published>>>,
}

/// One generation of keys and the JWKS and discovery documents built from it, swapped together
/// so a request never pairs a signing key with a JWKS that lacks it.
struct Published {
    keys: Arc<KeySet>,
    /// Built once per generation: discovery and JWKS only change with a key change.
    jwks_json: Arc<String>,
    discovery_json: Arc<String>,
}

impl Published {
    fn new(cfg: &Config, keys: KeySet) -> Result<Self, KeyLoadError> {
        let discovery = crate::oidc::discovery_json(&cfg.issuer)?;
        Ok(Published {
            jwks_json: Arc::new(keys.jwks_json()),
            discovery_json: Arc::new(keys::with_signing_algs(&discovery, &keys.signing_algs())?),
            keys: Arc::new(keys),
        })
    }
}

impl AppState {
    /// Loads (or on first start creates) the signing keys and prepares the state.
    pub fn new(
        mut cfg: Config,
        pool: DbPool,
        clock: Arc<dyn Clock>,
        demo: Option<DemoState>,
    ) -> Result<Self, WebError> {
        let mut conn = pool.get().map_err(|e| WebError::internal(&e))?;
        crate::flow::trust::load_at_start(&mut conn, &mut cfg, clock.now()).map_err(|e| {
            tracing::error!(error = %e, "cannot load IdP metadata");
            WebError::internal(&e)
        })?;
        crate::flow::sp_keys::ensure_signing_keys(&mut conn, &mut cfg, clock.now())
            .map_err(|e| WebError::internal(&e))?;
        crate::flow::trust::warn_expiring(&cfg, clock.now());
        let keys = load_or_create_keys(&mut conn, clock.now(), cfg.signing_alg)
            .map_err(|e| WebError::internal(&e))?;
        if keys.current_alg() != cfg.signing_alg {
            // Switching is a rotation with its publication period, never a side effect of a start.
            tracing::warn!(
                current_alg = %keys.current_alg(),
                kid = keys.current_kid(),
                signing_alg = %cfg.signing_alg,
                "the current signing key's algorithm differs from signing_alg; still signing with it \
                 (run `ssobroker keys rotate --alg {}` to switch)",
                cfg.signing_alg
            );
        }
        let published = Published::new(&cfg, keys).map_err(|e| WebError::internal(&e))?;
        let metrics = crate::ops::Metrics::new(crate::ops::Metrics::certificates(&cfg));
        let limits = crate::ops::RateLimits::new(&cfg.rate_limits);
        Ok(AppState {
            metrics: Arc::new(metrics),
            limits: Arc::new(limits),
            ready: Arc::new(AtomicBool::new(true)),
            trust: Arc::new(crate::flow::trust::LiveTrust::default()),
            published: Arc::new(RwLock::new(Arc::new(published))),
            cfg: Arc::new(cfg),
            pool,
            clock,
            views: Arc::new(Views::new().map_err(|e| WebError::internal(&e))?),
            demo: demo.map(Arc::new),
        })
    }

    fn published(&self) -> Arc<Published> {
        // Nothing panics while holding the write lock (it only swaps an `Arc`), so a poisoned
        // lock still holds a consistent value.
        match self.published.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The current key set. Take it once per request and use that copy throughout, so one
    /// response is signed by one generation even if a reload happens meanwhile.
    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.published().keys)
    }

    /// The JWKS document served at `/jwks`.
    pub fn jwks_json(&self) -> Arc<String> {
        Arc::clone(&self.published().jwks_json)
    }

    /// The discovery document, announcing the algorithms of the published keys.
    pub fn discovery_json(&self) -> Arc<String> {
        Arc::clone(&self.published().discovery_json)
    }

    /// Re-reads the keys from the database (blocking): picks up a rotation made by `ssobroker
    /// keys rotate` and drops keys past their retirement. Returns whether anything changed.
    pub fn reload_keys(&self, conn: &mut DbConnection) -> Result<bool, KeyLoadError> {
        let stored = published_keys(conn, self.clock.now(), self.cfg.signing_alg)?;
        if self.keys().is_same_as(&stored) {
            return Ok(false);
        }
        let published = Published::new(&self.cfg, KeySet::from_stored(stored)?)?;
        tracing::info!(
            kid = published.keys.current_kid(),
            alg = %published.keys.current_alg(),
            published = published.keys.kids().len(),
            "signing keys reloaded"
        );
        let published = Arc::new(published);
        match self.published.write() {
            Ok(mut p) => *p = published,
            Err(poisoned) => *poisoned.into_inner() = published,
        }
        Ok(true)
    }

    /// The connection as logins must see it now: with its refreshed IdP metadata when it has a
    /// `metadata_url` whose content changed since the start (a copy only then).
    pub fn live_connection<'a>(&self, c: &'a Connection) -> std::borrow::Cow<'a, Connection> {
        match self.trust.get(&c.id) {
            None => std::borrow::Cow::Borrowed(c),
            Some(idp) => std::borrow::Cow::Owned(c.with_metadata((*idp).clone())),
        }
    }

    /// The configuration with every connection's refreshed metadata (for certificate
    /// monitoring and the console; a copy only when something was refreshed).
    pub fn live_config(&self) -> std::borrow::Cow<'_, Config> {
        if self.cfg.connections.iter().all(|c| self.trust.get(&c.id).is_none()) {
            return std::borrow::Cow::Borrowed(&self.cfg);
        }
        let mut cfg = (*self.cfg).clone();
        for c in cfg.connections.iter_mut() {
            if let Some(idp) = self.trust.get(&c.id) {
                *c = c.with_metadata((*idp).clone());
            }
        }
        std::borrow::Cow::Owned(cfg)
    }

    /// Refreshes every `metadata_url` connection once; returns how many changed.
    pub async fn refresh_trust(&self) -> Result<usize, WebError> {
        let mut changed = 0;
        for c in self.cfg.connections.iter().filter(|c| c.metadata_url.is_some()) {
            let st = self.clone();
            let id = c.id.clone();
            let now = self.clock.now();
            let fresh = self
                .db(move |conn| {
                    let Some(c) = st.cfg.connection(&id) else { return Ok(None) };
                    let current = st.live_connection(c).sp.idp.clone();
                    crate::flow::trust::refresh(conn, c, &current, now).map_err(|e| WebError::internal(&e))
                })
                .await?;
            if let Some(metadata) = fresh {
                tracing::info!(connection = %c.id, "IdP metadata changed; now trusting the refreshed copy");
                self.trust.set(&c.id, metadata);
                changed += 1;
            }
        }
        if changed > 0 {
            let certs = crate::ops::Metrics::certificates(&self.live_config());
            self.metrics.set_certificates(certs);
        }
        Ok(changed)
    }

    /// `reload_keys` off the async workers; what the periodic refresh (and tests) call.
    pub async fn refresh_keys(&self) -> Result<bool, WebError> {
        let st = self.clone();
        self.db(move |c| st.reload_keys(c).map_err(|e| WebError::internal(&e))).await
    }

    /// Runs blocking database work off the async workers, with a connection for the whole
    /// closure.
    pub async fn db<T, E, F>(&self, f: F) -> Result<T, WebError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<WebError> + Send + 'static,
    {
        self.blocking(move |db| -> Result<T, WebError> { f(db.conn()?).map_err(Into::into) }).await
    }

    /// Runs a request's blocking work (queries, xmlsec, argon2) off the async workers in one
    /// hand-off: each hand-off costs two thread wake-ups, which were the largest item of a
    /// login's kernel time when a request made two or three. The closure takes a connection
    /// when it first needs one and can give it back before CPU work.
    pub async fn blocking<T, E, F>(&self, f: F) -> Result<T, WebError>
    where
        F: FnOnce(&mut store::Checkout<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<WebError> + Send + 'static,
    {
        let pool = self.pool.clone();
        // The blocking thread logs under the request's span (its request id).
        let span = tracing::Span::current();
        web::block(move || -> Result<T, WebError> {
            let _in_request = span.enter();
            f(&mut store::Checkout::new(&pool)).map_err(Into::into)
        })
        .await
        .map_err(|e| WebError::internal(&e))?
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error(transparent)]
    Store(#[from] diesel::result::Error),
    #[error(transparent)]
    Oidc(#[from] crate::oidc::OidcError),
}

/// The signing keys from the database; the first start creates one of `alg`. Two instances
/// starting at once may both create one: the oldest stays current for both.
pub fn load_or_create_keys(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    alg: SigningAlg,
) -> Result<KeySet, KeyLoadError> {
    Ok(KeySet::from_stored(published_keys(conn, now, alg)?)?)
}

/// The keys published at `now`: the current one first, then the others newest first. Creates a
/// current key of `alg` when there is none (first start).
fn published_keys(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    alg: SigningAlg,
) -> Result<Vec<StoredKey>, KeyLoadError> {
    let mut stored = select_published(store::grants::all_keys(conn)?, now);
    if stored.is_empty() {
        let k = keys::generate_key(alg)?;
        tracing::info!(kid = %k.kid, alg = %alg, "created the first signing key");
        store::grants::insert_key(
            conn,
            &store::grants::SigningKeyRow {
                kid: k.kid,
                alg: k.alg,
                private_pem: k.private_pem,
                created_at: now.timestamp(),
                active: true,
                rotated_at: None,
                retired_at: None,
            },
        )?;
        stored = select_published(store::grants::all_keys(conn)?, now);
    }
    Ok(stored)
}

/// Current first, then the still-published keys newest first; empty when there is no current key.
fn select_published(rows: Vec<store::grants::SigningKeyRow>, now: DateTime<Utc>) -> Vec<StoredKey> {
    let at = |t: i64| DateTime::from_timestamp(t, 0);
    let lives: Vec<KeyLife> = rows
        .iter()
        .map(|r| KeyLife {
            active: r.active,
            rotated_at: r.rotated_at.and_then(at),
            retired_at: r.retired_at.and_then(at),
        })
        .collect();
    let mut current = None;
    let mut others = Vec::new();
    for (row, state) in rows.into_iter().zip(keys::key_states(&lives, now)) {
        let retired_at = row.retired_at.and_then(at);
        let key = StoredKey { kid: row.kid, alg: row.alg, private_pem: row.private_pem, retired_at };
        match state {
            KeyState::Current => current = Some(key),
            KeyState::Published { .. } => others.push(key),
            KeyState::Retired => {}
        }
    }
    let Some(current) = current else { return Vec::new() };
    others.reverse();
    std::iter::once(current).chain(others).collect()
}

fn security_headers() -> middleware::DefaultHeaders {
    middleware::DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
}

/// Mounts every route; the demo routes only when the state carries a demo.
pub fn configure(state: AppState) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        let form_limit =
            state.cfg.connections.iter().map(|c| c.sp.max_response_bytes).max().unwrap_or(262_144) * 2;
        cfg.app_data(web::Data::new(state.clone()))
            .app_data(
                web::FormConfig::default()
                    .limit(form_limit)
                    .error_handler(|e, _| WebError::bad_request_from(&e).into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|e, _| WebError::bad_request_from(&e).into()))
            .route("/static/{file}", web::get().to(views::static_handler));
        ops::routes(cfg);
        oidc_routes::routes(cfg);
        saml_routes::routes(cfg);
        portal_routes::routes(cfg);
        admin_routes::routes(cfg);
        if state.demo.is_some() {
            demo::routes(cfg);
        }
    }
}

/// Housekeeping: every `housekeeping_interval_seconds`, delete expired login transactions,
/// replay entries, sessions, refresh tokens and grants so the tables stay bounded under constant
/// load, and forget rate-limit entries of addresses gone quiet. Any instance may run it; the
/// deletes are idempotent.
pub fn spawn_housekeeping(state: AppState) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(state.cfg.housekeeping_interval);
        loop {
            tick.tick().await;
            state.limits.purge();
            let now = state.clock.now();
            let longest = state.cfg.access_token_ttl.max(state.cfg.id_token_ttl);
            let (now_s, horizon) = (now.timestamp(), (now - longest).timestamp());
            match state.db(move |c| store::purge_expired(c, now_s, horizon)).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired login state"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
            }
        }
    })
}

/// Key refresh: every `KEY_REFRESH_SECONDS`, re-read the signing keys so a rotation done with
/// `ssobroker keys rotate` (on any host) takes effect here without a restart, and retired keys
/// leave the JWKS.
pub fn spawn_key_refresh(state: AppState) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let period = std::time::Duration::from_secs(keys::KEY_REFRESH_SECONDS.unsigned_abs());
        let mut tick = actix_web::rt::time::interval(period);
        // The first tick is immediate and the keys were just loaded.
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = state.refresh_keys().await {
                tracing::warn!(error = %e, "signing key refresh failed; still serving the previous keys");
            }
        }
    })
}

/// Refreshes `metadata_url` connections on their schedule (the shortest one configured).
pub fn spawn_trust_refresh(state: AppState) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let Some(period) = state
            .cfg
            .connections
            .iter()
            .filter_map(|c| c.metadata_url.as_ref().and_then(|m| m.refresh.to_std().ok()))
            .min()
        else {
            return;
        };
        let mut tick = actix_web::rt::time::interval(period);
        // The first tick is immediate and the metadata was just loaded.
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = state.refresh_trust().await {
                tracing::warn!(error = %e, "IdP metadata refresh failed; still trusting the previous copy");
            }
            crate::flow::trust::warn_expiring(&state.live_config(), state.clock.now());
        }
    })
}

/// Starts the HTTP server on an already bound listener (tests bind 127.0.0.1:0). SIGTERM and
/// SIGINT start a graceful shutdown: the listener closes, requests in flight get
/// `shutdown_timeout` to finish.
pub fn serve(
    state: AppState,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let shutdown_timeout = state.cfg.shutdown_timeout.as_secs();
    let routes = configure(state.clone());
    let server = HttpServer::new(move || {
        let st = state.clone();
        App::new()
            .wrap(middleware::from_fn(refuse_nul))
            .wrap(security_headers())
            // Last wrapped runs first: the request id and span cover everything else.
            .wrap(middleware::from_fn(move |req, next| ops::request_context(st.clone(), req, next)))
            .configure(routes.clone())
            .default_service(web::to(not_found_handler))
    })
    .workers(workers)
    .shutdown_timeout(shutdown_timeout)
    .listen(listener)?
    .run();
    Ok(server)
}

/// No field of ours holds a NUL character, and PostgreSQL refuses one in text (an error, not a
/// miss): a path or query that carries one, percent-encoded, is refused before any handler reads
/// it, the same on both databases. (Form fields are checked where they are read.)
async fn refuse_nul(
    req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::ResponseError;
    let raw = req.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or_default();
    if raw.as_bytes().windows(3).any(|w| w == b"%00") {
        let refused = WebError::bad_request("The address contains a NUL character, which no field accepts.");
        return Ok(req.into_response(refused.error_response()).map_into_right_body());
    }
    next.call(req).await.map(actix_web::dev::ServiceResponse::map_into_left_body)
}

async fn not_found_handler() -> Result<HttpResponse, WebError> {
    Err(WebError::NotFound)
}

/// Who made the request, for audit rows: the TCP peer, or the client a trusted proxy names
/// (`trusted_proxies`); a forwarded header from anyone else is ignored.
pub(crate) fn request_meta(req: &HttpRequest) -> crate::flow::RequestMeta {
    crate::flow::RequestMeta {
        ip: client_ip(req).map(|ip| ip.to_string()),
        user_agent: req.headers().get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string),
    }
}
