//! The transactional outbox: events are written in the same transaction as the
//! state change that emits them, and a relay publishes them to JetStream.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use sanyu_events::{Envelope, Payload, subjects, v1};

use crate::db::insert_chunks;
use crate::entities::outbox;
use crate::{Result, db};

/// An event waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub event_id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
}

impl OutboxEvent {
    /// `envelope`, encoded, to be published on `subject` under its event id.
    pub fn new(subject: String, envelope: &Envelope, traceparent: Option<String>) -> Self {
        OutboxEvent {
            event_id: envelope.event_id.clone(),
            subject,
            payload: sanyu_events::encode(envelope),
            traceparent,
        }
    }

    /// `payload` as an event of `school` (in `partition`), with id
    /// `event_id`, on `subject`.
    pub fn of(
        subject: String,
        event_id: String,
        at: DateTime<Utc>,
        school: &str,
        partition: u32,
        payload: Payload,
        traceparent: Option<String>,
    ) -> Self {
        let envelope = sanyu_events::envelope(event_id, at, school, partition, payload);
        Self::new(subject, &envelope, traceparent)
    }

    /// A notification request of `school` (in `partition`), on the school's
    /// NOTIFY subject, its event id made of its key
    /// (`sanyu_events::notification_event_id`).
    pub fn notification(
        school: &str,
        partition: u32,
        at: DateTime<Utc>,
        request: v1::NotificationRequested,
        traceparent: Option<String>,
    ) -> Self {
        Self::of(
            subjects::notification_requested(school),
            sanyu_events::notification_event_id(&request.notification_key),
            at,
            school,
            partition,
            Payload::NotificationRequested(request),
            traceparent,
        )
    }
}

/// Write an event inside the caller's transaction. Writing the same event id
/// twice is a no-op: the first write wins.
pub async fn enqueue(conn: &impl ConnectionTrait, event: OutboxEvent) -> Result<()> {
    enqueue_all(conn, vec![event]).await
}

/// Write several events inside the caller's transaction, in multi-row
/// inserts; an event id written before is skipped (the first write wins).
pub async fn enqueue_all(conn: &impl ConnectionTrait, events: Vec<OutboxEvent>) -> Result<()> {
    let now = Utc::now();
    for chunk in insert_chunks(events.into_iter().map(|event| outbox::ActiveModel {
        event_id: Set(event.event_id),
        subject: Set(event.subject),
        payload: Set(event.payload),
        traceparent: Set(event.traceparent),
        created_at: Set(now),
        published_at: Set(None),
        ..Default::default()
    })) {
        outbox::Entity::insert_many(chunk)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(outbox::Column::EventId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// The oldest unpublished events. On PostgreSQL the rows are locked with
/// `SKIP LOCKED`, so relays of several replicas take different rows.
pub async fn claim_batch(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<outbox::Model>> {
    let mut query = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::Id)
        .limit(limit);
    if db::supports_row_locks(conn) {
        query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    Ok(query.all(conn).await?)
}

/// Mark events as published (after JetStream acknowledged them).
pub async fn mark_published(conn: &impl ConnectionTrait, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    outbox::Entity::update_many()
        .col_expr(outbox::Column::PublishedAt, Expr::value(Utc::now()))
        .filter(outbox::Column::Id.is_in(ids.iter().copied()))
        .exec(conn)
        .await?;
    Ok(())
}

/// After a database restore: mark every event published at or after `since`
/// as waiting again, so that the relays publish it once more. Safe because
/// publishes carry the event id as `Nats-Msg-Id` and every consumer records
/// the message ids it processed in the same transaction as their effect: an
/// event that was already handled before the backup does nothing twice, and
/// one that was published but not yet handled (it was in a NATS store that
/// did not survive) is handled now. Returns how many events wait again.
pub async fn republish_since(conn: &impl ConnectionTrait, since: DateTime<Utc>) -> Result<u64> {
    let done = outbox::Entity::update_many()
        .col_expr(
            outbox::Column::PublishedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(outbox::Column::PublishedAt.gte(since))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

/// Number of events still waiting (for readiness and metrics).
pub async fn pending_count(conn: &impl ConnectionTrait) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .count(conn)
        .await?)
}
