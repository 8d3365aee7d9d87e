//! The harness for end-to-end tests: real NATS, a real SMTP server, a fresh
//! database, two seeded schools, and the real service binaries.

use std::path::PathBuf;
use std::time::Duration;

use sanyu_store::Db;
use sanyu_test_support::{
    NatsServer, School, ServiceProcess, SmtpServer, TestDb, eventually, free_port,
};
use serde_json::{Value, json};

pub use sanyu_test_support as support;

/// One running Sanyu: servers, database, schools and services.
pub struct Stack {
    pub nats: NatsServer,
    pub smtp: SmtpServer,
    pub db: TestDb,
    pub conn: Db,
    pub school: School,
    pub other_school: School,
    pub data_key: String,
    pub http_port: u16,
    pub gateway: Option<ServiceProcess>,
    pub rules: Option<ServiceProcess>,
    pub notifier: Option<ServiceProcess>,
    pub scheduler: Option<ServiceProcess>,
    pub http: reqwest::Client,
    /// Settings every service gets in place of (or beside) the defaults
    /// below, e.g. the URL list of a NATS cluster.
    pub env_extra: Vec<(String, String)>,
    /// Where the services' binaries come from when not the workspace's
    /// (an earlier release's, in tests/e2e/upgrade.rs).
    pub bin_dir: Option<PathBuf>,
}

impl Stack {
    /// Servers and data, no services yet.
    pub async fn new(db: TestDb) -> Self {
        Self::with_nats(db, NatsServer::start().await).await
    }

    /// As [`Self::new`], on a given NATS server (e.g. one that requires TLS).
    pub async fn with_nats(db: TestDb, nats: NatsServer) -> Self {
        let conn = db.connect().await;
        Self::seeded(db, conn, nats, sanyu_store::crypto::Sealer::generate_key()).await
    }

    /// Servers and data on a database whose schema something else made (an
    /// earlier release's `sanyu migrate`, with `data_key`): not migrated here.
    pub async fn on_schema_as_is(db: TestDb, data_key: String) -> Self {
        let conn = sanyu_store::db::connect(&sanyu_store::DbConfig::new(db.url().to_owned()))
            .await
            .expect("connect to test database");
        Self::seeded(db, conn, NatsServer::start().await, data_key).await
    }

    async fn seeded(db: TestDb, conn: Db, nats: NatsServer, data_key: String) -> Self {
        let smtp = SmtpServer::start();
        let school = sanyu_test_support::seed_school(&conn, "SCH1").await;
        let other_school = sanyu_test_support::seed_school(&conn, "SCH2").await;
        Self {
            nats,
            smtp,
            db,
            conn,
            school,
            other_school,
            data_key,
            http_port: free_port(),
            gateway: None,
            rules: None,
            notifier: None,
            scheduler: None,
            http: reqwest::Client::new(),
            env_extra: Vec::new(),
            bin_dir: None,
        }
    }

    /// Every service running.
    pub async fn started(db: TestDb) -> Self {
        let mut stack = Self::new(db).await;
        stack.start_gateway().await;
        stack.start_rules(&[]);
        stack.start_notifier();
        stack.start_scheduler(&[]);
        stack
    }

    /// Start the scheduler (durable timers, ladder auditor) with some settings replaced.
    pub fn start_scheduler(&mut self, overrides: &[(&str, String)]) {
        self.scheduler = Some(self.spawn("sanyu-scheduler", &self.env_with(overrides)));
    }

    /// Start service binary `name` from [`Self::bin_dir`] or the workspace.
    pub fn spawn(&self, name: &str, env: &[(String, String)]) -> ServiceProcess {
        ServiceProcess::spawn_from(self.bin_dir.as_deref(), name, env)
    }

    /// The environment every service gets.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("SANYU_DATABASE__URL", self.db.url().to_owned()),
            ("SANYU_NATS__URL", self.nats.url()),
            ("SANYU_NATS__ACK_WAIT_SECS", "2".to_owned()),
            ("SANYU_NATS__MAX_DELIVER", "4".to_owned()),
            ("SANYU_NATS__BACKOFF_SECS", "[1, 1, 1]".to_owned()),
            ("SANYU_SMTP__URL", self.smtp.url()),
            ("SANYU_SMTP__FROM", "Sanyu <sanyu@test.local>".to_owned()),
            ("SANYU_SECURITY__DATA_KEY", self.data_key.clone()),
            (
                "SANYU_HTTP__LISTEN",
                format!("127.0.0.1:{}", self.http_port),
            ),
            ("SANYU_HTTP__BODY_LIMIT_BYTES", "16384".to_owned()),
            (
                "SANYU_HTTP__PUBLIC_BASE_URL",
                "https://sanyu.test".to_owned(),
            ),
            ("SANYU_TELEMETRY__LOG_FILTER", "info".to_owned()),
            ("RUST_BACKTRACE", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(self.nats.ca_file().map(|ca| {
            (
                "SANYU_NATS__TLS_CA_FILE".to_owned(),
                ca.display().to_string(),
            )
        }))
        .collect();
        // Each notice on its own, at once: the flows here assert single
        // notices; `digest.rs` turns digests on. (The previous release, in
        // `upgrade.rs`, has no digests and refuses the setting it does not know.)
        if self.bin_dir.is_none() {
            env.push((
                "SANYU_NOTIFY__DIGEST_WINDOW_SECS".to_owned(),
                "0".to_owned(),
            ));
        }
        for (key, value) in &self.env_extra {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        env
    }

    /// The environment with some settings added or replaced.
    pub fn env_with(&self, overrides: &[(&str, String)]) -> Vec<(String, String)> {
        let mut env = self.env();
        for (key, value) in overrides {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), value.clone()));
        }
        env
    }

    pub async fn start_gateway(&mut self) {
        self.start_gateway_with(&[]).await;
    }

    /// Start the gateway with some settings replaced, and wait until it is ready.
    pub async fn start_gateway_with(&mut self, overrides: &[(&str, String)]) {
        self.gateway = Some(self.spawn("sanyu-gateway", &self.env_with(overrides)));
        let url = format!("{}/readyz", self.base_url());
        let http = self.http.clone();
        eventually(Duration::from_secs(20), "gateway ready", || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    /// Start the rules engine with some settings replaced (e.g. fault injection).
    pub fn start_rules(&mut self, overrides: &[(&str, String)]) {
        self.rules = Some(self.spawn("sanyu-rules", &self.env_with(overrides)));
    }

    pub fn start_notifier(&mut self) {
        self.start_notifier_with(&[]);
    }

    /// Start the notifier with some settings replaced (e.g. an SMTP server that is down).
    pub fn start_notifier_with(&mut self, overrides: &[(&str, String)]) {
        self.notifier = Some(self.spawn("sanyu-notifier", &self.env_with(overrides)));
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn report_body(student_no: &str, level: &str, narrative: &str) -> Value {
        json!({
            "student_no": student_no,
            "category": "suicidal_ideation",
            "level": level,
            "observed_at": chrono::Utc::now().to_rfc3339(),
            "narrative": narrative,
        })
    }

    pub async fn post_report(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/reports", self.base_url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST /v1/reports")
    }

    /// `POST /v1/cases/{case}/{action}` with a JSON body.
    pub async fn act(
        &self,
        token: &str,
        case: &str,
        action: &str,
        body: Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/cases/{case}/{action}", self.base_url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("POST case action")
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// Wait for the school's case list (as its counsellor) to have `n` cases.
    pub async fn wait_for_cases(&self, n: usize) -> Vec<Value> {
        eventually(Duration::from_secs(20), &format!("{n} case(s)"), || async {
            let r = self.get(&self.school.counsellor, "/v1/cases").await;
            let v: Value = r.json().await.ok()?;
            let cases = v["cases"].as_array()?.clone();
            (cases.len() >= n).then_some(cases)
        })
        .await
    }

    /// `POST {path}` with a JSON body.
    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base_url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// `POST {path}` with a CSV body.
    pub async fn post_csv(&self, token: &str, path: &str, csv: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base_url()))
            .bearer_auth(token)
            .header("content-type", "text/csv")
            .body(csv.to_owned())
            .send()
            .await
            .expect("POST csv")
    }
}
