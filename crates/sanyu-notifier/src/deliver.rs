//! Deliver: one notification request → one delivery per channel (SMS, email),
//! each at least once per key, and more than once only as described under
//! "Crash window".
//!
//! * **Channels.** The level decides the channels (`notify.channels`; by
//!   default critical and high: SMS and email, elevated: email). Each channel
//!   has its own delivery row, `<notification_key>:sms` / `:email`, claimed
//!   with a lease before its send, so a redelivered request, a restarted
//!   notifier or a second replica never sends twice, and an email already sent
//!   is not sent again when the SMS of the same request is retried. The
//!   channels of a request are sent concurrently.
//! * **Crash window.** Claim (commit) → mark the send in progress
//!   (`sending_since`, commit) → send → one commit that records the accepted
//!   attempt, finishes the row and enqueues the result event. A crash before
//!   the send leaves a claimed row whose lease expires, and the redelivered
//!   request sends it then: nothing is lost. A crash between the provider's
//!   acceptance and that commit is the only way to a duplicate: the notifier
//!   that takes the expired claim over finds the send marked, waits
//!   `notify.takeover_grace_ms` (a slow holder may still record it), then
//!   sends again with the same idempotency identity (the SMS provider's
//!   idempotency key, the email's `Message-ID`) and records the takeover
//!   (`deliveries.takeovers`, an attempt `takeover`): a possible duplicate is
//!   always on record.
//! * **The database away after the send.** The provider's acceptance is kept
//!   in hand and its recording retried with backoff until the database
//!   answers, for as long as the claim lasts; nothing is sent again while an
//!   outcome is held. Only when the lease runs out first does the claim pass
//!   to a takeover (above).
//! * **Retries inside the handler.** Transient failures are retried on the
//!   same provider with exponential backoff and jitter (`backon`), at most
//!   `notify.attempts_per_provider` times, then the next provider (primary →
//!   secondary SMS) is tried. This happens in the handler rather than through
//!   JetStream redeliveries because failover must take seconds, not the
//!   redelivery backoff's minutes: a critical SMS that the primary cannot
//!   send goes out through the secondary at once. A permanent failure (invalid
//!   number, rejected template, bad credentials) is not retried on that
//!   provider. All of it happens within half the lease, so a send never runs
//!   on an expired claim; out of time, the claim is released and the request
//!   redelivered.
//! * **Failover across channels.** When every channel of the level failed for
//!   a person, the other channels are tried at once (SMS fails → email; an
//!   elevated case to someone without an email → SMS).
//! * **After the failover.** A channel whose providers all failed
//!   *permanently* is recorded `failed`. One that failed *transiently* (a
//!   provider or SMTP outage) is released and the request redelivered with
//!   JetStream's backoff, so it goes out when the provider is back; on the
//!   request's last delivery it is recorded `failed`. A person no channel
//!   reached has only `failed` rows: the ladder auditor raises an alarm to the
//!   crisis team, and the ladder moves on by its own timers.
//! * **Critical is never held back.** Non-critical messages wait for the end
//!   of quiet hours and respect per-provider rate limits (the message is
//!   redelivered when they allow it); a critical message skips both. The
//!   per-recipient limit spreads only `elevated` and `watch` notices: a
//!   warning about a `high` or `critical` case is never held back by it
//!   ([`sanyu_domain::policy::recipient_limit_applies`]). On its last
//!   delivery a message skips every limit: a limit never turns into a loss.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use chrono::Utc;
use futures::future::join_all;
use lettre::Message;
use lettre::message::Mailbox;
use sanyu_domain::RiskLevel;
use sanyu_events::subjects::{self, NOTIFY_STREAM};
use sanyu_events::{NotificationReason, Payload, v1};
use sanyu_platform::Config;
use sanyu_platform::config::NotifyChannel;
use sanyu_platform::consumer::{Delivery, Handler, Outcome};
use sanyu_platform::nats::{ConsumerSpec, Ordering};
use sanyu_platform::relay::Waker;
use sanyu_sms::{PhoneNumber, SmsMessage, SmsProvider};
use sanyu_store::deliveries::{self, Claim, DeliveryRequest, NewAttempt};
use sanyu_store::entities::{school, staff};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sanyu_store::{Db, StoreError, begin_write};
use uuid::Uuid;

use crate::mailer::{Mailer, SendError};
use crate::message::{self, Facts};
use crate::policy::{Clock, Limits, Policy, PolicyError, SharedClock, SystemClock};

pub const CONSUMER: &str = "notifier-deliver";

/// Fault injection for tests: pause this long after claiming a delivery and
/// before sending it (the window a SIGKILL test aims at).
pub const FAULT_PAUSE_AFTER_CLAIM_MS: &str = "SANYU_FAULT_PAUSE_AFTER_CLAIM_MS";

/// Fault injection for tests: pause this long after the provider accepted a
/// send and before recording it (the window a database outage or a SIGKILL
/// test aims at).
pub const FAULT_PAUSE_AFTER_SEND_MS: &str = "SANYU_FAULT_PAUSE_AFTER_SEND_MS";

/// The first wait before recording an accepted send again, doubled up to
/// [`RECORD_RETRY_MAX`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(50);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(2);

/// A provider-rate-limit wait up to this long is waited out in place; a
/// longer one defers the message.
const INLINE_WAIT: Duration = Duration::from_secs(1);

/// How long after another notifier's lease ends a held delivery is tried again.
const BUSY_MARGIN: Duration = Duration::from_millis(250);

/// The wait until a lease ending at `until` has ended, plus a margin.
fn until_lease_ends(until: chrono::DateTime<Utc>) -> Duration {
    (until - Utc::now()).to_std().unwrap_or_default() + BUSY_MARGIN
}

pub fn spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: NOTIFY_STREAM,
        durable: CONSUMER,
        filter_subject: "sanyu.notify.requested.>".to_owned(),
        lanes: 8,
        max_batch: 1,
        ordering: Ordering::Unordered,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("invalid sender address: {0}")]
    From(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("sms.{which}: {error}")]
    Sms {
        which: &'static str,
        error: sanyu_sms::ConfigError,
    },
}

pub struct Deliverer {
    db: Db,
    waker: Waker,
    mailer: Mailer,
    from: Mailbox,
    base_url: String,
    worker: String,
    policy: Policy,
    sms: Vec<Arc<dyn SmsProvider>>,
    limits: Limits,
    clock: SharedClock,
    pause_after_claim: Option<Duration>,
    pause_after_send: Option<Duration>,
    takeover_grace: Duration,
    max_deliver: i64,
    /// Opens the sealed code of a console sign-in notice (none without a data key).
    sealer: Option<sanyu_store::crypto::Sealer>,
}

/// How one channel of a request ended (for now).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChannelResult {
    /// The row is final: `sent`, `delivered` or `failed`.
    Done(String),
    /// Not now: quiet hours, a rate limit, or another notifier holds the
    /// row until its lease ends. Redeliver after this long.
    Deferred(Duration, String),
    /// Try again later (out of time).
    Retry(String),
    /// Every provider failed, at least one transiently: the row is released
    /// and the request will be redelivered (JetStream backoff) until its last
    /// delivery, when it is recorded as failed. Counts as failed for failover.
    Failing(String),
}

impl ChannelResult {
    fn reached(&self) -> bool {
        matches!(self, Self::Done(s) if s != deliveries::FAILED)
    }

    fn failed(&self) -> bool {
        matches!(self, Self::Done(s) if s == deliveries::FAILED) || matches!(self, Self::Failing(_))
    }
}

/// The outcome of sending on one channel (all providers, all attempts).
enum Sent {
    Accepted {
        provider: &'static str,
        message_id: Option<String>,
        latency_ms: i64,
    },
    /// Every provider failed; `transient` when one of them may still work later.
    Failed {
        error: String,
        transient: bool,
    },
    OutOfTime(String),
    Deferred(Duration, String),
}

/// A send the provider accepted, to be recorded.
struct Accepted<'a> {
    key: &'a str,
    channel: NotifyChannel,
    provider: &'static str,
    message_id: Option<String>,
    latency_ms: i64,
    attempt: i32,
    took: Duration,
}

/// One thing to send and where.
enum Target<'a> {
    Sms(&'a dyn SmsProvider, &'a SmsMessage),
    Email(&'a Mailer, &'a Message),
}

impl Target<'_> {
    fn provider(&self) -> &'static str {
        match self {
            Target::Sms(p, _) => p.name(),
            Target::Email(m, _) => m.provider_name(),
        }
    }

    /// One attempt: the provider's message id, or (transient?, reason).
    async fn send(&self) -> Result<Option<String>, (bool, String)> {
        match self {
            Target::Sms(p, m) => p
                .send(m)
                .await
                .map(|a| Some(a.provider_message_id))
                .map_err(|e| (e.is_transient(), e.to_string())),
            Target::Email(mailer, message) => mailer
                .send((*message).clone())
                .await
                .map(|()| None)
                .map_err(|e| match e {
                    SendError::Transient(r) => (true, r),
                    SendError::Permanent(r) => (false, r),
                }),
        }
    }
}

/// What one request is about, loaded once.
struct Ctx<'a> {
    envelope: &'a sanyu_events::Envelope,
    req: &'a v1::NotificationRequested,
    reason: NotificationReason,
    case_id: Uuid,
    staff_id: Uuid,
    level: RiskLevel,
    recipient: Option<staff::Model>,
    facts: Option<Facts>,
    /// The last delivery JetStream will make: limits and quiet hours no longer apply.
    last_chance: bool,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Deliverer {
    /// A deliverer for `config`: SMS providers from `[sms]`, policy from `[notify]`.
    pub fn new(
        db: Db,
        waker: Waker,
        mailer: Mailer,
        config: &Config,
    ) -> Result<Self, DeliverError> {
        let mut sms: Vec<Arc<dyn SmsProvider>> = Vec::new();
        for (which, provider) in [
            ("primary", &config.sms.primary),
            ("secondary", &config.sms.secondary),
        ] {
            if let Some(p) = provider {
                let built = sanyu_sms::build_provider(p)
                    .map_err(|error| DeliverError::Sms { which, error })?;
                sms.push(Arc::from(built));
            }
        }
        let policy = Policy::from_config(&config.notify)?;
        let clock = SharedClock(Arc::new(SystemClock));
        let mut names: Vec<&'static str> = sms.iter().map(|p| p.name()).collect();
        names.push(mailer.provider_name());
        let limits = Limits::new(&policy, clock.clone(), &names);
        Ok(Self {
            db,
            waker,
            mailer,
            from: config
                .smtp
                .from
                .parse()
                .map_err(|e: lettre::address::AddressError| DeliverError::From(e.to_string()))?,
            base_url: config.http.public_base_url.trim_end_matches('/').to_owned(),
            worker: format!("notifier-{}", Uuid::now_v7()),
            policy,
            sms,
            limits,
            clock,
            pause_after_claim: None,
            pause_after_send: None,
            takeover_grace: Duration::from_millis(config.notify.takeover_grace_ms),
            max_deliver: config.nats.max_deliver,
            sealer: config.sealer().ok(),
        })
    }

    /// Read the time from `clock` (quiet hours, rate limits).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = SharedClock(clock);
        let mut names: Vec<&'static str> = self.sms.iter().map(|p| p.name()).collect();
        names.push(self.mailer.provider_name());
        self.limits = Limits::new(&self.policy, self.clock.clone(), &names);
        self
    }

    /// Pause after each claim, before the send (fault injection).
    pub fn with_pause_after_claim(mut self, pause: Option<Duration>) -> Self {
        self.pause_after_claim = pause;
        self
    }

    /// Pause after each accepted send, before recording it (fault injection).
    pub fn with_pause_after_send(mut self, pause: Option<Duration>) -> Self {
        self.pause_after_send = pause;
        self
    }

    /// Whether an SMS provider is configured.
    pub fn sms_enabled(&self) -> bool {
        !self.sms.is_empty()
    }

    fn enabled(&self, channel: NotifyChannel) -> bool {
        match channel {
            NotifyChannel::Sms => self.sms_enabled(),
            NotifyChannel::Email => true,
        }
    }

    /// The step function: deliver one request on every channel it needs.
    pub async fn deliver(
        &self,
        envelope: &sanyu_events::Envelope,
        req: &v1::NotificationRequested,
        delivered: i64,
    ) -> Result<Outcome, StoreError> {
        // A notice about no case (a missing zero report) has an empty case
        // id; the delivery log records nil.
        let case_id = if req.case_id.is_empty() {
            Ok(Uuid::nil())
        } else {
            Uuid::parse_str(&req.case_id)
        };
        let (Ok(case_id), Ok(staff_id)) = (case_id, Uuid::parse_str(&req.recipient_staff_id))
        else {
            return Ok(Outcome::Reject("case or recipient id is not a uuid".into()));
        };
        if req.notification_key.is_empty() {
            return Ok(Outcome::Reject("notification key is empty".into()));
        }
        // A reason this build does not know is never sent as a generic
        // notice: the request becomes a dead letter a person reviews.
        let Some(reason) = sanyu_events::reason_of(req) else {
            return Ok(Outcome::Reject(format!(
                "notification reason unknown (reason_code {}, reason {:?})",
                req.reason_code,
                req.reason.chars().take(64).collect::<String>()
            )));
        };
        let level = sanyu_events::level_from_proto(req.level).unwrap_or(RiskLevel::Critical);
        let recipient = staff::Entity::find_by_id(staff_id).one(&self.db).await?;
        let facts = match &recipient {
            Some(person) => {
                let school = school::Entity::find_by_id(person.school_id)
                    .one(&self.db)
                    .await?;
                let at = envelope
                    .occurred_at
                    .as_ref()
                    .and_then(sanyu_events::from_timestamp)
                    .unwrap_or_else(Utc::now);
                school.map(|s| {
                    Facts::new(
                        &s.name,
                        &req.case_reference,
                        level,
                        &self.base_url,
                        &req.case_id,
                        at,
                        self.policy.tz,
                    )
                })
            }
            None => None,
        };
        let ctx = Ctx {
            envelope,
            req,
            reason,
            case_id,
            staff_id,
            level,
            recipient,
            facts,
            last_chance: delivered >= self.max_deliver,
        };
        let planned: Vec<NotifyChannel> = self
            .policy
            .channels(level)
            .iter()
            .copied()
            .filter(|c| self.enabled(*c))
            .collect();
        // Case-less notices go by email only (their text names a period or a
        // call reference, which SMS templates approved for cases do not carry).
        let planned = if planned.is_empty() || req.case_id.is_empty() {
            vec![NotifyChannel::Email]
        } else {
            planned
        };
        let mut results = Vec::new();
        for r in join_all(planned.iter().map(|c| self.run_channel(&ctx, *c))).await {
            results.push(r?);
        }
        // Every planned channel failed: try the others, one after another.
        if results.iter().all(ChannelResult::failed) {
            for channel in [NotifyChannel::Sms, NotifyChannel::Email] {
                if planned.contains(&channel) || !self.enabled(channel) {
                    continue;
                }
                tracing::warn!(key = %req.notification_key, channel = channel.as_str(), "every planned channel failed; falling back");
                let r = self.run_channel(&ctx, channel).await?;
                let reached = r.reached();
                results.push(r);
                if reached {
                    break;
                }
            }
        }
        let mut defer: Option<(Duration, String)> = None;
        for r in &results {
            match r {
                ChannelResult::Retry(reason) | ChannelResult::Failing(reason) => {
                    return Ok(Outcome::Retry(reason.clone()));
                }
                ChannelResult::Deferred(d, why) => {
                    if defer.as_ref().is_none_or(|(cur, _)| d < cur) {
                        defer = Some((*d, why.clone()));
                    }
                }
                ChannelResult::Done(_) => {}
            }
        }
        if let Some((delay, why)) = defer {
            return Ok(Outcome::Defer(delay, why));
        }
        if !results.iter().any(ChannelResult::reached) {
            tracing::error!(key = %req.notification_key, "no channel reached the recipient");
        }
        Ok(Outcome::Ack)
    }

    /// Why a non-critical message on `channel` must wait, and how long.
    fn gate(&self, ctx: &Ctx<'_>, channel: NotifyChannel) -> Option<(Duration, String)> {
        if ctx.level == RiskLevel::Critical || ctx.last_chance {
            return None;
        }
        let now = self.clock.now();
        if let Some(until) = self.policy.quiet_until(ctx.level, channel, now) {
            let wait = (until - now).to_std().unwrap_or(Duration::from_secs(1));
            return Some((wait, format!("quiet hours until {}", until.to_rfc3339())));
        }
        if sanyu_domain::policy::recipient_limit_applies(ctx.level)
            && let Err(wait) = self.limits.recipient(ctx.staff_id, channel)
        {
            return Some((
                wait.max(Duration::from_secs(1)),
                "recipient rate limit".to_owned(),
            ));
        }
        None
    }

    async fn run_channel(
        &self,
        ctx: &Ctx<'_>,
        channel: NotifyChannel,
    ) -> Result<ChannelResult, StoreError> {
        let key = deliveries::channel_key(&ctx.req.notification_key, channel.as_str());
        let mut waited_out = false;
        let claim = loop {
            let txn = begin_write(&self.db).await?;
            let claim = deliveries::claim(
                &*txn,
                &DeliveryRequest {
                    key: &key,
                    case_id: ctx.case_id,
                    recipient_staff_id: ctx.staff_id,
                    channel: channel.as_str(),
                    worker: &self.worker,
                    lease: self.policy.lease,
                },
            )
            .await?;
            txn.commit().await?;
            match claim {
                // The last delivery of the request: nothing will come back
                // for it, so wait for the holder's lease here (once) and claim
                // again; a holder that died is then taken over.
                Claim::Busy { until } if ctx.last_chance && !waited_out => {
                    waited_out = true;
                    let lease = self.policy.lease.to_std().unwrap_or(INLINE_WAIT);
                    tokio::time::sleep(until_lease_ends(until).min(lease + BUSY_MARGIN)).await;
                }
                claim => break claim,
            }
        };
        let claimed_at = Instant::now();
        let attempt = match claim {
            Claim::Done { status } => return Ok(ChannelResult::Done(status)),
            // Another notifier holds the row: alive, it finishes the send;
            // dead, its lease ends at `until` and a later delivery takes over.
            // Come back when the lease ends, not sooner: every redelivery
            // before then is spent for nothing, and enough of them (crashes in
            // a row) would exhaust the request's deliveries unsent.
            Claim::Busy { until } => {
                return Ok(ChannelResult::Deferred(
                    until_lease_ends(until),
                    format!("another notifier holds {}", channel.as_str()),
                ));
            }
            Claim::Claimed {
                attempt,
                interrupted,
            } => {
                if let Some(since) = interrupted
                    && let Some(status) = self.take_over(ctx, &key, channel, since).await?
                {
                    return Ok(ChannelResult::Done(status));
                }
                attempt
            }
        };
        if let Some(pause) = self.pause_after_claim {
            tracing::warn!(key = %key, pause_ms = millis(pause), "fault injection: pausing after the claim");
            tokio::time::sleep(pause).await;
        }
        if let Some((wait, why)) = self.gate(ctx, channel) {
            self.release(&key, format!("deferred: {why}")).await?;
            tracing::info!(key = %key, wait_ms = millis(wait), reason = %why, "delivery deferred");
            return Ok(ChannelResult::Deferred(wait, why));
        }
        // Sending stops at half the lease: the claim is still ours when it ends.
        let lease = self
            .policy
            .lease
            .to_std()
            .unwrap_or(Duration::from_secs(60));
        let deadline = claimed_at + lease / 2;
        // The send in progress, on record before the provider sees it.
        if !self.mark_sending(&key).await? {
            return Ok(ChannelResult::Retry(format!(
                "the claim on {} was lost before the send",
                channel.as_str()
            )));
        }
        let sent = match channel {
            NotifyChannel::Sms => self.send_sms(ctx, &key, deadline).await?,
            NotifyChannel::Email => self.send_email(ctx, &key, deadline).await?,
        };
        let started = claimed_at.elapsed();
        match sent {
            Sent::Accepted {
                provider,
                message_id,
                latency_ms,
            } => {
                if let Some(pause) = self.pause_after_send {
                    tracing::warn!(key = %key, pause_ms = millis(pause), "fault injection: pausing after the send");
                    tokio::time::sleep(pause).await;
                }
                // The one write after the provider's acceptance: retried
                // until the database takes it, while the claim lasts.
                let accepted = Accepted {
                    key: &key,
                    channel,
                    provider,
                    message_id,
                    latency_ms,
                    attempt,
                    took: started,
                };
                self.record_sent(ctx, &accepted, claimed_at + lease).await?;
                self.waker.wake();
                tracing::info!(key = %key, provider, latency_ms, "notification sent");
                Ok(ChannelResult::Done(deliveries::SENT.to_owned()))
            }
            Sent::Failed {
                error,
                transient: true,
            } if !ctx.last_chance => {
                self.release(&key, error.clone()).await?;
                tracing::warn!(key = %key, channel = channel.as_str(), error = %error, "every provider failed for now; the request will be redelivered");
                Ok(ChannelResult::Failing(error))
            }
            Sent::Failed { error, .. } => {
                let txn = begin_write(&self.db).await?;
                deliveries::finish(&*txn, &key, deliveries::FAILED, Some(error.clone())).await?;
                self.enqueue_result(
                    &*txn,
                    ctx,
                    channel,
                    &key,
                    attempt,
                    Some(error.clone()),
                    started,
                )
                .await?;
                txn.commit().await?;
                self.waker.wake();
                tracing::error!(key = %key, channel = channel.as_str(), error = %error, "notification could not be delivered on this channel");
                Ok(ChannelResult::Done(deliveries::FAILED.to_owned()))
            }
            Sent::OutOfTime(error) => {
                self.release(&key, error.clone()).await?;
                tracing::warn!(key = %key, error = %error, "send out of time; released for a retry");
                Ok(ChannelResult::Retry(error))
            }
            Sent::Deferred(wait, why) => {
                self.release(&key, format!("deferred: {why}")).await?;
                Ok(ChannelResult::Deferred(wait, why))
            }
        }
    }

    /// Record an accepted send: the attempt, the row `sent`, the result
    /// event, in one transaction. The outcome stays in hand and the write is
    /// retried with backoff while the database is away, until `lease_end`
    /// (after it the claim may pass to a takeover). Never sends.
    async fn record_sent(
        &self,
        ctx: &Ctx<'_>,
        a: &Accepted<'_>,
        lease_end: Instant,
    ) -> Result<(), StoreError> {
        let mut wait = RECORD_RETRY_FIRST;
        let mut failures = 0u32;
        loop {
            let left = lease_end.saturating_duration_since(Instant::now());
            let error = match tokio::time::timeout(left, self.record_sent_once(ctx, a)).await {
                Ok(Ok(())) => {
                    if failures > 0 {
                        tracing::info!(key = %a.key, failures, "accepted send recorded once the database answered");
                    }
                    return Ok(());
                }
                Ok(Err(e)) => e,
                Err(_) => StoreError::Db(sanyu_store::sea_orm::DbErr::Custom(
                    "recording an accepted send: the lease ran out".into(),
                )),
            };
            failures += 1;
            if Instant::now() + wait >= lease_end {
                tracing::error!(key = %a.key, failures, error = %error, "accepted send not recorded within the lease; a takeover will send it again with the same idempotency identity");
                return Err(error);
            }
            tracing::warn!(key = %a.key, failures, retry_ms = millis(wait), error = %error, "accepted send not recorded yet; holding the outcome and retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RECORD_RETRY_MAX);
        }
    }

    async fn record_sent_once(&self, ctx: &Ctx<'_>, a: &Accepted<'_>) -> Result<(), StoreError> {
        let txn = begin_write(&self.db).await?;
        deliveries::record_attempt(
            &*txn,
            NewAttempt {
                delivery_key: a.key,
                case_id: ctx.case_id,
                channel: a.channel.as_str(),
                provider: a.provider,
                status: deliveries::ACCEPTED,
                latency_ms: a.latency_ms,
                error: None,
                provider_message_id: a.message_id.clone(),
                at: Utc::now(),
            },
        )
        .await?;
        deliveries::finish(&*txn, a.key, deliveries::SENT, None).await?;
        self.enqueue_result(&*txn, ctx, a.channel, a.key, a.attempt, None, a.took)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Mark the send in progress (committed before the provider is called).
    async fn mark_sending(&self, key: &str) -> Result<bool, StoreError> {
        let txn = begin_write(&self.db).await?;
        let marked = deliveries::mark_sending(&*txn, key, &self.worker, Utc::now()).await?;
        txn.commit().await?;
        Ok(marked)
    }

    /// This worker took over a claim whose holder stopped during a send
    /// started at `since`. Wait the grace (a slow holder may still record
    /// its outcome): `Some(status)` when it did. Otherwise the takeover is
    /// recorded (a possible duplicate) and the caller sends again with the
    /// same idempotency identity.
    async fn take_over(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        channel: NotifyChannel,
        since: chrono::DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        tokio::time::sleep(self.takeover_grace).await;
        let row = sanyu_store::entities::delivery::Entity::find()
            .filter(sanyu_store::entities::delivery::Column::NotificationKey.eq(key))
            .one(&self.db)
            .await?;
        if let Some(row) = row
            && row.status != deliveries::CLAIMED
            && row.status != deliveries::PENDING
        {
            return Ok(Some(row.status));
        }
        let txn = begin_write(&self.db).await?;
        deliveries::record_attempt(
            &*txn,
            NewAttempt {
                delivery_key: key,
                case_id: ctx.case_id,
                channel: channel.as_str(),
                provider: "none",
                status: deliveries::TAKEOVER,
                latency_ms: 0,
                error: Some(format!(
                    "a send started at {} has no recorded outcome (its notifier stopped); sending again with the same idempotency identity",
                    since.to_rfc3339()
                )),
                provider_message_id: None,
                at: Utc::now(),
            },
        )
        .await?;
        txn.commit().await?;
        tracing::warn!(key = %key, channel = channel.as_str(), "took over a send with no recorded outcome; sending again with the same idempotency identity");
        Ok(None)
    }

    async fn release(&self, key: &str, why: String) -> Result<(), StoreError> {
        let txn = begin_write(&self.db).await?;
        deliveries::release(&*txn, key, why).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A send that could not even start (no address, nothing to render):
    /// recorded as a permanent failure of provider `none`.
    async fn impossible(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        channel: NotifyChannel,
        why: String,
    ) -> Result<Sent, StoreError> {
        self.record_failure(ctx, key, channel, "none", false, &why, 0)
            .await?;
        Ok(Sent::Failed {
            error: why,
            transient: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_failure(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        channel: NotifyChannel,
        provider: &str,
        transient: bool,
        error: &str,
        latency_ms: i64,
    ) -> Result<(), StoreError> {
        let txn = begin_write(&self.db).await?;
        deliveries::record_attempt(
            &*txn,
            NewAttempt {
                delivery_key: key,
                case_id: ctx.case_id,
                channel: channel.as_str(),
                provider,
                status: if transient {
                    deliveries::TRANSIENT_ERROR
                } else {
                    deliveries::PERMANENT_ERROR
                },
                latency_ms,
                error: Some(error.to_owned()),
                provider_message_id: None,
                at: Utc::now(),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn send_sms(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        deadline: Instant,
    ) -> Result<Sent, StoreError> {
        let channel = NotifyChannel::Sms;
        let Some(person) = &ctx.recipient else {
            return self
                .impossible(ctx, key, channel, "recipient not found".into())
                .await;
        };
        let phone = match person.phone.as_deref().map(PhoneNumber::parse) {
            Some(Ok(phone)) => phone,
            Some(Err(_)) => {
                return self
                    .impossible(
                        ctx,
                        key,
                        channel,
                        "recipient has no valid mobile number".into(),
                    )
                    .await;
            }
            None => {
                return self
                    .impossible(ctx, key, channel, "recipient has no mobile number".into())
                    .await;
            }
        };
        let Some(facts) = &ctx.facts else {
            return self
                .impossible(
                    ctx,
                    key,
                    channel,
                    "school of the recipient not found".into(),
                )
                .await;
        };
        let content = match message::staff_sms(self.policy.locale, facts) {
            Ok(c) => c,
            Err(e) => return self.impossible(ctx, key, channel, e.to_string()).await,
        };
        let message = SmsMessage {
            phone,
            content,
            // The notification key: providers that honour idempotency
            // (webhook `Idempotency-Key`, Alibaba `OutId`, Tencent
            // `SessionContext`) see the same key on every retry.
            idempotency_key: ctx.req.notification_key.clone(),
        };
        let targets: Vec<Target<'_>> = self
            .sms
            .iter()
            .map(|p| Target::Sms(p.as_ref(), &message))
            .collect();
        self.send_with_failover(ctx, key, channel, &targets, deadline)
            .await
    }

    async fn send_email(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        deadline: Instant,
    ) -> Result<Sent, StoreError> {
        let channel = NotifyChannel::Email;
        let Some(person) = &ctx.recipient else {
            return self
                .impossible(ctx, key, channel, "recipient not found".into())
                .await;
        };
        let Some(email) = person.email.as_deref().filter(|e| !e.trim().is_empty()) else {
            return self
                .impossible(ctx, key, channel, "recipient has no email address".into())
                .await;
        };
        let Some(facts) = &ctx.facts else {
            return self
                .impossible(
                    ctx,
                    key,
                    channel,
                    "school of the recipient not found".into(),
                )
                .await;
        };
        let composed = if ctx.reason == NotificationReason::SignInCode {
            self.compose_sign_in_code(email, ctx.req, message::message_id(key, &self.from))
        } else if ctx.req.case_id.is_empty() {
            self.compose_notice(
                email,
                ctx.req,
                ctx.reason,
                message::message_id(key, &self.from),
            )
        } else {
            message::staff_email(
                self.policy.locale,
                facts,
                &self.from,
                email,
                ctx.reason,
                message::message_id(key, &self.from),
            )
            .map_err(|e| e.to_string())
        };
        let message = match composed {
            Ok(m) => m,
            Err(e) => return self.impossible(ctx, key, channel, e).await,
        };
        let targets = [Target::Email(&self.mailer, &message)];
        self.send_with_failover(ctx, key, channel, &targets, deadline)
            .await
    }

    /// Each target in turn, with retries of transient failures (exponential
    /// backoff with jitter), until one accepts. Each target gets an equal share
    /// of the time left, so the secondary always gets its turn.
    async fn send_with_failover(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        channel: NotifyChannel,
        targets: &[Target<'_>],
        deadline: Instant,
    ) -> Result<Sent, StoreError> {
        let start = Instant::now();
        let budget = deadline.saturating_duration_since(start);
        let n = u32::try_from(targets.len().max(1)).unwrap_or(1);
        let mut last_error = String::from("no provider configured");
        let mut any_transient = false;
        for (i, target) in targets.iter().enumerate() {
            let share_end = start + budget * (u32::try_from(i).unwrap_or(0) + 1) / n;
            let mut delays = backon::ExponentialBuilder::new()
                .with_min_delay(self.policy.backoff_initial)
                .with_max_delay(self.policy.backoff_max)
                .with_jitter()
                .with_max_times(
                    usize::try_from(self.policy.attempts_per_provider.saturating_sub(1))
                        .unwrap_or(0),
                )
                .build();
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(Sent::OutOfTime(format!("out of time after: {last_error}")));
                }
                if ctx.level != RiskLevel::Critical
                    && !ctx.last_chance
                    && let Err(wait) = self.limits.provider(target.provider())
                {
                    if wait > INLINE_WAIT {
                        return Ok(Sent::Deferred(wait, "provider rate limit".into()));
                    }
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let t0 = Instant::now();
                let result =
                    tokio::time::timeout(deadline.saturating_duration_since(t0), target.send())
                        .await;
                let latency_ms = millis(t0.elapsed());
                let (transient, error) = match result {
                    Ok(Ok(message_id)) => {
                        return Ok(Sent::Accepted {
                            provider: target.provider(),
                            message_id,
                            latency_ms,
                        });
                    }
                    Ok(Err(e)) => e,
                    Err(_) => (true, "timed out at the end of the send budget".to_owned()),
                };
                tracing::warn!(
                    key = %key,
                    provider = target.provider(),
                    transient,
                    error = %error,
                    "send attempt failed"
                );
                self.record_failure(
                    ctx,
                    key,
                    channel,
                    target.provider(),
                    transient,
                    &error,
                    latency_ms,
                )
                .await?;
                last_error = format!("{}: {error}", target.provider());
                if !transient {
                    break;
                }
                any_transient = true;
                match delays.next() {
                    Some(delay) if Instant::now() + delay < share_end => {
                        tokio::time::sleep(delay).await;
                    }
                    _ => break,
                }
            }
        }
        Ok(Sent::Failed {
            error: last_error,
            transient: any_transient,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn enqueue_result(
        &self,
        txn: &impl sanyu_store::sea_orm::ConnectionTrait,
        ctx: &Ctx<'_>,
        channel: NotifyChannel,
        key: &str,
        attempt: i32,
        error: Option<String>,
        took: Duration,
    ) -> Result<(), StoreError> {
        let status = if error.is_none() {
            v1::DeliveryStatus::Sent
        } else {
            v1::DeliveryStatus::Failed
        };
        let event_id = format!("notify.result:{key}:{attempt}");
        outbox::enqueue(
            txn,
            OutboxEvent {
                subject: subjects::notification_result(&ctx.envelope.school),
                payload: sanyu_events::encode(&sanyu_events::envelope(
                    event_id.clone(),
                    Utc::now(),
                    ctx.envelope.school.clone(),
                    ctx.envelope.partition,
                    Payload::NotificationResult(v1::NotificationResult {
                        notification_key: ctx.req.notification_key.clone(),
                        case_id: ctx.req.case_id.clone(),
                        channel: match channel {
                            NotifyChannel::Sms => v1::Channel::Sms,
                            NotifyChannel::Email => v1::Channel::Email,
                        } as i32,
                        status: status as i32,
                        error: error.unwrap_or_default(),
                        attempt: u32::try_from(attempt).unwrap_or(0),
                        latency_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    }),
                )),
                event_id,
                traceparent: sanyu_platform::trace::current_traceparent(),
            },
        )
        .await?;
        Ok(())
    }
}

impl Handler for Deliverer {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let envelope = match sanyu_events::decode(&delivery.payload) {
            Ok(e) => e,
            Err(e) => return Outcome::Reject(e.to_string()),
        };
        let Some(Payload::NotificationRequested(req)) = &envelope.payload else {
            return Outcome::Ack;
        };
        match self.deliver(&envelope, req, delivery.delivered).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

impl Deliverer {
    /// A console sign-in code: the request carries it sealed with the data
    /// key (in `sign_in_code`; requests queued before that field, in the
    /// reference field), so that the outbox row and the NOTIFY stream never
    /// hold it in clear; it is opened only to write this email.
    fn compose_sign_in_code(
        &self,
        to: &str,
        req: &v1::NotificationRequested,
        message_id: String,
    ) -> Result<Message, String> {
        use lettre::message::header::ContentType;
        let sealer = self
            .sealer
            .as_ref()
            .ok_or("no data key: a sign-in code cannot be opened")?;
        let sealed = if req.sign_in_code.is_empty() {
            &req.case_reference
        } else {
            &req.sign_in_code
        };
        let code = sanyu_store::console::open_code(sealer, sealed).map_err(|e| e.to_string())?;
        let minutes = sanyu_store::console::CODE_TTL_MINUTES;
        let body = format!(
            "三预 Sanyu 登录验证码 / sign-in code:\n\n    {code}\n\n\
             {minutes} 分钟内有效，只能使用一次。如果不是您本人申请，请忽略本邮件。\n\
             Valid for {minutes} minutes, once. If you did not ask for it, ignore this message.\n"
        );
        Message::builder()
            .from(self.from.clone())
            .to(to
                .parse()
                .map_err(|e: lettre::address::AddressError| e.to_string())?)
            .message_id(Some(message_id))
            .subject("[Sanyu 三预] 登录验证码 / sign-in code")
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())
    }

    /// A notice about no case: a zero report missing, a watch-list follow-up
    /// due. The period or watch entry id and a link; no names.
    fn compose_notice(
        &self,
        to: &str,
        req: &v1::NotificationRequested,
        reason: NotificationReason,
        message_id: String,
    ) -> Result<Message, String> {
        use lettre::message::header::ContentType;
        let (what, link) = notice_lines(reason, &req.case_reference, &self.base_url);
        let body = format!(
            "{what}\n\n\
             编号 / Reference: {reference}\n\n\
             查看 / Open: {link}\n\n\
             本邮件不含学生姓名与报告内容；请登录系统查看。\n\
             This message carries no student name or report text; sign in to see more.\n",
            reference = req.case_reference,
        );
        Message::builder()
            .from(self.from.clone())
            .to(to
                .parse()
                .map_err(|e: lettre::address::AddressError| e.to_string())?)
            .message_id(Some(message_id))
            .subject(format!("[Sanyu 三预] {} · {what}", req.case_reference))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())
    }
}

/// What a notice about no case says, and where it links: a fixed line per
/// reason (a code's words, never data) and a link with the period id.
fn notice_lines(
    reason: NotificationReason,
    reference: &str,
    base_url: &str,
) -> (&'static str, String) {
    use NotificationReason as R;
    let link = match reason {
        R::ZeroReportDue => format!("{}/v1/zero-report-periods", base_url),
        R::ZeroReportOverdue | R::ZeroReportEscalated => format!(
            "{}/v1/zero-report-periods/{}/compliance",
            base_url, reference
        ),
        R::WatchFollowUpDue => format!("{}/v1/key-population", base_url),
        R::RoleGrantRequested | R::RoleGranted => format!("{}/v1/roster/role-grants", base_url),
        _ => base_url.to_owned(),
    };
    (message::reason_line(reason), link)
}

#[cfg(test)]
mod notice_tests {
    use super::{NotificationReason as R, notice_lines};

    #[test]
    fn every_notice_links_to_what_it_is_about() {
        let base = "https://sanyu.example";
        for (reason, link) in [
            (
                R::ZeroReportDue,
                "https://sanyu.example/v1/zero-report-periods",
            ),
            (
                R::ZeroReportOverdue,
                "https://sanyu.example/v1/zero-report-periods/P1/compliance",
            ),
            (
                R::ZeroReportEscalated,
                "https://sanyu.example/v1/zero-report-periods/P1/compliance",
            ),
            (
                R::WatchFollowUpDue,
                "https://sanyu.example/v1/key-population",
            ),
            (
                R::RoleGrantRequested,
                "https://sanyu.example/v1/roster/role-grants",
            ),
            (
                R::RoleGranted,
                "https://sanyu.example/v1/roster/role-grants",
            ),
        ] {
            let (what, got) = notice_lines(reason, "P1", base);
            assert_eq!(got, link, "{reason:?}");
            assert_ne!(what, crate::message::GENERIC_LINE, "{reason:?}");
        }
    }
}
