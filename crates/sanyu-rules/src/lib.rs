//! The rules engine: consumes signals from the INTAKE stream and decides each
//! exactly once with the rules in force (`sanyu-ruleset`, a reviewed TOML
//! file): open a case, attach to the student's open case (raising its level,
//! never lowering it), put the student on the key-population watch list, or
//! no action. Every decision is stored with its rule id, the rules version and
//! the signals it used (`decisions`), and those rows are the per-student
//! history the next decisions look back over.
//!
//! **Cases.** The engine changes no case itself: a decision about a case is a
//! `sanyu_case::RuleCommand` (open, attach, raise), planned by the case
//! crate's pure planner (the case row, its signal, its event, its ladder's
//! first notifications and next rung, and the alarm when nobody is
//! reachable) and written by its one writer with the batch
//! (`sanyu_case::apply_all`). A hotline caller nobody identified is decided
//! in the same batch: a case of its own at high or critical.
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

mod batch;
pub mod facts;
pub mod ruleset;
mod watch;

use std::sync::Arc;

use sanyu_domain::{EscalationPolicy, RiskLevel};
use sanyu_escalation::EscalationError;
use sanyu_events::subjects::{self, INTAKE_STREAM};
use sanyu_events::{Payload, v1};
use sanyu_platform::consumer::{self, Delivery, Handler, Outcome};
use sanyu_platform::nats::{ConsumerSpec, Ordering};
use sanyu_platform::relay::{OutboxRelay, Waker};
use sanyu_platform::trace::TRACEPARENT;
use sanyu_platform::{Config, PlatformError, Shutdown, runner};
use sanyu_store::{Db, StoreError, begin_write};
use uuid::Uuid;

pub use batch::signal_of_row;
use batch::{Pending, Work};
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

/// [`begin_write`] and the commit return the database's error.
impl From<sanyu_store::DbErr> for RulesError {
    fn from(e: sanyu_store::DbErr) -> Self {
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
    /// The time zone and key dates duty rosters are read in.
    duty: sanyu_case::DutyCalendar,
    /// The engine's clock: the wall clock, or in end-to-end tests a clock
    /// that started at [`TEST_CLOCK_START`].
    clock: Clock,
}

/// Test-only clock override: the engine's clock starts at this instant
/// (RFC 3339) when the process starts and runs on from there, so an
/// end-to-end test can open a case "at 03:00". Never set in production.
pub const TEST_CLOCK_START: &str = "SANYU_TEST_CLOCK_START";

/// The wall clock, or a clock shifted to start at a given instant.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset: chrono::Duration,
}

impl Clock {
    /// The wall clock.
    pub fn wall() -> Self {
        Self {
            offset: chrono::Duration::zero(),
        }
    }

    /// A clock that reads `start` now and runs on from there.
    pub fn starting_at(start: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            offset: start - chrono::Utc::now(),
        }
    }

    /// [`TEST_CLOCK_START`] if set (a malformed value is ignored with a
    /// warning), else the wall clock.
    pub fn from_env() -> Self {
        match std::env::var(TEST_CLOCK_START) {
            Ok(v) => match chrono::DateTime::parse_from_rfc3339(&v) {
                Ok(t) => {
                    tracing::warn!(start = %t, "test clock override: the rules engine's clock is shifted");
                    Self::starting_at(t.with_timezone(&chrono::Utc))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{TEST_CLOCK_START} ignored");
                    Self::wall()
                }
            },
            Err(_) => Self::wall(),
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.offset
    }
}

/// Fault injection for the crash tests: hold every decided message this long
/// after the commit and before the ack, so a test can SIGKILL the process in
/// exactly that window. Never set in production.
pub const FAULT_PAUSE_BEFORE_ACK_MS: &str = "SANYU_FAULT_PAUSE_BEFORE_ACK_MS";

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
            duty: sanyu_case::DutyCalendar::default(),
            clock: Clock::from_env(),
        }
    }

    /// Read duty rosters in this time zone with these key dates (default:
    /// Asia/Shanghai, no key dates).
    pub fn with_duty(mut self, duty: sanyu_case::DutyCalendar) -> Self {
        self.duty = duty;
        self
    }

    /// Use this clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
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
                match unidentified_call(call) {
                    Ok((level, source_id)) => pending.push(Pending {
                        index,
                        envelope,
                        work: Work::Unidentified { level, source_id },
                        traceparent: incoming.traceparent.clone(),
                    }),
                    Err(e) => results[index] = Some(Err(e)),
                }
                continue;
            }
            match facts::of_envelope(&envelope) {
                Ok(facts) if facts.is_empty() => results[index] = Some(Ok(vec![Decided::Ignored])),
                Ok(facts) => pending.push(Pending {
                    index,
                    envelope,
                    work: Work::Signals(facts),
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
}

/// The rating and call record of a call about nobody identified.
fn unidentified_call(call: &v1::HotlineCallLogged) -> Result<(RiskLevel, Uuid), RulesError> {
    let level = sanyu_events::level_from_proto(call.risk_level)
        .ok_or_else(|| RulesError::Malformed("risk_level is unspecified".into()))?;
    let source_id = Uuid::parse_str(&call.record_id)
        .map_err(|_| RulesError::Malformed("record_id is not a uuid".into()))?;
    Ok((level, source_id))
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
        runner::connect(&config, "sanyu-rules", &readiness, &shutdown.token).await?
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
    let duty = sanyu_case::DutyCalendar::new(&config.notify.time_zone, config.zero_report.clone())
        .map_err(PlatformError::Config)?;
    let engine =
        RulesEngine::new(db.clone(), waker, config.escalation.clone(), rules).with_duty(duty);
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
