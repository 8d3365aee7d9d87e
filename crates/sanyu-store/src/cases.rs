//! Intervention cases and the signals attached to them. The rules engine
//! writes them; the gateway reads them.

use chrono::{DateTime, Utc};
use sanyu_domain::{CaseStatus, CaseSubject, LadderState, RiskLevel, student_partition};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::db::insert_chunks;
use crate::entities::{case, case_action, case_signal};
use crate::{Result, StoreError, db};

/// The student's case that is not closed, locked for update on PostgreSQL.
pub async fn active_for_student(
    conn: &impl ConnectionTrait,
    student_id: Uuid,
) -> Result<Option<case::Model>> {
    let mut q = case::Entity::find()
        .filter(case::Column::StudentId.eq(student_id))
        .filter(case::Column::Status.ne(CaseStatus::Closed));
    if db::supports_row_locks(conn) {
        q = q.lock(LockType::Update);
    }
    Ok(q.one(conn).await?)
}

/// The students' cases that are not closed (at most one each), locked for
/// update on PostgreSQL.
pub async fn active_for_students(
    conn: &impl ConnectionTrait,
    students: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, case::Model>> {
    let mut out = std::collections::HashMap::new();
    for chunk in students.chunks(500) {
        let mut q = case::Entity::find()
            .filter(case::Column::StudentId.is_in(chunk.iter().copied()))
            .filter(case::Column::Status.ne(CaseStatus::Closed))
            .order_by_asc(case::Column::Id);
        if db::supports_row_locks(conn) {
            q = q.lock(LockType::Update);
        }
        for c in q.all(conn).await? {
            if let Some(student_id) = c.student_id {
                out.insert(student_id, c);
            }
        }
    }
    Ok(out)
}

impl case::Model {
    /// Who the case is about.
    pub fn subject(&self) -> CaseSubject {
        self.subject
    }

    /// The subject partition of the case's events: the student's, or for a
    /// case about no identified student, one derived from the case itself.
    pub fn partition(&self) -> u32 {
        student_partition(self.student_id.unwrap_or(self.id))
    }
}

#[derive(Debug, Clone)]
pub struct NewCase {
    pub id: Uuid,
    pub reference: String,
    pub school_id: Uuid,
    /// None (with `student_id`) for an unidentified caller.
    pub class_id: Option<Uuid>,
    pub student_id: Option<Uuid>,
    pub subject: CaseSubject,
    pub level: RiskLevel,
    pub rule: String,
    pub at: DateTime<Utc>,
}

/// The row a new case starts as (status open, no ladder yet, version 1).
pub fn new_model(c: NewCase) -> case::Model {
    case::Model {
        id: c.id,
        reference: c.reference,
        school_id: c.school_id,
        class_id: c.class_id,
        student_id: c.student_id,
        level: c.level,
        level_rank: c.level.rank(),
        status: CaseStatus::Open,
        opened_rule: c.rule,
        opened_at: c.at,
        updated_at: c.at,
        closed_at: None,
        version: 1,
        ladder: None,
        ladder_epoch: 0,
        ladder_state: LadderState::Stopped,
        ladder_started_at: None,
        ack_deadline: None,
        acknowledged_at: None,
        acknowledged_by: None,
        assignee_staff_id: None,
        subject: c.subject,
        merged_into: None,
        last_action_at: None,
    }
}

/// Insert whole case rows (a batch of openings) in multi-row inserts.
pub async fn insert_many(conn: &impl ConnectionTrait, rows: Vec<case::Model>) -> Result<()> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    for chunk in insert_chunks(rows.into_iter().map(|m| m.into_active_model().reset_all())) {
        case::Entity::insert_many(chunk)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Attach several signals in multi-row inserts.
pub async fn attach_many(conn: &impl ConnectionTrait, signals: Vec<NewSignal>) -> Result<()> {
    for chunk in insert_chunks(signals.into_iter().map(NewSignal::into_row)) {
        case_signal::Entity::insert_many(chunk)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

pub async fn open(conn: &impl ConnectionTrait, c: NewCase) -> Result<()> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let mut row = new_model(c).into_active_model().reset_all();
    // Nobody acted yet: left to the column's default (null), so that the
    // insert also fits a database not yet migrated to the column.
    row.last_action_at = sea_orm::ActiveValue::NotSet;
    case::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Raise a case's level, guarded by its version (optimistic concurrency).
pub async fn raise_level(
    conn: &impl ConnectionTrait,
    current: &case::Model,
    level: RiskLevel,
) -> Result<()> {
    let result = case::Entity::update_many()
        .col_expr(case::Column::Level, Expr::value(level))
        .col_expr(case::Column::LevelRank, Expr::value(level.rank()))
        .col_expr(case::Column::UpdatedAt, Expr::value(Utc::now()))
        .col_expr(case::Column::Version, Expr::value(current.version + 1))
        .filter(case::Column::Id.eq(current.id))
        .filter(case::Column::Version.eq(current.version))
        .exec(conn)
        .await?;
    if result.rows_affected != 1 {
        return Err(version_conflict());
    }
    Ok(())
}

/// The case moved on since it was read: the caller's transaction is rolled
/// back and retried.
fn version_conflict() -> StoreError {
    StoreError::Db(sea_orm::DbErr::Custom(
        "case changed concurrently (version conflict); database is busy, retry".into(),
    ))
}

#[derive(Debug, Clone)]
pub struct NewSignal {
    pub case_id: Uuid,
    pub event_id: String,
    pub kind: String,
    pub source_id: Option<Uuid>,
    pub level: RiskLevel,
    pub decision: String,
    pub rule_id: String,
    pub at: DateTime<Utc>,
}

impl NewSignal {
    fn into_row(self) -> case_signal::ActiveModel {
        case_signal::ActiveModel {
            id: Set(Uuid::now_v7()),
            case_id: Set(self.case_id),
            event_id: Set(self.event_id),
            kind: Set(self.kind),
            source_id: Set(self.source_id),
            level: Set(self.level),
            decision: Set(self.decision),
            rule_id: Set(self.rule_id),
            attached_at: Set(self.at),
        }
    }
}

/// Which cases a caller may list.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub school_id: Uuid,
    /// Set for class-bound callers (head teachers).
    pub class_id: Option<Uuid>,
    /// Whether cases about no identified student (unidentified hotline
    /// callers) are listed: for counsellors and the crisis team only.
    pub include_unidentified: bool,
    pub status: Option<CaseStatus>,
    pub level: Option<RiskLevel>,
    pub assignee: Option<Uuid>,
    /// Only cases whose acknowledge deadline passed without an acknowledgement.
    pub overdue_at: Option<DateTime<Utc>>,
    pub limit: u64,
}

/// Cases by urgency: level first, then the oldest.
pub async fn list(conn: &impl ConnectionTrait, f: &CaseFilter) -> Result<Vec<case::Model>> {
    let mut q = case::Entity::find().filter(case::Column::SchoolId.eq(f.school_id));
    if let Some(class_id) = f.class_id {
        q = q.filter(case::Column::ClassId.eq(class_id));
    }
    if !f.include_unidentified {
        q = q.filter(case::Column::StudentId.is_not_null());
    }
    if let Some(status) = f.status {
        q = q.filter(case::Column::Status.eq(status));
    }
    if let Some(level) = f.level {
        q = q.filter(case::Column::Level.eq(level));
    }
    if let Some(assignee) = f.assignee {
        q = q.filter(case::Column::AssigneeStaffId.eq(assignee));
    }
    if let Some(now) = f.overdue_at {
        q = q
            .filter(case::Column::LadderState.ne(LadderState::Stopped))
            .filter(case::Column::AckDeadline.lt(now));
    }
    // Level first; within a level the earliest acknowledge deadline (cases
    // without one, i.e. acknowledged, after those still waiting), then age.
    Ok(q.order_by_desc(case::Column::LevelRank)
        .order_by_asc(Expr::cust(
            "CASE WHEN ack_deadline IS NULL OR ladder_state = 'stopped' THEN 1 ELSE 0 END",
        ))
        .order_by_asc(case::Column::AckDeadline)
        .order_by_asc(case::Column::OpenedAt)
        .limit(f.limit.max(1))
        .all(conn)
        .await?)
}

/// The ids of the cases whose ladder is in one of `states`.
pub async fn ids_with_ladder_in(
    conn: &impl ConnectionTrait,
    states: &[LadderState],
) -> Result<Vec<Uuid>> {
    Ok(case::Entity::find()
        .filter(case::Column::LadderState.is_in(states.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect())
}

/// The cases of `ids`, in no order. No ids, no query.
pub async fn by_ids(conn: &impl ConnectionTrait, ids: Vec<Uuid>) -> Result<Vec<case::Model>> {
    crate::db::find_in(conn, case::Entity::find(), case::Column::Id, ids).await
}

pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<case::Model>> {
    Ok(case::Entity::find_by_id(id).one(conn).await?)
}

/// The case, locked until the end of the caller's transaction on PostgreSQL
/// (`FOR UPDATE`; a change to the case waits for it, and a change in flight is
/// waited for and read). On SQLite the caller's write transaction
/// (`BEGIN IMMEDIATE`) already excludes every other writer.
pub async fn get_for_update(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<case::Model>> {
    let mut query = case::Entity::find_by_id(id);
    if crate::db::supports_row_locks(conn) {
        query = query.lock_exclusive();
    }
    Ok(query.one(conn).await?)
}

pub async fn signals(
    conn: &impl ConnectionTrait,
    case_id: Uuid,
) -> Result<Vec<case_signal::Model>> {
    Ok(case_signal::Entity::find()
        .filter(case_signal::Column::CaseId.eq(case_id))
        .order_by_asc(case_signal::Column::AttachedAt)
        .all(conn)
        .await?)
}

pub async fn count_all(conn: &impl ConnectionTrait) -> Result<u64> {
    Ok(case::Entity::find().count(conn).await?)
}

/// Write `after` over the case if it is still at `before`'s version (its
/// writer's rewrite: every column a plan may change). The new version is
/// returned; a case changed in between is a retryable conflict.
pub async fn rewrite(
    conn: &impl ConnectionTrait,
    before: &case::Model,
    after: &case::Model,
) -> Result<case::Model> {
    let a = after;
    update(
        conn,
        before,
        case::ActiveModel {
            school_id: Set(a.school_id),
            class_id: Set(a.class_id),
            student_id: Set(a.student_id),
            level: Set(a.level),
            level_rank: Set(a.level_rank),
            status: Set(a.status),
            closed_at: Set(a.closed_at),
            ladder: Set(a.ladder.clone()),
            ladder_epoch: Set(a.ladder_epoch),
            ladder_state: Set(a.ladder_state),
            ladder_started_at: Set(a.ladder_started_at),
            ack_deadline: Set(a.ack_deadline),
            acknowledged_at: Set(a.acknowledged_at),
            acknowledged_by: Set(a.acknowledged_by),
            assignee_staff_id: Set(a.assignee_staff_id),
            subject: Set(a.subject),
            merged_into: Set(a.merged_into),
            last_action_at: Set(a.last_action_at),
            ..Default::default()
        },
    )
    .await
}

/// Write `changes` (the `Set` fields of an active model built from `current`)
/// to the case, guarded by its version. The new version is returned.
async fn update(
    conn: &impl ConnectionTrait,
    current: &case::Model,
    mut changes: case::ActiveModel,
) -> Result<case::Model> {
    let now = Utc::now();
    changes.id = sea_orm::ActiveValue::Unchanged(current.id);
    changes.version = Set(current.version + 1);
    changes.updated_at = Set(now);
    let result = case::Entity::update_many()
        .set(changes)
        .filter(case::Column::Id.eq(current.id))
        .filter(case::Column::Version.eq(current.version))
        .exec(conn)
        .await?;
    if result.rows_affected != 1 {
        return Err(version_conflict());
    }
    get(conn, current.id)
        .await?
        .ok_or(StoreError::NotFound("case"))
}

/// An entry of the case timeline.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub id: Uuid,
    pub case_id: Uuid,
    pub action: String,
    pub actor_role: String,
    pub actor_staff_id: Option<Uuid>,
    pub actor_token_id: Option<Uuid>,
    pub status_after: CaseStatus,
    /// JSON without narrative (ids, dates, channels, outcomes).
    pub detail: serde_json::Value,
    /// Free text, already sealed.
    pub text_sealed: Option<Vec<u8>>,
    /// Free text of the detail (a JSON object merged into `detail` for
    /// those who may read it), already sealed.
    pub detail_sealed: Option<Vec<u8>>,
    pub at: DateTime<Utc>,
}

pub async fn record_action(conn: &impl ConnectionTrait, a: NewAction) -> Result<()> {
    case_action::Entity::insert(case_action::ActiveModel {
        id: Set(a.id),
        case_id: Set(a.case_id),
        action: Set(a.action),
        actor_role: Set(a.actor_role),
        actor_staff_id: Set(a.actor_staff_id),
        actor_token_id: Set(a.actor_token_id),
        status_after: Set(a.status_after),
        detail: Set(a.detail.to_string()),
        text_sealed: Set(a.text_sealed),
        detail_sealed: Set(a.detail_sealed),
        at: Set(a.at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn actions(
    conn: &impl ConnectionTrait,
    case_ids: Vec<Uuid>,
) -> Result<Vec<case_action::Model>> {
    crate::db::find_in(
        conn,
        case_action::Entity::find()
            .order_by_asc(case_action::Column::At)
            .order_by_asc(case_action::Column::Id),
        case_action::Column::CaseId,
        case_ids,
    )
    .await
}

pub async fn for_student(
    conn: &impl ConnectionTrait,
    student_id: Uuid,
) -> Result<Vec<case::Model>> {
    Ok(case::Entity::find()
        .filter(case::Column::StudentId.eq(student_id))
        .order_by_asc(case::Column::OpenedAt)
        .all(conn)
        .await?)
}
