//! `sanyu-bench-district`: a district's load on one machine (issue #17).
//! PostgreSQL, a three-node NATS cluster run from
//! `deploy/nats/nats-cluster.conf` (TLS, accounts, streams with three
//! replicas), the four real service binaries and an SMTP server. Many schools
//! each upload a screening file at the same moment, while head teachers
//! report at a steady rate, the hotline logs calls, and staff read the
//! console's queue page. Prints the time to import everything, report →
//! first contact p50/p99, queue page p95, every process's peak memory and CPU
//! time (the busiest one is what saturates first), and the machine's CPU use.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo run --release -p sanyu-bench --bin sanyu-bench-district -- --schools 100 --students 200000
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use hdrhistogram::Histogram;
use sanyu_bench::pg_args::PgArgs;
use sanyu_bench::{common, imports, services};
use sanyu_store::entities::{case, delivery, report, staff, student};
use sanyu_test_support::{NatsCluster, School, SmtpServer, TestCa, TestDb, fixtures, free_port};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::task::JoinSet;

#[derive(Debug, Parser)]
#[command(about = "A district's load: imports, reports, hotline calls and queue reads at once")]
struct Args {
    /// Schools.
    #[arg(long, default_value_t = 100)]
    schools: usize,
    /// Students in all, spread evenly over the schools; each school imports a
    /// screening file of all its students.
    #[arg(long, default_value_t = 200_000)]
    students: usize,
    /// Head teachers' reports per second (all schools together), each about
    /// a student the screening does not flag.
    #[arg(long, default_value_t = 50.0)]
    reports_per_second: f64,
    /// How long reports, calls and queue reads go on, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Hotline calls per second.
    #[arg(long, default_value_t = 1.0)]
    calls_per_second: f64,
    /// Staff reading the queue page (signed-in console sessions, spread over
    /// the schools), each once every `--queue-every-secs`.
    #[arg(long, default_value_t = 200)]
    staff: usize,
    #[arg(long, default_value_t = 5.0)]
    queue_every_secs: f64,
    /// The email provider's limit (`notify.provider_per_second`; 0: none).
    #[arg(long, default_value_t = 200)]
    provider_per_second: u32,
    #[command(flatten)]
    pg: PgArgs,
    /// A small run for CI: 3 schools, 600 students, 5 s.
    #[arg(long)]
    smoke: bool,
}

/// A deterministic PHQ-9 file of `n` students `P…`: 1 % with item 9
/// positive, 10 % moderate or worse, the rest minimal.
fn screening_file(n: usize) -> Vec<u8> {
    let mut out = String::from("学号,题1,题2,题3,题4,题5,题6,题7,题8,题9\n");
    for i in 0..n {
        let items = if i % 100 == 50 {
            "1,1,1,1,1,1,1,1,1"
        } else if i % 10 == 0 {
            "2,2,2,2,2,1,1,0,0"
        } else {
            "0,1,0,1,0,0,0,0,0"
        };
        out.push_str(&format!("P{i:07},{items}\n"));
    }
    out.into_bytes()
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after ")".
    (ticks(11) + ticks(12)) / 100.0
}

/// Busy and total jiffies of the whole machine.
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// Every PostgreSQL server process's CPU seconds together.
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_secs)
        .sum()
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.schools = 3;
        args.students = 600;
        args.seconds = 5;
        args.reports_per_second = 5.0;
        args.staff = 6;
        args.queue_every_secs = 1.0;
        println!(
            "smoke run: --schools 3 --students 600 --seconds 5 --reports-per-second 5 --staff 6 --queue-every-secs 1"
        );
    }
    if args.schools == 0 || args.students < args.schools {
        bail!("need at least one school and one student per school");
    }
    println!(
        "settings: {} schools, {} students, {} reports/s, {} calls/s, {} staff reading the queue every {} s, {} s, provider limit {}/s",
        args.schools,
        args.students,
        args.reports_per_second,
        args.calls_per_second,
        args.staff,
        args.queue_every_secs,
        args.seconds,
        args.provider_per_second
    );
    let per_school = args.students / args.schools;
    let reports_total = (args.reports_per_second * args.seconds as f64).round() as usize;
    let reports_per_school = reports_total.div_ceil(args.schools).max(1);

    // Servers: PostgreSQL (a fresh database), a three-node NATS cluster from
    // the production file, SMTP.
    let db = TestDb::postgres_at(&args.pg.pg_url).await;
    let conn = db.connect().await;
    let certs = tempfile::tempdir()?;
    let ca = TestCa::write(certs.path());
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/nats/nats-cluster.conf");
    let cluster = NatsCluster::start_deployed(&conf, &ca).await;
    let (user, password) = cluster.nodes[0].auth().context("cluster user")?;
    let smtp = SmtpServer::start();
    let spool = tempfile::tempdir()?;

    // Schools, students (screened `P…`, reported `R…`), staff sessions.
    let seeding = Instant::now();
    let mut schools: Vec<School> = Vec::with_capacity(args.schools);
    for i in 0..args.schools {
        let code = format!("D{i:03}");
        schools.push(fixtures::seed_school(&conn, &code).await);
        common::insert_students(&conn, &code, "P", per_school).await?;
        common::insert_students(&conn, &code, "R", reports_per_school).await?;
    }
    let mut cookies = Vec::with_capacity(args.staff);
    let readers = staff::Entity::find()
        .filter(staff::Column::Role.is_in(["counsellor", "crisis_team", "leader"]))
        .all(&conn)
        .await?;
    for k in 0..args.staff {
        let person = &readers[k % readers.len()];
        let session = sanyu_store::console::open_session(
            &conn,
            person,
            "127.0.0.1",
            chrono::Duration::hours(12),
            Utc::now(),
        )
        .await?;
        cookies.push(format!(
            "{}={}",
            sanyu_gateway::console::session::SESSION_COOKIE,
            session.token
        ));
    }
    println!(
        "seeded {} schools, {} students, {} sessions in {:.1} s (not measured)",
        args.schools,
        args.schools * (per_school + reports_per_school),
        cookies.len(),
        seeding.elapsed().as_secs_f64()
    );

    // The four services, as separate processes.
    let http_port = free_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let env = services::service_env(
        db.url(),
        cluster.urls(),
        smtp.url(),
        http_port,
        spool.path(),
        vec![
            ("SANYU_NATS__TLS_CA_FILE", ca.ca().display().to_string()),
            ("SANYU_NATS__USER", user),
            ("SANYU_NATS__PASSWORD", password),
            ("SANYU_NATS__STREAM_REPLICAS", "3".to_owned()),
            (
                "SANYU_NOTIFY__PROVIDER_PER_SECOND",
                args.provider_per_second.to_string(),
            ),
            // Each case's own first contact is what this bench measures: a
            // `high` case's notices would otherwise wait for the recipient's
            // digest (`notify.digest_window_secs`, 10 min by default).
            ("SANYU_NOTIFY__DIGEST_WINDOW_SECS", "0".to_owned()),
        ],
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut services = services::start(&env, &http, &base).await?;
    let cpu_before: Vec<f64> = services
        .iter()
        .map(|s| s.pid().map_or(0.0, cpu_secs))
        .collect();
    let nats_pids: Vec<u32> = cluster.nodes.iter().filter_map(|n| n.pid()).collect();
    let nats_before: f64 = nats_pids.iter().copied().map(cpu_secs).sum();
    let pg_before = postgres_cpu_secs();
    let machine_before = machine_cpu();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    // Every school uploads its screening file at once.
    let file = Arc::new(screening_file(per_school));
    let mut imports = JoinSet::new();
    for school in &schools {
        let (http, base, file) = (http.clone(), base.clone(), file.clone());
        let (code, token) = (school.code.clone(), school.counsellor.clone());
        imports.spawn(async move {
            let (content_type, body) = imports::multipart(&code, &file);
            let r = http
                .post(format!("{base}/v1/screening-imports"))
                .bearer_auth(&token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await?;
            let status = r.status();
            let v: Value = r.json().await?;
            if !status.is_success() {
                bail!("import of {code} answered {status}: {v}");
            }
            let id = v["import_id"].as_str().context("import id")?.to_owned();
            loop {
                let v: Value = http
                    .get(format!("{base}/v1/screening-imports/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                match v["state"].as_str() {
                    Some("done") => return Ok(Instant::now()),
                    Some("failed") => bail!("import of {code} failed: {v}"),
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        });
    }

    // Reports at a steady rate, each about its own student `R…`.
    let reporter = {
        let (http, base, schools) = (http.clone(), base.clone(), schools.clone());
        let total = reports_total;
        let every = Duration::from_secs_f64(1.0 / args.reports_per_second.max(0.001));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut sent = JoinSet::new();
            for k in 0..total {
                tick.tick().await;
                let school = &schools[k % schools.len()];
                let no = format!("R{:07}", k / schools.len());
                let level = if k % 10 == 0 { "critical" } else { "high" };
                let body = json!({
                    "student_no": no,
                    "category": "suicidal_ideation",
                    "level": level,
                    "observed_at": Utc::now().to_rfc3339(),
                    "narrative": "bench",
                });
                let request = http
                    .post(format!("{base}/v1/reports"))
                    .bearer_auth(&school.teacher_c1)
                    .json(&body);
                sent.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
            }
            let mut refused = 0usize;
            while let Some(r) = sent.join_next().await {
                if !matches!(r, Ok(Ok(202))) {
                    refused += 1;
                }
            }
            refused
        })
    };

    // Hotline calls (anonymous, elevated: logged, no student).
    let caller = {
        let (http, base, stop, service) = (
            http.clone(),
            base.clone(),
            stop.clone(),
            schools[0].service.clone(),
        );
        let every = Duration::from_secs_f64(1.0 / args.calls_per_second.max(0.001));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut n = 0usize;
            let mut refused = 0usize;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let call = json!({
                    "call_id": format!("bench-{n}"),
                    "started_at": Utc::now().to_rfc3339(),
                    "caller_type": "anonymous",
                    "rating": "elevated",
                    "summary": "bench",
                    "counsellor": "duty counsellor",
                    "referral_advice": "none",
                });
                let ok = http
                    .post(format!("{base}/v1/hotline-calls"))
                    .bearer_auth(&service)
                    .json(&call)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    refused += 1;
                }
            }
            (n, refused)
        })
    };

    // Staff read the queue page.
    let mut readers_set = JoinSet::new();
    for (k, cookie) in cookies.into_iter().enumerate() {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        let every = Duration::from_secs_f64(args.queue_every_secs);
        readers_set.spawn(async move {
            // Spread the readers over the period.
            tokio::time::sleep(every.mul_f64((k % 100) as f64 / 100.0)).await;
            let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let mut failed = 0usize;
            let mut tick = tokio::time::interval(every);
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let t = Instant::now();
                let ok = http
                    .get(format!("{base}/queue"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    h.record(t.elapsed().as_micros().max(1) as u64)?;
                } else {
                    failed += 1;
                }
            }
            Ok::<_, anyhow::Error>((h, failed))
        });
    }

    // Wait: imports done, reports sent; then stop the steady load.
    let mut last_import = started;
    while let Some(done) = imports.join_next().await {
        last_import = last_import.max(done??);
    }
    let import_secs = last_import.duration_since(started).as_secs_f64();
    println!(
        "imports: {} schools × {per_school} rows done in {import_secs:.1} s ({:.0} rows/s over the district)",
        args.schools,
        (args.schools * per_school) as f64 / import_secs.max(0.001)
    );
    let refused = reporter.await?;
    stop.store(true, Ordering::SeqCst);
    let (calls, calls_refused) = caller.await?;
    let mut queue = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut queue_failed = 0usize;
    while let Some(r) = readers_set.join_next().await {
        let (h, failed) = r??;
        queue.add(&h)?;
        queue_failed += failed;
    }

    // Every report's first contact: the first delivery of its student's case.
    let reports_of: HashMap<_, DateTime<Utc>> = report::Entity::find()
        .all(&conn)
        .await?
        .into_iter()
        .map(|r| (r.student_id, r.created_at))
        .collect();
    let reported_students: Vec<_> = student::Entity::find()
        .filter(student::Column::StudentNo.starts_with("R"))
        .all(&conn)
        .await?
        .into_iter()
        .filter(|s| reports_of.contains_key(&s.id))
        .map(|s| s.id)
        .collect();
    let wanted = reports_total - refused;
    let waiting = Instant::now();
    let first_contact = loop {
        let cases: HashMap<_, _> = case::Entity::find()
            .filter(case::Column::StudentId.is_in(reported_students.clone()))
            .all(&conn)
            .await?
            .into_iter()
            .filter_map(|c| Some((c.id, c.student_id?)))
            .collect();
        let mut first: HashMap<uuid::Uuid, DateTime<Utc>> = HashMap::new();
        for d in delivery::Entity::find()
            .filter(delivery::Column::CaseId.is_in(cases.keys().copied().collect::<Vec<_>>()))
            .all(&conn)
            .await?
        {
            if let (Some(sent), Some(student)) = (d.sent_at, cases.get(&d.case_id)) {
                let e = first.entry(*student).or_insert(sent);
                *e = (*e).min(sent);
            }
        }
        if first.len() >= wanted || waiting.elapsed() > Duration::from_secs(600) {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut contact = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for (student, sent) in &first_contact {
        if let Some(at) = reports_of.get(student) {
            let us = (*sent - *at).num_microseconds().unwrap_or(0).max(1);
            contact.record(u64::try_from(us).unwrap_or(1))?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let machine_after = machine_cpu();

    println!(
        "reports: {wanted} accepted ({refused} refused); first contact for {} of them: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        first_contact.len(),
        quantile_ms(&contact, 0.5),
        quantile_ms(&contact, 0.99),
        contact.max() as f64 / 1000.0
    );
    println!("hotline: {calls} calls logged ({calls_refused} refused)");
    println!(
        "queue page: {} reads by {} staff, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({queue_failed} failed)",
        queue.len(),
        args.staff,
        quantile_ms(&queue, 0.5),
        quantile_ms(&queue, 0.95),
        queue.max() as f64 / 1000.0
    );
    println!(
        "emails accepted by the SMTP server: {}",
        smtp.received().len()
    );
    let mut busiest = ("", 0.0f64);
    println!("per process over {elapsed:.1} s (CPU seconds, share of one core; peak memory):");
    for (service, before) in services.iter().zip(&cpu_before) {
        let Some(pid) = service.pid() else { continue };
        let cpu = cpu_secs(pid) - before;
        println!(
            "  {:<16} {cpu:7.1} s {:5.0} %   {:6.0} MiB",
            service.name(),
            100.0 * cpu / elapsed,
            common::peak_rss_mib_of(pid)
        );
        if cpu > busiest.1 {
            busiest = (service.name(), cpu);
        }
    }
    let nats_cpu = nats_pids.iter().copied().map(cpu_secs).sum::<f64>() - nats_before;
    let nats_peak: Vec<String> = nats_pids
        .iter()
        .map(|p| format!("{:.0}", common::peak_rss_mib_of(*p)))
        .collect();
    println!(
        "  {:<16} {nats_cpu:7.1} s {:5.0} %   {} MiB",
        "nats (3 nodes)",
        100.0 * nats_cpu / elapsed,
        nats_peak.join(" / ")
    );
    let pg_cpu = postgres_cpu_secs() - pg_before;
    println!(
        "  {:<16} {pg_cpu:7.1} s {:5.0} %",
        "postgres (all)",
        100.0 * pg_cpu / elapsed
    );
    println!(
        "  {:<16} {:7.1} s",
        "this bench",
        cpu_secs(std::process::id())
    );
    for (name, cpu) in [("nats (3 nodes)", nats_cpu), ("postgres", pg_cpu)] {
        if cpu > busiest.1 {
            busiest = (name, cpu);
        }
    }
    let busy = (machine_after.0 - machine_before.0) / (machine_after.1 - machine_before.1).max(1.0);
    println!(
        "machine CPU busy {:.0} % of {} cores; the busiest: {} ({:.0} % of one core)",
        100.0 * busy,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        busiest.0,
        100.0 * busiest.1 / elapsed
    );
    println!(
        "peak memory of this bench: {:.0} MiB",
        common::peak_rss_mib()
    );

    for service in &mut services {
        service.terminate(Duration::from_secs(20)).await;
    }
    if first_contact.len() < wanted {
        bail!(
            "only {} of {wanted} reports reached anyone within 10 minutes",
            first_contact.len()
        );
    }
    if refused > 0 || queue_failed > 0 {
        bail!("{refused} reports refused, {queue_failed} queue reads failed");
    }
    Ok(())
}
