//! An upgrade while the previous release serves (deploy/README.md, "Upgrades"):
//!
//! 1. the previous release (`deploy/previous-release`, built by
//!    `scripts/ensure-previous-release.sh`) migrates an empty database and
//!    serves: report A becomes its case and its email;
//! 2. the new `sanyu migrate` runs while it serves (the additive step), and
//!    the old binaries go on working on the new schema: report B becomes its
//!    case and its email, case A is acknowledged through the old API;
//! 3. the services are replaced one at a time (the switch): with the new rules
//!    engine, notifier and scheduler behind the old gateway, report C is
//!    handled; then behind the new gateway report D, in another school.
//!
//! Each report becomes exactly one case and each case reaches each person
//! once; the new gateway reads what the old one wrote; the outbox drains and
//! the audit chain, written by both versions, verifies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{SmtpServer, TestDb, binary, eventually};
use serde_json::{Value, json};

/// The previous release's binaries (`SANYU_PREVIOUS_RELEASE_BIN`, set by
/// scripts/test.sh), or `None` with a note; required under CI.
fn previous_release_bin() -> Option<PathBuf> {
    match std::env::var("SANYU_PREVIOUS_RELEASE_BIN") {
        Ok(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but SANYU_PREVIOUS_RELEASE_BIN is not set (scripts/ensure-previous-release.sh)"
            );
            eprintln!(
                "SKIPPED: SANYU_PREVIOUS_RELEASE_BIN is not set; \
                 export SANYU_PREVIOUS_RELEASE_BIN=$(bash scripts/ensure-previous-release.sh)"
            );
            None
        }
    }
}

fn run(program: &Path, args: &[&str], env: &[(String, String)]) -> String {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("SANYU_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {args:?} failed: {text}",
        program.display()
    );
    text
}

/// How many emails each recipient got about `reference`.
fn mails_about(smtp: &SmtpServer, reference: &str) -> BTreeMap<String, usize> {
    let mut by_recipient = BTreeMap::new();
    for mail in smtp
        .received()
        .iter()
        .filter(|m| m.subject().contains(reference))
    {
        for to in &mail.to {
            *by_recipient.entry(to.clone()).or_insert(0) += 1;
        }
    }
    by_recipient
}

/// Post a high report about `student_no` as `teacher`; wait for its case (as
/// `counsellor`) and its first email. Returns the case's id and reference.
async fn report_and_first_email(
    stack: &Stack,
    teacher: &str,
    counsellor: &str,
    student_no: &str,
) -> (String, String) {
    let r = stack
        .post_report(
            teacher,
            &Stack::report_body(student_no, "high", "upgrade test"),
        )
        .await;
    assert_eq!(r.status(), 202, "report about {student_no}");
    let case = eventually(
        Duration::from_secs(30),
        &format!("the case of {student_no}"),
        || async {
            let v: Value = stack.get(counsellor, "/v1/cases").await.json().await.ok()?;
            v["cases"]
                .as_array()?
                .iter()
                .find(|c| c["student_no"] == student_no)
                .cloned()
        },
    )
    .await;
    let id = case["id"].as_str().expect("id").to_owned();
    let reference = case["reference"].as_str().expect("reference").to_owned();
    eventually(
        Duration::from_secs(30),
        &format!("the email about {student_no}'s case"),
        || async { (!mails_about(&stack.smtp, &reference).is_empty()).then_some(()) },
    )
    .await;
    (id, reference)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_previous_release_serves_through_the_migration_and_the_switch() {
    let Some(old) = previous_release_bin() else {
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        return;
    };

    // 1. The previous release makes its schema and serves.
    let data_key = sanyu_store::crypto::Sealer::generate_key();
    run(
        &old.join("sanyu"),
        &["migrate"],
        &[
            ("SANYU_DATABASE__URL".to_owned(), db.url().to_owned()),
            ("SANYU_SECURITY__DATA_KEY".to_owned(), data_key.clone()),
        ],
    );
    let mut stack = Stack::on_schema_as_is(db, data_key).await;
    stack.bin_dir = Some(old.clone());
    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier();
    stack.start_scheduler(&[]);
    let (teacher, counsellor) = (
        stack.school.teacher_c1.clone(),
        stack.school.counsellor.clone(),
    );
    let (case_a, ref_a) = report_and_first_email(&stack, &teacher, &counsellor, "S1").await;

    // 2. The new schema, applied while the previous release serves.
    let migrated = run(&binary("sanyu"), &["migrate"], &stack.env());
    eprintln!("new `sanyu migrate` beside the running previous release: {migrated}");
    let (_case_b, ref_b) = report_and_first_email(&stack, &teacher, &counsellor, "S2").await;
    let r = stack
        .act(&counsellor, &case_a, "acknowledge", json!({}))
        .await;
    assert_eq!(
        r.status(),
        200,
        "the old gateway acknowledges on the new schema"
    );

    // 3. The switch, one service at a time; old and new serve side by side.
    stack.bin_dir = None;
    for service in ["rules", "notifier", "scheduler"] {
        let slot = match service {
            "rules" => &mut stack.rules,
            "notifier" => &mut stack.notifier,
            _ => &mut stack.scheduler,
        };
        if let Some(mut process) = slot.take() {
            let status = process.terminate(Duration::from_secs(15)).await;
            assert!(
                status.is_some_and(|s| s.success()),
                "the previous release's {service} stops cleanly: {status:?}"
            );
        }
        match service {
            "rules" => stack.start_rules(&[]),
            "notifier" => stack.start_notifier(),
            _ => stack.start_scheduler(&[]),
        }
    }
    // The old gateway in front of the new rules engine and notifier.
    let teacher_c2 = stack.school.teacher_c2.clone();
    let (_case_c, ref_c) = report_and_first_email(&stack, &teacher_c2, &counsellor, "S3").await;
    if let Some(mut gateway) = stack.gateway.take() {
        gateway.terminate(Duration::from_secs(15)).await;
    }
    stack.start_gateway().await;
    let other = stack.other_school.clone();
    let (_case_d, ref_d) =
        report_and_first_email(&stack, &other.teacher_c1, &other.counsellor, "S1").await;

    // The new gateway reads what the old one wrote.
    let r = stack.get(&counsellor, &format!("/v1/cases/{case_a}")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], "acknowledged", "{body}");
    let cases = stack.wait_for_cases(3).await;
    assert_eq!(cases.len(), 3, "one case per report in SCH1: {cases:?}");

    eventually(Duration::from_secs(20), "the outbox drains", || async {
        let waiting = sanyu_store::outbox::pending_count(&stack.conn).await.ok()?;
        (waiting == 0).then_some(())
    })
    .await;
    // Give a duplicate time to show, then: each person got each case once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for reference in [&ref_a, &ref_b, &ref_c, &ref_d] {
        let mails = mails_about(&stack.smtp, reference);
        assert!(
            !mails.is_empty() && mails.values().all(|n| *n == 1),
            "case {reference}: one email per person, {mails:?}"
        );
    }

    let verified = run(&binary("sanyu"), &["audit", "verify"], &stack.env());
    assert!(verified.contains("audit log intact"), "{verified}");
}
