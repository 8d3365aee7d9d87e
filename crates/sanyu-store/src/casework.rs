//! Referrals (转介) and follow-ups (重点关注) recorded by the crisis team.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::Result;
use crate::entities::{follow_up, referral};

/// A referral's fields; its free text already sealed.
#[derive(Debug, Clone)]
pub struct ReferralFields {
    pub institution_sealed: Vec<u8>,
    pub referred_on: NaiveDate,
    pub receipt_confirmed: bool,
    pub return_assessed_on: Option<NaiveDate>,
    pub return_assessment_sealed: Option<Vec<u8>>,
}

/// Record a referral of `case_id` under the plan's `id`.
pub async fn create_referral(
    conn: &impl ConnectionTrait,
    id: Uuid,
    case_id: Uuid,
    f: ReferralFields,
    at: DateTime<Utc>,
) -> Result<()> {
    referral::Entity::insert(referral::ActiveModel {
        id: Set(id),
        case_id: Set(case_id),
        institution_sealed: Set(Some(f.institution_sealed)),
        referred_on: Set(f.referred_on),
        receipt_confirmed: Set(f.receipt_confirmed),
        return_assessed_on: Set(f.return_assessed_on),
        return_assessment_sealed: Set(f.return_assessment_sealed),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn referral_of_case(
    conn: &impl ConnectionTrait,
    case_id: Uuid,
    id: Uuid,
) -> Result<Option<referral::Model>> {
    Ok(referral::Entity::find_by_id(id)
        .filter(referral::Column::CaseId.eq(case_id))
        .one(conn)
        .await?)
}

pub async fn update_referral(
    conn: &impl ConnectionTrait,
    current: referral::Model,
    f: ReferralFields,
    at: DateTime<Utc>,
) -> Result<referral::Model> {
    let mut row = current.into_active_model();
    row.institution_sealed = Set(Some(f.institution_sealed));
    row.referred_on = Set(f.referred_on);
    row.receipt_confirmed = Set(f.receipt_confirmed);
    row.return_assessed_on = Set(f.return_assessed_on);
    row.return_assessment_sealed = Set(f.return_assessment_sealed);
    row.updated_at = Set(at);
    Ok(row.update(conn).await?)
}

pub async fn referrals(
    conn: &impl ConnectionTrait,
    case_ids: Vec<Uuid>,
) -> Result<Vec<referral::Model>> {
    crate::db::find_in(
        conn,
        referral::Entity::find().order_by_asc(referral::Column::CreatedAt),
        referral::Column::CaseId,
        case_ids,
    )
    .await
}

/// Record a follow-up as its plan built it.
pub async fn create_follow_up(conn: &impl ConnectionTrait, row: follow_up::Model) -> Result<()> {
    follow_up::Entity::insert(row.into_active_model())
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub async fn follow_up_of_case(
    conn: &impl ConnectionTrait,
    case_id: Uuid,
    id: Uuid,
) -> Result<Option<follow_up::Model>> {
    Ok(follow_up::Entity::find_by_id(id)
        .filter(follow_up::Column::CaseId.eq(case_id))
        .one(conn)
        .await?)
}

pub async fn complete_follow_up(
    conn: &impl ConnectionTrait,
    current: follow_up::Model,
    outcome_sealed: Vec<u8>,
    at: DateTime<Utc>,
) -> Result<follow_up::Model> {
    let mut row = current.into_active_model();
    row.done_at = Set(Some(at));
    row.outcome_sealed = Set(Some(outcome_sealed));
    Ok(row.update(conn).await?)
}

pub async fn get_follow_up(
    conn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<follow_up::Model>> {
    Ok(follow_up::Entity::find_by_id(id).one(conn).await?)
}

/// Follow-ups not yet done in a school, the most overdue first.
pub async fn open_follow_ups(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    limit: u64,
) -> Result<Vec<follow_up::Model>> {
    Ok(follow_up::Entity::find()
        .filter(follow_up::Column::SchoolId.eq(school_id))
        .filter(follow_up::Column::DoneAt.is_null())
        .order_by_asc(follow_up::Column::DueAt)
        .limit(limit)
        .all(conn)
        .await?)
}

pub async fn follow_ups_of_student(
    conn: &impl ConnectionTrait,
    student_id: Uuid,
) -> Result<Vec<follow_up::Model>> {
    Ok(follow_up::Entity::find()
        .filter(follow_up::Column::StudentId.eq(student_id))
        .order_by_asc(follow_up::Column::DueAt)
        .all(conn)
        .await?)
}
