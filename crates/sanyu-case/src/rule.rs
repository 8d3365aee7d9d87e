//! What the rules engine asks of a case, typed, and its pure planner: open a
//! case for a signal, attach a signal to the open case, or raise the open
//! case's level. The actor is the rule (its id is on the signal and the
//! events), not a person: no timeline entry, no audit record. The plan is
//! written by the one writer ([`crate::apply_all`]) in the engine's batch
//! transaction.
//!
//! The planner keeps the invariants whatever it is asked: a student never
//! gets a second open case (an `Open` for a student with an open case
//! attaches or raises instead), a rule never lowers a level (a `Raise` to a
//! level not above the case's attaches), a raise restarts the ladder with a
//! new epoch, and nobody reachable is an alarm in the plan.

use sanyu_domain::{CaseSubject, RiskLevel, case_reference};
use sanyu_events::NotificationReason;
use sanyu_events::{Payload, v1};
use sanyu_store::cases::{self, NewCase, NewSignal};
use sanyu_store::entities::case;
use sanyu_store::outbox::OutboxEvent;
use uuid::Uuid;

use crate::ladder::{self, Reachable, people_in};
use crate::plan::{Plan, PlanCtx, Refusal};

/// A change the rules engine makes to a student's case (or, for an
/// unidentified hotline caller, opens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleCommand {
    /// Open a case at `level`.
    Open { level: RiskLevel },
    /// Attach the signal to the open case.
    Attach,
    /// Attach the signal and raise the open case to `to`.
    Raise { to: RiskLevel },
}

/// The signal a rule decided about, as its case keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSignal {
    /// The signal's id (the case events name it; event ids derive from it).
    pub event_id: String,
    pub kind: String,
    /// The report, screening or call behind it.
    pub source_id: Option<Uuid>,
    pub level: RiskLevel,
    /// The rule that decided.
    pub rule_id: String,
}

/// The student a case is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StudentRef {
    pub id: Uuid,
    pub class_id: Uuid,
}

/// What the rule planner knows: the school, the student (none for an
/// unidentified caller), the student's open case, the reachable staff.
#[derive(Debug, Clone, Copy)]
pub struct RuleSnapshot<'a> {
    pub school_id: Uuid,
    pub school_code: &'a str,
    pub student: Option<StudentRef>,
    pub open_case: Option<&'a case::Model>,
    pub staff: &'a Reachable,
    /// The school's duty roster (on-duty targets are resolved on it).
    pub duty: &'a sanyu_domain::duty::Roster,
}

/// The case action a rule plan is (`Plan::action`), as the decision rows name it.
pub mod action {
    pub const OPENED: &str = "opened";
    pub const RAISED: &str = "raised";
    pub const ATTACHED: &str = "attached";
}

/// Plan `cmd` for `signal` on the state of `snap`. `ctx.ids` gives a new
/// case its id.
pub fn plan_rule(
    snap: &RuleSnapshot<'_>,
    signal: &RuleSignal,
    cmd: RuleCommand,
    ctx: &PlanCtx<'_>,
) -> Result<Plan, Refusal> {
    let open = snap.open_case.filter(|c| {
        c.status.is_active() && snap.student.is_some() && c.student_id == snap.student.map(|s| s.id)
    });
    let p = RulePlanner { snap, signal, ctx };
    match (cmd, open) {
        (RuleCommand::Open { level }, None) => p.open(level),
        // Never a second open case: the signal joins the open one.
        (RuleCommand::Open { level: to }, Some(c)) | (RuleCommand::Raise { to }, Some(c)) => {
            if to > c.level {
                p.raise(c, to)
            } else {
                p.attach(c)
            }
        }
        (RuleCommand::Attach, Some(c)) => p.attach(c),
        (RuleCommand::Attach | RuleCommand::Raise { .. }, None) => Err(Refusal::NotFound("case")),
    }
}

struct RulePlanner<'a> {
    snap: &'a RuleSnapshot<'a>,
    signal: &'a RuleSignal,
    ctx: &'a PlanCtx<'a>,
}

impl RulePlanner<'_> {
    /// A case event of `case` (its school's subject and the case's partition).
    fn event(
        &self,
        case: &case::Model,
        id: String,
        subject_event: &str,
        payload: Payload,
    ) -> OutboxEvent {
        let school = self.snap.school_code;
        self.ctx
            .case_event(case, school, id, subject_event, payload)
    }

    fn signal_row(&self, case_id: Uuid, decision: &str) -> NewSignal {
        let s = self.signal;
        NewSignal {
            case_id,
            event_id: s.event_id.clone(),
            kind: s.kind.clone(),
            source_id: s.source_id,
            level: s.level,
            decision: decision.to_owned(),
            rule_id: s.rule_id.clone(),
            at: self.ctx.now,
        }
    }

    /// (Re)start `case`'s ladder: its first contacts, next rung, alarm.
    fn ladder(
        &self,
        plan: &mut Plan,
        case: &case::Model,
        why: NotificationReason,
    ) -> Result<case::Model, Refusal> {
        let start = ladder::plan_start(
            case,
            self.ctx.policy,
            self.snap.school_code,
            |roles| people_in(self.snap.staff, roles),
            self.snap.duty,
            why,
            self.ctx.now,
            self.ctx.traceparent.clone(),
        )?;
        Ok(plan.ladder(start))
    }

    fn open(&self, level: RiskLevel) -> Result<Plan, Refusal> {
        let case_id = (self.ctx.ids)();
        let (subject, why) = match self.snap.student {
            Some(_) => (CaseSubject::Student, NotificationReason::CaseOpened),
            None => (
                CaseSubject::UnidentifiedCaller,
                NotificationReason::UnidentifiedCaller,
            ),
        };
        let new = cases::new_model(NewCase {
            id: case_id,
            reference: case_reference(case_id),
            school_id: self.snap.school_id,
            class_id: self.snap.student.map(|s| s.class_id),
            student_id: self.snap.student.map(|s| s.id),
            subject,
            level,
            rule: self.signal.rule_id.clone(),
            at: self.ctx.now,
        });
        let mut plan = Plan::about(&new, action::OPENED);
        plan.signals.push(self.signal_row(case_id, action::OPENED));
        plan.events.push(self.event(
            &new,
            format!("case.opened:{case_id}"),
            "opened",
            Payload::CaseOpened(v1::CaseOpened {
                case_id: case_id.to_string(),
                reference: new.reference.clone(),
                student_id: new.student_id.map(|s| s.to_string()).unwrap_or_default(),
                level: sanyu_events::level_to_proto(level) as i32,
                signal_event_id: self.signal.event_id.clone(),
                rule_id: self.signal.rule_id.clone(),
                subject: subject.as_str().to_owned(),
            }),
        ));
        let opened = self.ladder(&mut plan, &new, why)?;
        // A new case has no rungs to cancel.
        plan.cancel_timers.clear();
        plan.opened.push(opened.clone());
        plan.case = opened;
        Ok(plan)
    }

    fn raise(&self, case: &case::Model, to: RiskLevel) -> Result<Plan, Refusal> {
        let from = case.level;
        let mut plan = Plan::about(case, action::RAISED);
        plan.signals.push(self.signal_row(case.id, action::RAISED));
        plan.events.push(self.event(
            case,
            format!("case.escalated:{}:{}", case.id, self.signal.event_id),
            "escalated",
            Payload::CaseEscalated(v1::CaseEscalated {
                case_id: case.id.to_string(),
                reference: case.reference.clone(),
                student_id: case.student_id.map(|s| s.to_string()).unwrap_or_default(),
                previous_level: sanyu_events::level_to_proto(from) as i32,
                level: sanyu_events::level_to_proto(to) as i32,
                signal_event_id: self.signal.event_id.clone(),
                rule_id: self.signal.rule_id.clone(),
            }),
        ));
        let mut next = case.clone();
        next.level = to;
        next.level_rank = to.rank();
        next.updated_at = self.ctx.now;
        // The new level's ladder starts over: its first contacts are told
        // and someone must acknowledge again.
        let raised = self.ladder(&mut plan, &next, NotificationReason::LevelRaised)?;
        plan.write_case(case, &raised);
        plan.case = raised;
        Ok(plan)
    }

    fn attach(&self, case: &case::Model) -> Result<Plan, Refusal> {
        let mut plan = Plan::about(case, action::ATTACHED);
        plan.signals
            .push(self.signal_row(case.id, action::ATTACHED));
        plan.events.push(self.event(
            case,
            format!("case.signal_attached:{}:{}", case.id, self.signal.event_id),
            "signal_attached",
            Payload::CaseSignalAttached(v1::CaseSignalAttached {
                case_id: case.id.to_string(),
                reference: case.reference.clone(),
                signal_event_id: self.signal.event_id.clone(),
                level: sanyu_events::level_to_proto(self.signal.level) as i32,
            }),
        ));
        Ok(plan)
    }
}
