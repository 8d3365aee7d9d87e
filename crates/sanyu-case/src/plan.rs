//! A plan: everything one command writes, computed without I/O, and the
//! refusals that write nothing. The writer ([`crate::apply`]) writes a plan
//! inside the caller's transaction.

use chrono::{DateTime, NaiveDate, Utc};
use sanyu_domain::escalation::EscalationPolicy;
use sanyu_domain::lifecycle::IllegalTransition;
use sanyu_domain::{CaseStatus, Principal};
use sanyu_store::audit::AuditEntry;
use sanyu_store::cases::NewSignal;
use sanyu_store::dead_letters::NewDeadLetter;
use sanyu_store::entities::{case, follow_up, referral};
use sanyu_store::outbox::OutboxEvent;
use sanyu_store::timers::NewTimer;
use uuid::Uuid;

use crate::command::Secret;

/// What the planner is given besides the case and the command.
pub struct PlanCtx<'a> {
    pub now: DateTime<Utc>,
    /// The ladders a (re)started ladder snapshots.
    pub policy: &'a EscalationPolicy,
    /// W3C trace context of the request, carried by the events.
    pub traceparent: Option<String>,
    /// New ids (timeline entries, referrals, follow-ups); `Uuid::now_v7` in
    /// production, a counter in tests.
    pub ids: &'a (dyn Fn() -> Uuid + Sync),
}

impl PlanCtx<'_> {
    /// An event about `case` of `school`: on the school's case subject for
    /// `kind`, in the case's partition, at this plan's time and trace.
    pub fn case_event(
        &self,
        case: &case::Model,
        school: &str,
        id: String,
        kind: &str,
        payload: sanyu_events::Payload,
    ) -> OutboxEvent {
        let partition = case.partition();
        let subject = sanyu_events::subjects::case_event(kind, school, partition);
        let tp = self.traceparent.clone();
        OutboxEvent::of(subject, id, self.now, school, partition, payload, tp)
    }
}

/// Why a command was refused; nothing of it is written. Each maps to the
/// API's answer: 409, 422, 404 or (a row the planner cannot read) 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The case's state does not allow it; `allowed` names what it allows.
    #[error("{message}")]
    Conflict {
        message: String,
        allowed: Vec<String>,
    },
    /// A field of the request is wrong for this case.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl Refusal {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<IllegalTransition> for Refusal {
    fn from(e: IllegalTransition) -> Self {
        Refusal::Conflict {
            message: e.to_string(),
            allowed: e
                .allowed
                .into_iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
        }
    }
}

impl From<crate::CaseError> for Refusal {
    fn from(e: crate::CaseError) -> Self {
        Refusal::Corrupt(e.to_string())
    }
}

/// A case row rewritten by the plan: `after` is written over `before` if
/// the case is still at `before.version` (its version then goes up by one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseWrite {
    pub before: case::Model,
    pub after: case::Model,
}

/// Who an entry names as its actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorRef {
    pub role: String,
    pub staff_id: Option<Uuid>,
    pub token_id: Option<Uuid>,
}

impl From<&Principal> for ActorRef {
    fn from(p: &Principal) -> Self {
        Self {
            role: p.role.as_str().to_owned(),
            staff_id: p.staff_id,
            token_id: Some(p.token_id),
        }
    }
}

/// An entry of a case's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub id: Uuid,
    pub case_id: Uuid,
    pub action: String,
    pub actor: ActorRef,
    pub status_after: CaseStatus,
    /// Ids, dates and codes: stored in clear.
    pub detail: serde_json::Value,
    /// Free text: sealed.
    pub text: Option<Secret>,
    /// Free text of the detail (a JSON object merged into `detail` for those
    /// who work the case): sealed.
    pub sealed_detail: Option<Secret>,
    pub at: DateTime<Utc>,
}

/// A referral's fields, free text in clear (the writer seals it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralDraft {
    pub institution: Secret,
    pub referred_on: NaiveDate,
    pub receipt_confirmed: bool,
    pub return_assessed_on: Option<NaiveDate>,
    pub return_assessment: Option<Secret>,
}

/// Rows besides the case that a command writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    CreateReferral {
        id: Uuid,
        case_id: Uuid,
        fields: ReferralDraft,
        at: DateTime<Utc>,
    },
    UpdateReferral {
        current: referral::Model,
        fields: ReferralDraft,
        at: DateTime<Utc>,
    },
    CreateFollowUp(follow_up::Model),
    CompleteFollowUp {
        current: follow_up::Model,
        outcome: Secret,
        at: DateTime<Utc>,
    },
    /// The hotline calls behind a case now name its student (those that name
    /// nobody yet).
    LinkCalls {
        call_ids: Vec<Uuid>,
        student_id: Uuid,
        at: DateTime<Utc>,
    },
}

/// A case's pending timers of a kind, cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerCancel {
    pub case_id: Uuid,
    pub kind: &'static str,
}

/// Everything one command writes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The case the command is about, as it is after the plan (before the
    /// writer bumps its version): what the caller answers with.
    pub case: case::Model,
    /// What the command created (note, referral, follow-up), if anything.
    pub created_id: Option<Uuid>,
    /// The timeline action of the command (`acknowledge`, `merge`, …).
    pub action: String,
    /// Timers cancelled first, so a restarted ladder's new rung survives.
    pub cancel_timers: Vec<TimerCancel>,
    /// New case rows (a rule opened them), inserted before any case write.
    pub opened: Vec<case::Model>,
    /// Case rows rewritten (version-checked), in order.
    pub cases: Vec<CaseWrite>,
    pub records: Vec<RecordWrite>,
    /// Signals attached to a case (a merge moves a caller's signals).
    pub signals: Vec<NewSignal>,
    pub timeline: Vec<TimelineEntry>,
    /// Case events (outbox).
    pub events: Vec<OutboxEvent>,
    /// Notification requests (outbox).
    pub notifications: Vec<OutboxEvent>,
    pub timers: Vec<NewTimer>,
    /// Alarms (dead letters the crisis team sees), e.g. a ladder that reaches nobody.
    pub alarms: Vec<NewDeadLetter>,
    pub audit: Vec<AuditEntry>,
}

impl Plan {
    /// An empty plan about `case`.
    pub fn about(case: &case::Model, action: &str) -> Self {
        Self {
            case: case.clone(),
            created_id: None,
            action: action.to_owned(),
            cancel_timers: Vec::new(),
            opened: Vec::new(),
            cases: Vec::new(),
            records: Vec::new(),
            signals: Vec::new(),
            timeline: Vec::new(),
            events: Vec::new(),
            notifications: Vec::new(),
            timers: Vec::new(),
            alarms: Vec::new(),
            audit: Vec::new(),
        }
    }

    /// The plan's case as the writer leaves it: its version one up when the
    /// plan rewrites it (a caller that plans again on it before reading it
    /// back, as the rules engine's batch does, plans on this).
    pub fn case_as_written(&self) -> case::Model {
        let mut c = self.case.clone();
        if let Some(w) = self.cases.iter().rev().find(|w| w.after.id == c.id) {
            c.version = w.before.version + 1;
        }
        c
    }

    /// The cases the plan writes rows of (opens, rewrites, cancels rungs of).
    pub fn written_cases(&self) -> impl Iterator<Item = uuid::Uuid> + '_ {
        self.opened
            .iter()
            .map(|c| c.id)
            .chain(self.cases.iter().map(|w| w.after.id))
            .chain(self.cancel_timers.iter().map(|c| c.case_id))
    }

    /// Whether the plan writes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.cancel_timers.is_empty()
            && self.opened.is_empty()
            && self.cases.is_empty()
            && self.records.is_empty()
            && self.signals.is_empty()
            && self.timeline.is_empty()
            && self.events.is_empty()
            && self.notifications.is_empty()
            && self.timers.is_empty()
            && self.alarms.is_empty()
            && self.audit.is_empty()
    }

    /// Take in the writes of `other` (a later plan of the same batch).
    pub fn absorb(&mut self, other: Plan) {
        for c in other.cancel_timers {
            self.cancel(c.case_id, c.kind);
        }
        self.opened.extend(other.opened);
        self.cases.extend(other.cases);
        self.records.extend(other.records);
        self.signals.extend(other.signals);
        self.timeline.extend(other.timeline);
        self.events.extend(other.events);
        self.notifications.extend(other.notifications);
        self.timers.extend(other.timers);
        self.alarms.extend(other.alarms);
        self.audit.extend(other.audit);
    }

    /// Rewrite a case (`before` as loaded): nothing when unchanged.
    pub fn write_case(&mut self, before: &case::Model, after: &case::Model) {
        if before != after {
            self.cases.push(CaseWrite {
                before: before.clone(),
                after: after.clone(),
            });
        }
    }

    /// Cancel a case's pending timers of `kind`.
    pub fn cancel(&mut self, case_id: Uuid, kind: &'static str) {
        let c = TimerCancel { case_id, kind };
        if !self.cancel_timers.contains(&c) {
            self.cancel_timers.push(c);
        }
    }

    /// Take in a planned ladder (re)start of a case: its old rungs
    /// cancelled, its first contacts' requests, its next rung, its alarm.
    pub fn ladder(&mut self, start: crate::ladder::LadderStart) -> case::Model {
        self.cancel(start.case.id, crate::ladder::RUNG_TIMER);
        // A restarted ladder waits for an acknowledgement again: what came
        // after the last one is over (its timers' epoch is old too).
        self.cancel(start.case.id, crate::after_ack::ACTION_TIMER);
        self.cancel(start.case.id, crate::after_ack::STALE_TIMER);
        self.notifications.extend(start.requests);
        self.timers.extend(start.timer);
        self.alarms.extend(start.alarm);
        start.case
    }
}
