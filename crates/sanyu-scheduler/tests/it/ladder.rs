//! The escalation ladder with an injected clock, on SQLite and PostgreSQL:
//! an unacknowledged critical case climbs rung by rung at the configured
//! delays, stops on acknowledge, restarts on a level raise; timers fire once
//! even with two schedulers racing; the auditor raises alarms for stalled,
//! late and exhausted ladders.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sanyu_domain::escalation::{EscalationPolicy, Ladder, Rung, roles};
use sanyu_domain::{LadderState, RiskLevel, Role, case_reference};
use sanyu_escalation as escalation;
use sanyu_events::NotificationReason;
use sanyu_platform::relay::Waker;
use sanyu_scheduler::Scheduler;
use sanyu_store::cases::{self, NewCase};
use sanyu_store::entities::student;
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sanyu_store::{Db, begin_write, timers};
use sanyu_test_support::TestDb;
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
}

fn min(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

/// The design notes' critical ladder, shortened to three repeats.
fn policy() -> EscalationPolicy {
    EscalationPolicy {
        critical: Ladder {
            first: roles(&[Role::Counsellor, Role::CrisisTeam]),
            ack_within_secs: 600,
            rungs: vec![
                Rung {
                    after_secs: 600,
                    roles: roles(&[Role::CrisisTeam]),
                },
                Rung {
                    after_secs: 600,
                    roles: roles(&[Role::Leader]),
                },
            ],
            repeat: 2,
            after_ack: None,
        },
        ..EscalationPolicy::default()
    }
}

struct Fixture {
    db: Db,
    _test_db: TestDb,
}

async fn fixture(test_db: TestDb) -> Fixture {
    let db = test_db.connect().await;
    sanyu_test_support::seed_school(&db, "LAD1").await;
    Fixture {
        db,
        _test_db: test_db,
    }
}

/// Open a case for student `no` at `level` at `at` and start its ladder.
async fn open_case(f: &Fixture, no: &str, level: RiskLevel, at: DateTime<Utc>) -> Uuid {
    open_case_under(f, no, level, at, &policy()).await
}

/// As [`open_case`], under `policy`.
async fn open_case_under(
    f: &Fixture,
    no: &str,
    level: RiskLevel,
    at: DateTime<Utc>,
    policy: &EscalationPolicy,
) -> Uuid {
    let s = student::Entity::find()
        .filter(student::Column::StudentNo.eq(no))
        .one(&f.db)
        .await
        .unwrap()
        .unwrap();
    let id = Uuid::now_v7();
    let txn = begin_write(&f.db).await.unwrap();
    cases::open(
        &*txn,
        NewCase {
            id,
            reference: case_reference(id),
            school_id: s.school_id,
            class_id: Some(s.class_id),
            student_id: Some(s.id),
            subject: sanyu_domain::CaseSubject::Student,
            level,
            rule: "test".into(),
            at,
        },
    )
    .await
    .unwrap();
    let case = cases::get(&*txn, id).await.unwrap().unwrap();
    escalation::start(
        &*txn,
        &case,
        policy,
        NotificationReason::CaseOpened,
        at,
        None,
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    id
}

/// (rung, recipient staff_no, reason) of every notification requested for `case`, in order.
async fn requested(f: &Fixture, case: Uuid) -> Vec<(u32, String, String)> {
    common::requests(&f.db)
        .await
        .into_iter()
        .filter(|(_, n)| n.case_id == case.to_string())
        .map(|(who, n)| (n.rung, who, n.reason))
        .collect()
}

fn rungs(list: &[(u32, String, String)]) -> Vec<(u32, &str)> {
    list.iter().map(|(r, who, _)| (*r, who.as_str())).collect()
}

fn scheduler(f: &Fixture) -> Scheduler {
    Scheduler::new(f.db.clone(), Waker::default(), Duration::from_secs(120))
}

async fn acknowledge(f: &Fixture, case: Uuid) {
    let txn = begin_write(&f.db).await.unwrap();
    let c = cases::get(&*txn, case).await.unwrap().unwrap();
    escalation::stop(&*txn, &c).await.unwrap();
    txn.commit().await.unwrap();
}

async fn an_unacknowledged_critical_case_climbs_rung_by_rung_and_stops_on_acknowledge(
    test_db: TestDb,
) {
    let f = fixture(test_db).await;
    let s = scheduler(&f);
    let case = open_case(&f, "S1", RiskLevel::Critical, t0()).await;
    // Rung 0 at once: the counsellor with an email (K1) and the crisis lead.
    assert_eq!(
        rungs(&requested(&f, case).await),
        vec![(0, "K1"), (0, "X1")]
    );

    // Nothing before the acknowledge deadline.
    assert_eq!(s.tick(t0() + min(9)).await.unwrap().fired, 0);
    assert_eq!(requested(&f, case).await.len(), 2);

    // 10 min: rung 1, the crisis team.
    assert_eq!(s.tick(t0() + min(10)).await.unwrap().fired, 1);
    let after1 = requested(&f, case).await;
    assert_eq!(rungs(&after1[2..]), vec![(1, "X1")]);
    assert_eq!(after1[2].2, NotificationReason::Unacknowledged.name());

    // A tick at the same time again fires nothing more.
    assert_eq!(s.tick(t0() + min(10)).await.unwrap().fired, 0);

    // 20 min: rung 2, the leader.
    s.tick(t0() + min(19)).await.unwrap();
    assert_eq!(requested(&f, case).await.len(), 3);
    s.tick(t0() + min(20)).await.unwrap();
    assert_eq!(rungs(&requested(&f, case).await[3..]), vec![(2, "L1")]);

    // Acknowledged at 25 min: rung 3 (due at 30) never fires.
    acknowledge(&f, case).await;
    let tick = s.tick(t0() + min(120)).await.unwrap();
    assert_eq!(tick.fired, 0);
    assert_eq!(requested(&f, case).await.len(), 4);
    let c = cases::get(&f.db, case).await.unwrap().unwrap();
    assert_eq!(c.ladder_state, LadderState::Stopped);
    assert!(
        timers::pending_for_case(&f.db, case)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_ladder_repeats_then_reports_itself_exhausted(test_db: TestDb) {
    let f = fixture(test_db).await;
    let s = scheduler(&f);
    let case = open_case(&f, "S2", RiskLevel::Critical, t0()).await;
    // Ticking once far in the future fires every due rung in order, once.
    for m in [10, 20, 30, 40, 50, 60] {
        s.tick(t0() + min(m)).await.unwrap();
    }
    let got = requested(&f, case).await;
    assert_eq!(
        rungs(&got),
        vec![
            (0, "K1"),
            (0, "X1"),
            (1, "X1"),
            (2, "L1"),
            (3, "X1"),
            (4, "L1")
        ]
    );
    let c = cases::get(&f.db, case).await.unwrap().unwrap();
    assert_eq!(c.ladder_state, LadderState::Exhausted);
    // The auditor raises the alarm once, to the crisis team and the leader.
    let report = s.audit(t0() + min(61)).await.unwrap();
    assert!(
        report.alarms.iter().any(|a| a.starts_with("exhausted")),
        "{report:?}"
    );
    let again = s.audit(t0() + min(62)).await.unwrap();
    assert!(
        again.alarms.is_empty(),
        "an alarm is raised once: {again:?}"
    );
    let alarms: Vec<_> = requested(&f, case)
        .await
        .into_iter()
        .filter(|(_, _, reason)| reason == NotificationReason::LadderAlarm.name())
        .map(|(_, who, _)| who)
        .collect();
    assert_eq!(alarms, vec!["X1".to_owned(), "L1".to_owned()]);
}

async fn raising_the_level_restarts_the_ladder_at_the_new_levels_ladder(test_db: TestDb) {
    let f = fixture(test_db).await;
    let s = scheduler(&f);
    // A high case: counsellor first, crisis team at 1 h.
    let case = open_case(&f, "S3", RiskLevel::High, t0()).await;
    assert_eq!(rungs(&requested(&f, case).await), vec![(0, "K1")]);
    acknowledge(&f, case).await;
    // Raised to critical at 30 min (as the rules engine or a person does).
    let at = t0() + min(30);
    let txn = begin_write(&f.db).await.unwrap();
    let c = cases::get(&*txn, case).await.unwrap().unwrap();
    cases::raise_level(&*txn, &c, RiskLevel::Critical)
        .await
        .unwrap();
    let c = cases::get(&*txn, case).await.unwrap().unwrap();
    escalation::start(
        &*txn,
        &c,
        &policy(),
        NotificationReason::LevelRaised,
        at,
        None,
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let got = requested(&f, case).await;
    assert_eq!(rungs(&got[1..]), vec![(0, "K1"), (0, "X1")]);
    // The old ladder's rung (due at 1 h) is gone; the new one runs from 30 min.
    s.tick(t0() + min(39)).await.unwrap();
    assert_eq!(requested(&f, case).await.len(), 3);
    s.tick(t0() + min(40)).await.unwrap();
    assert_eq!(rungs(&requested(&f, case).await[3..]), vec![(1, "X1")]);
    s.tick(t0() + min(60)).await.unwrap();
    let after = requested(&f, case).await;
    assert_eq!(
        rungs(&after[4..]),
        vec![(2, "L1")],
        "old ladder's rung did not fire"
    );
}

async fn two_schedulers_racing_fire_every_rung_once(test_db: TestDb) {
    let f = fixture(test_db).await;
    let mut cases_opened = Vec::new();
    for no in ["S1", "S2", "S3"] {
        cases_opened.push(open_case(&f, no, RiskLevel::Critical, t0()).await);
    }
    let a = scheduler(&f);
    let b = scheduler(&f);
    for m in [10, 20, 30, 40] {
        let now = t0() + min(m);
        let (x, y) = tokio::join!(a.tick(now), b.tick(now));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.fired + y.fired, 3, "minute {m}: {x:?} {y:?}");
    }
    for case in cases_opened {
        let got = requested(&f, case).await;
        assert_eq!(
            rungs(&got),
            vec![
                (0, "K1"),
                (0, "X1"),
                (1, "X1"),
                (2, "L1"),
                (3, "X1"),
                (4, "L1")
            ]
        );
    }
}

async fn the_auditor_finds_a_stalled_and_a_late_ladder(test_db: TestDb) {
    let f = fixture(test_db).await;
    let s = scheduler(&f);
    let stalled = open_case(&f, "S1", RiskLevel::Critical, t0()).await;
    let late = open_case(&f, "S2", RiskLevel::Critical, t0()).await;
    // Someone deleted the stalled case's next rung (or a bug never wrote it).
    let txn = begin_write(&f.db).await.unwrap();
    timers::cancel_for_case(&*txn, stalled, escalation::RUNG_TIMER)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    // Before the grace time has passed, the late rung is not an alarm yet.
    let early = s.audit(t0() + min(11)).await.unwrap();
    assert_eq!(early.alarms.len(), 1, "{early:?}");
    assert!(early.alarms[0].starts_with("no_rung"));
    // The scheduler never ran: at 13 min the rung due at 10 is late.
    let report = s.audit(t0() + min(13)).await.unwrap();
    assert_eq!(report.alarms.len(), 1, "{report:?}");
    assert!(report.alarms[0].starts_with("late:"));
    // Both show as dead letters for the crisis team.
    let dl = sanyu_store::dead_letters::list_open(
        &f.db,
        sanyu_store::dead_letters::Readers::Deployment,
        50,
    )
    .await
    .unwrap();
    assert!(
        dl.iter()
            .any(|d| d.source_key.contains(&stalled.to_string()))
    );
    assert!(dl.iter().any(|d| d.source_key.contains(&late.to_string())));
}

async fn a_timer_that_keeps_failing_holds_up_no_other(test_db: TestDb) {
    let f = fixture(test_db).await;
    let s = scheduler(&f);
    let broken = open_case(&f, "S1", RiskLevel::Critical, t0()).await;
    let fine = open_case(
        &f,
        "S2",
        RiskLevel::Critical,
        t0() + chrono::Duration::seconds(1),
    )
    .await;
    // The first case's ladder snapshot is corrupt: firing its rung fails every time.
    sanyu_store::entities::case::Entity::update_many()
        .set(sanyu_store::entities::case::ActiveModel {
            ladder: sanyu_store::sea_orm::ActiveValue::Set(Some("{not json".into())),
            ..Default::default()
        })
        .filter(sanyu_store::entities::case::Column::Id.eq(broken))
        .exec(&f.db)
        .await
        .unwrap();
    let tick = s.tick(t0() + min(11)).await.unwrap();
    assert_eq!((tick.fired, tick.failed), (1, 1), "{tick:?}");
    assert_eq!(rungs(&requested(&f, fine).await[2..]), vec![(1, "X1")]);
    // The failing rung stays pending, and the auditor reports it late.
    assert_eq!(
        timers::pending_for_case(&f.db, broken).await.unwrap().len(),
        1
    );
    let report = s.audit(t0() + min(13)).await.unwrap();
    assert!(
        report
            .alarms
            .iter()
            .any(|a| a.starts_with("late:ladder:") && a.contains(&broken.to_string())),
        "{report:?}"
    );
}

async fn on_both<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in TestDb::all().await {
        test(db).await;
    }
}

/// Shanghai local time on 2 March 2026.
fn shanghai(h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 3, 2, h, m, 0)
        .unwrap()
        .with_timezone(&Utc)
}

async fn a_rung_for_the_member_on_duty_reaches_the_night_shift_at_night_and_the_role_by_day(
    test_db: TestDb,
) {
    use sanyu_domain::duty::{Cadence, Days, Rotation, Shift};
    use sanyu_domain::escalation::Target;
    let f = fixture(test_db).await;
    // A second crisis-team member, X2, takes every night 22:00–07:00.
    let csv = "school_code,staff_no,name,role,class_code,phone,email\n\
               LAD1,X2,Crisis Two,crisis_team,,13900000008,crisis2@lad1.test\n";
    let txn = begin_write(&f.db).await.unwrap();
    let imported = sanyu_store::roster::import_staff(
        &*txn,
        csv.as_bytes(),
        sanyu_store::roster::ImportScope::Operator,
    )
    .await
    .unwrap();
    assert!(imported.errors.is_empty(), "{:?}", imported.errors);
    txn.commit().await.unwrap();
    let school = sanyu_store::roster::school_by_code(&f.db, "LAD1")
        .await
        .unwrap()
        .unwrap();
    let x2 = sanyu_store::roster::staff_in_role(&f.db, school.id, Role::CrisisTeam)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.staff_no == "X2")
        .unwrap();
    let hm = |h| chrono::NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    let night = Rotation {
        id: Uuid::now_v7(),
        name: "夜间".into(),
        role: Role::CrisisTeam,
        cadence: Cadence::Daily,
        handover: hm(12),
        start_date: chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
        members: vec![x2.id],
        shift: Some(Shift {
            start: hm(22),
            end: hm(7),
        }),
        days: Days::Every,
        kinds: Vec::new(),
    };
    sanyu_store::duty::create_rotation(&f.db, school.id, &night, t0())
        .await
        .unwrap();
    // Counsellor first; after 10 min the crisis-team member on duty; then
    // the whole crisis team; then the leaders.
    let mut policy = policy();
    policy.critical.first = roles(&[Role::Counsellor]);
    policy.critical.rungs = vec![
        Rung {
            after_secs: 600,
            roles: vec![Target::OnDuty(Role::CrisisTeam)],
        },
        Rung {
            after_secs: 600,
            roles: roles(&[Role::CrisisTeam]),
        },
        Rung {
            after_secs: 600,
            roles: roles(&[Role::Leader]),
        },
    ];
    policy.critical.repeat = 1;
    let s = scheduler(&f);
    let at_night = open_case_under(&f, "S1", RiskLevel::Critical, shanghai(3, 0), &policy).await;
    let by_day = open_case_under(&f, "S2", RiskLevel::Critical, shanghai(15, 0), &policy).await;
    s.tick(shanghai(3, 10)).await.unwrap();
    s.tick(shanghai(3, 20)).await.unwrap();
    s.tick(shanghai(15, 10)).await.unwrap();
    let night_requests = requested(&f, at_night).await;
    let mut night_rungs = rungs(&night_requests);
    night_rungs.sort();
    assert_eq!(
        night_rungs,
        vec![(0, "K1"), (1, "X2"), (2, "X1"), (2, "X2"), (3, "L1")],
        "at 03:10 the member on the night shift alone, then the whole team, then the leader"
    );
    let day_requests = requested(&f, by_day).await;
    let mut day_rungs = rungs(&day_requests);
    day_rungs.sort();
    assert_eq!(
        day_rungs,
        vec![(0, "K1"), (1, "X1"), (1, "X2")],
        "by day nobody is on duty: the whole crisis team"
    );
}

#[tokio::test]
async fn an_on_duty_rung_reaches_the_night_shift_at_night_and_the_role_by_day() {
    on_both(a_rung_for_the_member_on_duty_reaches_the_night_shift_at_night_and_the_role_by_day)
        .await;
}

#[tokio::test]
async fn unacknowledged_critical_case_climbs_and_stops_on_acknowledge() {
    on_both(an_unacknowledged_critical_case_climbs_rung_by_rung_and_stops_on_acknowledge).await;
}

#[tokio::test]
async fn ladder_repeats_then_reports_itself_exhausted() {
    on_both(the_ladder_repeats_then_reports_itself_exhausted).await;
}

#[tokio::test]
async fn level_raise_restarts_the_ladder() {
    on_both(raising_the_level_restarts_the_ladder_at_the_new_levels_ladder).await;
}

#[tokio::test]
async fn racing_schedulers_fire_every_rung_once() {
    on_both(two_schedulers_racing_fire_every_rung_once).await;
}

#[tokio::test]
async fn auditor_finds_stalled_and_late_ladders() {
    on_both(the_auditor_finds_a_stalled_and_a_late_ladder).await;
}

#[tokio::test]
async fn a_failing_timer_holds_up_no_other() {
    on_both(a_timer_that_keeps_failing_holds_up_no_other).await;
}
