//! A pooled SMTP client on lettre's `AsyncSmtpConnection`, on sockets with
//! `TCP_NODELAY`.
//!
//! Why not lettre's `AsyncSmtpTransport` pool: it opens its sockets without
//! `TCP_NODELAY` and writes the end-of-data marker (`\r\n.\r\n`) as a second
//! small segment after the message. Nagle's algorithm then holds that segment
//! until the server acknowledges the first, and the server delays its ACK
//! (about 40 ms on Linux) because it is waiting for exactly that marker: every
//! email stalls ~40 ms and one connection delivers at most ~25 emails a second
//! (measured with `sanyu-bench`). Here we open the TCP connection ourselves,
//! set `TCP_NODELAY`, and hand it to lettre, which still speaks the protocol:
//! EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::mailer::SendError;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP (`smtp://`, a relay on a trusted network or a test server).
    Plain,
    /// STARTTLS required (`smtp://…?tls=required`, port 587).
    StartTls,
    /// STARTTLS when offered (`smtp://…?tls=opportunistic`).
    Opportunistic,
    /// Implicit TLS (`smtps://`, port 465).
    Implicit,
}

/// Where and how to connect, parsed from the same URL format as lettre's
/// `from_url`: `smtp[s]://[user:password@]host[:port][/hello-name][?tls=required|opportunistic]`.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<Credentials>,
    pub hello: ClientId,
    pub timeout: Duration,
    pub max_connections: usize,
    /// CA certificates trusted besides the platform's (`smtp.tls_ca_file`).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Trust the CA certificates of `pem` besides the platform's roots.
    pub fn with_extra_roots(mut self, pem: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let roots = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("smtp.tls_ca_file: {e}"))?;
        if roots.is_empty() {
            return Err("smtp.tls_ca_file: no certificate in the file".to_owned());
        }
        self.extra_roots = roots;
        Ok(self)
    }

    pub fn from_url(raw: &str, max_connections: usize) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        let host = url.host_str().ok_or("no host")?.to_owned();
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::StartTls, 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic, 587),
            ("smtps", _) => (Security::Implicit, 465),
            (scheme, tls) => {
                return Err(format!("unknown scheme `{scheme}` or tls `{tls:?}`"));
            }
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|e| e.to_string())
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        Ok(Self {
            port: url.port().unwrap_or(default_port),
            host,
            security,
            credentials,
            hello,
            timeout: Duration::from_secs(15),
            max_connections: max_connections.max(1),
            extra_roots: Vec::new(),
        })
    }
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// A small pool of SMTP connections.
#[derive(Clone)]
pub struct SmtpClient {
    settings: Arc<SmtpSettings>,
    idle: Arc<Mutex<Vec<Idle>>>,
    permits: Arc<Semaphore>,
}

/// Reuse a connection idle for less than this without a NOOP check.
const FRESH: Duration = Duration::from_secs(5);
/// Drop connections idle for longer than this (servers close them anyway).
const STALE: Duration = Duration::from_secs(60);

fn transient(e: impl std::fmt::Display) -> SendError {
    SendError::Transient(e.to_string())
}

fn classify(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Transient(e.to_string())
    }
}

impl SmtpClient {
    pub fn new(settings: SmtpSettings) -> Self {
        let permits = Arc::new(Semaphore::new(settings.max_connections));
        Self {
            settings: Arc::new(settings),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits,
        }
    }

    /// Send one message (already formatted) to the envelope's recipients.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        let _permit = self.permits.acquire().await.map_err(transient)?;
        let mut conn = match self.checkout().await {
            Some(conn) => conn,
            None => tokio::time::timeout(self.settings.timeout, self.connect())
                .await
                .map_err(|_| transient("timed out connecting to the SMTP server"))??,
        };
        let sent = tokio::time::timeout(self.settings.timeout, conn.send(envelope, message)).await;
        match sent {
            Ok(Ok(_)) => {
                self.checkin(conn);
                Ok(())
            }
            Ok(Err(e)) => {
                conn.abort().await;
                Err(classify(e))
            }
            Err(_) => {
                conn.abort().await;
                Err(transient("timed out sending to the SMTP server"))
            }
        }
    }

    async fn checkout(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let idle = self.idle.lock().ok()?.pop()?;
            let age = idle.since.elapsed();
            let mut conn = idle.conn;
            if age > STALE || conn.has_broken() {
                conn.abort().await;
                continue;
            }
            if age > FRESH && !conn.test_connected().await {
                conn.abort().await;
                continue;
            }
            return Some(conn);
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Connect once, as the service starts: a certificate that is refused
    /// (or a server that cannot do the TLS `smtp.url` requires) is a
    /// configuration error to fail on loudly; a server that is down now is
    /// not (mail waits and retries).
    pub async fn check(&self) -> Result<(), CheckError> {
        let opened = tokio::time::timeout(self.settings.timeout, self.open())
            .await
            .map_err(|_| CheckError::Unreachable("timed out connecting".to_owned()))?;
        match opened {
            Ok(mut conn) => {
                let _ = conn.quit().await;
                Ok(())
            }
            Err((Stage::Tls, e)) => Err(CheckError::Tls(e.to_string())),
            Err((_, e)) => Err(CheckError::Unreachable(e.to_string())),
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        self.open().await.map_err(|(_, e)| e)
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, (Stage, SendError)> {
        let s = &self.settings;
        let at = |stage: Stage| move |e: SendError| (stage, e);
        let tcp = TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(transient)
            .map_err(at(Stage::Tcp))?;
        tcp.set_nodelay(true)
            .map_err(transient)
            .map_err(at(Stage::Tcp))?;
        let mut conn = match s.security {
            Security::Implicit => {
                let tls = implicit_tls(tcp, &s.host, &s.extra_roots)
                    .await
                    .map_err(at(Stage::Tls))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(tls), &s.hello)
                    .await
                    .map_err(classify)
                    .map_err(at(Stage::Smtp))?
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &s.hello)
                .await
                .map_err(classify)
                .map_err(at(Stage::Smtp))?,
        };
        let wants_tls = match s.security {
            Security::StartTls => true,
            Security::Opportunistic => conn.can_starttls(),
            Security::Plain | Security::Implicit => false,
        };
        if wants_tls {
            let mut params = TlsParameters::builder(s.host.clone());
            for root in &s.extra_roots {
                params = params.add_root_certificate(
                    lettre::transport::smtp::client::Certificate::from_der(root.to_vec())
                        .map_err(transient)
                        .map_err(at(Stage::Tls))?,
                );
            }
            let params = params
                .build_rustls()
                .map_err(transient)
                .map_err(at(Stage::Tls))?;
            conn.starttls(params, &s.hello)
                .await
                .map_err(classify)
                .map_err(at(Stage::Tls))?;
        }
        if let Some(credentials) = &s.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(classify)
                .map_err(at(Stage::Smtp))?;
        }
        Ok(conn)
    }
}

/// Where opening a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Tcp,
    Tls,
    Smtp,
}

/// What the start-up check of the SMTP server found wrong.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The TLS handshake failed: the certificate was refused, or the server
    /// cannot do the TLS `smtp.url` requires. A configuration error.
    #[error("TLS to the SMTP server failed: {0}")]
    Tls(String),
    /// Not reachable now (down, refused, timed out, rejected the login).
    #[error("SMTP server not reachable: {0}")]
    Unreachable(String),
}

/// A TLS stream lettre can drive (implicit TLS, `smtps://`).
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

async fn implicit_tls(
    tcp: TcpStream,
    host: &str,
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<TlsTcp, SendError> {
    use rustls_platform_verifier::ConfigVerifierExt;
    let config = if extra_roots.is_empty() {
        rustls::ClientConfig::with_platform_verifier().map_err(transient)?
    } else {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots.to_vec(),
            provider.clone(),
        )
        .map_err(transient)?;
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(transient)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(transient)?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(transient)?;
    Ok(TlsTcp(stream))
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_like_lettres() {
        let s = SmtpSettings::from_url("smtp://127.0.0.1:2525", 4).expect("plain");
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("127.0.0.1", 2525, Security::Plain)
        );
        assert!(s.credentials.is_none());
        let s = SmtpSettings::from_url("smtp://u%40x:p%2Fw@mail.example.org?tls=required", 4)
            .expect("starttls");
        assert_eq!((s.port, s.security), (587, Security::StartTls));
        assert!(s.credentials.is_some());
        assert!(!format!("{s:?}").contains("p/w"), "credentials never print");
        let s = SmtpSettings::from_url("smtps://mail.example.org", 4).expect("implicit");
        assert_eq!((s.port, s.security), (465, Security::Implicit));
        assert!(SmtpSettings::from_url("http://x", 4).is_err());
        assert!(SmtpSettings::from_url("smtp://x?tls=sometimes", 4).is_err());
    }
}
