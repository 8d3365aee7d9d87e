//! What every Sanyu service shares: configuration, telemetry, shutdown, the
//! NATS JetStream backbone (streams, consumers, publishing, the consumer loop),
//! the outbox relay and the dead-letter recorder.

pub mod config;
pub mod consumer;
pub mod deadletter;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod relay;
pub mod runner;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use config::Config;
pub use consumer::{Delivery, Handler, Outcome};
pub use shutdown::Shutdown;

/// Errors of the platform layer.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Store(#[from] sanyu_store::StoreError),
    #[error("telemetry: {0}")]
    Telemetry(String),
}

pub type Result<T, E = PlatformError> = std::result::Result<T, E>;

/// Install the process-wide TLS crypto provider (aws-lc-rs). Call first thing
/// in every `main`: two providers compiled in would otherwise panic at the
/// first TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
