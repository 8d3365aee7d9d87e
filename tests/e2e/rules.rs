//! The rules engine as a service (issue 4), with the real binaries:
//! - a 5,000-signal run with 10 % duplicate publishes while the engine is
//!   SIGKILLed at random points and restarted: every signal has exactly one
//!   decision, no student has two open cases, no case event is missing or doubled;
//! - two engines at once split the work and agree;
//! - a signal about an unknown student ends in the dead-letter stream and in
//!   the crisis team's review list, and does not block the next one;
//! - a new rules file is loaded without a restart, its version recorded, and
//!   `GET /v1/cases/{id}` says why the case exists and why its level is what it is;
//! - `sanyu rules simulate` on a seeded history prints what a candidate would change.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use sanyu_domain::{RiskLevel, student_partition};
use sanyu_e2e::Stack;
use sanyu_e2e::support::fixtures::add_students;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::entities::{case, decision, outbox, student};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

fn report_event(event_id: &str, student: Uuid, level: RiskLevel) -> Vec<u8> {
    sanyu_events::encode(&sanyu_events::envelope(
        event_id,
        chrono::Utc::now(),
        "SCH1",
        student_partition(student),
        Payload::ReportSubmitted(v1::ReportSubmitted {
            report_id: Uuid::now_v7().to_string(),
            student_id: student.to_string(),
            class_code: "C1".into(),
            category: "low_mood".into(),
            suggested_level: sanyu_events::level_to_proto(level) as i32,
            observed_at: Some(sanyu_events::timestamp(chrono::Utc::now())),
            reporter_token_id: Uuid::nil().to_string(),
            zero_report: false,
        }),
    ))
}

async fn publish(js: &jetstream::Context, subject: String, msg_id: &str, payload: Vec<u8>) {
    js.send_publish(
        subject,
        jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(msg_id),
    )
    .await
    .expect("publish")
    .await
    .expect("publish ack");
}

/// A small deterministic generator (xorshift), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn bench_students(stack: &Stack, n: usize) -> Vec<Uuid> {
    add_students(&stack.conn, "SCH1", n).await;
    student::Entity::find()
        .filter(student::Column::StudentNo.starts_with("B"))
        .all(&stack.conn)
        .await
        .expect("students")
        .into_iter()
        .map(|s| s.id)
        .collect()
}

async fn streams_ready(js: &jetstream::Context) {
    eventually(Duration::from_secs(20), "INTAKE stream", || async {
        js.get_stream(subjects::INTAKE_STREAM)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// Every message id on the CASE stream, with how often it is there.
async fn case_stream_ids(js: &jetstream::Context) -> HashMap<String, usize> {
    let mut stream = js.get_stream(subjects::CASE_STREAM).await.expect("CASE");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut ids = HashMap::new();
    for seq in 1..=last {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .expect("every case event carries its id");
        *ids.entry(id).or_default() += 1;
    }
    ids
}

const SIGNALS: usize = 5_000;

async fn crash_run(db: TestDb) {
    let mut stack = Stack::new(db).await;
    let students = bench_students(&stack, 500).await;
    stack.start_rules(&[]);
    let js = jetstream::new(stack.nats.client().await);
    streams_ready(&js).await;

    // Publish 5,000 signals with 10 % duplicates: half of them the same
    // message again (JetStream drops it), half the same event under another
    // message id (the engine's processed record must catch it).
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let levels = [
        RiskLevel::Watch,
        RiskLevel::Watch,
        RiskLevel::Elevated,
        RiskLevel::Elevated,
        RiskLevel::High,
    ];
    let mut published = HashSet::new();
    let publisher = {
        let js = js.clone();
        let mut plan = Vec::with_capacity(SIGNALS);
        for i in 0..SIGNALS {
            let student = students[rng.below(students.len() as u64) as usize];
            let level = if rng.below(100) == 0 {
                RiskLevel::Critical
            } else {
                levels[rng.below(levels.len() as u64) as usize]
            };
            let event_id = format!("report:crash:{i}");
            published.insert(event_id.clone());
            plan.push((event_id, student, level, i % 10 == 0, i % 20 == 0));
        }
        tokio::spawn(async move {
            for (event_id, student, level, duplicate, same_id) in plan {
                let subject = subjects::report_submitted("SCH1", student_partition(student));
                let payload = report_event(&event_id, student, level);
                publish(&js, subject.clone(), &event_id, payload.clone()).await;
                if duplicate {
                    let id = if same_id {
                        event_id.clone()
                    } else {
                        format!("{event_id}:republished")
                    };
                    publish(&js, subject, &id, payload).await;
                }
            }
        })
    };

    // SIGKILL the engine at random points while it works, and restart it.
    let mut kills = 0;
    while kills < 6 {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(900))).await;
        if let Some(rules) = stack.rules.as_mut() {
            rules.kill();
        }
        kills += 1;
        stack.start_rules(&[]);
    }
    publisher.await.expect("publisher");

    // Every signal decided exactly once.
    let conn = stack.conn.clone();
    eventually(Duration::from_secs(180), "every signal decided", || async {
        let n = decision::Entity::find().count(&conn).await.ok()?;
        (n as usize == SIGNALS).then_some(())
    })
    .await;
    let decided: Vec<decision::Model> = decision::Entity::find()
        .all(&conn)
        .await
        .expect("decisions");
    let ids: HashSet<String> = decided.iter().map(|d| d.signal_id.clone()).collect();
    assert_eq!(
        ids, published,
        "every published signal has exactly one decision"
    );

    // No student has two open cases.
    let mut open: HashMap<Uuid, usize> = HashMap::new();
    let cases = case::Entity::find().all(&conn).await.expect("cases");
    for c in cases.iter().filter(|c| c.status.is_active()) {
        *open
            .entry(c.student_id.expect("a student's case"))
            .or_default() += 1;
    }
    assert!(
        open.values().all(|n| *n == 1),
        "a student with two open cases"
    );
    assert!(!cases.is_empty());

    // No case event missing or doubled: once the outbox is drained, every case
    // event the decisions imply is on the CASE stream exactly once.
    eventually(Duration::from_secs(60), "outbox drained", || async {
        let left = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .count(&conn)
            .await
            .ok()?;
        (left == 0).then_some(())
    })
    .await;
    let on_stream = case_stream_ids(&js).await;
    assert!(
        on_stream.values().all(|n| *n == 1),
        "a case event is doubled on the stream"
    );
    let mut expected = HashSet::new();
    for c in &cases {
        expected.insert(format!("case.opened:{}", c.id));
    }
    for d in &decided {
        match (d.decision.as_str(), d.case_id) {
            ("raised", Some(case_id)) => {
                expected.insert(format!("case.escalated:{case_id}:{}", d.signal_id));
            }
            ("attached", Some(case_id)) => {
                expected.insert(format!("case.signal_attached:{case_id}:{}", d.signal_id));
            }
            _ => {}
        }
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !on_stream.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "case events missing: {:?}",
        &missing[..missing.len().min(5)]
    );
    let opened_events = on_stream
        .keys()
        .filter(|k| k.starts_with("case.opened:"))
        .count();
    assert_eq!(opened_events, cases.len(), "one case.opened per case");
    eprintln!(
        "crash run: {SIGNALS} signals, {kills} kills, {} cases, {} case events",
        cases.len(),
        on_stream.len()
    );
}

#[tokio::test]
async fn crash_run_on_sqlite() {
    crash_run(TestDb::sqlite()).await;
}

#[tokio::test]
async fn crash_run_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        crash_run(db).await;
    }
}

/// Two engines at once: both decide (the work is split), and the result is
/// the same as one engine's: one decision per signal, one open case per student.
async fn two_replicas(db: TestDb) {
    let mut stack = Stack::new(db).await;
    let students = bench_students(&stack, 50).await;
    stack.start_rules(&[(
        "SANYU_TELEMETRY__LOG_FILTER",
        "info,sanyu_rules=debug".to_owned(),
    )]);
    let first = stack.rules.take();
    stack.start_rules(&[(
        "SANYU_TELEMETRY__LOG_FILTER",
        "info,sanyu_rules=debug".to_owned(),
    )]);
    let js = jetstream::new(stack.nats.client().await);
    streams_ready(&js).await;
    let n = 1_000;
    for i in 0..n {
        let student = students[i % students.len()];
        let level = [RiskLevel::Watch, RiskLevel::Elevated, RiskLevel::High][i % 3];
        let id = format!("report:replica:{i}");
        publish(
            &js,
            subjects::report_submitted("SCH1", student_partition(student)),
            &id,
            report_event(&id, student, level),
        )
        .await;
    }
    let conn = stack.conn.clone();
    eventually(Duration::from_secs(90), "every signal decided", || async {
        let d = decision::Entity::find().count(&conn).await.ok()?;
        (d as usize == n).then_some(())
    })
    .await;
    let mut open: HashMap<Uuid, usize> = HashMap::new();
    for c in case::Entity::find().all(&conn).await.expect("cases") {
        *open
            .entry(c.student_id.expect("a student's case"))
            .or_default() += 1;
    }
    assert_eq!(open.len(), students.len());
    assert!(open.values().all(|n| *n == 1));
    let first = first.expect("first engine");
    let second = stack.rules.as_ref().expect("second engine");
    for engine in [&first, second] {
        assert!(
            engine.logs().contains("signal decided"),
            "both engines took part:\n{}",
            engine.logs()
        );
    }
}

#[tokio::test]
async fn two_replicas_on_sqlite() {
    two_replicas(TestDb::sqlite()).await;
}

#[tokio::test]
async fn two_replicas_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        two_replicas(db).await;
    }
}

#[tokio::test]
async fn an_unknown_student_is_dead_lettered_for_the_crisis_team_to_review() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let js = jetstream::new(stack.nats.client().await);
    streams_ready(&js).await;
    let stranger = Uuid::now_v7();
    publish(
        &js,
        subjects::report_submitted("SCH1", student_partition(stranger)),
        "report:stranger",
        report_event("report:stranger", stranger, RiskLevel::High),
    )
    .await;
    // The next signal is not held up.
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    stack.wait_for_cases(1).await;
    let letters: Vec<Value> = eventually(Duration::from_secs(30), "dead letter listed", || async {
        let r = stack
            .get(&stack.school.crisis_team, "/v1/dead-letters")
            .await;
        let v: Vec<Value> = r.json().await.ok()?;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(letters[0]["event_id"], "report:stranger");
    assert_eq!(letters[0]["consumer"], "rules");
    let reason = letters[0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("unknown student"), "{reason}");
    // Never decided, never dropped: no decision, and the other school does not see it.
    assert_eq!(
        decision::Entity::find()
            .filter(decision::Column::SignalId.eq("report:stranger"))
            .count(&stack.conn)
            .await
            .expect("count"),
        0
    );
    let other: Vec<Value> = stack
        .get(&stack.other_school.crisis_team, "/v1/dead-letters")
        .await
        .json()
        .await
        .expect("json");
    assert!(other.is_empty(), "{other:?}");

    // Dealt with: the crisis team resolves it, and it leaves the open list.
    // Another school's crisis team cannot; a teacher may not.
    let id = letters[0]["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/dead-letters/{id}/resolve");
    let r = stack
        .post_json(&stack.other_school.crisis_team, &path, &json!({}))
        .await;
    assert_eq!(r.status(), 404);
    let r = stack
        .post_json(&stack.school.teacher_c1, &path, &json!({}))
        .await;
    assert_eq!(r.status(), 403);
    let r = stack
        .post_json(&stack.school.crisis_team, &path, &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let r = stack
        .post_json(&stack.school.crisis_team, &path, &json!({}))
        .await;
    assert_eq!(r.status(), 200, "resolving twice answers the same");
    let open: Vec<Value> = stack
        .get(&stack.school.crisis_team, "/v1/dead-letters")
        .await
        .json()
        .await
        .expect("json");
    assert!(
        !open.iter().any(|d| d["id"] == json!(id)),
        "a resolved dead letter is not listed: {open:?}"
    );
}

const RULES_V1: &str = r#"
version = "e2e-v1"
[[rule]]
id = "v1.reports"
description = "Reports open a case at elevated"
when = { source = ["report"], level_at_least = "elevated" }
then = { action = "case", level = "elevated" }
"#;

const RULES_V2: &str = r#"
version = "e2e-v2"
[[rule]]
id = "v2.reports"
description = "Reports open a case at high"
when = { source = ["report"], level_at_least = "elevated" }
then = { action = "case", level = "high" }
"#;

async fn case_of(stack: &Stack, token: &str, student_no: &str) -> Value {
    let conn = stack.conn.clone();
    let school = sanyu_store::roster::school_by_code(&conn, "SCH1")
        .await
        .expect("query")
        .expect("school");
    let student = student::Entity::find()
        .filter(student::Column::StudentNo.eq(student_no))
        .filter(student::Column::SchoolId.eq(school.id))
        .one(&conn)
        .await
        .expect("query")
        .expect("student");
    let case = eventually(Duration::from_secs(20), "case opened", || async {
        case::Entity::find()
            .filter(case::Column::StudentId.eq(student.id))
            .one(&conn)
            .await
            .ok()
            .flatten()
    })
    .await;
    stack
        .get(token, &format!("/v1/cases/{}", case.id))
        .await
        .json()
        .await
        .expect("case json")
}

#[tokio::test]
async fn a_new_rules_file_is_loaded_without_restart_and_cases_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, RULES_V1).expect("write rules");
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    stack.start_rules(&[
        ("SANYU_RULES__FILE", file.display().to_string()),
        ("SANYU_RULES__RELOAD_SECS", "1".to_owned()),
    ]);
    let token = stack.school.crisis_team.clone();
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "elevated", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let detail = case_of(&stack, &token, "S1").await;
    let why = &detail["why"];
    assert_eq!(why["opened_by"]["rule_id"], "v1.reports", "{detail}");
    assert_eq!(why["opened_by"]["rules_version"], "e2e-v1");
    assert_eq!(why["opened_by"]["used"][0]["source"], "report");
    assert_eq!(why["level_set_by"], "rule");
    assert_eq!(detail["level"], "elevated");

    // A new version, picked up by the running engine.
    std::fs::write(&file, RULES_V2).expect("write rules");
    eventually(
        Duration::from_secs(20),
        "new rules version in force",
        || async {
            let logs = stack.rules.as_ref()?.logs();
            logs.contains("e2e-v2").then_some(())
        },
    )
    .await;
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S2", "elevated", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let detail = case_of(&stack, &token, "S2").await;
    assert_eq!(detail["level"], "high");
    assert_eq!(detail["why"]["opened_by"]["rule_id"], "v2.reports");
    assert_eq!(detail["why"]["opened_by"]["rules_version"], "e2e-v2");

    // A person lowers the level: the case now says a person set it.
    let case_id = detail["id"].as_str().expect("id").to_owned();
    let r = stack
        .act(
            &token,
            &case_id,
            "level",
            json!({"level": "elevated", "reason": "seen by the counsellor"}),
        )
        .await;
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let detail: Value = stack
        .get(&token, &format!("/v1/cases/{case_id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(detail["why"]["level_set_by"], "person", "{detail}");
    assert_eq!(detail["why"]["level_action"]["action"], "level");
}

#[tokio::test]
async fn simulate_prints_what_a_candidate_would_change_per_school() {
    use sanyu_platform::relay::Waker;
    use sanyu_rules::{Rules, RulesEngine};
    let stack = Stack::new(TestDb::sqlite()).await;
    // A seeded history: decided by the engine (built-in rules) in this process.
    let engine = RulesEngine::new(
        stack.conn.clone(),
        Waker::default(),
        sanyu_domain::EscalationPolicy::default(),
        std::sync::Arc::new(Rules::builtin()),
    );
    let school = sanyu_store::roster::school_by_code(&stack.conn, "SCH1")
        .await
        .expect("query")
        .expect("school");
    let mut ids = Vec::new();
    for no in ["S1", "S2", "S3"] {
        ids.push(
            student::Entity::find()
                .filter(student::Column::StudentNo.eq(no))
                .filter(student::Column::SchoolId.eq(school.id))
                .one(&stack.conn)
                .await
                .expect("query")
                .expect("student")
                .id,
        );
    }
    let history = [
        (ids[0], RiskLevel::Watch),
        (ids[1], RiskLevel::Watch),
        (ids[2], RiskLevel::Elevated),
    ];
    for (i, (student, level)) in history.iter().enumerate() {
        engine
            .decide(&report_event(&format!("report:sim:{i}"), *student, *level))
            .await
            .expect("decide");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(
        &candidate,
        r#"
version = "candidate-1"
[[rule]]
id = "every.report.opens"
when = { source = ["report"], level_at_least = "watch" }
then = { action = "case", level = "elevated" }
"#,
    )
    .expect("write");
    let today = chrono::Utc::now().date_naive();
    let output = std::process::Command::new(sanyu_e2e::support::binary("sanyu"))
        .args(["rules", "simulate", "--rules"])
        .arg(&candidate)
        .args([
            "--from",
            &(today - chrono::Duration::days(1)).to_string(),
            "--to",
            &today.to_string(),
        ])
        .env("SANYU_DATABASE__URL", stack.db.url())
        .env("SANYU_SECURITY__DATA_KEY", &stack.data_key)
        .output()
        .expect("run sanyu rules simulate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("candidate: candidate-1"), "{stdout}");
    assert!(stdout.contains("school SCH1: 3 signals"), "{stdout}");
    // In force: one case (the elevated report), two students watched.
    // Candidate: three cases, nobody only watched.
    let line = |what: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(what))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(line("cases opened"), "cases opened 1 -> 3 (+2)", "{stdout}");
    assert_eq!(line("watch list"), "watch list 2 -> 0 (-2)", "{stdout}");
    assert_eq!(
        line("levels raised"),
        "levels raised 0 -> 0 (+0)",
        "{stdout}"
    );
    assert!(
        stdout.contains("signals decided differently: 3"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("SCH2"),
        "a school without signals is not listed"
    );
    // Nothing was changed by the simulation.
    assert_eq!(
        case::Entity::find()
            .count(&stack.conn)
            .await
            .expect("count"),
        1
    );
}
