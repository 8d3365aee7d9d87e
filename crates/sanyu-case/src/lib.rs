//! One home for every change the case work makes to a case and its ladder.
//!
//! A caller (the API, the console, any future door) expresses intent as a
//! typed [`Command`] by an [`Actor`]; [`load`] reads the case and what the
//! command needs ([`CaseSnapshot`]) inside the caller's write transaction;
//! the pure [`plan`] turns command and snapshot into a [`Plan`] (case rows,
//! timeline entries, case events, timers to start and cancel, notification
//! requests, alarms, audit records) or a [`Refusal`]; and the one writer,
//! [`apply`], writes the plan in that transaction. The ladder's start is
//! planned in [`ladder::plan_start`], for every caller.
//!
//! ```text
//! load_case ─► access check (caller) ─► load ─► plan ─► apply ─► commit (caller)
//! ```
//!
//! The rules engine asks for its changes the same way: a [`RuleCommand`]
//! (open, attach, raise) for a [`RuleSignal`], planned by the pure
//! [`plan_rule`] on what the engine already read for its batch
//! ([`RuleSnapshot`]) and written with the batch's other plans by
//! [`apply_all`]. Opening, attaching and raising have this one
//! implementation.

pub mod after_ack;
pub mod allowed;
pub mod command;
pub mod duty;
pub mod ladder;
pub mod plan;
pub mod planner;
pub mod rule;
pub mod snapshot;
pub mod timer;
pub mod writer;

pub use allowed::{LINK_STUDENT, allowed_names};
pub use command::{AckChannel, Actor, Command, FollowUp, GuardianContact, Referral, Secret};
pub use duty::DutyCalendar;
pub use plan::{Plan, PlanCtx, Refusal};
pub use planner::plan;
pub use rule::{RuleCommand, RuleSignal, RuleSnapshot, StudentRef, plan_rule};
pub use snapshot::{CaseSnapshot, Related, load, load_case};
pub use timer::{Timer, TimerError, WatchTimer};
pub use writer::{Keys, apply, apply_all};

use sanyu_store::StoreError;
use uuid::Uuid;

/// Errors of loading and writing a case change.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt case {case_id}: {detail}")]
    Corrupt { case_id: Uuid, detail: String },
}

impl From<sanyu_store::DbErr> for CaseError {
    fn from(e: sanyu_store::DbErr) -> Self {
        Self::Store(e.into())
    }
}

impl CaseError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}
