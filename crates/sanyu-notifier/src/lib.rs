//! The notifier: the last link of the chain. It delivers each notification
//! request once per channel (at least once; a second copy only after a crash
//! between the provider's acceptance and the commit, and then on record), by SMS (primary and secondary provider,
//! `sanyu-sms`) and email (SMTP), as the level's policy says. (Who is told is
//! decided where the case changes, in the same transaction: see
//! `sanyu-escalation`.) See [`deliver`] for the guarantees.

pub mod deliver;
pub mod mailer;
pub mod message;
pub mod pacer;
pub mod policy;
pub mod smtp;

use std::time::Duration;

use sanyu_platform::consumer;
use sanyu_platform::relay::{OutboxRelay, Waker};
use sanyu_platform::runner;
use sanyu_platform::{Config, PlatformError, Shutdown};

pub use deliver::Deliverer;
pub use mailer::Mailer;

/// Run the notifier until shutdown: the delivery consumer and the outbox relay.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PlatformError> {
    // Configuration errors end the process at once; a late database or
    // NATS does not.
    let mailer =
        Mailer::from_config(&config.smtp).map_err(|e| PlatformError::Config(e.to_string()))?;
    // A refused certificate is a configuration error: end now, loudly. A
    // server that is down now is not: mail retries.
    match mailer.check().await {
        Ok(()) => {}
        Err(e @ smtp::CheckError::Tls(_)) => {
            return Err(PlatformError::Config(format!("smtp.url: {e}")));
        }
        Err(e) => {
            tracing::warn!(error = %e, "SMTP server not reachable at start-up; mail will retry")
        }
    }
    let readiness = runner::Readiness::new();
    runner::serve_health(&config, &readiness, &shutdown).await?;
    let Some((db, backbone)) =
        runner::connect(&config, "sanyu-notifier", &readiness, &shutdown.token).await?
    else {
        tracing::info!("notifier stopped before it could connect");
        return Ok(());
    };
    tracing::info!(
        nats = %backbone.server_version(),
        mail = mailer.describe(),
        sms_primary = config.sms.primary.is_some(),
        sms_secondary = config.sms.secondary.is_some(),
        "notifier starting"
    );
    let waker = Waker::default();
    let relay = OutboxRelay::new(db.clone(), backbone.clone(), waker.clone());
    shutdown.tracker.spawn(relay.run(shutdown.token.clone()));
    let pause = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    let deliverer = Deliverer::new(db.clone(), waker.clone(), mailer, &config)
        .map_err(|e| PlatformError::Config(e.to_string()))?
        .with_pause_after_claim(pause(deliver::FAULT_PAUSE_AFTER_CLAIM_MS))
        .with_pause_after_send(pause(deliver::FAULT_PAUSE_AFTER_SEND_MS));
    if !deliverer.sms_enabled() {
        tracing::warn!(
            "no SMS provider configured (sms.primary): SMS is off, every notification goes by email"
        );
    }
    if config.notify.digest_window_secs > 0 && deliverer.sms_enabled() && !deliverer.sms_digests() {
        tracing::warn!(
            "an SMS provider has no approved template of audience \"digest\" for the locale: non-critical SMS notices go one by one (email and IM still go as digests)"
        );
    }
    // Voice calls on a consumer of their own (see `deliver::Share`).
    if deliverer.voice_enabled() {
        let mailer =
            Mailer::from_config(&config.smtp).map_err(|e| PlatformError::Config(e.to_string()))?;
        let calls = Deliverer::new(db.clone(), waker, mailer, &config)
            .map_err(|e| PlatformError::Config(e.to_string()))?
            .for_calls();
        shutdown.tracker.spawn(consumer::run(
            backbone.clone(),
            deliver::calls_spec(),
            calls,
            shutdown.token.clone(),
        ));
    }
    shutdown.tracker.spawn(consumer::run(
        backbone.clone(),
        deliver::spec(),
        deliverer,
        shutdown.token.clone(),
    ));
    readiness.set_consumers_running();
    shutdown.token.cancelled().await;
    if !shutdown.wait(Duration::from_secs(20)).await {
        tracing::warn!("notifier: tasks did not stop in time");
    }
    let _ = backbone.client.drain().await;
    let _ = db.close().await;
    tracing::info!("notifier stopped");
    Ok(())
}
