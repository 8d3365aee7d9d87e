//! What the planner knows about a case: the row, its school's code, and what
//! the command needs besides (the staff member to assign, the guardian, the
//! referral or follow-up to update, the student to link and that student's
//! open case, the reachable staff for a ladder start). Loaded by [`load`]
//! inside the caller's write transaction, after the access check.

use sanyu_domain::Role;
use sanyu_store::contacts::{self, Verified};
use sanyu_store::entities::{case, case_signal, follow_up, guardian, referral, staff, student};
use sanyu_store::{Conn, StoreError, cases, casework, roster};
use uuid::Uuid;

use crate::CaseError;
use crate::command::Command;
use crate::ladder::Reachable;

/// A case and what a command about it needs to be planned.
#[derive(Debug, Clone)]
pub struct CaseSnapshot {
    pub case: case::Model,
    pub school_code: String,
    /// Reachable staff of the school by role (loaded for commands that may
    /// start a ladder).
    pub staff: Reachable,
    /// The school's duty roster (loaded for commands that may start a
    /// ladder; empty otherwise).
    pub duty: sanyu_domain::duty::Roster,
    pub related: Related,
}

/// Rows a command refers to, each `None` when absent (or not needed).
#[derive(Debug, Clone, Default)]
pub struct Related {
    /// `Assign`: the staff member, if active in the case's school.
    pub assignee: Option<staff::Model>,
    /// `ContactGuardian`: the guardian, if one of the case's student.
    pub guardian: Option<guardian::Model>,
    /// `Refer` with an id: the referral, if of this case.
    pub referral: Option<referral::Model>,
    /// `FollowUp` with an id: the follow-up, if of this case.
    pub follow_up: Option<follow_up::Model>,
    /// `LinkStudent`: the student of the actor's school with that number.
    pub student: Option<student::Model>,
    /// `LinkStudent`: the signals of the case (they join a merge target).
    pub signals: Vec<case_signal::Model>,
    /// `LinkStudent`: the student's open case; `Reopen`: the case's
    /// student's open case (another one).
    pub open_case: Option<case::Model>,
    /// `Reopen` of a merged case: the reference of the case it joined.
    pub merged_into_reference: Option<String>,
}

impl CaseSnapshot {
    /// A snapshot with nothing related (for tests and simple commands).
    pub fn of(case: case::Model, school_code: impl Into<String>) -> Self {
        Self {
            case,
            school_code: school_code.into(),
            staff: Reachable::new(),
            duty: sanyu_domain::duty::Roster::empty(chrono_tz::Asia::Shanghai),
            related: Related::default(),
        }
    }
}

/// The case, for the access check that comes before anything else is read.
pub async fn load_case(txn: &impl Conn, case_id: Uuid) -> Result<Option<case::Model>, CaseError> {
    Ok(cases::get(txn, case_id).await?)
}

/// Whether a staff member has an email address to be told at.
pub fn has_email(s: &staff::Model) -> bool {
    s.email.as_deref().is_some_and(|e| !e.trim().is_empty())
}

/// Whether a staff member has a mobile number (SMS, a call, work IM).
pub fn has_phone(s: &staff::Model) -> bool {
    s.phone.as_deref().is_some_and(|p| !p.trim().is_empty())
}

/// Whether a staff member can be told about a case: an email address, or a
/// **verified** mobile number (issue 16: SMS-only staff count once a code
/// sent to their number was typed into the console — signing in with an
/// SMS code does it; `sanyu_store::contacts`). Which channels carry a
/// notice is the notifier's choice, from the addresses the person has. An
/// unverified number alone does not count: a typo in the roster would
/// otherwise make a rung look staffed and reach nobody. Notices about no
/// case go by email only and need an email address ([`has_email`]).
pub fn can_be_told(s: &staff::Model, verified: &Verified) -> bool {
    has_email(s) || verified.phone(s)
}

/// The active staff of `schools` who can be told about a case ([`can_be_told`]).
async fn told_of_schools(
    txn: &impl Conn,
    school_ids: &[Uuid],
) -> Result<Vec<staff::Model>, StoreError> {
    let staff = roster::active_staff_of_schools(txn, school_ids).await?;
    let ids: Vec<Uuid> = staff.iter().map(|s| s.id).collect();
    let verified = contacts::verified(txn, &ids).await?;
    Ok(staff
        .into_iter()
        .filter(|s| can_be_told(s, &verified))
        .collect())
}

/// The reachable staff (active, [`can_be_told`]) of a school, by role.
pub async fn reachable(txn: &impl Conn, school_id: Uuid) -> Result<Reachable, StoreError> {
    let mut out = Reachable::new();
    for s in told_of_schools(txn, &[school_id]).await? {
        let Ok(role) = s.role.parse::<Role>() else {
            continue;
        };
        out.entry(role).or_default().push(s.id);
    }
    Ok(out)
}

/// The reachable staff (as [`reachable`]) of several schools, by school, in
/// one query (the rules engine's batch).
pub async fn reachable_of_schools(
    txn: &impl Conn,
    school_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Reachable>, StoreError> {
    let mut out: std::collections::HashMap<Uuid, Reachable> = std::collections::HashMap::new();
    for s in told_of_schools(txn, school_ids).await? {
        let Ok(role) = s.role.parse::<Role>() else {
            continue;
        };
        out.entry(s.school_id)
            .or_default()
            .entry(role)
            .or_default()
            .push(s.id);
    }
    Ok(out)
}

/// Load what `cmd` about `case` needs (the actor's school is where a student
/// number is looked up; `duty` what the school's roster is read in, for a
/// command that may start a ladder at `now`).
pub async fn load(
    txn: &impl Conn,
    case: case::Model,
    actor_school: Uuid,
    cmd: &Command,
    duty: &crate::DutyCalendar,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<CaseSnapshot, CaseError> {
    let school_code = roster::school_by_id(txn, case.school_id)
        .await?
        .ok_or(StoreError::NotFound("school"))?
        .code;
    let mut related = Related::default();
    match cmd {
        Command::Assign { staff_id } => {
            related.assignee =
                roster::active_staff_of_school(txn, case.school_id, *staff_id).await?;
        }
        Command::ContactGuardian(c) => {
            if let (Some(gid), Some(student_id)) = (c.guardian_id, case.student_id) {
                related.guardian = roster::guardian_of_student(txn, student_id, gid).await?;
            }
        }
        Command::Refer(r) => {
            if let Some(rid) = r.referral_id {
                related.referral = casework::referral_of_case(txn, case.id, rid).await?;
            }
        }
        Command::FollowUp(f) => {
            if let Some(fid) = f.follow_up_id {
                related.follow_up = casework::follow_up_of_case(txn, case.id, fid).await?;
            }
        }
        Command::Reopen { .. } => {
            if let Some(into) = case.merged_into {
                related.merged_into_reference = cases::get(txn, into).await?.map(|c| c.reference);
            }
            if let Some(student_id) = case.student_id {
                related.open_case = cases::active_for_student(txn, student_id).await?;
            }
        }
        Command::LinkStudent { student_no } => {
            related.student = roster::student_by_no(txn, actor_school, student_no).await?;
            if let Some(student) = &related.student {
                related.signals = cases::signals(txn, case.id).await?;
                related.open_case = cases::active_for_student(txn, student.id).await?;
            }
        }
        Command::Acknowledge { .. }
        | Command::Note { .. }
        | Command::SetLevel { .. }
        | Command::Close { .. } => {}
    }
    let (staff, duty) = if cmd.may_start_ladder() {
        (
            reachable(txn, case.school_id).await?,
            crate::duty::roster(txn, case.school_id, duty, now).await?,
        )
    } else {
        (Reachable::new(), sanyu_domain::duty::Roster::empty(duty.tz))
    };
    Ok(CaseSnapshot {
        case,
        school_code,
        staff,
        duty,
        related,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(phone: Option<&str>, email: Option<&str>) -> staff::Model {
        let now = chrono::Utc::now();
        staff::Model {
            id: Uuid::from_u128(7),
            school_id: Uuid::now_v7(),
            staff_no: "K2".into(),
            name: "K2".into(),
            role: "counsellor".into(),
            class_id: None,
            phone: phone.map(Into::into),
            email: email.map(Into::into),
            active: true,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn an_email_or_a_verified_mobile_number_makes_a_person_reachable() {
        let none = Verified::default();
        let verified = |n: &str| Verified::of([(Uuid::from_u128(7), contacts::SMS, n.to_owned())]);
        assert!(can_be_told(&person(None, Some("k@s.test")), &none));
        assert!(can_be_told(&person(Some("139"), Some("k@s.test")), &none));
        // SMS-only: once the number is verified, and only that number.
        assert!(!can_be_told(&person(Some("139"), None), &none));
        assert!(can_be_told(&person(Some("139"), None), &verified("139")));
        assert!(!can_be_told(&person(Some("138"), None), &verified("139")));
        assert!(!can_be_told(&person(None, None), &verified("139")));
        assert!(!can_be_told(&person(None, Some("  ")), &none));
    }
}
