//! Hotline calls end to end (gateway, rules engine, notifier, NATS, a database
//! and the SMTP server): an identified call is a signal that opens a case; an
//! unidentified critical caller opens a case for the crisis team (emailed,
//! in their queue and their leaders', hidden from head teachers) that is linked to a
//! student later, or merged into the student's open case; the same call id
//! twice is one record; CSV import.

use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_store::entities::{case, hotline_call};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
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

async fn hotline_calls_become_signals_and_cases(db: TestDb) {
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

    // An unidentified critical caller opens a case for the crisis team.
    let r = stack
        .post_json(
            &school.service,
            "/v1/hotline-calls",
            &call("CALL-2", None, "critical"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let logged: Value = r.json().await.expect("json");
    assert_eq!(
        (
            &logged["student_identified"],
            &logged["unidentified_caller_case"]
        ),
        (&json!(false), &json!(true))
    );
    let call_id = logged["id"].as_str().expect("id").to_owned();
    let case = unidentified_case_in_queue(&stack, &school.crisis_team).await;
    assert_eq!(case["level"], "critical");
    assert!(case["student_id"].is_null(), "{case}");
    let case_id = case["id"].as_str().expect("case id").to_owned();
    let reference = case["reference"].as_str().expect("reference").to_owned();
    // The crisis team on duty is emailed about the case (no summary, no name).
    let crisis = format!("crisis@{}.test", school.code.to_lowercase());
    let mail = eventually(
        Duration::from_secs(30),
        "the crisis team's email about the caller's case",
        || async {
            stack.smtp.received().into_iter().find(|m| {
                m.to.contains(&crisis)
                    && m.text().contains(&reference)
                    && m.text().contains("unidentified caller")
            })
        },
    )
    .await;
    assert!(!mail.text().contains("confidential summary"));
    assert!(
        mail.text().contains(&format!("/cases/{case_id}")) && !mail.text().contains("/v1/cases/"),
        "{}",
        mail.text()
    );
    // The case in full: opened by the hotline rule, the crisis team first on its ladder.
    let r = stack
        .get(&school.crisis_team, &format!("/v1/cases/{case_id}"))
        .await;
    assert_eq!(r.status(), 200);
    let detail: Value = r.json().await.expect("json");
    assert_eq!(detail["subject"], "unidentified_caller");
    assert_eq!(detail["opened_rule"], "hotline.unidentified_caller.v1");
    assert_eq!(detail["ladder"]["first"], json!(["crisis_team"]));
    assert_eq!(detail["ladder_state"], "running");
    assert!(
        detail["allowed_actions"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("link_student"))),
        "{detail}"
    );
    assert!(!detail.to_string().contains("confidential"));
    // Counsellors and leaders (whom the ladder reaches) see it too; head
    // teachers and another school do not.
    unidentified_case_in_queue(&stack, &school.counsellor).await;
    unidentified_case_in_queue(&stack, &school.leader).await;
    let r = stack
        .get(&school.leader, &format!("/v1/cases/{case_id}"))
        .await;
    assert_eq!(r.status(), 200);
    for token in [&school.teacher_c1, &school.teacher_c2] {
        let listed: Value = stack
            .get(token, "/v1/cases")
            .await
            .json()
            .await
            .expect("json");
        assert!(
            !listed.to_string().contains(&case_id),
            "listed to a teacher: {listed}"
        );
        let r = stack.get(token, &format!("/v1/cases/{case_id}")).await;
        assert_eq!(r.status(), 404);
    }
    let r = stack
        .get(
            &stack.other_school.crisis_team,
            &format!("/v1/cases/{case_id}"),
        )
        .await;
    assert_eq!(r.status(), 404);
    // Work goes on without a student; contacting a guardian needs one.
    let r = stack
        .act(&school.crisis_team, &case_id, "acknowledge", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let r = stack
        .act(
            &school.crisis_team,
            &case_id,
            "guardian-contacts",
            json!({"guardian_id": uuid::Uuid::now_v7(), "channel": "phone", "outcome": "reached"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = stack
        .act(
            &school.crisis_team,
            &case_id,
            "guardian-contacts",
            json!({"contacted": false, "reason": "nobody known yet"}),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "a decision not to contact needs no guardian"
    );
    // The crisis team reads the call's summary (audited); another school cannot.
    let r = stack
        .get(&school.crisis_team, &format!("/v1/hotline-calls/{call_id}"))
        .await;
    assert_eq!(r.status(), 200);
    let call_detail: Value = r.json().await.expect("json");
    assert_eq!(call_detail["summary"], "confidential summary");
    assert_eq!(call_detail["case_id"], json!(case_id));
    let r = stack
        .get(
            &stack.other_school.crisis_team,
            &format!("/v1/hotline-calls/{call_id}"),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = stack
        .get(&school.leader, &format!("/v1/hotline-calls/{call_id}"))
        .await;
    assert_eq!(r.status(), 403);

    // Linked to a student with no open case, the case becomes that student's.
    let r = stack
        .act(
            &stack.other_school.crisis_team,
            &case_id,
            "link-student",
            json!({"student_no": "S3"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = stack
        .act(
            &school.teacher_c2,
            &case_id,
            "link-student",
            json!({"student_no": "S3"}),
        )
        .await;
    assert_eq!(
        r.status(),
        404,
        "a head teacher does not learn the case exists"
    );
    let r = stack
        .act(
            &school.crisis_team,
            &case_id,
            "link-student",
            json!({"student_no": "S3"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let linked: Value = r.json().await.expect("json");
    assert_eq!(linked["subject"], "student");
    assert!(linked["student_id"].is_string(), "{linked}");
    let r = stack
        .get(&school.crisis_team, &format!("/v1/cases/{case_id}"))
        .await;
    let detail: Value = r.json().await.expect("json");
    assert_eq!(
        (&detail["student_no"], &detail["level"], &detail["status"]),
        (&json!("S3"), &json!("critical"), &json!("in_progress"))
    );
    // Now it is a student's case: the class's head teacher sees it.
    let r = stack
        .get(&school.teacher_c2, &format!("/v1/cases/{case_id}"))
        .await;
    assert_eq!(r.status(), 200);
    let r = stack
        .act(
            &school.crisis_team,
            &case_id,
            "link-student",
            json!({"student_no": "S3"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = stack
        .post_json(
            &school.crisis_team,
            &format!("/v1/hotline-calls/{call_id}/link"),
            &json!({"student_no": "S3"}),
        )
        .await;
    assert_eq!(r.status(), 409, "the call is about S3 now");

    // A second unidentified caller turns out to be S1, who has an open case:
    // the call joins that case (raising it to critical), and the caller's own
    // case closes as merged. S1 never has two open cases.
    let r = stack
        .post_json(
            &school.service,
            "/v1/hotline-calls",
            &call("CALL-5", None, "critical"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let second_call = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let second = unidentified_case_in_queue(&stack, &school.crisis_team).await;
    let second_id = second["id"].as_str().expect("id").to_owned();
    let r = stack
        .post_json(
            &school.crisis_team,
            &format!("/v1/hotline-calls/{second_call}/link"),
            &json!({"student_no": "S1"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json")["student_identified"],
        true
    );
    let merged: Value = stack
        .get(&school.crisis_team, &format!("/v1/cases/{second_id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(merged["status"], "closed");
    let s1_case = cases[0]["id"].as_str().expect("S1's case").to_owned();
    assert!(
        merged["timeline"].to_string().contains(&s1_case),
        "the merge names S1's case: {merged}"
    );
    let s1: Value = stack
        .get(&school.crisis_team, &format!("/v1/cases/{s1_case}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(s1["level"], "critical");
    assert!(
        s1["signals"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["decision"] == "merged")),
        "{s1}"
    );
    let r = stack
        .act(
            &school.crisis_team,
            &second_id,
            "reopen",
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(r.status(), 409, "a merged case stays closed");
    let open_for_s1 = case::Entity::find()
        .filter(
            case::Column::StudentId.eq(s1["student_id"]
                .as_str()
                .and_then(|s| s.parse::<uuid::Uuid>().ok())),
        )
        .filter(case::Column::Status.ne(sanyu_domain::CaseStatus::Closed))
        .count(&stack.conn)
        .await
        .expect("count");
    assert_eq!(open_for_s1, 1);

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
    // S1's, S3's (once the first caller), the merged caller's and now S2's.
    stack.wait_for_cases(4).await;
}

/// Wait until `token`'s queue has an open case about an unidentified caller.
async fn unidentified_case_in_queue(stack: &Stack, token: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        "an unidentified caller's case in the queue",
        || async {
            let v: Value = stack.get(token, "/v1/cases").await.json().await.ok()?;
            v["cases"]
                .as_array()?
                .iter()
                .find(|c| c["subject"] == "unidentified_caller" && c["status"] != "closed")
                .cloned()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn hotline_calls_become_signals_and_cases_on_sqlite() {
    hotline_calls_become_signals_and_cases(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hotline_calls_become_signals_and_cases_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        hotline_calls_become_signals_and_cases(db).await;
    }
}
