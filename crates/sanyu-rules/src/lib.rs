//! The rules engine: consumes signals from the INTAKE stream and decides each
//! exactly once: open a case, attach to the student's open case (raising its
//! level, never lowering it), or no action. The decision, the processed-message
//! record and the case events (outbox) commit in one transaction; the ack comes
//! after the commit.
//!
//! Several replicas share one durable consumer. Two of them deciding about one
//! student at once cannot create two open cases: the database holds a partial
//! unique index (one active case per student), the open case row is locked
//! `FOR UPDATE` on PostgreSQL, and SQLite writers are serialised by
//! `BEGIN IMMEDIATE`. The loser of a race retries and attaches.

use chrono::Utc;
use sanyu_domain::EscalationPolicy;
use sanyu_domain::{
    Decision, OpenCaseView, RiskLevel, case_reference, decide_report, decide_screening,
    student_partition,
};
use sanyu_escalation::{self as escalation, EscalationError};
use sanyu_events::subjects::{self, INTAKE_STREAM};
use sanyu_events::{Envelope, Payload, v1};
use sanyu_platform::consumer::{self, Delivery, Handler, Outcome};
use sanyu_platform::nats::{self, ConsumerSpec, Ordering};
use sanyu_platform::relay::{OutboxRelay, Waker};
use sanyu_platform::{Config, PlatformError, Shutdown};
use sanyu_store::cases::{self, NewCase, NewSignal};
use sanyu_store::entities::{school, student};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::sea_orm::{ConnectionTrait, EntityTrait};
use sanyu_store::{Db, StoreError, begin_write, processed};
use uuid::Uuid;

mod screening_batch;
pub use screening_batch::BatchDecided;

/// Name of the durable consumer and of its processed-message records.
pub const CONSUMER: &str = "rules";

pub fn spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: INTAKE_STREAM,
        durable: CONSUMER,
        filter_subject: subjects::INTAKE_SUBJECTS.to_owned(),
        lanes: 8,
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
    NoAction,
    /// Already decided before (redelivery or duplicate publish).
    Duplicate,
    /// A kind of signal this version of the rules does not decide yet.
    Ignored,
    /// A batch of screening results, each decided once by its signal id.
    Batch(BatchDecided),
}

pub struct RulesEngine {
    db: Db,
    waker: Waker,
    /// The ladders snapshotted onto cases as they open or rise.
    policy: EscalationPolicy,
    pause_before_ack: Option<std::time::Duration>,
}

/// Fault injection for the crash tests: hold every decided message this long
/// after the commit and before the ack, so a test can SIGKILL the process in
/// exactly that window. Never set in production.
pub const FAULT_PAUSE_BEFORE_ACK_MS: &str = "SANYU_FAULT_PAUSE_BEFORE_ACK_MS";

impl RulesEngine {
    pub fn new(db: Db, waker: Waker, policy: EscalationPolicy) -> Self {
        let pause_before_ack = std::env::var(FAULT_PAUSE_BEFORE_ACK_MS)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis);
        Self {
            db,
            waker,
            policy,
            pause_before_ack,
        }
    }

    /// Decide one encoded envelope.
    pub async fn decide(&self, payload: &[u8]) -> Result<Decided, RulesError> {
        let envelope =
            sanyu_events::decode(payload).map_err(|e| RulesError::Malformed(e.to_string()))?;
        let signal = match &envelope.payload {
            Some(Payload::ReportSubmitted(report)) => Signal::of_report(report)?,
            Some(Payload::ScreeningResult(result)) => Signal::of_screening(result)?,
            Some(Payload::ScreeningBatch(batch)) => {
                return self.decide_screening_batch(&envelope, batch).await;
            }
            // An identified student's hotline call is decided like a report at
            // the call's level; unidentified calls never reach INTAKE.
            Some(Payload::HotlineCall(call)) if !call.student_id.is_empty() => {
                Signal::of_hotline(call)?
            }
            _ => return Ok(Decided::Ignored),
        };
        let txn = begin_write(&self.db).await?;
        if !processed::record(&*txn, CONSUMER, &envelope.event_id).await? {
            txn.rollback().await?;
            return Ok(Decided::Duplicate);
        }
        let decided = decide_signal_in(&*txn, &self.policy, &envelope, &signal).await?;
        txn.commit().await?;
        if !matches!(decided, Decided::NoAction) {
            self.waker.wake();
        }
        Ok(decided)
    }
}

fn parse_uuid(field: &'static str, value: &str) -> Result<Uuid, RulesError> {
    Uuid::parse_str(value).map_err(|_| RulesError::Malformed(format!("{field} is not a uuid")))
}

/// What the rules need to know of a signal, whatever its source.
struct Signal {
    student_id: Uuid,
    /// The row the signal came from (report, screening result).
    source_id: Uuid,
    /// The level the signal is recorded at on the case.
    level: RiskLevel,
    kind: SignalKind,
}

enum SignalKind {
    Report,
    Hotline,
    Screening { suicide_alert: bool },
}

/// Flags of a screening result that are suicide alerts (the catalogue's
/// `suicide_item` and PHQ-A's `suicide_risk`).
pub const SUICIDE_FLAGS: [&str; 2] = ["suicide_item", "suicide_risk"];

impl Signal {
    fn of_report(report: &v1::ReportSubmitted) -> Result<Self, RulesError> {
        Ok(Self {
            student_id: parse_uuid("student_id", &report.student_id)?,
            source_id: parse_uuid("report_id", &report.report_id)?,
            level: sanyu_events::level_from_proto(report.suggested_level)
                .ok_or_else(|| RulesError::Malformed("suggested_level is unspecified".into()))?,
            kind: SignalKind::Report,
        })
    }

    fn of_hotline(call: &v1::HotlineCallLogged) -> Result<Self, RulesError> {
        Ok(Self {
            student_id: parse_uuid("student_id", &call.student_id)?,
            source_id: parse_uuid("record_id", &call.record_id)?,
            level: sanyu_events::level_from_proto(call.risk_level)
                .ok_or_else(|| RulesError::Malformed("risk_level is unspecified".into()))?,
            kind: SignalKind::Hotline,
        })
    }

    fn of_screening(result: &v1::ScreeningResultRecorded) -> Result<Self, RulesError> {
        let suicide_alert = result
            .flags
            .iter()
            .any(|f| SUICIDE_FLAGS.contains(&f.as_str()));
        let suggested = sanyu_events::level_from_proto(result.suggested_level);
        let level = match (suicide_alert, suggested) {
            (true, _) => RiskLevel::Critical,
            (false, Some(level)) => level,
            (false, None) => {
                return Err(RulesError::Malformed(
                    "suggested_level is unspecified and no suicide flag is set".into(),
                ));
            }
        };
        Ok(Self {
            student_id: parse_uuid("student_id", &result.student_id)?,
            source_id: parse_uuid("result_id", &result.result_id)?,
            level,
            kind: SignalKind::Screening { suicide_alert },
        })
    }

    fn decide(&self, open: Option<OpenCaseView>) -> Decision {
        match self.kind {
            SignalKind::Report | SignalKind::Hotline => decide_report(self.level, open),
            SignalKind::Screening { suicide_alert } => {
                decide_screening(self.level, suicide_alert, open)
            }
        }
    }
}

async fn decide_signal_in(
    txn: &impl ConnectionTrait,
    policy: &EscalationPolicy,
    envelope: &Envelope,
    facts: &Signal,
) -> Result<Decided, RulesError> {
    let student_id = facts.student_id;
    let level = facts.level;
    let student = student::Entity::find_by_id(student_id)
        .one(txn)
        .await?
        .ok_or(RulesError::UnknownStudent(student_id))?;
    let school = school::Entity::find_by_id(student.school_id)
        .one(txn)
        .await?
        .ok_or(StoreError::NotFound("school"))?;
    let open = cases::active_for_student(txn, student_id).await?;
    let view = open
        .as_ref()
        .map(|c| -> Result<OpenCaseView, RulesError> {
            Ok(OpenCaseView {
                level: c.level.parse().map_err(|_| StoreError::Corrupt {
                    table: "cases",
                    detail: format!("level `{}`", c.level),
                })?,
            })
        })
        .transpose()?;
    let now = Utc::now();
    let partition = student_partition(student_id);
    let traceparent = sanyu_platform::trace::current_traceparent();
    let emit = |event_id: String, subject_event: &str, payload: Payload| OutboxEvent {
        subject: subjects::case_event(subject_event, &school.code, partition),
        payload: sanyu_events::encode(&sanyu_events::envelope(
            event_id.clone(),
            now,
            school.code.clone(),
            partition,
            payload,
        )),
        event_id,
        traceparent: traceparent.clone(),
    };
    let signal = |case_id: Uuid, decision: &str, rule: &str| NewSignal {
        case_id,
        event_id: envelope.event_id.clone(),
        kind: envelope.kind.clone(),
        source_id: Some(facts.source_id),
        level,
        decision: decision.to_owned(),
        rule_id: rule.to_owned(),
        at: now,
    };
    match facts.decide(view) {
        Decision::NoAction { .. } => Ok(Decided::NoAction),
        Decision::OpenCase { level, rule } => {
            let case_id = Uuid::now_v7();
            let reference = case_reference(case_id);
            cases::open(
                txn,
                NewCase {
                    id: case_id,
                    reference: reference.clone(),
                    school_id: student.school_id,
                    class_id: student.class_id,
                    student_id,
                    level,
                    rule: rule.to_owned(),
                    at: now,
                },
            )
            .await?;
            cases::attach_signal(txn, signal(case_id, "opened", rule)).await?;
            outbox::enqueue(
                txn,
                emit(
                    format!("case.opened:{case_id}"),
                    "opened",
                    Payload::CaseOpened(v1::CaseOpened {
                        case_id: case_id.to_string(),
                        reference,
                        student_id: student_id.to_string(),
                        level: sanyu_events::level_to_proto(level) as i32,
                        signal_event_id: envelope.event_id.clone(),
                        rule_id: rule.to_owned(),
                    }),
                ),
            )
            .await?;
            let opened = cases::get(txn, case_id)
                .await?
                .ok_or(StoreError::NotFound("case"))?;
            escalation::start(
                txn,
                &opened,
                policy,
                escalation::reason::CASE_OPENED,
                now,
                traceparent.clone(),
            )
            .await?;
            tracing::info!(%case_id, level = level.as_str(), rule, "case opened");
            Ok(Decided::Opened { case_id, level })
        }
        Decision::Attach { raise_to, rule } => {
            let Some(case) = open else {
                return Err(RulesError::Malformed("attach without open case".into()));
            };
            let from = view.map_or(level, |v| v.level);
            match raise_to {
                Some(to) => {
                    cases::raise_level(txn, &case, to).await?;
                    cases::attach_signal(txn, signal(case.id, "raised", rule)).await?;
                    outbox::enqueue(
                        txn,
                        emit(
                            format!("case.escalated:{}:{}", case.id, envelope.event_id),
                            "escalated",
                            Payload::CaseEscalated(v1::CaseEscalated {
                                case_id: case.id.to_string(),
                                reference: case.reference.clone(),
                                student_id: student_id.to_string(),
                                previous_level: sanyu_events::level_to_proto(from) as i32,
                                level: sanyu_events::level_to_proto(to) as i32,
                                signal_event_id: envelope.event_id.clone(),
                                rule_id: rule.to_owned(),
                            }),
                        ),
                    )
                    .await?;
                    // The new level's ladder starts over: its first contacts are
                    // told and someone must acknowledge again.
                    let raised = cases::get(txn, case.id)
                        .await?
                        .ok_or(StoreError::NotFound("case"))?;
                    escalation::start(
                        txn,
                        &raised,
                        policy,
                        escalation::reason::LEVEL_RAISED,
                        now,
                        traceparent.clone(),
                    )
                    .await?;
                    tracing::info!(case_id = %case.id, from = from.as_str(), to = to.as_str(), rule, "case level raised");
                    Ok(Decided::Raised {
                        case_id: case.id,
                        from,
                        to,
                    })
                }
                None => {
                    cases::attach_signal(txn, signal(case.id, "attached", rule)).await?;
                    outbox::enqueue(
                        txn,
                        emit(
                            format!("case.signal_attached:{}:{}", case.id, envelope.event_id),
                            "signal_attached",
                            Payload::CaseSignalAttached(v1::CaseSignalAttached {
                                case_id: case.id.to_string(),
                                reference: case.reference.clone(),
                                signal_event_id: envelope.event_id.clone(),
                                level: sanyu_events::level_to_proto(level) as i32,
                            }),
                        ),
                    )
                    .await?;
                    Ok(Decided::Attached { case_id: case.id })
                }
            }
        }
    }
}

impl Handler for RulesEngine {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        match self.decide(&delivery.payload).await {
            Ok(decided) => {
                tracing::debug!(?decided, "signal decided");
                if let Some(pause) = self.pause_before_ack {
                    tracing::warn!(
                        pause_ms = pause.as_millis() as u64,
                        "fault injection: pausing before ack"
                    );
                    tokio::time::sleep(pause).await;
                }
                Outcome::Ack
            }
            Err(RulesError::Malformed(reason)) => Outcome::Reject(reason),
            Err(e @ RulesError::Corrupt(_)) => Outcome::Reject(e.to_string()),
            // The roster may not have reached this database yet: retry, and
            // dead-letter when retries run out.
            Err(e @ RulesError::UnknownStudent(_)) => Outcome::Retry(e.to_string()),
            Err(RulesError::Store(e)) if e.is_retryable() => Outcome::Retry(e.to_string()),
            Err(RulesError::Store(e)) => Outcome::Retry(format!("store: {e}")),
        }
    }
}

/// Run the rules engine until shutdown: its consumer and its outbox relay.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PlatformError> {
    let db = sanyu_store::db::connect(&config.db_config()).await?;
    let backbone = nats::connect(&config.nats, "sanyu-rules").await?;
    backbone.ensure_streams().await?;
    tracing::info!(nats = %backbone.server_version(), "rules engine starting");
    let waker = Waker::default();
    let relay = OutboxRelay::new(db.clone(), backbone.clone(), waker.clone());
    shutdown.tracker.spawn(relay.run(shutdown.token.clone()));
    let engine = RulesEngine::new(db.clone(), waker, config.escalation.clone());
    shutdown.tracker.spawn(consumer::run(
        backbone.clone(),
        spec(),
        engine,
        shutdown.token.clone(),
    ));
    shutdown.token.cancelled().await;
    if !shutdown.wait(std::time::Duration::from_secs(20)).await {
        tracing::warn!("rules engine: tasks did not stop in time");
    }
    let _ = backbone.client.drain().await;
    let _ = db.close().await;
    tracing::info!("rules engine stopped");
    Ok(())
}
