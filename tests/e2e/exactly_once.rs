//! Nothing lost, nothing doubled: JetStream dedup by `Nats-Msg-Id`, consumer
//! idempotency by the processed-message record, a SIGKILL between commit and
//! ack, and poison messages that end in the dead-letter stream without
//! blocking the next message.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use sanyu_domain::RiskLevel;
use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::entities::{case, case_signal, outbox, student};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

async fn student_id(stack: &Stack, no: &str) -> uuid::Uuid {
    student::Entity::find()
        .filter(student::Column::StudentNo.eq(no))
        .one(&stack.conn)
        .await
        .expect("query")
        .expect("student exists")
        .id
}

fn report_event(event_id: &str, student: uuid::Uuid, level: RiskLevel) -> Vec<u8> {
    sanyu_events::encode(&sanyu_events::envelope(
        event_id,
        chrono::Utc::now(),
        "SCH1",
        sanyu_domain::student_partition(student),
        Payload::ReportSubmitted(v1::ReportSubmitted {
            report_id: uuid::Uuid::now_v7().to_string(),
            student_id: student.to_string(),
            class_code: "C1".into(),
            category: "self_harm".into(),
            suggested_level: sanyu_events::level_to_proto(level) as i32,
            observed_at: Some(sanyu_events::timestamp(chrono::Utc::now())),
            reporter_token_id: uuid::Uuid::nil().to_string(),
            zero_report: false,
        }),
    ))
}

async fn publish(js: &jetstream::Context, subject: &str, msg_id: &str, payload: Vec<u8>) -> bool {
    let ack = js
        .send_publish(
            subject.to_owned(),
            jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(msg_id),
        )
        .await
        .expect("publish")
        .await
        .expect("publish ack");
    ack.duplicate
}

/// Wait until the consumer has nothing pending and nothing unacknowledged.
async fn drained(js: &jetstream::Context, stream: &str, consumer: &str) {
    eventually(Duration::from_secs(30), "consumer drained", || async {
        let mut c: jetstream::consumer::PullConsumer = js
            .get_stream(stream)
            .await
            .ok()?
            .get_consumer(consumer)
            .await
            .ok()?;
        let info = c.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence > 0)
            .then_some(())
    })
    .await;
}

/// Post a report as the C1 head teacher and wait until its case is committed.
async fn report_and_wait_for_case(stack: &Stack, student_no: &str, level: &str) -> uuid::Uuid {
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body(student_no, level, "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    let student = student_id(stack, student_no).await;
    eventually(Duration::from_secs(20), "case committed", || async {
        (cases_of(stack, student).await.len() == 1).then_some(())
    })
    .await;
    student
}

async fn cases_of(stack: &Stack, student: uuid::Uuid) -> Vec<case::Model> {
    case::Entity::find()
        .filter(case::Column::StudentId.eq(student))
        .all(&stack.conn)
        .await
        .expect("cases")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_published_five_times_is_one_stream_message_and_one_case() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_rules(&[]);
    let js = jetstream::new(stack.nats.client().await);
    let student = student_id(&stack, "S1").await;
    let subject = subjects::report_submitted("SCH1", sanyu_domain::student_partition(student));
    // The rules engine creates the streams at start-up.
    eventually(Duration::from_secs(20), "INTAKE stream", || async {
        js.get_stream(subjects::INTAKE_STREAM)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let payload = report_event("report:five-times", student, RiskLevel::High);
    let mut duplicates = 0;
    for _ in 0..5 {
        if publish(&js, &subject, "report:five-times", payload.clone()).await {
            duplicates += 1;
        }
    }
    assert_eq!(duplicates, 4, "JetStream saw the id before four times");
    let mut stream = js
        .get_stream(subjects::INTAKE_STREAM)
        .await
        .expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
    drained(&js, subjects::INTAKE_STREAM, "rules").await;
    assert_eq!(cases_of(&stack, student).await.len(), 1);

    // Beyond the dedup window (simulated with other message ids) the
    // processed-message record still decides the event once.
    for i in 0..3 {
        publish(&js, &subject, &format!("late-copy-{i}"), payload.clone()).await;
    }
    drained(&js, subjects::INTAKE_STREAM, "rules").await;
    let cases = cases_of(&stack, student).await;
    assert_eq!(cases.len(), 1);
    let signals = case_signal::Entity::find()
        .filter(case_signal::Column::CaseId.eq(cases[0].id))
        .count(&stack.conn)
        .await
        .expect("count");
    assert_eq!(signals, 1, "one decision per event");
}

async fn a_rules_engine_killed_between_commit_and_ack_decides_once(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    // Hold every message after the commit and before the ack.
    stack.start_rules(&[(sanyu_rules_fault(), "60000".to_owned())]);
    // The decision is committed …
    let student = report_and_wait_for_case(&stack, "S2", "critical").await;
    // … and not acknowledged.
    let js = jetstream::new(stack.nats.client().await);
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream(subjects::INTAKE_STREAM)
        .await
        .expect("stream")
        .get_consumer("rules")
        .await
        .expect("consumer");
    assert_eq!(consumer.info().await.expect("info").num_ack_pending, 1);

    stack.rules.as_mut().expect("rules").kill();
    stack.start_rules(&[]);
    drained(&js, subjects::INTAKE_STREAM, "rules").await;
    let info = consumer.info().await.expect("info");
    // One message, delivered twice: once to the killed process, once after.
    assert_eq!(info.delivered.stream_sequence, 1);
    assert!(
        info.delivered.consumer_sequence >= 2,
        "the message was redelivered: {info:?}"
    );

    let cases = cases_of(&stack, student).await;
    assert_eq!(cases.len(), 1, "exactly one case after the crash");
    let opened = outbox::Entity::find()
        .filter(outbox::Column::EventId.starts_with("case.opened:"))
        .count(&stack.conn)
        .await
        .expect("count");
    assert_eq!(opened, 1, "exactly one case-opened event");
}

fn sanyu_rules_fault() -> &'static str {
    "SANYU_FAULT_PAUSE_BEFORE_ACK_MS"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rules_engine_killed_between_commit_and_ack_decides_once_on_sqlite() {
    a_rules_engine_killed_between_commit_and_ack_decides_once(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rules_engine_killed_between_commit_and_ack_decides_once_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_rules_engine_killed_between_commit_and_ack_decides_once(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_intake_message_is_dead_lettered_and_the_next_one_is_processed() {
    let stack = Stack::started(TestDb::sqlite()).await;
    let js = jetstream::new(stack.nats.client().await);
    publish(
        &js,
        "sanyu.intake.report.SCH1.0",
        "garbage-1",
        b"\xff\x00 not protobuf".to_vec(),
    )
    .await;
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    stack.wait_for_cases(1).await;

    // The copy is in the dead-letter stream …
    let dlq = js
        .get_stream(subjects::DEAD_LETTER_STREAM)
        .await
        .expect("DEADLETTER");
    let msg = eventually(Duration::from_secs(20), "dead-letter copy", || async {
        dlq.get_last_raw_message_by_subject("sanyu.dlq.INTAKE.rules")
            .await
            .ok()
    })
    .await;
    assert_eq!(msg.payload.as_ref(), b"\xff\x00 not protobuf");
    // … and something a human sees: no school can be told from an
    // unreadable body (a subject never decides scope), so the deployment
    // admin.
    let deployment =
        sanyu_store::tokens::issue_deployment(&stack.conn, None, chrono::Duration::days(1))
            .await
            .expect("deployment token")
            .secret;
    let letters: Vec<Value> = eventually(Duration::from_secs(20), "dead letter listed", || async {
        let r = stack.get(&deployment, "/v1/dead-letters").await;
        let v: Vec<Value> = r.json().await.ok()?;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(letters[0]["stream"], "INTAKE");
    assert_eq!(letters[0]["consumer"], "rules");
    assert_eq!(letters[0]["event_id"], "garbage-1");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("Envelope")
    );
    // Neither school's admin sees a dead letter of no school.
    for admin in [&stack.school.admin, &stack.other_school.admin] {
        let listed: Vec<Value> = stack
            .get(admin, "/v1/dead-letters")
            .await
            .json()
            .await
            .expect("json");
        assert!(listed.is_empty(), "{listed:?}");
    }
    // Teachers do not see dead letters at all.
    assert_eq!(
        stack
            .get(&stack.school.teacher_c1, "/v1/dead-letters")
            .await
            .status(),
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_nobody_acknowledges_reaches_the_dead_letters_through_the_max_deliveries_advisory()
 {
    let stack = Stack::started(TestDb::sqlite()).await;
    let js = jetstream::new(stack.nats.client().await);
    // A consumer that crashes on every delivery: it pulls and never acks.
    let stream = js.get_stream(subjects::ZERO_STREAM).await.expect("ZERO");
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("crashy".into()),
            ack_wait: Duration::from_millis(500),
            max_deliver: 2,
            ..Default::default()
        })
        .await
        .expect("consumer");
    publish(
        &js,
        "sanyu.zero.submitted.SCH1",
        "zero-1",
        b"payload".to_vec(),
    )
    .await;
    let mut messages = consumer.messages().await.expect("messages");
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("delivery in time");
        assert!(m.is_some());
    }
    // Its body is no envelope: no school can be told, the deployment admin sees it.
    let deployment =
        sanyu_store::tokens::issue_deployment(&stack.conn, None, chrono::Duration::days(1))
            .await
            .expect("deployment token")
            .secret;
    let letters: Vec<Value> = eventually(Duration::from_secs(20), "advisory recorded", || async {
        let r = stack.get(&deployment, "/v1/dead-letters").await;
        let v: Vec<Value> = r.json().await.ok()?;
        v.into_iter()
            .find(|l| l["consumer"] == "crashy")
            .map(|l| vec![l])
    })
    .await;
    assert_eq!(letters[0]["stream"], "ZERO");
    assert_eq!(letters[0]["event_id"], "zero-1");
    assert_eq!(letters[0]["deliveries"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_that_keeps_failing_is_dead_lettered_after_its_retries_and_does_not_block_others()
{
    let stack = Stack::started(TestDb::sqlite()).await;
    let js = jetstream::new(stack.nats.client().await);
    // A well-formed report about a student no roster knows: retryable (the roster
    // may lag), until the retries (4 in the test env) run out.
    let ghost = uuid::Uuid::now_v7();
    let subject = subjects::report_submitted("SCH1", sanyu_domain::student_partition(ghost));
    publish(
        &js,
        &subject,
        "report:ghost",
        report_event("report:ghost", ghost, RiskLevel::Critical),
    )
    .await;
    // Meanwhile other reports are decided.
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    stack.wait_for_cases(1).await;

    let letters: Vec<Value> =
        eventually(Duration::from_secs(30), "ghost dead-lettered", || async {
            let v: Vec<Value> = stack
                .get(&stack.school.admin, "/v1/dead-letters")
                .await
                .json()
                .await
                .ok()?;
            let found: Vec<Value> = v
                .into_iter()
                .filter(|l| l["event_id"] == "report:ghost")
                .collect();
            (!found.is_empty()).then_some(found)
        })
        .await;
    let reason = letters[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("retries exhausted") && reason.contains("unknown student"),
        "{reason}"
    );
    assert_eq!(letters[0]["deliveries"], 4);
    drained(&js, subjects::INTAKE_STREAM, "rules").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_and_acks_the_message_in_hand_before_the_rules_engine_exits() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    // The message in hand takes 3 s between its commit and its ack.
    stack.start_rules(&[(sanyu_rules_fault(), "3000".to_owned())]);
    report_and_wait_for_case(&stack, "S1", "high").await;
    let rules = stack.rules.as_mut().expect("rules");
    let status = rules.terminate(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit: {status:?}\n{}",
        rules.logs()
    );
    // Acked before the exit: nothing pending, nothing to redeliver.
    let js = jetstream::new(stack.nats.client().await);
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream(subjects::INTAKE_STREAM)
        .await
        .expect("stream")
        .get_consumer("rules")
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("info");
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.ack_floor.stream_sequence, 1, "{info:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_committed_but_not_yet_published_when_the_gateway_dies_is_published_after_restart()
{
    let mut stack = Stack::new(TestDb::sqlite()).await;
    // This gateway commits reports but its relay never publishes them.
    stack
        .start_gateway_with(&[("SANYU_FAULT_HOLD_OUTBOX", "1".to_owned())])
        .await;
    // (No other service runs yet: every service's relay would publish the row.)
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "critical", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    let pending = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .count(&stack.conn)
        .await
        .expect("count");
    assert_eq!(pending, 1, "committed, not published");
    stack.gateway.as_mut().expect("gateway").kill();

    // A healthy gateway starts: its relay finds the row and publishes it.
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let student = student_id(&stack, "S1").await;
    eventually(
        Duration::from_secs(20),
        "case from the recovered report",
        || async { (cases_of(&stack, student).await.len() == 1).then_some(()) },
    )
    .await;
}
