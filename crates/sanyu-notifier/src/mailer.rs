//! Email through lettre: SMTP (plain, STARTTLS or implicit TLS, with a pooled
//! async transport), or `.eml` files when no SMTP server is configured (`sanyu dev`).

use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sanyu_platform::config::SmtpConfig;

#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("smtp.url is invalid: {0}")]
    Url(String),
    #[error("cannot create mail directory {0}: {1}")]
    Dir(String, std::io::Error),
}

/// How a send failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying: connection refused, timeout, 4xx.
    #[error("transient: {0}")]
    Transient(String),
    /// Never succeeds as is: 5xx (mailbox unknown, rejected).
    #[error("permanent: {0}")]
    Permanent(String),
}

#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files {
        transport: AsyncFileTransport<Tokio1Executor>,
        dir: String,
    },
}

impl Mailer {
    pub fn from_config(config: &SmtpConfig) -> Result<Self, MailerError> {
        if config.url.is_empty() {
            std::fs::create_dir_all(&config.file_dir)
                .map_err(|e| MailerError::Dir(config.file_dir.clone(), e))?;
            return Ok(Mailer::Files {
                transport: AsyncFileTransport::new(&config.file_dir),
                dir: config.file_dir.clone(),
            });
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.url.expose())
            .map_err(|e| MailerError::Url(e.to_string()))?
            .timeout(Some(std::time::Duration::from_secs(15)))
            .pool_config(PoolConfig::new().max_size(config.pool_max_size.max(1)))
            .build();
        Ok(Mailer::Smtp(transport))
    }

    /// Where mail goes, for the start-up log (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Mailer::Smtp(_) => "smtp".to_owned(),
            Mailer::Files { dir, .. } => format!("files in {dir}"),
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    SendError::Permanent(e.to_string())
                } else {
                    SendError::Transient(e.to_string())
                }
            }),
            Mailer::Files { transport, .. } => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Transient(e.to_string())),
        }
    }
}
