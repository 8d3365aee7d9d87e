//! Screening imports (心理普查) in the console. The pages call the API's own
//! functions with the signed-in staff member as the caller
//! (`routes::screening::{list, start, status, bands, results, error_rows,
//! errors}`): the same roles (counsellors, the crisis team and admins of the
//! school import and follow; only counsellors and the crisis team read bands
//! and scores), the same 404 for another school's import, the same audit.
//!
//! - `GET /screening`: the school's imports, newest first, and the upload form
//!   (multipart; its first field is the session's CSRF token, checked before
//!   the file is read). A file the API refuses (422) comes back on the form
//!   with the reason in words.
//! - `GET /screening/{id}`: progress (a `<progress>` bar that htmx refreshes
//!   every second while the import is queued or running: the fragment
//!   `GET /screening/{id}/progress`, which asks for a full reload once the
//!   import ended); then counts, the distribution of bands per instrument (a
//!   table with server-drawn SVG bars), the results a page at a time and the
//!   row errors.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::actions::Refused;
use super::i18n::Lang;
use super::page::Page;
use super::page::{signed_in, signed_multipart};
use super::session::Signed;
use super::view;
use crate::AppState;
use crate::audit::Peer;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::screening::{
    self as api, BandDistribution, ImportStatus, ListQuery, ResultPage, ResultQuery,
};

/// The codings of the form, the most common first (every one the catalogue
/// knows; `sanyu_screening::Coding`).
const CODINGS: [&str; 7] = ["0-3", "1-4", "0-4", "1-5", "0-2", "yes1-no0", "yes1-no2"];

/// Imports listed on the page.
const LISTED: u64 = 100;
/// Results per page.
const RESULTS_PAGE: u64 = 50;
/// Row errors shown (all of them are in the CSV).
const ERRORS_SHOWN: u64 = 200;

/// Whether the role imports and follows screenings (the API answers the
/// others 403): the pages link here only for them.
pub(super) fn may_screening(signed: &Signed) -> bool {
    api::may_import(&signed.principal)
}

/// An instrument of the catalogue as the form offers it.
#[derive(Debug, Serialize)]
struct InstrumentChoice {
    id: &'static str,
    name: &'static str,
    codings: Vec<&'static str>,
}

fn instrument_choices() -> Vec<InstrumentChoice> {
    sanyu_screening::catalogue()
        .instruments()
        .iter()
        .map(|i| InstrumentChoice {
            id: i.id(),
            name: i.name(),
            codings: i.codings().iter().map(|c| c.as_str()).collect(),
        })
        .collect()
}

/// Catalogue id → short name (`phq9` → `PHQ-9`).
fn instrument_names() -> BTreeMap<&'static str, &'static str> {
    sanyu_screening::catalogue()
        .instruments()
        .iter()
        .map(|i| (i.id(), i.name()))
        .collect()
}

/// `GET /screening`: the school's imports and the upload form.
pub async fn list(State(state): State<AppState>, page: Page) -> Response {
    let answer = render_list(&state, &page.signed, &page.peer, page.lang, None).await;
    page.answer(&state, answer)
}

async fn render_list(
    state: &AppState,
    signed: &Signed,
    peer: &Peer,
    lang: Lang,
    error: Option<Refused>,
) -> Response {
    let read = api::list(
        State(state.clone()),
        Caller(signed.principal.clone()),
        Peer(peer.0.clone()),
        crate::extract::Query(ListQuery {
            limit: Some(LISTED),
        }),
    )
    .await;
    let imports = match read {
        Ok(Json(list)) => list.imports,
        Err(e) => return view::error_page(lang, e),
    };
    let status = error.as_ref().map_or(StatusCode::OK, |r| r.status);
    view::page(
        "screening.html",
        lang,
        status,
        context! {
            imports => Value::from(minijinja::value::Serde(&imports)),
            instruments => Value::from(minijinja::value::Serde(&instrument_choices())),
            names => Value::from(minijinja::value::Serde(&instrument_names())),
            codings => CODINGS,
            today => chrono::Utc::now().with_timezone(&state.console.tz).format("%Y-%m-%d").to_string(),
            error => error.as_ref().map(|r| r.key),
            error_field => error.as_ref().and_then(|r| r.field),
            error_detail => error.and_then(|r| r.detail),
            here => "/screening",
            ..super::view::chrome(state, lang, signed),
        },
    )
}

/// Why an upload was refused, in the console's words (the API's message
/// beside them).
fn refusal(e: &ApiError) -> Option<Refused> {
    match e {
        ApiError::Validation { field, message } => {
            let (key, label) = match field.as_str() {
                "file" => ("sc_refused_file", "sc_file"),
                "instrument" => ("sc_refused_declaration", "sc_instrument"),
                "coding" => ("sc_refused_declaration", "sc_coding"),
                "administered" => ("sc_refused_declaration", "sc_administered"),
                _ => ("refused_invalid", ""),
            };
            Some(Refused {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                key,
                detail: Some(message.clone()),
                field: (!label.is_empty()).then_some(label),
            })
        }
        ApiError::PayloadTooLarge(_) => Some(Refused {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            key: "sc_refused_too_large",
            detail: None,
            field: Some("sc_file"),
        }),
        _ => None,
    }
}

/// `POST /screening` (multipart): the API's `start` for the signed-in staff
/// member, behind the session's CSRF token (the form's first field).
pub async fn upload(
    State(state): State<AppState>,
    peer: Peer,
    method: Method,
    headers: HeaderMap,
    multipart: Result<crate::extract::Multipart, ApiError>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let mut multipart = match multipart {
        Ok(crate::extract::Multipart(m)) => m,
        Err(e) => return view::error_page(lang, e),
    };
    let signed = match signed_multipart(
        &state,
        &headers,
        &method,
        &peer,
        lang,
        "/screening",
        &mut multipart,
    )
    .await
    {
        Ok(s) => s,
        Err(r) => return r,
    };
    match api::start(&state, &signed.principal, &peer, &mut multipart).await {
        Ok(accepted) => view::see_other(&format!("/screening/{}", accepted.import_id)),
        Err(e) => match refusal(&e) {
            Some(refused) => render_list(&state, &signed, &peer, lang, Some(refused)).await,
            None => view::error_page(lang, e),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct ImportPageQuery {
    after_row: Option<i64>,
}

fn finished(s: &ImportStatus) -> bool {
    matches!(s.state.as_str(), "done" | "failed" | "refused")
}

/// The import's status as the API answers it to the caller, or the page
/// that says why not.
async fn read_status(
    state: &AppState,
    signed: &Signed,
    peer: &Peer,
    lang: Lang,
    id: &str,
) -> Result<ImportStatus, Response> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Err(view::error_page(
            lang,
            ApiError::NotFound("screening import"),
        ));
    };
    match api::status(
        State(state.clone()),
        Caller(signed.principal.clone()),
        Peer(peer.0.clone()),
        crate::extract::Path(id),
    )
    .await
    {
        Ok(Json(s)) => Ok(s),
        Err(e) => Err(view::error_page(lang, e)),
    }
}

/// One band's bar.
#[derive(Debug, Serialize)]
struct BandBar {
    band: String,
    count: i64,
    /// Percent of the instrument's banded rows, rounded.
    percent: i64,
}

/// One instrument's distribution: every band of the catalogue (none left
/// out, so an empty band shows as 0), then any band it does not know.
#[derive(Debug, Serialize)]
struct BandChart {
    instrument: String,
    name: String,
    total: i64,
    bars: Vec<BandBar>,
}

fn band_charts(d: &BandDistribution) -> Vec<BandChart> {
    let mut by_instrument: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    for b in &d.bands {
        by_instrument
            .entry(b.instrument.as_str())
            .or_default()
            .push((b.band.as_str(), b.count));
    }
    by_instrument
        .into_iter()
        .map(|(instrument, counts)| {
            let known = sanyu_screening::instrument(instrument).ok();
            let mut bands: Vec<(String, i64)> = known
                .map(|i| {
                    i.bands()
                        .iter()
                        .map(|b| {
                            let n = counts
                                .iter()
                                .find(|(name, _)| *name == b.name)
                                .map_or(0, |(_, n)| *n);
                            (b.name.clone(), n)
                        })
                        .collect()
                })
                .unwrap_or_default();
            for (name, n) in &counts {
                if !bands.iter().any(|(b, _)| b == name) {
                    bands.push(((*name).to_owned(), *n));
                }
            }
            let total: i64 = bands.iter().map(|(_, n)| n).sum();
            BandChart {
                instrument: instrument.to_owned(),
                name: known.map_or(instrument, |i| i.name()).to_owned(),
                total,
                bars: bands
                    .into_iter()
                    .map(|(band, count)| BandBar {
                        percent: if total > 0 {
                            (count * 100 + total / 2) / total
                        } else {
                            0
                        },
                        band,
                        count,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// `GET /screening/{id}`: progress, then counts, bands, results and row
/// errors as the caller's role may see them.
pub async fn import(
    State(state): State<AppState>,
    page: Page,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<ImportPageQuery>,
) -> Response {
    let status = match read_status(&state, &page.signed, &page.peer, page.lang, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let done = status.state == "done";
    let scores = api::may_read_results(&page.signed.principal);
    let mut charts: Option<Vec<BandChart>> = None;
    let mut results: Option<ResultPage> = None;
    let mut errors = None;
    if done && scores {
        let read = api::bands(
            State(state.clone()),
            page.caller(),
            page.peer(),
            crate::extract::Path(status.import_id),
        )
        .await;
        charts = match read {
            Ok(Json(d)) => Some(band_charts(&d)),
            Err(e) => return page.error(e),
        };
        let read = api::results(
            State(state.clone()),
            page.caller(),
            page.peer(),
            crate::extract::Path(status.import_id),
            crate::extract::Query(ResultQuery {
                after_row: q.after_row.filter(|r| *r > 0),
                limit: Some(RESULTS_PAGE),
            }),
        )
        .await;
        results = match read {
            Ok(Json(page)) => Some(page),
            Err(e) => return page.error(e),
        };
        errors = match api::error_rows(
            &state,
            &page.signed.principal,
            &page.peer,
            status.import_id,
            ERRORS_SHOWN,
        )
        .await
        {
            Ok(rows) => Some(rows),
            Err(e) => return page.error(e),
        };
    }
    page.render(
        &state,
        "screening_import.html",
        context! {
            s => Value::from(minijinja::value::Serde(&status)),
            finished => finished(&status),
            instrument_name => instrument_names().get(status.instrument.as_str()).copied().unwrap_or(status.instrument.as_str()),
            scores => scores,
            charts => charts.map(|c| Value::from(minijinja::value::Serde(c))),
            results => results.map(|r| Value::from(minijinja::value::Serde(r))),
            after_row => q.after_row.filter(|r| *r > 0),
            errors => errors.map(|e| Value::from(minijinja::value::Serde(e))),
            errors_shown => ERRORS_SHOWN,
        },
    )
}

/// `GET /screening/{id}/progress`: the progress fragment htmx swaps in while
/// the import runs; once it ended, `HX-Refresh` reloads the whole page (the
/// results). Opened without htmx, it is the import's page.
pub async fn progress(
    State(state): State<AppState>,
    peer: Peer,
    method: Method,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let here = format!("/screening/{id}");
    if !headers.contains_key("hx-request") {
        return match Uuid::parse_str(&id) {
            Ok(id) => view::see_other(&format!("/screening/{id}")),
            Err(_) => view::error_page(lang, ApiError::NotFound("screening import")),
        };
    }
    let signed = match signed_in(&state, &headers, &method, &peer, lang, &here).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let status = match read_status(&state, &signed, &peer, lang, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ended = finished(&status);
    let mut response = view::page(
        "screening_progress.html",
        lang,
        StatusCode::OK,
        context! {
            s => Value::from(minijinja::value::Serde(&status)),
            finished => ended,
        },
    );
    if ended {
        response
            .headers_mut()
            .insert("hx-refresh", HeaderValue::from_static("true"));
    }
    response
}

/// `GET /screening/{id}/errors.csv`: the API's row errors as CSV.
pub async fn errors_csv(
    State(state): State<AppState>,
    peer: Peer,
    method: Method,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let lang = Lang::of(&headers, None);
    let here = format!("/screening/{id}");
    let signed = match signed_in(&state, &headers, &method, &peer, lang, &here).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return view::error_page(lang, ApiError::NotFound("screening import"));
    };
    match api::errors(
        State(state.clone()),
        Caller(signed.principal.clone()),
        Peer(peer.0.clone()),
        crate::extract::Path(id),
    )
    .await
    {
        Ok(csv) => csv.into_response(),
        Err(e) => view::error_page(lang, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::screening::BandView;

    #[test]
    fn the_form_offers_every_coding_of_the_catalogue() {
        let mut all: Vec<&str> = sanyu_screening::Coding::ALL
            .iter()
            .map(|c| c.as_str())
            .collect();
        let mut offered = CODINGS.to_vec();
        all.sort_unstable();
        offered.sort_unstable();
        assert_eq!(all, offered);
    }

    #[test]
    fn every_band_of_the_catalogue_is_a_bar_in_its_order_with_its_share() {
        let d = BandDistribution {
            import_id: Uuid::now_v7(),
            bands: vec![
                BandView {
                    instrument: "phq9".into(),
                    band: "severe".into(),
                    count: 1,
                },
                BandView {
                    instrument: "phq9".into(),
                    band: "minimal".into(),
                    count: 3,
                },
            ],
        };
        let charts = band_charts(&d);
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].name, "PHQ-9");
        assert_eq!(charts[0].total, 4);
        let bars: Vec<(&str, i64, i64)> = charts[0]
            .bars
            .iter()
            .map(|b| (b.band.as_str(), b.count, b.percent))
            .collect();
        assert_eq!(
            bars,
            vec![
                ("minimal", 3, 75),
                ("mild", 0, 0),
                ("moderate", 0, 0),
                ("moderately_severe", 0, 0),
                ("severe", 1, 25),
            ]
        );
    }
}
