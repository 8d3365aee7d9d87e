//! In-process route tests: the gateway's router on a real database (SQLite or
//! PostgreSQL, a fresh one per test), called with `tower::ServiceExt::oneshot`
//! — no gateway binary, no HTTP socket. The state is the one the gateway
//! serves with (`AppState::new`), connected to a real NATS server of the test
//! (nothing is published: no relay runs, so the outbox keeps what a request
//! wrote). Cases are opened the way production opens them: a report through
//! the router, then the rules engine (in-process) decides the intake rows the
//! report wrote to the outbox.
//!
//! ```ignore
//! let app = App::start(TestDb::sqlite()).await;
//! let case = app.open_case(Sch::A, "S1", "high").await;
//! let r = app.as_(Who::Counsellor, Sch::A)
//!     .post(&format!("/v1/cases/{case}/acknowledge"), json!({}))
//!     .await;
//! assert_eq!(r.status, 200);
//! ```

pub mod console;
pub mod stack;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use sanyu_gateway::AppState;
use sanyu_platform::Config;
use sanyu_platform::config::Secret;
use sanyu_platform::runner::{self, Readiness};
use sanyu_rules::{Rules, RulesEngine};
use sanyu_store::Db;
use sanyu_store::entities::{case, outbox, staff, student};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use sanyu_test_support::fixtures::{add_students, seed_school};
use sanyu_test_support::{NatsServer, School, TestDb};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use uuid::Uuid;

/// One of the two seeded schools: `A` (`SCH1`) is the caller's own, `B`
/// (`SCH2`) the other one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sch {
    A,
    B,
}

impl Sch {
    pub fn code(self) -> &'static str {
        match self {
            Sch::A => "SCH1",
            Sch::B => "SCH2",
        }
    }
}

/// Who calls: a role of a school (class-bound roles of class `C1`, or of
/// `C2` for "another class"), a deployment-level admin, no token, a token
/// nobody issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    /// No `Authorization` header.
    Nobody,
    /// A well-formed `sy_…` token nobody issued.
    BadToken,
    /// Head teacher (班主任) of class C1.
    Teacher,
    /// Head teacher of class C2 ("another class").
    TeacherOtherClass,
    /// 心理委员 of class C1.
    Monitor,
    /// Counsellor K1 (the one cases get assigned to in these tests).
    Counsellor,
    /// Counsellor K2 (not assigned).
    OtherCounsellor,
    CrisisTeam,
    Leader,
    District,
    Admin,
    /// A school's machine identity (importers, the hotline system).
    Service,
    /// A deployment-level admin (no school).
    Deployment,
}

impl Who {
    pub const ALL: [Who; 13] = [
        Who::Nobody,
        Who::BadToken,
        Who::Teacher,
        Who::TeacherOtherClass,
        Who::Monitor,
        Who::Counsellor,
        Who::OtherCounsellor,
        Who::CrisisTeam,
        Who::Leader,
        Who::District,
        Who::Admin,
        Who::Service,
        Who::Deployment,
    ];
}

/// An answer of the router.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The router on a real database, two seeded schools and their tokens.
pub struct App {
    pub router: Router,
    pub db: Db,
    pub a: School,
    pub b: School,
    /// A deployment-level admin's token.
    pub deployment: String,
    pub backend: sanyu_test_support::db::Backend,
    engine: RulesEngine,
    /// The last outbox row the rules engine decided.
    decided: std::sync::atomic::AtomicI64,
    stop: CancellationToken,
    _nats: NatsServer,
    _spool: tempfile::TempDir,
    _test_db: TestDb,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The settings the in-process gateway runs with (those `tests/lib.rs` gives
/// the binaries, where they matter to the routes).
pub fn test_config(db_url: &str, nats_url: &str, spool: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.database.url = Secret::new(db_url);
    config.nats.url = nats_url.to_owned();
    config.security.data_key = Secret::new(sanyu_store::crypto::Sealer::generate_key());
    config.http.body_limit_bytes = 16384;
    config.http.public_base_url = "https://sanyu.test".to_owned();
    config.screening.spool_dir = spool.display().to_string();
    config
}

impl App {
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// As [`App::start`], with some settings changed first.
    pub async fn start_with(db: TestDb, configure: impl FnOnce(&mut Config)) -> Self {
        let nats = NatsServer::start_with(false).await;
        let spool = tempfile::Builder::new()
            .prefix("sanyu-spool-")
            .tempdir()
            .expect("spool dir");
        // Migrated and seeded through a connection of its own.
        let seed = db.connect().await;
        let a = seed_school(&seed, Sch::A.code()).await;
        let b = seed_school(&seed, Sch::B.code()).await;
        let deployment = sanyu_store::tokens::issue_deployment(
            &seed,
            Some("test".into()),
            chrono::Duration::days(1),
        )
        .await
        .expect("deployment token")
        .secret;
        seed.close().await.ok();

        let mut config = test_config(db.url(), &nats.url(), spool.path());
        configure(&mut config);
        let readiness = Readiness::new();
        let stop = CancellationToken::new();
        let (conn, backbone) = runner::connect(&config, "sanyu-gateway-test", &readiness, &stop)
            .await
            .expect("no configuration error")
            .expect("database and NATS");
        let sealer = config.sealer().expect("sealer");
        let audit_key =
            sanyu_store::audit::AuditKey::from_data_key(config.security.data_key.expose())
                .expect("audit key");
        let state = AppState::new(
            &config,
            conn.clone(),
            backbone,
            sealer,
            audit_key,
            readiness,
            std::sync::Arc::new(
                sanyu_gateway::console::session::Settings::from_config(&config)
                    .expect("console settings"),
            ),
        );
        let router = sanyu_gateway::router(state.clone());
        let engine = RulesEngine::new(
            conn.clone(),
            state.waker.clone(),
            config.escalation.clone(),
            Arc::new(Rules::builtin()),
        );
        Self {
            router,
            db: conn,
            a,
            b,
            deployment,
            backend: db.backend,
            engine,
            decided: std::sync::atomic::AtomicI64::new(0),
            stop,
            _nats: nats,
            _spool: spool,
            _test_db: db,
        }
    }

    /// The database's URL (e.g. to read a SQLite file as bytes).
    pub fn db_url(&self) -> String {
        self._test_db.url().to_owned()
    }

    pub fn school(&self, sch: Sch) -> &School {
        match sch {
            Sch::A => &self.a,
            Sch::B => &self.b,
        }
    }

    /// The token `who` presents (school `sch`'s, for school roles).
    pub fn token(&self, who: Who, sch: Sch) -> Option<String> {
        let s = self.school(sch);
        Some(match who {
            Who::Nobody => return None,
            Who::BadToken => format!("sy_{}", "0".repeat(64)),
            Who::Teacher => s.teacher_c1.clone(),
            Who::TeacherOtherClass => s.teacher_c2.clone(),
            Who::Monitor => s.monitor_c1.clone(),
            Who::Counsellor => s.counsellor.clone(),
            Who::OtherCounsellor => s.counsellor2.clone(),
            Who::CrisisTeam => s.crisis_team.clone(),
            Who::Leader => s.leader.clone(),
            Who::District => s.district.clone(),
            Who::Admin => s.admin.clone(),
            Who::Service => s.service.clone(),
            Who::Deployment => self.deployment.clone(),
        })
    }

    /// A client calling as `who` of school `sch`.
    pub fn as_(&self, who: Who, sch: Sch) -> Client<'_> {
        Client {
            app: self,
            token: self.token(who, sch),
        }
    }

    /// A client presenting `token` (or none).
    pub fn with_token(&self, token: Option<&str>) -> Client<'_> {
        Client {
            app: self,
            token: token.map(str::to_owned),
        }
    }

    /// Send one request through the router.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let mut request = request;
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("response body")
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn student_id(&self, sch: Sch, no: &str) -> Uuid {
        let school = sanyu_store::roster::school_by_code(&self.db, sch.code())
            .await
            .expect("school")
            .expect("seeded school");
        sanyu_store::roster::student_by_no(&self.db, school.id, no)
            .await
            .expect("student")
            .unwrap_or_else(|| panic!("no student {no} at {}", sch.code()))
            .id
    }

    pub async fn student(&self, sch: Sch, no: &str) -> student::Model {
        let id = self.student_id(sch, no).await;
        student::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .expect("student")
            .expect("student row")
    }

    pub async fn staff_id(&self, sch: Sch, staff_no: &str) -> Uuid {
        let school = sanyu_store::roster::school_by_code(&self.db, sch.code())
            .await
            .expect("school")
            .expect("seeded school");
        staff::Entity::find()
            .filter(staff::Column::SchoolId.eq(school.id))
            .filter(staff::Column::StaffNo.eq(staff_no))
            .one(&self.db)
            .await
            .expect("staff")
            .unwrap_or_else(|| panic!("no staff {staff_no}"))
            .id
    }

    /// Let the rules engine decide every intake message in the outbox (what
    /// the relay would publish and the engine consume), in order. Deciding
    /// a message twice has no second effect.
    pub async fn decide_intake(&self) {
        use std::sync::atomic::Ordering;
        let after = self.decided.load(Ordering::SeqCst);
        let rows = outbox::Entity::find()
            .filter(outbox::Column::Subject.starts_with("sanyu.intake."))
            .filter(outbox::Column::Id.gt(after))
            .order_by_asc(outbox::Column::Id)
            .all(&self.db)
            .await
            .expect("outbox");
        for row in rows {
            self.engine
                .decide_each(&row.payload)
                .await
                .unwrap_or_else(|e| panic!("rules engine on {}: {e}", row.event_id));
            self.decided.fetch_max(row.id, Ordering::SeqCst);
        }
    }

    /// Open a case about student `no` of `sch` the way production does: a
    /// crisis team member's report, decided by the rules engine. Its id.
    pub async fn open_case(&self, sch: Sch, no: &str, level: &str) -> Uuid {
        self.open_case_reported_by(Who::CrisisTeam, sch, no, level)
            .await
    }

    /// As [`App::open_case`], reported by `who` of `sch`.
    pub async fn open_case_reported_by(&self, who: Who, sch: Sch, no: &str, level: &str) -> Uuid {
        let r = self
            .as_(who, sch)
            .post("/v1/reports", report_body(no, level))
            .await;
        assert_eq!(r.status(), 202, "report on {no}: {}", r.text());
        self.decide_intake().await;
        self.open_case_of(sch, no)
            .await
            .unwrap_or_else(|| panic!("no case opened for {no}"))
    }

    /// The open case of student `no`, if any.
    pub async fn open_case_of(&self, sch: Sch, no: &str) -> Option<Uuid> {
        let student = self.student_id(sch, no).await;
        case::Entity::find()
            .filter(case::Column::StudentId.eq(student))
            .filter(case::Column::Status.ne(sanyu_domain::CaseStatus::Closed))
            .one(&self.db)
            .await
            .expect("cases")
            .map(|c| c.id)
    }

    /// Students `B00000`… of class C1 at `sch`, for a test that opens many
    /// cases (one open case per student).
    pub async fn add_numbered_students(&self, sch: Sch, n: usize) {
        add_students(&self.db, sch.code(), n).await;
    }

    /// Import students (a roster CSV) as the operator would.
    pub async fn add_students(&self, sch: Sch, csv: &str) {
        let txn = sanyu_store::begin_write(&self.db).await.expect("begin");
        let summary = sanyu_store::roster::import_students(
            &*txn,
            csv.as_bytes(),
            sanyu_store::roster::ImportScope::Operator,
        )
        .await
        .expect("import students");
        assert!(
            summary.errors.is_empty(),
            "{} {:?}",
            sch.code(),
            summary.errors
        );
        txn.commit().await.expect("commit");
    }
}

/// A warning report's body.
pub fn report_body(student_no: &str, level: &str) -> Value {
    json!({
        "student_no": student_no,
        "category": "suicidal_ideation",
        "level": level,
        "observed_at": chrono::Utc::now().to_rfc3339(),
        "narrative": "seen crying at lunch",
    })
}

/// Requests of one caller.
pub struct Client<'a> {
    app: &'a App,
    token: Option<String>,
}

impl Client<'_> {
    fn request(&self, method: Method, path: &str) -> axum::http::request::Builder {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder
    }

    pub async fn get(&self, path: &str) -> Answer {
        let request = self
            .request(Method::GET, path)
            .body(Body::empty())
            .expect("request");
        self.app.send(request).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.post_bytes(path, "application/json", body.to_string().into_bytes())
            .await
    }

    pub async fn post_bytes(&self, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let request = self
            .request(Method::POST, path)
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        self.app.send(request).await
    }

    /// A CSV upload.
    pub async fn post_csv(&self, path: &str, csv: &str) -> Answer {
        self.post_bytes(path, "text/csv", csv.as_bytes().to_vec())
            .await
    }

    /// A request with extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut builder = self.request(method, path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(Body::from(body)).expect("request");
        self.app.send(request).await
    }
}

/// A `multipart/form-data` body: text fields and one file.
pub fn multipart(fields: &[(&str, &str)], file_name: &str, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "sanyu-test-boundary-7f3a9c";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
