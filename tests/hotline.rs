//! Hotline calls end to end (gateway, rules engine, notifier, NATS, a database
//! and the SMTP server): an identified call is a signal that opens a case; an
//! unidentified critical caller tells the crisis team and is linked to a
//! student later; the same call id twice is one record; CSV import.

use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_store::entities::hotline_call;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

fn call(call_id: &str, student_no: Option<&str>, rating: &str) -> Value {
    json!({
        "call_id": call_id,
        "started_at": chrono::Utc::now().to_rfc3339(),
        "caller_type": if student_no.is_some() { "student" } else { "anonymous" },
        "student_no": student_no,
        "rating": rating,
        "summary": "confidential summary",
        "counsellor": "duty counsellor",
        "referral_advice": "see the school counsellor",
    })
}

async fn hotline_calls_become_signals_and_alerts(db: TestDb) {
    let stack = Stack::started(db).await;
    let school = stack.school.clone();

    // Only a service token logs calls.
    let r = stack
        .post_json(
            &school.teacher_c1,
            "/v1/hotline-calls",
            &call("A", Some("S1"), "high"),
        )
        .await;
    assert_eq!(r.status(), 403);
    // Bad input is a clear 4xx.
    let r = stack
        .post_json(
            &school.service,
            "/v1/hotline-calls",
            &json!({"call_id": "X"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = stack
        .post_json(
            &school.service,
            "/v1/hotline-calls",
            &call("X", Some("NOPE"), "high"),
        )
        .await;
    assert_eq!(r.status(), 404);

    // An identified student's call (C-SSRS: one yes → high) opens a case.
    let mut identified = call("CALL-1", Some("S1"), "watch");
    identified["cssrs"] = json!({"answers": [true, false, false, false, false, false]});
    let r = stack
        .post_json(&school.service, "/v1/hotline-calls", &identified)
        .await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.expect("json");
    assert_eq!(first["level"], "high");
    assert_eq!(first["student_identified"], true);
    let cases = stack.wait_for_cases(1).await;
    assert_eq!(cases[0]["level"], "high");

    // The same call id again: the first record, nothing new.
    let r = stack
        .post_json(&school.service, "/v1/hotline-calls", &identified)
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers().get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let again: Value = r.json().await.expect("json");
    assert_eq!(again, first);
    assert_eq!(
        hotline_call::Entity::find()
            .count(&stack.conn)
            .await
            .expect("count"),
        1
    );

    // An unidentified critical caller: the crisis team is told at once.
    let r = stack
        .post_json(
            &school.service,
            "/v1/hotline-calls",
            &call("CALL-2", None, "critical"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let alert: Value = r.json().await.expect("json");
    assert_eq!(alert["alert"], "open");
    let crisis = format!("crisis@{}.test", school.code.to_lowercase());
    let mail = eventually(
        Duration::from_secs(30),
        "the crisis team's alert",
        || async {
            stack
                .smtp
                .received()
                .into_iter()
                .find(|m| m.to.contains(&crisis) && m.text().contains("hotline"))
        },
    )
    .await;
    assert!(!mail.text().contains("confidential summary"));
    let r = stack.get(&school.crisis_team, "/v1/hotline-alerts").await;
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.expect("json");
    assert_eq!(listed["alerts"][0]["state"], "open");
    assert!(listed.to_string().find("confidential").is_none());
    // Another school's crisis team neither sees nor links it.
    let other: Value = stack
        .get(&stack.other_school.crisis_team, "/v1/hotline-alerts")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(other["alerts"].as_array().map(Vec::len), Some(0));
    let id = alert["id"].as_str().expect("id");
    // The crisis team reads the summary (audited); another school cannot.
    let r = stack
        .get(&school.crisis_team, &format!("/v1/hotline-calls/{id}"))
        .await;
    assert_eq!(r.status(), 200);
    let detail: Value = r.json().await.expect("json");
    assert_eq!(detail["summary"], "confidential summary");
    let r = stack
        .get(
            &stack.other_school.crisis_team,
            &format!("/v1/hotline-calls/{id}"),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = stack
        .get(&school.leader, &format!("/v1/hotline-calls/{id}"))
        .await;
    assert_eq!(r.status(), 403);
    let path = format!("/v1/hotline-calls/{id}/link");
    let r = stack
        .post_json(
            &stack.other_school.crisis_team,
            &path,
            &json!({"student_no": "S3"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    // Linked to a student, it becomes that student's signal: a critical case.
    let r = stack
        .post_json(&school.crisis_team, &path, &json!({"student_no": "S3"}))
        .await;
    assert_eq!(r.status(), 200);
    let cases = stack.wait_for_cases(2).await;
    assert!(cases.iter().any(|c| c["level"] == "critical"));
    let r = stack
        .post_json(&school.crisis_team, &path, &json!({"student_no": "S3"}))
        .await;
    assert_eq!(r.status(), 409);

    // CSV import: a known call id is a duplicate, a bad row is reported.
    let now = chrono::Utc::now().to_rfc3339();
    let csv = format!(
        "call_id,started_at,ended_at,caller_type,student_no,cssrs,rating,summary,counsellor,referral_advice\n\
         CALL-1,{now},,student,S1,ynnnnn-n,,s,k,\n\
         CALL-3,{now},,guardian,S2,nnnnnn-n,elevated,s,k,\n\
         CALL-4,{now},,robot,,,high,s,k,\n"
    );
    let r = stack
        .post_csv(&school.service, "/v1/hotline-calls/import", &csv)
        .await;
    assert_eq!(r.status(), 200);
    let summary: Value = r.json().await.expect("json");
    assert_eq!(
        (
            &summary["rows"],
            &summary["created"],
            &summary["duplicates"]
        ),
        (&json!(3), &json!(1), &json!(1))
    );
    assert_eq!(summary["errors"][0]["line"], 4);
    assert_eq!(summary["errors"][0]["field"], "caller_type");
    stack.wait_for_cases(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hotline_calls_become_signals_and_alerts_on_sqlite() {
    hotline_calls_become_signals_and_alerts(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hotline_calls_become_signals_and_alerts_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        hotline_calls_become_signals_and_alerts(db).await;
    }
}
