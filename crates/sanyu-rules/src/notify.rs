//! First contact: when the rules open a case or raise its level, the
//! notification requests for the first rung are written to the outbox in the
//! same transaction as the case. There is no moment at which a case exists and
//! nobody is going to be told.

use chrono::{DateTime, Utc};
use sanyu_domain::policy::{FALLBACK_ROLES, first_contact_roles};
use sanyu_domain::{RiskLevel, Role};
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::dead_letters::{self, NewDeadLetter};
use sanyu_store::entities::{school, staff};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::sea_orm::ConnectionTrait;
use sanyu_store::{StoreError, roster};
use uuid::Uuid;

/// The case that needs people told.
pub struct Alert<'a> {
    pub school: &'a school::Model,
    pub case_id: Uuid,
    pub reference: &'a str,
    pub level: RiskLevel,
    /// `case_opened` or `case_escalated_<level>`.
    pub reason: String,
    pub partition: u32,
    pub at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

async fn reachable(
    txn: &impl ConnectionTrait,
    school_id: Uuid,
    roles: &[Role],
) -> Result<Vec<staff::Model>, StoreError> {
    let mut out = Vec::new();
    for role in roles {
        out.extend(
            roster::staff_in_role(txn, school_id, *role)
                .await?
                .into_iter()
                .filter(|s| s.email.is_some()),
        );
    }
    Ok(out)
}

/// Enqueue one request per first-contact recipient; returns how many.
///
/// When nobody is reachable the case still stands, and a dead letter says so,
/// so that the school's admins and crisis team see the gap at once.
pub async fn request_first_contact(
    txn: &impl ConnectionTrait,
    alert: Alert<'_>,
) -> Result<usize, StoreError> {
    let mut recipients = reachable(txn, alert.school.id, first_contact_roles(alert.level)).await?;
    if recipients.is_empty() {
        for role in FALLBACK_ROLES {
            recipients = reachable(txn, alert.school.id, &[role]).await?;
            if !recipients.is_empty() {
                break;
            }
        }
    }
    if recipients.is_empty() {
        tracing::error!(case_id = %alert.case_id, school = %alert.school.code, "nobody reachable for a case");
        dead_letters::record(
            txn,
            NewDeadLetter {
                source_key: format!("unreachable:{}:{}", alert.case_id, alert.reason),
                stream: "CASE".into(),
                consumer: "rules".into(),
                stream_seq: None,
                subject: Some(subjects::case_event("opened", &alert.school.code, alert.partition)),
                event_id: Some(format!("case:{}", alert.case_id)),
                reason: format!(
                    "case {} ({}) has nobody to notify: no counsellor, crisis team or leader with an email address",
                    alert.reference, alert.level
                ),
                deliveries: None,
            },
        )
        .await?;
        return Ok(0);
    }
    for person in &recipients {
        let key = format!("{}:{}:{}:0", alert.case_id, person.id, alert.reason);
        let event_id = format!("notify.requested:{key}");
        let payload = Payload::NotificationRequested(v1::NotificationRequested {
            notification_key: key,
            case_id: alert.case_id.to_string(),
            case_reference: alert.reference.to_owned(),
            level: sanyu_events::level_to_proto(alert.level) as i32,
            recipient_staff_id: person.id.to_string(),
            channel: v1::Channel::Email as i32,
            reason: alert.reason.clone(),
            rung: 0,
        });
        outbox::enqueue(
            txn,
            OutboxEvent {
                subject: subjects::notification_requested(&alert.school.code),
                payload: sanyu_events::encode(&sanyu_events::envelope(
                    event_id.clone(),
                    alert.at,
                    alert.school.code.clone(),
                    alert.partition,
                    payload,
                )),
                event_id,
                traceparent: alert.traceparent.clone(),
            },
        )
        .await?;
    }
    Ok(recipients.len())
}
