//! Voice calls for critical cases (issue #16), across the real binaries: a
//! critical report reaches the counsellor and the crisis-team lead by SMS, by
//! a text-to-speech call (through Tencent Cloud's signature-checking
//! stand-in) and by email; the call carries the school, the level and the case
//! reference and nothing else; a high case is texted and emailed, never called.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_sms::stand_in::{StandIn, StandInKind};
use serde_json::Value;

const WEBHOOK_SECRET: &str = "whsec-e2e-voice";
const TENCENT_ID: &str = "AKID-e2e-voice";
const TENCENT_KEY: &str = "tencent-e2e-voice-key";
const COUNSELLOR_PHONE: &str = "13900000003";
const CRISIS_LEAD_PHONE: &str = "13900000004";
const KEYPRESS_TOKEN: &str = "keys-e2e-voice-5f1c";

/// An SMS provider (signed webhook) and a voice provider (Tencent Cloud), and
/// the configuration file that points the services at them.
pub(crate) struct Providers {
    pub(crate) sms: StandIn,
    pub(crate) voice: StandIn,
    config: PathBuf,
}

impl Providers {
    pub(crate) async fn start() -> Self {
        let sms = StandIn::start(StandInKind::Webhook, "", WEBHOOK_SECRET)
            .await
            .unwrap();
        let voice = StandIn::start(StandInKind::Tencent, TENCENT_ID, TENCENT_KEY)
            .await
            .unwrap();
        let config =
            std::env::temp_dir().join(format!("sanyu-voice-{}.toml", uuid::Uuid::now_v7()));
        let toml = format!(
            r#"
[sms.primary]
kind = "webhook"
url = "{sms}"
secret = "{WEBHOOK_SECRET}"

[voice]
keypress_token = "{KEYPRESS_TOKEN}"

[voice.provider]
kind = "tencent"
endpoint = "{voice}"
secret_id = "{TENCENT_ID}"
secret_key = "{TENCENT_KEY}"
voice_sdk_app_id = "1400000001"
template_id = "100001"
params = ["school", "level", "case_ref"]
http = {{ connect_timeout_ms = 1000, request_timeout_ms = 2000 }}

[notify]
backoff_initial_ms = 20
backoff_max_ms = 100
"#,
            sms = sms.base_url(),
            voice = voice.base_url(),
        );
        std::fs::write(&config, toml).unwrap();
        Self { sms, voice, config }
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![("SANYU_CONFIG", self.config.display().to_string())]
    }
}

impl Drop for Providers {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The case's notifications once `n` of them are final.
async fn notifications(stack: &Stack, case_id: &str, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(30),
        &format!("{n} sent notifications"),
        || async {
            let v: Value = stack
                .get(&stack.school.counsellor, &format!("/v1/cases/{case_id}"))
                .await
                .json()
                .await
                .ok()?;
            let all = v["notifications"].as_array()?.clone();
            (all.len() == n && all.iter().all(|d| d["status"] == "sent")).then_some(all)
        },
    )
    .await
}

#[tokio::test]
async fn a_critical_case_is_texted_called_and_emailed_and_a_high_one_is_never_called() {
    let providers = Providers::start().await;
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway_with(&providers.env()).await;
    stack.start_rules(&[]);
    // The high case's SMS is not held back by quiet hours whatever the hour.
    let mut notifier = providers.env();
    notifier.push(("SANYU_NOTIFY__QUIET_HOURS__ENABLED", "false".to_owned()));
    stack.start_notifier_with(&notifier);

    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body(
                "S1",
                "critical",
                "a narrative that never leaves the gateway",
            ),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    let case_id = cases[0]["id"].as_str().unwrap().to_owned();
    let reference = cases[0]["reference"].as_str().unwrap().to_owned();

    // SMS, call and email to the counsellor and the crisis-team lead.
    let sent = notifications(&stack, &case_id, 6).await;
    for channel in ["sms", "voice", "email"] {
        assert_eq!(
            sent.iter().filter(|n| n["channel"] == channel).count(),
            2,
            "{channel}: {sent:?}"
        );
    }
    assert!(
        sent.iter()
            .filter(|n| n["channel"] == "voice")
            .all(|n| n["provider"] == "tencent"),
        "{sent:?}"
    );
    let calls = providers.voice.received();
    let mut called: Vec<String> = calls
        .iter()
        .map(|c| c.phone.trim_start_matches("+86").to_owned())
        .collect();
    called.sort();
    assert_eq!(called, [COUNSELLOR_PHONE, CRISIS_LEAD_PHONE]);
    for call in &calls {
        assert_eq!(call.channel, "voice");
        assert_eq!(call.template, "100001");
        let spoken: Vec<&str> = call.params.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(spoken.len(), 3, "{spoken:?}");
        assert_eq!(spoken[2], reference, "the case reference, last");
        assert!(
            !spoken.iter().any(|v| v.contains("S1")
                || v.contains("narrative")
                || v.contains("http")
                || v.contains("张")),
            "no student, narrative or link in a call: {spoken:?}"
        );
    }
    assert!(providers.voice.rejections().is_empty());

    // A high case: SMS and email, no call.
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S2", "high", "worried"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(2).await;
    let high = cases.iter().find(|c| c["id"] != case_id.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let n_sms_before = providers.sms.received().len();
    let sent = eventually(Duration::from_secs(30), "the high case's SMS", || async {
        let v: Value = stack
            .get(&stack.school.counsellor, &format!("/v1/cases/{high}"))
            .await
            .json()
            .await
            .ok()?;
        let all = v["notifications"].as_array()?.clone();
        (all.iter()
            .any(|n| n["channel"] == "sms" && n["status"] == "sent")
            && all.iter().all(|n| n["status"] == "sent"))
        .then_some(all)
    })
    .await;
    assert!(
        sent.iter().all(|n| n["channel"] != "voice"),
        "a high case is not called: {sent:?}"
    );
    assert!(providers.sms.received().len() >= n_sms_before);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        providers.voice.received().len(),
        2,
        "no call for a high case"
    );
}

/// The body of Tencent Cloud's key-press callback for `call_id`.
fn key_press(call_id: &str, key: &str, mobile: &str) -> Value {
    serde_json::json!({"voicekey_callback": {
        "call_from": "", "callid": call_id, "keypress": key, "mobile": mobile, "nationcode": "86"
    }})
}

/// Issue 16, "press 1 to acknowledge": the counsellor's call about a
/// critical case; Tencent Cloud reports the keys pressed. A wrong token
/// answers 401; another key, or "1" reported from another number, changes
/// nothing; "1" from the number called acknowledges the case (the same
/// command, audited `via voice_key`) and stops the ladder; the provider's
/// retry of the callback has no second effect.
#[tokio::test]
async fn pressing_1_during_the_call_acknowledges_the_case_and_stops_the_ladder() {
    use sanyu_store::entities::{audit_record, delivery, delivery_attempt};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let providers = Providers::start().await;
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway_with(&providers.env()).await;
    stack.start_rules(&[]);
    stack.start_notifier_with(&providers.env());
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "critical", "a narrative"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    let case_id = cases[0]["id"].as_str().unwrap().to_owned();
    notifications(&stack, &case_id, 6).await;

    // The id Tencent Cloud answered the counsellor's call with.
    let counsellor_call = delivery::Entity::find()
        .filter(delivery::Column::Channel.eq("voice"))
        .all(&stack.conn)
        .await
        .unwrap();
    let mut call_ids = Vec::new();
    for d in &counsellor_call {
        let person = sanyu_store::roster::staff_by_id(&stack.conn, d.recipient_staff_id)
            .await
            .unwrap()
            .unwrap();
        let attempt = delivery_attempt::Entity::find()
            .filter(delivery_attempt::Column::DeliveryKey.eq(&d.notification_key))
            .filter(delivery_attempt::Column::Status.eq("accepted"))
            .one(&stack.conn)
            .await
            .unwrap()
            .unwrap();
        call_ids.push((person.phone.unwrap(), attempt.provider_message_id.unwrap()));
    }
    let call = call_ids
        .iter()
        .find(|(phone, _)| phone == COUNSELLOR_PHONE)
        .map(|(_, id)| id.clone())
        .expect("the counsellor's call");
    let press = |token: &str, body: Value| {
        let url = format!("{}/v1/voice/keypress/tencent/{token}", stack.base_url());
        let http = stack.http.clone();
        async move { http.post(url).json(&body).send().await.unwrap() }
    };

    let r = press("guessed", key_press(&call, "1", COUNSELLOR_PHONE)).await;
    assert_eq!(r.status(), 401);
    let r = press(KEYPRESS_TOKEN, key_press(&call, "2", COUNSELLOR_PHONE)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"result": 0, "errmsg": "OK"})
    );
    let r = press(KEYPRESS_TOKEN, key_press(&call, "1", CRISIS_LEAD_PHONE)).await;
    assert_eq!(r.status(), 200);
    let r = press(
        KEYPRESS_TOKEN,
        key_press("no-such-call", "1", COUNSELLOR_PHONE),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = press(KEYPRESS_TOKEN, serde_json::json!({"not": "a key press"})).await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        case_state(&stack, &case_id).await.0,
        "open",
        "nothing acknowledged yet"
    );

    let r = press(KEYPRESS_TOKEN, key_press(&call, "1", COUNSELLOR_PHONE)).await;
    assert_eq!(r.status(), 200);
    let (now, ladder) = case_state(&stack, &case_id).await;
    assert_eq!((now.as_str(), ladder.as_str()), ("acknowledged", "stopped"));
    // The provider retries the callback: no second acknowledgement.
    let r = press(KEYPRESS_TOKEN, key_press(&call, "1", COUNSELLOR_PHONE)).await;
    assert_eq!(r.status(), 200);
    let acks = audit_record::Entity::find()
        .filter(audit_record::Column::Action.eq("case.acknowledge"))
        .all(&stack.conn)
        .await
        .unwrap();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(acks[0].source.ends_with("via voice_key"), "{acks:?}");
}

/// A case's status and ladder state, as the counsellor reads them.
async fn case_state(stack: &Stack, id: &str) -> (String, String) {
    let v: Value = stack
        .get(&stack.school.counsellor, &format!("/v1/cases/{id}"))
        .await
        .json()
        .await
        .unwrap();
    (
        v["status"].as_str().unwrap_or("").to_owned(),
        v["ladder_state"].as_str().unwrap_or("").to_owned(),
    )
}
