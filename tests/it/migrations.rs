//! The two migration trees stay twins, and up → down → up is clean on both backends.

use crate::support::*;
use diesel_migrations::MigrationHarness;
use ssobroker::store::{self, DbConnection};

#[test]
fn migration_trees_have_identical_names() -> TestResult {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let names = |dir: &str| -> Result<Vec<String>, std::io::Error> {
        let mut v: Vec<String> = std::fs::read_dir(root.join(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        Ok(v)
    };
    let (sqlite, postgres) = (names("sqlite")?, names("postgres")?);
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
    Ok(())
}

fn up_down_up(conn: &mut DbConnection) -> TestResult {
    store::migrate(conn)?;
    let before = store::table_counts(conn)?;
    match conn {
        DbConnection::Sqlite(c) => {
            c.revert_all_migrations(store::SQLITE_MIGRATIONS).map_err(|e| e.to_string())?;
        }
        DbConnection::Postgres(c) => {
            c.revert_all_migrations(store::POSTGRES_MIGRATIONS).map_err(|e| e.to_string())?;
        }
    }
    assert!(store::table_counts(conn).is_err(), "down removed the tables");
    store::migrate(conn)?;
    let after = store::table_counts(conn)?;
    assert!(after.keys().eq(before.keys()), "the same tables are back");
    assert!(after.values().all(|n| *n == 0), "and empty");
    Ok(())
}

async fn roundtrip(b: Backend) -> TestResult {
    let app = app(b).start().await?;
    let mut conn = app.pool.get()?;
    up_down_up(&mut conn)
}
crate::both_backends!(migrations_up_down_up, roundtrip);
