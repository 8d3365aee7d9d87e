//! Table `cases`.
use sanyu_domain::{CaseStatus, CaseSubject, LadderState, RiskLevel};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub reference: String,
    pub school_id: Uuid,
    /// None for a case about an unidentified caller (until linked).
    pub class_id: Option<Uuid>,
    /// None for a case about an unidentified caller (until linked).
    pub student_id: Option<Uuid>,
    pub level: RiskLevel,
    pub level_rank: i16,
    pub status: CaseStatus,
    pub opened_rule: String,
    pub opened_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub closed_at: Option<DateTimeUtc>,
    pub version: i32,
    /// The escalation ladder snapshotted when the case opened or its level changed (JSON).
    pub ladder: Option<String>,
    /// Bumped each time the ladder restarts; timers of older epochs do nothing.
    pub ladder_epoch: i32,
    /// `running`, `stopped` (acknowledged or closed) or `exhausted`.
    pub ladder_state: LadderState,
    pub ladder_started_at: Option<DateTimeUtc>,
    pub ack_deadline: Option<DateTimeUtc>,
    pub acknowledged_at: Option<DateTimeUtc>,
    pub acknowledged_by: Option<Uuid>,
    pub assignee_staff_id: Option<Uuid>,
    /// Who the case is about: `student` or `unidentified_caller`.
    pub subject: CaseSubject,
    /// A closed unidentified caller's case merged into the student's open case.
    pub merged_into: Option<Uuid>,
    /// When a person last acted on the case (a note, a guardian contact, an
    /// assignment, a referral, a follow-up, a close; `sanyu_case::Command::counts_as_action`).
    pub last_action_at: Option<DateTimeUtc>,
}

no_relations!();
