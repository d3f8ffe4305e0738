-- The last good copy of each connection's fetched IdP metadata (metadata_url): used at start
-- and while the URL is unreachable, and shared by every instance.
CREATE TABLE idp_metadata (
    connection_id TEXT PRIMARY KEY NOT NULL,
    source_url TEXT NOT NULL,
    xml TEXT NOT NULL,
    fetched_at BIGINT NOT NULL
);
