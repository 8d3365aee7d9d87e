//! The duty-roster routes: what cannot work is refused with a 422 naming the
//! field, staff of another school answers as staff that does not exist, and
//! `GET /v1/on-call` says who covers a role now and next (an override wins).

use chrono::{Duration, Utc};
use sanyu_test_support::TestDb;
use serde_json::{Value, json};

use crate::support::{App, Sch, Who};

fn rotation(members: Value) -> Value {
    json!({
        "name": "白天值班",
        "role": "crisis_team",
        "cadence": "weekly",
        "handover": "08:00",
        "start_date": (Utc::now() - Duration::days(1)).date_naive().to_string(),
        "members": members,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_roster_that_cannot_work_is_refused_with_the_field_that_breaks_it() {
    let app = App::start(TestDb::sqlite()).await;
    let x1 = app.staff_id(Sch::A, "X1").await;
    let k1 = app.staff_id(Sch::A, "K1").await;
    let other_x1 = app.staff_id(Sch::B, "X1").await;
    let admin = app.as_(Who::Admin, Sch::A);
    let with = |patch: Value| {
        let mut body = rotation(json!([x1]));
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (with(json!({"handover": "25:00"})), "handover"),
        (with(json!({"role": "teacher"})), "role"),
        (with(json!({"role": "janitor"})), "role"),
        (with(json!({"cadence": "hourly"})), "cadence"),
        (with(json!({"members": []})), "members"),
        (with(json!({"members": [x1, x1]})), "members"),
        (with(json!({"name": "  "})), "name"),
        (
            with(json!({"shift": {"start": "22:00", "end": "22:00"}})),
            "shift",
        ),
        (with(json!({"days": "key_dates"})), "kinds"),
        // A counsellor is not of the crisis team; another school's crisis
        // lead is nobody here.
        (with(json!({"members": [x1, k1]})), "members[1]"),
        (with(json!({"members": [other_x1]})), "members[0]"),
    ];
    for (body, field) in cases {
        let r = admin.post("/v1/duty/rotations", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], field, "{body}: {}", r.text());
    }
    let now = Utc::now();
    let over = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>, staff| {
        json!({"role": "crisis_team", "staff_id": staff,
               "from": from.to_rfc3339(), "to": to.to_rfc3339()})
    };
    for (body, field) in [
        (over(now, now - Duration::hours(1), x1), "to"),
        (
            over(now - Duration::hours(2), now - Duration::hours(1), x1),
            "to",
        ),
        (over(now, now + Duration::days(400), x1), "to"),
        (over(now, now + Duration::hours(1), other_x1), "staff_id"),
    ] {
        let r = admin.post("/v1/duty/overrides", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], field, "{body}: {}", r.text());
    }
    let r = admin.get("/v1/on-call?at=yesterday").await;
    assert_eq!(r.status(), 422, "{}", r.text());
    let far = (now + Duration::days(800)).to_rfc3339().replace('+', "%2B");
    let r = admin.get(&format!("/v1/on-call?at={far}")).await;
    assert_eq!(r.status(), 422, "{}", r.text());
}

fn crisis_team(on_call: &Value) -> Value {
    on_call["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["role"] == "crisis_team")
        .cloned()
        .expect("crisis team")
}

#[tokio::test(flavor = "multi_thread")]
async fn on_call_says_who_is_on_duty_now_and_next_and_an_override_wins() {
    let app = App::start(TestDb::sqlite()).await;
    let x1 = app.staff_id(Sch::A, "X1").await;
    let teacher = app.as_(Who::Teacher, Sch::A);

    // No roster yet: nobody, not rostered.
    let before = crisis_team(&teacher.get("/v1/on-call").await.json());
    assert_eq!(before["rostered"], false);
    assert_eq!(before["now"], json!([]));

    let r = app
        .as_(Who::CrisisTeam, Sch::A)
        .post("/v1/duty/rotations", rotation(json!([x1])))
        .await;
    assert_eq!(r.status(), 201, "{}", r.text());
    assert_eq!(r.json()["members"], json!([x1]));
    let now = crisis_team(&teacher.get("/v1/on-call").await.json());
    assert_eq!(now["rostered"], true);
    assert_eq!(now["now"][0]["staff_id"], x1.to_string());
    assert_eq!(now["now"][0]["name"], "Crisis Lead");

    // The leader covers the crisis team from an hour on, for a day.
    let l1 = app.staff_id(Sch::A, "L1").await;
    let r = app
        .as_(Who::Admin, Sch::A)
        .post(
            "/v1/duty/overrides",
            json!({"role": "crisis_team", "staff_id": l1,
                   "from": (Utc::now() + Duration::hours(1)).to_rfc3339(),
                   "to": (Utc::now() + Duration::days(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status(), 422, "a leader is not of the crisis team");
    let r = app
        .as_(Who::Admin, Sch::A)
        .post(
            "/v1/duty/overrides",
            json!({"role": "leader", "staff_id": l1,
                   "from": (Utc::now() + Duration::hours(1)).to_rfc3339(),
                   "to": (Utc::now() + Duration::days(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text());
    let on_call = teacher.get("/v1/on-call").await.json();
    let leader = on_call["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["role"] == "leader")
        .cloned()
        .expect("leader");
    assert_eq!(leader["now"], json!([]), "{on_call}");
    assert_eq!(leader["next"]["staff"][0]["staff_id"], l1.to_string());
    let later = (Utc::now() + Duration::hours(2))
        .to_rfc3339()
        .replace('+', "%2B");
    let then = teacher.get(&format!("/v1/on-call?at={later}")).await.json();
    let leader = then["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["role"] == "leader")
        .cloned()
        .expect("leader");
    assert_eq!(leader["now"][0]["staff_id"], l1.to_string(), "{then}");

    // Another school sees none of it.
    let other = app.as_(Who::Teacher, Sch::B).get("/v1/on-call").await;
    assert_eq!(other.status(), 200);
    assert!(!other.text().contains(&x1.to_string()));
    assert!(!other.text().contains(&l1.to_string()));

    // The roster lists both; taking the rotation out leaves the crisis team
    // unrostered again, and another school cannot take it out.
    let roster = teacher.get("/v1/duty").await.json();
    assert_eq!(roster["rotations"].as_array().map(Vec::len), Some(1));
    assert_eq!(roster["overrides"][0]["staff_id"], l1.to_string());
    let rotation = roster["rotations"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/v1/duty/rotations/{rotation}");
    let admin_b = app.as_(Who::Admin, Sch::B);
    let r = admin_b
        .send(axum::http::Method::DELETE, &path, &[], Vec::new())
        .await;
    assert_eq!(r.status(), 404);
    let admin = app.as_(Who::Admin, Sch::A);
    let r = admin
        .send(axum::http::Method::DELETE, &path, &[], Vec::new())
        .await;
    assert_eq!(r.status(), 204, "{}", r.text());
    let after = crisis_team(&teacher.get("/v1/on-call").await.json());
    assert_eq!(after["rostered"], false);
    assert_eq!(after["now"], json!([]));
}
