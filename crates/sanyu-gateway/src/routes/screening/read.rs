//! Reading an import's results: the rows (`results`), how they fall into
//! the bands of each instrument (`bands`) and the rows refused with their
//! reasons (`errors`, CSV). Only counsellors and the crisis team read
//! results; row errors go to whoever may follow the import.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sanyu_domain::Principal;
use sanyu_store::entities::screening_import;
use sanyu_store::screening;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    RESULTS_PAGE_DEFAULT, RESULTS_PAGE_MAX, import_error, job_in_scope, may_import,
    may_read_results,
};
use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::validate;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultView {
    /// The file's row number (the header is row 1).
    pub row: i64,
    pub student_no: String,
    pub instrument: String,
    /// ok or reject.
    pub outcome: String,
    pub reason: Option<String>,
    pub total: Option<i32>,
    pub band: Option<String>,
    /// Subscale scores (factor sums and means), as the catalogue defines them.
    #[schema(value_type = Object)]
    pub subscales: serde_json::Value,
    pub flags: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultPage {
    pub import_id: Uuid,
    pub results: Vec<ResultView>,
    /// Pass as `after_row` for the next page; absent on the last page.
    pub next_after_row: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct ResultQuery {
    pub after_row: Option<i64>,
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BandView {
    /// Catalogue id of the instrument (`phq9`).
    pub instrument: String,
    pub band: String,
    /// Accepted rows in the band.
    pub count: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BandDistribution {
    pub import_id: Uuid,
    /// Per instrument, its bands in the catalogue's order (mildest first);
    /// bands no row fell in are left out.
    pub bands: Vec<BandView>,
}

/// How the accepted rows of an import fall into the bands of each instrument.
#[utoipa::path(
    get,
    path = "/v1/screening-imports/{id}/bands",
    tag = "screening",
    params(("id" = Uuid, Path, description = "Import id")),
    responses((status = 200, body = BandDistribution), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn bands(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<Json<BandDistribution>, ApiError> {
    if !may_read_results(&caller) {
        return Err(ApiError::Forbidden(
            "only counsellors and the crisis team read screening results",
        ));
    }
    let job = job_in_scope(&state, &caller, id).await?;
    let mut counts = screening::band_counts(&state.db, job.id).await?;
    audit::record(
        &state,
        &caller,
        &peer,
        "screening.bands_read",
        format!("screening_import:{id}"),
    )
    .await?;
    // The catalogue's order of bands (unknown ones last, by name).
    let rank = |c: &screening::BandCount| {
        sanyu_screening::instrument(&c.instrument)
            .ok()
            .and_then(|i| i.bands().iter().position(|b| b.name == c.band))
            .unwrap_or(usize::MAX)
    };
    counts
        .sort_by(|a, b| (&a.instrument, rank(a), &a.band).cmp(&(&b.instrument, rank(b), &b.band)));
    Ok(Json(BandDistribution {
        import_id: job.id,
        bands: counts
            .into_iter()
            .map(|c| BandView {
                instrument: c.instrument,
                band: c.band,
                count: c.count,
            })
            .collect(),
    }))
}

/// One record per row of the file, in file order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/screening-imports/{id}/results",
    tag = "screening",
    params(
        ("id" = Uuid, Path, description = "Import id"),
        ("after_row" = Option<i64>, Query, description = "Rows after this file row (paging)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 10000, description = "At most this many rows (default 1000, at most 10000)"),
    ),
    responses((status = 200, body = ResultPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn results(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<Uuid>,
    Query(query): Query<ResultQuery>,
) -> Result<Json<ResultPage>, ApiError> {
    if !may_read_results(&caller) {
        return Err(ApiError::Forbidden(
            "only counsellors and the crisis team read screening results",
        ));
    }
    let job = job_in_scope(&state, &caller, id).await?;
    let limit = validate::limit(query.limit, RESULTS_PAGE_DEFAULT, RESULTS_PAGE_MAX)?;
    let rows = screening::results(&state.db, job.id, query.after_row.unwrap_or(0), limit).await?;
    audit::record(
        &state,
        &caller,
        &peer,
        "screening.results_read",
        format!("screening_import:{id}"),
    )
    .await?;
    let next_after_row = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| r.row_number))
        .flatten();
    let results = rows
        .into_iter()
        .map(|r| ResultView {
            row: r.row_number,
            student_no: r.student_no,
            instrument: r.instrument,
            outcome: r.outcome,
            reason: r.reason,
            total: r.total,
            band: r.band,
            subscales: r
                .subscales
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(serde_json::Value::Null),
            flags: serde_json::from_str(&r.flags).unwrap_or_default(),
        })
        .collect();
    Ok(Json(ResultPage {
        import_id: job.id,
        results,
        next_after_row,
    }))
}

/// Row-level errors as CSV: `row,column,reason`.
#[utoipa::path(
    get,
    path = "/v1/screening-imports/{id}/errors",
    tag = "screening",
    params(("id" = Uuid, Path, description = "Import id")),
    responses((status = 200, description = "CSV with header row,column,reason", content_type = "text/csv"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn errors(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let job = errors_in_scope(&state, &caller, &peer, id).await?;
    let csv = sanyu_importer::errors_csv(&state.db, job.id)
        .await
        .map_err(import_error)?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"screening-{id}-errors.csv\""),
            ),
        ],
        csv,
    )
        .into_response())
}

/// The import whose row errors the caller may read (role, school), the
/// read audited.
async fn errors_in_scope(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    id: Uuid,
) -> Result<screening_import::Model, ApiError> {
    if !may_import(caller) {
        return Err(ApiError::Forbidden(
            "your role may not read screening imports",
        ));
    }
    let job = job_in_scope(state, caller, id).await?;
    audit::record(
        state,
        caller,
        peer,
        "screening.errors_read",
        format!("screening_import:{id}"),
    )
    .await?;
    Ok(job)
}

/// One row error (the CSV's `row,column,reason`).
#[derive(Debug, Serialize)]
pub struct RowErrorView {
    pub row: i64,
    pub column: String,
    pub reason: String,
}

/// The first `limit` row errors of an import, in file order, for the
/// console: the same role, scope and audit as [`errors`].
pub(crate) async fn error_rows(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    id: Uuid,
    limit: u64,
) -> Result<Vec<RowErrorView>, ApiError> {
    let job = errors_in_scope(state, caller, peer, id).await?;
    Ok(screening::row_errors(&state.db, job.id, (0, 0), limit)
        .await?
        .into_iter()
        .map(|e| RowErrorView {
            row: e.row_number,
            column: e.column,
            reason: e.reason,
        })
        .collect())
}
