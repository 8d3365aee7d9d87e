//! `GET /v1/cases` and `GET /v1/cases/{id}`: the crisis team's queue and one
//! case with the signals that caused it. Scope: the caller's school, and for a
//! head teacher the own class. Another school's case answers 404.
//!
//! One case answers in the type of the caller's disclosure: [`CaseDetail`]
//! for counsellors and the crisis team, [`CaseOverview`] (state, level, who
//! and when) for head teachers and leaders.
//!
//! Why this file is over 600 lines: about 250 of them are the response types
//! of the case record (`ToSchema` types the OpenAPI document publishes), kept
//! beside the two handlers that fill them in.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use sanyu_domain::{
    Access, CaseStatus, CaseSubject, Disclosure, LadderState, Principal, RiskLevel,
};
use sanyu_store::cases::{self, CaseFilter};
use sanyu_store::entities::{case, student};
use sanyu_store::{casework, deliveries, reports, roster};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::routes::oversight::{self, CaseOverview};
use crate::validate;

#[derive(Debug, Deserialize, IntoParams)]
pub struct CaseQuery {
    /// open, acknowledged, in_progress, referred, monitoring, closed
    pub status: Option<String>,
    /// elevated, high, critical
    pub level: Option<String>,
    /// School code. Every caller is bound to one school, so this only narrows
    /// to the caller's own school; another school's code answers 404.
    pub school: Option<String>,
    /// Only cases assigned to this staff id (`me` for the caller).
    pub assignee: Option<String>,
    /// Only cases whose acknowledge deadline has passed without an acknowledgement.
    pub overdue: Option<bool>,
    /// At most this many cases (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

/// A case in the queue: what every reader of cases sees (head teachers and
/// leaders too), so only state, level and dates belong here. The student's
/// number and name only for those who see identities.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseSummary {
    pub id: Uuid,
    pub reference: String,
    #[schema(value_type = String)]
    pub level: RiskLevel,
    #[schema(value_type = String)]
    pub status: CaseStatus,
    /// `student`, or `unidentified_caller`: a hotline caller rated high or
    /// critical whom nobody identified (no student until linked; counsellors
    /// and the crisis team only).
    #[schema(value_type = String)]
    pub subject: CaseSubject,
    pub student_id: Option<Uuid>,
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

/// One decision of the rules engine about this case: the rule, the rules
/// version in force, and the signals the rule used (codes and levels only).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    pub signal_id: String,
    /// screening, report, hotline or zero_report.
    pub source: String,
    /// opened, raised or attached.
    pub decision: String,
    pub rule_id: String,
    pub rules_version: String,
    /// The case's level after this decision.
    pub case_level: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// The signals the rule used, the deciding one first.
    pub used: Vec<UsedSignalView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsedSignalView {
    pub signal_id: String,
    pub source: String,
    pub at: DateTime<Utc>,
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// Why the case exists and why its level is what it is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhyView {
    /// The rules decision that opened the case.
    pub opened_by: Option<DecisionView>,
    /// Who set the current level: `rule` (see `level_decision`) or `person`
    /// (see `level_action`: a person changed it through the case-work API).
    pub level_set_by: String,
    pub level_decision: Option<DecisionView>,
    pub level_action: Option<ActionView>,
    /// Every rules decision about this case, in order.
    pub decisions: Vec<DecisionView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    /// `<notification key>:<channel>`: ids only.
    pub key: String,
    pub recipient_staff_id: Uuid,
    /// `sms` or `email`.
    pub channel: String,
    /// pending, claimed, sent, delivered (SMS receipt) or failed.
    pub status: String,
    /// How many times the delivery was claimed.
    pub attempts: i32,
    pub sent_at: Option<DateTime<Utc>>,
    /// The provider that accepted it (`smtp`, `webhook`, `aliyun`, `tencent`).
    pub provider: Option<String>,
    pub last_error: Option<String>,
    /// Every send attempt: provider, outcome, latency, the provider's reason.
    pub attempt_log: Vec<AttemptView>,
}

/// One send attempt of a notification.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub provider: String,
    /// accepted, transient_error or permanent_error.
    pub status: String,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// What the provider's delivery receipt said (SMS).
    pub receipt_status: Option<String>,
    pub at: DateTime<Utc>,
}

/// One entry of the case timeline: who did what, when.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionView {
    pub action: String,
    pub actor_role: String,
    pub actor_staff_id: Option<Uuid>,
    pub status_after: String,
    pub at: DateTime<Utc>,
    /// Ids, dates, channels and outcomes, with the free text of the detail
    /// (a close's outcome, a return assessment) opened from its sealed store.
    pub detail: serde_json::Value,
    /// Note or reason text: counsellors and the crisis team only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl ActionView {
    /// An action as shown, with its text when given (`None` leaves it out),
    /// and the free text of its detail opened.
    fn of(
        sealer: &sanyu_store::crypto::Sealer,
        a: &sanyu_store::entities::case_action::Model,
        text: Option<String>,
    ) -> Result<Self, ApiError> {
        let mut detail = serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null);
        if let Some(sealed) = &a.detail_sealed {
            let opened: serde_json::Value = serde_json::from_str(&sealer.open(sealed)?)
                .map_err(|e| ApiError::Internal(format!("action {}: sealed detail: {e}", a.id)))?;
            if let (serde_json::Value::Object(clear), serde_json::Value::Object(private)) =
                (&mut detail, opened)
            {
                clear.extend(private);
            }
        }
        Ok(Self {
            action: a.action.clone(),
            actor_role: a.actor_role.clone(),
            actor_staff_id: a.actor_staff_id,
            status_after: a.status_after.to_string(),
            at: a.at,
            detail,
            text,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReferralView {
    pub id: Uuid,
    pub institution: String,
    pub referred_on: chrono::NaiveDate,
    pub receipt_confirmed: bool,
    pub return_assessed_on: Option<chrono::NaiveDate>,
    pub return_assessment: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FollowUpView {
    pub id: Uuid,
    pub due_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    /// Counsellors and the crisis team only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// One case in full, for counsellors and the crisis team.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: CaseSummary,
    /// Why the case exists: the rule that opened it (each signal names its own rule).
    pub opened_rule: String,
    pub assignee_staff_id: Option<Uuid>,
    /// `running` while waiting for an acknowledgement, `stopped`, or `exhausted`.
    #[schema(value_type = String)]
    pub ladder_state: LadderState,
    pub ack_deadline: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// The escalation ladder snapshotted on the case.
    pub ladder: Option<serde_json::Value>,
    pub allowed_actions: Vec<String>,
    /// Why the case exists and why its level is what it is (rule ids, rules
    /// versions and the signals each rule used).
    pub why: WhyView,
    pub signals: Vec<SignalView>,
    /// Who was reached, by which channel, and how it went.
    pub notifications: Vec<NotificationView>,
    pub timeline: Vec<ActionView>,
    pub referrals: Vec<ReferralView>,
    pub follow_ups: Vec<FollowUpView>,
}

/// `GET /v1/cases/{id}`: the full record for those who work cases, the
/// overview for head teachers and leaders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CaseView {
    Casework(Box<CaseDetail>),
    Oversight(Box<CaseOverview>),
}

async fn summarize(
    state: &AppState,
    caller: &Principal,
    rows: Vec<case::Model>,
) -> Result<Vec<CaseSummary>, ApiError> {
    let student_ids: Vec<Uuid> = rows.iter().filter_map(|c| c.student_id).collect();
    let class_ids: Vec<Uuid> = rows.iter().filter_map(|c| c.class_id).collect();
    let students: HashMap<Uuid, student::Model> = if caller.sees_identity() {
        roster::students_by_ids(&state.db, student_ids)
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect()
    } else {
        HashMap::new()
    };
    let classes: HashMap<Uuid, String> = roster::classes_by_ids(&state.db, class_ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c.code))
        .collect();
    Ok(rows
        .into_iter()
        .map(|c| {
            let student = c.student_id.and_then(|id| students.get(&id));
            CaseSummary {
                id: c.id,
                reference: c.reference,
                level: c.level,
                status: c.status,
                subject: c.subject,
                student_id: c.student_id,
                student_no: student.map(|s| s.student_no.clone()),
                student_name: student.map(|s| s.name.clone()),
                class_code: c.class_id.and_then(|id| classes.get(&id).cloned()),
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
    if let Some(code) = q.school.as_deref() {
        let own = roster::school_by_id(&state.db, caller.school_id)
            .await?
            .ok_or(ApiError::NotFound("school"))?;
        if own.code != code {
            return Err(ApiError::NotFound("school"));
        }
    }
    let assignee =
        match q.assignee.as_deref() {
            None => None,
            Some("me") => Some(caller.staff_id.ok_or_else(|| {
                ApiError::validation("assignee", "your token names no staff member")
            })?),
            Some(other) => Some(
                Uuid::parse_str(other)
                    .map_err(|_| ApiError::validation("assignee", "a staff id or `me`"))?,
            ),
        };
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
        include_unidentified: caller.may_read_unidentified_cases(),
        status,
        level,
        assignee,
        overdue_at: q.overdue.unwrap_or(false).then(Utc::now),
        limit: validate::limit(q.limit, 100, 500)?,
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

/// One case: in full (the signals that caused it, why, who was notified, the
/// timeline with its texts) for those who work it; state, level, who and
/// when for head teachers and leaders.
#[utoipa::path(
    get,
    path = "/v1/cases/{id}",
    tag = "cases",
    params(("id" = Uuid, Path, description = "Case id")),
    responses(
        (status = 200, body = CaseView, description = "`CaseDetail` for counsellors and the crisis team, `CaseOverview` for head teachers and leaders"),
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
) -> Result<Json<CaseView>, ApiError> {
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
    let actions = cases::actions(&state.db, vec![case.id]).await?;
    let follow_ups = match case.student_id {
        Some(student_id) => casework::follow_ups_of_student(&state.db, student_id).await?,
        None => Vec::new(),
    };
    let view = match caller.disclosure() {
        Some(Disclosure::Casework) => CaseView::Casework(Box::new(
            detail(&state, &caller, case.clone(), actions, follow_ups).await?,
        )),
        Some(Disclosure::Oversight) => {
            let summary = summarize(&state, &caller, vec![case.clone()])
                .await?
                .pop()
                .ok_or(ApiError::NotFound("case"))?;
            CaseView::Oversight(Box::new(oversight::case_overview(
                summary,
                &case,
                &actions,
                &follow_ups,
            )))
        }
        None => return Err(ApiError::Forbidden("your role may not read cases")),
    };
    audit::record(
        &state,
        &caller,
        &peer,
        "case.read",
        format!("case:{}", case.id),
    )
    .await?;
    Ok(Json(view))
}

/// The whole record of a case, for counsellors and the crisis team.
async fn detail(
    state: &AppState,
    caller: &Principal,
    case: case::Model,
    actions: Vec<sanyu_store::entities::case_action::Model>,
    follow_up_rows: Vec<sanyu_store::entities::follow_up::Model>,
) -> Result<CaseDetail, ApiError> {
    let signals = cases::signals(&state.db, case.id).await?;
    let report_ids: Vec<Uuid> = signals.iter().filter_map(|s| s.source_id).collect();
    let reports: HashMap<Uuid, _> = reports::by_ids(&state.db, report_ids)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let mut signal_views = Vec::with_capacity(signals.len());
    for s in signals {
        let report = s.source_id.and_then(|id| reports.get(&id));
        let narrative = match report {
            Some(r) => Some(state.sealer.open(&r.narrative_sealed)?),
            _ => None,
        };
        signal_views.push(SignalView {
            event_id: s.event_id,
            kind: s.kind,
            level: s.level.to_string(),
            decision: s.decision,
            rule_id: s.rule_id,
            attached_at: s.attached_at,
            category: report.map(|r| r.category.clone()),
            observed_at: report.map(|r| r.observed_at),
            narrative,
        });
    }
    let mut attempts = deliveries::attempts_for_case(&state.db, case.id).await?;
    let notifications = deliveries::for_case(&state.db, case.id)
        .await?
        .into_iter()
        .map(|d| {
            let (mine, rest) = attempts
                .drain(..)
                .partition(|a| a.delivery_key == d.notification_key);
            attempts = rest;
            let attempt_log: Vec<AttemptView> = mine
                .into_iter()
                .map(|a| AttemptView {
                    provider: a.provider,
                    status: a.status,
                    latency_ms: a.latency_ms,
                    error: a.error,
                    receipt_status: a.receipt_status,
                    at: a.at,
                })
                .collect();
            NotificationView {
                provider: attempt_log
                    .iter()
                    .find(|a| a.status == deliveries::ACCEPTED)
                    .map(|a| a.provider.clone()),
                key: d.notification_key,
                recipient_staff_id: d.recipient_staff_id,
                channel: d.channel,
                status: d.status,
                attempts: d.attempts,
                sent_at: d.sent_at,
                last_error: d.last_error,
                attempt_log,
            }
        })
        .collect();
    let why = explain(state, &case, &actions).await?;
    let opened_rule = case.opened_rule.clone();
    let mut timeline = Vec::new();
    for a in &actions {
        let text = match &a.text_sealed {
            Some(sealed) => Some(state.sealer.open(sealed)?),
            None => None,
        };
        timeline.push(ActionView::of(&state.sealer, a, text)?);
    }
    let referral_rows = casework::referrals(&state.db, vec![case.id]).await?;
    let open =
        |sealed: &Option<Vec<u8>>| sealed.as_deref().map(|s| state.sealer.open(s)).transpose();
    let mut referrals = Vec::with_capacity(referral_rows.len());
    for r in referral_rows {
        referrals.push(ReferralView {
            id: r.id,
            institution: open(&r.institution_sealed)?.unwrap_or_default(),
            referred_on: r.referred_on,
            receipt_confirmed: r.receipt_confirmed,
            return_assessed_on: r.return_assessed_on,
            return_assessment: open(&r.return_assessment_sealed)?,
        });
    }
    let mut follow_ups = Vec::new();
    for f in follow_up_rows {
        if f.case_id != Some(case.id) {
            continue;
        }
        let outcome = match &f.outcome_sealed {
            Some(sealed) => Some(state.sealer.open(sealed)?),
            None => None,
        };
        follow_ups.push(FollowUpView {
            id: f.id,
            due_at: f.due_at,
            done_at: f.done_at,
            outcome,
        });
    }
    let assignee_staff_id = case.assignee_staff_id;
    let ladder_state = case.ladder_state;
    let ack_deadline = case.ack_deadline;
    let acknowledged_at = case.acknowledged_at;
    let ladder = case
        .ladder
        .as_deref()
        .and_then(|l| serde_json::from_str(l).ok());
    let allowed_actions = crate::routes::casework::allowed_names(&case);
    let summary = summarize(state, caller, vec![case])
        .await?
        .pop()
        .ok_or(ApiError::NotFound("case"))?;
    Ok(CaseDetail {
        case: summary,
        opened_rule,
        assignee_staff_id,
        ladder_state,
        ack_deadline,
        acknowledged_at,
        ladder,
        allowed_actions,
        why,
        signals: signal_views,
        notifications,
        timeline,
        referrals,
        follow_ups,
    })
}

/// The rules decisions about a case with the signals they used, and who set
/// its current level.
async fn explain(
    state: &AppState,
    case: &case::Model,
    actions: &[sanyu_store::entities::case_action::Model],
) -> Result<WhyView, ApiError> {
    use sanyu_store::decisions;
    let db = &state.db;
    let rows = decisions::for_case(db, case.id).await?;
    let used_ids: Vec<String> = rows.iter().flat_map(decisions::used_of).collect();
    let used: HashMap<String, _> = decisions::by_signal_ids(db, &used_ids)
        .await?
        .into_iter()
        .map(|d| (d.signal_id.clone(), d))
        .collect();
    let view = |row: &sanyu_store::entities::decision::Model| DecisionView {
        signal_id: row.signal_id.clone(),
        source: row.source.clone(),
        decision: row.decision.clone(),
        rule_id: row.rule_id.clone(),
        rules_version: row.rules_version.clone(),
        case_level: row.case_level.map(|l| l.to_string()),
        decided_at: row.decided_at,
        used: decisions::used_of(row)
            .iter()
            .filter_map(|id| used.get(id))
            .map(|u| UsedSignalView {
                signal_id: u.signal_id.clone(),
                source: u.source.clone(),
                at: u.signal_at,
                level: u.level.map(|l| l.to_string()),
                instrument: u.instrument.clone(),
                band: u.band.clone(),
                flags: decisions::flags_of(u),
                category: u.category.clone(),
            })
            .collect(),
    };
    let opened_by = rows.iter().find(|r| r.decision == "opened").map(view);
    let last_rule = rows
        .iter()
        .rev()
        .find(|r| r.decision == "opened" || r.decision == "raised");
    let last_person = actions.iter().rev().find(|a| a.action == "level");
    let person_later = match (last_person, last_rule) {
        (Some(a), Some(r)) => a.at > r.decided_at,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let (level_set_by, level_decision, level_action) = if person_later {
        (
            "person".to_owned(),
            None,
            last_person
                .map(|a| ActionView::of(&state.sealer, a, None))
                .transpose()?,
        )
    } else {
        ("rule".to_owned(), last_rule.map(view), None)
    };
    Ok(WhyView {
        opened_by,
        level_set_by,
        level_decision,
        level_action,
        decisions: rows.iter().map(view).collect(),
    })
}
