//! Zero reports (零报告) at key dates.
//!
//! - `GET /v1/zero-report-periods`: open and recent periods of the caller's school.
//! - `POST /v1/zero-reports`: a unit (a class, or the school) reports for a
//!   period: `"zero": true` or a list of incidents. Each incident is filed as a
//!   teacher report (the `reports` table and a `ReportSubmitted` INTAKE event
//!   through the outbox, in the same transaction), so the rules engine decides
//!   it exactly like one. The same body again answers the current version; a
//!   different body is a new version (the old one stays as history). After the
//!   deadline a report is accepted and marked late. A school cannot declare
//!   zero while one of its classes reported incidents (409 naming them).
//! - `GET /v1/zero-report-periods/{id}/compliance`: per unit `incidents`,
//!   `zero` or `missing`, for a school (its classes) or the district (its
//!   schools); `?format=csv` for a file.
//!
//! Why this file is over 600 lines: its three routes share the caller's
//! school, the period view and its levels; submitting files incidents with the
//! same `reports` write as `POST /v1/reports`, and the compliance report at the
//! end reads the rows that submitting writes.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sanyu_domain::zero_report::{Level, Period, UnitState};
use sanyu_domain::{Principal, ReportCategory, RiskLevel, Role};
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::entities::{school, zero_report};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::zero_reports::{self, NewZeroReport, SCHOOL_UNIT};
use sanyu_store::{begin_write, roster};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::routes::reports::{self, Filing, ValidReport};
use crate::validate;

const MAX_INCIDENTS: usize = 200;
const MAX_NARRATIVE_CHARS: usize = validate::MAX_NARRATIVE;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeriodView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub opens_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// `class` and/or `school`.
    pub levels: Vec<String>,
    /// The deadline has passed (reports are still accepted, marked late).
    pub past_deadline: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Periods {
    pub periods: Vec<PeriodView>,
}

fn level_str(l: Level) -> String {
    match l {
        Level::Class => "class",
        Level::School => "school",
    }
    .to_owned()
}

fn view(p: &Period, now: DateTime<Utc>) -> PeriodView {
    PeriodView {
        id: p.id.clone(),
        name: p.name.clone(),
        kind: p.kind.clone(),
        opens_at: p.opens_at,
        deadline: p.deadline,
        levels: p.levels.iter().copied().map(level_str).collect(),
        past_deadline: p.is_late(now),
    }
}

async fn school_of(state: &AppState, caller: &Principal) -> Result<school::Model, ApiError> {
    roster::school_by_id(&state.db, caller.school_id)
        .await?
        .ok_or(ApiError::NotFound("school"))
}

/// Open and recent zero-report periods of the caller's school.
#[utoipa::path(get, path = "/v1/zero-report-periods", tag = "zero reports",
    responses((status = 200, body = Periods), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id))]
pub async fn periods(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
) -> Result<Json<Periods>, ApiError> {
    if matches!(caller.role, Role::Service | Role::Monitor) {
        return Err(ApiError::Forbidden("your role has no zero-report duty"));
    }
    let school = school_of(&state, &caller).await?;
    let now = Utc::now();
    audit::record(
        &state,
        &caller,
        &peer,
        "zero_report.periods",
        format!("school:{}", school.id),
    )
    .await?;
    Ok(Json(Periods {
        periods: state
            .zero_report
            .visible(&school.code, school.district_code.as_deref(), now)
            .into_iter()
            .map(|p| view(p, now))
            .collect(),
    }))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentRequest {
    pub student_no: Option<String>,
    /// As for warning reports: suicidal_ideation, self_harm, …
    pub category: Option<String>,
    /// elevated, high or critical.
    pub level: Option<String>,
    /// When it was observed (RFC 3339); default: now.
    pub observed_at: Option<String>,
    /// Stored encrypted; never logged, never in a notification.
    pub narrative: Option<String>,
}

/// A unit's zero report: `class_code` for a class's report, none for the school's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZeroReportRequest {
    pub period_id: Option<String>,
    pub class_code: Option<String>,
    /// `true` for an explicit zero (nothing to report).
    #[serde(default)]
    pub zero: bool,
    #[serde(default)]
    pub incidents: Vec<IncidentRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ZeroReportAccepted {
    pub id: Uuid,
    pub period_id: String,
    /// `school` or the class code.
    pub unit: String,
    pub version: i32,
    /// `zero` or `incidents`.
    pub state: String,
    pub late: bool,
    pub incident_count: i32,
    /// The warning reports filed for incidents new in this version.
    pub report_ids: Vec<Uuid>,
}

/// What is kept of an incident in the zero report (no narrative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredIncident {
    student_no: String,
    category: String,
    level: String,
    report_id: Option<Uuid>,
}

fn required(v: &Option<String>, field: String) -> Result<&str, ApiError> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::validation(
            field.clone(),
            format!("`{field}` is required"),
        )),
    }
}

fn validate_incident(
    i: usize,
    r: &IncidentRequest,
    now: DateTime<Utc>,
) -> Result<ValidReport, ApiError> {
    let f = |name: &str| format!("incidents[{i}].{name}");
    let student_no = required(&r.student_no, f("student_no"))?;
    validate::line(&f("student_no"), student_no, validate::MAX_CODE)?;
    let category = required(&r.category, f("category"))?
        .parse::<ReportCategory>()
        .map_err(|e| ApiError::validation(f("category"), e.to_string()))?;
    let level = required(&r.level, f("level"))?
        .parse::<RiskLevel>()
        .map_err(|e| ApiError::validation(f("level"), e.to_string()))?;
    if !level.is_case_level() {
        return Err(ApiError::validation(
            f("level"),
            "expected one of: elevated, high, critical",
        ));
    }
    let observed_at = match r.observed_at.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => DateTime::parse_from_rfc3339(v)
            .map_err(|e| {
                ApiError::validation(f("observed_at"), format!("not an RFC 3339 time: {e}"))
            })?
            .with_timezone(&Utc),
        _ => now,
    };
    if observed_at > now + chrono::Duration::minutes(5) {
        return Err(ApiError::validation(f("observed_at"), "is in the future"));
    }
    validate::time(&f("observed_at"), observed_at, now)?;
    let narrative = required(&r.narrative, f("narrative"))?;
    validate::text(&f("narrative"), narrative, MAX_NARRATIVE_CHARS)?;
    Ok(ValidReport {
        student_no: student_no.to_owned(),
        category,
        level,
        observed_at,
        narrative: narrative.to_owned(),
    })
}

fn accepted(row: &zero_report::Model, report_ids: Vec<Uuid>) -> ZeroReportAccepted {
    ZeroReportAccepted {
        id: row.id,
        period_id: row.period_id.clone(),
        unit: row.unit.clone(),
        version: row.version,
        state: if row.zero { "zero" } else { "incidents" }.to_owned(),
        late: row.late,
        incident_count: row.incident_count,
        report_ids,
    }
}

/// Submit (or correct) a unit's zero report for a period.
#[utoipa::path(post, path = "/v1/zero-reports", tag = "zero reports", request_body = ZeroReportRequest,
    responses(
        (status = 201, description = "A new version", body = ZeroReportAccepted),
        (status = 200, description = "The same report again: the current version", body = ZeroReportAccepted),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown period, class or student", body = ErrorBody),
        (status = 409, description = "Not open yet, or a zero while classes reported incidents", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id, zero_report))]
pub async fn submit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    body: JsonBody<ZeroReportRequest>,
) -> Result<Response, ApiError> {
    let req = &body.value;
    if !matches!(caller.role, Role::Teacher | Role::Leader) {
        return Err(ApiError::Forbidden(
            "zero reports are submitted by head teachers (their class) and leaders (their school)",
        ));
    }
    let now = Utc::now();
    let period_id = required(&req.period_id, "period_id".into())?;
    let school = school_of(&state, &caller).await?;
    let period = state
        .zero_report
        .period(period_id)
        .filter(|p| p.applies_to(&school.code, school.district_code.as_deref()))
        .ok_or(ApiError::NotFound("zero-report period"))?
        .clone();
    if !period.is_open(now) {
        return Err(ApiError::Conflict {
            message: format!("period `{}` opens at {}", period.id, period.opens_at),
            allowed: Vec::new(),
        });
    }
    // The unit and the caller's scope over it.
    let class = match req.class_code.as_deref().map(str::trim) {
        Some(code) if !code.is_empty() => {
            if !period.has(Level::Class) {
                return Err(ApiError::validation(
                    "class_code",
                    "classes do not report for this period",
                ));
            }
            let class = zero_reports::classes_of(&state.db, school.id)
                .await?
                .into_iter()
                .find(|c| c.code == code)
                .ok_or(ApiError::NotFound("class"))?;
            if caller.role != Role::Teacher || caller.class_id != Some(class.id) {
                return Err(ApiError::Forbidden(
                    "a class's zero report is submitted by its head teacher",
                ));
            }
            Some(class)
        }
        _ => {
            if !period.has(Level::School) {
                return Err(ApiError::validation(
                    "class_code",
                    "schools do not report for this period: name the class",
                ));
            }
            if caller.role != Role::Leader {
                return Err(ApiError::Forbidden(
                    "a school's zero report is submitted by its leader",
                ));
            }
            None
        }
    };
    let unit = class
        .as_ref()
        .map_or_else(|| SCHOOL_UNIT.to_owned(), |c| c.code.clone());
    // Zero or incidents, never both, never neither.
    if req.zero != req.incidents.is_empty() {
        return Err(ApiError::validation(
            "zero",
            "either `\"zero\": true` or a non-empty list of `incidents`",
        ));
    }
    if req.incidents.len() > MAX_INCIDENTS {
        return Err(ApiError::validation(
            "incidents",
            format!("at most {MAX_INCIDENTS} incidents"),
        ));
    }
    let incidents = req
        .incidents
        .iter()
        .enumerate()
        .map(|(i, r)| validate_incident(i, r, now))
        .collect::<Result<Vec<_>, _>>()?;
    let mut students = Vec::with_capacity(incidents.len());
    for (i, inc) in incidents.iter().enumerate() {
        let student = roster::student_by_no(&state.db, school.id, &inc.student_no)
            .await?
            .filter(|s| class.as_ref().is_none_or(|c| c.id == s.class_id))
            .ok_or_else(|| {
                ApiError::validation(
                    format!("incidents[{i}].student_no"),
                    "no such student in this unit",
                )
            })?;
        students.push(student);
    }
    // The content that makes a version: the same content again is a replay.
    let mut canonical: Vec<(String, String, String, String)> = incidents
        .iter()
        .map(|i| {
            (
                i.student_no.clone(),
                i.category.as_str().to_owned(),
                i.level.as_str().to_owned(),
                hex::encode(Sha256::digest(i.narrative.as_bytes())),
            )
        })
        .collect();
    canonical.sort();
    let request_hash = hex::encode(Sha256::digest(
        serde_json::to_vec(&(req.zero, &canonical))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    ));

    let txn = begin_write(&state.db).await?;
    let current = zero_reports::current_for_school(&*txn, &period.id, school.id).await?;
    if let Some(mine) = current.iter().find(|r| r.unit == unit)
        && mine.request_hash == request_hash
    {
        txn.rollback().await?;
        let mut response = (StatusCode::OK, Json(accepted(mine, Vec::new()))).into_response();
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(response);
    }
    if class.is_none() && req.zero {
        let mut with_incidents: Vec<String> = current
            .iter()
            .filter(|r| r.class_id.is_some() && !r.zero)
            .map(|r| r.unit.clone())
            .collect();
        with_incidents.sort();
        if !with_incidents.is_empty() {
            txn.rollback().await?;
            return Err(ApiError::Conflict {
                message: format!(
                    "the school cannot report zero: classes {} reported incidents for this period",
                    with_incidents.join(", ")
                ),
                allowed: with_incidents,
            });
        }
    }
    let previous = current.iter().find(|r| r.unit == unit);
    let previous_incidents: BTreeSet<(String, String, String)> = previous
        .and_then(|p| serde_json::from_str::<Vec<StoredIncident>>(&p.incidents).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.student_no, i.category, i.level))
        .collect();
    let version = previous.map_or(1, |p| p.version + 1);
    let id = Uuid::now_v7();
    tracing::Span::current().record("zero_report", tracing::field::display(id));
    let late = period.is_late(now);
    let mut stored = Vec::with_capacity(incidents.len());
    let mut report_ids = Vec::new();
    for (inc, student) in incidents.iter().zip(&students) {
        let key = (
            inc.student_no.clone(),
            inc.category.as_str().to_owned(),
            inc.level.as_str().to_owned(),
        );
        // An incident already filed by an earlier version is not filed twice.
        let report_id = if previous_incidents.contains(&key) {
            None
        } else {
            let report_id = Uuid::now_v7();
            // Filed as `POST /v1/reports` files a report, marked as a zero
            // report's incident.
            let class = roster::class_by_id(&*txn, student.class_id)
                .await?
                .ok_or(ApiError::NotFound("class"))?;
            let filing = Filing {
                caller: &caller,
                school: &school,
                student,
                class_code: class.code,
                report: inc,
                id: report_id,
                zero_report: true,
            };
            reports::file(&state, &*txn, filing, now).await?;
            report_ids.push(report_id);
            Some(report_id)
        };
        stored.push(StoredIncident {
            student_no: key.0,
            category: key.1,
            level: key.2,
            report_id,
        });
    }
    let incident_count = i32::try_from(stored.len()).unwrap_or(i32::MAX);
    zero_reports::insert_version(
        &*txn,
        NewZeroReport {
            id,
            period_id: period.id.clone(),
            school_id: school.id,
            class_id: class.as_ref().map(|c| c.id),
            unit: unit.clone(),
            zero: req.zero,
            incident_count,
            incidents: serde_json::to_string(&stored)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            late,
            request_hash,
            submitted_by: caller.token_id,
            submitted_at: now,
        },
        version,
    )
    .await?;
    let event_id = format!("zero.submitted:{id}");
    outbox::enqueue(
        &*txn,
        OutboxEvent::of(
            subjects::zero_report_submitted(&school.code),
            event_id,
            now,
            &school.code,
            0,
            Payload::ZeroReport(v1::ZeroReportSubmitted {
                submission_id: id.to_string(),
                period_id: period.id.clone(),
                unit: unit.clone(),
                zero: req.zero,
                incident_count: u32::try_from(incident_count).unwrap_or(0),
                late,
            }),
            sanyu_platform::trace::current_traceparent(),
        ),
    )
    .await?;
    let entry = audit::entry(
        &caller,
        &peer,
        "zero_report.submit",
        format!("zero_report:{id}"),
    );
    audit::record_in(&*txn, &state, entry).await?;
    let row = zero_reports::get(&*txn, id)
        .await?
        .ok_or(ApiError::NotFound("zero report"))?;
    txn.commit().await?;
    state.waker.wake();
    tracing::info!(
        version,
        late,
        incidents = incident_count,
        "zero report accepted"
    );
    Ok((StatusCode::CREATED, Json(accepted(&row, report_ids))).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ComplianceQuery {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnitCompliance {
    /// The class code (school view) or the school code (district view).
    pub unit: String,
    /// `incidents`, `zero` or `missing`.
    pub state: String,
    pub late: bool,
    /// Versions submitted (0 when missing).
    pub version: i32,
    pub submitted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    pub incidents: usize,
    pub zero: usize,
    pub missing: usize,
    pub late: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Compliance {
    pub period: PeriodView,
    /// `school` (its classes) or `district` (its schools).
    pub scope: String,
    pub counts: Counts,
    pub units: Vec<UnitCompliance>,
    pub missing: Vec<String>,
}

fn unit_of(unit: String, report: Option<&zero_report::Model>) -> UnitCompliance {
    match report {
        None => UnitCompliance {
            unit,
            state: UnitState::Missing.as_str().to_owned(),
            late: false,
            version: 0,
            submitted_at: None,
        },
        Some(r) => UnitCompliance {
            unit,
            state: if r.zero {
                UnitState::Zero
            } else {
                UnitState::Incidents
            }
            .as_str()
            .to_owned(),
            late: r.late,
            version: r.version,
            submitted_at: Some(r.submitted_at),
        },
    }
}

/// Who reported for a period: a school's classes (leaders, the crisis team,
/// counsellors of the school) or the district's schools (district officers).
#[utoipa::path(get, path = "/v1/zero-report-periods/{id}/compliance", tag = "zero reports",
    params(("id" = String, Path, description = "The period id"), ComplianceQuery),
    responses((status = 200, body = Compliance, description = "JSON, or CSV with `?format=csv`"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(token_id))]
pub async fn compliance(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
    Query(q): Query<ComplianceQuery>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::validation("format", "expected json or csv")),
    };
    let district = match caller.role {
        Role::District => true,
        Role::Leader | Role::CrisisTeam | Role::Counsellor => false,
        _ => {
            return Err(ApiError::Forbidden(
                "compliance is for leaders, the crisis team, counsellors and the district",
            ));
        }
    };
    let school = school_of(&state, &caller).await?;
    let now = Utc::now();
    // A district officer's scope: the schools of the district (only the own
    // school when it names no district).
    let district_schools = if district {
        match &school.district_code {
            Some(code) => roster::schools_of_district(&state.db, code).await?,
            None => vec![school.clone()],
        }
    } else {
        Vec::new()
    };
    // A period is in scope when it applies to the caller's school, or (for the
    // district) to any school of the district, e.g. one school's addition.
    let period = state
        .zero_report
        .period(&id)
        .filter(|p| {
            p.applies_to(&school.code, school.district_code.as_deref())
                || district_schools
                    .iter()
                    .any(|s| p.applies_to(&s.code, s.district_code.as_deref()))
        })
        .ok_or(ApiError::NotFound("zero-report period"))?;
    let mut units = Vec::new();
    if district {
        for s in district_schools.into_iter().filter(|s| {
            period.applies_to(&s.code, s.district_code.as_deref()) && period.has(Level::School)
        }) {
            let current = zero_reports::current_for_school(&state.db, &period.id, s.id).await?;
            let mine = current.iter().find(|r| r.unit == SCHOOL_UNIT);
            units.push(unit_of(s.code.clone(), mine));
        }
    } else if period.has(Level::Class) {
        let current: HashMap<String, zero_report::Model> =
            zero_reports::current_for_school(&state.db, &period.id, school.id)
                .await?
                .into_iter()
                .map(|r| (r.unit.clone(), r))
                .collect();
        for c in zero_reports::classes_of(&state.db, school.id).await? {
            let report = current.get(&c.code);
            units.push(unit_of(c.code, report));
        }
    }
    let mut counts = Counts::default();
    for u in &units {
        match u.state.as_str() {
            "incidents" => counts.incidents += 1,
            "zero" => counts.zero += 1,
            _ => counts.missing += 1,
        }
        counts.late += usize::from(u.late);
    }
    let missing = units
        .iter()
        .filter(|u| u.state == "missing")
        .map(|u| u.unit.clone())
        .collect();
    audit::record(
        &state,
        &caller,
        &peer,
        "zero_report.compliance",
        format!("zero_period:{}", period.id),
    )
    .await?;
    let body = Compliance {
        period: view(period, now),
        scope: if district { "district" } else { "school" }.to_owned(),
        counts,
        units,
        missing,
    };
    if !csv {
        return Ok(Json(body).into_response());
    }
    let mut out = String::from("unit,state,late,version,submitted_at\n");
    for u in &body.units {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            csv_field(&u.unit),
            u.state,
            u.late,
            u.version,
            u.submitted_at.map(|t| t.to_rfc3339()).unwrap_or_default()
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"zero-report-compliance.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// One CSV field, quoted when needed (and never read as a formula).
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}
