-- Local administrator accounts for the admin console (`ssobroker admin create`). SSO admins
-- (users holding `admin_role`) have no row here: their IdP authenticates them.
CREATE TABLE admin_accounts (
    name TEXT PRIMARY KEY NOT NULL,
    -- argon2id PHC string; the password itself is never stored.
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login_at BIGINT
);

-- Admin console sessions. The cookie holds a random token; this table holds its SHA-256, the
-- CSRF token forms must echo, and the times behind the idle and absolute timeouts.
CREATE TABLE admin_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    -- Who is signed in, as written to audit rows: `local:<name>` or `sso:<user id>`.
    actor TEXT NOT NULL,
    -- SSO admins: the user, re-checked (enabled, still holding admin_role) on every request.
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);

-- Who did it: `cli`, `local:<name>` or `sso:<user id>` for administrative changes; NULL for
-- events the broker records on its own (logins, token grants). Indexed for sign-in throttling.
ALTER TABLE audit_events ADD COLUMN actor TEXT;
CREATE INDEX audit_events_kind_at ON audit_events (kind, at);
