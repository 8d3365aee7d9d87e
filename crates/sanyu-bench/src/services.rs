//! The four services of a bench run as separate processes, as a deployment
//! runs them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use sanyu_test_support::ServiceProcess;

/// What every service of a bench run is given: the database, NATS, the
/// SMTP relay, a fresh data key, the gateway's address and public URL, the
/// screening spool and a quiet log; then `more`.
pub fn service_env(
    database_url: &str,
    nats_url: String,
    smtp_url: String,
    http_port: u16,
    spool: &Path,
    more: Vec<(&str, String)>,
) -> Vec<(String, String)> {
    [
        ("SANYU_DATABASE__URL", database_url.to_owned()),
        ("SANYU_NATS__URL", nats_url),
        ("SANYU_SMTP__URL", smtp_url),
        ("SANYU_SMTP__FROM", "Sanyu <sanyu@bench.local>".to_owned()),
        (
            "SANYU_SECURITY__DATA_KEY",
            sanyu_store::crypto::Sealer::generate_key(),
        ),
        ("SANYU_HTTP__LISTEN", format!("127.0.0.1:{http_port}")),
        (
            "SANYU_HTTP__PUBLIC_BASE_URL",
            "https://sanyu.bench".to_owned(),
        ),
        ("SANYU_SCREENING__SPOOL_DIR", spool.display().to_string()),
        ("SANYU_TELEMETRY__LOG_FILTER", "warn".to_owned()),
    ]
    .into_iter()
    .chain(more)
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The gateway, the rules engine, the notifier and the scheduler, started
/// with `env`; once the gateway at `base` is ready (at most a minute).
pub async fn start(
    env: &[(String, String)],
    http: &reqwest::Client,
    base: &str,
) -> Result<Vec<ServiceProcess>> {
    let services: Vec<ServiceProcess> = [
        "sanyu-gateway",
        "sanyu-rules",
        "sanyu-notifier",
        "sanyu-scheduler",
    ]
    .iter()
    .map(|name| ServiceProcess::spawn(name, env))
    .collect();
    let ready = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(services);
        }
        if ready.elapsed() > Duration::from_secs(60) {
            bail!("the gateway never became ready: {}", services[0].logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
