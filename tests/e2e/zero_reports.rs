//! Zero reports (零报告) end to end: the real gateway, rules engine and
//! notifier on NATS, a database and the SMTP server, with the scheduler's
//! reminder timers driven in-process by an injected clock (`Scheduler::tick`).
//!
//! One period: class C1 reports zero, C2 reports an incident (which becomes a
//! case), C3 stays missing → its head teacher is reminded before the deadline
//! and the school's leader is told after it. Compliance shows the three
//! states; a second, already-late period shows a late submission flipping
//! `missing`; a correction is a new version; the 409 rule; the scope rules.

use std::time::Duration;

use chrono::Utc;
use sanyu_domain::Role;
use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually, fixtures};
use sanyu_platform::relay::Waker;
use sanyu_scheduler::Scheduler;
use sanyu_store::entities::zero_report;
use sanyu_store::roster::{self, ImportScope};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

fn calendar_env(now: chrono::DateTime<Utc>) -> (String, sanyu_domain::zero_report::Calendar) {
    let t = |d: chrono::Duration| (now + d).to_rfc3339();
    let periods = format!(
        r#"[{{id="midterm", name="期中考试", kind="midterm_exam", opens_at="{}", deadline="{}", levels=["class", "school"]}}, {{id="holiday", name="国庆假期", kind="holiday", opens_at="{}", deadline="{}", levels=["class", "school"]}}]"#,
        t(-chrono::Duration::hours(1)),
        t(chrono::Duration::hours(3)),
        t(-chrono::Duration::hours(3)),
        t(-chrono::Duration::minutes(1)),
    );
    let calendar = sanyu_domain::zero_report::Calendar {
        periods: serde_json::from_value(json!([
            {"id": "midterm", "name": "期中考试", "kind": "midterm_exam",
             "opens_at": t(-chrono::Duration::hours(1)), "deadline": t(chrono::Duration::hours(3)),
             "levels": ["class", "school"]},
            {"id": "holiday", "name": "国庆假期", "kind": "holiday",
             "opens_at": t(-chrono::Duration::hours(3)), "deadline": t(-chrono::Duration::minutes(1)),
             "levels": ["class", "school"]},
        ]))
        .expect("periods"),
        ..Default::default()
    };
    (periods, calendar)
}

/// A third class C3 with student S9 and head teacher T3.
async fn add_class_c3(stack: &Stack) -> String {
    let code = &stack.school.code;
    let txn = sanyu_store::begin_write(&stack.conn).await.expect("begin");
    let s = roster::import_students(
        &*txn,
        format!("school_code,grade_code,class_code,class_name,student_no,student_name\n{code},G1,C3,Class 3,S9,Student Nine\n").as_bytes(),
        ImportScope::Operator,
    )
    .await
    .expect("students");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let s = roster::import_staff(
        &*txn,
        format!("school_code,staff_no,name,role,class_code,phone,email\n{code},T3,Teacher Three,teacher,C3,,t3@{}.test\n", code.to_lowercase()).as_bytes(),
        ImportScope::Operator,
    )
    .await
    .expect("staff");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    txn.commit().await.expect("commit");
    fixtures::staff_token(&stack.conn, Role::Teacher, code, Some("C3"), Some("T3")).await
}

fn zero(period: &str, class: Option<&str>) -> Value {
    json!({"period_id": period, "class_code": class, "zero": true})
}

fn incident(period: &str, class: Option<&str>, student: &str, level: &str) -> Value {
    json!({"period_id": period, "class_code": class, "incidents": [
        {"student_no": student, "category": "self_harm", "level": level, "narrative": "seen at lunch"}
    ]})
}

async fn compliance(stack: &Stack, token: &str, period: &str) -> Value {
    let r = stack
        .get(
            token,
            &format!("/v1/zero-report-periods/{period}/compliance"),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

fn state_of(c: &Value, unit: &str) -> String {
    c["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["unit"] == unit))
        .map(|u| u["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

async fn a_period_with_zero_incidents_and_missing_units(db: TestDb) {
    let now = Utc::now();
    let (periods, calendar) = calendar_env(now);
    let mut stack = Stack::new(db).await;
    let settings = [("SANYU_ZERO_REPORT__PERIODS", periods)];
    stack.start_gateway_with(&settings).await;
    stack.start_rules(&[]);
    stack.start_notifier();
    let teacher_c3 = add_class_c3(&stack).await;
    let school = stack.school.clone();
    let sch = school.code.to_lowercase();

    let r = stack
        .get(&school.teacher_c1, "/v1/zero-report-periods")
        .await;
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.expect("json");
    assert_eq!(listed["periods"].as_array().map(Vec::len), Some(2));

    // Scope: a teacher reports for their own class only; a monitor never.
    let r = stack
        .post_json(
            &school.teacher_c1,
            "/v1/zero-reports",
            &zero("midterm", Some("C2")),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = stack
        .post_json(
            &school.monitor_c1,
            "/v1/zero-reports",
            &zero("midterm", Some("C1")),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = stack
        .post_json(
            &school.teacher_c1,
            "/v1/zero-reports",
            &zero("midterm", None),
        )
        .await;
    assert_eq!(r.status(), 403, "a teacher does not report for the school");
    let r = stack
        .post_json(
            &stack.other_school.teacher_c1,
            "/v1/zero-reports",
            &zero("nope", Some("C1")),
        )
        .await;
    assert_eq!(r.status(), 404);
    // Bad input: neither zero nor incidents; an incident about another class's student.
    let r = stack
        .post_json(
            &school.teacher_c1,
            "/v1/zero-reports",
            &json!({"period_id": "midterm", "class_code": "C1"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = stack
        .post_json(
            &school.teacher_c1,
            "/v1/zero-reports",
            &incident("midterm", Some("C1"), "S3", "high"),
        )
        .await;
    assert_eq!(r.status(), 422);

    // C1 reports zero; C2 reports an incident, which becomes a case.
    let r = stack
        .post_json(
            &school.teacher_c1,
            "/v1/zero-reports",
            &zero("midterm", Some("C1")),
        )
        .await;
    assert_eq!(r.status(), 201);
    let c1: Value = r.json().await.expect("json");
    assert_eq!(
        (c1["state"].as_str(), c1["late"].as_bool()),
        (Some("zero"), Some(false))
    );
    // The same report again: the current version, nothing new.
    let r = stack
        .post_json(
            &school.teacher_c1,
            "/v1/zero-reports",
            &zero("midterm", Some("C1")),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = stack
        .post_json(
            &school.teacher_c2,
            "/v1/zero-reports",
            &incident("midterm", Some("C2"), "S3", "high"),
        )
        .await;
    assert_eq!(r.status(), 201);
    let cases = stack.wait_for_cases(1).await;
    assert_eq!(cases[0]["level"], "high");

    // The 409 rule: the school cannot declare zero while C2 reported incidents.
    let r = stack
        .post_json(&school.leader, "/v1/zero-reports", &zero("midterm", None))
        .await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("C2"),
        "{body}"
    );

    // A correction is a new version; the first stays as history.
    let mut corrected = incident("midterm", Some("C2"), "S3", "high");
    corrected["incidents"][0]["narrative"] = json!("seen at lunch, and again after school");
    let r = stack
        .post_json(&school.teacher_c2, "/v1/zero-reports", &corrected)
        .await;
    assert_eq!(r.status(), 201);
    let v2: Value = r.json().await.expect("json");
    assert_eq!(v2["version"], 2);
    assert_eq!(
        v2["report_ids"].as_array().map(Vec::len),
        Some(0),
        "the same incident is not filed twice"
    );
    let versions = zero_report::Entity::find()
        .filter(zero_report::Column::Unit.eq("C2"))
        .all(&stack.conn)
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions.iter().filter(|v| v.current).count(), 1);

    // Compliance: the three states, and the missing unit named.
    let c = compliance(&stack, &school.leader, "midterm").await;
    assert_eq!(
        (state_of(&c, "C1"), state_of(&c, "C2"), state_of(&c, "C3")),
        ("zero".into(), "incidents".into(), "missing".into())
    );
    assert_eq!(c["missing"], json!(["C3"]));
    assert_eq!(c["counts"]["missing"], 1);
    let r = stack
        .get(
            &school.leader,
            "/v1/zero-report-periods/midterm/compliance?format=csv",
        )
        .await;
    assert_eq!(r.status(), 200);
    let csv = r.text().await.expect("csv");
    assert!(
        csv.starts_with("unit,state,late,version,submitted_at\n"),
        "{csv}"
    );
    assert!(csv.contains("C3,missing,false,0,"), "{csv}");
    // Teachers do not read compliance; the district sees schools.
    assert_eq!(
        stack
            .get(
                &school.teacher_c1,
                "/v1/zero-report-periods/midterm/compliance"
            )
            .await
            .status(),
        403
    );
    let d = compliance(&stack, &school.district, "midterm").await;
    assert_eq!(d["scope"], "district");
    assert_eq!(state_of(&d, &school.code), "missing");

    // Reminders, by the scheduler's timers with an injected clock.
    let scheduler = Scheduler::new(
        stack.conn.clone(),
        Waker::default(),
        Duration::from_secs(120),
    )
    .with_zero_reports(calendar.clone());
    let tick = scheduler.tick(now).await.expect("tick");
    assert!(tick.fired >= 1, "{tick:?}");
    let t3 = format!("t3@{sch}.test");
    let leader = format!("leader@{sch}.test");
    let reminder = eventually(Duration::from_secs(30), "C3's reminder", || async {
        stack
            .smtp
            .received()
            .into_iter()
            .find(|m| m.to.contains(&t3))
    })
    .await;
    assert!(reminder.text().contains("midterm"), "{}", reminder.text());
    assert!(!reminder.text().contains("seen at lunch"));
    let t1 = format!("t1@{sch}.test");
    assert!(
        !stack.smtp.received().iter().any(|m| m.to.contains(&t1)),
        "C1 reported: no reminder"
    );
    // After the deadline the school's leader is told (C3 and the school are missing).
    let midterm = calendar.period("midterm").expect("period").clone();
    scheduler
        .tick(midterm.deadline + chrono::Duration::seconds(1))
        .await
        .expect("tick");
    eventually(
        Duration::from_secs(30),
        "the leader's overdue notice",
        || async {
            stack.smtp.received().into_iter().find(|m| {
                m.to.contains(&leader)
                    && m.text().contains("midterm")
                    && m.text().contains("overdue")
            })
        },
    )
    .await;

    // A late submission flips `missing` and is marked late.
    let before = compliance(&stack, &school.leader, "holiday").await;
    assert_eq!(state_of(&before, "C3"), "missing");
    let r = stack
        .post_json(
            &teacher_c3,
            "/v1/zero-reports",
            &zero("holiday", Some("C3")),
        )
        .await;
    assert_eq!(r.status(), 201);
    let late: Value = r.json().await.expect("json");
    assert_eq!(late["late"], true);
    let after = compliance(&stack, &school.leader, "holiday").await;
    assert_eq!(state_of(&after, "C3"), "zero");
    assert_eq!(after["counts"]["late"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_period_with_zero_incidents_and_missing_units_on_sqlite() {
    a_period_with_zero_incidents_and_missing_units(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_period_with_zero_incidents_and_missing_units_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_period_with_zero_incidents_and_missing_units(db).await;
    }
}

/// The real scheduler binary reads the calendar from its configuration and,
/// with the 24 h reminder already due, emails the missing classes' head teachers.
#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_binary_reminds_missing_classes_by_email() {
    let (periods, _) = calendar_env(Utc::now());
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_notifier();
    stack.start_scheduler(&[
        ("SANYU_ZERO_REPORT__PERIODS", periods),
        ("SANYU_SCHEDULER__POLL_INTERVAL_MS", "100".to_owned()),
    ]);
    let t1 = format!("t1@{}.test", stack.school.code.to_lowercase());
    let mail = eventually(Duration::from_secs(30), "C1's reminder", || async {
        stack.smtp.received().into_iter().find(|m| {
            m.to.contains(&t1) && m.text().contains("midterm") && m.text().contains("zero report")
        })
    })
    .await;
    assert!(
        mail.text().contains("/v1/zero-report-periods"),
        "{}",
        mail.text()
    );
}

/// One period across the real binaries: gateway, rules engine, notifier and
/// the scheduler, on NATS, a database and the SMTP server, with the calendar
/// and short reminder offsets from configuration. The period belongs to
/// district D01 (SCH1's); SCH1 also has an addition of its own and SCH2 (in
/// D02) sees neither. Class C1 reports zero, C2 an incident (a case, and its
/// counsellor is emailed), C3 stays missing: its head teacher is reminded
/// before the deadline and the leader told after it; compliance shows the
/// three states; C3's late report flips `missing` and is marked late; C2's
/// correction is a second version with the first kept.
async fn one_period_across_the_real_binaries(db: TestDb) {
    use sanyu_store::entities::school;
    use sea_orm::sea_query::Expr;

    let now = Utc::now();
    let deadline = now + chrono::Duration::seconds(30);
    let t = |at: chrono::DateTime<Utc>| at.to_rfc3339();
    let periods = format!(
        r#"[{{id="term-start", name="开学", kind="term_start", opens_at="{}", deadline="{}", levels=["class", "school"], district="D01"}}, {{id="d2-term-start", name="开学", kind="term_start", opens_at="{}", deadline="{}", district="D02"}}, {{id="sch1-sports-day", name="校运会", kind="special_event", opens_at="{}", deadline="{}", levels=["class"], school="SCH1"}}]"#,
        t(now - chrono::Duration::minutes(1)),
        t(deadline),
        t(now - chrono::Duration::minutes(1)),
        t(now + chrono::Duration::days(2)),
        t(now - chrono::Duration::minutes(1)),
        t(now + chrono::Duration::days(2)),
    );
    let settings = [
        ("SANYU_ZERO_REPORT__PERIODS", periods),
        // The reminder 20 s before the deadline; the leader at the deadline.
        (
            "SANYU_ZERO_REPORT__REMINDER_OFFSETS_SECS",
            "[20]".to_owned(),
        ),
        ("SANYU_ZERO_REPORT__OVERDUE_AFTER_SECS", "0".to_owned()),
        ("SANYU_ZERO_REPORT__ESCALATE_AFTER_SECS", "3600".to_owned()),
        ("SANYU_SCHEDULER__POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let mut stack = Stack::new(db).await;
    for (code, district) in [("SCH1", "D01"), ("SCH2", "D02")] {
        school::Entity::update_many()
            .col_expr(school::Column::DistrictCode, Expr::value(district))
            .filter(school::Column::Code.eq(code))
            .exec(&stack.conn)
            .await
            .expect("district code");
    }
    stack.start_gateway_with(&settings).await;
    stack.start_rules(&settings);
    stack.start_notifier_with(&settings);
    let teacher_c3 = add_class_c3(&stack).await;
    let school = stack.school.clone();
    let sch = school.code.to_lowercase();

    // Each school sees its district's periods and its own additions.
    let ids = |v: Value| -> Vec<String> {
        v["periods"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|p| p["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mine: Value = stack
        .get(&school.teacher_c1, "/v1/zero-report-periods")
        .await
        .json()
        .await
        .expect("json");
    let mut mine = ids(mine);
    mine.sort();
    assert_eq!(mine, ["sch1-sports-day", "term-start"]);
    let theirs: Value = stack
        .get(&stack.other_school.teacher_c1, "/v1/zero-report-periods")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ids(theirs), ["d2-term-start"]);
    let r = stack
        .post_json(
            &stack.other_school.teacher_c1,
            "/v1/zero-reports",
            &zero("term-start", Some("C1")),
        )
        .await;
    assert_eq!(r.status(), 404, "another district's period");

    // C1 zero; C2 an incident, which becomes a case and tells the counsellor.
    let r = stack
        .post_json(
            &school.teacher_c1,
            "/v1/zero-reports",
            &zero("term-start", Some("C1")),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = stack
        .post_json(
            &school.teacher_c2,
            "/v1/zero-reports",
            &incident("term-start", Some("C2"), "S3", "high"),
        )
        .await;
    assert_eq!(r.status(), 201);
    let cases = stack.wait_for_cases(1).await;
    let reference = cases[0]["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    let counsellor = school.counsellor_email.clone();
    let mail = eventually(
        Duration::from_secs(30),
        "the counsellor's email",
        || async {
            stack
                .smtp
                .received()
                .into_iter()
                .find(|m| m.to.contains(&counsellor) && m.text().contains(&reference))
        },
    )
    .await;
    assert!(!mail.text().contains("seen at lunch"));

    // The scheduler binary: C3's head teacher is reminded before the deadline …
    stack.start_scheduler(&settings);
    let t3 = format!("t3@{sch}.test");
    let leader = format!("leader@{sch}.test");
    let reminder = eventually(Duration::from_secs(30), "C3's reminder", || async {
        stack
            .smtp
            .received()
            .into_iter()
            .find(|m| m.to.contains(&t3) && m.text().contains("term-start"))
    })
    .await;
    assert!(
        Utc::now() < deadline,
        "the reminder came before the deadline"
    );
    assert!(
        reminder.text().contains("zero report"),
        "{}",
        reminder.text()
    );
    for reported in [format!("t1@{sch}.test"), format!("t2@{sch}.test")] {
        assert!(
            !stack
                .smtp
                .received()
                .iter()
                .any(|m| m.to.contains(&reported) && m.text().contains("term-start")),
            "{reported} reported: no reminder"
        );
    }
    let overdue = |m: &sanyu_e2e::support::ReceivedMail| {
        m.to.contains(&leader) && m.text().contains("term-start") && m.text().contains("overdue")
    };
    assert!(
        !stack.smtp.received().iter().any(overdue),
        "the leader is not told before the deadline"
    );
    // … and the leader after it.
    eventually(
        Duration::from_secs(60),
        "the leader's overdue notice",
        || async { stack.smtp.received().into_iter().find(overdue) },
    )
    .await;
    assert!(Utc::now() >= deadline);

    // Compliance: the three states.
    let c = compliance(&stack, &school.leader, "term-start").await;
    assert_eq!(
        (state_of(&c, "C1"), state_of(&c, "C2"), state_of(&c, "C3")),
        ("zero".into(), "incidents".into(), "missing".into())
    );
    assert_eq!(c["missing"], json!(["C3"]));
    assert_eq!(
        (
            &c["counts"]["zero"],
            &c["counts"]["incidents"],
            &c["counts"]["missing"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    // The district sees its schools only (SCH2 is in another district).
    let d = compliance(&stack, &school.district, "term-start").await;
    let units: Vec<&str> = d["units"]
        .as_array()
        .map(|u| u.iter().filter_map(|u| u["unit"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(units, ["SCH1"]);

    // A late report flips `missing` and is marked late.
    let r = stack
        .post_json(
            &teacher_c3,
            "/v1/zero-reports",
            &zero("term-start", Some("C3")),
        )
        .await;
    assert_eq!(r.status(), 201);
    let late: Value = r.json().await.expect("json");
    assert_eq!(late["late"], true);
    let c = compliance(&stack, &school.leader, "term-start").await;
    assert_eq!(state_of(&c, "C3"), "zero");
    assert_eq!(c["counts"]["late"], 1);
    assert_eq!(c["counts"]["missing"], 0);

    // A correction is a new version; the first stays as history.
    let mut corrected = incident("term-start", Some("C2"), "S3", "high");
    corrected["incidents"][0]["narrative"] = json!("seen at lunch, and again after school");
    let r = stack
        .post_json(&school.teacher_c2, "/v1/zero-reports", &corrected)
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.expect("json")["version"], 2);
    let versions = zero_report::Entity::find()
        .filter(zero_report::Column::PeriodId.eq("term-start"))
        .filter(zero_report::Column::Unit.eq("C2"))
        .all(&stack.conn)
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions.iter().filter(|v| v.current).count(), 1);
    assert_eq!(
        state_of(
            &compliance(&stack, &school.leader, "term-start").await,
            "C2"
        ),
        "incidents"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_period_across_the_real_binaries_on_sqlite() {
    one_period_across_the_real_binaries(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_period_across_the_real_binaries_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        one_period_across_the_real_binaries(db).await;
    }
}
