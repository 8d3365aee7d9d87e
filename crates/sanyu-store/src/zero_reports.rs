//! Zero reports (零报告): every version of a unit's report for a period. The
//! newest version of a unit is `current`; older versions stay as its history.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::Result;
use crate::entities::{class, zero_report};

/// The unit name of a school's own report.
pub const SCHOOL_UNIT: &str = "school";

#[derive(Debug, Clone)]
pub struct NewZeroReport {
    pub id: Uuid,
    pub period_id: String,
    pub school_id: Uuid,
    pub class_id: Option<Uuid>,
    pub unit: String,
    pub zero: bool,
    pub incident_count: i32,
    pub incidents: String,
    pub late: bool,
    pub request_hash: String,
    pub submitted_by: Uuid,
    pub submitted_at: DateTime<Utc>,
}

/// The current reports of a school's units (its classes and itself) for a period.
pub async fn current_for_school(
    conn: &impl ConnectionTrait,
    period_id: &str,
    school_id: Uuid,
) -> Result<Vec<zero_report::Model>> {
    Ok(zero_report::Entity::find()
        .filter(zero_report::Column::PeriodId.eq(period_id))
        .filter(zero_report::Column::SchoolId.eq(school_id))
        .filter(zero_report::Column::Current.eq(true))
        .all(conn)
        .await?)
}

/// One version of a report by id.
pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<zero_report::Model>> {
    Ok(zero_report::Entity::find_by_id(id).one(conn).await?)
}

/// Every version of one unit's report, oldest first.
pub async fn history(
    conn: &impl ConnectionTrait,
    period_id: &str,
    school_id: Uuid,
    unit: &str,
) -> Result<Vec<zero_report::Model>> {
    Ok(zero_report::Entity::find()
        .filter(zero_report::Column::PeriodId.eq(period_id))
        .filter(zero_report::Column::SchoolId.eq(school_id))
        .filter(zero_report::Column::Unit.eq(unit))
        .order_by_asc(zero_report::Column::Version)
        .all(conn)
        .await?)
}

/// Store a new version of a unit's report: the previous one stops being current.
pub async fn insert_version(
    conn: &impl ConnectionTrait,
    r: NewZeroReport,
    version: i32,
) -> Result<()> {
    zero_report::Entity::update_many()
        .col_expr(zero_report::Column::Current, Expr::value(false))
        .filter(zero_report::Column::PeriodId.eq(r.period_id.clone()))
        .filter(zero_report::Column::SchoolId.eq(r.school_id))
        .filter(zero_report::Column::Unit.eq(r.unit.clone()))
        .exec(conn)
        .await?;
    zero_report::Entity::insert(zero_report::ActiveModel {
        id: Set(r.id),
        period_id: Set(r.period_id),
        school_id: Set(r.school_id),
        class_id: Set(r.class_id),
        unit: Set(r.unit),
        version: Set(version),
        current: Set(true),
        zero: Set(r.zero),
        incident_count: Set(r.incident_count),
        incidents: Set(r.incidents),
        late: Set(r.late),
        request_hash: Set(r.request_hash),
        submitted_by: Set(r.submitted_by),
        submitted_at: Set(r.submitted_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The classes of a school, by code.
pub async fn classes_of(conn: &impl ConnectionTrait, school_id: Uuid) -> Result<Vec<class::Model>> {
    Ok(class::Entity::find()
        .filter(class::Column::SchoolId.eq(school_id))
        .order_by_asc(class::Column::Code)
        .all(conn)
        .await?)
}
