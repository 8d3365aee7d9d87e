//! Digests: non-critical notices to one person on one channel within
//! `notify.digest_window_secs` go out as one message listing the case
//! references (`sanyu_store::digests` keeps them). A critical notice never
//! gets here: it is sent at once, on its own, whatever else is waiting.
//!
//! A notice's channel joins the person's open digest (or opens one) and is
//! redelivered when the digest closes; the first member back claims the
//! digest, sends it once (with the digest's own idempotency identity) and
//! finishes every member's delivery row with the outcome, enqueueing each
//! member's result event in the same transaction, so the ladder still
//! tracks each case. Quiet hours hold an open digest (it keeps gathering);
//! a member's last delivery sends its digest at once, closed or not.

use sanyu_sms::{AlertLevel, DigestEntry, DigestFacts};
use sanyu_store::digests::{self, Claimed, Member};

use super::record::{ResultOf, enqueue_result_of};
use super::send::Target;
use super::*;

/// How long a member waits in place for another notifier's send of its
/// digest to end, before it comes back later.
const WAIT_FOR_SENDER: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(250);

/// What a digest's send came to.
enum DigestSent {
    Final(&'static str, Option<String>),
    NotYet(ChannelResult),
}

impl Deliverer {
    /// Whether this notice on `channel` gathers into a digest: a case's
    /// non-critical opening, raise or reopening, a follow-up due or a stale
    /// case, by SMS, work IM or email, while digests are on. (Escalations
    /// and alarms go at once: they say that a step was missed.)
    pub(super) fn digestible(&self, ctx: &Ctx<'_>, channel: NotifyChannel) -> bool {
        use NotificationReason as R;
        self.policy.digest_window > chrono::Duration::zero()
            && ctx.level != RiskLevel::Critical
            // Someone to gather for (a recipient not on the roster fails on
            // the channel's own path, on record).
            && ctx.recipient.is_some()
            && !ctx.req.case_id.is_empty()
            && match channel {
                NotifyChannel::Sms => self.sms_digests(),
                NotifyChannel::Im | NotifyChannel::Email => true,
                NotifyChannel::Voice => false,
            }
            && matches!(
                ctx.reason,
                R::CaseOpened | R::LevelRaised | R::CaseReopened | R::FollowUpDue | R::CaseStale
            )
    }

    /// Whether every SMS provider can send a digest (an approved template of
    /// audience `digest` at Alibaba Cloud and Tencent Cloud). Without one,
    /// SMS notices go one by one, as before digests: a digest the provider
    /// refuses would reach nobody by SMS.
    pub fn sms_digests(&self) -> bool {
        self.sms
            .iter()
            .all(|p| p.can_send(sanyu_sms::Audience::Digest, self.policy.locale))
    }

    /// The channel `key` of a digestible notice, claimed by this worker:
    /// join the digest, and send it when it has closed.
    pub(super) async fn run_digest(
        &self,
        ctx: &Ctx<'_>,
        channel: NotifyChannel,
        key: &str,
    ) -> Result<ChannelResult, StoreError> {
        let member = Member {
            delivery_key: key.to_owned(),
            notification_key: ctx.req.notification_key.clone(),
            case_id: ctx.case_id,
            reference: ctx.req.case_reference.clone(),
            level: ctx.level.as_str().to_owned(),
            reason: ctx.reason.name().to_owned(),
            school: ctx.envelope.school.clone(),
            partition: ctx.envelope.partition,
        };
        let join = digests::Join {
            recipient_staff_id: ctx.staff_id,
            channel: channel.as_str(),
            window: self.policy.digest_window,
            worker: &self.worker,
        };
        let txn = begin_write(&self.db).await?;
        let mut digest = digests::join(&*txn, &join, &member).await?;
        txn.commit().await?;
        // Another notifier is sending it: wait a moment for the outcome.
        let started = Instant::now();
        while digest.status == digests::SENDING
            && digest.lease_until.is_some_and(|u| u > Utc::now())
            && started.elapsed() < WAIT_FOR_SENDER
        {
            tokio::time::sleep(POLL).await;
            digest = digests::get(&self.db, digest.id)
                .await?
                .ok_or(StoreError::NotFound("digest"))?;
        }
        let now = Utc::now();
        match digest.status.as_str() {
            // Sent (or failed) while this worker held the row: the sender's
            // finish may have been undone by the row's release; finish it
            // the same way (no second send, no second event).
            digests::SENT | digests::FAILED => {
                let status = if digest.status == digests::SENT {
                    deliveries::SENT
                } else {
                    deliveries::FAILED
                };
                let txn = begin_write(&self.db).await?;
                if deliveries::get(&*txn, key)
                    .await?
                    .is_some_and(|r| r.status == deliveries::PENDING)
                {
                    deliveries::finish(&*txn, key, status, None).await?;
                }
                txn.commit().await?;
                return Ok(ChannelResult::Done(status.to_owned()));
            }
            digests::OPEN if digest.closes_at > now && !ctx.last_chance => {
                let wait = (digest.closes_at - now).to_std().unwrap_or_default() + BUSY_MARGIN;
                tracing::info!(key = %key, digest = %digest.id, wait_ms = millis(wait), "notice held for a digest");
                return Ok(ChannelResult::Deferred(
                    wait,
                    format!("in a digest until {}", digest.closes_at.to_rfc3339()),
                ));
            }
            digests::SENDING if digest.lease_until.is_some_and(|u| u > now) => {
                let until = digest.lease_until.unwrap_or(now);
                return Ok(ChannelResult::Deferred(
                    until_lease_ends(until),
                    "another notifier sends the digest".into(),
                ));
            }
            _ => {}
        }
        // Quiet hours hold the digest: an open one goes on gathering; one
        // waiting after a failed send (or left by a sender that stopped) is
        // not sent at night either.
        if let Some((wait, why)) = self.gate(ctx, channel) {
            let until = now + chrono::Duration::from_std(wait).unwrap_or_default();
            let txn = begin_write(&self.db).await?;
            digests::hold(&*txn, digest.id, until).await?;
            txn.commit().await?;
            return Ok(ChannelResult::Deferred(wait + BUSY_MARGIN, why));
        }
        let txn = begin_write(&self.db).await?;
        let claimed = digests::claim(
            &*txn,
            digest.id,
            &self.worker,
            self.policy.lease,
            ctx.last_chance,
        )
        .await?;
        txn.commit().await?;
        let Some(claimed) = claimed else {
            return Ok(ChannelResult::Deferred(
                Duration::from_secs(1),
                "another notifier took the digest".into(),
            ));
        };
        self.send_digest(ctx, channel, key, digest.id, claimed)
            .await
    }

    /// Send a claimed digest and record its outcome for every member.
    async fn send_digest(
        &self,
        ctx: &Ctx<'_>,
        channel: NotifyChannel,
        key: &str,
        id: Uuid,
        claimed: Claimed,
    ) -> Result<ChannelResult, StoreError> {
        let claimed_at = Instant::now();
        let lease = self
            .policy
            .lease
            .to_std()
            .unwrap_or(Duration::from_secs(60));
        if let Some(since) = claimed.interrupted {
            tracing::warn!(digest = %id, since = %since.to_rfc3339(), "took over a digest whose send has no recorded outcome; sending again with the same idempotency identity");
        }
        let txn = begin_write(&self.db).await?;
        let marked = digests::mark_sending(&*txn, id, &self.worker).await?;
        txn.commit().await?;
        if !marked {
            return Ok(ChannelResult::Retry(
                "the claim on the digest was lost before the send".into(),
            ));
        }
        let started = Instant::now();
        let outcome = self
            .send_digest_on(
                ctx,
                channel,
                key,
                id,
                &claimed.members,
                claimed_at + lease / 2,
            )
            .await?;
        let (status, error) = match outcome {
            DigestSent::Final(status, error) => (status, error),
            DigestSent::NotYet(result) => {
                let why = match &result {
                    ChannelResult::Deferred(_, why)
                    | ChannelResult::Retry(why)
                    | ChannelResult::Failing(why)
                    | ChannelResult::Done(why) => why.clone(),
                };
                let txn = begin_write(&self.db).await?;
                digests::finish(&*txn, id, digests::WAITING, Some(why)).await?;
                txn.commit().await?;
                return Ok(result);
            }
        };
        let took = started.elapsed();
        let provider_status = if status == deliveries::SENT {
            deliveries::ACCEPTED
        } else {
            deliveries::PERMANENT_ERROR
        };
        // Every member's row, attempt and result event, and the digest, in
        // one transaction; retried while the database is away.
        let mut wait = RECORD_RETRY_FIRST;
        loop {
            let record = async {
                let txn = begin_write(&self.db).await?;
                for m in &claimed.members {
                    deliveries::record_attempt(
                        &*txn,
                        NewAttempt {
                            delivery_key: &m.delivery_key,
                            case_id: m.case_id,
                            channel: channel.as_str(),
                            provider: "digest",
                            status: provider_status,
                            latency_ms: millis(took),
                            error: error.clone(),
                            provider_message_id: Some(format!("digest:{id}")),
                            at: Utc::now(),
                        },
                    )
                    .await?;
                    deliveries::finish(&*txn, &m.delivery_key, status, error.clone()).await?;
                    enqueue_result_of(
                        &*txn,
                        &ResultOf {
                            school: &m.school,
                            partition: m.partition,
                            notification_key: &m.notification_key,
                            case_id: &m.case_id.to_string(),
                            event_id: format!("notify.result:{}:digest:{id}", m.delivery_key),
                            attempt: 1,
                        },
                        channel,
                        error.clone(),
                        took,
                    )
                    .await?;
                }
                let digest_status = if status == deliveries::SENT {
                    digests::SENT
                } else {
                    digests::FAILED
                };
                digests::finish(&*txn, id, digest_status, error.clone()).await?;
                txn.commit().await?;
                Ok::<(), StoreError>(())
            };
            match record.await {
                Ok(()) => break,
                Err(e) if claimed_at.elapsed() + wait < lease => {
                    tracing::warn!(digest = %id, error = %e, "digest outcome not recorded yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RECORD_RETRY_MAX);
                }
                Err(e) => return Err(e),
            }
        }
        self.waker.wake();
        tracing::info!(digest = %id, channel = channel.as_str(), members = claimed.members.len(), status, "digest finished");
        Ok(ChannelResult::Done(status.to_owned()))
    }

    /// Render and send the digest on `channel`; failures of this send are
    /// recorded on `key` (the member that sends it).
    async fn send_digest_on(
        &self,
        ctx: &Ctx<'_>,
        channel: NotifyChannel,
        key: &str,
        id: Uuid,
        members: &[Member],
        deadline: Instant,
    ) -> Result<DigestSent, StoreError> {
        let Some(facts) = &ctx.facts else {
            let why = "recipient or their school not found".to_owned();
            self.impossible(ctx, key, channel, why.clone()).await?;
            return Ok(DigestSent::Final(deliveries::FAILED, Some(why)));
        };
        let links: Vec<String> = members
            .iter()
            .map(|m| format!("{}/cases/{}", self.base_url, m.case_id))
            .collect();
        let queue = format!("{}/queue", self.base_url);
        let entries = members
            .iter()
            .zip(&links)
            .map(|(m, link)| DigestEntry {
                case_ref: &m.reference,
                level: match m.level.as_str() {
                    "high" => AlertLevel::High,
                    "critical" => AlertLevel::Critical,
                    _ => AlertLevel::Elevated,
                },
                link,
                what: NotificationReason::from_name(&m.reason)
                    .map_or(message::GENERIC_LINE, message::reason_line),
            })
            .collect();
        let digest = DigestFacts {
            school: sanyu_sms::NotificationFacts::school_name(facts),
            entries,
            queue_link: &queue,
        };
        let identity = format!("digest:{id}");
        let locale = self.policy.locale;
        let sent = match channel {
            NotifyChannel::Sms => match self.phone_of(ctx, key, channel).await? {
                Err(sent) => sent,
                Ok(phone) => match sanyu_sms::render_digest_sms(locale, &digest) {
                    Err(e) => self.impossible(ctx, key, channel, e.to_string()).await?,
                    Ok(content) => {
                        let message = SmsMessage {
                            phone,
                            content,
                            idempotency_key: identity.clone(),
                        };
                        let targets: Vec<Target<'_>> = self
                            .sms
                            .iter()
                            .zip(&self.sms_pacers)
                            .map(|(p, pacer)| Target::Sms(p.as_ref(), &message, pacer.as_ref()))
                            .collect();
                        self.send_with_failover(ctx, key, channel, &targets, deadline)
                            .await?
                    }
                },
            },
            NotifyChannel::Im => match (&self.im, self.phone_of(ctx, key, channel).await?) {
                (_, Err(sent)) => sent,
                (None, _) => {
                    self.impossible(ctx, key, channel, "no work-IM platform configured".into())
                        .await?
                }
                (Some(provider), Ok(phone)) => match sanyu_sms::render_digest_im(locale, &digest) {
                    Err(e) => self.impossible(ctx, key, channel, e.to_string()).await?,
                    Ok(text) => {
                        let message = sanyu_im::ImMessage {
                            phone,
                            text,
                            idempotency_key: identity.clone(),
                        };
                        let targets = [Target::Im(provider.as_ref(), &message)];
                        self.send_with_failover(ctx, key, channel, &targets, deadline)
                            .await?
                    }
                },
            },
            _ => {
                let email = ctx
                    .recipient
                    .as_ref()
                    .and_then(|p| p.email.as_deref())
                    .filter(|e| !e.trim().is_empty());
                let composed = match email {
                    None => Err("recipient has no email address".to_owned()),
                    Some(to) => message::digest_email(
                        locale,
                        &digest,
                        &self.from,
                        to,
                        message::message_id(&format!("{identity}:email"), &self.from),
                    )
                    .map_err(|e| e.to_string()),
                };
                match composed {
                    Err(e) => self.impossible(ctx, key, channel, e).await?,
                    Ok(message) => {
                        let targets = [Target::Email(&self.mailer, &message)];
                        self.send_with_failover(ctx, key, channel, &targets, deadline)
                            .await?
                    }
                }
            }
        };
        let outcome = match &sent {
            Sent::Accepted { .. } => "sent",
            Sent::Failed {
                transient: true, ..
            } if !ctx.last_chance => "retry",
            Sent::Failed { .. } => "failed",
            Sent::OutOfTime(_) | Sent::Deferred(..) => "retry",
        };
        let provider = match &sent {
            Sent::Accepted { provider, .. } => *provider,
            _ => "any",
        };
        sanyu_platform::metrics::record_delivery(
            channel.as_str(),
            provider,
            outcome,
            Duration::ZERO,
        );
        Ok(match sent {
            Sent::Accepted { .. } => DigestSent::Final(deliveries::SENT, None),
            Sent::Failed {
                error,
                transient: true,
            } if !ctx.last_chance => DigestSent::NotYet(ChannelResult::Failing(error)),
            Sent::Failed { error, .. } => DigestSent::Final(deliveries::FAILED, Some(error)),
            Sent::OutOfTime(e) => DigestSent::NotYet(ChannelResult::Retry(e)),
            Sent::Deferred(wait, why) => DigestSent::NotYet(ChannelResult::Deferred(wait, why)),
        })
    }
}
