//! The rules engine decides screening results: a suicide alert opens or
//! raises to critical at once (even on a row that could not be scored); other
//! results follow their suggested level; a redelivery decides nothing twice.
#![allow(clippy::unwrap_used)]

use chrono::Utc;
use sanyu_domain::{EscalationPolicy, RiskLevel};
use sanyu_events::{Payload, v1};
use sanyu_platform::relay::Waker;
use sanyu_rules::{Decided, Rules, RulesEngine};
use sanyu_store::cases;
use sanyu_store::{Db, roster};
use sanyu_test_support::{TestDb, seed_school};
use uuid::Uuid;

async fn student(db: &Db, no: &str) -> Uuid {
    let school = roster::school_by_code(db, "SCH1").await.unwrap().unwrap();
    roster::student_by_no(db, school.id, no)
        .await
        .unwrap()
        .unwrap()
        .id
}

fn screening(
    event_id: &str,
    student_id: Uuid,
    level: RiskLevel,
    flags: &[&str],
    rejected: bool,
) -> Vec<u8> {
    sanyu_events::encode(&sanyu_events::envelope(
        event_id,
        Utc::now(),
        "SCH1",
        0,
        Payload::ScreeningResult(v1::ScreeningResultRecorded {
            result_id: Uuid::now_v7().to_string(),
            import_id: Uuid::now_v7().to_string(),
            student_id: student_id.to_string(),
            instrument: "phq9".into(),
            band: String::new(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            administered_at: None,
            suggested_level: sanyu_events::level_to_proto(level) as i32,
            rejected,
            signal_id: String::new(),
        }),
    ))
}

async fn screening_results_are_decided(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let engine = RulesEngine::new(
        db.clone(),
        Waker::default(),
        EscalationPolicy::default(),
        std::sync::Arc::new(Rules::builtin()),
    );
    let s1 = student(&db, "S1").await;
    let s2 = student(&db, "S2").await;
    let s3 = student(&db, "S3").await;

    // A rejected row whose item 9 is valid and positive: critical at once.
    let alert = screening("screening:1", s1, RiskLevel::High, &["suicide_item"], true);
    let decided = engine.decide(&alert).await.unwrap();
    let Decided::Opened { case_id, level } = decided else {
        panic!("expected a case, got {decided:?}");
    };
    assert_eq!(level, RiskLevel::Critical);
    let case = cases::get(&db, case_id).await.unwrap().unwrap();
    assert_eq!(case.opened_rule, sanyu_ruleset::SAFETY_RULE);
    assert_eq!(
        case.ladder_state,
        sanyu_domain::LadderState::Running,
        "the ladder starts with the case"
    );
    assert_eq!(engine.decide(&alert).await.unwrap(), Decided::Duplicate);

    // A watch result opens nothing; an elevated one opens at elevated...
    let watch = screening("screening:2", s2, RiskLevel::Watch, &[], false);
    assert!(
        matches!(
            engine.decide(&watch).await.unwrap(),
            Decided::Watched { .. }
        ),
        "a watch-level result puts the student on the key-population list"
    );
    let elevated = screening("screening:3", s3, RiskLevel::Elevated, &[], false);
    let Decided::Opened { case_id, level } = engine.decide(&elevated).await.unwrap() else {
        panic!("expected a case");
    };
    assert_eq!(level, RiskLevel::Elevated);
    // ...and PHQ-A's suicide_risk raises that case to critical.
    let risk = screening("screening:4", s3, RiskLevel::High, &["suicide_risk"], false);
    assert_eq!(
        engine.decide(&risk).await.unwrap(),
        Decided::Raised {
            case_id,
            from: RiskLevel::Elevated,
            to: RiskLevel::Critical
        }
    );
    assert_eq!(cases::count_all(&db).await.unwrap(), 2);
}

#[tokio::test]
async fn screening_results_are_decided_on_sqlite() {
    screening_results_are_decided(TestDb::sqlite()).await;
}

#[tokio::test]
async fn screening_results_are_decided_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        screening_results_are_decided(db).await;
    }
}

fn result(signal_id: &str, student_id: Uuid, level: RiskLevel) -> v1::ScreeningResultRecorded {
    v1::ScreeningResultRecorded {
        result_id: Uuid::now_v7().to_string(),
        import_id: Uuid::now_v7().to_string(),
        student_id: student_id.to_string(),
        instrument: "phq9".into(),
        band: "moderate".into(),
        flags: Vec::new(),
        administered_at: None,
        suggested_level: sanyu_events::level_to_proto(level) as i32,
        rejected: false,
        signal_id: signal_id.into(),
    }
}

fn batch(event_id: &str, sequence: u32, results: Vec<v1::ScreeningResultRecorded>) -> Vec<u8> {
    sanyu_events::encode(&sanyu_events::envelope(
        event_id,
        Utc::now(),
        "SCH1",
        0,
        Payload::ScreeningBatch(v1::ScreeningResultBatch {
            import_id: Uuid::now_v7().to_string(),
            sequence,
            results,
        }),
    ))
}

async fn a_batch_decides_each_result_once_by_its_signal_id(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let engine = RulesEngine::new(
        db.clone(),
        Waker::default(),
        EscalationPolicy::default(),
        std::sync::Arc::new(Rules::builtin()),
    );
    let s1 = student(&db, "S1").await;
    let s2 = student(&db, "S2").await;
    let s3 = student(&db, "S3").await;

    // Two students past a cut-off and one below: two cases, one on the watch
    // list. S1 appears twice (two rows of one file): the second, a watch
    // result, attaches to the case the first opened in the same batch.
    let first = batch(
        "screening.batch:a:0",
        0,
        vec![
            result("screening:SCH1:s1", s1, RiskLevel::Elevated),
            result("screening:SCH1:s2", s2, RiskLevel::Watch),
            result("screening:SCH1:s3", s3, RiskLevel::High),
            result("screening:SCH1:s1:watch", s1, RiskLevel::Watch),
        ],
    );
    let decided = engine.decide_each(&first).await.unwrap();
    assert!(
        matches!(
            decided[0],
            Decided::Opened {
                level: RiskLevel::Elevated,
                ..
            }
        ),
        "{decided:?}"
    );
    assert!(matches!(decided[1], Decided::Watched { .. }), "{decided:?}");
    assert!(matches!(decided[2], Decided::Opened { .. }), "{decided:?}");
    assert!(
        matches!(decided[3], Decided::Attached { .. }),
        "{decided:?}"
    );
    assert_eq!(cases::count_all(&db).await.unwrap(), 2);
    // The batch redelivered: nothing at all.
    assert_eq!(
        engine.decide_each(&first).await.unwrap(),
        vec![Decided::Duplicate]
    );

    // A second batch (a re-run or overlapping import) carries s3's signal
    // again and a new one for s2: only the new one is decided.
    let second = batch(
        "screening.batch:b:0",
        0,
        vec![
            result("screening:SCH1:s3", s3, RiskLevel::High),
            result("screening:SCH1:s2:high", s2, RiskLevel::High),
        ],
    );
    let decided = engine.decide_each(&second).await.unwrap();
    assert_eq!(decided[0], Decided::Duplicate);
    assert!(
        matches!(
            decided[1],
            Decided::Opened {
                level: RiskLevel::High,
                ..
            }
        ),
        "{decided:?}"
    );
    assert_eq!(cases::count_all(&db).await.unwrap(), 3);

    // A signal already decided alone is a duplicate inside a batch too.
    let alone = screening(
        "screening:SCH1:s1:alone",
        s1,
        RiskLevel::High,
        &["suicide_item"],
        false,
    );
    assert!(matches!(
        engine.decide(&alone).await.unwrap(),
        Decided::Raised { .. }
    ));
    let third = batch(
        "screening.batch:c:0",
        0,
        vec![result("screening:SCH1:s1:alone", s1, RiskLevel::High)],
    );
    assert_eq!(
        engine.decide_each(&third).await.unwrap(),
        vec![Decided::Duplicate]
    );
    // Each signal decided once under its own id.
    assert_eq!(sanyu_store::decisions::count(&db).await.unwrap(), 6);

    // A batched result without its signal id is malformed: nothing is decided.
    let malformed = batch(
        "screening.batch:d:0",
        0,
        vec![result("", s2, RiskLevel::High)],
    );
    assert!(matches!(
        engine.decide(&malformed).await,
        Err(sanyu_rules::RulesError::Malformed(_))
    ));
    assert_eq!(sanyu_store::decisions::count(&db).await.unwrap(), 6);
}

#[tokio::test]
async fn a_batch_decides_each_result_once_by_its_signal_id_on_sqlite() {
    a_batch_decides_each_result_once_by_its_signal_id(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_batch_decides_each_result_once_by_its_signal_id_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_batch_decides_each_result_once_by_its_signal_id(db).await;
    }
}
