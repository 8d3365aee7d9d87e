//! What head teachers and leaders get ([`Disclosure::Oversight`]): the state
//! of a case, its level, who works it and when; a student's cases and counts;
//! the key population without names. These types are the whole of it: a field
//! exists here only because oversight needs it, and narratives, notes,
//! outcomes, referrals, screening detail, rule ids and where a signal came
//! from have no field to land in. A field added to the full record
//! ([`crate::routes::cases::CaseDetail`], the full timeline, the full key
//! population) stays hidden from these roles unless someone adds it here.
//!
//! The routes choose the type by `Principal::disclosure`; the builders below
//! never open anything sealed.
//!
//! [`Disclosure::Oversight`]: sanyu_domain::Disclosure::Oversight

use chrono::{DateTime, NaiveDate, Utc};
use sanyu_domain::{CaseStatus, LadderState, RiskLevel, oversight_action};
use sanyu_store::entities::{case, case_action, follow_up};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::routes::cases::CaseSummary;

/// One case as a head teacher or leader sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseOverview {
    #[serde(flatten)]
    pub case: CaseSummary,
    /// Who works the case.
    pub assignee_staff_id: Option<Uuid>,
    /// `running` while waiting for an acknowledgement, `stopped`, or `exhausted`.
    #[schema(value_type = String)]
    pub ladder_state: LadderState,
    pub ack_deadline: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Who did what step, when, and the status after it.
    pub timeline: Vec<StepView>,
    /// When the case's follow-ups are due and when they were done.
    pub follow_ups: Vec<FollowUpDates>,
}

/// One timeline entry without its content: `acknowledge`, `assign`, `level`,
/// `close`, `reopen`, or `work` for everything else done on the case.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    pub action: &'static str,
    pub actor_role: String,
    pub actor_staff_id: Option<Uuid>,
    pub status_after: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FollowUpDates {
    pub due_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

pub fn case_overview(
    summary: CaseSummary,
    case: &case::Model,
    actions: &[case_action::Model],
    follow_ups: &[follow_up::Model],
) -> CaseOverview {
    CaseOverview {
        case: summary,
        assignee_staff_id: case.assignee_staff_id,
        ladder_state: case.ladder_state,
        ack_deadline: case.ack_deadline,
        acknowledged_at: case.acknowledged_at,
        closed_at: case.closed_at,
        timeline: actions
            .iter()
            .map(|a| StepView {
                action: oversight_action(&a.action),
                actor_role: a.actor_role.clone(),
                actor_staff_id: a.actor_staff_id,
                status_after: a.status_after.to_string(),
                at: a.at,
            })
            .collect(),
        follow_ups: follow_ups
            .iter()
            .filter(|f| f.case_id == Some(case.id))
            .map(|f| FollowUpDates {
                due_at: f.due_at,
                done_at: f.done_at,
            })
            .collect(),
    }
}

/// A student's history as a leader sees it: the cases' states and counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineSummary {
    pub student_id: Uuid,
    pub cases: Vec<CaseStateView>,
    pub counts: SummaryCounts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseStateView {
    pub reference: String,
    #[schema(value_type = String)]
    pub level: RiskLevel,
    #[schema(value_type = String)]
    pub status: CaseStatus,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryCounts {
    pub reports: usize,
    pub cases: usize,
    pub open_follow_ups: usize,
    pub done_follow_ups: usize,
}

pub fn timeline_summary(
    student_id: Uuid,
    cases: &[case::Model],
    reports: usize,
    follow_ups: &[follow_up::Model],
) -> TimelineSummary {
    TimelineSummary {
        student_id,
        cases: cases
            .iter()
            .map(|c| CaseStateView {
                reference: c.reference.clone(),
                level: c.level,
                status: c.status,
                opened_at: c.opened_at,
                closed_at: c.closed_at,
            })
            .collect(),
        counts: SummaryCounts {
            reports,
            cases: cases.len(),
            open_follow_ups: follow_ups.iter().filter(|f| f.done_at.is_none()).count(),
            done_follow_ups: follow_ups.iter().filter(|f| f.done_at.is_some()).count(),
        },
    }
}

/// The key population as a leader sees it: who (by id and class) needs
/// following up and when; no names, no rule that put them there.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyPopulationOverview {
    pub students: Vec<FollowedStudent>,
    pub watch_list: Vec<WatchedStudentOverview>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FollowedStudent {
    pub student_id: Uuid,
    pub class_code: Option<String>,
    pub case_id: Option<Uuid>,
    pub case_reference: Option<String>,
    #[schema(value_type = Option<String>)]
    pub level: Option<RiskLevel>,
    pub next_follow_up_due: DateTime<Utc>,
    pub overdue: bool,
    pub open_follow_ups: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WatchedStudentOverview {
    pub student_id: Uuid,
    pub class_code: Option<String>,
    pub since: DateTime<Utc>,
    pub follow_up_on: NaiveDate,
    pub overdue: bool,
}
