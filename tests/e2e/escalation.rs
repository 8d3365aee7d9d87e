//! The escalation ladder end to end, across the real binaries (gateway, rules
//! engine, scheduler, notifier), NATS, a database and the SMTP server: nobody
//! acknowledges a critical case → the next rung is emailed after the
//! configured delay → acknowledge → no further notifications. And the
//! scheduler SIGKILLed mid-ladder, restarted, firing every rung exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sanyu_e2e::Stack;
use sanyu_e2e::support::{ReceivedMail, TestDb, eventually};
use sanyu_events::Payload;
use sanyu_store::entities::{outbox, timer};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

/// Settings for a short ladder: every service snapshots or reads it.
fn ladder(ack_secs: u64, rungs: &str, repeat: u32) -> Vec<(&'static str, String)> {
    vec![
        (
            "SANYU_ESCALATION__CRITICAL__ACK_WITHIN_SECS",
            ack_secs.to_string(),
        ),
        ("SANYU_ESCALATION__CRITICAL__RUNGS", rungs.to_owned()),
        ("SANYU_ESCALATION__CRITICAL__REPEAT", repeat.to_string()),
        ("SANYU_SCHEDULER__POLL_INTERVAL_MS", "100".to_owned()),
        ("SANYU_SCHEDULER__AUDIT_INTERVAL_SECS", "3600".to_owned()),
    ]
}

fn to(mails: &[ReceivedMail], who: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == who))
        .count()
}

async fn open_critical_case(stack: &Stack) -> (String, Instant) {
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "critical", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let opened = Instant::now();
    let cases = stack.wait_for_cases(1).await;
    (cases[0]["id"].as_str().expect("id").to_owned(), opened)
}

async fn nobody_acknowledges_so_the_next_rung_is_told_until_someone_does(db: TestDb) {
    let mut stack = Stack::new(db).await;
    // Rung 0 at once (counsellor + crisis team), 3 s to acknowledge, then the
    // leader; 5 s later the crisis team again.
    let settings = ladder(
        3,
        r#"[{after_secs=3, roles=["leader"]}, {after_secs=5, roles=["crisis_team"]}]"#,
        1,
    );
    stack.start_gateway_with(&settings).await;
    stack.start_rules(&settings);
    stack.start_notifier();
    stack.start_scheduler(&settings);
    let (case, opened) = open_critical_case(&stack).await;
    let sch = stack.school.code.to_lowercase();
    let (counsellor, crisis, leader) = (
        format!("counsellor@{sch}.test"),
        format!("crisis@{sch}.test"),
        format!("leader@{sch}.test"),
    );

    // First contact: the counsellor and the crisis-team lead.
    let first = stack.smtp.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!((to(&first, &counsellor), to(&first, &crisis)), (1, 1));
    assert_eq!(to(&first, &leader), 0);

    // Nobody acknowledges: the leader is told after the configured 3 s.
    let third = eventually(Duration::from_secs(30), "the leader's email", || async {
        let mails = stack.smtp.received();
        mails.into_iter().find(|m| m.to.contains(&leader))
    })
    .await;
    let delay = third.received_at.duration_since(opened);
    assert!(
        delay >= Duration::from_millis(2500),
        "rung 1 came too early: {delay:?}"
    );
    assert!(third.text().contains("尚未确认"), "{}", third.text());

    // The counsellor acknowledges: the ladder stops.
    let r = stack
        .act(&stack.school.counsellor, &case, "acknowledge", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["ladder_state"], "stopped");

    // Rung 2 was due 8 s after the case opened; wait well past it.
    let quiet_until = opened + Duration::from_secs(11);
    tokio::time::sleep(quiet_until.saturating_duration_since(Instant::now())).await;
    let mails = stack.smtp.received();
    assert_eq!(
        (
            to(&mails, &counsellor),
            to(&mails, &crisis),
            to(&mails, &leader)
        ),
        (1, 1, 1),
        "no notification after the acknowledgement"
    );
    let case_id = Uuid::parse_str(&case).expect("uuid");
    // The ladder's rungs (the acknowledgement started the timers that
    // follow it: `after_ack.rs`).
    let timers = timer::Entity::find()
        .filter(timer::Column::CaseId.eq(case_id))
        .filter(timer::Column::Kind.eq(sanyu_escalation::RUNG_TIMER))
        .all(&stack.conn)
        .await
        .expect("timers");
    let states: BTreeMap<String, String> = timers.into_iter().map(|t| (t.key, t.state)).collect();
    assert_eq!(
        states.values().cloned().collect::<Vec<_>>(),
        vec!["fired".to_owned(), "cancelled".to_owned()],
        "{states:?}"
    );
}

/// A small deterministic generator for kill times.
struct Lcg(u64);

impl Lcg {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

async fn a_scheduler_killed_mid_ladder_fires_every_rung_exactly_once(db: TestDb) {
    let mut stack = Stack::new(db).await;
    // Six rungs to the leader, one every 2 s.
    let mut settings = ladder(2, r#"[{after_secs=2, roles=["leader"]}]"#, 6);
    stack.start_gateway_with(&settings).await;
    stack.start_rules(&settings);
    stack.start_notifier();
    // Each fired timer holds its transaction open for 600 ms before the
    // commit, so that some kills land between the effect and the commit.
    settings.push(("SANYU_FAULT_PAUSE_BEFORE_COMMIT_MS", "600".to_owned()));
    stack.start_scheduler(&settings);
    let (case, _) = open_critical_case(&stack).await;
    let case_id = Uuid::parse_str(&case).expect("uuid");

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    eprintln!("kill schedule seed {seed}");
    let mut rng = Lcg(seed);
    let mut killed_mid_fire = 0;
    for round in 0..5 {
        if round % 2 == 0 {
            // Aimed: 300 ms after the next rung falls due, its transaction is
            // open (effect written, commit held back). Kill it there.
            let next = timer::Entity::find()
                .filter(timer::Column::CaseId.eq(case_id))
                .filter(timer::Column::State.eq("pending"))
                .one(&stack.conn)
                .await
                .expect("timers");
            let Some(next) = next else { break };
            let wait = (next.due_at - chrono::Utc::now() + chrono::Duration::milliseconds(300))
                .to_std()
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
            if let Some(s) = stack.scheduler.as_mut() {
                s.kill();
            }
            let after = timer::Entity::find_by_id(next.id)
                .one(&stack.conn)
                .await
                .expect("timer")
                .expect("timer row");
            if after.state == "pending" {
                killed_mid_fire += 1;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(rng.next_ms(300, 2000))).await;
            if let Some(s) = stack.scheduler.as_mut() {
                s.kill();
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.next_ms(200, 1500))).await;
        stack.start_scheduler(&settings);
    }
    assert!(
        killed_mid_fire >= 1,
        "no kill landed between a rung's effect and its commit"
    );

    // Let the ladder finish.
    eventually(Duration::from_secs(60), "all six rungs fired", || async {
        let fired = timer::Entity::find()
            .filter(timer::Column::CaseId.eq(case_id))
            .filter(timer::Column::State.eq("fired"))
            .all(&stack.conn)
            .await
            .ok()?;
        (fired.len() == 6).then_some(())
    })
    .await;
    let leader = format!("leader@{}.test", stack.school.code.to_lowercase());
    let mails = stack.smtp.wait_for(8, Duration::from_secs(30)).await;
    // Give a late duplicate the chance to show itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = if stack.smtp.received().len() > mails.len() {
        stack.smtp.received()
    } else {
        mails
    };
    assert_eq!(to(&mails, &leader), 6, "one email per rung");
    assert_eq!(
        mails.len(),
        8,
        "rung 0 to counsellor and crisis lead, six rungs to the leader"
    );

    // Every rung was requested exactly once.
    let mut rungs: Vec<u32> = outbox::Entity::find()
        .filter(outbox::Column::Subject.starts_with("sanyu.notify.requested"))
        .all(&stack.conn)
        .await
        .expect("outbox")
        .into_iter()
        .filter_map(
            |row| match sanyu_events::decode(&row.payload).ok()?.payload {
                Some(Payload::NotificationRequested(n)) if n.case_id == case && n.rung > 0 => {
                    Some(n.rung)
                }
                _ => None,
            },
        )
        .collect();
    rungs.sort_unstable();
    assert_eq!(rungs, vec![1, 2, 3, 4, 5, 6]);
    let timers = timer::Entity::find()
        .filter(timer::Column::CaseId.eq(case_id))
        .all(&stack.conn)
        .await
        .expect("timers");
    assert_eq!(timers.len(), 6, "one timer per rung");
    assert!(
        timers
            .iter()
            .all(|t| t.state == "fired" && t.fired_at.is_some())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_acknowledges_the_next_rung_is_told_until_someone_does_on_sqlite() {
    nobody_acknowledges_so_the_next_rung_is_told_until_someone_does(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_acknowledges_the_next_rung_is_told_until_someone_does_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        nobody_acknowledges_so_the_next_rung_is_told_until_someone_does(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_killed_mid_ladder_fires_every_rung_exactly_once_on_sqlite() {
    a_scheduler_killed_mid_ladder_fires_every_rung_exactly_once(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_killed_mid_ladder_fires_every_rung_exactly_once_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_scheduler_killed_mid_ladder_fires_every_rung_exactly_once(db).await;
    }
}

fn sanyu(db: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(sanyu_e2e::support::binary("sanyu"))
        .args(args)
        .env("SANYU_DATABASE__URL", db)
        .output()
        .expect("run sanyu");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_check_reports_every_rung_that_would_reach_nobody() {
    use sanyu_store::entities::{school, staff};
    use sea_orm::{ActiveValue::Set, sea_query::Expr};

    let stack = Stack::new(TestDb::sqlite()).await;
    let (code, out) = sanyu(stack.db.url(), &["contacts", "check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 schools, 20 rungs checked, 0 reach nobody"),
        "{out}"
    );

    let id_of = |code: &'static str| {
        let conn = stack.conn.clone();
        async move {
            school::Entity::find()
                .filter(school::Column::Code.eq(code))
                .one(&conn)
                .await
                .expect("q")
                .expect("school")
                .id
        }
    };
    let (sch1, sch2) = (id_of("SCH1").await, id_of("SCH2").await);
    // SCH1 loses its crisis team; SCH2's leader has no email address (and
    // a mobile number nobody verified).
    staff::Entity::update_many()
        .set(staff::ActiveModel {
            active: Set(false),
            ..Default::default()
        })
        .filter(staff::Column::SchoolId.eq(sch1))
        .filter(staff::Column::Role.eq("crisis_team"))
        .exec(&stack.conn)
        .await
        .expect("update");
    staff::Entity::update_many()
        .col_expr(staff::Column::Email, Expr::value(Option::<String>::None))
        .filter(staff::Column::SchoolId.eq(sch2))
        .filter(staff::Column::Role.eq("leader"))
        .exec(&stack.conn)
        .await
        .expect("update");

    let (code, out) = sanyu(stack.db.url(), &["contacts", "check"]);
    assert_eq!(code, 1, "{out}");
    let gaps: Vec<&str> = out.lines().filter(|l| l.starts_with("GAP ")).collect();
    assert_eq!(
        gaps,
        vec![
            "GAP SCH1 critical rung 1: reaches nobody (crisis_team: no active staff in this role)",
            "GAP SCH1 critical unidentified caller first contact: reaches nobody (crisis_team: no active staff in this role)",
            "GAP SCH1 high rung 1: reaches nobody (crisis_team: no active staff in this role)",
            "GAP SCH1 high unidentified caller first contact: reaches nobody (crisis_team: no active staff in this role)",
            "GAP SCH1 elevated rung 1: reaches nobody (crisis_team: no active staff in this role)",
            "GAP SCH2 critical rung 2: reaches nobody (leader: 1 active staff, none with an email address; 1 with a mobile number not yet verified (it counts once they sign in to the console with a code by SMS))",
            "GAP SCH2 high rung 2: reaches nobody (leader: 1 active staff, none with an email address; 1 with a mobile number not yet verified (it counts once they sign in to the console with a code by SMS))",
        ],
        "{out}"
    );
    let (code, out) = sanyu(stack.db.url(), &["contacts", "check", "--school", "SCH2"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("1 schools, 10 rungs checked, 2 reach nobody"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_follow_up_reminds_the_assigned_counsellor_once() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    let settings = ladder(600, r#"[{after_secs=600, roles=["leader"]}]"#, 1);
    stack.start_gateway_with(&settings).await;
    stack.start_rules(&settings);
    stack.start_notifier();
    stack.start_scheduler(&settings);
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S2", "high", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let case = stack.wait_for_cases(1).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let counsellor = stack.school.counsellor_email.clone();
    stack.smtp.wait_for(1, Duration::from_secs(30)).await;
    let r = stack
        .act(&stack.school.counsellor, &case, "acknowledge", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let r = stack
        .act(
            &stack.school.counsellor,
            &case,
            "notes",
            json!({"text": "met"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // One follow-up due in 2 s; another due in 3 s that is done before then.
    let soon = |secs| (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339();
    let r = stack
        .act(
            &stack.school.counsellor,
            &case,
            "follow-ups",
            json!({"due_at": soon(2)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = stack
        .act(
            &stack.school.counsellor,
            &case,
            "follow-ups",
            json!({"due_at": soon(3)}),
        )
        .await;
    let done: Value = r.json().await.expect("json");
    let r = stack
        .act(
            &stack.school.counsellor,
            &case,
            "follow-ups",
            json!({"follow_up_id": done["created_id"], "outcome": "seen early"}),
        )
        .await;
    assert_eq!(r.status(), 200);

    let reminder = eventually(
        Duration::from_secs(30),
        "the follow-up reminder",
        || async {
            stack
                .smtp
                .received()
                .into_iter()
                .find(|m| m.to.contains(&counsellor) && m.text().contains("随访到期"))
        },
    )
    .await;
    assert!(reminder.subject().contains("C-"), "{}", reminder.subject());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reminders = stack
        .smtp
        .received()
        .into_iter()
        .filter(|m| m.text().contains("随访到期"))
        .count();
    assert_eq!(reminders, 1, "the done follow-up sends no reminder");
}

#[test]
fn rules_check_reports_problems_with_line_and_column() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let good = dir.join("good.toml");
    std::fs::write(&good, sanyu_ruleset::DEFAULT_RULES).expect("write");
    let (code, out) = sanyu(
        "sqlite://unused",
        &["rules", "check", good.to_str().expect("path")],
    );
    assert_eq!(code, 0, "{out}");
    let version = sanyu_ruleset::RuleSet::parse(sanyu_ruleset::DEFAULT_RULES)
        .expect("default rules")
        .version;
    assert!(out.contains(&format!("ok, version {version}")), "{out}");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "version = \"x\"\n\n[[rule]]\nid = \"a\"\nwhen = { levle_at_least = \"high\" }\nthen = { action = \"no_action\" }\n",
    )
    .expect("write");
    let (code, out) = sanyu(
        "sqlite://unused",
        &["rules", "check", bad.to_str().expect("path")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad.toml:5:"), "{out}");
    assert!(out.contains("levle_at_least"), "{out}");
}
