//! After the acknowledgement (issue 16): a crisis that is acknowledged and
//! then left climbs until someone acts, and a case being worked that nobody
//! acts on for days is reminded.
//!
//! - **Acknowledged without action.** The acknowledgement of a case whose
//!   level has an after-acknowledgement ladder ([`AfterAck`],
//!   `[escalation.after_ack.<level>]`, snapshotted with the case's ladder)
//!   schedules an [`ActionTimer`] for its first rung `action_within_secs`
//!   later. A first action ([`Command::counts_as_action`], the one rule)
//!   cancels it in its own transaction; when it fires first
//!   ([`plan_after_ack`]) the rung's roles are told
//!   (`NO_ACTION_AFTER_ACK`) and the next rung is scheduled, until the ladder
//!   runs out (an alarm). The epoch rule of rung timers holds: a raise or a
//!   reopen restarts the ladder (a new epoch) and the old timers do nothing;
//!   they are cancelled too.
//! - **Stale.** Every action (and the acknowledgement) schedules a
//!   [`StaleTimer`] at the level's `stale_after_days`; the next action
//!   cancels it. When it fires ([`plan_stale`]) the assignee (or, with none
//!   reachable, the counsellors, then the crisis team) is reminded
//!   (`CASE_STALE`) and the next period's timer is scheduled: once per period,
//!   and once whatever the replicas (the timer is taken pending → fired).
//!
//! [`Command::counts_as_action`]: crate::Command::counts_as_action

use chrono::{DateTime, Duration, Utc};
use sanyu_domain::escalation::AfterAck;
use sanyu_domain::{CaseStatus, LadderState, Role};
use sanyu_events::NotificationReason;
use sanyu_store::dead_letters::NewDeadLetter;
use sanyu_store::entities::case;
use sanyu_store::timers::NewTimer;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CaseError;
use crate::ladder::{Notice, Reachable, RungFiring, ladder_of, people_in, request_event};
use crate::timer::Timer;

/// Timer kind of an after-acknowledgement rung.
pub const ACTION_TIMER: &str = "after_ack_rung";
/// Timer kind of a stale-case reminder.
pub const STALE_TIMER: &str = "case_stale";

/// The payload of an after-acknowledgement rung timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionTimer {
    pub case_id: Uuid,
    /// The ladder epoch the acknowledgement was of.
    pub epoch: i32,
    /// From 1.
    pub rung: u32,
}

impl ActionTimer {
    /// Once per case, epoch and rung (one acknowledgement per epoch).
    pub fn key(&self) -> String {
        format!("after_ack:{}:e{}:r{}", self.case_id, self.epoch, self.rung)
    }
}

/// The payload of a stale-case reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleTimer {
    pub case_id: Uuid,
    /// The timeline entry of the action (or acknowledgement) it counts from.
    pub after: Uuid,
    /// When that action was.
    pub since: DateTime<Utc>,
    /// The period, in days, at the time of the action.
    pub days: u32,
    /// Which period (from 1) this reminder ends.
    pub period: u32,
}

impl StaleTimer {
    pub fn key(&self) -> String {
        format!("stale:{}:{}:p{}", self.case_id, self.after, self.period)
    }

    fn due(&self) -> DateTime<Utc> {
        self.since + Duration::days(i64::from(self.days) * i64::from(self.period))
    }
}

fn corrupt(case_id: Uuid) -> impl Fn(serde_json::Error) -> CaseError {
    move |e| CaseError::Corrupt {
        case_id,
        detail: e.to_string(),
    }
}

/// When a person last did something with the case that counts: its last
/// action, or its acknowledgement when that came later (or nothing yet).
pub fn no_action_since(case: &case::Model) -> Option<DateTime<Utc>> {
    match (case.last_action_at, case.acknowledged_at) {
        (Some(a), Some(k)) => Some(a.max(k)),
        (a, k) => a.or(k),
    }
}

/// Whether someone acted on the case since it was last acknowledged.
pub fn acted_since_ack(case: &case::Model) -> bool {
    match (case.last_action_at, case.acknowledged_at) {
        (Some(action), Some(ack)) => action >= ack,
        _ => false,
    }
}

/// The timer of after-acknowledgement rung `rung` of an acknowledgement at
/// `acked` in ladder `epoch`; `None` past the ladder's end.
pub fn action_timer(
    case_id: Uuid,
    after_ack: &AfterAck,
    epoch: i32,
    rung: u32,
    acked: DateTime<Utc>,
) -> Result<Option<NewTimer>, CaseError> {
    let Some(due) = after_ack.rung_due(acked, rung) else {
        return Ok(None);
    };
    Timer::AfterAck(ActionTimer {
        case_id,
        epoch,
        rung,
    })
    .at(due, Some(case_id))
    .map(Some)
    .map_err(corrupt(case_id))
}

/// The first stale reminder counted from the action (timeline entry
/// `after`) at `since`; `None` when the level is never stale.
pub fn stale_timer(
    case_id: Uuid,
    period: Option<Duration>,
    after: Uuid,
    since: DateTime<Utc>,
) -> Result<Option<NewTimer>, CaseError> {
    let Some(days) = period.and_then(|p| u32::try_from(p.num_days()).ok()) else {
        return Ok(None);
    };
    let t = StaleTimer {
        case_id,
        after,
        since,
        days,
        period: 1,
    };
    Timer::Stale(t)
        .at(t.due(), Some(case_id))
        .map(Some)
        .map_err(corrupt(case_id))
}

/// The key of after-acknowledgement rung `rung`'s notice to `person`.
pub fn after_ack_key(case_id: Uuid, person: Uuid, epoch: i32, rung: u32) -> String {
    format!("{case_id}:{person}:e{epoch}:a{rung}")
}

fn alarm(case: &case::Model, source_key: String, what: &str) -> NewDeadLetter {
    NewDeadLetter {
        source_key,
        stream: "CASE".into(),
        consumer: "escalation".into(),
        stream_seq: None,
        subject: None,
        event_id: Some(format!("case:{}", case.id)),
        reason: format!("case {} ({}): {what}", case.reference, case.level),
        deliveries: None,
        school_id: Some(case.school_id),
    }
}

/// Plan the firing of after-acknowledgement timer `t` on `case`: `None` when
/// it is stale (the ladder restarted, the case closed, somebody acted). The
/// rung's roles are told, each reachable person once per rung; nobody
/// reachable is an alarm; the next rung is scheduled, or, past the end, an
/// alarm says that nobody acted.
pub fn plan_after_ack(
    case: &case::Model,
    t: &ActionTimer,
    school_code: &str,
    staff: &Reachable,
    at: DateTime<Utc>,
) -> Result<Option<RungFiring>, CaseError> {
    if case.ladder_epoch != t.epoch
        || case.ladder_state != LadderState::Stopped
        || case.status == CaseStatus::Closed
        || acted_since_ack(case)
    {
        return Ok(None);
    }
    let (Some(after_ack), Some(acked)) = (
        ladder_of(case)?.and_then(|l| l.after_ack),
        case.acknowledged_at,
    ) else {
        return Ok(None);
    };
    let Some(targets) = after_ack.rung_roles(t.rung) else {
        return Ok(None);
    };
    let mut plan = crate::Plan::about(case, "after_ack");
    // After the acknowledgement the whole role is told (an `on_duty:` target
    // here means its role: the person on duty already acknowledged).
    let roles: Vec<Role> = targets.iter().map(|t| t.role()).collect();
    let people = people_in(staff, &roles);
    let notice = Notice {
        school_code,
        case,
        level: case.level,
        reason: NotificationReason::NoActionAfterAck,
        rung: t.rung,
        at,
        traceparent: None,
    };
    plan.notifications.extend(
        people
            .iter()
            .map(|id| request_event(&notice, *id, after_ack_key(case.id, *id, t.epoch, t.rung))),
    );
    if people.is_empty() {
        plan.alarms.push(alarm(
            case,
            format!("unreachable:{}:e{}:a{}", case.id, t.epoch, t.rung),
            &format!(
                "acknowledged without action, and after-acknowledgement rung {} reaches nobody",
                t.rung
            ),
        ));
    }
    let timer = action_timer(case.id, &after_ack, t.epoch, t.rung + 1, acked)?;
    let next = timer.is_some();
    plan.timers.extend(timer);
    if !next {
        plan.alarms.push(alarm(
            case,
            format!("after_ack_exhausted:{}:e{}", case.id, t.epoch),
            "acknowledged, and every rung after the acknowledgement fired without anybody recording an action",
        ));
    }
    Ok(Some(RungFiring {
        plan,
        told: people.len(),
        next,
        fell_back: Vec::new(),
    }))
}

/// Plan the firing of stale reminder `t` on `case`: `None` when somebody
/// acted since, the case closed or is back to open (its ladder's). The
/// assignee is reminded if reachable, else the counsellors, else the crisis
/// team; the next period's reminder is scheduled.
pub fn plan_stale(
    case: &case::Model,
    t: &StaleTimer,
    school_code: &str,
    staff: &Reachable,
    at: DateTime<Utc>,
) -> Result<Option<RungFiring>, CaseError> {
    if matches!(case.status, CaseStatus::Open | CaseStatus::Closed) {
        return Ok(None);
    }
    // A later action cancels this timer in its transaction; a second look
    // (with a second of slack for the stored time's precision).
    if no_action_since(case).is_some_and(|s| s > t.since + Duration::seconds(1)) {
        return Ok(None);
    }
    let is_reachable = |id: Uuid| staff.values().any(|ids| ids.contains(&id));
    let people = match case.assignee_staff_id.filter(|id| is_reachable(*id)) {
        Some(id) => vec![id],
        None => {
            let c = people_in(staff, &[Role::Counsellor]);
            if c.is_empty() {
                people_in(staff, &[Role::CrisisTeam])
            } else {
                c
            }
        }
    };
    let mut plan = crate::Plan::about(case, "stale");
    let notice = Notice {
        school_code,
        case,
        level: case.level,
        reason: NotificationReason::CaseStale,
        rung: 0,
        at,
        traceparent: None,
    };
    plan.notifications.extend(people.iter().map(|id| {
        request_event(
            &notice,
            *id,
            format!("{}:{id}:stale:{}:p{}", case.id, t.after, t.period),
        )
    }));
    if people.is_empty() {
        plan.alarms.push(alarm(
            case,
            format!("unreachable:{}:stale:{}:p{}", case.id, t.after, t.period),
            "no action for days, and nobody can be reminded",
        ));
    }
    let next = StaleTimer {
        period: t.period + 1,
        ..*t
    };
    plan.timers.push(
        Timer::Stale(next)
            .at(next.due(), Some(case.id))
            .map_err(corrupt(case.id))?,
    );
    Ok(Some(RungFiring {
        plan,
        told: people.len(),
        next: true,
        fell_back: Vec::new(),
    }))
}
