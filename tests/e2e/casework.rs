//! The crisis team's work on a case through the real gateway: the lifecycle
//! with every action, the timeline, the key population, the student's
//! history, and the queue. Illegal transitions (409 with the allowed
//! actions), the route × role × scope matrix of case work and watch entries
//! are tested in-process: `crates/sanyu-gateway/tests/routes/casework.rs`.

use std::collections::HashMap;
use std::time::Duration;

use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_store::entities::{audit_record, case, guardian, staff, student};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

/// Ids of the seeded people and places.
struct Ids {
    staff: HashMap<(String, String), Uuid>,
    students: HashMap<(String, String), Uuid>,
}

impl Ids {
    async fn load(stack: &Stack) -> Self {
        let schools: HashMap<Uuid, String> = sanyu_store::entities::school::Entity::find()
            .all(&stack.conn)
            .await
            .expect("schools")
            .into_iter()
            .map(|s| (s.id, s.code))
            .collect();
        let staff = staff::Entity::find()
            .all(&stack.conn)
            .await
            .expect("staff")
            .into_iter()
            .map(|s| ((schools[&s.school_id].clone(), s.staff_no), s.id))
            .collect();
        let students = student::Entity::find()
            .all(&stack.conn)
            .await
            .expect("students")
            .into_iter()
            .map(|s| ((schools[&s.school_id].clone(), s.student_no), s.id))
            .collect();
        Self { staff, students }
    }

    fn staff(&self, school: &str, no: &str) -> Uuid {
        self.staff[&(school.to_owned(), no.to_owned())]
    }

    fn student(&self, school: &str, no: &str) -> Uuid {
        self.students[&(school.to_owned(), no.to_owned())]
    }
}

/// File a report and wait for the case it opens; returns the case id.
async fn case_for(
    stack: &Stack,
    token: &str,
    reader: &str,
    student_no: &str,
    level: &str,
) -> String {
    let before = count_cases(stack, reader).await;
    let r = stack
        .post_report(
            token,
            &Stack::report_body(student_no, level, "CANARY-NARRATIVE"),
        )
        .await;
    assert_eq!(r.status(), 202);
    eventually(Duration::from_secs(20), "case opened", || async {
        let v: Value = stack.get(reader, "/v1/cases").await.json().await.ok()?;
        let cases = v["cases"].as_array()?;
        if cases.len() <= before {
            return None;
        }
        cases
            .iter()
            .find(|c| c["student_no"] == student_no && c["status"] != "closed")
            .and_then(|c| c["id"].as_str().map(str::to_owned))
    })
    .await
}

async fn count_cases(stack: &Stack, reader: &str) -> usize {
    let v: Value = stack
        .get(reader, "/v1/cases")
        .await
        .json()
        .await
        .expect("json");
    v["cases"].as_array().map_or(0, Vec::len)
}

async fn status_and_body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn detail(stack: &Stack, token: &str, case: &str) -> Value {
    stack
        .get(token, &format!("/v1/cases/{case}"))
        .await
        .json()
        .await
        .expect("case json")
}

async fn audit_count(stack: &Stack, action: &str) -> u64 {
    audit_record::Entity::find()
        .filter(audit_record::Column::Action.eq(action))
        .count(&stack.conn)
        .await
        .expect("count")
}

async fn a_case_is_worked_from_open_to_closed_and_reopened(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let ids = Ids::load(&stack).await;
    let sch = stack.school.clone();
    let k1 = ids.staff(&sch.code, "K1");
    let case = case_for(&stack, &sch.teacher_c1, &sch.counsellor, "S1", "critical").await;

    // Nobody closes a case nobody has taken.
    let (code, body) = status_and_body(
        stack
            .act(
                &sch.crisis_team,
                &case,
                "close",
                json!({"outcome": "resolved"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(body["error"]["allowed"], json!(["acknowledge"]));
    // Nor writes on it before acknowledging.
    let (code, _) = status_and_body(
        stack
            .act(&sch.crisis_team, &case, "notes", json!({"text": "x"}))
            .await,
    )
    .await;
    assert_eq!(code, 409);

    // A counsellor acknowledges: the ladder stops and the case is theirs.
    let before = audit_count(&stack, "case.acknowledge").await;
    let (code, body) = status_and_body(
        stack
            .act(&sch.counsellor, &case, "acknowledge", json!({}))
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "acknowledged");
    assert_eq!(body["ladder_state"], "stopped");
    assert_eq!(body["assignee_staff_id"], k1.to_string());
    assert_eq!(audit_count(&stack, "case.acknowledge").await, before + 1);
    let (code, body) = status_and_body(
        stack
            .act(&sch.counsellor, &case, "acknowledge", json!({}))
            .await,
    )
    .await;
    assert_eq!(code, 409, "acknowledged twice: {body}");

    // The other counsellor may not write on K1's case.
    let (code, _) = status_and_body(
        stack
            .act(&sch.counsellor2, &case, "notes", json!({"text": "x"}))
            .await,
    )
    .await;
    assert_eq!(code, 403);

    // Notes start the work (in_progress) and are sealed at rest.
    let (code, body) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "notes",
                json!({"text": "CANARY-NOTE talked with S1"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "in_progress");

    // Guardian contact, and a recorded decision not to contact the other guardian.
    let g = guardian::Entity::find()
        .filter(guardian::Column::StudentId.eq(ids.student(&sch.code, "S1")))
        .one(&stack.conn)
        .await
        .expect("q")
        .expect("guardian");
    let (code, body) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "guardian-contacts",
                json!({"guardian_id": g.id, "channel": "phone", "outcome": "reached"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "guardian-contacts",
                json!({"contacted": false, "reason": "CANARY-REASON risk from home"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "guardian-contacts",
                json!({"contacted": false}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 422, "a decision not to contact needs its reason");
    let other_g = guardian::Entity::find()
        .filter(guardian::Column::StudentId.eq(ids.student(&sch.code, "S2")))
        .one(&stack.conn)
        .await
        .expect("q")
        .expect("guardian");
    let (code, _) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "guardian-contacts",
                json!({"guardian_id": other_g.id, "channel": "phone", "outcome": "reached"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 422, "another student's guardian");

    // Referral (转介) → referred; then receipt and return-to-school assessment.
    let (code, body) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "referrals",
                json!({"institution": "City Mental Health Centre", "referred_on": "2026-03-02"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "referred");
    let referral = body["created_id"].as_str().expect("referral id").to_owned();
    let (code, body) = status_and_body(
        stack
            .act(&sch.counsellor, &case, "referrals", json!({
                "referral_id": referral, "institution": "City Mental Health Centre", "referred_on": "2026-03-02",
                "receipt_confirmed": true, "return_assessment": {"assessed_on": "2026-03-20", "result": "fit_to_return"}}))
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "referred");

    // Follow-up (重点关注) → monitoring; the student is on the key-population list.
    let due = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (code, body) = status_and_body(
        stack
            .act(&sch.counsellor, &case, "follow-ups", json!({"due_at": due}))
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "monitoring");
    let follow_up = body["created_id"]
        .as_str()
        .expect("follow-up id")
        .to_owned();
    let kp: Value = stack
        .get(&sch.counsellor, "/v1/key-population")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(kp["students"][0]["student_no"], "S1", "{kp}");
    assert_eq!(kp["students"][0]["overdue"], true);
    let kp_leader: Value = stack
        .get(&sch.leader, "/v1/key-population")
        .await
        .json()
        .await
        .expect("json");
    assert!(
        kp_leader["students"][0].get("student_name").is_none(),
        "{kp_leader}"
    );
    let (code, _) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "follow-ups",
                json!({"follow_up_id": follow_up}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 422, "done needs an outcome");
    let (code, _) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "follow-ups",
                json!({"follow_up_id": follow_up, "outcome": "CANARY-OUTCOME calmer"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200);
    let kp: Value = stack
        .get(&sch.counsellor, "/v1/key-population")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(kp["students"], json!([]), "done follow-ups leave the list");

    // A person lowers the level, with a reason; an unknown level is refused.
    let (code, body) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "level",
                json!({"level": "high", "reason": "CANARY-LEVEL safer now"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["level"], "high");
    let (code, _) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "level",
                json!({"level": "severe", "reason": "x"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 422);

    // Close; nothing but reopen afterwards.
    let (code, body) = status_and_body(
        stack
            .act(
                &sch.counsellor,
                &case,
                "close",
                json!({"outcome": "resolved"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "closed");
    assert_eq!(body["allowed_actions"], json!(["reopen"]));
    let (code, body) = status_and_body(
        stack
            .act(&sch.counsellor, &case, "notes", json!({"text": "late"}))
            .await,
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(body["error"]["allowed"], json!(["reopen"]));

    // Reopened: taken again like a new case, the ladder runs.
    let (code, body) = status_and_body(
        stack
            .act(
                &sch.crisis_team,
                &case,
                "reopen",
                json!({"reason": "CANARY-REOPEN new signs"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "open");
    assert_eq!(body["ladder_state"], "running");

    // The timeline: every action with who and when, in order; texts for the case workers only.
    let d = detail(&stack, &sch.counsellor, &case).await;
    let actions: Vec<&str> = d["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|a| a["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        vec![
            "acknowledge",
            "note",
            "guardian_contact",
            "guardian_contact",
            "referral",
            "referral_update",
            "follow_up",
            "follow_up_done",
            "level",
            "close",
            "reopen"
        ]
    );
    // Each action emitted its own case event (outbox), none lost to a shared id.
    let events = sanyu_store::entities::outbox::Entity::find()
        .filter(sanyu_store::entities::outbox::Column::EventId.starts_with("case.action:"))
        .count(&stack.conn)
        .await
        .expect("count");
    assert_eq!(events, actions.len() as u64);
    let note = &d["timeline"][1];
    assert_eq!(note["actor_role"], "counsellor");
    assert_eq!(note["actor_staff_id"], k1.to_string());
    assert_eq!(note["text"], "CANARY-NOTE talked with S1");
    assert_eq!(d["referrals"][0]["receipt_confirmed"], true);
    assert_eq!(d["referrals"][0]["return_assessment"], "fit_to_return");
    assert_eq!(d["follow_ups"][0]["outcome"], "CANARY-OUTCOME calmer");
    let for_leader = detail(&stack, &sch.leader, &case).await.to_string();
    let for_teacher = detail(&stack, &sch.teacher_c1, &case).await.to_string();
    for text in [&for_leader, &for_teacher] {
        assert!(!text.contains("CANARY"), "{text}");
        assert!(
            !text.contains("Mental Health"),
            "referral institution leaks: {text}"
        );
    }

    // Note texts are encrypted at rest.
    let rows = sanyu_store::entities::case_action::Entity::find()
        .all(&stack.conn)
        .await
        .expect("rows");
    for r in rows {
        if let Some(sealed) = r.text_sealed {
            assert!(!String::from_utf8_lossy(&sealed).contains("CANARY"));
        }
    }

    // The student's history (心理档案): full for the counsellor, counts and states for a leader.
    let s1 = ids.student(&sch.code, "S1");
    let full: Value = stack
        .get(&sch.counsellor, &format!("/v1/students/{s1}/timeline"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(full["counts"]["reports"], 1);
    assert_eq!(full["counts"]["cases"], 1);
    let kinds: Vec<&str> = full["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    for kind in [
        "report",
        "case_opened",
        "case_signal",
        "case_action",
        "follow_up_done",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(full.to_string().contains("CANARY-NARRATIVE"));
    let summary: Value = stack
        .get(&sch.leader, &format!("/v1/students/{s1}/timeline"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(summary["counts"]["cases"], 1);
    assert!(summary.get("entries").is_none(), "{summary}");
    assert!(!summary.to_string().contains("CANARY"), "{summary}");
    assert!(summary.get("student_name").is_none());
    assert_eq!(audit_count(&stack, "timeline.read").await, 1);
    assert_eq!(audit_count(&stack, "timeline.summary").await, 1);
}

async fn the_queue_is_sorted_by_level_then_deadline_and_filtered(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let sch = stack.school.clone();
    let elevated = case_for(&stack, &sch.teacher_c1, &sch.counsellor, "S1", "elevated").await;
    let critical = case_for(&stack, &sch.teacher_c1, &sch.counsellor, "S2", "critical").await;
    let high = case_for(&stack, &sch.teacher_c2, &sch.counsellor, "S3", "high").await;
    let ids = |v: &Value| -> Vec<String> {
        v["cases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let all: Value = stack
        .get(&sch.crisis_team, "/v1/cases")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        ids(&all),
        vec![critical.clone(), high.clone(), elevated.clone()]
    );

    // The critical case is taken by K1; the high one's deadline has passed.
    let r = stack
        .act(&sch.counsellor, &critical, "acknowledge", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    case::Entity::update_many()
        .set(case::ActiveModel {
            ack_deadline: Set(Some(chrono::Utc::now() - chrono::Duration::minutes(5))),
            ..Default::default()
        })
        .filter(case::Column::Id.eq(Uuid::parse_str(&high).expect("uuid")))
        .exec(&stack.conn)
        .await
        .expect("overdue");
    let mine: Value = stack
        .get(&sch.counsellor, "/v1/cases?assignee=me")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ids(&mine), vec![critical.clone()]);
    let overdue: Value = stack
        .get(&sch.crisis_team, "/v1/cases?overdue=true")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ids(&overdue), vec![high.clone()]);
    let open: Value = stack
        .get(&sch.crisis_team, "/v1/cases?status=open&level=elevated")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ids(&open), vec![elevated.clone()]);
    let (code, _) = status_and_body(
        stack
            .get(&sch.crisis_team, "/v1/cases?assignee=nobody")
            .await,
    )
    .await;
    assert_eq!(code, 422);
    let own: Value = stack
        .get(&sch.crisis_team, &format!("/v1/cases?school={}", sch.code))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ids(&own).len(), 3);
    let (code, _) = status_and_body(
        stack
            .get(
                &sch.crisis_team,
                &format!("/v1/cases?school={}", stack.other_school.code),
            )
            .await,
    )
    .await;
    assert_eq!(
        code, 404,
        "another school's queue does not exist for this caller"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_is_sorted_by_level_then_deadline_and_filtered_on_sqlite() {
    the_queue_is_sorted_by_level_then_deadline_and_filtered(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_is_sorted_by_level_then_deadline_and_filtered_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_queue_is_sorted_by_level_then_deadline_and_filtered(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_is_worked_through_its_lifecycle_on_sqlite() {
    a_case_is_worked_from_open_to_closed_and_reopened(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_is_worked_through_its_lifecycle_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_case_is_worked_from_open_to_closed_and_reopened(db).await;
    }
}
