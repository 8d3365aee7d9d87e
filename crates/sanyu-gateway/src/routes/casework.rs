//! The crisis team's work on a case: acknowledge, assign, notes, guardian
//! contacts, referrals, follow-ups, level changes, close and reopen.
//!
//! Each handler parses and checks its request, turns it into a
//! [`sanyu_case::Command`] and hands it to [`act`]: load the case, check role
//! and scope, load what the command needs, plan it (`sanyu_case::plan`, pure)
//! and write the plan (`sanyu_case::apply`) in one write transaction, so the
//! timeline entry, the audit record, the case event (outbox) and the effect on
//! the escalation ladder (stop on acknowledge, restart on a level raise or
//! reopen) commit together. Illegal transitions answer 409 with the actions
//! the case's status allows.
//!
//! (Over 600 lines because of the request types and their OpenAPI
//! descriptions, which are the API's contract; no rule of the case work is
//! left here: it is all in `sanyu-case`.)

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use sanyu_case::{
    AckChannel, Actor, CaseError, Command, FollowUp, GuardianContact, Keys, PlanCtx, Referral,
    Refusal, Secret,
};
use sanyu_domain::{
    Access, CaseStatus, CaseSubject, CaseWork, LadderState, Principal, RiskLevel, Role,
};
use sanyu_store::begin_write;
use sanyu_store::entities::case;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::Peer;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::validate;

pub use sanyu_case::{LINK_STUDENT, allowed_names};

/// Longest return-to-school assessment result accepted (characters).
const MAX_RETURN_ASSESSMENT_CHARS: usize = 500;

/// The state of a case after an action.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseState {
    pub id: Uuid,
    pub reference: String,
    #[schema(value_type = String)]
    pub status: CaseStatus,
    #[schema(value_type = String)]
    pub level: RiskLevel,
    pub assignee_staff_id: Option<Uuid>,
    /// `running` (waiting for an acknowledgement), `stopped` or `exhausted`.
    #[schema(value_type = String)]
    pub ladder_state: LadderState,
    pub ack_deadline: Option<DateTime<Utc>>,
    /// What the case's status allows next.
    pub allowed_actions: Vec<String>,
    /// The id of what the action created (note, contact, referral, follow-up), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_id: Option<Uuid>,
    /// `student`, or `unidentified_caller` until the caller is linked to a student.
    #[schema(value_type = String)]
    pub subject: CaseSubject,
    /// The student the case is about (none for an unidentified caller).
    pub student_id: Option<Uuid>,
    /// Set when this (unidentified caller's) case was closed because the
    /// student it turned out to be about already had an open case: that case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Uuid>,
}

impl CaseState {
    pub fn of(c: &case::Model, created_id: Option<Uuid>) -> Self {
        Self {
            id: c.id,
            reference: c.reference.clone(),
            status: c.status,
            level: c.level,
            assignee_staff_id: c.assignee_staff_id,
            ladder_state: c.ladder_state,
            ack_deadline: c.ack_deadline,
            allowed_actions: allowed_names(c),
            created_id,
            subject: c.subject,
            student_id: c.student_id,
            merged_into: c.merged_into,
        }
    }
}

/// Do `cmd` to the case `case_id` as `caller` (from `source`, the audit
/// record's "from where"): the one way every door (API, console) changes a
/// case. Another school's (or class's) case answers 404, whatever the role.
pub async fn act(
    state: &AppState,
    caller: &Principal,
    source: &str,
    case_id: Uuid,
    cmd: Command,
) -> Result<CaseState, ApiError> {
    // Before the case is looked up: a role that may not work cases learns
    // nothing about which case ids exist.
    if !caller.may_read_cases() {
        return Err(ApiError::Forbidden("your role may not work cases"));
    }
    let txn = begin_write(&state.db).await?;
    let (written, plan) = act_in(&*txn, state, caller, source, case_id, &cmd).await?;
    txn.commit().await?;
    state.waker.wake();
    tracing::info!(case_id = %written.id, action = %plan.action, "case action recorded");
    Ok(CaseState::of(&written, plan.created_id))
}

/// [`act`] inside the caller's write transaction (which it neither commits
/// nor rolls back), for a door that writes more in the same transaction (an
/// SMS reply's answer): role and scope checked, planned, applied. The
/// caller wakes the relay after its commit.
pub async fn act_in(
    txn: &impl sanyu_store::Conn,
    state: &AppState,
    caller: &Principal,
    source: &str,
    case_id: Uuid,
    cmd: &Command,
) -> Result<(case::Model, sanyu_case::Plan), ApiError> {
    if !caller.may_read_cases() {
        return Err(ApiError::Forbidden("your role may not work cases"));
    }
    let case = sanyu_case::load_case(txn, case_id)
        .await
        .map_err(case_error)?
        .ok_or(ApiError::NotFound("case"))?;
    may_work(caller, &case, cmd.work(caller))?;
    let now = Utc::now();
    let snapshot = sanyu_case::load(txn, case, caller.school_id, cmd, &state.duty, now)
        .await
        .map_err(case_error)?;
    let actor = Actor {
        principal: caller.clone(),
        source: source.to_owned(),
    };
    let ctx = PlanCtx {
        now,
        policy: &state.escalation,
        traceparent: sanyu_platform::trace::current_traceparent(),
        ids: &Uuid::now_v7,
    };
    let plan = sanyu_case::plan(&snapshot, &actor, cmd, &ctx).map_err(refused)?;
    let keys = Keys {
        sealer: &state.sealer,
        audit_key: &state.audit_key,
    };
    let written = sanyu_case::apply(txn, &plan, keys)
        .await
        .map_err(case_error)?;
    Ok((written, plan))
}

/// [`act`] on the case named by a path segment (a malformed id is no case).
async fn act_on(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    id: &str,
    cmd: Command,
) -> Result<Json<CaseState>, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound("case"))?;
    act(state, caller, &peer.0, id, cmd).await.map(Json)
}

/// Role and scope: another school's (or class's) case is not found.
fn may_work(caller: &Principal, case: &case::Model, work: CaseWork) -> Result<(), ApiError> {
    match caller.may_work_case(case.school_id, case.class_id, case.assignee_staff_id, work) {
        Access::Allowed => Ok(()),
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

fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::Conflict { message, allowed } => ApiError::Conflict { message, allowed },
        Refusal::Invalid { field, message } => ApiError::Validation { field, message },
        Refusal::NotFound(what) => ApiError::NotFound(what),
        Refusal::Corrupt(detail) => ApiError::Internal(detail),
    }
}

fn case_error(e: CaseError) -> ApiError {
    match e {
        CaseError::Store(s) => s.into(),
        other => ApiError::Internal(other.to_string()),
    }
}

fn check_text(field: &str, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    validate::text(field, text, validate::MAX_TEXT)
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
    acknowledge_via(&state, &caller, &peer, &id, AckChannel::Api).await
}

/// Acknowledge the case named by a path segment, as `caller`, saying how
/// the acknowledgement came (the API, the console, a link's page): the one
/// command every door uses.
pub async fn acknowledge_via(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    id: &str,
    via: AckChannel,
) -> Result<Json<CaseState>, ApiError> {
    act_on(state, caller, peer, id, Command::Acknowledge { via }).await
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
    let cmd = Command::Assign {
        staff_id: body.value.staff_id,
    };
    act_on(&state, &caller, &peer, &id, cmd).await
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
    let cmd = Command::Note {
        text: Secret(body.value.text),
    };
    act_on(&state, &caller, &peer, &id, cmd).await
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

impl ContactChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::InPerson => "in_person",
            Self::Sms => "sms",
            Self::Message => "message",
            Self::Other => "other",
        }
    }
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

impl ContactOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reached => "reached",
            Self::NoAnswer => "no_answer",
            Self::Declined => "declined",
            Self::MeetingAgreed => "meeting_agreed",
        }
    }
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
    let cmd = Command::ContactGuardian(GuardianContact {
        contacted: req.contacted,
        guardian_id: req.guardian_id,
        at: req.at,
        channel: req.channel.map(|c| c.as_str().to_owned()),
        outcome: req.outcome.map(|o| o.as_str().to_owned()),
        reason: req.reason.map(Secret),
    });
    act_on(&state, &caller, &peer, &id, cmd).await
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
    if let Some(r) = &req.return_assessment {
        validate::date("return_assessment.assessed_on", r.assessed_on, now)?;
        validate::text(
            "return_assessment.result",
            &r.result,
            MAX_RETURN_ASSESSMENT_CHARS,
        )?;
        if r.result.trim().is_empty() {
            return Err(ApiError::validation(
                "return_assessment.result",
                format!("1 to {MAX_RETURN_ASSESSMENT_CHARS} characters"),
            ));
        }
    }
    let cmd = Command::Refer(Referral {
        referral_id: req.referral_id,
        institution: Secret::new(req.institution.trim()),
        referred_on: req.referred_on,
        receipt_confirmed: req.receipt_confirmed,
        return_assessment: req
            .return_assessment
            .map(|r| (r.assessed_on, Secret::new(r.result.trim()))),
    });
    act_on(&state, &caller, &peer, &id, cmd).await
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
    let cmd = Command::FollowUp(FollowUp {
        follow_up_id: req.follow_up_id,
        due_at: req.due_at,
        outcome: req.outcome.map(Secret),
    });
    act_on(&state, &caller, &peer, &id, cmd).await
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
    let cmd = Command::SetLevel {
        level: to,
        reason: Secret(req.reason),
    };
    act_on(&state, &caller, &peer, &id, cmd).await
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
    let cmd = Command::Close {
        outcome: Secret::new(outcome),
        summary: req.summary.map(Secret),
    };
    act_on(&state, &caller, &peer, &id, cmd).await
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
    let cmd = Command::Reopen {
        reason: Secret(req.reason),
    };
    act_on(&state, &caller, &peer, &id, cmd).await
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
    let cmd = Command::LinkStudent {
        student_no: student_no.to_owned(),
    };
    act_on(state, caller, peer, id, cmd).await
}
