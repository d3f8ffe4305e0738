-- A user has at most one identity per connection: email linking checks that before it links,
-- and this makes two simultaneous first logins of different subjects with one address unable
-- to both link (the loser's insert fails, its login is retried and refused as a conflict).
-- The new index leads with user_id, so it also serves the lookups of the one it replaces.
CREATE UNIQUE INDEX federated_identities_user_connection ON federated_identities (user_id, connection_id);
DROP INDEX federated_identities_user;
