//! One channel of one request: claim its delivery row, wait out what holds it
//! back, send, and record how it ended.

use super::*;

impl Deliverer {
    pub(super) async fn run_channel(
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
                    ack_token_hash: self
                        .ack_key
                        .as_ref()
                        .zip(ctx.ack_token.as_deref())
                        .map(|(k, t)| k.lookup_hash(t)),
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
        // A non-critical notice waits for the person's digest.
        if self.digestible(ctx, channel) {
            return self.run_digest(ctx, channel, &key).await;
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
        let send_started = std::time::Instant::now();
        let sent = match channel {
            NotifyChannel::Sms => self.send_sms(ctx, &key, deadline).await?,
            NotifyChannel::Voice => self.send_voice(ctx, &key, deadline).await?,
            NotifyChannel::Im => self.send_im(ctx, &key, deadline).await?,
            NotifyChannel::Email => self.send_email(ctx, &key, deadline).await?,
        };
        let (provider, outcome) = match &sent {
            Sent::Accepted { provider, .. } => (*provider, "sent"),
            Sent::Failed {
                transient: true, ..
            } if !ctx.last_chance => ("any", "retry"),
            Sent::Failed { .. } => ("any", "failed"),
            Sent::OutOfTime(_) => ("any", "retry"),
            Sent::Deferred(..) => ("any", "deferred"),
        };
        sanyu_platform::metrics::record_delivery(
            channel.as_str(),
            provider,
            outcome,
            send_started.elapsed(),
        );
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
}
