//! After the acknowledgement (issue 16), across the real binaries (gateway,
//! rules engine, scheduler, notifier), NATS, a database and the SMTP server,
//! with the default policy: a critical case acknowledged through the API and
//! then left without action escalates again at 30 minutes, to the crisis
//! team and then (15 minutes later) the leaders; a critical case acknowledged
//! and then acted on (a note) does not, and is reminded to its assignee a
//! day after that action when nobody acts again. Time passes on the scheduler's
//! injected clock (`SANYU_TEST_CLOCK_OFFSET_SECS`): the scheduler is
//! restarted further ahead each time.

use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{ReceivedMail, TestDb, eventually};
use sanyu_store::entities::timer;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

/// The scheduler's settings, its clock `ahead` of the real one.
fn scheduler_at(ahead: chrono::Duration) -> Vec<(&'static str, String)> {
    vec![
        ("SANYU_SCHEDULER__POLL_INTERVAL_MS", "100".to_owned()),
        ("SANYU_SCHEDULER__AUDIT_INTERVAL_SECS", "3600".to_owned()),
        (
            "SANYU_TEST_CLOCK_OFFSET_SECS",
            ahead.num_seconds().to_string(),
        ),
    ]
}

/// Restart the scheduler with its clock `ahead` of the real one.
fn restart_scheduler(stack: &mut Stack, ahead: chrono::Duration) {
    if let Some(s) = stack.scheduler.as_mut() {
        s.kill();
    }
    stack.start_scheduler(&scheduler_at(ahead));
}

/// The mails to `who` about case `case` saying nobody acted after the
/// acknowledgement.
fn no_action_mails<'a>(mails: &'a [ReceivedMail], who: &str, case: &str) -> Vec<&'a ReceivedMail> {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == who))
        .filter(|m| {
            let text = m.text();
            text.contains("尚无处置行动") && text.contains(&format!("/cases/{case}"))
        })
        .collect()
}

async fn open_critical_case(stack: &Stack, student_no: &str, n: usize) -> String {
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body(student_no, "critical", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(n).await;
    cases
        .iter()
        .find(|c| c["student_no"] == student_no)
        .and_then(|c| c["id"].as_str())
        .expect("the student's case")
        .to_owned()
}

async fn after_ack_timers(stack: &Stack, case: &str) -> Vec<timer::Model> {
    timer::Entity::find()
        .filter(timer::Column::CaseId.eq(Uuid::parse_str(case).expect("uuid")))
        .filter(timer::Column::Kind.eq(sanyu_escalation::ACTION_TIMER))
        .all(&stack.conn)
        .await
        .expect("timers")
}

async fn an_acknowledged_critical_case_left_without_action_escalates_at_thirty_minutes(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier();
    stack.start_scheduler(&scheduler_at(chrono::Duration::zero()));
    let sch = stack.school.code.to_lowercase();
    let (crisis, leader) = (format!("crisis@{sch}.test"), format!("leader@{sch}.test"));

    // Two critical cases; each reaches the counsellor and the crisis team at once.
    let left = open_critical_case(&stack, "S1", 1).await;
    let acted = open_critical_case(&stack, "S2", 2).await;
    stack.smtp.wait_for(4, Duration::from_secs(30)).await;

    // Both acknowledged through the API; only the second is acted on (a note).
    for case in [&left, &acted] {
        let r = stack
            .act(&stack.school.counsellor, case, "acknowledge", json!({}))
            .await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["ladder_state"], "stopped");
    }
    let r = stack
        .act(
            &stack.school.counsellor,
            &acted,
            "notes",
            json!({"text": "met the student"}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());

    // The first action cancelled the second case's after-acknowledgement
    // rung; the first case's waits, due 30 minutes after its acknowledgement.
    let acted_timers = after_ack_timers(&stack, &acted).await;
    assert_eq!(
        acted_timers
            .iter()
            .map(|t| t.state.as_str())
            .collect::<Vec<_>>(),
        ["cancelled"]
    );
    let left_timers = after_ack_timers(&stack, &left).await;
    let [rung1] = &left_timers[..] else {
        panic!("one rung timer: {left_timers:?}");
    };
    assert_eq!(rung1.state, "pending");
    let acked_at = stack
        .get(&stack.school.counsellor, &format!("/v1/cases/{left}"))
        .await
        .json::<Value>()
        .await
        .expect("case")["acknowledged_at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .expect("acknowledged_at")
        .with_timezone(&chrono::Utc);
    let due = rung1.due_at - acked_at;
    assert!(
        (due - chrono::Duration::minutes(30)).num_seconds().abs() <= 1,
        "due {due} after the acknowledgement"
    );

    // 29 minutes later: not yet (the timer is still pending once the
    // scheduler ran a few ticks at that time).
    restart_scheduler(&mut stack, chrono::Duration::minutes(29));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(after_ack_timers(&stack, &left).await[0].state, "pending");
    assert!(no_action_mails(&stack.smtp.received(), &crisis, &left).is_empty());

    // 31 minutes: the crisis team is told that nobody acted.
    restart_scheduler(&mut stack, chrono::Duration::minutes(31));
    let mail = eventually(
        Duration::from_secs(30),
        "the crisis team's email",
        || async {
            let mails = stack.smtp.received();
            no_action_mails(&mails, &crisis, &left)
                .first()
                .map(|m| (*m).clone())
        },
    )
    .await;
    assert!(!mail.text().contains("Student One"), "no names in mail");
    assert!(no_action_mails(&stack.smtp.received(), &leader, &left).is_empty());

    // 46 minutes: the leaders.
    restart_scheduler(&mut stack, chrono::Duration::minutes(46));
    eventually(Duration::from_secs(30), "the leader's email", || async {
        let mails = stack.smtp.received();
        (!no_action_mails(&mails, &leader, &left).is_empty()).then_some(())
    })
    .await;

    // The case acted on never climbed: nobody was told about it again, and
    // its only after-acknowledgement timer stays cancelled.
    let mails = stack.smtp.received();
    for who in [&crisis, &leader, &stack.school.counsellor_email] {
        assert!(
            no_action_mails(&mails, who, &acted).is_empty(),
            "{who} was told about the case acted on"
        );
    }
    assert_eq!(
        after_ack_timers(&stack, &acted)
            .await
            .iter()
            .map(|t| t.state.as_str())
            .collect::<Vec<_>>(),
        ["cancelled"]
    );
    // Each rung of the case left alone fired once: one mail per person and rung.
    assert_eq!(no_action_mails(&mails, &crisis, &left).len(), 1);
    assert_eq!(no_action_mails(&mails, &leader, &left).len(), 1);

    // A day after its note (critical: `stale_after_days` 1), nobody acted
    // on the second case again: its assignee (the counsellor who
    // acknowledged it) is reminded, once.
    let counsellor = stack.school.counsellor_email.clone();
    let stale = |mails: &[ReceivedMail]| {
        mails
            .iter()
            .filter(|m| m.to.contains(&counsellor))
            .filter(|m| {
                let text = m.text();
                text.contains("多日无处置行动") && text.contains(&format!("/cases/{acted}"))
            })
            .count()
    };
    assert_eq!(stale(&stack.smtp.received()), 0);
    restart_scheduler(
        &mut stack,
        chrono::Duration::days(1) + chrono::Duration::minutes(2),
    );
    eventually(Duration::from_secs(30), "the stale reminder", || async {
        (stale(&stack.smtp.received()) > 0).then_some(())
    })
    .await;
    assert_eq!(stale(&stack.smtp.received()), 1);
    assert!(
        no_action_mails(&stack.smtp.received(), &crisis, &acted).is_empty(),
        "a stale case is a reminder, not an escalation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_critical_case_left_without_action_escalates_at_thirty_minutes_on_sqlite() {
    an_acknowledged_critical_case_left_without_action_escalates_at_thirty_minutes(TestDb::sqlite())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_critical_case_left_without_action_escalates_at_thirty_minutes_on_postgres()
{
    if let Some(db) = TestDb::postgres().await {
        an_acknowledged_critical_case_left_without_action_escalates_at_thirty_minutes(db).await;
    }
}
