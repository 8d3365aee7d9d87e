//! What the notifier says: the facts of one notification, read only through
//! `sanyu_sms::NotificationFacts`, and the email and SMS rendered from them by
//! `sanyu-sms`'s templates (which refuse denied words). The student's name,
//! the narrative and any score are not even loaded.

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use sanyu_domain::RiskLevel;
use sanyu_sms::{
    AlertLevel, Audience, Locale, NotificationFacts, RenderedSms, TemplateError, render_sms,
    render_staff_email,
};

/// The facts a staff message may carry: school, case reference, level, link, time.
#[derive(Debug, Clone)]
pub struct Facts {
    pub school_name: String,
    pub case_reference: String,
    pub level: AlertLevel,
    pub case_link: String,
    pub occurred_at: DateTime<FixedOffset>,
}

impl Facts {
    pub fn new(
        school_name: &str,
        case_reference: &str,
        level: RiskLevel,
        base_url: &str,
        case_id: &str,
        occurred_at: DateTime<Utc>,
        tz: Tz,
    ) -> Self {
        Self {
            school_name: school_name.to_owned(),
            case_reference: case_reference.to_owned(),
            level: match level {
                RiskLevel::Critical => AlertLevel::Critical,
                RiskLevel::High => AlertLevel::High,
                RiskLevel::Elevated | RiskLevel::Watch => AlertLevel::Elevated,
            },
            case_link: format!("{}/cases/{case_id}", base_url.trim_end_matches('/')),
            occurred_at: occurred_at.with_timezone(&tz).fixed_offset(),
        }
    }
}

impl NotificationFacts for Facts {
    fn school_name(&self) -> &str {
        &self.school_name
    }
    fn case_reference(&self) -> &str {
        &self.case_reference
    }
    fn level(&self) -> AlertLevel {
        self.level
    }
    fn case_link(&self) -> &str {
        &self.case_link
    }
    fn occurred_at(&self) -> DateTime<FixedOffset> {
        self.occurred_at
    }
    // Staff messages only: the guardian's fields are never rendered here.
    fn counsellor_display_name(&self) -> &str {
        ""
    }
    fn counsellor_phone(&self) -> &str {
        ""
    }
}

/// The staff SMS.
pub fn staff_sms(locale: Locale, facts: &Facts) -> Result<RenderedSms, TemplateError> {
    render_sms(Audience::Staff, locale, facts)
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("recipient email address is not valid")]
    Address,
    #[error("email could not be built: {0}")]
    Build(String),
}

/// The staff email: subject and plain-text body from the templates, with the
/// case reference, level, time and the link.
/// Why a staff member is told, as a fixed line (a code's words, never data).
pub fn reason_line(reason: &str) -> &'static str {
    match reason {
        "case_opened" => "新的个案 / new case",
        "unacknowledged" => "个案尚未确认，逐级上报 / case not yet acknowledged (escalation)",
        "case_reopened" => "个案已重新打开 / case reopened",
        "level_changed" => "个案风险等级已调整 / case level changed",
        "level_raised" => "个案风险等级已升高 / case level raised",
        "ladder_alarm" => "预警升级流程异常 / escalation ladder alarm",
        "follow_up_due" => "随访到期 / follow-up due",
        "unidentified_caller" => {
            "热线来电：身份未识别的来电者，新的个案 / hotline: unidentified caller, new case"
        }
        _ => "三预通知 / Sanyu notice",
    }
}

/// The `Message-ID` of the email of delivery `key`: the same on every send
/// of that key (a retry, a takeover after a crash), so that a mail system can
/// recognise a second copy. A digest of the key, which carries only ids, at
/// the sender's domain.
pub fn message_id(key: &str, from: &Mailbox) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!(
        "<{}.sanyu@{}>",
        hex::encode(&digest[..16]),
        from.email.domain()
    )
}

pub fn staff_email(
    locale: Locale,
    facts: &Facts,
    from: &Mailbox,
    to: &str,
    reason: &str,
    message_id: String,
) -> Result<Message, ComposeError> {
    let mut rendered = render_staff_email(locale, facts)?;
    rendered.body = format!("{}\n\n{}", reason_line(reason), rendered.body);
    let to: Mailbox = to.trim().parse().map_err(|_| ComposeError::Address)?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .message_id(Some(message_id))
        .subject(rendered.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(rendered.body)
        .map_err(|e| ComposeError::Build(e.to_string()))
}

#[cfg(test)]
mod reason_tests {
    use super::reason_line;

    #[test]
    fn every_reason_line_passes_the_deny_list() {
        for reason in [
            "case_opened",
            "unacknowledged",
            "case_reopened",
            "level_changed",
            "level_raised",
            "ladder_alarm",
            "follow_up_due",
            "unidentified_caller",
            "anything else",
        ] {
            let line = reason_line(reason).to_lowercase();
            for word in sanyu_sms::templates::denied_words(sanyu_sms::Audience::Staff) {
                assert!(!line.contains(word), "{reason}: {word}");
            }
        }
    }
}
