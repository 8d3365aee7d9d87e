//! Deliver: one notification request → one email, exactly once per
//! notification key. The key is claimed with a lease in the delivery log before
//! the send; the send's result, the processed-message record and the result
//! event commit together after it. The only window for a duplicate is a crash
//! between the SMTP server's acceptance and that commit; a claimed but unsent
//! request is retried once its lease expires, so nothing is lost.

use std::time::Instant;

use chrono::{Duration, Utc};
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use sanyu_domain::RiskLevel;
use sanyu_events::subjects::{self, NOTIFY_STREAM};
use sanyu_events::{Payload, v1};
use sanyu_platform::consumer::{Delivery, Handler, Outcome};
use sanyu_platform::nats::{ConsumerSpec, Ordering};
use sanyu_platform::relay::Waker;
use sanyu_store::deliveries::{self, Claim, DeliveryRequest};
use sanyu_store::entities::staff;
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::sea_orm::EntityTrait;
use sanyu_store::{Db, StoreError, begin_write, processed};
use uuid::Uuid;

use crate::mailer::{Mailer, SendError};

pub const CONSUMER: &str = "notifier-deliver";

pub fn spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: NOTIFY_STREAM,
        durable: CONSUMER,
        filter_subject: "sanyu.notify.requested.>".to_owned(),
        lanes: 8,
        ordering: Ordering::Unordered,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("invalid sender address: {0}")]
    From(String),
}

pub struct Deliverer {
    db: Db,
    waker: Waker,
    mailer: Mailer,
    from: Mailbox,
    base_url: String,
    worker: String,
    lease: Duration,
}

impl Deliverer {
    pub fn new(
        db: Db,
        waker: Waker,
        mailer: Mailer,
        from: &str,
        base_url: &str,
    ) -> Result<Self, DeliverError> {
        Ok(Self {
            db,
            waker,
            mailer,
            from: from
                .parse()
                .map_err(|e: lettre::address::AddressError| DeliverError::From(e.to_string()))?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            worker: format!("notifier-{}", Uuid::now_v7()),
            lease: Duration::seconds(60),
        })
    }

    /// How long a claim protects a send from other workers.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    async fn deliver(
        &self,
        envelope: &sanyu_events::Envelope,
        req: &v1::NotificationRequested,
    ) -> Result<Outcome, StoreError> {
        // A notice about no case (a missing zero report, an unidentified
        // hotline caller) has an empty case id; the delivery log records nil.
        let case_id = if req.case_id.is_empty() {
            Ok(Uuid::nil())
        } else {
            Uuid::parse_str(&req.case_id)
        };
        let (Ok(case_id), Ok(staff_id)) = (case_id, Uuid::parse_str(&req.recipient_staff_id))
        else {
            return Ok(Outcome::Reject("case or recipient id is not a uuid".into()));
        };
        let claim = {
            let txn = begin_write(&self.db).await?;
            let claim = deliveries::claim(
                &*txn,
                &DeliveryRequest {
                    key: &req.notification_key,
                    case_id,
                    recipient_staff_id: staff_id,
                    channel: "email",
                    worker: &self.worker,
                    lease: self.lease,
                },
            )
            .await?;
            txn.commit().await?;
            claim
        };
        let attempt = match claim {
            Claim::Done { .. } => return Ok(Outcome::Ack),
            Claim::Busy { .. } => {
                return Ok(Outcome::Retry(
                    "another notifier holds this notification".into(),
                ));
            }
            Claim::Claimed { attempt } => attempt,
        };
        let recipient = staff::Entity::find_by_id(staff_id).one(&self.db).await?;
        let started = Instant::now();
        let sent = match recipient.as_ref().and_then(|s| s.email.clone()) {
            None => Err(SendError::Permanent(
                "recipient has no email address".into(),
            )),
            Some(email) => match self.compose(&email, req) {
                Ok(message) => self.mailer.send(message).await,
                Err(e) => Err(SendError::Permanent(e)),
            },
        };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, error) = match &sent {
            Ok(()) => (v1::DeliveryStatus::Sent, None),
            Err(SendError::Permanent(e)) => (v1::DeliveryStatus::Failed, Some(e.clone())),
            Err(SendError::Transient(e)) => {
                tracing::warn!(key = %req.notification_key, attempt, "email send failed; will retry");
                let txn = begin_write(&self.db).await?;
                deliveries::release(&*txn, &req.notification_key, e.clone()).await?;
                txn.commit().await?;
                return Ok(Outcome::Retry(format!("smtp: {e}")));
            }
        };
        let txn = begin_write(&self.db).await?;
        let db_status = if status == v1::DeliveryStatus::Sent {
            deliveries::SENT
        } else {
            deliveries::FAILED
        };
        deliveries::finish(&*txn, &req.notification_key, db_status, error.clone()).await?;
        processed::record(&*txn, CONSUMER, &envelope.event_id).await?;
        let event_id = format!("notify.result:{}:{attempt}", req.notification_key);
        outbox::enqueue(
            &*txn,
            OutboxEvent {
                subject: subjects::notification_result(&envelope.school),
                payload: sanyu_events::encode(&sanyu_events::envelope(
                    event_id.clone(),
                    Utc::now(),
                    envelope.school.clone(),
                    envelope.partition,
                    Payload::NotificationResult(v1::NotificationResult {
                        notification_key: req.notification_key.clone(),
                        case_id: req.case_id.clone(),
                        channel: v1::Channel::Email as i32,
                        status: status as i32,
                        error: error.clone().unwrap_or_default(),
                        attempt: u32::try_from(attempt).unwrap_or(0),
                        latency_ms,
                    }),
                )),
                event_id,
                traceparent: sanyu_platform::trace::current_traceparent(),
            },
        )
        .await?;
        txn.commit().await?;
        self.waker.wake();
        if let Some(e) = error {
            tracing::error!(key = %req.notification_key, error = %e, "email could not be delivered");
        } else {
            tracing::info!(key = %req.notification_key, latency_ms, "email sent");
        }
        Ok(Outcome::Ack)
    }

    /// The counsellor's email: the case reference, level and a link; never the
    /// student's name, the narrative or any score.
    fn compose(&self, to: &str, req: &v1::NotificationRequested) -> Result<Message, String> {
        if req.case_id.is_empty() {
            return self.compose_notice(to, req);
        }
        let level = sanyu_events::level_from_proto(req.level).unwrap_or(RiskLevel::Elevated);
        let (level_zh, urgency) = match level {
            RiskLevel::Critical => ("一级（critical）", "请立即处理 / act now"),
            RiskLevel::High => (
                "二级（high）",
                "请在 1 小时内确认 / acknowledge within 1 hour",
            ),
            RiskLevel::Elevated => (
                "三级（elevated）",
                "请在下一个上学日内确认 / acknowledge by the next school day",
            ),
            RiskLevel::Watch => ("关注（watch）", "请按计划随访 / follow up as planned"),
        };
        let what = match req.reason.as_str() {
            "case_opened" => "新的危机干预个案 / new intervention case",
            "unacknowledged" => "个案尚未确认，逐级上报 / case not yet acknowledged (escalation)",
            "case_reopened" => "个案已重新打开 / case reopened",
            "level_changed" => "个案风险等级已调整 / case level changed",
            "ladder_alarm" => "预警升级流程异常 / escalation ladder alarm",
            "follow_up_due" => "随访到期 / follow-up due",
            _ => "个案风险等级已升高 / case level raised",
        };
        let link = format!("{}/v1/cases/{}", self.base_url, req.case_id);
        let body = format!(
            "{what}\n\n\
             个案编号 / Case reference: {reference}\n\
             风险等级 / Level: {level_zh}\n\
             {urgency}\n\n\
             查看与确认 / Open and acknowledge: {link}\n\n\
             本邮件不含学生姓名与报告内容；请登录系统查看。\n\
             This message carries no student name or report text; sign in to see the case.\n",
            reference = req.case_reference,
        );
        Message::builder()
            .from(self.from.clone())
            .to(to
                .parse()
                .map_err(|e: lettre::address::AddressError| e.to_string())?)
            .subject(format!(
                "[Sanyu 三预] {} {} · {}",
                req.case_reference,
                level.as_str(),
                what
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())
    }
}

impl Deliverer {
    /// A notice about no case: a zero report missing, or an unidentified
    /// hotline caller. The period id or call reference and a link; no names.
    fn compose_notice(&self, to: &str, req: &v1::NotificationRequested) -> Result<Message, String> {
        let (what, link) = match req.reason.as_str() {
            "hotline_unidentified" => (
                "热线来电：未识别身份的高风险来电者 / hotline: unidentified caller at high risk",
                format!("{}/v1/hotline-alerts", self.base_url),
            ),
            "zero_report_due" => (
                "零报告即将截止，尚未提交 / zero report due soon and not yet submitted",
                format!("{}/v1/zero-report-periods", self.base_url),
            ),
            "zero_report_overdue" => (
                "零报告已逾期未提交 / zero report overdue",
                format!(
                    "{}/v1/zero-report-periods/{}/compliance",
                    self.base_url, req.case_reference
                ),
            ),
            "zero_report_escalated" => (
                "零报告逾期未提交，逐级上报 / zero report still missing (escalation)",
                format!(
                    "{}/v1/zero-report-periods/{}/compliance",
                    self.base_url, req.case_reference
                ),
            ),
            _ => ("三预通知 / Sanyu notice", self.base_url.clone()),
        };
        let body = format!(
            "{what}\n\n             编号 / Reference: {reference}\n\n             查看 / Open: {link}\n\n             本邮件不含学生姓名与报告内容；请登录系统查看。\n             This message carries no student name or report text; sign in to see more.\n",
            reference = req.case_reference,
        );
        Message::builder()
            .from(self.from.clone())
            .to(to
                .parse()
                .map_err(|e: lettre::address::AddressError| e.to_string())?)
            .subject(format!("[Sanyu 三预] {} · {what}", req.case_reference))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())
    }
}

impl Handler for Deliverer {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let envelope = match sanyu_events::decode(&delivery.payload) {
            Ok(e) => e,
            Err(e) => return Outcome::Reject(e.to_string()),
        };
        let Some(Payload::NotificationRequested(req)) = &envelope.payload else {
            return Outcome::Ack;
        };
        match self.deliver(&envelope, req).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}
