//! Real servers for Sanyu's tests and benchmarks: a current `nats-server` with
//! JetStream per test (free port, its own store), an SMTP server over TCP,
//! fresh PostgreSQL or SQLite databases, the real service binaries, and a
//! seeded school with tokens for every role.

pub mod db;
pub mod fixtures;
pub mod nats;
pub mod pg_cluster;
pub mod process;
pub mod smtp;
pub mod tls;
pub mod xlsx_bombs;

pub use db::TestDb;
pub use fixtures::{School, seed_school};
pub use nats::{NatsCluster, NatsServer};
pub use pg_cluster::PgCluster;
pub use process::{ServiceProcess, binary};
pub use smtp::{ReceivedMail, SmtpServer};
pub use tls::TestCa;

use std::time::Duration;

/// Poll `check` until it returns `Some` or `timeout` passes. Never sleep-and-hope.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// The workspace root (where `.tools/` lives).
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}
