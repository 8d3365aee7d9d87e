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
        let fired = ladder::plan_rung(&c, &t, "SCH", people(everybody), &sanyu_domain::duty::Roster::empty(chrono_tz::Asia::Shanghai), now()).unwrap();
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

/// A roster with crisis-team member 2 on the night shift 22:00–07:00
/// (Shanghai), every night.
fn night_roster() -> sanyu_domain::duty::Roster {
    use chrono::{NaiveDate, NaiveTime};
    use sanyu_domain::duty::{Cadence, Days, Roster, Rotation, Shift};
    let hm = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    Roster {
        tz: chrono_tz::Asia::Shanghai,
        rotations: vec![Rotation {
            id: Uuid::from_u128(900),
            name: "夜间".into(),
            role: Role::CrisisTeam,
            cadence: Cadence::Daily,
            handover: hm(12),
            start_date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            members: vec![Uuid::from_u128(2)],
            shift: Some(Shift {
                start: hm(22),
                end: hm(7),
            }),
            days: Days::Every,
            kinds: Vec::new(),
        }],
        overrides: Vec::new(),
        key_dates: Vec::new(),
    }
}

/// Reachable staff: crisis-team members 1 and 2 (2 only if `b_reachable`),
/// leader 3.
fn crisis_team(b_reachable: bool) -> impl Fn(&[Role]) -> Vec<Uuid> {
    move |roles: &[Role]| {
        let mut out = Vec::new();
        if roles.contains(&Role::CrisisTeam) {
            out.push(Uuid::from_u128(1));
            if b_reachable {
                out.push(Uuid::from_u128(2));
            }
        }
        if roles.contains(&Role::Leader) {
            out.push(Uuid::from_u128(3));
        }
        out
    }
}

/// Shanghai local time on 2 March 2026.
fn shanghai(h: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 3, 2, h, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn an_on_duty_target_reaches_the_member_on_duty_and_else_the_whole_role() {
    use sanyu_domain::escalation::Target;
    let roster = night_roster();
    let targets = [Target::OnDuty(Role::CrisisTeam), Target::Role(Role::Leader)];
    // 03:00: only the member on the night shift (and the leader, a role).
    let night = ladder::resolve(&targets, &crisis_team(true), &roster, shanghai(3));
    assert_eq!(night.people, [Uuid::from_u128(2), Uuid::from_u128(3)]);
    assert!(night.fell_back.is_empty());
    // 15:00: nobody on duty, so the whole crisis team.
    let day = ladder::resolve(&targets, &crisis_team(true), &roster, shanghai(15));
    assert_eq!(
        day.people,
        [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)]
    );
    assert_eq!(day.fell_back, [Role::CrisisTeam]);
    // 03:00 with the member on duty unreachable: the whole role too.
    let gone = ladder::resolve(&targets, &crisis_team(false), &roster, shanghai(3));
    assert_eq!(gone.people, [Uuid::from_u128(1), Uuid::from_u128(3)]);
    assert_eq!(gone.fell_back, [Role::CrisisTeam]);
}
