//! Every bench once, as its real binary, in its small smoke mode (`--smoke`),
//! so that no bench the README names can silently stop working. Each prints
//! its figures and the settings it changes from the defaults; a test checks
//! only that it ran to the end (exit 0), never how fast: speed is measured by
//! running the benches themselves (README, "Performance").
//!
//! The benches find nats-server as the tests do (`SANYU_NATS_SERVER`, then
//! `.tools/`) and make a fresh database on `SANYU_TEST_PG_URL`. Without
//! PostgreSQL the PostgreSQL runs are skipped and say so; under CI
//! (`CI=true`) they fail instead.

use std::process::Command;

fn smoke(bin: &str, args: &[&str]) {
    let out = Command::new(bin)
        .arg("--smoke")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not start {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with the test's output (nextest prints it for a failure).
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "{bin} --smoke {args:?} ended with {}",
        out.status
    );
}

/// Whether a PostgreSQL server is configured for the benches' databases.
fn postgres() -> bool {
    match std::env::var("SANYU_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => true,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but SANYU_TEST_PG_URL is not set: the PostgreSQL smoke runs are required under CI"
            );
            eprintln!("SANYU_TEST_PG_URL is not set: skipping this bench's PostgreSQL smoke run");
            false
        }
    }
}

#[test]
fn report_to_email_on_sqlite() {
    smoke(env!("CARGO_BIN_EXE_sanyu-bench"), &["--sqlite"]);
}

#[test]
fn report_to_email_on_postgres() {
    if postgres() {
        smoke(env!("CARGO_BIN_EXE_sanyu-bench"), &[]);
    }
}

#[test]
fn notify_on_sqlite() {
    smoke(env!("CARGO_BIN_EXE_notify-bench"), &["--sqlite"]);
}

#[test]
fn notify_on_postgres() {
    if postgres() {
        smoke(env!("CARGO_BIN_EXE_notify-bench"), &[]);
    }
}

#[test]
fn screening_import() {
    if postgres() {
        smoke(env!("CARGO_BIN_EXE_sanyu-bench-screening"), &[]);
    }
}

#[test]
fn rules_engine() {
    if postgres() {
        smoke(env!("CARGO_BIN_EXE_sanyu-bench-rules"), &[]);
    }
}

#[test]
fn console_pages() {
    if postgres() {
        smoke(env!("CARGO_BIN_EXE_sanyu-bench-console"), &[]);
    }
}

#[test]
fn district() {
    if postgres() {
        smoke(env!("CARGO_BIN_EXE_sanyu-bench-district"), &[]);
    }
}

#[test]
fn burst() {
    if postgres() {
        smoke(env!("CARGO_BIN_EXE_sanyu-bench-burst"), &[]);
    }
}
