//! Sanyu's storage: sea-orm entities and migrations that run on PostgreSQL and
//! SQLite, the transactional outbox, the processed-message record, and the
//! repositories each service uses inside its own transactions.

pub mod ack_links;
pub mod audit;
pub mod cases;
pub mod casework;
pub mod console;
pub mod contacts;
pub mod crypto;
pub mod db;
pub mod dead_letters;
pub mod decisions;
pub mod deliveries;
pub mod digests;
pub mod duty;
pub mod entities;
pub mod hotline;
pub mod idempotency;
pub mod migration;
pub mod ops;
pub mod outbox;
pub mod preferences;
pub mod processed;
pub mod reports;
pub mod role_grants;
pub mod roster;
pub mod screening;
pub mod timers;
pub mod tokens;
pub mod zero_reports;

pub use db::{Db, DbConfig, ReadTxn, WriteTxn, begin_read_snapshot, begin_write};
pub use sea_orm;
/// What the repositories run on: the database handle or a transaction
/// ([`WriteTxn`], [`ReadTxn`]). Services pass it through and call the
/// repositories; they write no queries of their own.
pub use sea_orm::ConnectionTrait as Conn;
/// The database's error, as [`WriteTxn::commit`] returns it.
pub use sea_orm::DbErr;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("database setting `{setting}` is `{actual}`, expected `{expected}`")]
    Setting {
        setting: &'static str,
        actual: String,
        expected: String,
    },
    #[error("sealed data could not be opened (wrong data key or corrupted row)")]
    Unseal,
    #[error("text could not be sealed")]
    Seal,
    #[error("invalid data key: {0}")]
    DataKey(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("corrupt row in `{table}`: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

impl StoreError {
    /// A transient failure worth retrying (lock contention, lost connection,
    /// a concurrent writer won a unique constraint race).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Db(e) => db::is_retryable(e),
            _ => false,
        }
    }

    /// The database's TLS certificate was refused, or the server cannot do
    /// the TLS the URL requires ([`db::is_tls_refused`]).
    pub fn is_tls_refused(&self) -> bool {
        match self {
            StoreError::Db(e) => db::is_tls_refused(e),
            _ => false,
        }
    }

    /// The database cannot be reached or cannot take the work now
    /// ([`db::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(e) => db::is_unavailable(e),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
