//! Screening imports (心理普查): upload a file with its declaration, follow the
//! import, read its results and its row errors.
//!
//! * `POST /v1/screening-imports` (multipart): the file is spooled to disk as it
//!   arrives (never held in memory whole), its header is checked against the
//!   declared instrument and coding (a file that does not fit is refused with
//!   422), and the import runs in the background: `202` with its id.
//! * Counsellors, the crisis team, admins and service tokens of the school may
//!   import and follow an import; only counsellors and the crisis team read
//!   results (scores). Another school's import answers 404. Every request is
//!   audited.

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::extract::multipart::{Field, MultipartError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use sanyu_domain::{Principal, Role};
use sanyu_importer::{Declaration, ImportError, NewJob};
use sanyu_screening::ColumnProfile;
use sanyu_store::entities::screening_import;
use sanyu_store::{roster, screening};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Multipart, Path, Query};
use crate::validate;

mod read;
pub use read::*;

/// Largest declaration field (the column profile is the longest).
const MAX_FIELD_BYTES: usize = 64 * 1024;
const RESULTS_PAGE_DEFAULT: u64 = 1000;
const RESULTS_PAGE_MAX: u64 = 10_000;
const LIST_DEFAULT: u64 = 50;
const LIST_MAX: u64 = 500;

pub(crate) fn may_import(caller: &Principal) -> bool {
    matches!(
        caller.role,
        Role::Counsellor | Role::CrisisTeam | Role::Admin | Role::Service
    )
}

/// Scores are for the people who work cases.
pub(crate) fn may_read_results(caller: &Principal) -> bool {
    matches!(caller.role, Role::Counsellor | Role::CrisisTeam)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportAccepted {
    pub import_id: Uuid,
    pub state: String,
    /// Where to follow the import.
    pub status_url: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportStatus {
    pub import_id: Uuid,
    pub school: String,
    pub instrument: String,
    pub coding: String,
    pub administered_on: NaiveDate,
    pub file_name: String,
    /// queued, running, done, failed or refused.
    pub state: String,
    /// Data rows of the file, when known (CSV).
    pub rows_total: Option<i64>,
    pub rows_read: i64,
    pub rows_accepted: i64,
    pub rows_rejected: i64,
    /// Rows with a suicide alert (scored or rejected).
    pub alerts_raised: i64,
    pub percent_done: Option<u8>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn multipart_error(e: MultipartError, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(limit)
    } else {
        ApiError::validation("", format!("multipart body: {}", e.body_text()))
    }
}

async fn text_field(
    mut field: Field<'_>,
    name: &'static str,
    limit: usize,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::validation(
                name,
                format!("at most {MAX_FIELD_BYTES} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let text =
        String::from_utf8(bytes).map_err(|_| ApiError::validation(name, "not UTF-8 text"))?;
    // The column profile is JSON (its strings are checked once parsed); the
    // rest are one line each.
    if name == "profile" {
        validate::text(name, &text, MAX_FIELD_BYTES)?;
    } else {
        validate::line(name, &text, validate::MAX_LINE)?;
    }
    Ok(text)
}

/// A spooled upload, deleted on drop unless kept.
struct Spooled {
    path: PathBuf,
    keep: bool,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn spool(
    mut field: Field<'_>,
    path: PathBuf,
    limit: usize,
) -> Result<(Spooled, u64), ApiError> {
    let spooled = Spooled { path, keep: false };
    let mut file = tokio::fs::File::create(&spooled.path)
        .await
        .map_err(|e| ApiError::Internal(format!("spool file: {e}")))?;
    let mut size = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("spool write: {e}")))?;
    }
    file.sync_all()
        .await
        .map_err(|e| ApiError::Internal(format!("spool sync: {e}")))?;
    Ok((spooled, size))
}

fn required(value: Option<String>, field: &'static str) -> Result<String, ApiError> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::validation(
            field,
            format!("`{field}` is required"),
        )),
    }
}

/// Start a screening import.
#[utoipa::path(
    post,
    path = "/v1/screening-imports",
    tag = "screening",
    request_body(content_type = "multipart/form-data", description = "`file` (CSV in UTF-8 or GBK, or XLSX) and the declaration: `instrument` (PHQ-9, PHQ-A, GAD-7, SCL-90, MHT, UPI, SDQ, K10, C-SSRS), `coding` (0-3, 1-4, 0-4, 1-5, 0-2, yes1-no0, yes1-no2), `administered` (YYYY-MM-DD), optional `school` (code; must be the caller's), `sheet` (XLSX) and `profile` (column profile as JSON: student_no, item_patterns, item_columns, header_row)"),
    responses(
        (status = 202, description = "Accepted: the import runs in the background", body = ImportAccepted),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Another school", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "Invalid declaration, or a file whose columns do not fit the instrument (refused as a whole)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(token_id, import_id))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Multipart(mut multipart): Multipart,
) -> Result<Response, ApiError> {
    let accepted = start(&state, &caller, &peer, &mut multipart).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Start an import from a multipart body, reading its fields from where the
/// caller left the stream: the one path of the API's `create` and of the
/// console's upload form (which reads its CSRF field first). Role, school,
/// declaration, the file's header (422 when it does not fit), audit, queue.
pub(crate) async fn start(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    multipart: &mut axum::extract::Multipart,
) -> Result<ImportAccepted, ApiError> {
    if !may_import(caller) {
        return Err(ApiError::Forbidden(
            "only counsellors, the crisis team, admins and service tokens may import screenings",
        ));
    }
    let school = roster::school_by_id(&state.db, caller.school_id)
        .await?
        .ok_or(ApiError::NotFound("school"))?;
    let import_id = Uuid::now_v7();
    tracing::Span::current().record("import_id", tracing::field::display(import_id));
    let spool_dir = state.imports.spool_dir.clone();
    let limit = state.imports.upload_limit_bytes;
    tokio::fs::create_dir_all(&spool_dir)
        .await
        .map_err(|e| ApiError::Internal(format!("spool directory: {e}")))?;

    let mut upload: Option<(Spooled, String)> = None;
    let mut fields: std::collections::BTreeMap<&'static str, String> = Default::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                if upload.is_some() {
                    return Err(ApiError::validation("file", "give one file"));
                }
                let file_name = field
                    .file_name()
                    .map(|n| n.chars().take(255).collect::<String>())
                    .unwrap_or_else(|| "upload".to_owned());
                validate::line("file", &file_name, validate::MAX_LINE)?;
                let (spooled, size) =
                    spool(field, spool_dir.join(format!("{import_id}.upload")), limit).await?;
                if size == 0 {
                    return Err(ApiError::validation("file", "the file is empty"));
                }
                upload = Some((spooled, file_name));
            }
            other => {
                let key = match other {
                    "school" => "school",
                    "instrument" => "instrument",
                    "coding" => "coding",
                    "administered" => "administered",
                    "sheet" => "sheet",
                    "profile" => "profile",
                    _ => {
                        return Err(ApiError::validation(
                            other,
                            format!(
                                "unknown field `{other}`; expected file, school, instrument, coding, administered, sheet, profile"
                            ),
                        ));
                    }
                };
                fields.insert(key, text_field(field, key, limit).await?);
            }
        }
    }
    if let Some(code) = fields.remove("school").map(|c| c.trim().to_owned())
        && !code.is_empty()
        && code != school.code
    {
        // Another school's existence is not confirmed.
        return Err(ApiError::NotFound("school"));
    }
    let instrument = required(fields.remove("instrument"), "instrument")?;
    let coding = required(fields.remove("coding"), "coding")?;
    let administered = required(fields.remove("administered"), "administered")?;
    let administered_on = NaiveDate::parse_from_str(&administered, "%Y-%m-%d")
        .map_err(|_| ApiError::validation("administered", "expected a date YYYY-MM-DD"))?;
    if administered_on > Utc::now().date_naive() + chrono::Duration::days(1) {
        return Err(ApiError::validation("administered", "is in the future"));
    }
    validate::date("administered", administered_on, Utc::now())?;
    let sheet = fields
        .remove("sheet")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let profile: ColumnProfile = match fields.remove("profile").filter(|p| !p.trim().is_empty()) {
        None => ColumnProfile::default(),
        Some(text) => {
            let document: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ApiError::validation("profile", format!("column profile: {e}")))?;
            validate::json(&document).map_err(|e| match e {
                ApiError::Validation { field, message } => {
                    ApiError::validation(format!("profile.{field}"), message)
                }
                other => other,
            })?;
            serde_json::from_value(document)
                .map_err(|e| ApiError::validation("profile", format!("column profile: {e}")))?
        }
    };
    sanyu_importer::check_declaration(&instrument, &coding).map_err(import_error)?;
    let Some((mut spooled, file_name)) = upload else {
        return Err(ApiError::validation("file", "`file` is required"));
    };

    audit::record(
        state,
        caller,
        peer,
        "screening.import",
        format!("screening_import:{import_id}"),
    )
    .await?;
    let job = sanyu_importer::prepare(
        &state.db,
        NewJob {
            id: import_id,
            school: school.clone(),
            declaration: Declaration {
                instrument,
                coding,
                administered_on,
                sheet,
                profile,
                file_name,
            },
            path: spooled.path.clone(),
            created_by: Some(caller.token_id),
            xlsx_limits: state.imports.xlsx_limits.clone(),
        },
    )
    .await
    .map_err(import_error)?;
    spooled.keep = true;
    state.imports.spawn(job.id);
    tracing::info!("screening import queued");
    Ok(ImportAccepted {
        import_id: job.id,
        state: job.state,
        status_url: format!("/v1/screening-imports/{}", job.id),
    })
}

fn import_error(e: ImportError) -> ApiError {
    match e {
        ImportError::Declaration { field, message } => ApiError::validation(field, message),
        ImportError::Refused { message, .. } => ApiError::validation("file", message),
        ImportError::File(message) => ApiError::validation("file", message),
        ImportError::NotFound(_) => ApiError::NotFound("screening import"),
        ImportError::Store(e) => e.into(),
        // Only running a job meets a lease; preparing one never does.
        e @ (ImportError::Busy { .. } | ImportError::LeaseLost(_)) => {
            ApiError::Internal(e.to_string())
        }
    }
}

/// The caller's school's import, or 404.
async fn job_in_scope(
    state: &AppState,
    caller: &Principal,
    id: Uuid,
) -> Result<screening_import::Model, ApiError> {
    match screening::get(&state.db, id).await? {
        Some(job) if job.school_id == caller.school_id => Ok(job),
        _ => Err(ApiError::NotFound("screening import")),
    }
}

/// Follow an import: state, counts and percent done.
#[utoipa::path(
    get,
    path = "/v1/screening-imports/{id}",
    tag = "screening",
    params(("id" = Uuid, Path, description = "Import id")),
    responses((status = 200, body = ImportStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<Json<ImportStatus>, ApiError> {
    if !may_import(&caller) {
        return Err(ApiError::Forbidden(
            "your role may not follow screening imports",
        ));
    }
    let job = job_in_scope(&state, &caller, id).await?;
    let school = roster::school_by_id(&state.db, job.school_id)
        .await?
        .ok_or(ApiError::NotFound("school"))?;
    audit::record(
        &state,
        &caller,
        &peer,
        "screening.import_status",
        format!("screening_import:{id}"),
    )
    .await?;
    Ok(Json(status_view(job, school.code)))
}

fn status_view(job: screening_import::Model, school: String) -> ImportStatus {
    ImportStatus {
        import_id: job.id,
        school,
        percent_done: sanyu_importer::percent_done(&job),
        instrument: job.instrument,
        coding: job.coding,
        administered_on: job.administered_on,
        file_name: job.file_name,
        state: job.state,
        rows_total: job.rows_total,
        rows_read: job.rows_read,
        rows_accepted: job.rows_accepted,
        rows_rejected: job.rows_rejected,
        alerts_raised: job.alerts_raised,
        error: job.error,
        created_at: job.created_at,
        finished_at: job.finished_at,
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportList {
    /// The school's imports, the newest first.
    pub imports: Vec<ImportStatus>,
}

/// The school's imports, the newest first: state, counts, alerts raised.
#[utoipa::path(
    get,
    path = "/v1/screening-imports",
    tag = "screening",
    params(("limit" = Option<u64>, Query, minimum = 1, maximum = 500, description = "At most this many imports (default 50, at most 500)")),
    responses((status = 200, body = ImportList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Query(query): Query<ListQuery>,
) -> Result<Json<ImportList>, ApiError> {
    if !may_import(&caller) {
        return Err(ApiError::Forbidden(
            "your role may not follow screening imports",
        ));
    }
    let limit = validate::limit(query.limit, LIST_DEFAULT, LIST_MAX)?;
    let school = roster::school_by_id(&state.db, caller.school_id)
        .await?
        .ok_or(ApiError::NotFound("school"))?;
    let jobs = screening::list(&state.db, caller.school_id, limit).await?;
    audit::record(
        &state,
        &caller,
        &peer,
        "screening.imports_list",
        format!("school:{}", caller.school_id),
    )
    .await?;
    Ok(Json(ImportList {
        imports: jobs
            .into_iter()
            .map(|job| status_view(job, school.code.clone()))
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn the_screening_routes_are_documented() {
        let doc = crate::ApiDoc::openapi();
        for path in [
            "/v1/screening-imports",
            "/v1/screening-imports/{id}",
            "/v1/screening-imports/{id}/results",
            "/v1/screening-imports/{id}/errors",
            "/v1/screening-imports/{id}/bands",
        ] {
            assert!(doc.paths.paths.contains_key(path), "openapi lacks {path}");
        }
    }
}
