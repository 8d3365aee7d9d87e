//! The gateway's contract: authentication, role and scope on every route, and
//! bad input answered with a clear error (never a 500).

use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_store::entities::report;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_never_a_500() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    let url = format!("{}/v1/reports", stack.base_url());
    let teacher = stack.school.teacher_c1.clone();

    // No token, a made-up token → 401.
    let r = stack
        .http
        .post(&url)
        .json(&Stack::report_body("S1", "high", "x"))
        .send()
        .await
        .expect("send");
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let r = stack
        .post_report(
            "sy_not-a-real-token",
            &Stack::report_body("S1", "high", "x"),
        )
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
        let (status, err) = error_of(stack.post_report(&teacher, &body).await).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(err["error"]["code"], "validation_failed");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    let r = stack
        .http
        .post(&url)
        .bearer_auth(&teacher)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);

    // Unknown student → 404.
    let (status, err) = error_of(
        stack
            .post_report(&teacher, &Stack::report_body("NOPE", "high", "x"))
            .await,
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Body over the configured limit (16 KiB in the test env) → 413.
    let big = Stack::report_body("S1", "high", &"x".repeat(20_000));
    let (status, err) = error_of(stack.post_report(&teacher, &big).await).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // A repeated Idempotency-Key → the first response again and no second report.
    let body = Stack::report_body("S1", "high", "once");
    let send = |key: &'static str, body: Value| {
        stack
            .http
            .post(&url)
            .bearer_auth(&teacher)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send("key-1", body.clone()).await.expect("send");
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("json");
    let again = send("key-1", body.clone()).await.expect("send");
    assert_eq!(again.status(), 202);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(first, again);
    assert_eq!(
        report::Entity::find()
            .count(&stack.conn)
            .await
            .expect("count"),
        1
    );
    let (status, err) = error_of(
        send("key-1", Stack::report_body("S2", "high", "other"))
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(
        report::Entity::find()
            .count(&stack.conn)
            .await
            .expect("count"),
        1
    );

    // Bad query parameters.
    let (status, err) = error_of(
        stack
            .get(&stack.school.counsellor, "/v1/cases?level=severe")
            .await,
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (422, Some("level"))
    );
    assert_eq!(
        stack
            .get(&stack.school.counsellor, "/v1/cases/not-a-uuid")
            .await
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_checks_role_and_scope() {
    let stack = Stack::started(TestDb::sqlite()).await;
    let s = &stack.school;

    // A head teacher reports only on the own class (another class's student
    // is not found, as one that does not exist); a monitor too; a leader not at all.
    assert_eq!(
        stack
            .post_report(&s.teacher_c1, &Stack::report_body("S3", "high", "x"))
            .await
            .status(),
        404
    );
    for (token, student) in [(&s.leader, "S1"), (&s.district, "S1"), (&s.service, "S1")] {
        let response = stack
            .post_report(token, &Stack::report_body(student, "high", "x"))
            .await;
        assert_eq!(response.status(), 403);
    }
    assert_eq!(
        stack
            .post_report(
                &s.monitor_c1,
                &Stack::report_body("S1", "high", "SECRET-C1")
            )
            .await
            .status(),
        202
    );
    assert_eq!(
        stack
            .post_report(
                &s.teacher_c2,
                &Stack::report_body("S3", "high", "SECRET-C2")
            )
            .await
            .status(),
        202
    );
    // Another school's token does not even find this school's students.
    assert_eq!(
        stack
            .post_report(
                &stack.other_school.teacher_c1,
                &Stack::report_body("S9", "high", "x")
            )
            .await
            .status(),
        404
    );

    let cases = stack.wait_for_cases(2).await;
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
    let list: Value = stack
        .get(&s.teacher_c1, "/v1/cases")
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = list["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, vec![c1.as_str()]);
    assert_eq!(
        stack
            .get(&s.teacher_c1, &format!("/v1/cases/{c1}"))
            .await
            .status(),
        200
    );
    assert_eq!(
        stack
            .get(&s.teacher_c1, &format!("/v1/cases/{c2}"))
            .await
            .status(),
        404
    );

    // Another school sees none of these cases, and an id answers 404, not 403.
    let o = &stack.other_school;
    for token in [&o.counsellor, &o.crisis_team, &o.leader, &o.teacher_c1] {
        let list: Value = stack
            .get(token, "/v1/cases")
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(list["cases"].as_array().map(Vec::len), Some(0));
        for id in [&c1, &c2] {
            assert_eq!(
                stack.get(token, &format!("/v1/cases/{id}")).await.status(),
                404
            );
        }
    }

    // Monitors, admins, district officers and services read no cases.
    for token in [&s.monitor_c1, &s.admin, &s.district, &s.service] {
        assert_eq!(stack.get(token, "/v1/cases").await.status(), 403);
        assert_eq!(
            stack.get(token, &format!("/v1/cases/{c1}")).await.status(),
            403
        );
    }

    // Narratives are for counsellors and the crisis team; leaders see states, not text or names.
    let detail: Value = stack
        .get(&s.counsellor, &format!("/v1/cases/{c1}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(detail["signals"][0]["narrative"], "SECRET-C1");
    let detail: Value = stack
        .get(&s.crisis_team, &format!("/v1/cases/{c2}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(detail["signals"][0]["narrative"], "SECRET-C2");
    for token in [&s.leader] {
        let r = stack.get(token, &format!("/v1/cases/{c1}")).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("body");
        assert!(!text.contains("SECRET-C1"), "{text}");
        assert!(!text.contains("Student One"), "{text}");
    }

    // Roster import is for admins only.
    let r = stack
        .http
        .post(format!("{}/v1/roster/students", stack.base_url()))
        .bearer_auth(&s.counsellor)
        .body("school_code,grade_code,class_code,student_no,student_name\n")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_openapi_are_served() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    let r = stack
        .http
        .get(format!("{}/healthz", stack.base_url()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().contains_key("x-request-id"),
        "responses carry a request id"
    );
    let ready: Value = stack
        .http
        .get(format!("{}/readyz", stack.base_url()))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready,
        json!({"database": true, "nats": true, "consumers": true})
    );
    let doc: Value = stack
        .http
        .get(format!("{}/openapi.json", stack.base_url()))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for route in [
        "/v1/reports",
        "/v1/cases",
        "/v1/cases/{id}",
        "/v1/roster/students",
        "/v1/roster/staff",
        "/v1/dead-letters",
        "/v1/cases/{id}/acknowledge",
        "/v1/cases/{id}/assign",
        "/v1/cases/{id}/notes",
        "/v1/cases/{id}/guardian-contacts",
        "/v1/cases/{id}/referrals",
        "/v1/cases/{id}/follow-ups",
        "/v1/cases/{id}/level",
        "/v1/cases/{id}/close",
        "/v1/cases/{id}/reopen",
        "/v1/key-population",
        "/v1/students/{id}/timeline",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(route), "openapi lacks {route}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Readiness follows NATS: stop it and /readyz says so (503), bring it back and it recovers.
    stack.nats.restart().await;
    eventually(
        Duration::from_secs(20),
        "ready again after NATS restart",
        || async {
            let r = stack
                .http
                .get(format!("{}/readyz", stack.base_url()))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
}
