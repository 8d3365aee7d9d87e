//! The delivery log's side of a send: marking it in progress, taking over an
//! interrupted one, recording an accepted or failed send and its result event.

use super::*;

impl Deliverer {
    /// Record an accepted send: the attempt, the row `sent`, the result
    /// event, in one transaction. The outcome stays in hand and the write is
    /// retried with backoff while the database is away, until `lease_end`
    /// (after it the claim may pass to a takeover). Never sends.
    pub(super) async fn record_sent(
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
                Err(_) => StoreError::Db(sanyu_store::DbErr::Custom(
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

    pub(super) async fn record_sent_once(
        &self,
        ctx: &Ctx<'_>,
        a: &Accepted<'_>,
    ) -> Result<(), StoreError> {
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
    pub(super) async fn mark_sending(&self, key: &str) -> Result<bool, StoreError> {
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
    pub(super) async fn take_over(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        channel: NotifyChannel,
        since: chrono::DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        tokio::time::sleep(self.takeover_grace).await;
        let row = deliveries::get(&self.db, key).await?;
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

    pub(super) async fn release(&self, key: &str, why: String) -> Result<(), StoreError> {
        let txn = begin_write(&self.db).await?;
        deliveries::release(&*txn, key, why).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A send that could not even start (no address, nothing to render):
    /// recorded as a permanent failure of provider `none`.
    pub(super) async fn impossible(
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
    pub(super) async fn record_failure(
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

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn enqueue_result(
        &self,
        txn: &impl sanyu_store::Conn,
        ctx: &Ctx<'_>,
        channel: NotifyChannel,
        key: &str,
        attempt: i32,
        error: Option<String>,
        took: Duration,
    ) -> Result<(), StoreError> {
        enqueue_result_of(
            txn,
            &ResultOf {
                school: &ctx.envelope.school,
                partition: ctx.envelope.partition,
                notification_key: &ctx.req.notification_key,
                case_id: &ctx.req.case_id,
                event_id: format!("notify.result:{key}:{attempt}"),
                attempt,
            },
            channel,
            error,
            took,
        )
        .await
    }
}

/// Whose result an event reports: a request's (its envelope's school and
/// partition, its key and case) and the event's stable id.
pub(super) struct ResultOf<'a> {
    pub school: &'a str,
    pub partition: u32,
    pub notification_key: &'a str,
    pub case_id: &'a str,
    pub event_id: String,
    pub attempt: i32,
}

/// Enqueue the `NotificationResult` of one channel of a request, in the
/// transaction that records it.
pub(super) async fn enqueue_result_of(
    txn: &impl sanyu_store::Conn,
    of: &ResultOf<'_>,
    channel: NotifyChannel,
    error: Option<String>,
    took: Duration,
) -> Result<(), StoreError> {
    let status = if error.is_none() {
        v1::DeliveryStatus::Sent
    } else {
        v1::DeliveryStatus::Failed
    };
    outbox::enqueue(
        txn,
        OutboxEvent::of(
            subjects::notification_result(of.school),
            of.event_id.clone(),
            Utc::now(),
            of.school,
            of.partition,
            Payload::NotificationResult(v1::NotificationResult {
                notification_key: of.notification_key.to_owned(),
                case_id: of.case_id.to_owned(),
                channel: match channel {
                    NotifyChannel::Sms => v1::Channel::Sms,
                    NotifyChannel::Voice => v1::Channel::Voice,
                    NotifyChannel::Im => v1::Channel::Im,
                    NotifyChannel::Email => v1::Channel::Email,
                } as i32,
                status: status as i32,
                error: error.unwrap_or_default(),
                attempt: u32::try_from(of.attempt).unwrap_or(0),
                latency_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            }),
            sanyu_platform::trace::current_traceparent(),
        ),
    )
    .await?;
    Ok(())
}
