//! Properties of the pure rung planner (`ladder::plan_rung`) and the ladder
//! stop (`ladder::plan_stop`): a stale timer plans nothing, a rung tells its
//! roles (or raises the alarm), the next rung is of the same epoch, and past
//! the ladder's end the ladder is exhausted.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use sanyu_case::ladder::{self, RUNG_TIMER, RungTimer};
use sanyu_domain::escalation::EscalationPolicy;
use sanyu_domain::{CaseStatus, CaseSubject, LadderState, RiskLevel, Role};
use sanyu_store::entities::case;
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
}

fn level() -> impl Strategy<Value = RiskLevel> {
    prop::sample::select(vec![
        RiskLevel::Watch,
        RiskLevel::Elevated,
        RiskLevel::High,
        RiskLevel::Critical,
    ])
}

/// A case whose ladder at `level` started an hour ago in epoch `epoch`.
fn running(level: RiskLevel, epoch: i32, state: LadderState) -> case::Model {
    let policy = EscalationPolicy::default();
    let ladder = ladder::ladder_for(&policy, level, CaseSubject::Student);
    case::Model {
        id: Uuid::from_u128(10),
        reference: "R-10".into(),
        school_id: Uuid::from_u128(1),
        class_id: Some(Uuid::from_u128(2)),
        student_id: Some(Uuid::from_u128(3)),
        level,
        level_rank: level.rank(),
        status: CaseStatus::Open,
        opened_rule: "test".into(),
        opened_at: now() - Duration::hours(1),
        updated_at: now() - Duration::hours(1),
        closed_at: None,
        version: 2,
        ladder: Some(serde_json::to_string(&ladder).unwrap()),
        ladder_epoch: epoch,
        ladder_state: state,
        ladder_started_at: Some(now() - Duration::hours(1)),
        ack_deadline: None,
        acknowledged_at: None,
        acknowledged_by: None,
        assignee_staff_id: None,
        subject: CaseSubject::Student,
        merged_into: None,
        last_action_at: None,
    }
}

fn people(everybody: bool) -> impl Fn(&[Role]) -> Vec<Uuid> {
    move |roles: &[Role]| {
        if everybody {
            roles
                .iter()
                .map(|r| Uuid::from_u128(100 + *r as u128))
                .collect()
        } else {
            Vec::new()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_rung_tells_its_roles_or_raises_the_alarm(
        lvl in level(), epoch in 1..4i32, timer_epoch in 1..4i32, rung in 1..12u32,
        state in prop::sample::select(vec![LadderState::Running, LadderState::Stopped, LadderState::Exhausted]), everybody in any::<bool>(),
    ) {
        let c = running(lvl, epoch, state);
        let t = RungTimer { case_id: c.id, epoch: timer_epoch, rung };
        let fired = ladder::plan_rung(&c, &t, "SCH", people(everybody), now()).unwrap();
        let ladder = ladder::ladder_of(&c).unwrap().unwrap();
        if epoch != timer_epoch || state != LadderState::Running || ladder.rung_roles(rung).is_none() {
            prop_assert!(fired.is_none());
            return Ok(());
        }
        let f = fired.unwrap();
        prop_assert_eq!(f.told, f.plan.notifications.len());
        prop_assert_eq!(f.plan.alarms.is_empty(), f.told > 0);
        for t in &f.plan.timers {
            let next: RungTimer = serde_json::from_str(&t.payload).unwrap();
            prop_assert_eq!(t.kind.as_str(), RUNG_TIMER);
            prop_assert_eq!(next.epoch, epoch);
            prop_assert_eq!(next.rung, rung + 1);
        }
        prop_assert_eq!(f.next, !f.plan.timers.is_empty());
        if f.next {
            prop_assert!(f.plan.cases.is_empty());
        } else {
            prop_assert_eq!(f.plan.case.ladder_state, LadderState::Exhausted);
            prop_assert_eq!(f.plan.cases.len(), 1);
        }
        // A rung never cancels the ladder it belongs to.
        prop_assert!(f.plan.cancel_timers.is_empty());
    }

    #[test]
    fn a_stop_cancels_every_rung(lvl in level(), epoch in 0..4i32, state in prop::sample::select(vec![LadderState::Running, LadderState::Stopped, LadderState::Exhausted])) {
        let c = running(lvl, epoch, state);
        let plan = ladder::plan_stop(&c);
        prop_assert!(plan.cancel_timers.iter().any(|t| t.case_id == c.id && t.kind == RUNG_TIMER));
        prop_assert_eq!(plan.case.ladder_state, LadderState::Stopped);
        prop_assert_eq!(plan.cases.is_empty(), state == LadderState::Stopped);
        prop_assert!(plan.notifications.is_empty() && plan.timers.is_empty());
    }
}
