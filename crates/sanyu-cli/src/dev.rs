//! `sanyu dev`: the whole system in one process on embedded defaults — a
//! SQLite file and a local NATS server with JetStream (started here when none
//! is reachable) — with a demo school, so a new user can post a report and read
//! the counsellor's email within a minute.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sanyu_domain::Role;
use sanyu_platform::config::Secret;
use sanyu_platform::{Config, Shutdown, telemetry};
use sanyu_store::roster::{self, ImportScope};
use sanyu_store::tokens::{self, TokenRequest};

const DEMO_STUDENTS: &str = include_str!("../demo/students.csv");
const DEMO_STAFF: &str = include_str!("../demo/staff.csv");
const DEMO_SCHOOL: &str = "DEMO01";

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Directory for the SQLite file, NATS store, mail and data key.
    #[arg(long, default_value = ".sanyu")]
    pub data_dir: PathBuf,
    /// NATS URL to use; a server is started on it when none is reachable.
    #[arg(long, env = "SANYU_NATS__URL", default_value = "nats://127.0.0.1:4250")]
    pub nats_url: String,
    /// The nats-server binary to start (default: $SANYU_NATS_SERVER, .tools/bin/nats-server, PATH).
    #[arg(long, env = "SANYU_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    /// HTTP address of the API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

pub async fn run(args: DevArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let mut config = Config::load().context("loading configuration")?;
    if std::env::var_os("SANYU_DATABASE__URL").is_none() {
        config.database.url = Secret::new(format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("sanyu.db").display()
        ));
    }
    if std::env::var_os("SANYU_TELEMETRY__LOG_FORMAT").is_none() {
        config.telemetry.log_format = "pretty".into();
    }
    config.nats.url = args.nats_url.clone();
    config.http.listen = args.listen.clone();
    config.http.public_base_url = format!("http://{}", args.listen);
    if config.smtp.url.is_empty() {
        config.smtp.file_dir = data_dir.join("mail").display().to_string();
    }
    if config.security.data_key.is_empty() {
        config.security.data_key = Secret::new(dev_data_key(&data_dir)?);
    }
    // The dev address is plain HTTP: a `Secure` cookie would never come back.
    if std::env::var_os("SANYU_CONSOLE__SECURE_COOKIE").is_none() {
        config.console.secure_cookie = false;
    }
    let telemetry = telemetry::init("sanyu-dev", &config.telemetry)?;

    let _nats = ensure_nats(&args, &data_dir).await?;

    let db = sanyu_store::db::connect(&config.db_config()).await?;
    sanyu_store::db::migrate_with_key(&db, &config.sealer()?)
        .await
        .context("migrating")?;
    seed_demo(&db).await?;
    let printed = print_welcome(&db, &config).await?;
    db.close().await.ok();

    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let gateway = sanyu_gateway::Gateway::build(&config).await?;
    // One process: the gateway's /readyz speaks for it; the headless services
    // would otherwise each bind the same [health] address.
    config.health.listen.clear();
    let tasks = [
        tokio::spawn(gateway.run_until_stopped(shutdown.clone())),
        tokio::spawn(sanyu_rules::run(config.clone(), shutdown.clone())),
        tokio::spawn(sanyu_notifier::run(config.clone(), shutdown.clone())),
        tokio::spawn(sanyu_scheduler::run(config.clone(), shutdown.clone())),
    ];
    eprintln!("{printed}");
    let mut failed = false;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("service failed: {e}");
                shutdown.token.cancel();
                failed = true;
            }
            Err(e) => {
                eprintln!("service panicked: {e}");
                shutdown.token.cancel();
                failed = true;
            }
        }
    }
    telemetry.shutdown();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn dev_data_key(dir: &Path) -> Result<String> {
    let path = dir.join("data.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key.trim().to_owned());
    }
    let key = sanyu_store::crypto::Sealer::generate_key();
    std::fs::write(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(key)
}

/// A child nats-server that is stopped when dropped.
struct NatsChild(Option<tokio::process::Child>);

impl Drop for NatsChild {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

fn host_port(url: &str) -> Result<(String, u16)> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest
        .rsplit('@')
        .next()
        .unwrap_or(rest)
        .trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "4222"));
    Ok((host.to_owned(), port.parse().context("NATS URL port")?))
}

async fn reachable(host: &str, port: u16) -> bool {
    tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

fn find_nats_server(explicit: Option<&PathBuf>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.clone());
    }
    let local = PathBuf::from(".tools/bin/nats-server");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.exists())
    })
}

async fn ensure_nats(args: &DevArgs, data_dir: &Path) -> Result<NatsChild> {
    let (host, port) = host_port(&args.nats_url)?;
    if reachable(&host, port).await {
        eprintln!("using the NATS server at {}", args.nats_url);
        return Ok(NatsChild(None));
    }
    let Some(binary) = find_nats_server(args.nats_server.as_ref()) else {
        bail!(
            "no NATS server at {} and no nats-server binary found: run `bash scripts/ensure-nats.sh` \
             or set SANYU_NATS_SERVER",
            args.nats_url
        );
    };
    let store = data_dir.join("nats");
    std::fs::create_dir_all(&store)?;
    eprintln!(
        "starting {} on {host}:{port} (JetStream store {})",
        binary.display(),
        store.display()
    );
    let child = tokio::process::Command::new(&binary)
        .arg("-js")
        .arg("-a")
        .arg(&host)
        .arg("-p")
        .arg(port.to_string())
        .arg("-sd")
        .arg(&store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let guard = NatsChild(Some(child));
    for _ in 0..100 {
        if reachable(&host, port).await {
            return Ok(guard);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nats-server did not come up on {host}:{port}")
}

async fn seed_demo(db: &sanyu_store::Db) -> Result<()> {
    if roster::school_by_code(db, DEMO_SCHOOL).await?.is_some() {
        return Ok(());
    }
    let txn = sanyu_store::begin_write(db).await?;
    roster::import_students(&*txn, DEMO_STUDENTS.as_bytes(), ImportScope::Operator).await?;
    roster::import_staff(&*txn, DEMO_STAFF.as_bytes(), ImportScope::Operator).await?;
    txn.commit().await?;
    Ok(())
}

async fn print_welcome(db: &sanyu_store::Db, config: &Config) -> Result<String> {
    let issue = |role: Role, class: Option<&str>, staff: &str| TokenRequest {
        role,
        school_code: DEMO_SCHOOL.into(),
        class_code: class.map(str::to_owned),
        staff_no: Some(staff.into()),
        label: Some("sanyu dev".into()),
        ttl: chrono::Duration::days(1),
    };
    let teacher = tokens::issue(db, issue(Role::Teacher, Some("G7-1"), "T001")).await?;
    let counsellor = tokens::issue(db, issue(Role::Counsellor, None, "C001")).await?;
    let admin = tokens::issue(db, issue(Role::Admin, None, "A001")).await?;
    let base = &config.http.public_base_url;
    let mail = if config.smtp.url.is_empty() {
        format!(
            "emails are written as .eml files to {}",
            config.smtp.file_dir
        )
    } else {
        "emails go to the configured SMTP server".to_owned()
    };
    Ok(format!(
        "\n\
         ── Sanyu dev is running ─────────────────────────────────────────────\n\
         console        {base}/   (sign in as counsellor C001: the code arrives by email)\n\
         API            {base}   (OpenAPI: {base}/openapi.json)\n\
         demo school    {DEMO_SCHOOL}: class G7-1 has students 20250101, 20250102\n\
         tokens (valid 24 h, shown once):\n\
         \x20 teacher G7-1   {t}\n\
         \x20 counsellor     {c}\n\
         \x20 admin          {a}\n\
         mail           {mail}\n\n\
         Post a warning report as the head teacher:\n\
         \x20 curl -s -X POST {base}/v1/reports -H 'Authorization: Bearer {t}' \\\n\
         \x20   -H 'Content-Type: application/json' \\\n\
         \x20   -d '{{\"student_no\":\"20250101\",\"category\":\"self_harm\",\"level\":\"high\",\"observed_at\":\"{now}\",\"narrative\":\"...\"}}'\n\
         Then list cases as the counsellor:\n\
         \x20 curl -s {base}/v1/cases -H 'Authorization: Bearer {c}'\n\
         ──────────────────────────────────────────────────────────────────────\n",
        t = teacher.secret,
        c = counsellor.secret,
        a = admin.secret,
        now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ))
}
