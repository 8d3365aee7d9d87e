//! How every service starts: without its database or NATS if need be. The
//! service is alive at once (`/healthz`), not ready (`/readyz` 503) while it
//! connects, retrying with backoff, and ready once both are reachable and
//! its consumers run. Nothing exits because a dependency is late.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sanyu_store::Db;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::nats::{self, Backbone};
use crate::{Config, PlatformError, Shutdown, http};

/// First and longest wait between connection attempts.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A readiness probe waits this long for the database at most.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessReport {
    pub database: bool,
    pub nats: bool,
    /// The service's consumers (and relays) are running.
    pub consumers: bool,
}

impl ReadinessReport {
    pub fn ready(&self) -> bool {
        self.database && self.nats && self.consumers
    }
}

#[derive(Default)]
struct Inner {
    backends: OnceLock<(Db, Backbone)>,
    database_up: AtomicBool,
    nats_up: AtomicBool,
    consumers: AtomicBool,
}

/// A service's readiness, shared by its health endpoints and its start-up.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Inner>);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// The service's consumers, relays and loops are running.
    pub fn set_consumers_running(&self) {
        self.0.consumers.store(true, Ordering::SeqCst);
    }

    /// The database and NATS, once connected.
    pub fn backends(&self) -> Option<&(Db, Backbone)> {
        self.0.backends.get()
    }

    fn set_connected(&self, db: Db, backbone: Backbone) {
        let _ = self.0.backends.set((db, backbone));
    }

    /// Probe now: the database answers, NATS is connected, consumers run.
    pub async fn check(&self) -> ReadinessReport {
        let consumers = self.0.consumers.load(Ordering::SeqCst);
        match self.0.backends.get() {
            Some((db, backbone)) => {
                let database = matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, db.ping()).await,
                    Ok(Ok(()))
                );
                ReadinessReport {
                    database,
                    nats: backbone.is_connected(),
                    consumers,
                }
            }
            None => ReadinessReport {
                database: self.0.database_up.load(Ordering::SeqCst),
                nats: self.0.nats_up.load(Ordering::SeqCst),
                consumers,
            },
        }
    }
}

/// `GET /readyz`: 200 when ready, 503 otherwise, with what is missing.
pub async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, Json<ReadinessReport>) {
    let report = readiness.check().await;
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /metrics`: Prometheus' text format (see [`crate::metrics`]).
pub async fn metrics(State(readiness): State<Readiness>) -> axum::response::Response {
    crate::metrics::render(readiness.backends()).await
}

/// The health listener's routes: liveness, readiness and metrics (an
/// internal port: never the public API's).
pub fn health_router(readiness: Readiness) -> Router {
    crate::metrics::install();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

/// Start the `[health]` listener of a headless service, if one is
/// configured. It runs until shutdown.
pub async fn serve_health(
    config: &Config,
    readiness: &Readiness,
    shutdown: &Shutdown,
) -> Result<(), PlatformError> {
    if config.health.listen.is_empty() {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(&config.health.listen)
        .await
        .map_err(|e| {
            PlatformError::Config(format!("health.listen {}: {e}", config.health.listen))
        })?;
    tracing::info!(addr = ?listener.local_addr().ok(), "health listener");
    shutdown.tracker.spawn(http::serve(
        listener,
        health_router(readiness.clone()),
        http::Limits::from_config(&config.http),
        shutdown.token.clone(),
    ));
    Ok(())
}

/// Connect to the database and to NATS (and ensure the streams), retrying
/// each with backoff until it works or `stop` is cancelled (`Ok(None)`). A
/// database or NATS server whose TLS certificate is refused (or that cannot
/// do the TLS the settings require) is a configuration error, not an outage:
/// `Err` at once.
pub async fn connect(
    config: &Config,
    name: &str,
    readiness: &Readiness,
    stop: &CancellationToken,
) -> Result<Option<(Db, Backbone)>, PlatformError> {
    let database = async {
        let db_config = config.db_config();
        let db = retry("database", stop, || async {
            match sanyu_store::db::connect(&db_config).await {
                Err(e) if e.is_tls_refused() => Err(Attempt::Fatal(PlatformError::Config(
                    format!("database.url: TLS refused: {e}"),
                ))),
                other => other.map_err(|e| Attempt::Retry(e.to_string())),
            }
        })
        .await?;
        if db.is_some() {
            readiness.0.database_up.store(true, Ordering::SeqCst);
        }
        Ok::<_, PlatformError>(db)
    };
    let nats = async {
        // The client keeps reconnecting by itself; the streams are ensured
        // once it is connected.
        let Some(backbone) = retry("NATS", stop, || async {
            nats::connect(&config.nats, name)
                .await
                .map_err(|e| match e {
                    PlatformError::Config(_) => Attempt::Fatal(e),
                    other => Attempt::Retry(other.to_string()),
                })
        })
        .await?
        else {
            return Ok(None);
        };
        let backbone = retry("NATS streams", stop, || {
            let backbone = backbone.clone();
            async move {
                if !backbone.is_connected() {
                    return Err(Attempt::Retry("not connected yet".into()));
                }
                backbone
                    .ensure_streams()
                    .await
                    .map(|()| backbone)
                    .map_err(|e| Attempt::Retry(e.to_string()))
            }
        })
        .await?;
        if backbone.is_some() {
            readiness.0.nats_up.store(true, Ordering::SeqCst);
        }
        Ok::<_, PlatformError>(backbone)
    };
    let (db, backbone) = tokio::try_join!(database, nats)?;
    let (Some(db), Some(backbone)) = (db, backbone) else {
        return Ok(None);
    };
    readiness.set_connected(db.clone(), backbone.clone());
    tracing::info!(nats = %backbone.server_version(), "{name}: database and NATS reachable");
    Ok(Some((db, backbone)))
}

/// How one attempt of [`retry`] failed.
enum Attempt {
    /// Worth another try (down, starting, refused).
    Retry(String),
    /// A configuration error: stop trying.
    Fatal(PlatformError),
}

/// Call `attempt` until it succeeds, waiting 250 ms, 500 ms, … up to 5 s
/// between attempts; `Ok(None)` when stopped first, `Err` on a fatal failure.
async fn retry<T, F, Fut>(
    what: &str,
    stop: &CancellationToken,
    mut attempt: F,
) -> Result<Option<T>, PlatformError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Attempt>>,
{
    let mut wait = BACKOFF_START;
    let mut failures: u32 = 0;
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return Ok(None),
            outcome = attempt() => outcome,
        };
        match outcome {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(failures, "{what} reachable again");
                }
                return Ok(Some(value));
            }
            Err(Attempt::Fatal(e)) => {
                tracing::error!(error = %e, "{what}: giving up");
                return Err(e);
            }
            Err(Attempt::Retry(e)) => {
                failures += 1;
                // Every attempt at first, then one in ten: a long outage
                // does not flood the log.
                if failures <= 3 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, "{what} not reachable; retrying");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(BACKOFF_MAX);
    }
}
