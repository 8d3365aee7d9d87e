//! The ladder auditor racing acknowledgements, with no fault at all: 1,000
//! running ladders are acknowledged while the auditor runs over and over. An
//! acknowledgement stops the ladder and cancels its rungs in one transaction;
//! an auditor that read the case and its timers apart saw a running ladder
//! without a next rung and alarmed the crisis team and the leaders. Every
//! alarm here would be false: 0 of them, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use sanyu_domain::{RiskLevel, case_reference};
use sanyu_escalation as escalation;
use sanyu_events::NotificationReason;
use sanyu_platform::relay::Waker;
use sanyu_scheduler::Scheduler;
use sanyu_store::cases::{self, NewCase};
use sanyu_store::entities::{dead_letter, student};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use sanyu_store::{Db, begin_write};
use sanyu_test_support::TestDb;
use uuid::Uuid;

const TRIES: usize = 1_000;
const ROUND: usize = 50;

/// Open a case for each student at `level` and start its ladder (the
/// default policy: an acknowledge deadline, then rungs).
async fn open_cases(db: &Db, students: &[student::Model]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let txn = begin_write(db).await.unwrap();
    for s in students {
        let id = Uuid::now_v7();
        let at = Utc::now();
        cases::open(
            &*txn,
            NewCase {
                id,
                reference: case_reference(id),
                school_id: s.school_id,
                class_id: Some(s.class_id),
                student_id: Some(s.id),
                subject: sanyu_domain::CaseSubject::Student,
                level: RiskLevel::High,
                rule: "test".into(),
                at,
            },
        )
        .await
        .unwrap();
        let case = cases::get(&*txn, id).await.unwrap().unwrap();
        escalation::start(
            &*txn,
            &case,
            &sanyu_domain::escalation::EscalationPolicy::default(),
            NotificationReason::CaseOpened,
            at,
            None,
        )
        .await
        .unwrap();
        ids.push(id);
    }
    txn.commit().await.unwrap();
    ids
}

/// Acknowledge as the gateway does: read the case and stop its ladder in
/// one write transaction.
async fn acknowledge(db: &Db, id: Uuid) {
    let txn = begin_write(db).await.unwrap();
    let c = cases::get(&*txn, id).await.unwrap().unwrap();
    escalation::stop(&*txn, &c).await.unwrap();
    txn.commit().await.unwrap();
}

async fn acknowledgements_racing_the_auditor_raise_no_alarm(test_db: TestDb) {
    let backend = test_db.url().split(':').next().unwrap_or("db").to_owned();
    let db = test_db.connect().await;
    sanyu_test_support::seed_school(&db, "RACE").await;
    sanyu_test_support::fixtures::add_students(&db, "RACE", TRIES).await;
    let students = student::Entity::find()
        .filter(student::Column::StudentNo.starts_with("B"))
        .order_by_asc(student::Column::StudentNo)
        .all(&db)
        .await
        .unwrap();
    assert_eq!(students.len(), TRIES);
    let scheduler = Scheduler::new(db.clone(), Waker::default(), Duration::from_secs(120));
    let mut alarms = Vec::new();
    let mut audits = 0usize;
    for round in students.chunks(ROUND) {
        let ids = open_cases(&db, round).await;
        let done = Arc::new(AtomicBool::new(false));
        let acks = {
            let db = db.clone();
            let done = done.clone();
            tokio::spawn(async move {
                for (i, id) in ids.into_iter().enumerate() {
                    acknowledge(&db, id).await;
                    if i % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        while !done.load(Ordering::SeqCst) {
            let report = scheduler.audit(Utc::now()).await.unwrap();
            audits += 1;
            alarms.extend(report.alarms);
        }
        acks.await.unwrap();
    }
    let recorded = dead_letter::Entity::find()
        .filter(dead_letter::Column::SourceKey.starts_with("alarm:"))
        .count(&db)
        .await
        .unwrap();
    eprintln!(
        "{backend}: {TRIES} acknowledgements raced {audits} audits: {} false alarm(s), {recorded} recorded",
        alarms.len()
    );
    assert!(audits > 0);
    assert_eq!(alarms, Vec::<String>::new(), "{backend}: false alarms");
    assert_eq!(recorded, 0, "{backend}: alarm records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_racing_the_auditor_raise_no_false_alarm_on_sqlite() {
    acknowledgements_racing_the_auditor_raise_no_alarm(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_racing_the_auditor_raise_no_false_alarm_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        acknowledgements_racing_the_auditor_raise_no_alarm(db).await;
    }
}
