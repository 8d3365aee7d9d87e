//! Hotline calls (心理支持热线, e.g. 12355) as signals.
//!
//! - `POST /v1/hotline-calls`: a hotline system's `service` token logs one
//!   call. The hotline's call id makes it idempotent: the same call id again
//!   answers the first record and logs nothing new.
//! - `POST /v1/hotline-calls/import`: the same, for a CSV export of call logs.
//! - An identified student's call becomes a `HotlineCallLogged` event on INTAKE
//!   (outbox, same transaction); the rules engine decides it like a report.
//! - An unidentified caller rated high or critical raises a hotline alert: the
//!   crisis team on duty is told at once (NotificationRequested, outbox) and the
//!   alert is listed by `GET /v1/hotline-alerts` until someone links it to a
//!   student (`POST /v1/hotline-calls/{id}/link`), which then files the signal.
//!   Cases keep their required student: an alert is not a case.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sanyu_domain::hotline::{CallerType, CssrsScreener, call_level};
use sanyu_domain::policy::FALLBACK_ROLES;
use sanyu_domain::{Principal, RiskLevel, Role, student_partition};
use sanyu_escalation::{self as escalation, PlainNotice, notice_reason};
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::entities::{hotline_call, school, student};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use sanyu_store::{begin_write, roster};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::body::{JsonBody, raw_body};
use crate::error::{ApiError, ErrorBody};

const MAX_SUMMARY_CHARS: usize = 8000;
const OPEN: &str = "open";
const LINKED: &str = "linked";

/// The C-SSRS screener as answered on the call.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CssrsAnswers {
    /// The six screener items, yes (true) or no (false), in order.
    pub answers: Vec<bool>,
    /// Suicidal behaviour (item 6) within the last 3 months.
    #[serde(default)]
    pub behaviour_within_3_months: bool,
}

/// One hotline call. Either `cssrs` or `rating` (or both) is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HotlineCallRequest {
    /// The hotline system's own call id (repeat-safe).
    pub call_id: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// student, guardian, teacher or anonymous.
    pub caller_type: Option<String>,
    /// The student the call is about, when identified (学号).
    pub student_no: Option<String>,
    pub cssrs: Option<CssrsAnswers>,
    /// The hotline counsellor's rating: watch, elevated, high, critical.
    pub rating: Option<String>,
    /// Stored encrypted; never logged, never in a notification.
    pub summary: Option<String>,
    /// The hotline counsellor on duty.
    pub counsellor: Option<String>,
    pub referral_advice: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HotlineCallAccepted {
    pub id: Uuid,
    pub call_id: String,
    pub level: String,
    pub student_identified: bool,
    /// The INTAKE event of an identified call.
    pub event_id: Option<String>,
    /// `open` when an unidentified high/critical caller raised an alert.
    pub alert: Option<String>,
    pub status: String,
}

struct ValidCall {
    call_id: String,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    caller_type: CallerType,
    student_no: Option<String>,
    cssrs: Option<CssrsScreener>,
    rating: Option<RiskLevel>,
    level: RiskLevel,
    summary: Option<String>,
    counsellor: Option<String>,
    referral_advice: Option<String>,
}

fn trimmed(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn time(field: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::validation(field, format!("not an RFC 3339 time: {e}")))
}

fn short(field: &str, v: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.chars().count() > max => Err(ApiError::validation(
            field,
            format!("at most {max} characters"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

fn validate(req: &HotlineCallRequest, now: DateTime<Utc>) -> Result<ValidCall, ApiError> {
    let call_id = trimmed(&req.call_id)
        .ok_or_else(|| ApiError::validation("call_id", "`call_id` is required"))?;
    if call_id.chars().count() > 128 {
        return Err(ApiError::validation("call_id", "at most 128 characters"));
    }
    let started_at = time(
        "started_at",
        trimmed(&req.started_at)
            .ok_or_else(|| ApiError::validation("started_at", "`started_at` is required"))?,
    )?;
    if started_at > now + chrono::Duration::minutes(5) {
        return Err(ApiError::validation("started_at", "is in the future"));
    }
    let ended_at = trimmed(&req.ended_at)
        .map(|v| time("ended_at", v))
        .transpose()?;
    if ended_at.is_some_and(|e| e < started_at) {
        return Err(ApiError::validation("ended_at", "is before started_at"));
    }
    let caller_type = trimmed(&req.caller_type)
        .ok_or_else(|| ApiError::validation("caller_type", "`caller_type` is required"))?
        .parse::<CallerType>()
        .map_err(|e| ApiError::validation("caller_type", e.to_string()))?;
    let student_no = short("student_no", trimmed(&req.student_no), 64)?;
    let cssrs =
        req.cssrs
            .as_ref()
            .map(|c| -> Result<CssrsScreener, ApiError> {
                let answers: [bool; 6] = c.answers.as_slice().try_into().map_err(|_| {
                    ApiError::validation("cssrs.answers", "exactly six yes/no answers")
                })?;
                Ok(CssrsScreener {
                    answers,
                    behaviour_within_3_months: c.behaviour_within_3_months,
                })
            })
            .transpose()?;
    let rating = trimmed(&req.rating)
        .map(|r| {
            r.parse::<RiskLevel>()
                .map_err(|e| ApiError::validation("rating", e.to_string()))
        })
        .transpose()?;
    if cssrs.is_none() && rating.is_none() {
        return Err(ApiError::validation(
            "rating",
            "either `cssrs` answers or a `rating` is required",
        ));
    }
    let summary = short("summary", trimmed(&req.summary), MAX_SUMMARY_CHARS)?;
    Ok(ValidCall {
        call_id: call_id.to_owned(),
        started_at,
        ended_at,
        caller_type,
        student_no,
        level: call_level(cssrs.as_ref(), rating),
        cssrs,
        rating,
        summary,
        counsellor: short("counsellor", trimmed(&req.counsellor), 128)?,
        referral_advice: short("referral_advice", trimmed(&req.referral_advice), 1000)?,
    })
}

fn accepted(row: &hotline_call::Model) -> HotlineCallAccepted {
    HotlineCallAccepted {
        id: row.id,
        call_id: row.call_id.clone(),
        level: row.level.clone(),
        student_identified: row.student_id.is_some(),
        event_id: row.event_id.clone(),
        alert: row.alert_state.clone(),
        status: "accepted".to_owned(),
    }
}

/// The reference of a call in notices and lists (no name, no summary).
pub fn call_reference(id: Uuid) -> String {
    let hex = id.simple().to_string();
    format!("HL-{}", &hex[hex.len() - 8..]).to_uppercase()
}

async fn existing(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    call_id: &str,
) -> Result<Option<hotline_call::Model>, ApiError> {
    Ok(hotline_call::Entity::find()
        .filter(hotline_call::Column::SchoolId.eq(school_id))
        .filter(hotline_call::Column::CallId.eq(call_id))
        .one(conn)
        .await?)
}

/// The INTAKE event of a call about `student` (stable id `hotline:<record>`).
#[allow(clippy::too_many_arguments)]
fn signal_event(
    school: &school::Model,
    student: &student::Model,
    row_id: Uuid,
    call_id: &str,
    caller_type: &str,
    level: RiskLevel,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> OutboxEvent {
    let event_id = format!("hotline:{row_id}");
    let partition = student_partition(student.id);
    OutboxEvent {
        subject: subjects::hotline_call(&school.code, partition),
        payload: sanyu_events::encode(&sanyu_events::envelope(
            event_id.clone(),
            now,
            school.code.clone(),
            partition,
            Payload::HotlineCall(v1::HotlineCallLogged {
                call_id: call_id.to_owned(),
                student_id: student.id.to_string(),
                caller_type: caller_type.to_owned(),
                risk_level: sanyu_events::level_to_proto(level) as i32,
                started_at: Some(sanyu_events::timestamp(started_at)),
                record_id: row_id.to_string(),
            }),
        )),
        event_id,
        traceparent: sanyu_platform::trace::current_traceparent(),
    }
}

/// Why one call could not be logged.
enum LogError {
    Api(ApiError),
}

impl From<ApiError> for LogError {
    fn from(e: ApiError) -> Self {
        LogError::Api(e)
    }
}

impl From<sanyu_store::StoreError> for LogError {
    fn from(e: sanyu_store::StoreError) -> Self {
        LogError::Api(e.into())
    }
}

impl From<sanyu_store::sea_orm::DbErr> for LogError {
    fn from(e: sanyu_store::sea_orm::DbErr) -> Self {
        LogError::Api(e.into())
    }
}

impl From<escalation::EscalationError> for LogError {
    fn from(e: escalation::EscalationError) -> Self {
        match e {
            escalation::EscalationError::Store(s) => s.into(),
            other => LogError::Api(ApiError::Internal(other.to_string())),
        }
    }
}

/// Log one call: `(record, replayed)`.
async fn log_call(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    school: &school::Model,
    call: ValidCall,
) -> Result<(hotline_call::Model, bool), LogError> {
    if let Some(row) = existing(&state.db, school.id, &call.call_id).await? {
        return Ok((row, true));
    }
    let student = match &call.student_no {
        Some(no) => Some(
            roster::student_by_no(&state.db, school.id, no)
                .await?
                .ok_or(ApiError::NotFound("student"))?,
        ),
        None => None,
    };
    let now = Utc::now();
    let id = Uuid::now_v7();
    let unidentified_alert = student.is_none() && call.level >= RiskLevel::High;
    let event = student.as_ref().map(|s| {
        signal_event(
            school,
            s,
            id,
            &call.call_id,
            call.caller_type.as_str(),
            call.level,
            call.started_at,
            now,
        )
    });
    let summary_sealed = call
        .summary
        .as_deref()
        .map(|s| state.sealer.seal(s))
        .transpose()?;
    let txn = begin_write(&state.db).await?;
    if let Some(row) = existing(&*txn, school.id, &call.call_id).await? {
        txn.rollback().await?;
        return Ok((row, true));
    }
    let row = hotline_call::ActiveModel {
        id: Set(id),
        school_id: Set(school.id),
        call_id: Set(call.call_id.clone()),
        started_at: Set(call.started_at),
        ended_at: Set(call.ended_at),
        caller_type: Set(call.caller_type.as_str().to_owned()),
        student_id: Set(student.as_ref().map(|s| s.id)),
        cssrs_answers: Set(call.cssrs.as_ref().map(CssrsScreener::encode)),
        rating: Set(call.rating.map(|r| r.as_str().to_owned())),
        level: Set(call.level.as_str().to_owned()),
        summary_sealed: Set(summary_sealed),
        counsellor: Set(call.counsellor),
        referral_advice: Set(call.referral_advice),
        alert_state: Set(unidentified_alert.then(|| OPEN.to_owned())),
        linked_at: Set(None),
        event_id: Set(event.as_ref().map(|e| e.event_id.clone())),
        submitted_by: Set(caller.token_id),
        created_at: Set(now),
    };
    hotline_call::Entity::insert(row)
        .exec_without_returning(&*txn)
        .await?;
    if let Some(event) = event {
        outbox::enqueue(&*txn, event).await?;
    }
    if unidentified_alert {
        alert_crisis_team(&*txn, school, id, call.level, now).await?;
    }
    sanyu_store::audit::append_in(
        &*txn,
        &state.audit_key,
        audit::entry(caller, peer, "hotline.log", format!("hotline_call:{id}")),
    )
    .await?;
    let row = hotline_call::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(ApiError::NotFound("hotline call"))?;
    txn.commit().await?;
    state.waker.wake();
    tracing::info!(hotline_call = %id, level = call.level.as_str(), identified = row.student_id.is_some(), "hotline call logged");
    Ok((row, false))
}

/// Tell the crisis team on duty (or, with nobody there, the fallback roles).
async fn alert_crisis_team(
    txn: &impl ConnectionTrait,
    school: &school::Model,
    id: Uuid,
    level: RiskLevel,
    now: DateTime<Utc>,
) -> Result<(), LogError> {
    let mut people = escalation::reachable(txn, school.id, &[Role::CrisisTeam]).await?;
    if people.is_empty() {
        people = escalation::reachable(txn, school.id, &FALLBACK_ROLES).await?;
    }
    if people.is_empty() {
        tracing::error!(hotline_call = %id, "unidentified hotline alert reaches nobody");
    }
    let reference = call_reference(id);
    let notice = PlainNotice {
        school,
        reference: &reference,
        level,
        reason: notice_reason::HOTLINE_UNIDENTIFIED,
        at: now,
        traceparent: sanyu_platform::trace::current_traceparent(),
    };
    for person in people {
        escalation::request_plain(
            txn,
            &notice,
            person.id,
            format!("hotline:{id}:{}", person.id),
        )
        .await?;
    }
    Ok(())
}

fn only_service(caller: &Principal) -> Result<(), ApiError> {
    if caller.role != Role::Service {
        return Err(ApiError::Forbidden(
            "only a hotline system's service token may log calls",
        ));
    }
    Ok(())
}

async fn school_of(state: &AppState, caller: &Principal) -> Result<school::Model, ApiError> {
    school::Entity::find_by_id(caller.school_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("school"))
}

/// Log a hotline call.
#[utoipa::path(post, path = "/v1/hotline-calls", tag = "hotline", request_body = HotlineCallRequest,
    responses(
        (status = 202, description = "Logged (or, for a known call id, the first record again with `idempotent-replayed: true`)", body = HotlineCallAccepted),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown student", body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id))]
pub async fn log(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    body: JsonBody<HotlineCallRequest>,
) -> Result<Response, ApiError> {
    only_service(&caller)?;
    let call = validate(&body.value, Utc::now())?;
    let school = school_of(&state, &caller).await?;
    let (row, replayed) = log_call(&state, &caller, &peer, &school, call)
        .await
        .map_err(|LogError::Api(e)| e)?;
    let mut response = (StatusCode::ACCEPTED, Json(accepted(&row))).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// 1-based line of the file (the header is line 1).
    pub line: u64,
    pub field: Option<String>,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HotlineImportSummary {
    pub rows: u64,
    pub created: u64,
    /// Calls already logged (same call id): nothing new.
    pub duplicates: u64,
    pub errors: Vec<RowError>,
}

#[derive(Debug, Deserialize)]
struct CsvRow {
    call_id: Option<String>,
    started_at: Option<String>,
    ended_at: Option<String>,
    caller_type: Option<String>,
    student_no: Option<String>,
    /// Six `y`/`n` then `-` and `y`/`n` for recent behaviour, e.g. `ynnnnn-n`.
    cssrs: Option<String>,
    rating: Option<String>,
    summary: Option<String>,
    counsellor: Option<String>,
    referral_advice: Option<String>,
}

fn parse_cssrs(v: &str) -> Result<CssrsAnswers, ApiError> {
    let bad = || ApiError::validation("cssrs", "expected six y/n, a dash and y/n, e.g. ynnnnn-n");
    let (items, recent) = v.split_once('-').ok_or_else(bad)?;
    let yn = |c: char| match c {
        'y' | 'Y' | '1' => Ok(true),
        'n' | 'N' | '0' => Ok(false),
        _ => Err(bad()),
    };
    let answers = items.chars().map(yn).collect::<Result<Vec<_>, _>>()?;
    let mut recent = recent.chars();
    let behaviour = match (recent.next(), recent.next()) {
        (Some(c), None) => yn(c)?,
        _ => return Err(bad()),
    };
    Ok(CssrsAnswers {
        answers,
        behaviour_within_3_months: behaviour,
    })
}

impl CsvRow {
    fn into_request(self) -> Result<HotlineCallRequest, ApiError> {
        Ok(HotlineCallRequest {
            cssrs: trimmed(&self.cssrs).map(parse_cssrs).transpose()?,
            call_id: self.call_id,
            started_at: self.started_at,
            ended_at: self.ended_at,
            caller_type: self.caller_type,
            student_no: self.student_no,
            rating: self.rating,
            summary: self.summary,
            counsellor: self.counsellor,
            referral_advice: self.referral_advice,
        })
    }
}

/// Import a CSV export of call logs. Each row is logged like `POST
/// /v1/hotline-calls` (same idempotency by call id); bad rows are reported by
/// line and field, and the others are logged.
#[utoipa::path(post, path = "/v1/hotline-calls/import", tag = "hotline",
    request_body(content = String, content_type = "text/csv", description = "call_id,started_at,ended_at,caller_type,student_no,cssrs,rating,summary,counsellor,referral_advice"),
    responses((status = 200, body = HotlineImportSummary), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id))]
pub async fn import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    req: Request,
) -> Result<Json<HotlineImportSummary>, ApiError> {
    only_service(&caller)?;
    let body = raw_body(req, &state).await?;
    let school = school_of(&state, &caller).await?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(body.as_ref());
    let headers = reader
        .headers()
        .map_err(|e| ApiError::validation("", format!("unreadable CSV header: {e}")))?
        .clone();
    for required in ["call_id", "started_at", "caller_type"] {
        if !headers.iter().any(|h| h == required) {
            return Err(ApiError::validation(
                required,
                format!("the CSV header has no `{required}` column"),
            ));
        }
    }
    let mut summary = HotlineImportSummary {
        rows: 0,
        created: 0,
        duplicates: 0,
        errors: Vec::new(),
    };
    let now = Utc::now();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        summary.rows += 1;
        let result = record
            .map_err(|e| ApiError::validation("", format!("unreadable row: {e}")))
            .and_then(|r| {
                r.deserialize::<CsvRow>(Some(&headers))
                    .map_err(|e| ApiError::validation("", format!("unreadable row: {e}")))
            })
            .and_then(CsvRow::into_request)
            .and_then(|r| validate(&r, now));
        let call = match result {
            Ok(call) => call,
            Err(e) => {
                summary.errors.push(row_error(line, e));
                continue;
            }
        };
        match log_call(&state, &caller, &peer, &school, call).await {
            Ok((_, true)) => summary.duplicates += 1,
            Ok((_, false)) => summary.created += 1,
            Err(LogError::Api(e @ (ApiError::Internal(_) | ApiError::Unavailable(_)))) => {
                return Err(e);
            }
            Err(LogError::Api(e)) => summary.errors.push(row_error(line, e)),
        }
    }
    tracing::info!(
        rows = summary.rows,
        created = summary.created,
        duplicates = summary.duplicates,
        rejected = summary.errors.len(),
        "hotline calls imported"
    );
    Ok(Json(summary))
}

fn row_error(line: u64, e: ApiError) -> RowError {
    let field = match &e {
        ApiError::Validation { field, .. } if !field.is_empty() => Some(field.clone()),
        ApiError::NotFound("student") => Some("student_no".to_owned()),
        _ => None,
    };
    RowError {
        line,
        field,
        message: e.to_string(),
    }
}

/// A hotline alert: an unidentified caller rated high or critical. No summary,
/// no caller details: the crisis team opens the hotline's own record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HotlineAlert {
    pub id: Uuid,
    pub reference: String,
    pub call_id: String,
    pub caller_type: String,
    pub level: String,
    pub started_at: DateTime<Utc>,
    /// `open` or `linked`.
    pub state: String,
    pub linked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HotlineAlerts {
    pub alerts: Vec<HotlineAlert>,
}

fn may_work_alerts(caller: &Principal) -> bool {
    matches!(caller.role, Role::CrisisTeam | Role::Counsellor)
}

/// The school's hotline alerts, open first, newest first.
#[utoipa::path(get, path = "/v1/hotline-alerts", tag = "hotline",
    responses((status = 200, body = HotlineAlerts), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id))]
pub async fn alerts(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
) -> Result<Json<HotlineAlerts>, ApiError> {
    if !may_work_alerts(&caller) && caller.role != Role::Leader {
        return Err(ApiError::Forbidden(
            "only the crisis team, counsellors and leaders see hotline alerts",
        ));
    }
    let rows = hotline_call::Entity::find()
        .filter(hotline_call::Column::SchoolId.eq(caller.school_id))
        .filter(hotline_call::Column::AlertState.is_not_null())
        .order_by_desc(hotline_call::Column::CreatedAt)
        .all(&state.db)
        .await?;
    audit::record(
        &state,
        &caller,
        &peer,
        "hotline.alerts",
        format!("school:{}", caller.school_id),
    )
    .await?;
    let mut alerts: Vec<HotlineAlert> = rows
        .into_iter()
        .map(|r| HotlineAlert {
            id: r.id,
            reference: call_reference(r.id),
            call_id: r.call_id,
            caller_type: r.caller_type,
            level: r.level,
            started_at: r.started_at,
            state: r.alert_state.unwrap_or_default(),
            linked_at: r.linked_at,
        })
        .collect();
    alerts.sort_by_key(|a| a.state != OPEN);
    Ok(Json(HotlineAlerts { alerts }))
}

/// One call in full, for the crisis team and counsellors of the school: the
/// summary is opened only here, and the read is audited.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HotlineCallDetail {
    pub id: Uuid,
    pub reference: String,
    pub call_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub caller_type: String,
    pub student_id: Option<Uuid>,
    /// Six y/n, a dash, y/n for recent behaviour.
    pub cssrs: Option<String>,
    pub rating: Option<String>,
    pub level: String,
    pub summary: Option<String>,
    pub counsellor: Option<String>,
    pub referral_advice: Option<String>,
    pub alert: Option<String>,
    pub linked_at: Option<DateTime<Utc>>,
}

/// Read one call (another school's call answers 404).
#[utoipa::path(get, path = "/v1/hotline-calls/{id}", tag = "hotline",
    params(("id" = Uuid, Path, description = "The call record's id")),
    responses((status = 200, body = HotlineCallDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Json<HotlineCallDetail>, ApiError> {
    if !may_work_alerts(&caller) {
        return Err(ApiError::Forbidden(
            "only the crisis team and counsellors read hotline calls",
        ));
    }
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("hotline call"))?;
    let row = hotline_call::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|r| r.school_id == caller.school_id)
        .ok_or(ApiError::NotFound("hotline call"))?;
    let summary = row
        .summary_sealed
        .as_deref()
        .map(|s| state.sealer.open(s))
        .transpose()?;
    audit::record(
        &state,
        &caller,
        &peer,
        "hotline.read",
        format!("hotline_call:{id}"),
    )
    .await?;
    Ok(Json(HotlineCallDetail {
        id: row.id,
        reference: call_reference(row.id),
        call_id: row.call_id,
        started_at: row.started_at,
        ended_at: row.ended_at,
        caller_type: row.caller_type,
        student_id: row.student_id,
        cssrs: row.cssrs_answers,
        rating: row.rating,
        level: row.level,
        summary,
        counsellor: row.counsellor,
        referral_advice: row.referral_advice,
        alert: row.alert_state,
        linked_at: row.linked_at,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The student the call turned out to be about (学号).
    pub student_no: Option<String>,
}

/// Link an unidentified call to a student: the call becomes that student's
/// signal (INTAKE, outbox) and the alert is closed as `linked`.
#[utoipa::path(post, path = "/v1/hotline-calls/{id}/link", tag = "hotline", request_body = LinkRequest,
    params(("id" = Uuid, Path, description = "The call record's id")),
    responses((status = 200, body = HotlineCallAccepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already about a student", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id, hotline_call))]
pub async fn link(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<LinkRequest>,
) -> Result<Json<HotlineCallAccepted>, ApiError> {
    if !may_work_alerts(&caller) {
        return Err(ApiError::Forbidden(
            "only the crisis team and counsellors link hotline calls",
        ));
    }
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("hotline call"))?;
    let student_no = trimmed(&body.value.student_no)
        .ok_or_else(|| ApiError::validation("student_no", "`student_no` is required"))?;
    let school = school_of(&state, &caller).await?;
    let student = roster::student_by_no(&state.db, school.id, student_no)
        .await?
        .ok_or(ApiError::NotFound("student"))?;
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let row = hotline_call::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .filter(|r| r.school_id == caller.school_id)
        .ok_or(ApiError::NotFound("hotline call"))?;
    if row.student_id.is_some() {
        txn.rollback().await?;
        return Err(ApiError::Conflict {
            message: "this call is already about a student".into(),
            allowed: Vec::new(),
        });
    }
    let level: RiskLevel = row
        .level
        .parse()
        .map_err(|_| ApiError::Internal(format!("hotline call {id}: level `{}`", row.level)))?;
    let event = signal_event(
        &school,
        &student,
        row.id,
        &row.call_id,
        &row.caller_type,
        level,
        row.started_at,
        now,
    );
    let was_alert = row.alert_state.is_some();
    let mut update: hotline_call::ActiveModel = row.into();
    update.student_id = Set(Some(student.id));
    update.linked_at = Set(Some(now));
    update.event_id = Set(Some(event.event_id.clone()));
    if was_alert {
        update.alert_state = Set(Some(LINKED.to_owned()));
    }
    let row = update.update(&*txn).await?;
    outbox::enqueue(&*txn, event).await?;
    sanyu_store::audit::append_in(
        &*txn,
        &state.audit_key,
        audit::entry(&caller, &peer, "hotline.link", format!("hotline_call:{id}")),
    )
    .await?;
    txn.commit().await?;
    state.waker.wake();
    tracing::Span::current().record("hotline_call", tracing::field::display(id));
    tracing::info!("hotline call linked to a student");
    Ok(Json(accepted(&row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> HotlineCallRequest {
        HotlineCallRequest {
            call_id: Some("C-1".into()),
            started_at: Some("2026-11-29T08:00:00+08:00".into()),
            ended_at: None,
            caller_type: Some("student".into()),
            student_no: Some("S1".into()),
            cssrs: None,
            rating: Some("high".into()),
            summary: Some("text".into()),
            counsellor: None,
            referral_advice: None,
        }
    }

    fn field_of(r: Result<ValidCall, ApiError>) -> String {
        match r {
            Err(ApiError::Validation { field, .. }) => field,
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("expected a validation error"),
        }
    }

    #[test]
    fn a_call_needs_answers_or_a_rating_and_names_each_bad_field() {
        let now = Utc::now();
        assert_eq!(
            validate(&request(), now).expect("valid").level,
            RiskLevel::High
        );
        let mut r = request();
        r.rating = None;
        assert_eq!(field_of(validate(&r, now)), "rating");
        let mut r = request();
        r.caller_type = Some("robot".into());
        assert_eq!(field_of(validate(&r, now)), "caller_type");
        let mut r = request();
        r.call_id = Some(" ".into());
        assert_eq!(field_of(validate(&r, now)), "call_id");
        let mut r = request();
        r.cssrs = Some(CssrsAnswers {
            answers: vec![true],
            behaviour_within_3_months: false,
        });
        assert_eq!(field_of(validate(&r, now)), "cssrs.answers");
    }

    #[test]
    fn csv_screener_answers_parse_and_recent_behaviour_is_critical() {
        let a = parse_cssrs("nnnnny-y").expect("parses");
        let mut r = request();
        r.rating = None;
        r.cssrs = Some(a);
        assert_eq!(
            validate(&r, Utc::now()).expect("valid").level,
            RiskLevel::Critical
        );
        assert!(parse_cssrs("nnn").is_err());
        assert!(parse_cssrs("nnnnnn-x").is_err());
    }
}
