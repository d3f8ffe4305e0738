//! The operational surface over HTTP: `/healthz`, `/readyz`, `/metrics`; the request context
//! (request id, client address, tracing span, access log, latency histogram) around every
//! request; and per-address rate limits as middleware or as a call from a handler.

use super::{AppState, WebError};
use crate::ops::metrics::PoolUsage;
use crate::ops::{self, Limiter, RateLimits};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How long `/readyz` waits for the database before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes and scrapes: counted in the latency histogram, kept out of the access log.
const QUIET_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Set on every request by [`request_context`].
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The TCP peer, or the client named by a trusted proxy's `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
}

/// The client's address as resolved for this request (the TCP peer when the context is missing).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    match req.extensions().get::<RequestContext>() {
        Some(ctx) => ctx.client_ip,
        None => req.peer_addr().map(|a| a.ip()),
    }
}

/// The outermost middleware: picks the request id (a sane incoming `X-Request-Id`, else a new
/// one), resolves the client address, runs the request inside a tracing span carrying the id
/// (so every log line of the request has it, JSON or text), then records the latency under the
/// route pattern, writes the access line and echoes the id in the response.
pub async fn request_context(
    state: AppState,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(ops::sane_request_id)
        .map(str::to_string)
        .unwrap_or_else(ops::new_request_id);
    let client_ip = req.peer_addr().map(|peer| {
        let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
        state.cfg.trusted_proxies.client_ip(peer.ip(), forwarded)
    });
    req.extensions_mut().insert(RequestContext { request_id: request_id.clone(), client_ip });
    let method = req.method().to_string();
    // The path only: query strings carry codes, SAMLRequests and login hints.
    let path = req.path().to_string();
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut res = next.call(req).instrument(span.clone()).await?;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    state.metrics.http_request(&method, &route, status, elapsed.as_secs_f64());
    if !QUIET_PATHS.contains(&path.as_str()) {
        span.in_scope(|| {
            tracing::info!(
                target: "ssobroker::http",
                client = %client_ip.map(|i| i.to_string()).unwrap_or_default(),
                method = %method,
                path = %path,
                status,
                ms = elapsed.as_millis() as u64,
                "request"
            )
        });
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(res)
}

/// A per-address limit, named for the middleware and [`throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `POST /token`; refusals are OAuth JSON.
    Token,
    /// `POST /saml/<id>/acs`; refusals are the generic HTML page.
    Acs,
    /// The admin sign-in form; refusals are the generic HTML page.
    AdminLogin,
}

impl Limit {
    fn pick(self, limits: &RateLimits) -> &Limiter {
        match self {
            Limit::Token => &limits.token,
            Limit::Acs => &limits.acs,
            Limit::AdminLogin => &limits.admin_login,
        }
    }
}

/// Takes one request from the client's allowance under `limit`; `Err` is the 429 to return.
/// Nothing is written to the database for a refusal (a flood must not grow the audit log); it
/// is counted in `ssobroker_rate_limited_total` and logged at debug.
pub fn throttle(state: &AppState, req: &HttpRequest, limit: Limit) -> Result<(), WebError> {
    let Some(ip) = client_ip(req) else { return Ok(()) };
    let limiter = limit.pick(&state.limits);
    limiter.check(ip).map_err(|t| {
        state.metrics.rate_limited(limiter.name());
        tracing::debug!(limit = limiter.name(), client = %ip, "rate limited");
        WebError::TooManyRequests { retry_after: t.retry_after_secs, json: limit == Limit::Token }
    })
}

/// Middleware form of [`throttle`]: refuses before the body is read or any work is done. Wrap a
/// resource with it, e.g.
/// `web::resource("/admin/login").wrap(from_fn(rate_limit_admin_login)).route(…)`.
async fn rate_limit(
    limit: Limit,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refusal = match req.app_data::<web::Data<AppState>>() {
        Some(state) => throttle(state, req.request(), limit).err(),
        None => None,
    };
    match refusal {
        Some(e) => Ok(req.error_response(e).map_into_right_body()),
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

pub async fn rate_limit_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    rate_limit(Limit::Token, req, next).await
}

pub async fn rate_limit_acs(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    rate_limit(Limit::Acs, req, next).await
}

/// For the admin sign-in form's POST route.
pub async fn rate_limit_admin_login(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    rate_limit(Limit::AdminLogin, req, next).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz_handler))
        .route("/readyz", web::get().to(readyz_handler))
        .route("/metrics", web::get().to(metrics_handler));
}

/// Liveness: the process answers. Deliberately no database: an orchestrator restarts a pod
/// whose liveness fails, and a restart does not bring a database back.
async fn healthz_handler() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").insert_header(("Cache-Control", "no-store")).body("ok")
}

/// Readiness: the database answers within [`READY_TIMEOUT`] and signing keys are loaded. Every
/// probe asks the pool afresh, so recovery needs no restart.
async fn readyz_handler(state: web::Data<AppState>) -> HttpResponse {
    let keys_ok = !state.keys().kids().is_empty();
    let pool = state.pool.clone();
    let span = tracing::Span::current();
    let probe = web::block(move || -> Result<(), String> {
        let _in_request = span.enter();
        let mut conn = pool.get_timeout(READY_TIMEOUT).map_err(|e| e.to_string())?;
        crate::store::ready_probe(&mut conn, READY_TIMEOUT.as_millis() as u64).map_err(|e| e.to_string())
    });
    let db = match actix_web::rt::time::timeout(READY_TIMEOUT + Duration::from_millis(500), probe).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    let ready = keys_ok && db.is_ok();
    // Log changes only: probes come every few seconds.
    let was_ready = state.ready.swap(ready, std::sync::atomic::Ordering::Relaxed);
    match (&db, was_ready, ready) {
        (Err(e), true, _) => tracing::warn!(error = %e, "not ready: database unreachable"),
        (Ok(()), true, false) => tracing::warn!("not ready: no signing keys"),
        (_, false, true) => tracing::info!("ready again"),
        _ => {}
    }
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if db.is_ok() { "ok" } else { "unreachable" },
        "signing_keys": if keys_ok { "ok" } else { "missing" },
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    HttpResponse::build(status).insert_header(("Cache-Control", "no-store")).json(body)
}

/// Prometheus exposition (OpenMetrics text). With `metrics.bearer_token` set, only a scraper
/// presenting it gets an answer.
async fn metrics_handler(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let Some(settings) = &state.cfg.metrics else { return Err(WebError::NotFound) };
    if let Some(expected) = &settings.bearer_token {
        use subtle::ConstantTimeEq;
        let presented = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
            return Err(WebError::OAuth {
                status: StatusCode::UNAUTHORIZED,
                code: "invalid_token",
                description: "metrics need the configured bearer token".into(),
                bearer: true,
            });
        }
    }
    let s = state.pool.state();
    let usage = PoolUsage {
        in_use: s.connections.saturating_sub(s.idle_connections),
        idle: s.idle_connections,
        max: state.pool.max_size(),
    };
    let body =
        state.metrics.encode(state.clock.now().timestamp(), usage).map_err(|e| WebError::internal(&e))?;
    Ok(HttpResponse::Ok()
        .content_type(crate::ops::metrics::CONTENT_TYPE)
        .insert_header(("Cache-Control", "no-store"))
        .body(body))
}
