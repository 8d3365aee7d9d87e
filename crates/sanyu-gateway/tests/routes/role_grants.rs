//! Role grants of a school that has nobody to confirm them yet, in-process
//! (moved from the end-to-end `tests/scope.rs`, same assertions): the
//! deployment admin confirms a school's first crisis team, never once the
//! school has one.
use crate::support::Answer;
use crate::support::stack::Stack;
use sanyu_domain::Role;
use sanyu_store::entities::staff;
use sanyu_store::roster::{self, ImportScope};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sanyu_test_support::TestDb;
use sanyu_test_support::fixtures::staff_token;
use serde_json::{Value, json};

impl Stack {
    async fn post_csv(&self, token: &str, path: &str, csv: &str) -> Answer {
        self.app.with_token(Some(token)).post_csv(path, csv).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_school_without_a_leader_or_crisis_team_gets_its_first_one_confirmed_by_the_deployment_admin()
 {
    let stack = Stack::new(TestDb::sqlite()).await;
    // The operator sets up a school with an admin only.
    let txn = sanyu_store::begin_write(&stack.conn).await.expect("begin");
    let s = roster::import_students(
        &*txn,
        "school_code,grade_code,class_code,student_no,student_name\nSCH9,G1,C1,S1,Student One\n"
            .as_bytes(),
        ImportScope::Operator,
    )
    .await
    .expect("students");
    assert!(s.errors.is_empty(), "{s:?}");
    let s = roster::import_staff(
        &*txn,
        "school_code,staff_no,name,role\nSCH9,A9,Admin Nine,admin\n".as_bytes(),
        ImportScope::Operator,
    )
    .await
    .expect("staff");
    assert!(s.errors.is_empty(), "{s:?}");
    txn.commit().await.expect("commit");
    let admin = staff_token(&stack.conn, Role::Admin, "SCH9", None, Some("A9")).await;
    let deployment =
        sanyu_store::tokens::issue_deployment(&stack.conn, None, chrono::Duration::days(1))
            .await
            .expect("deployment token")
            .secret;

    let r = stack
        .post_csv(
            &admin,
            "/v1/roster/staff",
            "school_code,staff_no,name,role,class_code,phone,email\n\
             SCH9,X9,First Crisis Lead,crisis_team,,,x9@sch9.test\n",
        )
        .await;
    assert_eq!(r.status(), 200);
    let summary: Value = r.json();
    let grant = summary["pending_role_grants"][0]["grant_id"]
        .as_str()
        .expect("a pending grant")
        .to_owned();
    let x9 = staff::Entity::find()
        .filter(staff::Column::StaffNo.eq("X9"))
        .one(&stack.conn)
        .await
        .expect("staff")
        .expect("X9");
    assert!(!x9.active, "waits inactive");
    let confirm = format!("/v1/roster/role-grants/{grant}/confirm");
    // Another school's crisis team: not theirs.
    let r = stack
        .post_json(&stack.school.crisis_team, &confirm, &json!({}))
        .await;
    assert_eq!(r.status(), 404);
    // The deployment admin lists and confirms it: SCH9 has nobody else.
    let listed: Vec<Value> = serde_json::from_value(
        stack
            .get(&deployment, "/v1/roster/role-grants")
            .await
            .json(),
    )
    .expect("a list");
    assert!(listed.iter().any(|g| g["id"] == json!(grant)));
    let r = stack.post_json(&deployment, &confirm, &json!({})).await;
    assert_eq!(r.status(), 200);
    let x9 = staff::Entity::find_by_id(x9.id)
        .one(&stack.conn)
        .await
        .expect("staff")
        .expect("X9");
    assert!(x9.active && x9.role == "crisis_team", "{x9:?}");

    // From now on SCH9's own crisis team decides: the deployment admin may not.
    let r = stack
        .post_csv(
            &admin,
            "/v1/roster/staff",
            "school_code,staff_no,name,role\nSCH9,K9,Counsellor Nine,counsellor\n",
        )
        .await;
    let summary: Value = r.json();
    let next = summary["pending_role_grants"][0]["grant_id"]
        .as_str()
        .expect("a pending grant")
        .to_owned();
    let r = stack
        .post_json(
            &deployment,
            &format!("/v1/roster/role-grants/{next}/refuse"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 403);
    let x9_token = staff_token(&stack.conn, Role::CrisisTeam, "SCH9", None, Some("X9")).await;
    let r = stack
        .post_json(
            &x9_token,
            &format!("/v1/roster/role-grants/{next}/refuse"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let refused: Value = r.json();
    assert_eq!(refused["status"], "refused");
    let k9 = staff::Entity::find()
        .filter(staff::Column::StaffNo.eq("K9"))
        .one(&stack.conn)
        .await
        .expect("staff")
        .expect("K9");
    assert!(!k9.active, "a refused grant leaves the person inactive");

    // The routes are in the API's own description, with their answers.
    let doc: Value = stack.get("", "/openapi.json").await.json();
    for (path, method, codes) in [
        ("/v1/roster/role-grants", "get", &["200", "401", "403"][..]),
        (
            "/v1/roster/role-grants/{id}/confirm",
            "post",
            &["200", "401", "403", "404", "409"][..],
        ),
        (
            "/v1/roster/role-grants/{id}/refuse",
            "post",
            &["200", "401", "403", "404", "409"][..],
        ),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for code in codes {
            assert!(responses.get(code).is_some(), "{method} {path} {code}");
        }
    }
}
