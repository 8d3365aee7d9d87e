//! Teacher warning reports (the gateway's table).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::Result;
use crate::entities::report;

#[derive(Debug, Clone)]
pub struct NewReport {
    pub id: Uuid,
    pub school_id: Uuid,
    pub class_id: Uuid,
    pub student_id: Uuid,
    pub category: String,
    pub level: sanyu_domain::RiskLevel,
    pub observed_at: DateTime<Utc>,
    pub narrative_sealed: Vec<u8>,
    pub reporter_token_id: Uuid,
    pub event_id: String,
}

pub async fn insert(conn: &impl ConnectionTrait, r: NewReport) -> Result<()> {
    report::Entity::insert(report::ActiveModel {
        id: Set(r.id),
        school_id: Set(r.school_id),
        class_id: Set(r.class_id),
        student_id: Set(r.student_id),
        category: Set(r.category),
        level: Set(r.level),
        observed_at: Set(r.observed_at),
        narrative_sealed: Set(r.narrative_sealed),
        reporter_token_id: Set(r.reporter_token_id),
        event_id: Set(r.event_id),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn by_ids(conn: &impl ConnectionTrait, ids: Vec<Uuid>) -> Result<Vec<report::Model>> {
    crate::db::find_in(conn, report::Entity::find(), report::Column::Id, ids).await
}

/// The student's reports, oldest observation first.
pub async fn of_student(
    conn: &impl ConnectionTrait,
    student_id: Uuid,
) -> Result<Vec<report::Model>> {
    Ok(report::Entity::find()
        .filter(report::Column::StudentId.eq(student_id))
        .order_by_asc(report::Column::ObservedAt)
        .all(conn)
        .await?)
}

pub async fn count(conn: &impl ConnectionTrait) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(report::Entity::find().count(conn).await?)
}
