//! Role grants: a role that reads cases (counsellor, crisis team, leader,
//! district) given to a staff member through the API does not take effect
//! when it is asked for. It waits here, `pending`, until a second person of
//! the school (a leader or a crisis-team member who is neither the grantee
//! nor the one who asked) confirms it; they may refuse it instead. A
//! deployment-level admin may decide too (a school without a leader or crisis
//! team yet). Taking such a role away takes effect at once and withdraws what
//! was pending for that person.
//!
//! The store keeps the rows and the one state change; announcing them (audit
//! log, email to the school's leaders and crisis team) is the caller's, in
//! the same transaction.

use chrono::{DateTime, Utc};
use sanyu_domain::Role;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entities::{role_grant, staff};
use crate::{Result, StoreError};

pub const PENDING: &str = "pending";
pub const CONFIRMED: &str = "confirmed";
pub const REFUSED: &str = "refused";
pub const WITHDRAWN: &str = "withdrawn";

/// Who asks for or decides a grant: a token, and the staff member it names
/// if it names one. A deployment-level admin has a token and no staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actor {
    pub token_id: Option<Uuid>,
    pub staff_id: Option<Uuid>,
}

/// Ask for `role` for `staff_id`. Another grant pending for the same person
/// is withdrawn (the latest request stands); the same request pending
/// already answers `None` (nothing new to announce).
pub async fn request(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    staff_id: Uuid,
    role: Role,
    by: Actor,
    at: DateTime<Utc>,
) -> Result<Option<role_grant::Model>> {
    let pending = role_grant::Entity::find()
        .filter(role_grant::Column::StaffId.eq(staff_id))
        .filter(role_grant::Column::Status.eq(PENDING))
        .all(conn)
        .await?;
    if pending.iter().any(|g| g.role == role.as_str()) {
        return Ok(None);
    }
    withdraw_pending(conn, staff_id, at).await?;
    let grant = role_grant::Model {
        requested_by_token: by.token_id,
        requested_by_staff: by.staff_id,
        ..new_grant(school_id, staff_id, role, PENDING, at)
    };
    Ok(Some(insert(conn, grant).await?))
}

/// Record a role the operator's import gave at once (the CLI, which sets up
/// a school's first staff): a grant confirmed when asked for, by nobody but
/// the operator. Whatever was pending for the person is withdrawn.
pub async fn record_operator(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    staff_id: Uuid,
    role: Role,
    at: DateTime<Utc>,
) -> Result<role_grant::Model> {
    withdraw_pending(conn, staff_id, at).await?;
    let grant = role_grant::Model {
        decided_at: Some(at),
        ..new_grant(school_id, staff_id, role, CONFIRMED, at)
    };
    insert(conn, grant).await
}

/// A grant of `role` to `staff_id` in `status`, asked for at `at` by nobody
/// named and decided by nobody yet.
fn new_grant(
    school_id: Uuid,
    staff_id: Uuid,
    role: Role,
    status: &str,
    at: DateTime<Utc>,
) -> role_grant::Model {
    role_grant::Model {
        id: Uuid::now_v7(),
        school_id,
        staff_id,
        role: role.as_str().to_owned(),
        status: status.to_owned(),
        requested_by_token: None,
        requested_by_staff: None,
        requested_at: at,
        decided_by_token: None,
        decided_by_staff: None,
        decided_at: None,
    }
}

/// Store a new grant; returns it.
async fn insert(
    conn: &impl ConnectionTrait,
    grant: role_grant::Model,
) -> Result<role_grant::Model> {
    role_grant::Entity::insert(role_grant::ActiveModel::from(grant.clone()))
        .exec_without_returning(conn)
        .await?;
    Ok(grant)
}

/// Withdraw every grant pending for `staff_id` (a later import asked for
/// another role, or took the role away). Returns how many.
pub async fn withdraw_pending(
    conn: &impl ConnectionTrait,
    staff_id: Uuid,
    at: DateTime<Utc>,
) -> Result<u64> {
    let done = role_grant::Entity::update_many()
        .col_expr(role_grant::Column::Status, Expr::value(WITHDRAWN))
        .col_expr(role_grant::Column::DecidedAt, Expr::value(at))
        .filter(role_grant::Column::StaffId.eq(staff_id))
        .filter(role_grant::Column::Status.eq(PENDING))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

/// The grants of a school, pending first, then newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    limit: u64,
) -> Result<Vec<role_grant::Model>> {
    pending_first(
        conn,
        role_grant::Entity::find().filter(role_grant::Column::SchoolId.eq(school_id)),
        limit,
    )
    .await
}

/// The grants of every school (a deployment-level admin), pending first,
/// then newest first.
pub async fn list_all(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<role_grant::Model>> {
    pending_first(conn, role_grant::Entity::find(), limit).await
}

/// The newest `limit` grants `query` finds, pending first, then newest first.
async fn pending_first(
    conn: &impl ConnectionTrait,
    query: sea_orm::Select<role_grant::Entity>,
    limit: u64,
) -> Result<Vec<role_grant::Model>> {
    let mut rows = query
        .order_by_desc(role_grant::Column::RequestedAt)
        .limit(limit)
        .all(conn)
        .await?;
    rows.sort_by_key(|g| g.status != PENDING);
    Ok(rows)
}

/// One grant.
pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<role_grant::Model>> {
    Ok(role_grant::Entity::find_by_id(id).one(conn).await?)
}

/// Why a grant could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("the grant was {0} already")]
    NotPending(String),
    #[error("the person the role is for cannot decide it")]
    Grantee,
    #[error("the person who asked for the role cannot decide it")]
    Requester,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for DecideError {
    fn from(e: sea_orm::DbErr) -> Self {
        DecideError::Store(StoreError::Db(e))
    }
}

/// Confirm (`true`) or refuse a pending grant as `by`, who must be a second
/// person: not the grantee, not who asked (by staff member and by token).
/// Confirming gives the staff member the role and makes them active, in the
/// caller's transaction. A conditional `pending → …` update: two deciders
/// at once, one wins and the other is told it was decided.
pub async fn decide(
    conn: &impl ConnectionTrait,
    grant: &role_grant::Model,
    by: Actor,
    confirm: bool,
    at: DateTime<Utc>,
) -> std::result::Result<role_grant::Model, DecideError> {
    if grant.status != PENDING {
        return Err(DecideError::NotPending(grant.status.clone()));
    }
    if by.staff_id == Some(grant.staff_id) {
        return Err(DecideError::Grantee);
    }
    if (by.staff_id.is_some() && by.staff_id == grant.requested_by_staff)
        || (by.token_id.is_some() && by.token_id == grant.requested_by_token)
    {
        return Err(DecideError::Requester);
    }
    let status = if confirm { CONFIRMED } else { REFUSED };
    let done = role_grant::Entity::update_many()
        .col_expr(role_grant::Column::Status, Expr::value(status))
        .col_expr(role_grant::Column::DecidedByToken, Expr::value(by.token_id))
        .col_expr(role_grant::Column::DecidedByStaff, Expr::value(by.staff_id))
        .col_expr(role_grant::Column::DecidedAt, Expr::value(at))
        .filter(role_grant::Column::Id.eq(grant.id))
        .filter(role_grant::Column::Status.eq(PENDING))
        .exec(conn)
        .await?;
    if done.rows_affected != 1 {
        let now = get(conn, grant.id)
            .await?
            .ok_or(StoreError::NotFound("role grant"))?;
        return Err(DecideError::NotPending(now.status));
    }
    if confirm {
        let person = staff::Entity::find_by_id(grant.staff_id)
            .one(conn)
            .await?
            .ok_or(StoreError::NotFound("staff"))?;
        // The role changes: the person's console sessions end.
        crate::console::end_sessions_of_staff(conn, person.id, at).await?;
        let mut a: staff::ActiveModel = person.into();
        a.role = Set(grant.role.clone());
        a.active = Set(true);
        a.updated_at = Set(at);
        a.update(conn).await?;
    }
    Ok(get(conn, grant.id)
        .await?
        .ok_or(StoreError::NotFound("role grant"))?)
}
