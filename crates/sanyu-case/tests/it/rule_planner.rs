//! Properties of the pure planner of the rules engine's commands (open,
//! attach, raise) over arbitrary open cases, levels, sequences of signals and
//! reachable staff: a student never has two open cases, a rule never lowers
//! a level, a raise restarts the ladder with a new epoch, every plan that
//! changes a case emits its event (with the ids the outbox dedups by), and
//! nobody reachable is an alarm in the plan.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use sanyu_case::ladder::{self, RUNG_TIMER, ladder_for};
use sanyu_case::plan::{Plan, PlanCtx, Refusal};
use sanyu_case::rule::action;
use sanyu_case::{RuleCommand, RuleSignal, RuleSnapshot, StudentRef, plan_rule};
use sanyu_domain::escalation::EscalationPolicy;
use sanyu_domain::{CaseStatus, CaseSubject, LadderState, RiskLevel, Role};
use sanyu_events::NotificationReason;
use sanyu_events::Payload;
use sanyu_store::entities::case;
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
}

const SCHOOL: Uuid = Uuid::from_u128(1);
const CLASS: Uuid = Uuid::from_u128(2);
const STUDENT: Uuid = Uuid::from_u128(3);
const THE_CASE: Uuid = Uuid::from_u128(10);

fn level() -> impl Strategy<Value = RiskLevel> {
    prop::sample::select(vec![
        RiskLevel::Watch,
        RiskLevel::Elevated,
        RiskLevel::High,
        RiskLevel::Critical,
    ])
}

fn command() -> impl Strategy<Value = RuleCommand> {
    prop_oneof![
        level().prop_map(|level| RuleCommand::Open { level }),
        Just(RuleCommand::Attach),
        level().prop_map(|to| RuleCommand::Raise { to }),
    ]
}

/// The student's open case (not closed), at any level, ladder state and epoch.
fn open_case() -> impl Strategy<Value = case::Model> {
    (
        level(),
        prop::sample::select(vec![
            CaseStatus::Open,
            CaseStatus::Acknowledged,
            CaseStatus::InProgress,
            CaseStatus::Monitoring,
        ]),
        prop::sample::select(vec![
            LadderState::Running,
            LadderState::Stopped,
            LadderState::Exhausted,
        ]),
        0..5i32,
    )
        .prop_map(|(level, status, ladder_state, epoch)| case::Model {
            id: THE_CASE,
            reference: "R-10".into(),
            school_id: SCHOOL,
            class_id: Some(CLASS),
            student_id: Some(STUDENT),
            level,
            level_rank: level.rank(),
            status,
            opened_rule: "test".into(),
            opened_at: now() - Duration::hours(1),
            updated_at: now() - Duration::hours(1),
            closed_at: None,
            version: 3,
            ladder: None,
            ladder_epoch: epoch,
            ladder_state,
            ladder_started_at: None,
            ack_deadline: None,
            acknowledged_at: None,
            acknowledged_by: None,
            assignee_staff_id: None,
            subject: CaseSubject::Student,
            merged_into: None,
            last_action_at: None,
        })
}

/// Who is reachable: everybody, or (to see the alarm) nobody.
fn reachable(everybody: bool) -> ladder::Reachable {
    let mut staff = ladder::Reachable::new();
    if everybody {
        staff.insert(Role::Counsellor, vec![Uuid::from_u128(4)]);
        staff.insert(Role::CrisisTeam, vec![Uuid::from_u128(5)]);
        staff.insert(Role::Leader, vec![Uuid::from_u128(6)]);
    }
    staff
}

fn signal(n: u32, level: RiskLevel) -> RuleSignal {
    RuleSignal {
        event_id: format!("report:{n}"),
        kind: "report_submitted".into(),
        source_id: Some(Uuid::from_u128(200 + u128::from(n))),
        level,
        rule_id: "rule.test".into(),
    }
}

fn run(
    open: Option<&case::Model>,
    identified: bool,
    everybody: bool,
    sig: &RuleSignal,
    cmd: RuleCommand,
    counter: &AtomicU64,
) -> Result<Plan, Refusal> {
    let ids = || Uuid::from_u128(u128::from(counter.fetch_add(1, Ordering::Relaxed)));
    let policy = EscalationPolicy::default();
    let ctx = PlanCtx {
        now: now(),
        policy: &policy,
        traceparent: None,
        ids: &ids,
    };
    let staff = reachable(everybody);
    let snap = RuleSnapshot {
        school_id: SCHOOL,
        school_code: "SCH",
        student: identified.then_some(StudentRef {
            id: STUDENT,
            class_id: CLASS,
        }),
        open_case: open,
        staff: &staff,
        duty: &sanyu_domain::duty::Roster::empty(chrono_tz::Asia::Shanghai),
    };
    plan_rule(&snap, sig, cmd, &ctx)
}

/// The case id and event id of a case event.
fn event_case(e: &sanyu_store::outbox::OutboxEvent) -> String {
    let env = sanyu_events::decode(&e.payload).unwrap();
    assert_eq!(env.event_id, e.event_id);
    match env.payload.unwrap() {
        Payload::CaseEscalated(p) => p.case_id,
        Payload::CaseSignalAttached(p) => p.case_id,
        Payload::CaseOpened(p) => p.case_id,
        Payload::NotificationRequested(p) => p.case_id,
        other => panic!("unexpected event {other:?}"),
    }
}

fn has_event(plan: &Plan, id: &str) -> bool {
    plan.events.iter().any(|e| e.event_id == id)
}

fn rung_of(payload: &str) -> ladder::RungTimer {
    serde_json::from_str(payload).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_student_never_has_two_open_cases(
        cmds in prop::collection::vec((command(), level()), 1..12),
        start in prop::option::of(open_case()),
        everybody in any::<bool>(),
    ) {
        let counter = AtomicU64::new(1000);
        let mut open = start;
        for (n, (cmd, lvl)) in cmds.into_iter().enumerate() {
            let sig = signal(n as u32, lvl);
            match run(open.as_ref(), true, everybody, &sig, cmd, &counter) {
                Ok(plan) => {
                    prop_assert!(plan.opened.len() <= 1);
                    if let Some(before) = &open {
                        prop_assert!(plan.opened.is_empty(), "a second case opened");
                        prop_assert_eq!(plan.case.id, before.id);
                    } else {
                        prop_assert_eq!(plan.opened.len(), 1);
                    }
                    open = Some(plan.case_as_written());
                }
                Err(refusal) => {
                    // Only an attach or a raise with no case to attach to.
                    prop_assert!(open.is_none());
                    let was_open = matches!(cmd, RuleCommand::Open { .. });
                    prop_assert!(!was_open);
                    prop_assert_eq!(refusal, Refusal::NotFound("case"));
                }
            }
        }
    }

    #[test]
    fn a_rule_never_lowers_a_level(case in open_case(), cmd in command(), lvl in level(), everybody in any::<bool>()) {
        let counter = AtomicU64::new(1000);
        let plan = run(Some(&case), true, everybody, &signal(1, lvl), cmd, &counter).unwrap();
        prop_assert!(plan.case.level_rank >= case.level_rank);
        for w in &plan.cases {
            prop_assert!(w.after.level_rank >= w.before.level_rank);
        }
        // A raise to a level not above the case's only attaches the signal.
        if let RuleCommand::Raise { to } | RuleCommand::Open { level: to } = cmd
            && to.rank() <= case.level_rank
        {
            prop_assert_eq!(plan.action.as_str(), action::ATTACHED);
            prop_assert!(plan.cases.is_empty());
            prop_assert!(plan.notifications.is_empty());
        }
    }

    #[test]
    fn a_raise_restarts_the_ladder_with_a_new_epoch(case in open_case(), to in level(), lvl in level(), everybody in any::<bool>()) {
        let counter = AtomicU64::new(1000);
        let from: RiskLevel = case.level;
        prop_assume!(to > from);
        let plan = run(Some(&case), true, everybody, &signal(1, lvl), RuleCommand::Raise { to }, &counter).unwrap();
        prop_assert_eq!(plan.action.as_str(), action::RAISED);
        let policy = EscalationPolicy::default();
        let expected = ladder_for(&policy, to, CaseSubject::Student);
        prop_assert_eq!(plan.case.level, to);
        prop_assert_eq!(plan.case.ladder_epoch, case.ladder_epoch + 1);
        prop_assert_eq!(plan.case.ladder_state, LadderState::Running);
        prop_assert_eq!(plan.case.ladder.clone(), Some(serde_json::to_string(&expected).unwrap()));
        prop_assert_eq!(plan.case.ack_deadline, Some(expected.ack_deadline(now())));
        prop_assert!(plan.cancel_timers.iter().any(|c| c.case_id == case.id && c.kind == RUNG_TIMER));
        for t in plan.timers.iter().filter(|t| t.kind == RUNG_TIMER) {
            let rung = rung_of(&t.payload);
            prop_assert_eq!(rung.epoch, case.ladder_epoch + 1);
            prop_assert_eq!(rung.rung, 1);
        }
        // Somebody is told at once, or the alarm is in the plan.
        prop_assert!(!plan.notifications.is_empty() || !plan.alarms.is_empty());
        prop_assert_eq!(plan.alarms.is_empty(), everybody);
        // Written at the version it was read at.
        prop_assert_eq!(plan.cases.len(), 1);
        prop_assert_eq!(plan.cases[0].before.version, case.version);
        prop_assert_eq!(plan.case_as_written().version, case.version + 1);
    }

    #[test]
    fn every_plan_that_changes_a_case_emits_its_event(
        open in prop::option::of(open_case()), cmd in command(), lvl in level(),
        identified in any::<bool>(), everybody in any::<bool>(),
    ) {
        let counter = AtomicU64::new(1000);
        let sig = signal(7, lvl);
        let Ok(plan) = run(open.as_ref(), identified, everybody, &sig, cmd, &counter) else {
            return Ok(());
        };
        let about: Vec<String> = plan.events.iter().map(event_case).collect();
        for c in &plan.opened {
            let id = format!("case.opened:{}", c.id);
            prop_assert!(has_event(&plan, &id), "no {}", id);
            prop_assert_eq!(c.ladder_epoch, 1);
            prop_assert!(!plan.notifications.is_empty() || !plan.alarms.is_empty());
            prop_assert_eq!(plan.alarms.is_empty(), everybody);
            let subject = if identified { CaseSubject::Student } else { CaseSubject::UnidentifiedCaller };
            prop_assert_eq!(c.subject, subject);
            prop_assert_eq!(c.student_id, identified.then_some(STUDENT));
        }
        for w in &plan.cases {
            prop_assert!(about.contains(&w.after.id.to_string()), "no event for {}", w.after.id);
            let id = format!("case.escalated:{}:{}", w.after.id, sig.event_id);
            prop_assert!(has_event(&plan, &id), "no {}", id);
        }
        if plan.action == action::ATTACHED {
            let id = format!("case.signal_attached:{}:{}", plan.case.id, sig.event_id);
            prop_assert!(has_event(&plan, &id), "no {}", id);
        }
        // The signal is kept on the case, once, with the plan's decision.
        prop_assert_eq!(plan.signals.len(), 1);
        prop_assert_eq!(plan.signals[0].case_id, plan.case.id);
        prop_assert_eq!(&plan.signals[0].event_id, &sig.event_id);
        prop_assert_eq!(&plan.signals[0].decision, &plan.action);
        // A rule writes no timeline entry and no audit record: no keys needed.
        prop_assert!(plan.timeline.is_empty() && plan.audit.is_empty() && plan.records.is_empty());
        // Every notification is about the plan's case.
        for n in &plan.notifications {
            prop_assert_eq!(event_case(n), plan.case.id.to_string());
        }
    }
}

#[test]
fn an_unidentified_caller_opens_a_case_for_the_crisis_team() {
    let counter = AtomicU64::new(1000);
    let plan = run(
        None,
        false,
        true,
        &signal(1, RiskLevel::High),
        RuleCommand::Open {
            level: RiskLevel::High,
        },
        &counter,
    )
    .unwrap();
    assert_eq!(plan.opened.len(), 1);
    let opened = &plan.opened[0];
    assert_eq!(opened.subject, CaseSubject::UnidentifiedCaller);
    // The crisis team on duty is told first.
    assert_eq!(plan.notifications.len(), 1);
    let env = sanyu_events::decode(&plan.notifications[0].payload).unwrap();
    let Some(Payload::NotificationRequested(n)) = env.payload else {
        panic!("not a notification request");
    };
    assert_eq!(n.recipient_staff_id, Uuid::from_u128(5).to_string());
    assert_eq!(n.reason, NotificationReason::UnidentifiedCaller.name());
    let env = sanyu_events::decode(&plan.events[0].payload).unwrap();
    let Some(Payload::CaseOpened(o)) = env.payload else {
        panic!("not CaseOpened");
    };
    assert_eq!(o.student_id, "");
    assert_eq!(env.partition, opened.partition());
}
