//! `sanyu-bench-console`: the console's pages at scale (issue 15, "Speed"). A
//! fresh PostgreSQL database with 100,000 students and 10,000 open cases in
//! one school; a counsellor signed in (a session row opened through the
//! store, its token in the cookie, as the sign-in route does); the gateway's
//! router in-process (`tower::ServiceExt::oneshot`, no socket), asked for the
//! queue page (`GET /queue`) and for case pages (`GET /cases/{id}` of random
//! seeded cases). Each answer must be 200 and show a seeded case reference,
//! so an error page is never measured. Times are server-side: from the
//! request entering the router to the whole body read.
//!
//! `cargo run --release -p sanyu-bench --bin sanyu-bench-console -- --students 100000 --cases 10000`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use clap::Parser;
use hdrhistogram::Histogram;
use sanyu_bench::pg_args::PgArgs;
use sanyu_bench::{common, common::Rng};
use sanyu_domain::{CaseSubject, LadderState, RiskLevel};
use sanyu_platform::config::Secret;
use sanyu_platform::runner::{self, Readiness};
use sanyu_platform::{Config, Shutdown};
use sanyu_store::cases::{self, NewCase};
use sanyu_store::entities::{class, staff};
use sanyu_test_support::{NatsServer, TestDb, fixtures};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use tower::ServiceExt;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Server-side render time of the console's queue and case pages at scale")]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    students: usize,
    /// Open cases, in the same school.
    #[arg(long, default_value_t = 10_000)]
    cases: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    #[command(flatten)]
    pg: PgArgs,
    /// A small run for CI: 2,000 students, 200 cases, 20 requests per page.
    #[arg(long)]
    smoke: bool,
}

const SCHOOL: &str = "CONS";

/// `n` open cases about distinct students (the first `n`), levels mixed, a
/// third still unacknowledged with a running ladder (some overdue); their
/// ids and references.
async fn insert_cases(
    db: &sanyu_store::Db,
    school_id: Uuid,
    class_id: Uuid,
    students: &[Uuid],
    n: usize,
    rng: &mut Rng,
) -> Result<Vec<(Uuid, String)>> {
    let now = Utc::now();
    let mut rows = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for (k, student) in students.iter().cycle().take(n).enumerate() {
        let level = match rng.below(100) {
            0..=29 => RiskLevel::Watch,
            30..=69 => RiskLevel::Elevated,
            70..=94 => RiskLevel::High,
            _ => RiskLevel::Critical,
        };
        let id = Uuid::now_v7();
        let reference = format!("SY-BENCH-{k:06}");
        let at = now - chrono::Duration::minutes(rng.below(60 * 24 * 30) as i64);
        let mut row = cases::new_model(NewCase {
            id,
            reference: reference.clone(),
            school_id,
            class_id: Some(class_id),
            student_id: Some(*student),
            subject: CaseSubject::Student,
            level,
            rule: "bench.console".into(),
            at,
        });
        if k % 3 == 0 {
            row.ladder_state = LadderState::Running;
            row.ladder_started_at = Some(at);
            row.ack_deadline = Some(now + chrono::Duration::minutes(rng.below(120) as i64 - 60));
        } else {
            row.acknowledged_at = Some(at);
        }
        rows.push(row);
        out.push((id, reference));
    }
    cases::insert_many(db, rows).await?;
    Ok(out)
}

/// `GET path` with the session cookie; the time, the status and the body.
async fn get(
    router: &axum::Router,
    cookie: &str,
    path: &str,
) -> Result<(Duration, StatusCode, String)> {
    let mut request = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())?;
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let started = Instant::now();
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    let took = started.elapsed();
    Ok((took, status, String::from_utf8_lossy(&body).into_owned()))
}

fn report(page: &str, h: &Histogram<u64>) {
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "{page}: n={} p50={:.1} ms p95={:.1} ms p99={:.1} ms max={:.1} ms (goal p95 <= 100 ms: {})",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        if h.value_at_quantile(0.95) <= 100_000 {
            "met"
        } else {
            "NOT met"
        }
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    sanyu_platform::install_crypto_provider();
    let mut args = Args::parse();
    if args.smoke {
        args.students = 2_000;
        args.cases = 200;
        args.requests = 20;
    }
    anyhow::ensure!(
        args.cases > 0 && args.students > 0,
        "--cases and --students must be > 0"
    );
    let db = TestDb::postgres_at(&args.pg.pg_url).await;
    let nats = NatsServer::start_with(false).await;
    let spool = tempfile::tempdir()?;
    println!(
        "students={} cases={} requests={} backend=postgresql",
        args.students, args.cases, args.requests
    );

    // Seed through a connection of its own (migrated by `connect`).
    let seed = db.connect().await;
    let started = Instant::now();
    fixtures::seed_school(&seed, SCHOOL).await;
    let students = common::insert_students(&seed, SCHOOL, "B", args.students).await?;
    let school = sanyu_store::roster::school_by_code(&seed, SCHOOL)
        .await?
        .context("school")?;
    let class = class::Entity::find()
        .filter(class::Column::SchoolId.eq(school.id))
        .one(&seed)
        .await?
        .context("class")?;
    let mut rng = Rng(0x5eed_cafe_f00d_0015);
    let seeded = insert_cases(&seed, school.id, class.id, &students, args.cases, &mut rng).await?;
    let counsellor = staff::Entity::find()
        .filter(staff::Column::SchoolId.eq(school.id))
        .filter(staff::Column::Role.eq("counsellor"))
        .filter(staff::Column::Email.is_not_null())
        .one(&seed)
        .await?
        .context("counsellor")?;
    let session = sanyu_store::console::open_session(
        &seed,
        &counsellor,
        "127.0.0.1",
        chrono::Duration::hours(12),
        Utc::now(),
    )
    .await?;
    // Fresh statistics, as autovacuum would have them on a database this size.
    seed.execute_unprepared("ANALYZE").await?;
    println!(
        "seeded {} students and {} open cases in {:.1} s (not measured)",
        args.students,
        args.cases,
        started.elapsed().as_secs_f64()
    );
    seed.close().await.ok();

    // The gateway's state and router, as the route tests build them.
    let mut config = Config::default();
    config.database.url = Secret::new(db.url());
    config.nats.url = nats.url();
    config.security.data_key = Secret::new(sanyu_store::crypto::Sealer::generate_key());
    config.http.public_base_url = "https://sanyu.bench".to_owned();
    config.screening.spool_dir = spool.path().display().to_string();
    config.telemetry.log_filter =
        std::env::var("SANYU_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let readiness = Readiness::new();
    let shutdown = Shutdown::new();
    let (conn, backbone) =
        runner::connect(&config, "sanyu-bench-console", &readiness, &shutdown.token)
            .await?
            .context("database and NATS")?;
    let sealer = config.sealer().map_err(|e| anyhow::anyhow!("{e}"))?;
    let audit_key = sanyu_store::audit::AuditKey::from_data_key(config.security.data_key.expose())?;
    let console = sanyu_gateway::console::session::Settings::from_config(&config)
        .map_err(|e| anyhow::anyhow!(e))?;
    let state = sanyu_gateway::AppState::new(
        &config,
        conn.clone(),
        backbone,
        sealer,
        audit_key,
        readiness,
        std::sync::Arc::new(console),
    );
    let router = sanyu_gateway::router(state);
    let cookie = format!(
        "{}={}",
        sanyu_gateway::console::session::SESSION_COOKIE,
        session.token
    );

    // One of each first (warm-up, not measured): the pages must answer.
    let mut queue = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut case = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for round in 0..=args.requests {
        let (took, status, body) = get(&router, &cookie, "/queue").await?;
        anyhow::ensure!(status == StatusCode::OK, "queue page answered {status}");
        anyhow::ensure!(
            body.contains("SY-BENCH-"),
            "queue page shows no seeded case reference"
        );
        if round > 0 {
            queue.record(took.as_micros().max(1) as u64)?;
        }
        let (id, reference) = &seeded[rng.below(seeded.len() as u64) as usize];
        let (took, status, body) = get(&router, &cookie, &format!("/cases/{id}")).await?;
        anyhow::ensure!(status == StatusCode::OK, "case page {id} answered {status}");
        anyhow::ensure!(
            body.contains(reference.as_str()),
            "case page {id} does not show its reference {reference}"
        );
        if round > 0 {
            case.record(took.as_micros().max(1) as u64)?;
        }
    }
    report("queue page (GET /queue)", &queue);
    report("case page (GET /cases/{id})", &case);
    println!(
        "peak memory (whole process, VmHWM): {:.0} MiB",
        common::peak_rss_mib()
    );
    shutdown.token.cancel();
    conn.close().await.ok();
    Ok(())
}
