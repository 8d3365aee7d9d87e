//! Connecting to PostgreSQL or SQLite, with SQLite's durability settings set
//! explicitly and checked at start-up.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};

use crate::{Result, StoreError};

pub type Db = DatabaseConnection;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    pub max_connections: u32,
    /// `full` (default, durable on power loss) or `normal` (durable on crash of the process only).
    pub sqlite_synchronous: String,
    pub sqlite_busy_timeout: Duration,
    /// How long a caller waits for a pooled connection (and a new connection
    /// to be made) before the database counts as unavailable.
    pub acquire_timeout: Duration,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            sqlite_synchronous: "full".to_owned(),
            sqlite_busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Connect, apply settings and check them.
pub async fn connect(config: &DbConfig) -> Result<Db> {
    let synchronous = match config.sqlite_synchronous.as_str() {
        "normal" => SqliteSynchronous::Normal,
        "full" => SqliteSynchronous::Full,
        other => {
            return Err(StoreError::Setting {
                setting: "sqlite_synchronous",
                actual: other.to_owned(),
                expected: "full or normal".to_owned(),
            });
        }
    };
    let busy = config.sqlite_busy_timeout;
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(config.max_connections)
        .min_connections(1)
        .connect_timeout(config.acquire_timeout)
        .acquire_timeout(config.acquire_timeout)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(busy)
                .foreign_keys(true)
                .create_if_missing(true)
        });
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        check_sqlite_settings(&db, &config.sqlite_synchronous).await?;
    }
    Ok(db)
}

/// Read the SQLite pragmas back: a wrong setting refuses to start rather than
/// silently losing acknowledged writes.
pub async fn check_sqlite_settings(db: &Db, synchronous: &str) -> Result<()> {
    let journal = pragma(db, "journal_mode").await?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Setting {
            setting: "journal_mode",
            actual: journal,
            expected: "wal".to_owned(),
        });
    }
    let expected_sync = if synchronous == "normal" { "1" } else { "2" };
    let sync = pragma(db, "synchronous").await?;
    if sync != expected_sync {
        return Err(StoreError::Setting {
            setting: "synchronous",
            actual: sync,
            expected: expected_sync.to_owned(),
        });
    }
    let fks = pragma(db, "foreign_keys").await?;
    if fks != "1" {
        return Err(StoreError::Setting {
            setting: "foreign_keys",
            actual: fks,
            expected: "1".to_owned(),
        });
    }
    Ok(())
}

async fn pragma(db: &Db, name: &str) -> Result<String> {
    let row = db
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            format!("PRAGMA {name}"),
        ))
        .await?
        .ok_or(StoreError::Setting {
            setting: "pragma",
            actual: "no row".to_owned(),
            expected: name.to_owned(),
        })?;
    if let Ok(text) = row.try_get_by_index::<String>(0) {
        return Ok(text);
    }
    let number: i64 = row.try_get_by_index(0)?;
    Ok(number.to_string())
}

/// Apply every pending migration. A migration that must seal free text
/// already stored in clear fails without the data key: use
/// [`migrate_with_key`] on a database that holds data.
pub async fn migrate(db: &Db) -> Result<()> {
    migrate_and_purge(db, None).await
}

/// Apply every pending migration, with the data key for those that seal rows
/// already stored (`sanyu migrate`, `sanyu dev`).
pub async fn migrate_with_key(db: &Db, key: &crate::crypto::Sealer) -> Result<()> {
    migrate_and_purge(db, Some(key.clone())).await
}

async fn migrate_and_purge(db: &Db, key: Option<crate::crypto::Sealer>) -> Result<()> {
    if crate::migration::run(db, key).await? {
        crate::migration::purge_replaced_clear_text(db).await?;
    }
    Ok(())
}

/// A write transaction; on SQLite it also holds this process's writer lock.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

/// A read-only transaction that sees one snapshot.
pub type ReadTxn = DatabaseTransaction;

/// Start a read-only transaction that sees one snapshot: `REPEATABLE READ`
/// on PostgreSQL; on SQLite (WAL) a transaction reads one snapshot anyway.
pub async fn begin_read_snapshot(db: &Db) -> Result<ReadTxn, DbErr> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.begin_with_config(
            Some(sea_orm::IsolationLevel::RepeatableRead),
            Some(sea_orm::AccessMode::ReadOnly),
        )
        .await
    } else {
        db.begin().await
    }
}

/// SQLite has one writer at a time. Writers of one process queue here, in
/// order and without sleeping; only writers of other processes meet SQLite's
/// busy handler (which sleeps in steps of up to 100 ms).
static SQLITE_WRITER: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Mutex::new(())));

/// Start a write transaction. On SQLite it begins `IMMEDIATE` (a read that
/// later writes would otherwise fail with "database is locked" when another
/// writer committed in between) after taking the in-process writer lock.
pub async fn begin_write(db: &Db) -> Result<WriteTxn, DbErr> {
    let writer = if db.get_database_backend() == DatabaseBackend::Sqlite {
        Some(SQLITE_WRITER.clone().lock_owned().await)
    } else {
        None
    };
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    Ok(WriteTxn {
        txn,
        _writer: writer,
    })
}

/// Rows per multi-row insert (well under SQLite's 32,766 bound values).
pub(crate) const INSERT_CHUNK: usize = 500;

/// `rows` in chunks of [`INSERT_CHUNK`] (none for no rows), taken as they
/// are inserted, for multi-row inserts.
pub(crate) fn insert_chunks<T>(rows: impl IntoIterator<Item = T>) -> impl Iterator<Item = Vec<T>> {
    let mut rows = rows.into_iter().peekable();
    std::iter::from_fn(move || {
        rows.peek()?;
        Some(rows.by_ref().take(INSERT_CHUNK).collect())
    })
}

/// The rows `select` finds whose `column` is one of `values` (an `IN`
/// list), in the order `select` gives. No values, no query.
pub(crate) async fn find_in<E, V>(
    conn: &impl sea_orm::ConnectionTrait,
    select: sea_orm::Select<E>,
    column: E::Column,
    values: Vec<V>,
) -> Result<Vec<E::Model>>
where
    E: sea_orm::EntityTrait,
    V: Into<sea_orm::Value>,
{
    use sea_orm::{ColumnTrait, QueryFilter};
    if values.is_empty() {
        return Ok(Vec::new());
    }
    Ok(select.filter(column.is_in(values)).all(conn).await?)
}

/// Ids as one JSON array parameter, for PostgreSQL statements that probe
/// them one by one (`json_array_elements_text($1::json)` under a `LATERAL`
/// lookup that `OFFSET 0` keeps from being flattened): an index probe per id
/// whatever the planner's statistics say, where an `IN (…)` list over a
/// table that grew since its last ANALYZE was planned as a scan.
pub fn probe_ids<T: serde::Serialize>(table: &'static str, ids: &[T]) -> crate::Result<String> {
    serde_json::to_string(ids).map_err(|e| crate::StoreError::Corrupt {
        table,
        detail: format!("encoding ids: {e}"),
    })
}

/// Lock rows read for update on PostgreSQL; SQLite's `IMMEDIATE` transactions
/// already hold the write lock.
pub fn supports_row_locks(conn: &impl ConnectionTrait) -> bool {
    conn.get_database_backend() == DatabaseBackend::Postgres
}

/// The sqlx error under a sea-orm error, if there is one.
fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

/// The database error's code: PostgreSQL's SQLSTATE, or SQLite's extended
/// result code (as a decimal number).
fn database_code(err: &DbErr) -> Option<String> {
    match sqlx_error(err)? {
        sea_orm::sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
        _ => None,
    }
}

fn is_sqlite(err: &DbErr) -> bool {
    matches!(
        sqlx_error(err),
        Some(sea_orm::sqlx::Error::Database(e))
            if e.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some()
    )
}

/// SQLite's primary result code of an extended code (`SQLITE_BUSY_SNAPSHOT`
/// 517 → `SQLITE_BUSY` 5).
fn sqlite_primary(code: &str) -> Option<i64> {
    code.parse::<i64>().ok().map(|c| c & 0xff)
}

/// The TLS handshake with the database failed: its certificate was refused
/// (unknown CA, wrong host name) or the server does not do TLS while the URL
/// requires it. A configuration error, not an outage.
pub fn is_tls_refused(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match sqlx_error(err) {
        Some(Sqlx::Tls(_)) => true,
        // A refused certificate surfaces as the handshake's I/O error
        // carrying rustls' error.
        Some(Sqlx::Io(e)) => e
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

/// Whether the database cannot be reached or cannot take the work now: the
/// connection failed or was cut, the pool had no connection in time, the
/// server is shutting down, starting or out of connection slots, or SQLite is
/// busy or locked. Decided by error kind and code, never by message text.
/// Such a failure says nothing about the request: it may succeed later.
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        DbErr::ConnectionAcquire(_) => return true,
        // Establishing a connection failed, whatever the cause.
        DbErr::Conn(_) => return true,
        _ => {}
    }
    match sqlx_error(err) {
        Some(
            Sqlx::Io(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::Tls(_)
            | Sqlx::Protocol(_)
            | Sqlx::WorkerCrashed,
        ) => true,
        Some(Sqlx::Database(_)) => {
            let Some(code) = database_code(err) else {
                return false;
            };
            if is_sqlite(err) {
                // SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
                matches!(sqlite_primary(&code), Some(5 | 6))
            } else {
                // Class 08: connection exception; 57P01 admin shutdown, 57P02
                // crash shutdown, 57P03 cannot connect now; 53300 too many
                // connections.
                code.starts_with("08")
                    || matches!(code.as_str(), "57P01" | "57P02" | "57P03" | "53300")
            }
        }
        _ => false,
    }
}

/// Whether a database error is transient: the database is unavailable
/// ([`is_unavailable`]), or the transaction lost a race that a retry settles
/// (deadlock, serialization failure, a concurrent writer won a unique
/// constraint).
pub fn is_retryable(err: &DbErr) -> bool {
    if is_unavailable(err) {
        return true;
    }
    let Some(code) = database_code(err) else {
        return false;
    };
    if is_sqlite(err) {
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_CONSTRAINT_PRIMARYKEY (1555).
        matches!(code.as_str(), "2067" | "1555")
    } else {
        // 40001 serialization failure, 40P01 deadlock, 23505 unique violation.
        matches!(code.as_str(), "40001" | "40P01" | "23505")
    }
}

/// Whether an error is a unique-constraint violation.
pub fn is_unique_violation(err: &DbErr) -> bool {
    let text = err.to_string().to_lowercase();
    text.contains("unique") || text.contains("duplicate key")
}
