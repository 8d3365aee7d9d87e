//! The webhook adapter against the webhook stand-in.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{
    Class, PHONE, assert_class, assert_permanent_failures, assert_slow_reply_times_out,
    assert_transient_failures, quick_http, send_staff_err, staff_message,
};
use sanyu_sms::stand_in::{Reply, StandIn, StandInKind};
use sanyu_sms::webhook::{WebhookConfig, WebhookProvider};
use sanyu_sms::{PermanentKind, Secret, SmsProvider, TransientKind};

const SECRET: &str = "whsec-test-3f9a";

async fn setup(secret: &str) -> (StandIn, WebhookProvider) {
    let stand_in = StandIn::start(StandInKind::Webhook, "", SECRET)
        .await
        .unwrap();
    let provider = WebhookProvider::new(WebhookConfig {
        url: format!("{}sms", stand_in.base_url()),
        secret: Secret::new(secret),
        http: quick_http(),
    })
    .unwrap();
    (stand_in, provider)
}

#[tokio::test]
async fn a_signed_message_is_accepted_and_arrives_with_text_params_and_key() {
    let (stand_in, provider) = setup(SECRET).await;
    let accepted = provider.send(&staff_message()).await.unwrap();
    assert_eq!(accepted.provider, "webhook");
    assert_eq!(accepted.provider_message_id, "wh-1");

    let received = stand_in.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.phone, "+8613800138000");
    assert_eq!(got.template, "staff.zh-CN");
    assert_eq!(got.idempotency_key.as_deref(), Some("notif-staff-zh-CN"));
    assert!(got.text.as_deref().unwrap().contains("C-7F3K2Q"));
    assert!(
        got.params
            .contains(&("level".to_owned(), "一级（紧急）".to_owned()))
    );
    assert!(stand_in.rejections().is_empty());
}

#[tokio::test]
async fn a_wrong_secret_is_refused_as_a_permanent_auth_failure() {
    let (stand_in, provider) = setup("not-the-secret").await;
    let err = send_staff_err(&provider).await;
    assert_class(&err, Class::Permanent(PermanentKind::AuthFailure));
    assert_eq!(err.code(), "bad_signature");
    assert!(stand_in.received().is_empty());
    assert_eq!(stand_in.rejections(), ["bad_signature"]);
}

#[tokio::test]
async fn server_errors_and_throttling_are_transient() {
    let (stand_in, provider) = setup(SECRET).await;
    assert_transient_failures(&stand_in, &provider, 502, [None, Some("http_502"), None]).await;
    // The queue is empty again: the next send succeeds.
    provider.send(&staff_message()).await.unwrap();
}

#[tokio::test]
async fn an_invalid_number_and_a_rejected_template_are_permanent() {
    let (stand_in, provider) = setup(SECRET).await;
    assert_permanent_failures(&stand_in, &provider, [None, None]).await;
}

#[tokio::test]
async fn a_rule_for_one_number_applies_to_every_spelling_of_it() {
    let (stand_in, provider) = setup(SECRET).await;
    stand_in.script_for("+86 138 0013 8000", Reply::InvalidNumber);
    let err = provider.send(&staff_message()).await.unwrap_err();
    assert_eq!(err.permanent_kind(), Some(PermanentKind::InvalidNumber));
    let other = common::message(
        sanyu_sms::Audience::Staff,
        sanyu_sms::Locale::En,
        "13900139000",
    );
    provider.send(&other).await.unwrap();
    assert_eq!(stand_in.received().len(), 2);
    assert_eq!(stand_in.received()[0].phone, format!("+86{PHONE}"));
}

#[tokio::test]
async fn a_reply_slower_than_the_client_timeout_is_a_transient_timeout() {
    let (stand_in, provider) = setup(SECRET).await;
    assert_slow_reply_times_out(&stand_in, &provider).await;
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // Bind a port, then free it, so nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let provider = WebhookProvider::new(WebhookConfig {
        url: format!("http://127.0.0.1:{port}/sms"),
        secret: Secret::new(SECRET),
        http: quick_http(),
    })
    .unwrap();
    let err = send_staff_err(&provider).await;
    assert_class(&err, Class::Transient(TransientKind::Connection));
}
