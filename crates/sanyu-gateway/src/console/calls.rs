//! Hotline calls (热线来电): the school's calls and one call, and naming an
//! unidentified caller. Each page calls the API's own handler with the
//! signed-in staff member as the caller — `routes::hotline::list`,
//! `routes::hotline::get` (the summary opened there, the read audited) and
//! `routes::hotline::link` — so the roles, the school scope and the audit
//! are the API's.

use axum::Form;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use minijinja::{Value, context};
use serde::Deserialize;

use super::actions::{self, Refused};
use super::i18n::{Lang, t};
use super::page::{Page, Post};
use super::session::Signed;
use super::view;
use crate::AppState;
use crate::audit::Peer;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::routes::hotline::{self, HotlineCallList, HotlineCallQuery, LinkRequest};

/// Whether the role reads hotline calls (the API answers the others 403):
/// the pages link there only for them.
pub(super) fn may_calls(signed: &Signed) -> bool {
    hotline::may_work_calls(&signed.principal)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    unidentified: Option<String>,
    level: Option<String>,
    /// A date (YYYY-MM-DD) in the school's zone.
    since: Option<String>,
    before: Option<String>,
}

fn some(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `since` as the API takes it: the start of that day in the school's zone.
fn since_of(date: Option<&str>, tz: chrono_tz::Tz) -> Result<Option<String>, ApiError> {
    let Some(date) = date else { return Ok(None) };
    let bad = || ApiError::validation("since", "a date, YYYY-MM-DD");
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad())?;
    let start = day
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(tz).earliest())
        .ok_or_else(bad)?;
    Ok(Some(start.to_rfc3339()))
}

/// `GET /hotline-calls`: the school's calls, newest first, with filters
/// (unidentified only, level, since a date) and a link to the older ones.
pub async fn list(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<ListQuery>,
) -> Response {
    let unidentified = some(&q.unidentified).is_some();
    let level = some(&q.level).map(str::to_owned);
    let since = some(&q.since).map(str::to_owned);
    let read = match since_of(since.as_deref(), state.console.tz) {
        Ok(since_time) => {
            hotline::list(
                State(state.clone()),
                page.caller(),
                page.peer(),
                crate::extract::Query(HotlineCallQuery {
                    unidentified: Some(unidentified),
                    level: level.clone(),
                    since: since_time,
                    before: some(&q.before).map(str::to_owned),
                    limit: Some(50),
                }),
            )
            .await
        }
        Err(e) => Err(e),
    };
    let (list, error) = match read {
        Ok(Json(list)) => (list, None),
        Err(e) => match actions::refused(&e) {
            // A filter the API refused: the page again, the refusal in words.
            Some(r) if r.status == StatusCode::UNPROCESSABLE_ENTITY => (
                HotlineCallList {
                    calls: Vec::new(),
                    next_before: None,
                },
                Some(r),
            ),
            _ => return page.error(e),
        },
    };
    // The older page keeps the filters.
    let next = list.next_before.map(|before| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if unidentified {
            query.append_pair("unidentified", "true");
        }
        if let Some(l) = &level {
            query.append_pair("level", l);
        }
        if let Some(s) = &since {
            query.append_pair("since", s);
        }
        query.append_pair("before", &before.to_string());
        query.finish()
    });
    let status = error.as_ref().map_or(StatusCode::OK, |r| r.status);
    page.render_as(
        &state,
        "calls.html",
        status,
        context! {
            calls => Value::from(minijinja::value::Serde(&list.calls)),
            next => next,
            paged => some(&q.before).is_some(),
            unidentified => unidentified,
            level => level,
            since => since,
            levels => ["critical", "high", "elevated", "watch"],
            error => error.as_ref().map(|r| r.key),
            error_field => error.as_ref().and_then(|r| r.field),
            error_detail => error.and_then(|r| r.detail),
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct CallQuery {
    done: Option<String>,
}

/// `GET /hotline-calls/{id}`: one call as the API shows it; for a caller
/// nobody identified, the form that names the student.
pub async fn call(
    State(state): State<AppState>,
    page: Page,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<CallQuery>,
) -> Response {
    let notice = (q.done.as_deref() == Some("link")).then_some("done_call_link");
    let answer = render_call(
        &state,
        &page.signed,
        &page.peer,
        page.lang,
        id,
        notice,
        None,
    )
    .await;
    page.answer(&state, answer)
}

/// The C-SSRS screener answers (`ynnnnn-n`) in words: the six items, then
/// recent behaviour.
fn cssrs_words(lang: Lang, code: &str) -> Option<String> {
    let (items, recent) = code.split_once('-')?;
    let word = |c: char| match c {
        'y' | 'Y' => Some(t(lang, "yes")),
        'n' | 'N' => Some(t(lang, "no")),
        _ => None,
    };
    let items = items
        .chars()
        .enumerate()
        .map(|(i, c)| word(c).map(|w| format!("{} {w}", i + 1)))
        .collect::<Option<Vec<_>>>()?;
    let recent = word(recent.chars().next()?)?;
    Some(format!(
        "{} · {}{recent}",
        items.join(" · "),
        t(lang, "cssrs_recent")
    ))
}

async fn render_call(
    state: &AppState,
    signed: &Signed,
    peer: &Peer,
    lang: Lang,
    id: String,
    notice: Option<&str>,
    error: Option<Refused>,
) -> Response {
    let read = hotline::get(
        State(state.clone()),
        Caller(signed.principal.clone()),
        Peer(peer.0.clone()),
        crate::extract::Path(id),
    )
    .await;
    let call = match read {
        Ok(Json(call)) => call,
        Err(e) => return view::error_page(lang, e),
    };
    let cssrs = call.cssrs.as_deref().and_then(|c| cssrs_words(lang, c));
    let status = error.as_ref().map_or(StatusCode::OK, |r| r.status);
    let here = format!("/hotline-calls/{}", call.id);
    view::page(
        "call.html",
        lang,
        status,
        context! {
            call => Value::from(minijinja::value::Serde(&call)),
            cssrs => cssrs,
            archive => super::pages::may_key_population(signed),
            notice => notice,
            error => error.as_ref().map(|r| r.key),
            error_field => error.as_ref().and_then(|r| r.field),
            error_detail => error.and_then(|r| r.detail),
            here => here,
            ..super::view::chrome(state, lang, signed),
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    csrf: String,
    student_no: Option<String>,
}

/// The words for a refusal of the link: the call's own conflicts, else the
/// case page's (`actions::refused`).
fn link_refused(e: &ApiError) -> Option<Refused> {
    let conflict = |key| Refused {
        status: StatusCode::CONFLICT,
        key,
        detail: None,
        field: None,
    };
    match e {
        ApiError::Conflict { message, .. } if message.contains("already about a student") => {
            Some(conflict("refused_call_linked"))
        }
        ApiError::Conflict { message, .. } if message.contains("still opening") => {
            Some(conflict("refused_call_opening"))
        }
        // The call itself is not found (or another school's): a 404 page.
        ApiError::NotFound("hotline call") => None,
        other => actions::refused(other),
    }
}

/// `POST /hotline-calls/{id}/link`: the API's `link` for the signed-in staff
/// member, behind the session's CSRF token. Success goes back to the call;
/// a refusal is the call page again with the refusal in words.
pub async fn link(
    State(state): State<AppState>,
    post: Post,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<LinkForm>,
) -> Response {
    let here = format!("/hotline-calls/{id}");
    let page = match post.check(&here, &f.csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let done = hotline::link(
        State(state.clone()),
        page.caller(),
        page.peer(),
        crate::extract::Path(id.clone()),
        JsonBody {
            value: LinkRequest {
                student_no: f.student_no,
            },
            raw: Bytes::new(),
        },
    )
    .await;
    match done {
        Ok(Json(accepted)) => view::see_other(&format!("/hotline-calls/{}?done=link", accepted.id)),
        Err(e) => match link_refused(&e) {
            Some(r) => {
                render_call(
                    &state,
                    &page.signed,
                    &page.peer,
                    page.lang,
                    id,
                    None,
                    Some(r),
                )
                .await
            }
            None => page.error(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screener_answers_read_as_words() {
        assert_eq!(
            cssrs_words(Lang::En, "ynnnnn-y").as_deref(),
            Some("1 yes · 2 no · 3 no · 4 no · 5 no · 6 no · Behaviour within 3 months: yes")
        );
        assert_eq!(cssrs_words(Lang::En, "garbage"), None);
    }

    #[test]
    fn a_since_date_is_the_start_of_that_day_in_the_schools_zone() {
        assert_eq!(
            since_of(Some("2026-12-06"), chrono_tz::Asia::Shanghai)
                .expect("a date")
                .as_deref(),
            Some("2026-12-06T00:00:00+08:00")
        );
        assert!(since_of(Some("yesterday"), chrono_tz::UTC).is_err());
        assert_eq!(since_of(None, chrono_tz::UTC).ok(), Some(None));
    }

    #[test]
    fn a_call_already_named_is_refused_in_words() {
        let e = ApiError::Conflict {
            message: "this call is already about a student".into(),
            allowed: Vec::new(),
        };
        assert_eq!(link_refused(&e).map(|r| r.key), Some("refused_call_linked"));
        assert!(link_refused(&ApiError::NotFound("hotline call")).is_none());
        assert_eq!(
            link_refused(&ApiError::NotFound("student")).map(|r| r.status),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
    }
}
