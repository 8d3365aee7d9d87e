//! Hotline calls (心理支持热线, e.g. 12355) as signals.
//!
//! - `POST /v1/hotline-calls`: a hotline system's `service` token logs one
//!   call. The hotline's call id makes it idempotent: the same call id again
//!   answers the first record and logs nothing new.
//! - `POST /v1/hotline-calls/import`: the same, for a CSV export of call logs.
//! - `GET /v1/hotline-calls`: the school's calls, newest first, a page at a
//!   time, for the crisis team and counsellors (the query is the store's,
//!   `sanyu_store::hotline`).
//! - An identified student's call becomes a `HotlineCallLogged` event on INTAKE
//!   (outbox, same transaction); the rules engine decides it like a report.
//! - An unidentified caller rated high or critical goes to INTAKE as well (no
//!   student): the rules engine opens an `unidentified_caller` case for the
//!   school's crisis team, with its escalation ladder, in the crisis team's
//!   queue (`GET /v1/cases`). `POST /v1/hotline-calls/{id}/link` (or
//!   `POST /v1/cases/{id}/link-student`) names the student later. A lower-rated
//!   unidentified call is only logged; linking it files its signal then.
//!
//! Why this file is over 600 lines: its routes share one call's validation,
//! the transaction that logs a call (`log_call`, run for one call and for each
//! row of an import) and the rule of who may see and link calls; split apart,
//! those private pieces would have to be shared across files. Split it when a
//! route grows a job of its own.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sanyu_domain::hotline::{CallerType, CssrsScreener, call_level};
use sanyu_domain::{Principal, RiskLevel, Role, student_partition};
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::entities::{hotline_call, school, student};
use sanyu_store::hotline::{self, NewCall};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::{Conn, begin_write, roster};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::body::{JsonBody, raw_body};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::validate;

const MAX_SUMMARY_CHARS: usize = validate::MAX_NARRATIVE;

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
    /// The hotline counsellor on duty (at most 128 characters); encrypted at rest.
    pub counsellor: Option<String>,
    /// At most 1000 characters; encrypted at rest.
    pub referral_advice: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HotlineCallAccepted {
    pub id: Uuid,
    pub call_id: String,
    pub level: String,
    pub student_identified: bool,
    /// The INTAKE event of the call (identified, or unidentified at high/critical).
    pub event_id: Option<String>,
    /// Nobody identified and rated high or critical: the rules engine opens an
    /// unidentified-caller case for the crisis team (`GET /v1/cases`).
    pub unidentified_caller_case: bool,
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

fn time(field: &str, v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    validate::line(field, v, validate::MAX_CODE)?;
    let t = DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::validation(field, format!("not an RFC 3339 time: {e}")))?;
    validate::time(field, t, now)?;
    Ok(t)
}

/// One line (names, ids, codes) of at most `max` characters.
fn short(field: &str, v: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    if let Some(s) = v {
        validate::line(field, s, max)?;
    }
    Ok(v.map(str::to_owned))
}

/// Free text of at most `max` characters.
fn long(field: &str, v: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    if let Some(s) = v {
        validate::text(field, s, max)?;
    }
    Ok(v.map(str::to_owned))
}

/// The input rules hold for a call whether it came as JSON or as a CSV row.
fn validate(req: &HotlineCallRequest, now: DateTime<Utc>) -> Result<ValidCall, ApiError> {
    let call_id = trimmed(&req.call_id)
        .ok_or_else(|| ApiError::validation("call_id", "`call_id` is required"))?;
    validate::line("call_id", call_id, 128)?;
    let started_at = time(
        "started_at",
        trimmed(&req.started_at)
            .ok_or_else(|| ApiError::validation("started_at", "`started_at` is required"))?,
        now,
    )?;
    if started_at > now + chrono::Duration::minutes(5) {
        return Err(ApiError::validation("started_at", "is in the future"));
    }
    let ended_at = trimmed(&req.ended_at)
        .map(|v| time("ended_at", v, now))
        .transpose()?;
    if ended_at.is_some_and(|e| e < started_at) {
        return Err(ApiError::validation("ended_at", "is before started_at"));
    }
    let caller_type = trimmed(&req.caller_type)
        .ok_or_else(|| ApiError::validation("caller_type", "`caller_type` is required"))?;
    validate::line("caller_type", caller_type, validate::MAX_CODE)?;
    let caller_type = caller_type
        .parse::<CallerType>()
        .map_err(|e| ApiError::validation("caller_type", e.to_string()))?;
    let student_no = short("student_no", trimmed(&req.student_no), validate::MAX_CODE)?;
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
    let rating = short("rating", trimmed(&req.rating), validate::MAX_CODE)?;
    let rating = rating
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
    let summary = long("summary", trimmed(&req.summary), MAX_SUMMARY_CHARS)?;
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
        counsellor: short("counsellor", trimmed(&req.counsellor), validate::MAX_NAME)?,
        referral_advice: long("referral_advice", trimmed(&req.referral_advice), 1000)?,
    })
}

fn accepted(row: &hotline_call::Model) -> HotlineCallAccepted {
    HotlineCallAccepted {
        id: row.id,
        call_id: row.call_id.clone(),
        level: row.level.to_string(),
        student_identified: row.student_id.is_some(),
        event_id: row.event_id.clone(),
        unidentified_caller_case: row.student_id.is_none() && row.event_id.is_some(),
        status: "accepted".to_owned(),
    }
}

/// The reference of a call in notices and lists (no name, no summary).
pub fn call_reference(id: Uuid) -> String {
    let hex = id.simple().to_string();
    format!("HL-{}", &hex[hex.len() - 8..]).to_uppercase()
}

/// The INTAKE event of a call about `student`, or about nobody identified
/// (stable id `hotline:<record>` either way: a call is one signal).
#[allow(clippy::too_many_arguments)]
fn signal_event(
    school: &school::Model,
    student: Option<&student::Model>,
    row_id: Uuid,
    call_id: &str,
    caller_type: &str,
    level: RiskLevel,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> OutboxEvent {
    let event_id = format!("hotline:{row_id}");
    let partition = student_partition(student.map_or(row_id, |s| s.id));
    OutboxEvent::of(
        subjects::hotline_call(&school.code, partition),
        event_id,
        now,
        &school.code,
        partition,
        Payload::HotlineCall(v1::HotlineCallLogged {
            call_id: call_id.to_owned(),
            student_id: student.map(|s| s.id.to_string()).unwrap_or_default(),
            caller_type: caller_type.to_owned(),
            risk_level: sanyu_events::level_to_proto(level) as i32,
            started_at: Some(sanyu_events::timestamp(started_at)),
            record_id: row_id.to_string(),
        }),
        sanyu_platform::trace::current_traceparent(),
    )
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

/// Log one call inside the caller's write transaction: `(record, replayed)`.
/// Nothing is committed here (an import writes all its rows in one).
async fn log_call(
    conn: &impl Conn,
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    school: &school::Model,
    call: ValidCall,
) -> Result<(hotline_call::Model, bool), LogError> {
    if let Some(row) = hotline::by_call_id(conn, school.id, &call.call_id).await? {
        return Ok((row, true));
    }
    let student = match &call.student_no {
        Some(no) => Some(
            roster::student_by_no(conn, school.id, no)
                .await?
                .ok_or(ApiError::NotFound("student"))?,
        ),
        None => None,
    };
    let now = Utc::now();
    let id = Uuid::now_v7();
    // A caller nobody identified goes to the rules engine only when rated
    // high or critical: that opens a case for the crisis team.
    let unidentified_case = student.is_none() && call.level >= RiskLevel::High;
    let event = (student.is_some() || unidentified_case).then(|| {
        signal_event(
            school,
            student.as_ref(),
            id,
            &call.call_id,
            call.caller_type.as_str(),
            call.level,
            call.started_at,
            now,
        )
    });
    // Every free text of the call is sealed at rest.
    let seal = |text: &Option<String>| text.as_deref().map(|t| state.sealer.seal(t)).transpose();
    let summary_sealed = seal(&call.summary)?;
    let counsellor_sealed = seal(&call.counsellor)?;
    let referral_advice_sealed = seal(&call.referral_advice)?;
    let row = NewCall {
        id,
        school_id: school.id,
        call_id: call.call_id.clone(),
        started_at: call.started_at,
        ended_at: call.ended_at,
        caller_type: call.caller_type.as_str().to_owned(),
        student_id: student.as_ref().map(|s| s.id),
        cssrs_answers: call.cssrs.as_ref().map(CssrsScreener::encode),
        rating: call.rating.map(|r| r.as_str().to_owned()),
        level: call.level,
        summary_sealed,
        counsellor_sealed,
        referral_advice_sealed,
        event_id: event.as_ref().map(|e| e.event_id.clone()),
        submitted_by: caller.token_id,
        created_at: now,
    };
    hotline::insert(conn, row).await?;
    if let Some(event) = event {
        outbox::enqueue(conn, event).await?;
    }
    let entry = audit::entry(caller, peer, "hotline.log", format!("hotline_call:{id}"));
    audit::record_in(conn, state, entry).await?;
    let row = hotline::get(conn, id)
        .await?
        .ok_or(ApiError::NotFound("hotline call"))?;
    tracing::info!(hotline_call = %id, level = call.level.as_str(), identified = row.student_id.is_some(), "hotline call logged");
    Ok((row, false))
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
    roster::school_by_id(&state.db, caller.school_id)
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
    let (row, replayed) = match hotline::by_call_id(&state.db, school.id, &call.call_id).await? {
        Some(row) => (row, true),
        None => {
            let txn = begin_write(&state.db).await?;
            let logged = log_call(&*txn, &state, &caller, &peer, &school, call)
                .await
                .map_err(|LogError::Api(e)| e)?;
            txn.commit().await?;
            state.waker.wake();
            logged
        }
    };
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
/// line and field, and the others are logged, all in one transaction: every
/// row's fate is in the answer, and an error of the server writes none.
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
    let body = raw_body(req, &state, state.csv_limit()).await?;
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
    // Every row is checked before anything is written: a bad row is reported
    // and never reaches the database.
    let mut calls = Vec::new();
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
        match result {
            Ok(call) => calls.push((line, call)),
            Err(e) => summary.errors.push(row_error(line, e)),
        }
    }
    // The good rows in one transaction: a failure of the database leaves
    // none of them written (and answers 503/500), never half the file.
    let txn = begin_write(&state.db).await?;
    for (line, call) in calls {
        match log_call(&*txn, &state, &caller, &peer, &school, call).await {
            Ok((_, true)) => summary.duplicates += 1,
            Ok((_, false)) => summary.created += 1,
            Err(LogError::Api(e @ (ApiError::Internal(_) | ApiError::Unavailable(_)))) => {
                return Err(e);
            }
            Err(LogError::Api(e)) => summary.errors.push(row_error(line, e)),
        }
    }
    txn.commit().await?;
    state.waker.wake();
    summary.errors.sort_by_key(|e| e.line);
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

/// Who reads and links hotline calls: the school's crisis team and
/// counsellors (the console shows its calls pages to them alone).
pub fn may_work_calls(caller: &Principal) -> bool {
    matches!(caller.role, Role::CrisisTeam | Role::Counsellor)
}

/// [`may_work_calls`], or 403 saying why.
fn works_calls(caller: &Principal, why: &'static str) -> Result<(), ApiError> {
    if may_work_calls(caller) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(why))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HotlineCallQuery {
    /// `true`: only calls about nobody identified (no student yet).
    pub unidentified: Option<bool>,
    /// Only calls decided at this level: watch, elevated, high, critical.
    pub level: Option<String>,
    /// Only calls that started at or after this time (RFC 3339).
    pub since: Option<String>,
    /// The next page: calls older than this call (`next_before` of the page before).
    pub before: Option<String>,
    /// At most this many calls (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// A call in the list: when, how urgent, whether anyone is identified and
/// the case it opened. No summary, no screener answers, no student (those
/// are opened one call at a time, audited: `GET /v1/hotline-calls/{id}`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HotlineCallSummary {
    pub id: Uuid,
    pub reference: String,
    pub call_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// student, guardian, teacher or anonymous.
    pub caller_type: String,
    /// The level the call was decided at.
    pub level: String,
    pub student_identified: bool,
    /// The case the call's signal opened or joined, if any.
    pub case_id: Option<Uuid>,
    /// When an unidentified caller was named (linked to a student).
    pub linked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HotlineCallList {
    pub calls: Vec<HotlineCallSummary>,
    /// More calls are older than this page: pass this as `before`.
    pub next_before: Option<Uuid>,
}

/// The school's hotline calls, newest first, a page at a time (another
/// school's calls are never listed).
#[utoipa::path(get, path = "/v1/hotline-calls", tag = "hotline", params(HotlineCallQuery),
    responses((status = 200, body = HotlineCallList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Query(q): Query<HotlineCallQuery>,
) -> Result<Json<HotlineCallList>, ApiError> {
    works_calls(
        &caller,
        "only the crisis team and counsellors read hotline calls",
    )?;
    let level = q
        .level
        .as_deref()
        .map(str::parse::<RiskLevel>)
        .transpose()
        .map_err(|e| ApiError::validation("level", e.to_string()))?;
    let since = q
        .since
        .as_deref()
        .map(|v| {
            validate::line("since", v, validate::MAX_CODE)?;
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ApiError::validation("since", format!("not an RFC 3339 time: {e}")))
        })
        .transpose()?;
    let limit = validate::limit(q.limit, 50, 200)?;
    // The cursor is a call of the caller's school; any other id (another
    // school's included) is refused alike.
    let before = match q.before.as_deref() {
        None => None,
        Some(v) => {
            let not_yours = || ApiError::validation("before", "not a call of your school");
            let id = Uuid::parse_str(v).map_err(|_| not_yours())?;
            let call = hotline::get_of_school(&state.db, caller.school_id, id)
                .await?
                .ok_or_else(not_yours)?;
            Some((call.started_at, call.id))
        }
    };
    let filter = hotline::CallFilter {
        school_id: caller.school_id,
        unidentified_only: q.unidentified.unwrap_or(false),
        level,
        since,
        before,
        // One more than asked: whether there is a next page.
        limit: limit + 1,
    };
    let mut rows = hotline::list(&state.db, &filter).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let cases = hotline::cases_of(&state.db, &rows).await?;
    audit::record(
        &state,
        &caller,
        &peer,
        "hotline.list",
        format!("school:{}", caller.school_id),
    )
    .await?;
    let next_before = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(HotlineCallList {
        calls: rows
            .into_iter()
            .map(|r| HotlineCallSummary {
                reference: call_reference(r.id),
                case_id: cases.get(&r.id).copied(),
                student_identified: r.student_id.is_some(),
                id: r.id,
                call_id: r.call_id,
                started_at: r.started_at,
                ended_at: r.ended_at,
                caller_type: r.caller_type,
                level: r.level.as_str().to_owned(),
                linked_at: r.linked_at,
            })
            .collect(),
        next_before,
    }))
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
    /// The case an unidentified caller's call opened (or was merged into), if any.
    pub case_id: Option<Uuid>,
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
    works_calls(
        &caller,
        "only the crisis team and counsellors read hotline calls",
    )?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("hotline call"))?;
    let row = hotline::get_of_school(&state.db, caller.school_id, id)
        .await?
        .ok_or(ApiError::NotFound("hotline call"))?;
    let open =
        |sealed: &Option<Vec<u8>>| sealed.as_deref().map(|s| state.sealer.open(s)).transpose();
    let summary = open(&row.summary_sealed)?;
    let counsellor = open(&row.counsellor_sealed)?;
    let referral_advice = open(&row.referral_advice_sealed)?;
    let case_id = case_of_call(&state.db, &row).await?;
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
        level: row.level.to_string(),
        summary,
        counsellor,
        referral_advice,
        case_id,
        linked_at: row.linked_at,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The student the call turned out to be about (学号).
    pub student_no: Option<String>,
}

/// The case a call's signal opened or joined (the newest, i.e. the open
/// student's case a merged caller's case went into).
async fn case_of_call(
    conn: &impl Conn,
    row: &hotline_call::Model,
) -> Result<Option<Uuid>, ApiError> {
    Ok(hotline::cases_of(conn, std::slice::from_ref(row))
        .await?
        .remove(&row.id))
}

/// Link an unidentified call to a student. A call that opened an
/// unidentified caller's case links that case (as
/// `POST /v1/cases/{id}/link-student` does: the case becomes the student's,
/// or joins the student's open case); a lower-rated call becomes the
/// student's signal (INTAKE, outbox) now.
#[utoipa::path(post, path = "/v1/hotline-calls/{id}/link", tag = "hotline", request_body = LinkRequest,
    params(("id" = Uuid, Path, description = "The call record's id")),
    responses((status = 200, body = HotlineCallAccepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already about a student, or its case is still opening", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id, hotline_call))]
pub async fn link(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    body: JsonBody<LinkRequest>,
) -> Result<Json<HotlineCallAccepted>, ApiError> {
    works_calls(
        &caller,
        "only the crisis team and counsellors link hotline calls",
    )?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("hotline call"))?;
    let student_no = trimmed(&body.value.student_no)
        .ok_or_else(|| ApiError::validation("student_no", "`student_no` is required"))?;
    let school = school_of(&state, &caller).await?;
    let student = roster::student_by_no(&state.db, school.id, student_no)
        .await?
        .ok_or(ApiError::NotFound("student"))?;
    let already = || ApiError::Conflict {
        message: "this call is already about a student".into(),
        allowed: Vec::new(),
    };
    let row = hotline::get_of_school(&state.db, caller.school_id, id)
        .await?
        .ok_or(ApiError::NotFound("hotline call"))?;
    if row.student_id.is_some() {
        return Err(already());
    }
    tracing::Span::current().record("hotline_call", tracing::field::display(id));
    if row.event_id.is_some() {
        // The call is on INTAKE already: it opened (or is opening) a case.
        let case_id = case_of_call(&state.db, &row)
            .await?
            .ok_or_else(|| ApiError::Conflict {
                message: "the caller's case is still opening; try again in a moment".into(),
                allowed: Vec::new(),
            })?;
        let Json(_) = crate::routes::casework::link_student_to_case(
            &state,
            &caller,
            &peer,
            &case_id.to_string(),
            student_no,
        )
        .await?;
        let row = hotline::get(&state.db, id)
            .await?
            .ok_or(ApiError::NotFound("hotline call"))?;
        return Ok(Json(accepted(&row)));
    }
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let row = hotline::get_of_school(&*txn, caller.school_id, id)
        .await?
        .ok_or(ApiError::NotFound("hotline call"))?;
    if row.student_id.is_some() || row.event_id.is_some() {
        txn.rollback().await?;
        return Err(already());
    }
    let level = row.level;
    let event = signal_event(
        &school,
        Some(&student),
        row.id,
        &row.call_id,
        &row.caller_type,
        level,
        row.started_at,
        now,
    );
    let row = hotline::link_student(&*txn, row, student.id, event.event_id.clone(), now).await?;
    outbox::enqueue(&*txn, event).await?;
    let entry = audit::entry(&caller, &peer, "hotline.link", format!("hotline_call:{id}"));
    audit::record_in(&*txn, &state, entry).await?;
    txn.commit().await?;
    state.waker.wake();
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
