//! Stored copies of fetched IdP metadata, one per connection (diesel only).

use super::schema::idp_metadata;
use super::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = idp_metadata)]
pub struct StoredMetadata {
    pub connection_id: String,
    pub source_url: String,
    pub xml: String,
    pub fetched_at: i64,
}

pub fn get(conn: &mut DbConnection, connection_id: &str) -> QueryResult<Option<StoredMetadata>> {
    idp_metadata::table.find(connection_id).select(StoredMetadata::as_select()).get_result(conn).optional()
}

/// Replaces the stored copy (insert or update). Two instances starting together on one
/// PostgreSQL can both find no row and both insert: the loser's insert (in a savepoint, so an
/// outer transaction survives it) becomes an update of the winner's row.
pub fn put(conn: &mut DbConnection, row: &StoredMetadata) -> QueryResult<()> {
    let update = |c: &mut DbConnection| {
        diesel::update(idp_metadata::table.find(&row.connection_id)).set(row).execute(c)
    };
    if update(conn)? > 0 {
        return Ok(());
    }
    match super::transaction(conn, |c| diesel::insert_into(idp_metadata::table).values(row).execute(c)) {
        Err(e) if super::is_unique_violation(&e) => update(conn).map(drop),
        other => other.map(drop),
    }
}
