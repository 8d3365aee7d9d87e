//! The dead-letter recorder: turns the DEADLETTER stream (copies of terminated
//! messages and the server's max-deliveries advisories) into rows a human sees
//! through the API.

use sanyu_events::subjects::{DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM};
use sanyu_store::Db;
use sanyu_store::dead_letters::{self, NewDeadLetter};
use serde::Deserialize;

use crate::consumer::{
    DLQ_CONSUMER, DLQ_DELIVERIES, DLQ_EVENT_ID, DLQ_REASON, DLQ_SEQ, DLQ_STREAM, DLQ_SUBJECT,
    Delivery, Handler, Outcome,
};
use crate::nats::{Backbone, ConsumerSpec, Ordering};

pub fn spec() -> ConsumerSpec {
    ConsumerSpec {
        stream: DEAD_LETTER_STREAM,
        durable: "dead-letter-recorder",
        filter_subject: String::new(),
        lanes: 1,
        max_batch: 1,
        ordering: Ordering::BySubject,
    }
}

pub struct DeadLetterRecorder {
    pub db: Db,
    pub backbone: Backbone,
}

/// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES` body.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: i64,
}

impl Handler for DeadLetterRecorder {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let record = if d.subject.starts_with(DEAD_LETTER_PREFIX) {
            let stream = d.header(DLQ_STREAM).unwrap_or("?").to_owned();
            let consumer = d.header(DLQ_CONSUMER).unwrap_or("?").to_owned();
            let seq = d.header(DLQ_SEQ).and_then(|s| s.parse::<i64>().ok());
            NewDeadLetter {
                source_key: format!("{stream}:{consumer}:{}", seq.unwrap_or(-1)),
                stream,
                consumer,
                stream_seq: seq,
                subject: d.header(DLQ_SUBJECT).map(str::to_owned),
                event_id: d.header(DLQ_EVENT_ID).map(str::to_owned),
                reason: d.header(DLQ_REASON).unwrap_or("rejected").to_owned(),
                deliveries: d.header(DLQ_DELIVERIES).and_then(|s| s.parse().ok()),
            }
        } else {
            let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&d.payload) else {
                return Outcome::Reject("unreadable advisory".into());
            };
            // Find what the message was, so the dead letter names it.
            let (subject, event_id) = match self.backbone.js.get_stream(&advisory.stream).await {
                Ok(stream) => match stream.get_raw_message(advisory.stream_seq).await {
                    Ok(m) => (
                        Some(m.subject.to_string()),
                        m.headers
                            .get(async_nats::header::NATS_MESSAGE_ID)
                            .map(|v| v.as_str().to_owned()),
                    ),
                    Err(_) => (None, None),
                },
                Err(_) => (None, None),
            };
            NewDeadLetter {
                source_key: format!(
                    "{}:{}:{}",
                    advisory.stream, advisory.consumer, advisory.stream_seq
                ),
                stream: advisory.stream,
                consumer: advisory.consumer,
                stream_seq: i64::try_from(advisory.stream_seq).ok(),
                subject,
                event_id,
                reason: format!(
                    "not acknowledged after {} deliveries (consumer crashed or timed out on it)",
                    advisory.deliveries
                ),
                deliveries: Some(advisory.deliveries),
            }
        };
        tracing::error!(
            stream = %record.stream,
            consumer = %record.consumer,
            stream_seq = record.stream_seq,
            "dead letter recorded: needs a human"
        );
        let stored: Result<(), sanyu_store::StoreError> = async {
            let txn = sanyu_store::begin_write(&self.db).await?;
            dead_letters::record(&*txn, record).await?;
            txn.commit().await?;
            Ok(())
        }
        .await;
        match stored {
            Ok(()) => Outcome::Ack,
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}
