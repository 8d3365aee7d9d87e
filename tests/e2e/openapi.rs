//! The API does what `/openapi.json` says: schemathesis (`--checks all`)
//! against the real gateway binary (and the rules engine, which opens the
//! case the case routes are tested on), with every role's token and another
//! school's, on SQLite and PostgreSQL. Deterministic (a fixed seed, a bounded
//! number of examples per operation) and 0 failures.
//!
//! schemathesis comes from PyPI (`scripts/ensure-schemathesis.sh`, pinned).
//! Where it cannot be installed the test says so and skips; under `CI=true`
//! it must run.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, workspace_root};
use sea_orm::{EntityTrait, PaginatorTrait};

const SEED: &str = "20261204";

/// The `st` command, or `None` (with a note) where it cannot be had outside CI.
fn schemathesis() -> Option<PathBuf> {
    let script = workspace_root().join("scripts/ensure-schemathesis.sh");
    let out = Command::new("bash").arg(&script).output();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match out {
        Ok(out) if out.status.success() => {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Some(PathBuf::from(path))
        }
        Ok(out) if !ci => {
            eprintln!(
                "SKIPPED: schemathesis could not be installed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) if !ci => {
            eprintln!("SKIPPED: {} could not run: {e}", script.display());
            None
        }
        other => panic!("CI=true and schemathesis is not available: {other:?}"),
    }
}

async fn the_api_conforms_to_its_openapi_document(db: TestDb) {
    let Some(st) = schemathesis() else {
        return;
    };
    let mut stack = Stack::new(db).await;
    // The default body limit (the test harness's 16 KiB is less than the
    // longest note the API accepts).
    stack
        .start_gateway_with(&[("SANYU_HTTP__BODY_LIMIT_BYTES", "65536".to_owned())])
        .await;
    // A case and its student, for the routes that need a real record.
    stack.start_rules(&[]);
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "seen crying"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    let case_id = cases[0]["id"].as_str().expect("case id").to_owned();
    let student_id = cases[0]["student_id"]
        .as_str()
        .expect("student id")
        .to_owned();
    let s = &stack.school;
    // Each role's run covers the operations that role may use (what it gets
    // there differs by role: views, scope); the counsellor's run covers every
    // operation, so every 403 and 404 is checked too. Another school's
    // counsellor meets this school's records as nothing.
    let all = ".*";
    let runs = [
        ("counsellor", &s.counsellor, all, "8"),
        (
            "crisis_team",
            &s.crisis_team,
            "^/v1/(cases$|cases/[{]id[}]/assign|dead-letters|hotline-calls/[{]id[}])",
            "4",
        ),
        (
            "teacher",
            &s.teacher_c1,
            "^/v1/(reports|cases$|cases/[{]id[}]$|key-population$|zero-report)",
            "4",
        ),
        ("monitor", &s.monitor_c1, "^/v1/reports$", "4"),
        (
            "leader",
            &s.leader,
            "^/v1/(cases$|cases/[{]id[}]$|key-population$|students|zero-report)",
            "4",
        ),
        (
            "admin",
            &s.admin,
            "^/v1/(roster|dead-letters|screening-imports)",
            "4",
        ),
        ("district", &s.district, "^/v1/zero-report-periods", "4"),
        (
            "service",
            &s.service,
            "^/v1/(hotline-calls$|hotline-calls/import|screening-imports$)",
            "4",
        ),
        (
            "another school's counsellor",
            &stack.other_school.counsellor,
            "^/v1/(cases|students|hotline-calls/[{]id[}]$|screening-imports/)",
            "4",
        ),
    ];
    let schema = format!("{}/openapi.json", stack.base_url());
    let config = workspace_root().join("tests/schemathesis.toml");
    let report_dir = tempfile::tempdir().expect("report dir");
    let mut failed = Vec::new();
    // Two runs at a time (two cores).
    for pair in runs.chunks(2) {
        let children: Vec<_> = pair
            .iter()
            .map(|(role, token, paths, examples)| {
                let child = Command::new(&st)
                    .arg("--config-file")
                    .arg(&config)
                    .args(["run", &schema, "--checks", "all"])
                    .args(["--include-path-regex", paths])
                    .args(["--header", &format!("Authorization: Bearer {token}")])
                    .args(["--max-examples", examples, "--seed", SEED])
                    .args(["--generation-database", "none", "--workers", "1"])
                    .args(["--request-timeout", "10", "--no-color"])
                    .arg("--report-dir")
                    .arg(report_dir.path())
                    .env("SCHEMATHESIS_TELEMETRY", "false")
                    .env("SANYU_ST_CASE", &case_id)
                    .env("SANYU_ST_STUDENT", &student_id)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run schemathesis");
                (role, child)
            })
            .collect();
        for (role, child) in children {
            let out = child.wait_with_output().expect("schemathesis output");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let phases: Vec<&str> = stdout
                .lines()
                .filter(|l| l.contains(" (in "))
                .map(str::trim)
                .collect();
            eprintln!(
                "schemathesis as {role}: {} [{}]",
                stdout.lines().last().unwrap_or_default(),
                phases.join("; ")
            );
            if !out.status.success() {
                failed.push(format!(
                    "=== as {role} ({}):\n{stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    // The case routes ran on the real case: some work on it was recorded.
    let actions = sanyu_store::entities::case_action::Entity::find()
        .count(&stack.conn)
        .await
        .expect("count case actions");
    assert!(
        !failed.is_empty() || actions > 0,
        "the case routes never reached the seeded case"
    );
    eprintln!("case actions recorded on the seeded case: {actions}");
    if !failed.is_empty() {
        let logs = stack.gateway.as_ref().map(|g| g.logs()).unwrap_or_default();
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        panic!(
            "{}\n--- gateway log (last lines) ---\n{}",
            failed.join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_conforms_to_its_openapi_document_on_sqlite() {
    the_api_conforms_to_its_openapi_document(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_conforms_to_its_openapi_document_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_api_conforms_to_its_openapi_document(db).await;
    }
}
