//! Zero-report reminders with an injected clock, on SQLite and PostgreSQL:
//! the timers of a period are materialised once per school; before the
//! deadline the missing classes' head teachers (and, for the school's own
//! report, its leader) are reminded; after it the leader; then the next level
//! up. A unit that reported is never reminded; a reminder that comes due after
//! the deadline is stale.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sanyu_domain::zero_report::{Calendar, Level, Period};
use sanyu_platform::relay::Waker;
use sanyu_scheduler::Scheduler;
use sanyu_scheduler::zero_report::ZERO_REPORT_TIMER;
use sanyu_store::entities::{class, school, timer};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sanyu_store::zero_reports::{self, NewZeroReport};
use sanyu_store::{Db, begin_write};
use sanyu_test_support::TestDb;
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).unwrap()
}

fn hours(n: i64) -> chrono::Duration {
    chrono::Duration::hours(n)
}

fn calendar() -> Calendar {
    Calendar {
        periods: vec![Period {
            id: "zhongkao".into(),
            name: "中考".into(),
            kind: "zhongkao".into(),
            opens_at: t0(),
            deadline: t0() + hours(48),
            levels: vec![Level::Class, Level::School],
            district: None,
            school: None,
        }],
        ..Calendar::default()
    }
}

/// (recipient staff_no, reason) of every zero-report notice, in order.
async fn notices(db: &Db) -> Vec<(String, String)> {
    common::requests(db)
        .await
        .into_iter()
        .filter(|(_, n)| n.reason.starts_with("zero_report"))
        .map(|(who, n)| {
            assert!(n.case_id.is_empty());
            assert_eq!(n.case_reference, "zhongkao");
            (who, n.reason)
        })
        .collect()
}

async fn report_zero_for_c1(db: &Db) {
    let s = school::Entity::find().one(db).await.unwrap().unwrap();
    let c1 = class::Entity::find()
        .filter(class::Column::Code.eq("C1"))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let txn = begin_write(db).await.unwrap();
    zero_reports::insert_version(
        &*txn,
        NewZeroReport {
            id: Uuid::now_v7(),
            period_id: "zhongkao".into(),
            school_id: s.id,
            class_id: Some(c1.id),
            unit: "C1".into(),
            zero: true,
            incident_count: 0,
            incidents: "[]".into(),
            late: false,
            request_hash: "h".into(),
            submitted_by: Uuid::now_v7(),
            submitted_at: t0() + hours(1),
        },
        1,
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
}

fn pairs(list: &[(String, String)]) -> Vec<(&str, &str)> {
    list.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

async fn missing_units_are_reminded_then_their_leader_then_the_next_level_up(test_db: TestDb) {
    let db = test_db.connect().await;
    sanyu_test_support::seed_school(&db, "ZR1").await;
    let s = Scheduler::new(db.clone(), Waker::default(), Duration::from_secs(120))
        .with_zero_reports(calendar());

    // The period is seen: its four timers are scheduled once (24 h, 2 h, overdue, escalated).
    s.tick(t0()).await.unwrap();
    s.tick(t0() + chrono::Duration::minutes(1)).await.unwrap();
    let count = || async {
        timer::Entity::find()
            .filter(timer::Column::Kind.eq(ZERO_REPORT_TIMER))
            .all(&db)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(count().await, 4);
    let again = Scheduler::new(db.clone(), Waker::default(), Duration::from_secs(120))
        .with_zero_reports(calendar());
    again
        .tick(t0() + chrono::Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(count().await, 4, "a second scheduler schedules nothing new");
    assert!(notices(&db).await.is_empty());

    // C1 reports zero; 24 h before the deadline C2's head teacher and the
    // leader (the school's own report) are reminded, never C1's.
    report_zero_for_c1(&db).await;
    let tick = s.tick(t0() + hours(24)).await.unwrap();
    assert_eq!(tick.fired, 1);
    assert_eq!(
        pairs(&notices(&db).await),
        vec![("T2", "zero_report_due"), ("L1", "zero_report_due")]
    );
    // After the deadline: the leader; a further day later: the next level up
    // (no district officer on this roster, so the leader again).
    s.tick(t0() + hours(48)).await.unwrap();
    s.tick(t0() + hours(72)).await.unwrap();
    let all = notices(&db).await;
    assert_eq!(
        pairs(&all[2..]),
        vec![
            ("T2", "zero_report_due"),
            ("L1", "zero_report_due"),
            ("L1", "zero_report_overdue"),
            ("L1", "zero_report_escalated"),
        ]
    );
}

async fn a_reminder_due_after_the_deadline_is_stale(test_db: TestDb) {
    let db = test_db.connect().await;
    sanyu_test_support::seed_school(&db, "ZR2").await;
    let s = Scheduler::new(db.clone(), Waker::default(), Duration::from_secs(120))
        .with_zero_reports(calendar());
    s.tick(t0()).await.unwrap();
    // The scheduler was down until after the deadline: no "due soon" reminders.
    let tick = s.tick(t0() + hours(49)).await.unwrap();
    assert_eq!((tick.fired, tick.stale), (1, 2));
    assert_eq!(
        pairs(&notices(&db).await),
        vec![("L1", "zero_report_overdue")]
    );
}

#[tokio::test]
async fn missing_units_are_reminded_then_their_leader_then_the_next_level_up_on_sqlite() {
    missing_units_are_reminded_then_their_leader_then_the_next_level_up(TestDb::sqlite()).await;
}

#[tokio::test]
async fn missing_units_are_reminded_then_their_leader_then_the_next_level_up_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        missing_units_are_reminded_then_their_leader_then_the_next_level_up(db).await;
    }
}

#[tokio::test]
async fn a_reminder_due_after_the_deadline_is_stale_on_sqlite() {
    a_reminder_due_after_the_deadline_is_stale(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_reminder_due_after_the_deadline_is_stale_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_reminder_due_after_the_deadline_is_stale(db).await;
    }
}
