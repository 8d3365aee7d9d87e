//! A real SMTP server over TCP (mailin-embedded) that keeps what it receives.

use std::io;
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub to: Vec<String>,
    pub raw: Vec<u8>,
    pub received_at: Instant,
    /// Wall-clock time of receipt, comparable with database timestamps.
    pub received_wall: chrono::DateTime<chrono::Utc>,
}

impl ReceivedMail {
    pub fn subject(&self) -> String {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .and_then(|m| m.subject().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The `Message-ID` header, without its angle brackets.
    pub fn message_id(&self) -> Option<String> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .and_then(|m| m.message_id().map(str::to_owned))
    }

    /// The decoded text body.
    pub fn text(&self) -> String {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct Collector {
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    to: Vec<String>,
    buf: Vec<u8>,
}

impl Handler for Collector {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.buf.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mail = ReceivedMail {
            to: std::mem::take(&mut self.to),
            raw: std::mem::take(&mut self.buf),
            received_at: Instant::now(),
            received_wall: chrono::Utc::now(),
        };
        if let Ok(mut mails) = self.mails.lock() {
            mails.push(mail);
        }
        response::OK
    }

    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> Response {
        response::OK
    }
}

pub struct SmtpServer {
    port: u16,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    /// How clients reach it: `smtp://…` (plain or STARTTLS) or `smtps://…`.
    url: String,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// On a given port (0: any free one).
    pub fn start_on(port: u16) -> Self {
        let server = Self::serve(port, SslConfig::None);
        Self {
            url: format!("smtp://127.0.0.1:{}", server.0),
            port: server.0,
            mails: server.1,
        }
    }

    /// A server that offers STARTTLS with `ca`'s certificate for
    /// `localhost`; its URL requires STARTTLS (`?tls=required`).
    pub fn start_starttls(ca: &crate::TestCa) -> Self {
        let ssl = SslConfig::SelfSigned {
            cert_path: ca.cert().display().to_string(),
            key_path: ca.key().display().to_string(),
        };
        let (port, mails) = Self::serve(0, ssl);
        Self {
            url: format!("smtp://localhost:{port}?tls=required"),
            port,
            mails,
        }
    }

    /// A server that speaks TLS from the first byte (`smtps://`, port 465
    /// in production) with `ca`'s certificate for `localhost`: a TLS
    /// listener in front of a plain one. Call inside a Tokio runtime.
    pub fn start_implicit_tls(ca: &crate::TestCa) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (inner, mails) = Self::serve(0, SslConfig::None);
        let certs = CertificateDer::pem_file_iter(ca.cert())
            .expect("read cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("parse cert");
        let key = PrivateKeyDer::from_pem_file(ca.key()).expect("read key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind SMTPS port");
        let port = listener.local_addr().expect("SMTPS addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake (the client does not trust the
                    // certificate) just ends the connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", inner)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self {
            url: format!("smtps://localhost:{port}"),
            port,
            mails,
        }
    }

    fn serve(port: u16, ssl: SslConfig) -> (u16, Arc<Mutex<Vec<ReceivedMail>>>) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind SMTP port");
        let port = listener.local_addr().expect("SMTP addr").port();
        // Accepted sockets inherit TCP_NODELAY: multi-line replies (EHLO) are
        // not held back by Nagle's algorithm, as on a production MTA.
        let _ =
            nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::TcpNoDelay, &true);
        let mails = Arc::new(Mutex::new(Vec::new()));
        let handler = Collector {
            mails: mails.clone(),
            to: Vec::new(),
            buf: Vec::new(),
        };
        let mut server = Server::new(handler);
        server
            .with_name("sanyu-test-smtp")
            .with_num_threads(8)
            .with_tcp_listener(listener);
        if server.with_ssl(ssl).is_err() {
            panic!("SMTP server config");
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        (port, mails)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `smtp.url` of this server (plain, STARTTLS or implicit TLS).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Wait until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        crate::eventually(timeout, &format!("{n} email(s)"), || async {
            let count = self.mails.lock().map(|m| m.len()).unwrap_or(0);
            (count >= n).then(|| self.received())
        })
        .await
    }
}
