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
use sanyu_events::NotificationReason;
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
    /// `<public base url>/a/<token>`: the acknowledgement link, when the
    /// notice has one (a case notice and a data key).
    pub ack_link: String,
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
            ack_link: String::new(),
            occurred_at: occurred_at.with_timezone(&tz).fixed_offset(),
        }
    }

    /// With the acknowledgement link of `token` (none: no link).
    pub fn with_ack_token(mut self, base_url: &str, token: Option<&str>) -> Self {
        if let Some(token) = token {
            self.ack_link = format!(
                "{}{}{token}",
                base_url.trim_end_matches('/'),
                sanyu_store::ack_links::LINK_PREFIX
            );
        }
        self
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
    fn ack_link(&self) -> &str {
        &self.ack_link
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

/// The work-IM message about a case to a staff member.
pub fn staff_im(locale: Locale, facts: &Facts) -> Result<String, TemplateError> {
    sanyu_sms::render_staff_im(locale, facts)
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
/// Every reason has its own line; a request without a known reason never
/// gets here (the deliverer dead-letters it).
pub fn reason_line(reason: NotificationReason) -> &'static str {
    use NotificationReason as R;
    match reason {
        R::CaseOpened => "新的个案 / new case",
        R::Unacknowledged => "个案尚未确认，逐级上报 / case not yet acknowledged (escalation)",
        R::CaseReopened => "个案已重新打开 / case reopened",
        R::LevelChanged => "个案风险等级已调整 / case level changed",
        R::LevelRaised => "个案风险等级已升高 / case level raised",
        R::LadderAlarm => "预警升级流程异常 / escalation ladder alarm",
        R::FollowUpDue => "随访到期 / follow-up due",
        R::UnidentifiedCaller => {
            "热线来电：身份未识别的来电者，新的个案 / hotline: unidentified caller, new case"
        }
        R::ZeroReportDue => "零报告即将截止，尚未提交 / zero report due soon and not yet submitted",
        R::ZeroReportOverdue => "零报告已逾期未提交 / zero report overdue",
        R::ZeroReportEscalated => {
            "零报告逾期未提交，逐级上报 / zero report still missing (escalation)"
        }
        R::WatchFollowUpDue => {
            "重点关注学生随访到期 / a student on the key-population list is due for follow-up"
        }
        R::RoleGrantRequested => {
            "有人申请可查看个案的角色，须由领导或危机干预小组另一人确认 / a role that reads cases was asked for: a leader or crisis-team member (another person) must confirm or refuse it"
        }
        R::RoleGranted => {
            "可查看个案的角色已确认生效 / a role that reads cases was confirmed and is now in effect"
        }
        R::SignInCode => "三预 Sanyu 登录验证码 / sign-in code",
        R::NoActionAfterAck => {
            "个案已确认但尚无处置行动，逐级上报 / case acknowledged but no action recorded (escalation)"
        }
        R::CaseStale => {
            "个案多日无处置行动，请跟进 / no action on this case for days: please follow up"
        }
        R::AckConfirmed => "回复已确认个案 / your reply acknowledged the case",
        R::AckRefused => "回复未作更改 / your reply changed nothing",
        R::Unspecified => GENERIC_LINE,
    }
}

/// The line of no reason: never sent (see [`reason_line`]).
pub const GENERIC_LINE: &str = "三预通知 / Sanyu notice";

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
    reason: NotificationReason,
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

/// The email of a digest: every notice with its reference, level, what it is
/// about and its link, and the queue's link.
pub fn digest_email(
    locale: Locale,
    digest: &sanyu_sms::DigestFacts<'_>,
    from: &Mailbox,
    to: &str,
    message_id: String,
) -> Result<Message, ComposeError> {
    let rendered = sanyu_sms::render_digest_email(locale, digest)?;
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
    use super::{GENERIC_LINE, NotificationReason, reason_line};

    #[test]
    fn every_reason_line_passes_the_deny_list() {
        // The lines of case notices go into the staff email beside the
        // templates' text (notices about no case have their own body).
        let all = NotificationReason::ALL
            .into_iter()
            .filter(|r| r.is_about_a_case())
            .chain([NotificationReason::Unspecified]);
        for reason in all {
            let line = reason_line(reason).to_lowercase();
            for word in sanyu_sms::templates::denied_words(sanyu_sms::Audience::Staff) {
                assert!(!line.contains(word), "{reason:?}: {word}");
            }
        }
    }

    #[test]
    fn every_known_reason_has_a_line_of_its_own() {
        let mut seen = std::collections::HashSet::new();
        for reason in NotificationReason::ALL {
            let line = reason_line(reason);
            assert_ne!(line, GENERIC_LINE, "{reason:?}");
            assert!(seen.insert(line), "{reason:?} shares its line");
        }
    }
}
