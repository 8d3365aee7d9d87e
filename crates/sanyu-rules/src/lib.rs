//! The rules engine: consumes signals from the INTAKE stream and decides each
//! exactly once with the rules in force (`sanyu-ruleset`, a reviewed TOML
//! file): open a case, attach to the student's open case (raising its level,
//! never lowering it), put the student on the key-population watch list, or
//! no action. Every decision is stored with its rule id, the rules version and
//! the signals it used (`decisions`), and those rows are the per-student
//! history the next decisions look back over.
//!
//! **Batches.** A lane hands the engine every message it already holds (up to
//! `rules.max_batch`); they are decided in one transaction: the decisions, the
//! case changes, the case events (outbox), the first notifications and the
//! processed-message records commit together, and the acks follow the commit.
//! If the batch transaction fails, its messages are decided one by one, so one
//! bad message never holds up the others.
//!
//! **Replicas.** Several engines share one durable consumer. Two of them never
//! decide about one student at once: each locks the students of its batch
//! (one transaction-scoped advisory lock per student on PostgreSQL, taken in
//! key order so two batches cannot deadlock, and writing nothing to disk;
//! SQLite serialises writers with `BEGIN IMMEDIATE`) before it reads
//! their state, and checks the processed-message and decided-signal records
//! under that lock. The partial unique index (one active case per student)
//! stays as the last guard.

pub mod facts;
pub mod ruleset;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sanyu_domain::hotline::{RULE_HOTLINE_UNIDENTIFIED_CALLER, unidentified_caller_case};
use sanyu_domain::{
    CaseSubject, EscalationPolicy, RiskLevel, Role, case_reference, student_partition,
};
use sanyu_escalation::{self as escalation, EscalationError};
use sanyu_events::subjects::{self, INTAKE_STREAM};
use sanyu_events::{Envelope, Payload, v1};
use sanyu_platform::consumer::{self, Delivery, Handler, Outcome};
use sanyu_platform::nats::{ConsumerSpec, Ordering};
use sanyu_platform::relay::{OutboxRelay, Waker};
use sanyu_platform::trace::TRACEPARENT;
use sanyu_platform::{Config, PlatformError, Shutdown, runner};
use sanyu_ruleset::{Decision, RuleSet, Signal, Source, StudentState};
use sanyu_store::cases::{self, NewCase, NewSignal};
use sanyu_store::decisions::{self, NewDecision, NewWatch};
use sanyu_store::entities::{case, school, student, watch_entry};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use sanyu_store::{Db, StoreError, begin_write, processed};
use uuid::Uuid;

pub use facts::{Facts, SUICIDE_FLAGS};
pub use ruleset::Rules;

/// Name of the durable consumer and of its processed-message records.
pub const CONSUMER: &str = "rules";

pub fn spec(config: &sanyu_platform::config::RulesConfig) -> ConsumerSpec {
    ConsumerSpec {
        stream: INTAKE_STREAM,
        durable: CONSUMER,
        filter_subject: subjects::INTAKE_SUBJECTS.to_owned(),
        lanes: config.lanes.max(1),
        max_batch: config.max_batch.max(1),
        ordering: Ordering::BySubject,
    }
}

/// Why a signal was not decided.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("malformed signal: {0}")]
    Malformed(String),
    #[error("unknown student {0}")]
    UnknownStudent(Uuid),
    #[error("unknown school {0}")]
    UnknownSchool(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt case: {0}")]
    Corrupt(String),
}

impl From<EscalationError> for RulesError {
    fn from(e: EscalationError) -> Self {
        match e {
            EscalationError::Store(s) => RulesError::Store(s),
            other => RulesError::Corrupt(other.to_string()),
        }
    }
}

impl From<sanyu_store::sea_orm::DbErr> for RulesError {
    fn from(e: sanyu_store::sea_orm::DbErr) -> Self {
        RulesError::Store(StoreError::Db(e))
    }
}

/// What happened to one signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Opened {
        case_id: Uuid,
        level: RiskLevel,
    },
    Raised {
        case_id: Uuid,
        from: RiskLevel,
        to: RiskLevel,
    },
    Attached {
        case_id: Uuid,
    },
    /// On the key-population watch list, with a follow-up date.
    Watched {
        follow_up_on: chrono::NaiveDate,
    },
    NoAction,
    /// Already decided before (redelivery or duplicate publish).
    Duplicate,
    /// A kind of message the rules do not decide.
    Ignored,
}

/// One message to decide: its bytes and the trace it belongs to.
pub struct Incoming<'a> {
    pub payload: &'a [u8],
    pub traceparent: Option<String>,
}

/// The result of one message of a batch.
pub type MessageResult = Result<Vec<Decided>, RulesError>;

pub struct RulesEngine {
    db: Db,
    waker: Waker,
    /// The ladders snapshotted onto cases as they open or rise.
    policy: EscalationPolicy,
    rules: Arc<Rules>,
    pause_before_ack: Option<std::time::Duration>,
}

/// Fault injection for the crash tests: hold every decided message this long
/// after the commit and before the ack, so a test can SIGKILL the process in
/// exactly that window. Never set in production.
pub const FAULT_PAUSE_BEFORE_ACK_MS: &str = "SANYU_FAULT_PAUSE_BEFORE_ACK_MS";

/// A message of a batch on its way through the transaction.
struct Pending {
    index: usize,
    envelope: Envelope,
    facts: Vec<Facts>,
    traceparent: Option<String>,
}

impl RulesEngine {
    pub fn new(db: Db, waker: Waker, policy: EscalationPolicy, rules: Arc<Rules>) -> Self {
        let pause_before_ack = std::env::var(FAULT_PAUSE_BEFORE_ACK_MS)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis);
        Self {
            db,
            waker,
            policy,
            rules,
            pause_before_ack,
        }
    }

    /// Decide one encoded envelope; the decision of its first signal.
    pub async fn decide(&self, payload: &[u8]) -> Result<Decided, RulesError> {
        let mut all = self.decide_each(payload).await?;
        Ok(if all.is_empty() {
            Decided::Ignored
        } else {
            all.swap_remove(0)
        })
    }

    /// Decide one encoded envelope; one decision per signal it carries.
    pub async fn decide_each(&self, payload: &[u8]) -> MessageResult {
        let incoming = [Incoming {
            payload,
            traceparent: sanyu_platform::trace::current_traceparent(),
        }];
        match self.decide_batch(&incoming).await {
            Ok(mut results) => results.pop().unwrap_or(Ok(Vec::new())),
            Err(e) => Err(e),
        }
    }

    /// Decide several messages in one transaction. `Err` when the
    /// transaction failed (nothing of the batch is committed); otherwise one
    /// result per message, in order (a message with an unknown student or a
    /// malformed payload has no effect and its own error).
    pub async fn decide_batch(
        &self,
        batch: &[Incoming<'_>],
    ) -> Result<Vec<MessageResult>, RulesError> {
        let mut results: Vec<Option<MessageResult>> = (0..batch.len()).map(|_| None).collect();
        let mut pending = Vec::new();
        for (index, incoming) in batch.iter().enumerate() {
            let envelope = match sanyu_events::decode(incoming.payload) {
                Ok(envelope) => envelope,
                Err(e) => {
                    results[index] = Some(Err(RulesError::Malformed(e.to_string())));
                    continue;
                }
            };
            // A hotline caller nobody identified: no student to decide
            // about; a case of their own at high or critical.
            if let Some(Payload::HotlineCall(call)) = &envelope.payload
                && call.student_id.is_empty()
            {
                results[index] = Some(
                    self.decide_unidentified(&envelope, call, incoming.traceparent.clone())
                        .await,
                );
                continue;
            }
            match facts::of_envelope(&envelope) {
                Ok(facts) if facts.is_empty() => results[index] = Some(Ok(vec![Decided::Ignored])),
                Ok(facts) => pending.push(Pending {
                    index,
                    envelope,
                    facts,
                    traceparent: incoming.traceparent.clone(),
                }),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        if !pending.is_empty() {
            let rules = self.rules.current();
            let txn = begin_write(&self.db).await?;
            let emitted = self.decide_in(&*txn, &rules, pending, &mut results).await?;
            txn.commit().await?;
            if emitted {
                self.waker.wake();
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(Vec::new())))
            .collect())
    }

    /// A hotline caller nobody identified, rated `high` or `critical`: an
    /// `unidentified_caller` case for the school's crisis team (linked to a
    /// student later); a lower rating opens nothing. Its own transaction:
    /// processed record, case, first signal, CaseOpened (outbox), ladder.
    async fn decide_unidentified(
        &self,
        envelope: &Envelope,
        call: &v1::HotlineCallLogged,
        traceparent: Option<String>,
    ) -> MessageResult {
        let level = sanyu_events::level_from_proto(call.risk_level)
            .ok_or_else(|| RulesError::Malformed("risk_level is unspecified".into()))?;
        let source_id = Uuid::parse_str(&call.record_id)
            .map_err(|_| RulesError::Malformed("record_id is not a uuid".into()))?;
        let txn = begin_write(&self.db).await?;
        if !processed::record(&*txn, CONSUMER, &envelope.event_id).await? {
            txn.rollback().await?;
            return Ok(vec![Decided::Duplicate]);
        }
        let Some(level) = unidentified_caller_case(level) else {
            txn.commit().await?;
            return Ok(vec![Decided::NoAction]);
        };
        let school = school::Entity::find()
            .filter(school::Column::Code.eq(envelope.school.clone()))
            .one(&*txn)
            .await?
            .ok_or_else(|| RulesError::UnknownSchool(envelope.school.clone()))?;
        let now = Utc::now();
        let case_id = Uuid::now_v7();
        let reference = case_reference(case_id);
        let rule = RULE_HOTLINE_UNIDENTIFIED_CALLER;
        cases::open(
            &*txn,
            NewCase {
                id: case_id,
                reference: reference.clone(),
                school_id: school.id,
                class_id: None,
                student_id: None,
                subject: CaseSubject::UnidentifiedCaller,
                level,
                rule: rule.to_owned(),
                at: now,
            },
        )
        .await?;
        cases::attach_signal(
            &*txn,
            NewSignal {
                case_id,
                event_id: envelope.event_id.clone(),
                kind: envelope.kind.clone(),
                source_id: Some(source_id),
                level,
                decision: "opened".to_owned(),
                rule_id: rule.to_owned(),
                at: now,
            },
        )
        .await?;
        let opened = cases::get(&*txn, case_id)
            .await?
            .ok_or(StoreError::NotFound("case"))?;
        let partition = opened.partition();
        let event_id = format!("case.opened:{case_id}");
        outbox::enqueue(
            &*txn,
            OutboxEvent {
                subject: subjects::case_event("opened", &school.code, partition),
                payload: sanyu_events::encode(&sanyu_events::envelope(
                    event_id.clone(),
                    now,
                    school.code.clone(),
                    partition,
                    Payload::CaseOpened(v1::CaseOpened {
                        case_id: case_id.to_string(),
                        reference,
                        student_id: String::new(),
                        level: sanyu_events::level_to_proto(level) as i32,
                        signal_event_id: envelope.event_id.clone(),
                        rule_id: rule.to_owned(),
                        subject: CaseSubject::UnidentifiedCaller.as_str().to_owned(),
                    }),
                )),
                event_id,
                traceparent: traceparent.clone(),
            },
        )
        .await?;
        escalation::start(
            &*txn,
            &opened,
            &self.policy,
            escalation::reason::UNIDENTIFIED_CALLER,
            now,
            traceparent,
        )
        .await?;
        txn.commit().await?;
        self.waker.wake();
        tracing::info!(%case_id, level = level.as_str(), rule, subject = "unidentified_caller", "case opened");
        Ok(vec![Decided::Opened { case_id, level }])
    }

    /// The batch inside its transaction; `true` when events were emitted.
    async fn decide_in(
        &self,
        txn: &impl ConnectionTrait,
        rules: &RuleSet,
        pending: Vec<Pending>,
        results: &mut [Option<MessageResult>],
    ) -> Result<bool, RulesError> {
        let now = Utc::now();
        let t0 = std::time::Instant::now();
        // 1. Lock the students (the per-student mutual exclusion of replicas).
        let student_ids: Vec<Uuid> = pending
            .iter()
            .flat_map(|p| p.facts.iter().map(|f| f.student_id))
            .collect();
        let students = decisions::lock_students(txn, &student_ids).await?;
        let mut pending: Vec<Pending> = pending
            .into_iter()
            .filter(|p| {
                match p
                    .facts
                    .iter()
                    .find(|f| !students.contains_key(&f.student_id))
                {
                    Some(unknown) => {
                        results[p.index] =
                            Some(Err(RulesError::UnknownStudent(unknown.student_id)));
                        false
                    }
                    None => true,
                }
            })
            .collect();
        // 2. Messages and signals decided before (redelivery, duplicate publish).
        let message_ids: Vec<String> = pending
            .iter()
            .map(|p| p.envelope.event_id.clone())
            .collect();
        let seen_messages = processed::already(txn, CONSUMER, &message_ids).await?;
        let mut fresh_messages = HashSet::new();
        pending.retain(|p| {
            let fresh = !seen_messages.contains(&p.envelope.event_id)
                && fresh_messages.insert(p.envelope.event_id.clone());
            if !fresh {
                results[p.index] = Some(Ok(vec![Decided::Duplicate]));
            }
            fresh
        });
        if pending.is_empty() {
            return Ok(false);
        }
        let signal_ids: Vec<String> = pending
            .iter()
            .flat_map(|p| p.facts.iter().map(|f| f.signal_id.clone()))
            .collect();
        let mut decided = decisions::decided(txn, &signal_ids).await?;
        let t_lock = t0.elapsed();
        // 3. The students' state: open cases, recent signals, watch list.
        let ids: Vec<Uuid> = students.keys().copied().collect();
        let mut open = cases::active_for_students(txn, &ids).await?;
        let since = now - chrono::Duration::days(i64::from(rules.lookback_days()) + 1);
        let mut recent: HashMap<Uuid, Vec<Signal>> = HashMap::new();
        for row in decisions::recent_for_students(txn, &ids, since).await? {
            if let Some(signal) = signal_of_row(&row) {
                recent.entry(row.student_id).or_default().push(signal);
            }
        }
        let mut watches = decisions::active_watches(txn, &ids).await?;
        let school_ids: HashSet<Uuid> = students.values().map(|s| s.school_id).collect();
        let schools: HashMap<Uuid, school::Model> = school::Entity::find()
            .filter(school::Column::Id.is_in(school_ids))
            .all(txn)
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        // The reachable staff of each school, by role, for the first ladders.
        let school_list: Vec<Uuid> = schools.keys().copied().collect();
        let staff = escalation::reachable_by_role(txn, &school_list).await?;
        let mut deferred = Deferred::default();
        let t_state = t0.elapsed();
        let (mut slow_raises, mut slow_watches) = (0u32, 0u32);
        // 4. Decide, in stream order.
        let mut rows = Vec::new();
        let mut emitted = false;
        for p in &pending {
            let mut out = Vec::with_capacity(p.facts.len());
            for f in &p.facts {
                if !decided.insert(f.signal_id.clone()) {
                    out.push(Decided::Duplicate);
                    continue;
                }
                let student = students
                    .get(&f.student_id)
                    .ok_or(RulesError::UnknownStudent(f.student_id))?;
                let school = schools
                    .get(&student.school_id)
                    .ok_or(StoreError::NotFound("school"))?;
                let history = recent.entry(f.student_id).or_default();
                let state = StudentState {
                    open_case: open.get(&f.student_id).map(level_of).transpose()?,
                    recent: history.clone(),
                    watched: watches.contains_key(&f.student_id),
                };
                let outcome = rules.decide(&f.signal, &state, now);
                let ctx = Ctx {
                    txn,
                    policy: &self.policy,
                    facts: f,
                    student,
                    school,
                    now,
                    rule_id: &outcome.rule_id,
                    traceparent: p.traceparent.clone(),
                };
                let (did, row_case, follow_up_on) = match outcome.decision {
                    Decision::NoAction => (Decided::NoAction, None, None),
                    Decision::Watch { follow_up_days } => {
                        let on =
                            (now + chrono::Duration::days(i64::from(follow_up_days))).date_naive();
                        match watches.get_mut(&f.student_id) {
                            // On the list since earlier in this batch: not written yet.
                            Some(w) if deferred.watches.contains_key(&f.student_id) => {
                                w.follow_up_on = w.follow_up_on.min(on);
                                if let Some(pending) = deferred.watches.get_mut(&f.student_id) {
                                    pending.follow_up_on = w.follow_up_on;
                                }
                            }
                            // On the list: an earlier follow-up date stands.
                            Some(w) => {
                                if on < w.follow_up_on {
                                    slow_watches += 1;
                                    let moved = decisions::watch(
                                        txn,
                                        Some(w),
                                        NewWatch {
                                            student_id: f.student_id,
                                            school_id: student.school_id,
                                            class_id: student.class_id,
                                            since: now,
                                            follow_up_on: on,
                                            signal_id: f.signal_id.clone(),
                                            rule_id: outcome.rule_id.clone(),
                                            rules_version: outcome.rules_version.clone(),
                                        },
                                    )
                                    .await?;
                                    if let Some(moved) = moved {
                                        // A reminder for the new date; the
                                        // old one finds the date moved.
                                        sanyu_store::timers::schedule(
                                            txn,
                                            escalation::WatchTimer::of(&moved)?,
                                        )
                                        .await?;
                                    }
                                    w.follow_up_on = on;
                                }
                            }
                            None => {
                                let entry = watch_entry::Model {
                                    id: Uuid::now_v7(),
                                    student_id: f.student_id,
                                    school_id: student.school_id,
                                    class_id: student.class_id,
                                    since: now,
                                    follow_up_on: on,
                                    signal_id: f.signal_id.clone(),
                                    rule_id: outcome.rule_id.clone(),
                                    rules_version: outcome.rules_version.clone(),
                                    done_at: None,
                                    done_by: None,
                                };
                                deferred.watches.insert(f.student_id, entry.clone());
                                watches.insert(f.student_id, entry);
                            }
                        }
                        (Decided::Watched { follow_up_on: on }, None, Some(on))
                    }
                    Decision::Open { level } => {
                        let case = match ctx.plan_open(level, &staff, &mut deferred)? {
                            Some(case) => case,
                            None => {
                                // Nobody reachable: the slow path raises the alarm.
                                deferred.flush(txn).await?;
                                ctx.open(level).await?
                            }
                        };
                        emitted = true;
                        let did = Decided::Opened {
                            case_id: case.id,
                            level,
                        };
                        let snapshot = (case.id, case.level.clone());
                        open.insert(f.student_id, case);
                        (did, Some(snapshot), None)
                    }
                    Decision::Attach { raise_to } => {
                        let Some(case) = open.get(&f.student_id) else {
                            return Err(RulesError::Corrupt("attach without an open case".into()));
                        };
                        emitted = true;
                        let (did, case) = match raise_to {
                            Some(to) => {
                                if deferred.touches(case.id) {
                                    deferred.flush(txn).await?;
                                }
                                match ctx.plan_raise(case, to, &staff, &mut deferred)? {
                                    Some(raised) => raised,
                                    None => {
                                        // Nobody reachable: the slow path raises the alarm.
                                        slow_raises += 1;
                                        deferred.flush(txn).await?;
                                        ctx.raise(case, to).await?
                                    }
                                }
                            }
                            None => ctx.attach_deferred(case, &mut deferred),
                        };
                        let snapshot = (case.id, case.level.clone());
                        open.insert(f.student_id, case);
                        (did, Some(snapshot), None)
                    }
                };
                rows.push(NewDecision {
                    signal_id: f.signal_id.clone(),
                    message_id: p.envelope.event_id.clone(),
                    student_id: f.student_id,
                    school_id: student.school_id,
                    source: f.signal.source.as_str().to_owned(),
                    signal_at: f.signal.at,
                    level: f.signal.level.map(|l| l.as_str().to_owned()),
                    instrument: f.signal.instrument.clone(),
                    band: f.signal.band.clone(),
                    flags: f.signal.flags.clone(),
                    category: f.signal.category.clone(),
                    decision: decision_name(&did).to_owned(),
                    case_id: row_case.as_ref().map(|c| c.0),
                    case_level: row_case.map(|c| c.1),
                    follow_up_on,
                    rule_id: outcome.rule_id.clone(),
                    rules_version: outcome.rules_version.clone(),
                    used: outcome.used.clone(),
                    decided_at: now,
                });
                history.push(f.signal.clone());
                out.push(did);
            }
            results[p.index] = Some(Ok(out));
        }
        let t_decide = t0.elapsed();
        deferred.flush(txn).await?;
        decisions::insert_many(txn, rows).await?;
        let fresh: Vec<String> = pending
            .iter()
            .map(|p| p.envelope.event_id.clone())
            .collect();
        processed::record_many(txn, CONSUMER, &fresh).await?;
        tracing::debug!(
            lock_ms = t_lock.as_millis() as u64,
            state_ms = (t_state - t_lock).as_millis() as u64,
            decide_ms = (t_decide - t_state).as_millis() as u64,
            write_ms = (t0.elapsed() - t_decide).as_millis() as u64,
            slow_raises,
            slow_watches,
            "batch phases"
        );
        Ok(emitted)
    }
}

fn decision_name(d: &Decided) -> &'static str {
    match d {
        Decided::Opened { .. } => "opened",
        Decided::Raised { .. } => "raised",
        Decided::Attached { .. } => "attached",
        Decided::Watched { .. } => "watch",
        Decided::NoAction => "no_action",
        Decided::Duplicate => "duplicate",
        Decided::Ignored => "ignored",
    }
}

fn level_of(case: &case::Model) -> Result<RiskLevel, RulesError> {
    case.level.parse().map_err(|_| {
        RulesError::Store(StoreError::Corrupt {
            table: "cases",
            detail: format!("level `{}`", case.level),
        })
    })
}

/// A stored decision as a signal of the student's history.
pub fn signal_of_row(row: &sanyu_store::entities::decision::Model) -> Option<Signal> {
    Some(Signal {
        id: row.signal_id.clone(),
        source: Source::parse(&row.source)?,
        at: row.signal_at,
        level: row.level.as_deref().and_then(|l| l.parse().ok()),
        instrument: row.instrument.clone(),
        band: row.band.clone(),
        flags: decisions::flags_of(row),
        category: row.category.clone(),
    })
}

/// Writes of a batch kept back to be written together (multi-row inserts) at
/// the end of the batch, or before a step that needs them in the database.
/// Still inside the batch transaction: nothing is committed any earlier or
/// later than before.
#[derive(Default)]
struct Deferred {
    cases: Vec<case::Model>,
    /// Raised cases, rewritten with their new ladders.
    rewrites: Vec<cases::Rewrite>,
    /// Cases whose pending rung timers are cancelled (their ladder restarts).
    restarted: Vec<Uuid>,
    signals: Vec<NewSignal>,
    events: Vec<OutboxEvent>,
    timers: Vec<sanyu_store::timers::NewTimer>,
    /// New watch-list entries, by student.
    watches: HashMap<Uuid, watch_entry::Model>,
    /// Cases with writes kept back.
    touched: HashSet<Uuid>,
}

impl Deferred {
    /// Keep back a planned ladder's requests and timer; its case.
    fn ladder(&mut self, planned: escalation::PlannedLadder) -> case::Model {
        self.events.extend(planned.requests);
        self.timers.extend(planned.timer);
        planned.case
    }

    fn touches(&self, case_id: Uuid) -> bool {
        self.touched.contains(&case_id)
    }

    async fn flush(&mut self, txn: &impl ConnectionTrait) -> Result<(), RulesError> {
        // The old ladders' timers go before the new ones are written.
        sanyu_store::timers::cancel_for_cases(
            txn,
            &std::mem::take(&mut self.restarted),
            escalation::RUNG_TIMER,
        )
        .await?;
        cases::insert_many(txn, std::mem::take(&mut self.cases)).await?;
        cases::rewrite_many(txn, &std::mem::take(&mut self.rewrites)).await?;
        cases::attach_many(txn, std::mem::take(&mut self.signals)).await?;
        outbox::enqueue_all(txn, std::mem::take(&mut self.events)).await?;
        sanyu_store::timers::schedule_all(txn, std::mem::take(&mut self.timers)).await?;
        // New entries, each with its follow-up reminder (at the date the
        // batch settled on).
        let watches: Vec<watch_entry::Model> =
            std::mem::take(&mut self.watches).into_values().collect();
        let reminders = watches
            .iter()
            .map(escalation::WatchTimer::of)
            .collect::<Result<Vec<_>, _>>()?;
        decisions::insert_watches(txn, watches).await?;
        sanyu_store::timers::schedule_all(txn, reminders).await?;
        self.touched.clear();
        Ok(())
    }
}

/// The effects of one decision on cases, inside the batch transaction.
struct Ctx<'a, C: ConnectionTrait> {
    txn: &'a C,
    policy: &'a EscalationPolicy,
    facts: &'a Facts,
    student: &'a student::Model,
    school: &'a school::Model,
    now: DateTime<Utc>,
    rule_id: &'a str,
    traceparent: Option<String>,
}

impl<C: ConnectionTrait> Ctx<'_, C> {
    fn emit(&self, event_id: String, subject_event: &str, payload: Payload) -> OutboxEvent {
        let partition = student_partition(self.facts.student_id);
        OutboxEvent {
            subject: subjects::case_event(subject_event, &self.school.code, partition),
            payload: sanyu_events::encode(&sanyu_events::envelope(
                event_id.clone(),
                self.now,
                self.school.code.clone(),
                partition,
                payload,
            )),
            event_id,
            traceparent: self.traceparent.clone(),
        }
    }

    fn signal(&self, case_id: Uuid, decision: &str) -> NewSignal {
        NewSignal {
            case_id,
            event_id: self.facts.signal_id.clone(),
            kind: self.facts.kind.clone(),
            source_id: Some(self.facts.source_id),
            level: self.facts.level,
            decision: decision.to_owned(),
            rule_id: self.rule_id.to_owned(),
            at: self.now,
        }
    }

    fn new_case(&self, level: RiskLevel) -> NewCase {
        let case_id = Uuid::now_v7();
        NewCase {
            id: case_id,
            reference: case_reference(case_id),
            school_id: self.student.school_id,
            class_id: Some(self.student.class_id),
            student_id: Some(self.facts.student_id),
            subject: CaseSubject::Student,
            level,
            rule: self.rule_id.to_owned(),
            at: self.now,
        }
    }

    fn opened_event(&self, case: &case::Model, level: RiskLevel) -> OutboxEvent {
        self.emit(
            format!("case.opened:{}", case.id),
            "opened",
            Payload::CaseOpened(v1::CaseOpened {
                case_id: case.id.to_string(),
                reference: case.reference.clone(),
                student_id: self.facts.student_id.to_string(),
                level: sanyu_events::level_to_proto(level) as i32,
                signal_event_id: self.facts.signal_id.clone(),
                rule_id: self.rule_id.to_owned(),
                subject: CaseSubject::Student.as_str().to_owned(),
            }),
        )
    }

    /// Open a case with writes kept back for the batch: the case row (with its
    /// first ladder), its first signal, CaseOpened, the first contacts'
    /// notification requests and the next rung's timer. `None` when nobody is
    /// reachable (the caller opens it the slow way, which raises the alarm).
    fn plan_open(
        &self,
        level: RiskLevel,
        staff: &HashMap<(Uuid, Role), Vec<Uuid>>,
        deferred: &mut Deferred,
    ) -> Result<Option<case::Model>, RulesError> {
        let new = cases::new_model(self.new_case(level));
        let Some(first) = self.plan_ladder(&new, escalation::reason::CASE_OPENED, staff)? else {
            return Ok(None);
        };
        deferred.touched.insert(new.id);
        deferred.signals.push(self.signal(new.id, "opened"));
        deferred.events.push(self.opened_event(&new, level));
        let opened = deferred.ladder(first);
        deferred.cases.push(opened.clone());
        tracing::info!(case_id = %new.id, level = level.as_str(), rule = self.rule_id, "case opened");
        Ok(Some(opened))
    }

    /// The (re)start of `case`'s ladder, planned with the batch's reachable
    /// staff; `None` when nobody is reachable.
    fn plan_ladder(
        &self,
        case: &case::Model,
        why: &str,
        staff: &HashMap<(Uuid, Role), Vec<Uuid>>,
    ) -> Result<Option<escalation::PlannedLadder>, RulesError> {
        Ok(escalation::plan_start(
            case,
            self.policy,
            self.school,
            |roles| reachable_in(staff, self.school.id, roles),
            why,
            self.now,
            self.traceparent.clone(),
        )?)
    }

    /// Raise the level of an open case (not written in this batch yet) with
    /// writes kept back for the batch: the case row with the new level's
    /// ladder (restarted: its first contacts are told and someone must
    /// acknowledge again), the old ladder's timers cancelled, the signal,
    /// CaseEscalated, the notification requests and the next rung's timer.
    /// `None` when nobody is reachable (the caller raises it the slow way,
    /// which raises the alarm).
    fn plan_raise(
        &self,
        case: &case::Model,
        to: RiskLevel,
        staff: &HashMap<(Uuid, Role), Vec<Uuid>>,
        deferred: &mut Deferred,
    ) -> Result<Option<(Decided, case::Model)>, RulesError> {
        let from = level_of(case)?;
        let mut next = case.clone();
        next.level = to.as_str().to_owned();
        next.level_rank = to.rank();
        next.version = case.version + 1;
        next.updated_at = self.now;
        let Some(planned) = self.plan_ladder(&next, escalation::reason::LEVEL_RAISED, staff)?
        else {
            return Ok(None);
        };
        deferred.touched.insert(case.id);
        deferred.restarted.push(case.id);
        deferred.signals.push(self.signal(case.id, "raised"));
        deferred.events.push(self.escalated_event(case, from, to));
        let raised = deferred.ladder(planned);
        deferred.rewrites.push(cases::Rewrite {
            expected_version: case.version,
            case: raised.clone(),
        });
        tracing::info!(case_id = %case.id, from = from.as_str(), to = to.as_str(), rule = self.rule_id, "case level raised");
        Ok(Some((
            Decided::Raised {
                case_id: case.id,
                from,
                to,
            },
            raised,
        )))
    }

    fn escalated_event(&self, case: &case::Model, from: RiskLevel, to: RiskLevel) -> OutboxEvent {
        self.emit(
            format!("case.escalated:{}:{}", case.id, self.facts.signal_id),
            "escalated",
            Payload::CaseEscalated(v1::CaseEscalated {
                case_id: case.id.to_string(),
                reference: case.reference.clone(),
                student_id: self.facts.student_id.to_string(),
                previous_level: sanyu_events::level_to_proto(from) as i32,
                level: sanyu_events::level_to_proto(to) as i32,
                signal_event_id: self.facts.signal_id.clone(),
                rule_id: self.rule_id.to_owned(),
            }),
        )
    }

    /// Attach to an open case with writes kept back for the batch.
    fn attach_deferred(
        &self,
        case: &case::Model,
        deferred: &mut Deferred,
    ) -> (Decided, case::Model) {
        deferred.touched.insert(case.id);
        deferred.signals.push(self.signal(case.id, "attached"));
        deferred.events.push(self.attached_event(case));
        (Decided::Attached { case_id: case.id }, case.clone())
    }

    fn attached_event(&self, case: &case::Model) -> OutboxEvent {
        self.emit(
            format!("case.signal_attached:{}:{}", case.id, self.facts.signal_id),
            "signal_attached",
            Payload::CaseSignalAttached(v1::CaseSignalAttached {
                case_id: case.id.to_string(),
                reference: case.reference.clone(),
                signal_event_id: self.facts.signal_id.clone(),
                level: sanyu_events::level_to_proto(self.facts.level) as i32,
            }),
        )
    }

    /// Open a case the slow way, write by write (used when nobody is
    /// reachable: `escalation::start` then raises the alarm).
    async fn open(&self, level: RiskLevel) -> Result<case::Model, RulesError> {
        let new = self.new_case(level);
        let case_id = new.id;
        cases::open(self.txn, new).await?;
        cases::attach_signal(self.txn, self.signal(case_id, "opened")).await?;
        let opened = cases::get(self.txn, case_id)
            .await?
            .ok_or(StoreError::NotFound("case"))?;
        outbox::enqueue(self.txn, self.opened_event(&opened, level)).await?;
        let started = escalation::start(
            self.txn,
            &opened,
            self.policy,
            escalation::reason::CASE_OPENED,
            self.now,
            self.traceparent.clone(),
        )
        .await?;
        tracing::info!(%case_id, level = level.as_str(), rule = self.rule_id, "case opened");
        Ok(started)
    }

    async fn raise(
        &self,
        case: &case::Model,
        to: RiskLevel,
    ) -> Result<(Decided, case::Model), RulesError> {
        let from = level_of(case)?;
        cases::raise_level(self.txn, case, to).await?;
        cases::attach_signal(self.txn, self.signal(case.id, "raised")).await?;
        outbox::enqueue(self.txn, self.escalated_event(case, from, to)).await?;
        // The new level's ladder starts over: its first contacts are told and
        // someone must acknowledge again.
        let raised = cases::get(self.txn, case.id)
            .await?
            .ok_or(StoreError::NotFound("case"))?;
        let started = escalation::start(
            self.txn,
            &raised,
            self.policy,
            escalation::reason::LEVEL_RAISED,
            self.now,
            self.traceparent.clone(),
        )
        .await?;
        tracing::info!(case_id = %case.id, from = from.as_str(), to = to.as_str(), rule = self.rule_id, "case level raised");
        Ok((
            Decided::Raised {
                case_id: case.id,
                from,
                to,
            },
            started,
        ))
    }
}

/// The reachable staff of `school_id` in `roles`, each once, in role order.
fn reachable_in(
    staff: &HashMap<(Uuid, Role), Vec<Uuid>>,
    school_id: Uuid,
    roles: &[Role],
) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = Vec::new();
    for role in roles {
        for id in staff.get(&(school_id, *role)).into_iter().flatten() {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
    }
    ids
}

/// The consumer outcome of a message's result.
fn outcome_of(result: &MessageResult) -> Outcome {
    match result {
        Ok(decided) => {
            tracing::debug!(?decided, "signal decided");
            Outcome::Ack
        }
        Err(RulesError::Malformed(reason)) => Outcome::Reject(reason.clone()),
        Err(e @ RulesError::Corrupt(_)) => Outcome::Reject(e.to_string()),
        // The roster may not have reached this database yet: retry, and
        // dead-letter (for the crisis team to review) when retries run out.
        Err(e @ (RulesError::UnknownStudent(_) | RulesError::UnknownSchool(_))) => {
            Outcome::Retry(e.to_string())
        }
        Err(RulesError::Store(e)) if e.is_retryable() => Outcome::Retry(e.to_string()),
        Err(RulesError::Store(e)) => Outcome::Retry(format!("store: {e}")),
    }
}

impl RulesEngine {
    async fn pause_if_asked(&self) {
        if let Some(pause) = self.pause_before_ack {
            tracing::warn!(
                pause_ms = pause.as_millis() as u64,
                "fault injection: pausing before ack"
            );
            tokio::time::sleep(pause).await;
        }
    }
}

impl Handler for RulesEngine {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let outcome = outcome_of(&self.decide_each(&delivery.payload).await);
        if outcome == Outcome::Ack {
            self.pause_if_asked().await;
        }
        outcome
    }

    async fn handle_batch(&self, deliveries: &[Delivery]) -> Vec<Outcome> {
        let batch: Vec<Incoming<'_>> = deliveries
            .iter()
            .map(|d| Incoming {
                payload: &d.payload,
                traceparent: d.header(TRACEPARENT).map(str::to_owned),
            })
            .collect();
        let started = std::time::Instant::now();
        let outcomes: Vec<Outcome> = match self.decide_batch(&batch).await {
            Ok(results) => {
                tracing::debug!(
                    messages = batch.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "batch decided"
                );
                results.iter().map(outcome_of).collect()
            }
            Err(e) => {
                // Decide them one by one: a message that fails the batch must
                // not hold up the others.
                tracing::warn!(error = %e, messages = deliveries.len(), "batch failed; deciding one by one");
                let mut outcomes = Vec::with_capacity(batch.len());
                for one in &batch {
                    let single = [Incoming {
                        payload: one.payload,
                        traceparent: one.traceparent.clone(),
                    }];
                    outcomes.push(match self.decide_batch(&single).await {
                        Ok(mut r) => outcome_of(&r.pop().unwrap_or(Ok(Vec::new()))),
                        Err(e) => outcome_of(&Err(e)),
                    });
                }
                outcomes
            }
        };
        if outcomes.contains(&Outcome::Ack) {
            self.pause_if_asked().await;
        }
        outcomes
    }
}

/// Run the rules engine until shutdown: its consumer, its outbox relay and the
/// reload of the rules file.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PlatformError> {
    let rules =
        Arc::new(Rules::load(&config.rules).map_err(|e| PlatformError::Config(e.to_string()))?);
    let readiness = runner::Readiness::new();
    runner::serve_health(&config, &readiness, &shutdown).await?;
    let Some((db, backbone)) =
        runner::connect(&config, "sanyu-rules", &readiness, &shutdown.token).await
    else {
        tracing::info!("rules engine stopped before it could connect");
        return Ok(());
    };
    tracing::info!(nats = %backbone.server_version(), rules_version = %rules.current().version, "rules engine starting");
    let waker = Waker::default();
    let relay = OutboxRelay::new(db.clone(), backbone.clone(), waker.clone());
    shutdown.tracker.spawn(relay.run(shutdown.token.clone()));
    shutdown.tracker.spawn(rules.clone().watch(
        std::time::Duration::from_secs(config.rules.reload_secs),
        shutdown.token.clone(),
    ));
    let engine = RulesEngine::new(db.clone(), waker, config.escalation.clone(), rules);
    shutdown.tracker.spawn(consumer::run(
        backbone.clone(),
        spec(&config.rules),
        engine,
        shutdown.token.clone(),
    ));
    readiness.set_consumers_running();
    shutdown.token.cancelled().await;
    if !shutdown.wait(std::time::Duration::from_secs(20)).await {
        tracing::warn!("rules engine: tasks did not stop in time");
    }
    let _ = backbone.client.drain().await;
    let _ = db.close().await;
    tracing::info!("rules engine stopped");
    Ok(())
}
