//! `notify-bench`: the notifier alone, SMS and email.
//!
//! Starts a real nats-server with `sync_interval: always`, a real SMTP server
//! over TCP, the signed-webhook SMS stand-in and a fresh PostgreSQL (or
//! SQLite) database; runs the notifier in this process; publishes `--n`
//! critical notification requests to the NOTIFY stream (each is one SMS and
//! one email, so no rate limit or quiet hours apply) at `--rate` per second (0:
//! as fast as JetStream acks them); and measures, per channel, the time from
//! the publish to the provider's acceptance as the notifier saw it (the
//! accepted attempt's timestamp, written right after the provider answered).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use hdrhistogram::Histogram;
use sanyu_bench::pg_args::PgArgs;
use sanyu_bench::settings;
use sanyu_events::{Payload, subjects, v1};
use sanyu_platform::config::Secret;
use sanyu_platform::{Config, Shutdown, nats, telemetry};
use sanyu_sms::stand_in::{StandIn, StandInKind};
use sanyu_store::entities::{delivery_attempt, staff};
use sanyu_test_support::{NatsServer, SmtpServer, TestDb, fixtures};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

#[derive(Debug, Parser)]
#[command(about = "Notifier throughput and latency: requests → SMS stand-in and SMTP")]
struct Args {
    /// Number of notification requests (each one SMS and one email).
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Requests per second (0: publish as fast as JetStream acknowledges).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Use SQLite instead of PostgreSQL.
    #[arg(long)]
    sqlite: bool,
    #[command(flatten)]
    pg: PgArgs,
    /// A small run for CI: 50 requests.
    #[arg(long)]
    smoke: bool,
}

fn print_histogram(name: &str, h: &Histogram<u64>) {
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "{name:<28} n={:<6} p50={:>8.2} ms  p90={:>8.2} ms  p99={:>8.2} ms  max={:>8.2} ms",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    sanyu_platform::install_crypto_provider();
    let mut args = Args::parse();
    if args.smoke {
        args.n = 50;
    }
    let db = if args.sqlite {
        TestDb::sqlite()
    } else {
        TestDb::postgres_at(&args.pg.pg_url).await
    };
    let nats_server = NatsServer::start_with(true).await;
    let smtp = SmtpServer::start();
    let stand_in = StandIn::start(StandInKind::Webhook, "", "bench-webhook-secret").await?;
    let conn = db.connect().await;
    fixtures::seed_school(&conn, "BENCH").await;
    let k1 = staff::Entity::find()
        .filter(staff::Column::StaffNo.eq("K1"))
        .one(&conn)
        .await?
        .context("counsellor K1")?
        .id;

    let mut config = Config::default();
    config.database.url = Secret::new(db.url());
    config.database.max_connections = 16;
    config.nats.url = nats_server.url();
    config.smtp.url = Secret::new(smtp.url());
    config.telemetry.log_filter = "warn".into();
    config.telemetry.log_format = "pretty".into();
    config.sms.primary = Some(serde_json::from_value(serde_json::json!({
        "kind": "webhook",
        "url": stand_in.base_url(),
        "secret": "bench-webhook-secret",
    }))?);
    settings::print_changed(&config);
    let telemetry = telemetry::init("notify-bench", &config.telemetry)?;
    let shutdown = Shutdown::new();
    let notifier = tokio::spawn(sanyu_notifier::run(config.clone(), shutdown.clone()));
    let backbone = nats::connect(&config.nats, "notify-bench").await?;
    backbone.ensure_streams().await?;
    println!(
        "backend={} nats={} (sync_interval: always) smtp=real TCP sms=webhook stand-in n={} rate={}",
        if args.sqlite { "sqlite" } else { "postgresql" },
        backbone.server_version(),
        args.n,
        if args.rate > 0.0 {
            format!("{}/s", args.rate)
        } else {
            "burst".into()
        },
    );

    let subject = subjects::notification_requested("BENCH");
    let mut published: HashMap<String, DateTime<Utc>> = HashMap::with_capacity(args.n);
    let started = Instant::now();
    let mut acks = Vec::with_capacity(args.n);
    for i in 0..args.n {
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let case_id = uuid::Uuid::now_v7();
        let key = format!("{case_id}:{k1}:e1:r0");
        let event_id = format!("notify.requested:{key}");
        let envelope = sanyu_events::envelope(
            event_id.clone(),
            Utc::now(),
            "BENCH",
            0,
            Payload::NotificationRequested(v1::NotificationRequested {
                notification_key: key.clone(),
                case_id: case_id.to_string(),
                case_reference: sanyu_domain::case_reference(case_id),
                level: v1::RiskLevel::Critical as i32,
                recipient_staff_id: k1.to_string(),
                channel: v1::Channel::Email as i32,
                reason: "case_opened".into(),
                rung: 0,
                reason_code: v1::NotificationReason::CaseOpened as i32,
                sign_in_code: String::new(),
                ack_outcome: String::new(),
                sign_in_link: String::new(),
            }),
        );
        published.insert(key, Utc::now());
        acks.push(
            backbone
                .publish_async(&subject, &event_id, sanyu_events::encode(&envelope), None)
                .await?,
        );
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                ack.await.context("publish ack")?;
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await.context("publish ack")?;
    }
    let published_in = started.elapsed();

    // Wait until every SMS and every email was accepted.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let accepted = delivery_attempt::Entity::find()
            .filter(delivery_attempt::Column::Status.eq("accepted"))
            .count(&conn)
            .await?;
        if accepted as usize >= 2 * args.n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {accepted} of {} sends accepted in time", 2 * args.n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();

    let attempts = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::Status.eq("accepted"))
        .all(&conn)
        .await?;
    let mut sms = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut email = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut last = published.values().min().copied().unwrap_or_else(Utc::now);
    let mut first = last;
    for a in &attempts {
        let request = sanyu_store::deliveries::request_key(&a.delivery_key);
        let Some(at) = published.get(request) else {
            continue;
        };
        first = first.min(*at);
        last = last.max(a.at);
        let micros = (a.at - *at).num_microseconds().unwrap_or(0).max(1) as u64;
        match a.channel.as_str() {
            "sms" => sms.record(micros)?,
            _ => email.record(micros)?,
        }
    }
    let window = (last - first).num_milliseconds().max(1) as f64 / 1000.0;
    println!(
        "published {} requests in {:.2} s; all {} sends accepted after {:.2} s",
        args.n,
        published_in.as_secs_f64(),
        2 * args.n,
        elapsed.as_secs_f64()
    );
    println!(
        "throughput: {:.0} notifications/s ({:.0} messages/s: SMS + email), first publish → last acceptance {:.2} s",
        args.n as f64 / window,
        (2 * args.n) as f64 / window,
        window
    );
    print_histogram("request → SMS accepted", &sms);
    print_histogram("request → email accepted", &email);
    println!(
        "stand-in received {} SMS, SMTP server received {} emails",
        stand_in.received().len(),
        smtp.received().len()
    );

    shutdown.token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), notifier).await;
    telemetry.shutdown();
    Ok(())
}
