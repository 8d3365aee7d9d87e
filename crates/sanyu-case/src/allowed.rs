//! What a case allows next, as names (for answers and 409 bodies), and the
//! refusals that name them.

use sanyu_domain::lifecycle::{self, CaseAction};
use sanyu_domain::{CaseStatus, LadderState};
use sanyu_store::entities::case;

use crate::plan::Refusal;

/// The action that names the student of an unidentified caller's case.
pub const LINK_STUDENT: &str = "link_student";

/// The lifecycle actions a case allows, as names.
pub fn allowed_names(c: &case::Model) -> Vec<String> {
    let status = c.status;
    let mut names: Vec<String> = lifecycle::allowed_actions(status)
        .into_iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    // A re-escalated case (level raised after it was taken) is acknowledged again.
    if status != CaseStatus::Open && c.ladder_state != LadderState::Stopped {
        names.insert(0, CaseAction::Acknowledge.as_str().to_owned());
    }
    // A case merged into the student's open case stays closed: work that one.
    if c.merged_into.is_some() {
        names.retain(|n| n != CaseAction::Reopen.as_str());
    }
    if status != CaseStatus::Closed && c.student_id.is_none() {
        names.push(LINK_STUDENT.to_owned());
    }
    names
}

/// 409 for work on a closed case: only `reopen` is allowed.
pub(crate) fn closed(c: &case::Model, to: &str) -> Refusal {
    Refusal::Conflict {
        message: format!("the case is closed; reopen it to {to}"),
        allowed: allowed_names(c),
    }
}

/// Work on the record (notes, contacts, referrals, follow-ups) needs a case
/// that someone has taken and that is not closed.
pub(crate) fn require_taken(c: &case::Model) -> Result<CaseStatus, Refusal> {
    match c.status {
        CaseStatus::Open => Err(Refusal::Conflict {
            message: "acknowledge the case before working on it".into(),
            allowed: allowed_names(c),
        }),
        CaseStatus::Closed => Err(closed(c, "work on it")),
        other => Ok(other),
    }
}

/// 409 for work that needs the student (guardians, follow-ups) on a case
/// about an unidentified caller.
pub(crate) fn require_student(c: &case::Model) -> Result<uuid::Uuid, Refusal> {
    c.student_id.ok_or_else(|| Refusal::Conflict {
        message: "this case is about an unidentified caller; link it to a student first".into(),
        allowed: allowed_names(c),
    })
}
