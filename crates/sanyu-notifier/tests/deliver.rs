//! The deliverer's step function against real servers: a fresh database, the
//! SMS providers' signature-checking stand-ins, a real SMTP server over TCP,
//! and an injected clock. Failover order, exactly-once under redelivery and
//! two replicas, permanent vs transient failures, quiet hours, rate limits,
//! and the privacy canary on what is actually sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sanyu_domain::{RiskLevel, case_reference};
use sanyu_events::NotificationReason;
use sanyu_events::{Envelope, Payload, v1};
use sanyu_notifier::policy::ManualClock;
use sanyu_notifier::{Deliverer, Mailer};
use sanyu_platform::Config;
use sanyu_platform::config::{NotifyChannel, Secret};
use sanyu_platform::consumer::Outcome;
use sanyu_platform::relay::Waker;
use sanyu_sms::stand_in::{Reply, StandIn, StandInKind};
use sanyu_sms::{Audience, ProviderConfig};
use sanyu_store::Db;
use sanyu_store::deliveries;
use sanyu_store::entities::{delivery, delivery_attempt, staff};
use sanyu_store::sea_orm::sea_query::Expr;
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use sanyu_test_support::{SmtpServer, TestDb};
use serde_json::json;
use uuid::Uuid;

const WEBHOOK_SECRET: &str = "whsec-test-primary";
const ALIYUN_KEY_ID: &str = "LTAI-test";
const ALIYUN_SECRET: &str = "aliyun-test-secret";

/// A school, its database, an SMTP server and two SMS stand-ins: the primary
/// (signed webhook) and the secondary (Alibaba Cloud).
struct Fixture {
    _test_db: TestDb,
    db: Db,
    smtp: SmtpServer,
    primary: StandIn,
    secondary: StandIn,
}

impl Fixture {
    async fn new(test_db: TestDb) -> Self {
        let db = test_db.connect().await;
        sanyu_test_support::seed_school(&db, "NTF1").await;
        Self {
            _test_db: test_db,
            db,
            smtp: SmtpServer::start(),
            primary: StandIn::start(StandInKind::Webhook, "", WEBHOOK_SECRET)
                .await
                .unwrap(),
            secondary: StandIn::start(StandInKind::Aliyun, ALIYUN_KEY_ID, ALIYUN_SECRET)
                .await
                .unwrap(),
        }
    }

    fn config(&self) -> Config {
        let mut c = Config::default();
        c.smtp.url = Secret::new(self.smtp.url());
        c.smtp.from = "Sanyu <sanyu@test.local>".into();
        c.http.public_base_url = "https://sanyu.test".into();
        c.nats.max_deliver = 8;
        c.notify.backoff_initial_ms = 10;
        c.notify.backoff_max_ms = 40;
        c.notify.lease_secs = 20;
        // Each request on its own (digests have their own test).
        c.notify.digest_window_secs = 0;
        c.sms.primary = Some(
            serde_json::from_value::<ProviderConfig>(json!({
                "kind": "webhook",
                "url": self.primary.base_url(),
                "secret": WEBHOOK_SECRET,
                "http": {"connect_timeout_ms": 1000, "request_timeout_ms": 2000},
            }))
            .unwrap(),
        );
        c.sms.secondary = Some(
            serde_json::from_value::<ProviderConfig>(json!({
                "kind": "aliyun",
                "endpoint": self.secondary.base_url(),
                "access_key_id": ALIYUN_KEY_ID,
                "access_key_secret": ALIYUN_SECRET,
                "sign_name": "测试学校",
                "templates": [{
                    "audience": "staff",
                    "locale": "zh-CN",
                    "id": "SMS_100001",
                    "params": ["school", "case_ref", "level", "time"],
                }],
                "http": {"connect_timeout_ms": 1000, "request_timeout_ms": 2000},
            }))
            .unwrap(),
        );
        c
    }

    fn deliverer(&self, config: &Config) -> Deliverer {
        let mailer = Mailer::from_config(&config.smtp).unwrap();
        Deliverer::new(self.db.clone(), Waker::default(), mailer, config).unwrap()
    }

    async fn staff_id(&self, staff_no: &str) -> Uuid {
        staff::Entity::find()
            .filter(staff::Column::StaffNo.eq(staff_no))
            .one(&self.db)
            .await
            .unwrap()
            .unwrap()
            .id
    }

    async fn row(&self, key: &str) -> Option<delivery::Model> {
        delivery::Entity::find()
            .filter(delivery::Column::NotificationKey.eq(key))
            .one(&self.db)
            .await
            .unwrap()
    }

    async fn status(&self, key: &str) -> Option<String> {
        self.row(key).await.map(|r| r.status)
    }

    /// (provider, status) of every attempt of `key`, in order.
    async fn attempts(&self, key: &str) -> Vec<(String, String, Option<String>)> {
        delivery_attempt::Entity::find()
            .filter(delivery_attempt::Column::DeliveryKey.eq(key))
            .order_by_asc(delivery_attempt::Column::At)
            .order_by_asc(delivery_attempt::Column::Id)
            .all(&self.db)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.provider, a.status, a.error))
            .collect()
    }

    fn sms_count(&self) -> usize {
        self.primary.received().len() + self.secondary.received().len()
    }
}

/// `text` without its links and case references (`C-…`).
fn without_generated(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || "：，。（）()【】".contains(c))
        .filter(|w| !w.starts_with("http") && !w.starts_with("C-"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A notification request as the escalation ladder writes it.
fn request(staff_id: Uuid, level: RiskLevel) -> (Envelope, v1::NotificationRequested) {
    let case_id = Uuid::now_v7();
    let key = format!("{case_id}:{staff_id}:e1:r0");
    let req = v1::NotificationRequested {
        notification_key: key.clone(),
        case_id: case_id.to_string(),
        case_reference: case_reference(case_id),
        level: sanyu_events::level_to_proto(level) as i32,
        recipient_staff_id: staff_id.to_string(),
        channel: v1::Channel::Email as i32,
        reason: "case_opened".into(),
        rung: 0,
        reason_code: v1::NotificationReason::CaseOpened as i32,
        sign_in_code: String::new(),
        ack_outcome: String::new(),
        sign_in_link: String::new(),
    };
    let envelope = sanyu_events::envelope(
        format!("notify.requested:{key}"),
        Utc::now(),
        "NTF1",
        0,
        Payload::NotificationRequested(req.clone()),
    );
    (envelope, req)
}

fn sms_key(req: &v1::NotificationRequested) -> String {
    deliveries::channel_key(&req.notification_key, "sms")
}

fn email_key(req: &v1::NotificationRequested) -> String {
    deliveries::channel_key(&req.notification_key, "email")
}

fn shanghai(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_critical_request_is_sent_by_sms_and_email_exactly_once_under_redelivery_and_two_replicas()
 {
    for test_db in TestDb::all().await {
        let f = Fixture::new(test_db).await;
        let config = f.config();
        let one = f.deliverer(&config);
        let two = f.deliverer(&config);
        let k1 = f.staff_id("K1").await;
        let (env, req) = request(k1, RiskLevel::Critical);

        // Two replicas get the same message at once, then it is redelivered twice.
        let (a, b) = tokio::join!(one.deliver(&env, &req, 1), two.deliver(&env, &req, 1));
        let outcomes = [a.unwrap(), b.unwrap()];
        // Each replica may win one channel and find the other's held (both
        // then come back when its lease ends): what matters is that nothing is sent twice, below.
        assert!(
            outcomes.iter().all(|o| match o {
                Outcome::Ack => true,
                Outcome::Defer(_, why) => why.starts_with("another notifier holds"),
                _ => false,
            }),
            "{outcomes:?}"
        );
        for delivered in 2..4 {
            assert_eq!(
                one.deliver(&env, &req, delivered).await.unwrap(),
                Outcome::Ack
            );
        }
        assert_eq!(two.deliver(&env, &req, 4).await.unwrap(), Outcome::Ack);

        let sms = f.primary.received();
        assert_eq!(sms.len(), 1, "one SMS");
        assert_eq!(sms[0].phone, "+8613900000003");
        // The notification key is the provider's idempotency key.
        assert_eq!(
            sms[0].idempotency_key.as_deref(),
            Some(req.notification_key.as_str())
        );
        assert!(f.secondary.received().is_empty());
        let mails = f.smtp.wait_for(1, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(f.smtp.received().len(), 1, "one email");
        assert_eq!(mails[0].to, vec!["counsellor@ntf1.test".to_owned()]);
        assert!(mails[0].text().contains(&req.case_reference));
        assert!(
            mails[0]
                .text()
                .contains(&format!("https://sanyu.test/cases/{}", req.case_id))
        );

        assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("sent"));
        assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("sent"));
        let attempts = f.attempts(&sms_key(&req)).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (attempts[0].0.as_str(), attempts[0].1.as_str()),
            ("webhook", "accepted")
        );
        let attempts = f.attempts(&email_key(&req)).await;
        assert_eq!(
            (attempts[0].0.as_str(), attempts[0].1.as_str()),
            ("smtp", "accepted")
        );
    }
}

#[tokio::test]
async fn the_primary_sms_provider_answering_500_fails_over_to_the_secondary_after_its_retries() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.attempts_per_provider = 3;
    let deliverer = f.deliverer(&config);
    for _ in 0..3 {
        f.primary.script(Reply::ServerError);
    }
    let (env, req) = request(f.staff_id("K1").await, RiskLevel::Critical);
    assert_eq!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Ack
    );

    assert_eq!(f.primary.received().len(), 3, "three tries on the primary");
    let second = f.secondary.received();
    assert_eq!(second.len(), 1, "then the secondary");
    assert_eq!(second[0].phone, "13900000003");
    assert_eq!(second[0].template, "SMS_100001");
    assert_eq!(
        second[0].idempotency_key.as_deref(),
        Some(req.notification_key.as_str())
    );
    let attempts = f.attempts(&sms_key(&req)).await;
    let summary: Vec<(&str, &str)> = attempts
        .iter()
        .map(|(p, s, _)| (p.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("webhook", "transient_error"),
            ("webhook", "transient_error"),
            ("webhook", "transient_error"),
            ("aliyun", "accepted"),
        ]
    );
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("sent"));
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried_and_keeps_the_providers_reason() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let deliverer = f.deliverer(&f.config());
    f.primary.script_for("13900000003", Reply::InvalidNumber);
    f.secondary.script_for("13900000003", Reply::InvalidNumber);
    let (env, req) = request(f.staff_id("K1").await, RiskLevel::Critical);
    assert_eq!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Ack
    );

    // One try on each provider, no retries.
    assert_eq!(f.primary.received().len(), 1);
    assert_eq!(f.secondary.received().len(), 1);
    let attempts = f.attempts(&sms_key(&req)).await;
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|(_, s, _)| s == "permanent_error"));
    assert!(attempts[0].2.as_deref().unwrap().contains("invalid_number"));
    assert!(
        attempts[1]
            .2
            .as_deref()
            .unwrap()
            .contains("isv.MOBILE_NUMBER_ILLEGAL")
    );
    let row = f.row(&sms_key(&req)).await.unwrap();
    assert_eq!(row.status, "failed");
    assert!(
        row.last_error
            .unwrap()
            .contains("isv.MOBILE_NUMBER_ILLEGAL")
    );
    // The email reached the person: the failed SMS is recorded but is no alarm.
    assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("sent"));
    let case_id = Uuid::parse_str(&req.case_id).unwrap();
    let unreached = deliveries::unreached_failures(&f.db, case_id, Utc::now())
        .await
        .unwrap();
    assert!(unreached.is_empty(), "{unreached:?}");
}

#[tokio::test]
async fn when_every_sms_provider_fails_the_email_is_sent_at_once_and_the_sms_retried_later() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.channels.high = vec![NotifyChannel::Sms];
    config.notify.attempts_per_provider = 2;
    config.notify.quiet_hours.enabled = false;
    let deliverer = f.deliverer(&config);
    f.primary.script_for("13900000003", Reply::ServerError);
    f.secondary
        .script_for("13900000003", Reply::HttpStatus(503));
    let (env, req) = request(f.staff_id("K1").await, RiskLevel::High);
    // Both providers fail transiently: the email goes at once, the SMS is
    // released and the request redelivered later.
    assert!(matches!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Retry(_)
    ));
    assert_eq!(f.primary.received().len(), 2);
    assert_eq!(f.secondary.received().len(), 2);
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("pending"));
    assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("sent"));
    let mails = f.smtp.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(mails[0].to, vec!["counsellor@ntf1.test".to_owned()]);

    // Still failing on the last delivery: the SMS is recorded failed, the
    // email is not sent again.
    assert_eq!(
        deliverer
            .deliver(&env, &req, config.nats.max_deliver)
            .await
            .unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("failed"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.smtp.received().len(), 1);
}

#[tokio::test]
async fn when_every_channel_fails_the_deliveries_are_failed_and_the_auditor_sees_them() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.attempts_per_provider = 1;
    // Nothing listens there: the SMTP server is down.
    config.smtp.url = Secret::new(format!(
        "smtp://127.0.0.1:{}",
        sanyu_test_support::free_port()
    ));
    let deliverer = f.deliverer(&config);
    f.primary.script_for("13900000003", Reply::TemplateRejected);
    f.secondary
        .script_for("13900000003", Reply::TemplateRejected);
    let (env, req) = request(f.staff_id("K1").await, RiskLevel::Critical);
    // The SMS fails for good; the SMTP outage may pass: retried later.
    assert!(matches!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Retry(_)
    ));
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("failed"));
    assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("pending"));
    // The last delivery gives up.
    assert_eq!(
        deliverer
            .deliver(&env, &req, config.nats.max_deliver)
            .await
            .unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("failed"));
    assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("failed"));
    let case_id = Uuid::parse_str(&req.case_id).unwrap();
    let unreached = deliveries::unreached_failures(&f.db, case_id, Utc::now())
        .await
        .unwrap();
    assert_eq!(unreached.len(), 2);
}

#[tokio::test]
async fn a_claimed_but_unsent_delivery_is_sent_once_its_lease_expires() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.lease_secs = 2;
    let deliverer = f.deliverer(&config);
    let (env, req) = request(f.staff_id("K1").await, RiskLevel::Critical);
    // A notifier claimed both channels and died before sending.
    for channel in ["sms", "email"] {
        let txn = sanyu_store::begin_write(&f.db).await.unwrap();
        let claim = deliveries::claim(
            &*txn,
            &deliveries::DeliveryRequest {
                key: &deliveries::channel_key(&req.notification_key, channel),
                case_id: Uuid::parse_str(&req.case_id).unwrap(),
                recipient_staff_id: Uuid::parse_str(&req.recipient_staff_id).unwrap(),
                channel,
                worker: "dead-notifier",
                lease: chrono::Duration::seconds(2),
                ack_token_hash: None,
            },
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
        assert!(matches!(claim, deliveries::Claim::Claimed { .. }));
    }
    // While the lease lives, nothing is sent and the message comes back
    // when the lease ends.
    assert!(matches!(
        deliverer.deliver(&env, &req, 2).await.unwrap(),
        Outcome::Defer(..)
    ));
    assert_eq!(f.sms_count(), 0);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        deliverer.deliver(&env, &req, 3).await.unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 1);
    f.smtp.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(f.row(&sms_key(&req)).await.unwrap().attempts, 2);
}

#[tokio::test]
async fn quiet_hours_hold_a_high_sms_until_morning_but_never_a_critical_one() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let clock = Arc::new(ManualClock::new(shanghai(30, 23, 10)));
    let deliverer = f.deliverer(&f.config()).with_clock(clock.clone());
    let k1 = f.staff_id("K1").await;

    let (env, req) = request(k1, RiskLevel::High);
    match deliverer.deliver(&env, &req, 1).await.unwrap() {
        // 23:10 → 07:00 is 7 h 50 min.
        Outcome::Defer(wait, why) => {
            assert_eq!(wait, Duration::from_secs((7 * 60 + 50) * 60));
            assert!(why.contains("quiet hours"), "{why}");
        }
        other => panic!("expected a deferral, got {other:?}"),
    }
    assert_eq!(f.sms_count(), 0, "no SMS at night");
    // The email is silent and goes at once.
    assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("sent"));
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("pending"));

    // A critical message at the same hour goes by SMS at once.
    let (cenv, creq) = request(k1, RiskLevel::Critical);
    assert_eq!(
        deliverer.deliver(&cenv, &creq, 1).await.unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 1);

    // In the morning the held SMS goes, and the email is not sent again.
    clock.set(shanghai(30, 23, 10) + chrono::Duration::minutes(7 * 60 + 51));
    assert_eq!(
        deliverer.deliver(&env, &req, 2).await.unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 2);
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("sent"));
    f.smtp.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.smtp.received().len(), 2, "one email per request");
}

#[tokio::test]
async fn the_recipient_rate_limit_defers_elevated_notices_but_never_high_or_critical_warnings() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.recipient_per_hour = 1;
    config.notify.quiet_hours.enabled = false;
    config.notify.channels.elevated = vec![NotifyChannel::Sms];
    let clock = Arc::new(ManualClock::new(shanghai(30, 10, 0)));
    let deliverer = f.deliverer(&config).with_clock(clock.clone());
    let k1 = f.staff_id("K1").await;

    let (env1, req1) = request(k1, RiskLevel::Elevated);
    assert_eq!(
        deliverer.deliver(&env1, &req1, 1).await.unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 1);

    // A second elevated notice to the same person within the hour waits.
    let (env2, req2) = request(k1, RiskLevel::Elevated);
    match deliverer.deliver(&env2, &req2, 1).await.unwrap() {
        Outcome::Defer(wait, why) => {
            assert_eq!(wait, Duration::from_secs(3600));
            assert!(why.contains("rate limit"), "{why}");
        }
        other => panic!("expected a deferral, got {other:?}"),
    }
    assert_eq!(f.sms_count(), 1);

    // A critical one does not.
    let (env3, req3) = request(k1, RiskLevel::Critical);
    assert_eq!(
        deliverer.deliver(&env3, &req3, 1).await.unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 2);

    // An hour later the deferred one goes.
    clock.advance(chrono::Duration::minutes(60));
    assert_eq!(
        deliverer.deliver(&env2, &req2, 2).await.unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 3);

    // On its last delivery a message is never held back by a limit.
    let (env4, req4) = request(k1, RiskLevel::Elevated);
    assert_eq!(
        deliverer
            .deliver(&env4, &req4, config.nats.max_deliver)
            .await
            .unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 4);
}

/// The limit that held the README's latency bench: a recipient over the
/// per-recipient limit still gets a high case's first warning at once, by
/// every channel of its level (issue #13, item 21).
#[tokio::test]
async fn a_high_cases_first_warning_is_sent_even_when_the_recipient_is_over_the_limit() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.recipient_per_hour = 2;
    config.notify.quiet_hours.enabled = false;
    config.notify.channels.elevated = vec![NotifyChannel::Sms, NotifyChannel::Email];
    let clock = Arc::new(ManualClock::new(shanghai(30, 10, 0)));
    let deliverer = f.deliverer(&config).with_clock(clock.clone());
    let k1 = f.staff_id("K1").await;

    // Two elevated notices use up the hour's limit; the third waits.
    for _ in 0..2 {
        let (env, req) = request(k1, RiskLevel::Elevated);
        assert_eq!(
            deliverer.deliver(&env, &req, 1).await.unwrap(),
            Outcome::Ack
        );
    }
    let (env, req) = request(k1, RiskLevel::Elevated);
    assert!(matches!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Defer(..)
    ));
    assert_eq!(f.sms_count(), 2);
    f.smtp.wait_for(2, Duration::from_secs(5)).await;

    // A high case opens: its first warning goes at once, SMS and email.
    let (env, req) = request(k1, RiskLevel::High);
    assert_eq!(req.reason, "case_opened");
    assert_eq!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 3);
    f.smtp.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("sent"));
    assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("sent"));
}

#[tokio::test]
async fn the_provider_rate_limit_waits_briefly_in_place() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.provider_per_second = 2;
    config.notify.quiet_hours.enabled = false;
    config.notify.channels.high = vec![NotifyChannel::Sms];
    let deliverer = f.deliverer(&config);
    let started = std::time::Instant::now();
    for staff_no in ["K1", "X1", "L1", "T1"] {
        let (env, req) = request(f.staff_id(staff_no).await, RiskLevel::High);
        assert_eq!(
            deliverer.deliver(&env, &req, 1).await.unwrap(),
            Outcome::Ack
        );
    }
    assert_eq!(f.primary.received().len(), 4);
    // Two per second: the last two waited for the limiter.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_burst_of_critical_sms_is_paced_to_the_provider_accounts_limit_and_none_is_refused() {
    let f = Fixture::new(TestDb::sqlite()).await;
    // The account allows 5 requests a second: past that, "throttled".
    f.primary.limit_per_second(5);
    let mut config = f.config();
    config.sms.primary = Some(
        serde_json::from_value::<ProviderConfig>(json!({
            "kind": "webhook",
            "url": f.primary.base_url(),
            "secret": WEBHOOK_SECRET,
            "http": {"connect_timeout_ms": 1000, "request_timeout_ms": 2000, "max_per_second": 5},
        }))
        .unwrap(),
    );
    config.notify.channels.critical = vec![NotifyChannel::Sms];
    let deliverer = f.deliverer(&config);
    let staff = [
        f.staff_id("K1").await,
        f.staff_id("X1").await,
        f.staff_id("L1").await,
        f.staff_id("T1").await,
    ];
    let requests: Vec<_> = (0..12)
        .map(|i| request(staff[i % staff.len()], RiskLevel::Critical))
        .collect();
    let outcomes = futures::future::join_all(
        requests
            .iter()
            .map(|(env, req)| deliverer.deliver(env, req, 1)),
    )
    .await;
    for outcome in outcomes {
        assert_eq!(outcome.unwrap(), Outcome::Ack);
    }
    assert_eq!(f.primary.over_limit(), 0, "the account's limit was kept");
    assert_eq!(
        f.primary.received().len(),
        12,
        "every SMS through the primary"
    );
    assert!(f.secondary.received().is_empty(), "no failover was needed");
}

#[tokio::test]
async fn calls_have_their_own_deliverer_so_a_slow_call_rate_never_holds_up_sms_and_email() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let (voice, config) = with_voice(f.config()).await;
    let messages = f.deliverer(&config);
    let calls = f.deliverer(&config).for_calls();
    let counsellor = f.staff_id("K1").await;

    // A critical case: the messages deliverer texts and emails, never calls…
    let (env, req) = request(counsellor, RiskLevel::Critical);
    assert_eq!(messages.deliver(&env, &req, 1).await.unwrap(), Outcome::Ack);
    assert_eq!(f.sms_count(), 1);
    assert_eq!(f.smtp.received().len(), 1);
    assert!(
        voice.received().is_empty(),
        "the messages deliverer does not call"
    );
    // …and the calls deliverer only calls.
    assert_eq!(calls.deliver(&env, &req, 1).await.unwrap(), Outcome::Ack);
    assert_eq!(voice.received().len(), 1);
    assert_eq!(f.sms_count(), 1, "the calls deliverer does not text");
    assert_eq!(f.smtp.received().len(), 1, "nor email");
    let key = deliveries::channel_key(&req.notification_key, "voice");
    assert_eq!(f.status(&key).await.as_deref(), Some(deliveries::SENT));

    // A critical request two hours old (held from before the calls consumer
    // existed, or replayed) is not called about.
    let (mut env, req) = request(counsellor, RiskLevel::Critical);
    env.occurred_at = Some(sanyu_events::timestamp(
        Utc::now() - chrono::Duration::hours(2),
    ));
    assert_eq!(calls.deliver(&env, &req, 1).await.unwrap(), Outcome::Ack);
    assert_eq!(voice.received().len(), 1, "no call about a stale alarm");

    // A high case is never called.
    let (env, req) = request(counsellor, RiskLevel::High);
    assert_eq!(calls.deliver(&env, &req, 1).await.unwrap(), Outcome::Ack);
    assert_eq!(voice.received().len(), 1);
    let key = deliveries::channel_key(&req.notification_key, "voice");
    assert_eq!(
        f.status(&key).await,
        None,
        "no delivery row for a call not planned"
    );
}

/// A Tencent voice stand-in, and `config` with it as the call provider and
/// quiet hours off.
async fn with_voice(mut config: Config) -> (StandIn, Config) {
    const SECRET_ID: &str = "AKID-calls";
    const SECRET_KEY: &str = "calls-secret";
    let voice = StandIn::start(StandInKind::Tencent, SECRET_ID, SECRET_KEY)
        .await
        .unwrap();
    config.voice.provider = Some(
        serde_json::from_value::<sanyu_sms::VoiceProviderConfig>(json!({
            "kind": "tencent",
            "endpoint": voice.base_url(),
            "secret_id": SECRET_ID,
            "secret_key": SECRET_KEY,
            "voice_sdk_app_id": "1400000001",
            "template_id": "100001",
            "params": ["school", "level", "case_ref"],
        }))
        .unwrap(),
    );
    config.notify.quiet_hours.enabled = false;
    (voice, config)
}

/// A person with no address at all is still tried on every channel, so that
/// the failure is on record (the ladder auditor raises the alarm): the
/// call's delivery fails at once and for good, saying why (provider
/// `none`), and nobody is called.
#[tokio::test]
async fn a_call_to_staff_without_any_address_fails_at_once_and_says_why() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let (voice, config) = with_voice(f.config()).await;
    let calls = f.deliverer(&config).for_calls();
    let counsellor = f.staff_id("K1").await;
    staff::Entity::update_many()
        .col_expr(staff::Column::Phone, Expr::value(Option::<String>::None))
        .col_expr(staff::Column::Email, Expr::value(Option::<String>::None))
        .filter(staff::Column::Id.eq(counsellor))
        .exec(&f.db)
        .await
        .unwrap();

    let (env, req) = request(counsellor, RiskLevel::Critical);
    assert_eq!(calls.deliver(&env, &req, 1).await.unwrap(), Outcome::Ack);
    assert!(voice.received().is_empty(), "nobody is called");
    let key = deliveries::channel_key(&req.notification_key, "voice");
    assert_eq!(f.status(&key).await.as_deref(), Some(deliveries::FAILED));
    assert_eq!(
        f.attempts(&key).await,
        vec![(
            "none".to_owned(),
            deliveries::PERMANENT_ERROR.to_owned(),
            Some("recipient has no mobile number".to_owned())
        )]
    );
}

/// The privacy canary on what the notifier really sends: a student whose name,
/// guardian and the report narrative are canaries, a real case opened by the
/// escalation ladder, the notification requests it wrote, and every SMS and
/// email those produce. None may contain a canary or a denied word.
#[tokio::test]
async fn nothing_sent_contains_the_students_name_the_narrative_or_a_denied_word() {
    let f = Fixture::new(TestDb::sqlite()).await;
    const CANARIES: [&str; 5] = [
        "CANARY-STUDENT",
        "金丝雀学生",
        "CANARY-GUARDIAN",
        "CANARY-NARRATIVE",
        "CANARY-STAFF",
    ];
    let txn = sanyu_store::begin_write(&f.db).await.unwrap();
    let students = "school_code,school_name,grade_code,grade_name,class_code,class_name,student_no,student_name,gender,guardian_name,guardian_relation,guardian_phone,guardian_email\n\
         NTF1,Test School NTF1,G1,Grade 1,C1,Class 1,Z9,CANARY-STUDENT 金丝雀学生,F,CANARY-GUARDIAN,mother,13800000099,\n";
    let staff_csv = "school_code,staff_no,name,role,class_code,phone,email\n\
         NTF1,K1,CANARY-STAFF,counsellor,,13900000003,counsellor@ntf1.test\n";
    sanyu_store::roster::import_students(
        &*txn,
        students.as_bytes(),
        sanyu_store::roster::ImportScope::Operator,
    )
    .await
    .unwrap();
    sanyu_store::roster::import_staff(
        &*txn,
        staff_csv.as_bytes(),
        sanyu_store::roster::ImportScope::Operator,
    )
    .await
    .unwrap();
    let student = sanyu_store::entities::student::Entity::find()
        .filter(sanyu_store::entities::student::Column::StudentNo.eq("Z9"))
        .one(&*txn)
        .await
        .unwrap()
        .unwrap();
    let case_id = Uuid::now_v7();
    sanyu_store::cases::open(
        &*txn,
        sanyu_store::cases::NewCase {
            id: case_id,
            reference: case_reference(case_id),
            school_id: student.school_id,
            class_id: Some(student.class_id),
            student_id: Some(student.id),
            subject: sanyu_domain::CaseSubject::Student,
            level: RiskLevel::Critical,
            rule: "CANARY-NARRATIVE".into(),
            at: Utc::now(),
        },
    )
    .await
    .unwrap();
    let case = sanyu_store::cases::get(&*txn, case_id)
        .await
        .unwrap()
        .unwrap();
    sanyu_escalation::start(
        &*txn,
        &case,
        &sanyu_domain::EscalationPolicy::default(),
        NotificationReason::CaseOpened,
        Utc::now(),
        None,
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();

    let deliverer = f.deliverer(&f.config());
    let rows = sanyu_store::entities::outbox::Entity::find()
        .filter(
            sanyu_store::entities::outbox::Column::Subject.starts_with("sanyu.notify.requested"),
        )
        .all(&f.db)
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let env = sanyu_events::decode(&row.payload).unwrap();
        let Some(Payload::NotificationRequested(req)) = &env.payload else {
            panic!("not a request");
        };
        assert_eq!(deliverer.deliver(&env, req, 1).await.unwrap(), Outcome::Ack);
    }

    let mut sent: Vec<String> = Vec::new();
    for sms in f.primary.received() {
        sent.push(sms.text.clone().unwrap_or_default());
        sent.extend(sms.params.iter().map(|(_, v)| v.clone()));
    }
    let mails = f.smtp.received();
    assert!(!mails.is_empty() && !sent.is_empty(), "something was sent");
    for mail in &mails {
        sent.push(mail.subject());
        sent.push(mail.text());
    }
    for text in &sent {
        for canary in CANARIES {
            assert!(!text.contains(canary), "canary {canary} in: {text}");
        }
        // The deny-list reads what people wrote, not what Sanyu generated at
        // random (a reference, a link's token may spell `gad7`).
        let lower = without_generated(text).to_lowercase();
        for word in sanyu_sms::templates::denied_words(Audience::Staff) {
            assert!(!lower.contains(word), "denied word {word} in: {text}");
        }
    }
}

/// A database outage right after the providers accepted: the deliverer keeps
/// the outcome in hand and records it once PostgreSQL is back; the
/// redeliveries that follow, even after the lease ran out, send nothing
/// again. Exactly one SMS and one email (issue #13, item 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_send_is_recorded_after_a_database_outage_and_never_sent_again() {
    let Some(mut cluster) = sanyu_test_support::PgCluster::start().await else {
        return;
    };
    let f = Fixture::new(TestDb::postgres_at(&cluster.admin_url()).await).await;
    let mut config = f.config();
    config.notify.lease_secs = 20;
    let deliverer = f
        .deliverer(&config)
        .with_pause_after_send(Some(Duration::from_millis(1500)));
    let (env, req) = request(f.staff_id("K1").await, RiskLevel::Critical);

    // PostgreSQL stops as soon as both providers have accepted, before the
    // deliverer records it, and comes back 12 s later (longer than the
    // pool's acquire timeout, so the recording fails at least once).
    let outage = async {
        sanyu_test_support::eventually(
            Duration::from_secs(10),
            "the SMS and the email accepted",
            || async { (f.sms_count() == 1 && f.smtp.received().len() == 1).then_some(()) },
        )
        .await;
        cluster.stop().await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        cluster.restart().await;
    };
    let claimed = std::time::Instant::now();
    let (first, ()) = tokio::join!(deliverer.deliver(&env, &req, 1), outage);
    eprintln!("first delivery: {first:?}");

    // JetStream redelivers the request (once at once, once after the lease
    // would have run out).
    let _ = deliverer.deliver(&env, &req, 2).await;
    tokio::time::sleep(Duration::from_secs(21).saturating_sub(claimed.elapsed())).await;
    let last = deliverer.deliver(&env, &req, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    eprintln!(
        "after the outage: {} SMS, {} email(s); last delivery {last:?}",
        f.sms_count(),
        f.smtp.received().len()
    );
    assert_eq!(f.sms_count(), 1, "one SMS");
    assert_eq!(f.smtp.received().len(), 1, "one email");
    assert_eq!(first.unwrap(), Outcome::Ack);
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("sent"));
    assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("sent"));
}

/// A notifier that stopped between the provider's acceptance and its commit
/// leaves the send marked: the one that takes the expired claim over waits
/// the grace, sends again with the same idempotency identity (the SMS key,
/// the email's Message-ID) and records the takeover (issue #13, item 10).
#[tokio::test]
async fn a_takeover_of_an_interrupted_send_resends_with_the_same_identity_and_is_recorded() {
    for test_db in TestDb::all().await {
        let f = Fixture::new(test_db).await;
        let mut config = f.config();
        config.notify.lease_secs = 2;
        config.notify.takeover_grace_ms = 200;
        config.sms.secondary = None;
        let deliverer = f.deliverer(&config);
        let (env, req) = request(f.staff_id("K1").await, RiskLevel::Critical);
        // A notifier claimed both channels, marked the sends and died.
        for channel in ["sms", "email"] {
            let key = deliveries::channel_key(&req.notification_key, channel);
            let txn = sanyu_store::begin_write(&f.db).await.unwrap();
            let claim = deliveries::claim(
                &*txn,
                &deliveries::DeliveryRequest {
                    key: &key,
                    case_id: Uuid::parse_str(&req.case_id).unwrap(),
                    recipient_staff_id: Uuid::parse_str(&req.recipient_staff_id).unwrap(),
                    channel,
                    worker: "dead-notifier",
                    lease: chrono::Duration::seconds(2),
                    ack_token_hash: None,
                },
            )
            .await
            .unwrap();
            assert!(matches!(
                claim,
                deliveries::Claim::Claimed {
                    interrupted: None,
                    ..
                }
            ));
            assert!(
                deliveries::mark_sending(&*txn, &key, "dead-notifier", Utc::now())
                    .await
                    .unwrap()
            );
            txn.commit().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            deliverer.deliver(&env, &req, 2).await.unwrap(),
            Outcome::Ack
        );
        let sms = f.primary.received();
        assert_eq!(sms.len(), 1);
        assert_eq!(
            sms[0].idempotency_key.as_deref(),
            Some(req.notification_key.as_str())
        );
        let mails = f.smtp.wait_for(1, Duration::from_secs(5)).await;
        let from: lettre::message::Mailbox = config.smtp.from.parse().unwrap();
        let expected_id = sanyu_notifier::message::message_id(&email_key(&req), &from);
        assert_eq!(
            mails[0].message_id().map(|id| format!("<{id}>")),
            Some(expected_id)
        );
        for key in [sms_key(&req), email_key(&req)] {
            let row = f.row(&key).await.unwrap();
            assert_eq!(row.status, "sent", "{key}");
            assert_eq!(row.takeovers, 1, "{key}");
            assert_eq!(row.sending_since, None, "{key}");
            let attempts = f.attempts(&key).await;
            let statuses: Vec<&str> = attempts.iter().map(|a| a.1.as_str()).collect();
            assert_eq!(statuses, ["takeover", "accepted"], "{key}");
        }
    }
}

/// A notifier that claimed a delivery and died holds it until its lease ends.
/// A request that finds the claim comes back when the lease ends (not after
/// the first retry delay, spending a delivery for nothing), and on its last
/// delivery waits the lease out and takes over: a request is never
/// dead-lettered unsent because its holder died.
#[tokio::test]
async fn a_request_held_by_a_dead_notifier_comes_back_when_the_lease_ends_and_its_last_delivery_takes_over()
 {
    for test_db in TestDb::all().await {
        let f = Fixture::new(test_db).await;
        let mut config = f.config();
        config.notify.lease_secs = 2;
        config.notify.takeover_grace_ms = 200;
        config.sms.secondary = None;
        let deliverer = f.deliverer(&config);
        let (env, req) = request(f.staff_id("K1").await, RiskLevel::Critical);
        for channel in ["sms", "email"] {
            let key = deliveries::channel_key(&req.notification_key, channel);
            let txn = sanyu_store::begin_write(&f.db).await.unwrap();
            deliveries::claim(
                &*txn,
                &deliveries::DeliveryRequest {
                    key: &key,
                    case_id: Uuid::parse_str(&req.case_id).unwrap(),
                    recipient_staff_id: Uuid::parse_str(&req.recipient_staff_id).unwrap(),
                    channel,
                    worker: "dead-notifier",
                    lease: chrono::Duration::seconds(2),
                    ack_token_hash: None,
                },
            )
            .await
            .unwrap();
            assert!(
                deliveries::mark_sending(&*txn, &key, "dead-notifier", Utc::now())
                    .await
                    .unwrap()
            );
            txn.commit().await.unwrap();
        }
        // An early delivery: come back when the lease ends (about 2 s).
        match deliverer.deliver(&env, &req, 1).await.unwrap() {
            Outcome::Defer(wait, why) => {
                assert!(why.starts_with("another notifier holds"), "{why}");
                assert!(
                    wait >= Duration::from_millis(1500) && wait <= Duration::from_millis(2600),
                    "{wait:?}"
                );
            }
            other => panic!("expected a deferral to the lease's end, got {other:?}"),
        }
        assert!(f.primary.received().is_empty());
        // The last delivery waits the lease out and takes over.
        assert_eq!(
            deliverer
                .deliver(&env, &req, config.nats.max_deliver)
                .await
                .unwrap(),
            Outcome::Ack
        );
        assert_eq!(f.primary.received().len(), 1);
        f.smtp.wait_for(1, Duration::from_secs(5)).await;
        for key in [sms_key(&req), email_key(&req)] {
            let row = f.row(&key).await.unwrap();
            assert_eq!(row.status, "sent", "{key}");
            assert_eq!(row.takeovers, 1, "{key}");
        }
    }
}

#[tokio::test]
async fn a_request_with_an_unknown_reason_is_dead_lettered_and_nothing_is_sent() {
    for test_db in TestDb::all().await {
        let f = Fixture::new(test_db).await;
        let config = f.config();
        let one = f.deliverer(&config);
        let k1 = f.staff_id("K1").await;
        for (code, name) in [(0, ""), (0, "no_such_reason"), (999, "no_such_reason")] {
            let (env, mut req) = request(k1, RiskLevel::Critical);
            req.reason_code = code;
            req.reason = name.into();
            let outcome = one.deliver(&env, &req, 1).await.unwrap();
            assert!(
                matches!(&outcome, Outcome::Reject(why) if why.contains("notification reason unknown")),
                "{code}/{name}: {outcome:?}"
            );
            assert_eq!(f.row(&sms_key(&req)).await, None);
            assert_eq!(f.row(&email_key(&req)).await, None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(f.sms_count(), 0);
        assert!(f.smtp.received().is_empty());
    }
}

#[tokio::test]
async fn a_request_queued_by_an_older_producer_is_read_by_its_reason_name() {
    for test_db in TestDb::all().await {
        let f = Fixture::new(test_db).await;
        let config = f.config();
        let one = f.deliverer(&config);
        let k1 = f.staff_id("K1").await;
        let (env, mut req) = request(k1, RiskLevel::Critical);
        // What requests carried before `reason_code`: the name only.
        req.reason_code = 0;
        req.reason = "unacknowledged".into();
        assert_eq!(one.deliver(&env, &req, 1).await.unwrap(), Outcome::Ack);
        let mails = f.smtp.wait_for(1, Duration::from_secs(5)).await;
        assert!(
            mails[0].text().contains("case not yet acknowledged"),
            "{}",
            mails[0].text()
        );
        assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("sent"));
    }
}

/// A console sign-in request as the gateway writes it: the code (and, by
/// email, the link's token) sealed with the data key.
fn sign_in_request(
    sealer: &sanyu_store::crypto::Sealer,
    staff_id: Uuid,
    channel: v1::Channel,
    code: &str,
    link: Option<&str>,
) -> (Envelope, v1::NotificationRequested) {
    let key = format!("sign_in:{}", Uuid::now_v7());
    let req = v1::NotificationRequested {
        notification_key: key.clone(),
        case_id: String::new(),
        case_reference: String::new(),
        level: sanyu_events::level_to_proto(RiskLevel::Critical) as i32,
        recipient_staff_id: staff_id.to_string(),
        channel: channel as i32,
        reason: "sign_in_code".into(),
        rung: 0,
        reason_code: v1::NotificationReason::SignInCode as i32,
        sign_in_code: sanyu_store::console::seal_code(sealer, code).unwrap(),
        ack_outcome: String::new(),
        sign_in_link: link
            .map(|t| sanyu_store::console::seal_code(sealer, t).unwrap())
            .unwrap_or_default(),
    };
    let envelope = sanyu_events::envelope(
        format!("notify.requested:{key}"),
        Utc::now(),
        "NTF1",
        0,
        Payload::NotificationRequested(req.clone()),
    );
    (envelope, req)
}

#[tokio::test]
async fn a_sign_in_code_goes_by_sms_when_asked_and_by_email_with_its_link_otherwise() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    let key = sanyu_store::crypto::Sealer::generate_key();
    config.security.data_key = Secret::new(key.clone());
    let sealer = sanyu_store::crypto::Sealer::from_base64(&key).unwrap();
    let deliverer = f.deliverer(&config);
    let k1 = f.staff_id("K1").await;

    // By SMS: the code is the template's parameter, and no email goes.
    let (env, req) = sign_in_request(&sealer, k1, v1::Channel::Sms, "042917", None);
    assert_eq!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Ack
    );
    let sms = f.primary.received();
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].phone, "+8613900000003");
    assert_eq!(sms[0].template, "sign_in.zh-CN");
    assert_eq!(
        sms[0].params,
        [
            ("code".to_owned(), "042917".to_owned()),
            ("minutes".to_owned(), "10".to_owned())
        ]
    );
    let text = sms[0].text.clone().unwrap();
    assert!(text.contains("042917"), "{text}");
    assert!(!text.contains("http") && !text.contains("NTF1"), "{text}");
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("sent"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(f.smtp.received().is_empty(), "no email for an SMS code");

    // By email: the code and the one-time link.
    let token = "tok_-0123456789abcdefghijklmnopqrstuvwxyzABCD";
    let (env, req) = sign_in_request(&sealer, k1, v1::Channel::Email, "135790", Some(token));
    assert_eq!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Ack
    );
    let mails = f.smtp.wait_for(1, Duration::from_secs(5)).await;
    let body = mails[0].text();
    assert!(body.contains("135790"), "{body}");
    assert!(
        body.contains(&format!("https://sanyu.test/sign-in/link/{token}")),
        "{body}"
    );
    assert_eq!(f.sms_count(), 1, "no SMS for an emailed code");

    // The SMS providers refuse the number (the secondary has no sign-in
    // template either): the code goes by email instead.
    f.primary.script_for("13900000003", Reply::InvalidNumber);
    let (env, req) = sign_in_request(&sealer, k1, v1::Channel::Sms, "246801", None);
    assert_eq!(
        deliverer.deliver(&env, &req, 1).await.unwrap(),
        Outcome::Ack
    );
    let mails = f.smtp.wait_for(2, Duration::from_secs(5)).await;
    assert!(mails[1].text().contains("246801"));
    assert!(!mails[1].text().contains("/sign-in/link/"));
    assert_eq!(f.status(&sms_key(&req)).await.as_deref(), Some("failed"));
    assert_eq!(f.status(&email_key(&req)).await.as_deref(), Some("sent"));
}

/// Digests (issue 16), in-process: three `high` notices to K1 within the
/// window are held, then go out as one SMS and one email listing the three,
/// and every notice's rows end `sent`; a critical notice meanwhile goes at
/// once; a notice to nobody on the roster is not held (it fails on record);
/// a notice on its last delivery sends its digest at once.
#[tokio::test]
async fn high_notices_within_the_window_go_out_as_one_digest_and_critical_ones_at_once() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.digest_window_secs = 2;
    config.notify.quiet_hours.enabled = false;
    // The webhook sends any text; an Alibaba account without an approved
    // digest template would send SMS one by one instead.
    config.sms.secondary = None;
    let deliverer = f.deliverer(&config);
    assert!(deliverer.sms_digests());
    let k1 = f.staff_id("K1").await;

    let high: Vec<_> = (0..3).map(|_| request(k1, RiskLevel::High)).collect();
    for (env, req) in &high {
        match deliverer.deliver(env, req, 1).await.unwrap() {
            Outcome::Defer(wait, why) => {
                assert!(wait <= Duration::from_secs(3), "{wait:?}");
                assert!(why.contains("digest"), "{why}");
            }
            other => panic!("expected a held notice, got {other:?}"),
        }
    }
    assert_eq!(f.sms_count(), 0, "nothing yet");
    // A critical notice is never held.
    let (cenv, creq) = request(k1, RiskLevel::Critical);
    assert_eq!(
        deliverer.deliver(&cenv, &creq, 1).await.unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.sms_count(), 1);
    // A notice to somebody not on the roster is not held: it fails on record.
    let (genv, greq) = request(Uuid::now_v7(), RiskLevel::High);
    assert_eq!(
        deliverer
            .deliver(&genv, &greq, config.nats.max_deliver)
            .await
            .unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.status(&email_key(&greq)).await.as_deref(), Some("failed"));

    // The window closes: the first notice back sends the digest, once.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for (env, req) in &high {
        assert_eq!(deliverer.deliver(env, req, 2).await.unwrap(), Outcome::Ack);
        assert_eq!(f.status(&sms_key(req)).await.as_deref(), Some("sent"));
        assert_eq!(f.status(&email_key(req)).await.as_deref(), Some("sent"));
    }
    let digests: Vec<_> = f
        .primary
        .received()
        .into_iter()
        .filter(|m| m.template == "digest.zh-CN")
        .collect();
    assert_eq!(digests.len(), 1, "one SMS digest");
    assert_eq!(
        digests[0]
            .params
            .iter()
            .find(|(n, _)| n == "count")
            .map(|(_, v)| v.as_str()),
        Some("3")
    );
    f.smtp.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mails = f.smtp.received();
    assert_eq!(mails.len(), 2, "the critical email and one digest");
    let digest_mail = mails
        .iter()
        .find(|m| m.subject().contains("汇总"))
        .expect("the digest email");
    let text = digest_mail.text();
    for (_, req) in &high {
        assert!(text.contains(&req.case_reference), "{text}");
    }
    assert!(!text.contains(&creq.case_reference));

    // A notice on its last delivery does not wait for the window.
    let (lenv, lreq) = request(k1, RiskLevel::High);
    assert_eq!(
        deliverer
            .deliver(&lenv, &lreq, config.nats.max_deliver)
            .await
            .unwrap(),
        Outcome::Ack
    );
    assert_eq!(f.status(&email_key(&lreq)).await.as_deref(), Some("sent"));
}

/// Quiet hours hold a digest of SMS notices, which goes on gathering: at
/// 23:10 two high notices wait for their digest; when it closes, quiet
/// hours hold it until 07:00; a third notice meanwhile joins the same
/// digest; the digest that finally goes lists all three.
#[tokio::test]
async fn quiet_hours_hold_an_sms_digest_which_goes_on_gathering() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let mut config = f.config();
    config.notify.digest_window_secs = 1;
    config.sms.secondary = None;
    let clock = Arc::new(ManualClock::new(shanghai(30, 23, 10)));
    let deliverer = f.deliverer(&config).with_clock(clock.clone());
    let k1 = f.staff_id("K1").await;

    let first: Vec<_> = (0..2).map(|_| request(k1, RiskLevel::High)).collect();
    for (env, req) in &first {
        assert!(matches!(
            deliverer.deliver(env, req, 1).await.unwrap(),
            Outcome::Defer(..)
        ));
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // The window has closed, but it is night: the SMS digest is held.
    let (env, req) = &first[0];
    match deliverer.deliver(env, req, 2).await.unwrap() {
        Outcome::Defer(wait, why) => {
            assert!(why.contains("quiet hours"), "{why}");
            assert!(wait >= Duration::from_secs(7 * 3600), "{wait:?}");
        }
        other => panic!("expected quiet hours, got {other:?}"),
    }
    assert_eq!(f.sms_count(), 0, "no SMS at night");
    // A third notice joins the held digest.
    let (tenv, treq) = request(k1, RiskLevel::High);
    assert!(matches!(
        deliverer.deliver(&tenv, &treq, 1).await.unwrap(),
        Outcome::Defer(..)
    ));
    // Its last delivery sends it (a limit never turns into a loss): one SMS
    // listing the three.
    assert_eq!(
        deliverer
            .deliver(&tenv, &treq, config.nats.max_deliver)
            .await
            .unwrap(),
        Outcome::Ack
    );
    let sent: Vec<_> = f
        .primary
        .received()
        .into_iter()
        .filter(|m| m.template == "digest.zh-CN")
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]
            .params
            .iter()
            .find(|(n, _)| n == "count")
            .map(|(_, v)| v.as_str()),
        Some("3")
    );
    for (_, req) in first.iter().chain([(tenv.clone(), treq.clone())].iter()) {
        assert_eq!(f.status(&sms_key(req)).await.as_deref(), Some("sent"));
    }
}
