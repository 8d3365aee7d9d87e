//! What a notice about no case and a sign-in code say (the case alerts are
//! rendered by `crate::message`).

use super::*;

impl Deliverer {
    /// A console sign-in code: the request carries it sealed with the data
    /// key (in `sign_in_code`; requests queued before that field, in the
    /// reference field), so that the outbox row and the NOTIFY stream never
    /// hold it in clear; it is opened only to write this email.
    pub(super) fn compose_sign_in_code(
        &self,
        to: &str,
        req: &v1::NotificationRequested,
        message_id: String,
    ) -> Result<Message, String> {
        use lettre::message::header::ContentType;
        let sealer = self
            .sealer
            .as_ref()
            .ok_or("no data key: a sign-in code cannot be opened")?;
        let sealed = if req.sign_in_code.is_empty() {
            &req.case_reference
        } else {
            &req.sign_in_code
        };
        let code = sanyu_store::console::open_code(sealer, sealed).map_err(|e| e.to_string())?;
        let minutes = sanyu_store::console::CODE_TTL_MINUTES;
        // The one-time link of the same challenge, when the console sent one.
        let link = if req.sign_in_link.is_empty() {
            String::new()
        } else {
            let token = sanyu_store::console::open_code(sealer, &req.sign_in_link)
                .map_err(|e| e.to_string())?;
            format!(
                "或打开下面的一次性登录链接（同样 {minutes} 分钟内有效，只能使用一次）：\n\
                 Or open this one-time sign-in link (also valid for {minutes} minutes, once):\n\n\
                 {}/sign-in/link/{token}\n\n",
                self.base_url
            )
        };
        let body = format!(
            "三预 Sanyu 登录验证码 / sign-in code:\n\n    {code}\n\n\
             {link}\
             {minutes} 分钟内有效，只能使用一次。如果不是您本人申请，请忽略本邮件。\n\
             Valid for {minutes} minutes, once. If you did not ask for it, ignore this message.\n"
        );
        Message::builder()
            .from(self.from.clone())
            .to(to
                .parse()
                .map_err(|e: lettre::address::AddressError| e.to_string())?)
            .message_id(Some(message_id))
            .subject("[Sanyu 三预] 登录验证码 / sign-in code")
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())
    }

    /// The SMS of a console sign-in code: the code (opened from the request)
    /// and how long it holds; no link, no case, no name.
    pub(super) fn sign_in_sms(
        &self,
        req: &v1::NotificationRequested,
    ) -> Result<sanyu_sms::RenderedSms, String> {
        let sealer = self
            .sealer
            .as_ref()
            .ok_or("no data key: a sign-in code cannot be opened")?;
        let code = sanyu_store::console::open_code(sealer, &req.sign_in_code)
            .map_err(|e| e.to_string())?;
        sanyu_sms::render_sign_in_sms(
            self.policy.locale,
            &code,
            sanyu_store::console::CODE_TTL_MINUTES,
        )
        .map_err(|e| e.to_string())
    }

    /// The answer to a staff member's SMS reply: the outcome (the request's
    /// `ack_outcome`; `confirmed` for `AckConfirmed`) and the case
    /// reference(s) it is about (`case_reference`, comma-separated for an
    /// ambiguous reply). No link, no school, no level.
    pub(super) fn ack_reply_sms(
        &self,
        req: &v1::NotificationRequested,
        reason: NotificationReason,
    ) -> Result<sanyu_sms::RenderedSms, String> {
        use sanyu_sms::AckReplyOutcome as O;
        let outcome = if reason == NotificationReason::AckConfirmed {
            O::Confirmed
        } else {
            O::parse(&req.ack_outcome).unwrap_or(O::Unreadable)
        };
        let refs: Vec<String> = req
            .case_reference
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        let case_ref = match outcome {
            O::Confirmed | O::AlreadyAcknowledged => refs.first().map(String::as_str),
            _ => None,
        };
        let listed: &[String] = if outcome == O::Ambiguous { &refs } else { &[] };
        sanyu_sms::render_ack_reply_sms(self.policy.locale, outcome, case_ref, listed)
            .map_err(|e| e.to_string())
    }

    /// A notice about no case: a zero report missing, a watch-list follow-up
    /// due. The period or watch entry id and a link; no names.
    pub(super) fn compose_notice(
        &self,
        to: &str,
        req: &v1::NotificationRequested,
        reason: NotificationReason,
        message_id: String,
    ) -> Result<Message, String> {
        use lettre::message::header::ContentType;
        let (what, link) = notice_lines(reason, &req.case_reference, &self.base_url);
        let body = format!(
            "{what}\n\n\
             编号 / Reference: {reference}\n\n\
             查看 / Open: {link}\n\n\
             本邮件不含学生姓名与报告内容；请登录系统查看。\n\
             This message carries no student name or report text; sign in to see more.\n",
            reference = req.case_reference,
        );
        Message::builder()
            .from(self.from.clone())
            .to(to
                .parse()
                .map_err(|e: lettre::address::AddressError| e.to_string())?)
            .message_id(Some(message_id))
            .subject(format!("[Sanyu 三预] {} · {what}", req.case_reference))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())
    }
}

/// What a notice about no case says, and where it links: a fixed line per
/// reason (a code's words, never data) and a link with the period id.
fn notice_lines(
    reason: NotificationReason,
    reference: &str,
    base_url: &str,
) -> (&'static str, String) {
    use NotificationReason as R;
    let link = match reason {
        R::ZeroReportDue => format!("{}/v1/zero-report-periods", base_url),
        R::ZeroReportOverdue | R::ZeroReportEscalated => format!(
            "{}/v1/zero-report-periods/{}/compliance",
            base_url, reference
        ),
        R::WatchFollowUpDue => format!("{}/v1/key-population", base_url),
        R::RoleGrantRequested | R::RoleGranted => format!("{}/v1/roster/role-grants", base_url),
        _ => base_url.to_owned(),
    };
    (message::reason_line(reason), link)
}

#[cfg(test)]
mod notice_tests {
    use super::{NotificationReason as R, notice_lines};

    #[test]
    fn every_notice_links_to_what_it_is_about() {
        let base = "https://sanyu.example";
        for (reason, link) in [
            (
                R::ZeroReportDue,
                "https://sanyu.example/v1/zero-report-periods",
            ),
            (
                R::ZeroReportOverdue,
                "https://sanyu.example/v1/zero-report-periods/P1/compliance",
            ),
            (
                R::ZeroReportEscalated,
                "https://sanyu.example/v1/zero-report-periods/P1/compliance",
            ),
            (
                R::WatchFollowUpDue,
                "https://sanyu.example/v1/key-population",
            ),
            (
                R::RoleGrantRequested,
                "https://sanyu.example/v1/roster/role-grants",
            ),
            (
                R::RoleGranted,
                "https://sanyu.example/v1/roster/role-grants",
            ),
        ] {
            let (what, got) = notice_lines(reason, "P1", base);
            assert_eq!(got, link, "{reason:?}");
            assert_ne!(what, crate::message::GENERIC_LINE, "{reason:?}");
        }
    }
}
