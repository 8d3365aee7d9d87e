//! `sanyu-bench-burst`: a district-wide burst of critical cases against the
//! providers' request limits (issue #16).
//!
//! PostgreSQL, a nats-server, the four real service binaries, an SMTP
//! server, and the Alibaba Cloud SMS and Tencent Cloud voice stand-ins, each
//! playing its account's request limit (`--sms-per-second`,
//! `--voice-per-second`: past it they answer "throttled" and nothing reaches a
//! phone). The notifier is told the same limits (`http.max_per_second`). Every
//! school uploads, at the same moment, a screening file in which every student
//! answers item 9 positively: `--critical` critical cases across `--schools`
//! schools. Prints, per channel, the time from a case's opening to its first
//! contact accepted by the provider (p50, p99, max), the time from the first
//! case's opening to the last first contact, the floor the limit sets (cases ÷
//! sends per second; and first-rung sends ÷ sends per second, as every case's
//! first rung has two people) and the ratios to them, and how many requests
//! the providers refused for the limit (0 when it is kept).
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo run --release -p sanyu-bench --bin sanyu-bench-burst -- --schools 50 --critical 1000
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use hdrhistogram::Histogram;
use sanyu_bench::pg_args::PgArgs;
use sanyu_bench::{common, imports, services};
use sanyu_domain::RiskLevel;
use sanyu_sms::stand_in::{StandIn, StandInKind};
use sanyu_store::entities::{case, delivery};
use sanyu_test_support::{NatsServer, School, SmtpServer, TestDb, fixtures, free_port};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;
use tokio::task::JoinSet;

const KEY_ID: &str = "LTAI-bench";
const SECRET: &str = "bench-provider-secret";

#[derive(Debug, Parser)]
#[command(
    about = "A burst of critical cases across a district against the providers' request limits"
)]
struct Args {
    /// Schools.
    #[arg(long, default_value_t = 50)]
    schools: usize,
    /// Critical cases in all, spread evenly over the schools.
    #[arg(long, default_value_t = 1000)]
    critical: usize,
    /// The SMS account's request limit (requests per second).
    #[arg(long, default_value_t = 100)]
    sms_per_second: u32,
    /// The voice account's request limit (calls per second).
    #[arg(long, default_value_t = 50)]
    voice_per_second: u32,
    /// How long to wait for every first contact, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    #[command(flatten)]
    pg: PgArgs,
    /// A small run for CI: 3 schools, 30 critical cases.
    #[arg(long)]
    smoke: bool,
}

/// A PHQ-9 file of `n` students `P…`, every one with item 9 positive.
fn screening_file(n: usize) -> Vec<u8> {
    let mut out = String::from("学号,题1,题2,题3,题4,题5,题6,题7,题8,题9\n");
    for i in 0..n {
        out.push_str(&format!("P{i:07},1,1,1,1,1,1,1,1,2\n"));
    }
    out.into_bytes()
}

fn ms(d: chrono::Duration) -> u64 {
    u64::try_from(d.num_milliseconds()).unwrap_or(0).max(1)
}

fn line(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<34} n={:<6} p50={:>8.0} ms  p99={:>8.0} ms  max={:>8.0} ms",
        h.len(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.max()
    );
}

async fn upload(http: &reqwest::Client, base: &str, school: &School, file: &[u8]) -> Result<()> {
    let (content_type, body) = imports::multipart(&school.code, file);
    let r = http
        .post(format!("{base}/v1/screening-imports"))
        .bearer_auth(&school.counsellor)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("import of {} answered {status}: {v}", school.code);
    }
    let id = v["import_id"].as_str().context("import id")?.to_owned();
    loop {
        let v: Value = http
            .get(format!("{base}/v1/screening-imports/{id}"))
            .bearer_auth(&school.counsellor)
            .send()
            .await?
            .json()
            .await?;
        match v["state"].as_str() {
            Some("done") => return Ok(()),
            Some("failed") => bail!("import of {} failed: {v}", school.code),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.schools = 3;
        args.critical = 30;
        args.timeout_secs = 120;
        println!("smoke run: --schools 3 --critical 30");
    }
    if args.schools == 0 || args.critical < args.schools {
        bail!("need at least one school and one critical case per school");
    }
    println!(
        "settings: {} schools, {} critical cases, SMS limit {}/s, voice limit {}/s",
        args.schools, args.critical, args.sms_per_second, args.voice_per_second
    );
    let per_school = args.critical / args.schools;
    let critical = per_school * args.schools;

    let db = TestDb::postgres_at(&args.pg.pg_url).await;
    let conn = db.connect().await;
    let nats = NatsServer::start().await;
    let smtp = SmtpServer::start();
    let spool = tempfile::tempdir()?;
    let sms = StandIn::start(StandInKind::Aliyun, KEY_ID, SECRET).await?;
    sms.limit_per_second(args.sms_per_second);
    let voice = StandIn::start(StandInKind::Tencent, KEY_ID, SECRET).await?;
    voice.limit_per_second(args.voice_per_second);
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(
        config.path(),
        format!(
            r#"
[sms.primary]
kind = "aliyun"
endpoint = "{sms}"
access_key_id = "{KEY_ID}"
access_key_secret = "{SECRET}"
sign_name = "测试学校"
http = {{ max_per_second = {sms_limit} }}

[[sms.primary.templates]]
audience = "staff"
locale = "zh-CN"
id = "SMS_100001"
params = ["school", "case_ref", "level", "time"]

[voice.provider]
kind = "tencent"
endpoint = "{voice}"
secret_id = "{KEY_ID}"
secret_key = "{SECRET}"
voice_sdk_app_id = "1400000001"
template_id = "100001"
params = ["school", "level", "case_ref"]
http = {{ max_per_second = {voice_limit} }}
"#,
            sms = sms.base_url(),
            voice = voice.base_url(),
            sms_limit = args.sms_per_second,
            voice_limit = args.voice_per_second,
        ),
    )?;

    let mut schools = Vec::with_capacity(args.schools);
    for i in 0..args.schools {
        let code = format!("B{i:03}");
        let school = fixtures::seed_school(&conn, &code).await;
        common::insert_students(&conn, &code, "P", per_school).await?;
        schools.push(school);
    }

    let http_port = free_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let env = services::service_env(
        db.url(),
        nats.url(),
        smtp.url(),
        http_port,
        spool.path(),
        vec![("SANYU_CONFIG", config.path().display().to_string())],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let services = services::start(&env, &http, &base).await?;

    // The burst: every school's file at once.
    let started = Utc::now();
    let clock = Instant::now();
    let file = screening_file(per_school);
    let mut uploads = JoinSet::new();
    for school in &schools {
        let (http, base, school, file) = (http.clone(), base.clone(), school.clone(), file.clone());
        uploads.spawn(async move { upload(&http, &base, &school, &file).await });
    }
    while let Some(done) = uploads.join_next().await {
        done??;
    }
    println!("imports done in {:.1} s", clock.elapsed().as_secs_f64());

    // Wait until every critical case has been reached by SMS and by a call.
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let (cases, deliveries) = loop {
        let cases = case::Entity::find()
            .filter(case::Column::Level.eq(RiskLevel::Critical))
            .all(&conn)
            .await?;
        let deliveries = delivery::Entity::find()
            .filter(delivery::Column::Channel.is_in(["sms", "voice", "email"]))
            .all(&conn)
            .await?;
        let reached = |channel: &str| {
            let mut by_case: HashMap<_, bool> = cases.iter().map(|c| (c.id, false)).collect();
            for d in deliveries
                .iter()
                .filter(|d| d.channel == channel && d.sent_at.is_some())
            {
                if let Some(r) = by_case.get_mut(&d.case_id) {
                    *r = true;
                }
            }
            by_case.values().filter(|r| **r).count()
        };
        let open = deliveries
            .iter()
            .filter(|d| d.sent_at.is_none() && d.status != "failed")
            .count();
        if cases.len() >= critical
            && reached("sms") == cases.len()
            && reached("voice") == cases.len()
            && open == 0
        {
            break (cases, deliveries);
        }
        if Instant::now() > deadline {
            bail!(
                "after {} s: {} of {critical} cases, {} reached by SMS, {} by a call, {open} deliveries open",
                args.timeout_secs,
                cases.len(),
                reached("sms"),
                reached("voice")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let first_opened = cases.iter().map(|c| c.opened_at).min().context("cases")?;
    println!(
        "{} critical cases, opened over {:.1} s from the burst's start",
        cases.len(),
        (cases
            .iter()
            .map(|c| c.opened_at)
            .max()
            .unwrap_or(first_opened)
            - started)
            .num_milliseconds() as f64
            / 1000.0
    );
    for (channel, limit) in [
        ("sms", args.sms_per_second),
        ("voice", args.voice_per_second),
        ("email", 0),
    ] {
        let mut first: HashMap<_, DateTime<Utc>> = HashMap::new();
        let mut sends = 0usize;
        for d in deliveries.iter().filter(|d| d.channel == channel) {
            sends += 1;
            if let Some(at) = d.sent_at {
                let e = first.entry(d.case_id).or_insert(at);
                *e = (*e).min(at);
            }
        }
        let mut h = Histogram::<u64>::new(3)?;
        let mut last = first_opened;
        for c in &cases {
            if let Some(at) = first.get(&c.id) {
                h.record(ms(*at - c.opened_at))?;
                last = last.max(*at);
            }
        }
        line(&format!("case opened → first {channel}"), &h);
        let span = (last - first_opened).num_milliseconds() as f64 / 1000.0;
        if limit > 0 {
            // The issue's floor: one send per case at the limit. Every case's
            // first rung has more than one person, so the sends' own floor
            // is printed beside it.
            let floor = cases.len() as f64 / f64::from(limit);
            let sends_floor = sends as f64 / f64::from(limit);
            println!(
                "  last first {channel} {span:.1} s after the first case opened; floor {floor:.1} s ({} cases at {limit}/s), ratio {:.2}; {sends} sends: {sends_floor:.1} s, ratio {:.2}",
                cases.len(),
                span / floor.max(0.001),
                span / sends_floor.max(0.001)
            );
        } else {
            println!(
                "  last first {channel} {span:.1} s after the first case opened ({sends} sends, no limit)"
            );
        }
    }
    println!(
        "refused for the limit: SMS {}, voice {} (0: the limit was kept)",
        sms.over_limit(),
        voice.over_limit()
    );
    println!(
        "burst to last first contact: {:.1} s (bench process peak RSS {:.0} MiB)",
        clock.elapsed().as_secs_f64(),
        common::peak_rss_mib()
    );
    drop(services);
    Ok(())
}
