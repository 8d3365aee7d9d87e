//! SMS and email end to end, across the real binaries: a critical teacher
//! report reaches the counsellor and the crisis-team lead by SMS (through the
//! providers' signature-checking stand-ins) and by email (real SMTP); a
//! primary provider answering 500 hands over to the secondary; delivery
//! receipts mark an SMS delivered; and a notifier killed between the claim and
//! the send loses nothing and sends nothing twice. Acknowledging from the
//! message (issue #16): an SMS reply ("1" or the reference) acknowledges and
//! stops the ladder, is answered by SMS, and a forged one changes nothing;
//! the link the SMS and email carry shows a page on GET and acknowledges only
//! on POST after sign-in.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_sms::stand_in::{Reply, StandIn, StandInKind};
use sanyu_store::entities::{delivery, delivery_attempt};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "whsec-e2e-primary";
const ALIYUN_KEY_ID: &str = "LTAI-e2e";
const ALIYUN_SECRET: &str = "aliyun-e2e-secret";
const RECEIPT_SECRET: &str = "receipts-9f2c1d7e4b6a8f03";
const ALIYUN_REPLY_TOKEN: &str = "replies-aliyun-5c0e9b27d4";
const LEADER_PHONE: &str = "13900000005";
const COUNSELLOR_PHONE: &str = "13900000003";
const CRISIS_LEAD_PHONE: &str = "13900000004";

/// Two SMS providers (signed webhook primary, Alibaba Cloud secondary) and the
/// configuration file that points the services at them.
struct Sms {
    primary: StandIn,
    secondary: StandIn,
    config: PathBuf,
}

impl Sms {
    async fn start() -> Self {
        let primary = StandIn::start(StandInKind::Webhook, "", WEBHOOK_SECRET)
            .await
            .unwrap();
        let secondary = StandIn::start(StandInKind::Aliyun, ALIYUN_KEY_ID, ALIYUN_SECRET)
            .await
            .unwrap();
        let config = std::env::temp_dir().join(format!("sanyu-sms-{}.toml", uuid::Uuid::now_v7()));
        let toml = format!(
            r#"
[sms]
receipt_path_secret = "{RECEIPT_SECRET}"
reply_tokens = {{ aliyun = "{ALIYUN_REPLY_TOKEN}" }}

[sms.primary]
kind = "webhook"
url = "{primary}"
secret = "{WEBHOOK_SECRET}"
http = {{ connect_timeout_ms = 1000, request_timeout_ms = 2000 }}

[sms.secondary]
kind = "aliyun"
endpoint = "{secondary}"
access_key_id = "{ALIYUN_KEY_ID}"
access_key_secret = "{ALIYUN_SECRET}"
sign_name = "测试学校"
http = {{ connect_timeout_ms = 1000, request_timeout_ms = 2000 }}

[[sms.secondary.templates]]
audience = "staff"
locale = "zh-CN"
id = "SMS_100001"
params = ["school", "case_ref", "level", "time"]

[notify]
backoff_initial_ms = 20
backoff_max_ms = 100
"#,
            primary = primary.base_url(),
            secondary = secondary.base_url(),
        );
        std::fs::write(&config, toml).unwrap();
        Self {
            primary,
            secondary,
            config,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("SANYU_CONFIG", self.config.display().to_string())]
    }

    /// Every SMS phone number either stand-in received, sorted.
    fn phones(&self) -> Vec<String> {
        let mut phones: Vec<String> = self
            .primary
            .received()
            .into_iter()
            .chain(self.secondary.received())
            .map(|r| r.phone.trim_start_matches("+86").to_owned())
            .collect();
        phones.sort();
        phones
    }
}

impl Drop for Sms {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

async fn critical_report(stack: &Stack) -> String {
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body(
                "S1",
                "critical",
                "a narrative that never leaves the gateway",
            ),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    let cases = stack.wait_for_cases(1).await;
    cases[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_critical_report_reaches_counsellor_and_crisis_lead_by_sms_and_email_and_a_failing_primary_hands_over()
 {
    let sms = Sms::start().await;
    // The primary answers 500 for the counsellor's number, every time.
    sms.primary.script_for(COUNSELLOR_PHONE, Reply::ServerError);
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack
        .start_gateway_with(&[("SANYU_CONFIG", sms.config.display().to_string())])
        .await;
    stack.start_rules(&[]);
    stack.start_notifier_with(&sms.env());
    let case_id = critical_report(&stack).await;

    // Email to both through the real SMTP server.
    let mails = stack.smtp.wait_for(2, Duration::from_secs(20)).await;
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["counsellor@sch1.test", "crisis@sch1.test"]);
    // SMS to both: the crisis lead through the primary, the counsellor through
    // the secondary after the primary's retries.
    eventually(Duration::from_secs(20), "two SMS accepted", || async {
        (sms.secondary.received().len() == 1 && sms.phones().len() >= 4).then_some(())
    })
    .await;
    let primary: Vec<String> = sms
        .primary
        .received()
        .into_iter()
        .map(|r| r.phone)
        .collect();
    assert_eq!(
        primary
            .iter()
            .filter(|p| p.ends_with(CRISIS_LEAD_PHONE))
            .count(),
        1
    );
    assert_eq!(
        primary
            .iter()
            .filter(|p| p.ends_with(COUNSELLOR_PHONE))
            .count(),
        3,
        "three tries on the primary"
    );
    let secondary = sms.secondary.received();
    assert_eq!(secondary[0].phone, COUNSELLOR_PHONE);
    assert_eq!(secondary[0].template, "SMS_100001");

    // The case shows who was reached, how and through which provider.
    let detail: Value = eventually(
        Duration::from_secs(10),
        "four sent notifications",
        || async {
            let v: Value = stack
                .get(&stack.school.counsellor, &format!("/v1/cases/{case_id}"))
                .await
                .json()
                .await
                .ok()?;
            let n = v["notifications"].as_array()?;
            (n.len() == 4 && n.iter().all(|d| d["status"] == "sent")).then_some(v)
        },
    )
    .await;
    let notifications = detail["notifications"].as_array().unwrap();
    let counsellor_sms = notifications
        .iter()
        .find(|n| n["channel"] == "sms" && n["provider"] == "aliyun")
        .expect("the counsellor's SMS went through the secondary");
    let log = counsellor_sms["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 4);
    assert!(
        log[..3]
            .iter()
            .all(|a| a["provider"] == "webhook" && a["status"] == "transient_error")
    );
    assert_eq!(log[3]["status"], "accepted");
    assert_eq!(
        notifications
            .iter()
            .filter(|n| n["channel"] == "email" && n["provider"] == "smtp")
            .count(),
        2
    );

    // Alibaba Cloud reports the counsellor's SMS delivered.
    let key = counsellor_sms["key"].as_str().unwrap().to_owned();
    let accepted = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::DeliveryKey.eq(key.clone()))
        .filter(delivery_attempt::Column::Status.eq("accepted"))
        .one(&stack.conn)
        .await
        .unwrap()
        .unwrap();
    let report = json!([{
        "phone_number": COUNSELLOR_PHONE,
        "send_time": "2026-11-29 12:00:00",
        "report_time": "2026-11-29 12:00:05",
        "success": true,
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
        "biz_id": accepted.provider_message_id.clone().unwrap(),
        "out_id": key.trim_end_matches(":sms"),
    }]);
    let url = |secret: &str| format!("{}/v1/sms/receipts/aliyun/{secret}", stack.base_url());
    let wrong = stack
        .http
        .post(url("guessed"))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let ok = stack
        .http
        .post(url(RECEIPT_SECRET))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), sanyu_sms::aliyun::SMS_REPORT_ACK);
    let row = delivery::Entity::find()
        .filter(delivery::Column::NotificationKey.eq(key))
        .one(&stack.conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "delivered");
    // The receipt path's secret is never logged.
    let logs = stack.gateway.as_ref().unwrap().logs();
    assert!(!logs.contains(RECEIPT_SECRET));
}

#[tokio::test]
async fn a_notifier_killed_between_claim_and_send_sends_each_notification_once_after_the_lease() {
    let sms = Sms::start().await;
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let mut env = sms.env();
    env.push(("SANYU_NOTIFY__LEASE_SECS", "3".to_owned()));
    let mut paused = env.clone();
    paused.push(("SANYU_FAULT_PAUSE_AFTER_CLAIM_MS", "60000".to_owned()));
    stack.start_notifier_with(&paused);
    critical_report(&stack).await;

    // Wait until the notifier holds claims on all four deliveries, then kill it.
    eventually(
        Duration::from_secs(20),
        "four claimed deliveries",
        || async {
            let claimed = delivery::Entity::find()
                .filter(delivery::Column::Status.eq("claimed"))
                .all(&stack.conn)
                .await
                .ok()?;
            (claimed.len() == 4).then_some(())
        },
    )
    .await;
    stack.notifier.as_mut().unwrap().kill();
    assert!(sms.phones().is_empty(), "nothing was sent before the kill");
    assert!(stack.smtp.received().is_empty());

    // A fresh notifier sends each one once the lease has expired.
    stack.start_notifier_with(&env);
    stack.smtp.wait_for(2, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(30), "two SMS", || async {
        (sms.phones().len() >= 2).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "every delivery sent", || async {
        let rows = delivery::Entity::find().all(&stack.conn).await.ok()?;
        (rows.len() == 4 && rows.iter().all(|d| d.status == "sent")).then_some(rows)
    })
    .await;
    // Nothing more arrives: at most one send each.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sms.phones(), [COUNSELLOR_PHONE, CRISIS_LEAD_PHONE]);
    assert_eq!(stack.smtp.received().len(), 2);
    let rows = delivery::Entity::find().all(&stack.conn).await.unwrap();
    assert!(rows.iter().all(|d| d.attempts == 2), "claimed twice each");
}

/// The notifier binary SIGKILLed over and over while it sends, with the gap
/// between the providers' acceptance and the commit widened (fault
/// injection) so that kills land in it. Nothing is lost: every key reaches
/// its person by SMS and email. A duplicate happens only where a kill fell
/// between acceptance and commit, and each one is identifiable: it carries
/// the first send's idempotency key (SMS) and `Message-ID` (email), and the
/// takeover is recorded on the delivery (issue #13, item 10).
async fn a_notifier_killed_repeatedly_while_sending_loses_nothing_and_records_every_resend(
    db: TestDb,
) {
    use std::collections::{BTreeMap, BTreeSet};

    const KEYS: usize = 40;
    let backend = db.url().split(':').next().unwrap_or("db").to_owned();
    let sms = Sms::start().await;
    let mut stack = Stack::new(db).await;
    let mut env = sms.env();
    env.push(("SANYU_NOTIFY__LEASE_SECS", "2".to_owned()));
    env.push(("SANYU_NOTIFY__TAKEOVER_GRACE_MS", "200".to_owned()));
    env.push(("SANYU_FAULT_PAUSE_AFTER_SEND_MS", "150".to_owned()));
    // Every kill costs the messages in hand a delivery: enough of them that
    // the kills do not use up a message's deliveries.
    env.push(("SANYU_NATS__MAX_DELIVER", "100".to_owned()));
    stack.start_notifier_with(&env);

    let js = async_nats::jetstream::new(stack.nats.client().await);
    eventually(Duration::from_secs(20), "the NOTIFY stream", || async {
        js.get_stream(sanyu_events::subjects::NOTIFY_STREAM)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let staff: Vec<uuid::Uuid> = {
        use sanyu_store::entities::staff;
        let mut ids = Vec::new();
        for no in ["K1", "X1"] {
            let s = staff::Entity::find()
                .filter(staff::Column::StaffNo.eq(no))
                .filter(staff::Column::SchoolId.eq(stack_school_id(&stack).await))
                .one(&stack.conn)
                .await
                .unwrap()
                .unwrap();
            ids.push(s.id);
        }
        ids
    };
    let mut keys = Vec::new();
    for i in 0..KEYS {
        let case_id = uuid::Uuid::now_v7();
        let recipient = staff[i % staff.len()];
        let key = format!("{case_id}:{recipient}:e1:r0");
        let req = sanyu_events::v1::NotificationRequested {
            notification_key: key.clone(),
            case_id: case_id.to_string(),
            case_reference: sanyu_domain::case_reference(case_id),
            level: sanyu_events::level_to_proto(sanyu_domain::RiskLevel::Critical) as i32,
            recipient_staff_id: recipient.to_string(),
            channel: sanyu_events::v1::Channel::Email as i32,
            reason: "case_opened".into(),
            rung: 0,
            reason_code: sanyu_events::v1::NotificationReason::CaseOpened as i32,
            sign_in_code: String::new(),
            ack_outcome: String::new(),
            sign_in_link: String::new(),
        };
        let event_id = format!("notify.requested:{key}");
        let payload = sanyu_events::encode(&sanyu_events::envelope(
            event_id.clone(),
            chrono::Utc::now(),
            "SCH1",
            0,
            sanyu_events::Payload::NotificationRequested(req),
        ));
        js.send_publish(
            sanyu_events::subjects::notification_requested("SCH1"),
            async_nats::jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(event_id),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        keys.push(key);
    }

    // Kill the notifier every 150–650 ms while deliveries are unfinished.
    let mut kills = 0;
    let conn = stack.conn.clone();
    let unfinished = || async {
        delivery::Entity::find()
            .all(&conn)
            .await
            .map(|rows| rows.len() < 2 * KEYS || rows.iter().any(|d| d.status != "sent"))
            .unwrap_or(true)
    };
    while kills < 12 && unfinished().await {
        let wait = 150 + (uuid::Uuid::new_v4().as_u128() % 500) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        stack.notifier.as_mut().unwrap().kill();
        kills += 1;
        stack.start_notifier_with(&env);
    }
    let rows = eventually(Duration::from_secs(90), "every delivery sent", || async {
        let rows = delivery::Entity::find().all(&stack.conn).await.ok()?;
        (rows.len() == 2 * KEYS && rows.iter().all(|d| d.status == "sent")).then_some(rows)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // What the providers received, against the keys.
    let sms_requests = sms.primary.received();
    let sms_keys: BTreeSet<String> = sms_requests
        .iter()
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    let mails = stack.smtp.received();
    let mut per_message_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mails {
        *per_message_id
            .entry(m.message_id().unwrap_or_default())
            .or_default() += 1;
    }
    let takeovers: i32 = rows.iter().map(|d| d.takeovers).sum();
    let takeover_attempts = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::Status.eq("takeover"))
        .all(&stack.conn)
        .await
        .unwrap()
        .len();
    let sms_duplicates = sms_requests.len() - sms_keys.len();
    // The webhook provider sends each Idempotency-Key once.
    let handsets = sms.primary.handset_messages();
    let email_duplicates = mails.len() - per_message_id.len();
    eprintln!(
        "{backend}: {KEYS} keys, {kills} SIGKILLs: SMS {} sent for {} keys ({sms_duplicates} duplicate(s), \
         {handsets} reaching handsets), \
         email {} sent for {} Message-IDs ({email_duplicates} duplicate(s)); takeovers recorded {takeovers} \
         ({takeover_attempts} takeover attempts)",
        sms_requests.len(),
        sms_keys.len(),
        mails.len(),
        per_message_id.len(),
    );
    // Nothing lost: every key reached its person on both channels.
    assert_eq!(sms_keys.len(), KEYS, "{backend}: an SMS per key");
    assert_eq!(handsets, KEYS, "{backend}: the webhook sends each key once");
    assert_eq!(per_message_id.len(), KEYS, "{backend}: an email per key");
    // Every duplicate is on record as a takeover of an interrupted send.
    assert!(
        sms_duplicates + email_duplicates <= usize::try_from(takeovers).unwrap(),
        "{backend}: a duplicate without a recorded takeover"
    );
    // (A notifier killed during its own takeover's grace counted the
    // takeover but had no time to record its attempt.)
    assert!(takeover_attempts <= usize::try_from(takeovers).unwrap());
}

async fn stack_school_id(stack: &Stack) -> uuid::Uuid {
    use sanyu_store::entities::school;
    school::Entity::find()
        .filter(school::Column::Code.eq("SCH1"))
        .one(&stack.conn)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn a_notifier_killed_repeatedly_while_sending_loses_nothing_and_records_every_resend_on_sqlite()
 {
    a_notifier_killed_repeatedly_while_sending_loses_nothing_and_records_every_resend(
        TestDb::sqlite(),
    )
    .await;
}

#[tokio::test]
async fn a_notifier_killed_repeatedly_while_sending_loses_nothing_and_records_every_resend_on_postgres()
 {
    if let Some(db) = TestDb::postgres().await {
        a_notifier_killed_repeatedly_while_sending_loses_nothing_and_records_every_resend(db).await;
    }
}

// ------------------------------------------- acknowledging from the message

/// A critical ladder: counsellor and crisis team at once, the leader after
/// `after` seconds unless someone acknowledges.
fn ack_settings(after: u64) -> Vec<(&'static str, String)> {
    vec![
        ("SANYU_CONSOLE__SECURE_COOKIE", "false".to_owned()),
        (
            "SANYU_ESCALATION__CRITICAL__ACK_WITHIN_SECS",
            after.to_string(),
        ),
        (
            "SANYU_ESCALATION__CRITICAL__RUNGS",
            format!(r#"[{{after_secs={after}, roles=["leader"]}}]"#),
        ),
        ("SANYU_ESCALATION__CRITICAL__REPEAT", "1".to_owned()),
        ("SANYU_SCHEDULER__POLL_INTERVAL_MS", "100".to_owned()),
        ("SANYU_SCHEDULER__AUDIT_INTERVAL_SECS", "3600".to_owned()),
    ]
}

async fn ack_stack(db: TestDb, sms: &Sms, after: u64) -> Stack {
    let mut stack = Stack::new(db).await;
    let mut env = sms.env();
    env.extend(ack_settings(after));
    stack.start_gateway_with(&env).await;
    stack.start_rules(&env);
    stack.start_notifier_with(&env);
    stack.start_scheduler(&env);
    stack
}

async fn open_critical(stack: &Stack, student_no: &str, n: usize) -> (String, String) {
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body(student_no, "critical", "a narrative"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(n).await;
    // The newest case (ids are UUIDv7: time-ordered).
    let c = cases
        .iter()
        .max_by_key(|c| c["id"].as_str().unwrap_or_default().to_owned())
        .unwrap();
    (
        c["id"].as_str().unwrap().to_owned(),
        c["reference"].as_str().unwrap().to_owned(),
    )
}

async fn case_json(stack: &Stack, id: &str) -> Value {
    stack
        .get(&stack.school.counsellor, &format!("/v1/cases/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// The texts the webhook stand-in took for `phone`.
fn texts_to(sms: &Sms, phone: &str) -> Vec<String> {
    sms.primary
        .received()
        .into_iter()
        .filter(|r| r.phone.ends_with(phone))
        .filter_map(|r| r.text)
        .collect()
}

async fn acknowledgements(stack: &Stack) -> Vec<sanyu_store::entities::audit_record::Model> {
    use sanyu_store::entities::audit_record;
    audit_record::Entity::find()
        .filter(audit_record::Column::Action.eq("case.acknowledge"))
        .all(&stack.conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_sms_reply_acknowledges_the_case_stops_the_ladder_and_is_answered_and_a_forged_one_changes_nothing_on_sqlite()
 {
    an_sms_reply_acknowledges_the_case_stops_the_ladder_and_is_answered_and_a_forged_one_changes_nothing(TestDb::sqlite()).await;
}

#[tokio::test]
async fn an_sms_reply_acknowledges_the_case_stops_the_ladder_and_is_answered_and_a_forged_one_changes_nothing_on_postgres()
 {
    if let Some(db) = TestDb::postgres().await {
        an_sms_reply_acknowledges_the_case_stops_the_ladder_and_is_answered_and_a_forged_one_changes_nothing(db).await;
    }
}

/// A critical case's SMS to the counsellor, and their replies: a forged one
/// (wrong signature, wrong token) is refused and changes nothing; "1" with
/// two cases waiting is ambiguous, changes nothing and is explained by SMS;
/// the reference acknowledges its case, then "1" the other; each is the one
/// Acknowledge command (audited `via sms_reply`), confirmed by SMS once
/// (a provider's retry has no second effect), and the ladder's next rung
/// (the leader) never comes.
async fn an_sms_reply_acknowledges_the_case_stops_the_ladder_and_is_answered_and_a_forged_one_changes_nothing(
    db: TestDb,
) {
    const RUNG_AFTER: u64 = 15;
    let sms = Sms::start().await;
    let stack = ack_stack(db, &sms, RUNG_AFTER).await;
    let (first, first_ref) = open_critical(&stack, "S1", 1).await;
    let opened = std::time::Instant::now();
    let (second, second_ref) = open_critical(&stack, "S2", 2).await;
    assert_ne!(first, second);
    // Both alerts reach the counsellor's phone, each with "reply 1" and a link.
    let alerts = eventually(
        Duration::from_secs(20),
        "two alerts to the counsellor",
        || async {
            let t = texts_to(&sms, COUNSELLOR_PHONE);
            (t.len() >= 2).then_some(t)
        },
    )
    .await;
    for text in &alerts {
        assert!(text.contains("回复1确认"), "{text}");
        assert!(text.contains("https://sanyu.test/a/"), "{text}");
    }
    let url = format!("{}/v1/sms/replies/webhook", stack.base_url());

    // A reply signed with the wrong secret: 401, nothing changes.
    let forged = sms
        .primary
        .post_reply(&url, COUNSELLOR_PHONE, "1", 1, Some("not-the-secret"))
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // Alibaba Cloud's push with a wrong token: 401 too.
    let wrong = sms
        .secondary
        .post_reply(
            &format!("{}/v1/sms/replies/aliyun/guessed", stack.base_url()),
            COUNSELLOR_PHONE,
            "1",
            2,
            None,
        )
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // "1" while two cases wait: ambiguous, nothing changes, the answer lists both.
    let r = sms
        .primary
        .post_reply(&url, COUNSELLOR_PHONE, "1", 3, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["outcomes"], json!(["ambiguous"]));
    for id in [&first, &second] {
        assert_eq!(case_json(&stack, id).await["status"], "open");
    }
    assert!(acknowledgements(&stack).await.is_empty());
    eventually(
        Duration::from_secs(20),
        "the ambiguity explained",
        || async {
            texts_to(&sms, COUNSELLOR_PHONE)
                .into_iter()
                .find(|t| t.contains("多个待确认个案"))
                .filter(|t| t.contains(&first_ref) && t.contains(&second_ref))
        },
    )
    .await;

    // The reference (lower case, no "C-") picks the first case, through Alibaba Cloud's push.
    let code = first_ref.trim_start_matches("C-").to_lowercase();
    let r = sms
        .secondary
        .post_reply(
            &format!(
                "{}/v1/sms/replies/aliyun/{ALIYUN_REPLY_TOKEN}",
                stack.base_url()
            ),
            COUNSELLOR_PHONE,
            &code,
            4,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), sanyu_sms::aliyun::SMS_REPORT_ACK);
    // Then "1" acknowledges the one case still waiting.
    let r = sms
        .primary
        .post_reply(&url, COUNSELLOR_PHONE, "1", 5, None)
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["outcomes"], json!(["acknowledged"]));
    // The provider retries that callback: no second effect.
    let r = sms
        .primary
        .post_reply(&url, COUNSELLOR_PHONE, "1", 5, None)
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["outcomes"], json!(["duplicate"]));
    // An unknown number changes nothing.
    let r = sms
        .primary
        .post_reply(&url, "13911112222", "1", 6, None)
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["outcomes"], json!(["unknown_number"]));

    for id in [&first, &second] {
        let c = case_json(&stack, id).await;
        assert_eq!(c["status"], "acknowledged", "{c}");
        assert_eq!(c["ladder_state"], "stopped", "{c}");
    }
    // The same acknowledge command, audited with its channel.
    let acks = acknowledgements(&stack).await;
    assert_eq!(acks.len(), 2);
    assert!(
        acks.iter().all(|a| a.source.ends_with("via sms_reply")),
        "{acks:?}"
    );
    // Each acknowledgement is confirmed by SMS, once.
    let confirmations = eventually(Duration::from_secs(20), "two confirmations", || async {
        let c: Vec<String> = texts_to(&sms, COUNSELLOR_PHONE)
            .into_iter()
            .filter(|t| t.contains("已由您确认"))
            .collect();
        (c.len() >= 2).then_some(c)
    })
    .await;
    assert!(confirmations.iter().any(|t| t.contains(&first_ref)));
    assert!(confirmations.iter().any(|t| t.contains(&second_ref)));

    // The ladder stopped: the leader's rung never comes.
    let rung_due = opened + Duration::from_secs(RUNG_AFTER + 3);
    tokio::time::sleep(rung_due.saturating_duration_since(std::time::Instant::now())).await;
    assert!(
        sms.phones().iter().all(|p| p != LEADER_PHONE),
        "no leader SMS: {:?}",
        sms.phones()
    );
    assert_eq!(
        texts_to(&sms, COUNSELLOR_PHONE)
            .iter()
            .filter(|t| t.contains("已由您确认"))
            .count(),
        2,
        "one confirmation each"
    );
    // No number or reply text in the gateway's log, nor the reply token.
    let logs = stack.gateway.as_ref().unwrap().logs();
    assert!(!logs.contains(COUNSELLOR_PHONE));
    assert!(!logs.contains(ALIYUN_REPLY_TOKEN));
}

#[tokio::test]
async fn the_acknowledgement_link_shows_a_page_on_get_and_acknowledges_only_on_post_after_sign_in()
{
    use crate::console::{Agent, assert_console_headers, signed_in_agent};
    let sms = Sms::start().await;
    let stack = ack_stack(TestDb::sqlite(), &sms, 600).await;
    let (case, _) = open_critical(&stack, "S1", 1).await;
    let text = eventually(
        Duration::from_secs(20),
        "the counsellor's alert",
        || async { texts_to(&sms, COUNSELLOR_PHONE).into_iter().next() },
    )
    .await;
    let link = text
        .split_whitespace()
        .chain(text.split('：'))
        .find_map(|w| w.find("https://sanyu.test/a/").map(|i| w[i..].to_owned()))
        .unwrap();
    let path = link.trim_start_matches("https://sanyu.test").to_owned();
    let token = path.trim_start_matches("/a/");
    assert_eq!(token.len(), 26, "{path}");
    // The email carries the same link.
    let mails = stack.smtp.wait_for(2, Duration::from_secs(20)).await;
    assert!(mails.iter().any(|m| m.text().contains(&link)));

    // Signed out, GET shows a page that sends to sign-in and back; nothing changes.
    let mut anonymous = Agent::new(&stack.base_url());
    let page = anonymous.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_console_headers(&page);
    assert!(
        page.body.contains(&format!("/sign-in?next={path}")),
        "{}",
        page.body
    );
    // A POST without a session goes to sign-in; nothing changes.
    let post = anonymous.post(&path, &[("csrf", "x")]).await;
    assert_eq!(post.status, 303);
    assert!(
        post.location().starts_with("/sign-in"),
        "{}",
        post.location()
    );
    // An unknown token: one page, 410.
    assert_eq!(
        anonymous.get("/a/abcdefghijklmnopqrstuvwx27").await.status,
        410
    );
    assert_eq!(case_json(&stack, &case).await["status"], "open");

    // Signed in, GET shows the button (a link preview with cookies acknowledges nothing either).
    let mut agent = signed_in_agent(&stack, &stack.school.counsellor_email, 1).await;
    let page = agent.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.field("csrf");
    assert!(!csrf.is_empty(), "{}", page.body);
    assert_eq!(case_json(&stack, &case).await["status"], "open");
    // Without the session's CSRF token: refused.
    let refused = agent.post(&path, &[("csrf", "wrong")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(case_json(&stack, &case).await["status"], "open");
    // The button: acknowledged, and on to the case page.
    let done = agent.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), format!("/cases/{case}?done=acknowledged"));
    let c = case_json(&stack, &case).await;
    assert_eq!(c["status"], "acknowledged");
    assert_eq!(c["ladder_state"], "stopped");
    let acks = acknowledgements(&stack).await;
    assert_eq!(acks.len(), 1);
    assert!(acks[0].source.ends_with("via link"), "{:?}", acks[0]);
    // Again: the case page, nothing more.
    let again = agent.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(again.location(), format!("/cases/{case}"));
    assert_eq!(acknowledgements(&stack).await.len(), 1);
    // The token is never logged.
    assert!(!stack.gateway.as_ref().unwrap().logs().contains(token));
}
