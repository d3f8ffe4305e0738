//! Operations without HTTP: the Prometheus registry, per-address rate limits, and which address a
//! request comes from behind trusted proxies. The web room mounts these on routes and endpoints;
//! nothing here knows actix or the database.

mod client_ip;
pub mod metrics;
pub mod ratelimit;

pub use client_ip::TrustedProxies;
pub use metrics::Metrics;
pub use ratelimit::{Limiter, RateLimits, Throttled};

/// An incoming `X-Request-Id` worth keeping: short, and only characters that are safe in a log
/// line and a header (anything else is replaced by a fresh id, so a client cannot forge log
/// structure).
pub fn sane_request_id(incoming: &str) -> Option<&str> {
    let ok = !incoming.is_empty()
        && incoming.len() <= 64
        && incoming.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(incoming)
}

/// A fresh request id (32 hex digits).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(sane_request_id("abc-123_x.y:z"), Some("abc-123_x.y:z"));
        assert_eq!(sane_request_id(""), None);
        assert_eq!(sane_request_id("a b"), None);
        assert_eq!(sane_request_id("x\"}\n{"), None);
        assert_eq!(sane_request_id(&"a".repeat(65)), None);
        assert_eq!(new_request_id().len(), 32);
    }
}
