//! A timer the scheduler cannot read (a kind it does not know, a payload it
//! cannot parse) is not lost silently: it is taken once and becomes a dead
//! letter a person sees, and the other timers still fire.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeZone, Utc};
use sanyu_platform::relay::Waker;
use sanyu_scheduler::Scheduler;
use sanyu_store::dead_letters::{self, Readers};
use sanyu_store::timers::{self, NewTimer};
use sanyu_test_support::TestDb;

async fn an_unreadable_timer_becomes_a_dead_letter_once(test_db: TestDb) {
    let db = test_db.connect().await;
    let due = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
    for (key, kind, payload) in [
        ("mystery:1", "sms_retry", "{}"),
        ("ladder:broken", "escalation_rung", "{not json"),
    ] {
        timers::schedule(
            &db,
            NewTimer {
                key: key.into(),
                kind: kind.into(),
                case_id: None,
                due_at: due,
                payload: payload.into(),
            },
        )
        .await
        .unwrap();
    }
    let scheduler = Scheduler::new(db.clone(), Waker::default(), Duration::from_secs(60));
    let tick = scheduler.tick(due).await.unwrap();
    assert_eq!((tick.fired, tick.stale, tick.failed), (0, 2, 0), "{tick:?}");
    // Taken once: the next tick finds nothing.
    let again = scheduler.tick(due).await.unwrap();
    assert_eq!(again.fired + again.stale + again.lost + again.failed, 0);

    let mut letters: Vec<String> = dead_letters::list_open(&db, Readers::Deployment, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            assert_eq!(d.stream, "TIMERS");
            d.reason
        })
        .collect();
    letters.sort();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters[0].starts_with("timer ladder:broken: unreadable payload: "),
        "{letters:?}"
    );
    assert_eq!(
        letters[1],
        "timer mystery:1: unknown timer kind `sms_retry`"
    );
}

#[tokio::test]
async fn an_unreadable_timer_becomes_a_dead_letter_once_on_sqlite() {
    an_unreadable_timer_becomes_a_dead_letter_once(TestDb::sqlite()).await;
}

#[tokio::test]
async fn an_unreadable_timer_becomes_a_dead_letter_once_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        an_unreadable_timer_becomes_a_dead_letter_once(db).await;
    }
}
