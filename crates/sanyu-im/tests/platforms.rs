//! Both adapters against their stand-ins, which enforce the platforms'
//! token rules: a token from the application's credentials, reused until it
//! is refused, renewed once when it expires; the person found by mobile
//! number; errors classified.
#![allow(clippy::unwrap_used)]

use sanyu_im::stand_in::{StandIn, StandInKind};
use sanyu_im::{ImConfig, ImMessage, PhoneNumber, build_im_provider};

const ID: &str = "ww-e2e-corp";
const SECRET: &str = "im-secret-7f3a";
const AGENT: i64 = 1_000_002;

fn config(kind: StandInKind, endpoint: &str, secret: &str) -> ImConfig {
    let toml = match kind {
        StandInKind::Wecom => format!(
            "kind = \"wecom\"\nendpoint = \"{endpoint}\"\ncorp_id = \"{ID}\"\ncorp_secret = \"{secret}\"\nagent_id = {AGENT}\n"
        ),
        StandInKind::Dingtalk => format!(
            "kind = \"dingtalk\"\nendpoint = \"{endpoint}\"\napp_key = \"{ID}\"\napp_secret = \"{secret}\"\nagent_id = {AGENT}\n"
        ),
    };
    toml::from_str(&toml).unwrap()
}

fn message(phone: &str) -> ImMessage {
    ImMessage {
        phone: PhoneNumber::parse(phone).unwrap(),
        text: "【三预】第一中学 危急 C-7K3M 请立即处理 https://sanyu.example/a/x".into(),
        idempotency_key: "notif-1:im".into(),
    }
}

#[tokio::test]
async fn each_platform_takes_a_message_with_a_token_it_issued_and_renews_an_expired_one() {
    for kind in [StandInKind::Wecom, StandInKind::Dingtalk] {
        let platform = StandIn::start(kind, ID, SECRET, AGENT).await.unwrap();
        platform.add_user("13900000003", "counsellor01");
        let provider = build_im_provider(&config(kind, platform.base_url(), SECRET)).unwrap();

        let accepted = provider.send(&message("13900000003")).await.unwrap();
        assert!(!accepted.message_id.is_empty(), "{kind:?}");
        provider.send(&message("+86 139 0000 0003")).await.unwrap();
        assert_eq!(
            platform.token_requests(),
            1,
            "{kind:?}: the token is reused"
        );
        let received = platform.received();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0].user_id, "counsellor01");
        assert_eq!(received[0].agent_id, AGENT);
        assert_eq!(received[0].text, message("13900000003").text);

        // The platform expires the token: one refusal, a new token, the message.
        platform.expire_tokens();
        provider.send(&message("13900000003")).await.unwrap();
        assert_eq!(platform.token_requests(), 2, "{kind:?}");
        assert_eq!(platform.rejections(), [42001], "{kind:?}");
        assert_eq!(platform.received().len(), 3);

        // A number with no account: permanent, nothing sent.
        let error = provider.send(&message("13900000009")).await.unwrap_err();
        assert!(!error.transient, "{kind:?}: {error}");
        assert_eq!(platform.received().len(), 3);

        // A busy platform: transient.
        platform.script_busy(1);
        let error = provider.send(&message("13900000003")).await.unwrap_err();
        assert!(error.transient, "{kind:?}: {error}");
    }
}

#[tokio::test]
async fn a_wrong_secret_gets_no_token_and_is_a_permanent_error() {
    for (kind, code) in [
        (StandInKind::Wecom, "40001"),
        (StandInKind::Dingtalk, "40089"),
    ] {
        let platform = StandIn::start(kind, ID, SECRET, AGENT).await.unwrap();
        platform.add_user("13900000003", "counsellor01");
        let provider =
            build_im_provider(&config(kind, platform.base_url(), "not-the-secret")).unwrap();
        let error = provider.send(&message("13900000003")).await.unwrap_err();
        assert!(!error.transient, "{kind:?}: {error}");
        assert_eq!(error.code, code);
        assert!(platform.received().is_empty());
        assert!(!error.to_string().contains("not-the-secret"), "{error}");
    }
}

#[tokio::test]
async fn a_message_without_a_token_or_with_a_forged_one_is_refused_by_the_stand_in() {
    for (kind, path) in [
        (StandInKind::Wecom, "cgi-bin/message/send"),
        (
            StandInKind::Dingtalk,
            "topapi/message/corpconversation/asyncsend_v2",
        ),
    ] {
        let platform = StandIn::start(kind, ID, SECRET, AGENT).await.unwrap();
        let http = reqwest::Client::new();
        let url = format!("{}{path}", platform.base_url());
        let body = serde_json::json!({});
        let r: serde_json::Value = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["errcode"], 41001);
        let r: serde_json::Value = http
            .post(format!("{url}?access_token=forged"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["errcode"], 40014);
        assert!(platform.received().is_empty());
    }
}

#[test]
fn a_provider_needs_an_http_endpoint_and_credentials() {
    let bad = config(StandInKind::Wecom, "ftp://example.org/", SECRET);
    assert!(build_im_provider(&bad).is_err());
    let bad = config(StandInKind::Dingtalk, "https://oapi.dingtalk.com/", " ");
    assert!(build_im_provider(&bad).is_err());
}
