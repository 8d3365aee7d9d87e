//! How a code goes to its person, and the address it went to.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::ConsoleKey;
use crate::Result;
use crate::entities::{console_sign_in_code, staff};

/// How a code goes to its person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeChannel {
    Email,
    Sms,
}

impl CodeChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    /// `sms` is SMS; anything else is email (the default).
    pub fn parse(s: &str) -> Self {
        if s.trim() == "sms" {
            Self::Sms
        } else {
            Self::Email
        }
    }
}

/// The channel a code for `person` goes by: the one asked for when the person
/// can be reached on it, else the other one they can be reached on (SMS only
/// when the deployment has an SMS provider); `None` when neither.
pub fn pick_channel(
    person: &staff::Model,
    wanted: CodeChannel,
    sms_enabled: bool,
) -> Option<CodeChannel> {
    let has = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    let email = has(&person.email);
    let sms = sms_enabled && has(&person.phone);
    match wanted {
        CodeChannel::Sms if sms => Some(CodeChannel::Sms),
        _ if email => Some(CodeChannel::Email),
        _ if sms => Some(CodeChannel::Sms),
        _ => None,
    }
}

/// The address a code for `person` goes to on `channel`.
pub(super) fn address_of(person: &staff::Model, channel: CodeChannel) -> Option<&str> {
    match channel {
        CodeChannel::Sms => person.phone.as_deref(),
        CodeChannel::Email => person.email.as_deref(),
    }
    .filter(|a| !a.trim().is_empty())
}

/// A code (or link) of challenge `row`, sent to `person` on `channel`, was
/// used: the address it went to is verified, while it is still theirs (an
/// address the roster changed since the send is not).
pub(super) async fn mark_verified(
    txn: &impl ConnectionTrait,
    key: &ConsoleKey,
    row: &console_sign_in_code::Model,
    person: &staff::Model,
    channel: CodeChannel,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(address) = address_of(person, channel) else {
        return Ok(());
    };
    if row.sent_to_hash.as_deref() != Some(&key.sent_to_hash(row.id, channel, address)) {
        return Ok(());
    }
    let channel = match channel {
        CodeChannel::Sms => crate::contacts::SMS,
        CodeChannel::Email => crate::contacts::EMAIL,
    };
    crate::contacts::record(txn, person.id, channel, address, now).await
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn person(email: Option<&str>, phone: Option<&str>) -> staff::Model {
        staff::Model {
            id: Uuid::now_v7(),
            school_id: Uuid::now_v7(),
            staff_no: "K1".into(),
            name: "K".into(),
            role: "counsellor".into(),
            class_id: None,
            phone: phone.map(str::to_owned),
            email: email.map(str::to_owned),
            active: true,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_code_goes_by_the_channel_asked_for_when_the_person_has_it_else_the_other() {
        use CodeChannel::{Email, Sms};
        let both = person(Some("k@x.test"), Some("13900000003"));
        let email_only = person(Some("k@x.test"), None);
        let phone_only = person(None, Some("13900000003"));
        let neither = person(Some(" "), Some(""));
        assert_eq!(pick_channel(&both, Sms, true), Some(Sms));
        assert_eq!(pick_channel(&both, Email, true), Some(Email));
        // No SMS provider: email, whatever was asked.
        assert_eq!(pick_channel(&both, Sms, false), Some(Email));
        assert_eq!(pick_channel(&email_only, Sms, true), Some(Email));
        assert_eq!(pick_channel(&phone_only, Email, true), Some(Sms));
        assert_eq!(pick_channel(&phone_only, Sms, false), None);
        assert_eq!(pick_channel(&neither, Sms, true), None);
    }
}
