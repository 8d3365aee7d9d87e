//! Shared fixtures for the adapter tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use sanyu_sms::stand_in::{Reply, StandIn};
use sanyu_sms::{
    AlertLevel, ApprovedTemplate, Audience, HttpSettings, Locale, NotificationFacts, PermanentKind,
    PhoneNumber, SmsError, SmsMessage, SmsProvider, TransientKind, render_sms,
};

pub const PHONE: &str = "13800138000";

pub struct Facts;

impl NotificationFacts for Facts {
    fn school_name(&self) -> &str {
        "第一中学"
    }
    fn case_reference(&self) -> &str {
        "C-7F3K2Q"
    }
    fn level(&self) -> AlertLevel {
        AlertLevel::Critical
    }
    fn case_link(&self) -> &str {
        "https://sanyu.example.edu.cn/cases/C-7F3K2Q"
    }
    fn occurred_at(&self) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2025-03-01T14:05:00+08:00").unwrap()
    }
    fn counsellor_display_name(&self) -> &str {
        "王老师"
    }
    fn counsellor_phone(&self) -> &str {
        "010-62751234"
    }
}

pub fn message(audience: Audience, locale: Locale, phone: &str) -> SmsMessage {
    SmsMessage {
        phone: PhoneNumber::parse(phone).unwrap(),
        content: render_sms(audience, locale, &Facts).unwrap(),
        idempotency_key: format!("notif-{}-{}", audience, locale),
    }
}

pub fn staff_message() -> SmsMessage {
    message(Audience::Staff, Locale::ZhCn, PHONE)
}

/// Approved templates for zh-CN only; `en` is deliberately not configured.
pub fn approved_templates() -> Vec<ApprovedTemplate> {
    vec![
        ApprovedTemplate {
            audience: Audience::Staff,
            locale: Locale::ZhCn,
            id: "SMS_100001".into(),
            params: vec![
                "school".into(),
                "case_ref".into(),
                "level".into(),
                "time".into(),
            ],
        },
        ApprovedTemplate {
            audience: Audience::Guardian,
            locale: Locale::ZhCn,
            id: "SMS_100002".into(),
            params: vec![
                "school".into(),
                "counsellor".into(),
                "counsellor_phone".into(),
                "case_ref".into(),
            ],
        },
        ApprovedTemplate {
            audience: Audience::SignIn,
            locale: Locale::ZhCn,
            id: "SMS_100003".into(),
            params: vec!["code".into()],
        },
    ]
}

/// A console sign-in code for `PHONE`.
pub fn sign_in_message() -> SmsMessage {
    SmsMessage {
        phone: PhoneNumber::parse(PHONE).unwrap(),
        content: sanyu_sms::render_sign_in_sms(Locale::ZhCn, "042917", 10).unwrap(),
        idempotency_key: "sign_in:challenge".into(),
    }
}

/// Short timeouts so the timeout test is quick.
pub fn quick_http() -> HttpSettings {
    HttpSettings {
        connect_timeout_ms: 1_000,
        request_timeout_ms: 500,
        max_per_second: 0,
    }
}

/// The class a failed send must fall in.
#[derive(Debug, Clone, Copy)]
pub enum Class {
    Permanent(PermanentKind),
    Transient(TransientKind),
}

/// Fails unless `err` is of `class`.
pub fn assert_class(err: &SmsError, class: Class) {
    match class {
        Class::Permanent(kind) => assert_eq!(err.permanent_kind(), Some(kind), "{err}"),
        Class::Transient(kind) => assert_eq!(err.transient_kind(), Some(kind), "{err}"),
    }
}

/// Sends the staff message and returns its failure.
pub async fn send_staff_err(provider: &dyn SmsProvider) -> SmsError {
    provider.send(&staff_message()).await.unwrap_err()
}

/// Scripts each reply on the stand-in, then sends the staff message once per reply and checks
/// the failures in order: their class, and their provider code where one is given.
async fn assert_scripted_failures<const N: usize>(
    stand_in: &StandIn,
    provider: &dyn SmsProvider,
    cases: [(Reply, Class, Option<&str>); N],
) {
    for (reply, _, _) in &cases {
        stand_in.script(reply.clone());
    }
    for (_, class, code) in cases {
        let err = send_staff_err(provider).await;
        assert_class(&err, class);
        if let Some(code) = code {
            assert_eq!(err.code(), code);
        }
    }
}

/// A server error, HTTP `status` and throttling are transient (server error, server error,
/// throttled), with these provider codes where given.
pub async fn assert_transient_failures(
    stand_in: &StandIn,
    provider: &dyn SmsProvider,
    status: u16,
    [server_error, http_status, throttled]: [Option<&str>; 3],
) {
    let server = Class::Transient(TransientKind::ServerError);
    let cases = [
        (Reply::ServerError, server, server_error),
        (Reply::HttpStatus(status), server, http_status),
        (
            Reply::Throttled,
            Class::Transient(TransientKind::Throttled),
            throttled,
        ),
    ];
    assert_scripted_failures(stand_in, provider, cases).await;
}

/// An invalid number and a rejected template are permanent, with these provider codes where given.
pub async fn assert_permanent_failures(
    stand_in: &StandIn,
    provider: &dyn SmsProvider,
    [invalid_number, template_rejected]: [Option<&str>; 2],
) {
    let cases = [
        (
            Reply::InvalidNumber,
            Class::Permanent(PermanentKind::InvalidNumber),
            invalid_number,
        ),
        (
            Reply::TemplateRejected,
            Class::Permanent(PermanentKind::TemplateRejected),
            template_rejected,
        ),
    ];
    assert_scripted_failures(stand_in, provider, cases).await;
}

/// A reply slower than the client's timeout ([`quick_http`]) is a transient timeout.
pub async fn assert_slow_reply_times_out(stand_in: &StandIn, provider: &dyn SmsProvider) {
    stand_in.script(Reply::Delay(Duration::from_secs(3)));
    let err = send_staff_err(provider).await;
    assert_class(&err, Class::Transient(TransientKind::Timeout));
}
