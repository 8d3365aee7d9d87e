//! The Tencent Cloud adapter against the Tencent Cloud stand-in.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{
    Class, approved_templates, assert_class, assert_permanent_failures,
    assert_slow_reply_times_out, assert_transient_failures, message, quick_http, send_staff_err,
    staff_message,
};
use sanyu_sms::stand_in::{StandIn, StandInKind};
use sanyu_sms::tencent::{TencentConfig, TencentProvider};
use sanyu_sms::{Audience, Locale, PermanentKind, Secret, SmsProvider};

const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";

fn config(endpoint: &str, secret_id: &str, secret_key: &str) -> TencentConfig {
    TencentConfig {
        endpoint: endpoint.to_owned(),
        secret_id: secret_id.to_owned(),
        secret_key: Secret::new(secret_key),
        region: "ap-guangzhou".to_owned(),
        sms_sdk_app_id: "1400006666".to_owned(),
        sign_name: "第一中学".to_owned(),
        templates: approved_templates(),
        http: quick_http(),
    }
}

/// The stand-in knows `SECRET_ID` and `SECRET_KEY`; the provider signs with `secret_id` and
/// `secret_key`.
async fn setup_signing_with(secret_id: &str, secret_key: &str) -> (StandIn, TencentProvider) {
    let stand_in = StandIn::start(StandInKind::Tencent, SECRET_ID, SECRET_KEY)
        .await
        .unwrap();
    let provider =
        TencentProvider::new(config(stand_in.base_url(), secret_id, secret_key)).unwrap();
    (stand_in, provider)
}

async fn setup() -> (StandIn, TencentProvider) {
    setup_signing_with(SECRET_ID, SECRET_KEY).await
}

#[tokio::test]
async fn a_tc3_signed_send_sms_is_accepted_with_the_serial_no() {
    let (stand_in, provider) = setup().await;
    let accepted = provider.send(&staff_message()).await.unwrap();
    assert_eq!(accepted.provider, "tencent");
    assert!(
        accepted.provider_message_id.starts_with("5000:"),
        "{accepted:?}"
    );

    let got = &stand_in.received()[0];
    assert_eq!(got.phone, "+8613800138000");
    assert_eq!(got.template, "SMS_100001");
    assert_eq!(got.sign_name.as_deref(), Some("第一中学"));
    assert_eq!(got.idempotency_key.as_deref(), Some("notif-staff-zh-CN"));
    // Positional, in the configured order: school, case_ref, level, time.
    let values: Vec<&str> = got.params.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        values,
        ["第一中学", "C-7F3K2Q", "一级（紧急）", "2025-03-01 14:05"]
    );
}

#[tokio::test]
async fn a_sign_in_code_goes_to_its_approved_template_with_the_code_as_its_parameter() {
    let (stand_in, provider) = setup().await;
    provider.send(&common::sign_in_message()).await.unwrap();
    let got = &stand_in.received()[0];
    assert_eq!(got.template, "SMS_100003");
    let values: Vec<&str> = got.params.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["042917"]);
}

#[tokio::test]
async fn guardian_parameters_follow_the_configured_order() {
    let (stand_in, provider) = setup().await;
    provider
        .send(&message(Audience::Guardian, Locale::ZhCn, common::PHONE))
        .await
        .unwrap();
    let values: Vec<String> = stand_in.received()[0]
        .params
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(values, ["第一中学", "王老师", "010-62751234", "C-7F3K2Q"]);
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_as_a_permanent_auth_failure() {
    let (stand_in, provider) = setup_signing_with(SECRET_ID, "wrong").await;
    let err = send_staff_err(&provider).await;
    assert_class(&err, Class::Permanent(PermanentKind::AuthFailure));
    assert_eq!(err.code(), "AuthFailure.SignatureFailure");
    assert!(stand_in.received().is_empty());
    assert_eq!(stand_in.rejections(), ["AuthFailure.SignatureFailure"]);
}

#[tokio::test]
async fn an_unknown_secret_id_is_a_permanent_auth_failure() {
    let (_stand_in, provider) = setup_signing_with("AKIDother", SECRET_KEY).await;
    let err = send_staff_err(&provider).await;
    assert_eq!(err.code(), "AuthFailure.SecretIdNotFound");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn internal_errors_5xx_and_daily_limits_are_transient() {
    let (stand_in, provider) = setup().await;
    let codes = [
        "InternalError.Timeout",
        "http_500",
        "LimitExceeded.PhoneNumberDailyLimit",
    ];
    assert_transient_failures(&stand_in, &provider, 500, codes.map(Some)).await;
}

#[tokio::test]
async fn an_incorrect_number_and_an_unapproved_template_are_permanent() {
    let (stand_in, provider) = setup().await;
    let invalid_number = "InvalidParameterValue.IncorrectPhoneNumber";
    let unapproved = "FailedOperation.TemplateIncorrectOrUnapproved";
    assert_permanent_failures(
        &stand_in,
        &provider,
        [Some(invalid_number), Some(unapproved)],
    )
    .await;
}

#[tokio::test]
async fn a_reply_slower_than_the_client_timeout_is_a_transient_timeout() {
    let (stand_in, provider) = setup().await;
    assert_slow_reply_times_out(&stand_in, &provider).await;
}

#[tokio::test]
async fn a_provider_built_from_configuration_sends_through_the_stand_in() {
    let stand_in = StandIn::start(StandInKind::Tencent, SECRET_ID, SECRET_KEY)
        .await
        .unwrap();
    let config: sanyu_sms::ProviderConfig = serde_json::from_value(serde_json::json!({
        "kind": "tencent",
        "endpoint": stand_in.base_url(),
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "sms_sdk_app_id": "1400006666",
        "sign_name": "第一中学",
        "templates": [
            {"audience": "staff", "locale": "zh-CN", "id": "1110",
             "params": ["school", "case_ref", "level", "time"]}
        ]
    }))
    .unwrap();
    assert!(
        !format!("{config:?}").contains(SECRET_KEY),
        "config Debug must redact"
    );
    let provider = sanyu_sms::build_provider(&config).unwrap();
    assert_eq!(provider.name(), "tencent");
    provider.send(&staff_message()).await.unwrap();
    assert_eq!(stand_in.received()[0].template, "1110");
}
