//! The notifier: the last link of the chain. It delivers each notification
//! request exactly once by email through SMTP. (Who is told is decided where
//! the case changes, in the same transaction: see `sanyu_rules::notify`.)

pub mod deliver;
pub mod mailer;
pub mod smtp;

use std::time::Duration;

use sanyu_platform::consumer;
use sanyu_platform::nats;
use sanyu_platform::relay::{OutboxRelay, Waker};
use sanyu_platform::{Config, PlatformError, Shutdown};

pub use deliver::Deliverer;
pub use mailer::Mailer;

/// Run the notifier until shutdown: the delivery consumer and the outbox relay.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PlatformError> {
    let db = sanyu_store::db::connect(&config.db_config()).await?;
    let backbone = nats::connect(&config.nats, "sanyu-notifier").await?;
    backbone.ensure_streams().await?;
    let mailer =
        Mailer::from_config(&config.smtp).map_err(|e| PlatformError::Config(e.to_string()))?;
    tracing::info!(nats = %backbone.server_version(), mail = mailer.describe(), "notifier starting");
    let waker = Waker::default();
    let relay = OutboxRelay::new(db.clone(), backbone.clone(), waker.clone());
    shutdown.tracker.spawn(relay.run(shutdown.token.clone()));
    let deliverer = Deliverer::new(
        db.clone(),
        waker,
        mailer,
        &config.smtp.from,
        &config.http.public_base_url,
    )
    .map_err(|e| PlatformError::Config(e.to_string()))?;
    shutdown.tracker.spawn(consumer::run(
        backbone.clone(),
        deliver::spec(),
        deliverer,
        shutdown.token.clone(),
    ));
    shutdown.token.cancelled().await;
    if !shutdown.wait(Duration::from_secs(20)).await {
        tracing::warn!("notifier: tasks did not stop in time");
    }
    let _ = backbone.client.drain().await;
    let _ = db.close().await;
    tracing::info!("notifier stopped");
    Ok(())
}
