//! TLS everywhere (issue #17): the chain runs with PostgreSQL behind
//! `sslmode=verify-full`, and with SMTP over STARTTLS and over implicit TLS,
//! each against a CA the test makes; a database, SMTP or NATS certificate
//! the services do not trust stops them at start-up with a message naming
//! the setting, and plaintext to
//! another host is refused unless `security.allow_plaintext`. (NATS over TLS:
//! `report_to_email::the_chain_runs_over_a_nats_server_that_requires_tls`.)

use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{PgCluster, ServiceProcess, SmtpServer, TestCa, TestDb};

/// A report reaches the counsellor's inbox through the whole chain.
async fn report_reaches_the_inbox(stack: &mut Stack) {
    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier();
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "x"),
        )
        .await;
    assert_eq!(response.status(), 202);
    let mails = stack.smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mails[0].to, vec![stack.school.counsellor_email.clone()]);
}

/// Wait until `process` ends by itself; its log.
async fn exits_with_log(process: &mut ServiceProcess) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while process.is_running() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} still runs after 30 s: {}",
            process.name(),
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.logs()
}

fn new_ca() -> (tempfile::TempDir, TestCa) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::write(dir.path());
    (dir, ca)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_runs_on_postgres_with_verify_full_and_a_foreign_ca_stops_the_services() {
    let (_dir, ca) = new_ca();
    let Some(cluster) = PgCluster::start_tls(&ca).await else {
        return;
    };
    // The server takes TLS only: a plaintext connection is rejected.
    let plain = sea_orm::Database::connect(cluster.admin_url()).await;
    assert!(plain.is_err(), "the server must refuse plaintext");

    let db = TestDb::postgres_at(&cluster.tls_url("postgres", &ca.ca())).await;
    let url = db.url().to_owned();
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let mut stack = Stack::new(db).await;
    report_reaches_the_inbox(&mut stack).await;

    // The same server, a CA the service does not know: it stops at once,
    // saying why, rather than retrying for ever.
    let (_other_dir, other) = new_ca();
    let foreign = url.replace(
        &ca.ca().display().to_string(),
        &other.ca().display().to_string(),
    );
    let mut rules = ServiceProcess::spawn(
        "sanyu-rules",
        &stack.env_with(&[("SANYU_DATABASE__URL", foreign)]),
    );
    let log = exits_with_log(&mut rules).await;
    assert!(
        log.contains("database.url") && log.contains("TLS refused"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn email_goes_out_over_starttls_and_over_implicit_tls() {
    for implicit in [false, true] {
        let (_dir, ca) = new_ca();
        let mut stack = Stack::new(TestDb::sqlite()).await;
        stack.smtp = if implicit {
            SmtpServer::start_implicit_tls(&ca)
        } else {
            SmtpServer::start_starttls(&ca)
        };
        let scheme = if implicit {
            "smtps://"
        } else {
            "?tls=required"
        };
        assert!(stack.smtp.url().contains(scheme), "{}", stack.smtp.url());
        stack.env_extra.push((
            "SANYU_SMTP__TLS_CA_FILE".into(),
            ca.ca().display().to_string(),
        ));
        report_reaches_the_inbox(&mut stack).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_smtp_certificate_the_notifier_does_not_trust_stops_it_at_start_up() {
    for implicit in [false, true] {
        let (_dir, ca) = new_ca();
        let (_other_dir, other) = new_ca();
        let mut stack = Stack::new(TestDb::sqlite()).await;
        stack.smtp = if implicit {
            SmtpServer::start_implicit_tls(&ca)
        } else {
            SmtpServer::start_starttls(&ca)
        };
        stack.env_extra.push((
            "SANYU_SMTP__TLS_CA_FILE".into(),
            other.ca().display().to_string(),
        ));
        stack.start_notifier();
        let notifier = stack.notifier.as_mut().expect("notifier");
        let log = exits_with_log(notifier).await;
        assert!(
            log.contains("smtp.url") && log.contains("TLS to the SMTP server failed"),
            "implicit={implicit}: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_certificate_the_service_does_not_trust_stops_it_at_start_up() {
    let nats = sanyu_e2e::support::NatsServer::start_tls().await;
    let mut stack = Stack::with_nats(TestDb::sqlite(), nats).await;
    let (_other_dir, other) = new_ca();
    stack.env_extra.push((
        "SANYU_NATS__TLS_CA_FILE".into(),
        other.ca().display().to_string(),
    ));
    stack.start_rules(&[]);
    let rules = stack.rules.as_mut().expect("rules engine");
    let log = exits_with_log(rules).await;
    assert!(
        log.contains("nats.url") && log.contains("TLS refused"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_to_another_host_is_refused_unless_allowed() {
    let stack = Stack::new(TestDb::sqlite()).await;
    let cases = [
        (
            "SANYU_DATABASE__URL",
            "postgres://sanyu@db.school.example/sanyu".to_owned(),
            "database.url",
        ),
        (
            "SANYU_NATS__URL",
            "nats://n1.school.example:4222".to_owned(),
            "nats.url",
        ),
        (
            "SANYU_SMTP__URL",
            "smtp://mail.school.example:25".to_owned(),
            "smtp.url",
        ),
    ];
    for (key, value, named) in cases {
        let mut gateway =
            ServiceProcess::spawn("sanyu-gateway", &stack.env_with(&[(key, value.clone())]));
        let log = exits_with_log(&mut gateway).await;
        assert!(
            log.contains(named) && log.contains("allow_plaintext"),
            "{key}: {log}"
        );
    }
    // Allowed explicitly: the gateway gets past the check (and keeps trying
    // to reach a database that does not exist, rather than refusing).
    let mut gateway = ServiceProcess::spawn(
        "sanyu-gateway",
        &stack.env_with(&[
            (
                "SANYU_DATABASE__URL",
                "postgres://sanyu@db.school.example/sanyu".to_owned(),
            ),
            ("SANYU_SECURITY__ALLOW_PLAINTEXT", "true".to_owned()),
        ]),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(gateway.is_running(), "{}", gateway.logs());
}
