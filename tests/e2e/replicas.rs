//! Two replicas of the rules engine and of the notifier, fed a burst of
//! reports about a few students: every signal is decided once, no student has
//! two open cases, levels only rise, and every notification is sent once.

use std::collections::HashMap;
use std::time::Duration;

use sanyu_domain::RiskLevel;
use sanyu_e2e::Stack;
use sanyu_e2e::support::{ServiceProcess, TestDb, eventually};
use sanyu_store::entities::{case, case_signal, delivery, student};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

const STUDENTS: [&str; 2] = ["S1", "S2"];
const REPORTS: usize = 60;

async fn two_replicas_of_each_consumer_never_double_process(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let second_rules = ServiceProcess::spawn("sanyu-rules", &stack.env());
    stack.start_notifier();
    let second_notifier = ServiceProcess::spawn("sanyu-notifier", &stack.env());

    let levels = ["elevated", "high", "critical"];
    let mut expected: HashMap<&str, RiskLevel> = HashMap::new();
    let mut bodies = Vec::new();
    for i in 0..REPORTS {
        let no = STUDENTS[i % STUDENTS.len()];
        let level = levels[(i * 7 + i / 3) % levels.len()];
        let parsed: RiskLevel = level.parse().expect("level");
        expected
            .entry(no)
            .and_modify(|l| *l = (*l).max(parsed))
            .or_insert(parsed);
        bodies.push(Stack::report_body(no, level, "burst"));
    }
    let posts = bodies
        .iter()
        .map(|body| stack.post_report(&stack.school.teacher_c1, body));
    for response in futures::future::join_all(posts).await {
        assert_eq!(response.status(), 202);
    }

    eventually(Duration::from_secs(60), "every signal decided", || async {
        let n = case_signal::Entity::find().count(&stack.conn).await.ok()?;
        (n == REPORTS as u64).then_some(())
    })
    .await;
    let cases = case::Entity::find().all(&stack.conn).await.expect("cases");
    assert_eq!(cases.len(), STUDENTS.len(), "one case per student");
    let students: HashMap<_, _> = student::Entity::find()
        .all(&stack.conn)
        .await
        .expect("students")
        .into_iter()
        .map(|s| (s.id, s.student_no))
        .collect();
    for c in &cases {
        let no = students[&c.student_id.expect("a student's case")].as_str();
        assert_eq!(
            c.level.as_str(),
            expected[no].as_str(),
            "the case of {no} ends at the highest level reported"
        );
    }

    // Every requested notification is sent, once: the SMTP server receives as
    // many emails as there are notification keys.
    let emails = eventually(
        Duration::from_secs(60),
        "all notifications sent",
        || async {
            // Every notification the rules requested (each a level's first
            // rung) has its delivery row, sent: none still in flight.
            let requested = sanyu_store::entities::outbox::Entity::find()
                .filter(
                    sanyu_store::entities::outbox::Column::Subject
                        .starts_with("sanyu.notify.requested"),
                )
                .count(&stack.conn)
                .await
                .ok()?;
            let rows = delivery::Entity::find().all(&stack.conn).await.ok()?;
            let all_sent = !rows.is_empty() && rows.iter().all(|d| d.status == "sent");
            (all_sent
                && rows.len() as u64 == requested
                && stack.smtp.received().len() == rows.len())
            .then_some(rows.len())
        },
    )
    .await;
    // Hold on briefly and check nothing more arrives (no late duplicate).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.smtp.received().len(), emails);
    let mut sent: Vec<(Vec<String>, String)> = stack
        .smtp
        .received()
        .iter()
        .map(|m| (m.to.clone(), m.subject()))
        .collect();
    sent.sort();
    let before = sent.len();
    sent.dedup();
    assert_eq!(
        sent.len(),
        before,
        "no email sent twice to the same person: {sent:?}"
    );
    drop((second_rules, second_notifier));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_of_each_consumer_never_double_process_on_sqlite() {
    two_replicas_of_each_consumer_never_double_process(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_of_each_consumer_never_double_process_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        two_replicas_of_each_consumer_never_double_process(db).await;
    }
}
