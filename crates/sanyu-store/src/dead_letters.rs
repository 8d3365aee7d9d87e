//! Dead letters as something a human sees: every message a consumer gave up on
//! is recorded here and listed by the API.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::Result;
use crate::entities::dead_letter;

#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    /// Idempotency key: `<stream>:<consumer>:<stream_seq>`.
    pub source_key: String,
    pub stream: String,
    pub consumer: String,
    pub stream_seq: Option<i64>,
    pub subject: Option<String>,
    pub event_id: Option<String>,
    pub reason: String,
    pub deliveries: Option<i64>,
    /// The school it belongs to, when the message body or the database tells
    /// it (never a subject); `None` only for what no school can be told of.
    pub school_id: Option<Uuid>,
}

/// Whose dead letters a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// A school's admins and crisis team: that school's, nothing else.
    School(Uuid),
    /// A deployment-level admin: every school's and the school-less ones.
    Deployment,
}

impl Readers {
    /// Whether `letter` is theirs to see.
    pub fn sees(&self, letter: &dead_letter::Model) -> bool {
        match self {
            Readers::School(id) => letter.school_id == Some(*id),
            Readers::Deployment => true,
        }
    }
}

/// Record a dead letter; the same source recorded twice keeps the first.
pub async fn record(conn: &impl ConnectionTrait, d: NewDeadLetter) -> Result<()> {
    dead_letter::Entity::insert(dead_letter::ActiveModel {
        id: Set(Uuid::now_v7()),
        source_key: Set(d.source_key),
        stream: Set(d.stream),
        consumer: Set(d.consumer),
        stream_seq: Set(d.stream_seq),
        subject: Set(d.subject),
        event_id: Set(d.event_id),
        reason: Set(d.reason),
        deliveries: Set(d.deliveries),
        received_at: Set(Utc::now()),
        resolved_at: Set(None),
        school_id: Set(d.school_id),
    })
    .on_conflict(
        OnConflict::column(dead_letter::Column::SourceKey)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Unresolved dead letters `readers` see, newest first.
pub async fn list_open(
    conn: &impl ConnectionTrait,
    readers: Readers,
    limit: u64,
) -> Result<Vec<dead_letter::Model>> {
    let mut query = dead_letter::Entity::find().filter(dead_letter::Column::ResolvedAt.is_null());
    if let Readers::School(id) = readers {
        query = query.filter(dead_letter::Column::SchoolId.eq(id));
    }
    Ok(query
        .order_by_desc(dead_letter::Column::ReceivedAt)
        .limit(limit)
        .all(conn)
        .await?)
}

/// One dead letter.
pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<dead_letter::Model>> {
    Ok(dead_letter::Entity::find_by_id(id).one(conn).await?)
}

/// The dead letter recorded for `source_key`, resolved or not.
pub async fn by_source_key(
    conn: &impl ConnectionTrait,
    source_key: &str,
) -> Result<Option<dead_letter::Model>> {
    Ok(dead_letter::Entity::find()
        .filter(dead_letter::Column::SourceKey.eq(source_key))
        .one(conn)
        .await?)
}

/// Mark a dead letter resolved (a person dealt with it). Returns `false` when
/// it was resolved already (the first resolution stands).
pub async fn resolve(conn: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    use sea_orm::sea_query::Expr;
    let done = dead_letter::Entity::update_many()
        .col_expr(dead_letter::Column::ResolvedAt, Expr::value(Utc::now()))
        .filter(dead_letter::Column::Id.eq(id))
        .filter(dead_letter::Column::ResolvedAt.is_null())
        .exec(conn)
        .await?;
    Ok(done.rows_affected == 1)
}
