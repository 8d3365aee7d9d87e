//! The escalation ladder's effects, shared by every writer of a case: the
//! rules engine (a case opens or its level rises), the gateway (a person
//! acknowledges, changes the level, reopens, closes) and the scheduler (a rung
//! is due). Every function here runs inside the caller's write transaction, so
//! the case change, its notifications (outbox) and its next timer commit
//! together or not at all.
//!
//! A ladder's start is planned in one place, `sanyu_case::ladder::plan_start`
//! (pure): the rules engine plans it through `sanyu_case::plan_rule`, the
//! gateway's case work through `sanyu_case::plan`, and [`start`] here is a
//! thin wrapper that reads the school's staff and writes it (for tests and
//! tools that set up a case).

pub mod contacts;

pub use sanyu_case::DutyCalendar;

pub use sanyu_case::timer::{Timer, TimerError, WATCH_FOLLOW_UP_TIMER, WatchTimer};

use chrono::{DateTime, Utc};
use sanyu_domain::escalation::{EscalationPolicy, Ladder};
use sanyu_domain::{RiskLevel, Role};
use sanyu_events::NotificationReason;
use sanyu_events::v1;
use sanyu_store::dead_letters::{self, NewDeadLetter};
use sanyu_store::entities::{case, school, staff};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::{Conn, StoreError, cases, roster};
use uuid::Uuid;

pub use sanyu_case::after_ack::{ACTION_TIMER, ActionTimer, STALE_TIMER, StaleTimer};
pub use sanyu_case::ladder::{FOLLOW_UP_TIMER, FollowUpTimer, RUNG_TIMER, RungTimer, ladder_for};
pub use sanyu_domain::LadderState;

#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt case {case_id}: {detail}")]
    Corrupt { case_id: Uuid, detail: String },
}

impl From<sanyu_case::CaseError> for EscalationError {
    fn from(e: sanyu_case::CaseError) -> Self {
        match e {
            sanyu_case::CaseError::Store(s) => Self::Store(s),
            sanyu_case::CaseError::Corrupt { case_id, detail } => Self::Corrupt { case_id, detail },
        }
    }
}

impl From<sanyu_store::DbErr> for EscalationError {
    fn from(e: sanyu_store::DbErr) -> Self {
        Self::Store(e.into())
    }
}

impl EscalationError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}

type Result<T> = std::result::Result<T, EscalationError>;

/// The ladder snapshotted on a case.
pub fn ladder_of(case: &case::Model) -> Result<Option<Ladder>> {
    Ok(sanyu_case::ladder::ladder_of(case)?)
}

/// The case a timer is about, its school and the school's reachable staff;
/// `None` when the case is gone (the timer is stale).
async fn timer_case(
    txn: &impl Conn,
    case_id: Uuid,
) -> Result<Option<(case::Model, school::Model, sanyu_case::ladder::Reachable)>> {
    let Some(case) = cases::get(txn, case_id).await? else {
        return Ok(None);
    };
    let school = school_of(txn, &case).await?;
    let staff = sanyu_case::snapshot::reachable(txn, school.id).await?;
    Ok(Some((case, school, staff)))
}

async fn school_of(txn: &impl Conn, case: &case::Model) -> Result<school::Model> {
    Ok(roster::school_by_id(txn, case.school_id)
        .await?
        .ok_or(StoreError::NotFound("school"))?)
}

/// Start (or restart) the ladder of `case` at its current level: snapshot the
/// ladder from `policy`, tell the first rung now, and schedule the next rung.
/// Timers of an earlier ladder of this case are cancelled. The plan is
/// `sanyu_case::ladder::plan_start`'s; this reads the school's reachable
/// staff and its duty roster (in China's time zone, without key dates) and
/// writes it.
pub async fn start(
    txn: &impl Conn,
    case: &case::Model,
    policy: &EscalationPolicy,
    why: NotificationReason,
    at: DateTime<Utc>,
    traceparent: Option<String>,
) -> Result<case::Model> {
    let school = school_of(txn, case).await?;
    let staff = sanyu_case::snapshot::reachable(txn, school.id).await?;
    let duty = sanyu_case::DutyCalendar::default();
    let roster = sanyu_case::duty::roster(txn, school.id, &duty, at).await?;
    let planned = sanyu_case::ladder::plan_start(
        case,
        policy,
        &school.code,
        |roles| sanyu_case::ladder::people_in(&staff, roles),
        &roster,
        why,
        at,
        traceparent,
    )?;
    Ok(sanyu_case::writer::apply_ladder(txn, case, &planned).await?)
}

/// Stop the ladder (acknowledged or closed): cancel its pending rungs
/// (`sanyu_case::ladder::plan_stop`, written by the case crate's writer).
pub async fn stop(txn: &impl Conn, case: &case::Model) -> Result<case::Model> {
    let plan = sanyu_case::ladder::plan_stop(case);
    Ok(sanyu_case::writer::apply_unsealed(txn, &plan).await?)
}

/// What firing a rung timer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// The rung was told; `next` is whether another rung is scheduled.
    Notified { rung: u32, told: usize, next: bool },
    /// The ladder stopped or restarted since the timer was set: nothing to do.
    Stale,
}

/// Fire a rung timer (the caller has taken it with `sanyu_store::timers::take` in `txn`):
/// planned by `sanyu_case::ladder::plan_rung` on the case, its school's
/// reachable staff and its duty roster (read in `duty`'s time zone and key
/// dates), written by the case crate's writer.
pub async fn fire(
    txn: &impl Conn,
    t: &RungTimer,
    duty: &sanyu_case::DutyCalendar,
    at: DateTime<Utc>,
) -> Result<Fired> {
    let Some((case, school, staff)) = timer_case(txn, t.case_id).await? else {
        return Ok(Fired::Stale);
    };
    let roster = sanyu_case::duty::roster(txn, school.id, duty, at).await?;
    let Some(firing) = sanyu_case::ladder::plan_rung(
        &case,
        t,
        &school.code,
        |roles| sanyu_case::ladder::people_in(&staff, roles),
        &roster,
        at,
    )?
    else {
        return Ok(Fired::Stale);
    };
    sanyu_case::writer::apply_unsealed(txn, &firing.plan).await?;
    if !firing.next {
        tracing::error!(case_id = %case.id, "escalation ladder exhausted without acknowledgement");
    }
    tracing::info!(case_id = %case.id, rung = t.rung, told = firing.told, "escalation rung fired");
    Ok(Fired::Notified {
        rung: t.rung,
        told: firing.told,
        next: firing.next,
    })
}

/// Fire an after-acknowledgement rung (the caller took the timer in `txn`):
/// planned by `sanyu_case::after_ack::plan_after_ack` on the case and its
/// school's reachable staff; stale when somebody acted, the ladder restarted
/// or the case closed.
pub async fn fire_after_ack(
    txn: &impl Conn,
    t: &sanyu_case::after_ack::ActionTimer,
    at: DateTime<Utc>,
) -> Result<Fired> {
    let Some((case, school, staff)) = timer_case(txn, t.case_id).await? else {
        return Ok(Fired::Stale);
    };
    let Some(firing) = sanyu_case::after_ack::plan_after_ack(&case, t, &school.code, &staff, at)?
    else {
        return Ok(Fired::Stale);
    };
    sanyu_case::writer::apply_unsealed(txn, &firing.plan).await?;
    tracing::warn!(case_id = %case.id, rung = t.rung, told = firing.told, "acknowledged without action: after-acknowledgement rung fired");
    Ok(Fired::Notified {
        rung: t.rung,
        told: firing.told,
        next: firing.next,
    })
}

/// Fire a stale-case reminder (the caller took the timer in `txn`): planned
/// by `sanyu_case::after_ack::plan_stale`.
pub async fn remind_stale(
    txn: &impl Conn,
    t: &sanyu_case::after_ack::StaleTimer,
    at: DateTime<Utc>,
) -> Result<Fired> {
    let Some((case, school, staff)) = timer_case(txn, t.case_id).await? else {
        return Ok(Fired::Stale);
    };
    let Some(firing) = sanyu_case::after_ack::plan_stale(&case, t, &school.code, &staff, at)?
    else {
        return Ok(Fired::Stale);
    };
    sanyu_case::writer::apply_unsealed(txn, &firing.plan).await?;
    tracing::info!(case_id = %case.id, period = t.period, told = firing.told, "stale case reminded");
    Ok(Fired::Notified {
        rung: 0,
        told: firing.told,
        next: firing.next,
    })
}

/// Parse a rung timer's payload.
pub fn parse_timer(payload: &str) -> std::result::Result<RungTimer, serde_json::Error> {
    serde_json::from_str(payload)
}

struct Notice<'a> {
    school: &'a school::Model,
    case: &'a case::Model,
    level: RiskLevel,
    reason: NotificationReason,
    rung: u32,
    at: DateTime<Utc>,
    traceparent: Option<String>,
}

pub use sanyu_case::snapshot::{can_be_told, has_email, has_phone};

/// Staff of `school_id` in `roles` who can be told about a case (active,
/// with an email address or a verified mobile number: [`can_be_told`]).
pub async fn reachable(
    txn: &impl Conn,
    school_id: Uuid,
    roles: &[Role],
) -> std::result::Result<Vec<staff::Model>, StoreError> {
    let staff = staff_in_roles(txn, school_id, roles).await?;
    let ids: Vec<Uuid> = staff.iter().map(|s| s.id).collect();
    let verified = sanyu_store::contacts::verified(txn, &ids).await?;
    Ok(staff
        .into_iter()
        .filter(|s| can_be_told(s, &verified))
        .collect())
}

/// Staff of `school_id` in `roles` with an email address: who can be told
/// of something that is no case (a zero report, a watch-list follow-up, a
/// role grant), which goes by email only.
pub async fn reachable_by_email(
    txn: &impl Conn,
    school_id: Uuid,
    roles: &[Role],
) -> std::result::Result<Vec<staff::Model>, StoreError> {
    Ok(staff_in_roles(txn, school_id, roles)
        .await?
        .into_iter()
        .filter(has_email)
        .collect())
}

/// The active staff of `school_id` in `roles`, each once.
async fn staff_in_roles(
    txn: &impl Conn,
    school_id: Uuid,
    roles: &[Role],
) -> std::result::Result<Vec<staff::Model>, StoreError> {
    let mut out: Vec<staff::Model> = Vec::new();
    for role in roles {
        for s in roster::staff_in_role(txn, school_id, *role).await? {
            if !out.iter().any(|o| o.id == s.id) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

async fn request(txn: &impl Conn, n: &Notice<'_>, recipient: Uuid, key: String) -> Result<()> {
    outbox::enqueue(txn, request_event(n, recipient, key)).await?;
    Ok(())
}

/// The notification request for one person, as an outbox event.
fn request_event(n: &Notice<'_>, recipient: Uuid, key: String) -> OutboxEvent {
    sanyu_case::ladder::request_event(
        &sanyu_case::ladder::Notice {
            school_code: &n.school.code,
            case: n.case,
            level: n.level,
            reason: n.reason,
            rung: n.rung,
            at: n.at,
            traceparent: n.traceparent.clone(),
        },
        recipient,
        key,
    )
}

/// Raise an alarm about a case's ladder: a record the crisis team and admins
/// see (`/v1/dead-letters`) and a message to the school's crisis team. `key`
/// makes it once per problem.
pub async fn alarm(
    txn: &impl Conn,
    case: &case::Model,
    key: &str,
    what: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let source_key = format!("alarm:{}:{key}", case.id);
    let existing = dead_letters::by_source_key(txn, &source_key).await?;
    if existing.is_some() {
        return Ok(false);
    }
    dead_letters::record(
        txn,
        NewDeadLetter {
            source_key,
            stream: "CASE".into(),
            consumer: "ladder-auditor".into(),
            stream_seq: None,
            subject: None,
            event_id: Some(format!("case:{}", case.id)),
            reason: format!("case {} ({}): {what}", case.reference, case.level),
            deliveries: None,
            school_id: Some(case.school_id),
        },
    )
    .await?;
    let level = case.level;
    let school = school_of(txn, case).await?;
    let notice = Notice {
        school: &school,
        case,
        level,
        reason: NotificationReason::LadderAlarm,
        rung: 0,
        at,
        traceparent: None,
    };
    for person in reachable(txn, school.id, &[Role::CrisisTeam, Role::Leader]).await? {
        let k = format!("{}:{}:alarm:{key}", case.id, person.id);
        request(txn, &notice, person.id, k).await?;
    }
    Ok(true)
}

/// Remind the case's assignee (or, with nobody assigned, the school's
/// counsellors) that a follow-up is due. Nothing when it was done meanwhile.
pub async fn remind_follow_up(
    txn: &impl Conn,
    t: &FollowUpTimer,
    at: DateTime<Utc>,
) -> Result<Fired> {
    let Some(f) = sanyu_store::casework::get_follow_up(txn, t.follow_up_id).await? else {
        return Ok(Fired::Stale);
    };
    if f.done_at.is_some() {
        return Ok(Fired::Stale);
    }
    let Some(case_id) = f.case_id else {
        return Ok(Fired::Stale);
    };
    let Some(case) = cases::get(txn, case_id).await? else {
        return Ok(Fired::Stale);
    };
    let level = case.level;
    let school = school_of(txn, &case).await?;
    let notice = Notice {
        school: &school,
        case: &case,
        level,
        reason: NotificationReason::FollowUpDue,
        rung: 0,
        at,
        traceparent: None,
    };
    let assignee = match case.assignee_staff_id {
        Some(id) => roster::staff_by_id(txn, id).await?.filter(|s| s.active),
        None => None,
    };
    let assignee = match assignee {
        Some(person) => {
            let verified = sanyu_store::contacts::verified(txn, &[person.id]).await?;
            can_be_told(&person, &verified).then_some(person)
        }
        None => None,
    };
    let people = match assignee {
        Some(person) => vec![person],
        None => reachable(txn, school.id, &[Role::Counsellor, Role::CrisisTeam]).await?,
    };
    for person in &people {
        let key = format!("{}:{}:follow_up:{}", case.id, person.id, f.id);
        request(txn, &notice, person.id, key).await?;
    }
    Ok(Fired::Notified {
        rung: 0,
        told: people.len(),
        next: false,
    })
}

/// Remind the school's counsellors (or, with none reachable, its crisis team)
/// that a student on the watch list is due for follow-up. The notice names
/// the entry (an id), never the student. Nothing when the entry is done or its
/// date has moved since the timer was set.
pub async fn remind_watch(txn: &impl Conn, t: &WatchTimer, at: DateTime<Utc>) -> Result<Fired> {
    let Some(entry) = sanyu_store::decisions::watch_entry(txn, t.watch_id).await? else {
        return Ok(Fired::Stale);
    };
    if entry.done_at.is_some() || entry.follow_up_on != t.on {
        return Ok(Fired::Stale);
    }
    let school = roster::school_by_id(txn, entry.school_id)
        .await?
        .ok_or(StoreError::NotFound("school"))?;
    let mut people = reachable_by_email(txn, school.id, &[Role::Counsellor]).await?;
    if people.is_empty() {
        people = reachable_by_email(txn, school.id, &[Role::CrisisTeam]).await?;
    }
    let reference = entry.id.to_string();
    let notice = PlainNotice {
        school: &school,
        reference: &reference,
        level: RiskLevel::Watch,
        reason: NotificationReason::WatchFollowUpDue,
        at,
        traceparent: None,
    };
    for person in &people {
        let key = format!("watch:{}:{}:{}", entry.id, t.on, person.id);
        request_plain(txn, &notice, person.id, key).await?;
    }
    if people.is_empty() {
        tracing::error!(watch_id = %entry.id, "watch follow-up reaches nobody");
    }
    Ok(Fired::Notified {
        rung: 0,
        told: people.len(),
        next: false,
    })
}

/// Announce a role grant (asked for, or in effect) to the school's reachable
/// leaders and crisis team, in the caller's transaction: a notice naming the
/// grant id and a link, nothing else. `critical`, so it is sent at once
/// (no quiet hours, no rate limit), by email. Returns how many were told.
pub async fn announce_role_grant(
    txn: &impl Conn,
    school: &school::Model,
    grant_id: Uuid,
    reason: NotificationReason,
    at: DateTime<Utc>,
    traceparent: Option<String>,
) -> Result<usize> {
    let people = reachable_by_email(txn, school.id, &[Role::Leader, Role::CrisisTeam]).await?;
    let reference = grant_id.to_string();
    let notice = PlainNotice {
        school,
        reference: &reference,
        level: RiskLevel::Critical,
        reason,
        at,
        traceparent,
    };
    for person in &people {
        let key = format!("role_grant:{grant_id}:{}:{}", reason.name(), person.id);
        request_plain(txn, &notice, person.id, key).await?;
    }
    if people.is_empty() {
        tracing::warn!(grant_id = %grant_id, "role grant announced to nobody: no reachable leader or crisis team");
    }
    Ok(people.len())
}

/// A notice about no case: a missing zero report, a watch-list follow-up.
pub struct PlainNotice<'a> {
    pub school: &'a school::Model,
    /// The period id, or the watch entry id (never a name).
    pub reference: &'a str,
    pub level: RiskLevel,
    pub reason: NotificationReason,
    pub at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

/// Enqueue one notification request (empty case id) to `recipient`; `key`
/// makes it exactly-once. Runs in the caller's transaction.
pub async fn request_plain(
    txn: &impl Conn,
    n: &PlainNotice<'_>,
    recipient: Uuid,
    key: String,
) -> Result<()> {
    let request = v1::NotificationRequested {
        case_reference: n.reference.to_owned(),
        ..sanyu_events::notification_request(key, recipient, v1::Channel::Email, n.level, n.reason)
    };
    let event = OutboxEvent::notification(&n.school.code, 0, n.at, request, n.traceparent.clone());
    outbox::enqueue(txn, event).await?;
    Ok(())
}
