//! `sanyu-bench-rules`: the rules engine at scale (issue 4). 100,000 signals of
//! mixed sources and levels (teacher reports, identified hotline calls,
//! screening results with 1 % suicide items) about 50,000 students, decided
//! by the real engine (`sanyu_rules::run`, batched decisions) on PostgreSQL
//! with JetStream at production durability (`sync_interval: always`). In the
//! same run, on the same servers, a consumer that only acks the same stream
//! gives the reference rate.
//!
//! `cargo run --release -p sanyu-bench --bin sanyu-bench-rules -- --signals 100000 --students 50000`

use std::time::{Duration, Instant};

use anyhow::Result;
use async_nats::jetstream::{self, consumer::pull};
use chrono::Utc;
use clap::Parser;
use futures::StreamExt;
use sanyu_bench::pg_args::PgArgs;
use sanyu_bench::settings;
use sanyu_bench::{common, common::Rng};
use sanyu_domain::{RiskLevel, student_partition};
use sanyu_events::{Payload, subjects, v1};
use sanyu_platform::config::Secret;
use sanyu_platform::{Config, Shutdown, telemetry};
use sanyu_store::entities::{case, decision};
use sanyu_test_support::{NatsServer, TestDb, fixtures};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, QueryOrder, QuerySelect};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    about = "Rules engine decisions/s against an ack-only consumer, at production durability"
)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    signals: usize,
    #[arg(long, default_value_t = 50_000)]
    students: usize,
    /// Signals decided per transaction (rules.max_batch).
    #[arg(long, default_value_t = 500)]
    max_batch: usize,
    /// Lanes of the engine (rules.lanes).
    #[arg(long, default_value_t = 2)]
    lanes: usize,
    #[command(flatten)]
    pg: PgArgs,
    /// A small run for CI: 500 signals over 200 students.
    #[arg(long)]
    smoke: bool,
}

/// One signal of the mix: (subject, event id, encoded envelope).
fn signal(i: usize, student: Uuid, rng: &mut Rng) -> (String, String, Vec<u8>) {
    let partition = student_partition(student);
    let now = Utc::now();
    let level = |rng: &mut Rng| match rng.below(100) {
        0..=39 => RiskLevel::Watch,
        40..=79 => RiskLevel::Elevated,
        80..=98 => RiskLevel::High,
        _ => RiskLevel::Critical,
    };
    match rng.below(100) {
        0..=49 => {
            let id = format!("report:bench:{i}");
            let payload = Payload::ReportSubmitted(v1::ReportSubmitted {
                report_id: Uuid::now_v7().to_string(),
                student_id: student.to_string(),
                class_code: "C1".into(),
                category: "low_mood".into(),
                suggested_level: sanyu_events::level_to_proto(level(rng)) as i32,
                observed_at: Some(sanyu_events::timestamp(now)),
                reporter_token_id: Uuid::nil().to_string(),
                zero_report: false,
            });
            (
                subjects::report_submitted("RULES", partition),
                id.clone(),
                sanyu_events::encode(&sanyu_events::envelope(
                    id, now, "RULES", partition, payload,
                )),
            )
        }
        50..=64 => {
            let id = format!("hotline:bench:{i}");
            let payload = Payload::HotlineCall(v1::HotlineCallLogged {
                call_id: format!("call-{i}"),
                student_id: student.to_string(),
                caller_type: "student".into(),
                risk_level: sanyu_events::level_to_proto(level(rng)) as i32,
                started_at: Some(sanyu_events::timestamp(now)),
                record_id: Uuid::now_v7().to_string(),
            });
            (
                subjects::hotline_call("RULES", partition),
                id.clone(),
                sanyu_events::encode(&sanyu_events::envelope(
                    id, now, "RULES", partition, payload,
                )),
            )
        }
        _ => {
            let id = format!("screening:bench:{i}");
            let suicide = rng.below(100) == 0;
            let (band, level) = match rng.below(3) {
                0 => ("mild", RiskLevel::Watch),
                1 => ("moderate", RiskLevel::Elevated),
                _ => ("severe", RiskLevel::High),
            };
            let payload = Payload::ScreeningResult(v1::ScreeningResultRecorded {
                result_id: Uuid::now_v7().to_string(),
                import_id: Uuid::nil().to_string(),
                student_id: student.to_string(),
                instrument: "phq9".into(),
                band: band.into(),
                flags: if suicide {
                    vec!["suicide_item".into()]
                } else {
                    vec![]
                },
                administered_at: Some(sanyu_events::timestamp(now)),
                suggested_level: sanyu_events::level_to_proto(level) as i32,
                rejected: false,
                signal_id: String::new(),
            });
            (
                subjects::screening_result("RULES", partition),
                id.clone(),
                sanyu_events::encode(&sanyu_events::envelope(
                    id, now, "RULES", partition, payload,
                )),
            )
        }
    }
}

/// Publish every signal, many acks in flight (not measured).
async fn publish_all(
    js: &jetstream::Context,
    signals: Vec<(String, String, Vec<u8>)>,
) -> Result<()> {
    let mut inflight = futures::stream::FuturesUnordered::new();
    for (subject, id, payload) in signals {
        let ack = js
            .send_publish(
                subject,
                jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .message_id(id),
            )
            .await?;
        inflight.push(ack.into_future());
        while inflight.len() >= 2000 {
            if let Some(r) = inflight.next().await {
                r?;
            }
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(())
}

/// Reference: a durable consumer on the same stream that only acks.
async fn ack_only(js: &jetstream::Context, n: usize) -> Result<f64> {
    let stream = js.get_stream(subjects::INTAKE_STREAM).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("ackonly".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 1000,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(512)
        .messages()
        .await?;
    let started = Instant::now();
    let mut seen = 0;
    while seen < n {
        let Some(message) = messages.next().await else {
            break;
        };
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        seen += 1;
    }
    Ok(seen as f64 / started.elapsed().as_secs_f64())
}

/// Reference: the least any engine must write on PostgreSQL for a decision,
/// because the issue asks that every decision be stored with its rule, rules
/// version and the signals it used: one `decisions` row per signal, nothing
/// read, no rules, no case, no processed record, no outbox. The same batch
/// size and concurrency as the engine, each batch its own committed
/// transaction, into a fresh database (so its indexes are as small as the
/// engine's at its start). An upper bound of what any design that stores its
/// decisions can reach here.
async fn decision_rows_only(
    pg_url: &str,
    signals: usize,
    max_batch: usize,
    lanes: usize,
) -> Result<f64> {
    use sanyu_store::decisions::{self, NewDecision};
    let floor_db = TestDb::postgres_at(pg_url).await;
    let conn = floor_db.connect().await;
    let school = Uuid::now_v7();
    let now = Utc::now();
    let rows: Vec<NewDecision> = (0..signals)
        .map(|i| NewDecision {
            signal_id: format!("report:floor:{i}"),
            message_id: format!("report:floor:{i}"),
            student_id: Uuid::now_v7(),
            school_id: school,
            source: "report".into(),
            signal_at: now,
            level: Some(sanyu_domain::RiskLevel::Elevated),
            instrument: None,
            band: None,
            flags: vec![],
            category: Some("low_mood".into()),
            decision: "no_action".into(),
            case_id: None,
            case_level: None,
            follow_up_on: None,
            rule_id: "bench.floor".into(),
            rules_version: "bench".into(),
            used: vec![format!("report:floor:{i}")],
            decided_at: now,
        })
        .collect();
    let batches: Vec<Vec<NewDecision>> = rows.chunks(max_batch.max(1)).map(<[_]>::to_vec).collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..lanes.max(1) {
        let (queue, conn) = (queue.clone(), conn.clone());
        tasks.spawn(async move {
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("queue poisoned"))?
                    .pop();
                let Some(batch) = next else { break };
                let txn = sanyu_store::begin_write(&conn).await?;
                decisions::insert_many(&*txn, batch).await?;
                txn.commit().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let rate = signals as f64 / started.elapsed().as_secs_f64();
    conn.close().await?;
    Ok(rate)
}

#[tokio::main]
async fn main() -> Result<()> {
    sanyu_platform::install_crypto_provider();
    let mut args = Args::parse();
    if args.smoke {
        args.signals = 500;
        args.students = 200;
    }
    let db = TestDb::postgres_at(&args.pg.pg_url).await;
    let nats = NatsServer::start_with(true).await;
    let conn = db.connect().await;
    fixtures::seed_school(&conn, "RULES").await;
    let students = common::insert_students(&conn, "RULES", "R", args.students).await?;
    let dir = tempfile::tempdir()?;

    let mut config = Config::default();
    config.database.url = Secret::new(db.url());
    config.database.max_connections = 16;
    config.nats.url = nats.url();
    config.security.data_key = Secret::new(sanyu_store::crypto::Sealer::generate_key());
    config.smtp.file_dir = dir.path().join("mail").display().to_string();
    config.telemetry.log_filter =
        std::env::var("SANYU_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    config.telemetry.log_format = "pretty".into();
    config.rules.max_batch = args.max_batch;
    config.rules.lanes = args.lanes;
    settings::print_changed(&config);
    let telemetry = telemetry::init("sanyu-bench-rules", &config.telemetry)?;

    let backbone = sanyu_platform::nats::connect(&config.nats, "bench").await?;
    backbone.ensure_streams().await?;
    let js = backbone.js.clone();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mix: Vec<_> = (0..args.signals)
        .map(|i| {
            let s = students[rng.below(students.len() as u64) as usize];
            signal(i, s, &mut rng)
        })
        .collect();
    println!(
        "signals={} students={} max_batch={} lanes={} backend=postgresql nats=sync_interval: always",
        args.signals, args.students, args.max_batch, args.lanes
    );
    let started = Instant::now();
    publish_all(&js, mix).await?;
    println!(
        "published {} signals in {:.1} s (not measured)",
        args.signals,
        started.elapsed().as_secs_f64()
    );

    let reference = ack_only(&js, args.signals).await?;
    println!("reference: ack-only consumer {reference:.0} messages/s");
    let floor =
        decision_rows_only(&args.pg.pg_url, args.signals, args.max_batch, args.lanes).await?;
    println!(
        "reference: decision rows only (one INSERT of {} rows per committed transaction, {} connections, nothing else) {floor:.0} rows/s = {:.2} of the ack-only rate",
        args.max_batch,
        args.lanes,
        floor / reference
    );

    let shutdown = Shutdown::new();
    let started = Instant::now();
    let engine = tokio::spawn(sanyu_rules::run(config.clone(), shutdown.clone()));
    loop {
        let n = decision::Entity::find().count(&conn).await?;
        if n as usize >= args.signals {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("only {n} of {} signals decided after 30 min", args.signals);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = started.elapsed();
    let first: Option<chrono::DateTime<Utc>> = decision::Entity::find()
        .select_only()
        .column(decision::Column::DecidedAt)
        .order_by_asc(decision::Column::DecidedAt)
        .into_tuple()
        .one(&conn)
        .await?;
    let last: Option<chrono::DateTime<Utc>> = decision::Entity::find()
        .select_only()
        .column(decision::Column::DecidedAt)
        .order_by_desc(decision::Column::DecidedAt)
        .into_tuple()
        .one(&conn)
        .await?;
    let span = match (first, last) {
        (Some(a), Some(b)) => (b - a)
            .to_std()
            .unwrap_or(wall)
            .max(Duration::from_millis(1)),
        _ => wall,
    };
    let cases = case::Entity::find().count(&conn).await?;
    let rate = args.signals as f64 / span.as_secs_f64();
    println!(
        "rules engine: {} decisions in {:.1} s (first to last decision) = {rate:.0} decisions/s; wall incl. start-up {:.1} s",
        args.signals,
        span.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!("cases opened: {cases}");
    println!(
        "ratio to the ack-only consumer: {:.2} (goal >= 0.25)",
        rate / reference
    );
    println!(
        "ratio to the decision-rows-only reference: {:.2}",
        rate / floor
    );
    // What the decisions wrote, table by table (the relay's updates of the
    // outbox rows come on top).
    let mut written = Vec::new();
    let mut total = 0i64;
    for table in [
        "decisions",
        "processed_messages",
        "cases",
        "case_signals",
        "outbox",
        "timers",
        "watch_list",
    ] {
        let row = conn
            .query_one_raw(sanyu_store::sea_orm::Statement::from_string(
                sanyu_store::sea_orm::DatabaseBackend::Postgres,
                format!("SELECT count(*) AS n FROM {table}"),
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no count of {table}"))?;
        let n: i64 = row.try_get("", "n")?;
        total += n;
        written.push(format!("{table} {n}"));
    }
    println!(
        "rows written: {} = {:.1} rows per decision",
        written.join(", "),
        total as f64 / args.signals as f64
    );
    println!(
        "peak memory (whole process, VmHWM): {:.0} MiB",
        common::peak_rss_mib()
    );
    shutdown.token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), engine).await;
    drop(telemetry);
    Ok(())
}
