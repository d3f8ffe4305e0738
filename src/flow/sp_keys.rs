//! SP signing keys for connections that sign AuthnRequests without a configured key pair: the
//! first instance to start generates one and stores it; every instance signs with the stored one,
//! so the certificate in SP metadata is the same whichever instance an IdP fetches it from.

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::saml::SpSigningKey;
use crate::store::{self, DbConnection};

#[derive(Debug, thiserror::Error)]
pub enum SpKeyError {
    #[error("database: {0}")]
    Store(#[from] diesel::result::Error),
    #[error("connection {connection}: cannot generate an SP signing key: {detail}")]
    Generate { connection: String, detail: String },
    #[error("connection {connection}: the stored SP signing key is unusable: {detail}")]
    Stored { connection: String, detail: String },
}

/// Gives every connection that signs AuthnRequests or logout messages a key: its configured
/// pair, or the stored (first generated) one.
pub fn ensure_signing_keys(
    conn: &mut DbConnection,
    cfg: &mut Config,
    now: DateTime<Utc>,
) -> Result<(), SpKeyError> {
    for c in cfg.connections.iter_mut().filter(|c| c.needs_signing_key() && c.sp.signing_key.is_none()) {
        let row = match store::sp_keys::get(conn, &c.id)? {
            Some(row) => row,
            None => {
                let generated = SpSigningKey::generate(&c.sp.entity_id)
                    .map_err(|e| SpKeyError::Generate { connection: c.id.clone(), detail: e.to_string() })?;
                store::sp_keys::insert_if_absent(
                    conn,
                    &store::sp_keys::SpKeyRow {
                        connection_id: c.id.clone(),
                        key_pem: generated.key_pem,
                        cert_pem: generated.cert_pem,
                        created_at: now.timestamp(),
                    },
                )?;
                tracing::info!(connection = %c.id, "generated the SP signing key for AuthnRequests and logout messages");
                // Another instance may have stored its own first: read back the one that won.
                store::sp_keys::get(conn, &c.id)?.ok_or(diesel::result::Error::NotFound)?
            }
        };
        let key = SpSigningKey::from_pem(row.key_pem.as_bytes(), row.cert_pem.as_bytes())
            .map_err(|detail| SpKeyError::Stored { connection: c.id.clone(), detail })?;
        c.sp.signing_key = Some(key);
    }
    Ok(())
}
