//! The delivery log: one row per notification key, claimed with a lease before
//! the send, so that a redelivered request, a restarted notifier or a second
//! replica never sends twice.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use crate::Result;
use crate::entities::{delivery, delivery_attempt};

pub const PENDING: &str = "pending";
pub const CLAIMED: &str = "claimed";
pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";
/// An SMS the provider's receipt says reached the handset.
pub const DELIVERED: &str = "delivered";

/// Attempt statuses.
pub const ACCEPTED: &str = "accepted";
pub const TRANSIENT_ERROR: &str = "transient_error";
pub const PERMANENT_ERROR: &str = "permanent_error";
/// Not a send: the record that this worker took over a claim whose holder
/// stopped during a send (the provider may have accepted it), and is sending
/// again with the same idempotency identity. A possible duplicate.
pub const TAKEOVER: &str = "takeover";

/// The delivery key of one channel of a notification request:
/// `<notification_key>:<channel>`. Every channel of a request has its own row,
/// claimed on its own, so an email already sent is never sent again when the
/// SMS of the same request is retried.
pub fn channel_key(notification_key: &str, channel: &str) -> String {
    format!("{notification_key}:{channel}")
}

/// The notification key a delivery key belongs to (the inverse of
/// [`channel_key`]; keys written before channels had their own rows are
/// their own request key).
pub fn request_key(delivery_key: &str) -> &str {
    for channel in ["sms", "voice", "im", "email"] {
        if let Some(request) = delivery_key
            .strip_suffix(channel)
            .and_then(|k| k.strip_suffix(':'))
        {
            return request;
        }
    }
    delivery_key
}

#[derive(Debug, Clone)]
pub struct DeliveryRequest<'a> {
    pub key: &'a str,
    pub case_id: Uuid,
    pub recipient_staff_id: Uuid,
    pub channel: &'a str,
    pub worker: &'a str,
    pub lease: Duration,
    /// The keyed hash of the notification's acknowledgement link token
    /// ([`crate::ack_links`]), written with the row: none for a notice
    /// about no case.
    pub ack_token_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker holds the lease: send now. `interrupted` is when the
    /// previous holder started a send whose outcome it never recorded (it
    /// stopped between the send and the commit, or during the send): the
    /// provider may have accepted it.
    Claimed {
        attempt: i32,
        interrupted: Option<DateTime<Utc>>,
    },
    /// Already sent (or permanently failed): nothing to do.
    Done { status: String },
    /// Another worker holds a live lease until then.
    Busy { until: DateTime<Utc> },
}

/// Claim the right to send `key`.
pub async fn claim(conn: &impl ConnectionTrait, req: &DeliveryRequest<'_>) -> Result<Claim> {
    let now = Utc::now();
    delivery::Entity::insert(delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        notification_key: Set(req.key.to_owned()),
        case_id: Set(req.case_id),
        recipient_staff_id: Set(req.recipient_staff_id),
        channel: Set(req.channel.to_owned()),
        status: Set(PENDING.to_owned()),
        attempts: Set(0),
        lease_until: Set(None),
        claimed_by: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        sent_at: Set(None),
        sending_since: Set(None),
        takeovers: Set(0),
        ack_token_hash: Set(req.ack_token_hash.clone()),
    })
    .on_conflict(
        OnConflict::column(delivery::Column::NotificationKey)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    let until = now + req.lease;
    // Take the row if nobody holds a live lease. One statement, so two
    // replicas cannot both win.
    let taken = delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value(CLAIMED))
        .col_expr(delivery::Column::LeaseUntil, Expr::value(until))
        .col_expr(delivery::Column::ClaimedBy, Expr::value(req.worker))
        .col_expr(
            delivery::Column::Attempts,
            Expr::col(delivery::Column::Attempts).add(1),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
        .filter(delivery::Column::NotificationKey.eq(req.key))
        .filter(
            Condition::any()
                .add(delivery::Column::Status.eq(PENDING))
                .add(
                    Condition::all()
                        .add(delivery::Column::Status.eq(CLAIMED))
                        .add(delivery::Column::LeaseUntil.lt(now)),
                ),
        )
        .exec(conn)
        .await?;
    let row = delivery::Entity::find()
        .filter(delivery::Column::NotificationKey.eq(req.key))
        .one(conn)
        .await?
        .ok_or(crate::StoreError::NotFound("delivery"))?;
    if taken.rows_affected == 1 {
        // `sending_since` still set: the previous holder's send never had
        // its outcome recorded. Count the takeover (the mark stays until this
        // worker records an outcome or sets its own just before it sends).
        if row.sending_since.is_some() {
            delivery::Entity::update_many()
                .col_expr(
                    delivery::Column::Takeovers,
                    Expr::col(delivery::Column::Takeovers).add(1),
                )
                .filter(delivery::Column::NotificationKey.eq(req.key))
                .exec(conn)
                .await?;
        }
        return Ok(Claim::Claimed {
            attempt: row.attempts,
            interrupted: row.sending_since,
        });
    }
    if row.status == CLAIMED {
        return Ok(Claim::Busy {
            until: row.lease_until.unwrap_or(now),
        });
    }
    Ok(Claim::Done { status: row.status })
}

/// The delivery row of `key` (a channel key, `<notification_key>:<channel>`).
pub async fn get(conn: &impl ConnectionTrait, key: &str) -> Result<Option<delivery::Model>> {
    Ok(delivery::Entity::find()
        .filter(delivery::Column::NotificationKey.eq(key))
        .one(conn)
        .await?)
}

/// Record, before the provider is called, that `worker` is sending `key`
/// (the caller commits it first). False when the claim is no longer this
/// worker's.
pub async fn mark_sending(
    conn: &impl ConnectionTrait,
    key: &str,
    worker: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let updated = delivery::Entity::update_many()
        .col_expr(delivery::Column::SendingSince, Expr::value(Some(at)))
        .col_expr(delivery::Column::UpdatedAt, Expr::value(at))
        .filter(delivery::Column::NotificationKey.eq(key))
        .filter(delivery::Column::Status.eq(CLAIMED))
        .filter(delivery::Column::ClaimedBy.eq(worker))
        .exec(conn)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Record the outcome of a send this worker claimed.
pub async fn finish(
    conn: &impl ConnectionTrait,
    key: &str,
    status: &str,
    error: Option<String>,
) -> Result<()> {
    let now = Utc::now();
    let mut update = delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value(status))
        .col_expr(
            delivery::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(delivery::Column::LastError, Expr::value(error))
        .col_expr(
            delivery::Column::SendingSince,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(now));
    if status == SENT {
        update = update.col_expr(delivery::Column::SentAt, Expr::value(now));
    }
    update
        .filter(delivery::Column::NotificationKey.eq(key))
        .exec(conn)
        .await?;
    Ok(())
}

/// Give the claim back after a transient failure so that the retry can take it at once.
pub async fn release(conn: &impl ConnectionTrait, key: &str, error: String) -> Result<()> {
    delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value(PENDING))
        .col_expr(
            delivery::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(delivery::Column::LastError, Expr::value(Some(error)))
        .col_expr(
            delivery::Column::SendingSince,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(delivery::Column::NotificationKey.eq(key))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn for_case(conn: &impl ConnectionTrait, case_id: Uuid) -> Result<Vec<delivery::Model>> {
    Ok(delivery::Entity::find()
        .filter(delivery::Column::CaseId.eq(case_id))
        .all(conn)
        .await?)
}

/// One attempt to send on a channel, as recorded.
#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    pub delivery_key: &'a str,
    pub case_id: Uuid,
    pub channel: &'a str,
    pub provider: &'a str,
    /// [`ACCEPTED`], [`TRANSIENT_ERROR`] or [`PERMANENT_ERROR`].
    pub status: &'a str,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// Record one attempt (success or failure).
pub async fn record_attempt(conn: &impl ConnectionTrait, a: NewAttempt<'_>) -> Result<()> {
    delivery_attempt::Entity::insert(delivery_attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        delivery_key: Set(a.delivery_key.to_owned()),
        case_id: Set(a.case_id),
        channel: Set(a.channel.to_owned()),
        provider: Set(a.provider.to_owned()),
        status: Set(a.status.to_owned()),
        latency_ms: Set(a.latency_ms),
        error: Set(a.error),
        provider_message_id: Set(a.provider_message_id),
        receipt_status: Set(None),
        receipt_at: Set(None),
        at: Set(a.at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Every attempt for the deliveries of a case, oldest first.
pub async fn attempts_for_case(
    conn: &impl ConnectionTrait,
    case_id: Uuid,
) -> Result<Vec<delivery_attempt::Model>> {
    use sea_orm::QueryOrder;
    Ok(delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::CaseId.eq(case_id))
        .order_by_asc(delivery_attempt::Column::At)
        .all(conn)
        .await?)
}

/// What a provider's delivery receipt says, as the store needs it.
#[derive(Debug, Clone)]
pub struct Receipt<'a> {
    pub provider: &'a str,
    pub provider_message_id: Option<&'a str>,
    /// Our notification key, when the provider echoes it.
    pub notification_key: Option<&'a str>,
    /// `sent`, `delivered` or `failed`.
    pub status: &'a str,
    pub reason: Option<String>,
}

/// Apply a delivery receipt: the accepted attempt it confirms records it, and
/// the delivery moves `sent` → `delivered` or `sent` → `failed` (never back).
/// Returns the delivery key, or `None` when no accepted attempt matches (an
/// unknown or foreign receipt: nothing changes).
pub async fn apply_receipt(conn: &impl ConnectionTrait, r: &Receipt<'_>) -> Result<Option<String>> {
    let mut attempt = None;
    if let Some(id) = r.provider_message_id.filter(|id| !id.is_empty()) {
        attempt = delivery_attempt::Entity::find()
            .filter(delivery_attempt::Column::Provider.eq(r.provider))
            .filter(delivery_attempt::Column::ProviderMessageId.eq(id))
            .filter(delivery_attempt::Column::Status.eq(ACCEPTED))
            .one(conn)
            .await?;
    }
    if attempt.is_none()
        && let Some(key) = r.notification_key.filter(|k| !k.is_empty())
    {
        attempt = delivery_attempt::Entity::find()
            .filter(delivery_attempt::Column::Provider.eq(r.provider))
            .filter(delivery_attempt::Column::DeliveryKey.eq(channel_key(key, "sms")))
            .filter(delivery_attempt::Column::Status.eq(ACCEPTED))
            .one(conn)
            .await?;
    }
    let Some(attempt) = attempt else {
        return Ok(None);
    };
    let now = Utc::now();
    delivery_attempt::Entity::update_many()
        .col_expr(
            delivery_attempt::Column::ReceiptStatus,
            Expr::value(r.status),
        )
        .col_expr(delivery_attempt::Column::ReceiptAt, Expr::value(now))
        .filter(delivery_attempt::Column::Id.eq(attempt.id))
        .exec(conn)
        .await?;
    let next = match r.status {
        DELIVERED => Some(DELIVERED),
        FAILED => Some(FAILED),
        _ => None,
    };
    if let Some(next) = next {
        let mut update = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(next))
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now));
        if next == FAILED {
            update = update.col_expr(
                delivery::Column::LastError,
                Expr::value(Some(format!(
                    "{}: delivery receipt: {}",
                    r.provider,
                    r.reason.clone().unwrap_or_else(|| "failed".into())
                ))),
            );
        }
        update
            .filter(delivery::Column::NotificationKey.eq(attempt.delivery_key.clone()))
            .filter(delivery::Column::Status.eq(SENT))
            .exec(conn)
            .await?;
    }
    Ok(Some(attempt.delivery_key))
}

/// Failed deliveries of a case whose person was not reached another way: no
/// other channel of the same request was sent or delivered, and none is still
/// being tried (claimed or pending, touched after `still_trying_after`).
/// These are what the ladder auditor raises alarms for; an SMS that failed
/// while the email to the same person went out is recorded, but is no alarm.
pub async fn unreached_failures(
    conn: &impl ConnectionTrait,
    case_id: Uuid,
    still_trying_after: DateTime<Utc>,
) -> Result<Vec<delivery::Model>> {
    let rows = for_case(conn, case_id).await?;
    let reached_or_trying = |request: &str| {
        rows.iter().any(|d| {
            request_key(&d.notification_key) == request
                && (d.status == SENT
                    || d.status == DELIVERED
                    || ((d.status == CLAIMED || d.status == PENDING)
                        && d.updated_at > still_trying_after))
        })
    };
    Ok(rows
        .iter()
        .filter(|d| d.status == FAILED && !reached_or_trying(request_key(&d.notification_key)))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_keys_map_back_to_their_request() {
        let key = channel_key("c:s:e1:r0", "sms");
        assert_eq!(key, "c:s:e1:r0:sms");
        assert_eq!(request_key(&key), "c:s:e1:r0");
        assert_eq!(request_key("c:s:e1:r0:email"), "c:s:e1:r0");
        assert_eq!(request_key("c:s:e1:r0"), "c:s:e1:r0");
    }
}
