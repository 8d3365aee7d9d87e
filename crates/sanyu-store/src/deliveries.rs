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
use crate::entities::delivery;

pub const PENDING: &str = "pending";
pub const CLAIMED: &str = "claimed";
pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone)]
pub struct DeliveryRequest<'a> {
    pub key: &'a str,
    pub case_id: Uuid,
    pub recipient_staff_id: Uuid,
    pub channel: &'a str,
    pub worker: &'a str,
    pub lease: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker holds the lease: send now.
    Claimed { attempt: i32 },
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
        return Ok(Claim::Claimed {
            attempt: row.attempts,
        });
    }
    if row.status == CLAIMED {
        return Ok(Claim::Busy {
            until: row.lease_until.unwrap_or(now),
        });
    }
    Ok(Claim::Done { status: row.status })
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
