//! The duty roster page (值班表, issue 16): who of the school is on duty now
//! and who next, per role; the rotations and the overrides not yet over;
//! and, for the school's admin, leaders and crisis team, a form to add an
//! override (a named person covers a role from one time to another: 高考
//! week, a holiday, a colleague's leave) and a button to take one out. The
//! page calls the API's own handlers (`routes::duty`) as the signed-in staff
//! member: the same role checks, the same validation, the same audit
//! records. Rotations are set up through the API (`POST /v1/duty/rotations`).
//! The page also shows `sanyu contacts check` for the school: the ladder
//! rungs that would reach nobody, and the windows of the next 30 days with
//! nobody reachable on duty (those within a week marked).

use axum::Form;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use minijinja::{Value, context};
use sanyu_domain::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::actions::{body, local_time};
use super::page::{Page, Post};
use super::sign_in::CsrfForm;
use crate::AppState;
use crate::error::ApiError;
use crate::routes::duty::{self as api, OnCallQuery, OverrideRequest};

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    done: Option<String>,
}

/// The roles that see the page (the API answers the others 403).
pub(super) fn may_duty(signed: &super::session::Signed) -> bool {
    api::reads(signed.principal.role)
}

/// A person the roster names, for the page.
#[derive(Debug, Serialize)]
struct Person {
    id: Uuid,
    name: String,
    role: String,
}

/// `GET /duty`.
pub async fn page(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<PageQuery>,
) -> Response {
    let on_call = api::on_call(
        State(state.clone()),
        page.caller(),
        page.peer(),
        crate::extract::Query(OnCallQuery { at: None }),
    )
    .await;
    let Json(on_call) = match on_call {
        Ok(v) => v,
        Err(e) => return page.error(e),
    };
    let roster = api::list(State(state.clone()), page.caller(), page.peer()).await;
    let Json(roster) = match roster {
        Ok(v) => v,
        Err(e) => return page.error(e),
    };
    // The school's rostered staff, for names and the override form.
    let people: Vec<Person> = match sanyu_store::roster::active_staff_of_schools(
        &state.db,
        &[page.signed.principal.school_id],
    )
    .await
    {
        Ok(staff) => staff
            .into_iter()
            .filter(|s| {
                s.role
                    .parse::<Role>()
                    .is_ok_and(|r| sanyu_domain::duty::rostered(r).is_ok())
            })
            .map(|s| Person {
                id: s.id,
                name: s.name,
                role: s.role,
            })
            .collect(),
        Err(e) => return page.error(e.into()),
    };
    let name_of = |id: &Uuid| {
        people
            .iter()
            .find(|p| p.id == *id)
            .map_or_else(|| "—".to_owned(), |p| p.name.clone())
    };
    let rotations: Vec<serde_json::Value> = roster
        .rotations
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name, "role": r.role, "cadence": r.cadence,
                "handover": r.handover, "start_date": r.start_date.to_string(),
                "shift": r.shift.as_ref().map(|s| format!("{}–{}", s.start, s.end)),
                "days": r.days, "kinds": r.kinds.join(", "),
                "members": r.members.iter().map(&name_of).collect::<Vec<_>>(),
            })
        })
        .collect();
    let overrides: Vec<serde_json::Value> = roster
        .overrides
        .iter()
        .map(|o| {
            serde_json::json!({
                "id": o.id, "role": o.role, "name": name_of(&o.staff_id),
                "from": o.from.to_rfc3339(), "to": o.to.to_rfc3339(),
            })
        })
        .collect();
    // `sanyu contacts check` for this school: rungs that reach nobody, and
    // the windows of the next 30 days with nobody reachable on duty.
    let checked = async {
        let school = sanyu_store::roster::school_by_id(&state.db, page.signed.principal.school_id)
            .await?
            .ok_or(ApiError::NotFound("school"))?;
        let phones = state
            .console
            .available
            .iter()
            .any(|c| *c != sanyu_platform::config::NotifyChannel::Email);
        Ok::<_, ApiError>(
            sanyu_escalation::contacts::check(
                &state.db,
                &state.escalation,
                Some(&school.code),
                &state.duty,
                chrono::Utc::now(),
                phones,
            )
            .await?,
        )
    };
    let report = match checked.await {
        Ok(r) => r,
        Err(e) => return page.error(e),
    };
    let rung_gaps: Vec<serde_json::Value> = report
        .gaps
        .iter()
        .map(|g| {
            serde_json::json!({
                "level": g.level.as_str(),
                "rung": g.rung,
                "caller": g.subject == sanyu_domain::CaseSubject::UnidentifiedCaller,
                "reasons": g.reasons.iter().map(|(r, why)| format!("{}: {why}", r.as_str())).collect::<Vec<_>>(),
            })
        })
        .collect();
    let duty_gaps: Vec<serde_json::Value> = report
        .duty_gaps
        .iter()
        .map(|g| {
            serde_json::json!({
                "role": g.role.as_str(), "from": g.start.to_rfc3339(),
                "to": g.end.to_rfc3339(), "soon": g.soon,
            })
        })
        .collect();
    let notice = match q.done.as_deref() {
        Some("added") => Some("duty_done_added"),
        Some("removed") => Some("duty_done_removed"),
        _ => None,
    };
    page.render(
        &state,
        "duty.html",
        context! {
            on_call => Value::from(minijinja::value::Serde(&on_call)),
            rotations => Value::from(minijinja::value::Serde(&rotations)),
            overrides => Value::from(minijinja::value::Serde(&overrides)),
            people => Value::from(minijinja::value::Serde(&people)),
            rung_gaps => Value::from(minijinja::value::Serde(&rung_gaps)),
            duty_gaps => Value::from(minijinja::value::Serde(&duty_gaps)),
            manage => api::manages(page.signed.principal.role),
            notice => notice,
        },
    )
}

/// The override form.
#[derive(Debug, Deserialize)]
pub struct OverrideForm {
    csrf: String,
    staff_id: String,
    from: Option<String>,
    to: Option<String>,
}

/// `POST /duty/overrides`: the API's `create_override`, for the person
/// chosen in the role they hold.
pub async fn add_override(
    State(state): State<AppState>,
    post: Post,
    Form(f): Form<OverrideForm>,
) -> Response {
    let page = match post.check("/duty", &f.csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let request = async {
        let staff_id = Uuid::parse_str(f.staff_id.trim())
            .map_err(|_| ApiError::validation("staff_id", "choose a person"))?;
        // The person's role as the roster has it (another school's staff
        // is nobody here: the API refuses them like an unknown id).
        let role = sanyu_store::roster::staff_by_id(&state.db, staff_id)
            .await?
            .filter(|s| s.school_id == page.signed.principal.school_id && s.active)
            .map(|s| s.role)
            .ok_or_else(|| {
                ApiError::validation("staff_id", "no active staff of this school in a duty role")
            })?;
        let from = local_time("from", &f.from, state.console.tz)?
            .ok_or_else(|| ApiError::validation("from", "required"))?;
        let to = local_time("to", &f.to, state.console.tz)?
            .ok_or_else(|| ApiError::validation("to", "required"))?;
        api::create_override(
            State(state.clone()),
            page.caller(),
            page.peer(),
            body(OverrideRequest {
                role,
                staff_id,
                from,
                to,
            }),
        )
        .await
    };
    page.then_to(request.await, "/duty?done=added")
}

/// `POST /duty/overrides/{id}/remove`: the API's `delete_override`.
pub async fn remove_override(
    State(state): State<AppState>,
    post: Post,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let page = match post.check("/duty", &f.csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return page.error(ApiError::NotFound("override"));
    };
    let done = api::delete_override(
        State(state.clone()),
        page.caller(),
        page.peer(),
        crate::extract::Path(id),
    )
    .await;
    page.then_to(done, "/duty?done=removed")
}
