//! Another class's or school's student answers exactly as a student who does
//! not exist, on every route that looks a student up (issue #13, item 7: no
//! existence oracles). In-process (moved from the end-to-end
//! `tests/disclosure.rs`, same assertions): the router on a real database, the
//! rules engine deciding in-process what the relay would have carried to it.
use crate::support::Answer;
use crate::support::stack::Stack;
use sanyu_store::roster::{self, ImportScope};
use sanyu_store::sea_orm::{ConnectionTrait, Statement};
use sanyu_test_support::TestDb;
use serde_json::{Value, json};

impl Stack {
    /// What the rules engine makes of the intake so far, then `check` (the
    /// end-to-end test waited for the engine binary instead).
    async fn decided<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        self.app.decide_intake().await;
        check()
            .await
            .unwrap_or_else(|| panic!("after the rules engine: no {what}"))
    }
}

async fn answer(r: Answer) -> (u16, Value) {
    (r.status(), r.json())
}

/// The same status and the same body, whichever of the two was asked for.
fn indistinguishable(what: &str, a: &(u16, Value), b: &(u16, Value)) {
    assert!(
        matches!(a.0, 403 | 404 | 422),
        "{what}: answered {} {}",
        a.0,
        a.1
    );
    assert_eq!(a, b, "{what}: out of scope and non-existent differ");
}

async fn another_class_or_schools_student_is_answered_as_one_that_does_not_exist(db: TestDb) {
    let stack = Stack::with_midterm(db).await;
    let sch = stack.school.clone();
    let other = stack.other_school.clone();
    // S7 exists only in the other school.
    let txn = sanyu_store::begin_write(&stack.conn).await.expect("begin");
    let imported = roster::import_students(
        &*txn,
        format!(
            "school_code,grade_code,class_code,student_no,student_name\n{},G1,C1,S7,Student Seven\n",
            other.code
        )
        .as_bytes(),
        ImportScope::Operator,
    )
    .await
    .expect("import S7");
    assert!(imported.errors.is_empty(), "{:?}", imported.errors);
    txn.commit().await.expect("commit");

    // Reports: another class's student (S3 is in C2) or another school's
    // (S7), as an unknown number; a role that may not report learns nothing.
    for token in [&sch.teacher_c1, &sch.monitor_c1] {
        let nobody = answer(
            stack
                .post_report(token, &Stack::report_body("NOBODY", "high", "x"))
                .await,
        )
        .await;
        assert_eq!(nobody.0, 404, "{nobody:?}");
        for student in ["S3", "S7"] {
            let r = answer(
                stack
                    .post_report(token, &Stack::report_body(student, "high", "x"))
                    .await,
            )
            .await;
            indistinguishable(&format!("report on {student}"), &r, &nobody);
        }
    }
    for token in [&sch.leader, &sch.district, &sch.admin, &sch.service] {
        let nobody = answer(
            stack
                .post_report(token, &Stack::report_body("NOBODY", "high", "x"))
                .await,
        )
        .await;
        let s1 = answer(
            stack
                .post_report(token, &Stack::report_body("S1", "high", "x"))
                .await,
        )
        .await;
        assert_eq!(s1.0, 403);
        indistinguishable("a report by a role that may not report", &s1, &nobody);
    }
    let crisis_nobody = answer(
        stack
            .post_report(&sch.crisis_team, &Stack::report_body("NOBODY", "high", "x"))
            .await,
    )
    .await;
    let crisis_s7 = answer(
        stack
            .post_report(&sch.crisis_team, &Stack::report_body("S7", "high", "x"))
            .await,
    )
    .await;
    indistinguishable("another school's student", &crisis_s7, &crisis_nobody);

    // Zero-report incidents.
    let incident = |student: &str| {
        json!({"period_id": "midterm", "class_code": "C1", "incidents": [
            {"student_no": student, "category": "other", "level": "elevated", "narrative": "x"}]})
    };
    let nobody = answer(
        stack
            .post_json(&sch.teacher_c1, "/v1/zero-reports", &incident("NOBODY"))
            .await,
    )
    .await;
    for student in ["S3", "S7"] {
        let r = answer(
            stack
                .post_json(&sch.teacher_c1, "/v1/zero-reports", &incident(student))
                .await,
        )
        .await;
        indistinguishable(
            &format!("zero-report incident about {student}"),
            &r,
            &nobody,
        );
    }

    // Naming the student of an unidentified caller's case, or of a call.
    let call = |id: &str, rating: &str| {
        json!({"call_id": id, "started_at": chrono::Utc::now().to_rfc3339(),
               "caller_type": "anonymous", "rating": rating})
    };
    let r = stack
        .post_json(
            &sch.service,
            "/v1/hotline-calls",
            &call("ANON-1", "critical"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let low: Value = stack
        .post_json(&sch.service, "/v1/hotline-calls", &call("ANON-2", "watch"))
        .await
        .json();
    let low_call = low["id"].as_str().expect("call id").to_owned();
    let caller_case = stack
        .decided("the caller's case", || async {
            let v: Value = stack.get(&sch.crisis_team, "/v1/cases").await.json();
            v["cases"]
                .as_array()?
                .iter()
                .find(|c| c["subject"] == "unidentified_caller")
                .and_then(|c| c["id"].as_str().map(str::to_owned))
        })
        .await;
    let link = |token: &str, student: &str| {
        let stack = &stack;
        let path = format!("/v1/cases/{caller_case}/link-student");
        let token = token.to_owned();
        let student = student.to_owned();
        async move {
            answer(
                stack
                    .post_json(&token, &path, &json!({"student_no": student}))
                    .await,
            )
            .await
        }
    };
    for (who, token) in [
        ("leader", &sch.leader),
        ("teacher", &sch.teacher_c1),
        ("monitor", &sch.monitor_c1),
        ("admin", &sch.admin),
    ] {
        let nobody = link(token, "NOBODY").await;
        for student in ["S1", "S7"] {
            let r = link(token, student).await;
            indistinguishable(&format!("{who} links {student}"), &r, &nobody);
        }
    }
    let nobody = link(&sch.crisis_team, "NOBODY").await;
    assert_eq!(nobody.0, 404);
    indistinguishable(
        "another school's student linked",
        &link(&sch.crisis_team, "S7").await,
        &nobody,
    );
    let call_link = |student: &str| {
        let stack = &stack;
        let path = format!("/v1/hotline-calls/{low_call}/link");
        let student = student.to_owned();
        let token = sch.counsellor.clone();
        async move {
            answer(
                stack
                    .post_json(&token, &path, &json!({"student_no": student}))
                    .await,
            )
            .await
        }
    };
    indistinguishable(
        "another school's student named on a call",
        &call_link("S7").await,
        &call_link("NOBODY").await,
    );
    let logged = |student: &str| {
        let stack = &stack;
        let body = json!({"call_id": format!("CALL-{student}"), "started_at": chrono::Utc::now().to_rfc3339(),
                          "caller_type": "student", "student_no": student, "rating": "high"});
        let token = sch.service.clone();
        async move { answer(stack.post_json(&token, "/v1/hotline-calls", &body).await).await }
    };
    indistinguishable(
        "a call about another school's student",
        &logged("S7").await,
        &logged("NOBODY").await,
    );

    // Reads by id: another school's student, case or watch entry, as none.
    let other_s7: uuid::Uuid = stack
        .conn
        .query_one_raw(Statement::from_string(
            stack.conn.get_database_backend(),
            "SELECT id FROM students WHERE student_no = 'S7'",
        ))
        .await
        .expect("query")
        .expect("S7")
        .try_get("", "id")
        .expect("id");
    let random = uuid::Uuid::now_v7();
    for token in [&sch.leader, &sch.counsellor] {
        indistinguishable(
            "another school's student's timeline",
            &answer(
                stack
                    .get(token, &format!("/v1/students/{other_s7}/timeline"))
                    .await,
            )
            .await,
            &answer(
                stack
                    .get(token, &format!("/v1/students/{random}/timeline"))
                    .await,
            )
            .await,
        );
    }
    let r = stack
        .post_report(&other.teacher_c1, &Stack::report_body("S7", "high", "x"))
        .await;
    assert_eq!(r.status(), 202);
    let other_case = stack
        .decided("S7's case", || async {
            let v: Value = stack.get(&other.counsellor, "/v1/cases").await.json();
            v["cases"]
                .as_array()?
                .iter()
                .find(|c| c["student_no"] == "S7")
                .and_then(|c| c["id"].as_str().map(str::to_owned))
        })
        .await;
    for token in [&sch.leader, &sch.teacher_c1, &sch.crisis_team] {
        indistinguishable(
            "another school's case",
            &answer(stack.get(token, &format!("/v1/cases/{other_case}")).await).await,
            &answer(stack.get(token, &format!("/v1/cases/{random}")).await).await,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_class_or_schools_student_is_answered_as_one_that_does_not_exist_on_sqlite() {
    another_class_or_schools_student_is_answered_as_one_that_does_not_exist(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_class_or_schools_student_is_answered_as_one_that_does_not_exist_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        another_class_or_schools_student_is_answered_as_one_that_does_not_exist(db).await;
    }
}
