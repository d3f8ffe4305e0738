ALTER TABLE admin_sessions DROP COLUMN broker_session_id;
DROP INDEX saml_logouts_expires;
DROP TABLE saml_logouts;
DROP INDEX sessions_saml_subject;
ALTER TABLE sessions DROP COLUMN saml_sp_name_qualifier;
ALTER TABLE sessions DROP COLUMN saml_name_qualifier;
ALTER TABLE sessions DROP COLUMN saml_session_index;
ALTER TABLE sessions DROP COLUMN saml_name_id_format;
ALTER TABLE sessions DROP COLUMN saml_name_id;
