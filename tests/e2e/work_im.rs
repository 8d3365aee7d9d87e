//! Work IM (issue #16), across the real binaries: with `[im.provider]` set to
//! WeCom (its stand-in issuing and checking access tokens), a critical report
//! reaches the counsellor and the crisis-team lead in WeCom — found by the
//! mobile numbers the roster holds — with the school, level, reference and
//! the link to the case page, and nothing about the student; a member WeCom
//! does not know is still reached by SMS and email.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_im::stand_in::{StandIn, StandInKind};
use serde_json::Value;

const CORP_ID: &str = "ww-e2e-school";
const CORP_SECRET: &str = "wecom-e2e-secret";
const AGENT_ID: i64 = 1_000_002;
const COUNSELLOR_PHONE: &str = "13900000003";

struct Wecom {
    platform: StandIn,
    config: PathBuf,
}

impl Wecom {
    async fn start() -> Self {
        let platform = StandIn::start(StandInKind::Wecom, CORP_ID, CORP_SECRET, AGENT_ID)
            .await
            .unwrap();
        let config = std::env::temp_dir().join(format!("sanyu-im-{}.toml", uuid::Uuid::now_v7()));
        let toml = format!(
            r#"
[im.provider]
kind = "wecom"
endpoint = "{endpoint}"
corp_id = "{CORP_ID}"
corp_secret = "{CORP_SECRET}"
agent_id = {AGENT_ID}
"#,
            endpoint = platform.base_url(),
        );
        std::fs::write(&config, toml).unwrap();
        Self { platform, config }
    }
}

impl Drop for Wecom {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

#[tokio::test]
async fn a_critical_case_reaches_staff_in_wecom_by_their_mobile_number() {
    let wecom = Wecom::start().await;
    // The counsellor has a WeCom account; the crisis-team lead does not.
    wecom.platform.add_user(COUNSELLOR_PHONE, "li.counsellor");
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier_with(&[("SANYU_CONFIG", wecom.config.display().to_string())]);

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

    let messages = eventually(Duration::from_secs(30), "the WeCom message", || async {
        let m = wecom.platform.received();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].user_id, "li.counsellor");
    assert_eq!(messages[0].agent_id, AGENT_ID);
    let text = &messages[0].text;
    assert!(text.contains(&reference), "{text}");
    assert!(
        text.contains("https://") && text.contains("/a/") && !text.contains("回复"),
        "the acknowledgement link, and no \"reply 1\" a chat cannot do: {text}"
    );
    for secret in ["Student One", "narrative", "Parent One"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(wecom.platform.token_requests(), 1);

    // The case shows the IM delivery sent through WeCom, and the crisis-team
    // lead's IM row failed (no account) while their email went out.
    let notifications: Vec<Value> =
        eventually(Duration::from_secs(20), "every delivery final", || async {
            let v: Value = stack
                .get(&stack.school.counsellor, &format!("/v1/cases/{case_id}"))
                .await
                .json()
                .await
                .ok()?;
            let all = v["notifications"].as_array()?.clone();
            // Final: sent (or delivered) or failed; not pending, claimed or sending.
            (all.len() == 4
                && all.iter().all(|n| {
                    ["sent", "delivered", "failed"].contains(&n["status"].as_str().unwrap_or(""))
                }))
            .then_some(all)
        })
        .await;
    let im: Vec<&Value> = notifications
        .iter()
        .filter(|n| n["channel"] == "im")
        .collect();
    assert_eq!(im.len(), 2, "{notifications:?}");
    assert!(
        im.iter()
            .any(|n| n["status"] == "sent" && n["provider"] == "wecom"),
        "{im:?}"
    );
    assert!(im.iter().any(|n| n["status"] == "failed"), "{im:?}");
    assert_eq!(
        notifications
            .iter()
            .filter(|n| n["channel"] == "email" && n["status"] == "sent")
            .count(),
        2,
        "{notifications:?}"
    );
}
