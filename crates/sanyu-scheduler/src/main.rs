//! `sanyu-scheduler`: the durable timers service.
use anyhow::Context;
use sanyu_platform::{Config, Shutdown, install_crypto_provider, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    install_crypto_provider();
    let config = Config::load().context("loading configuration")?;
    let telemetry = telemetry::init("sanyu-scheduler", &config.telemetry)?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let result = sanyu_scheduler::run(config, shutdown).await;
    telemetry.shutdown();
    result.context("scheduler failed")
}
