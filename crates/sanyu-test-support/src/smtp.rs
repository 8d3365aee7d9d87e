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
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// On a given port (0: any free one).
    pub fn start_on(port: u16) -> Self {
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
        if server.with_ssl(SslConfig::None).is_err() {
            panic!("SMTP server config");
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self { port, mails }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// lettre URL of this server (plain SMTP).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
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
