//! Recovery from a backup (deploy/README.md, "Backups and recovery"): a
//! PostgreSQL dump taken while the system runs is restored into a fresh
//! database on a fresh NATS (the old host is gone), `sanyu audit verify`
//! passes on it, `sanyu outbox replay` publishes again what the lost NATS
//! store still held, and the services come back: the report that was
//! published but not yet handled becomes its case and its email, the outbox
//! drains, and nothing that was handled before the backup happens twice.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{
    NatsServer, ServiceProcess, SmtpServer, TestDb, binary, eventually, free_port,
};

/// `pg_dump` / `pg_restore` of the newest Debian server package (they must
/// not be older than the server), else the ones on PATH.
fn pg_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin").join(name)))
        })
        .filter(|(_, p)| p.exists())
        .collect();
    dirs.sort();
    if let Some((_, path)) = dirs.pop() {
        return Some(path);
    }
    let on_path = Command::new(name).arg("--version").output().ok()?;
    on_path.status.success().then(|| PathBuf::from(name))
}

fn run(program: &std::path::Path, args: &[&str], env: &[(String, String)]) -> String {
    let out = Command::new(program)
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

/// Emails whose subject names `reference`.
fn mails_about(smtp: &SmtpServer, reference: &str) -> usize {
    smtp.received()
        .iter()
        .filter(|m| m.subject().contains(reference))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_dump_verifies_replays_and_the_services_come_back() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (Some(pg_dump), Some(pg_restore)) = (pg_tool("pg_dump"), pg_tool("pg_restore")) else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but pg_dump/pg_restore are missing"
        );
        eprintln!("SKIPPED: no pg_dump/pg_restore on this machine");
        return;
    };
    let admin = std::env::var("SANYU_TEST_PG_URL").expect("set when TestDb::postgres is Some");

    // The running system: report A is handled end to end before the backup.
    let mut stack = Stack::started(db).await;
    let a = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "BACKUP-A"),
        )
        .await;
    assert_eq!(a.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    let reference_a = cases[0]["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    eventually(Duration::from_secs(30), "case A's email", || async {
        (mails_about(&stack.smtp, &reference_a) >= 1).then_some(())
    })
    .await;
    let emails_a_before = mails_about(&stack.smtp, &reference_a);

    // Report B is accepted and published, but the rules engine is down: its
    // event lives only in the NATS store when the backup is taken.
    if let Some(mut rules) = stack.rules.take() {
        rules.terminate(Duration::from_secs(10)).await;
    }
    let b = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S2", "high", "BACKUP-B"),
        )
        .await;
    assert_eq!(b.status(), 202);
    eventually(Duration::from_secs(20), "report B published", || async {
        let waiting = sanyu_store::outbox::pending_count(&stack.conn).await.ok()?;
        (waiting == 0).then_some(())
    })
    .await;

    // The backup, taken online.
    let backup_started = chrono::Utc::now();
    let dump_dir = tempfile::tempdir().expect("temp dir");
    let dump = dump_dir.path().join("sanyu.dump");
    let dump_arg = dump.display().to_string();
    run(
        &pg_dump,
        &[
            "--format=custom",
            "--file",
            &dump_arg,
            "--dbname",
            stack.db.url(),
        ],
        &[],
    );

    // The host is lost: services, NATS store and database.
    let school = stack.school.clone();
    let other_school = stack.other_school.clone();
    let data_key = stack.data_key.clone();
    drop(stack);

    // A fresh database from the dump, a fresh NATS and SMTP server.
    let restored = TestDb::postgres_at(&admin).await;
    run(
        &pg_restore,
        &[
            "--no-owner",
            "--exit-on-error",
            "--dbname",
            restored.url(),
            &dump_arg,
        ],
        &[],
    );
    let conn = restored.connect().await;
    let mut stack = Stack {
        nats: NatsServer::start().await,
        smtp: SmtpServer::start(),
        db: restored,
        conn,
        school,
        other_school,
        data_key,
        http_port: free_port(),
        gateway: None,
        rules: None,
        notifier: None,
        scheduler: None,
        http: reqwest::Client::new(),
        env_extra: Vec::new(),
        bin_dir: None,
    };
    let env = stack.env();
    let sanyu = binary("sanyu");

    let verified = run(&sanyu, &["audit", "verify"], &env);
    assert!(verified.contains("audit log intact"), "{verified}");

    let since = (backup_started - chrono::Duration::hours(1)).to_rfc3339();
    let replayed = run(&sanyu, &["outbox", "replay", "--since", &since], &env);
    let waiting: u64 = replayed
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("replay output: {replayed}"));
    assert!(waiting >= 2, "reports A and B wait again: {replayed}");

    // The services come back on the restored database.
    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier();
    stack.scheduler = Some(ServiceProcess::spawn("sanyu-scheduler", &env));

    let cases = stack.wait_for_cases(2).await;
    assert_eq!(cases.len(), 2, "one case per report, none twice: {cases:?}");
    let reference_b = cases
        .iter()
        .filter_map(|c| c["reference"].as_str())
        .find(|r| *r != reference_a)
        .expect("case B")
        .to_owned();
    eventually(Duration::from_secs(30), "case B's email", || async {
        (mails_about(&stack.smtp, &reference_b) >= 1).then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "the outbox drains", || async {
        let waiting = sanyu_store::outbox::pending_count(&stack.conn).await.ok()?;
        (waiting == 0).then_some(())
    })
    .await;
    // Give a duplicate time to show, then: case A's email was not sent again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        mails_about(&stack.smtp, &reference_a),
        0,
        "case A was notified before the backup ({emails_a_before} email(s)) and must not be notified again"
    );

    let verified = run(&sanyu, &["audit", "verify"], &env);
    assert!(verified.contains("audit log intact"), "{verified}");
}
