//! Deliver: one notification request → one delivery per channel (SMS, voice,
//! work IM, email), each at least once per key, and more than once only as
//! described under "Crash window".
//!
//! * **Channels.** The level decides the channels (`notify.channels`; by
//!   default critical: SMS, a voice call, work IM and email; high: SMS, work
//!   IM and email; elevated: email and work IM — voice and IM only where
//!   their provider is configured, and a call only for a notice that asks
//!   someone to act now). Each channel has its own delivery row,
//!   `<notification_key>:sms` / `:voice` / `:im` / `:email`, claimed
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
use sanyu_sms::{PhoneNumber, SmsMessage, SmsProvider, VoiceProvider};

use crate::pacer::Pacer;
use sanyu_store::deliveries::{self, Claim, DeliveryRequest, NewAttempt};
use sanyu_store::entities::staff;
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::{Db, StoreError, begin_write, roster};
use uuid::Uuid;

use crate::mailer::{Mailer, SendError};
use crate::message::{self, Facts};
use crate::policy::{Clock, Limits, Policy, PolicyError, SharedClock, SystemClock};

mod channel;
mod compose;
mod digest;
mod plan;
mod record;
mod send;

use send::Sent;

pub const CONSUMER: &str = "notifier-deliver";
/// The durable consumer of voice calls.
pub const CALLS_CONSUMER: &str = "notifier-calls";

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

/// The consumer of SMS, work-IM and email deliveries ([`Share::Messages`]).
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

/// The consumer of voice calls ([`Share::Calls`]), on the same requests. It
/// reads the stream from its start like every consumer; a request older than
/// [`CALL_MAX_AGE`] is not called about.
pub fn calls_spec() -> ConsumerSpec {
    ConsumerSpec {
        durable: CALLS_CONSUMER,
        ..spec()
    }
}

/// A call is placed only for a request younger than this: an older one (held
/// in the stream from before the calls consumer existed, or replayed after a
/// restore) reached everyone by SMS and email when it was new.
pub const CALL_MAX_AGE: chrono::Duration = chrono::Duration::hours(1);

/// Which channels a deliverer sends. Voice calls run on a consumer of their
/// own ([`calls_spec`]): a request is finished when every channel it sends is,
/// and an account's call rate (a few per second, paced by `max_per_second`)
/// would otherwise set the pace of every SMS, IM message and email behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// SMS, work IM and email (and the failover between them).
    Messages,
    /// Voice calls only.
    Calls,
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
    #[error("voice.provider: {0}")]
    Voice(#[source] sanyu_sms::ConfigError),
    #[error("im.provider: {0}")]
    Im(#[source] sanyu_im::ImConfigError),
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
    /// Each SMS provider's request limit (`http.max_per_second`), by index of `sms`.
    sms_pacers: Vec<Option<Pacer>>,
    /// The voice-call provider (critical cases), if configured.
    voice: Option<Arc<dyn VoiceProvider>>,
    voice_pacer: Option<Pacer>,
    /// The work-IM platform (WeCom or DingTalk), if configured.
    im: Option<Arc<dyn sanyu_im::ImProvider>>,
    limits: Limits,
    clock: SharedClock,
    pause_after_claim: Option<Duration>,
    pause_after_send: Option<Duration>,
    takeover_grace: Duration,
    max_deliver: i64,
    /// Opens the sealed code of a console sign-in notice (none without a data key).
    sealer: Option<sanyu_store::crypto::Sealer>,
    /// Derives the acknowledgement link of a case notice (none without a
    /// data key: the messages then link to the case page only).
    ack_key: Option<sanyu_store::ack_links::AckKey>,
    /// The channels this deliverer sends.
    share: Share,
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
    /// The acknowledgement link's token of a notice about a case (derived
    /// from the notification key: the same on every send).
    ack_token: Option<String>,
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
        let mut sms_pacers = Vec::new();
        for (which, provider) in [
            ("primary", &config.sms.primary),
            ("secondary", &config.sms.secondary),
        ] {
            if let Some(p) = provider {
                let built = sanyu_sms::build_provider(p)
                    .map_err(|error| DeliverError::Sms { which, error })?;
                sms.push(Arc::from(built));
                sms_pacers.push(Pacer::per_second(p.http().max_per_second));
            }
        }
        let voice_pacer = config
            .voice
            .provider
            .as_ref()
            .and_then(|p| Pacer::per_second(p.http().max_per_second));
        let voice = match &config.voice.provider {
            Some(p) => Some(Arc::from(
                sanyu_sms::build_voice_provider(p).map_err(DeliverError::Voice)?,
            )),
            None => None,
        };
        let im = match &config.im.provider {
            Some(p) => Some(Arc::from(
                sanyu_im::build_im_provider(p).map_err(DeliverError::Im)?,
            )),
            None => None,
        };
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
            sms_pacers,
            voice,
            voice_pacer,
            im,
            limits,
            clock,
            pause_after_claim: None,
            pause_after_send: None,
            takeover_grace: Duration::from_millis(config.notify.takeover_grace_ms),
            max_deliver: config.nats.max_deliver,
            sealer: config.sealer().ok(),
            ack_key: sanyu_store::ack_links::AckKey::from_data_key(
                config.security.data_key.expose(),
            )
            .ok(),
            share: Share::Messages,
        })
    }

    /// Send only the voice calls of each request (the calls consumer's
    /// deliverer); by default a deliverer sends every other channel.
    pub fn for_calls(mut self) -> Self {
        self.share = Share::Calls;
        self
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

    /// Whether a voice-call provider is configured.
    pub fn voice_enabled(&self) -> bool {
        self.voice.is_some()
    }

    fn enabled(&self, channel: NotifyChannel) -> bool {
        match channel {
            NotifyChannel::Sms => self.sms_enabled(),
            NotifyChannel::Voice => self.voice_enabled(),
            NotifyChannel::Im => self.im.is_some(),
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
        // The calls consumer: nothing to do unless this request is a call,
        // and a call only while the alarm is fresh (a request the stream
        // held from before the calls consumer existed, or replayed after a
        // restore, went out by SMS and email then).
        if self.share == Share::Calls {
            let at = envelope
                .occurred_at
                .as_ref()
                .and_then(sanyu_events::from_timestamp);
            let fresh = at.is_some_and(|at| self.clock.now() - at < CALL_MAX_AGE);
            // (Whether the level, or the person, wants a call is read below.)
            if !(fresh && self.voice_enabled() && reason.is_alarm() && !req.case_id.is_empty()) {
                return Ok(Outcome::Ack);
            }
        }
        let recipient = roster::staff_by_id(&self.db, staff_id).await?;
        let ack_token = match &self.ack_key {
            Some(k) if reason.is_about_a_case() && !req.case_id.is_empty() => {
                Some(k.token(&req.notification_key))
            }
            _ => None,
        };
        let facts = match &recipient {
            Some(person) => {
                let school = roster::school_by_id(&self.db, person.school_id).await?;
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
                    .with_ack_token(&self.base_url, ack_token.as_deref())
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
            ack_token,
            last_chance: delivered >= self.max_deliver,
        };
        let planned = self.plan(&ctx).await?;
        if planned.is_empty() {
            return Ok(Outcome::Ack);
        }
        let mut results = Vec::new();
        for r in join_all(planned.iter().map(|c| self.run_channel(&ctx, *c))).await {
            results.push(r?);
        }
        // Every planned channel failed: try the others, one after another.
        // (Not the answer to an SMS reply: it says nothing outside SMS.)
        let reply_answer = matches!(
            reason,
            NotificationReason::AckConfirmed | NotificationReason::AckRefused
        );
        if results.iter().all(ChannelResult::failed)
            && !reply_answer
            && self.share == Share::Messages
        {
            for channel in [NotifyChannel::Sms, NotifyChannel::Im, NotifyChannel::Email] {
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
        // The answer to a person's own reply is not held back either.
        if ctx.level == RiskLevel::Critical
            || ctx.last_chance
            || matches!(
                ctx.reason,
                NotificationReason::AckConfirmed | NotificationReason::AckRefused
            )
        {
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
