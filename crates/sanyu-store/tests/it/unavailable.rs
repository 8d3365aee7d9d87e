//! Database unavailability is decided by error kind and code, not message
//! text (issue #13, item 11): a connection cut mid-query, a pool that timed
//! out, a server that is gone, SQLite busy; and a constraint violation or a
//! bad statement are not unavailability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sanyu_store::sea_orm::{ConnectionTrait, DbErr, RuntimeErr, TransactionTrait, sqlx};
use sanyu_store::{DbConfig, db};
use sanyu_test_support::TestDb;

fn exec(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

#[test]
fn a_connection_cut_mid_query_is_unavailability() {
    // What PostgreSQL's stop did to a running statement in the fault run.
    let eof = exec(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "expected to read 5 bytes, got 0 bytes at EOF",
    )));
    assert!(db::is_unavailable(&eof));
    assert!(db::is_retryable(&eof));
    for e in [
        sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed,
        sqlx::Error::WorkerCrashed,
        sqlx::Error::Protocol("unexpected message".into()),
    ] {
        assert!(db::is_unavailable(&exec(e)));
    }
}

#[test]
fn errors_of_the_request_itself_are_not_unavailability() {
    for e in [
        DbErr::RecordNotFound("case".into()),
        DbErr::Custom("a connection to the past".into()),
        exec(sqlx::Error::RowNotFound),
        exec(sqlx::Error::ColumnNotFound("connection".into())),
    ] {
        assert!(!db::is_unavailable(&e), "{e}");
        assert!(!db::is_retryable(&e), "{e}");
    }
}

#[tokio::test]
async fn sqlite_busy_is_unavailability_and_a_unique_violation_is_only_retryable() {
    let test_db = TestDb::sqlite();
    let first = test_db.connect().await;
    first
        .execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
        .await
        .unwrap();
    first
        .execute_unprepared("INSERT INTO t (v) VALUES ('a')")
        .await
        .unwrap();
    let dup = first
        .execute_unprepared("INSERT INTO t (v) VALUES ('a')")
        .await
        .expect_err("a duplicate");
    assert!(!db::is_unavailable(&dup), "{dup}");
    assert!(db::is_retryable(&dup), "{dup}");

    // A second pool that does not wait for SQLite's lock.
    let mut config = DbConfig::new(test_db.url());
    config.sqlite_busy_timeout = Duration::ZERO;
    let second = db::connect(&config).await.unwrap();
    let holder = db::begin_write(&first).await.unwrap();
    holder
        .execute_unprepared("INSERT INTO t (v) VALUES ('b')")
        .await
        .unwrap();
    let busy = match second.begin().await {
        Ok(txn) => txn
            .execute_unprepared("INSERT INTO t (v) VALUES ('c')")
            .await
            .expect_err("the lock is held"),
        Err(e) => e,
    };
    assert!(db::is_unavailable(&busy), "{busy}");
    holder.rollback().await.unwrap();
}

#[tokio::test]
async fn a_database_that_is_gone_is_unavailability_after_the_acquire_timeout() {
    // Nothing listens on port 9 (discard) of the loopback.
    let mut config = DbConfig::new("postgres://postgres@127.0.0.1:9/none?sslmode=disable");
    config.acquire_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = match db::connect(&config).await {
        Ok(_) => panic!("connected to nothing"),
        Err(sanyu_store::StoreError::Db(e)) => e,
        Err(other) => panic!("{other}"),
    };
    assert!(db::is_unavailable(&err), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
}
