CREATE INDEX federated_identities_user ON federated_identities (user_id);
DROP INDEX federated_identities_user_connection;
