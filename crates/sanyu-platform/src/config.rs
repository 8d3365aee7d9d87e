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
    pub smtp: SmtpConfig,
    pub security: SecurityConfig,
    pub telemetry: TelemetryConfig,
    /// The escalation ladder per level (defaults: `DESIGN.md`).
    pub escalation: sanyu_domain::EscalationPolicy,
    pub scheduler: SchedulerConfig,
    pub screening: ScreeningConfig,
    /// The calendar of key dates for zero reports (零报告) and its reminders.
    pub zero_report: sanyu_domain::zero_report::Calendar,
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
}

impl Default for ScreeningConfig {
    fn default() -> Self {
        Self {
            spool_dir: ".sanyu/spool".into(),
            upload_limit_bytes: 256 * 1024 * 1024,
            batch_rows: 500,
            worse_margin_percent: 15,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    pub creds_file: String,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub url: Secret,
    pub from: String,
    pub file_dir: String,
    pub pool_max_size: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    pub data_key: Secret,
    pub token_ttl_days: i64,
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
        }
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            creds_file: String::new(),
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
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            data_key: Secret::default(),
            token_ttl_days: 90,
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
                Ok(c)
            })
    }

    pub fn db_config(&self) -> sanyu_store::DbConfig {
        sanyu_store::DbConfig {
            url: self.database.url.expose().to_owned(),
            max_connections: self.database.max_connections,
            sqlite_synchronous: self.database.sqlite_synchronous.clone(),
            sqlite_busy_timeout: Duration::from_millis(self.database.sqlite_busy_timeout_ms),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let mut c = Config::default();
        c.security.data_key = Secret::new("super-secret-key");
        c.database.url = Secret::new("postgres://user:pw@db/sanyu");
        let shown = format!("{c:?}");
        assert!(!shown.contains("super-secret-key"));
        assert!(!shown.contains("pw@db"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn environment_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SANYU_NATS__URL", "nats://10.0.0.1:4222");
            jail.set_env("SANYU_HTTP__BODY_LIMIT_BYTES", "1024");
            jail.set_env("SANYU_TEST_PG_URL", "postgres://ignored");
            let c = Config::load().map_err(|e| e.to_string())?;
            assert_eq!(c.nats.url, "nats://10.0.0.1:4222");
            assert_eq!(c.http.body_limit_bytes, 1024);
            assert_eq!(c.nats.max_deliver, 8);
            Ok(())
        });
    }

    #[test]
    fn the_sample_configuration_is_complete_and_matches_the_defaults() {
        let sample = include_str!("../../../deploy/sanyu.example.toml");
        let parsed: Config = Figment::from(Toml::string(sample))
            .extract()
            .expect("deploy/sanyu.example.toml parses with every key known");
        assert_eq!(parsed.escalation, sanyu_domain::EscalationPolicy::default());
        assert_eq!(
            parsed.zero_report.reminder_offsets_secs,
            sanyu_domain::zero_report::Calendar::default().reminder_offsets_secs
        );
        assert_eq!(
            serde_json::to_value(&parsed.scheduler).ok(),
            serde_json::to_value(SchedulerConfig::default()).ok()
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
    fn a_ladder_is_set_from_the_environment_and_a_bad_one_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SANYU_ESCALATION__CRITICAL__ACK_WITHIN_SECS", "3");
            jail.set_env(
                "SANYU_ESCALATION__CRITICAL__RUNGS",
                r#"[{after_secs=3, roles=["leader"]}]"#,
            );
            let c = Config::load().map_err(|e| e.to_string())?;
            assert_eq!(c.escalation.critical.ack_within_secs, 3);
            assert_eq!(c.escalation.critical.rungs.len(), 1);
            jail.set_env(
                "SANYU_ESCALATION__HIGH__RUNGS",
                r#"[{after_secs=3, roles=["teacher"]}]"#,
            );
            let err = Config::load().expect_err("a teacher is never on a ladder");
            assert!(err.to_string().contains("escalation"), "{err}");
            Ok(())
        });
    }
}
