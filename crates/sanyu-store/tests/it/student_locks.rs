//! The per-student locks of the rules engine on PostgreSQL: a transaction
//! that holds a student keeps every other transaction from taking that
//! student until it commits, and does not hold up other students.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use sanyu_store::sea_orm::{ConnectionTrait, TransactionTrait};
use sanyu_store::{Db, decisions};
use sanyu_test_support::{TestDb, seed_school};
use uuid::Uuid;

async fn student(db: &Db, no: &str) -> Uuid {
    common::student_id(db, "LCK1", no).await
}

/// Try to lock `ids` in a new transaction that waits at most 200 ms for a
/// lock; `true` when it got them (it then commits at once).
async fn can_lock(db: &Db, ids: &[Uuid]) -> bool {
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL lock_timeout = '200ms'")
        .await
        .unwrap();
    match decisions::lock_students(&txn, ids).await {
        Ok(found) => {
            assert_eq!(found.len(), ids.len(), "every student is read back");
            txn.commit().await.unwrap();
            true
        }
        Err(e) => {
            assert!(e.to_string().contains("lock timeout"), "{e}");
            txn.rollback().await.unwrap();
            false
        }
    }
}

#[tokio::test]
async fn a_locked_student_waits_for_the_commit_and_others_do_not() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let db = test_db.connect().await;
    seed_school(&db, "LCK1").await;
    let (s1, s2, s3) = (
        student(&db, "S1").await,
        student(&db, "S2").await,
        student(&db, "S3").await,
    );

    let holder = db.begin().await.unwrap();
    let held = decisions::lock_students(&holder, &[s2, s1, s1])
        .await
        .unwrap();
    assert_eq!(held.len(), 2);
    // Unknown ids are absent, not an error.
    assert!(
        decisions::lock_students(&holder, &[Uuid::now_v7()])
            .await
            .unwrap()
            .is_empty()
    );

    assert!(!can_lock(&db, &[s2, s3]).await, "S2 is held");
    assert!(!can_lock(&db, &[s1]).await, "S1 is held");
    assert!(can_lock(&db, &[s3]).await, "S3 is free");

    holder.commit().await.unwrap();
    assert!(can_lock(&db, &[s1, s2, s3]).await, "released by the commit");

    // A rollback releases them too.
    let holder = db.begin().await.unwrap();
    decisions::lock_students(&holder, &[s1]).await.unwrap();
    holder.rollback().await.unwrap();
    assert!(can_lock(&db, &[s1]).await, "released by the rollback");
}
