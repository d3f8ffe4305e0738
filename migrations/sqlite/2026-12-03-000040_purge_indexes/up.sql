-- Housekeeping deletes sessions and refresh tokens by expiry; these two live for hours to days,
-- so at steady state most rows are live and a purge should not read them all.
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
-- A reused code or a revocation revokes the grant's refresh tokens, and the purge keeps a grant
-- while one of its refresh tokens lives: both look refresh tokens up by grant.
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
