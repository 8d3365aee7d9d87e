//! Hotline calls as the crisis team reads them: a school's calls, newest
//! first, a page at a time, and the case each call's signal opened or joined.
//! (Logging a call is `sanyu-gateway`'s `routes::hotline`, in the
//! transaction of its request: it writes through [`insert`] and
//! [`link_student`].)

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sanyu_domain::RiskLevel;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::Result;
use crate::entities::{case_signal, hotline_call};

/// Which calls of a school to list.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub school_id: Uuid,
    /// Only calls about nobody identified (no student).
    pub unidentified_only: bool,
    pub level: Option<RiskLevel>,
    /// Only calls that started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// The next page: calls older than this one (its start time and id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: u64,
}

/// Calls of the filter's school, newest first (by start time, then id).
pub async fn list(conn: &impl ConnectionTrait, f: &CallFilter) -> Result<Vec<hotline_call::Model>> {
    let mut q = hotline_call::Entity::find().filter(hotline_call::Column::SchoolId.eq(f.school_id));
    if f.unidentified_only {
        q = q.filter(hotline_call::Column::StudentId.is_null());
    }
    if let Some(level) = f.level {
        q = q.filter(hotline_call::Column::Level.eq(level.as_str()));
    }
    if let Some(since) = f.since {
        q = q.filter(hotline_call::Column::StartedAt.gte(since));
    }
    if let Some((at, id)) = f.before {
        q = q.filter(
            Condition::any()
                .add(hotline_call::Column::StartedAt.lt(at))
                .add(
                    Condition::all()
                        .add(hotline_call::Column::StartedAt.eq(at))
                        .add(hotline_call::Column::Id.lt(id)),
                ),
        );
    }
    Ok(q.order_by_desc(hotline_call::Column::StartedAt)
        .order_by_desc(hotline_call::Column::Id)
        .limit(f.limit.max(1))
        .all(conn)
        .await?)
}

/// One call of `school_id` (another school's is `None`, like a missing one).
pub async fn get_of_school(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    id: Uuid,
) -> Result<Option<hotline_call::Model>> {
    Ok(hotline_call::Entity::find_by_id(id)
        .one(conn)
        .await?
        .filter(|c| c.school_id == school_id))
}

/// One call by id, whatever its school.
pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<hotline_call::Model>> {
    Ok(hotline_call::Entity::find_by_id(id).one(conn).await?)
}

/// The call of `school_id` the hotline system calls `call_id` (its own id,
/// unique per school).
pub async fn by_call_id(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    call_id: &str,
) -> Result<Option<hotline_call::Model>> {
    Ok(hotline_call::Entity::find()
        .filter(hotline_call::Column::SchoolId.eq(school_id))
        .filter(hotline_call::Column::CallId.eq(call_id))
        .one(conn)
        .await?)
}

/// A call to log. Free text is sealed already.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub id: Uuid,
    pub school_id: Uuid,
    pub call_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub caller_type: String,
    pub student_id: Option<Uuid>,
    pub cssrs_answers: Option<String>,
    pub rating: Option<String>,
    pub level: RiskLevel,
    pub summary_sealed: Option<Vec<u8>>,
    pub counsellor_sealed: Option<Vec<u8>>,
    pub referral_advice_sealed: Option<Vec<u8>>,
    pub event_id: Option<String>,
    pub submitted_by: Uuid,
    pub created_at: DateTime<Utc>,
}

/// Insert a call (in the caller's transaction).
pub async fn insert(conn: &impl ConnectionTrait, c: NewCall) -> Result<()> {
    let row = hotline_call::ActiveModel {
        id: Set(c.id),
        school_id: Set(c.school_id),
        call_id: Set(c.call_id),
        started_at: Set(c.started_at),
        ended_at: Set(c.ended_at),
        caller_type: Set(c.caller_type),
        student_id: Set(c.student_id),
        cssrs_answers: Set(c.cssrs_answers),
        rating: Set(c.rating),
        level: Set(c.level),
        summary_sealed: Set(c.summary_sealed),
        counsellor_sealed: Set(c.counsellor_sealed),
        referral_advice_sealed: Set(c.referral_advice_sealed),
        // Superseded by the unidentified caller's case (migration 000011).
        alert_state: Set(None),
        linked_at: Set(None),
        event_id: Set(c.event_id),
        submitted_by: Set(c.submitted_by),
        created_at: Set(c.created_at),
    };
    hotline_call::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Name the student an unidentified call was about: the call gets the
/// student, the time it was linked and its INTAKE event. The updated row is
/// returned.
pub async fn link_student(
    conn: &impl ConnectionTrait,
    row: hotline_call::Model,
    student_id: Uuid,
    event_id: String,
    now: DateTime<Utc>,
) -> Result<hotline_call::Model> {
    let mut update: hotline_call::ActiveModel = row.into();
    update.student_id = Set(Some(student_id));
    update.linked_at = Set(Some(now));
    update.event_id = Set(Some(event_id));
    Ok(update.update(conn).await?)
}

/// The calls among `call_ids` that name no student yet now name
/// `student_id`, linked at `at` (a case's calls, once its student is known).
pub async fn link_calls(
    conn: &impl ConnectionTrait,
    call_ids: Vec<Uuid>,
    student_id: Uuid,
    at: DateTime<Utc>,
) -> Result<()> {
    if call_ids.is_empty() {
        return Ok(());
    }
    hotline_call::Entity::update_many()
        .col_expr(hotline_call::Column::StudentId, Expr::value(student_id))
        .col_expr(hotline_call::Column::LinkedAt, Expr::value(at))
        .filter(hotline_call::Column::Id.is_in(call_ids))
        .filter(hotline_call::Column::StudentId.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// The case each call's signal opened or joined, by call id: the newest it
/// was attached to (the student's open case a merged caller's case went
/// into). Calls that never reached the rules engine have none.
pub async fn cases_of(
    conn: &impl ConnectionTrait,
    calls: &[hotline_call::Model],
) -> Result<HashMap<Uuid, Uuid>> {
    let events: HashMap<&str, Uuid> = calls
        .iter()
        .filter_map(|c| c.event_id.as_deref().map(|e| (e, c.id)))
        .collect();
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let signals = case_signal::Entity::find()
        .filter(case_signal::Column::SourceId.is_in(events.values().copied()))
        .filter(case_signal::Column::EventId.is_in(events.keys().map(|e| (*e).to_owned())))
        .order_by_asc(case_signal::Column::AttachedAt)
        .all(conn)
        .await?;
    let mut out = HashMap::new();
    for s in signals {
        // A signal is the call's when its event is the call's own.
        if let Some(call) = s
            .source_id
            .filter(|src| events.get(s.event_id.as_str()) == Some(src))
        {
            // Ascending by time: the newest attachment wins.
            out.insert(call, s.case_id);
        }
    }
    Ok(out)
}
