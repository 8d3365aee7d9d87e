//! `GET /v1/key-population` (重点关注学生) and `GET /v1/students/{id}/timeline`
//! (心理档案): the student's history, for counsellors and the crisis team of
//! the student's school. A leader gets the oversight types instead (counts,
//! states and dates, no names: [`crate::routes::oversight`]). Every read is
//! audited.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use sanyu_domain::{Access, CaseStatus, Disclosure, RiskLevel, Role};
use sanyu_store::entities::{case, student};
use sanyu_store::{cases, casework, decisions, reports, roster, zero_reports};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::routes::oversight::{self, KeyPopulationOverview, TimelineSummary};

#[derive(Debug, Deserialize, IntoParams)]
pub struct KeyPopulationQuery {
    /// At most this many students (default 200, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WatchedStudent {
    pub student_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_name: Option<String>,
    pub class_code: Option<String>,
    pub case_id: Option<Uuid>,
    pub case_reference: Option<String>,
    #[schema(value_type = Option<String>)]
    pub level: Option<RiskLevel>,
    pub next_follow_up_id: Uuid,
    pub next_follow_up_due: DateTime<Utc>,
    pub overdue: bool,
    /// Open follow-ups of this student.
    pub open_follow_ups: usize,
}

/// A student the rules engine put on the watch list (关注) without a case.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RuleWatch {
    /// The entry's id: the reference its follow-up reminder email names.
    pub id: Uuid,
    pub student_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_name: Option<String>,
    pub class_code: Option<String>,
    pub since: DateTime<Utc>,
    /// When someone should look again.
    pub follow_up_on: chrono::NaiveDate,
    pub overdue: bool,
    /// The rule (and rules version) that put the student here.
    pub rule_id: String,
    pub rules_version: String,
}

/// The key population in full, for counsellors and the crisis team.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyPopulation {
    /// Students with open follow-ups (planned on their cases).
    pub students: Vec<WatchedStudent>,
    /// Students the rules put on the watch list, earliest follow-up first.
    pub watch_list: Vec<RuleWatch>,
}

/// `GET /v1/key-population`: in full for those who work cases, without
/// names or rules for leaders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum KeyPopulationView {
    Casework(KeyPopulation),
    Oversight(KeyPopulationOverview),
}

impl From<KeyPopulation> for KeyPopulationOverview {
    /// Only what oversight needs; a field added to the full lists is not here.
    fn from(k: KeyPopulation) -> Self {
        Self {
            students: k
                .students
                .into_iter()
                .map(|w| oversight::FollowedStudent {
                    student_id: w.student_id,
                    class_code: w.class_code,
                    case_id: w.case_id,
                    case_reference: w.case_reference,
                    level: w.level,
                    next_follow_up_due: w.next_follow_up_due,
                    overdue: w.overdue,
                    open_follow_ups: w.open_follow_ups,
                })
                .collect(),
            watch_list: k
                .watch_list
                .into_iter()
                .map(|w| oversight::WatchedStudentOverview {
                    student_id: w.student_id,
                    class_code: w.class_code,
                    since: w.since,
                    follow_up_on: w.follow_up_on,
                    overdue: w.overdue,
                })
                .collect(),
        }
    }
}

/// A watch-list entry whose follow-up was recorded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WatchDone {
    pub id: Uuid,
    pub done_at: DateTime<Utc>,
    pub done_by: Option<Uuid>,
}

/// Record that a student the rules put on the watch list (关注) was followed
/// up: the entry leaves `watch_list` and its reminder is not sent; a later
/// signal can put the student on the list again. Counsellors and the crisis
/// team of the entry's school; what was said belongs in a case or report, not
/// here. Audited in the same transaction; recording it twice answers the
/// first record.
#[utoipa::path(post, path = "/v1/key-population/watch/{id}/done", tag = "cases",
    params(("id" = Uuid, Path, description = "watch entry id (the reference of its reminder)")),
    responses((status = 200, body = WatchDone), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn finish_watch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<Json<WatchDone>, ApiError> {
    if !matches!(caller.role, Role::Counsellor | Role::CrisisTeam) {
        return Err(ApiError::Forbidden(
            "only counsellors and the crisis team record a follow-up",
        ));
    }
    let not_found = || ApiError::NotFound("watch entry");
    decisions::watch_entry(&state.db, id)
        .await?
        .filter(|w| w.school_id == caller.school_id)
        .ok_or_else(not_found)?;
    let txn = sanyu_store::begin_write(&state.db).await?;
    decisions::finish_watch(&*txn, id, caller.staff_id, Utc::now()).await?;
    let entry = audit::entry(
        &caller,
        &peer,
        "key_population.watch_done",
        format!("watch:{id}"),
    );
    audit::record_in_or_refuse(&*txn, &state, entry).await?;
    txn.commit().await?;
    let entry = decisions::watch_entry(&state.db, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(WatchDone {
        id,
        done_at: entry.done_at.ok_or_else(not_found)?,
        done_by: entry.done_by,
    }))
}

/// The school's key population: students with a follow-up not yet done,
/// overdue first, then by due date.
#[utoipa::path(get, path = "/v1/key-population", tag = "cases", params(KeyPopulationQuery),
    responses((status = 200, body = KeyPopulationView, description = "`KeyPopulation` for counsellors and the crisis team, `KeyPopulationOverview` for leaders"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn key_population(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Query(q): Query<KeyPopulationQuery>,
) -> Result<Json<KeyPopulationView>, ApiError> {
    let forbidden = || ApiError::Forbidden("your role may not read the key population");
    if caller.may_read_timeline_summary(caller.school_id) != Access::Allowed {
        return Err(forbidden());
    }
    let disclosure = caller.disclosure().ok_or_else(forbidden)?;
    let limit = crate::validate::limit(q.limit, 200, 1000)?;
    let open = casework::open_follow_ups(&state.db, caller.school_id, limit * 4).await?;
    let now = Utc::now();
    // One row per student, at its earliest open follow-up (the list is due-ordered).
    let watches = sanyu_store::decisions::watches_of_school(
        &state.db,
        caller.school_id,
        caller.class_id.filter(|_| caller.role == Role::Teacher),
    )
    .await?;
    let mut order: Vec<Uuid> = Vec::new();
    let mut per_student: HashMap<Uuid, (sanyu_store::entities::follow_up::Model, usize)> =
        HashMap::new();
    for f in open {
        per_student
            .entry(f.student_id)
            .and_modify(|(_, n)| *n += 1)
            .or_insert_with(|| {
                order.push(f.student_id);
                (f, 1)
            });
    }
    order.truncate(limit as usize);
    let wanted: Vec<Uuid> = order
        .iter()
        .copied()
        .chain(watches.iter().take(limit as usize).map(|w| w.student_id))
        .collect();
    let students: HashMap<Uuid, student::Model> = roster::students_by_ids(&state.db, wanted)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let classes: HashMap<Uuid, String> = zero_reports::classes_of(&state.db, caller.school_id)
        .await?
        .into_iter()
        .map(|c| (c.id, c.code))
        .collect();
    let case_ids: Vec<Uuid> = per_student
        .values()
        .filter_map(|(f, _)| f.case_id)
        .collect();
    let case_rows: HashMap<Uuid, case::Model> = cases::by_ids(&state.db, case_ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    // Oversight gets its own type below, without names whatever this says.
    let identity = caller.sees_identity();
    let mut list: Vec<WatchedStudent> = order
        .into_iter()
        .filter_map(|sid| {
            let (f, n) = per_student.get(&sid)?;
            let s = students.get(&sid);
            let c = f.case_id.and_then(|id| case_rows.get(&id));
            Some(WatchedStudent {
                student_id: sid,
                student_no: s.filter(|_| identity).map(|s| s.student_no.clone()),
                student_name: s.filter(|_| identity).map(|s| s.name.clone()),
                class_code: s.and_then(|s| classes.get(&s.class_id).cloned()),
                case_id: c.map(|c| c.id),
                case_reference: c.map(|c| c.reference.clone()),
                level: c.map(|c| c.level),
                next_follow_up_id: f.id,
                next_follow_up_due: f.due_at,
                overdue: f.due_at < now,
                open_follow_ups: *n,
            })
        })
        .collect();
    // Overdue first (already by due date within each group).
    list.sort_by_key(|w| (!w.overdue, w.next_follow_up_due));
    let today = now.date_naive();
    let watch_list: Vec<RuleWatch> = watches
        .into_iter()
        .take(limit as usize)
        .map(|w| {
            let s = students.get(&w.student_id);
            RuleWatch {
                id: w.id,
                student_id: w.student_id,
                student_no: s.filter(|_| identity).map(|s| s.student_no.clone()),
                student_name: s.filter(|_| identity).map(|s| s.name.clone()),
                class_code: classes.get(&w.class_id).cloned(),
                since: w.since,
                follow_up_on: w.follow_up_on,
                overdue: w.follow_up_on < today,
                rule_id: w.rule_id,
                rules_version: w.rules_version,
            }
        })
        .collect();
    audit::record(
        &state,
        &caller,
        &peer,
        "key_population.list",
        format!("school:{}", caller.school_id),
    )
    .await?;
    let full = KeyPopulation {
        students: list,
        watch_list,
    };
    Ok(Json(match disclosure {
        Disclosure::Casework => KeyPopulationView::Casework(full),
        Disclosure::Oversight => KeyPopulationView::Oversight(full.into()),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// report, case_opened, case_signal, case_action, follow_up_due, follow_up_done,
    /// and (as they arrive) screening and hotline_call.
    pub kind: String,
    pub case_reference: Option<String>,
    /// Level, category, status, action: short codes, never text.
    pub summary: String,
    /// Narrative, note or outcome text: counsellors and the crisis team only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = StudentCaseState)]
pub struct CaseState {
    pub reference: String,
    #[schema(value_type = String)]
    pub level: RiskLevel,
    #[schema(value_type = String)]
    pub status: CaseStatus,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// A student's history in full, for counsellors and the crisis team.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Timeline {
    pub student_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_name: Option<String>,
    pub cases: Vec<CaseState>,
    pub counts: TimelineCounts,
    /// The full history, oldest first.
    pub entries: Vec<TimelineEntry>,
}

/// `GET /v1/students/{id}/timeline`: in full for those who work cases,
/// counts and states for leaders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TimelineView {
    Casework(Box<Timeline>),
    Oversight(TimelineSummary),
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TimelineCounts {
    pub reports: usize,
    pub cases: usize,
    pub open_follow_ups: usize,
    pub done_follow_ups: usize,
}

/// A student's history (心理档案): reports, cases, their signals and actions,
/// follow-ups. Full for counsellors and the crisis team of the student's
/// school; counts and states for its leaders; nothing for anyone else.
#[utoipa::path(get, path = "/v1/students/{id}/timeline", tag = "students",
    params(("id" = Uuid, Path, description = "Student id")),
    responses((status = 200, body = TimelineView, description = "`Timeline` for counsellors and the crisis team, `TimelineSummary` for leaders"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such student in your school", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(student_id = %id))]
pub async fn timeline(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Json<TimelineView>, ApiError> {
    let forbidden = || ApiError::Forbidden("your role may not read student timelines");
    if caller.may_read_timeline_summary(caller.school_id) != Access::Allowed {
        return Err(forbidden());
    }
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("student"))?;
    let s = roster::student_by_id(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("student"))?;
    match caller.may_read_timeline_summary(s.school_id) {
        Access::Allowed => {}
        Access::OutOfScope => return Err(ApiError::NotFound("student")),
        Access::Forbidden => return Err(forbidden()),
    }
    let disclosure = caller.disclosure().ok_or_else(forbidden)?;
    let reports = reports::of_student(&state.db, s.id).await?;
    let case_rows = cases::for_student(&state.db, s.id).await?;
    let follow_ups = casework::follow_ups_of_student(&state.db, s.id).await?;
    if disclosure == Disclosure::Oversight {
        audit::record(
            &state,
            &caller,
            &peer,
            "timeline.summary",
            format!("student:{}", s.id),
        )
        .await?;
        return Ok(Json(TimelineView::Oversight(oversight::timeline_summary(
            s.id,
            &case_rows,
            reports.len(),
            &follow_ups,
        ))));
    }
    let counts = TimelineCounts {
        reports: reports.len(),
        cases: case_rows.len(),
        open_follow_ups: follow_ups.iter().filter(|f| f.done_at.is_none()).count(),
        done_follow_ups: follow_ups.iter().filter(|f| f.done_at.is_some()).count(),
    };
    let refs: HashMap<Uuid, String> = case_rows
        .iter()
        .map(|c| (c.id, c.reference.clone()))
        .collect();
    let mut entries = Vec::new();
    for r in &reports {
        entries.push(TimelineEntry {
            at: r.observed_at,
            kind: "report".into(),
            case_reference: None,
            summary: format!("{} {}", r.category, r.level),
            text: Some(state.sealer.open(&r.narrative_sealed)?),
        });
    }
    for c in &case_rows {
        entries.push(TimelineEntry {
            at: c.opened_at,
            kind: "case_opened".into(),
            case_reference: Some(c.reference.clone()),
            summary: format!("{} ({})", c.level, c.opened_rule),
            text: None,
        });
        for sig in cases::signals(&state.db, c.id).await? {
            entries.push(TimelineEntry {
                at: sig.attached_at,
                kind: "case_signal".into(),
                case_reference: Some(c.reference.clone()),
                summary: format!(
                    "{} {} {} ({})",
                    sig.kind, sig.level, sig.decision, sig.rule_id
                ),
                text: None,
            });
        }
    }
    for a in cases::actions(&state.db, case_rows.iter().map(|c| c.id).collect()).await? {
        let text = match &a.text_sealed {
            Some(sealed) => Some(state.sealer.open(sealed)?),
            None => None,
        };
        entries.push(TimelineEntry {
            at: a.at,
            kind: "case_action".into(),
            case_reference: refs.get(&a.case_id).cloned(),
            summary: format!("{} by {} → {}", a.action, a.actor_role, a.status_after),
            text,
        });
    }
    for f in &follow_ups {
        let reference = f.case_id.and_then(|c| refs.get(&c).cloned());
        match f.done_at {
            Some(done) => entries.push(TimelineEntry {
                at: done,
                kind: "follow_up_done".into(),
                case_reference: reference,
                summary: "follow-up done".into(),
                text: f
                    .outcome_sealed
                    .as_ref()
                    .map(|o| state.sealer.open(o))
                    .transpose()?,
            }),
            None => entries.push(TimelineEntry {
                at: f.due_at,
                kind: "follow_up_due".into(),
                case_reference: reference,
                summary: "follow-up due".into(),
                text: None,
            }),
        }
    }
    entries.sort_by_key(|e| e.at);
    audit::record(
        &state,
        &caller,
        &peer,
        "timeline.read",
        format!("student:{}", s.id),
    )
    .await?;
    Ok(Json(TimelineView::Casework(Box::new(Timeline {
        student_id: s.id,
        student_no: Some(s.student_no.clone()),
        student_name: Some(s.name.clone()),
        cases: case_rows
            .into_iter()
            .map(|c| CaseState {
                reference: c.reference,
                level: c.level,
                status: c.status,
                opened_at: c.opened_at,
                closed_at: c.closed_at,
            })
            .collect(),
        counts,
        entries,
    }))))
}
