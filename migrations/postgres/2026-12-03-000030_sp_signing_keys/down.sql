DROP TABLE sp_signing_keys;
