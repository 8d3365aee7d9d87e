//! The first chain end to end, across the real binaries: a teacher's report →
//! INTAKE → rules engine → case + outbox → CASE → notifier → an email accepted
//! by a real SMTP server over TCP. Run against SQLite and PostgreSQL.

use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::TestDb;
use serde_json::Value;

const NARRATIVE: &str = "CANARY-NARRATIVE 他说最近不想活了";

async fn a_teacher_report_reaches_the_counsellor_by_email(db: TestDb) {
    let stack = Stack::started(db).await;

    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", NARRATIVE),
        )
        .await;
    assert_eq!(response.status(), 202);

    let cases = stack.wait_for_cases(1).await;
    let case_id = cases[0]["id"].as_str().expect("case id").to_owned();
    let reference = cases[0]["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    assert_eq!(cases[0]["level"], "high");
    assert_eq!(cases[0]["status"], "open");

    let mails = stack.smtp.wait_for(1, Duration::from_secs(30)).await;
    let mail = &mails[0];
    assert_eq!(mail.to, vec![stack.school.counsellor_email.clone()]);
    let text = mail.text();
    let raw = String::from_utf8_lossy(&mail.raw);
    assert!(
        mail.subject().contains(&reference),
        "subject: {}",
        mail.subject()
    );
    assert!(text.contains(&reference), "body: {text}");
    assert!(
        text.contains(&format!("https://sanyu.test/cases/{case_id}")),
        "body: {text}"
    );
    for secret in ["CANARY-NARRATIVE", "不想活", "Student One"] {
        assert!(!text.contains(secret), "email body leaks {secret}");
        assert!(!raw.contains(secret), "raw email leaks {secret}");
        assert!(!mail.subject().contains(secret), "subject leaks {secret}");
    }

    // The case shows the signal that caused it, its rule, and who was reached.
    let detail: Value = stack
        .get(&stack.school.counsellor, &format!("/v1/cases/{case_id}"))
        .await
        .json()
        .await
        .expect("case json");
    assert_eq!(detail["signals"].as_array().map(Vec::len), Some(1));
    assert_eq!(detail["signals"][0]["narrative"], NARRATIVE);
    assert_eq!(detail["signals"][0]["decision"], "opened");
    assert_eq!(detail["opened_rule"], "report.high");
    sanyu_e2e::support::eventually(
        Duration::from_secs(10),
        "delivery recorded as sent",
        || async {
            let d: Value = stack
                .get(&stack.school.counsellor, &format!("/v1/cases/{case_id}"))
                .await
                .json()
                .await
                .ok()?;
            (d["notifications"][0]["status"] == "sent").then_some(())
        },
    )
    .await;

    // A critical report about the same student attaches and raises the level:
    // still one case, and the counsellor hears about the escalation.
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "critical", "again"),
        )
        .await;
    assert_eq!(response.status(), 202);
    // Critical: the counsellor and the crisis team hear at once.
    let mails = stack.smtp.wait_for(3, Duration::from_secs(30)).await;
    let mut critical_to: Vec<String> = Vec::new();
    for mail in &mails[1..] {
        assert!(
            mail.subject().contains("一级（紧急）"),
            "{}",
            mail.subject()
        );
        critical_to.extend(mail.to.clone());
    }
    critical_to.sort();
    assert_eq!(
        critical_to,
        vec![
            "counsellor@sch1.test".to_owned(),
            "crisis@sch1.test".to_owned()
        ]
    );
    let cases = stack.wait_for_cases(1).await;
    assert_eq!(cases.len(), 1, "one case per student");
    assert_eq!(cases[0]["level"], "critical");

    // A lower report attaches without lowering the level and without an email.
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "elevated", "third"),
        )
        .await;
    assert_eq!(response.status(), 202);
    sanyu_e2e::support::eventually(Duration::from_secs(20), "third signal attached", || async {
        let d: Value = stack
            .get(&stack.school.counsellor, &format!("/v1/cases/{case_id}"))
            .await
            .json()
            .await
            .ok()?;
        (d["signals"].as_array()?.len() == 3).then_some(())
    })
    .await;
    let cases = stack.wait_for_cases(1).await;
    assert_eq!(cases[0]["level"], "critical");
    assert_eq!(
        stack.smtp.received().len(),
        3,
        "a lower signal sends nothing"
    );

    // One trace runs from the HTTP request to the notification: every outbox row
    // of the first chain carries the same trace id.
    let rows = sanyu_store::entities::outbox::Entity::find()
        .all(&stack.conn)
        .await
        .expect("outbox rows");
    let trace_of = |prefix: &str| -> Option<String> {
        rows.iter()
            .find(|r| r.event_id.starts_with(prefix))
            .and_then(|r| r.traceparent.clone())
            .and_then(|tp| sanyu_platform::trace::trace_id_of(&tp).map(str::to_owned))
    };
    let report_trace = trace_of("report:").expect("report event has a trace");
    assert_eq!(trace_of("case.opened:"), Some(report_trace.clone()));
    assert_eq!(trace_of("notify.requested:"), Some(report_trace.clone()));
    assert_eq!(trace_of("notify.result:"), Some(report_trace));
}

use sea_orm::EntityTrait;

#[tokio::test(flavor = "multi_thread")]
async fn a_teacher_report_reaches_the_counsellor_by_email_on_sqlite() {
    a_teacher_report_reaches_the_counsellor_by_email(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_teacher_report_reaches_the_counsellor_by_email_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_teacher_report_reaches_the_counsellor_by_email(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn services_stop_gracefully_on_sigterm() {
    let mut stack = Stack::started(TestDb::sqlite()).await;
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S2", "elevated", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    stack.smtp.wait_for(1, Duration::from_secs(30)).await;
    for service in [&mut stack.gateway, &mut stack.rules, &mut stack.notifier] {
        let service = service.as_mut().expect("running");
        let name = service.name().to_owned();
        let status = service.terminate(Duration::from_secs(15)).await;
        let logs = service.logs();
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not exit cleanly on SIGTERM: {status:?}\n{logs}"
        );
        assert!(
            logs.contains("stopped"),
            "{name} log has no stop line:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_with_nobody_to_tell_still_opens_and_the_gap_is_shown_to_the_school() {
    use sanyu_store::entities::staff;
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};

    let stack = Stack::started(TestDb::sqlite()).await;
    // SCH2 loses every email address.
    let other = &stack.other_school;
    let school = sanyu_store::roster::school_by_code(&stack.conn, &other.code)
        .await
        .expect("query")
        .expect("school");
    staff::Entity::update_many()
        .col_expr(staff::Column::Email, Expr::value(Option::<String>::None))
        .filter(staff::Column::SchoolId.eq(school.id))
        .exec(&stack.conn)
        .await
        .expect("update");

    let response = stack
        .post_report(
            &other.teacher_c1,
            &Stack::report_body("S1", "critical", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    let letters: Vec<Value> =
        sanyu_e2e::support::eventually(Duration::from_secs(20), "gap reported", || async {
            let v: Vec<Value> = stack
                .get(&other.admin, "/v1/dead-letters")
                .await
                .json()
                .await
                .ok()?;
            (!v.is_empty()).then_some(v)
        })
        .await;
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("nobody to notify"),
        "{letters:?}"
    );
    let cases: Value = stack
        .get(&other.counsellor, "/v1/cases")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        cases["cases"].as_array().map(Vec::len),
        Some(1),
        "the case stands"
    );
    assert!(stack.smtp.received().is_empty());
}

/// Production NATS speaks TLS. With two TLS crypto providers compiled in, the
/// first TLS connection would panic; the binaries install aws-lc-rs at start-up.
#[tokio::test(flavor = "multi_thread")]
async fn the_chain_runs_over_a_nats_server_that_requires_tls() {
    let nats = sanyu_e2e::support::NatsServer::start_tls().await;
    let mut stack = Stack::with_nats(TestDb::sqlite(), nats).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier();
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    let mails = stack.smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mails[0].to, vec![stack.school.counsellor_email.clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_is_retried_until_the_smtp_server_comes_back_and_sent_once() {
    use sanyu_store::entities::delivery;

    let mut stack = Stack::new(TestDb::sqlite()).await;
    let down = sanyu_e2e::support::free_port();
    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier_with(&[("SANYU_SMTP__URL", format!("smtp://127.0.0.1:{down}"))]);
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    // The send fails and is retried: the delivery log says why.
    let failed =
        sanyu_e2e::support::eventually(Duration::from_secs(20), "a failed attempt", || async {
            let rows = delivery::Entity::find().all(&stack.conn).await.ok()?;
            rows.into_iter()
                .find(|d| d.attempts >= 2 && d.last_error.is_some())
        })
        .await;
    assert_ne!(failed.status, "sent");
    // The server comes up on that port; the email goes out, once.
    let smtp = sanyu_e2e::support::SmtpServer::start_on(down);
    let mails = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mails[0].to, vec![stack.school.counsellor_email.clone()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.received().len(), 1);
    let rows = delivery::Entity::find()
        .all(&stack.conn)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "sent");
}
