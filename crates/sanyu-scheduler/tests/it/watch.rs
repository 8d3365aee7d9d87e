//! Watch-list (重点关注) follow-up reminders with an injected clock, on SQLite
//! and PostgreSQL: on the follow-up date the school's reachable counsellors
//! are told once, by entry id (never the student's name); an entry that is
//! done is not reminded; a date brought forward is reminded on the new date
//! and the old date's timer does nothing.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sanyu_escalation::{WATCH_FOLLOW_UP_TIMER, WatchTimer};
use sanyu_platform::relay::Waker;
use sanyu_scheduler::Scheduler;
use sanyu_store::decisions::{self, NewWatch};
use sanyu_store::entities::{student, timer, watch_entry};
use sanyu_store::sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter,
};
use sanyu_store::{Db, timers};
use sanyu_test_support::TestDb;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
}

/// (recipient staff_no, watch entry id) of every watch reminder, in order.
async fn reminders(db: &Db) -> Vec<(String, String)> {
    common::requests(db)
        .await
        .into_iter()
        .filter(|(_, n)| n.reason == "watch_follow_up_due")
        .map(|(who, n)| {
            assert!(n.case_id.is_empty(), "a notice about no case");
            (who, n.case_reference)
        })
        .collect()
}

/// Put `student` on the list with a follow-up on `on`, with its reminder.
async fn watch(db: &Db, student: &student::Model, on: NaiveDate) -> watch_entry::Model {
    let entry = decisions::watch(
        db,
        None,
        NewWatch {
            student_id: student.id,
            school_id: student.school_id,
            class_id: student.class_id,
            since: at(1, 8, 0),
            follow_up_on: on,
            signal_id: format!("report:{}", student.student_no),
            rule_id: "watch.mild".into(),
            rules_version: "test".into(),
        },
    )
    .await
    .unwrap()
    .expect("a new entry");
    timers::schedule(db, WatchTimer::of(&entry).unwrap())
        .await
        .unwrap();
    entry
}

async fn the_follow_up_date_reminds_the_counsellors_once(test_db: TestDb) {
    let db = test_db.connect().await;
    sanyu_test_support::seed_school(&db, "WT1").await;
    let students: BTreeMap<String, student::Model> = student::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.student_no.clone(), s))
        .collect();
    let s = Scheduler::new(db.clone(), Waker::default(), Duration::from_secs(120));

    let due = watch(&db, &students["S1"], day(10)).await;
    let done = watch(&db, &students["S2"], day(10)).await;
    let moved = watch(&db, &students["S3"], day(12)).await;
    // S2's follow-up is done before its date.
    watch_entry::ActiveModel {
        id: sanyu_store::sea_orm::ActiveValue::Unchanged(done.id),
        done_at: Set(Some(at(9, 10, 0))),
        ..Default::default()
    }
    .update(&db)
    .await
    .unwrap();
    // S3's date is brought forward to the 11th: a reminder of its own.
    let earlier = decisions::watch(
        &db,
        Some(&moved),
        NewWatch {
            student_id: moved.student_id,
            school_id: moved.school_id,
            class_id: moved.class_id,
            since: at(2, 8, 0),
            follow_up_on: day(11),
            signal_id: "report:S3:again".into(),
            rule_id: "watch.mild".into(),
            rules_version: "test".into(),
        },
    )
    .await
    .unwrap()
    .expect("the date moved");
    assert_eq!(earlier.follow_up_on, day(11));
    timers::schedule(&db, WatchTimer::of(&earlier).unwrap())
        .await
        .unwrap();
    assert_eq!(
        timer::Entity::find()
            .filter(timer::Column::Kind.eq(WATCH_FOLLOW_UP_TIMER))
            .all(&db)
            .await
            .unwrap()
            .len(),
        4
    );

    // Nothing before the date.
    s.tick(at(9, 23, 59)).await.unwrap();
    assert!(reminders(&db).await.is_empty());
    // On the 10th (08:00 in China): S1's entry, to the counsellor with an
    // email address (K1); S2's is done.
    let tick = s.tick(at(10, 0, 0)).await.unwrap();
    assert_eq!((tick.fired, tick.stale), (1, 1));
    assert_eq!(
        reminders(&db).await,
        vec![("K1".to_owned(), due.id.to_string())]
    );
    // The 11th: S3 on its new date; the 12th: its old timer does nothing.
    s.tick(at(11, 0, 0)).await.unwrap();
    let tick = s.tick(at(12, 0, 0)).await.unwrap();
    assert_eq!((tick.fired, tick.stale), (0, 1));
    s.tick(at(13, 0, 0)).await.unwrap();
    assert_eq!(
        reminders(&db).await,
        vec![
            ("K1".to_owned(), due.id.to_string()),
            ("K1".to_owned(), moved.id.to_string()),
        ]
    );
}

#[tokio::test]
async fn the_follow_up_date_reminds_the_counsellors_once_on_sqlite() {
    the_follow_up_date_reminds_the_counsellors_once(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_follow_up_date_reminds_the_counsellors_once_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_follow_up_date_reminds_the_counsellors_once(db).await;
    }
}
