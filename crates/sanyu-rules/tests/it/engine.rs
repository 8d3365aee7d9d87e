//! The rules engine with rules as data, on both databases: corroboration
//! across sources and its explanation, batches that decide every signal once
//! (duplicates inside a batch, redelivered batches, screening batches that
//! overlap), an unknown student that fails only its own message, a reload of
//! the rules file recorded in the decisions, key-date periods, the watch list,
//! and two engines racing over the same students.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use sanyu_domain::{EscalationPolicy, LadderState, RiskLevel};
use sanyu_events::{Payload, v1};
use sanyu_platform::config::RulesConfig;
use sanyu_platform::relay::Waker;
use sanyu_rules::{Decided, Incoming, Rules, RulesEngine, RulesError};
use sanyu_store::decisions;
use sanyu_store::entities::{case, decision};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sanyu_store::{Db, roster};
use sanyu_test_support::fixtures::add_students;
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

fn report(event_id: &str, student: Uuid, level: RiskLevel) -> Vec<u8> {
    sanyu_events::encode(&sanyu_events::envelope(
        event_id,
        Utc::now(),
        "SCH1",
        0,
        Payload::ReportSubmitted(v1::ReportSubmitted {
            report_id: Uuid::now_v7().to_string(),
            student_id: student.to_string(),
            class_code: "C1".into(),
            category: "low_mood".into(),
            suggested_level: sanyu_events::level_to_proto(level) as i32,
            observed_at: Some(sanyu_events::timestamp(Utc::now())),
            reporter_token_id: Uuid::nil().to_string(),
            zero_report: false,
        }),
    ))
}

/// A zero-report incident: a report the rules see as source `zero_report`.
fn zero_incident(event_id: &str, student: Uuid, level: RiskLevel) -> Vec<u8> {
    let mut envelope = sanyu_events::decode(&report(event_id, student, level)).unwrap();
    if let Some(Payload::ReportSubmitted(r)) = envelope.payload.as_mut() {
        r.zero_report = true;
    }
    sanyu_events::encode(&envelope)
}

fn result(
    signal_id: &str,
    student: Uuid,
    level: RiskLevel,
    band: &str,
) -> v1::ScreeningResultRecorded {
    v1::ScreeningResultRecorded {
        result_id: Uuid::now_v7().to_string(),
        import_id: Uuid::nil().to_string(),
        student_id: student.to_string(),
        instrument: "phq9".into(),
        band: band.into(),
        flags: vec![],
        administered_at: Some(sanyu_events::timestamp(Utc::now())),
        suggested_level: sanyu_events::level_to_proto(level) as i32,
        rejected: false,
        signal_id: signal_id.into(),
    }
}

fn screening(event_id: &str, student: Uuid, level: RiskLevel, band: &str) -> Vec<u8> {
    let mut r = result("", student, level, band);
    r.signal_id.clear();
    sanyu_events::encode(&sanyu_events::envelope(
        event_id,
        Utc::now(),
        "SCH1",
        0,
        Payload::ScreeningResult(r),
    ))
}

fn screening_batch(event_id: &str, results: Vec<v1::ScreeningResultRecorded>) -> Vec<u8> {
    sanyu_events::encode(&sanyu_events::envelope(
        event_id,
        Utc::now(),
        "SCH1",
        0,
        Payload::ScreeningBatch(v1::ScreeningResultBatch {
            import_id: Uuid::nil().to_string(),
            sequence: 0,
            results,
        }),
    ))
}

fn engine(db: &Db, rules: Arc<Rules>) -> RulesEngine {
    RulesEngine::new(
        db.clone(),
        Waker::default(),
        EscalationPolicy::default(),
        rules,
    )
}

fn incoming(payloads: &[Vec<u8>]) -> Vec<Incoming<'_>> {
    payloads
        .iter()
        .map(|p| Incoming {
            payload: p,
            traceparent: None,
        })
        .collect()
}

async fn decision_of(db: &Db, signal_id: &str) -> decision::Model {
    decision::Entity::find()
        .filter(decision::Column::SignalId.eq(signal_id))
        .one(db)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no decision for {signal_id}"))
}

async fn open_cases_per_student(db: &Db) -> HashMap<Uuid, usize> {
    let mut per = HashMap::new();
    for c in case::Entity::find()
        .filter(case::Column::Status.ne(sanyu_domain::CaseStatus::Closed))
        .all(db)
        .await
        .unwrap()
    {
        *per.entry(c.student_id.expect("a student's case"))
            .or_default() += 1;
    }
    per
}

macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_sqlite() {
                super::$name(sanyu_test_support::TestDb::sqlite()).await;
            }
            #[tokio::test]
            async fn on_postgres() {
                if let Some(db) = sanyu_test_support::TestDb::postgres().await {
                    super::$name(db).await;
                }
            }
        }
    };
}

on_both_databases!(corroboration_raises_and_is_explained);
async fn corroboration_raises_and_is_explained(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let s1 = student(&db, "S1").await;
    let rules = Arc::new(Rules::builtin());
    let version = rules.current().version.clone();
    let engine = engine(&db, rules);

    let opened = engine
        .decide(&screening(
            "screening:a",
            s1,
            RiskLevel::Elevated,
            "moderately_severe",
        ))
        .await
        .unwrap();
    let Decided::Opened { case_id, level } = opened else {
        panic!("expected a case, got {opened:?}");
    };
    assert_eq!(level, RiskLevel::Elevated);
    assert_eq!(
        decision_of(&db, "screening:a").await.rule_id,
        "screening.elevated"
    );

    // A teacher's report within 30 days corroborates the screening: high.
    let raised = engine
        .decide(&report("report:b", s1, RiskLevel::Elevated))
        .await
        .unwrap();
    assert_eq!(
        raised,
        Decided::Raised {
            case_id,
            from: RiskLevel::Elevated,
            to: RiskLevel::High
        }
    );
    let d = decision_of(&db, "report:b").await;
    assert_eq!(d.rule_id, "screening.corroborated");
    assert_eq!(d.rules_version, version);
    assert_eq!(d.case_id, Some(case_id));
    assert_eq!(d.case_level, Some(RiskLevel::High));
    let used = decisions::used_of(&d);
    assert_eq!(used, vec!["report:b".to_owned(), "screening:a".to_owned()]);
    // A person's level is never lowered by a rule: a later elevated report attaches.
    let attached = engine
        .decide(&report("report:c", s1, RiskLevel::Elevated))
        .await
        .unwrap();
    assert!(
        matches!(attached, Decided::Attached { .. } | Decided::Raised { .. }),
        "{attached:?}"
    );
    let case = sanyu_store::cases::get(&db, case_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        case.level == RiskLevel::High || case.level == RiskLevel::Critical,
        "{}",
        case.level
    );
}

on_both_databases!(a_batch_decides_every_signal_exactly_once);
async fn a_batch_decides_every_signal_exactly_once(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    add_students(&db, "SCH1", 40).await;
    let mut students = Vec::new();
    for i in 0..40 {
        students.push(student(&db, &format!("B{i:05}")).await);
    }
    let engine = engine(&db, Arc::new(Rules::builtin()));
    let levels = [RiskLevel::Watch, RiskLevel::Elevated, RiskLevel::High];
    let mut payloads = Vec::new();
    let mut signals = HashSet::new();
    for i in 0..120 {
        let id = format!("report:{i}");
        payloads.push(report(&id, students[i % 40], levels[i % 3]));
        if i % 12 == 0 {
            // A duplicate inside the same batch.
            payloads.push(report(&id, students[i % 40], levels[i % 3]));
        }
        signals.insert(id);
    }
    // Two screening batches that share a signal (an overlapping re-import).
    let shared = result(
        "screening:shared",
        students[0],
        RiskLevel::Elevated,
        "moderate",
    );
    payloads.push(screening_batch(
        "screening-batch:1",
        vec![
            shared.clone(),
            result(
                "screening:only1",
                students[1],
                RiskLevel::Elevated,
                "moderate",
            ),
        ],
    ));
    payloads.push(screening_batch(
        "screening-batch:2",
        vec![
            shared,
            result(
                "screening:only2",
                students[2],
                RiskLevel::Elevated,
                "moderate",
            ),
        ],
    ));
    signals.extend(["screening:shared", "screening:only1", "screening:only2"].map(String::from));

    let results = engine.decide_batch(&incoming(&payloads)).await.unwrap();
    assert_eq!(results.len(), payloads.len());
    let duplicates = results
        .iter()
        .flat_map(|r| r.as_ref().unwrap())
        .filter(|d| **d == Decided::Duplicate)
        .count();
    assert_eq!(
        duplicates,
        10 + 1,
        "10 repeated messages and 1 repeated signal"
    );
    assert_eq!(decisions::count(&db).await.unwrap(), signals.len() as u64);
    assert!(
        open_cases_per_student(&db).await.values().all(|n| *n == 1),
        "never two open cases for a student"
    );

    // The whole batch redelivered: nothing decided twice.
    let again = engine.decide_batch(&incoming(&payloads)).await.unwrap();
    assert!(
        again
            .iter()
            .flat_map(|r| r.as_ref().unwrap())
            .all(|d| *d == Decided::Duplicate)
    );
    assert_eq!(decisions::count(&db).await.unwrap(), signals.len() as u64);
}

on_both_databases!(an_unknown_student_fails_only_its_own_message);
async fn an_unknown_student_fails_only_its_own_message(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let s1 = student(&db, "S1").await;
    let engine = engine(&db, Arc::new(Rules::builtin()));
    let stranger = Uuid::now_v7();
    let payloads = vec![
        report("report:stranger", stranger, RiskLevel::High),
        report("report:known", s1, RiskLevel::High),
        b"not an envelope".to_vec(),
    ];
    let results = engine.decide_batch(&incoming(&payloads)).await.unwrap();
    assert!(
        matches!(&results[0], Err(RulesError::UnknownStudent(id)) if *id == stranger),
        "{:?}",
        results[0]
    );
    assert!(matches!(&results[1], Ok(d) if matches!(d[0], Decided::Opened { .. })));
    assert!(matches!(&results[2], Err(RulesError::Malformed(_))));
    // The unknown student's message was not recorded as processed: a retry
    // (after the roster arrives) decides it.
    assert_eq!(decisions::count(&db).await.unwrap(), 1);
}

const RULES_V1: &str = r#"
version = "test-v1"
[[rule]]
id = "v1.reports"
when = { source = ["report"], level_at_least = "elevated" }
then = { action = "case", level = "elevated" }
"#;

const RULES_V2: &str = r#"
version = "test-v2"
[[rule]]
id = "v2.reports_are_high"
when = { source = ["report"], level_at_least = "elevated" }
then = { action = "case", level = "high" }
"#;

on_both_databases!(a_new_rules_version_is_loaded_without_restart_and_recorded);
async fn a_new_rules_version_is_loaded_without_restart_and_recorded(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let (s1, s2) = (student(&db, "S1").await, student(&db, "S2").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, RULES_V1).unwrap();
    let rules = Arc::new(
        Rules::load(&RulesConfig {
            file: file.display().to_string(),
            ..RulesConfig::default()
        })
        .unwrap(),
    );
    let engine = engine(&db, rules.clone());
    engine
        .decide(&report("report:1", s1, RiskLevel::Elevated))
        .await
        .unwrap();
    let d1 = decision_of(&db, "report:1").await;
    assert_eq!(
        (d1.rule_id.as_str(), d1.rules_version.as_str()),
        ("v1.reports", "test-v1")
    );

    std::fs::write(&file, RULES_V2).unwrap();
    assert_eq!(rules.reload().unwrap().as_deref(), Some("test-v2"));
    assert_eq!(
        rules.reload().unwrap(),
        None,
        "unchanged file: nothing to do"
    );
    let decided = engine
        .decide(&report("report:2", s2, RiskLevel::Elevated))
        .await
        .unwrap();
    assert!(
        matches!(
            decided,
            Decided::Opened {
                level: RiskLevel::High,
                ..
            }
        ),
        "{decided:?}"
    );
    let d2 = decision_of(&db, "report:2").await;
    assert_eq!(
        (d2.rule_id.as_str(), d2.rules_version.as_str()),
        ("v2.reports_are_high", "test-v2")
    );

    // A broken file is refused; the version in force stays.
    std::fs::write(&file, "version = \"test-v3\"\n[[rule]]\nid = \"x\"\nwhen = { nonsense = 1 }\nthen = { action = \"no_action\" }\n").unwrap();
    assert!(rules.reload().is_err());
    assert_eq!(rules.current().version, "test-v2");
}

on_both_databases!(key_date_periods_make_rules_stricter);
async fn key_date_periods_make_rules_stricter(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let (s1, s2) = (student(&db, "S1").await, student(&db, "S2").await);
    let today = Utc::now().date_naive();
    let file = |from: chrono::NaiveDate, to: chrono::NaiveDate| {
        format!(
            r#"
version = "periods"
[[period]]
name = "gaokao"
from = "{from}"
to = "{to}"

[[rule]]
id = "watch.mild"
when = {{ level_at_least = "watch" }}
then = {{ action = "watch", follow_up_days = 14 }}

[[rule]]
id = "gaokao.stricter"
when = {{ level_at_least = "watch", during = ["gaokao"] }}
then = {{ action = "case", level = "elevated" }}
"#
        )
    };
    let inside = sanyu_ruleset::RuleSet::parse(&file(
        today - chrono::Duration::days(3),
        today + chrono::Duration::days(3),
    ))
    .unwrap();
    let outside = sanyu_ruleset::RuleSet::parse(&file(
        today + chrono::Duration::days(30),
        today + chrono::Duration::days(40),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        file(
            today + chrono::Duration::days(30),
            today + chrono::Duration::days(40),
        ),
    )
    .unwrap();
    assert_eq!(inside.periods.len(), outside.periods.len());
    let rules = Arc::new(
        Rules::load(&RulesConfig {
            file: path.display().to_string(),
            ..RulesConfig::default()
        })
        .unwrap(),
    );
    let engine = engine(&db, rules.clone());
    // Outside the period a watch-level report puts the student on the watch list…
    let watched = engine
        .decide(&report("report:w", s1, RiskLevel::Watch))
        .await
        .unwrap();
    assert!(matches!(watched, Decided::Watched { .. }), "{watched:?}");
    let school = roster::school_by_code(&db, "SCH1").await.unwrap().unwrap();
    let list = decisions::watches_of_school(&db, school.id, None)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].student_id, s1);
    assert_eq!(list[0].rule_id, "watch.mild");
    assert_eq!(list[0].follow_up_on, today + chrono::Duration::days(14));
    // …inside it, the same report opens a case.
    std::fs::write(
        &path,
        file(
            today - chrono::Duration::days(3),
            today + chrono::Duration::days(3),
        ),
    )
    .unwrap();
    rules.reload().unwrap();
    let opened = engine
        .decide(&report("report:p", s2, RiskLevel::Watch))
        .await
        .unwrap();
    assert!(
        matches!(
            opened,
            Decided::Opened {
                level: RiskLevel::Elevated,
                ..
            }
        ),
        "{opened:?}"
    );
    assert_eq!(
        decision_of(&db, "report:p").await.rule_id,
        "gaokao.stricter"
    );
}

on_both_databases!(two_engines_never_decide_one_student_at_once);
async fn two_engines_never_decide_one_student_at_once(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    add_students(&db, "SCH1", 8).await;
    let mut students = Vec::new();
    for i in 0..8 {
        students.push(student(&db, &format!("B{i:05}")).await);
    }
    // Two engines with their own connection pools, as two processes would have.
    let db2 = test_db.connect().await;
    let engines = [
        Arc::new(engine(&db, Arc::new(Rules::builtin()))),
        Arc::new(engine(&db2, Arc::new(Rules::builtin()))),
    ];
    // 240 signals about 8 students; every signal offered to both engines in
    // batches of 12, in different orders.
    let levels = [RiskLevel::Elevated, RiskLevel::High, RiskLevel::Watch];
    let payloads: Vec<Vec<u8>> = (0..240)
        .map(|i| report(&format!("report:{i}"), students[i % 8], levels[i % 3]))
        .collect();
    let payloads = Arc::new(payloads);
    let mut tasks = Vec::new();
    for (n, engine) in engines.iter().enumerate() {
        let (engine, payloads) = (engine.clone(), payloads.clone());
        tasks.push(tokio::spawn(async move {
            let mut order: Vec<usize> = (0..payloads.len()).collect();
            if n == 1 {
                order.reverse();
            }
            for chunk in order.chunks(12) {
                let batch: Vec<Incoming<'_>> = chunk
                    .iter()
                    .map(|i| Incoming {
                        payload: &payloads[*i],
                        traceparent: None,
                    })
                    .collect();
                // A batch that lost a race is retried, as the consumer would.
                let mut tries = 0;
                loop {
                    match engine.decide_batch(&batch).await {
                        Ok(results) => {
                            assert!(results.iter().all(Result::is_ok), "{results:?}");
                            break;
                        }
                        Err(RulesError::Store(e)) if tries < 50 => {
                            tries += 1;
                            let _ = e;
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("batch failed: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(decisions::count(&db).await.unwrap(), 240);
    let per = open_cases_per_student(&db).await;
    assert_eq!(per.len(), 8);
    assert!(per.values().all(|n| *n == 1));
    // Every high report decided after the student's case reached high attached or raised, never opened.
    let opened = decision::Entity::find()
        .filter(decision::Column::Decision.eq("opened"))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(opened.len(), 8, "one opening decision per student");
}

on_both_databases!(a_zero_report_incident_is_its_own_source);
async fn a_zero_report_incident_is_its_own_source(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let s1 = student(&db, "S1").await;
    let engine = engine(&db, Arc::new(Rules::builtin()));
    let decided = engine
        .decide(&zero_incident("report:zero", s1, RiskLevel::Elevated))
        .await
        .unwrap();
    assert!(matches!(decided, Decided::Opened { .. }), "{decided:?}");
    let d = decision_of(&db, "report:zero").await;
    assert_eq!(d.source, "zero_report");
    assert_eq!(d.rule_id, "report.opens_at_its_level");
}

/// The rung timers of a case, as (epoch, rung, state).
async fn rung_timers(db: &Db, case_id: Uuid) -> Vec<(i32, u32, String)> {
    let mut out: Vec<(i32, u32, String)> = sanyu_store::entities::timer::Entity::find()
        .filter(sanyu_store::entities::timer::Column::CaseId.eq(case_id))
        .filter(sanyu_store::entities::timer::Column::Kind.eq(sanyu_escalation::RUNG_TIMER))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| {
            let parsed = sanyu_escalation::parse_timer(&t.payload).unwrap();
            (parsed.epoch, parsed.rung, t.state)
        })
        .collect();
    out.sort();
    out
}

/// The outbox events of a batch whose id starts with `prefix`.
async fn outbox_ids(db: &Db, prefix: &str) -> Vec<String> {
    let mut ids: Vec<String> = sanyu_store::entities::outbox::Entity::find()
        .filter(sanyu_store::entities::outbox::Column::EventId.starts_with(prefix))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.event_id)
        .collect();
    ids.sort();
    ids
}

// A raise decided in a batch restarts the case's ladder at the new level, as
// `escalation::start` does: the new ladder snapshot and epoch, the ack
// deadline, the old ladder's rung timer cancelled and the new one pending,
// the first contacts of the new level told, CaseEscalated in the outbox and
// the signal attached as `raised`. Also when the case was opened earlier in
// the same batch.
on_both_databases!(a_raise_in_a_batch_restarts_the_ladder_at_the_new_level);
async fn a_raise_in_a_batch_restarts_the_ladder_at_the_new_level(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let (s1, s2, s3) = (
        student(&db, "S1").await,
        student(&db, "S2").await,
        student(&db, "S3").await,
    );
    let engine = engine(&db, Arc::new(Rules::builtin()));
    let policy = EscalationPolicy::default();
    let school = roster::school_by_code(&db, "SCH1").await.unwrap().unwrap();

    let Decided::Opened { case_id, .. } = engine
        .decide(&report("report:s1:first", s1, RiskLevel::Elevated))
        .await
        .unwrap()
    else {
        panic!("expected a case");
    };
    let before = sanyu_store::cases::get(&db, case_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.ladder_epoch, 1);
    assert_eq!(
        rung_timers(&db, case_id).await,
        vec![(1, 1, "pending".into())]
    );

    let payloads = vec![
        report("report:s1:critical", s1, RiskLevel::Critical),
        report("report:s2", s2, RiskLevel::Elevated),
        // Opened and raised in the same batch.
        report("report:s3:first", s3, RiskLevel::Elevated),
        report("report:s3:critical", s3, RiskLevel::Critical),
    ];
    let results = engine.decide_batch(&incoming(&payloads)).await.unwrap();
    assert_eq!(
        results[0].as_ref().unwrap(),
        &vec![Decided::Raised {
            case_id,
            from: RiskLevel::Elevated,
            to: RiskLevel::Critical
        }]
    );
    assert!(matches!(
        results[1].as_ref().unwrap()[0],
        Decided::Opened { .. }
    ));
    let Decided::Opened {
        case_id: s3_case, ..
    } = results[2].as_ref().unwrap()[0]
    else {
        panic!("expected a case for S3: {:?}", results[2]);
    };
    assert!(matches!(
        results[3].as_ref().unwrap()[0],
        Decided::Raised { case_id, to: RiskLevel::Critical, .. } if case_id == s3_case
    ));

    let critical = policy.ladder(RiskLevel::Critical);
    let first_roles: Vec<_> = critical.first.iter().map(|t| t.role()).collect();
    let first = sanyu_escalation::reachable(&db, school.id, &first_roles)
        .await
        .unwrap();
    assert!(!first.is_empty(), "the fixture school has first contacts");
    for (id, signal) in [
        (case_id, "report:s1:critical"),
        (s3_case, "report:s3:critical"),
    ] {
        let after = sanyu_store::cases::get(&db, id).await.unwrap().unwrap();
        assert_eq!(after.level, RiskLevel::Critical);
        assert_eq!(after.level_rank, RiskLevel::Critical.rank());
        assert_eq!(after.ladder_epoch, 2, "the ladder restarted");
        assert_eq!(after.ladder_state, LadderState::Running);
        assert_eq!(
            sanyu_escalation::ladder_of(&after).unwrap().as_ref(),
            Some(&critical)
        );
        let started = after.ladder_started_at.expect("ladder start");
        assert_eq!(after.ack_deadline, Some(critical.ack_deadline(started)));
        assert!(after.version > 1);
        // The elevated ladder's rung is cancelled; the critical one waits.
        assert_eq!(
            rung_timers(&db, id).await,
            vec![(1, 1, "cancelled".into()), (2, 1, "pending".into())]
        );
        // CaseEscalated and the critical ladder's first contacts, epoch 2.
        assert_eq!(
            outbox_ids(&db, &format!("case.escalated:{id}")).await,
            vec![format!("case.escalated:{id}:{signal}")]
        );
        let mut told: Vec<String> = first
            .iter()
            .map(|s| format!("notify.requested:{id}:{}:e2:r0", s.id))
            .collect();
        told.sort();
        let mut requested = outbox_ids(&db, &format!("notify.requested:{id}:")).await;
        requested.retain(|e| e.ends_with(":e2:r0"));
        assert_eq!(requested, told);
        let raised: Vec<_> = sanyu_store::entities::case_signal::Entity::find()
            .filter(sanyu_store::entities::case_signal::Column::CaseId.eq(id))
            .filter(sanyu_store::entities::case_signal::Column::Decision.eq("raised"))
            .all(&db)
            .await
            .unwrap();
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].event_id, signal);
    }
}

// A watch decision schedules the entry's follow-up reminder (the scheduler
// sends it) on its follow-up date, once per entry and date, also when one
// batch watches a student twice.
on_both_databases!(a_watch_decision_schedules_its_follow_up_reminder);
async fn a_watch_decision_schedules_its_follow_up_reminder(test_db: TestDb) {
    use sanyu_store::entities::{timer, watch_entry};
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let (s1, s2) = (student(&db, "S1").await, student(&db, "S2").await);
    let engine = engine(&db, Arc::new(Rules::builtin()));

    let Decided::Watched { follow_up_on } = engine
        .decide(&report("report:s1:mild", s1, RiskLevel::Watch))
        .await
        .unwrap()
    else {
        panic!("expected the watch list");
    };
    let payloads = vec![
        report("report:s2:mild:1", s2, RiskLevel::Watch),
        report("report:s2:mild:2", s2, RiskLevel::Watch),
    ];
    let results = engine.decide_batch(&incoming(&payloads)).await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r.as_ref().unwrap()[0], Decided::Watched { .. }))
    );

    let entries = watch_entry::Entity::find().all(&db).await.unwrap();
    assert_eq!(entries.len(), 2, "one entry per student");
    let reminders = timer::Entity::find()
        .filter(timer::Column::Kind.eq(sanyu_escalation::WATCH_FOLLOW_UP_TIMER))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(reminders.len(), 2, "one reminder per entry");
    for entry in &entries {
        assert_eq!(entry.follow_up_on, follow_up_on);
        let reminder = reminders
            .iter()
            .find(|t| t.key == format!("watch:{}:{follow_up_on}", entry.id))
            .expect("the entry's reminder");
        assert_eq!(
            reminder.due_at,
            follow_up_on.and_hms_opt(0, 0, 0).unwrap().and_utc()
        );
        assert_eq!(reminder.state, "pending");
    }
}
