//! The consumer loop every service shares. A handler is a step function that
//! returns an [`Outcome`]; the loop turns it into the ack:
//! success → ack; retryable → nak with backoff; permanent → dead-letter copy,
//! then terminate. It stops pulling on shutdown, finishes the message in hand,
//! and gives back what was prefetched.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::AckKind;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::nats::{Backbone, ConsumerSpec, Ordering};
use crate::trace::{self, TRACEPARENT};
use crate::{PlatformError, Result};

/// Headers of a dead-letter copy.
pub const DLQ_REASON: &str = "Sanyu-Dlq-Reason";
pub const DLQ_STREAM: &str = "Sanyu-Dlq-Stream";
pub const DLQ_CONSUMER: &str = "Sanyu-Dlq-Consumer";
pub const DLQ_SEQ: &str = "Sanyu-Dlq-Stream-Seq";
pub const DLQ_SUBJECT: &str = "Sanyu-Dlq-Subject";
pub const DLQ_DELIVERIES: &str = "Sanyu-Dlq-Deliveries";
pub const DLQ_EVENT_ID: &str = "Sanyu-Dlq-Event-Id";

/// One message as a handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: Option<HeaderMap>,
    /// `Nats-Msg-Id` of the publish (the event id), when present.
    pub msg_id: Option<String>,
    pub stream: String,
    pub stream_seq: u64,
    /// 1 on the first delivery.
    pub delivered: i64,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name).map(|v| v.as_str())
    }
}

/// What a handler decided about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or already done before): ack.
    Ack,
    /// A transient failure (database busy, network): try again later.
    Retry(String),
    /// The message can never succeed (malformed, refers to nothing): dead-letter it.
    Reject(String),
    /// Not now, but at a known time (quiet hours, a rate limit): redeliver
    /// after this delay instead of the backoff's. Counts as a delivery.
    Defer(Duration, String),
}

/// A step function over one message.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send;

    /// Handle several messages of one lane at once (in stream order), one
    /// outcome per message, in the same order. A handler that can commit many
    /// messages in one transaction overrides this (the rules engine); the
    /// default handles them one by one. Used when the spec's `max_batch` > 1.
    fn handle_batch(&self, deliveries: &[Delivery]) -> impl Future<Output = Vec<Outcome>> + Send {
        async move {
            let mut outcomes = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                outcomes.push(self.handle(d).await);
            }
            outcomes
        }
    }
}

/// Pull from `spec` until `cancel` fires, restarting the subscription after a
/// failure (server restart, lost connection) with a short pause.
pub async fn run<H: Handler>(
    backbone: Backbone,
    spec: ConsumerSpec,
    handler: H,
    cancel: CancellationToken,
) {
    let handler = Arc::new(handler);
    while !cancel.is_cancelled() {
        match run_once(&backbone, &spec, &handler, &cancel).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(consumer = spec.durable, error = %e, "consumer failed; restarting");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// The queue of a message: same student partition → same lane → handled in order.
fn lane_of(message: &async_nats::jetstream::Message, ordering: Ordering, queues: usize) -> usize {
    if ordering == Ordering::Unordered || queues <= 1 {
        return 0;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    lane_key(message.subject.as_str()).hash(&mut hasher);
    usize::try_from(hasher.finish() % queues as u64).unwrap_or(0)
}

/// What orders messages: `sanyu.<area>.<event>.<school>.<partition>` →
/// `<school>.<partition>`, so that every event about one student (a report,
/// a screening result, a hotline call) goes to the same lane, in stream
/// order, whatever its kind; other subjects as they are.
fn lane_key(subject: &str) -> &str {
    let mut dots = subject.match_indices('.').map(|(i, _)| i);
    match (dots.nth(2), subject.split('.').count()) {
        (Some(third), 5..) => &subject[third + 1..],
        _ => subject,
    }
}

/// One subscription: pull until `cancel` fires or the subscription fails.
///
/// Messages are spread over `spec.lanes` worker lanes; a lane handles its
/// messages one at a time, in order. On shutdown the lanes finish what they
/// hold (handled and acked), and what was prefetched but not handed to a lane
/// is given back with a nak so another replica takes it at once.
pub async fn run_once<H: Handler>(
    backbone: &Backbone,
    spec: &ConsumerSpec,
    handler: &Arc<H>,
    cancel: &CancellationToken,
) -> Result<()> {
    let consumer = backbone.ensure_consumer(spec).await?;
    let lanes = spec.lanes.max(1);
    let max_batch = spec.max_batch.max(1);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch((lanes * max_batch).clamp(16, 512))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| PlatformError::Nats(format!("consume {}: {e}", spec.durable)))?;
    // Ordered: one queue per lane, chosen by key. Unordered: one queue that
    // every lane takes from, so a slow message never holds up the others.
    let queues = match spec.ordering {
        Ordering::BySubject => lanes,
        Ordering::Unordered => 1,
    };
    let mut senders = Vec::with_capacity(queues);
    let mut receivers = Vec::with_capacity(queues);
    for _ in 0..queues {
        let (tx, rx) = tokio::sync::mpsc::channel::<async_nats::jetstream::Message>(max_batch);
        senders.push(tx);
        receivers.push(Arc::new(tokio::sync::Mutex::new(rx)));
    }
    let mut workers = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let rx = receivers[lane % queues].clone();
        let (backbone, spec, handler) = (backbone.clone(), spec.clone(), handler.clone());
        workers.spawn(async move {
            loop {
                // The first message waits; the rest of a batch is whatever the
                // lane already holds (never a wait to fill a batch).
                let batch = {
                    let mut rx = rx.lock().await;
                    let Some(first) = rx.recv().await else { break };
                    let mut batch = vec![first];
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(message) => batch.push(message),
                            Err(_) => break,
                        }
                    }
                    batch
                };
                if batch.len() == 1 {
                    for message in batch {
                        process(&backbone, &spec, handler.as_ref(), message).await;
                    }
                } else {
                    process_batch(&backbone, &spec, handler.as_ref(), batch).await;
                }
            }
        });
    }
    tracing::info!(
        consumer = spec.durable,
        stream = spec.stream,
        lanes,
        "consumer started"
    );
    let result = loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            next = messages.next() => next,
        };
        match next {
            None => {
                break Err(PlatformError::Nats(format!(
                    "message stream of {} ended",
                    spec.durable
                )));
            }
            Some(Err(e)) => {
                // Missed heartbeats and similar: the stream recovers by itself.
                tracing::warn!(consumer = spec.durable, error = %e, "consumer stream error");
            }
            Some(Ok(message)) => {
                let queue = lane_of(&message, spec.ordering, queues);
                if let Err(returned) = senders[queue].send(message).await {
                    let _ = returned.0.ack_with(AckKind::Nak(None)).await;
                    break Err(PlatformError::Nats("consumer lane stopped".into()));
                }
            }
        }
    };
    // Let every lane finish what it holds.
    drop(senders);
    while workers.join_next().await.is_some() {}
    let mut returned = 0;
    while let Some(Some(Ok(message))) = messages.next().now_or_never() {
        let _ = message.ack_with(AckKind::Nak(None)).await;
        returned += 1;
    }
    tracing::info!(consumer = spec.durable, returned, "consumer stopped");
    result
}

/// The handler's view of a message; `None` (and the message terminated) when
/// it carries no JetStream metadata.
async fn delivery_of(message: &async_nats::jetstream::Message) -> Option<Delivery> {
    let (stream, stream_seq, delivered) = match message.info() {
        Ok(info) => (info.stream.to_owned(), info.stream_sequence, info.delivered),
        Err(e) => {
            tracing::warn!(error = %e, "message without JetStream info; terminating");
            let _ = message.ack_with(AckKind::Term).await;
            return None;
        }
    };
    let headers = message.headers.clone();
    let msg_id = headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_owned());
    Some(Delivery {
        subject: message.subject.to_string(),
        payload: message.payload.to_vec(),
        headers,
        msg_id,
        stream,
        stream_seq,
        delivered,
    })
}

/// Several messages of one lane through [`Handler::handle_batch`]; each is
/// then acked, retried or dead-lettered by its own outcome.
async fn process_batch<H: Handler>(
    backbone: &Backbone,
    spec: &ConsumerSpec,
    handler: &H,
    messages: Vec<async_nats::jetstream::Message>,
) {
    let mut held = Vec::with_capacity(messages.len());
    for message in messages {
        if let Some(delivery) = delivery_of(&message).await {
            held.push((message, delivery));
        }
    }
    let deliveries: Vec<Delivery> = held.iter().map(|(_, d)| d.clone()).collect();
    let span = tracing::info_span!(
        "consume_batch",
        consumer = spec.durable,
        messages = deliveries.len()
    );
    let mut outcomes = handler
        .handle_batch(&deliveries)
        .instrument(span.clone())
        .await
        .into_iter();
    for (message, delivery) in held {
        // A handler that answers too few outcomes leaves the rest to retry.
        let outcome = outcomes
            .next()
            .unwrap_or_else(|| Outcome::Retry("no outcome from the batch handler".into()));
        settle(backbone, spec, message, &delivery, outcome)
            .instrument(span.clone())
            .await;
    }
}

async fn process<H: Handler>(
    backbone: &Backbone,
    spec: &ConsumerSpec,
    handler: &H,
    message: async_nats::jetstream::Message,
) {
    let Some(delivery) = delivery_of(&message).await else {
        return;
    };
    let (stream_seq, delivered) = (delivery.stream_seq, delivery.delivered);
    let span = tracing::info_span!(
        "consume",
        consumer = spec.durable,
        subject = %delivery.subject,
        stream_seq,
        delivered,
        event_id = delivery.msg_id.as_deref().unwrap_or(""),
    );
    trace::set_parent(&span, delivery.header(TRACEPARENT));
    let outcome = handler.handle(&delivery).instrument(span.clone()).await;
    settle(backbone, spec, message, &delivery, outcome)
        .instrument(span)
        .await;
}

/// Turn an outcome into the ack: ack, nak with backoff, or dead-letter copy
/// then terminate.
async fn settle(
    backbone: &Backbone,
    spec: &ConsumerSpec,
    message: async_nats::jetstream::Message,
    delivery: &Delivery,
    outcome: Outcome,
) {
    let delivered = delivery.delivered;
    let max_deliver = backbone.settings.max_deliver;
    let ack = match outcome {
        Outcome::Ack => AckKind::Ack,
        Outcome::Retry(reason) if delivered < max_deliver => {
            let delay = retry_delay(&backbone.settings.backoff_secs, delivered);
            tracing::warn!(
                reason,
                delay_ms = delay.as_millis() as u64,
                "retrying message"
            );
            AckKind::Nak(Some(delay))
        }
        Outcome::Defer(delay, reason) if delivered < max_deliver => {
            tracing::info!(
                reason,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "deferring message"
            );
            AckKind::Nak(Some(delay))
        }
        Outcome::Retry(reason) | Outcome::Defer(_, reason) => {
            dead_letter(
                backbone,
                spec,
                delivery,
                &format!("retries exhausted: {reason}"),
            )
            .await
        }
        Outcome::Reject(reason) => dead_letter(backbone, spec, delivery, &reason).await,
    };
    if let Err(e) = message.ack_with(ack).await {
        // The server will redeliver after ack_wait; the processed-message record
        // makes the second delivery a no-op.
        tracing::warn!(error = %e, "ack failed");
    }
}

/// Delay before the `delivered`-th retry.
pub fn retry_delay(backoff_secs: &[u64], delivered: i64) -> Duration {
    let idx = usize::try_from(delivered.max(1) - 1).unwrap_or(0);
    let secs = backoff_secs
        .get(idx)
        .or_else(|| backoff_secs.last())
        .copied()
        .unwrap_or(5);
    Duration::from_secs(secs)
}

/// Copy the message to the dead-letter stream, then terminate it. If the copy
/// cannot be stored, the message is retried instead: it is never dropped.
async fn dead_letter(
    backbone: &Backbone,
    spec: &ConsumerSpec,
    d: &Delivery,
    reason: &str,
) -> AckKind {
    tracing::error!(reason, "dead-lettering message");
    let mut headers = HeaderMap::new();
    headers.insert(DLQ_REASON, truncate(reason, 512));
    headers.insert(DLQ_STREAM, d.stream.as_str());
    headers.insert(DLQ_CONSUMER, spec.durable);
    headers.insert(DLQ_SEQ, d.stream_seq.to_string().as_str());
    headers.insert(DLQ_SUBJECT, d.subject.as_str());
    headers.insert(DLQ_DELIVERIES, d.delivered.to_string().as_str());
    if let Some(id) = &d.msg_id {
        headers.insert(DLQ_EVENT_ID, id.as_str());
    }
    if let Some(tp) = d.header(TRACEPARENT) {
        headers.insert(TRACEPARENT, tp);
    }
    let subject = sanyu_events::subjects::dead_letter(&d.stream, spec.durable);
    let id = format!("dlq:{}:{}:{}", d.stream, spec.durable, d.stream_seq);
    let publish = async {
        backbone
            .js
            .send_publish(
                subject,
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(d.payload.clone().into())
                    .headers(headers)
                    .message_id(id),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    match publish.await {
        Ok(_) => AckKind::Term,
        Err(e) => {
            tracing::error!(error = %e, "dead-letter copy failed; will retry the message");
            AckKind::Nak(Some(Duration::from_secs(5)))
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_students_events_share_a_lane_whatever_their_kind() {
        assert_eq!(lane_key("sanyu.intake.report.SCH1.7"), "SCH1.7");
        assert_eq!(lane_key("sanyu.intake.screening.SCH1.7"), "SCH1.7");
        assert_eq!(
            lane_key("sanyu.notify.requested.SCH1"),
            "sanyu.notify.requested.SCH1"
        );
        assert_eq!(lane_key("x"), "x");
    }

    #[test]
    fn retry_delays_follow_the_backoff_and_stay_at_its_last_step() {
        let b = [1, 5, 30];
        assert_eq!(retry_delay(&b, 1), Duration::from_secs(1));
        assert_eq!(retry_delay(&b, 2), Duration::from_secs(5));
        assert_eq!(retry_delay(&b, 9), Duration::from_secs(30));
        assert_eq!(retry_delay(&[], 1), Duration::from_secs(5));
    }
}
