DROP INDEX audit_events_kind_at;
ALTER TABLE audit_events DROP COLUMN actor;
DROP TABLE admin_sessions;
DROP TABLE admin_accounts;
