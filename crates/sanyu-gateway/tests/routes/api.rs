//! The gateway's contract: authentication, role and scope on every route, and
//! bad input answered with a clear error (never a 500).
//!
//! In-process (moved from the end-to-end `tests/api.rs`, same assertions):
//! the router on a real database, cases opened by the rules engine in-process.
use crate::support::{Answer, App, Sch, Who};
use axum::http::Method;
use sanyu_store::entities::report;
use sanyu_store::sea_orm::{EntityTrait, PaginatorTrait};
use sanyu_test_support::TestDb;
use serde_json::{Value, json};

fn error_of(r: Answer) -> (u16, Value) {
    (r.status(), r.json())
}

fn report_body(student_no: &str, narrative: &str) -> Value {
    let mut body = crate::support::report_body(student_no, "high");
    body["narrative"] = json!(narrative);
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_never_a_500() {
    let app = App::start(TestDb::sqlite()).await;
    let url = "/v1/reports";
    let teacher = app.as_(Who::Teacher, Sch::A);

    // No token, a made-up token → 401.
    let r = app
        .as_(Who::Nobody, Sch::A)
        .post(url, report_body("S1", "x"))
        .await;
    let (status, body) = error_of(r);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let r = app
        .with_token(Some("sy_not-a-real-token"))
        .post(url, report_body("S1", "x"))
        .await;
    assert_eq!(r.status(), 401);

    // Missing and malformed fields → 422 with the field path.
    let cases = [
        (
            json!({"category": "self_harm", "level": "high", "observed_at": "2026-11-29T08:00:00Z", "narrative": "x"}),
            "student_no",
        ),
        (
            json!({"student_no": "S1", "category": "self_harm", "level": 5, "observed_at": "2026-11-29T08:00:00Z", "narrative": "x"}),
            "level",
        ),
        (
            json!({"student_no": "S1", "category": "self_harm", "level": "severe", "observed_at": "2026-11-29T08:00:00Z", "narrative": "x"}),
            "level",
        ),
        (
            json!({"student_no": "S1", "category": "sad", "level": "high", "observed_at": "2026-11-29T08:00:00Z", "narrative": "x"}),
            "category",
        ),
        (
            json!({"student_no": "S1", "category": "self_harm", "level": "high", "observed_at": "last week", "narrative": "x"}),
            "observed_at",
        ),
        (
            json!({"student_no": "S1", "category": "self_harm", "level": "high", "observed_at": "2026-11-29T08:00:00Z"}),
            "narrative",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = error_of(teacher.post(url, body.clone()).await);
        assert_eq!(status, 422, "{body}");
        assert_eq!(err["error"]["code"], "validation_failed");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    let r = teacher
        .post_bytes(url, "application/json", b"{not json".to_vec())
        .await;
    assert_eq!(r.status(), 422);

    // Unknown student → 404.
    let (status, err) = error_of(teacher.post(url, report_body("NOPE", "x")).await);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Body over the configured limit (16 KiB in the test env) → 413.
    let big = report_body("S1", &"x".repeat(20_000));
    let (status, err) = error_of(teacher.post(url, big).await);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // A repeated Idempotency-Key → the first response again and no second report.
    let body = report_body("S1", "once");
    let send = |key: &'static str, body: Value| {
        let teacher = &teacher;
        async move {
            teacher
                .send(
                    Method::POST,
                    url,
                    &[
                        ("Idempotency-Key", key),
                        ("content-type", "application/json"),
                    ],
                    body.to_string().into_bytes(),
                )
                .await
        }
    };
    let first = send("key-1", body.clone()).await;
    assert_eq!(first.status(), 202);
    let first_body = first.json();
    let again = send("key-1", body.clone()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(first_body, again.json());
    assert_eq!(
        report::Entity::find().count(&app.db).await.expect("count"),
        1
    );
    let (status, err) = error_of(send("key-1", report_body("S2", "other")).await);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(
        report::Entity::find().count(&app.db).await.expect("count"),
        1
    );

    // Bad query parameters.
    let counsellor = app.as_(Who::Counsellor, Sch::A);
    let (status, err) = error_of(counsellor.get("/v1/cases?level=severe").await);
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (422, Some("level"))
    );
    assert_eq!(counsellor.get("/v1/cases/not-a-uuid").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_checks_role_and_scope() {
    let app = App::start(TestDb::sqlite()).await;
    let report = |who: Who, sch: Sch, student: &str, narrative: &str| {
        let body = report_body(student, narrative);
        let client = app.as_(who, sch);
        async move { client.post("/v1/reports", body).await.status() }
    };

    // A head teacher reports only on the own class (another class's student
    // is not found, as one that does not exist); a monitor too; a leader not at all.
    assert_eq!(report(Who::Teacher, Sch::A, "S3", "x").await, 404);
    for who in [Who::Leader, Who::District, Who::Service] {
        assert_eq!(report(who, Sch::A, "S1", "x").await, 403);
    }
    assert_eq!(report(Who::Monitor, Sch::A, "S1", "SECRET-C1").await, 202);
    assert_eq!(
        report(Who::TeacherOtherClass, Sch::A, "S3", "SECRET-C2").await,
        202
    );
    // Another school's token does not even find this school's students.
    assert_eq!(report(Who::Teacher, Sch::B, "S9", "x").await, 404);

    // What the rules engine does with the two reports.
    app.decide_intake().await;
    let cases = app
        .as_(Who::Counsellor, Sch::A)
        .get("/v1/cases")
        .await
        .json()["cases"]
        .as_array()
        .expect("cases")
        .clone();
    assert!(cases.len() >= 2, "{cases:?}");
    let id_of = |class: &str| -> String {
        cases
            .iter()
            .find(|c| c["class_code"] == class)
            .and_then(|c| c["id"].as_str())
            .expect("case of class")
            .to_owned()
    };
    let (c1, c2) = (id_of("C1"), id_of("C2"));

    // The head teacher of C1 sees C1's case only; C2's case answers 404.
    let teacher = app.as_(Who::Teacher, Sch::A);
    let list = teacher.get("/v1/cases").await.json();
    let ids: Vec<&str> = list["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, vec![c1.as_str()]);
    assert_eq!(teacher.get(&format!("/v1/cases/{c1}")).await.status(), 200);
    assert_eq!(teacher.get(&format!("/v1/cases/{c2}")).await.status(), 404);

    // Another school sees none of these cases, and an id answers 404, not 403.
    for who in [Who::Counsellor, Who::CrisisTeam, Who::Leader, Who::Teacher] {
        let other = app.as_(who, Sch::B);
        let list = other.get("/v1/cases").await.json();
        assert_eq!(list["cases"].as_array().map(Vec::len), Some(0));
        for id in [&c1, &c2] {
            assert_eq!(other.get(&format!("/v1/cases/{id}")).await.status(), 404);
        }
    }

    // Monitors, admins, district officers and services read no cases.
    for who in [Who::Monitor, Who::Admin, Who::District, Who::Service] {
        let client = app.as_(who, Sch::A);
        assert_eq!(client.get("/v1/cases").await.status(), 403);
        assert_eq!(client.get(&format!("/v1/cases/{c1}")).await.status(), 403);
    }

    // Narratives are for counsellors and the crisis team; leaders see states, not text or names.
    let detail = app
        .as_(Who::Counsellor, Sch::A)
        .get(&format!("/v1/cases/{c1}"))
        .await
        .json();
    assert_eq!(detail["signals"][0]["narrative"], "SECRET-C1");
    let detail = app
        .as_(Who::CrisisTeam, Sch::A)
        .get(&format!("/v1/cases/{c2}"))
        .await
        .json();
    assert_eq!(detail["signals"][0]["narrative"], "SECRET-C2");
    for who in [Who::Leader] {
        let r = app.as_(who, Sch::A).get(&format!("/v1/cases/{c1}")).await;
        assert_eq!(r.status(), 200);
        let text = r.text();
        assert!(!text.contains("SECRET-C1"), "{text}");
        assert!(!text.contains("Student One"), "{text}");
    }

    // Roster import is for admins only.
    let r = app
        .as_(Who::Counsellor, Sch::A)
        .send(
            Method::POST,
            "/v1/roster/students",
            &[],
            b"school_code,grade_code,class_code,student_no,student_name\n".to_vec(),
        )
        .await;
    assert_eq!(r.status(), 403);
}
