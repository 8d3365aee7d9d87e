//! A private PostgreSQL server per test, which the test may stop and start
//! again (a database outage) without touching the shared server the other
//! tests use. Built from Debian's server binaries (`/usr/lib/postgresql/*/bin`);
//! as root the server runs as user `postgres` (PostgreSQL refuses root).
//!
//! `PgCluster::start()` returns `None`, with a note on stderr, where no server
//! binaries exist (outside CI); under `CI=true` that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::free_port;

pub struct PgCluster {
    bindir: PathBuf,
    dir: TempDir,
    port: u16,
    run_as: Option<&'static str>,
    running: bool,
}

impl PgCluster {
    /// initdb (trust auth, loopback only) and start on a free port.
    pub async fn start() -> Option<Self> {
        Self::start_with(None).await
    }

    /// As [`Self::start`], but TCP clients must use TLS (`hostssl` only):
    /// the server presents `ca`'s certificate for `localhost`/`127.0.0.1`.
    /// Connect with [`Self::tls_url`].
    pub async fn start_tls(ca: &crate::TestCa) -> Option<Self> {
        Self::start_with(Some(ca.clone())).await
    }

    async fn start_with(tls: Option<crate::TestCa>) -> Option<Self> {
        let Some(bindir) = find_bindir() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no PostgreSQL server binaries in /usr/lib/postgresql/*/bin");
            }
            eprintln!(
                "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): skipping a test that stops its own PostgreSQL"
            );
            return None;
        };
        let run_as = if is_root() { Some("postgres") } else { None };
        let bindir2 = bindir.clone();
        let cluster = tokio::task::spawn_blocking(move || {
            let dir = tempfile::Builder::new()
                .prefix("sanyu-pgc-")
                .tempdir_in("/tmp")
                .expect("temp dir for a PostgreSQL cluster");
            let mut cluster = PgCluster {
                bindir: bindir2,
                dir,
                port: free_port(),
                run_as,
                running: false,
            };
            cluster.init();
            if let Some(ca) = &tls {
                cluster.require_tls(ca);
            }
            cluster.start_blocking();
            cluster
        })
        .await
        .expect("PostgreSQL cluster start-up");
        Some(cluster)
    }

    /// An admin URL (database `postgres`, user `postgres`, no TLS).
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// A URL for database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// A URL for database `name` over TLS, verifying the server's
    /// certificate and host name against `ca_file`.
    pub fn tls_url(&self, name: &str, ca_file: &Path) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=verify-full&sslrootcert={}",
            self.port,
            ca_file.display()
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stop the server now (`pg_ctl stop -m immediate`: open connections are cut,
    /// as when a database host fails).
    pub async fn stop(&mut self) {
        self.pg_ctl_async(&["stop", "-m", "immediate", "-w"]).await;
        self.running = false;
    }

    /// Start it again on the same port.
    pub async fn restart(&mut self) {
        let data = self.data().display().to_string();
        let log = self.dir.path().join("postgres.log").display().to_string();
        let opts = format!("-p {} -k {}", self.port, self.sock().display());
        self.pg_ctl_async(&[
            "start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &opts,
        ])
        .await;
        self.running = true;
    }

    /// The server's log (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn init(&mut self) {
        std::fs::create_dir_all(self.sock()).expect("socket dir");
        if let Some(user) = self.run_as {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(self.dir.path())
                .status()
                .expect("chown the cluster dir");
            assert!(status.success(), "chown {user} the cluster dir");
        }
        let data = self.data().display().to_string();
        let out = self
            .command("initdb")
            .args([
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = "\nlisten_addresses = '127.0.0.1'\nmax_connections = 100\nfsync = off\nshared_buffers = 32MB\n";
        let path = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str(conf);
        std::fs::write(&path, text).expect("write postgresql.conf");
    }

    /// `ssl = on` with the test CA's server certificate, and `hostssl`
    /// only: a plaintext TCP connection is rejected.
    fn require_tls(&mut self, ca: &crate::TestCa) {
        let cert = self.data().join("server.crt");
        let key = self.data().join("server.key");
        std::fs::copy(ca.cert(), &cert).expect("copy server certificate");
        std::fs::copy(ca.key(), &key).expect("copy server key");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("key mode");
        }
        if let Some(user) = self.run_as {
            let status = Command::new("chown")
                .arg(user)
                .arg(&cert)
                .arg(&key)
                .status()
                .expect("chown the certificate");
            assert!(status.success(), "chown {user} the certificate");
        }
        let path = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&path, text).expect("write postgresql.conf");
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n";
        std::fs::write(self.data().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn start_blocking(&mut self) {
        let data = self.data().display().to_string();
        let log = self.dir.path().join("postgres.log").display().to_string();
        let opts = format!("-p {} -k {}", self.port, self.sock().display());
        let out = self
            .command("pg_ctl")
            .args([
                "start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &opts,
            ])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.running = true;
    }

    async fn pg_ctl_async(&self, args: &[&str]) {
        let data = self.data().display().to_string();
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        if !all.iter().any(|a| a == "-D") {
            all.push("-D".into());
            all.push(data);
        }
        let mut cmd = self.command("pg_ctl");
        cmd.args(&all);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("pg_ctl task")
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.current_dir("/")
            .stdin(Stdio::null())
            // pg_ctl's server inherits these: never a test's pipes.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data().display().to_string();
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-D", &data])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn find_bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            Path::new(&bin.join("initdb"))
                .exists()
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// Wait (polling) until `url` accepts connections, up to `timeout`.
pub async fn wait_ready(url: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(conn) = sea_orm::Database::connect(url).await {
            let _ = conn.close().await;
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::ConnectionTrait;

    #[tokio::test]
    async fn a_private_cluster_stops_and_starts_again_on_its_port() {
        let Some(mut pg) = PgCluster::start().await else {
            return;
        };
        let url = pg.admin_url();
        assert!(wait_ready(&url, Duration::from_secs(10)).await);
        pg.stop().await;
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", pg.port()))
                .await
                .is_err(),
            "the port is closed while the server is stopped"
        );
        pg.restart().await;
        let conn = sea_orm::Database::connect(&url).await.expect("reconnect");
        conn.execute_unprepared("SELECT 1").await.expect("query");
    }
}
