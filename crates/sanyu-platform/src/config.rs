//! Layered configuration: defaults in code, then a TOML file (`SANYU_CONFIG`),
//! then environment variables (`SANYU_DATABASE__URL`, …). Secrets are wrapped
//! so that they never print.

use std::fmt;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::{PlatformError, Result};

/// A secret string: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub http: HttpConfig,
    pub health: HealthConfig,
    pub smtp: SmtpConfig,
    pub security: SecurityConfig,
    pub telemetry: TelemetryConfig,
    /// The escalation ladder per level (defaults: `EscalationPolicy::default`,
    /// written out with comments in `deploy/sanyu.example.toml`).
    pub escalation: sanyu_domain::EscalationPolicy,
    pub scheduler: SchedulerConfig,
    pub screening: ScreeningConfig,
    /// The calendar of key dates for zero reports (零报告) and its reminders.
    pub zero_report: sanyu_domain::zero_report::Calendar,
    /// SMS providers and the receipt callback secret.
    pub sms: SmsConfig,
    /// The voice-call provider for critical cases (`[voice.provider]`).
    pub voice: VoiceConfig,
    /// The work-IM platform (`[im.provider]`: WeCom or DingTalk).
    pub im: ImConfig,
    /// How the notifier reaches people: channels per level, retries, rate
    /// limits, quiet hours, locale.
    pub notify: NotifyConfig,
    /// The rules engine: the rules file in force, its reload, batching.
    pub rules: RulesConfig,
    /// The staff console served by the gateway: sessions and their cookie.
    pub console: ConsoleConfig,
}

/// The staff console (issue 15): server-side sessions opened with a
/// one-time code sent by email.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The session cookie is `Secure` (sent over HTTPS only). `sanyu dev`
    /// turns it off for its plain-HTTP address; nothing else should.
    pub secure_cookie: bool,
    /// A session with no request from its person for this long ends.
    pub idle_timeout_minutes: i64,
    /// A session ends this long after sign-in, whatever happens.
    pub absolute_timeout_hours: i64,
    /// An acknowledgement link (`/a/<token>`) of a case notification opens
    /// its page for this long after the notification was sent.
    pub ack_link_ttl_hours: i64,
    /// An SMS reply ("1" or a case reference) answers the case SMS its
    /// sender was sent in the last this many hours.
    pub sms_reply_window_hours: i64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            secure_cookie: true,
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 12,
            ack_link_ttl_hours: 72,
            sms_reply_window_hours: 24,
        }
    }
}

/// The rules engine (issue 4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// The reviewed rules file (TOML; see `sanyu rules check`). Empty: the
    /// built-in default rules.
    pub file: String,
    /// How often the file is checked for a new version (seconds). A new file
    /// that does not pass `sanyu rules check` is refused and the version in
    /// force stays.
    pub reload_secs: u64,
    /// Signals decided in one transaction (at most).
    pub max_batch: usize,
    /// Batches decided at once by one process (one student's signals always
    /// go to the same lane, in order). `lanes × max_batch` up to the
    /// consumer's 1,000 unacknowledged messages keeps every lane fed.
    pub lanes: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            file: String::new(),
            reload_secs: 5,
            max_batch: 500,
            lanes: 2,
        }
    }
}

/// Screening imports (心理普查 files) run by the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScreeningConfig {
    /// Where uploaded files wait until their import ends. Must survive a
    /// restart (an unfinished import resumes from it) and stay private.
    pub spool_dir: String,
    /// Largest screening file accepted by `POST /v1/screening-imports`.
    pub upload_limit_bytes: usize,
    /// Rows written per transaction.
    pub batch_rows: usize,
    /// A result is marked `worse_than_previous` when its total exceeds the
    /// student's previous result on the same instrument by at least this
    /// percentage of the instrument's total range (15 %: about 4 points on
    /// PHQ-9, 3 on GAD-7, 54 on SCL-90).
    pub worse_margin_percent: u32,
    /// How long a gateway's lease on a running import lasts without a
    /// committed batch. Gateways sharing a database (and the spool directory)
    /// take up an import whose gateway died once its lease expires; they look
    /// for such imports every half lease.
    pub lease_secs: u64,
    /// What an XLSX file may unpack to (`[screening.xlsx]`): a workbook beyond
    /// these is refused (422) before it is read, at upload and in the import.
    pub xlsx: sanyu_screening::XlsxLimits,
}

impl Default for ScreeningConfig {
    fn default() -> Self {
        Self {
            spool_dir: ".sanyu/spool".into(),
            upload_limit_bytes: 256 * 1024 * 1024,
            batch_rows: 2000,
            worse_margin_percent: 15,
            lease_secs: 60,
            xlsx: sanyu_screening::XlsxLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often the scheduler looks for due timers at most.
    pub poll_interval_ms: u64,
    /// How often the ladder auditor runs.
    pub audit_interval_secs: u64,
    /// A rung this late counts as stalled.
    pub audit_grace_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            audit_interval_secs: 60,
            audit_grace_secs: 120,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub max_connections: u32,
    pub sqlite_synchronous: String,
    pub sqlite_busy_timeout_ms: u64,
    /// How long a request (or a worker) waits for a database connection
    /// before the database counts as unavailable: the API answers `503` with
    /// `Retry-After` after this long during an outage.
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    pub creds_file: String,
    /// User and password for a server with static accounts
    /// (`deploy/nats/nats-cluster.conf`); empty: none.
    pub user: String,
    pub password: Secret,
    /// PEM file of the CA that signed the NATS server's certificate; when set,
    /// the connection must use TLS.
    pub tls_ca_file: String,
    /// Client certificate and key (PEM) for servers that verify clients (mTLS).
    pub tls_client_cert: String,
    pub tls_client_key: String,
    pub stream_replicas: usize,
    pub duplicate_window_secs: u64,
    pub ack_wait_secs: u64,
    pub max_deliver: i64,
    pub backoff_secs: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    pub body_limit_bytes: usize,
    pub public_base_url: String,
    /// A request's header block must arrive within this long of its first
    /// byte, or the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A request body that stops (no data for this long) is answered `408`
    /// and the connection closed.
    pub body_read_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Connections served at once; further clients wait in the listen
    /// backlog until one closes.
    pub max_connections: usize,
}

/// The health listener of a service: `GET /healthz` (the process is alive),
/// `GET /readyz` (its database and NATS are reachable and its consumers run)
/// and `GET /metrics` (Prometheus). An internal address: the gateway serves
/// its API on `http.listen` and these on this one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// `host:port`; empty: no health listener. Each service needs its own
    /// (see `deploy/systemd`).
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub url: Secret,
    pub from: String,
    pub file_dir: String,
    pub pool_max_size: u32,
    /// PEM file of a CA to trust besides the system's for the SMTP server's
    /// certificate (a district's own CA). Empty: the system's roots only.
    pub tls_ca_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    pub data_key: Secret,
    pub token_ttl_days: i64,
    /// Allow unencrypted (or unverified) connections to the database, NATS
    /// and SMTP on another host (`config/transport.rs`). Default: refused.
    pub allow_plaintext: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub otlp_endpoint: String,
    /// How often metrics are exported over OTLP.
    pub metrics_interval_secs: u64,
    pub log_format: String,
    pub log_filter: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://.sanyu/sanyu.db?mode=rwc"),
            max_connections: 20,
            sqlite_synchronous: "full".into(),
            sqlite_busy_timeout_ms: 5000,
            acquire_timeout_ms: 1000,
        }
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            creds_file: String::new(),
            user: String::new(),
            password: Secret::default(),
            tls_ca_file: String::new(),
            tls_client_cert: String::new(),
            tls_client_key: String::new(),
            stream_replicas: 1,
            duplicate_window_secs: 3600,
            ack_wait_secs: 30,
            max_deliver: 8,
            backoff_secs: vec![1, 5, 30, 120, 600],
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 64 * 1024,
            public_base_url: "http://localhost:8080".into(),
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            from: "Sanyu <sanyu@localhost>".into(),
            file_dir: ".sanyu/mail".into(),
            pool_max_size: 8,
            tls_ca_file: String::new(),
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            data_key: Secret::default(),
            token_ttl_days: 90,
            allow_plaintext: false,
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            metrics_interval_secs: 60,
            log_format: "json".into(),
            log_filter: "info".into(),
        }
    }
}

impl Config {
    /// Defaults, then the file named by `SANYU_CONFIG` (if any), then `SANYU_*` variables.
    pub fn load() -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Ok(path) = std::env::var("SANYU_CONFIG")
            && !path.is_empty()
        {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            // Only `SANYU_<SECTION>__<KEY>` variables are settings; others such as
            // `SANYU_CONFIG` or the test scripts' `SANYU_TEST_PG_URL` are not.
            .merge(
                Env::prefixed("SANYU_")
                    .filter(|k| k.as_str().contains("__"))
                    .split("__"),
            )
            .extract::<Config>()
            .map_err(|e| PlatformError::Config(e.to_string()))
            .and_then(|c| {
                c.escalation
                    .validate()
                    .map_err(|e| PlatformError::Config(format!("escalation: {e}")))?;
                c.zero_report
                    .validate()
                    .map_err(|e| PlatformError::Config(e.to_string()))?;
                c.check_transport().map_err(PlatformError::Config)?;
                Ok(c)
            })
    }

    /// Refuse plaintext to another host unless `security.allow_plaintext`.
    pub fn check_transport(&self) -> std::result::Result<(), String> {
        if self.security.allow_plaintext {
            return Ok(());
        }
        transport::check_database(self.database.url.expose())?;
        transport::check_nats(&self.nats.url, &self.nats.tls_ca_file)?;
        transport::check_smtp(self.smtp.url.expose())
    }

    pub fn db_config(&self) -> sanyu_store::DbConfig {
        sanyu_store::DbConfig {
            url: self.database.url.expose().to_owned(),
            max_connections: self.database.max_connections,
            sqlite_synchronous: self.database.sqlite_synchronous.clone(),
            sqlite_busy_timeout: Duration::from_millis(self.database.sqlite_busy_timeout_ms),
            acquire_timeout: Duration::from_millis(self.database.acquire_timeout_ms.max(1)),
        }
    }

    /// The data key sealer; a missing key is a configuration error.
    pub fn sealer(&self) -> Result<sanyu_store::crypto::Sealer> {
        if self.security.data_key.is_empty() {
            return Err(PlatformError::Config(
                "security.data_key is not set (base64 of 32 random bytes)".into(),
            ));
        }
        sanyu_store::crypto::Sealer::from_base64(self.security.data_key.expose())
            .map_err(|e| PlatformError::Config(e.to_string()))
    }
}

mod notify;
pub mod transport;

pub use notify::*;

#[cfg(test)]
mod tests;
