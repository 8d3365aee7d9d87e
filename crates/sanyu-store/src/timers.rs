//! Durable timers, owned by the scheduler. A timer is scheduled once per key
//! (scheduling again is a no-op) and moves from `pending` to `fired` or
//! `cancelled` exactly once: [`take`] is a conditional update in the
//! transaction that performs the timer's effect, so two scheduler replicas, or
//! one restarted mid-way, can never fire it twice, and a crash before the
//! commit leaves it pending to fire after the restart.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::Result;
use crate::db::insert_chunks;
use crate::entities::timer;

pub const PENDING: &str = "pending";
pub const FIRED: &str = "fired";
pub const CANCELLED: &str = "cancelled";

#[derive(Debug, Clone)]
pub struct NewTimer {
    pub key: String,
    pub kind: String,
    pub case_id: Option<Uuid>,
    pub due_at: DateTime<Utc>,
    pub payload: String,
}

/// The row of a new pending timer.
fn pending_row(t: NewTimer, now: DateTime<Utc>) -> timer::ActiveModel {
    timer::ActiveModel {
        id: Set(Uuid::now_v7()),
        key: Set(t.key),
        kind: Set(t.kind),
        case_id: Set(t.case_id),
        due_at: Set(t.due_at),
        payload: Set(t.payload),
        state: Set(PENDING.to_owned()),
        created_at: Set(now),
        fired_at: Set(None),
    }
}

/// A key scheduled before is skipped.
fn skip_scheduled_key() -> OnConflict {
    OnConflict::column(timer::Column::Key)
        .do_nothing()
        .to_owned()
}

/// Schedule a timer; a second call with the same key does nothing.
pub async fn schedule(conn: &impl ConnectionTrait, t: NewTimer) -> Result<()> {
    timer::Entity::insert(pending_row(t, Utc::now()))
        .on_conflict(skip_scheduled_key())
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Schedule several timers in multi-row inserts; a key scheduled before is skipped.
pub async fn schedule_all(conn: &impl ConnectionTrait, timers: Vec<NewTimer>) -> Result<()> {
    let now = Utc::now();
    for chunk in insert_chunks(timers.into_iter().map(|t| pending_row(t, now))) {
        timer::Entity::insert_many(chunk)
            .on_conflict(skip_scheduled_key())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Pending timers whose due time meets `due`, oldest first.
async fn pending_due(
    conn: &impl ConnectionTrait,
    due: sea_orm::sea_query::SimpleExpr,
    limit: u64,
) -> Result<Vec<timer::Model>> {
    Ok(timer::Entity::find()
        .filter(timer::Column::State.eq(PENDING))
        .filter(due)
        .order_by_asc(timer::Column::DueAt)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Pending timers due at `now`, oldest first.
pub async fn due(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<timer::Model>> {
    pending_due(conn, timer::Column::DueAt.lte(now), limit).await
}

/// When the next pending timer is due.
pub async fn next_due(conn: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>> {
    Ok(timer::Entity::find()
        .filter(timer::Column::State.eq(PENDING))
        .order_by_asc(timer::Column::DueAt)
        .one(conn)
        .await?
        .map(|t| t.due_at))
}

/// Take a pending timer for firing. `false` when another worker fired or
/// cancelled it first; the caller then does nothing.
pub async fn take(conn: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
    let result = timer::Entity::update_many()
        .col_expr(timer::Column::State, Expr::value(FIRED))
        .col_expr(timer::Column::FiredAt, Expr::value(now))
        .filter(timer::Column::Id.eq(id))
        .filter(timer::Column::State.eq(PENDING))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Cancel a case's pending timers of `kind`.
pub async fn cancel_for_case(
    conn: &impl ConnectionTrait,
    case_id: Uuid,
    kind: &str,
) -> Result<u64> {
    cancel_for_cases(conn, &[case_id], kind).await
}

/// Cancel the pending timers of `kind` of several cases (one statement per
/// 500 cases).
pub async fn cancel_for_cases(
    conn: &impl ConnectionTrait,
    case_ids: &[Uuid],
    kind: &str,
) -> Result<u64> {
    let mut cancelled = 0;
    for chunk in case_ids.chunks(500) {
        let result = timer::Entity::update_many()
            .col_expr(timer::Column::State, Expr::value(CANCELLED))
            .filter(timer::Column::CaseId.is_in(chunk.iter().copied()))
            .filter(timer::Column::Kind.eq(kind))
            .filter(timer::Column::State.eq(PENDING))
            .exec(conn)
            .await?;
        cancelled += result.rows_affected;
    }
    Ok(cancelled)
}

/// Pending timers of a case.
pub async fn pending_for_case(
    conn: &impl ConnectionTrait,
    case_id: Uuid,
) -> Result<Vec<timer::Model>> {
    Ok(timer::Entity::find()
        .filter(timer::Column::CaseId.eq(case_id))
        .filter(timer::Column::State.eq(PENDING))
        .order_by_asc(timer::Column::DueAt)
        .all(conn)
        .await?)
}

/// Pending timers that are overdue by more than the grace time at `now`.
pub async fn overdue(
    conn: &impl ConnectionTrait,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<timer::Model>> {
    pending_due(conn, timer::Column::DueAt.lt(before), limit).await
}
