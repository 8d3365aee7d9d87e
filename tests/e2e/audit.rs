//! Every read of a case and every action lands in the append-only,
//! hash-chained audit log (no narrative), and `sanyu audit verify` finds an
//! edited, deleted or truncated record.

use std::process::Command;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, binary};
use sanyu_store::entities::audit_record;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
use serde_json::Value;

fn verify(stack: &Stack) -> (i32, String) {
    let out = Command::new(binary("sanyu"))
        .args(["audit", "verify"])
        .env("SANYU_DATABASE__URL", stack.db.url())
        .env("SANYU_SECURITY__DATA_KEY", &stack.data_key)
        .output()
        .expect("run sanyu audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_and_actions_are_audited_and_tampering_is_detected() {
    let stack = Stack::started(TestDb::sqlite()).await;
    let response = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "high", "AUDIT-CANARY"),
        )
        .await;
    assert_eq!(response.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    let id = cases[0]["id"].as_str().expect("id").to_owned();
    let r: Value = stack
        .get(&stack.school.counsellor, &format!("/v1/cases/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["signals"][0]["narrative"], "AUDIT-CANARY");
    // A read outside the caller's scope is refused and reads nothing.
    assert_eq!(
        stack
            .get(&stack.other_school.counsellor, &format!("/v1/cases/{id}"))
            .await
            .status(),
        404
    );

    // Every action and every timeline read is audited too.
    for (action, body) in [
        ("acknowledge", serde_json::json!({})),
        ("notes", serde_json::json!({"text": "AUDIT-CANARY note"})),
    ] {
        let r = stack.act(&stack.school.counsellor, &id, action, body).await;
        assert_eq!(r.status(), 200, "{action}");
    }
    let student = cases[0]["student_id"]
        .as_str()
        .expect("student id")
        .to_owned();
    let r = stack
        .get(
            &stack.school.counsellor,
            &format!("/v1/students/{student}/timeline"),
        )
        .await;
    assert_eq!(r.status(), 200);

    let rows = audit_record::Entity::find()
        .order_by_asc(audit_record::Column::Seq)
        .all(&stack.conn)
        .await
        .expect("audit rows");
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&"report.submit"), "{actions:?}");
    assert!(actions.contains(&"case.list"), "{actions:?}");
    for action in ["case.acknowledge", "case.note", "timeline.read"] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    let read = rows
        .iter()
        .find(|r| r.action == "case.read")
        .expect("the read is audited");
    assert_eq!(read.target, format!("case:{id}"));
    assert_eq!(read.actor_role, "counsellor");
    assert_eq!(read.source, "127.0.0.1");
    for row in &rows {
        assert!(
            !format!("{row:?}").contains("AUDIT-CANARY"),
            "no narrative in the audit log"
        );
    }

    let (code, out) = verify(&stack);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("intact: {} records", rows.len())),
        "{out}"
    );

    // The log is append-only in the database.
    let update = stack
        .conn
        .execute_unprepared("UPDATE audit_log SET target = 'x' WHERE seq = 1")
        .await;
    assert!(update.is_err(), "updates are refused");
    assert!(
        stack
            .conn
            .execute_unprepared("DELETE FROM audit_log WHERE seq = 1")
            .await
            .is_err()
    );

    // Someone with the database removes the guards and tampers: verify finds it.
    stack
        .conn
        .execute_unprepared("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .await
        .expect("drop triggers");
    let last = rows.last().expect("rows").seq;
    stack
        .conn
        .execute_unprepared(&format!("DELETE FROM audit_log WHERE seq = {last}"))
        .await
        .expect("truncate");
    let (code, out) = verify(&stack);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated"), "{out}");

    stack
        .conn
        .execute_unprepared("DELETE FROM audit_log WHERE seq = 2")
        .await
        .expect("delete");
    let (code, out) = verify(&stack);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 2 is missing"), "{out}");

    stack
        .conn
        .execute_unprepared("UPDATE audit_log SET actor_role = 'leader' WHERE seq = 1")
        .await
        .expect("edit");
    let (code, out) = verify(&stack);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 1 was altered"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_chain_holds_under_concurrent_reads_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let stack = Stack::started(db).await;
    let reads = (0..40).map(|_| stack.get(&stack.school.counsellor, "/v1/cases"));
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.status(), 200);
    }
    let (code, out) = verify(&stack);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 40 records"), "{out}");
    // PostgreSQL refuses changes too.
    assert!(
        stack
            .conn
            .execute_unprepared("DELETE FROM audit_log")
            .await
            .is_err()
    );
    assert!(
        stack
            .conn
            .execute_unprepared("TRUNCATE audit_log")
            .await
            .is_err()
    );
}
