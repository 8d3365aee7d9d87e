//! Zero-report reminders (零报告) as durable timers.
//!
//! Each tick materialises the timers of every configured period for every
//! school it applies to, idempotently by key
//! (`zero:<period>:<school>:<stage>:<secs>`): reminders before the deadline,
//! the unit's leader after it, the next level up after a further delay. When a
//! timer fires, in its transaction, it looks for the units still missing and
//! enqueues one notification request (outbox, empty case id) per person:
//!
//! | stage | class missing | school missing |
//! | --- | --- | --- |
//! | reminder (before the deadline) | the class's head teacher | the school's leaders |
//! | overdue (after the deadline) | the school's leaders | the school's leaders |
//! | escalated (after a further delay) | the district (staff with role `district`) | the district |
//!
//! With no district officer on the school's roster, the escalation goes to the
//! school's leaders again and the gap is logged.

use chrono::{DateTime, Duration, Utc};
use sanyu_domain::zero_report::{Calendar, Level, Period, Stage};
use sanyu_domain::{RiskLevel, Role};
use sanyu_escalation::{self as escalation, PlainNotice, Timer};
use sanyu_events::NotificationReason;
use sanyu_store::entities::staff;
use sanyu_store::timers;
use sanyu_store::zero_reports::{self, SCHOOL_UNIT};
use sanyu_store::{Conn, StoreError, roster};
use uuid::Uuid;

pub use sanyu_domain::zero_report::{ZERO_REPORT_TIMER, ZeroReportTimer};

/// Whether a period still has timers worth scheduling at `now`.
fn live(calendar: &Calendar, p: &Period, now: DateTime<Utc>) -> bool {
    calendar
        .timers(p)
        .iter()
        .any(|(_, _, due)| *due + Duration::days(1) >= now)
}

/// Schedule the timers of every live period for every school it applies to;
/// `done` holds the (period, school) pairs already materialised by this worker.
pub async fn materialise(
    conn: &impl Conn,
    calendar: &Calendar,
    now: DateTime<Utc>,
    done: &mut std::collections::HashSet<(String, Uuid)>,
) -> Result<usize, StoreError> {
    let periods: Vec<&Period> = calendar
        .periods
        .iter()
        .filter(|p| live(calendar, p, now))
        .collect();
    if periods.is_empty() {
        return Ok(0);
    }
    let schools = roster::schools(conn).await?;
    let mut scheduled = 0;
    for p in periods {
        for s in schools
            .iter()
            .filter(|s| p.applies_to(&s.code, s.district_code.as_deref()))
        {
            if done.contains(&(p.id.clone(), s.id)) {
                continue;
            }
            for (stage, secs, due_at) in calendar.timers(p) {
                let t = ZeroReportTimer {
                    period_id: p.id.clone(),
                    school_id: s.id,
                    stage,
                    secs,
                };
                let row =
                    Timer::ZeroReport(t)
                        .at(due_at, None)
                        .map_err(|e| StoreError::Corrupt {
                            table: "timers",
                            detail: e.to_string(),
                        })?;
                timers::schedule(conn, row).await?;
                scheduled += 1;
            }
            done.insert((p.id.clone(), s.id));
        }
    }
    Ok(scheduled)
}

/// Fire a zero-report timer: `Ok(Some(n))` told `n` people, `Ok(None)` stale
/// (period gone from the calendar, a reminder after the deadline, or nothing missing).
pub async fn fire(
    txn: &impl Conn,
    calendar: &Calendar,
    t: &ZeroReportTimer,
    now: DateTime<Utc>,
) -> Result<Option<usize>, escalation::EscalationError> {
    let Some(period) = calendar.period(&t.period_id) else {
        return Ok(None);
    };
    if t.stage == Stage::Reminder && period.is_late(now) {
        return Ok(None);
    }
    let Some(school) = roster::school_by_id(txn, t.school_id).await? else {
        return Ok(None);
    };
    let current = zero_reports::current_for_school(txn, &period.id, school.id).await?;
    let submitted = |unit: &str| current.iter().any(|r| r.unit == unit);
    let missing_classes: Vec<_> = if period.has(Level::Class) {
        zero_reports::classes_of(txn, school.id)
            .await?
            .into_iter()
            .filter(|c| !submitted(&c.code))
            .collect()
    } else {
        Vec::new()
    };
    let school_missing = period.has(Level::School) && !submitted(SCHOOL_UNIT);
    if missing_classes.is_empty() && !school_missing {
        return Ok(None);
    }
    let mut people: Vec<staff::Model> = Vec::new();
    let mut add = |more: Vec<staff::Model>| {
        for s in more {
            if !people.iter().any(|p| p.id == s.id) {
                people.push(s);
            }
        }
    };
    match t.stage {
        Stage::Reminder => {
            for c in &missing_classes {
                add(roster::reachable_teachers(txn, school.id, c.id).await?);
            }
            if school_missing {
                add(escalation::reachable_by_email(txn, school.id, &[Role::Leader]).await?);
            }
        }
        Stage::Overdue => {
            add(escalation::reachable_by_email(txn, school.id, &[Role::Leader]).await?)
        }
        Stage::Escalated => {
            let district =
                escalation::reachable_by_email(txn, school.id, &[Role::District]).await?;
            if district.is_empty() {
                tracing::warn!(school = %school.code, period = %period.id, "no district officer on the roster: the school's leaders are told again");
                add(escalation::reachable_by_email(txn, school.id, &[Role::Leader]).await?);
            } else {
                add(district);
            }
        }
    }
    let reason = match t.stage {
        Stage::Reminder => NotificationReason::ZeroReportDue,
        Stage::Overdue => NotificationReason::ZeroReportOverdue,
        Stage::Escalated => NotificationReason::ZeroReportEscalated,
    };
    let notice = PlainNotice {
        school: &school,
        reference: &period.id,
        level: RiskLevel::Elevated,
        reason,
        at: now,
        traceparent: None,
    };
    for person in &people {
        escalation::request_plain(
            txn,
            &notice,
            person.id,
            format!("{}:{}", t.key(), person.id),
        )
        .await?;
    }
    if people.is_empty() {
        tracing::error!(school = %school.code, period = %period.id, stage = t.stage.as_str(), "zero-report reminder reaches nobody");
    }
    tracing::info!(
        school = %school.code,
        period = %period.id,
        stage = t.stage.as_str(),
        missing_classes = missing_classes.len(),
        school_missing,
        told = people.len(),
        "zero-report reminder fired"
    );
    Ok(Some(people.len()))
}
