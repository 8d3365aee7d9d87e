//! Hotline calls as the crisis team reads them: a school's calls, newest
//! first, a page at a time, and the case each call's signal opened or joined.
//! (Logging a call is `sanyu-gateway`'s `routes::hotline`, in the
//! transaction of its request.)

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sanyu_domain::RiskLevel;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
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
