//! The Prometheus registry (OpenMetrics text), owned by the app state rather than a global so
//! tests and several brokers in one process each count their own. Label values are bounded:
//! connection ids and reasons come from the config and fixed code lists, never from requests.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    connection: String,
    result: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant_type: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    connection: String,
    /// First 16 hex digits of the certificate's SHA-256 fingerprint.
    cert: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// A configured IdP signing certificate and when it stops being valid.
#[derive(Debug, Clone)]
pub struct CertExpiry {
    pub connection: String,
    pub fingerprint: String,
    pub not_after: i64,
}

/// Database pool usage at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolUsage {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// How a brokered login ended, for `ssobroker_logins_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    /// Signed in (back to the app with a code, or to the portal).
    Succeeded,
    /// Signed in at the broker, but the client's `allowed_roles` keep the user out.
    AccessDenied,
    /// Refused (SAML checks or policy); `reason` is the audit reason code.
    Refused,
    /// The broker failed (database): not the user's fault.
    Error,
}

impl LoginResult {
    fn label(self) -> &'static str {
        match self {
            LoginResult::Succeeded => "succeeded",
            LoginResult::AccessDenied => "access_denied",
            LoginResult::Refused => "refused",
            LoginResult::Error => "error",
        }
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    logins: Family<LoginLabels, Counter>,
    jit_created: Family<ConnectionLabels, Counter>,
    token_grants: Family<GrantLabels, Counter>,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    cert_expiry: Family<CertLabels, Gauge>,
    pool: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    rate_limited: Family<LimitLabels, Counter>,
    /// Replaced when a `metadata_url` refresh changes what is trusted.
    certs: std::sync::RwLock<Vec<CertExpiry>>,
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~10 s: logins wait on xmlsec and the database, token grants on argon2.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

impl Metrics {
    pub fn new(certs: Vec<CertExpiry>) -> Self {
        let mut registry = Registry::default();
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "ssobroker_logins",
            "Brokered logins finished at the ACS, by connection, result and refusal reason",
            logins.clone(),
        );
        let jit_created = Family::<ConnectionLabels, Counter>::default();
        registry.register(
            "ssobroker_jit_users_created",
            "Users created just in time at their first login",
            jit_created.clone(),
        );
        let token_grants = Family::<GrantLabels, Counter>::default();
        registry.register(
            "ssobroker_token_grants",
            "Token endpoint requests by grant type and result (issued or the OAuth error code)",
            token_grants.clone(),
        );
        let http =
            Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "ssobroker_http_request_duration_seconds",
            "Time to the response head, by method, route pattern and status",
            http.clone(),
        );
        let cert_expiry = Family::<CertLabels, Gauge>::default();
        registry.register(
            "ssobroker_idp_certificate_expiry_seconds",
            "Seconds until an IdP signing certificate of a connection expires (negative: expired)",
            cert_expiry.clone(),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "ssobroker_db_pool_connections",
            "Database pool connections by state",
            pool.clone(),
        );
        let pool_max = Gauge::default();
        registry.register("ssobroker_db_pool_max_connections", "Database pool size limit", pool_max.clone());
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "ssobroker_rate_limited",
            "Requests refused with 429 by a per-address rate limit",
            rate_limited.clone(),
        );
        Metrics {
            registry,
            logins,
            jit_created,
            token_grants,
            http,
            cert_expiry,
            pool,
            pool_max,
            rate_limited,
            certs: std::sync::RwLock::new(certs),
        }
    }

    /// The signing certificates of every connection, read from the validated config.
    pub fn certificates(cfg: &crate::config::Config) -> Vec<CertExpiry> {
        let mut out = Vec::new();
        for c in &cfg.connections {
            for der in &c.sp.idp.signing_certs {
                match cert_expiry(der) {
                    Some((fingerprint, not_after)) => {
                        out.push(CertExpiry { connection: c.id.clone(), fingerprint, not_after })
                    }
                    None => {
                        tracing::warn!(connection = %c.id, "IdP signing certificate without a readable expiry")
                    }
                }
            }
        }
        out
    }

    pub fn login(&self, connection: &str, result: LoginResult, reason: &'static str) {
        let labels = LoginLabels { connection: connection.to_string(), result: result.label(), reason };
        self.logins.get_or_create(&labels).inc();
    }

    pub fn jit_created(&self, connection: &str) {
        self.jit_created.get_or_create(&ConnectionLabels { connection: connection.to_string() }).inc();
    }

    /// `grant_type`: "authorization_code", "refresh_token" or "unsupported"; `result`: "issued"
    /// or the OAuth error code.
    pub fn token_grant(&self, grant_type: &'static str, result: &'static str) {
        self.token_grants.get_or_create(&GrantLabels { grant_type, result }).inc();
    }

    /// `route`: the matched pattern (`/saml/{connection}/acs`), never the raw path.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = HttpLabels { method: method_label(method), route: route.to_string(), status };
        self.http.get_or_create(&labels).observe(seconds);
    }

    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&LimitLabels { limit }).inc();
    }

    /// The certificates now trusted; series of certificates no longer trusted go.
    pub fn set_certificates(&self, certs: Vec<CertExpiry>) {
        let mut current = self.certs.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = certs;
        self.cert_expiry.clear();
    }

    /// The exposition: gauges are brought up to date at `now` first.
    pub fn encode(&self, now: i64, pool: PoolUsage) -> Result<String, std::fmt::Error> {
        let certs = self.certs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        for c in certs.iter() {
            let labels = CertLabels { connection: c.connection.clone(), cert: c.fingerprint.clone() };
            self.cert_expiry.get_or_create(&labels).set(c.not_after - now);
        }
        self.pool.get_or_create(&PoolLabels { state: "in_use" }).set(i64::from(pool.in_use));
        self.pool.get_or_create(&PoolLabels { state: "idle" }).set(i64::from(pool.idle));
        self.pool_max.set(i64::from(pool.max));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Methods outside the usual set share one label, so odd requests cannot grow the series.
fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

/// (short SHA-256 fingerprint, notAfter as a Unix time) of a DER certificate.
fn cert_expiry(der: &[u8]) -> Option<(String, i64)> {
    use sha2::Digest;
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    let fingerprint = hex::encode(sha2::Sha256::digest(der))[..16].to_string();
    Some((fingerprint, i64::from(diff.days) * 86400 + i64::from(diff.secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_and_gauges() {
        let m = Metrics::new(vec![CertExpiry {
            connection: "okta".into(),
            fingerprint: "00112233aabbccdd".into(),
            not_after: 1_000_000,
        }]);
        m.login("okta", LoginResult::Refused, "signature_invalid");
        m.login("okta", LoginResult::Succeeded, "");
        m.jit_created("okta");
        m.token_grant("authorization_code", "issued");
        m.http_request("BREW", "/token", 200, 0.01);
        let text = m.encode(999_000, PoolUsage { in_use: 1, idle: 2, max: 8 }).unwrap();
        assert!(
            text.contains(
                r#"ssobroker_logins_total{connection="okta",result="refused",reason="signature_invalid"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"ssobroker_jit_users_created_total{connection="okta"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"ssobroker_idp_certificate_expiry_seconds{connection="okta",cert="00112233aabbccdd"} 1000"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"ssobroker_db_pool_connections{state="idle"} 2"#), "{text}");
        assert!(text.contains(r#"method="other",route="/token",status="200""#), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn reads_certificate_expiry() {
        let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::from_unix(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::from_unix(2_000_000_000).unwrap()).unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
        let der = b.build().to_der().unwrap();
        let (fp, not_after) = cert_expiry(&der).unwrap();
        assert_eq!(not_after, 2_000_000_000);
        assert_eq!(fp.len(), 16);
    }
}
