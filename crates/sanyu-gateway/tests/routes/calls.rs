//! Hotline calls (issue #15): `GET /v1/hotline-calls` (the school's calls,
//! newest first, filters and pages; roles; another school's calls never
//! listed) and the console's calls pages, which call the API's handlers:
//! the list, one call (another school's is "not found" like a missing one),
//! and naming an unidentified caller through the API's own `link`, behind
//! the session's CSRF token, refusals in words.
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{App, Sch, Who};
use sanyu_test_support::TestDb;

/// Log a call of `sch` through the API (the hotline system's token), started
/// `minutes_ago`; its record id.
async fn log_call(
    app: &App,
    sch: Sch,
    call_id: &str,
    student_no: Option<&str>,
    rating: &str,
    minutes_ago: i64,
) -> Uuid {
    let started = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    let r = app
        .as_(Who::Service, sch)
        .post(
            "/v1/hotline-calls",
            json!({
                "call_id": call_id,
                "started_at": started.to_rfc3339(),
                "caller_type": if student_no.is_some() { "student" } else { "anonymous" },
                "student_no": student_no,
                "rating": rating,
                "summary": format!("SEALED-SUMMARY {call_id}"),
                "counsellor": "duty counsellor",
            }),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text());
    r.json()["id"].as_str().expect("id").parse().expect("uuid")
}

/// The ids of a list answer, in order.
fn ids(v: &Value) -> Vec<Uuid> {
    v["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["id"].as_str().expect("id").parse().expect("uuid"))
        .collect()
}

struct Calls {
    /// Unidentified, elevated, 10 minutes ago: only logged (no case).
    quiet: Uuid,
    /// About S1, high, 20 minutes ago.
    identified: Uuid,
    /// Unidentified, critical, 5 minutes ago: opened a caller's case.
    critical: Uuid,
    critical_case: Uuid,
    /// SCH2's call, 1 minute ago.
    theirs: Uuid,
}

async fn calls(app: &App) -> Calls {
    let quiet = log_call(app, Sch::A, "Q-1", None, "elevated", 10).await;
    let identified = log_call(app, Sch::A, "I-1", Some("S1"), "high", 20).await;
    let critical = log_call(app, Sch::A, "C-1", None, "critical", 5).await;
    let theirs = log_call(app, Sch::B, "B-1", None, "critical", 1).await;
    app.decide_intake().await;
    let detail = app
        .as_(Who::CrisisTeam, Sch::A)
        .get(&format!("/v1/hotline-calls/{critical}"))
        .await
        .json();
    let critical_case = detail["case_id"]
        .as_str()
        .expect("the critical caller's case")
        .parse()
        .expect("uuid");
    Calls {
        quiet,
        identified,
        critical,
        critical_case,
        theirs,
    }
}

async fn the_list_keeps_to_the_school_newest_first_with_filters_and_pages(db: TestDb) {
    let app = App::start(db).await;
    let c = calls(&app).await;
    let crisis = app.as_(Who::CrisisTeam, Sch::A);

    let all = crisis.get("/v1/hotline-calls").await;
    assert_eq!(all.status(), 200, "{}", all.text());
    let v = all.json();
    assert_eq!(ids(&v), vec![c.critical, c.quiet, c.identified]);
    assert_eq!(v["next_before"], Value::Null);
    let body = all.text();
    assert!(!body.contains(&c.theirs.to_string()), "{body}");
    assert!(
        !body.contains("SEALED-SUMMARY"),
        "the list opens no summary"
    );
    let first = &v["calls"][0];
    assert_eq!(first["case_id"], c.critical_case.to_string());
    assert_eq!(first["student_identified"], false);
    assert_eq!(first["level"], "critical");
    assert_eq!(v["calls"][1]["case_id"], Value::Null);
    assert_eq!(v["calls"][2]["student_identified"], true);

    // Filters: unidentified only, a level, since a time.
    let v = crisis
        .get("/v1/hotline-calls?unidentified=true")
        .await
        .json();
    assert_eq!(ids(&v), vec![c.critical, c.quiet]);
    let v = crisis.get("/v1/hotline-calls?level=high").await.json();
    assert_eq!(ids(&v), vec![c.identified]);
    let since = (chrono::Utc::now() - chrono::Duration::minutes(15)).to_rfc3339();
    let v = crisis
        .get(&format!(
            "/v1/hotline-calls?since={}",
            form_urlencoded::byte_serialize(since.as_bytes()).collect::<String>()
        ))
        .await
        .json();
    assert_eq!(ids(&v), vec![c.critical, c.quiet]);

    // Pages: two, then the rest.
    let page1 = crisis.get("/v1/hotline-calls?limit=2").await.json();
    assert_eq!(ids(&page1), vec![c.critical, c.quiet]);
    assert_eq!(page1["next_before"], c.quiet.to_string());
    let page2 = crisis
        .get(&format!("/v1/hotline-calls?limit=2&before={}", c.quiet))
        .await
        .json();
    assert_eq!(ids(&page2), vec![c.identified]);
    assert_eq!(page2["next_before"], Value::Null);

    // Another school's call as a cursor answers like one that does not exist.
    let theirs = crisis
        .get(&format!("/v1/hotline-calls?before={}", c.theirs))
        .await;
    let missing = crisis
        .get(&format!("/v1/hotline-calls?before={}", Uuid::now_v7()))
        .await;
    assert_eq!(theirs.status(), 422);
    assert_eq!(theirs.json(), missing.json());
    for bad in ["level=urgent", "since=yesterday", "limit=0", "limit=201"] {
        let r = crisis.get(&format!("/v1/hotline-calls?{bad}")).await;
        assert_eq!(r.status(), 422, "{bad}: {}", r.text());
    }

    // SCH2's crisis team lists its own call only.
    let v = app
        .as_(Who::CrisisTeam, Sch::B)
        .get("/v1/hotline-calls")
        .await
        .json();
    assert_eq!(ids(&v), vec![c.theirs]);

    // Roles: counsellors and the crisis team; nobody else.
    assert_eq!(
        app.as_(Who::Counsellor, Sch::A)
            .get("/v1/hotline-calls")
            .await
            .status(),
        200
    );
    for who in [
        Who::Teacher,
        Who::Monitor,
        Who::Leader,
        Who::District,
        Who::Admin,
        Who::Service,
        Who::Deployment,
    ] {
        let r = app.as_(who, Sch::A).get("/v1/hotline-calls").await;
        assert_eq!(r.status(), 403, "{who:?}: {}", r.text());
    }
    assert_eq!(
        app.as_(Who::Nobody, Sch::A)
            .get("/v1/hotline-calls")
            .await
            .status(),
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_keeps_to_the_school_newest_first_with_filters_and_pages_on_sqlite() {
    the_list_keeps_to_the_school_newest_first_with_filters_and_pages(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_keeps_to_the_school_newest_first_with_filters_and_pages_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_list_keeps_to_the_school_newest_first_with_filters_and_pages(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_calls_pages_show_the_schools_calls_and_another_schools_call_is_not_found() {
    let app = App::start(TestDb::sqlite()).await;
    let c = calls(&app).await;
    let crisis = app.sign_in(Sch::A, "X1").await;
    let reference = |id: Uuid| sanyu_gateway::routes::hotline::call_reference(id);

    let page = crisis.get("/hotline-calls").await;
    assert_eq!(page.status(), 200, "{}", page.text());
    let html = page.text();
    for id in [c.quiet, c.identified, c.critical] {
        assert!(html.contains(&reference(id)), "{id} missing: {html}");
        assert!(html.contains(&format!("/hotline-calls/{id}")));
    }
    assert!(!html.contains(&reference(c.theirs)));
    assert!(html.contains(&format!("href=\"/cases/{}\"", c.critical_case)));
    assert!(html.contains("lvl-critical") && html.contains("身份未识别"));
    assert!(
        !html.contains("SEALED-SUMMARY"),
        "the list opens no summary"
    );
    // Newest first.
    let at = |id: Uuid| html.find(&reference(id)).expect("shown");
    assert!(at(c.critical) < at(c.quiet) && at(c.quiet) < at(c.identified));
    assert_eq!(
        page.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );

    // Filters through the page's own form (a date in the school's zone).
    let html = crisis.get("/hotline-calls?unidentified=true").await.text();
    assert!(html.contains(&reference(c.quiet)) && !html.contains(&reference(c.identified)));
    let html = crisis.get("/hotline-calls?level=high").await.text();
    assert!(html.contains(&reference(c.identified)) && !html.contains(&reference(c.quiet)));
    let bad = crisis.get("/hotline-calls?since=yesterday").await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().contains("填写有误"), "{}", bad.text());

    // One call: what the API's `get` answers, the summary included.
    let one = crisis.get(&format!("/hotline-calls/{}", c.critical)).await;
    assert_eq!(one.status(), 200, "{}", one.text());
    let html = one.text();
    assert!(html.contains("SEALED-SUMMARY C-1"), "{html}");
    assert!(html.contains(&format!("href=\"/cases/{}\"", c.critical_case)));
    assert!(html.contains("action=\"/hotline-calls/"), "the link form");
    let identified = crisis
        .get(&format!("/hotline-calls/{}", c.identified))
        .await
        .text();
    assert!(
        !identified.contains("/link\""),
        "no link form for a named caller"
    );

    // Another school's call answers exactly like one that does not exist.
    let theirs = crisis.get(&format!("/hotline-calls/{}", c.theirs)).await;
    let missing = crisis
        .get(&format!("/hotline-calls/{}", Uuid::now_v7()))
        .await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(theirs.text(), missing.text());
    assert!(!theirs.text().contains("SEALED-SUMMARY"));

    // The nav links there for the roles that read calls only; others are refused.
    assert!(
        crisis
            .get("/queue")
            .await
            .text()
            .contains("href=\"/hotline-calls\"")
    );
    let counsellor = app.sign_in(Sch::A, "K1").await;
    assert_eq!(counsellor.get("/hotline-calls").await.status(), 200);
    for staff_no in ["T1", "L1"] {
        let s = app.sign_in(Sch::A, staff_no).await;
        assert!(
            !s.get("/queue")
                .await
                .text()
                .contains("href=\"/hotline-calls\"")
        );
        let r = s.get("/hotline-calls").await;
        assert_eq!(r.status(), 403, "{staff_no}");
        let r = s.get(&format!("/hotline-calls/{}", c.critical)).await;
        assert_eq!(r.status(), 403, "{staff_no}");
        assert!(!r.text().contains("SEALED-SUMMARY"));
    }
    // Not signed in: to sign in, and back here afterwards.
    let r = app.with_token(None).get("/hotline-calls").await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/sign-in?next=/hotline-calls")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unidentified_caller_is_linked_from_the_call_page_behind_the_csrf_token() {
    let app = App::start(TestDb::sqlite()).await;
    let c = calls(&app).await;
    let crisis = app.sign_in(Sch::A, "X1").await;
    let api = app.as_(Who::CrisisTeam, Sch::A);
    let link = format!("/hotline-calls/{}/link", c.quiet);
    let student_of = || async {
        api.get(&format!("/v1/hotline-calls/{}", c.quiet))
            .await
            .json()["student_id"]
            .clone()
    };

    // Without the session's token, or with another one: refused, nothing changes.
    let none = crisis.post_form(&link, &[("student_no", "S2")]).await;
    assert_eq!(none.status(), 403, "{}", none.text());
    assert!(none.text().contains("表单已失效"), "{}", none.text());
    let other = app.sign_in(Sch::A, "K1").await;
    let wrong = crisis
        .post_form(&link, &[("csrf", &other.csrf), ("student_no", "S2")])
        .await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(student_of().await, Value::Null);

    // Refusals in words: nobody has that number; an empty one.
    let unknown = crisis
        .post_form(&link, &[("csrf", &crisis.csrf), ("student_no", "S404")])
        .await;
    assert_eq!(unknown.status(), 422, "{}", unknown.text());
    assert!(
        unknown.text().contains("没有找到所选的对象"),
        "{}",
        unknown.text()
    );
    let empty = crisis
        .post_form(&link, &[("csrf", &crisis.csrf), ("student_no", " ")])
        .await;
    assert_eq!(empty.status(), 422);
    assert!(empty.text().contains("学号"), "{}", empty.text());
    // Another school's call: not found, like a missing one.
    let theirs = crisis
        .post_form(
            &format!("/hotline-calls/{}/link", c.theirs),
            &[("csrf", &crisis.csrf), ("student_no", "S2")],
        )
        .await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(student_of().await, Value::Null);

    // Linked: back to the call, which now names a student and offers no form.
    let done = crisis
        .post_form(&link, &[("csrf", &crisis.csrf), ("student_no", "S2")])
        .await;
    assert_eq!(done.status(), 303, "{}", done.text());
    let to = format!("/hotline-calls/{}?done=link", c.quiet);
    assert_eq!(
        done.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(to.as_str())
    );
    assert_eq!(
        student_of().await,
        Value::String(app.student_id(Sch::A, "S2").await.to_string())
    );
    let page = crisis.get(&to).await.text();
    assert!(page.contains("已关联学生"), "{page}");
    assert!(!page.contains(&link), "{page}");
    // Again: refused in words (409), the first link stands.
    let again = crisis
        .post_form(&link, &[("csrf", &crisis.csrf), ("student_no", "S1")])
        .await;
    assert_eq!(again.status(), 409);
    assert!(
        again.text().contains("此来电已关联学生"),
        "{}",
        again.text()
    );

    // The critical caller's case becomes the student's through the same form.
    let r = crisis
        .post_form(
            &format!("/hotline-calls/{}/link", c.critical),
            &[("csrf", &crisis.csrf), ("student_no", "S3")],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text());
    let case = api
        .get(&format!("/v1/cases/{}", c.critical_case))
        .await
        .json();
    assert_eq!(case["subject"], "student", "{case}");
    assert_eq!(case["student_no"], "S3");
}
