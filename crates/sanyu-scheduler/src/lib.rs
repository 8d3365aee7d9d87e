//! The scheduler owns Sanyu's durable timers (table `timers`): escalation
//! rungs and follow-up reminders. A timer fires in one write transaction that
//! takes it (`pending` → `fired`, a conditional update) and performs its effect
//! (outbox rows for the notifications, the next rung's timer), so it fires
//! once: after a crash before the commit it is still pending and fires after
//! the restart; a second replica's attempt to take it finds it fired.
//!
//! The scheduler also runs the ladder auditor ([`Scheduler::audit`]): it looks
//! for ladders that should have advanced but did not and raises an alarm.
//!
//! Time is injected: [`Scheduler::tick`] and [`Scheduler::audit`] take `now`,
//! so tests drive the ladder minute by minute without waiting.

pub mod zero_report;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sanyu_escalation::{self as escalation, ACTION_TIMER, Fired, LadderState, RUNG_TIMER, Timer};
use sanyu_platform::relay::{OutboxRelay, Waker};
use sanyu_platform::{Config, PlatformError, Shutdown, runner};
use sanyu_store::dead_letters::{self, NewDeadLetter};
use sanyu_store::entities::{case, timer};
use sanyu_store::{
    Conn, Db, DbErr, StoreError, begin_read_snapshot, begin_write, cases, deliveries, timers,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Escalation(#[from] escalation::EscalationError),
}

impl From<DbErr> for SchedulerError {
    fn from(e: DbErr) -> Self {
        Self::Store(e.into())
    }
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// Timers this worker fired (their effect committed).
    pub fired: usize,
    /// Timers that were due but whose ladder had stopped or restarted.
    pub stale: usize,
    /// Timers another worker took first.
    pub lost: usize,
    /// Timers whose effect failed (retried on the next tick).
    pub failed: usize,
    /// The batch was full: more timers may be due.
    pub more: bool,
}

/// Timers fired per tick at most.
const BATCH: u64 = 200;

/// What the auditor found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub checked: usize,
    /// Alarms raised in this run (an alarm is raised once per problem).
    pub alarms: Vec<String>,
}

/// Fault injection for the crash tests: hold each fired timer's transaction
/// open this long before the commit, so a test can SIGKILL the process in that
/// window. Never set in production.
pub const FAULT_PAUSE_BEFORE_COMMIT_MS: &str = "SANYU_FAULT_PAUSE_BEFORE_COMMIT_MS";

/// The injected clock of the end-to-end tests: the scheduler's `now` runs
/// this many seconds ahead of the real clock, so a test can let 30 minutes
/// pass by restarting the scheduler with a larger offset. Timers are due by
/// this clock; what they write is stamped with it. Never set in production.
pub const TEST_CLOCK_OFFSET_SECS: &str = "SANYU_TEST_CLOCK_OFFSET_SECS";

#[derive(Clone)]
pub struct Scheduler {
    pause_before_commit: Option<Duration>,
    /// The injected clock's lead over the real one ([`TEST_CLOCK_OFFSET_SECS`]).
    clock_offset: chrono::Duration,
    db: Db,
    waker: Waker,
    /// A rung more than this late counts as stalled.
    grace: chrono::Duration,
    alarms: opentelemetry::metrics::Counter<u64>,
    fired: opentelemetry::metrics::Counter<u64>,
    /// The calendar of key dates whose zero-report timers this worker materialises.
    zero_report: sanyu_domain::zero_report::Calendar,
    /// The time zone and key dates duty rosters are read in.
    duty: escalation::DutyCalendar,
    /// (period, school) pairs whose timers are already scheduled.
    materialised: Arc<Mutex<HashSet<(String, uuid::Uuid)>>>,
}

impl Scheduler {
    pub fn new(db: Db, waker: Waker, grace: Duration) -> Self {
        let meter = opentelemetry::global::meter("sanyu-scheduler");
        Self {
            pause_before_commit: std::env::var(FAULT_PAUSE_BEFORE_COMMIT_MS)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
            clock_offset: std::env::var(TEST_CLOCK_OFFSET_SECS)
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(chrono::Duration::zero(), chrono::Duration::seconds),
            db,
            waker,
            grace: chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::minutes(2)),
            alarms: meter
                .u64_counter("sanyu.escalation.alarms")
                .with_description("Ladders found stalled, exhausted or failing by the auditor")
                .build(),
            fired: meter
                .u64_counter("sanyu.scheduler.timers_fired")
                .with_description("Durable timers fired")
                .build(),
            zero_report: sanyu_domain::zero_report::Calendar::default(),
            duty: escalation::DutyCalendar::default(),
            materialised: Arc::default(),
        }
    }

    /// Read duty rosters (on-duty rung targets) in this time zone with these
    /// key dates.
    pub fn with_duty(mut self, duty: escalation::DutyCalendar) -> Self {
        self.duty = duty;
        self
    }

    /// The calendar of key dates: its reminder timers are scheduled on each tick.
    pub fn with_zero_reports(mut self, calendar: sanyu_domain::zero_report::Calendar) -> Self {
        self.zero_report = calendar;
        self
    }

    /// Schedule the timers of the zero-report calendar (idempotent by key).
    async fn materialise_zero_reports(&self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        if self.zero_report.periods.is_empty() {
            return Ok(());
        }
        let mut done = self
            .materialised
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        let scheduled =
            zero_report::materialise(&self.db, &self.zero_report, now, &mut done).await?;
        if scheduled > 0 {
            tracing::info!(scheduled, "zero-report timers scheduled");
        }
        if let Ok(mut d) = self.materialised.lock() {
            *d = done;
        }
        Ok(())
    }

    /// Fire every timer due at `now` (in batches).
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Tick, SchedulerError> {
        let mut tick = Tick::default();
        if let Err(e) = self.materialise_zero_reports(now).await {
            tracing::warn!(error = %e, "zero-report timers not scheduled; will retry");
        }
        // One batch per tick: a timer whose effect keeps failing is skipped
        // (and retried next tick) without holding up the others behind it; if
        // it never succeeds, the ladder auditor reports its rung as late.
        let due = timers::due(&self.db, now, BATCH).await?;
        tick.more = due.len() as u64 == BATCH;
        for t in due {
            match self.fire_one(&t, now).await {
                Ok(Some(true)) => tick.fired += 1,
                Ok(Some(false)) => tick.stale += 1,
                Ok(None) => tick.lost += 1,
                Err(e) => {
                    tick.failed += 1;
                    tracing::warn!(timer = %t.id, kind = %t.kind, error = %e, "timer failed; will retry");
                }
            }
        }
        if tick.fired > 0 {
            self.waker.wake();
        }
        Ok(tick)
    }

    /// Fire one timer: `Some(true)` when its effect ran, `Some(false)` when it
    /// was stale, `None` when another worker took it first.
    async fn fire_one(
        &self,
        t: &timer::Model,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, SchedulerError> {
        let txn = begin_write(&self.db).await?;
        if !timers::take(&*txn, t.id, now).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let effect = match Timer::parse(&t.kind, &t.payload) {
            Ok(timer) => self.fire_timer(&*txn, &timer, now).await?,
            Err(e) => {
                self.unknown_timer(&*txn, t, &e.to_string()).await?;
                false
            }
        };
        if let Some(pause) = self.pause_before_commit {
            tracing::warn!(
                pause_ms = pause.as_millis() as u64,
                "fault injection: pausing before commit"
            );
            tokio::time::sleep(pause).await;
        }
        txn.commit().await?;
        self.fired
            .add(1, &[opentelemetry::KeyValue::new("kind", t.kind.clone())]);
        Ok(Some(effect))
    }

    /// The effect of one timer, in `txn`: whether it told anybody (`false`
    /// for a stale timer).
    async fn fire_timer(
        &self,
        txn: &impl Conn,
        timer: &Timer,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        Ok(match timer {
            Timer::Rung(rung) => matches!(
                escalation::fire(txn, rung, &self.duty, now).await?,
                Fired::Notified { .. }
            ),
            Timer::FollowUp(f) => matches!(
                escalation::remind_follow_up(txn, f, now).await?,
                Fired::Notified { .. }
            ),
            Timer::Watch(w) => matches!(
                escalation::remind_watch(txn, w, now).await?,
                Fired::Notified { .. }
            ),
            Timer::ZeroReport(z) => zero_report::fire(txn, &self.zero_report, z, now)
                .await?
                .is_some(),
            Timer::AfterAck(a) => matches!(
                escalation::fire_after_ack(txn, a, now).await?,
                Fired::Notified { .. }
            ),
            Timer::Stale(st) => matches!(
                escalation::remind_stale(txn, st, now).await?,
                Fired::Notified { .. }
            ),
        })
    }

    async fn unknown_timer(
        &self,
        txn: &impl Conn,
        t: &timer::Model,
        reason: &str,
    ) -> Result<(), SchedulerError> {
        tracing::error!(timer = %t.id, kind = %t.kind, "timer could not be fired");
        // The school of a case's timer is the case's; a timer without a case
        // (or whose case is gone) is the deployment's to see.
        let school_id = match t.case_id {
            Some(case_id) => cases::get(txn, case_id).await?.map(|c| c.school_id),
            None => None,
        };
        dead_letters::record(
            txn,
            NewDeadLetter {
                source_key: format!("timer:{}", t.id),
                stream: "TIMERS".into(),
                consumer: "scheduler".into(),
                stream_seq: None,
                subject: None,
                event_id: Some(t.key.clone()),
                reason: format!("timer {}: {reason}", t.key),
                deliveries: None,
                school_id,
            },
        )
        .await?;
        Ok(())
    }

    /// Look for ladders that should have advanced but did not, and raise an
    /// alarm for each (once per problem): a running ladder with no next rung
    /// scheduled, a rung overdue by more than the grace time, a notification
    /// that failed, a ladder that ran out without an acknowledgement.
    ///
    /// A case and its timers are always read together, in one transaction
    /// that holds the case (an acknowledgement or a fired rung changes both in
    /// one transaction of its own): a first look in a read transaction, and
    /// where it finds a problem, a second look inside the write transaction
    /// that raises the alarm, with the case locked. Read apart, an
    /// acknowledgement committed between the two reads looked like a running
    /// ladder without a next rung.
    pub async fn audit(&self, now: DateTime<Utc>) -> Result<AuditReport, SchedulerError> {
        let mut report = AuditReport::default();
        let unacked =
            cases::ids_with_ladder_in(&self.db, &[LadderState::Running, LadderState::Exhausted])
                .await?;
        report.checked = unacked.len();
        for case_id in unacked {
            // First look: cheap, takes no writer lock.
            let txn = begin_read_snapshot(&self.db).await?;
            let found = match cases::get(&txn, case_id).await? {
                Some(c) => self.problems(&txn, &c, now).await?,
                None => Vec::new(),
            };
            txn.rollback().await?;
            if found.is_empty() {
                continue;
            }
            // Second look, in the transaction that writes the alarm: only
            // what still holds with the case locked is raised.
            let txn = begin_write(&self.db).await?;
            let Some(c) = cases::get_for_update(&*txn, case_id).await? else {
                txn.rollback().await?;
                continue;
            };
            let problems = self.problems(&*txn, &c, now).await?;
            let mut raised_here = Vec::new();
            for (key, what) in problems {
                if escalation::alarm(&*txn, &c, &key, &what, now).await? {
                    raised_here.push(key);
                }
            }
            txn.commit().await?;
            for key in raised_here {
                tracing::error!(case_id = %c.id, alarm = %key, "escalation alarm");
                self.alarms.add(1, &[]);
                report.alarms.push(key);
            }
        }
        self.audit_after_ack(now, &mut report).await?;
        if !report.alarms.is_empty() {
            self.waker.wake();
        }
        Ok(report)
    }

    /// An after-acknowledgement rung overdue is a stalled ladder too (its
    /// case's ladder is stopped, so the pass above does not see it): raised
    /// once per timer, checked again with the case locked.
    async fn audit_after_ack(
        &self,
        now: DateTime<Utc>,
        report: &mut AuditReport,
    ) -> Result<(), SchedulerError> {
        let late = timers::overdue(&self.db, now - self.grace, BATCH).await?;
        for t in late.into_iter().filter(|t| t.kind == ACTION_TIMER) {
            let Some(case_id) = t.case_id else { continue };
            report.checked += 1;
            let txn = begin_write(&self.db).await?;
            let Some(c) = cases::get_for_update(&*txn, case_id).await? else {
                txn.rollback().await?;
                continue;
            };
            let still = timers::pending_for_case(&*txn, case_id)
                .await?
                .into_iter()
                .any(|p| p.id == t.id);
            let key = format!("late:{}", t.key);
            let what = format!(
                "a rung after the acknowledgement (nobody acted) due at {} has not fired (scheduler stopped or behind)",
                t.due_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            let raised = still && escalation::alarm(&*txn, &c, &key, &what, now).await?;
            txn.commit().await?;
            if raised {
                tracing::error!(case_id = %c.id, alarm = %key, "escalation alarm");
                self.alarms.add(1, &[]);
                report.alarms.push(key);
            }
        }
        Ok(())
    }

    /// What is wrong with the ladder of case `c` at `now`, read through `conn`
    /// (the transaction `c` was read in): (alarm key, what).
    async fn problems(
        &self,
        conn: &impl Conn,
        c: &case::Model,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, SchedulerError> {
        let mut problems: Vec<(String, String)> = Vec::new();
        if c.ladder_state != LadderState::Running && c.ladder_state != LadderState::Exhausted {
            return Ok(problems);
        }
        let pending = timers::pending_for_case(conn, c.id).await?;
        if c.ladder_state == LadderState::Exhausted {
            problems.push((
                format!("exhausted:e{}", c.ladder_epoch),
                "every rung of the escalation ladder fired and nobody acknowledged".into(),
            ));
        } else if !pending.iter().any(|t| t.kind == RUNG_TIMER) {
            problems.push((
                format!("no_rung:e{}", c.ladder_epoch),
                "the escalation ladder is running but no next rung is scheduled".into(),
            ));
        }
        for t in pending.iter().filter(|t| t.due_at + self.grace < now) {
            problems.push((
                format!("late:{}", t.key),
                format!(
                    "an escalation rung due at {} has not fired (scheduler stopped or behind)",
                    t.due_at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            ));
        }
        // A failed channel whose person was reached on another channel is
        // recorded on the case but raises no alarm.
        let failed = deliveries::unreached_failures(conn, c.id, now - self.grace).await?;
        for d in failed {
            problems.push((
                format!("failed:{}", d.notification_key),
                format!(
                    "a notification to staff {} could not be delivered",
                    d.recipient_staff_id
                ),
            ));
        }
        Ok(problems)
    }

    /// The scheduler's clock: the real one, ahead by the tests' injected
    /// offset when one is set.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    /// Tick until cancelled: every `poll` and whenever the next timer is due;
    /// audit every `audit_every`.
    pub async fn run(self, poll: Duration, audit_every: Duration, cancel: CancellationToken) {
        if !self.clock_offset.is_zero() {
            tracing::warn!(
                offset_secs = self.clock_offset.num_seconds(),
                "test clock: the scheduler runs ahead of the real clock"
            );
        }
        let mut last_audit = tokio::time::Instant::now();
        loop {
            let now = self.now();
            match self.tick(now).await {
                Ok(t) if t.fired + t.stale + t.lost > 0 => {
                    tracing::debug!(
                        fired = t.fired,
                        stale = t.stale,
                        lost = t.lost,
                        "scheduler tick"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler tick failed; will retry"),
            }
            if last_audit.elapsed() >= audit_every {
                last_audit = tokio::time::Instant::now();
                if let Err(e) = self.audit(self.now()).await {
                    tracing::warn!(error = %e, "ladder audit failed; will retry");
                }
            }
            let wait = match timers::next_due(&self.db).await {
                Ok(Some(due)) => (due - self.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(poll),
                _ => poll,
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(wait.max(Duration::from_millis(20))) => {}
            }
        }
    }
}

/// Run the scheduler until shutdown: its timer loop and its outbox relay.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PlatformError> {
    let readiness = runner::Readiness::new();
    runner::serve_health(&config, &readiness, &shutdown).await?;
    let Some((db, backbone)) =
        runner::connect(&config, "sanyu-scheduler", &readiness, &shutdown.token).await?
    else {
        tracing::info!("scheduler stopped before it could connect");
        return Ok(());
    };
    tracing::info!(nats = %backbone.server_version(), "scheduler starting");
    let waker = Waker::default();
    let relay = OutboxRelay::new(db.clone(), backbone.clone(), waker.clone());
    shutdown.tracker.spawn(relay.run(shutdown.token.clone()));
    let s = &config.scheduler;
    let scheduler = Scheduler::new(db.clone(), waker, Duration::from_secs(s.audit_grace_secs))
        .with_zero_reports(config.zero_report.clone())
        .with_duty(
            escalation::DutyCalendar::new(&config.notify.time_zone, config.zero_report.clone())
                .map_err(PlatformError::Config)?,
        );
    shutdown.tracker.spawn(scheduler.run(
        Duration::from_millis(s.poll_interval_ms.max(10)),
        Duration::from_secs(s.audit_interval_secs.max(1)),
        shutdown.token.clone(),
    ));
    readiness.set_consumers_running();
    shutdown.token.cancelled().await;
    if !shutdown.wait(Duration::from_secs(20)).await {
        tracing::warn!("scheduler: tasks did not stop in time");
    }
    let _ = backbone.client.drain().await;
    let _ = db.close().await;
    tracing::info!("scheduler stopped");
    Ok(())
}
