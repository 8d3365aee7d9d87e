//! Scope (issue #13, items 2, 3, 4): school codes that differ only in CJK
//! characters never share a subject or each other's records; dead letters
//! without a school are the deployment admin's; a role that reads cases
//! given through the API waits for a second person of the school. (A
//! school's first crisis team confirmed by the deployment admin is tested
//! in-process: `crates/sanyu-gateway/tests/routes/role_grants.rs`.)

use std::time::Duration;

use async_nats::jetstream;
use sanyu_domain::{RiskLevel, Role, student_partition};
use sanyu_e2e::Stack;
use sanyu_e2e::support::fixtures::{seed_school, staff_token};
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_events::{Payload, subjects, v1};
use sanyu_store::entities::{audit_record, staff, student};
use sanyu_store::roster::{self, ImportScope};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

fn unknown_student_report(event_id: &str, school: &str) -> Vec<u8> {
    let stranger = Uuid::now_v7();
    sanyu_events::encode(&sanyu_events::envelope(
        event_id,
        chrono::Utc::now(),
        school,
        student_partition(stranger),
        Payload::ReportSubmitted(v1::ReportSubmitted {
            report_id: Uuid::now_v7().to_string(),
            student_id: stranger.to_string(),
            class_code: "C1".into(),
            category: "low_mood".into(),
            suggested_level: sanyu_events::level_to_proto(RiskLevel::High) as i32,
            observed_at: Some(sanyu_events::timestamp(chrono::Utc::now())),
            reporter_token_id: Uuid::nil().to_string(),
            zero_report: false,
        }),
    ))
}

async fn publish(js: &jetstream::Context, subject: String, msg_id: &str, payload: Vec<u8>) {
    eventually(Duration::from_secs(20), "INTAKE stream", || async {
        js.get_stream(subjects::INTAKE_STREAM)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    js.send_publish(
        subject,
        jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(msg_id),
    )
    .await
    .expect("publish")
    .await
    .expect("publish ack");
}

async fn dead_letters(stack: &Stack, token: &str) -> Vec<Value> {
    let r = stack.get(token, "/v1/dead-letters").await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

fn event_ids(letters: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = letters
        .iter()
        .filter_map(|d| d["event_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn schools_whose_codes_differ_only_in_cjk_characters_see_only_their_own_dead_letters_cases_and_signals()
 {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    let one = seed_school(&stack.conn, "一中").await;
    let two = seed_school(&stack.conn, "二中").await;
    assert_ne!(subjects::token("一中"), subjects::token("二中"));
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let js = jetstream::new(stack.nats.client().await);

    // A case and its signal at 一中, through the API.
    let r = stack
        .post_report(&one.teacher_c1, &Stack::report_body("S1", "high", "x"))
        .await;
    assert_eq!(r.status(), 202);
    // A report about a student nobody knows at 二中: a dead letter of 二中.
    publish(
        &js,
        subjects::report_submitted("二中", 0),
        "report:stranger-二中",
        unknown_student_report("report:stranger-二中", "二中"),
    )
    .await;

    let cases: Vec<Value> = eventually(Duration::from_secs(30), "一中 case", || async {
        let v: Value = stack
            .get(&one.crisis_team, "/v1/cases")
            .await
            .json()
            .await
            .ok()?;
        let cases = v["cases"].as_array()?.clone();
        (!cases.is_empty()).then_some(cases)
    })
    .await;
    assert_eq!(cases.len(), 1);
    let letters = eventually(Duration::from_secs(30), "二中 dead letter", || async {
        let v = dead_letters(&stack, &two.crisis_team).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(event_ids(&letters), ["report:stranger-二中"]);

    // 一中's crisis team and admin never see 二中's dead letter, nor resolve it.
    assert!(dead_letters(&stack, &one.crisis_team).await.is_empty());
    assert!(dead_letters(&stack, &one.admin).await.is_empty());
    let id = letters[0]["id"].as_str().expect("id");
    let r = stack
        .post_json(
            &one.crisis_team,
            &format!("/v1/dead-letters/{id}/resolve"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 404);

    // 二中 sees none of 一中's cases or signals.
    let v: Value = stack
        .get(&two.crisis_team, "/v1/cases")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["cases"].as_array().map(Vec::len), Some(0), "{v}");
    let case_id = cases[0]["id"].as_str().expect("case id");
    let r = stack
        .get(&two.crisis_team, &format!("/v1/cases/{case_id}"))
        .await;
    assert_eq!(r.status(), 404);
    let s1 = student::Entity::find()
        .filter(student::Column::StudentNo.eq("S1"))
        .all(&stack.conn)
        .await
        .expect("students");
    let one_school = roster::school_by_code(&stack.conn, "一中")
        .await
        .expect("school")
        .expect("一中");
    let s1 = s1
        .into_iter()
        .find(|s| s.school_id == one_school.id)
        .expect("S1 of 一中");
    let path = format!("/v1/students/{}/timeline", s1.id);
    let own: Value = stack
        .get(&one.counsellor, &path)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        own["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "case_signal")),
        "{own}"
    );
    assert_eq!(stack.get(&two.counsellor, &path).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roster_import_with_a_school_code_that_is_not_one_word_is_refused_with_its_line() {
    let db = TestDb::sqlite();
    let conn = db.connect().await;
    let csv = "school_code,school_name,grade_code,grade_name,class_code,class_name,student_no,student_name\n\
               一中,一中,G1,G1,C1,C1,S1,Student One\n\
               一中.分校,分校,G1,G1,C1,C1,S2,Student Two\n\
               一 中,x,G1,G1,C1,C1,S3,Student Three\n\
               二\u{200B}中,x,G1,G1,C1,C1,S4,Student Four\n";
    let csv = format!("{csv}{},x,G1,G1,C1,C1,S5,Student Five\n", "中".repeat(33));
    let txn = sanyu_store::begin_write(&conn).await.expect("begin");
    let summary = roster::import_students(&*txn, csv.as_bytes(), ImportScope::Operator)
        .await
        .expect("import");
    txn.commit().await.expect("commit");
    assert_eq!(summary.created, 1, "{summary:?}");
    let refused: Vec<(u64, Option<String>)> = summary
        .errors
        .iter()
        .map(|e| (e.line, e.field.clone()))
        .collect();
    let school_code = Some("school_code".to_owned());
    assert_eq!(
        refused,
        [
            (3, school_code.clone()),
            (4, school_code.clone()),
            (5, school_code.clone()),
            (6, school_code)
        ],
        "{summary:?}"
    );
    assert!(summary.errors[0].message.contains("letters, digits"));
    assert!(summary.errors[3].message.contains("at most 32"));
    assert!(
        roster::school_by_code(&conn, "一中.分校")
            .await
            .expect("lookup")
            .is_none()
    );
}

async fn school_less_dead_letters_are_the_deployment_admins(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let js = jetstream::new(stack.nats.client().await);
    let deployment = sanyu_store::tokens::issue_deployment(
        &stack.conn,
        Some("test".into()),
        chrono::Duration::days(1),
    )
    .await
    .expect("deployment token")
    .secret;
    // Unreadable: no school can be told from its body (its subject names SCH1).
    publish(
        &js,
        "sanyu.intake.report.SCH1.0".to_owned(),
        "garbage",
        b"\xff\x00 not protobuf".to_vec(),
    )
    .await;
    publish(
        &js,
        subjects::report_submitted("SCH1", 0),
        "report:stranger-1",
        unknown_student_report("report:stranger-1", "SCH1"),
    )
    .await;
    publish(
        &js,
        subjects::report_submitted("SCH2", 0),
        "report:stranger-2",
        unknown_student_report("report:stranger-2", "SCH2"),
    )
    .await;
    let all = eventually(Duration::from_secs(30), "three dead letters", || async {
        let v = dead_letters(&stack, &deployment).await;
        (v.len() >= 3).then_some(v)
    })
    .await;
    assert_eq!(
        event_ids(&all),
        ["garbage", "report:stranger-1", "report:stranger-2"]
    );
    let garbage = all
        .iter()
        .find(|d| d["event_id"] == "garbage")
        .expect("garbage");
    assert_eq!(garbage["school_id"], Value::Null);
    for (school, own) in [
        (&stack.school, "report:stranger-1"),
        (&stack.other_school, "report:stranger-2"),
    ] {
        for token in [&school.crisis_team, &school.admin] {
            assert_eq!(event_ids(&dead_letters(&stack, token).await), [own]);
        }
        let id = garbage["id"].as_str().expect("id");
        let r = stack
            .post_json(
                &school.crisis_team,
                &format!("/v1/dead-letters/{id}/resolve"),
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), 404);
    }
    // The deployment token reads no school's cases or roster.
    assert_eq!(stack.get(&deployment, "/v1/cases").await.status(), 403);
    let r = stack
        .post_csv(
            &deployment,
            "/v1/roster/staff",
            "school_code,staff_no,name,role\nSCH1,Z1,Z,crisis_team\n",
        )
        .await;
    assert_eq!(r.status(), 403);
    // It resolves the school-less one (audited).
    let id = garbage["id"].as_str().expect("id");
    let r = stack
        .post_json(
            &deployment,
            &format!("/v1/dead-letters/{id}/resolve"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let audited = audit_record::Entity::find()
        .filter(audit_record::Column::Action.eq("dead_letters.resolve"))
        .filter(audit_record::Column::Target.eq(format!("dead_letter:{id}")))
        .one(&stack.conn)
        .await
        .expect("audit");
    assert!(audited.is_some_and(|a| a.school_id.is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn school_less_dead_letters_are_the_deployment_admins_on_sqlite() {
    school_less_dead_letters_are_the_deployment_admins(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn school_less_dead_letters_are_the_deployment_admins_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        school_less_dead_letters_are_the_deployment_admins(db).await;
    }
}

fn mail_to(stack: &Stack, to: &str, needle: &str) -> usize {
    stack
        .smtp
        .received()
        .iter()
        .filter(|m| m.to.iter().any(|t| t.contains(to)) && m.text().contains(needle))
        .count()
}

async fn staff_id(stack: &Stack, no: &str) -> Uuid {
    let school = roster::school_by_code(&stack.conn, "SCH1")
        .await
        .expect("school")
        .expect("SCH1");
    staff::Entity::find()
        .filter(staff::Column::SchoolId.eq(school.id))
        .filter(staff::Column::StaffNo.eq(no))
        .one(&stack.conn)
        .await
        .expect("staff")
        .expect(no)
        .id
}

async fn admin_grants_themself_case_access(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    stack.start_notifier();
    let admin = staff_token(&stack.conn, Role::Admin, "SCH1", None, Some("A1")).await;
    let a1 = staff_id(&stack, "A1").await;

    // The admin re-imports their own staff row as crisis_team.
    let r = stack
        .post_csv(
            &admin,
            "/v1/roster/staff",
            "school_code,staff_no,name,role,class_code,phone,email\n\
             SCH1,A1,Admin One,crisis_team,,13900000006,admin@sch1.test\n",
        )
        .await;
    assert_eq!(r.status(), 200);
    let summary: Value = r.json().await.expect("json");
    let grants = summary["pending_role_grants"].as_array().expect("grants");
    assert_eq!(grants.len(), 1, "{summary}");
    assert_eq!(grants[0]["line"], 2);
    assert_eq!(grants[0]["role"], "crisis_team");
    let grant = grants[0]["grant_id"].as_str().expect("grant id").to_owned();

    // Not in effect: still admin on the roster, no token that reads cases
    // can be issued for them, and no case email reaches them.
    let row = staff::Entity::find_by_id(a1)
        .one(&stack.conn)
        .await
        .expect("staff")
        .expect("A1");
    assert_eq!(row.role, "admin");
    let refused = sanyu_store::tokens::issue(
        &stack.conn,
        sanyu_store::tokens::TokenRequest {
            role: Role::CrisisTeam,
            school_code: "SCH1".into(),
            class_code: None,
            staff_no: Some("A1".into()),
            label: None,
            ttl: chrono::Duration::days(1),
        },
    )
    .await;
    assert!(refused.is_err(), "a crisis-team token for a pending grant");
    assert_eq!(stack.get(&admin, "/v1/cases").await.status(), 403);

    // In the audit log, and announced to the leader and the crisis team.
    let audited = audit_record::Entity::find()
        .filter(audit_record::Column::Action.eq("role_grants.request"))
        .filter(audit_record::Column::Target.eq(format!("role_grant:{grant}")))
        .one(&stack.conn)
        .await
        .expect("audit")
        .expect("role grant request audited");
    assert_eq!(audited.actor_staff_id, Some(a1));
    eventually(Duration::from_secs(20), "announcement", || async {
        (mail_to(&stack, "leader@sch1.test", &grant) == 1
            && mail_to(&stack, "crisis@sch1.test", &grant) == 1)
            .then_some(())
    })
    .await;
    assert_eq!(mail_to(&stack, "admin@sch1.test", &grant), 0);

    // A critical report: the crisis team is told, the admin is not.
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "critical", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let cases = stack.wait_for_cases(1).await;
    let reference = cases[0]["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    eventually(
        Duration::from_secs(20),
        "case email to the crisis team",
        || async { (mail_to(&stack, "crisis@sch1.test", &reference) >= 1).then_some(()) },
    )
    .await;
    assert_eq!(mail_to(&stack, "admin@sch1.test", &reference), 0);

    // Nobody confirms a grant for themself or their own request.
    let confirm = format!("/v1/roster/role-grants/{grant}/confirm");
    let r = stack.post_json(&admin, &confirm, &json!({})).await;
    assert_eq!(r.status(), 403, "the requester (an admin)");
    let r = stack
        .post_csv(
            &admin,
            "/v1/roster/staff",
            "school_code,staff_no,name,role,class_code,phone,email\n\
             SCH1,X1,Crisis Lead,leader,,13900000004,crisis@sch1.test\n",
        )
        .await;
    let summary: Value = r.json().await.expect("json");
    let own = summary["pending_role_grants"][0]["grant_id"]
        .as_str()
        .expect("grant for X1")
        .to_owned();
    let r = stack
        .post_json(
            &stack.school.crisis_team,
            &format!("/v1/roster/role-grants/{own}/confirm"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 403, "the grantee confirming their own grant");
    // Another school's crisis team cannot see or decide it.
    let r = stack
        .post_json(&stack.other_school.crisis_team, &confirm, &json!({}))
        .await;
    assert_eq!(r.status(), 404);

    // The leader and crisis team list the pending grants.
    let listed: Vec<Value> = stack
        .get(&stack.school.leader, "/v1/roster/role-grants")
        .await
        .json()
        .await
        .expect("json");
    assert!(
        listed
            .iter()
            .any(|g| g["id"] == json!(grant) && g["status"] == "pending")
    );
    assert_eq!(
        stack.get(&admin, "/v1/roster/role-grants").await.status(),
        403
    );

    // A crisis-team member confirms: the role works.
    let r = stack
        .post_json(&stack.school.crisis_team, &confirm, &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let decided: Value = r.json().await.expect("json");
    assert_eq!(decided["status"], "confirmed");
    let r = stack
        .post_json(&stack.school.crisis_team, &confirm, &json!({}))
        .await;
    assert_eq!(r.status(), 409, "decided once");
    assert!(
        audit_record::Entity::find()
            .filter(audit_record::Column::Action.eq("role_grants.confirm"))
            .filter(audit_record::Column::Target.eq(format!("role_grant:{grant}")))
            .one(&stack.conn)
            .await
            .expect("audit")
            .is_some()
    );
    let crisis_a1 = staff_token(&stack.conn, Role::CrisisTeam, "SCH1", None, Some("A1")).await;
    assert_eq!(stack.get(&crisis_a1, "/v1/cases").await.status(), 200);
    eventually(Duration::from_secs(20), "granted announcement", || async {
        (mail_to(&stack, "leader@sch1.test", &grant) == 2).then_some(())
    })
    .await;

    // Taking the role away takes effect at once: the token stops working.
    let r = stack
        .post_csv(
            &admin,
            "/v1/roster/staff",
            "school_code,staff_no,name,role,class_code,phone,email\n\
             SCH1,A1,Admin One,admin,,13900000006,admin@sch1.test\n",
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(stack.get(&crisis_a1, "/v1/cases").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_who_imports_themself_as_crisis_team_reads_no_case_until_another_person_confirms_on_sqlite()
 {
    admin_grants_themself_case_access(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_who_imports_themself_as_crisis_team_reads_no_case_until_another_person_confirms_on_postgres()
 {
    if let Some(db) = TestDb::postgres().await {
        admin_grants_themself_case_access(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_the_operator_gives_through_the_cli_is_in_effect_audited_and_announced() {
    let mut stack = Stack::new(TestDb::sqlite()).await;
    stack.start_gateway().await;
    stack.start_notifier();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("staff.csv");
    std::fs::write(
        &file,
        "school_code,staff_no,name,role,class_code,phone,email\n\
         SCH1,A1,Admin One,crisis_team,,13900000006,admin@sch1.test\n",
    )
    .expect("write");
    let out = std::process::Command::new(sanyu_e2e::support::binary("sanyu"))
        .args(["roster", "import", "--staff"])
        .arg(&file)
        .envs(stack.env())
        .output()
        .expect("run sanyu");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a1 = staff_id(&stack, "A1").await;
    let row = staff::Entity::find_by_id(a1)
        .one(&stack.conn)
        .await
        .expect("staff")
        .expect("A1");
    assert_eq!(
        row.role, "crisis_team",
        "the operator's import is in effect"
    );
    let grant = sanyu_store::entities::role_grant::Entity::find()
        .filter(sanyu_store::entities::role_grant::Column::StaffId.eq(a1))
        .one(&stack.conn)
        .await
        .expect("grant")
        .expect("recorded");
    assert_eq!(grant.status, "confirmed");
    assert!(
        audit_record::Entity::find()
            .filter(audit_record::Column::Action.eq("role_grants.operator"))
            .filter(audit_record::Column::Target.eq(format!("role_grant:{}", grant.id)))
            .one(&stack.conn)
            .await
            .expect("audit")
            .is_some()
    );
    let id = grant.id.to_string();
    eventually(Duration::from_secs(20), "announcement", || async {
        (mail_to(&stack, "leader@sch1.test", &id) == 1).then_some(())
    })
    .await;
}
