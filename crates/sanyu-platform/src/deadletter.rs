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

impl DeadLetterRecorder {
    /// The school a dead message belongs to: the school code in its body (the
    /// envelope), looked up in the roster. Never its subject: a subject says
    /// where a message went, not whose it is. `None` when the body cannot be
    /// read or names no known school; then only a deployment-level admin sees
    /// it. A database error is an error (the message is retried).
    async fn school_of(
        &self,
        payload: &[u8],
    ) -> Result<Option<uuid::Uuid>, sanyu_store::StoreError> {
        let Ok(envelope) = sanyu_events::decode(payload) else {
            return Ok(None);
        };
        if envelope.school.is_empty() {
            return Ok(None);
        }
        Ok(
            sanyu_store::roster::school_by_code(&self.db, &envelope.school)
                .await?
                .map(|s| s.id),
        )
    }
}

impl Handler for DeadLetterRecorder {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let record = if d.subject.starts_with(DEAD_LETTER_PREFIX) {
            let stream = d.header(DLQ_STREAM).unwrap_or("?").to_owned();
            let consumer = d.header(DLQ_CONSUMER).unwrap_or("?").to_owned();
            let seq = d.header(DLQ_SEQ).and_then(|s| s.parse::<i64>().ok());
            let school_id = match self.school_of(&d.payload).await {
                Ok(id) => id,
                Err(e) => return Outcome::Retry(e.to_string()),
            };
            NewDeadLetter {
                school_id,
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
            let (subject, event_id, payload) =
                match self.backbone.js.get_stream(&advisory.stream).await {
                    Ok(stream) => match stream.get_raw_message(advisory.stream_seq).await {
                        Ok(m) => (
                            Some(m.subject.to_string()),
                            m.headers
                                .get(async_nats::header::NATS_MESSAGE_ID)
                                .map(|v| v.as_str().to_owned()),
                            Some(m.payload),
                        ),
                        Err(_) => (None, None, None),
                    },
                    Err(_) => (None, None, None),
                };
            let school_id = match &payload {
                Some(p) => match self.school_of(p).await {
                    Ok(id) => id,
                    Err(e) => return Outcome::Retry(e.to_string()),
                },
                None => None,
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
                school_id,
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
