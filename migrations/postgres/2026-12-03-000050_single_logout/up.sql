-- Single logout: a session remembers whom the IdP asserted (NameID, its Format, SessionIndex)
-- so our LogoutRequest names the IdP session and an IdP's LogoutRequest finds ours.
ALTER TABLE sessions ADD COLUMN saml_name_id TEXT;
ALTER TABLE sessions ADD COLUMN saml_name_id_format TEXT;
ALTER TABLE sessions ADD COLUMN saml_session_index TEXT;
-- The NameID's qualifiers, sent back as asserted: ADFS and Shibboleth match them.
ALTER TABLE sessions ADD COLUMN saml_name_qualifier TEXT;
ALTER TABLE sessions ADD COLUMN saml_sp_name_qualifier TEXT;
CREATE INDEX sessions_saml_subject ON sessions (connection_id, saml_name_id);
-- Our LogoutRequests awaiting the IdP's LogoutResponse (one per sign-out), shared by every
-- instance: the response may reach another one.
CREATE TABLE saml_logouts (
    request_id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_to TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX saml_logouts_expires ON saml_logouts (expires_at);
-- A console session signed in through SSO lives only as long as the broker session it came
-- from: an IdP sign-out (or any other end of that session) ends the admin's console access too.
ALTER TABLE admin_sessions ADD COLUMN broker_session_id TEXT;
