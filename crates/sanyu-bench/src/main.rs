//! `sanyu-bench`: the report→email latency of the whole chain.
//!
//! Starts a real nats-server with `sync_interval: always` (production
//! durability), a real SMTP server over TCP and a fresh PostgreSQL (or SQLite)
//! database; runs the gateway, rules engine and notifier in this process;
//! posts `--reports` warning reports (one per student, so each opens a case
//! and sends one email) at `--rate` per second; and measures, per report, the
//! time from sending the HTTP request to the SMTP server accepting the email.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use sanyu_bench::pg_args::PgArgs;
use sanyu_bench::settings;
use sanyu_platform::config::Secret;
use sanyu_platform::{Config, Shutdown, telemetry};
use sanyu_store::entities::{case, delivery, outbox, report, student};
use sanyu_test_support::{NatsServer, SmtpServer, TestDb, fixtures, free_port};
use sea_orm::EntityTrait;

/// Reports sent (and not measured) before the run.
const WARMUP: usize = 50;

#[derive(Debug, Parser)]
#[command(about = "Report→email latency at production durability")]
struct Args {
    /// Number of reports (each about a different student).
    #[arg(long, default_value_t = 1000)]
    reports: usize,
    /// Reports per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Use SQLite instead of PostgreSQL.
    #[arg(long)]
    sqlite: bool,
    #[command(flatten)]
    pg: PgArgs,
    /// Diagnosis only: run JetStream with its default 2-minute sync interval
    /// instead of `sync_interval: always` (not production durability).
    #[arg(long)]
    relaxed_nats_sync: bool,
    /// The provider rate limit for non-critical messages, per second
    /// (`notify.provider_per_second`; 0 = off). Default: the configuration's
    /// default (50). The bench's `high` reports are spread by it; they are
    /// never held by the per-recipient limit.
    #[arg(long)]
    provider_per_second: Option<u32>,
    /// A small run for CI: 20 reports at 20/s after 5 warm-up reports,
    /// whatever `--reports` and `--rate` say.
    #[arg(long)]
    smoke: bool,
}

fn print_histogram(name: &str, h: &Histogram<u64>) {
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "{name:<24} n={:<5} p50={:>7.2} ms  p90={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms  mean={:>7.2} ms",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        h.mean() / 1000.0,
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    sanyu_platform::install_crypto_provider();
    let mut args = Args::parse();
    let warmup = if args.smoke {
        args.reports = 20;
        args.rate = 20.0;
        5
    } else {
        WARMUP
    };
    let db = if args.sqlite {
        TestDb::sqlite()
    } else {
        TestDb::postgres_at(&args.pg.pg_url).await
    };
    let nats = NatsServer::start_with(!args.relaxed_nats_sync).await;
    let smtp = SmtpServer::start();
    let conn = db.connect().await;
    fixtures::seed_school(&conn, "BENCH").await;
    fixtures::add_students(&conn, "BENCH", args.reports + warmup).await;
    let teacher = sanyu_store::tokens::issue(
        &conn,
        sanyu_store::tokens::TokenRequest {
            role: sanyu_domain::Role::Teacher,
            school_code: "BENCH".into(),
            class_code: Some("C1".into()),
            staff_no: None,
            label: Some("bench".into()),
            ttl: chrono::Duration::hours(1),
        },
    )
    .await?
    .secret;

    let port = free_port();
    let mut config = Config::default();
    config.database.url = Secret::new(db.url());
    config.database.max_connections = 16;
    config.nats.url = nats.url();
    config.smtp.url = Secret::new(smtp.url());
    config.security.data_key = Secret::new(sanyu_store::crypto::Sealer::generate_key());
    config.http.listen = format!("127.0.0.1:{port}");
    config.http.public_base_url = format!("http://127.0.0.1:{port}");
    config.telemetry.log_filter = "warn".into();
    config.telemetry.log_format = "pretty".into();
    // The bench's `high` reports are measured to their own notices, not to
    // the recipient's digest.
    config.notify.digest_window_secs = 0;
    if let Some(limit) = args.provider_per_second {
        config.notify.provider_per_second = limit;
    }
    let telemetry = telemetry::init("sanyu-bench", &config.telemetry)?;

    let shutdown = Shutdown::new();
    let gateway = sanyu_gateway::Gateway::build(&config).await?;
    let services = [
        tokio::spawn(gateway.run_until_stopped(shutdown.clone())),
        tokio::spawn(sanyu_rules::run(config.clone(), shutdown.clone())),
        tokio::spawn(sanyu_notifier::run(config.clone(), shutdown.clone())),
    ];
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    sanyu_test_support::eventually(Duration::from_secs(20), "gateway ready", || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    println!(
        "backend={} nats={} ({}) smtp=real TCP reports={} rate={}/s",
        if args.sqlite { "sqlite" } else { "postgresql" },
        nats.url(),
        if args.relaxed_nats_sync {
            "default sync interval: NOT production durability"
        } else {
            "sync_interval: always"
        },
        args.reports,
        args.rate
    );
    settings::print_changed(&config);

    // Warm up (connection pools, SMTP connections, consumers) with reports that
    // are not measured, about other students.
    for i in args.reports..args.reports + warmup {
        let body = serde_json::json!({
            "student_no": format!("B{i:05}"),
            "category": "self_harm",
            "level": "high",
            "observed_at": chrono::Utc::now().to_rfc3339(),
            "narrative": "warm-up",
        });
        http.post(format!("{base}/v1/reports"))
            .bearer_auth(&teacher)
            .json(&body)
            .send()
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    smtp.wait_for(warmup, Duration::from_secs(60)).await;

    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    let mut sends = Vec::with_capacity(args.reports);
    for i in 0..args.reports {
        let at = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        let http = http.clone();
        let url = format!("{base}/v1/reports");
        let token = teacher.clone();
        let student_no = format!("B{i:05}");
        sends.push(tokio::spawn(async move {
            let body = serde_json::json!({
                "student_no": student_no,
                "category": "self_harm",
                "level": "high",
                "observed_at": chrono::Utc::now().to_rfc3339(),
                "narrative": "bench",
            });
            let sent = Instant::now();
            let r = http.post(url).bearer_auth(token).json(&body).send().await;
            let accepted = Instant::now();
            (student_no, sent, accepted, r.map(|r| r.status().as_u16()))
        }));
    }
    let mut sent_at = HashMap::new();
    let mut accept = Histogram::<u64>::new(3)?;
    for s in sends {
        let (no, sent, accepted, status) = s.await?;
        match status {
            Ok(202) => {}
            other => bail!("report for {no} was not accepted: {other:?}"),
        }
        accept.record(u64::try_from((accepted - sent).as_micros())?)?;
        sent_at.insert(no, sent);
    }
    let mails: Vec<_> = smtp
        .wait_for(args.reports + warmup, Duration::from_secs(180))
        .await
        .into_iter()
        .skip(warmup)
        .collect();
    let send_window = started.elapsed();

    // Email → case reference → student → the moment its report was sent.
    let students: HashMap<_, _> = student::Entity::find()
        .all(&conn)
        .await?
        .into_iter()
        .map(|s| (s.id, s.student_no))
        .collect();
    let by_reference: HashMap<_, _> = case::Entity::find()
        .all(&conn)
        .await?
        .into_iter()
        .filter_map(|c| {
            c.student_id
                .and_then(|id| students.get(&id))
                .map(|no| (c.reference, no.clone()))
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3)?;
    for mail in &mails {
        let subject = mail.subject();
        let reference = subject
            .split_whitespace()
            .find(|w| w.starts_with("C-"))
            .context("email subject without case reference")?;
        let no = by_reference
            .get(reference)
            .context("unknown case reference")?;
        let sent = sent_at
            .get(no)
            .context("email for a student without a report")?;
        latency.record(u64::try_from(
            mail.received_at.duration_since(*sent).as_micros(),
        )?)?;
    }
    // Where the time goes, from the rows' own timestamps (same clock).
    let stages = stage_breakdown(&conn, &mails).await?;
    println!(
        "reports sent over {:.1} s, {} emails received",
        send_window.as_secs_f64(),
        mails.len()
    );
    print_histogram("HTTP accept (202)", &accept);
    print_histogram("report → email", &latency);
    for (name, h) in &stages {
        print_histogram(name, h);
    }

    shutdown.token.cancel();
    for s in services {
        let _ = s.await;
    }
    telemetry.shutdown();
    drop(nats);
    Ok(())
}

/// Per-stage latency from the rows each stage writes.
async fn stage_breakdown(
    conn: &sanyu_store::Db,
    mails: &[sanyu_test_support::ReceivedMail],
) -> Result<Vec<(&'static str, Histogram<u64>)>> {
    let micros = |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
        u64::try_from((b - a).num_microseconds().unwrap_or(0).max(0)).unwrap_or(0)
    };
    let reports: HashMap<_, _> = report::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(|r| (r.student_id, r))
        .collect();
    let rows = outbox::Entity::find().all(conn).await?;
    let published: HashMap<_, _> = rows
        .iter()
        .filter_map(|o| {
            o.published_at
                .map(|p| (o.event_id.clone(), (o.created_at, p)))
        })
        .collect();
    // notify.requested:<case id>:… → when the notification request was published.
    let notify_published: HashMap<String, chrono::DateTime<chrono::Utc>> = rows
        .iter()
        .filter_map(|o| {
            let case_id = o
                .event_id
                .strip_prefix("notify.requested:")?
                .split(':')
                .next()?;
            Some((case_id.to_owned(), o.published_at?))
        })
        .collect();
    let deliveries: HashMap<_, _> = delivery::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(|d| (d.case_id, d))
        .collect();
    let mut received: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for m in mails {
        if let Some(r) = m.subject().split_whitespace().find(|w| w.starts_with("C-")) {
            received.insert(r.to_owned(), m.received_wall);
        }
    }
    let names = [
        "gateway commit → INTAKE",
        "INTAKE → case committed",
        "case → NOTIFY published",
        "NOTIFY → delivery claimed",
        "claimed → SMTP accepted",
    ];
    let mut hs: Vec<(&'static str, Histogram<u64>)> = names
        .iter()
        .map(|n| Histogram::<u64>::new(3).map(|h| (*n, h)))
        .collect::<Result<_, _>>()?;
    for c in case::Entity::find().all(conn).await? {
        let (Some(r), Some(d), Some(mail)) = (
            c.student_id.and_then(|id| reports.get(&id)),
            deliveries.get(&c.id),
            received.get(&c.reference),
        ) else {
            continue;
        };
        let Some((_, intake_pub)) = published.get(&r.event_id) else {
            continue;
        };
        let Some((case_created, _)) = published.get(&format!("case.opened:{}", c.id)) else {
            continue;
        };
        let Some(notify_pub) = notify_published.get(&c.id.to_string()) else {
            continue;
        };
        hs[0].1.record(micros(r.created_at, *intake_pub))?;
        hs[1].1.record(micros(*intake_pub, *case_created))?;
        hs[2].1.record(micros(*case_created, *notify_pub))?;
        hs[3].1.record(micros(*notify_pub, d.created_at))?;
        hs[4].1.record(micros(d.created_at, *mail))?;
    }
    Ok(hs)
}
