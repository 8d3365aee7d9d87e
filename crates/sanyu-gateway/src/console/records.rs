//! The student archive (心理档案) and the key population (重点关注). Both
//! call the API's own handlers with the signed-in staff member as the caller
//! (`routes::students::timeline`, `routes::students::key_population` and
//! `routes::students::finish_watch`): the same role checks, the same view
//! type per role (full for counsellors and the crisis team, counts and
//! states without names for leaders), the same audit records.

use axum::Form;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Page, Post};
use super::sign_in::CsrfForm;
use crate::AppState;
use crate::error::ApiError;
use crate::routes::ops::DeadLetterView;
use crate::routes::students::{KeyPopulationQuery, KeyPopulationView, TimelineView};

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    done: Option<String>,
}

/// `GET /students/{id}`: a student's archive as the API shows it to my role.
pub async fn archive(
    State(state): State<AppState>,
    page: Page,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(_q): Query<PageQuery>,
) -> Response {
    let read = crate::routes::students::timeline(
        State(state.clone()),
        page.caller(),
        page.peer(),
        crate::extract::Path(id),
    )
    .await;
    let (kind, value) = match read {
        Ok(Json(TimelineView::Casework(full))) => ("casework", serde_json::to_value(&full)),
        Ok(Json(TimelineView::Oversight(summary))) => ("oversight", serde_json::to_value(&summary)),
        Err(e) => return page.error(e),
    };
    let value = match value {
        Ok(v) => v,
        Err(e) => return page.error(ApiError::Internal(e.to_string())),
    };
    page.render(
        &state,
        "archive.html",
        context! {
            archive => Value::from(minijinja::value::Serde(&value)),
            kind => kind,
        },
    )
}

/// `GET /key-population`: follow-ups and the watch list, overdue first.
pub async fn key_population(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<PageQuery>,
) -> Response {
    let read = crate::routes::students::key_population(
        State(state.clone()),
        page.caller(),
        page.peer(),
        crate::extract::Query(KeyPopulationQuery { limit: Some(500) }),
    )
    .await;
    let (kind, value) = match read {
        Ok(Json(KeyPopulationView::Casework(mut full))) => {
            // Overdue first, then by when they fall due (the API's order for
            // follow-ups; the watch list comes by date only).
            full.watch_list
                .sort_by_key(|w| (!w.overdue, w.follow_up_on, w.since));
            ("casework", serde_json::to_value(&full))
        }
        Ok(Json(KeyPopulationView::Oversight(mut o))) => {
            o.watch_list
                .sort_by_key(|w| (!w.overdue, w.follow_up_on, w.since));
            ("oversight", serde_json::to_value(&o))
        }
        Err(e) => return page.error(e),
    };
    let value = match value {
        Ok(v) => v,
        Err(e) => return page.error(ApiError::Internal(e.to_string())),
    };
    let notice = match q.done.as_deref() {
        Some("watch") => Some("done_watch"),
        Some("follow_up_done") => Some("done_follow_up_done"),
        _ => None,
    };
    page.render(
        &state,
        "key_population.html",
        context! {
            list => Value::from(minijinja::value::Serde(&value)),
            kind => kind,
            notice => notice,
        },
    )
}

/// `POST /key-population/watch/{id}/done`: the API's `finish_watch`.
pub async fn watch_done(
    State(state): State<AppState>,
    post: Post,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let page = match post.check("/key-population", &f.csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return page.error(ApiError::NotFound("watch entry"));
    };
    let done = crate::routes::students::finish_watch(
        State(state.clone()),
        page.caller(),
        page.peer(),
        crate::extract::Path(id),
    )
    .await;
    page.then_to(done, "/key-population?done=watch")
}

/// `GET /dead-letters`: the messages the services gave up on, for the crisis
/// team (and admins) of the school to act on (`routes::ops::dead_letters`).
pub async fn dead_letters(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<PageQuery>,
) -> Response {
    let read = crate::routes::ops::dead_letters(
        State(state.clone()),
        crate::auth::Bearer(sanyu_domain::Holder::School(page.signed.principal.clone())),
        page.peer(),
    )
    .await;
    let letters: Vec<LetterRow> = match read {
        Ok(Json(letters)) => letters.into_iter().map(LetterRow::of).collect(),
        Err(e) => return page.error(e),
    };
    page.render(
        &state,
        "dead_letters.html",
        context! {
            letters => Value::from(minijinja::value::Serde(&letters)),
            notice => (q.done.as_deref() == Some("resolved")).then_some("done_resolved"),
        },
    )
}

/// A dead letter as the review list shows it. Its title is what kind of
/// message could not be handled, never the recorded reason: a reason is
/// free text of whichever service gave up and may name a student (a student
/// number is an identifier). The reason stays one tap away, for whoever
/// follows it up.
#[derive(Debug, serde::Serialize)]
struct LetterRow {
    #[serde(flatten)]
    letter: DeadLetterView,
    /// The catalogue key of the title.
    kind: &'static str,
    /// The case an alarm is about (`case:<id>`), to open it.
    case_id: Option<Uuid>,
}

impl LetterRow {
    fn of(letter: DeadLetterView) -> Self {
        use sanyu_events::subjects;
        let kind = match (letter.stream.as_str(), letter.consumer.as_str()) {
            (subjects::INTAKE_STREAM, sanyu_importer::DEAD_LETTER_CONSUMER) => "dl_kind_screening",
            (subjects::INTAKE_STREAM, _) => "dl_kind_signal",
            (subjects::CASE_STREAM, _) => "dl_kind_case",
            (subjects::NOTIFY_STREAM, _) => "dl_kind_notify",
            (subjects::ZERO_STREAM, _) => "dl_kind_zero_report",
            ("TIMERS", _) => "dl_kind_timer",
            _ => "dl_kind_other",
        };
        let case_id = letter
            .event_id
            .as_deref()
            .and_then(|e| e.strip_prefix("case:"))
            .and_then(|id| Uuid::parse_str(id).ok());
        Self {
            letter,
            kind,
            case_id,
        }
    }
}

/// Whether the role reviews dead letters (the API answers the others 403).
pub(super) fn may_dead_letters(signed: &super::session::Signed) -> bool {
    matches!(
        signed.principal.role,
        sanyu_domain::Role::CrisisTeam | sanyu_domain::Role::Admin
    )
}

/// `POST /dead-letters/{id}/resolve`: the API's `resolve_dead_letter`.
pub async fn resolve_dead_letter(
    State(state): State<AppState>,
    post: Post,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let page = match post.check("/dead-letters", &f.csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return page.error(ApiError::NotFound("dead letter"));
    };
    let done = crate::routes::ops::resolve_dead_letter(
        State(state.clone()),
        crate::auth::Bearer(sanyu_domain::Holder::School(page.signed.principal.clone())),
        page.peer(),
        crate::extract::Path(id),
    )
    .await;
    page.then_to(done, "/dead-letters?done=resolved")
}
