//! The queue and the case page. Both call the API's own handlers with the
//! signed-in staff member as the caller: `routes::cases::list` and
//! `routes::cases::get` (role, scope, the view type of the role, the audit
//! record) and `routes::casework::acknowledge` (the one acknowledge). A page
//! shows what those answer, nothing they did not.

use std::cmp::Reverse;
use std::collections::HashMap;

use axum::Form;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use minijinja::{Value, context};
use sanyu_domain::{CaseStatus, CaseSubject, LadderState, RiskLevel};
use sanyu_store::entities::case;
use sanyu_store::roster;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::actions::{self, Refused};
use super::i18n::Lang;
use super::page::{Page, Post};
use super::session::{self, Signed};
use super::sign_in::CsrfForm;
use super::view;
use crate::AppState;
use crate::audit::Peer;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::cases::{CaseList, CaseQuery, CaseView};

#[derive(Debug, Deserialize)]
pub struct QueueQuery {
    show: Option<String>,
}

/// Minutes from now to `deadline` (negative: overdue).
fn minutes_left(deadline: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let secs = (deadline - now).num_seconds();
    if secs >= 0 {
        (secs + 59) / 60
    } else {
        secs / 60
    }
}

/// The names of staff members of the caller's school (colleagues, never students).
async fn staff_names(
    state: &AppState,
    school_id: Uuid,
    ids: Vec<Uuid>,
) -> Result<HashMap<String, String>, ApiError> {
    Ok(roster::staff_of_school_by_ids(&state.db, school_id, ids)
        .await?
        .into_iter()
        .map(|s| (s.id.to_string(), s.name))
        .collect())
}

#[derive(Debug, Serialize)]
struct QueueRow {
    id: Uuid,
    reference: String,
    level: RiskLevel,
    status: CaseStatus,
    subject: CaseSubject,
    student_no: Option<String>,
    student_name: Option<String>,
    class_code: Option<String>,
    unacknowledged: bool,
    overdue: bool,
    /// Minutes to the acknowledge deadline (absolute value when overdue).
    minutes: Option<i64>,
    assignee: Option<String>,
    opened_at: DateTime<Utc>,
    /// Being worked and nobody acted for the level's days
    /// (`[escalation.stale_after_days]`): flagged.
    stale: bool,
    /// Whole days since the last action (or the acknowledgement), when stale.
    no_action_days: Option<i64>,
}

/// `GET /` and `GET /queue`: the open cases of my school (a head teacher:
/// own class), unacknowledged first by time left, overdue highlighted.
pub async fn queue(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<QueueQuery>,
) -> Response {
    let filters = queue_filters(&page.signed.principal);
    let show = q
        .show
        .as_deref()
        .and_then(|s| filters.iter().find(|f| **f == s).copied())
        .unwrap_or("all");
    let query = CaseQuery {
        status: None,
        level: None,
        school: None,
        assignee: (show == "mine").then(|| "me".to_owned()),
        overdue: None,
        limit: Some(500),
    };
    let listed = crate::routes::cases::list(
        State(state.clone()),
        page.caller(),
        page.peer(),
        crate::extract::Query(query),
    )
    .await;
    let rows = match listed {
        Ok(Json(CaseList { cases })) => queue_rows(&state, &page.signed, cases, show).await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return page.error(e),
    };
    page.render(
        &state,
        "queue.html",
        context! {
            rows => Value::from(minijinja::value::Serde(&rows)),
            show => show,
            filters => filters.to_vec(),
            here => "/queue",
        },
    )
}

/// The queue's filters a role can use: "assigned to me" and "unassigned"
/// mean something only to those who take and are given cases (counsellors
/// and the crisis team: `Disclosure::Casework`). Head teachers and leaders
/// read the queue, never take a case: all of it, no filter.
pub(super) fn queue_filters(p: &sanyu_domain::Principal) -> &'static [&'static str] {
    if p.disclosure() == Some(sanyu_domain::Disclosure::Casework) {
        &["all", "mine", "unassigned"]
    } else {
        &[]
    }
}

pub(super) fn with_lang(
    state: &AppState,
    mut response: Response,
    query_lang: Option<&str>,
) -> Response {
    if let Some(l) = query_lang.and_then(Lang::parse) {
        response.headers_mut().append(
            axum::http::header::SET_COOKIE,
            session::set_cookie(
                &state.console,
                session::LANG_COOKIE,
                l.short(),
                "/",
                Some(365 * 24 * 3600),
            ),
        );
    }
    response
}

async fn queue_rows(
    state: &AppState,
    signed: &Signed,
    cases: Vec<crate::routes::cases::CaseSummary>,
    show: &str,
) -> Result<Vec<QueueRow>, ApiError> {
    // The list's own rows, read again for their deadlines: ids the API
    // answered, nothing else.
    let ids: Vec<Uuid> = cases.iter().map(|c| c.id).collect();
    let models: HashMap<Uuid, case::Model> = sanyu_store::cases::by_ids(&state.db, ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let assignees: Vec<Uuid> = models
        .values()
        .filter_map(|c| c.assignee_staff_id)
        .collect();
    let names = staff_names(state, signed.principal.school_id, assignees).await?;
    let now = Utc::now();
    let mut rows: Vec<QueueRow> = cases
        .into_iter()
        .filter(|c| c.status.is_active())
        .filter_map(|c| {
            let m = models.get(&c.id)?;
            if show == "unassigned" && m.assignee_staff_id.is_some() {
                return None;
            }
            let unacknowledged =
                m.ladder_state == LadderState::Running || m.acknowledged_at.is_none();
            let minutes = m
                .ack_deadline
                .filter(|_| unacknowledged)
                .map(|d| minutes_left(d, now));
            let since = sanyu_case::after_ack::no_action_since(m);
            let stale = state
                .escalation
                .stale_after_days
                .is_stale(m.level, m.status, since, now);
            Some(QueueRow {
                id: c.id,
                reference: c.reference,
                level: c.level,
                status: c.status,
                subject: c.subject,
                student_no: c.student_no,
                student_name: c.student_name,
                class_code: c.class_code,
                unacknowledged,
                overdue: minutes.is_some_and(|m| m < 0),
                minutes: minutes.map(i64::abs),
                assignee: m
                    .assignee_staff_id
                    .and_then(|id| names.get(&id.to_string()).cloned()),
                opened_at: c.opened_at,
                stale,
                no_action_days: since.filter(|_| stale).map(|s| (now - s).num_days()),
            })
        })
        .collect();
    let deadline_of = |r: &QueueRow| {
        models
            .get(&r.id)
            .and_then(|m| m.ack_deadline)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    // Unacknowledged first, the nearest deadline first; then by level and age.
    rows.sort_by(|a, b| match (a.unacknowledged, b.unacknowledged) {
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (true, true) => (deadline_of(a), Reverse(a.level), a.opened_at).cmp(&(
            deadline_of(b),
            Reverse(b.level),
            b.opened_at,
        )),
        (false, false) => (Reverse(a.level), a.opened_at).cmp(&(Reverse(b.level), b.opened_at)),
    });
    Ok(rows)
}

#[derive(Debug, Deserialize)]
pub struct CasePageQuery {
    done: Option<String>,
}

/// `GET /cases/{id}`: the case as the API shows it to my role, acknowledge
/// first. A GET changes nothing (a chat app's link preview included).
pub async fn case(
    State(state): State<AppState>,
    page: Page,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<CasePageQuery>,
) -> Response {
    let notice = match q.done.as_deref() {
        Some("acknowledged") => Some("acknowledged_ok".to_owned()),
        Some(done) if actions::ACTIONS.contains(&done) => Some(format!("done_{done}")),
        _ => None,
    };
    let answer = render_case(
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

/// The case page, with a notice (what was just done) or a refusal in words.
pub(super) async fn render_case(
    state: &AppState,
    signed: &Signed,
    peer: &Peer,
    lang: Lang,
    id: String,
    notice: Option<String>,
    error: Option<Refused>,
) -> Response {
    let read = crate::routes::cases::get(
        State(state.clone()),
        Caller(signed.principal.clone()),
        Peer(peer.0.clone()),
        crate::extract::Path(id),
    )
    .await;
    let view = match read {
        Ok(Json(v)) => v,
        Err(e) => return view::error_page(lang, e),
    };
    let (kind, can_acknowledge, ack_deadline, acknowledged_at, ladder_state, case_id) = match &view
    {
        CaseView::Casework(d) => (
            "casework",
            d.allowed_actions.iter().any(|a| a == "acknowledge"),
            d.ack_deadline,
            d.acknowledged_at,
            d.ladder_state,
            d.case.id,
        ),
        CaseView::Oversight(o) => (
            "oversight",
            false,
            o.ack_deadline,
            o.acknowledged_at,
            o.ladder_state,
            o.case.id,
        ),
    };
    let case_student = match &view {
        CaseView::Casework(d) => d.case.student_id,
        CaseView::Oversight(o) => o.case.student_id,
    }
    .map(|s| s.to_string());
    let value = match serde_json::to_value(&view) {
        Ok(v) => v,
        Err(e) => return view::error_page(lang, ApiError::Internal(e.to_string())),
    };
    let mut people: Vec<Uuid> = Vec::new();
    collect_staff_ids(&value, &mut people);
    let names = match staff_names(state, signed.principal.school_id, people).await {
        Ok(n) => n,
        Err(e) => return view::error_page(lang, e),
    };
    let unacknowledged = ladder_state == LadderState::Running || acknowledged_at.is_none();
    let minutes = ack_deadline
        .filter(|_| unacknowledged)
        .map(|d| minutes_left(d, Utc::now()));
    let status = error.as_ref().map_or(StatusCode::OK, |r| r.status);
    // A closed case: what its ladder did, not the plan it would follow.
    let ladder_record = match &view {
        CaseView::Casework(d) if d.case.status == sanyu_domain::CaseStatus::Closed => {
            Some(ladder_record(d))
        }
        _ => None,
    };
    let forms = match &view {
        CaseView::Casework(d) => match case_forms(state, &signed.principal, d).await {
            Ok(f) => f,
            Err(e) => return view::error_page(lang, e),
        },
        CaseView::Oversight(_) => CaseForms::default(),
    };
    view::page(
        "case.html",
        lang,
        status,
        context! {
            case => Value::from(minijinja::value::Serde(&value)),
            case_id => case_id.to_string(),
            kind => kind,
            ladder_record => ladder_record.as_ref().map(|r| Value::from(minijinja::value::Serde(r))),
            can_acknowledge => can_acknowledge,
            overdue => minutes.is_some_and(|m| m < 0),
            minutes => minutes.map(i64::abs),
            names => Value::from(minijinja::value::Serde(&names)),
            notice => notice,
            error => error.as_ref().map(|r| r.key),
            error_field => error.as_ref().and_then(|r| r.field),
            error_detail => error.and_then(|r| r.detail),
            offer => Value::from(minijinja::value::Serde(&forms.offer)),
            any_form => forms.offer.any(),
            staff => Value::from(minijinja::value::Serde(&forms.staff)),
            guardians => Value::from(minijinja::value::Serde(&forms.guardians)),
            close_outcomes => actions::CLOSE_OUTCOMES.to_vec(),
            levels => ["watch", "elevated", "high", "critical"],
            channels => ["phone", "in_person", "sms", "message", "other"],
            contact_outcomes => ["reached", "no_answer", "declined", "meeting_agreed"],
            today => Utc::now().with_timezone(&state.console.tz).format("%Y-%m-%d").to_string(),
            me => signed.principal.staff_id.map(|s| s.to_string()),
            archive => case_student.filter(|_| may_key_population(signed)),
            here => format!("/cases/{case_id}"),
            ..super::view::chrome(state, lang, signed),
        },
    )
}

/// What the escalation of a closed case did: who was told (and how many
/// of those messages failed), when it was acknowledged, when it closed.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct LadderRecord {
    opened_at: DateTime<Utc>,
    /// Messages sent (or delivered) to people on the ladder.
    told: usize,
    failed: usize,
    acknowledged_at: Option<DateTime<Utc>>,
    /// Minutes from opening to the acknowledgement.
    minutes_to_acknowledge: Option<i64>,
    closed_at: Option<DateTime<Utc>>,
}

fn ladder_record(d: &crate::routes::cases::CaseDetail) -> LadderRecord {
    let told = d
        .notifications
        .iter()
        .filter(|n| matches!(n.status.as_str(), "sent" | "delivered"))
        .count();
    let failed = d
        .notifications
        .iter()
        .filter(|n| n.status == "failed")
        .count();
    LadderRecord {
        opened_at: d.case.opened_at,
        told,
        failed,
        acknowledged_at: d.acknowledged_at,
        minutes_to_acknowledge: d
            .acknowledged_at
            .map(|a| (a - d.case.opened_at).num_minutes().max(0)),
        // The last close (a case reopened and closed again closed then).
        closed_at: d
            .timeline
            .iter()
            .filter(|a| matches!(a.action.as_str(), "close" | "merge"))
            .map(|a| a.at)
            .max(),
    }
}

/// Whether the role reads the key population and student archives (the API
/// answers the others 403): the pages link there only for them.
pub(super) fn may_key_population(signed: &Signed) -> bool {
    matches!(
        signed.principal.role,
        sanyu_domain::Role::Counsellor
            | sanyu_domain::Role::CrisisTeam
            | sanyu_domain::Role::Leader
    )
}

/// The forms of a case page and the choices they need.
#[derive(Default)]
struct CaseForms {
    offer: actions::Offer,
    staff: Vec<actions::Choice>,
    guardians: Vec<actions::Choice>,
}

async fn case_forms(
    state: &AppState,
    principal: &sanyu_domain::Principal,
    d: &crate::routes::cases::CaseDetail,
) -> Result<CaseForms, ApiError> {
    let offer = actions::offer(principal, d);
    let staff = if offer.assign {
        actions::assignable(state, principal.school_id).await?
    } else {
        Vec::new()
    };
    let guardians = match (offer.contact, d.case.student_id) {
        (true, Some(student)) => actions::guardians(state, student).await?,
        _ => Vec::new(),
    };
    Ok(CaseForms {
        offer,
        staff,
        guardians,
    })
}

/// Every `*staff_id` value of an answer (assignee, actors, recipients).
fn collect_staff_ids(v: &serde_json::Value, out: &mut Vec<Uuid>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k.ends_with("staff_id")
                    && let Some(id) = v.as_str().and_then(|s| Uuid::parse_str(s).ok())
                {
                    out.push(id);
                } else {
                    collect_staff_ids(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_staff_ids(v, out);
            }
        }
        _ => {}
    }
}

/// `POST /cases/{id}/acknowledge`: the API's acknowledge
/// (`routes::casework::acknowledge`) for the signed-in staff member, behind
/// the session's CSRF token. A conflict (acknowledged already, closed) is
/// shown in words on the case page.
pub async fn acknowledge(
    State(state): State<AppState>,
    post: Post,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let here = format!("/cases/{id}");
    let page = match post.check(&here, &f.csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let done = crate::routes::casework::acknowledge_via(
        &state,
        &page.signed.principal,
        &page.peer,
        &id,
        sanyu_case::AckChannel::Console,
    )
    .await;
    match done {
        Ok(_) => match super::safe_return(Some(&here)) {
            Some(path) => view::see_other(&format!("{path}?done=acknowledged")),
            None => view::see_other("/"),
        },
        Err(ApiError::Conflict { .. }) => {
            render_case(
                &state,
                &page.signed,
                &page.peer,
                page.lang,
                id,
                None,
                Some(Refused {
                    status: StatusCode::CONFLICT,
                    key: "conflict_acknowledge",
                    detail: None,
                    field: None,
                }),
            )
            .await
        }
        Err(e) => page.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_left_round_up_and_overdue_is_negative() {
        let now = Utc::now();
        assert_eq!(minutes_left(now + chrono::Duration::seconds(61), now), 2);
        assert_eq!(minutes_left(now - chrono::Duration::seconds(125), now), -2);
    }

    #[test]
    fn staff_ids_are_found_anywhere_in_an_answer() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let v = serde_json::json!({
            "assignee_staff_id": a.to_string(),
            "timeline": [{"actor_staff_id": b.to_string(), "text": "x"}],
            "student_id": Uuid::now_v7().to_string(),
        });
        let mut out = Vec::new();
        collect_staff_ids(&v, &mut out);
        out.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(out, want);
    }
}
