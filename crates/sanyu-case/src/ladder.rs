//! The escalation ladder of a case, planned without I/O: who is told when a
//! ladder (re)starts, its acknowledge deadline, its next rung's timer, and the
//! alarm when nobody at all can be told. This is the one implementation of a
//! ladder start: the gateway's case work (a level change, a reopen, a merge)
//! and the rules engine (a case opened or raised, [`crate::rule`]) plan it
//! here, and `sanyu_escalation::start` is a thin wrapper around
//! [`plan_start`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sanyu_domain::duty::Roster;
use sanyu_domain::escalation::{EscalationPolicy, Ladder, Target};
use sanyu_domain::policy::FALLBACK_ROLES;
use sanyu_domain::{CaseSubject, LadderState, RiskLevel, Role};
use sanyu_events::NotificationReason;
use sanyu_events::v1;
use sanyu_store::dead_letters::NewDeadLetter;
use sanyu_store::entities::case;
use sanyu_store::outbox::OutboxEvent;
use sanyu_store::timers::NewTimer;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CaseError;
use crate::timer::Timer;

/// Timer kind of a ladder rung.
pub const RUNG_TIMER: &str = "escalation_rung";
/// Timer kind of a follow-up reminder.
pub const FOLLOW_UP_TIMER: &str = "follow_up_due";

/// The payload of a rung timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RungTimer {
    pub case_id: Uuid,
    pub epoch: i32,
    pub rung: u32,
}

impl RungTimer {
    /// The timer's key: once per case, epoch and rung.
    pub fn key(&self) -> String {
        format!("ladder:{}:e{}:r{}", self.case_id, self.epoch, self.rung)
    }
}

/// The payload of a follow-up timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpTimer {
    pub follow_up_id: Uuid,
}

/// The ladder a case runs at `level`. A case about an unidentified caller is
/// for the crisis team on duty: they are its first contact (there is no
/// student whose counsellor could be told); the later rungs are the level's.
pub fn ladder_for(policy: &EscalationPolicy, level: RiskLevel, subject: CaseSubject) -> Ladder {
    let mut ladder = policy.ladder(level);
    if subject == CaseSubject::UnidentifiedCaller {
        ladder.first = vec![Target::Role(Role::CrisisTeam)];
    }
    ladder
}

/// The reachable staff (active, with an email address) of one school by role.
pub type Reachable = HashMap<Role, Vec<Uuid>>;

/// The people of `staff` in `roles`, each once, in role order.
pub fn people_in(staff: &Reachable, roles: &[Role]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = Vec::new();
    for role in roles {
        for id in staff.get(role).into_iter().flatten() {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
    }
    ids
}

/// Whom a rung's targets reach at an instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reached {
    /// Each person once, in target order.
    pub people: Vec<Uuid>,
    /// Roles of `on_duty:` targets whose roster had nobody reachable on duty
    /// then: the whole role was told instead (a roster gap).
    pub fell_back: Vec<Role>,
}

/// Resolve `targets` at `at`: a role is everybody reachable in it; an
/// on-duty role is those of `duty`'s members on duty at `at` who are
/// reachable in that role, or (nobody) everybody reachable in it, recorded
/// in [`Reached::fell_back`].
pub fn resolve(
    targets: &[Target],
    reachable: &impl Fn(&[Role]) -> Vec<Uuid>,
    duty: &Roster,
    at: DateTime<Utc>,
) -> Reached {
    let mut out = Reached::default();
    let mut on_duty = None;
    for t in targets {
        let all = reachable(&[t.role()]);
        let chosen = match t {
            Target::Role(_) => all,
            Target::OnDuty(role) => {
                let now = on_duty.get_or_insert_with(|| duty.on_duty(at));
                let on: Vec<Uuid> = now
                    .get(role)
                    .into_iter()
                    .flatten()
                    .filter(|id| all.contains(id))
                    .copied()
                    .collect();
                if on.is_empty() {
                    if !out.fell_back.contains(role) {
                        out.fell_back.push(*role);
                    }
                    all
                } else {
                    on
                }
            }
        };
        for id in chosen {
            if !out.people.contains(&id) {
                out.people.push(id);
            }
        }
    }
    out
}

/// What a notification request is about.
pub struct Notice<'a> {
    pub school_code: &'a str,
    pub case: &'a case::Model,
    pub level: RiskLevel,
    pub reason: NotificationReason,
    pub rung: u32,
    pub at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

/// The notification request for one person, as an outbox event; `key` makes
/// it once per person and occasion.
pub fn request_event(n: &Notice<'_>, recipient: Uuid, key: String) -> OutboxEvent {
    let request = v1::NotificationRequested {
        case_id: n.case.id.to_string(),
        case_reference: n.case.reference.clone(),
        rung: n.rung,
        ..sanyu_events::notification_request(key, recipient, v1::Channel::Email, n.level, n.reason)
    };
    OutboxEvent::notification(
        n.school_code,
        n.case.partition(),
        n.at,
        request,
        n.traceparent.clone(),
    )
}

/// The key of rung `rung`'s notification to `person` in ladder `epoch`.
pub fn rung_key(case_id: Uuid, person: Uuid, epoch: i32, rung: u32) -> String {
    format!("{case_id}:{person}:e{epoch}:r{rung}")
}

/// The timer of rung `rung` of a ladder started at `started`; `None` past
/// the ladder's end.
pub fn rung_timer(
    case_id: Uuid,
    ladder: &Ladder,
    epoch: i32,
    rung: u32,
    started: DateTime<Utc>,
) -> Result<Option<NewTimer>, CaseError> {
    let Some(due_at) = ladder.rung_due(started, rung) else {
        return Ok(None);
    };
    let t = Timer::Rung(RungTimer {
        case_id,
        epoch,
        rung,
    });
    t.at(due_at, Some(case_id))
        .map(Some)
        .map_err(|e| CaseError::Corrupt {
            case_id,
            detail: e.to_string(),
        })
}

/// The alarm for a rung that reaches nobody: a dead letter the crisis team
/// and admins see, once per case, epoch and rung.
pub fn unreachable_alarm(case: &case::Model, epoch: i32, rung: u32) -> NewDeadLetter {
    NewDeadLetter {
        source_key: format!("unreachable:{}:e{epoch}:r{rung}", case.id),
        stream: "CASE".into(),
        consumer: "escalation".into(),
        stream_seq: None,
        subject: None,
        event_id: Some(format!("case:{}", case.id)),
        reason: format!(
            "case {} ({}) has nobody to notify at escalation rung {rung}: no active staff in its roles (or the fallback crisis team and leaders) with an email address",
            case.reference, case.level
        ),
        deliveries: None,
        school_id: Some(case.school_id),
    }
}

/// A ladder (re)start: everything it writes, planned.
#[derive(Debug, Clone)]
pub struct LadderStart {
    /// The case with its ladder snapshot, the next epoch, `running` and its
    /// ack deadline.
    pub case: case::Model,
    /// Notification requests for the first contacts (outbox).
    pub requests: Vec<OutboxEvent>,
    /// The next rung's timer.
    pub timer: Option<NewTimer>,
    /// Set when nobody at all is reachable (first roles and fallback).
    pub alarm: Option<NewDeadLetter>,
    /// Roles of on-duty first targets told as a whole (nobody on duty).
    pub fell_back: Vec<Role>,
}

/// Plan the (re)start of `case`'s ladder at its level: snapshot the ladder
/// from `policy` with a new epoch, tell the first roles now (or, with nobody
/// reachable in them, the fallback roles; with nobody there either, an
/// alarm), and schedule the next rung. An on-duty target is resolved on
/// `duty` at `at` ([`resolve`]). The writer cancels the case's pending
/// rung timers (of the earlier epochs) before writing the new ones.
#[allow(clippy::too_many_arguments)]
pub fn plan_start(
    case: &case::Model,
    policy: &EscalationPolicy,
    school_code: &str,
    reachable: impl Fn(&[Role]) -> Vec<Uuid>,
    duty: &Roster,
    why: NotificationReason,
    at: DateTime<Utc>,
    traceparent: Option<String>,
) -> Result<LadderStart, CaseError> {
    let level = case.level;
    let ladder = ladder_for(policy, level, case.subject());
    let epoch = case.ladder_epoch + 1;
    let snapshot = serde_json::to_string(&ladder).map_err(|e| CaseError::Corrupt {
        case_id: case.id,
        detail: e.to_string(),
    })?;
    let mut planned = case.clone();
    planned.ladder = Some(snapshot);
    planned.ladder_epoch = epoch;
    planned.ladder_state = LadderState::Running;
    planned.ladder_started_at = Some(at);
    planned.ack_deadline = Some(ladder.ack_deadline(at));
    let Reached {
        mut people,
        fell_back,
    } = resolve(&ladder.first, &reachable, duty, at);
    log_fell_back(case.id, 0, &fell_back);
    if people.is_empty() {
        // Nobody in the first roles: the fallback roles are told at once.
        people = reachable(&FALLBACK_ROLES);
    }
    let alarm = people
        .is_empty()
        .then(|| unreachable_alarm(&planned, epoch, 0));
    let notice = Notice {
        school_code,
        case: &planned,
        level,
        reason: why,
        rung: 0,
        at,
        traceparent,
    };
    let requests = people
        .iter()
        .map(|id| request_event(&notice, *id, rung_key(planned.id, *id, epoch, 0)))
        .collect();
    let timer = rung_timer(planned.id, &ladder, epoch, 1, at)?;
    Ok(LadderStart {
        case: planned,
        requests,
        timer,
        alarm,
        fell_back,
    })
}

fn log_fell_back(case_id: Uuid, rung: u32, roles: &[Role]) {
    for role in roles {
        tracing::info!(%case_id, rung, role = role.as_str(), "nobody on duty: the whole role is told");
    }
}

/// The ladder snapshotted on a case.
pub fn ladder_of(case: &case::Model) -> Result<Option<Ladder>, CaseError> {
    case.ladder
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| CaseError::Corrupt {
            case_id: case.id,
            detail: format!("ladder: {e}"),
        })
}

/// A rung that fired, planned: who is told, the next rung (or the ladder
/// exhausted), the alarm when the rung reaches nobody.
#[derive(Debug, Clone)]
pub struct RungFiring {
    /// The notification requests, the next rung's timer, the alarm, and (when
    /// no rung follows) the case row with its ladder `exhausted`.
    pub plan: crate::Plan,
    pub told: usize,
    /// Whether another rung is scheduled.
    pub next: bool,
    /// Roles of on-duty targets told as a whole (nobody on duty).
    pub fell_back: Vec<Role>,
}

/// Plan the firing of rung timer `t` on `case`: `None` when the ladder
/// stopped or restarted since the timer was set (nothing to do). The rung's
/// roles are told (each reachable person once, keyed by case, person, epoch
/// and rung; an on-duty target resolved on `duty` at `at`); nobody reachable
/// is an alarm; the next rung is scheduled, or, past the ladder's end, the
/// ladder is `exhausted`.
pub fn plan_rung(
    case: &case::Model,
    t: &RungTimer,
    school_code: &str,
    reachable: impl Fn(&[Role]) -> Vec<Uuid>,
    duty: &Roster,
    at: DateTime<Utc>,
) -> Result<Option<RungFiring>, CaseError> {
    if case.ladder_epoch != t.epoch || case.ladder_state != LadderState::Running {
        return Ok(None);
    }
    let (Some(ladder), Some(started)) = (ladder_of(case)?, case.ladder_started_at) else {
        return Ok(None);
    };
    let Some(targets) = ladder.rung_roles(t.rung) else {
        return Ok(None);
    };
    let level = case.level;
    let mut plan = crate::Plan::about(case, "rung");
    let Reached { people, fell_back } = resolve(targets, &reachable, duty, at);
    log_fell_back(case.id, t.rung, &fell_back);
    let notice = Notice {
        school_code,
        case,
        level,
        reason: NotificationReason::Unacknowledged,
        rung: t.rung,
        at,
        traceparent: None,
    };
    plan.notifications.extend(
        people
            .iter()
            .map(|id| request_event(&notice, *id, rung_key(case.id, *id, t.epoch, t.rung))),
    );
    if people.is_empty() {
        plan.alarms.push(unreachable_alarm(case, t.epoch, t.rung));
    }
    let timer = rung_timer(case.id, &ladder, t.epoch, t.rung + 1, started)?;
    let next = timer.is_some();
    plan.timers.extend(timer);
    if !next {
        let mut after = case.clone();
        after.ladder_state = LadderState::Exhausted;
        plan.write_case(case, &after);
        plan.case = after;
    }
    Ok(Some(RungFiring {
        plan,
        told: people.len(),
        next,
        fell_back,
    }))
}

/// Plan stopping `case`'s ladder (acknowledged or closed): its pending rungs
/// cancelled, the case `stopped`.
pub fn plan_stop(case: &case::Model) -> crate::Plan {
    let mut plan = crate::Plan::about(case, "stop");
    plan.cancel(case.id, RUNG_TIMER);
    if case.ladder_state != LadderState::Stopped {
        let mut after = case.clone();
        after.ladder_state = LadderState::Stopped;
        plan.write_case(case, &after);
        plan.case = after;
    }
    plan
}
