//! IdP trust. Connections whose metadata comes from a URL: fetched at start and on a schedule,
//! the last good copy kept in the database (used while the URL is down, and by every instance).
//! Every connection: each change of trusted certificates audited (a metadata file is recorded at
//! each start), expiring certificates warned about.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::{audit_row, RequestMeta};
use crate::config::{Config, Connection};
use crate::saml::IdpMetadata;
use crate::store::{self, DbConnection};

/// Metadata documents are a few KB; anything much larger is not metadata.
const MAX_METADATA_BYTES: u64 = 1024 * 1024;
const FETCH_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// Who stored a fetched copy when it was the command line (an admin).
const CLI: &str = "cli";
/// Certificates expiring within this window are warned about.
pub const EXPIRY_WARNING: Duration = Duration::days(30);

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("database: {0}")]
    Store(#[from] diesel::result::Error),
    #[error(
        "connection {connection}: metadata_url could not be fetched ({detail}) and no stored copy exists"
    )]
    NoMetadata { connection: String, detail: String },
    #[error("connection {connection}: {detail}")]
    Fetch { connection: String, detail: String },
}

/// The refreshed metadata of URL connections, read by every login (a swap, never a long lock).
#[derive(Debug, Default)]
pub struct LiveTrust(RwLock<HashMap<String, Arc<IdpMetadata>>>);

impl LiveTrust {
    pub fn get(&self, connection_id: &str) -> Option<Arc<IdpMetadata>> {
        let map = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(connection_id).cloned()
    }

    pub fn set(&self, connection_id: &str, metadata: IdpMetadata) {
        let mut map = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert(connection_id.to_string(), Arc::new(metadata));
    }
}

/// GET `url` with a timeout and a size cap; the body as text. Blocking: call it off the async
/// workers. A separate thread keeps reqwest's own runtime out of any caller's runtime.
pub fn fetch(url: &str) -> Result<String, String> {
    let url = url.to_string();
    std::thread::scope(|s| {
        s.spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(FETCH_TIMEOUT)
                // A redirect could leave https or the IdP's host: trust only the configured URL.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())?;
            let resp = client.get(&url).send().map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status()));
            }
            if resp.content_length().is_some_and(|n| n > MAX_METADATA_BYTES) {
                return Err("metadata larger than 1 MiB".into());
            }
            // The client timeout bounds each read, not the whole body: a server trickling a byte
            // at a time must not hold the start (or every refresh) for days.
            use std::io::Read;
            let deadline = std::time::Instant::now() + FETCH_TIMEOUT;
            let mut resp = resp;
            let (mut body, mut chunk) = (Vec::new(), [0u8; 16 * 1024]);
            loop {
                if std::time::Instant::now() > deadline {
                    return Err(format!("metadata fetch took longer than {} s", FETCH_TIMEOUT.as_secs()));
                }
                let n = resp.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
                if body.len() as u64 > MAX_METADATA_BYTES {
                    return Err("metadata larger than 1 MiB".into());
                }
            }
            String::from_utf8(body).map_err(|_| "metadata is not UTF-8".to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("metadata fetch thread panicked".into()))
    })
}

fn parse(xml: &str) -> Result<IdpMetadata, String> {
    crate::saml::parse_idp_metadata(xml).map_err(|e| e.to_string())
}

/// Fetches and checks a connection's metadata.
fn fetch_checked(url: &str) -> Result<(String, IdpMetadata), String> {
    let xml = fetch(url)?;
    let metadata = parse(&xml)?;
    Ok((xml, metadata))
}

/// SHA-256 of a certificate's DER, hex (what admins compare with the IdP's console).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Whether two metadata documents trust the same things.
fn same_trust(a: &IdpMetadata, b: &IdpMetadata) -> bool {
    a.entity_id == b.entity_id
        && a.sso_url == b.sso_url
        && a.sso_binding == b.sso_binding
        && a.signing_certs == b.signing_certs
        && a.want_authn_requests_signed == b.want_authn_requests_signed
        && a.slo == b.slo
}

/// Stores a freshly fetched copy; a change of what is trusted is audited (`trust.changed`, with
/// certificate fingerprints added and removed). Returns whether the trust changed.
fn store_fetched(
    conn: &mut DbConnection,
    connection: &Connection,
    url: &str,
    xml: String,
    metadata: &IdpMetadata,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<bool, TrustError> {
    let before = store::idp_metadata::get(conn, &connection.id)?.and_then(|row| parse(&row.xml).ok());
    let changed = before.as_ref().is_none_or(|b| !same_trust(b, metadata));
    store::transaction(conn, |conn| {
        store::idp_metadata::put(
            conn,
            &store::idp_metadata::StoredMetadata {
                connection_id: connection.id.clone(),
                source_url: url.to_string(),
                xml,
                fetched_at: now.timestamp(),
            },
        )?;
        if changed {
            let old: Vec<String> = before
                .as_ref()
                .map(|b| b.signing_certs.iter().map(|c| fingerprint(c)).collect())
                .unwrap_or_default();
            let new: Vec<String> = metadata.signing_certs.iter().map(|c| fingerprint(c)).collect();
            let detail = serde_json::json!({
                "source": url,
                "by": actor,
                "entity_id": metadata.entity_id,
                "sso_url": metadata.sso_url,
                "certs_added": new.iter().filter(|f| !old.contains(f)).collect::<Vec<_>>(),
                "certs_removed": old.iter().filter(|f| !new.contains(f)).collect::<Vec<_>>(),
                "first_copy": before.is_none(),
            });
            let row = audit_row(
                now,
                "trust.changed",
                &RequestMeta::default(),
                None,
                Some(&connection.id),
                None,
                None,
                detail,
            );
            // `ssobroker connection refresh` is an admin's change, named in the actor column like
            // the CLI's other changes; a start or a scheduled refresh is the broker's own.
            let row = store::audit::AuditEvent { actor: (actor == CLI).then(|| actor.to_string()), ..row };
            store::audit::insert(conn, &row)?;
        }
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(changed)
}

/// Fills in the metadata of every URL connection before the server starts: fetched when the
/// URL answers, else the stored copy; a connection with neither stops the start.
pub fn load_at_start(
    conn: &mut DbConnection,
    cfg: &mut Config,
    now: DateTime<Utc>,
) -> Result<(), TrustError> {
    for c in cfg.connections.iter_mut() {
        if let Some(path) = &c.metadata_file {
            record_file(conn, c, path, now)?;
        }
        let Some(source) = c.metadata_url.clone() else { continue };
        let metadata = match fetch_checked(&source.url) {
            Ok((xml, metadata)) => {
                store_fetched(conn, c, &source.url, xml, &metadata, now, "start")?;
                metadata
            }
            Err(detail) => {
                let stored = store::idp_metadata::get(conn, &c.id)?.and_then(|row| parse(&row.xml).ok());
                let Some(metadata) = stored else {
                    return Err(TrustError::NoMetadata { connection: c.id.clone(), detail });
                };
                tracing::warn!(connection = %c.id, error = %detail,
                    "metadata_url unreachable; using the stored copy");
                metadata
            }
        };
        c.sp.idp = metadata;
        if c.sign_authn_requests.is_none() {
            c.sp.sign_authn_requests = c.sp.idp.want_authn_requests_signed;
        }
    }
    Ok(())
}

/// A metadata file is trusted as read at start; keeping a copy makes an edited file (a new or
/// removed certificate) an audited trust change like a fetched one.
fn record_file(
    conn: &mut DbConnection,
    c: &Connection,
    path: &std::path::Path,
    now: DateTime<Utc>,
) -> Result<(), TrustError> {
    let Ok(xml) = std::fs::read_to_string(path) else { return Ok(()) };
    // Edited again since the configuration was read: the next start records it.
    if parse(&xml).ok().as_ref().is_none_or(|m| !same_trust(m, &c.sp.idp)) {
        return Ok(());
    }
    let source = format!("file:{}", path.display());
    store_fetched(conn, c, &source, xml, &c.sp.idp.clone(), now, "start")?;
    Ok(())
}

/// One refresh of a URL connection: fetch (storing a changed copy), else fall back to the stored
/// copy (another instance or `connection refresh` may have updated it). Returns the metadata
/// when it differs from `current`.
pub fn refresh(
    conn: &mut DbConnection,
    connection: &Connection,
    current: &IdpMetadata,
    now: DateTime<Utc>,
) -> Result<Option<IdpMetadata>, TrustError> {
    let Some(source) = &connection.metadata_url else { return Ok(None) };
    let latest = match fetch_checked(&source.url) {
        Ok((xml, metadata)) => {
            store_fetched(conn, connection, &source.url, xml, &metadata, now, "refresh")?;
            Some(metadata)
        }
        Err(detail) => {
            tracing::warn!(connection = %connection.id, error = %detail,
                "metadata_url refresh failed; keeping the last good copy");
            store::idp_metadata::get(conn, &connection.id)?.and_then(|row| parse(&row.xml).ok())
        }
    };
    Ok(latest.filter(|m| !same_trust(m, current)))
}

/// `ssobroker connection refresh`: fetch now, store, report. Fails when the URL does not answer
/// with valid metadata (the stored copy stays as it was).
pub fn refresh_now(
    conn: &mut DbConnection,
    connection: &Connection,
    now: DateTime<Utc>,
) -> Result<(IdpMetadata, bool), TrustError> {
    let Some(source) = &connection.metadata_url else {
        return Err(TrustError::Fetch {
            connection: connection.id.clone(),
            detail: "has no metadata_url (metadata_file is read at every start)".into(),
        });
    };
    let (xml, metadata) = fetch_checked(&source.url)
        .map_err(|detail| TrustError::Fetch { connection: connection.id.clone(), detail })?;
    let changed = store_fetched(conn, connection, &source.url, xml, &metadata, now, CLI)?;
    Ok((metadata, changed))
}

/// A certificate the broker relies on that expires soon (or has expired).
#[derive(Debug, Clone)]
pub struct Expiring {
    pub connection: String,
    pub kind: &'static str,
    pub not_after: DateTime<Utc>,
}

/// IdP signing and SP certificates of every connection expiring before `now + within`.
pub fn expiring(cfg: &Config, now: DateTime<Utc>, within: Duration) -> Vec<Expiring> {
    let mut out = Vec::new();
    for c in &cfg.connections {
        let certs =
            c.sp.idp
                .signing_certs
                .iter()
                .map(|d| ("IdP signing", d.as_slice()))
                .chain(c.sp.encryption_cert.iter().map(|d| ("SP encryption", d.as_slice())))
                .chain(c.sp.signing_key.iter().map(|k| ("SP signing", k.cert_der())));
        for (kind, der) in certs {
            let Some(not_after) = certificate_not_after(der) else { continue };
            if not_after < now + within {
                out.push(Expiring { connection: c.id.clone(), kind, not_after });
            }
        }
    }
    out
}

/// A certificate's notAfter.
pub fn certificate_not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    DateTime::from_timestamp(i64::from(diff.days) * 86_400 + i64::from(diff.secs), 0)
}

/// Logs a warning per certificate expiring within 30 days.
pub fn warn_expiring(cfg: &Config, now: DateTime<Utc>) {
    for e in expiring(cfg, now, EXPIRY_WARNING) {
        tracing::warn!(connection = %e.connection, certificate = e.kind, not_after = %e.not_after,
            "certificate expires within 30 days (or has expired)");
    }
}
