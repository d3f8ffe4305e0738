//! HTTP with actix only: extract, call a room, render or redirect. Views and assets are embedded;
//! `error.rs` is the one place room errors become HTTP responses.

mod demo;
mod error;
mod oidc_routes;
mod saml_routes;
mod views;

pub use demo::DemoState;
pub use error::WebError;
pub use views::Views;

use crate::clock::Clock;
use crate::config::Config;
use crate::oidc::KeySet;
use crate::store::{self, DbConnection, DbPool};
use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;

/// Everything a handler needs, passed in through app data (never a global).
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub pool: DbPool,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeySet>,
    pub views: Arc<Views>,
    /// Built once: discovery and JWKS only change with the config or a key rotation.
    pub discovery_json: Arc<String>,
    pub jwks_json: Arc<String>,
    /// Present only under `ssobroker demo` (and in tests that ask for it).
    pub demo: Option<Arc<DemoState>>,
}

impl AppState {
    /// Loads (or on first start creates) the signing keys and prepares the state.
    pub fn new(
        cfg: Config,
        pool: DbPool,
        clock: Arc<dyn Clock>,
        demo: Option<DemoState>,
    ) -> Result<Self, WebError> {
        let mut conn = pool.get().map_err(|e| WebError::internal(&e))?;
        let keys = load_or_create_keys(&mut conn, clock.now()).map_err(|e| WebError::internal(&e))?;
        let discovery_json = crate::oidc::discovery_json(&cfg.issuer).map_err(|e| WebError::internal(&e))?;
        Ok(AppState {
            jwks_json: Arc::new(keys.jwks_json()),
            discovery_json: Arc::new(discovery_json),
            keys: Arc::new(keys),
            cfg: Arc::new(cfg),
            pool,
            clock,
            views: Arc::new(Views::new().map_err(|e| WebError::internal(&e))?),
            demo: demo.map(Arc::new),
        })
    }

    /// Runs blocking database (and xmlsec) work off the async workers.
    pub async fn db<T, E, F>(&self, f: F) -> Result<T, WebError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<WebError> + Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || -> Result<T, WebError> {
            let mut conn = pool.get().map_err(|e| WebError::internal(&e))?;
            f(&mut conn).map_err(Into::into)
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

/// The signing keys from the database; the first start creates one. Two instances starting at
/// once may both create one: the oldest stays current for both.
pub fn load_or_create_keys(
    conn: &mut DbConnection,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<KeySet, KeyLoadError> {
    let mut rows = store::grants::active_keys(conn)?;
    if rows.is_empty() {
        let k = crate::oidc::generate_rsa_key()?;
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
        rows = store::grants::active_keys(conn)?;
    }
    let stored = rows
        .into_iter()
        .map(|r| crate::oidc::StoredKey { kid: r.kid, alg: r.alg, private_pem: r.private_pem })
        .collect();
    Ok(KeySet::from_stored(stored)?)
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
            .route("/healthz", web::get().to(healthz_handler))
            .route("/static/{file}", web::get().to(views::static_handler));
        oidc_routes::routes(cfg);
        saml_routes::routes(cfg);
        if state.demo.is_some() {
            demo::routes(cfg);
        }
    }
}

/// Housekeeping: every few minutes, delete expired login transactions, replay entries,
/// sessions and grants so the tables stay bounded under constant load. Any instance may run it;
/// the deletes are idempotent.
pub fn spawn_housekeeping(state: AppState) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            let now = state.clock.now();
            let longest = state.cfg.access_token_ttl.max(state.cfg.id_token_ttl);
            let (now_s, horizon) = (now.timestamp(), (now - longest).timestamp());
            match state.db(move |c| store::purge_expired(c, now_s, horizon)).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired login state"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
            }
        }
    });
}

/// Starts the HTTP server on an already bound listener (tests bind 127.0.0.1:0).
pub fn serve(
    state: AppState,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let routes = configure(state);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(security_headers())
            .wrap(
                // The path only: query strings carry codes, SAMLRequests and login hints.
                middleware::Logger::new("%a \"%m %U\" %s %Dms")
                    .exclude("/healthz")
                    .log_target("ssobroker::http"),
            )
            .configure(routes.clone())
            .default_service(web::to(not_found_handler))
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}

async fn healthz_handler(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    state.db(store::ping).await?;
    Ok(HttpResponse::Ok().content_type("text/plain").body("ok"))
}

async fn not_found_handler() -> Result<HttpResponse, WebError> {
    Err(WebError::NotFound)
}

/// The client's address for audit rows: the TCP peer. Forwarded headers are not trusted
/// because nothing here knows which proxies are in front.
pub(crate) fn request_meta(req: &HttpRequest) -> crate::flow::RequestMeta {
    crate::flow::RequestMeta {
        ip: req.peer_addr().map(|a| a.ip().to_string()),
        user_agent: req.headers().get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string),
    }
}
