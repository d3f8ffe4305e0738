-- The SP signing key a connection generated for itself (signed AuthnRequests), shared by
-- every instance on the database.
CREATE TABLE sp_signing_keys (
    connection_id TEXT PRIMARY KEY NOT NULL,
    key_pem TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
