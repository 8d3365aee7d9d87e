//! Sanyu's events: the generated protobuf types of `proto/`, the streams and
//! subjects they travel on, and the envelope helpers every service shares.

use chrono::{DateTime, Utc};
use prost::Message;
use sanyu_domain::RiskLevel;

/// Generated from `proto/sanyu/events/v1/events.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/sanyu.events.v1.rs"));
}

pub mod reason;
pub mod subjects;

pub use reason::{
    NotificationReason, notification_event_id, notification_request, reason_fields, reason_of,
};

pub use v1::Envelope;
pub use v1::envelope::Payload;

/// An event that cannot be decoded. Never retried: it goes to the dead letters.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a sanyu.events.v1.Envelope: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("envelope has no payload")]
    MissingPayload,
    #[error("envelope field `{0}` is missing or invalid")]
    InvalidField(&'static str),
}

/// Encode an envelope for the wire.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    envelope.encode_to_vec()
}

/// Decode an envelope and check the fields every consumer relies on.
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let envelope = Envelope::decode(bytes)?;
    if envelope.event_id.is_empty() {
        return Err(DecodeError::InvalidField("event_id"));
    }
    if envelope.payload.is_none() {
        return Err(DecodeError::MissingPayload);
    }
    Ok(envelope)
}

/// The kind string of a payload (mirrors the `oneof` arm).
pub fn kind_of(payload: &Payload) -> &'static str {
    match payload {
        Payload::ScreeningResult(_) => "screening.result_recorded",
        Payload::ScreeningBatch(_) => "screening.result_batch",
        Payload::ReportSubmitted(_) => "report.submitted",
        Payload::HotlineCall(_) => "hotline.call_logged",
        Payload::ZeroReport(_) => "zero_report.submitted",
        Payload::CaseOpened(_) => "case.opened",
        Payload::CaseEscalated(_) => "case.escalated",
        Payload::CaseAcknowledged(_) => "case.acknowledged",
        Payload::CaseClosed(_) => "case.closed",
        Payload::CaseSignalAttached(_) => "case.signal_attached",
        Payload::CaseAction(_) => "case.action_recorded",
        Payload::NotificationRequested(_) => "notification.requested",
        Payload::NotificationResult(_) => "notification.result",
    }
}

/// Build an envelope around a payload.
pub fn envelope(
    event_id: impl Into<String>,
    occurred_at: DateTime<Utc>,
    school: impl Into<String>,
    partition: u32,
    payload: Payload,
) -> Envelope {
    Envelope {
        event_id: event_id.into(),
        kind: kind_of(&payload).to_owned(),
        occurred_at: Some(timestamp(occurred_at)),
        school: school.into(),
        partition,
        trace: None,
        payload: Some(payload),
    }
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

pub fn level_to_proto(level: RiskLevel) -> v1::RiskLevel {
    match level {
        RiskLevel::Watch => v1::RiskLevel::Watch,
        RiskLevel::Elevated => v1::RiskLevel::Elevated,
        RiskLevel::High => v1::RiskLevel::High,
        RiskLevel::Critical => v1::RiskLevel::Critical,
    }
}

/// Map a wire level back to the domain; `None` for unspecified or unknown values.
pub fn level_from_proto(value: i32) -> Option<RiskLevel> {
    match v1::RiskLevel::try_from(value).ok()? {
        v1::RiskLevel::Unspecified => None,
        v1::RiskLevel::Watch => Some(RiskLevel::Watch),
        v1::RiskLevel::Elevated => Some(RiskLevel::Elevated),
        v1::RiskLevel::High => Some(RiskLevel::High),
        v1::RiskLevel::Critical => Some(RiskLevel::Critical),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_and_names_its_kind() {
        let e = envelope(
            "report:1",
            Utc::now(),
            "S001",
            3,
            Payload::ReportSubmitted(v1::ReportSubmitted {
                report_id: "r".into(),
                student_id: "s".into(),
                suggested_level: level_to_proto(RiskLevel::High) as i32,
                ..Default::default()
            }),
        );
        let back = decode(&encode(&e)).expect("decodes");
        assert_eq!(back, e);
        assert_eq!(back.kind, "report.submitted");
    }

    #[test]
    fn garbage_and_empty_envelopes_are_rejected() {
        assert!(decode(b"\xff\xff\xff not protobuf").is_err());
        assert!(matches!(
            decode(&encode(&Envelope::default())),
            Err(DecodeError::InvalidField("event_id"))
        ));
    }

    #[test]
    fn levels_map_both_ways() {
        for l in RiskLevel::ALL {
            assert_eq!(level_from_proto(level_to_proto(l) as i32), Some(l));
        }
        assert_eq!(level_from_proto(0), None);
        assert_eq!(level_from_proto(99), None);
    }
}
