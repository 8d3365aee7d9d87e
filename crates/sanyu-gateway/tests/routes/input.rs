//! What enters the API is checked before anything is written: control
//! characters and implausible values answer 422 with the field (never a 500
//! from PostgreSQL, never a half-written import), and every error the API
//! gives, also for a bad path, a bad query, an unknown route or method and a
//! body of the wrong kind, has the documented JSON body.
//!
//! In-process (moved from the end-to-end `tests/input.rs`, same assertions):
//! the router on a real database, no binaries.
use crate::support::{Answer, App, Sch, Who, report_body};
use axum::http::Method;
use sanyu_store::entities::{hotline_call, student};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use sanyu_test_support::TestDb;
use serde_json::{Value, json};

fn answer(r: Answer) -> (u16, Value) {
    let status = r.status();
    let text = r.text();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("answer {status} is not JSON: {text:?}"));
    (status, body)
}

/// Assert a 422 naming `field`.
fn refused(r: Answer, field: &str) {
    let (status, body) = answer(r);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
}

/// A case about S1, acknowledged by the counsellor (so record work may follow).
async fn acknowledged_case(app: &App) -> String {
    let id = app
        .open_case_reported_by(Who::Teacher, Sch::A, "S1", "high")
        .await
        .to_string();
    let r = app
        .as_(Who::Counsellor, Sch::A)
        .post(&format!("/v1/cases/{id}/acknowledge"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    id
}

fn hotline_call(call_id: &str, counsellor: &str) -> Value {
    json!({
        "call_id": call_id,
        "started_at": chrono::Utc::now().to_rfc3339(),
        "caller_type": "student",
        "student_no": "S1",
        "rating": "watch",
        "counsellor": counsellor,
    })
}

async fn control_characters_are_refused_with_422_and_the_field_wherever_text_enters(db: TestDb) {
    let app = App::start(db).await;
    let teacher = app.as_(Who::Teacher, Sch::A);
    let counsellor = app.as_(Who::Counsellor, Sch::A);
    let service = app.as_(Who::Service, Sch::A);
    let case = acknowledged_case(&app).await;
    let act = |action: &str| format!("/v1/cases/{case}/{action}");

    let mut report = report_body("S1", "high");
    report["student_no"] = json!("S\u{0}1");
    refused(teacher.post("/v1/reports", report).await, "student_no");
    // Free text keeps its line breaks, not a NUL.
    let mut report = report_body("S1", "high");
    report["narrative"] = json!("line one\nline\u{0}two");
    refused(teacher.post("/v1/reports", report).await, "narrative");

    let path = "/v1/hotline-calls";
    let call = hotline_call("C\u{0}1", "Hotline One");
    refused(service.post(path, call).await, "call_id");
    let call = hotline_call("C-1", "Hotline\u{0}One");
    refused(service.post(path, call).await, "counsellor");

    let referral =
        json!({"institution": "City\u{0}Hospital", "referred_on": chrono::Utc::now().date_naive()});
    refused(
        counsellor.post(&act("referrals"), referral).await,
        "institution",
    );
    refused(
        counsellor
            .post(&act("notes"), json!({"text": "a\u{1b}[2Jb"}))
            .await,
        "text",
    );

    // In a query string.
    refused(counsellor.get("/v1/cases?status=op%00en").await, "status");

    // The roster: the row with a NUL in a name is reported, the other imports.
    let csv = "school_code,grade_code,class_code,student_no,student_name\n\
               SCH1,G1,C1,S7,Student\u{0}Seven\n\
               SCH1,G1,C1,S8,Student Eight\n";
    let r = app
        .as_(Who::Admin, Sch::A)
        .post_csv("/v1/roster/students", csv)
        .await;
    let (status, summary) = answer(r);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["created"], 1, "{summary}");
    assert_eq!(summary["errors"][0]["line"], 2, "{summary}");
    assert_eq!(summary["errors"][0]["field"], "student_name", "{summary}");
    let names = student::Entity::find()
        .filter(student::Column::StudentNo.is_in(["S7", "S8"]))
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(names, 1);

    // A hotline export: every row's fate is in the answer, and the bad row
    // is never written (it was: row 1 stored, then a 500).
    let now = chrono::Utc::now().to_rfc3339();
    let csv = format!(
        "call_id,started_at,caller_type,student_no,rating,counsellor\n\
         H-1,{now},student,S1,watch,Hotline One\n\
         H-2,{now},student,S2,watch,Hotline\u{0}Two\n\
         H-3,{now},anonymous,,watch,Hotline Three\n"
    );
    let r = service.post_csv("/v1/hotline-calls/import", &csv).await;
    let (status, summary) = answer(r);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["rows"], 3, "{summary}");
    assert_eq!(summary["created"], 2, "{summary}");
    assert_eq!(summary["errors"][0]["line"], 3, "{summary}");
    assert_eq!(summary["errors"][0]["field"], "counsellor", "{summary}");
    let stored: Vec<String> = hotline_call::Entity::find()
        .all(&app.db)
        .await
        .expect("calls")
        .into_iter()
        .map(|c| c.call_id)
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(!stored.contains(&"H-2".to_owned()), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_are_refused_with_422_and_the_field_wherever_text_enters_on_sqlite() {
    control_characters_are_refused_with_422_and_the_field_wherever_text_enters(TestDb::sqlite())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_are_refused_with_422_and_the_field_wherever_text_enters_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        control_characters_are_refused_with_422_and_the_field_wherever_text_enters(db).await;
    }
}

async fn implausible_dates_and_lengths_are_refused_with_422_and_the_field(db: TestDb) {
    let app = App::start(db).await;
    let teacher = app.as_(Who::Teacher, Sch::A);
    let counsellor = app.as_(Who::Counsellor, Sch::A);
    let case = acknowledged_case(&app).await;
    let act = |action: &str| format!("/v1/cases/{case}/{action}");

    let mut report = report_body("S1", "high");
    report["observed_at"] = json!("0001-01-01T00:00:00Z");
    refused(teacher.post("/v1/reports", report).await, "observed_at");

    for due in ["0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"] {
        refused(
            counsellor
                .post(&act("follow-ups"), json!({"due_at": due}))
                .await,
            "due_at",
        );
    }
    let referral = json!({"institution": "City Hospital", "referred_on": "9999-12-31"});
    refused(
        counsellor.post(&act("referrals"), referral).await,
        "referred_on",
    );
    let mut call = hotline_call("C-9", "Hotline One");
    call["started_at"] = json!("0001-01-01T00:00:00Z");
    refused(
        app.as_(Who::Service, Sch::A)
            .post("/v1/hotline-calls", call)
            .await,
        "started_at",
    );
    // A plausible follow-up still plans.
    let due = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let r = counsellor
        .post(&act("follow-ups"), json!({"due_at": due}))
        .await;
    assert_eq!(r.status(), 200);

    // A 300 KB student name.
    let csv = format!(
        "school_code,grade_code,class_code,student_no,student_name\nSCH1,G1,C1,S9,{}\n",
        "名".repeat(100_000)
    );
    let r = app
        .as_(Who::Admin, Sch::A)
        .post_csv("/v1/roster/students", &csv)
        .await;
    let (status, summary) = answer(r);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["created"], 0, "{summary}");
    assert_eq!(summary["errors"][0]["field"], "student_name", "{summary}");
    // A long free-text field is bounded too.
    let r = counsellor
        .post(&act("close"), json!({"outcome": "x".repeat(65)}))
        .await;
    refused(r, "outcome");
}

#[tokio::test(flavor = "multi_thread")]
async fn implausible_dates_and_lengths_are_refused_with_422_and_the_field_on_sqlite() {
    implausible_dates_and_lengths_are_refused_with_422_and_the_field(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn implausible_dates_and_lengths_are_refused_with_422_and_the_field_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        implausible_dates_and_lengths_are_refused_with_422_and_the_field(db).await;
    }
}

async fn every_error_answer_has_the_documented_json_body(db: TestDb) {
    let app = App::start(db).await;
    let not_found = |(status, body): (u16, Value)| {
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    };
    let counsellor = app.as_(Who::Counsellor, Sch::A);

    // A path id that does not parse names nothing (a POST without a body).
    let app = &app;
    let post = |who: Who, path: &'static str| async move {
        app.as_(who, Sch::A)
            .send(Method::POST, path, &[], Vec::new())
            .await
    };
    not_found(answer(
        post(Who::CrisisTeam, "/v1/dead-letters/x/resolve").await,
    ));
    not_found(answer(
        post(Who::Counsellor, "/v1/key-population/watch/x/done").await,
    ));
    not_found(answer(counsellor.get("/v1/screening-imports/x").await));
    // A path segment that is not UTF-8.
    not_found(answer(counsellor.get("/v1/cases/%FF").await));
    not_found(answer(
        post(Who::Service, "/v1/sms/receipts/webhook/%FF").await,
    ));

    // Query values that do not parse, or are given twice.
    for (query, field) in [
        ("/v1/cases?limit=-1", "limit"),
        ("/v1/cases?limit=1e9", "limit"),
        ("/v1/cases?limit=0", "limit"),
        ("/v1/cases?overdue=maybe", "overdue"),
        ("/v1/cases?level=high&level=critical", "level"),
        ("/v1/key-population?limit=5000", "limit"),
    ] {
        refused(counsellor.get(query).await, field);
    }

    // A body that is not multipart where a file is expected.
    let r = counsellor
        .post("/v1/screening-imports", json!({"file": "x"}))
        .await;
    let (status, body) = answer(r);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );

    // Unknown routes and methods.
    not_found(answer(counsellor.get("/v1/nothing-here").await));
    not_found(answer(counsellor.get("/nothing").await));
    let r = counsellor
        .send(Method::DELETE, "/v1/cases", &[], Vec::new())
        .await;
    assert!(r.headers.contains_key("allow"));
    let (status, body) = answer(r);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );

    // A CSV import's 413 names its own limit (16 MiB), not the JSON one.
    let big = format!(
        "call_id,started_at,caller_type\n{}",
        "x".repeat(16 * 1024 * 1024 + 1)
    );
    let (status, body) = answer(
        app.as_(Who::Service, Sch::A)
            .post_csv("/v1/hotline-calls/import", &big)
            .await,
    );
    assert_eq!(status, 413, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("16777216"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_answer_has_the_documented_json_body_on_sqlite() {
    every_error_answer_has_the_documented_json_body(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_answer_has_the_documented_json_body_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        every_error_answer_has_the_documented_json_body(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_reference_is_served_at_docs_with_nothing_from_elsewhere() {
    let app = App::start(TestDb::sqlite()).await;
    let anyone = app.as_(Who::Nobody, Sch::A);
    let r = anyone.get("/docs/").await;
    assert_eq!(r.status(), 200);
    let csp = r
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = r.text();
    assert!(page.contains("swagger-ui"), "{page}");
    // Everything the page loads comes from here.
    for needle in ["http://", "https://", "//cdn", "unpkg", "jsdelivr"] {
        assert!(!page.contains(needle), "the page refers to {needle}");
    }
    let init = anyone.get("/docs/swagger-initializer.js").await.text();
    assert!(init.contains("/openapi.json"), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
    for asset in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"] {
        assert_eq!(anyone.get(asset).await.status(), 200, "{asset}");
    }
    // `/docs` leads to the page (an HTTP client follows the redirect).
    let mut r = anyone.get("/docs").await;
    if r.status.is_redirection() {
        let location = r
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("a redirect's location")
            .to_owned();
        r = anyone.get(&location).await;
    }
    assert!(r.status.is_success(), "{}", r.status());
}
