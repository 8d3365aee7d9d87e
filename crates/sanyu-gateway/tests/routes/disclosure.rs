//! Minimal disclosure, in-process: the router on a real database and the
//! rules engine deciding in-process what the relay would carry to it (moved
//! from the end-to-end `tests/disclosure.rs`, same assertions; issue #13,
//! items 5–7):
//!
//! - head teachers and leaders see the state of a case, its level, who works
//!   it and when, on every route they can read, and nothing else: each body is
//!   checked key by key against an allow-list, and free text, screening detail,
//!   rule ids and the hotline as a source (all planted beforehand) appear
//!   nowhere in it;
//! - free text about a student is sealed at rest: after a case has been
//!   worked through every action and a hotline call logged, no planted text is
//!   anywhere in the database; each field has a length limit;
//! - another class's or school's student answers exactly as a student who does
//!   not exist, on every route that looks a student up (`existence.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::Answer;
use crate::support::stack::Stack;
use sanyu_store::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use sanyu_test_support::TestDb;
use serde_json::{Value, json};

impl Stack {
    /// Poll `check` until it returns `Some`, letting the rules engine decide
    /// the intake written so far before each look (the end-to-end test
    /// waited for the engine binary); screening imports run in the
    /// background of the gateway's state, as in the binary.
    async fn eventually<T, F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.app.decide_intake().await;
            if let Some(value) = check().await {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Planted free text: every one starts with this.
const CANARY: &str = "CANARY";

/// What must never reach a head teacher or a leader (compared lowercased):
/// planted text, screening detail, rule ids, and the hotline as a source.
const NEVER_FOR_OVERSIGHT: [&str; 12] = [
    "canary",
    "hotline",
    "phq",
    "suicide",
    "moderately_severe",
    "screening",
    "rule",
    "builtin",
    "watch.mild",
    "report.",
    "narrative",
    "referral",
];

// ---------------------------------------------------------------------------
// The planted school.

struct Planted {
    stack: Stack,
    /// S1's case (class C1): a report, a screening suicide alert, a hotline
    /// call, and every kind of work on it.
    case_s1: String,
    /// S2's case (class C1), from a zero-report incident.
    case_s2: String,
    /// An unidentified caller's case.
    case_caller: String,
    s1: String,
    s3: String,
    _spool: tempfile::TempDir,
}

/// A `multipart/form-data` screening import body.
fn screening_import(csv: &str) -> (String, Vec<u8>) {
    let boundary = "sanyu-disclosure-boundary";
    let mut body = Vec::new();
    for (name, value) in [
        ("instrument", "PHQ-9"),
        ("coding", "0-3"),
        ("administered", "2026-11-20"),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"phq9.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn ok(r: Answer, what: &str) -> Value {
    let status = r.status;
    let body: Value = r.json();
    assert!(status.is_success(), "{what}: {status} {body}");
    body
}

/// Wait for an open case of `student_no` in the counsellor's queue.
async fn case_of(stack: &Stack, student_no: &str) -> String {
    stack
        .eventually(
            Duration::from_secs(30),
            &format!("{student_no}'s case"),
            || async {
                let v: Value = stack
                    .get(&stack.school.counsellor, "/v1/cases")
                    .await
                    .json();
                v["cases"]
                    .as_array()?
                    .iter()
                    .find(|c| c["student_no"] == student_no && c["status"] != "closed")
                    .and_then(|c| c["id"].as_str().map(str::to_owned))
            },
        )
        .await
}

/// Wait until the counsellor's view of `case` satisfies `done`.
async fn wait_case(stack: &Stack, case: &str, what: &str, done: impl Fn(&Value) -> bool) {
    stack
        .eventually(Duration::from_secs(30), what, || async {
            let v: Value = stack
                .get(&stack.school.counsellor, &format!("/v1/cases/{case}"))
                .await
                .json();
            done(&v).then_some(())
        })
        .await
}

async fn plant(db: TestDb) -> Planted {
    let spool = tempfile::tempdir().expect("spool dir");
    let stack = Stack::with_midterm(db).await;
    let sch = stack.school.clone();

    // A head teacher's report about S1.
    ok(
        stack
            .post_report(
                &sch.teacher_c1,
                &Stack::report_body("S1", "high", "CANARY-NARRATIVE she gave her things away"),
            )
            .await,
        "report",
    )
    .await;
    let case_s1 = case_of(&stack, "S1").await;

    // A screening: S1 moderately severe with a positive item 9 (joins her
    // case), S3 moderate (the watch list).
    let (content_type, body) = screening_import(
        "学号,姓名,题1,题2,题3,题4,题5,题6,题7,题8,题9\n\
         S1,x,2,2,2,2,2,2,2,0,1\n\
         S3,x,2,2,2,2,2,0,0,0,0\n",
    );
    let r = stack
        .app
        .with_token(Some(&sch.counsellor))
        .post_bytes("/v1/screening-imports", &content_type, body)
        .await;
    ok(r, "screening import").await;
    wait_case(&stack, &case_s1, "the screening joins S1's case", |v| {
        v.to_string().contains("suicide_item")
    })
    .await;

    // The hotline: S1 called (joins her case); an unidentified caller.
    let call = |id: &str, student: Option<&str>, rating: &str| {
        json!({
            "call_id": id,
            "started_at": chrono::Utc::now().to_rfc3339(),
            "caller_type": if student.is_some() { "student" } else { "anonymous" },
            "student_no": student,
            "rating": rating,
            "summary": "CANARY-CALL-SUMMARY cried on the phone",
            "counsellor": "CANARY-HOTLINE-COUNSELLOR Ms Wang",
            "referral_advice": "CANARY-ADVICE see a psychiatrist",
        })
    };
    ok(
        stack
            .post_json(
                &sch.service,
                "/v1/hotline-calls",
                &call("CALL-S1", Some("S1"), "high"),
            )
            .await,
        "identified call",
    )
    .await;
    wait_case(&stack, &case_s1, "the call joins S1's case", |v| {
        v["signals"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["kind"] == "hotline.call_logged"))
    })
    .await;
    ok(
        stack
            .post_json(
                &sch.service,
                "/v1/hotline-calls",
                &call("CALL-ANON", None, "critical"),
            )
            .await,
        "unidentified call",
    )
    .await;
    let case_caller = stack
        .eventually(Duration::from_secs(30), "the caller's case", || async {
            let v: Value = stack.get(&sch.crisis_team, "/v1/cases").await.json();
            v["cases"]
                .as_array()?
                .iter()
                .find(|c| c["subject"] == "unidentified_caller")
                .and_then(|c| c["id"].as_str().map(str::to_owned))
        })
        .await;

    // Every kind of work on S1's case, each with its free text.
    let crisis = &sch.crisis_team;
    let act = |action: &'static str, body: Value| {
        let stack = &stack;
        let case = case_s1.clone();
        async move { ok(stack.act(crisis, &case, action, body).await, action).await }
    };
    act("acknowledge", json!({})).await;
    act(
        "notes",
        json!({"text": "CANARY-NOTE she talked about her mother"}),
    )
    .await;
    act(
        "guardian-contacts",
        json!({"contacted": false, "reason": "CANARY-REASON risk from home"}),
    )
    .await;
    let referral = act(
        "referrals",
        json!({"institution": "CANARY-INSTITUTION Anding Hospital", "referred_on": "2026-11-21"}),
    )
    .await;
    act(
        "referrals",
        json!({"referral_id": referral["created_id"], "institution": "CANARY-INSTITUTION Anding Hospital",
               "referred_on": "2026-11-21", "receipt_confirmed": true,
               "return_assessment": {"assessed_on": "2026-11-28", "result": "CANARY-RETURN with conditions"}}),
    )
    .await;
    let due = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let first = act("follow-ups", json!({"due_at": due})).await;
    act("follow-ups", json!({"due_at": due})).await;
    act(
        "follow-ups",
        json!({"follow_up_id": first["created_id"], "outcome": "CANARY-FOLLOWUP calmer"}),
    )
    .await;
    act(
        "level",
        json!({"level": "high", "reason": "CANARY-LEVEL safer now"}),
    )
    .await;
    act(
        "close",
        json!({"outcome": "CANARY-OUTCOME moved to her aunt", "summary": "CANARY-CLOSE-SUMMARY"}),
    )
    .await;
    act("reopen", json!({"reason": "CANARY-REOPEN new signs"})).await;

    // A class zero report with an incident about S2: a case of its own.
    let zero = ok(
        stack
            .post_json(
                &sch.teacher_c1,
                "/v1/zero-reports",
                &json!({"period_id": "midterm", "class_code": "C1", "incidents": [
                    {"student_no": "S2", "category": "self_harm", "level": "elevated",
                     "narrative": "CANARY-INCIDENT cuts on her arm"}]}),
            )
            .await,
        "zero report",
    )
    .await;
    assert_eq!(zero["incident_count"], 1);
    let case_s2 = case_of(&stack, "S2").await;

    // The watch list holds S3.
    stack
        .eventually(Duration::from_secs(30), "S3 on the watch list", || async {
            let v: Value = stack
                .get(&sch.counsellor, "/v1/key-population")
                .await
                .json();
            (v["watch_list"]
                .as_array()?
                .iter()
                .any(|w| w["student_no"] == "S3"))
            .then_some(())
        })
        .await;

    let ids: Value = stack
        .get(&sch.counsellor, &format!("/v1/cases/{case_s1}"))
        .await
        .json();
    let s1 = ids["student_id"].as_str().expect("S1's id").to_owned();
    let kp: Value = stack
        .get(&sch.counsellor, "/v1/key-population")
        .await
        .json();
    let s3 = kp["watch_list"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["student_no"] == "S3"))
        .and_then(|w| w["student_id"].as_str())
        .expect("S3's id")
        .to_owned();
    Planted {
        stack,
        case_s1,
        case_s2,
        case_caller,
        s1,
        s3,
        _spool: spool,
    }
}

// ---------------------------------------------------------------------------
// Item 5: what head teachers and leaders see.

/// Every path in a JSON body: `a.b`, `a[].c`, `a[]` for an array of scalars
/// or an empty one.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                paths(v, &p, out);
            }
        }
        Value::Array(items) => {
            let p = format!("{prefix}[]");
            if items.is_empty() {
                out.insert(p.clone());
            }
            for item in items {
                paths(item, &p, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

/// The allowed paths: `base` prefixed with `prefix`.
fn under(prefix: &str, base: &[&str]) -> Vec<String> {
    base.iter()
        .map(|k| {
            if prefix.is_empty() {
                (*k).to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        })
        .collect()
}

/// A case in the queue, as every reader of cases sees it; identity only for
/// head teachers.
fn case_summary(prefix: &str, identity: bool) -> Vec<String> {
    let mut keys = vec![
        "id",
        "reference",
        "level",
        "status",
        "subject",
        "student_id",
        "class_code",
        "opened_at",
        "updated_at",
    ];
    if identity {
        keys.extend(["student_no", "student_name"]);
    }
    under(prefix, &keys)
}

fn case_overview(identity: bool) -> Vec<String> {
    let mut keys = case_summary("", identity);
    keys.extend(under(
        "",
        &[
            "assignee_staff_id",
            "ladder_state",
            "ack_deadline",
            "acknowledged_at",
            "closed_at",
            "timeline[]",
            "timeline[].action",
            "timeline[].actor_role",
            "timeline[].actor_staff_id",
            "timeline[].status_after",
            "timeline[].at",
            "follow_ups[]",
            "follow_ups[].due_at",
            "follow_ups[].done_at",
        ],
    ));
    keys
}

fn period(prefix: &str) -> Vec<String> {
    under(
        prefix,
        &[
            "id",
            "name",
            "kind",
            "opens_at",
            "deadline",
            "levels[]",
            "past_deadline",
        ],
    )
}

/// Check one body a head teacher or leader got: every key allowed, nothing
/// planted, no screening detail, rule or source anywhere.
fn assert_discloses_only(who: &str, route: &str, body: &Value, allowed: &[String]) {
    let mut seen = BTreeSet::new();
    paths(body, "", &mut seen);
    let allowed: BTreeSet<&str> = allowed.iter().map(String::as_str).collect();
    let extra: Vec<&String> = seen
        .iter()
        .filter(|p| !allowed.contains(p.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "{who} {route}: keys not allowed {extra:?} in {body}"
    );
    let text = body.to_string().to_lowercase();
    for never in NEVER_FOR_OVERSIGHT {
        assert!(!text.contains(never), "{who} {route}: `{never}` in {body}");
    }
}

async fn read(stack: &Stack, token: &str, path: &str) -> Value {
    let r = stack.get(token, path).await;
    let status = r.status();
    let body: Value = r.json();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn head_teachers_and_leaders_see_state_level_who_and_when_only(db: TestDb) {
    let p = plant(db).await;
    let stack = &p.stack;
    let sch = stack.school.clone();

    // The planted texts and details are there, for those who work cases.
    let full = read(stack, &sch.counsellor, &format!("/v1/cases/{}", p.case_s1))
        .await
        .to_string();
    for planted in [
        "CANARY-NARRATIVE",
        "CANARY-NOTE",
        "CANARY-OUTCOME",
        "CANARY-RETURN",
        "CANARY-INSTITUTION",
        "CANARY-FOLLOWUP",
        "suicide_item",
        "moderately_severe",
        "\"hotline\"",
    ] {
        assert!(full.contains(planted), "{planted} missing from {full}");
    }

    // The head teacher of C1: the queue, both cases of the class, periods.
    let teacher = &sch.teacher_c1;
    let list = read(stack, teacher, "/v1/cases").await;
    assert_eq!(list["cases"].as_array().map(Vec::len), Some(2), "{list}");
    assert_discloses_only("teacher", "cases", &list, &case_summary("cases[]", true));
    for case in [&p.case_s1, &p.case_s2] {
        let v = read(stack, teacher, &format!("/v1/cases/{case}")).await;
        assert_discloses_only("teacher", "case", &v, &case_overview(true));
    }
    let v = read(stack, teacher, &format!("/v1/cases/{}", p.case_s1)).await;
    assert_eq!(v["student_no"], "S1", "the head teacher knows the student");
    let steps: Vec<&str> = v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|s| s["action"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "acknowledge",
            "work",
            "work",
            "work",
            "work",
            "work",
            "work",
            "work",
            "level",
            "close",
            "reopen"
        ],
        "who did what step and when, never what was written"
    );
    assert_eq!(v["follow_ups"].as_array().map(Vec::len), Some(2));
    let periods = read(stack, teacher, "/v1/zero-report-periods").await;
    assert_discloses_only("teacher", "periods", &periods, &period("periods[]"));

    // A leader: the queue, every case, the key population, timelines,
    // periods and compliance.
    let leader = &sch.leader;
    let list = read(stack, leader, "/v1/cases").await;
    assert_eq!(list["cases"].as_array().map(Vec::len), Some(3), "{list}");
    assert_discloses_only("leader", "cases", &list, &case_summary("cases[]", false));
    for case in [&p.case_s1, &p.case_s2, &p.case_caller] {
        let v = read(stack, leader, &format!("/v1/cases/{case}")).await;
        assert_discloses_only("leader", "case", &v, &case_overview(false));
    }
    let kp = read(stack, leader, "/v1/key-population").await;
    assert_eq!(kp["students"].as_array().map(Vec::len), Some(1), "{kp}");
    assert_eq!(kp["watch_list"].as_array().map(Vec::len), Some(1), "{kp}");
    let mut allowed = under(
        "students[]",
        &[
            "student_id",
            "class_code",
            "case_id",
            "case_reference",
            "level",
            "next_follow_up_due",
            "overdue",
            "open_follow_ups",
        ],
    );
    allowed.extend(under(
        "watch_list[]",
        &[
            "student_id",
            "class_code",
            "since",
            "follow_up_on",
            "overdue",
        ],
    ));
    assert_discloses_only("leader", "key population", &kp, &allowed);
    for student in [&p.s1, &p.s3] {
        let v = read(stack, leader, &format!("/v1/students/{student}/timeline")).await;
        let mut allowed = under("", &["student_id", "cases[]"]);
        allowed.extend(under(
            "cases[]",
            &["reference", "level", "status", "opened_at", "closed_at"],
        ));
        allowed.extend(under(
            "counts",
            &["reports", "cases", "open_follow_ups", "done_follow_ups"],
        ));
        assert_discloses_only("leader", "timeline", &v, &allowed);
    }
    let periods = read(stack, leader, "/v1/zero-report-periods").await;
    assert_discloses_only("leader", "periods", &periods, &period("periods[]"));
    let compliance = read(stack, leader, "/v1/zero-report-periods/midterm/compliance").await;
    let mut allowed = period("period");
    allowed.extend(under("", &["scope", "missing[]"]));
    allowed.extend(under("counts", &["incidents", "zero", "missing", "late"]));
    allowed.extend(under(
        "units[]",
        &["unit", "state", "late", "version", "submitted_at"],
    ));
    assert_discloses_only("leader", "compliance", &compliance, &allowed);
    let csv = stack
        .get(
            leader,
            "/v1/zero-report-periods/midterm/compliance?format=csv",
        )
        .await
        .text();
    assert!(
        !csv.to_lowercase().contains(&CANARY.to_lowercase()),
        "{csv}"
    );

    // What they are answered when they write.
    let accepted = ok(
        stack
            .post_json(
                leader,
                "/v1/zero-reports",
                &json!({"period_id": "midterm", "incidents": [
                    {"student_no": "S3", "category": "other", "level": "elevated",
                     "narrative": "CANARY-SCHOOL-INCIDENT"}]}),
            )
            .await,
        "school zero report",
    )
    .await;
    let zero_keys = under(
        "",
        &[
            "id",
            "period_id",
            "unit",
            "version",
            "state",
            "late",
            "incident_count",
            "report_ids[]",
        ],
    );
    assert_discloses_only("leader", "zero report", &accepted, &zero_keys);
    let accepted = ok(
        stack
            .post_report(
                teacher,
                &Stack::report_body("S1", "elevated", "CANARY-SECOND"),
            )
            .await,
        "second report",
    )
    .await;
    assert_discloses_only(
        "teacher",
        "report",
        &accepted,
        &under("", &["report_id", "event_id", "status"]),
    );

    // The routes with more stay closed to them.
    for (token, path) in [
        (teacher, "/v1/key-population".to_owned()),
        (teacher, format!("/v1/students/{}/timeline", p.s1)),
        (
            leader,
            format!("/v1/screening-imports/{}/results", uuid::Uuid::now_v7()),
        ),
        (
            teacher,
            format!("/v1/screening-imports/{}/results", uuid::Uuid::now_v7()),
        ),
        (leader, "/v1/dead-letters".to_owned()),
    ] {
        let r = stack.get(token, &path).await;
        assert_eq!(r.status(), 403, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn head_teachers_and_leaders_see_state_level_who_and_when_only_on_sqlite() {
    head_teachers_and_leaders_see_state_level_who_and_when_only(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn head_teachers_and_leaders_see_state_level_who_and_when_only_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        head_teachers_and_leaders_see_state_level_who_and_when_only(db).await;
    }
}

// ---------------------------------------------------------------------------
// Item 6: free text at rest.

/// Every row of every table, as text, that contains `needle`: SQLite's file
/// and WAL read as bytes; PostgreSQL's rows rendered as text (byte columns
/// decoded as escaped text, so a clear value in a byte column counts too).
async fn stored_anywhere(stack: &Stack, needle: &str) -> Vec<String> {
    let conn = &stack.conn;
    if conn.get_database_backend() == DatabaseBackend::Sqlite {
        let url = stack.app.db_url();
        let path = url
            .strip_prefix("sqlite://")
            .and_then(|p| p.split('?').next())
            .expect("sqlite path");
        return [path.to_owned(), format!("{path}-wal")]
            .into_iter()
            .filter(|f| {
                std::fs::read(f)
                    .map(|b| String::from_utf8_lossy(&b).contains(needle))
                    .unwrap_or(false)
            })
            .collect();
    }
    let columns = conn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT table_name::text, column_name::text, data_type::text \
             FROM information_schema.columns WHERE table_schema = current_schema()",
        ))
        .await
        .expect("columns");
    let mut found = Vec::new();
    for c in columns {
        let table: String = c.try_get_by_index(0).expect("table");
        let column: String = c.try_get_by_index(1).expect("column");
        let kind: String = c.try_get_by_index(2).expect("type");
        let value = if kind == "bytea" {
            format!("encode(\"{column}\", 'escape')")
        } else {
            format!("\"{column}\"::text")
        };
        let sql = format!("SELECT count(*) FROM \"{table}\" WHERE {value} LIKE '%{needle}%'");
        let row = conn
            .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
            .await
            .expect("scan")
            .expect("count");
        let n: i64 = row.try_get_by_index(0).expect("n");
        if n > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    found
}

async fn free_text_about_a_student_is_stored_only_sealed(db: TestDb) {
    let p = plant(db).await;
    let stack = &p.stack;
    let sch = stack.school.clone();

    // Nothing planted is stored in clear, anywhere.
    let found = stored_anywhere(stack, CANARY).await;
    assert!(found.is_empty(), "clear free text stored in {found:?}");

    // Those who work the case read it all back.
    let case = read(stack, &sch.crisis_team, &format!("/v1/cases/{}", p.case_s1)).await;
    let close = case["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|a| a["action"] == "close"))
        .expect("close");
    assert_eq!(
        close["detail"]["outcome"],
        "CANARY-OUTCOME moved to her aunt"
    );
    let update = case["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|a| a["action"] == "referral_update"))
        .expect("referral update");
    assert_eq!(
        update["detail"]["return_assessment"],
        "CANARY-RETURN with conditions"
    );
    assert_eq!(update["detail"]["receipt_confirmed"], true);
    assert_eq!(
        case["referrals"][0]["institution"],
        "CANARY-INSTITUTION Anding Hospital"
    );
    assert_eq!(
        case["referrals"][0]["return_assessment"],
        "CANARY-RETURN with conditions"
    );
    let call_id = case["signals"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == "hotline.call_logged"))
        .and_then(|s| s["event_id"].as_str())
        .and_then(|e| e.strip_prefix("hotline:"))
        .expect("the call's record id")
        .to_owned();
    let call = read(
        stack,
        &sch.crisis_team,
        &format!("/v1/hotline-calls/{call_id}"),
    )
    .await;
    assert_eq!(call["counsellor"], "CANARY-HOTLINE-COUNSELLOR Ms Wang");
    assert_eq!(call["referral_advice"], "CANARY-ADVICE see a psychiatrist");

    // Each free-text field has a limit, answered 422 with the field.
    let long = |n: usize| "长".repeat(n);
    let referral = case["referrals"][0]["id"].clone();
    for (action, body, field) in [
        (
            "referrals",
            json!({"referral_id": referral, "institution": "H", "referred_on": "2026-11-21",
                   "return_assessment": {"assessed_on": "2026-11-28", "result": long(501)}}),
            "return_assessment.result",
        ),
        (
            "referrals",
            json!({"referral_id": referral, "institution": "H", "referred_on": "2026-11-21",
                   "return_assessment": {"assessed_on": "2026-11-28", "result": " "}}),
            "return_assessment.result",
        ),
        (
            "referrals",
            json!({"institution": long(201), "referred_on": "2026-11-21"}),
            "institution",
        ),
        ("close", json!({"outcome": long(65)}), "outcome"),
        ("notes", json!({"text": long(20_001)}), "text"),
    ] {
        let r = stack.act(&sch.crisis_team, &p.case_s1, action, body).await;
        let status = r.status();
        let reply: Value = r.json();
        if action == "notes" {
            // Past the body limit of the test gateway: refused before parsing.
            assert!(matches!(status, 413 | 422), "{action}: {status} {reply}");
            continue;
        }
        assert_eq!(status, 422, "{action} {field}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{reply}");
    }
    for (field, n) in [
        ("counsellor", 129),
        ("referral_advice", 1001),
        ("summary", 8001),
    ] {
        let mut body = json!({
            "call_id": format!("CALL-LONG-{field}"),
            "started_at": chrono::Utc::now().to_rfc3339(),
            "caller_type": "anonymous",
            "rating": "watch",
        });
        body[field] = json!("x".repeat(n));
        let r = stack
            .post_json(&sch.service, "/v1/hotline-calls", &body)
            .await;
        let status = r.status();
        let reply: Value = r.json();
        assert_eq!(status, 422, "{field}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn free_text_about_a_student_is_stored_only_sealed_on_sqlite() {
    free_text_about_a_student_is_stored_only_sealed(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn free_text_about_a_student_is_stored_only_sealed_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        free_text_about_a_student_is_stored_only_sealed(db).await;
    }
}
