//! The staff console end to end, across the real binaries, NATS, a database
//! and the SMTP server:
//!
//! - in a real browser (Debian's `chromium` driven through `chromedriver` by
//!   fantoccini): a teacher's report through the API → the counsellor's alert
//!   email → its link → sign in with the emailed code → the case page →
//!   acknowledge → the ladder stops (no second rung email) → a note holding
//!   `<script>` (shown as text, no alert) → close with an outcome; then the
//!   key population and the archive, and every page as a leader and as a head
//!   teacher (nothing sealed in the HTML); axe-core (pinned, fetched by
//!   `scripts/ensure-axe.sh`) on every page: 0 serious or critical
//!   violations; screenshots at 375 px and 1280 px of every page and role
//!   under `target/console-screenshots/`;
//! - in a browser too: hotline calls logged through the API on the calls
//!   page (newest first, filters), a caller nobody identified linked to a
//!   student from the call's page (its case becomes the student's);
//! - over HTTP: five wrong codes lock a code, a code works once, a POST
//!   without the session's CSRF token changes nothing, a GET of the link
//!   changes nothing, another school's case is "not found" like a missing
//!   one, the answer does not tell whether an account exists, and every
//!   console answer carries the security headers.
//!
//! Without `chromedriver` on PATH the browser test is skipped with a loud
//! message (and fails under `CI=true`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sanyu_e2e::Stack;
use sanyu_e2e::support::{ReceivedMail, TestDb, eventually, free_port};
use sea_orm::EntityTrait;
use serde_json::Value;

pub(crate) const CODE_SUBJECT: &str = "登录验证码";
const NARRATIVE: &str = "CANARY <script>alert(1)</script> 他说最近不想活了";

/// A high-level ladder: the counsellor at once, the crisis team after
/// `after` seconds unless someone acknowledges.
pub(crate) fn settings(base_url: &str, after: u64) -> Vec<(&'static str, String)> {
    vec![
        ("SANYU_CONSOLE__SECURE_COOKIE", "false".to_owned()),
        ("SANYU_HTTP__PUBLIC_BASE_URL", base_url.to_owned()),
        ("SANYU_ESCALATION__HIGH__ACK_WITHIN_SECS", after.to_string()),
        (
            "SANYU_ESCALATION__HIGH__RUNGS",
            format!(r#"[{{after_secs={after}, roles=["crisis_team"]}}]"#),
        ),
        ("SANYU_ESCALATION__HIGH__REPEAT", "1".to_owned()),
        ("SANYU_SCHEDULER__POLL_INTERVAL_MS", "100".to_owned()),
        ("SANYU_SCHEDULER__AUDIT_INTERVAL_SECS", "3600".to_owned()),
    ]
}

async fn stack_with(db: TestDb, after: u64) -> Stack {
    let mut stack = Stack::new(db).await;
    let s = settings(&stack.base_url(), after);
    stack.start_gateway_with(&s).await;
    stack.start_rules(&s);
    stack.start_notifier_with(&s);
    stack.start_scheduler(&s);
    stack
}

pub(crate) fn to(mails: &[ReceivedMail], who: &str) -> Vec<ReceivedMail> {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == who))
        .cloned()
        .collect()
}

/// The code of the `n`-th sign-in email (1-based) to `who`.
pub(crate) async fn nth_code(stack: &Stack, who: &str, n: usize) -> String {
    eventually(Duration::from_secs(30), "a sign-in code email", || async {
        let mails: Vec<ReceivedMail> = to(&stack.smtp.received(), who)
            .into_iter()
            .filter(|m| m.subject().contains(CODE_SUBJECT))
            .collect();
        let mail = mails.get(n - 1)?;
        mail.text()
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 6 && l.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_owned)
    })
    .await
}

pub(crate) async fn open_high_case(stack: &Stack) -> String {
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", NARRATIVE),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    cases[0]["id"].as_str().expect("case id").to_owned()
}

async fn case_status(stack: &Stack, id: &str) -> Value {
    stack
        .get(&stack.school.counsellor, &format!("/v1/cases/{id}"))
        .await
        .json()
        .await
        .expect("case json")
}

// ---------------------------------------------------------------- HTTP client

/// A cookie-keeping HTTP client that does not follow redirects.
pub(crate) struct Agent {
    http: reqwest::Client,
    base: String,
    pub(crate) cookies: HashMap<String, String>,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn location(&self) -> String {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    /// The value of hidden field `name` in the page.
    pub(crate) fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker).map(|i| i + marker.len());
        start
            .and_then(|s| {
                self.body[s..]
                    .find('"')
                    .map(|e| self.body[s..s + e].to_owned())
            })
            .unwrap_or_default()
    }
}

impl Agent {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_owned(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&mut self, r: reqwest::Response) -> Answer {
        for v in r.headers().get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let pair = v.split(';').next().unwrap_or("");
            if let Some((k, val)) = pair.split_once('=') {
                if val.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), val.to_owned());
                }
            }
        }
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap_or_default(),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Answer {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.answer(r).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            )
            .send()
            .await
            .expect("POST");
        self.answer(r).await
    }

    /// Ask for a code for `identifier`; the answer of the POST.
    pub(crate) async fn ask_code(&mut self, identifier: &str, next: &str) -> Answer {
        let form = self.get(&format!("/sign-in?next={next}")).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let pre = form.field("pre");
        self.post(
            "/sign-in",
            &[("identifier", identifier), ("next", next), ("pre", &pre)],
        )
        .await
    }

    pub(crate) async fn type_code(&mut self, code: &str) -> Answer {
        let pre = self.cookies.get("sanyu_pre").cloned().unwrap_or_default();
        self.post("/sign-in/code", &[("code", code), ("pre", &pre)])
            .await
    }
}

pub(crate) fn assert_console_headers(a: &Answer) {
    let h = |n: &str| {
        a.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let csp = h("content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("referrer-policy"), "no-referrer");
    assert_eq!(h("cache-control"), "no-store");
    assert_eq!(h("x-content-type-options"), "nosniff");
}

// ---------------------------------------------------------------- HTTP tests

#[tokio::test(flavor = "multi_thread")]
async fn five_wrong_codes_lock_the_code_and_a_right_code_works_once_on_sqlite() {
    five_wrong_codes_lock_the_code_and_a_right_code_works_once(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn five_wrong_codes_lock_the_code_and_a_right_code_works_once_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        five_wrong_codes_lock_the_code_and_a_right_code_works_once(db).await;
    }
}

async fn five_wrong_codes_lock_the_code_and_a_right_code_works_once(db: TestDb) {
    let stack = stack_with(db, 3600).await;
    let email = stack.school.counsellor_email.clone();
    let mut agent = Agent::new(&stack.base_url());

    let asked = agent.ask_code(&email, "/").await;
    assert_eq!(asked.status, 303);
    assert_eq!(asked.location(), "/sign-in/code");
    let code = nth_code(&stack, &email, 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for i in 1..=4 {
        let a = agent.type_code(wrong).await;
        assert_eq!(a.status, 401, "try {i}");
        assert!(
            a.body.contains(&format!("剩余尝试次数：{}", 5 - i)),
            "try {i}: {}",
            a.body
        );
    }
    let fifth = agent.type_code(wrong).await;
    assert_eq!(fifth.status, 401);
    assert!(fifth.body.contains("此验证码已失效"), "{}", fifth.body);
    // Locked: even the right code is refused now, and no session opened.
    let right_too_late = agent.type_code(&code).await;
    assert_eq!(right_too_late.status, 401);
    assert!(!agent.cookies.contains_key("sanyu_session"));

    // A new code works, once.
    let asked = agent.ask_code(&email, "/").await;
    assert_eq!(asked.status, 303);
    let code = nth_code(&stack, &email, 2).await;
    let challenge = agent.cookies.get("sanyu_challenge").cloned();
    let signed_in = agent.type_code(&code).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location(), "/");
    assert!(agent.cookies.contains_key("sanyu_session"));
    let set = signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sanyu_session="))
        .unwrap_or("")
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    // The same code again (the challenge cookie put back): refused.
    let mut replay = Agent::new(&stack.base_url());
    replay.cookies.insert(
        "sanyu_challenge".into(),
        challenge.expect("challenge cookie"),
    );
    replay.cookies.insert("sanyu_pre".into(), "p".repeat(43));
    let again = replay.type_code(&code).await;
    assert_eq!(again.status, 401);
    assert!(again.body.contains("已经使用过"), "{}", again.body);
    assert!(!replay.cookies.contains_key("sanyu_session"));

    // Sign-in, failures and the lock are in the audit log, without the code.
    let audit = sanyu_store::entities::audit_record::Entity::find()
        .all(&stack.conn)
        .await
        .expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.contains(&"console.sign_in"));
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "console.sign_in_failed")
            .count(),
        7
    );
    assert!(audit.iter().all(|a| !a.target.contains(&code)));
}

#[tokio::test(flavor = "multi_thread")]
async fn console_posts_need_the_sessions_csrf_token_and_a_get_changes_nothing_on_sqlite() {
    console_posts_need_the_sessions_csrf_token_and_a_get_changes_nothing(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn console_posts_need_the_sessions_csrf_token_and_a_get_changes_nothing_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        console_posts_need_the_sessions_csrf_token_and_a_get_changes_nothing(db).await;
    }
}

async fn console_posts_need_the_sessions_csrf_token_and_a_get_changes_nothing(db: TestDb) {
    let stack = stack_with(db, 3600).await;
    let case_id = open_high_case(&stack).await;
    let email = stack.school.counsellor_email.clone();

    // The alert link without a session: sign in first, nothing changes.
    let mut agent = Agent::new(&stack.base_url());
    let link = agent.get(&format!("/cases/{case_id}")).await;
    assert_eq!(link.status, 303);
    assert_eq!(link.location(), format!("/sign-in?next=/cases/{case_id}"));
    assert_console_headers(&link);
    assert_eq!(case_status(&stack, &case_id).await["status"], "open");

    // Nobody and somebody get the same answer.
    let mut stranger = Agent::new(&stack.base_url());
    let nobody = stranger.ask_code("nobody@nowhere.test", "/").await;
    assert_eq!(nobody.status, 303);
    assert_eq!(nobody.location(), "/sign-in/code");
    let nobody_page = stranger.get("/sign-in/code").await;

    let asked = agent.ask_code(&email, &format!("/cases/{case_id}")).await;
    assert_eq!((asked.status, asked.location()), (303, nobody.location()));
    let page = agent.get("/sign-in/code").await;
    assert_eq!(page.status, nobody_page.status);
    assert_eq!(
        page.body.replace(&page.field("pre"), ""),
        nobody_page.body.replace(&nobody_page.field("pre"), "")
    );
    let code = nth_code(&stack, &email, 1).await;
    let signed_in = agent.type_code(&code).await;
    assert_eq!(signed_in.location(), format!("/cases/{case_id}"));

    let case_page = agent.get(&format!("/cases/{case_id}")).await;
    assert_eq!(case_page.status, 200);
    assert_console_headers(&case_page);
    // The narrative is text, never markup.
    assert!(!case_page.body.contains("<script>alert(1)</script>"));
    assert!(case_page.body.contains("&lt;script&gt;"));
    let csrf = case_page.field("csrf");
    assert!(!csrf.is_empty());

    // Without the token, or with another: refused, and the case is still open.
    let path = format!("/cases/{case_id}/acknowledge");
    assert_eq!(agent.post(&path, &[]).await.status, 403);
    assert_eq!(agent.post(&path, &[("csrf", "forged")]).await.status, 403);
    assert_eq!(case_status(&stack, &case_id).await["status"], "open");

    // With it: acknowledged through the API's own acknowledge.
    let done = agent.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 303);
    assert_eq!(
        done.location(),
        format!("/cases/{case_id}?done=acknowledged")
    );
    let case = case_status(&stack, &case_id).await;
    assert_eq!(case["status"], "acknowledged");
    assert_eq!(case["ladder_state"], "stopped");
    // Again: a conflict, in words.
    let again = agent.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("无法确认"), "{}", again.body);

    // Another school's case and a missing one answer the same page.
    let r = stack
        .post_report(
            &stack.other_school.teacher_c1,
            &Stack::report_body("S1", "high", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let other_case = eventually(
        Duration::from_secs(20),
        "the other school's case",
        || async {
            let v: Value = stack
                .get(&stack.other_school.counsellor, "/v1/cases")
                .await
                .json()
                .await
                .ok()?;
            v["cases"][0]["id"].as_str().map(str::to_owned)
        },
    )
    .await;
    let other = agent.get(&format!("/cases/{other_case}")).await;
    let missing = agent.get(&format!("/cases/{}", uuid::Uuid::now_v7())).await;
    assert_eq!((other.status, missing.status), (404, 404));
    assert_eq!(other.body, missing.body);

    // The queue lists my school's case; sign-out ends the session.
    let queue = agent.get("/queue").await;
    assert_eq!(queue.status, 200);
    assert!(queue.body.contains(&case_id));
    assert!(!queue.body.contains(&other_case));
    let csrf = queue.field("csrf");
    assert_eq!(agent.post("/sign-out", &[]).await.status, 403);
    let out = agent.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    let session = agent.cookies.get("sanyu_session").cloned();
    assert!(session.is_none());
    let after = agent.get("/queue").await;
    assert_eq!(after.status, 303);
    assert!(after.location().starts_with("/sign-in"));
}

// ---------------------------------------------------------------- browser

pub(crate) fn screenshot_dir() -> PathBuf {
    // `<target>/tmp` for integration tests: the folder beside it.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("console-screenshots"))
        .unwrap_or_else(|| PathBuf::from("console-screenshots"));
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port, killed on drop.
pub(crate) struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_driver() -> Option<Driver> {
    let (Some(driver), Some(_)) = (
        on_path("chromedriver"),
        on_path("chromium").or_else(|| on_path("chromium-browser")),
    ) else {
        let message = "\n\n!!!!! console browser test SKIPPED: `chromium` and `chromedriver` are not on PATH \
             (Debian: apt-get install chromium chromium-driver fonts-wqy-zenhei) !!!!!\n";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}");
        }
        eprintln!("{message}");
        return None;
    };
    let port = free_port();
    let child = std::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver { child, port };
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), "chromedriver ready", || {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://127.0.0.1:{port}/status"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    Some(d)
}

pub(crate) async fn browser(driver: &Driver) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--lang=zh-CN",
        "--window-size=375,812",
    ];
    if std::env::var_os("SANYU_CONSOLE_BROWSER_HEADFUL").is_some() {
        args.retain(|a| !a.starts_with("--headless"));
    }
    let mut opts = serde_json::json!({
        "args": args,
        // Chinese first, as a school's phone would ask.
        "prefs": { "intl.accept_languages": "zh-CN,zh" },
    });
    if let Some(bin) = on_path("chromium") {
        opts["binary"] = Value::String(bin.display().to_string());
    }
    caps.insert("goog:chromeOptions".into(), opts);
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("connect to chromedriver")
}

/// `axe.min.js` of the pinned axe-core (`scripts/ensure-axe.sh`), or `None`
/// (loudly; a failure under `CI=true`) when it cannot be had.
fn axe_source() -> Option<&'static str> {
    static AXE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("scripts/ensure-axe.sh");
        let found = std::process::Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|path| std::fs::read_to_string(path.trim()).ok());
        if found.is_none() {
            let message = "\n\n!!!!! axe-core unavailable (scripts/ensure-axe.sh failed): \
                 the console's accessibility checks are SKIPPED !!!!!\n";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message}");
            }
            eprintln!("{message}");
        }
        found
    })
    .as_deref()
}

/// axe-core on the current page: no serious or critical violation.
async fn check_accessibility(c: &fantoccini::Client, name: &str) {
    let Some(axe) = axe_source() else { return };
    // WebDriver scripts run outside the page's Content-Security-Policy.
    c.execute(&format!("{axe}\n;return true;"), vec![])
        .await
        .expect("inject axe-core");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document)
               .then(r => done({
                 passes: r.passes.length,
                 minor: r.violations.filter(v => v.impact !== 'serious' && v.impact !== 'critical')
                   .map(v => v.id),
                 serious: r.violations
                   .filter(v => v.impact === 'serious' || v.impact === 'critical')
                   .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')) })) }))
               .catch(e => done({ error: String(e) }));",
            vec![],
        )
        .await
        .expect("run axe-core");
    assert!(found["error"].is_null(), "{name}: axe-core failed: {found}");
    assert!(
        found["passes"].as_u64().is_some_and(|n| n > 0),
        "{name}: axe-core checked nothing: {found}"
    );
    let serious = found["serious"].as_array().expect("axe-core's violations");
    assert!(
        serious.is_empty(),
        "{name}: serious or critical accessibility violations: {found:#}"
    );
    eprintln!(
        "axe-core {name}: {} checks pass, 0 serious or critical; minor or moderate: {}",
        found["passes"], found["minor"]
    );
}

/// The current page checked with axe-core, then screenshots of it at phone
/// and desktop width.
pub(crate) async fn shoot(c: &fantoccini::Client, name: &str) {
    check_accessibility(c, name).await;
    let dir = screenshot_dir();
    for (w, h) in [(375u32, 812u32), (1280, 900)] {
        c.set_window_size(w, h).await.expect("window size");
        let png = c.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}-{w}.png")), png).expect("write screenshot");
    }
    c.set_window_size(375, 812).await.expect("window size");
}

pub(crate) async fn wait_for_path(c: &fantoccini::Client, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.expect("url");
        if url.path().starts_with(prefix) {
            return url.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "never reached {prefix}: at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_query(c: &fantoccini::Client, part: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.expect("url");
        if url.query().is_some_and(|q| q.contains(part)) {
            return;
        }
        assert!(Instant::now() < deadline, "never reached ?{part}: at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_counsellor_signs_in_from_the_alert_email_and_acknowledges_in_a_browser() {
    use fantoccini::Locator;

    let Some(driver) = start_driver().await else {
        return;
    };
    // The crisis team is the next rung, 40 s after the case opens.
    let after = 40;
    let stack = stack_with(TestDb::sqlite(), after).await;
    let opened = Instant::now();
    let case_id = open_high_case(&stack).await;
    let email = stack.school.counsellor_email.clone();
    let crisis = format!("crisis@{}.test", stack.school.code.to_lowercase());

    // The alert email links to the console's case page.
    let alert = eventually(Duration::from_secs(30), "the alert email", || async {
        to(&stack.smtp.received(), &email)
            .into_iter()
            .find(|m| !m.subject().contains(CODE_SUBJECT))
    })
    .await;
    let link = format!("{}/cases/{case_id}", stack.base_url());
    assert!(alert.text().contains(&link), "{}", alert.text());

    let c = browser(&driver).await;
    c.goto(&link).await.expect("open the link");
    wait_for_path(&c, "/sign-in").await;
    shoot(&c, "sign-in").await;
    c.find(Locator::Id("identifier"))
        .await
        .expect("identifier field")
        .send_keys(&email)
        .await
        .expect("type email");
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .expect("send button")
        .click()
        .await
        .expect("send");
    wait_for_path(&c, "/sign-in/code").await;
    let code = nth_code(&stack, &email, 1).await;
    shoot(&c, "code").await;
    c.find(Locator::Id("code"))
        .await
        .expect("code field")
        .send_keys(&code)
        .await
        .expect("type code");
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
    // Landed on the case from the email.
    wait_for_path(&c, &format!("/cases/{case_id}")).await;
    let html = c.source().await.expect("source");
    assert!(!html.contains("<script>alert(1)</script>"));
    // The queue, with the case waiting for an acknowledgement; then back.
    c.goto(&format!("{}/queue", stack.base_url()))
        .await
        .expect("queue");
    wait_for_path(&c, "/queue").await;
    let queue = c
        .find(Locator::Id("queue"))
        .await
        .expect("queue")
        .text()
        .await
        .expect("text");
    assert!(queue.contains("待确认"), "{queue}");
    shoot(&c, "queue").await;
    c.goto(&format!("{}/queue?lang=en", stack.base_url()))
        .await
        .expect("queue en");
    shoot(&c, "queue-en").await;
    c.goto(&format!("{link}?lang=zh"))
        .await
        .expect("case again");
    wait_for_path(&c, &format!("/cases/{case_id}")).await;
    shoot(&c, "case").await;
    // The email's acknowledgement link: a page with a button, nothing done yet.
    let text = alert.text();
    let ack_link = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{}/a/", stack.base_url())))
        .expect("an acknowledgement link in the email")
        .to_owned();
    c.goto(&ack_link)
        .await
        .expect("open the acknowledgement link");
    wait_for_path(&c, "/a/").await;
    shoot(&c, "ack-link").await;
    assert_eq!(case_status(&stack, &case_id).await["status"], "open");
    c.goto(&format!("{link}?lang=zh"))
        .await
        .expect("case again");
    wait_for_path(&c, &format!("/cases/{case_id}")).await;

    c.find(Locator::Css("form.ack button"))
        .await
        .expect("acknowledge button")
        .click()
        .await
        .expect("acknowledge");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.expect("url");
        if url.query().is_some_and(|q| q.contains("done=acknowledged")) {
            break;
        }
        assert!(Instant::now() < deadline, "no acknowledgement: at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = c
        .find(Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text");
    assert!(body.contains("已确认"), "{body}");
    assert!(c.find(Locator::Css("form.ack")).await.is_err());
    shoot(&c, "case-acknowledged").await;

    let case = case_status(&stack, &case_id).await;
    assert_eq!(case["status"], "acknowledged");
    assert_eq!(case["ladder_state"], "stopped");
    // The rung's time passes: the crisis team is never emailed.
    let wait = Duration::from_secs(after + 5).saturating_sub(opened.elapsed());
    tokio::time::sleep(wait).await;
    assert!(
        to(&stack.smtp.received(), &crisis).is_empty(),
        "a second rung was emailed after the acknowledgement"
    );

    // A note through the form: text, never markup, and no alert fires.
    c.goto(&link).await.expect("case");
    wait_for_path(&c, &format!("/cases/{case_id}")).await;
    let note = "BROWSER-NOTE <script>alert(1)</script> 已与学生谈话";
    c.find(Locator::Id("note-text"))
        .await
        .expect("note field")
        .send_keys(note)
        .await
        .expect("type note");
    c.find(Locator::Css("#act-note button[type=submit]"))
        .await
        .expect("save note")
        .click()
        .await
        .expect("save");
    wait_for_query(&c, "done=note").await;
    let html = c.source().await.expect("source");
    assert!(html.contains("BROWSER-NOTE &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("BROWSER-NOTE <script>"));
    let main = c
        .find(Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text");
    assert!(main.contains(note), "the note is shown as text: {main}");
    assert!(
        c.get_alert_text().await.is_err(),
        "an alert fired from the note"
    );
    shoot(&c, "case-note").await;

    // Close with an outcome.
    c.find(Locator::Css("#act-close summary"))
        .await
        .expect("close summary")
        .click()
        .await
        .expect("open close form");
    c.find(Locator::Id("close-summary"))
        .await
        .expect("summary field")
        .send_keys("危机已解除，转入常规关注")
        .await
        .expect("type summary");
    c.find(Locator::Css("#act-close button[type=submit]"))
        .await
        .expect("close button")
        .click()
        .await
        .expect("close");
    wait_for_query(&c, "done=close").await;
    let main = c
        .find(Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text");
    assert!(main.contains("已结案"), "{main}");
    assert!(c.find(Locator::Id("act-reopen")).await.is_ok());
    shoot(&c, "case-closed").await;
    let case = case_status(&stack, &case_id).await;
    assert_eq!(case["status"], "closed");

    // The open queue shows a new case without a reload (htmx polling, ≤ 15 s).
    c.goto(&format!("{}/queue", stack.base_url()))
        .await
        .expect("queue");
    wait_for_path(&c, "/queue").await;
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S2", "high", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(2).await;
    let reference = cases
        .iter()
        .find(|v| v["id"].as_str() != Some(case_id.as_str()))
        .and_then(|v| v["reference"].as_str())
        .expect("the new case's reference")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let shown = c
            .find(Locator::Id("queue"))
            .await
            .expect("queue")
            .text()
            .await
            .unwrap_or_default();
        if shown.contains(&reference) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue never showed the new case without a reload: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shoot(&c, "queue-two").await;

    // The counsellor's key population and the student's archive.
    c.goto(&format!("{}/key-population", stack.base_url()))
        .await
        .expect("key population");
    wait_for_path(&c, "/key-population").await;
    shoot(&c, "key-population").await;
    let student_id = case_status(&stack, &case_id).await["student_id"]
        .as_str()
        .expect("student id")
        .to_owned();
    c.goto(&format!("{}/students/{student_id}", stack.base_url()))
        .await
        .expect("archive");
    wait_for_path(&c, "/students/").await;
    shoot(&c, "archive").await;

    // Every page as a school leader and as the class's head teacher.
    let lc = stack.school.code.to_lowercase();
    dead_letter(&stack, &stack.school.code, "unknown student S9 (roster)").await;
    for (role, email) in [
        ("leader", format!("leader@{lc}.test")),
        ("teacher", format!("t1@{lc}.test")),
        ("crisis", format!("crisis@{lc}.test")),
    ] {
        c.find(Locator::Css("form[action='/sign-out'] button"))
            .await
            .expect("sign-out button")
            .click()
            .await
            .expect("sign out");
        wait_for_path(&c, "/sign-in").await;
        browser_sign_in(&c, &stack, &email).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while c
            .current_url()
            .await
            .expect("url")
            .path()
            .starts_with("/sign-in")
        {
            assert!(Instant::now() < deadline, "{role} never signed in");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut pages = vec![
            ("queue", "/queue".to_owned()),
            ("case", format!("/cases/{case_id}")),
        ];
        if role == "leader" {
            pages.push(("key-population", "/key-population".to_owned()));
            pages.push(("archive", format!("/students/{student_id}")));
        }
        if role == "crisis" {
            pages.push(("dead-letters", "/dead-letters".to_owned()));
        }
        for (page, path) in pages {
            c.goto(&format!("{}{path}", stack.base_url()))
                .await
                .expect("page");
            wait_for_path(&c, path.split('?').next().unwrap_or("/")).await;
            let html = c.source().await.expect("source");
            for sealed in ["CANARY", "BROWSER-NOTE", "危机已解除", "suicidal_ideation"] {
                assert!(
                    role == "crisis" || !html.contains(sealed),
                    "{role} {page} shows {sealed}"
                );
            }
            shoot(&c, &format!("{role}-{page}")).await;
        }
    }
    c.close().await.expect("close the browser");
    eprintln!("console screenshots: {}", screenshot_dir().display());
}

/// Sign in on the sign-in page with the first code emailed to `email`.
pub(crate) async fn browser_sign_in(c: &fantoccini::Client, stack: &Stack, email: &str) {
    use fantoccini::Locator;
    c.find(Locator::Id("identifier"))
        .await
        .expect("identifier field")
        .send_keys(email)
        .await
        .expect("type email");
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .expect("send button")
        .click()
        .await
        .expect("send");
    wait_for_path(c, "/sign-in/code").await;
    let code = nth_code(stack, email, 1).await;
    c.find(Locator::Id("code"))
        .await
        .expect("code field")
        .send_keys(&code)
        .await
        .expect("type code");
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
}

pub(crate) async fn signed_in_agent(stack: &Stack, email: &str, nth: usize) -> Agent {
    let mut agent = Agent::new(&stack.base_url());
    let asked = agent.ask_code(email, "/").await;
    assert_eq!(asked.status, 303);
    let code = nth_code(stack, email, nth).await;
    let r = agent.type_code(&code).await;
    assert_eq!(r.status, 303, "{}", r.body);
    agent
}

#[tokio::test(flavor = "multi_thread")]
async fn head_teachers_and_leaders_see_the_overview_and_sessions_end_when_idle_or_the_role_changes()
{
    use sanyu_store::entities::{audit_record, console_session};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter};

    let stack = stack_with(TestDb::sqlite(), 3600).await;
    let case_id = open_high_case(&stack).await;
    let lc = stack.school.code.to_lowercase();
    let path = format!("/cases/{case_id}");

    // The class's head teacher: the overview, with the student's name; no
    // narrative, no acknowledge.
    let mut teacher = signed_in_agent(&stack, &format!("t1@{lc}.test"), 1).await;
    let page = teacher.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Student One"));
    assert!(!page.body.contains("CANARY"));
    assert!(!page.body.contains("report.high"));
    assert!(!page.body.contains("class=\"ack\""));
    // Another class's head teacher: not found.
    let mut other_teacher = signed_in_agent(&stack, &format!("t2@{lc}.test"), 1).await;
    assert_eq!(other_teacher.get(&path).await.status, 404);

    // A leader: the overview without names.
    let mut leader = signed_in_agent(&stack, &format!("leader@{lc}.test"), 1).await;
    let page = leader.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("Student One"));
    assert!(!page.body.contains("CANARY"));
    assert!(!page.body.contains("class=\"ack\""));

    // Idle for longer than the idle timeout: the session ends, audited.
    let sessions = console_session::Entity::find()
        .filter(console_session::Column::EndedAt.is_null())
        .all(&stack.conn)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 3);
    let teachers_session = {
        let t1 = sanyu_store::console::find_staff(&stack.conn, &format!("t1@{lc}.test"))
            .await
            .expect("find")
            .expect("t1");
        sessions
            .iter()
            .find(|s| s.staff_id == t1.id)
            .expect("t1's session")
            .clone()
    };
    let mut idle: console_session::ActiveModel = teachers_session.clone().into();
    idle.last_seen_at = Set(chrono::Utc::now() - chrono::Duration::minutes(31));
    idle.update(&stack.conn).await.expect("age the session");
    let after = teacher.get("/queue").await;
    assert_eq!(after.status, 303);
    assert!(after.location().starts_with("/sign-in"));
    let ended = console_session::Entity::find_by_id(teachers_session.id)
        .one(&stack.conn)
        .await
        .expect("session")
        .expect("row");
    assert_eq!(ended.end_reason.as_deref(), Some("idle"));
    let expired = audit_record::Entity::find()
        .filter(audit_record::Column::Action.eq("console.session_expired"))
        .all(&stack.conn)
        .await
        .expect("audit");
    assert_eq!(expired.len(), 1);

    // The leader's role is taken away through the roster API: their
    // sessions end at once.
    let csv = format!(
        "school_code,staff_no,name,role,class_code,phone,email\n\
         {code},L1,Leader One,teacher,C2,13900000005,leader@{lc}.test\n",
        code = stack.school.code
    );
    let r = stack
        .post_csv(&stack.school.admin, "/v1/roster/staff", &csv)
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let open: Vec<_> = console_session::Entity::find()
        .filter(console_session::Column::EndedAt.is_null())
        .all(&stack.conn)
        .await
        .expect("sessions");
    assert_eq!(
        open.len(),
        1,
        "only the second head teacher's session is left"
    );
    let gone = leader.get(&path).await;
    assert_eq!(gone.status, 303);
}

/// A dead letter of the school `code`, as the recorder writes one.
async fn dead_letter(stack: &Stack, code: &str, reason: &str) -> uuid::Uuid {
    use sanyu_store::entities::{dead_letter, school};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter};
    let school = school::Entity::find()
        .filter(school::Column::Code.eq(code))
        .one(&stack.conn)
        .await
        .expect("school")
        .expect("the school");
    let id = uuid::Uuid::now_v7();
    dead_letter::ActiveModel {
        id: Set(id),
        source_key: Set(format!("test:{id}")),
        stream: Set("SANYU_REPORTS".into()),
        consumer: Set("rules".into()),
        stream_seq: Set(Some(1)),
        subject: Set(None),
        event_id: Set(Some(format!("report:{id}"))),
        reason: Set(reason.to_owned()),
        deliveries: Set(Some(5)),
        received_at: Set(chrono::Utc::now()),
        resolved_at: Set(None),
        school_id: Set(Some(school.id)),
    }
    .insert(&stack.conn)
    .await
    .expect("insert a dead letter");
    id
}

/// The values of the options of the select `name` in a page.
fn options(body: &str, name: &str) -> Vec<String> {
    let Some(start) = body.find(&format!("name=\"{name}\"")) else {
        return Vec::new();
    };
    let end = body[start..]
        .find("</select>")
        .map_or(body.len(), |e| start + e);
    body[start..end]
        .split("<option value=\"")
        .skip(1)
        .filter_map(|o| o.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_case_work_action_is_a_form_on_the_case_page_on_sqlite() {
    every_case_work_action_is_a_form_on_the_case_page(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_case_work_action_is_a_form_on_the_case_page_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        every_case_work_action_is_a_form_on_the_case_page(db).await;
    }
}

async fn every_case_work_action_is_a_form_on_the_case_page(db: TestDb) {
    let stack = stack_with(db, 3600).await;
    let case_id = open_high_case(&stack).await;
    let lc = stack.school.code.to_lowercase();
    let page_path = format!("/cases/{case_id}");
    let act = |a: &str| format!("/cases/{case_id}/do/{a}");
    let mut agent = signed_in_agent(&stack, &stack.school.counsellor_email.clone(), 1).await;

    // An open case offers acknowledge, and no work on the record yet.
    let page = agent.get(&page_path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.field("csrf");
    assert!(page.body.contains("class=\"ack\""));
    for form in ["/do/note", "/do/close", "/do/reopen", "/do/link_student"] {
        assert!(!page.body.contains(form), "{form} offered on an open case");
    }
    // Posted anyway: refused in words, nothing written. The counsellor has
    // not taken the case (403); the crisis team may work it, but not before
    // someone acknowledged it (409).
    let refused = agent
        .post(&act("note"), &[("csrf", &csrf), ("text", "x")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("您的角色不能"), "{}", refused.body);
    let mut crisis = signed_in_agent(&stack, &format!("crisis@{lc}.test"), 1).await;
    let crisis_csrf = crisis.get(&page_path).await.field("csrf");
    let refused = crisis
        .post(&act("note"), &[("csrf", &crisis_csrf), ("text", "x")])
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("请先确认接手"), "{}", refused.body);
    // Without the session's token: refused before anything is looked at.
    let forged = agent.post(&act("note"), &[("text", "x")]).await;
    assert_eq!(forged.status, 403);
    let unknown = agent.post(&act("explode"), &[("csrf", &csrf)]).await;
    assert_eq!(unknown.status, 404);

    let done = agent
        .post(&format!("{page_path}/acknowledge"), &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 303);
    let page = agent.get(&page_path).await;
    for form in [
        "/do/note",
        "/do/guardian_contact",
        "/do/no_contact",
        "/do/referral",
        "/do/follow_up",
        "/do/level",
        "/do/close",
    ] {
        assert!(
            page.body.contains(form),
            "{form} not offered: {}",
            page.body
        );
    }
    assert!(!page.body.contains("/do/reopen"));
    assert!(!page.body.contains("/do/link_student"));

    // Every action through its form, POST-redirect-GET.
    let ok = |a: &Answer, action: &str| {
        assert_eq!(a.status, 303, "{action}: {}", a.body);
        assert_eq!(a.location(), format!("/cases/{case_id}?done={action}"));
    };
    let empty = agent
        .post(&act("note"), &[("csrf", &csrf), ("text", "  ")])
        .await;
    assert_eq!(empty.status, 422);
    assert!(empty.body.contains("填写有误"), "{}", empty.body);
    assert!(empty.body.contains("请检查：记录内容"), "{}", empty.body);
    let note = "CANARY-NOTE <script>alert(1)</script> 谈话记录";
    ok(
        &agent
            .post(&act("note"), &[("csrf", &csrf), ("text", note)])
            .await,
        "note",
    );
    let guardian = options(&page.body, "guardian_id");
    assert!(!guardian.is_empty(), "the student's guardians are offered");
    ok(
        &agent
            .post(
                &act("guardian_contact"),
                &[
                    ("csrf", &csrf),
                    ("guardian_id", &guardian[0]),
                    ("channel", "phone"),
                    ("outcome", "reached"),
                ],
            )
            .await,
        "guardian_contact",
    );
    ok(
        &agent
            .post(
                &act("no_contact"),
                &[("csrf", &csrf), ("reason", "risk from home")],
            )
            .await,
        "no_contact",
    );
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    ok(
        &agent
            .post(
                &act("referral"),
                &[
                    ("csrf", &csrf),
                    ("institution", "市精神卫生中心"),
                    ("referred_on", &yesterday),
                ],
            )
            .await,
        "referral",
    );
    let page = agent.get(&format!("{page_path}?done=referral")).await;
    assert!(page.body.contains("转介已记录"), "{}", page.body);
    let referral_id = page.field("referral_id");
    ok(
        &agent
            .post(
                &act("referral_update"),
                &[
                    ("csrf", &csrf),
                    ("referral_id", &referral_id),
                    ("institution", "市精神卫生中心"),
                    ("referred_on", &yesterday),
                    ("receipt_confirmed", "1"),
                    ("assessed_on", &yesterday),
                    ("result", "fit_to_return"),
                ],
            )
            .await,
        "referral_update",
    );
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%dT09:00")
        .to_string();
    ok(
        &agent
            .post(&act("follow_up"), &[("csrf", &csrf), ("due_at", &tomorrow)])
            .await,
        "follow_up",
    );
    let page = agent.get(&page_path).await;
    let follow_up_id = page.field("follow_up_id");
    assert!(!follow_up_id.is_empty(), "{}", page.body);
    ok(
        &agent
            .post(
                &act("follow_up_done"),
                &[
                    ("csrf", &csrf),
                    ("follow_up_id", &follow_up_id),
                    ("outcome", "stable"),
                ],
            )
            .await,
        "follow_up_done",
    );
    ok(
        &agent
            .post(
                &act("level"),
                &[("csrf", &csrf), ("level", "elevated"), ("reason", "calmer")],
            )
            .await,
        "level",
    );
    // Another follow-up, left open: the key population lists it, and the
    // student's archive holds the whole history.
    ok(
        &agent
            .post(&act("follow_up"), &[("csrf", &csrf), ("due_at", &tomorrow)])
            .await,
        "follow_up",
    );
    let student_id = case_status(&stack, &case_id).await["student_id"]
        .as_str()
        .expect("student id")
        .to_owned();
    let kp = agent.get("/key-population").await;
    assert_eq!(kp.status, 200, "{}", kp.body);
    assert!(kp.body.contains("Student One"), "{}", kp.body);
    assert!(
        kp.body
            .contains(&format!("/cases/{case_id}/do/follow_up_done"))
    );
    let archive = agent.get(&format!("/students/{student_id}")).await;
    assert_eq!(archive.status, 200, "{}", archive.body);
    assert!(archive.body.contains("Student One"));
    assert!(archive.body.contains("CANARY-NOTE &lt;script&gt;"));
    assert!(!archive.body.contains("<script>alert"));
    let page = agent.get(&page_path).await;
    assert!(page.body.contains(&format!("/students/{student_id}")));
    // The note is text, never markup.
    assert!(
        page.body.contains("CANARY-NOTE &lt;script&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("CANARY-NOTE <script>"));

    // A crisis-team member may assign; the counsellor may not choose others.
    assert!(!page.body.contains("id=\"assign-staff\""));
    let crisis_page = crisis.get(&page_path).await;
    let staff = options(&crisis_page.body, "staff_id");
    assert!(!staff.is_empty(), "{}", crisis_page.body);
    ok(
        &crisis
            .post(
                &act("assign"),
                &[("csrf", &crisis_csrf), ("staff_id", &staff[0])],
            )
            .await,
        "assign",
    );

    // The head teacher sees the overview: no forms, no note, no narrative.
    let mut teacher = signed_in_agent(&stack, &format!("t1@{lc}.test"), 1).await;
    let overview = teacher.get(&page_path).await;
    assert_eq!(overview.status, 200);
    assert!(!overview.body.contains("/do/"));
    assert!(!overview.body.contains("CANARY"));
    let teacher_csrf = overview.field("csrf");
    let refused = teacher
        .post(&act("note"), &[("csrf", &teacher_csrf), ("text", "x")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Head teacher and leader, on every page they can open: nothing sealed
    // (narrative, note, reasons, referral, assessment), no screening or rule
    // detail; another school's case is the page of a missing one.
    let r = stack
        .post_report(
            &stack.other_school.teacher_c1,
            &Stack::report_body("S1", "high", "OTHER-SCHOOL"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let other_case = eventually(
        Duration::from_secs(20),
        "the other school's case",
        || async {
            let v: Value = stack
                .get(&stack.other_school.counsellor, "/v1/cases")
                .await
                .json()
                .await
                .ok()?;
            v["cases"][0]["id"].as_str().map(str::to_owned)
        },
    )
    .await;
    let mut leader = signed_in_agent(&stack, &format!("leader@{lc}.test"), 1).await;
    let sealed = [
        "CANARY",
        "谈话记录",
        "risk from home",
        "市精神卫生中心",
        "fit_to_return",
        "calmer",
        "report.high",
        "suicidal_ideation",
        "OTHER-SCHOOL",
    ];
    for (who, agent) in [("head teacher", &mut teacher), ("leader", &mut leader)] {
        for path in ["/queue", "/queue?show=all", page_path.as_str()] {
            let page = agent.get(path).await;
            assert_eq!(page.status, 200, "{who} {path}: {}", page.body);
            for word in sealed {
                assert!(!page.body.contains(word), "{who} {path} shows {word}");
            }
            assert!(!page.body.contains("/do/"), "{who} {path} offers case work");
        }
        let other = agent.get(&format!("/cases/{other_case}")).await;
        let missing = agent.get(&format!("/cases/{}", uuid::Uuid::now_v7())).await;
        assert_eq!((other.status, missing.status), (404, 404), "{who}");
        assert_eq!(other.body, missing.body, "{who}");
    }
    // The leader: the key population and the archive as counts and states,
    // without names; the head teacher: neither (the API answers 403).
    for path in ["/key-population", &format!("/students/{student_id}")] {
        let page = leader.get(path).await;
        assert_eq!(page.status, 200, "leader {path}: {}", page.body);
        for word in sealed.iter().chain(&["Student One"]) {
            assert!(!page.body.contains(word), "leader {path} shows {word}");
        }
        assert!(!page.body.contains("/do/") && !page.body.contains("/done\""));
        assert_eq!(teacher.get(path).await.status, 403, "head teacher {path}");
    }
    // Another school's student is the page of a missing one.
    let other_student: Value = stack
        .get(
            &stack.other_school.counsellor,
            &format!("/v1/cases/{other_case}"),
        )
        .await
        .json()
        .await
        .expect("other case");
    let other_student = other_student["student_id"].as_str().expect("student id");
    let other = leader.get(&format!("/students/{other_student}")).await;
    let missing = leader
        .get(&format!("/students/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!((other.status, missing.status), (404, 404));
    assert_eq!(other.body, missing.body);

    // "Done" from the key population, back to the list.
    let kp = agent.get("/key-population").await;
    let follow_up_id = kp.field("follow_up_id");
    let done = agent
        .post(
            &act("follow_up_done"),
            &[
                ("csrf", &csrf),
                ("follow_up_id", &follow_up_id),
                ("outcome", "seen"),
                ("back", "key-population"),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/key-population?done=follow_up_done");
    let kp = agent.get("/key-population?done=follow_up_done").await;
    assert!(!kp.body.contains(&follow_up_id), "{}", kp.body);

    // Close with an outcome (by the crisis team: the case is theirs now or
    // the counsellor's, the crisis team works any), then reopen.
    ok(
        &crisis
            .post(
                &act("close"),
                &[
                    ("csrf", &crisis_csrf),
                    ("outcome", "resolved"),
                    ("summary", "stable"),
                ],
            )
            .await,
        "close",
    );
    let closed = crisis.get(&page_path).await;
    assert!(closed.body.contains("/do/reopen"));
    assert!(!closed.body.contains("/do/note"));
    let again = crisis
        .post(
            &act("close"),
            &[("csrf", &crisis_csrf), ("outcome", "resolved")],
        )
        .await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("无法操作"), "{}", again.body);
    ok(
        &crisis
            .post(
                &act("reopen"),
                &[("csrf", &crisis_csrf), ("reason", "again")],
            )
            .await,
        "reopen",
    );
    // The dead-letter review list, with resolve: the crisis team's school's
    // letters only; another school's is not found; a counsellor is refused.
    let mine = dead_letter(&stack, &stack.school.code, "DL-MINE unknown student S9").await;
    let theirs = dead_letter(&stack, &stack.other_school.code, "DL-THEIRS").await;
    let list = crisis.get("/dead-letters").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("DL-MINE") && !list.body.contains("DL-THEIRS"));
    assert_eq!(agent.get("/dead-letters").await.status, 403);
    let resolve = |id: uuid::Uuid| format!("/dead-letters/{id}/resolve");
    assert_eq!(crisis.post(&resolve(mine), &[]).await.status, 403);
    let other = crisis
        .post(&resolve(theirs), &[("csrf", &crisis_csrf)])
        .await;
    assert_eq!(other.status, 404);
    let done = crisis.post(&resolve(mine), &[("csrf", &crisis_csrf)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/dead-letters?done=resolved");
    let list = crisis.get("/dead-letters?done=resolved").await;
    assert!(!list.body.contains("DL-MINE"), "{}", list.body);

    let case = case_status(&stack, &case_id).await;
    assert_eq!(case["status"], "open");
    let actions: Vec<&str> = case["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    for a in [
        "acknowledge",
        "note",
        "guardian_contact",
        "referral",
        "referral_update",
        "follow_up",
        "follow_up_done",
        "level",
        "assign",
        "close",
        "reopen",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unidentified_callers_case_is_linked_to_a_student_from_the_case_page() {
    let stack = stack_with(TestDb::sqlite(), 3600).await;
    let call = serde_json::json!({
        "call_id": "CALL-CONSOLE",
        "started_at": chrono::Utc::now().to_rfc3339(),
        "caller_type": "anonymous",
        "rating": "critical",
        "summary": "confidential summary",
        "counsellor": "duty counsellor",
    });
    let r = stack
        .post_json(&stack.school.service, "/v1/hotline-calls", &call)
        .await;
    assert_eq!(r.status(), 202);
    let case_id = eventually(Duration::from_secs(30), "the caller's case", || async {
        let v: Value = stack
            .get(&stack.school.crisis_team, "/v1/cases")
            .await
            .json()
            .await
            .ok()?;
        v["cases"]
            .as_array()?
            .iter()
            .find(|c| c["subject"] == "unidentified_caller")
            .and_then(|c| c["id"].as_str().map(str::to_owned))
    })
    .await;
    let lc = stack.school.code.to_lowercase();
    let mut crisis = signed_in_agent(&stack, &format!("crisis@{lc}.test"), 1).await;
    let path = format!("/cases/{case_id}");
    let page = crisis.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("/do/link_student"), "{}", page.body);
    let csrf = page.field("csrf");
    let link = format!("{path}/do/link_student");

    // A student number nobody has: refused in words, nothing changes.
    let unknown = crisis
        .post(&link, &[("csrf", &csrf), ("student_no", "S404")])
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert!(unknown.body.contains("没有找到"), "{}", unknown.body);
    let empty = crisis
        .post(&link, &[("csrf", &csrf), ("student_no", " ")])
        .await;
    assert_eq!(empty.status, 422);

    let done = crisis
        .post(&link, &[("csrf", &csrf), ("student_no", "S2")])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), format!("{path}?done=link_student"));
    let page = crisis.get(&format!("{path}?done=link_student")).await;
    assert!(page.body.contains("已关联学生"), "{}", page.body);
    assert!(!page.body.contains("/do/link_student"));
    let case = case_status(&stack, &case_id).await;
    assert_eq!(case["subject"], "student", "{case}");

    // The watch list of the key population: overdue first, "done" as a form.
    let later = watch(&stack, &stack.school.code, "S1", "rule.later", 3).await;
    let overdue = watch(&stack, &stack.school.code, "S2", "rule.overdue", -2).await;
    let theirs = watch(&stack, &stack.other_school.code, "S1", "rule.theirs", -1).await;
    let kp = crisis.get("/key-population").await;
    assert_eq!(kp.status, 200, "{}", kp.body);
    let (a, b) = (
        kp.body.find("rule.overdue").expect("the overdue entry"),
        kp.body.find("rule.later").expect("the later entry"),
    );
    assert!(a < b, "overdue first");
    assert!(!kp.body.contains("rule.theirs"));
    let done = |id: uuid::Uuid| format!("/key-population/watch/{id}/done");
    assert_eq!(crisis.post(&done(overdue), &[]).await.status, 403);
    assert_eq!(
        crisis.post(&done(theirs), &[("csrf", &csrf)]).await.status,
        404
    );
    let r = crisis.post(&done(overdue), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/key-population?done=watch");
    let kp = crisis.get("/key-population?done=watch").await;
    assert!(kp.body.contains("已记录跟进"), "{}", kp.body);
    assert!(!kp.body.contains("rule.overdue") && kp.body.contains("rule.later"));
    assert!(kp.body.contains(&later.to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn hotline_calls_logged_through_the_api_are_listed_and_a_caller_is_linked_in_a_browser() {
    use fantoccini::Locator;

    let Some(driver) = start_driver().await else {
        return;
    };
    let stack = stack_with(TestDb::sqlite(), 3600).await;
    // Through the API, as the school's hotline system: a named student's
    // call, and a critical caller nobody identified (who gets a case).
    let mut ids = Vec::new();
    for (call_id, student_no, rating, minutes_ago) in [
        ("CALL-NAMED", Some("S1"), "high", 30),
        ("CALL-ANON", None, "critical", 2),
    ] {
        let call = serde_json::json!({
            "call_id": call_id,
            "started_at": (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339(),
            "caller_type": if student_no.is_some() { "student" } else { "anonymous" },
            "student_no": student_no,
            "rating": rating,
            "summary": format!("CALL-SUMMARY {call_id} <script>alert(1)</script>"),
            "counsellor": "duty counsellor",
        });
        let r = stack
            .post_json(&stack.school.service, "/v1/hotline-calls", &call)
            .await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.expect("accepted");
        ids.push(v["id"].as_str().expect("id").to_owned());
    }
    let (named, anon) = (ids[0].clone(), ids[1].clone());
    let case_id = eventually(Duration::from_secs(30), "the caller's case", || async {
        let v: Value = stack
            .get(
                &stack.school.crisis_team,
                &format!("/v1/hotline-calls/{anon}"),
            )
            .await
            .json()
            .await
            .ok()?;
        v["case_id"].as_str().map(str::to_owned)
    })
    .await;
    let listed: Value = stack
        .get(&stack.school.crisis_team, "/v1/hotline-calls")
        .await
        .json()
        .await
        .expect("the list");
    let reference = |id: &str| {
        listed["calls"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["id"] == id))
            .and_then(|c| c["reference"].as_str())
            .expect("listed")
            .to_owned()
    };

    // The crisis team opens the calls page (signing in on the way).
    let base = stack.base_url();
    let c = browser(&driver).await;
    c.goto(&format!("{base}/hotline-calls"))
        .await
        .expect("calls");
    wait_for_path(&c, "/sign-in").await;
    let lc = stack.school.code.to_lowercase();
    browser_sign_in(&c, &stack, &format!("crisis@{lc}.test")).await;
    wait_for_path(&c, "/hotline-calls").await;
    let shown = c
        .find(Locator::Id("calls"))
        .await
        .expect("the list")
        .text()
        .await
        .expect("text");
    let (a, b) = (
        shown.find(&reference(&anon)).expect("the caller's call"),
        shown.find(&reference(&named)).expect("the named call"),
    );
    assert!(a < b, "newest first: {shown}");
    assert!(
        shown.contains("身份未识别") && shown.contains("查看个案"),
        "{shown}"
    );
    assert!(!shown.contains("CALL-SUMMARY"), "the list opens no summary");
    c.find(Locator::Css(&format!("#calls a[href='/cases/{case_id}']")))
        .await
        .expect("a link to the caller's case");
    shoot(&c, "calls").await;
    c.goto(&format!("{base}/hotline-calls?unidentified=true&lang=en"))
        .await
        .expect("filtered");
    let shown = c
        .find(Locator::Id("calls"))
        .await
        .expect("the list")
        .text()
        .await
        .expect("text");
    assert!(shown.contains(&reference(&anon)) && !shown.contains(&reference(&named)));
    shoot(&c, "calls-unidentified-en").await;

    // The caller's call: its record (text, never markup), and the link form.
    c.goto(&format!("{base}/hotline-calls?lang=zh"))
        .await
        .expect("calls");
    c.find(Locator::Css(&format!(
        "#calls a[href='/hotline-calls/{anon}']"
    )))
    .await
    .expect("the call's link")
    .click()
    .await
    .expect("open the call");
    wait_for_path(&c, &format!("/hotline-calls/{anon}")).await;
    let html = c.source().await.expect("source");
    assert!(
        html.contains("CALL-SUMMARY CALL-ANON &lt;script&gt;"),
        "{html}"
    );
    assert!(c.get_alert_text().await.is_err(), "an alert fired");
    shoot(&c, "call").await;
    c.find(Locator::Id("link-no"))
        .await
        .expect("student number field")
        .send_keys("S2")
        .await
        .expect("type");
    c.find(Locator::Css("#form-link button[type=submit]"))
        .await
        .expect("link button")
        .click()
        .await
        .expect("link");
    wait_for_query(&c, "done=link").await;
    let main = c
        .find(Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text");
    assert!(main.contains("已关联学生"), "{main}");
    assert!(c.find(Locator::Id("form-link")).await.is_err());
    shoot(&c, "call-linked").await;
    let call: Value = stack
        .get(
            &stack.school.crisis_team,
            &format!("/v1/hotline-calls/{anon}"),
        )
        .await
        .json()
        .await
        .expect("call");
    assert!(call["student_id"].is_string(), "{call}");
    let case = case_status(&stack, &case_id).await;
    assert_eq!(case["subject"], "student", "{case}");
    assert_eq!(case["student_no"], "S2", "{case}");
    c.close().await.expect("close the browser");
    eprintln!("console screenshots: {}", screenshot_dir().display());
}

/// A watch-list entry for student `no` of school `code`, due in `days`.
async fn watch(stack: &Stack, code: &str, no: &str, rule: &str, days: i64) -> uuid::Uuid {
    use sanyu_store::entities::{school, student, watch_entry};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter};
    let school = school::Entity::find()
        .filter(school::Column::Code.eq(code))
        .one(&stack.conn)
        .await
        .expect("school")
        .expect("the school");
    let s = student::Entity::find()
        .filter(student::Column::SchoolId.eq(school.id))
        .filter(student::Column::StudentNo.eq(no))
        .one(&stack.conn)
        .await
        .expect("student")
        .expect("the student");
    let id = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    watch_entry::ActiveModel {
        id: Set(id),
        student_id: Set(s.id),
        school_id: Set(school.id),
        class_id: Set(s.class_id),
        since: Set(now - chrono::Duration::days(7)),
        follow_up_on: Set((now + chrono::Duration::days(days)).date_naive()),
        signal_id: Set(format!("signal:{id}")),
        rule_id: Set(rule.to_owned()),
        rules_version: Set("test".into()),
        done_at: Set(None),
        done_by: Set(None),
    }
    .insert(&stack.conn)
    .await
    .expect("insert a watch entry");
    id
}
