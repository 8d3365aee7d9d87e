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
        case.ladder_state, "running",
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
