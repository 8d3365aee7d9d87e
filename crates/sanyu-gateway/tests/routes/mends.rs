//! Three console mends (issue #15): the queue offers only the filters the
//! role can use; a closed case shows what its ladder did, not the plan it
//! would follow; a dead letter's title names its kind, never the recorded
//! reason (which may hold a student number).
use sanyu_store::dead_letters::{self, NewDeadLetter};
use serde_json::json;

use crate::support::{App, Sch, Who};
use sanyu_test_support::TestDb;

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_offers_assignment_filters_only_to_those_who_take_cases() {
    let app = App::start(TestDb::sqlite()).await;
    let case = app.open_case(Sch::A, "S1", "high").await;
    let reference = app
        .as_(Who::CrisisTeam, Sch::A)
        .get(&format!("/v1/cases/{case}"))
        .await
        .json()["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    for staff_no in ["K1", "X1"] {
        let html = app
            .sign_in(Sch::A, staff_no)
            .await
            .get("/queue")
            .await
            .text();
        assert!(
            html.contains("/queue?show=mine") && html.contains("/queue?show=unassigned"),
            "{staff_no}: {html}"
        );
    }
    for staff_no in ["T1", "L1"] {
        let s = app.sign_in(Sch::A, staff_no).await;
        let html = s.get("/queue").await.text();
        assert!(
            html.contains(&reference),
            "{staff_no} sees the case: {html}"
        );
        assert!(
            !html.contains("show=mine") && !html.contains("show=unassigned"),
            "{staff_no} is offered a filter it cannot use: {html}"
        );
        // A filter in the address means nothing to the role: the whole queue.
        let html = s.get("/queue?show=mine").await.text();
        assert!(html.contains(&reference), "{staff_no}: {html}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_cases_page_shows_what_its_ladder_did_not_the_plan() {
    let app = App::start(TestDb::sqlite()).await;
    let open = app.open_case(Sch::A, "S1", "high").await;
    let closed = app.open_case(Sch::A, "S2", "high").await;
    let k1 = app.as_(Who::Counsellor, Sch::A);
    let r = k1
        .post(&format!("/v1/cases/{closed}/acknowledge"), json!({}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text());
    let r = k1
        .post(
            &format!("/v1/cases/{closed}/close"),
            json!({"outcome": "resolved"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text());

    let s = app.sign_in(Sch::A, "K1").await;
    let html = s.get(&format!("/cases/{open}")).await.text();
    assert!(
        html.contains("逐级上报计划"),
        "an open case shows its plan: {html}"
    );
    assert!(!html.contains("逐级上报经过"));

    let page = s.get(&format!("/cases/{closed}")).await;
    assert_eq!(page.status(), 200, "{}", page.text());
    let html = page.text();
    assert!(
        !html.contains("逐级上报计划"),
        "a closed case shows a plan: {html}"
    );
    let record = &html[html
        .find("id=\"ladder-record\"")
        .expect("what the ladder did")..];
    let record = &record[..record.find("</section>").expect("section end")];
    assert!(record.contains("逐级上报经过"), "{record}");
    assert!(
        record.contains("确认时间") && record.contains("开案后"),
        "{record}"
    );
    assert!(record.contains("结案时间"), "{record}");
    assert!(record.contains("已发出的通知"), "{record}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letters_title_names_its_kind_never_a_student_number() {
    let app = App::start(TestDb::sqlite()).await;
    let school = sanyu_store::roster::school_by_code(&app.db, Sch::A.code())
        .await
        .expect("school")
        .expect("seeded school")
        .id;
    let case = app.open_case(Sch::A, "S1", "high").await;
    for (key, stream, consumer, event_id, reason) in [
        (
            "INTAKE:rules:1",
            "INTAKE",
            "rules",
            Some("report:1".to_owned()),
            "unknown student S9",
        ),
        (
            "alarm:1",
            "CASE",
            "ladder-auditor",
            Some(format!("case:{case}")),
            "case C-1 (high): rung overdue",
        ),
    ] {
        dead_letters::record(
            &app.db,
            NewDeadLetter {
                source_key: key.into(),
                stream: stream.into(),
                consumer: consumer.into(),
                stream_seq: None,
                subject: None,
                event_id,
                reason: reason.into(),
                deliveries: Some(1),
                school_id: Some(school),
            },
        )
        .await
        .expect("dead letter");
    }
    let page = app.sign_in(Sch::A, "X1").await.get("/dead-letters").await;
    assert_eq!(page.status(), 200, "{}", page.text());
    let html = page.text();
    let titles: Vec<&str> = html
        .split("<p class=\"line dl-title\">")
        .skip(1)
        .map(|t| &t[..t.find("</p>").unwrap_or(t.len())])
        .collect();
    assert_eq!(titles.len(), 2, "{html}");
    for title in &titles {
        assert!(!title.contains("S9"), "a title names a student: {title}");
    }
    assert!(
        titles.iter().any(|t| t.contains("未能处理的预警信号")),
        "{titles:?}"
    );
    // An alarm about a case links to it.
    assert!(
        titles
            .iter()
            .any(|t| t.contains("个案逐级上报告警") && t.contains(&format!("/cases/{case}"))),
        "{titles:?}"
    );
    // The reason is one tap away, in the letter's details.
    let detail = html
        .find("unknown student S9")
        .expect("the reason, in detail");
    let details = html[..detail].rfind("<details").expect("a details element");
    assert!(html[details..detail].find("</details>").is_none());
}

/// After the acknowledgement (issue 16): a case being worked that nobody
/// acted on for its level's days (`[escalation.stale_after_days]`, high: 3)
/// is flagged in the queue; one acted on recently is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_case_nobody_acted_on_for_its_levels_days_is_flagged_in_the_queue() {
    use sanyu_store::entities::case;
    use sanyu_store::sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};

    let app = App::start(TestDb::sqlite()).await;
    let stale = app.open_case(Sch::A, "S1", "high").await;
    let fresh = app.open_case(Sch::A, "S2", "high").await;
    let k1 = app.as_(Who::Counsellor, Sch::A);
    for case in [stale, fresh] {
        let r = k1
            .post(&format!("/v1/cases/{case}/acknowledge"), json!({}))
            .await;
        assert_eq!(r.status(), 200, "{}", r.text());
        let r = k1
            .post(&format!("/v1/cases/{case}/notes"), json!({"text": "met"}))
            .await;
        assert!(r.status() < 300, "{}", r.text());
    }
    // The first case's acknowledgement and note were four days ago.
    let four_days_ago = chrono::Utc::now() - chrono::Duration::days(4);
    let row = case::Entity::find_by_id(stale)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.last_action_at.is_some(),
        "the note is recorded as an action"
    );
    let mut row: case::ActiveModel = row.into();
    row.acknowledged_at = Set(Some(four_days_ago));
    row.last_action_at = Set(Some(four_days_ago));
    row.update(&app.db).await.unwrap();

    let crisis = app.as_(Who::CrisisTeam, Sch::A);
    let mut refs = Vec::new();
    for id in [stale, fresh] {
        let case = crisis.get(&format!("/v1/cases/{id}")).await.json();
        refs.push(case["reference"].as_str().expect("reference").to_owned());
    }
    let [stale_ref, fresh_ref] = &refs[..] else {
        unreachable!()
    };
    let html = app.sign_in(Sch::A, "K1").await.get("/queue").await.text();
    let item = |r: &str| {
        html.split("<li ")
            .find(|li| li.contains(r))
            .unwrap_or_else(|| panic!("{r} in the queue: {html}"))
            .to_owned()
    };
    assert!(
        item(stale_ref).contains("无处置行动已 4 天"),
        "{}",
        item(stale_ref)
    );
    assert!(
        !item(fresh_ref).contains("无处置行动"),
        "{}",
        item(fresh_ref)
    );
}
