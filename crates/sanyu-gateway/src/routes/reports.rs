//! `POST /v1/reports`: a head teacher's or class monitor's warning report.
//! The report row and its INTAKE event commit together (outbox); the response
//! says the report is accepted, and the rules engine decides it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sanyu_domain::{Access, Principal, ReportCategory, RiskLevel, student_partition};
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::entities::{school, student};
use sanyu_store::idempotency::{self, StoredResponse};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::reports::{self, NewReport};
use sanyu_store::{begin_write, roster};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::validate;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_NARRATIVE_CHARS: usize = validate::MAX_NARRATIVE;

/// A warning report. Every field is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The student's number in the school roster (学号).
    #[schema(example = "20250101")]
    pub student_no: Option<String>,
    /// One of: suicidal_ideation, self_harm, depression, anxiety, bullying, family_crisis, behaviour_change, other.
    #[schema(example = "suicidal_ideation")]
    pub category: Option<String>,
    /// Suggested level: elevated, high or critical.
    #[schema(example = "high")]
    pub level: Option<String>,
    /// When it was observed (RFC 3339), not in the future.
    #[schema(example = "2026-11-29T08:30:00+08:00")]
    pub observed_at: Option<String>,
    /// What was observed. Stored encrypted; never logged, never in a notification.
    pub narrative: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportAccepted {
    pub report_id: Uuid,
    pub event_id: String,
    pub status: String,
}

/// A warning report that passed validation (of `POST /v1/reports`, or an
/// incident of a zero report).
pub(crate) struct ValidReport {
    pub student_no: String,
    pub category: ReportCategory,
    pub level: RiskLevel,
    pub observed_at: DateTime<Utc>,
    pub narrative: String,
}

/// A report to file: by whom, about which student (of which school and
/// class), under which id.
pub(crate) struct Filing<'a> {
    pub caller: &'a Principal,
    pub school: &'a school::Model,
    pub student: &'a student::Model,
    pub class_code: String,
    pub report: &'a ValidReport,
    pub id: Uuid,
    /// One incident of a zero report.
    pub zero_report: bool,
}

/// File a report inside the caller's transaction: its row (the narrative
/// sealed) and its `ReportSubmitted` event for the rules engine. The one
/// way a report is filed, from `POST /v1/reports` and from a zero report's
/// incidents.
pub(crate) async fn file(
    state: &AppState,
    txn: &impl sanyu_store::Conn,
    f: Filing<'_>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let (r, student) = (f.report, f.student);
    let event_id = format!("report:{}", f.id);
    let partition = student_partition(student.id);
    reports::insert(
        txn,
        NewReport {
            id: f.id,
            school_id: f.school.id,
            class_id: student.class_id,
            student_id: student.id,
            category: r.category.as_str().to_owned(),
            level: r.level,
            observed_at: r.observed_at,
            narrative_sealed: state.sealer.seal(&r.narrative)?,
            reporter_token_id: f.caller.token_id,
            event_id: event_id.clone(),
        },
    )
    .await?;
    let payload = Payload::ReportSubmitted(v1::ReportSubmitted {
        report_id: f.id.to_string(),
        student_id: student.id.to_string(),
        class_code: f.class_code,
        category: r.category.as_str().to_owned(),
        suggested_level: sanyu_events::level_to_proto(r.level) as i32,
        observed_at: Some(sanyu_events::timestamp(r.observed_at)),
        reporter_token_id: f.caller.token_id.to_string(),
        zero_report: f.zero_report,
    });
    let subject = subjects::report_submitted(&f.school.code, partition);
    let tp = sanyu_platform::trace::current_traceparent();
    let event = OutboxEvent::of(
        subject,
        event_id,
        now,
        &f.school.code,
        partition,
        payload,
        tp,
    );
    outbox::enqueue(txn, event).await?;
    Ok(())
}

fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::validation(
            field,
            format!("`{field}` is required"),
        )),
    }
}

fn validate(req: &ReportRequest, now: DateTime<Utc>) -> Result<ValidReport, ApiError> {
    let student_no = required(&req.student_no, "student_no")?;
    validate::line("student_no", student_no, validate::MAX_CODE)?;
    let category = required(&req.category, "category")?
        .parse::<ReportCategory>()
        .map_err(|e| ApiError::validation("category", e.to_string()))?;
    let level = required(&req.level, "level")?
        .parse::<RiskLevel>()
        .map_err(|e| ApiError::validation("level", e.to_string()))?;
    if !level.is_case_level() {
        return Err(ApiError::validation(
            "level",
            "expected one of: elevated, high, critical",
        ));
    }
    let observed_at = DateTime::parse_from_rfc3339(required(&req.observed_at, "observed_at")?)
        .map_err(|e| ApiError::validation("observed_at", format!("not an RFC 3339 time: {e}")))?
        .with_timezone(&Utc);
    if observed_at > now + chrono::Duration::minutes(5) {
        return Err(ApiError::validation("observed_at", "is in the future"));
    }
    validate::time("observed_at", observed_at, now)?;
    let narrative = required(&req.narrative, "narrative")?;
    validate::text("narrative", narrative, MAX_NARRATIVE_CHARS)?;
    Ok(ValidReport {
        student_no: student_no.to_owned(),
        category,
        level,
        observed_at,
        narrative: narrative.to_owned(),
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::validation("Idempotency-Key", "must be visible ASCII"))?
        .trim();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::validation(
            "Idempotency-Key",
            "1 to 255 characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The first response again, if the body is the same as the first time.
fn replay(stored: StoredResponse, request_hash: &str) -> Result<Response, ApiError> {
    if stored.request_hash != request_hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        stored.body,
    )
        .into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

/// Submit a warning report about a student.
#[utoipa::path(
    post,
    path = "/v1/reports",
    tag = "reports",
    request_body = ReportRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key: a repeated key returns the first response and files no second report")),
    responses(
        (status = 202, description = "Accepted: the rules engine will decide it", body = ReportAccepted),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such student in your class (head teachers, monitors) or school", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(token_id, report_id))]
pub async fn submit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    headers: HeaderMap,
    body: JsonBody<ReportRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request_hash = hex::encode(Sha256::digest(&body.raw));
    if let Some(key) = &key
        && let Some(stored) = idempotency::find(&state.db, caller.token_id, key).await?
    {
        return replay(stored, &request_hash);
    }
    // The role first: whether the student exists is no business of a role
    // that may not report.
    if !caller.may_submit_reports() {
        return Err(ApiError::Forbidden("your role may not submit reports"));
    }
    let now = Utc::now();
    let report = validate(&body.value, now)?;
    let school = roster::school_by_id(&state.db, caller.school_id)
        .await?
        .ok_or(ApiError::NotFound("school"))?;
    // A student of another class (or school) answers exactly as one that does
    // not exist.
    let student = roster::student_by_no(&state.db, school.id, &report.student_no)
        .await?
        .filter(|s| caller.may_report_on(s.school_id, s.class_id) == Access::Allowed)
        .ok_or(ApiError::NotFound("student"))?;
    let class = roster::class_by_id(&state.db, student.class_id)
        .await?
        .ok_or(ApiError::NotFound("class"))?;

    let report_id = Uuid::now_v7();
    tracing::Span::current().record("report_id", tracing::field::display(report_id));
    let accepted = ReportAccepted {
        report_id,
        event_id: format!("report:{report_id}"),
        status: "accepted".to_owned(),
    };
    let response_body =
        serde_json::to_string(&accepted).map_err(|e| ApiError::Internal(e.to_string()))?;
    let txn = begin_write(&state.db).await?;
    if let Some(key) = &key
        && let Some(stored) = idempotency::find(&*txn, caller.token_id, key).await?
    {
        txn.rollback().await?;
        return replay(stored, &request_hash);
    }
    let filing = Filing {
        caller: &caller,
        school: &school,
        student: &student,
        class_code: class.code.clone(),
        report: &report,
        id: report_id,
        zero_report: false,
    };
    file(&state, &*txn, filing, now).await?;
    if let Some(key) = &key {
        idempotency::save(
            &*txn,
            caller.token_id,
            key,
            &StoredResponse {
                request_hash,
                status: StatusCode::ACCEPTED.as_u16(),
                body: response_body,
            },
        )
        .await?;
    }
    // The report and its audit record commit together.
    let entry = audit::entry(
        &caller,
        &peer,
        "report.submit",
        format!("report:{report_id}"),
    );
    audit::record_in(&*txn, &state, entry).await?;
    txn.commit().await?;
    state.waker.wake();
    tracing::info!(level = report.level.as_str(), "report accepted");
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ReportRequest {
        ReportRequest {
            student_no: Some("S1".into()),
            category: Some("self_harm".into()),
            level: Some("high".into()),
            observed_at: Some("2026-11-29T08:00:00+08:00".into()),
            narrative: Some("text".into()),
        }
    }

    fn field_of(r: Result<ValidReport, ApiError>) -> String {
        match r {
            Err(ApiError::Validation { field, .. }) => field,
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("expected a validation error"),
        }
    }

    #[test]
    fn a_complete_report_validates() {
        let now = Utc::now();
        let v = validate(&request(), now).expect("valid");
        assert_eq!(v.level, RiskLevel::High);
        assert_eq!(v.category, ReportCategory::SelfHarm);
    }

    #[test]
    fn each_missing_or_bad_field_is_named() {
        let now = Utc::now();
        let mut r = request();
        r.student_no = None;
        assert_eq!(field_of(validate(&r, now)), "student_no");
        let mut r = request();
        r.level = Some("watch".into());
        assert_eq!(field_of(validate(&r, now)), "level");
        let mut r = request();
        r.category = Some("sad".into());
        assert_eq!(field_of(validate(&r, now)), "category");
        let mut r = request();
        r.observed_at = Some("yesterday".into());
        assert_eq!(field_of(validate(&r, now)), "observed_at");
        let mut r = request();
        r.observed_at = Some((now + chrono::Duration::hours(2)).to_rfc3339());
        assert_eq!(field_of(validate(&r, now)), "observed_at");
        let mut r = request();
        r.narrative = Some("  ".into());
        assert_eq!(field_of(validate(&r, now)), "narrative");
    }
}
