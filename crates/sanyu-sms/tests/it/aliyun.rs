//! The Alibaba Cloud adapter against the Alibaba Cloud stand-in.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{
    Class, approved_templates, assert_class, assert_permanent_failures,
    assert_slow_reply_times_out, assert_transient_failures, message, quick_http, send_staff_err,
    staff_message,
};
use sanyu_sms::aliyun::{AliyunConfig, AliyunProvider};
use sanyu_sms::stand_in::{StandIn, StandInKind};
use sanyu_sms::{
    ApprovedTemplate, Audience, ConfigError, Locale, PermanentKind, Secret, SmsProvider,
};

const KEY_ID: &str = "LTAI5tStandInKeyId";
const KEY_SECRET: &str = "stand-in-access-key-secret";

fn config(endpoint: &str, key_id: &str, secret: &str) -> AliyunConfig {
    AliyunConfig {
        endpoint: endpoint.to_owned(),
        access_key_id: key_id.to_owned(),
        access_key_secret: Secret::new(secret),
        sign_name: "第一中学".to_owned(),
        region_id: "cn-hangzhou".to_owned(),
        templates: approved_templates(),
        http: quick_http(),
    }
}

/// The stand-in knows `KEY_ID` and `KEY_SECRET`; the provider signs with `key_id` and `secret`.
async fn setup_signing_with(key_id: &str, secret: &str) -> (StandIn, AliyunProvider) {
    let stand_in = StandIn::start(StandInKind::Aliyun, KEY_ID, KEY_SECRET)
        .await
        .unwrap();
    let provider = AliyunProvider::new(config(stand_in.base_url(), key_id, secret)).unwrap();
    (stand_in, provider)
}

async fn setup() -> (StandIn, AliyunProvider) {
    setup_signing_with(KEY_ID, KEY_SECRET).await
}

#[tokio::test]
async fn a_signed_send_sms_is_accepted_with_the_biz_id() {
    let (stand_in, provider) = setup().await;
    let accepted = provider.send(&staff_message()).await.unwrap();
    assert_eq!(accepted.provider, "aliyun");
    assert!(accepted.provider_message_id.contains('^'), "{accepted:?}");

    let got = &stand_in.received()[0];
    assert_eq!(got.phone, "13800138000", "mainland numbers go without +86");
    assert_eq!(got.template, "SMS_100001");
    assert_eq!(got.sign_name.as_deref(), Some("第一中学"));
    assert_eq!(got.idempotency_key.as_deref(), Some("notif-staff-zh-CN"));
    let names: Vec<&str> = got.params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["case_ref", "level", "school", "time"]);
    assert!(
        got.params
            .contains(&("level".to_owned(), "一级（紧急）".to_owned()))
    );
}

#[tokio::test]
async fn every_send_uses_a_fresh_nonce() {
    let (stand_in, provider) = setup().await;
    for _ in 0..3 {
        provider.send(&staff_message()).await.unwrap();
    }
    assert_eq!(stand_in.received().len(), 3);
    assert!(stand_in.rejections().is_empty());
}

#[tokio::test]
async fn a_wrong_access_key_secret_is_refused_as_a_permanent_auth_failure() {
    let (stand_in, provider) = setup_signing_with(KEY_ID, "wrong").await;
    let err = send_staff_err(&provider).await;
    assert_class(&err, Class::Permanent(PermanentKind::AuthFailure));
    assert_eq!(err.code(), "SignatureDoesNotMatch");
    assert!(stand_in.received().is_empty());
}

#[tokio::test]
async fn an_unknown_access_key_id_is_a_permanent_auth_failure() {
    let (_stand_in, provider) = setup_signing_with("LTAIother", KEY_SECRET).await;
    let err = send_staff_err(&provider).await;
    assert_class(&err, Class::Permanent(PermanentKind::AuthFailure));
    assert_eq!(err.code(), "InvalidAccessKeyId.NotFound");
}

#[tokio::test]
async fn system_errors_5xx_and_business_limit_control_are_transient() {
    let (stand_in, provider) = setup().await;
    let codes = [
        Some("isp.SYSTEM_ERROR"),
        None,
        Some("isv.BUSINESS_LIMIT_CONTROL"),
    ];
    assert_transient_failures(&stand_in, &provider, 503, codes).await;
}

#[tokio::test]
async fn an_illegal_number_and_an_illegal_template_are_permanent() {
    let (stand_in, provider) = setup().await;
    let codes = [
        Some("isv.MOBILE_NUMBER_ILLEGAL"),
        Some("isv.SMS_TEMPLATE_ILLEGAL"),
    ];
    assert_permanent_failures(&stand_in, &provider, codes).await;
}

#[tokio::test]
async fn a_reply_slower_than_the_client_timeout_is_a_transient_timeout() {
    let (stand_in, provider) = setup().await;
    assert_slow_reply_times_out(&stand_in, &provider).await;
}

#[tokio::test]
async fn a_locale_without_an_approved_template_fails_permanently_without_a_request() {
    let (stand_in, provider) = setup().await;
    let err = provider
        .send(&message(Audience::Staff, Locale::En, common::PHONE))
        .await
        .unwrap_err();
    assert_class(&err, Class::Permanent(PermanentKind::BadRequest));
    assert_eq!(err.code(), "template_not_configured");
    assert!(stand_in.received().is_empty());
}

#[tokio::test]
async fn guardian_parameters_are_only_the_configured_ones() {
    let (stand_in, provider) = setup().await;
    provider
        .send(&message(Audience::Guardian, Locale::ZhCn, common::PHONE))
        .await
        .unwrap();
    let got = &stand_in.received()[0];
    assert_eq!(got.template, "SMS_100002");
    let names: Vec<&str> = got.params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["case_ref", "counsellor", "counsellor_phone", "school"]
    );
}

#[tokio::test]
async fn a_sign_in_code_goes_to_its_approved_template_as_the_code_parameter() {
    let (stand_in, provider) = setup().await;
    provider.send(&common::sign_in_message()).await.unwrap();
    let got = &stand_in.received()[0];
    assert_eq!(got.template, "SMS_100003");
    assert_eq!(got.params, [("code".to_owned(), "042917".to_owned())]);
}

/// Why a provider with `extra` among its approved templates is not built.
fn refused(extra: ApprovedTemplate) -> ConfigError {
    let mut c = config("https://dysmsapi.aliyuncs.com/", KEY_ID, KEY_SECRET);
    c.templates = approved_templates();
    c.templates.push(extra);
    AliyunProvider::new(c).unwrap_err()
}

#[test]
fn a_sign_in_template_may_name_only_the_code_and_its_minutes() {
    let err = refused(ApprovedTemplate {
        audience: Audience::SignIn,
        locale: Locale::En,
        id: "SMS_10".into(),
        params: vec!["code".into(), "case_ref".into()],
    });
    assert!(
        matches!(err, ConfigError::UnknownTemplateParam { ref param, .. } if param == "case_ref"),
        "{err}"
    );
}

#[test]
fn a_guardian_template_may_not_name_the_level() {
    let err = refused(ApprovedTemplate {
        audience: Audience::Guardian,
        locale: Locale::En,
        id: "SMS_9".into(),
        params: vec!["school".into(), "level".into()],
    });
    assert!(
        matches!(err, ConfigError::UnknownTemplateParam { ref param, .. } if param == "level"),
        "{err}"
    );
}
