//! `GET /v1/cases` and `GET /v1/cases/{id}`: the crisis team's queue and one
//! case with the signals that caused it. Scope: the caller's school, and for a
//! head teacher the own class. Another school's case answers 404.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use sanyu_domain::{Access, CaseStatus, Principal, RiskLevel};
use sanyu_store::cases::{self, CaseFilter};
use sanyu_store::entities::{case, class, student};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sanyu_store::{deliveries, reports};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

#[derive(Debug, Deserialize, IntoParams)]
pub struct CaseQuery {
    /// open, acknowledged, in_progress, referred, monitoring, closed
    pub status: Option<String>,
    /// elevated, high, critical
    pub level: Option<String>,
    /// At most this many cases (default 100, at most 500).
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseSummary {
    pub id: Uuid,
    pub reference: String,
    pub level: String,
    pub status: String,
    pub student_id: Uuid,
    /// Shown to counsellors, the crisis team and the class's head teacher only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_name: Option<String>,
    pub class_code: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseList {
    pub cases: Vec<CaseSummary>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignalView {
    pub event_id: String,
    pub kind: String,
    pub level: String,
    /// opened, raised or attached.
    pub decision: String,
    /// The rule that made the decision.
    pub rule_id: String,
    pub attached_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// Only for counsellors and the crisis team.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub narrative: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    pub recipient_staff_id: Uuid,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: CaseSummary,
    pub opened_rule: String,
    pub signals: Vec<SignalView>,
    pub notifications: Vec<NotificationView>,
}

fn sees_identity(p: &Principal) -> bool {
    use sanyu_domain::Role::*;
    matches!(p.role, Counsellor | CrisisTeam | Teacher)
}

async fn summarize(
    state: &AppState,
    caller: &Principal,
    rows: Vec<case::Model>,
) -> Result<Vec<CaseSummary>, ApiError> {
    let student_ids: Vec<Uuid> = rows.iter().map(|c| c.student_id).collect();
    let class_ids: Vec<Uuid> = rows.iter().map(|c| c.class_id).collect();
    let students: HashMap<Uuid, student::Model> =
        if sees_identity(caller) && !student_ids.is_empty() {
            student::Entity::find()
                .filter(student::Column::Id.is_in(student_ids))
                .all(&state.db)
                .await?
                .into_iter()
                .map(|s| (s.id, s))
                .collect()
        } else {
            HashMap::new()
        };
    let classes: HashMap<Uuid, String> = if class_ids.is_empty() {
        HashMap::new()
    } else {
        class::Entity::find()
            .filter(class::Column::Id.is_in(class_ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|c| (c.id, c.code))
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|c| {
            let student = students.get(&c.student_id);
            CaseSummary {
                id: c.id,
                reference: c.reference,
                level: c.level,
                status: c.status,
                student_id: c.student_id,
                student_no: student.map(|s| s.student_no.clone()),
                student_name: student.map(|s| s.name.clone()),
                class_code: classes.get(&c.class_id).cloned(),
                opened_at: c.opened_at,
                updated_at: c.updated_at,
            }
        })
        .collect())
}

/// The case queue of the caller's school (a head teacher: own class), most urgent first.
#[utoipa::path(
    get,
    path = "/v1/cases",
    tag = "cases",
    params(CaseQuery),
    responses(
        (status = 200, body = CaseList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(token_id))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Query(q): Query<CaseQuery>,
) -> Result<Json<CaseList>, ApiError> {
    if !caller.may_read_cases() {
        return Err(ApiError::Forbidden("your role may not read cases"));
    }
    let status = q
        .status
        .as_deref()
        .map(str::parse::<CaseStatus>)
        .transpose()
        .map_err(|e| ApiError::validation("status", e.to_string()))?;
    let level = q
        .level
        .as_deref()
        .map(str::parse::<RiskLevel>)
        .transpose()
        .map_err(|e| ApiError::validation("level", e.to_string()))?;
    let filter = CaseFilter {
        school_id: caller.school_id,
        class_id: if caller.role.is_class_bound() {
            Some(
                caller
                    .class_id
                    .ok_or(ApiError::Forbidden("token has no class"))?,
            )
        } else {
            None
        },
        status,
        level,
        limit: q.limit.unwrap_or(100).clamp(1, 500),
    };
    let rows = cases::list(&state.db, &filter).await?;
    let cases = summarize(&state, &caller, rows).await?;
    audit::record(
        &state,
        &caller,
        &peer,
        "case.list",
        format!("school:{}", caller.school_id),
    )
    .await?;
    Ok(Json(CaseList { cases }))
}

/// One case, with the signals that caused it and who was notified.
#[utoipa::path(
    get,
    path = "/v1/cases/{id}",
    tag = "cases",
    params(("id" = Uuid, Path, description = "Case id")),
    responses(
        (status = 200, body = CaseDetail),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such case in your scope", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(token_id, case_id = %id))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    if !caller.may_read_cases() {
        return Err(ApiError::Forbidden("your role may not read cases"));
    }
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("case"))?;
    let case = cases::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("case"))?;
    match caller.may_read_case_of(case.school_id, case.class_id) {
        Access::Allowed => {}
        Access::Forbidden => return Err(ApiError::Forbidden("your role may not read cases")),
        Access::OutOfScope => return Err(ApiError::NotFound("case")),
    }
    let signals = cases::signals(&state.db, case.id).await?;
    let report_ids: Vec<Uuid> = signals.iter().filter_map(|s| s.source_id).collect();
    let reports: HashMap<Uuid, _> = reports::by_ids(&state.db, report_ids)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let narratives = caller.may_read_narratives();
    let mut signal_views = Vec::with_capacity(signals.len());
    for s in signals {
        let report = s.source_id.and_then(|id| reports.get(&id));
        let narrative = match report {
            Some(r) if narratives => Some(state.sealer.open(&r.narrative_sealed)?),
            _ => None,
        };
        signal_views.push(SignalView {
            event_id: s.event_id,
            kind: s.kind,
            level: s.level,
            decision: s.decision,
            rule_id: s.rule_id,
            attached_at: s.attached_at,
            category: report.map(|r| r.category.clone()),
            observed_at: report.map(|r| r.observed_at),
            narrative,
        });
    }
    let notifications = deliveries::for_case(&state.db, case.id)
        .await?
        .into_iter()
        .map(|d| NotificationView {
            recipient_staff_id: d.recipient_staff_id,
            channel: d.channel,
            status: d.status,
            attempts: d.attempts,
            sent_at: d.sent_at,
        })
        .collect();
    let opened_rule = case.opened_rule.clone();
    audit::record(
        &state,
        &caller,
        &peer,
        "case.read",
        format!("case:{}", case.id),
    )
    .await?;
    let summary = summarize(&state, &caller, vec![case])
        .await?
        .pop()
        .ok_or(ApiError::NotFound("case"))?;
    Ok(Json(CaseDetail {
        case: summary,
        opened_rule,
        signals: signal_views,
        notifications,
    }))
}
