//! Why a person is told: [`NotificationReason`] (the proto enum) and the one
//! mapping between it and the names requests carried before the enum
//! (`case_opened`, `zero_report_due`, ...), which also stay the names
//! notification keys and the delivery log use. Producers pass the enum; the
//! name is written beside the code for notifiers of the previous release.

pub use crate::v1::NotificationReason;
use crate::v1::NotificationRequested;

impl NotificationReason {
    /// Every reason a request may carry (not `Unspecified`).
    pub const ALL: [NotificationReason; 19] = [
        Self::CaseOpened,
        Self::LevelRaised,
        Self::LevelChanged,
        Self::CaseReopened,
        Self::Unacknowledged,
        Self::LadderAlarm,
        Self::FollowUpDue,
        Self::UnidentifiedCaller,
        Self::ZeroReportDue,
        Self::ZeroReportOverdue,
        Self::ZeroReportEscalated,
        Self::WatchFollowUpDue,
        Self::RoleGrantRequested,
        Self::RoleGranted,
        Self::SignInCode,
        Self::NoActionAfterAck,
        Self::CaseStale,
        Self::AckConfirmed,
        Self::AckRefused,
    ];

    /// The reason's name, as in the request's `reason` string field.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "",
            Self::CaseOpened => "case_opened",
            Self::LevelRaised => "level_raised",
            Self::LevelChanged => "level_changed",
            Self::CaseReopened => "case_reopened",
            Self::Unacknowledged => "unacknowledged",
            Self::LadderAlarm => "ladder_alarm",
            Self::FollowUpDue => "follow_up_due",
            Self::UnidentifiedCaller => "unidentified_caller",
            Self::ZeroReportDue => "zero_report_due",
            Self::ZeroReportOverdue => "zero_report_overdue",
            Self::ZeroReportEscalated => "zero_report_escalated",
            Self::WatchFollowUpDue => "watch_follow_up_due",
            Self::RoleGrantRequested => "role_grant_requested",
            Self::RoleGranted => "role_granted",
            Self::SignInCode => "sign_in_code",
            Self::NoActionAfterAck => "no_action_after_ack",
            Self::CaseStale => "case_stale",
            Self::AckConfirmed => "ack_confirmed",
            Self::AckRefused => "ack_refused",
        }
    }

    /// The reason named `name`; `None` for a name no reason has.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether the notice is about a case (its request carries a case id).
    pub const fn is_about_a_case(self) -> bool {
        matches!(
            self,
            Self::CaseOpened
                | Self::LevelRaised
                | Self::LevelChanged
                | Self::CaseReopened
                | Self::Unacknowledged
                | Self::LadderAlarm
                | Self::FollowUpDue
                | Self::UnidentifiedCaller
                | Self::NoActionAfterAck
                | Self::CaseStale
        )
    }
}

impl NotificationReason {
    /// Whether the notice asks a person to act on a case now (a case opened,
    /// raised or reopened, a rung nobody acknowledged, an alarm, an
    /// acknowledged crisis without a first action): the notices worth a
    /// voice call when the level's channels include one. Reminders and
    /// information are not.
    pub const fn is_alarm(self) -> bool {
        matches!(
            self,
            Self::CaseOpened
                | Self::LevelRaised
                | Self::CaseReopened
                | Self::Unacknowledged
                | Self::LadderAlarm
                | Self::UnidentifiedCaller
                | Self::NoActionAfterAck
        )
    }
}

/// The `reason_code` and `reason` fields of a new request for `reason`: the
/// enum, and its name beside it for notifiers of the previous release.
pub fn reason_fields(reason: NotificationReason) -> (i32, String) {
    (reason as i32, reason.name().to_owned())
}

/// A request that `recipient` (a staff id) be told on `channel`, at `level`,
/// for `reason`, once per `key`. What only some requests carry (the case,
/// its reference, the rung, a sign-in code or link, a reply's outcome) is
/// empty: set it with `..` where a request has it.
pub fn notification_request(
    key: String,
    recipient: impl ToString,
    channel: super::v1::Channel,
    level: sanyu_domain::RiskLevel,
    reason: NotificationReason,
) -> NotificationRequested {
    let (reason_code, reason) = reason_fields(reason);
    NotificationRequested {
        notification_key: key,
        recipient_staff_id: recipient.to_string(),
        channel: channel as i32,
        level: super::level_to_proto(level) as i32,
        reason,
        reason_code,
        ..NotificationRequested::default()
    }
}

/// The event id of the notification request with `key`.
pub fn notification_event_id(key: &str) -> String {
    format!("notify.requested:{key}")
}

/// Why `req` is sent: its `reason_code`; for a request written before that
/// field (or by a producer that knows a newer reason than this reader), the
/// name in `reason`. `None` when neither names a reason this build knows.
pub fn reason_of(req: &NotificationRequested) -> Option<NotificationReason> {
    match NotificationReason::try_from(req.reason_code) {
        Ok(NotificationReason::Unspecified) | Err(_) => NotificationReason::from_name(&req.reason),
        Ok(known) => Some(known),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alarm_is_about_a_case_and_reminders_are_not_alarms() {
        for r in NotificationReason::ALL {
            assert!(!r.is_alarm() || r.is_about_a_case(), "{r:?}");
        }
        assert!(!NotificationReason::FollowUpDue.is_alarm());
        assert!(!NotificationReason::CaseStale.is_alarm());
        assert!(NotificationReason::Unacknowledged.is_alarm());
    }

    #[test]
    fn every_reason_round_trips_through_its_name() {
        for r in NotificationReason::ALL {
            assert!(!r.name().is_empty());
            assert_eq!(NotificationReason::from_name(r.name()), Some(r));
        }
        assert_eq!(NotificationReason::from_name(""), None);
        assert_eq!(NotificationReason::from_name("anything else"), None);
    }

    #[test]
    fn all_lists_every_value_of_the_proto_enum_once() {
        let mut seen = std::collections::HashSet::new();
        for v in 1..64 {
            if let Ok(r) = NotificationReason::try_from(v) {
                assert!(
                    NotificationReason::ALL.contains(&r),
                    "{r:?} missing from ALL"
                );
                seen.insert(r);
            }
        }
        assert_eq!(seen.len(), NotificationReason::ALL.len());
    }

    #[test]
    fn a_request_is_read_by_its_code_then_by_its_old_name() {
        let mut req = NotificationRequested {
            reason: "case_opened".into(),
            ..Default::default()
        };
        assert_eq!(reason_of(&req), Some(NotificationReason::CaseOpened));
        req.reason_code = NotificationReason::LadderAlarm as i32;
        assert_eq!(reason_of(&req), Some(NotificationReason::LadderAlarm));
        // A code this build does not know falls back to the name.
        req.reason_code = 999;
        assert_eq!(reason_of(&req), Some(NotificationReason::CaseOpened));
    }

    #[test]
    fn an_unknown_or_missing_reason_is_no_reason() {
        let mut req = NotificationRequested::default();
        assert_eq!(reason_of(&req), None);
        req.reason = "no_such_reason".into();
        assert_eq!(reason_of(&req), None);
        req.reason_code = 999;
        assert_eq!(reason_of(&req), None);
    }

    #[test]
    fn new_requests_carry_the_code_and_the_name() {
        assert_eq!(
            reason_fields(NotificationReason::ZeroReportDue),
            (
                NotificationReason::ZeroReportDue as i32,
                "zero_report_due".to_owned()
            )
        );
    }
}
