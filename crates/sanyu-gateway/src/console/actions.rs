//! The case page's forms: every action of the case-work API as a form. A
//! form posts to `/cases/{id}/do/{action}`; the handler checks the session's
//! CSRF token, turns the fields into the API's own request type and calls the
//! API's own handler (`routes::casework::*`, which validates and calls
//! `routes::casework::act`: one implementation). Success redirects back to
//! the case (POST-redirect-GET); a refusal (403, 409, 422) is the case page
//! again with the refusal in words.
//!
//! Which forms a page offers: the actions the case's status allows
//! (`sanyu_case::allowed_names`, as the API answers them in
//! `allowed_actions`) that the signed-in role may do to this case
//! (`Principal::may_work_case`).

use axum::Form;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sanyu_domain::{Access, CaseStatus, CaseWork, Principal, Role};
use sanyu_store::roster;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::page::Post;
use super::session::Signed;
use super::view;
use crate::AppState;
use crate::audit::Peer;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::extract::Path;
use crate::routes::cases::CaseDetail;
use crate::routes::casework::{
    self, AssignRequest, CloseRequest, ContactChannel, ContactOutcome, FollowUpRequest,
    GuardianContactRequest, LevelRequest, LinkStudentRequest, NoteRequest, ReferralRequest,
    ReopenRequest, ReturnAssessment,
};

/// The forms of the case page (acknowledge has its own route).
pub const ACTIONS: &[&str] = &[
    "assign",
    "note",
    "guardian_contact",
    "no_contact",
    "referral",
    "referral_update",
    "follow_up",
    "follow_up_done",
    "level",
    "close",
    "reopen",
    "link_student",
];

/// Outcomes offered when closing (the API takes any short code).
pub const CLOSE_OUTCOMES: &[&str] = &["resolved", "referred_out", "transferred", "left_school"];

/// Every field any of the forms has; each action reads its own.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub csrf: String,
    pub staff_id: Option<String>,
    pub text: Option<String>,
    pub guardian_id: Option<String>,
    pub channel: Option<String>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub referral_id: Option<String>,
    pub institution: Option<String>,
    pub referred_on: Option<String>,
    pub receipt_confirmed: Option<String>,
    pub assessed_on: Option<String>,
    pub result: Option<String>,
    pub follow_up_id: Option<String>,
    pub due_at: Option<String>,
    pub level: Option<String>,
    pub summary: Option<String>,
    pub student_no: Option<String>,
    /// `key-population`: go back there after a follow-up is done.
    pub back: Option<String>,
}

/// Which forms the page shows.
#[derive(Debug, Default, Serialize)]
pub struct Offer {
    pub assign: bool,
    /// A counsellor takes an unassigned case (assign to self) instead of choosing.
    pub take: bool,
    pub record: bool,
    pub contact: bool,
    pub refer: bool,
    pub follow_up: bool,
    pub level: bool,
    pub close: bool,
    pub reopen: bool,
    pub link_student: bool,
}

impl Offer {
    pub fn any(&self) -> bool {
        self.assign
            || self.take
            || self.record
            || self.level
            || self.close
            || self.reopen
            || self.link_student
    }
}

/// The forms legal for this case now and allowed to this caller.
pub fn offer(p: &Principal, d: &CaseDetail) -> Offer {
    let allowed = |a: &str| d.allowed_actions.iter().any(|n| n == a);
    let may = |w: CaseWork| {
        p.may_work_case(p.school_id, p.class_id, d.assignee_staff_id, w) == Access::Allowed
    };
    let closed = d.case.status == CaseStatus::Closed;
    // Work on the record needs a taken, open case: exactly when it may be closed.
    let taken = allowed("close");
    let has_student = d.case.student_id.is_some();
    let record = taken && may(CaseWork::Record);
    // Acknowledging assigns a counsellor already: "take" is for a taken case.
    let take = p.role == Role::Counsellor
        && !closed
        && !allowed("acknowledge")
        && d.assignee_staff_id.is_none()
        && may(CaseWork::Assign { to_self: true });
    Offer {
        assign: !closed && p.role == Role::CrisisTeam && may(CaseWork::Assign { to_self: false }),
        take,
        record,
        contact: record && has_student,
        // A new referral: the status allows it (or will once work starts).
        refer: record && (allowed("refer") || d.case.status == CaseStatus::Acknowledged),
        follow_up: record && has_student,
        level: !closed && may(CaseWork::ChangeLevel),
        close: allowed("close") && may(CaseWork::Close),
        reopen: allowed("reopen") && may(CaseWork::Reopen),
        link_student: allowed(casework::LINK_STUDENT) && may(CaseWork::LinkStudent),
    }
}

/// A choice in a form's select.
#[derive(Debug, Serialize)]
pub struct Choice {
    pub id: Uuid,
    pub label: String,
}

/// Those the crisis team may assign a case to: active counsellors and
/// crisis-team members of the caller's school.
pub async fn assignable(state: &AppState, school_id: Uuid) -> Result<Vec<Choice>, ApiError> {
    Ok(roster::assignable_staff(&state.db, school_id)
        .await?
        .into_iter()
        .map(|s| Choice {
            id: s.id,
            label: s.name,
        })
        .collect())
}

/// The guardians of the case's student (shown only with the full record).
pub async fn guardians(state: &AppState, student_id: Uuid) -> Result<Vec<Choice>, ApiError> {
    Ok(roster::guardians_of_student(&state.db, student_id)
        .await?
        .into_iter()
        .map(|g| Choice {
            id: g.id,
            label: match g.relation {
                Some(r) if !r.is_empty() => format!("{} ({r})", g.name),
                _ => g.name,
            },
        })
        .collect())
}

/// A refusal as the page shows it: the status, the catalogue key of the
/// sentence, and the API's own detail (ids, codes and field names only).
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: StatusCode,
    pub key: &'static str,
    pub detail: Option<String>,
    /// The catalogue key of the label of the field at fault (422).
    pub field: Option<&'static str>,
}

/// The label of a form field the API named.
fn field_label(field: &str) -> Option<&'static str> {
    Some(match field {
        "text" => "note_label",
        "reason" => "reason",
        "staff_id" => "assign_to",
        "guardian_id" => "guardian",
        "channel" => "channel",
        "outcome" => "close_outcome",
        "institution" => "institution",
        "referred_on" => "referred_on",
        "assessed_on" | "return_assessment.assessed_on" => "return_assessed_on",
        "result" | "return_assessment.result" => "return_assessment",
        "due_at" => "due_at",
        "level" => "new_level",
        "summary" => "close_summary",
        "student_no" => "student_no",
        _ => return None,
    })
}

/// The words for an answer of the API's case work, or `None` for an error
/// that is not about this form (not found, unavailable, internal).
pub fn refused(e: &ApiError) -> Option<Refused> {
    match e {
        ApiError::Conflict { message, .. } => {
            let key = if message.starts_with("acknowledge the case before") {
                "refused_not_taken"
            } else if message.contains("is closed") {
                "refused_closed"
            } else if message.contains("unidentified caller") {
                "refused_unidentified"
            } else if message.contains("another open case") || message.contains("merged into") {
                "refused_other_case"
            } else {
                "refused_conflict"
            };
            Some(Refused {
                status: StatusCode::CONFLICT,
                key,
                detail: Some(message.clone()),
                field: None,
            })
        }
        ApiError::Validation { field, message } => Some(Refused {
            field: field_label(field),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            key: "refused_invalid",
            detail: Some(if field.is_empty() {
                message.clone()
            } else {
                format!("{field}: {message}")
            }),
        }),
        ApiError::Forbidden(why) => Some(Refused {
            status: StatusCode::FORBIDDEN,
            key: "refused_forbidden",
            detail: Some((*why).to_owned()),
            field: None,
        }),
        ApiError::NotFound(what) if *what != "case" => Some(Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            key: "refused_no_such",
            detail: Some(format!("{what}: not found")),
            field: None,
        }),
        _ => None,
    }
}

fn some(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn need<'a>(field: &str, v: &'a Option<String>) -> Result<&'a str, ApiError> {
    some(v).ok_or_else(|| ApiError::validation(field, "required"))
}

fn uuid(field: &str, v: &Option<String>) -> Result<Option<Uuid>, ApiError> {
    some(v)
        .map(|s| Uuid::parse_str(s).map_err(|_| ApiError::validation(field, "not a valid choice")))
        .transpose()
}

fn date(field: &str, v: &Option<String>) -> Result<Option<NaiveDate>, ApiError> {
    some(v)
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| ApiError::validation(field, "a date, YYYY-MM-DD"))
        })
        .transpose()
}

/// A `datetime-local` value, in the school's zone.
pub(super) fn local_time(
    field: &str,
    v: &Option<String>,
    tz: chrono_tz::Tz,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(s) = some(v) else { return Ok(None) };
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| ApiError::validation(field, "a date and time, YYYY-MM-DDTHH:MM"))?;
    naive
        .and_local_timezone(tz)
        .earliest()
        .map(|t| Some(t.with_timezone(&Utc)))
        .ok_or_else(|| ApiError::validation(field, "not a time in the school's zone"))
}

fn parse_json<T: serde::de::DeserializeOwned>(field: &str, v: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(v.to_owned()))
        .map_err(|_| ApiError::validation(field, "not a valid choice"))
}

pub(super) fn body<T>(value: T) -> JsonBody<T> {
    JsonBody {
        value,
        raw: Bytes::new(),
    }
}

/// Do `action` with the form's fields through the API's own handler.
async fn call(
    state: &AppState,
    signed: &Signed,
    peer: &Peer,
    id: &str,
    action: &str,
    f: ActionForm,
) -> Result<casework::CaseState, ApiError> {
    let s = || State(state.clone());
    let c = || Caller(signed.principal.clone());
    let p = || Peer(peer.0.clone());
    let path = || Path(id.to_owned());
    let answer = match action {
        "assign" => {
            let staff_id = uuid("staff_id", &f.staff_id)?
                .ok_or_else(|| ApiError::validation("staff_id", "required"))?;
            casework::assign(s(), c(), p(), path(), body(AssignRequest { staff_id })).await
        }
        "note" => {
            let text = f.text.unwrap_or_default();
            casework::note(s(), c(), p(), path(), body(NoteRequest { text })).await
        }
        "guardian_contact" => {
            let channel = some(&f.channel)
                .map(|v| parse_json::<ContactChannel>("channel", v))
                .transpose()?;
            let outcome = some(&f.outcome)
                .map(|v| parse_json::<ContactOutcome>("outcome", v))
                .transpose()?;
            let req = GuardianContactRequest {
                contacted: true,
                guardian_id: uuid("guardian_id", &f.guardian_id)?,
                at: None,
                channel,
                outcome,
                reason: None,
            };
            casework::guardian_contact(s(), c(), p(), path(), body(req)).await
        }
        "no_contact" => {
            let req = GuardianContactRequest {
                contacted: false,
                guardian_id: None,
                at: None,
                channel: None,
                outcome: None,
                reason: Some(f.reason.unwrap_or_default()),
            };
            casework::guardian_contact(s(), c(), p(), path(), body(req)).await
        }
        "referral" | "referral_update" => {
            let return_assessment = match (date("assessed_on", &f.assessed_on)?, some(&f.result)) {
                (Some(assessed_on), Some(result)) => Some(ReturnAssessment {
                    assessed_on,
                    result: result.to_owned(),
                }),
                (None, None) => None,
                (None, Some(_)) => return Err(ApiError::validation("assessed_on", "required")),
                (Some(_), None) => return Err(ApiError::validation("result", "required")),
            };
            let req = ReferralRequest {
                referral_id: if action == "referral_update" {
                    Some(
                        uuid("referral_id", &f.referral_id)?
                            .ok_or_else(|| ApiError::validation("referral_id", "required"))?,
                    )
                } else {
                    None
                },
                institution: need("institution", &f.institution)?.to_owned(),
                referred_on: date("referred_on", &f.referred_on)?
                    .ok_or_else(|| ApiError::validation("referred_on", "required"))?,
                receipt_confirmed: f.receipt_confirmed.is_some(),
                return_assessment,
            };
            casework::referral(s(), c(), p(), path(), body(req)).await
        }
        "follow_up" => {
            let req = FollowUpRequest {
                follow_up_id: None,
                due_at: local_time("due_at", &f.due_at, state.console.tz)?,
                outcome: None,
            };
            casework::follow_up(s(), c(), p(), path(), body(req)).await
        }
        "follow_up_done" => {
            let req = FollowUpRequest {
                follow_up_id: Some(
                    uuid("follow_up_id", &f.follow_up_id)?
                        .ok_or_else(|| ApiError::validation("follow_up_id", "required"))?,
                ),
                due_at: None,
                outcome: some(&f.outcome).map(str::to_owned),
            };
            casework::follow_up(s(), c(), p(), path(), body(req)).await
        }
        "level" => {
            let req = LevelRequest {
                level: need("level", &f.level)?.to_owned(),
                reason: f.reason.unwrap_or_default(),
            };
            casework::level(s(), c(), p(), path(), body(req)).await
        }
        "close" => {
            let req = CloseRequest {
                outcome: f.outcome.unwrap_or_default(),
                summary: some(&f.summary).map(str::to_owned),
            };
            casework::close(s(), c(), p(), path(), body(req)).await
        }
        "reopen" => {
            let req = ReopenRequest {
                reason: f.reason.unwrap_or_default(),
            };
            casework::reopen(s(), c(), p(), path(), body(req)).await
        }
        "link_student" => {
            let req = LinkStudentRequest {
                student_no: f.student_no,
            };
            casework::link_student(s(), c(), p(), path(), body(req)).await
        }
        _ => return Err(ApiError::NotFound("case")),
    };
    answer.map(|axum::Json(v)| v)
}

/// `POST /cases/{id}/do/{action}`: one case-work action from the case page.
pub async fn act(
    State(state): State<AppState>,
    post: Post,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let here = format!("/cases/{id}");
    let page = match post.check(&here, &f.csrf) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(action) = ACTIONS.iter().find(|a| **a == action).copied() else {
        return page.error(ApiError::NotFound("case"));
    };
    let back_to_list = f.back.as_deref() == Some("key-population");
    match call(&state, &page.signed, &page.peer, &id, action, f).await {
        Ok(_) if back_to_list => view::see_other(&format!("/key-population?done={action}")),
        Ok(done) => {
            // A caller's case merged into the student's open case: go there.
            let to = done.merged_into.unwrap_or(done.id);
            view::see_other(&format!("/cases/{to}?done={action}"))
        }
        Err(e) => match refused(&e) {
            Some(r) => {
                super::pages::render_case(
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
    fn refusals_are_named_in_words() {
        let e = ApiError::Conflict {
            message: "acknowledge the case before working on it".into(),
            allowed: vec![],
        };
        let r = refused(&e).expect("a refusal");
        assert_eq!(
            (r.status, r.key),
            (StatusCode::CONFLICT, "refused_not_taken")
        );
        let r = refused(&ApiError::validation("text", "must not be empty")).expect("invalid");
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.detail.as_deref(), Some("text: must not be empty"));
        assert_eq!(r.field, Some("note_label"));
        assert!(refused(&ApiError::NotFound("case")).is_none());
        assert!(refused(&ApiError::NotFound("student")).is_some());
    }

    #[test]
    fn times_are_read_in_the_schools_zone() {
        let t = local_time(
            "due_at",
            &Some("2026-12-07T09:30".into()),
            chrono_tz::Asia::Shanghai,
        )
        .expect("parses")
        .expect("some");
        assert_eq!(t.to_rfc3339(), "2026-12-07T01:30:00+00:00");
        assert!(local_time("due_at", &Some("tomorrow".into()), chrono_tz::UTC).is_err());
        assert_eq!(
            local_time("due_at", &Some(" ".into()), chrono_tz::UTC).ok(),
            Some(None)
        );
    }

    #[test]
    fn every_close_outcome_is_a_short_code() {
        assert!(CLOSE_OUTCOMES.iter().all(|o| o.len() <= 64));
    }
}
