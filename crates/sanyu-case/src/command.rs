//! What a person asks to do to a case, typed. The caller (the API, the
//! console) has already checked the shape of the request (lengths, control
//! characters, plausible dates of the fields it checks before loading the
//! case); the planner checks everything that depends on the case.

use chrono::{DateTime, NaiveDate, Utc};
use sanyu_domain::{CaseWork, Principal, RiskLevel};
use uuid::Uuid;

/// Free text about a student (a note, a reason, an outcome): sealed at rest
/// by the writer, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Who acts, and from where (the audit record's source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub principal: Principal,
    /// Where the request came from (peer address).
    pub source: String,
}

/// A guardian contact, or the recorded decision not to contact one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardianContact {
    pub contacted: bool,
    pub guardian_id: Option<Uuid>,
    pub at: Option<DateTime<Utc>>,
    /// `phone`, `in_person`, `sms`, `message`, `other`.
    pub channel: Option<String>,
    /// `reached`, `no_answer`, `declined`, `meeting_agreed`.
    pub outcome: Option<String>,
    pub reason: Option<Secret>,
}

/// A referral (转介), or an update of one (receipt, return assessment 复学评估).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    /// Set to update an earlier referral of the case.
    pub referral_id: Option<Uuid>,
    /// Trimmed.
    pub institution: Secret,
    pub referred_on: NaiveDate,
    pub receipt_confirmed: bool,
    /// The assessment date and its (trimmed) result.
    pub return_assessment: Option<(NaiveDate, Secret)>,
}

/// A follow-up planned, or one recorded as done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// Set to record that an earlier follow-up was done.
    pub follow_up_id: Option<Uuid>,
    pub due_at: Option<DateTime<Utc>>,
    pub outcome: Option<Secret>,
}

/// How an acknowledgement came: the timeline entry, the case event and the
/// audit record say it. Every door acknowledges with the same command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckChannel {
    /// `POST /v1/cases/{id}/acknowledge`.
    Api,
    /// The console's case page.
    Console,
    /// A reply ("1" or the case reference) to the case's SMS.
    SmsReply,
    /// The button of the page an SMS or email link (`/a/<token>`) opens.
    Link,
    /// A key pressed during a voice call.
    VoiceKey,
}

impl AckChannel {
    pub const ALL: [AckChannel; 5] = [
        Self::Api,
        Self::Console,
        Self::SmsReply,
        Self::Link,
        Self::VoiceKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Console => "console",
            Self::SmsReply => "sms_reply",
            Self::Link => "link",
            Self::VoiceKey => "voice_key",
        }
    }
}

impl std::fmt::Display for AckChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change a person makes to a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Someone has taken the case: the ladder stops. `via` is how it came.
    Acknowledge {
        via: AckChannel,
    },
    Assign {
        staff_id: Uuid,
    },
    Note {
        text: Secret,
    },
    ContactGuardian(GuardianContact),
    Refer(Referral),
    FollowUp(FollowUp),
    SetLevel {
        level: RiskLevel,
        reason: Secret,
    },
    Close {
        /// Trimmed.
        outcome: Secret,
        summary: Option<Secret>,
    },
    Reopen {
        reason: Secret,
    },
    /// Name the student of an unidentified caller's case; when the student
    /// has an open case already, the caller's case merges into it.
    LinkStudent {
        student_no: String,
    },
}

impl Command {
    /// The work this command is, for the access rule
    /// ([`Principal::may_work_case`]).
    pub fn work(&self, actor: &Principal) -> CaseWork {
        match self {
            Command::Acknowledge { .. } => CaseWork::Acknowledge,
            Command::Assign { staff_id } => CaseWork::Assign {
                to_self: actor.staff_id == Some(*staff_id),
            },
            Command::Note { .. }
            | Command::ContactGuardian(_)
            | Command::Refer(_)
            | Command::FollowUp(_) => CaseWork::Record,
            Command::SetLevel { .. } => CaseWork::ChangeLevel,
            Command::Close { .. } => CaseWork::Close,
            Command::Reopen { .. } => CaseWork::Reopen,
            Command::LinkStudent { .. } => CaseWork::LinkStudent,
        }
    }

    /// Whether it is an action on the case: what stops the ladder after an
    /// acknowledgement and keeps a case from going stale. A guardian contact
    /// or the recorded decision not to contact, a note, an assignment, a
    /// referral (or its update), a follow-up planned or done, a close. Not an
    /// acknowledgement (that is what must be followed by an action), a level
    /// change, a reopen, or naming a caller's student. The one rule: the
    /// planner applies it to every command.
    pub fn counts_as_action(&self) -> bool {
        match self {
            Command::ContactGuardian(_)
            | Command::Note { .. }
            | Command::Assign { .. }
            | Command::Refer(_)
            | Command::FollowUp(_)
            | Command::Close { .. } => true,
            Command::Acknowledge { .. }
            | Command::SetLevel { .. }
            | Command::Reopen { .. }
            | Command::LinkStudent { .. } => false,
        }
    }

    /// Whether planning it may (re)start a ladder (its snapshot then holds
    /// the school's reachable staff).
    pub fn may_start_ladder(&self) -> bool {
        matches!(
            self,
            Command::SetLevel { .. } | Command::Reopen { .. } | Command::LinkStudent { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_an_action_after_an_acknowledgement() {
        let s = || Secret::new("x");
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).expect("date");
        let actions = [
            Command::ContactGuardian(GuardianContact {
                contacted: false,
                guardian_id: None,
                at: None,
                channel: None,
                outcome: None,
                reason: Some(s()),
            }),
            Command::Note { text: s() },
            Command::Assign {
                staff_id: Uuid::nil(),
            },
            Command::Refer(Referral {
                referral_id: None,
                institution: s(),
                referred_on: day,
                receipt_confirmed: false,
                return_assessment: None,
            }),
            Command::FollowUp(FollowUp {
                follow_up_id: None,
                due_at: None,
                outcome: None,
            }),
            Command::Close {
                outcome: s(),
                summary: None,
            },
        ];
        for c in &actions {
            assert!(c.counts_as_action(), "{c:?}");
        }
        let not_actions = [
            Command::Acknowledge {
                via: AckChannel::Api,
            },
            Command::SetLevel {
                level: RiskLevel::Critical,
                reason: s(),
            },
            Command::Reopen { reason: s() },
            Command::LinkStudent {
                student_no: "S1".into(),
            },
        ];
        for c in &not_actions {
            assert!(!c.counts_as_action(), "{c:?}");
        }
    }
}
