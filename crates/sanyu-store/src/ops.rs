//! What an operator watches, read from the database at scrape time: the
//! outbox backlog and its age, open dead letters, ladders running, exhausted
//! or late, overdue timers and imports running. Counts and ages only: no
//! student, no school name, nothing a metric must not carry.

use chrono::{DateTime, Utc};
use sanyu_domain::{CaseStatus, LadderState};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

use crate::Result;
use crate::entities::{case, dead_letter, outbox, screening_import, timer};

/// A pending timer this much past due means the scheduler is not firing.
pub const TIMER_LATE_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// One reading of the operator's gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpsSnapshot {
    pub outbox_waiting: u64,
    /// Seconds since the oldest waiting event was written; 0 when none waits.
    pub outbox_oldest_secs: f64,
    pub dead_letters_open: u64,
    /// Seconds since the oldest unresolved dead letter arrived; 0 when none.
    pub dead_letter_oldest_open_secs: f64,
    /// Open cases whose ladder is climbing (nobody acknowledged yet).
    pub ladders_running: u64,
    /// Open cases whose every rung fired with nobody acknowledging.
    pub ladders_exhausted: u64,
    /// Open cases with a running ladder whose next rung is past due by more
    /// than [`TIMER_LATE_AFTER`].
    pub ladders_late: u64,
    /// Pending timers of any kind past due by more than [`TIMER_LATE_AFTER`].
    pub timers_overdue: u64,
    pub imports_running: u64,
}

fn age(now: DateTime<Utc>, since: Option<DateTime<Utc>>) -> f64 {
    since.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
}

/// Read the gauges now.
pub async fn snapshot(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<OpsSnapshot> {
    let waiting = outbox::Entity::find().filter(outbox::Column::PublishedAt.is_null());
    let outbox_waiting = waiting.clone().count(conn).await?;
    let oldest = waiting
        .order_by_asc(outbox::Column::Id)
        .one(conn)
        .await?
        .map(|row| row.created_at);

    let open_letters =
        dead_letter::Entity::find().filter(dead_letter::Column::ResolvedAt.is_null());
    let dead_letters_open = open_letters.clone().count(conn).await?;
    let oldest_letter = open_letters
        .order_by_asc(dead_letter::Column::ReceivedAt)
        .one(conn)
        .await?
        .map(|row| row.received_at);

    let open_cases = || case::Entity::find().filter(case::Column::Status.ne(CaseStatus::Closed));
    let ladders_running = open_cases()
        .filter(case::Column::LadderState.eq(LadderState::Running))
        .count(conn)
        .await?;
    let ladders_exhausted = open_cases()
        .filter(case::Column::LadderState.eq(LadderState::Exhausted))
        .count(conn)
        .await?;

    let late = now - TIMER_LATE_AFTER;
    let overdue = || {
        timer::Entity::find()
            .filter(timer::Column::State.eq(crate::timers::PENDING))
            .filter(timer::Column::DueAt.lt(late))
    };
    let timers_overdue = overdue().count(conn).await?;
    let late_cases: Vec<uuid::Uuid> = overdue()
        .filter(timer::Column::Kind.eq(LADDER_RUNG_KIND))
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|t| t.case_id)
        .collect();
    let ladders_late = if late_cases.is_empty() {
        0
    } else {
        open_cases()
            .filter(case::Column::LadderState.eq(LadderState::Running))
            .filter(case::Column::Id.is_in(late_cases))
            .count(conn)
            .await?
    };

    let imports_running = screening_import::Entity::find()
        .filter(screening_import::Column::State.is_in(["queued", "running"]))
        .count(conn)
        .await?;

    Ok(OpsSnapshot {
        outbox_waiting,
        outbox_oldest_secs: age(now, oldest),
        dead_letters_open,
        dead_letter_oldest_open_secs: age(now, oldest_letter),
        ladders_running,
        ladders_exhausted,
        ladders_late,
        timers_overdue,
        imports_running,
    })
}

/// The timer kind of a ladder rung (`sanyu_case::ladder::RUNG_TIMER`).
const LADDER_RUNG_KIND: &str = "escalation_rung";
