//! The Tencent Cloud adapter against the Tencent Cloud stand-in.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{approved_templates, message, quick_http, staff_message};
use sanyu_sms::stand_in::{Reply, StandIn, StandInKind};
use sanyu_sms::tencent::{TencentConfig, TencentProvider};
use sanyu_sms::{Audience, Locale, PermanentKind, Secret, SmsProvider, TransientKind};

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

async fn setup() -> (StandIn, TencentProvider) {
    let stand_in = StandIn::start(StandInKind::Tencent, SECRET_ID, SECRET_KEY)
        .await
        .unwrap();
    let provider =
        TencentProvider::new(config(stand_in.base_url(), SECRET_ID, SECRET_KEY)).unwrap();
    (stand_in, provider)
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
    let stand_in = StandIn::start(StandInKind::Tencent, SECRET_ID, SECRET_KEY)
        .await
        .unwrap();
    let provider = TencentProvider::new(config(stand_in.base_url(), SECRET_ID, "wrong")).unwrap();
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(
        err.permanent_kind(),
        Some(PermanentKind::AuthFailure),
        "{err}"
    );
    assert_eq!(err.code(), "AuthFailure.SignatureFailure");
    assert!(stand_in.received().is_empty());
    assert_eq!(stand_in.rejections(), ["AuthFailure.SignatureFailure"]);
}

#[tokio::test]
async fn an_unknown_secret_id_is_a_permanent_auth_failure() {
    let stand_in = StandIn::start(StandInKind::Tencent, SECRET_ID, SECRET_KEY)
        .await
        .unwrap();
    let provider =
        TencentProvider::new(config(stand_in.base_url(), "AKIDother", SECRET_KEY)).unwrap();
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(err.code(), "AuthFailure.SecretIdNotFound");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn internal_errors_5xx_and_daily_limits_are_transient() {
    let (stand_in, provider) = setup().await;
    stand_in.script(Reply::ServerError);
    stand_in.script(Reply::HttpStatus(500));
    stand_in.script(Reply::Throttled);
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(
        err.transient_kind(),
        Some(TransientKind::ServerError),
        "{err}"
    );
    assert_eq!(err.code(), "InternalError.Timeout");
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(
        err.transient_kind(),
        Some(TransientKind::ServerError),
        "{err}"
    );
    assert_eq!(err.code(), "http_500");
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(
        err.transient_kind(),
        Some(TransientKind::Throttled),
        "{err}"
    );
    assert_eq!(err.code(), "LimitExceeded.PhoneNumberDailyLimit");
}

#[tokio::test]
async fn an_incorrect_number_and_an_unapproved_template_are_permanent() {
    let (stand_in, provider) = setup().await;
    stand_in.script(Reply::InvalidNumber);
    stand_in.script(Reply::TemplateRejected);
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(
        err.permanent_kind(),
        Some(PermanentKind::InvalidNumber),
        "{err}"
    );
    assert_eq!(err.code(), "InvalidParameterValue.IncorrectPhoneNumber");
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(
        err.permanent_kind(),
        Some(PermanentKind::TemplateRejected),
        "{err}"
    );
    assert_eq!(err.code(), "FailedOperation.TemplateIncorrectOrUnapproved");
}

#[tokio::test]
async fn a_reply_slower_than_the_client_timeout_is_a_transient_timeout() {
    let (stand_in, provider) = setup().await;
    stand_in.script(Reply::Delay(Duration::from_secs(3)));
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(err.transient_kind(), Some(TransientKind::Timeout), "{err}");
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
