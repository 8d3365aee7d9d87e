//! `sanyu-bench-screening`: a mass screening imported end to end, with
//! JetStream at production durability (`sync_interval: always`) and
//! PostgreSQL: file → scored results stored → signals (outbox → INTAKE) →
//! rules decisions → cases. Prints rows/s, peak memory, and two reference
//! rates measured in the same run on the same servers: a PostgreSQL batched
//! insert of the same result rows, and a JetStream publish (awaited ack) of
//! one message per row.
//!
//! `cargo run --release -p sanyu-bench --bin sanyu-bench-screening -- --rows 100000`

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use clap::Parser;
use sanyu_bench::common;
use sanyu_bench::pg_args::PgArgs;
use sanyu_bench::settings;
use sanyu_importer::{Declaration, NewJob, ProcessOptions};
use sanyu_platform::config::Secret;
use sanyu_platform::relay::Waker;
use sanyu_platform::{Config, Shutdown, telemetry};
use sanyu_screening::ColumnProfile;
use sanyu_store::entities::{case, decision, outbox, screening_result};
use sanyu_store::screening::NewResult;
use sanyu_test_support::{NatsServer, TestDb, fixtures};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Screening import end to end at production durability")]
struct Args {
    /// Rows (one student each).
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Share of rows with a positive suicide item, in percent.
    #[arg(long, default_value_t = 1.0)]
    suicide_percent: f64,
    /// Share of rows past a cut-off (moderate or worse), in percent.
    #[arg(long, default_value_t = 10.0)]
    positive_percent: f64,
    /// Rows per transaction.
    #[arg(long, default_value_t = 2000)]
    batch_rows: usize,
    /// Skip the end-to-end wait for the rules engine (import only).
    #[arg(long)]
    import_only: bool,
    #[command(flatten)]
    pg: PgArgs,
    /// A small run for CI: 1,000 rows.
    #[arg(long)]
    smoke: bool,
}

/// A PHQ-9 file: most rows minimal, `positive_percent` moderate or worse,
/// `suicide_percent` with item 9 positive. Deterministic.
fn write_file(path: &std::path::Path, args: &Args) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "student_no,item_1,item_2,item_3,item_4,item_5,item_6,item_7,item_8,item_9"
    )?;
    let suicide_every = (100.0 / args.suicide_percent.max(0.001)).round() as usize;
    let positive_every = (100.0 / args.positive_percent.max(0.001)).round() as usize;
    for i in 0..args.rows {
        let items = if i % suicide_every == suicide_every / 2 {
            "1,1,1,1,1,1,1,1,1"
        } else if i % positive_every == 0 {
            "2,2,2,2,2,1,1,0,0"
        } else {
            "0,1,0,1,0,0,0,0,0"
        };
        writeln!(out, "P{i:07},{items}")?;
    }
    out.flush()?;
    Ok(())
}

/// The result rows of the reference inserts: shaped like the import's (a
/// scored PHQ-9 row), numbered past the imported file's rows (same import,
/// unique rows).
fn reference_rows(first_row: i64, from: usize, to: usize, date: NaiveDate) -> Vec<NewResult> {
    (from..to)
        .map(|r| NewResult {
            id: Uuid::now_v7(),
            row_number: first_row + r as i64,
            student_id: None,
            student_no: format!("R{r:07}"),
            instrument: "phq9".into(),
            administered_on: date,
            outcome: "ok",
            reason: None,
            total: Some(2),
            band: Some("minimal".into()),
            subscales: Some("{}".into()),
            flags: "[]".into(),
            level: None,
            event_id: None,
        })
        .collect()
}

/// Reference 1: the same result rows inserted `batch` per transaction, each
/// batch one multi-row `INSERT … SELECT FROM json_to_recordset($1)` (the
/// statement the importer uses; three bound values per batch).
async fn reference_insert(
    db: &sanyu_store::Db,
    import_id: Uuid,
    rows: usize,
    batch: usize,
) -> Result<f64> {
    let date = NaiveDate::from_ymd_opt(2026, 11, 20).context("date")?;
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let end = (i + batch).min(rows);
        let chunk = reference_rows(10_000_000, i, end, date);
        let txn = sanyu_store::begin_write(db).await?;
        sanyu_store::screening::insert_results_pg(&*txn, import_id, &chunk, Utc::now()).await?;
        txn.commit().await?;
        i = end;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Reference 1b (for comparison with earlier runs): sea-orm's multi-row
/// INSERT as the importer writes on SQLite, 500 rows (8,000 bound values) per
/// statement, `batch` per transaction.
async fn reference_insert_many(
    db: &sanyu_store::Db,
    import_id: Uuid,
    rows: usize,
    batch: usize,
) -> Result<f64> {
    let now = Utc::now();
    let date = NaiveDate::from_ymd_opt(2026, 11, 20).context("date")?;
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let end = (i + batch).min(rows);
        let txn = sanyu_store::begin_write(db).await?;
        sanyu_store::screening::insert_results(
            &*txn,
            import_id,
            reference_rows(20_000_000, i, end, date),
            now,
        )
        .await?;
        txn.commit().await?;
        i = end;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Reference 2: one JetStream publish per row, each awaited, on a scratch stream.
async fn reference_publish(nats: &NatsServer, n: usize) -> Result<f64> {
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCHREF".into(),
        subjects: vec!["benchref.>".into()],
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(vec![0u8; 200]);
    let started = Instant::now();
    for i in 0..n {
        js.publish(format!("benchref.{}", i % 16), payload.clone())
            .await?
            .await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    sanyu_platform::install_crypto_provider();
    let mut args = Args::parse();
    if args.smoke {
        args.rows = 1000;
    }
    let db = TestDb::postgres_at(&args.pg.pg_url).await;
    let nats = NatsServer::start_with(true).await;
    let conn = db.connect().await;
    fixtures::seed_school(&conn, "SCREEN").await;
    common::insert_students(&conn, "SCREEN", "P", args.rows).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("phq9.csv");
    write_file(&file, &args)?;

    let mut config = Config::default();
    config.database.url = Secret::new(db.url());
    config.database.max_connections = 16;
    config.nats.url = nats.url();
    config.security.data_key = Secret::new(sanyu_store::crypto::Sealer::generate_key());
    config.smtp.file_dir = dir.path().join("mail").display().to_string();
    config.telemetry.log_filter = "warn".into();
    config.telemetry.log_format = "pretty".into();
    settings::print_changed(&config);
    let telemetry = telemetry::init("sanyu-bench-screening", &config.telemetry)?;
    let shutdown = Shutdown::new();
    let rules = tokio::spawn(sanyu_rules::run(config.clone(), shutdown.clone()));
    // The importer's outbox rows are published by a relay in this process.
    let backbone = sanyu_platform::nats::connect(&config.nats, "bench").await?;
    backbone.ensure_streams().await?;
    let waker = Waker::default();
    let relay =
        sanyu_platform::relay::OutboxRelay::new(conn.clone(), backbone.clone(), waker.clone());
    shutdown.tracker.spawn(relay.run(shutdown.token.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let school = sanyu_store::roster::school_by_code(&conn, "SCREEN")
        .await?
        .context("school")?;
    println!(
        "rows={} suicide={}% positive={}% batch={} backend=postgresql nats=sync_interval: always",
        args.rows, args.suicide_percent, args.positive_percent, args.batch_rows
    );
    let started = Instant::now();
    let job = sanyu_importer::prepare(
        &conn,
        NewJob {
            id: Uuid::now_v7(),
            school,
            declaration: Declaration {
                instrument: "PHQ-9".into(),
                coding: "0-3".into(),
                administered_on: NaiveDate::from_ymd_opt(2026, 11, 20).context("date")?,
                sheet: None,
                profile: ColumnProfile::default(),
                file_name: "phq9.csv".into(),
            },
            path: file.clone(),
            created_by: None,
            xlsx_limits: Default::default(),
        },
    )
    .await?;
    let options = ProcessOptions {
        batch_rows: args.batch_rows,
        ..ProcessOptions::default()
    };
    let done = sanyu_importer::process(&conn, &waker, job.id, &options).await?;
    let imported = started.elapsed();
    // Signals: one per result past a cut-off or with a suicide alert (its
    // signal id is on the result); messages: what the import put in the outbox.
    let signals = screening_result::Entity::find()
        .filter(screening_result::Column::ImportId.eq(job.id))
        .filter(screening_result::Column::EventId.is_not_null())
        .count(&conn)
        .await?;
    let messages = outbox::Entity::find()
        .filter(outbox::Column::Subject.starts_with("sanyu.intake.screening"))
        .count(&conn)
        .await?;
    println!(
        "import: {} rows read, {} accepted, {} alerts, {} signals in {} INTAKE messages, in {:.2} s = {:.0} rows/s",
        done.rows_read,
        done.rows_accepted,
        done.alerts_raised,
        signals,
        messages,
        imported.as_secs_f64(),
        done.rows_read as f64 / imported.as_secs_f64()
    );
    if !args.import_only {
        // Until the relay has published every INTAKE message and the rules
        // engine has decided every signal (one decision row per signal id).
        let mut published_at = None;
        loop {
            if published_at.is_none() {
                let pending = outbox::Entity::find()
                    .filter(outbox::Column::Subject.starts_with("sanyu.intake.screening"))
                    .filter(outbox::Column::PublishedAt.is_null())
                    .count(&conn)
                    .await?;
                if pending == 0 {
                    published_at = Some(started.elapsed());
                }
            }
            let decided = decision::Entity::find()
                .filter(decision::Column::SignalId.starts_with("screening:"))
                .count(&conn)
                .await?;
            if decided >= signals {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let e2e = started.elapsed();
        let cases = case::Entity::find().count(&conn).await?;
        println!(
            "stages: import done {:.2} s, INTAKE published {:.2} s, rules decided {:.2} s",
            imported.as_secs_f64(),
            published_at.unwrap_or(e2e).as_secs_f64(),
            e2e.as_secs_f64()
        );
        println!(
            "end to end (file → results → signals → rules decisions → {cases} cases): {:.2} s = {:.0} rows/s",
            e2e.as_secs_f64(),
            done.rows_read as f64 / e2e.as_secs_f64()
        );
    }
    println!(
        "peak memory (whole process, VmHWM): {:.0} MiB",
        common::peak_rss_mib()
    );
    shutdown.token.cancel();
    let _ = rules.await;
    shutdown.wait(Duration::from_secs(10)).await;

    let reference_rows = args.rows.min(100_000);
    let insert_rate = reference_insert(&conn, job.id, reference_rows, args.batch_rows).await?;
    println!(
        "reference: PostgreSQL batched insert of result rows (INSERT … SELECT FROM json_to_recordset, {} per transaction): {insert_rate:.0} rows/s",
        args.batch_rows
    );
    let insert_many_rate =
        reference_insert_many(&conn, job.id, reference_rows, args.batch_rows).await?;
    println!(
        "reference: same rows, sea-orm multi-row INSERT (16 bound values per row; the earlier reference): {insert_many_rate:.0} rows/s"
    );
    let publish_rate = reference_publish(&nats, 5_000).await?;
    println!("reference: JetStream publish, one awaited message per row: {publish_rate:.0} msg/s");
    telemetry.shutdown();
    Ok(())
}
