//! The writer on SQLite and PostgreSQL: a plan's case row, timeline entry,
//! event, audit record, timers and notifications commit together; a plan
//! made from a case that changed meanwhile writes nothing.
#![allow(clippy::unwrap_used)]

use chrono::Utc;
use sanyu_case::ladder::{self, RUNG_TIMER};
use sanyu_case::{Actor, Command, Keys, PlanCtx, Secret};
use sanyu_domain::escalation::EscalationPolicy;
use sanyu_domain::{
    CaseStatus, CaseSubject, LadderState, Principal, RiskLevel, Role, case_reference,
};
use sanyu_events::NotificationReason;
use sanyu_store::audit::AuditKey;
use sanyu_store::cases::{self, NewCase};
use sanyu_store::crypto::Sealer;
use sanyu_store::entities::{audit_record, case, case_action, outbox, school, staff, student};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sanyu_store::{Db, begin_write, timers};
use sanyu_test_support::TestDb;
use sanyu_test_support::fixtures::seed_school;
use uuid::Uuid;

struct World {
    db: Db,
    school: school::Model,
    counsellor: staff::Model,
    sealer: Sealer,
    audit_key: AuditKey,
    policy: EscalationPolicy,
    _test_db: TestDb,
}

impl World {
    async fn new(test_db: TestDb) -> Self {
        let db = test_db.connect().await;
        seed_school(&db, "W1").await;
        let school = school::Entity::find()
            .filter(school::Column::Code.eq("W1"))
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        let counsellor = staff::Entity::find()
            .filter(staff::Column::StaffNo.eq("K1"))
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        let key = Sealer::generate_key();
        Self {
            db,
            school,
            counsellor,
            sealer: Sealer::from_base64(&key).unwrap(),
            audit_key: AuditKey::from_data_key(&key).unwrap(),
            policy: EscalationPolicy::default(),
            _test_db: test_db,
        }
    }

    fn actor(&self) -> Actor {
        Actor {
            principal: Principal {
                token_id: Uuid::now_v7(),
                role: Role::Counsellor,
                school_id: self.school.id,
                class_id: None,
                staff_id: Some(self.counsellor.id),
            },
            source: "127.0.0.1".into(),
        }
    }

    fn keys(&self) -> Keys<'_> {
        Keys {
            sealer: &self.sealer,
            audit_key: &self.audit_key,
        }
    }

    /// A case about student `student_no` at `level` with its ladder running.
    async fn open_case(&self, student_no: &str, level: RiskLevel) -> case::Model {
        let s1 = student::Entity::find()
            .filter(student::Column::StudentNo.eq(student_no))
            .one(&self.db)
            .await
            .unwrap()
            .unwrap();
        let id = Uuid::now_v7();
        let txn = begin_write(&self.db).await.unwrap();
        cases::open(
            &*txn,
            NewCase {
                id,
                reference: case_reference(id),
                school_id: self.school.id,
                class_id: Some(s1.class_id),
                student_id: Some(s1.id),
                subject: CaseSubject::Student,
                level,
                rule: "test".into(),
                at: Utc::now(),
            },
        )
        .await
        .unwrap();
        let opened = cases::get(&*txn, id).await.unwrap().unwrap();
        let staff = sanyu_case::snapshot::reachable(&*txn, self.school.id)
            .await
            .unwrap();
        let start = ladder::plan_start(
            &opened,
            &self.policy,
            &self.school.code,
            |roles| ladder::people_in(&staff, roles),
            &sanyu_domain::duty::Roster::empty(chrono_tz::Asia::Shanghai),
            NotificationReason::CaseOpened,
            Utc::now(),
            None,
        )
        .unwrap();
        let started = sanyu_case::writer::apply_ladder(&*txn, &opened, &start)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        started
    }

    /// Load, plan and write `cmd` on `case_id` in one transaction.
    async fn act(&self, case_id: Uuid, cmd: Command) -> (sanyu_case::Plan, case::Model) {
        let txn = begin_write(&self.db).await.unwrap();
        let c = sanyu_case::load_case(&*txn, case_id)
            .await
            .unwrap()
            .unwrap();
        let snapshot = sanyu_case::load(
            &*txn,
            c,
            self.school.id,
            &cmd,
            &Default::default(),
            Utc::now(),
        )
        .await
        .unwrap();
        let plan = sanyu_case::plan(&snapshot, &self.actor(), &cmd, &self.ctx()).unwrap();
        let written = sanyu_case::apply(&*txn, &plan, self.keys()).await.unwrap();
        txn.commit().await.unwrap();
        (plan, written)
    }

    fn ctx(&self) -> PlanCtx<'_> {
        PlanCtx {
            now: Utc::now(),
            policy: &self.policy,
            traceparent: None,
            ids: &Uuid::now_v7,
        }
    }

    async fn pending_rungs(&self, case_id: Uuid) -> Vec<String> {
        timers::pending_for_case(&self.db, case_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.kind == RUNG_TIMER)
            .map(|t| t.key)
            .collect()
    }

    async fn has_event(&self, event_id: &str) -> bool {
        outbox::Entity::find()
            .filter(outbox::Column::EventId.eq(event_id))
            .one(&self.db)
            .await
            .unwrap()
            .is_some()
    }
}

async fn an_acknowledgement_writes_its_row_entry_event_and_audit_record_and_stops_the_ladder(
    w: &World,
) {
    let c = w.open_case("S1", RiskLevel::Critical).await;
    assert_eq!(c.ladder_state, LadderState::Running);
    assert_eq!(w.pending_rungs(c.id).await.len(), 1);
    let audits_before = audit_record::Entity::find()
        .filter(audit_record::Column::Action.eq("case.acknowledge"))
        .all(&w.db)
        .await
        .unwrap()
        .len();

    let (plan, written) = w
        .act(
            c.id,
            Command::Acknowledge {
                via: sanyu_case::AckChannel::Api,
            },
        )
        .await;

    assert_eq!(written.status, CaseStatus::Acknowledged);
    assert_eq!(written.ladder_state, LadderState::Stopped);
    assert_eq!(written.version, c.version + 1);
    assert_eq!(written.assignee_staff_id, Some(w.counsellor.id));
    assert_eq!(written.acknowledged_by, Some(w.counsellor.id));
    assert!(
        w.pending_rungs(c.id).await.is_empty(),
        "every rung cancelled"
    );
    let entry = case_action::Entity::find_by_id(plan.timeline[0].id)
        .one(&w.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.action, "acknowledge");
    assert_eq!(entry.status_after, CaseStatus::Acknowledged);
    assert!(
        w.has_event(&format!("case.action:{}", entry.id)).await,
        "the entry's event is in the outbox"
    );
    let audits_after = audit_record::Entity::find()
        .filter(audit_record::Column::Action.eq("case.acknowledge"))
        .filter(audit_record::Column::Target.eq(format!("case:{}", c.id)))
        .all(&w.db)
        .await
        .unwrap()
        .len();
    assert_eq!(audits_after, audits_before + 1);
}

async fn a_raise_writes_a_fresh_ladder_of_a_new_epoch_and_seals_the_reason(w: &World) {
    let c = w.open_case("S2", RiskLevel::Elevated).await;
    let (_, acked) = w
        .act(
            c.id,
            Command::Acknowledge {
                via: sanyu_case::AckChannel::Api,
            },
        )
        .await;
    assert_eq!(acked.ladder_state, LadderState::Stopped);

    let (plan, raised) = w
        .act(
            c.id,
            Command::SetLevel {
                level: RiskLevel::Critical,
                reason: Secret::new("said goodbye to friends"),
            },
        )
        .await;

    assert_eq!(raised.level, RiskLevel::Critical);
    assert_eq!(raised.ladder_epoch, c.ladder_epoch + 1);
    assert_eq!(raised.ladder_state, LadderState::Running);
    assert_eq!(
        w.pending_rungs(c.id).await,
        vec![format!("ladder:{}:e{}:r1", c.id, raised.ladder_epoch)]
    );
    let first = format!(
        "notify.requested:{}",
        ladder::rung_key(c.id, w.counsellor.id, raised.ladder_epoch, 0)
    );
    assert!(w.has_event(&first).await, "the counsellor is told at once");
    let entry = case_action::Entity::find_by_id(plan.timeline[0].id)
        .one(&w.db)
        .await
        .unwrap()
        .unwrap();
    let sealed = entry.text_sealed.expect("the reason is sealed");
    assert_eq!(w.sealer.open(&sealed).unwrap(), "said goodbye to friends");
    assert!(!entry.detail.contains("goodbye"));
}

async fn a_plan_of_a_case_that_changed_meanwhile_writes_nothing(w: &World) {
    let c = w.open_case("S3", RiskLevel::High).await;
    // Plan an acknowledgement from the case as it is now…
    let txn = begin_write(&w.db).await.unwrap();
    let snapshot = sanyu_case::load(
        &*txn,
        c.clone(),
        w.school.id,
        &Command::Acknowledge {
            via: sanyu_case::AckChannel::Api,
        },
        &Default::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    drop(txn);
    let plan = sanyu_case::plan(
        &snapshot,
        &w.actor(),
        &Command::Acknowledge {
            via: sanyu_case::AckChannel::Api,
        },
        &w.ctx(),
    )
    .unwrap();
    // …someone else acknowledges first…
    w.act(
        c.id,
        Command::Acknowledge {
            via: sanyu_case::AckChannel::Api,
        },
    )
    .await;
    // …and the stale plan fails as a whole.
    let txn = begin_write(&w.db).await.unwrap();
    let err = sanyu_case::apply(&*txn, &plan, w.keys()).await.unwrap_err();
    assert!(err.to_string().contains("version conflict"), "{err}");
    drop(txn);
    assert!(
        case_action::Entity::find_by_id(plan.timeline[0].id)
            .one(&w.db)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !w.has_event(&format!("case.action:{}", plan.timeline[0].id))
            .await
    );
}

/// A batch of rule plans (open, raise, attach of one student) written with
/// `apply_all` in one transaction: the case as the last plan left it, only
/// the newest ladder's rung pending, every event and signal written.
async fn a_batch_of_rule_plans_is_written_as_if_one_by_one(w: &World) {
    use sanyu_case::{RuleCommand, RuleSignal, RuleSnapshot, StudentRef, plan_rule};
    // A school of its own: its students have no case yet.
    seed_school(&w.db, "W2").await;
    let school = school::Entity::find()
        .filter(school::Column::Code.eq("W2"))
        .one(&w.db)
        .await
        .unwrap()
        .unwrap();
    let s4 = student::Entity::find()
        .filter(student::Column::SchoolId.eq(school.id))
        .filter(student::Column::StudentNo.eq("S1"))
        .one(&w.db)
        .await
        .unwrap()
        .unwrap();
    let txn = begin_write(&w.db).await.unwrap();
    let staff = sanyu_case::snapshot::reachable(&*txn, school.id)
        .await
        .unwrap();
    let ctx = w.ctx();
    let signal = |n: u32, level| RuleSignal {
        event_id: format!("batch-signal:{n}:{}", Uuid::now_v7()),
        kind: "report_submitted".into(),
        source_id: Some(Uuid::now_v7()),
        level,
        rule_id: "rule.test".into(),
    };
    let mut open: Option<case::Model> = None;
    let mut plans = Vec::new();
    let mut ids = Vec::new();
    for (n, cmd) in [
        RuleCommand::Open {
            level: RiskLevel::Elevated,
        },
        RuleCommand::Raise {
            to: RiskLevel::High,
        },
        RuleCommand::Raise {
            to: RiskLevel::Critical,
        },
        RuleCommand::Attach,
    ]
    .into_iter()
    .enumerate()
    {
        let snap = RuleSnapshot {
            school_id: school.id,
            school_code: &school.code,
            student: Some(StudentRef {
                id: s4.id,
                class_id: s4.class_id,
            }),
            open_case: open.as_ref(),
            staff: &staff,
            duty: &sanyu_domain::duty::Roster::empty(chrono_tz::Asia::Shanghai),
        };
        let sig = signal(n as u32, RiskLevel::High);
        let plan = plan_rule(&snap, &sig, cmd, &ctx).unwrap();
        ids.extend(plan.events.iter().map(|e| e.event_id.clone()));
        ids.extend(plan.notifications.iter().map(|e| e.event_id.clone()));
        open = Some(plan.case_as_written());
        plans.push(plan);
    }
    // A rule's plans seal nothing: no keys needed.
    sanyu_case::apply_all(&*txn, plans, None).await.unwrap();
    txn.commit().await.unwrap();
    let expected = open.unwrap();
    let written = cases::get(&w.db, expected.id).await.unwrap().unwrap();
    assert_eq!(written.level, RiskLevel::Critical);
    assert_eq!(written.version, expected.version);
    assert_eq!(written.ladder_epoch, 3);
    assert_eq!(
        w.pending_rungs(written.id).await,
        vec![format!("ladder:{}:e3:r1", written.id)],
        "the earlier ladders' rungs are cancelled"
    );
    assert_eq!(ids.iter().filter(|i| i.starts_with("case.")).count(), 4);
    for id in &ids {
        assert!(w.has_event(id).await, "{id} in the outbox");
    }
    assert_eq!(cases::signals(&w.db, written.id).await.unwrap().len(), 4);
}

#[tokio::test]
async fn the_writer_commits_a_plan_whole_on_sqlite_and_postgres() {
    for test_db in TestDb::all().await {
        let w = World::new(test_db).await;
        an_acknowledgement_writes_its_row_entry_event_and_audit_record_and_stops_the_ladder(&w)
            .await;
        a_raise_writes_a_fresh_ladder_of_a_new_epoch_and_seals_the_reason(&w).await;
        a_plan_of_a_case_that_changed_meanwhile_writes_nothing(&w).await;
        a_batch_of_rule_plans_is_written_as_if_one_by_one(&w).await;
    }
}
