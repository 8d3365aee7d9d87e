//! The crisis team's work on a case: acknowledge, assign, notes, guardian
//! contacts, referrals, follow-ups, level changes, close and reopen.
//!
//! Every action runs in one write transaction with its timeline entry, its
//! audit record, its case event (outbox) and its effect on the escalation
//! ladder (stop on acknowledge, restart on a level raise or reopen), so that
//! none of them can exist without the others. Illegal transitions answer 409
//! with the actions the case's status allows.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use sanyu_domain::lifecycle::{self, CaseAction, IllegalTransition};
use sanyu_domain::{Access, CaseStatus, CaseSubject, CaseWork, Principal, RiskLevel, Role};
use sanyu_escalation as escalation;
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::entities::{case, guardian, hotline_call, school, staff};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::sea_orm::sea_query::Expr;
use sanyu_store::sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use sanyu_store::timers::{self, NewTimer};
use sanyu_store::{WriteTxn, begin_write, cases, casework, roster};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::validate;

use sanyu_escalation::FOLLOW_UP_TIMER;

/// Longest return-to-school assessment result accepted (characters).
const MAX_RETURN_ASSESSMENT_CHARS: usize = 500;

/// The state of a case after an action.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseState {
    pub id: Uuid,
    pub reference: String,
    pub status: String,
    pub level: String,
    pub assignee_staff_id: Option<Uuid>,
    /// `running` (waiting for an acknowledgement), `stopped` or `exhausted`.
    pub ladder_state: String,
    pub ack_deadline: Option<DateTime<Utc>>,
    /// What the case's status allows next.
    pub allowed_actions: Vec<String>,
    /// The id of what the action created (note, contact, referral, follow-up), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_id: Option<Uuid>,
    /// `student`, or `unidentified_caller` until the caller is linked to a student.
    pub subject: String,
    /// The student the case is about (none for an unidentified caller).
    pub student_id: Option<Uuid>,
    /// Set when this (unidentified caller's) case was closed because the
    /// student it turned out to be about already had an open case: that case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Uuid>,
}

impl CaseState {
    fn of(c: &case::Model, created_id: Option<Uuid>) -> Self {
        Self {
            id: c.id,
            reference: c.reference.clone(),
            status: c.status.clone(),
            level: c.level.clone(),
            assignee_staff_id: c.assignee_staff_id,
            ladder_state: c.ladder_state.clone(),
            ack_deadline: c.ack_deadline,
            allowed_actions: allowed_names(c),
            created_id,
            subject: c.subject.clone(),
            student_id: c.student_id,
            merged_into: c.merged_into,
        }
    }
}

/// The lifecycle actions a case allows, as names (for bodies and 409s).
pub fn allowed_names(c: &case::Model) -> Vec<String> {
    let Ok(status) = c.status.parse::<CaseStatus>() else {
        return Vec::new();
    };
    let mut names: Vec<String> = lifecycle::allowed_actions(status)
        .into_iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    // A re-escalated case (level raised after it was taken) is acknowledged again.
    if status != CaseStatus::Open && c.ladder_state != escalation::STOPPED {
        names.insert(0, CaseAction::Acknowledge.as_str().to_owned());
    }
    // A case merged into the student's open case stays closed: work that one.
    if c.merged_into.is_some() {
        names.retain(|n| n != CaseAction::Reopen.as_str());
    }
    if status != CaseStatus::Closed && c.student_id.is_none() {
        names.push(LINK_STUDENT.to_owned());
    }
    names
}

/// The action that names the student of an unidentified caller's case.
pub const LINK_STUDENT: &str = "link_student";

/// 409 for work that needs the student (guardians, follow-ups) on a case about
/// an unidentified caller.
fn require_student(c: &case::Model) -> Result<Uuid, ApiError> {
    c.student_id.ok_or_else(|| ApiError::Conflict {
        message: "this case is about an unidentified caller; link it to a student first".into(),
        allowed: allowed_names(c),
    })
}

fn conflict(e: IllegalTransition) -> ApiError {
    ApiError::Conflict {
        message: e.to_string(),
        allowed: e
            .allowed
            .into_iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
    }
}

/// 409 for work on a closed case: only `reopen` is allowed.
fn closed(c: &case::Model, to: &str) -> ApiError {
    ApiError::Conflict {
        message: format!("the case is closed; reopen it to {to}"),
        allowed: allowed_names(c),
    }
}

fn status_of(c: &case::Model) -> Result<CaseStatus, ApiError> {
    c.status
        .parse()
        .map_err(|_| ApiError::Internal(format!("case {} has status `{}`", c.id, c.status)))
}

fn level_of(c: &case::Model) -> Result<RiskLevel, ApiError> {
    c.level
        .parse()
        .map_err(|_| ApiError::Internal(format!("case {} has level `{}`", c.id, c.level)))
}

/// A case loaded for work, inside its write transaction.
struct Work {
    txn: WriteTxn,
    case: case::Model,
}

/// Load the case, check role and scope, and open the write transaction.
/// Another school's (or class's) case answers 404, whatever the role.
async fn load(
    state: &AppState,
    caller: &Principal,
    id: &str,
    work: impl FnOnce(&case::Model) -> CaseWork,
) -> Result<Work, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound("case"))?;
    let txn = begin_write(&state.db).await?;
    let case = cases::get(&*txn, id)
        .await?
        .ok_or(ApiError::NotFound("case"))?;
    let work = work(&case);
    match caller.may_work_case(case.school_id, case.class_id, case.assignee_staff_id, work) {
        Access::Allowed => Ok(Work { txn, case }),
        Access::OutOfScope => Err(ApiError::NotFound("case")),
        Access::Forbidden => Err(ApiError::Forbidden(match (caller.role, work) {
            (Role::Counsellor, CaseWork::Assign { .. }) => {
                "a counsellor may only take an unassigned case; the crisis team assigns cases"
            }
            (Role::Counsellor, _) => {
                "this case is not assigned to you; take it or ask the crisis team"
            }
            _ => "your role may not work cases",
        })),
    }
}

/// Move a case that has been acknowledged to `in_progress` when work starts.
fn started(status: CaseStatus) -> CaseStatus {
    if status == CaseStatus::Acknowledged {
        CaseStatus::InProgress
    } else {
        status
    }
}

/// Work on the record (notes, contacts, referrals, follow-ups) needs a case
/// that someone has taken and that is not closed.
fn require_taken(c: &case::Model) -> Result<CaseStatus, ApiError> {
    let status = status_of(c)?;
    match status {
        CaseStatus::Open => Err(ApiError::Conflict {
            message: "acknowledge the case before working on it".into(),
            allowed: allowed_names(c),
        }),
        CaseStatus::Closed => Err(closed(c, "work on it")),
        other => Ok(other),
    }
}

fn check_text(field: &str, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    validate::text(field, text, validate::MAX_TEXT)
}

/// What an action leaves on the timeline.
struct Entry<'a> {
    action: &'a str,
    /// Ids, dates and codes: stored in clear.
    detail: serde_json::Value,
    /// Free text of the detail (a close's outcome, a return assessment):
    /// sealed, merged into `detail` for those who work the case.
    sealed_detail: Option<serde_json::Value>,
    text: Option<&'a str>,
    created_id: Option<Uuid>,
}

/// Write the timeline entry, the audit record and the case event, commit, and answer.
async fn finish(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    work: Work,
    entry: Entry<'_>,
) -> Result<Json<CaseState>, ApiError> {
    let Work { txn, case } = work;
    let now = Utc::now();
    let status = status_of(&case)?;
    let sealed = entry.text.map(|t| state.sealer.seal(t)).transpose()?;
    let detail_sealed = entry
        .sealed_detail
        .map(|d| state.sealer.seal(&d.to_string()))
        .transpose()?;
    let action_id = cases::record_action(
        &*txn,
        cases::NewAction {
            case_id: case.id,
            action: entry.action.to_owned(),
            actor_role: caller.role.as_str().to_owned(),
            actor_staff_id: caller.staff_id,
            actor_token_id: Some(caller.token_id),
            status_after: status,
            detail: entry.detail,
            text_sealed: sealed,
            detail_sealed,
            at: now,
        },
    )
    .await?;
    let school = school::Entity::find_by_id(case.school_id)
        .one(&*txn)
        .await?
        .ok_or(ApiError::NotFound("case"))?;
    let partition = case.partition();
    // One event per timeline entry: its id is the entry's.
    let event_id = format!("case.action:{action_id}");
    let payload = match entry.action {
        "acknowledge" => Payload::CaseAcknowledged(v1::CaseAcknowledged {
            case_id: case.id.to_string(),
            reference: case.reference.clone(),
            staff_id: caller.staff_id.map(|s| s.to_string()).unwrap_or_default(),
        }),
        "close" => Payload::CaseClosed(v1::CaseClosed {
            case_id: case.id.to_string(),
            reference: case.reference.clone(),
            outcome: "closed".into(),
        }),
        "merge" => Payload::CaseClosed(v1::CaseClosed {
            case_id: case.id.to_string(),
            reference: case.reference.clone(),
            outcome: "merged".into(),
        }),
        action => Payload::CaseAction(v1::CaseActionRecorded {
            case_id: case.id.to_string(),
            reference: case.reference.clone(),
            action: action.to_owned(),
            status: case.status.clone(),
            level: sanyu_events::level_to_proto(level_of(&case)?) as i32,
            actor_role: caller.role.as_str().to_owned(),
        }),
    };
    let subject_event = match entry.action {
        "acknowledge" => "acknowledged",
        "close" | "merge" => "closed",
        _ => "action",
    };
    outbox::enqueue(
        &*txn,
        OutboxEvent {
            subject: subjects::case_event(subject_event, &school.code, partition),
            payload: sanyu_events::encode(&sanyu_events::envelope(
                event_id.clone(),
                now,
                school.code.clone(),
                partition,
                payload,
            )),
            event_id,
            traceparent: sanyu_platform::trace::current_traceparent(),
        },
    )
    .await?;
    sanyu_store::audit::append_in(
        &*txn,
        &state.audit_key,
        audit::entry(
            caller,
            peer,
            &format!("case.{}", entry.action),
            format!("case:{}", case.id),
        ),
    )
    .await?;
    txn.commit().await?;
    state.waker.wake();
    tracing::info!(case_id = %case.id, action = entry.action, "case action recorded");
    Ok(Json(CaseState::of(&case, entry.created_id)))
}

/// Acknowledge a case: someone has taken it. Stops the escalation ladder. A
/// counsellor who acknowledges an unassigned case is assigned to it.
#[utoipa::path(post, path = "/v1/cases/{id}/acknowledge", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")),
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already acknowledged or closed; `allowed` lists what is possible", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Json<CaseState>, ApiError> {
    let mut work = load(&state, &caller, &id, |_| CaseWork::Acknowledge).await?;
    let c = &work.case;
    let status = status_of(c)?;
    let next = if status == CaseStatus::Open {
        lifecycle::transition(status, CaseAction::Acknowledge).map_err(conflict)?
    } else if status != CaseStatus::Closed && c.ladder_state != escalation::STOPPED {
        // The level was raised after the case was taken: acknowledge again.
        status
    } else {
        return Err(conflict(IllegalTransition {
            from: status,
            action: CaseAction::Acknowledge,
            allowed: lifecycle::allowed_actions(status),
        }));
    };
    let now = Utc::now();
    let stopped = escalation::stop(&*work.txn, c)
        .await
        .map_err(escalation_error)?;
    let assignee = match (stopped.assignee_staff_id, caller.role) {
        (None, Role::Counsellor) => caller.staff_id,
        (current, _) => current,
    };
    work.case = cases::update(
        &*work.txn,
        &stopped,
        case::ActiveModel {
            status: Set(next.as_str().to_owned()),
            acknowledged_at: Set(Some(now)),
            acknowledged_by: Set(caller.staff_id),
            assignee_staff_id: Set(assignee),
            ..Default::default()
        },
    )
    .await?;
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action: "acknowledge",
            detail: serde_json::json!({ "assignee_staff_id": assignee }),
            sealed_detail: None,
            text: None,
            created_id: None,
        },
    )
    .await
}

fn escalation_error(e: escalation::EscalationError) -> ApiError {
    match e {
        escalation::EscalationError::Store(s) => s.into(),
        other => ApiError::Internal(other.to_string()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// A counsellor (or crisis-team member) of the case's school.
    pub staff_id: Uuid,
}

/// Assign the case to a counsellor of the school. The crisis team assigns any
/// case; a counsellor may take an unassigned case. Work starts (`in_progress`)
/// when an acknowledged case is assigned.
#[utoipa::path(post, path = "/v1/cases/{id}/assign", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = AssignRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn assign(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<AssignRequest>,
) -> Result<Json<CaseState>, ApiError> {
    let to = body.value.staff_id;
    let to_self = caller.staff_id == Some(to);
    let mut work = load(&state, &caller, &id, |_| CaseWork::Assign { to_self }).await?;
    let status = status_of(&work.case)?;
    if status == CaseStatus::Closed {
        return Err(closed(&work.case, "assign it"));
    }
    let person = staff::Entity::find_by_id(to)
        .filter(staff::Column::SchoolId.eq(work.case.school_id))
        .filter(staff::Column::Active.eq(true))
        .one(&*work.txn)
        .await?
        .filter(|s| s.role == Role::Counsellor.as_str() || s.role == Role::CrisisTeam.as_str())
        .ok_or_else(|| {
            ApiError::validation(
                "staff_id",
                "not an active counsellor or crisis-team member of this school",
            )
        })?;
    work.case = cases::update(
        &*work.txn,
        &work.case,
        case::ActiveModel {
            assignee_staff_id: Set(Some(person.id)),
            status: Set(started(status).as_str().to_owned()),
            ..Default::default()
        },
    )
    .await?;
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action: "assign",
            detail: serde_json::json!({ "assignee_staff_id": person.id }),
            sealed_detail: None,
            text: None,
            created_id: None,
        },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// Free text; encrypted at rest, never logged.
    pub text: String,
}

/// Add a note to the case (encrypted at rest).
#[utoipa::path(post, path = "/v1/cases/{id}/notes", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = NoteRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn note(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<NoteRequest>,
) -> Result<Json<CaseState>, ApiError> {
    check_text("text", &body.value.text)?;
    let mut work = load(&state, &caller, &id, |_| CaseWork::Record).await?;
    let status = require_taken(&work.case)?;
    work.case = set_status(&work, started(status)).await?;
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action: "note",
            detail: serde_json::json!({}),
            sealed_detail: None,
            text: Some(&body.value.text),
            created_id: None,
        },
    )
    .await
}

async fn set_status(work: &Work, to: CaseStatus) -> Result<case::Model, ApiError> {
    if work.case.status == to.as_str() {
        return Ok(work.case.clone());
    }
    Ok(cases::update(
        &*work.txn,
        &work.case,
        case::ActiveModel {
            status: Set(to.as_str().to_owned()),
            ..Default::default()
        },
    )
    .await?)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ContactChannel {
    Phone,
    InPerson,
    Sms,
    Message,
    Other,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ContactOutcome {
    /// Reached and informed.
    Reached,
    NoAnswer,
    /// Reached, declined to cooperate.
    Declined,
    /// Will come to school / to the counsellor.
    MeetingAgreed,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardianContactRequest {
    /// Contacted, or a recorded decision not to contact (e.g. risk from home).
    #[serde(default = "yes")]
    pub contacted: bool,
    /// The guardian (required when contacted).
    pub guardian_id: Option<Uuid>,
    pub at: Option<DateTime<Utc>>,
    pub channel: Option<ContactChannel>,
    pub outcome: Option<ContactOutcome>,
    /// Why not to contact (required when `contacted` is false); encrypted at rest.
    pub reason: Option<String>,
}

fn yes() -> bool {
    true
}

/// Record contact with a guardian, or the decision not to contact one and why.
#[utoipa::path(post, path = "/v1/cases/{id}/guardian-contacts", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = GuardianContactRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn guardian_contact(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<GuardianContactRequest>,
) -> Result<Json<CaseState>, ApiError> {
    let req = body.value;
    if let Some(at) = req.at {
        validate::time("at", at, Utc::now())?;
    }
    let mut work = load(&state, &caller, &id, |_| CaseWork::Record).await?;
    let status = require_taken(&work.case)?;
    let detail = if req.contacted {
        let gid = req
            .guardian_id
            .ok_or_else(|| ApiError::validation("guardian_id", "required when contacted"))?;
        let channel = req
            .channel
            .ok_or_else(|| ApiError::validation("channel", "required when contacted"))?;
        let outcome = req
            .outcome
            .ok_or_else(|| ApiError::validation("outcome", "required when contacted"))?;
        let student_id = require_student(&work.case)?;
        guardian::Entity::find_by_id(gid)
            .filter(guardian::Column::StudentId.eq(student_id))
            .one(&*work.txn)
            .await?
            .ok_or_else(|| ApiError::validation("guardian_id", "not a guardian of this student"))?;
        if let Some(r) = &req.reason {
            check_text("reason", r)?;
        }
        serde_json::json!({
            "contacted": true,
            "guardian_id": gid,
            "at": req.at.unwrap_or_else(Utc::now),
            "channel": channel,
            "outcome": outcome,
        })
    } else {
        let reason = req.reason.as_deref().ok_or_else(|| {
            ApiError::validation("reason", "say why the guardians are not contacted")
        })?;
        check_text("reason", reason)?;
        serde_json::json!({ "contacted": false, "at": req.at.unwrap_or_else(Utc::now) })
    };
    work.case = set_status(&work, started(status)).await?;
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action: "guardian_contact",
            detail,
            sealed_detail: None,
            text: req.reason.as_deref(),
            created_id: None,
        },
    )
    .await
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnAssessment {
    /// 复学评估 date.
    pub assessed_on: NaiveDate,
    /// e.g. `fit_to_return`, `not_yet`, `with_conditions`; 1 to 500
    /// characters, encrypted at rest.
    pub result: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralRequest {
    /// Set to update an earlier referral of this case (receipt, return assessment).
    pub referral_id: Option<Uuid>,
    /// Where the student is referred; encrypted at rest.
    pub institution: String,
    pub referred_on: NaiveDate,
    #[serde(default)]
    pub receipt_confirmed: bool,
    pub return_assessment: Option<ReturnAssessment>,
}

/// Refer the case to a hospital or specialist (转介), or update a referral
/// (receipt confirmed, return-to-school assessment 复学评估).
#[utoipa::path(post, path = "/v1/cases/{id}/referrals", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = ReferralRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn referral(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<ReferralRequest>,
) -> Result<Json<CaseState>, ApiError> {
    let req = body.value;
    if req.institution.trim().is_empty() {
        return Err(ApiError::validation("institution", "1 to 200 characters"));
    }
    validate::line("institution", &req.institution, 200)?;
    let now = Utc::now();
    validate::date("referred_on", req.referred_on, now)?;
    let result = req.return_assessment.as_ref().map(|r| r.result.trim());
    if let Some(r) = &req.return_assessment {
        validate::date("return_assessment.assessed_on", r.assessed_on, now)?;
        validate::text("return_assessment.result", &r.result, MAX_RETURN_ASSESSMENT_CHARS)?;
    }
    if let Some(result) = result
        && result.is_empty()
    {
        return Err(ApiError::validation(
            "return_assessment.result",
            format!("1 to {MAX_RETURN_ASSESSMENT_CHARS} characters"),
        ));
    }
    let mut work = load(&state, &caller, &id, |_| CaseWork::Record).await?;
    let status = require_taken(&work.case)?;
    let fields = casework::ReferralFields {
        institution_sealed: state.sealer.seal(req.institution.trim())?,
        referred_on: req.referred_on,
        receipt_confirmed: req.receipt_confirmed,
        return_assessed_on: req.return_assessment.as_ref().map(|r| r.assessed_on),
        return_assessment_sealed: result.map(|r| state.sealer.seal(r)).transpose()?,
    };
    let (referral, action) = match req.referral_id {
        Some(rid) => {
            let current = casework::referral_of_case(&*work.txn, work.case.id, rid)
                .await?
                .ok_or(ApiError::NotFound("referral"))?;
            (
                casework::update_referral(&*work.txn, current, fields, now).await?,
                "referral_update",
            )
        }
        None => {
            let next =
                lifecycle::transition(started(status), CaseAction::Refer).map_err(conflict)?;
            let r = casework::create_referral(&*work.txn, work.case.id, fields, now).await?;
            work.case = set_status(&work, next).await?;
            (r, "referral")
        }
    };
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action,
            detail: serde_json::json!({
                "referral_id": referral.id,
                "referred_on": referral.referred_on,
                "receipt_confirmed": referral.receipt_confirmed,
                "return_assessed_on": referral.return_assessed_on,
            }),
            sealed_detail: Some(serde_json::json!({ "return_assessment": result })),
            text: None,
            created_id: Some(referral.id),
        },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUpRequest {
    /// Set to record that an earlier follow-up was done.
    pub follow_up_id: Option<Uuid>,
    /// When the next follow-up is due (new follow-ups).
    pub due_at: Option<DateTime<Utc>>,
    /// What the follow-up found (when done); encrypted at rest.
    pub outcome: Option<String>,
}

/// Plan a follow-up (重点关注: the student is on the key-population list until
/// it is done) or record one as done with its outcome. A reminder is sent to
/// the assigned counsellor when it falls due.
#[utoipa::path(post, path = "/v1/cases/{id}/follow-ups", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = FollowUpRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn follow_up(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<FollowUpRequest>,
) -> Result<Json<CaseState>, ApiError> {
    let req = body.value;
    let mut work = load(&state, &caller, &id, |_| CaseWork::Record).await?;
    let status = require_taken(&work.case)?;
    let now = Utc::now();
    let (fid, action, detail) = match req.follow_up_id {
        Some(fid) => {
            let outcome = req.outcome.ok_or_else(|| {
                ApiError::validation("outcome", "required to complete a follow-up")
            })?;
            check_text("outcome", &outcome)?;
            let current = casework::follow_up_of_case(&*work.txn, work.case.id, fid)
                .await?
                .ok_or(ApiError::NotFound("follow-up"))?;
            if current.done_at.is_some() {
                return Err(ApiError::Conflict {
                    message: "this follow-up is already done".into(),
                    allowed: vec![],
                });
            }
            let sealed = state.sealer.seal(&outcome)?;
            // The outcome is sealed on the follow-up itself; the reminder
            // timer, if still pending, finds it done and does nothing.
            casework::complete_follow_up(&*work.txn, current, sealed, now).await?;
            (
                fid,
                "follow_up_done",
                serde_json::json!({ "follow_up_id": fid }),
            )
        }
        None => {
            let due = req
                .due_at
                .ok_or_else(|| ApiError::validation("due_at", "required for a new follow-up"))?;
            validate::time("due_at", due, now)?;
            let student_id = require_student(&work.case)?;
            let next = if status == CaseStatus::Monitoring {
                status
            } else {
                lifecycle::transition(started(status), CaseAction::Monitor).map_err(conflict)?
            };
            let f = casework::create_follow_up(
                &*work.txn,
                casework::NewFollowUp {
                    school_id: work.case.school_id,
                    student_id,
                    case_id: Some(work.case.id),
                    due_at: due,
                    created_by: caller.staff_id,
                    at: now,
                },
            )
            .await?;
            timers::schedule(
                &*work.txn,
                NewTimer {
                    key: format!("follow_up:{}", f.id),
                    kind: FOLLOW_UP_TIMER.to_owned(),
                    case_id: Some(work.case.id),
                    due_at: due,
                    payload: serde_json::json!({ "follow_up_id": f.id }).to_string(),
                },
            )
            .await?;
            work.case = set_status(&work, next).await?;
            (
                f.id,
                "follow_up",
                serde_json::json!({ "follow_up_id": f.id, "due_at": due }),
            )
        }
    };
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action,
            detail,
            sealed_detail: None,
            text: None,
            created_id: Some(fid),
        },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelRequest {
    /// watch, elevated, high, critical
    pub level: String,
    /// Why; encrypted at rest.
    pub reason: String,
}

/// A person changes the case's level, with a reason. Raising it restarts the
/// escalation ladder at the new level's ladder (the new level's first contacts
/// are told and must acknowledge); lowering it is only ever done by a person.
#[utoipa::path(post, path = "/v1/cases/{id}/level", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = LevelRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn level(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<LevelRequest>,
) -> Result<Json<CaseState>, ApiError> {
    let req = body.value;
    let to: RiskLevel = req
        .level
        .parse()
        .map_err(|e: sanyu_domain::ParseError| ApiError::validation("level", e.to_string()))?;
    check_text("reason", &req.reason)?;
    let mut work = load(&state, &caller, &id, |_| CaseWork::ChangeLevel).await?;
    if status_of(&work.case)? == CaseStatus::Closed {
        return Err(closed(&work.case, "change its level"));
    }
    let from = level_of(&work.case)?;
    if from == to {
        return Err(ApiError::validation(
            "level",
            format!("the case is already {from}"),
        ));
    }
    let now = Utc::now();
    let changed = cases::update(
        &*work.txn,
        &work.case,
        case::ActiveModel {
            level: Set(to.as_str().to_owned()),
            level_rank: Set(to.rank()),
            ..Default::default()
        },
    )
    .await?;
    let ladder_running = changed.ladder_state != escalation::STOPPED;
    work.case = if to.rank() > from.rank() || ladder_running {
        let why = if to.rank() > from.rank() {
            escalation::reason::LEVEL_RAISED
        } else {
            escalation::reason::LEVEL_CHANGED
        };
        escalation::start(
            &*work.txn,
            &changed,
            &state.escalation,
            why,
            now,
            sanyu_platform::trace::current_traceparent(),
        )
        .await
        .map_err(escalation_error)?
    } else {
        changed
    };
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action: "level",
            detail: serde_json::json!({ "from": from.as_str(), "to": to.as_str() }),
            sealed_detail: None,
            text: Some(&req.reason),
            created_id: None,
        },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// e.g. `resolved`, `transferred`, `left_school`, `referred_out`; 1 to 64
    /// bytes, encrypted at rest.
    pub outcome: String,
    /// Optional summary; encrypted at rest.
    pub summary: Option<String>,
}

/// Close the case with its outcome. Stops the ladder.
#[utoipa::path(post, path = "/v1/cases/{id}/close", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = CloseRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn close(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<CloseRequest>,
) -> Result<Json<CaseState>, ApiError> {
    let req = body.value;
    let outcome = req.outcome.trim();
    if outcome.is_empty() {
        return Err(ApiError::validation("outcome", "1 to 64 characters"));
    }
    validate::line("outcome", outcome, validate::MAX_CODE)?;
    if let Some(s) = &req.summary {
        check_text("summary", s)?;
    }
    let mut work = load(&state, &caller, &id, |_| CaseWork::Close).await?;
    let next =
        lifecycle::transition(status_of(&work.case)?, CaseAction::Close).map_err(conflict)?;
    let stopped = escalation::stop(&*work.txn, &work.case)
        .await
        .map_err(escalation_error)?;
    work.case = cases::update(
        &*work.txn,
        &stopped,
        case::ActiveModel {
            status: Set(next.as_str().to_owned()),
            closed_at: Set(Some(Utc::now())),
            ..Default::default()
        },
    )
    .await?;
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action: "close",
            detail: serde_json::json!({}),
            sealed_detail: Some(serde_json::json!({ "outcome": outcome })),
            text: req.summary.as_deref(),
            created_id: None,
        },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenRequest {
    /// Why; encrypted at rest.
    pub reason: String,
}

/// Reopen a closed case. It is taken again like a new one: the ladder runs.
#[utoipa::path(post, path = "/v1/cases/{id}/reopen", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = ReopenRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Not closed, or the student has another open case", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn reopen(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<ReopenRequest>,
) -> Result<Json<CaseState>, ApiError> {
    let req = body.value;
    check_text("reason", &req.reason)?;
    let mut work = load(&state, &caller, &id, |_| CaseWork::Reopen).await?;
    let next =
        lifecycle::transition(status_of(&work.case)?, CaseAction::Reopen).map_err(conflict)?;
    if let Some(into) = work.case.merged_into {
        let other = cases::get(&*work.txn, into).await?;
        return Err(ApiError::Conflict {
            message: format!(
                "this case was merged into the student's case {}; work that one instead",
                other.map(|c| c.reference).unwrap_or_default()
            ),
            allowed: vec![],
        });
    }
    let other = match work.case.student_id {
        Some(student_id) => cases::active_for_student(&*work.txn, student_id).await?,
        None => None,
    };
    if let Some(other) = other {
        return Err(ApiError::Conflict {
            message: format!(
                "the student has another open case ({}); work that one instead",
                other.reference
            ),
            allowed: vec![],
        });
    }
    let reopened = cases::update(
        &*work.txn,
        &work.case,
        case::ActiveModel {
            status: Set(next.as_str().to_owned()),
            closed_at: Set(None),
            acknowledged_at: Set(None),
            acknowledged_by: Set(None),
            ..Default::default()
        },
    )
    .await?;
    work.case = escalation::start(
        &*work.txn,
        &reopened,
        &state.escalation,
        escalation::reason::REOPENED,
        Utc::now(),
        sanyu_platform::trace::current_traceparent(),
    )
    .await
    .map_err(escalation_error)?;
    finish(
        &state,
        &caller,
        &peer,
        work,
        Entry {
            action: "reopen",
            detail: serde_json::json!({}),
            sealed_detail: None,
            text: Some(&req.reason),
            created_id: None,
        },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkStudentRequest {
    /// The student the caller turned out to be (学号).
    pub student_no: Option<String>,
}

/// Name the student an unidentified caller's case is about. Without an open
/// case of that student, the case becomes the student's (its class's head
/// teacher and the leaders see it from now on). When the student already has
/// an open case, the caller's signals join that case (raising its level if
/// the call was more urgent) and this case closes as `merged`: a student never
/// has two open cases.
#[utoipa::path(post, path = "/v1/cases/{id}/link-student", tag = "case work",
    params(("id" = Uuid, Path, description = "Case id")), request_body = LinkStudentRequest,
    responses((status = 200, body = CaseState), (status = 403, body = ErrorBody),
        (status = 404, description = "No such case in your scope, or no such student", body = ErrorBody),
        (status = 409, description = "The case is already about a student, or closed", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(case_id = %id))]
pub async fn link_student(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<LinkStudentRequest>,
) -> Result<Json<CaseState>, ApiError> {
    let student_no = body
        .value
        .student_no
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::validation("student_no", "`student_no` is required"))?
        .to_owned();
    link_student_to_case(&state, &caller, &peer, &id, &student_no).await
}

/// Link the case `id` (about an unidentified caller) to the student
/// `student_no` of the caller's school: see [`link_student`].
pub(crate) async fn link_student_to_case(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    id: &str,
    student_no: &str,
) -> Result<Json<CaseState>, ApiError> {
    // The case (role and scope) first, then the student: a caller who may
    // not link learns nothing about which student numbers exist.
    let mut work = load(state, caller, id, |_| CaseWork::LinkStudent).await?;
    let student = roster::student_by_no(&*work.txn, caller.school_id, student_no)
        .await?
        .ok_or(ApiError::NotFound("student"))?;
    if work.case.student_id.is_some() {
        return Err(ApiError::Conflict {
            message: "this case is already about a student".into(),
            allowed: allowed_names(&work.case),
        });
    }
    if status_of(&work.case)? == CaseStatus::Closed {
        return Err(closed(&work.case, "link it to a student"));
    }
    let now = Utc::now();
    // The hotline calls behind the case now name the student too.
    let signals = cases::signals(&*work.txn, work.case.id).await?;
    let sources: Vec<Uuid> = signals.iter().filter_map(|s| s.source_id).collect();
    if !sources.is_empty() {
        hotline_call::Entity::update_many()
            .col_expr(hotline_call::Column::StudentId, Expr::value(student.id))
            .col_expr(hotline_call::Column::LinkedAt, Expr::value(now))
            .filter(hotline_call::Column::Id.is_in(sources))
            .filter(hotline_call::Column::StudentId.is_null())
            .exec(&*work.txn)
            .await?;
    }
    let Some(target) = cases::active_for_student(&*work.txn, student.id).await? else {
        work.case = cases::update(
            &*work.txn,
            &work.case,
            case::ActiveModel {
                student_id: Set(Some(student.id)),
                class_id: Set(Some(student.class_id)),
                subject: Set(CaseSubject::Student.as_str().to_owned()),
                ..Default::default()
            },
        )
        .await?;
        tracing::info!(case_id = %work.case.id, "unidentified caller linked to a student");
        return finish(
            state,
            caller,
            peer,
            work,
            Entry {
                action: LINK_STUDENT,
                detail: serde_json::json!({ "student_id": student.id }),
                sealed_detail: None,
                text: None,
                created_id: None,
            },
        )
        .await;
    };
    merge_into(state, caller, &work, &signals, &target, now).await?;
    let stopped = escalation::stop(&*work.txn, &work.case)
        .await
        .map_err(escalation_error)?;
    work.case = cases::update(
        &*work.txn,
        &stopped,
        case::ActiveModel {
            status: Set(CaseStatus::Closed.as_str().to_owned()),
            closed_at: Set(Some(now)),
            student_id: Set(Some(student.id)),
            class_id: Set(Some(student.class_id)),
            subject: Set(CaseSubject::Student.as_str().to_owned()),
            merged_into: Set(Some(target.id)),
            ..Default::default()
        },
    )
    .await?;
    tracing::info!(case_id = %work.case.id, into = %target.id, "unidentified caller's case merged into the student's open case");
    finish(
        state,
        caller,
        peer,
        work,
        Entry {
            action: "merge",
            detail: serde_json::json!({
                "student_id": student.id,
                "merged_into": target.id,
                "merged_into_reference": target.reference,
            }),
            sealed_detail: None,
            text: None,
            created_id: None,
        },
    )
    .await
}

/// Attach the signals of the unidentified caller's case (`work`) to the
/// student's open case `target`, raise its level if the call was more urgent
/// (its ladder starts over), and note the merge on its timeline.
async fn merge_into(
    state: &AppState,
    caller: &Principal,
    work: &Work,
    signals: &[sanyu_store::entities::case_signal::Model],
    target: &case::Model,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let txn = &*work.txn;
    let school = school::Entity::find_by_id(target.school_id)
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("case"))?;
    let partition = target.partition();
    let traceparent = sanyu_platform::trace::current_traceparent();
    let event = |event_id: String, subject_event: &str, payload: Payload| OutboxEvent {
        subject: subjects::case_event(subject_event, &school.code, partition),
        payload: sanyu_events::encode(&sanyu_events::envelope(
            event_id.clone(),
            now,
            school.code.clone(),
            partition,
            payload,
        )),
        event_id,
        traceparent: traceparent.clone(),
    };
    for s in signals {
        let level: RiskLevel = s
            .level
            .parse()
            .map_err(|_| ApiError::Internal(format!("signal {} has level `{}`", s.id, s.level)))?;
        cases::attach_signal(
            txn,
            cases::NewSignal {
                case_id: target.id,
                event_id: s.event_id.clone(),
                kind: s.kind.clone(),
                source_id: s.source_id,
                level,
                decision: "merged".to_owned(),
                rule_id: s.rule_id.clone(),
                at: now,
            },
        )
        .await?;
        outbox::enqueue(
            txn,
            event(
                format!("case.signal_attached:{}:{}", target.id, s.event_id),
                "signal_attached",
                Payload::CaseSignalAttached(v1::CaseSignalAttached {
                    case_id: target.id.to_string(),
                    reference: target.reference.clone(),
                    signal_event_id: s.event_id.clone(),
                    level: sanyu_events::level_to_proto(level) as i32,
                }),
            ),
        )
        .await?;
    }
    let from = level_of(target)?;
    let to = level_of(&work.case)?;
    let mut target = target.clone();
    if to > from {
        cases::raise_level(txn, &target, to).await?;
        outbox::enqueue(
            txn,
            event(
                format!("case.escalated:{}:merge:{}", target.id, work.case.id),
                "escalated",
                Payload::CaseEscalated(v1::CaseEscalated {
                    case_id: target.id.to_string(),
                    reference: target.reference.clone(),
                    student_id: target.student_id.map(|s| s.to_string()).unwrap_or_default(),
                    previous_level: sanyu_events::level_to_proto(from) as i32,
                    level: sanyu_events::level_to_proto(to) as i32,
                    signal_event_id: signals
                        .first()
                        .map(|s| s.event_id.clone())
                        .unwrap_or_default(),
                    rule_id: "case.merged_unidentified_caller".to_owned(),
                }),
            ),
        )
        .await?;
        let raised = cases::get(txn, target.id)
            .await?
            .ok_or(ApiError::NotFound("case"))?;
        target = escalation::start(
            txn,
            &raised,
            &state.escalation,
            escalation::reason::LEVEL_RAISED,
            now,
            traceparent.clone(),
        )
        .await
        .map_err(escalation_error)?;
    }
    cases::record_action(
        txn,
        cases::NewAction {
            case_id: target.id,
            action: "merged_in".to_owned(),
            actor_role: caller.role.as_str().to_owned(),
            actor_staff_id: caller.staff_id,
            actor_token_id: Some(caller.token_id),
            status_after: status_of(&target)?,
            detail: serde_json::json!({
                "from_case": work.case.id,
                "from_reference": work.case.reference,
            }),
            text_sealed: None,
            detail_sealed: None,
            at: now,
        },
    )
    .await?;
    Ok(())
}
