//! What enters the API is checked before anything is written: control
//! characters and implausible values answer 422 with the field (never a 500
//! from PostgreSQL, never a half-written import), and every error the API
//! gives, also for a bad path, a bad query, an unknown route or method and a
//! body of the wrong kind, has the documented JSON body.

use sanyu_e2e::Stack;
use sanyu_e2e::support::TestDb;
use sanyu_store::entities::{hotline_call, student};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("answer {status} is not JSON: {text:?}"));
    (status, body)
}

/// Assert a 422 naming `field`.
async fn refused(r: reqwest::Response, field: &str) {
    let (status, body) = answer(r).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
}

/// A case about S1, acknowledged by the counsellor (so record work may follow).
async fn acknowledged_case(stack: &Stack) -> String {
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "seen crying"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    let id = cases[0]["id"].as_str().expect("case id").to_owned();
    let r = stack
        .act(&stack.school.counsellor, &id, "acknowledge", json!({}))
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
    let stack = Stack::started(db).await;
    let s = &stack.school;
    let case = acknowledged_case(&stack).await;

    let mut report = Stack::report_body("S1", "high", "x");
    report["student_no"] = json!("S\u{0}1");
    refused(
        stack.post_report(&s.teacher_c1, &report).await,
        "student_no",
    )
    .await;
    // Free text keeps its line breaks, not a NUL.
    let report = Stack::report_body("S1", "high", "line one\nline\u{0}two");
    refused(stack.post_report(&s.teacher_c1, &report).await, "narrative").await;

    let path = "/v1/hotline-calls";
    let call = hotline_call("C\u{0}1", "Hotline One");
    refused(stack.post_json(&s.service, path, &call).await, "call_id").await;
    let call = hotline_call("C-1", "Hotline\u{0}One");
    refused(stack.post_json(&s.service, path, &call).await, "counsellor").await;

    let referral =
        json!({"institution": "City\u{0}Hospital", "referred_on": chrono::Utc::now().date_naive()});
    refused(
        stack.act(&s.counsellor, &case, "referrals", referral).await,
        "institution",
    )
    .await;
    refused(
        stack
            .act(
                &s.counsellor,
                &case,
                "notes",
                json!({"text": "a\u{1b}[2Jb"}),
            )
            .await,
        "text",
    )
    .await;

    // In a query string.
    refused(
        stack.get(&s.counsellor, "/v1/cases?status=op%00en").await,
        "status",
    )
    .await;

    // The roster: the row with a NUL in a name is reported, the other imports.
    let csv = "school_code,grade_code,class_code,student_no,student_name\n\
               SCH1,G1,C1,S7,Student\u{0}Seven\n\
               SCH1,G1,C1,S8,Student Eight\n";
    let r = stack.post_csv(&s.admin, "/v1/roster/students", csv).await;
    let (status, summary) = answer(r).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["created"], 1, "{summary}");
    assert_eq!(summary["errors"][0]["line"], 2, "{summary}");
    assert_eq!(summary["errors"][0]["field"], "student_name", "{summary}");
    let names = student::Entity::find()
        .filter(student::Column::StudentNo.is_in(["S7", "S8"]))
        .count(&stack.conn)
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
    let r = stack
        .post_csv(&s.service, "/v1/hotline-calls/import", &csv)
        .await;
    let (status, summary) = answer(r).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["rows"], 3, "{summary}");
    assert_eq!(summary["created"], 2, "{summary}");
    assert_eq!(summary["errors"][0]["line"], 3, "{summary}");
    assert_eq!(summary["errors"][0]["field"], "counsellor", "{summary}");
    let stored: Vec<String> = hotline_call::Entity::find()
        .all(&stack.conn)
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
    let stack = Stack::started(db).await;
    let s = &stack.school;
    let case = acknowledged_case(&stack).await;

    let mut report = Stack::report_body("S1", "high", "x");
    report["observed_at"] = json!("0001-01-01T00:00:00Z");
    refused(
        stack.post_report(&s.teacher_c1, &report).await,
        "observed_at",
    )
    .await;

    for due in ["0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"] {
        refused(
            stack
                .act(&s.counsellor, &case, "follow-ups", json!({"due_at": due}))
                .await,
            "due_at",
        )
        .await;
    }
    let referral = json!({"institution": "City Hospital", "referred_on": "9999-12-31"});
    refused(
        stack.act(&s.counsellor, &case, "referrals", referral).await,
        "referred_on",
    )
    .await;
    let mut call = hotline_call("C-9", "Hotline One");
    call["started_at"] = json!("0001-01-01T00:00:00Z");
    refused(
        stack
            .post_json(&s.service, "/v1/hotline-calls", &call)
            .await,
        "started_at",
    )
    .await;
    // A plausible follow-up still plans.
    let due = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let r = stack
        .act(&s.counsellor, &case, "follow-ups", json!({"due_at": due}))
        .await;
    assert_eq!(r.status(), 200);

    // A 300 KB student name.
    let csv = format!(
        "school_code,grade_code,class_code,student_no,student_name\nSCH1,G1,C1,S9,{}\n",
        "名".repeat(100_000)
    );
    let r = stack.post_csv(&s.admin, "/v1/roster/students", &csv).await;
    let (status, summary) = answer(r).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["created"], 0, "{summary}");
    assert_eq!(summary["errors"][0]["field"], "student_name", "{summary}");
    // A long free-text field is bounded too.
    let r = stack
        .act(
            &s.counsellor,
            &case,
            "close",
            json!({"outcome": "x".repeat(65)}),
        )
        .await;
    refused(r, "outcome").await;
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
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    let s = &stack.school;
    let not_found = |(status, body): (u16, Value)| {
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    };

    // A path id that does not parse names nothing.
    let post = |token: &str, path: &str| {
        stack
            .http
            .post(format!("{}{path}", stack.base_url()))
            .bearer_auth(token)
            .send()
    };
    not_found(
        answer(
            post(&s.crisis_team, "/v1/dead-letters/x/resolve")
                .await
                .expect("send"),
        )
        .await,
    );
    not_found(
        answer(
            post(&s.counsellor, "/v1/key-population/watch/x/done")
                .await
                .expect("send"),
        )
        .await,
    );
    not_found(answer(stack.get(&s.counsellor, "/v1/screening-imports/x").await).await);
    // A path segment that is not UTF-8.
    not_found(answer(stack.get(&s.counsellor, "/v1/cases/%FF").await).await);
    not_found(
        answer(
            post(&s.service, "/v1/sms/receipts/webhook/%FF")
                .await
                .expect("send"),
        )
        .await,
    );

    // Query values that do not parse, or are given twice.
    for (query, field) in [
        ("/v1/cases?limit=-1", "limit"),
        ("/v1/cases?limit=1e9", "limit"),
        ("/v1/cases?limit=0", "limit"),
        ("/v1/cases?overdue=maybe", "overdue"),
        ("/v1/cases?level=high&level=critical", "level"),
        ("/v1/key-population?limit=5000", "limit"),
    ] {
        refused(stack.get(&s.counsellor, query).await, field).await;
    }

    // A body that is not multipart where a file is expected.
    let r = stack
        .post_json(
            &s.counsellor,
            "/v1/screening-imports",
            &json!({"file": "x"}),
        )
        .await;
    let (status, body) = answer(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );

    // Unknown routes and methods.
    not_found(answer(stack.get(&s.counsellor, "/v1/nothing-here").await).await);
    not_found(answer(stack.get(&s.counsellor, "/nothing").await).await);
    let r = stack
        .http
        .delete(format!("{}/v1/cases", stack.base_url()))
        .bearer_auth(&s.counsellor)
        .send()
        .await
        .expect("send");
    assert!(r.headers().contains_key("allow"));
    let (status, body) = answer(r).await;
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
        stack
            .post_csv(&s.service, "/v1/hotline-calls/import", &big)
            .await,
    )
    .await;
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
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    let get = |path: &str| stack.http.get(format!("{}{path}", stack.base_url())).send();
    let r = get("/docs/").await.expect("docs");
    assert_eq!(r.status(), 200);
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = r.text().await.expect("page");
    assert!(page.contains("swagger-ui"), "{page}");
    // Everything the page loads comes from here.
    for needle in ["http://", "https://", "//cdn", "unpkg", "jsdelivr"] {
        assert!(!page.contains(needle), "the page refers to {needle}");
    }
    let init = get("/docs/swagger-initializer.js")
        .await
        .expect("initializer")
        .text()
        .await
        .expect("js");
    assert!(init.contains("/openapi.json"), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
    for asset in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"] {
        assert_eq!(get(asset).await.expect("asset").status(), 200, "{asset}");
    }
    let r = get("/docs").await.expect("redirect");
    assert!(r.status().is_success(), "{}", r.status());
}
