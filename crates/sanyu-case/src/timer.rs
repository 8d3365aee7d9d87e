//! Every kind of durable timer, as one tagged enum: its writers build a
//! [`Timer`] and schedule it with [`Timer::at`]; the scheduler parses a
//! `timers` row back ([`Timer::parse`]) and dispatches on it. The kinds, keys
//! and payload JSON are the ones already stored in the field (a rung:
//! `{case_id, epoch, rung}`, ...) and must not change. It lives here because
//! every writer of a timer depends on this crate: the case work (rungs,
//! follow-ups), the rules engine (watch reminders, through
//! `sanyu-escalation`, which re-exports it) and the scheduler (zero reports).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sanyu_domain::zero_report::{ZERO_REPORT_TIMER, ZeroReportTimer};
use sanyu_store::entities::watch_entry;
use sanyu_store::timers::NewTimer;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::after_ack::{ACTION_TIMER, ActionTimer, STALE_TIMER, StaleTimer};
use crate::ladder::{FOLLOW_UP_TIMER, FollowUpTimer, RUNG_TIMER, RungTimer};

/// Timer kind of a watch-list follow-up reminder.
pub const WATCH_FOLLOW_UP_TIMER: &str = "watch_follow_up";

/// The payload of a watch-list follow-up timer: the entry and the follow-up
/// date it was set for (a date brought forward gets a timer of its own; the
/// old one then finds the date changed and does nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchTimer {
    pub watch_id: Uuid,
    pub on: NaiveDate,
}

impl WatchTimer {
    /// The reminder of a watch entry, due on its follow-up date at 00:00 UTC
    /// (08:00 in China), scheduled once per entry and date.
    pub fn of(entry: &watch_entry::Model) -> Result<NewTimer, serde_json::Error> {
        Timer::Watch(WatchTimer {
            watch_id: entry.id,
            on: entry.follow_up_on,
        })
        .at(entry.follow_up_on.and_time(NaiveTime::MIN).and_utc(), None)
    }
}

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
    /// A rung of the ladder after an acknowledgement without action.
    AfterAck(ActionTimer),
    /// A reminder of a case nobody acted on for the level's days.
    Stale(StaleTimer),
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
            ACTION_TIMER => Self::AfterAck(serde_json::from_str(payload)?),
            STALE_TIMER => Self::Stale(serde_json::from_str(payload)?),
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
            Self::AfterAck(_) => ACTION_TIMER,
            Self::Stale(_) => STALE_TIMER,
        }
    }

    /// The stored `key`: a timer is scheduled once per key.
    pub fn key(&self) -> String {
        match self {
            Self::Rung(t) => t.key(),
            Self::FollowUp(t) => format!("follow_up:{}", t.follow_up_id),
            Self::Watch(t) => format!("watch:{}:{}", t.watch_id, t.on),
            Self::ZeroReport(t) => t.key(),
            Self::AfterAck(t) => t.key(),
            Self::Stale(t) => t.key(),
        }
    }

    /// The row that schedules this timer at `due_at` (`case_id` for a
    /// case's timers, which a stop or restart of its ladder cancels).
    pub fn at(
        &self,
        due_at: DateTime<Utc>,
        case_id: Option<Uuid>,
    ) -> Result<NewTimer, serde_json::Error> {
        Ok(NewTimer {
            key: self.key(),
            kind: self.kind().to_owned(),
            case_id,
            due_at,
            payload: self.payload()?,
        })
    }

    /// The stored `payload` (JSON).
    pub fn payload(&self) -> Result<String, serde_json::Error> {
        match self {
            Self::Rung(t) => serde_json::to_string(t),
            Self::FollowUp(t) => serde_json::to_string(t),
            Self::Watch(t) => serde_json::to_string(t),
            Self::ZeroReport(t) => serde_json::to_string(t),
            Self::AfterAck(t) => serde_json::to_string(t),
            Self::Stale(t) => serde_json::to_string(t),
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
        let keys = [
            format!("ladder:{id}:e2:r1"),
            format!("follow_up:{id}"),
            format!("watch:{id}:2026-12-07"),
            format!("zero:P1:{id}:overdue:3600"),
        ];
        for ((kind, payload, expected), key) in rows.into_iter().zip(keys) {
            let t = Timer::parse(kind, &payload).unwrap();
            assert_eq!(t, expected);
            // Written back, it is the same row.
            assert_eq!(t.kind(), kind);
            assert_eq!(t.payload().unwrap(), payload);
            let due = chrono::Utc::now();
            let row = t.at(due, None).unwrap();
            assert_eq!(
                (row.key.as_str(), row.kind.as_str(), row.payload.as_str()),
                (key.as_str(), kind, payload.as_str())
            );
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
