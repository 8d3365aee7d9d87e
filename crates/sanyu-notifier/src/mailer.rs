//! Email through lettre: SMTP (plain, STARTTLS or implicit TLS, pooled: see
//! [`crate::smtp`]), or `.eml` files when no SMTP server is configured (`sanyu dev`).

use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use sanyu_platform::config::SmtpConfig;

use crate::smtp::{SmtpClient, SmtpSettings};

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
    Smtp(SmtpClient),
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
        let mut settings = SmtpSettings::from_url(
            config.url.expose(),
            usize::try_from(config.pool_max_size).unwrap_or(4),
        )
        .map_err(MailerError::Url)?;
        if !config.tls_ca_file.is_empty() {
            let pem = std::fs::read(&config.tls_ca_file)
                .map_err(|e| MailerError::Dir(config.tls_ca_file.clone(), e))?;
            settings = settings.with_extra_roots(&pem).map_err(MailerError::Url)?;
        }
        Ok(Mailer::Smtp(SmtpClient::new(settings)))
    }

    /// Try the SMTP server once (see [`SmtpClient::check`]); files always pass.
    pub async fn check(&self) -> Result<(), crate::smtp::CheckError> {
        match self {
            Mailer::Smtp(client) => client.check().await,
            Mailer::Files { .. } => Ok(()),
        }
    }

    /// Where mail goes, for the start-up log (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Mailer::Smtp(_) => "smtp".to_owned(),
            Mailer::Files { dir, .. } => format!("files in {dir}"),
        }
    }

    /// The provider name recorded on each attempt.
    pub fn provider_name(&self) -> &'static str {
        match self {
            Mailer::Smtp(_) => "smtp",
            Mailer::Files { .. } => "files",
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(client) => client.send(message.envelope(), &message.formatted()).await,
            Mailer::Files { transport, .. } => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Transient(e.to_string())),
        }
    }
}
