//! Persistence with diesel only: one schema over SQLite and PostgreSQL, an r2d2 pool, embedded
//! migrations, and one file per table family. Queries here; decisions elsewhere.
//!
//! Lookups by a unique key use `.get_result`, not `.first`: `.first` adds `LIMIT ?` with a bound
//! value, and diesel does not cache such statements, so SQLite re-prepared them on every call.

pub mod admin;
pub mod admin_accounts;
pub mod audit;
pub mod clients;
pub mod grants;
pub mod idp_metadata;
pub mod logins;
pub mod logouts;
pub mod refresh;
pub mod schema;
pub mod sp_keys;
pub mod users;

use crate::config::DatabaseUrl;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// How long a request waits for a pooled connection before it fails.
pub const POOL_TIMEOUT_SECONDS: u64 = 5;

pub type DbPool = Pool<ConnectionManager<DbConnection>>;
pub type PooledDb = PooledConnection<ConnectionManager<DbConnection>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database connection: {0}")]
    Connect(String),
    #[error("migrations: {0}")]
    Migrate(String),
    #[error("pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("query: {0}")]
    Query(#[from] diesel::result::Error),
}

/// How long a SQLite statement waits for another writer's lock before failing.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;

/// SQLite settings every pooled connection needs: foreign keys are per connection, and the busy
/// timeout lets concurrent writers queue instead of failing.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            // WAL is a property of the file, set once in `connect`; switching it here from
            // several fresh connections at once made them fight over the lock.
            c.batch_execute(&format!(
                "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; \
                     PRAGMA synchronous = NORMAL;"
            ))
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Opens an existing database without creating or migrating anything (dry runs such as
/// `ssobroker explain`).
pub fn open_existing(url: &DatabaseUrl) -> Result<DbPool, StoreError> {
    let conn_str = match url {
        DatabaseUrl::Sqlite(path) => {
            if !path.is_file() {
                return Err(StoreError::Connect(format!("{}: no such database", path.display())));
            }
            format!("sqlite://{}", path.display())
        }
        DatabaseUrl::Postgres(u) => {
            diesel::PgConnection::establish(u).map_err(|e| StoreError::Connect(e.to_string()))?;
            u.clone()
        }
    };
    Ok(Pool::builder()
        .max_size(1)
        .connection_customizer(Box::new(SqlitePragmas))
        .build(ConnectionManager::<DbConnection>::new(conn_str))?)
}

/// Opens the pool for `url` (creating the SQLite file and its folder) and applies migrations.
pub fn connect(url: &DatabaseUrl, max_size: u32) -> Result<DbPool, StoreError> {
    let conn_str = match url {
        DatabaseUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Connect(format!("{}: {e}", dir.display())))?;
            }
            // Establish once directly: the derive's `establish` hides the real error.
            let mut first = diesel::SqliteConnection::establish(&path.to_string_lossy())
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            first
                .batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            path.to_string_lossy().to_string()
        }
        DatabaseUrl::Postgres(u) => {
            diesel::PgConnection::establish(u).map_err(|e| StoreError::Connect(e.to_string()))?;
            u.clone()
        }
    };
    let manager = ConnectionManager::<DbConnection>::new(match url {
        DatabaseUrl::Sqlite(_) => format!("sqlite://{conn_str}"),
        DatabaseUrl::Postgres(_) => conn_str,
    });
    let pool = Pool::builder()
        .max_size(max_size)
        // r2d2's default is 30 s: while the database is down every request would hang that long.
        // 5 s is far above any wait for a free connection under load, and an outage turns into
        // error pages promptly (the pool reconnects on its own when the database is back).
        .connection_timeout(std::time::Duration::from_secs(POOL_TIMEOUT_SECONDS))
        // The checkout test (`SELECT 1`) is what notices PostgreSQL connections broken by a
        // server restart; a SQLite file connection does not break, so there it is pure cost.
        .test_on_check_out(matches!(url, DatabaseUrl::Postgres(_)))
        .connection_customizer(Box::new(SqlitePragmas))
        .build(manager)?;
    let mut conn = pool.get()?;
    migrate(&mut conn)?;
    Ok(pool)
}

/// A pooled connection taken on first use and given back on `release`. One blocking closure per
/// request can then do its CPU work (xmlsec, argon2) without holding a connection and still run
/// its queries afterwards, instead of a second hand-off between threads for the database part.
pub struct Checkout<'p> {
    pool: &'p DbPool,
    conn: Option<PooledDb>,
}

impl<'p> Checkout<'p> {
    pub fn new(pool: &'p DbPool) -> Self {
        Checkout { pool, conn: None }
    }

    /// The connection, checked out from the pool if this closure holds none yet.
    pub fn conn(&mut self) -> Result<&mut DbConnection, diesel::r2d2::PoolError> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => self.pool.get()?,
        };
        Ok(&mut **self.conn.insert(conn))
    }

    /// Gives the connection back before CPU work that should not hold one.
    pub fn release(&mut self) {
        self.conn = None;
    }
}

pub fn migrate(conn: &mut DbConnection) -> Result<(), StoreError> {
    let result = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| StoreError::Migrate(e.to_string()))
}

/// Runs `f` in one transaction. On SQLite it starts as a writer (`BEGIN IMMEDIATE`, waiting
/// out the busy timeout for the write lock): a plain `BEGIN` reads first, and when another
/// writer commits before this one's first write, SQLite fails the upgrade at once with "database
/// is locked" (WAL snapshots cannot be upgraded), without waiting — a double-submitted form was
/// a 500. Nested calls are savepoints, as usual.
pub fn transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager as Manager, TransactionManager};
    let DbConnection::Sqlite(c) = conn else { return conn.transaction(f) };
    if Manager::transaction_manager_status_mut(c).transaction_depth()?.is_some() {
        return conn.transaction(f);
    }
    Manager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
    let result = f(conn);
    let DbConnection::Sqlite(c) = conn else { return result };
    match result {
        // A failed top-level COMMIT is rolled back by the manager itself.
        Ok(value) => Manager::commit_transaction(c).map(|()| value).map_err(E::from),
        Err(e) => {
            Manager::rollback_transaction(c)?;
            Err(e)
        }
    }
}

/// Whether a failed insert hit a unique or primary-key constraint (replays, races).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

/// The readiness probe: can this connection still do a login's work? PostgreSQL: a round trip.
/// SQLite: take the write lock and let it go (an open file still answers reads; a writer stuck
/// holding the lock stops every login), waiting at most `wait_ms` instead of the usual busy
/// timeout.
pub fn ready_probe(conn: &mut DbConnection, wait_ms: u64) -> QueryResult<()> {
    match conn {
        DbConnection::Postgres(c) => c.batch_execute("SELECT 1"),
        DbConnection::Sqlite(c) => {
            c.batch_execute(&format!("PRAGMA busy_timeout = {wait_ms}"))?;
            let probed = c.batch_execute("BEGIN IMMEDIATE; ROLLBACK;");
            if probed.is_err() {
                // A failed BEGIN leaves no transaction; this only guards a failed ROLLBACK.
                let _ = c.batch_execute("ROLLBACK");
            }
            let restored = c.batch_execute(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"));
            probed.and(restored)
        }
    }
}

/// Row counts of every table, for tests and operators checking that a refused request wrote
/// nothing but its audit row.
pub fn table_counts(conn: &mut DbConnection) -> QueryResult<std::collections::BTreeMap<&'static str, i64>> {
    use schema::*;
    let mut m = std::collections::BTreeMap::new();
    m.insert("users", users::table.count().get_result(conn)?);
    m.insert("federated_identities", federated_identities::table.count().get_result(conn)?);
    m.insert("user_roles", user_roles::table.count().get_result(conn)?);
    m.insert("login_transactions", login_transactions::table.count().get_result(conn)?);
    m.insert("saml_replay", saml_replay::table.count().get_result(conn)?);
    m.insert("saml_logouts", saml_logouts::table.count().get_result(conn)?);
    m.insert("sessions", sessions::table.count().get_result(conn)?);
    m.insert("auth_grants", auth_grants::table.count().get_result(conn)?);
    m.insert("signing_keys", signing_keys::table.count().get_result(conn)?);
    m.insert("refresh_tokens", refresh_tokens::table.count().get_result(conn)?);
    m.insert("clients", clients::table.count().get_result(conn)?);
    m.insert("audit_events", audit_events::table.count().get_result(conn)?);
    m.insert("admin_accounts", admin_accounts::table.count().get_result(conn)?);
    m.insert("admin_sessions", admin_sessions::table.count().get_result(conn)?);
    Ok(m)
}

/// Deletes what can no longer be used: expired login transactions, replay entries past their
/// assertion's validity, expired sessions, and grants whose code expired unused or whose
/// tokens can no longer be valid (`grant_horizon`: now minus the longest token lifetime).
pub fn purge_expired(conn: &mut DbConnection, now: i64, grant_horizon: i64) -> QueryResult<usize> {
    use schema::*;
    let mut n = diesel::delete(login_transactions::table.filter(login_transactions::expires_at.le(now)))
        .execute(conn)?;
    n += diesel::delete(saml_replay::table.filter(saml_replay::expires_at.le(now))).execute(conn)?;
    n += diesel::delete(saml_logouts::table.filter(saml_logouts::expires_at.le(now))).execute(conn)?;
    n += diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)?;
    n += diesel::delete(admin_sessions::table.filter(admin_sessions::expires_at.le(now))).execute(conn)?;
    n += diesel::delete(refresh_tokens::table.filter(refresh_tokens::expires_at.le(now))).execute(conn)?;
    // A grant stays while a refresh family started from it can still mint tokens.
    let live_refresh = refresh_tokens::table
        .filter(refresh_tokens::grant_id.eq(auth_grants::id))
        .filter(refresh_tokens::expires_at.gt(now));
    n += diesel::delete(
        auth_grants::table
            .filter(
                auth_grants::created_at
                    .le(grant_horizon)
                    .or(auth_grants::code_used.eq(false).and(auth_grants::code_expires_at.le(now))),
            )
            .filter(diesel::dsl::not(diesel::dsl::exists(live_refresh))),
    )
    .execute(conn)?;
    Ok(n)
}
