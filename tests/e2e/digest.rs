//! Digests (issue #16, "fewer, better messages"), across the real binaries:
//! one screening import opens 40 `high` cases and one `critical` case in a
//! school. The critical case reaches the counsellor at once, by SMS and
//! email, on its own; the 40 high ones reach the same counsellor as one
//! digest per channel (one SMS, one email) when the window closes, listing
//! every reference — and each of the 40 cases still shows its own notices,
//! sent, for the ladder.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_sms::stand_in::{StandIn, StandInKind};
use serde_json::Value;

use crate::screening::{post_import, wait_until_done};

const WEBHOOK_SECRET: &str = "whsec-e2e-digest";
const COUNSELLOR_PHONE: &str = "13900000003";
const WINDOW_SECS: u64 = 15;
const HIGH: usize = 40;

/// The school's reviewed rules: the defaults, and a severe PHQ-9 opens a
/// `high` case (the default says `elevated`).
fn rules() -> String {
    format!(
        "{}\n[[rule]]\nid = \"screening.phq9_severe_high\"\n\
         when = {{ source = [\"screening\"], instrument = [\"phq9\"], band = [\"severe\"] }}\n\
         then = {{ action = \"case\", level = \"high\" }}\n",
        sanyu_ruleset::DEFAULT_RULES.replace(
            "version = \"2026-11-29.2\"",
            "version = \"2026-11-29.2-digest-e2e\""
        )
    )
}

fn is_digest(sms: &sanyu_sms::stand_in::Received) -> bool {
    sms.template.starts_with("digest.")
}

#[tokio::test]
async fn forty_high_cases_from_one_import_reach_the_counsellor_as_one_digest_per_channel_and_the_critical_one_at_once()
 {
    let sms = StandIn::start(StandInKind::Webhook, "", WEBHOOK_SECRET)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sanyu.toml");
    std::fs::write(
        &config,
        format!(
            "[sms.primary]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{WEBHOOK_SECRET}\"\n\n\
             [notify]\nbackoff_initial_ms = 20\nbackoff_max_ms = 100\n\n\
             [notify.quiet_hours]\nenabled = false\n",
            sms.base_url()
        ),
    )
    .unwrap();
    let rules_file = dir.path().join("rules.toml");
    std::fs::write(&rules_file, rules()).unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();

    let mut stack = Stack::new(TestDb::sqlite()).await;
    sanyu_test_support::fixtures::add_students(&stack.conn, "SCH1", HIGH).await;
    let with_config = ("SANYU_CONFIG", config.display().to_string());
    stack
        .start_gateway_with(&[
            with_config.clone(),
            ("SANYU_SCREENING__SPOOL_DIR", spool.display().to_string()),
        ])
        .await;
    stack.start_rules(&[
        with_config.clone(),
        ("SANYU_RULES__FILE", rules_file.display().to_string()),
    ]);
    stack.start_notifier_with(&[
        with_config,
        ("SANYU_NOTIFY__DIGEST_WINDOW_SECS", WINDOW_SECS.to_string()),
    ]);

    // 40 severe results (item 9 = 0) and S1 with a positive item 9.
    let mut csv = String::from("学号,姓名,题1,题2,题3,题4,题5,题6,题7,题8,题9\n");
    for i in 0..HIGH {
        csv.push_str(&format!("B{i:05},Bench Student {i},3,3,3,3,3,3,3,0,0\n"));
    }
    csv.push_str("S1,Student One,0,0,0,0,0,0,0,0,1\n");
    let counsellor = stack.school.counsellor.clone();
    let r = post_import(&stack, &counsellor, "PHQ-9", csv.as_bytes()).await;
    assert_eq!(r.status(), 202);
    let import: Value = r.json().await.unwrap();
    let import_id = import["import_id"].as_str().unwrap().to_owned();
    let imported_at = std::time::Instant::now();
    wait_until_done(&stack, &counsellor, &import_id).await;

    let cases = stack.wait_for_cases(HIGH + 1).await;
    let high: Vec<&Value> = cases.iter().filter(|c| c["level"] == "high").collect();
    let critical: Vec<&Value> = cases.iter().filter(|c| c["level"] == "critical").collect();
    assert_eq!(high.len(), HIGH, "{cases:?}");
    assert_eq!(critical.len(), 1, "{cases:?}");
    let critical_ref = critical[0]["reference"].as_str().unwrap().to_owned();
    let high_refs: HashSet<String> = high
        .iter()
        .map(|c| c["reference"].as_str().unwrap().to_owned())
        .collect();

    // The critical case at once, on its own, by SMS and by email.
    let email = stack.school.counsellor_email.clone();
    eventually(
        Duration::from_secs(30),
        "the critical case's SMS and email to the counsellor",
        || async {
            let texted = sms.received().iter().any(|m| {
                m.phone.ends_with(COUNSELLOR_PHONE)
                    && !is_digest(m)
                    && m.text.as_deref().unwrap_or("").contains(&critical_ref)
            });
            let mailed = stack
                .smtp
                .received()
                .iter()
                .any(|m| m.to.contains(&email) && m.subject().contains(&critical_ref));
            (texted && mailed).then_some(())
        },
    )
    .await;
    assert!(
        imported_at.elapsed() < Duration::from_secs(WINDOW_SECS),
        "the critical notices came only after the digest window"
    );
    assert!(
        !sms.received().iter().any(is_digest),
        "a digest went out before its window closed"
    );

    // One digest SMS and one digest email to the counsellor, listing the 40.
    let digest_sms = eventually(
        Duration::from_secs(WINDOW_SECS + 45),
        "the counsellor's digest SMS",
        || async {
            sms.received()
                .into_iter()
                .find(|m| m.phone.ends_with(COUNSELLOR_PHONE) && is_digest(m))
        },
    )
    .await;
    assert_eq!(digest_sms.template, "digest.zh-CN");
    let count = digest_sms
        .params
        .iter()
        .find(|(n, _)| n == "count")
        .map(|(_, v)| v.clone());
    assert_eq!(count.as_deref(), Some("40"), "{:?}", digest_sms.params);
    let digest_mail = eventually(
        Duration::from_secs(30),
        "the counsellor's digest email",
        || async {
            stack
                .smtp
                .received()
                .into_iter()
                .find(|m| m.to.contains(&email) && m.subject().contains("汇总"))
        },
    )
    .await;
    let body = digest_mail.text();
    eprintln!(
        "digest SMS: {:?}\ndigest email: {}\n{body}",
        digest_sms.text,
        digest_mail.subject()
    );
    for reference in &high_refs {
        assert!(
            body.contains(reference.as_str()),
            "{reference} missing from the digest email"
        );
    }
    assert!(
        !body.contains(&critical_ref),
        "the critical case is never in a digest"
    );
    assert!(
        digest_mail.subject().contains("40"),
        "{}",
        digest_mail.subject()
    );
    // Nothing about a student or a result in either (references, which are
    // random, may spell anything: the deny-list masks them).
    let text = digest_sms.text.clone().unwrap_or_default();
    for leak in ["Bench Student", "Student One", "severe"] {
        assert!(!text.contains(leak), "digest SMS leaks {leak}: {text}");
        assert!(!body.contains(leak), "digest email leaks {leak}");
    }

    // Each high case shows the counsellor's SMS and email as sent (the
    // ladder tracks each case), and no case was texted on its own.
    for case in &high {
        let id = case["id"].as_str().unwrap();
        let sent = eventually(
            Duration::from_secs(30),
            "the case's notices recorded",
            || async {
                let v: Value = stack
                    .get(&counsellor, &format!("/v1/cases/{id}"))
                    .await
                    .json()
                    .await
                    .ok()?;
                let all = v["notifications"].as_array()?.clone();
                let done = !all.is_empty()
                    && all
                        .iter()
                        .all(|d| d["status"] == "sent" || d["status"] == "failed");
                done.then_some(all)
            },
        )
        .await;
        for channel in ["sms", "email"] {
            assert!(
                sent.iter()
                    .any(|d| d["channel"] == channel && d["status"] == "sent"),
                "{channel} of {id}: {sent:?}"
            );
        }
    }
    // A little longer: still one digest per channel, and no high case's
    // own SMS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let to_counsellor: Vec<_> = sms
        .received()
        .into_iter()
        .filter(|m| m.phone.ends_with(COUNSELLOR_PHONE))
        .collect();
    assert_eq!(
        to_counsellor.iter().filter(|m| is_digest(m)).count(),
        1,
        "one digest SMS"
    );
    for m in to_counsellor.iter().filter(|m| !is_digest(m)) {
        let text = m.text.as_deref().unwrap_or("");
        assert!(
            !high_refs.iter().any(|r| text.contains(r.as_str())),
            "a high case was texted on its own: {text}"
        );
    }
    let digest_mails = stack
        .smtp
        .received()
        .into_iter()
        .filter(|m| m.to.contains(&email) && m.subject().contains("汇总"))
        .count();
    assert_eq!(digest_mails, 1, "one digest email");
}
