//! Dispatch: a case opened or escalated becomes one notification request per
//! recipient (the school's counsellors; if the school has none reachable, its
//! crisis team; then its leaders). Requests go through the outbox in the same
//! transaction as the processed-message record.

use chrono::Utc;
use sanyu_domain::{RiskLevel, Role, student_partition};
use sanyu_events::subjects::{self, CASE_STREAM};
use sanyu_events::{Payload, v1};
use sanyu_platform::consumer::{Delivery, Handler, Outcome};
use sanyu_platform::nats::ConsumerSpec;
use sanyu_platform::relay::Waker;
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::{Db, begin_write, processed, roster};
use uuid::Uuid;

pub const CONSUMER: &str = "notifier-dispatch";

pub fn spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: CASE_STREAM,
        durable: CONSUMER,
        filter_subject: subjects::CASE_SUBJECTS.to_owned(),
    }
}

pub struct Dispatcher {
    db: Db,
    waker: Waker,
}

/// A case event that needs people told.
struct Alert {
    case_id: Uuid,
    reference: String,
    level: RiskLevel,
    reason: String,
}

impl Dispatcher {
    pub fn new(db: Db, waker: Waker) -> Self {
        Self { db, waker }
    }

    async fn dispatch(&self, envelope: &sanyu_events::Envelope, alert: Alert) -> Outcome {
        let result: Result<Option<usize>, sanyu_store::StoreError> = async {
            let txn = begin_write(&self.db).await?;
            if !processed::record(&txn, CONSUMER, &envelope.event_id).await? {
                txn.rollback().await?;
                return Ok(Some(0));
            }
            let Some(school) = roster::school_by_code(&txn, &envelope.school).await? else {
                txn.rollback().await?;
                return Ok(None);
            };
            let mut recipients = Vec::new();
            for role in [Role::Counsellor, Role::CrisisTeam, Role::Leader] {
                recipients = roster::staff_in_role(&txn, school.id, role)
                    .await?
                    .into_iter()
                    .filter(|s| s.email.is_some())
                    .collect();
                if !recipients.is_empty() {
                    break;
                }
            }
            if recipients.is_empty() {
                txn.rollback().await?;
                return Ok(None);
            }
            let now = Utc::now();
            let traceparent = sanyu_platform::trace::current_traceparent();
            for staff in &recipients {
                let key = format!("{}:{}:{}:0", alert.case_id, staff.id, alert.reason);
                let event_id = format!("notify.requested:{key}");
                let payload = Payload::NotificationRequested(v1::NotificationRequested {
                    notification_key: key,
                    case_id: alert.case_id.to_string(),
                    case_reference: alert.reference.clone(),
                    level: sanyu_events::level_to_proto(alert.level) as i32,
                    recipient_staff_id: staff.id.to_string(),
                    channel: v1::Channel::Email as i32,
                    reason: alert.reason.clone(),
                    rung: 0,
                });
                outbox::enqueue(
                    &txn,
                    OutboxEvent {
                        subject: subjects::notification_requested(&school.code),
                        payload: sanyu_events::encode(&sanyu_events::envelope(
                            event_id.clone(),
                            now,
                            school.code.clone(),
                            student_partition(alert.case_id),
                            payload,
                        )),
                        event_id,
                        traceparent: traceparent.clone(),
                    },
                )
                .await?;
            }
            txn.commit().await?;
            Ok(Some(recipients.len()))
        }
        .await;
        match result {
            Ok(Some(n)) => {
                if n > 0 {
                    self.waker.wake();
                    tracing::info!(case_id = %alert.case_id, recipients = n, "notifications requested");
                }
                Outcome::Ack
            }
            // Nobody to tell is never silently acked: it is retried and then
            // dead-lettered, where the operators see it.
            Ok(None) => Outcome::Retry(format!(
                "no reachable counsellor, crisis team or leader for school `{}`",
                envelope.school
            )),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

impl Handler for Dispatcher {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let envelope = match sanyu_events::decode(&delivery.payload) {
            Ok(e) => e,
            Err(e) => return Outcome::Reject(e.to_string()),
        };
        let alert = match &envelope.payload {
            Some(Payload::CaseOpened(e)) => {
                (&e.case_id, &e.reference, e.level, "case_opened".to_owned())
            }
            Some(Payload::CaseEscalated(e)) => (&e.case_id, &e.reference, e.level, String::new()),
            _ => return Outcome::Ack,
        };
        let Ok(case_id) = Uuid::parse_str(alert.0) else {
            return Outcome::Reject("case_id is not a uuid".into());
        };
        let Some(level) = sanyu_events::level_from_proto(alert.2) else {
            return Outcome::Reject("level is unspecified".into());
        };
        let reason = if alert.3.is_empty() {
            format!("case_escalated_{}", level.as_str())
        } else {
            alert.3
        };
        self.dispatch(
            &envelope,
            Alert {
                case_id,
                reference: alert.1.clone(),
                level,
                reason,
            },
        )
        .await
    }
}
