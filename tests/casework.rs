//! The crisis team's work on a case through the real gateway: the lifecycle
//! with every action, illegal transitions (409 with the allowed actions), the
//! timeline, the key population, the student's history, and the full
//! route × role × scope matrix.

use std::collections::HashMap;
use std::time::Duration;

use sanyu_domain::CaseStatus;
use sanyu_domain::lifecycle::{self, CaseAction};
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

async fn every_illegal_transition_answers_409_with_the_allowed_actions(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let sch = stack.school.clone();
    let case = case_for(&stack, &sch.teacher_c1, &sch.counsellor, "S2", "high").await;
    let case_id = Uuid::parse_str(&case).expect("uuid");
    // The endpoint and body that perform each lifecycle action.
    let endpoints: [(CaseAction, &str, Value); 5] = [
        (CaseAction::Acknowledge, "acknowledge", json!({})),
        (
            CaseAction::Refer,
            "referrals",
            json!({"institution": "H", "referred_on": "2026-03-02"}),
        ),
        (
            CaseAction::Monitor,
            "follow-ups",
            json!({"due_at": "2026-04-01T08:00:00Z"}),
        ),
        (CaseAction::Close, "close", json!({"outcome": "resolved"})),
        (CaseAction::Reopen, "reopen", json!({"reason": "again"})),
    ];
    for from in CaseStatus::ALL {
        for (action, path, body) in &endpoints {
            // Put the case in `from` (ladder stopped, assigned to nobody).
            case::Entity::update_many()
                .set(case::ActiveModel {
                    status: Set(from.as_str().to_owned()),
                    ladder_state: Set("stopped".to_owned()),
                    ..Default::default()
                })
                .filter(case::Column::Id.eq(case_id))
                .exec(&stack.conn)
                .await
                .expect("set status");
            let (code, reply) =
                status_and_body(stack.act(&sch.crisis_team, &case, path, body.clone()).await).await;
            // Work on the record starts an acknowledged case first (acknowledged → in_progress).
            let effective = if from == CaseStatus::Acknowledged
                && matches!(action, CaseAction::Refer | CaseAction::Monitor)
            {
                CaseStatus::InProgress
            } else {
                from
            };
            let legal = lifecycle::transition(effective, *action).is_ok()
                || (*action == CaseAction::Monitor && from == CaseStatus::Monitoring);
            if legal {
                assert_eq!(code, 200, "{from:?} {action:?}: {reply}");
            } else {
                assert_eq!(code, 409, "{from:?} {action:?}: {reply}");
                let allowed: Vec<String> = lifecycle::allowed_actions(from)
                    .into_iter()
                    .map(|a| a.as_str().to_owned())
                    .collect();
                assert_eq!(
                    reply["error"]["allowed"],
                    json!(allowed),
                    "{from:?} {action:?}"
                );
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The role and scope allow it (the answer is 200, 409 or 422, never 401/403/404).
    Allowed,
    Forbidden,
    /// Outside the caller's scope: answered as if it did not exist.
    Hidden,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// SCH1 class C1, assigned to counsellor K1.
    OwnClassAssigned,
    /// SCH1 class C2, unassigned.
    OtherClassUnassigned,
    /// SCH2.
    OtherSchool,
}

/// What each role may do: the matrix the API must implement, written out
/// independently of the code.
fn expected(role: &str, route: &str, target: Target) -> Expect {
    use Expect::*;
    use Target::*;
    let other_school = target == OtherSchool;
    let scoped = |e: Expect| if other_school { Hidden } else { e };
    match role {
        "monitor" | "admin" | "district" | "service" => Forbidden,
        "teacher_c1" => match route {
            "list" => Allowed,
            "get" => {
                if target == OwnClassAssigned {
                    Allowed
                } else {
                    Hidden
                }
            }
            "key_population" | "timeline" => Forbidden,
            _ => {
                if target == OwnClassAssigned {
                    Forbidden
                } else {
                    Hidden
                }
            }
        },
        "leader" => match route {
            "list" => Allowed,
            "get" | "timeline" => scoped(Allowed),
            "key_population" => Allowed,
            _ => scoped(Forbidden),
        },
        "crisis_team" => match route {
            "list" | "key_population" => Allowed,
            _ => scoped(Allowed),
        },
        "counsellor_k1" => match route {
            "list" | "key_population" => Allowed,
            "get" | "timeline" | "acknowledge" => scoped(Allowed),
            // Takes an unassigned case, keeps its own.
            "assign" => scoped(Allowed),
            _ => scoped(if target == OwnClassAssigned {
                Allowed
            } else {
                Forbidden
            }),
        },
        "counsellor_k2" => match route {
            "list" | "key_population" => Allowed,
            "get" | "timeline" | "acknowledge" => scoped(Allowed),
            "assign" => scoped(if target == OtherClassUnassigned {
                Allowed
            } else {
                Forbidden
            }),
            _ => scoped(Forbidden),
        },
        other => panic!("no expectation for {other}"),
    }
}

async fn the_route_role_scope_matrix_holds(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    stack.start_rules(&[]);
    let ids = Ids::load(&stack).await;
    let sch = stack.school.clone();
    let other = stack.other_school.clone();
    let a = case_for(&stack, &sch.teacher_c1, &sch.counsellor, "S1", "high").await;
    let b = case_for(&stack, &sch.teacher_c2, &sch.counsellor, "S3", "high").await;
    let c = case_for(&stack, &other.teacher_c1, &other.counsellor, "S1", "high").await;
    let k1 = ids.staff(&sch.code, "K1");
    let k2 = ids.staff(&sch.code, "K2");
    let cases = [
        (
            Target::OwnClassAssigned,
            a,
            ids.student(&sch.code, "S1"),
            Some(k1),
        ),
        (
            Target::OtherClassUnassigned,
            b,
            ids.student(&sch.code, "S3"),
            None,
        ),
        (Target::OtherSchool, c, ids.student(&other.code, "S1"), None),
    ];
    let roles: Vec<(&str, String, Option<Uuid>)> = vec![
        ("teacher_c1", sch.teacher_c1.clone(), None),
        ("monitor", sch.monitor_c1.clone(), None),
        ("counsellor_k1", sch.counsellor.clone(), Some(k1)),
        ("counsellor_k2", sch.counsellor2.clone(), Some(k2)),
        ("crisis_team", sch.crisis_team.clone(), None),
        ("leader", sch.leader.clone(), None),
        ("admin", sch.admin.clone(), None),
        ("district", sch.district.clone(), None),
        ("service", sch.service.clone(), None),
    ];
    let mut checked = 0;
    let mut failures = Vec::new();
    for (target, case_id, student_id, assignee) in &cases {
        let uuid = Uuid::parse_str(case_id).expect("uuid");
        for (role, token, me) in &roles {
            let actions: Vec<(&str, Value)> = vec![
                ("acknowledge", json!({})),
                ("assign", json!({"staff_id": me.unwrap_or(k1)})),
                ("notes", json!({"text": "matrix"})),
                (
                    "guardian-contacts",
                    json!({"contacted": false, "reason": "matrix"}),
                ),
                (
                    "referrals",
                    json!({"institution": "H", "referred_on": "2026-03-02"}),
                ),
                ("follow-ups", json!({"due_at": "2026-04-01T08:00:00Z"})),
                ("level", json!({"level": "critical", "reason": "matrix"})),
                ("close", json!({"outcome": "resolved"})),
                ("reopen", json!({"reason": "matrix"})),
            ];
            let mut requests: Vec<(&str, Option<Value>, String)> = vec![
                ("list", None, "/v1/cases".to_owned()),
                ("get", None, format!("/v1/cases/{case_id}")),
                ("key_population", None, "/v1/key-population".to_owned()),
                (
                    "timeline",
                    None,
                    format!("/v1/students/{student_id}/timeline"),
                ),
            ];
            for (action, body) in actions {
                requests.push((action, Some(body), format!("/v1/cases/{case_id}/{action}")));
            }
            for (route, body, path) in requests {
                // Every request sees the case in the same state.
                case::Entity::update_many()
                    .set(case::ActiveModel {
                        status: Set("in_progress".to_owned()),
                        ladder_state: Set("stopped".to_owned()),
                        assignee_staff_id: Set(*assignee),
                        level: Set("high".to_owned()),
                        level_rank: Set(3),
                        ..Default::default()
                    })
                    .filter(case::Column::Id.eq(uuid))
                    .exec(&stack.conn)
                    .await
                    .expect("reset case");
                let want = expected(role, route, *target);
                let request = match &body {
                    Some(b) => stack
                        .http
                        .post(format!("{}{path}", stack.base_url()))
                        .json(b),
                    None => stack.http.get(format!("{}{path}", stack.base_url())),
                };
                let code = request
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("send")
                    .status()
                    .as_u16();
                let ok = match want {
                    Expect::Allowed => ![401, 403, 404].contains(&code) && code < 500,
                    Expect::Forbidden => code == 403,
                    Expect::Hidden => code == 404,
                };
                checked += 1;
                if !ok {
                    failures.push(format!(
                        "{role} {route} {target:?}: expected {want:?}, got {code}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 3 * 9 * 13);
    // Another school's case never answers 403 with details.
    let (code, body) = status_and_body(
        stack
            .act(&sch.crisis_team, &cases[2].1, "notes", json!({"text": "x"}))
            .await,
    )
    .await;
    assert_eq!(code, 404);
    assert!(!body.to_string().contains(&other.code), "{body}");
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

#[tokio::test(flavor = "multi_thread")]
async fn illegal_transitions_answer_409_with_the_allowed_actions() {
    every_illegal_transition_answers_409_with_the_allowed_actions(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_route_role_scope_matrix_holds_on_sqlite() {
    the_route_role_scope_matrix_holds(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_route_role_scope_matrix_holds_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_route_role_scope_matrix_holds(db).await;
    }
}

/// A student on the rules' watch list, with a follow-up reminder, shows in
/// the key population with the entry id the reminder names; the counsellor
/// records the follow-up through the API (teachers may not, another school's
/// counsellor does not find it) and the entry leaves the list. Every call is
/// audited.
async fn a_watch_entry_is_followed_up_through_the_api(db: TestDb) {
    let mut stack = Stack::new(db).await;
    stack.start_gateway().await;
    let ids = Ids::load(&stack).await;
    let sch = stack.school.clone();
    let other = stack.other_school.clone();
    // As the rules engine writes it for a mild signal (reports start at
    // `elevated`; the engine's own tests cover that path).
    let s1 = student::Entity::find_by_id(ids.student(&sch.code, "S1"))
        .one(&stack.conn)
        .await
        .expect("student")
        .expect("S1");
    let written = sanyu_store::decisions::watch(
        &stack.conn,
        None,
        sanyu_store::decisions::NewWatch {
            student_id: s1.id,
            school_id: s1.school_id,
            class_id: s1.class_id,
            since: chrono::Utc::now(),
            follow_up_on: chrono::Utc::now().date_naive(),
            signal_id: "hotline:watch:1".into(),
            rule_id: "watch.mild".into(),
            rules_version: "test".into(),
        },
    )
    .await
    .expect("watch")
    .expect("a new entry");
    sanyu_store::timers::schedule(
        &stack.conn,
        sanyu_escalation::WatchTimer::of(&written).expect("reminder"),
    )
    .await
    .expect("schedule");
    let v: Value = stack
        .get(&sch.counsellor, "/v1/key-population")
        .await
        .json()
        .await
        .expect("json");
    let entry = v["watch_list"][0].clone();
    assert_eq!(entry["student_no"], "S1", "{entry}");
    assert_eq!(entry["rule_id"], "watch.mild");
    let id = entry["id"].as_str().expect("entry id").to_owned();
    let reminders = sanyu_store::entities::timer::Entity::find()
        .filter(sanyu_store::entities::timer::Column::Key.starts_with(format!("watch:{id}:")))
        .all(&stack.conn)
        .await
        .expect("timers");
    assert_eq!(reminders.len(), 1, "its follow-up reminder");
    assert_eq!(reminders[0].state, "pending");

    let path = format!("/v1/key-population/watch/{id}/done");
    let (code, _) =
        status_and_body(stack.post_json(&sch.teacher_c1, &path, &json!({})).await).await;
    assert_eq!(code, 403, "teachers do not record follow-ups");
    let (code, _) =
        status_and_body(stack.post_json(&other.counsellor, &path, &json!({})).await).await;
    assert_eq!(code, 404, "another school's entry is not found");
    let (code, first) =
        status_and_body(stack.post_json(&sch.counsellor, &path, &json!({})).await).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["done_by"], ids.staff(&sch.code, "K1").to_string());
    let (code, again) =
        status_and_body(stack.post_json(&sch.counsellor, &path, &json!({})).await).await;
    assert_eq!(code, 200);
    assert_eq!(
        again["done_at"], first["done_at"],
        "the first record stands"
    );
    let kp: Value = stack
        .get(&sch.counsellor, "/v1/key-population")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(kp["watch_list"], json!([]), "done entries leave the list");
    assert_eq!(audit_count(&stack, "key_population.watch_done").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_entry_is_followed_up_through_the_api_on_sqlite() {
    a_watch_entry_is_followed_up_through_the_api(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_entry_is_followed_up_through_the_api_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_watch_entry_is_followed_up_through_the_api(db).await;
    }
}
