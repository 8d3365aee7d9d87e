//! Every kind of durable timer, as one tagged enum the scheduler dispatches
//! on: parsed once from a `timers` row's `kind` and `payload`. The kinds and
//! payload JSON are the ones already stored in the field (a rung: `{case_id,
//! epoch, rung}`, ...); they are written by the case work (rungs, follow-ups),
//! the rules engine (watch reminders) and the scheduler (zero reports), and
//! must not change. It lives here because every writer of a timer depends on
//! this crate or on what it re-exports (`sanyu-case` for rungs and
//! follow-ups, `sanyu-domain` for zero reports), and the scheduler on it.

use sanyu_domain::zero_report::{ZERO_REPORT_TIMER, ZeroReportTimer};

use crate::{
    FOLLOW_UP_TIMER, FollowUpTimer, RUNG_TIMER, RungTimer, WATCH_FOLLOW_UP_TIMER, WatchTimer,
};

/// A due timer, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// The next rung of a case's escalation ladder.
    Rung(RungTimer),
    /// A case's follow-up reminder.
    FollowUp(FollowUpTimer),
    /// A watch-list follow-up reminder.
    Watch(WatchTimer),
    /// A zero-report reminder.
    ZeroReport(ZeroReportTimer),
}

/// A timer row that names no timer this build can fire.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("unknown timer kind `{0}`")]
    UnknownKind(String),
    #[error("unreadable payload: {0}")]
    Payload(#[from] serde_json::Error),
}

impl Timer {
    /// The timer stored as (`kind`, `payload`).
    pub fn parse(kind: &str, payload: &str) -> Result<Self, TimerError> {
        Ok(match kind {
            RUNG_TIMER => Self::Rung(serde_json::from_str(payload)?),
            FOLLOW_UP_TIMER => Self::FollowUp(serde_json::from_str(payload)?),
            WATCH_FOLLOW_UP_TIMER => Self::Watch(serde_json::from_str(payload)?),
            ZERO_REPORT_TIMER => Self::ZeroReport(serde_json::from_str(payload)?),
            other => return Err(TimerError::UnknownKind(other.to_owned())),
        })
    }

    /// The stored `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rung(_) => RUNG_TIMER,
            Self::FollowUp(_) => FOLLOW_UP_TIMER,
            Self::Watch(_) => WATCH_FOLLOW_UP_TIMER,
            Self::ZeroReport(_) => ZERO_REPORT_TIMER,
        }
    }

    /// The stored `payload` (JSON).
    pub fn payload(&self) -> Result<String, serde_json::Error> {
        match self {
            Self::Rung(t) => serde_json::to_string(t),
            Self::FollowUp(t) => serde_json::to_string(t),
            Self::Watch(t) => serde_json::to_string(t),
            Self::ZeroReport(t) => serde_json::to_string(t),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use sanyu_domain::zero_report::Stage;
    use uuid::Uuid;

    /// Rows as they are stored in the field: kind and payload must keep parsing.
    #[test]
    fn timers_already_stored_parse_to_their_kind() {
        let id = "0190a5e4-7c3b-7000-8000-000000000001";
        let uuid = Uuid::parse_str(id).unwrap();
        let rows = [
            (
                "escalation_rung",
                format!(r#"{{"case_id":"{id}","epoch":2,"rung":1}}"#),
                Timer::Rung(RungTimer {
                    case_id: uuid,
                    epoch: 2,
                    rung: 1,
                }),
            ),
            (
                "follow_up_due",
                format!(r#"{{"follow_up_id":"{id}"}}"#),
                Timer::FollowUp(FollowUpTimer { follow_up_id: uuid }),
            ),
            (
                "watch_follow_up",
                format!(r#"{{"watch_id":"{id}","on":"2026-12-07"}}"#),
                Timer::Watch(WatchTimer {
                    watch_id: uuid,
                    on: chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
                }),
            ),
            (
                "zero_report_due",
                format!(r#"{{"period_id":"P1","school_id":"{id}","stage":"overdue","secs":3600}}"#),
                Timer::ZeroReport(ZeroReportTimer {
                    period_id: "P1".into(),
                    school_id: uuid,
                    stage: Stage::Overdue,
                    secs: 3600,
                }),
            ),
        ];
        for (kind, payload, expected) in rows {
            let t = Timer::parse(kind, &payload).unwrap();
            assert_eq!(t, expected);
            // Written back, it is the same row.
            assert_eq!(t.kind(), kind);
            assert_eq!(t.payload().unwrap(), payload);
        }
    }

    #[test]
    fn an_unknown_kind_or_an_unreadable_payload_is_an_error_that_says_which() {
        let e = Timer::parse("sms_retry", "{}").unwrap_err();
        assert_eq!(e.to_string(), "unknown timer kind `sms_retry`");
        let e = Timer::parse("escalation_rung", "{not json").unwrap_err();
        assert!(e.to_string().starts_with("unreadable payload: "), "{e}");
        assert!(Timer::parse("follow_up_due", r#"{"case_id":"x"}"#).is_err());
    }
}
