//! Shared fixtures for the adapter tests.
#![allow(dead_code, clippy::unwrap_used)]

use chrono::{DateTime, FixedOffset};
use sanyu_sms::{
    AlertLevel, ApprovedTemplate, Audience, HttpSettings, Locale, NotificationFacts, PhoneNumber,
    SmsMessage, render_sms,
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
    ]
}

/// Short timeouts so the timeout test is quick.
pub fn quick_http() -> HttpSettings {
    HttpSettings {
        connect_timeout_ms: 1_000,
        request_timeout_ms: 500,
    }
}
