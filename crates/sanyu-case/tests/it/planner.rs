//! Properties of the pure planner over arbitrary cases and commands: an
//! acknowledgement cancels every pending rung, a raise restarts the ladder
//! with a new epoch, every plan that changes a case emits its event,
//! illegal transitions are refused (and a refusal plans nothing), a close
//! cancels every rung, and a student never ends up with two open cases.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use sanyu_case::ladder::{self, RUNG_TIMER, ladder_for};
use sanyu_case::plan::{Plan, PlanCtx, Refusal};
use sanyu_case::{
    AckChannel, Actor, CaseSnapshot, Command, FollowUp, GuardianContact, Referral, Secret,
};
use sanyu_domain::escalation::EscalationPolicy;
use sanyu_domain::lifecycle::{self, CaseAction};
use sanyu_domain::{CaseStatus, CaseSubject, LadderState, Principal, RiskLevel, Role};
use sanyu_events::Payload;
use sanyu_store::entities::{case, case_signal, staff, student};
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
}

const SCHOOL: Uuid = Uuid::from_u128(1);
const CLASS: Uuid = Uuid::from_u128(2);
const STUDENT: Uuid = Uuid::from_u128(3);
const ME: Uuid = Uuid::from_u128(4);
const OTHER_STAFF: Uuid = Uuid::from_u128(5);
const THE_CASE: Uuid = Uuid::from_u128(10);
const OTHER_CASE: Uuid = Uuid::from_u128(11);

fn level() -> impl Strategy<Value = RiskLevel> {
    prop::sample::select(vec![
        RiskLevel::Watch,
        RiskLevel::Elevated,
        RiskLevel::High,
        RiskLevel::Critical,
    ])
}

fn status() -> impl Strategy<Value = CaseStatus> {
    prop::sample::select(CaseStatus::ALL.to_vec())
}

fn case_row(
    id: Uuid,
    status: CaseStatus,
    level: RiskLevel,
    ladder_state: LadderState,
    student: Option<Uuid>,
    epoch: i32,
    assignee: Option<Uuid>,
) -> case::Model {
    case::Model {
        id,
        reference: format!("R-{}", id.as_u128()),
        school_id: SCHOOL,
        class_id: student.map(|_| CLASS),
        student_id: student,
        level,
        level_rank: level.rank(),
        status,
        opened_rule: "test".into(),
        opened_at: now() - Duration::hours(1),
        updated_at: now() - Duration::hours(1),
        closed_at: (status == CaseStatus::Closed).then(|| now() - Duration::minutes(5)),
        version: 3,
        ladder: None,
        ladder_epoch: epoch,
        ladder_state,
        ladder_started_at: None,
        ack_deadline: None,
        acknowledged_at: None,
        acknowledged_by: None,
        assignee_staff_id: assignee,
        subject: if student.is_some() {
            CaseSubject::Student
        } else {
            CaseSubject::UnidentifiedCaller
        },
        merged_into: None,
        last_action_at: None,
    }
}

fn a_case() -> impl Strategy<Value = case::Model> {
    (
        status(),
        level(),
        prop::sample::select(vec![
            LadderState::Running,
            LadderState::Stopped,
            LadderState::Exhausted,
        ]),
        any::<bool>(),
        0..5i32,
        prop::option::of(prop::sample::select(vec![ME, OTHER_STAFF])),
    )
        .prop_map(|(s, l, ladder, identified, epoch, assignee)| {
            case_row(
                THE_CASE,
                s,
                l,
                ladder,
                identified.then_some(STUDENT),
                epoch,
                assignee,
            )
        })
}

fn staff_row(id: Uuid, role: Role) -> staff::Model {
    staff::Model {
        id,
        school_id: SCHOOL,
        staff_no: "K9".into(),
        name: "Staff".into(),
        role: role.as_str().to_owned(),
        class_id: None,
        phone: None,
        email: Some("k9@school.test".into()),
        active: true,
        created_at: now(),
        updated_at: now(),
    }
}

fn student_row() -> student::Model {
    student::Model {
        id: STUDENT,
        school_id: SCHOOL,
        class_id: CLASS,
        student_no: "S1".into(),
        name: "Student".into(),
        gender: None,
        active: true,
        created_at: now(),
        updated_at: now(),
    }
}

fn signal_row(case_id: Uuid, n: u128, level: RiskLevel) -> case_signal::Model {
    case_signal::Model {
        id: Uuid::from_u128(100 + n),
        case_id,
        event_id: format!("hotline:{n}"),
        kind: "hotline_call".into(),
        source_id: Some(Uuid::from_u128(200 + n)),
        level,
        decision: "opened".into(),
        rule_id: "hotline".into(),
        attached_at: now() - Duration::hours(1),
    }
}

fn a_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Acknowledge {
            via: sanyu_case::AckChannel::Api
        }),
        prop::sample::select(vec![ME, OTHER_STAFF])
            .prop_map(|staff_id| Command::Assign { staff_id }),
        Just(Command::Note {
            text: Secret::new("note")
        }),
        any::<bool>().prop_map(|contacted| Command::ContactGuardian(GuardianContact {
            contacted,
            guardian_id: None,
            at: None,
            channel: None,
            outcome: None,
            reason: Some(Secret::new("risk from home")),
        })),
        Just(Command::Refer(Referral {
            referral_id: None,
            institution: Secret::new("hospital"),
            referred_on: now().date_naive(),
            receipt_confirmed: false,
            return_assessment: None,
        })),
        Just(Command::FollowUp(FollowUp {
            follow_up_id: None,
            due_at: Some(now() + Duration::days(7)),
            outcome: None,
        })),
        level().prop_map(|level| Command::SetLevel {
            level,
            reason: Secret::new("why")
        }),
        Just(Command::Close {
            outcome: Secret::new("resolved"),
            summary: None
        }),
        Just(Command::Reopen {
            reason: Secret::new("again")
        }),
        Just(Command::LinkStudent {
            student_no: "S1".into()
        }),
    ]
}

/// Who is reachable: everybody, or (to see the alarm) nobody.
fn reachable(everybody: bool) -> ladder::Reachable {
    let mut staff = ladder::Reachable::new();
    if everybody {
        staff.insert(Role::Counsellor, vec![ME]);
        staff.insert(Role::CrisisTeam, vec![OTHER_STAFF]);
        staff.insert(Role::Leader, vec![Uuid::from_u128(6)]);
    }
    staff
}

/// A snapshot of `case` with what `cmd` may need; `other` is the student's
/// open case (for a link or a reopen), if any.
fn snapshot(
    case: case::Model,
    cmd: &Command,
    other: Option<case::Model>,
    everybody: bool,
) -> CaseSnapshot {
    let mut s = CaseSnapshot::of(case.clone(), "SCH");
    s.staff = reachable(everybody);
    match cmd {
        Command::Assign { staff_id } => {
            s.related.assignee = Some(staff_row(*staff_id, Role::Counsellor));
        }
        Command::LinkStudent { .. } => {
            s.related.student = Some(student_row());
            s.related.signals = vec![signal_row(case.id, 1, case.level)];
            s.related.open_case = other;
        }
        Command::Reopen { .. } => s.related.open_case = other,
        _ => {}
    }
    s
}

fn actor(role: Role) -> Actor {
    Actor {
        principal: Principal {
            token_id: Uuid::from_u128(99),
            role,
            school_id: SCHOOL,
            class_id: None,
            staff_id: Some(ME),
        },
        source: "127.0.0.1".into(),
    }
}

fn run(snapshot: &CaseSnapshot, role: Role, cmd: &Command) -> Result<Plan, Refusal> {
    let counter = AtomicU64::new(1000);
    let ids = move || Uuid::from_u128(u128::from(counter.fetch_add(1, Ordering::Relaxed)));
    let policy = EscalationPolicy::default();
    let ctx = PlanCtx {
        now: now(),
        policy: &policy,
        traceparent: None,
        ids: &ids,
    };
    sanyu_case::plan(snapshot, &actor(role), cmd, &ctx)
}

/// The case id an outbox event is about.
fn event_case(e: &sanyu_store::outbox::OutboxEvent) -> String {
    let env = sanyu_events::decode(&e.payload).unwrap();
    match env.payload.unwrap() {
        Payload::CaseAcknowledged(p) => p.case_id,
        Payload::CaseClosed(p) => p.case_id,
        Payload::CaseAction(p) => p.case_id,
        Payload::CaseEscalated(p) => p.case_id,
        Payload::CaseSignalAttached(p) => p.case_id,
        Payload::CaseOpened(p) => p.case_id,
        Payload::NotificationRequested(p) => p.case_id,
        other => panic!("unexpected event {other:?}"),
    }
}

fn other_open_case() -> impl Strategy<Value = Option<case::Model>> {
    prop::option::of(
        (
            level(),
            prop::sample::select(vec![CaseStatus::Open, CaseStatus::InProgress]),
        )
            .prop_map(|(l, s)| {
                case_row(
                    OTHER_CASE,
                    s,
                    l,
                    LadderState::Stopped,
                    Some(STUDENT),
                    1,
                    None,
                )
            }),
    )
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![Role::Counsellor, Role::CrisisTeam])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn an_acknowledgement_cancels_every_pending_rung(case in a_case(), role in role(), everybody in any::<bool>()) {
        let s = snapshot(case.clone(), &Command::Acknowledge { via: sanyu_case::AckChannel::Api }, None, everybody);
        if let Ok(plan) = run(&s, role, &Command::Acknowledge { via: sanyu_case::AckChannel::Api }) {
            prop_assert!(plan.cancel_timers.iter().any(|c| c.case_id == case.id && c.kind == RUNG_TIMER));
            prop_assert!(plan.timers.iter().all(|t| t.kind != RUNG_TIMER));
            prop_assert!(plan.notifications.is_empty());
            prop_assert_eq!(plan.case.ladder_state, LadderState::Stopped);
            prop_assert!(plan.case.acknowledged_at.is_some());
        } else {
            // Refused only when there is nothing to acknowledge.
            let st: CaseStatus = case.status;
            prop_assert!(st == CaseStatus::Closed || (st != CaseStatus::Open && case.ladder_state == LadderState::Stopped));
        }
    }

    #[test]
    fn a_raise_restarts_the_ladder_with_a_new_epoch(case in a_case(), to in level(), role in role(), everybody in any::<bool>()) {
        let cmd = Command::SetLevel { level: to, reason: Secret::new("why") };
        let s = snapshot(case.clone(), &cmd, None, everybody);
        let from: RiskLevel = case.level;
        let result = run(&s, role, &cmd);
        if case.status == CaseStatus::Closed || from == to {
            prop_assert!(result.is_err());
            return Ok(());
        }
        let plan = result.unwrap();
        prop_assert_eq!(plan.case.level, to);
        if to > from {
            let policy = EscalationPolicy::default();
            let expected = ladder_for(&policy, to, plan.case.subject());
            prop_assert_eq!(plan.case.ladder_epoch, case.ladder_epoch + 1);
            prop_assert_eq!(plan.case.ladder_state, LadderState::Running);
            prop_assert_eq!(plan.case.ladder.clone(), Some(serde_json::to_string(&expected).unwrap()));
            prop_assert_eq!(plan.case.ack_deadline, Some(expected.ack_deadline(now())));
            prop_assert!(plan.cancel_timers.iter().any(|c| c.case_id == case.id && c.kind == RUNG_TIMER));
            // The fresh ladder's timers are all of the new epoch.
            for t in plan.timers.iter().filter(|t| t.kind == RUNG_TIMER) {
                let rung = rung_of(&t.payload);
                prop_assert_eq!(rung.epoch, case.ladder_epoch + 1);
                prop_assert_eq!(rung.rung, 1);
            }
            // Somebody is told at once, or the alarm is in the plan.
            prop_assert!(!plan.notifications.is_empty() || !plan.alarms.is_empty());
            prop_assert_eq!(plan.alarms.is_empty(), everybody);
        } else if case.ladder_state == LadderState::Stopped {
            prop_assert_eq!(plan.case.ladder_epoch, case.ladder_epoch);
            prop_assert!(plan.notifications.is_empty());
        }
    }

    #[test]
    fn every_plan_that_changes_a_case_emits_its_event(
        case in a_case(), cmd in a_command(), other in other_open_case(), role in role(), everybody in any::<bool>()
    ) {
        let s = snapshot(case.clone(), &cmd, other, everybody);
        if let Ok(plan) = run(&s, role, &cmd) {
            let cases_with_events: Vec<String> = plan.events.iter().map(event_case).collect();
            for w in &plan.cases {
                prop_assert!(cases_with_events.contains(&w.after.id.to_string()), "no event for {}", w.after.id);
                prop_assert_eq!(w.before.version, if w.before.id == case.id { case.version } else { w.before.version });
            }
            // The command's own case has its timeline entry, event and audit record.
            prop_assert!(plan.timeline.iter().any(|e| e.case_id == case.id && e.action == plan.action));
            prop_assert!(cases_with_events.contains(&case.id.to_string()));
            let target = format!("case:{}", case.id);
            prop_assert!(plan.audit.iter().any(|a| a.target == target), "no audit record");
            // Every notification is about a case of the plan.
            for n in &plan.notifications {
                let about = event_case(n);
                prop_assert!(about == case.id.to_string() || about == OTHER_CASE.to_string());
            }
        }
    }

    #[test]
    fn illegal_transitions_are_refused_and_a_status_moves_only_by_the_lifecycle(
        case in a_case(), cmd in a_command(), other in other_open_case(), role in role()
    ) {
        let s = snapshot(case.clone(), &cmd, other, true);
        let before: CaseStatus = case.status;
        let action = match &cmd {
            Command::Close { .. } => Some(CaseAction::Close),
            Command::Reopen { .. } => Some(CaseAction::Reopen),
            _ => None,
        };
        match run(&s, role, &cmd) {
            Ok(plan) => {
                let after: CaseStatus = plan.case.status;
                if let Some(a) = action {
                    prop_assert_eq!(lifecycle::transition(before, a), Ok(after));
                }
                if after != before {
                    // One lifecycle step, or starting work first (acknowledged → in progress → …),
                    // or a merge, which closes the caller's case.
                    let one = CaseAction::ALL.iter().any(|a| lifecycle::transition(before, *a) == Ok(after));
                    let two = lifecycle::transition(before, CaseAction::Start)
                        .map(|mid| mid == after || CaseAction::ALL.iter().any(|a| lifecycle::transition(mid, *a) == Ok(after)))
                        .unwrap_or(false);
                    let merged = plan.action == "merge" && after == CaseStatus::Closed;
                    prop_assert!(one || two || merged, "{:?} → {:?} by {}", before, after, plan.action);
                }
            }
            Err(Refusal::Conflict { allowed, .. }) => {
                if let Some(a) = action
                    && lifecycle::transition(before, a).is_err()
                {
                    prop_assert!(!allowed.contains(&a.as_str().to_owned()));
                }
            }
            Err(Refusal::Corrupt(detail)) => prop_assert!(false, "corrupt: {}", detail),
            Err(_) => {}
        }
        if let Some(a) = action
            && lifecycle::transition(before, a).is_err()
        {
            prop_assert!(run(&s, role, &cmd).is_err());
        }
    }

    #[test]
    fn a_close_cancels_every_rung(case in a_case(), role in role()) {
        let cmd = Command::Close { outcome: Secret::new("resolved"), summary: None };
        let s = snapshot(case.clone(), &cmd, None, true);
        if let Ok(plan) = run(&s, role, &cmd) {
            prop_assert!(plan.cancel_timers.iter().any(|c| c.case_id == case.id && c.kind == RUNG_TIMER));
            prop_assert!(plan.timers.is_empty());
            prop_assert!(plan.notifications.is_empty());
            prop_assert_eq!(plan.case.ladder_state, LadderState::Stopped);
            prop_assert_eq!(plan.case.status, CaseStatus::Closed);
        }
    }

    #[test]
    fn a_student_never_has_two_open_cases(
        case in a_case(), other in other_open_case(), role in role(),
        cmd in prop_oneof![
            Just(Command::LinkStudent { student_no: "S1".into() }),
            Just(Command::Reopen { reason: Secret::new("again") }),
        ]
    ) {
        let s = snapshot(case.clone(), &cmd, other.clone(), true);
        if let (Ok(plan), Some(other)) = (run(&s, role, &cmd), other)
            && plan.case.student_id == other.student_id
        {
            prop_assert_eq!(plan.case.status, CaseStatus::Closed);
            prop_assert_eq!(plan.case.merged_into, Some(other.id));
        }
    }

    #[test]
    fn a_merge_never_lowers_the_students_case(case in a_case(), other in other_open_case(), role in role()) {
        let cmd = Command::LinkStudent { student_no: "S1".into() };
        let s = snapshot(case.clone(), &cmd, other.clone(), true);
        if let (Ok(plan), Some(other)) = (run(&s, role, &cmd), other) {
            let target = plan.cases.iter().find(|w| w.after.id == other.id).map(|w| w.after.clone()).unwrap_or(other.clone());
            prop_assert!(target.level_rank >= other.level_rank);
            prop_assert!(target.level_rank >= case.level_rank);
            if case.level_rank > other.level_rank {
                prop_assert_eq!(target.ladder_epoch, other.ladder_epoch + 1);
            }
        }
    }
}

fn rung_of(payload: &str) -> ladder::RungTimer {
    serde_json::from_str(payload).unwrap()
}

#[test]
fn a_refused_command_answers_as_the_api_always_has() {
    let closed = case_row(
        THE_CASE,
        CaseStatus::Closed,
        RiskLevel::High,
        LadderState::Stopped,
        Some(STUDENT),
        1,
        None,
    );
    let cmd = Command::Note {
        text: Secret::new("x"),
    };
    let err = run(
        &snapshot(closed.clone(), &cmd, None, true),
        Role::CrisisTeam,
        &cmd,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Refusal::Conflict {
            message: "the case is closed; reopen it to work on it".into(),
            allowed: vec!["reopen".into()],
        }
    );
    let open = case_row(
        THE_CASE,
        CaseStatus::Open,
        RiskLevel::High,
        LadderState::Running,
        Some(STUDENT),
        1,
        None,
    );
    let err = run(&snapshot(open, &cmd, None, true), Role::CrisisTeam, &cmd).unwrap_err();
    assert_eq!(
        err,
        Refusal::Conflict {
            message: "acknowledge the case before working on it".into(),
            allowed: vec!["acknowledge".into()],
        }
    );
}

#[test]
fn a_secret_never_shows_in_debug_output() {
    let cmd = Command::Note {
        text: Secret::new("the student said something private"),
    };
    assert!(!format!("{cmd:?}").contains("private"));
}

// After the acknowledgement (issue 16): the action timer, what cancels it,
// and what happens when nobody acts.

use sanyu_case::after_ack::{self, ACTION_TIMER, ActionTimer, STALE_TIMER, StaleTimer};
use sanyu_case::timer::Timer;
use sanyu_events::NotificationReason;

/// The case after `cmd` (as the writer leaves it), and the plan.
fn apply_to(case: &case::Model, role: Role, cmd: &Command) -> (case::Model, Plan) {
    let s = snapshot(case.clone(), cmd, None, true);
    let plan = run(&s, role, cmd).unwrap();
    (plan.case_as_written(), plan)
}

fn timer_of(plan: &Plan, kind: &str) -> Vec<(Timer, DateTime<Utc>)> {
    plan.timers
        .iter()
        .filter(|t| t.kind == kind)
        .map(|t| (Timer::parse(&t.kind, &t.payload).unwrap(), t.due_at))
        .collect()
}

fn reasons(plan: &Plan) -> Vec<(String, String)> {
    plan.notifications
        .iter()
        .map(|n| {
            let env = sanyu_events::decode(&n.payload).unwrap();
            match env.payload.unwrap() {
                Payload::NotificationRequested(r) => (r.recipient_staff_id, r.reason),
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

/// A case opened with a running ladder of its level (the policy's).
fn running_case(level: RiskLevel) -> case::Model {
    let mut c = case_row(
        THE_CASE,
        CaseStatus::Open,
        level,
        LadderState::Running,
        Some(STUDENT),
        1,
        None,
    );
    let ladder = ladder_for(&EscalationPolicy::default(), level, CaseSubject::Student);
    c.ladder = Some(serde_json::to_string(&ladder).unwrap());
    c.ladder_started_at = Some(now() - Duration::minutes(5));
    c
}

fn all_actions() -> Vec<Command> {
    vec![
        Command::Assign { staff_id: ME },
        Command::Note {
            text: Secret::new("met"),
        },
        Command::ContactGuardian(GuardianContact {
            contacted: false,
            guardian_id: None,
            at: None,
            channel: None,
            outcome: None,
            reason: Some(Secret::new("risk from home")),
        }),
        Command::Refer(Referral {
            referral_id: None,
            institution: Secret::new("hospital"),
            referred_on: now().date_naive(),
            receipt_confirmed: false,
            return_assessment: None,
        }),
        Command::FollowUp(FollowUp {
            follow_up_id: None,
            due_at: Some(now() + Duration::days(7)),
            outcome: None,
        }),
        Command::Close {
            outcome: Secret::new("resolved"),
            summary: None,
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_acknowledgement_schedules_the_action_timer_of_its_level(case in a_case(), role in role()) {
        let s = snapshot(case.clone(), &Command::Acknowledge { via: AckChannel::Api }, None, true);
        if let Ok(plan) = run(&s, role, &Command::Acknowledge { via: AckChannel::Api }) {
            let timers = timer_of(&plan, ACTION_TIMER);
            prop_assert!(plan.cancel_timers.iter().any(|c| c.kind == ACTION_TIMER));
            match EscalationPolicy::default().after_ack.of(case.level) {
                Some(a) => {
                    prop_assert_eq!(timers.len(), 1);
                    let (t, due) = &timers[0];
                    prop_assert_eq!(t, &Timer::AfterAck(ActionTimer { case_id: case.id, epoch: case.ladder_epoch, rung: 1 }));
                    prop_assert_eq!(*due, now() + Duration::seconds(a.action_within_secs as i64));
                }
                None => prop_assert!(timers.is_empty()),
            }
            // And the stale reminder counts from the acknowledgement.
            prop_assert_eq!(timer_of(&plan, STALE_TIMER).len(), 1);
        }
    }

    #[test]
    fn every_action_cancels_the_action_timer_and_is_recorded(case in a_case(), cmd in a_command(), role in role()) {
        let s = snapshot(case.clone(), &cmd, None, true);
        if let Ok(plan) = run(&s, role, &cmd) {
            let cancels = |kind: &str| plan.cancel_timers.iter().any(|c| c.case_id == case.id && c.kind == kind);
            if cmd.counts_as_action() {
                prop_assert!(cancels(ACTION_TIMER), "{:?}", cmd);
                prop_assert!(cancels(STALE_TIMER), "{:?}", cmd);
                prop_assert_eq!(plan.case.last_action_at, Some(now()));
                prop_assert!(timer_of(&plan, ACTION_TIMER).is_empty());
                // Closed: nothing more; otherwise the stale reminder starts again.
                let stale = timer_of(&plan, STALE_TIMER).len();
                prop_assert_eq!(stale, usize::from(plan.case.status != CaseStatus::Closed));
            } else {
                prop_assert_eq!(plan.case.last_action_at, None);
            }
        }
    }
}

#[test]
fn each_kind_of_action_after_an_acknowledgement_stops_the_escalation() {
    for level in [RiskLevel::Critical, RiskLevel::High] {
        let (acked, plan) = apply_to(
            &running_case(level),
            Role::Counsellor,
            &Command::Acknowledge {
                via: AckChannel::Api,
            },
        );
        let [(Timer::AfterAck(t), _)] = timer_of(&plan, ACTION_TIMER)[..] else {
            panic!("no action timer at {level}");
        };
        for cmd in all_actions() {
            let (after, plan) = apply_to(&acked, Role::CrisisTeam, &cmd);
            assert!(
                plan.cancel_timers
                    .iter()
                    .any(|c| c.case_id == acked.id && c.kind == ACTION_TIMER),
                "{cmd:?}"
            );
            // Even a timer that fires anyway (taken before the cancel) does nothing.
            let later = now() + Duration::hours(5);
            let fired =
                after_ack::plan_after_ack(&after, &t, "SCH", &reachable(true), later).unwrap();
            assert!(fired.is_none(), "{level} {cmd:?}");
        }
    }
}

#[test]
fn an_acknowledged_critical_case_without_action_climbs_at_the_configured_times() {
    let policy = EscalationPolicy::default();
    let a = policy.after_ack.critical.clone().unwrap();
    let (acked, plan) = apply_to(
        &running_case(RiskLevel::Critical),
        Role::Counsellor,
        &Command::Acknowledge {
            via: AckChannel::Api,
        },
    );
    // The snapshot carries the after-acknowledgement ladder.
    let snap = ladder::ladder_of(&acked).unwrap().unwrap();
    assert_eq!(snap.after_ack.as_ref(), Some(&a));
    let [(Timer::AfterAck(t1), due1)] = timer_of(&plan, ACTION_TIMER)[..] else {
        panic!("no action timer");
    };
    assert_eq!(due1, now() + Duration::minutes(30));
    // Rung 1 at 30 min: the crisis team, and rung 2 scheduled 15 min later.
    let f1 = after_ack::plan_after_ack(&acked, &t1, "SCH", &reachable(true), due1)
        .unwrap()
        .expect("fires");
    assert_eq!(
        reasons(&f1.plan),
        vec![(
            OTHER_STAFF.to_string(),
            NotificationReason::NoActionAfterAck.name().to_owned()
        )]
    );
    let [(Timer::AfterAck(t2), due2)] = timer_of(&f1.plan, ACTION_TIMER)[..] else {
        panic!("no second rung");
    };
    assert_eq!((t2.rung, t2.epoch), (2, acked.ladder_epoch));
    assert_eq!(due2, now() + Duration::minutes(45));
    // Rung 2: the leaders.
    let f2 = after_ack::plan_after_ack(&acked, &t2, "SCH", &reachable(true), due2)
        .unwrap()
        .expect("fires");
    assert_eq!(reasons(&f2.plan)[0].0, Uuid::from_u128(6).to_string());
    // It keeps climbing to the end of the ladder, then an alarm.
    let mut t = t2;
    let mut fired = 2;
    loop {
        let f = after_ack::plan_after_ack(&acked, &t, "SCH", &reachable(true), now())
            .unwrap()
            .expect("fires");
        match timer_of(&f.plan, ACTION_TIMER)[..] {
            [(Timer::AfterAck(next), _)] => {
                t = next;
                fired += 1;
            }
            _ => {
                assert!(!f.next);
                assert!(
                    f.plan
                        .alarms
                        .iter()
                        .any(|d| d.source_key.starts_with("after_ack_exhausted:"))
                );
                break;
            }
        }
    }
    assert_eq!(fired, a.len());
    // Nobody reachable: an alarm.
    let f = after_ack::plan_after_ack(&acked, &t1, "SCH", &reachable(false), due1)
        .unwrap()
        .expect("fires");
    assert!(f.plan.notifications.is_empty());
    assert!(
        f.plan
            .alarms
            .iter()
            .any(|d| d.source_key.starts_with("unreachable:"))
    );
}

#[test]
fn a_raise_after_the_acknowledgement_makes_its_action_timers_do_nothing() {
    let (acked, plan) = apply_to(
        &running_case(RiskLevel::High),
        Role::Counsellor,
        &Command::Acknowledge {
            via: AckChannel::Api,
        },
    );
    let [(Timer::AfterAck(t), due)] = timer_of(&plan, ACTION_TIMER)[..] else {
        panic!("no action timer");
    };
    let raise = Command::SetLevel {
        level: RiskLevel::Critical,
        reason: Secret::new("worse"),
    };
    let (raised, plan) = apply_to(&acked, Role::CrisisTeam, &raise);
    assert!(plan.cancel_timers.iter().any(|c| c.kind == ACTION_TIMER));
    assert!(
        after_ack::plan_after_ack(&raised, &t, "SCH", &reachable(true), due)
            .unwrap()
            .is_none()
    );
    // Acknowledged again: the new epoch's timer, at the critical level's time.
    let (again, plan) = apply_to(
        &raised,
        Role::Counsellor,
        &Command::Acknowledge {
            via: AckChannel::Api,
        },
    );
    let [(Timer::AfterAck(t2), due2)] = timer_of(&plan, ACTION_TIMER)[..] else {
        panic!("no action timer");
    };
    assert_eq!(t2.epoch, t.epoch + 1);
    assert_eq!(due2, now() + Duration::minutes(30));
    assert!(
        after_ack::plan_after_ack(&again, &t2, "SCH", &reachable(true), due2)
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_case_acknowledged_before_the_after_ack_ladder_existed_gets_the_policys() {
    let mut case = running_case(RiskLevel::Critical);
    let mut old = ladder::ladder_of(&case).unwrap().unwrap();
    old.after_ack = None;
    case.ladder = Some(serde_json::to_string(&old).unwrap());
    let (acked, plan) = apply_to(
        &case,
        Role::Counsellor,
        &Command::Acknowledge {
            via: AckChannel::Api,
        },
    );
    assert_eq!(timer_of(&plan, ACTION_TIMER).len(), 1);
    assert!(
        ladder::ladder_of(&acked)
            .unwrap()
            .unwrap()
            .after_ack
            .is_some()
    );
}

#[test]
fn a_stale_case_reminds_its_assignee_once_per_period() {
    let (acked, _) = apply_to(
        &running_case(RiskLevel::High),
        Role::Counsellor,
        &Command::Acknowledge {
            via: AckChannel::Api,
        },
    );
    let (worked, plan) = apply_to(
        &acked,
        Role::Counsellor,
        &Command::Note {
            text: Secret::new("met"),
        },
    );
    assert_eq!(worked.assignee_staff_id, Some(ME));
    let [(Timer::Stale(t), due)] = timer_of(&plan, STALE_TIMER)[..] else {
        panic!("no stale timer");
    };
    assert_eq!(due, now() + Duration::days(3));
    let f = after_ack::plan_stale(&worked, &t, "SCH", &reachable(true), due)
        .unwrap()
        .expect("reminds");
    assert_eq!(
        reasons(&f.plan),
        vec![(
            ME.to_string(),
            NotificationReason::CaseStale.name().to_owned()
        )]
    );
    let [(Timer::Stale(next), due2)] = timer_of(&f.plan, STALE_TIMER)[..] else {
        panic!("no next period");
    };
    assert_eq!(next, StaleTimer { period: 2, ..t });
    assert_eq!(due2, now() + Duration::days(6));
    // An action since: the reminder does nothing.
    let mut acted = worked.clone();
    acted.last_action_at = Some(now() + Duration::days(1));
    assert!(
        after_ack::plan_stale(&acted, &t, "SCH", &reachable(true), due)
            .unwrap()
            .is_none()
    );
}
#[test]
fn every_door_acknowledges_with_one_command_that_records_how_it_came() {
    use sanyu_case::AckChannel;
    for via in AckChannel::ALL {
        let open = case_row(
            THE_CASE,
            CaseStatus::Open,
            RiskLevel::Critical,
            LadderState::Running,
            Some(STUDENT),
            1,
            None,
        );
        let cmd = Command::Acknowledge { via };
        let plan = run(&snapshot(open, &cmd, None, true), Role::CrisisTeam, &cmd).unwrap();
        assert_eq!(plan.case.status, CaseStatus::Acknowledged, "{via}");
        assert!(
            plan.cancel_timers.iter().any(|c| c.kind == RUNG_TIMER),
            "{via}"
        );
        // The timeline entry, the event and the audit record say how.
        assert_eq!(plan.timeline[0].detail["via"], via.as_str());
        let env = sanyu_events::decode(&plan.events[0].payload).unwrap();
        let Some(Payload::CaseAcknowledged(e)) = env.payload else {
            panic!("{via}: not a CaseAcknowledged event");
        };
        assert_eq!(e.channel, via.as_str());
        let source = &plan.audit[0].source;
        if via == AckChannel::Api {
            assert_eq!(source, "127.0.0.1");
        } else {
            assert_eq!(source, &format!("127.0.0.1 via {via}"));
        }
    }
}
