//! The rules engine's batch lookups on both databases (on PostgreSQL they are
//! written as per-id probes): processed messages, the students' recent
//! decisions and their active watch entries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::HashSet;

use chrono::{Duration, Utc};
use sanyu_store::decisions::{self, NewDecision, NewWatch};
use sanyu_store::{Db, processed, roster};
use sanyu_test_support::{TestDb, seed_school};
use uuid::Uuid;

async fn student(db: &Db, no: &str) -> Uuid {
    common::student_id(db, "LKP1", no).await
}

fn decision(signal: &str, student: Uuid, school: Uuid, days_ago: i64) -> NewDecision {
    let at = Utc::now() - Duration::days(days_ago);
    NewDecision {
        signal_id: signal.into(),
        message_id: signal.into(),
        student_id: student,
        school_id: school,
        source: "report".into(),
        signal_at: at,
        level: Some(sanyu_domain::RiskLevel::Elevated),
        instrument: None,
        band: None,
        flags: vec![],
        category: Some("low_mood".into()),
        decision: "no_action".into(),
        case_id: None,
        case_level: None,
        follow_up_on: None,
        rule_id: "test".into(),
        rules_version: "test".into(),
        used: vec![signal.into()],
        decided_at: at,
    }
}

async fn lookups(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "LKP1").await;
    let school = roster::school_by_code(&db, "LKP1").await.unwrap().unwrap();
    let (s1, s2, s3) = (
        student(&db, "S1").await,
        student(&db, "S2").await,
        student(&db, "S3").await,
    );

    // Processed messages, per consumer.
    assert!(processed::record(&db, "rules", "m1").await.unwrap());
    assert!(processed::record(&db, "rules", "m2").await.unwrap());
    assert!(processed::record(&db, "other", "m3").await.unwrap());
    let ids: Vec<String> = ["m1", "m3", "m2", "m4"].map(String::from).to_vec();
    let found = processed::already(&db, "rules", &ids).await.unwrap();
    assert_eq!(found, HashSet::from(["m1".to_owned(), "m2".to_owned()]));
    assert!(
        processed::already(&db, "rules", &[])
            .await
            .unwrap()
            .is_empty()
    );

    // Recent decisions: only the students asked for, only since the cut-off,
    // oldest first.
    decisions::insert_many(
        &db,
        vec![
            decision("a", s1, school.id, 40),
            decision("b", s1, school.id, 2),
            decision("c", s1, school.id, 5),
            decision("d", s2, school.id, 1),
            decision("e", s3, school.id, 1),
        ],
    )
    .await
    .unwrap();
    let since = Utc::now() - Duration::days(30);
    let recent: Vec<String> = decisions::recent_for_students(&db, &[s1, s2], since)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.signal_id)
        .collect();
    assert_eq!(recent, ["c", "b", "d"]);

    // Active watch entries of the students asked for.
    let watch = |student: Uuid, signal: &str| NewWatch {
        student_id: student,
        school_id: school.id,
        class_id: Uuid::nil(),
        since: Utc::now(),
        follow_up_on: Utc::now().date_naive(),
        signal_id: signal.into(),
        rule_id: "watch.mild".into(),
        rules_version: "test".into(),
    };
    decisions::watch(&db, None, watch(s1, "w1")).await.unwrap();
    decisions::watch(&db, None, watch(s3, "w3")).await.unwrap();
    let watches = decisions::active_watches(&db, &[s1, s2]).await.unwrap();
    assert_eq!(watches.len(), 1);
    assert_eq!(watches[&s1].signal_id, "w1");
}

#[tokio::test]
async fn batch_lookups_on_sqlite() {
    lookups(TestDb::sqlite()).await;
}

#[tokio::test]
async fn batch_lookups_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        lookups(db).await;
    }
}
