//! Duty rosters (值班表) end to end, across the real binaries: at 03:00 (the
//! rules engine's clock started there, `SANYU_TEST_CLOCK_START`) a critical
//! case's first contact is the crisis-team member on the night shift, not
//! the rest of the role, by SMS, a voice call and email; and `sanyu contacts check` warns of the nights in
//! the coming week that nobody is on duty.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use sanyu_e2e::Stack;
use sanyu_e2e::support::{TestDb, eventually};
use sanyu_store::entities::{school, staff};
use sanyu_store::roster::{self, ImportScope};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

/// A critical ladder whose first contact is the crisis-team member on duty,
/// then the whole crisis team and the counsellors, then the leaders.
fn on_duty_ladder() -> Vec<(&'static str, String)> {
    vec![
        (
            "SANYU_ESCALATION__CRITICAL__FIRST",
            r#"["on_duty:crisis_team"]"#.to_owned(),
        ),
        (
            "SANYU_ESCALATION__CRITICAL__RUNGS",
            r#"[{after_secs=600, roles=["crisis_team", "counsellor"]}, {after_secs=600, roles=["leader"]}]"#
                .to_owned(),
        ),
        ("SANYU_ESCALATION__CRITICAL__ACK_WITHIN_SECS", "600".to_owned()),
        ("SANYU_ESCALATION__CRITICAL__REPEAT", "1".to_owned()),
        ("SANYU_NOTIFY__TIME_ZONE", "Asia/Shanghai".to_owned()),
    ]
}

/// A second crisis-team member, X2, with an email address.
async fn add_second_crisis_member(stack: &Stack) {
    let code = &stack.school.code;
    let csv = format!(
        "school_code,staff_no,name,role,class_code,phone,email\n\
         {code},X2,Crisis Two,crisis_team,,13900000008,crisis2@{}.test\n",
        code.to_lowercase()
    );
    let txn = sanyu_store::begin_write(&stack.conn).await.expect("begin");
    let s = roster::import_staff(&*txn, csv.as_bytes(), ImportScope::Operator)
        .await
        .expect("import staff");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    txn.commit().await.expect("commit");
}

async fn school_id(stack: &Stack, code: &str) -> Uuid {
    school::Entity::find()
        .filter(school::Column::Code.eq(code))
        .one(&stack.conn)
        .await
        .expect("schools")
        .expect("school")
        .id
}

async fn staff_id(stack: &Stack, code: &str, staff_no: &str) -> Uuid {
    let school = school_id(stack, code).await;
    staff::Entity::find()
        .filter(staff::Column::SchoolId.eq(school))
        .filter(staff::Column::StaffNo.eq(staff_no))
        .one(&stack.conn)
        .await
        .expect("staff")
        .expect("staff member")
        .id
}

/// Shanghai local time as an instant.
fn local(d: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    Shanghai
        .from_local_datetime(&d.and_hms_opt(h, m, 0).expect("time"))
        .single()
        .expect("Shanghai has no DST")
        .with_timezone(&Utc)
}

async fn at_three_in_the_morning_the_first_contact_is_the_crisis_team_member_on_duty(db: TestDb) {
    let mut stack = Stack::new(db).await;
    add_second_crisis_member(&stack).await;
    let code = stack.school.code.clone();
    let (x1, x2) = (
        staff_id(&stack, &code, "X1").await,
        staff_id(&stack, &code, "X2").await,
    );
    // The next 03:00 in Shanghai: the night of `night` (22:00) to `day` (07:00).
    let now_local = Utc::now().with_timezone(&Shanghai).date_naive();
    let day = [now_local, now_local + Days::new(1)]
        .into_iter()
        .find(|d| local(*d, 3, 0) > Utc::now())
        .expect("a 03:00 ahead");
    let night = day - Days::new(1);
    let three = local(day, 3, 0);

    let settings = on_duty_ladder();
    stack.start_gateway_with(&settings).await;
    // Nights 22:00–07:00, handed over daily at 12:00: X2 takes the night of
    // `night`, X1 the next one.
    let r = stack
        .post_json(
            &stack.school.admin,
            "/v1/duty/rotations",
            &json!({
                "name": "夜间值班",
                "role": "crisis_team",
                "cadence": "daily",
                "handover": "12:00",
                "start_date": night.to_string(),
                "members": [x2, x1],
                "shift": {"start": "22:00", "end": "07:00"},
            }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    // The counsellor may not change the roster; a member of another school
    // answers as one that does not exist.
    let r = stack
        .post_json(
            &stack.school.counsellor,
            "/v1/duty/rotations",
            &json!({"name": "x", "role": "crisis_team", "cadence": "daily",
                    "handover": "12:00", "start_date": night.to_string(), "members": [x1]}),
        )
        .await;
    assert_eq!(r.status(), 403);
    let other_x1 = staff_id(&stack, &stack.other_school.code, "X1").await;
    let r = stack
        .post_json(
            &stack.school.admin,
            "/v1/duty/overrides",
            &json!({"role": "crisis_team", "staff_id": other_x1,
                    "from": three.to_rfc3339(), "to": (three + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["field"], "staff_id", "{body}");

    // Who is on duty at 03:00, and next.
    let r = stack
        .get(
            &stack.school.teacher_c1,
            &format!("/v1/on-call?at={}", three.to_rfc3339().replace('+', "%2B")),
        )
        .await;
    assert_eq!(r.status(), 200);
    let on_call: Value = r.json().await.expect("json");
    let crisis = on_call["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["role"] == "crisis_team")
        .expect("crisis team")
        .clone();
    assert_eq!(crisis["now"][0]["staff_id"], x2.to_string(), "{on_call}");
    assert_eq!(crisis["now"].as_array().map(Vec::len), Some(1), "{on_call}");
    let next_at: DateTime<Utc> = crisis["next"]["at"]
        .as_str()
        .expect("next")
        .parse()
        .expect("time");
    assert_eq!(next_at, local(day, 7, 0), "{on_call}");
    assert_eq!(crisis["next"]["staff"], json!([]), "{on_call}");

    // 03:00: a critical report.
    stack.start_rules(
        &[
            settings.clone(),
            vec![("SANYU_TEST_CLOCK_START", three.to_rfc3339())],
        ]
        .concat(),
    );
    let providers = crate::voice::Providers::start().await;
    stack.start_notifier_with(&providers.env());
    let r = stack
        .post_report(
            &stack.school.teacher_c1,
            &Stack::report_body("S1", "critical", "x"),
        )
        .await;
    assert_eq!(r.status(), 202);
    stack.wait_for_cases(1).await;
    let sch = code.to_lowercase();
    let first = eventually(
        Duration::from_secs(30),
        "the first contact's email",
        || async { stack.smtp.received().into_iter().next() },
    )
    .await;
    assert_eq!(first.to, vec![format!("crisis2@{sch}.test")]);
    // Nobody else is told first: not X1, not the counsellor (their rung is
    // due 10 minutes later).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = stack.smtp.received();
    let to: Vec<&str> = mails
        .iter()
        .flat_map(|m| m.to.iter().map(String::as_str))
        .collect();
    assert_eq!(
        to,
        vec![format!("crisis2@{sch}.test")],
        "only the member on duty"
    );
    // …and their phone: a text and a call, nobody else's.
    let phones = |received: Vec<sanyu_sms::stand_in::Received>| -> Vec<String> {
        received
            .into_iter()
            .map(|r| r.phone.trim_start_matches("+86").to_owned())
            .collect()
    };
    assert_eq!(phones(providers.sms.received()), ["13900000008"]);
    assert_eq!(phones(providers.voice.received()), ["13900000008"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn at_three_in_the_morning_the_first_contact_is_the_crisis_team_member_on_duty_on_sqlite() {
    at_three_in_the_morning_the_first_contact_is_the_crisis_team_member_on_duty(TestDb::sqlite())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn at_three_in_the_morning_the_first_contact_is_the_crisis_team_member_on_duty_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        at_three_in_the_morning_the_first_contact_is_the_crisis_team_member_on_duty(db).await;
    }
}

fn contacts_check(db: &str) -> (i32, String) {
    let mut cmd = std::process::Command::new(sanyu_e2e::support::binary("sanyu"));
    cmd.args(["contacts", "check", "--school", "SCH1"])
        .env("SANYU_DATABASE__URL", db);
    for (k, v) in on_duty_ladder() {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sanyu");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_check_warns_a_week_ahead_of_nights_with_nobody_on_duty() {
    use sanyu_domain::Role;
    use sanyu_domain::duty::{Cadence, Days as OnDays, Override, Rotation, Shift};

    let stack = Stack::new(TestDb::sqlite()).await;
    let school = school_id(&stack, "SCH1").await;
    let x1 = staff_id(&stack, "SCH1", "X1").await;
    let today = Utc::now().with_timezone(&Shanghai).date_naive();
    let hm = |h| chrono::NaiveTime::from_hms_opt(h, 0, 0).expect("time");
    let rotation = |name: &str, shift: Shift, start_date: NaiveDate| Rotation {
        id: Uuid::now_v7(),
        name: name.into(),
        role: Role::CrisisTeam,
        cadence: Cadence::Daily,
        handover: hm(12),
        start_date,
        members: vec![x1],
        shift: Some(shift),
        days: OnDays::Every,
        kinds: Vec::new(),
    };
    // Days 07:00–22:00 from yesterday on; nights only from three days on.
    let days = rotation(
        "白天",
        Shift {
            start: hm(7),
            end: hm(22),
        },
        today - Days::new(1),
    );
    let nights = rotation(
        "夜间",
        Shift {
            start: hm(22),
            end: hm(7),
        },
        today + Days::new(3),
    );
    for r in [&days, &nights] {
        sanyu_store::duty::create_rotation(&stack.conn, school, r, Utc::now())
            .await
            .expect("rotation");
    }
    let gap = |d: NaiveDate| {
        format!(
            "SCH1 on_duty:crisis_team: nobody on duty {d} 22:00 → {} 07:00 (Asia/Shanghai); the whole role is told instead",
            d + Days::new(1)
        )
    };

    let (code, out) = contacts_check(stack.db.url());
    assert_eq!(code, 1, "a gap within a week fails the check: {out}");
    let duty: Vec<&str> = out.lines().filter(|l| l.starts_with("DUTY")).collect();
    // The nights of tomorrow and the day after (tonight's may have begun).
    for d in [today + Days::new(1), today + Days::new(2)] {
        assert!(
            duty.contains(&format!("DUTY WARN {}", gap(d)).as_str()),
            "{out}"
        );
    }
    assert!((3..=4).contains(&duty.len()), "{out}");
    assert!(duty.iter().all(|l| l.starts_with("DUTY WARN ")), "{out}");
    assert!(!out.contains(&gap(today + Days::new(3))), "{out}");
    assert!(
        out.contains("0 reach nobody") && out.contains("within a week"),
        "{out}"
    );

    // An override covers the night of tomorrow: that gap is gone.
    let tomorrow = today + Days::new(1);
    let o = Override {
        id: Uuid::now_v7(),
        role: Role::CrisisTeam,
        staff_id: x1,
        from: local(tomorrow, 22, 0),
        to: local(tomorrow + Days::new(1), 7, 0),
    };
    sanyu_store::duty::create_override(&stack.conn, school, &o, Utc::now())
        .await
        .expect("override");
    let (_, out) = contacts_check(stack.db.url());
    assert!(!out.contains(&gap(tomorrow)), "{out}");
    assert!(out.contains(&gap(tomorrow + Days::new(1))), "{out}");
}

/// The duty roster in the console (issue 16: "managed in the console"): the
/// crisis-team lead opens 值班表, sees that nobody is rostered, adds an
/// override through the form (counsellor K1 covers from an hour ago for two
/// days), sees K1 on duty now, and takes it out again; a head teacher sees
/// the page without the form. In chromium, with axe-core and screenshots at
/// 375 px and 1280 px.
#[tokio::test(flavor = "multi_thread")]
async fn the_crisis_team_adds_and_removes_an_override_on_the_duty_page() {
    use crate::console;
    use fantoccini::Locator;

    let Some(driver) = console::start_driver().await else {
        return;
    };
    let mut stack = Stack::new(TestDb::sqlite()).await;
    let s = console::settings(&stack.base_url(), 3600);
    stack.start_gateway_with(&s).await;
    stack.start_notifier_with(&s);
    let k1 = staff_id(&stack, "SCH1", "K1").await;
    let base = stack.base_url();
    let c = console::browser(&driver).await;
    c.goto(&format!("{base}/duty")).await.expect("duty");
    console::wait_for_path(&c, "/sign-in").await;
    console::browser_sign_in(&c, &stack, "crisis@sch1.test").await;
    console::wait_for_path(&c, "/duty").await;
    let roles = c
        .find(Locator::Id("duty-roles"))
        .await
        .expect("roles")
        .text()
        .await
        .expect("text");
    assert!(roles.contains("未排班"), "{roles}");

    // The form: who, from, to (local time in the school's zone).
    c.find(Locator::Css("#duty-add summary"))
        .await
        .expect("the form")
        .click()
        .await
        .expect("open");
    c.find(Locator::Css(&format!("#duty-staff option[value='{k1}']")))
        .await
        .expect("K1 among the people")
        .click()
        .await
        .expect("choose K1");
    let local = |t: DateTime<Utc>| {
        t.with_timezone(&Shanghai)
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let now = Utc::now();
    for (id, at) in [
        ("duty-from", now - chrono::Duration::hours(1)),
        ("duty-to", now + chrono::Duration::days(2)),
    ] {
        c.execute(
            &format!("document.getElementById('{id}').value = arguments[0];"),
            vec![Value::String(local(at))],
        )
        .await
        .expect("set the time");
    }
    console::shoot(&c, "duty-form").await;
    c.find(Locator::Css("#duty-add button[type=submit]"))
        .await
        .expect("add")
        .click()
        .await
        .expect("submit");
    eventually(Duration::from_secs(20), "the override added", || async {
        let url = c.current_url().await.ok()?;
        (url.query() == Some("done=added")).then_some(())
    })
    .await;
    let listed = c
        .find(Locator::Id("duty-override-list"))
        .await
        .expect("overrides")
        .text()
        .await
        .expect("text");
    assert!(listed.contains("Counsellor One"), "{listed}");
    let roles = c
        .find(Locator::Id("duty-roles"))
        .await
        .expect("roles")
        .text()
        .await
        .expect("text");
    assert!(
        roles.contains("值班： Counsellor One") || roles.contains("值班：Counsellor One"),
        "{roles}"
    );
    console::shoot(&c, "duty").await;
    // The API says the same.
    let on_call: Value = stack
        .get(&stack.school.crisis_team, "/v1/on-call")
        .await
        .json()
        .await
        .expect("on-call");
    let counsellor = on_call["roles"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["role"] == "counsellor"))
        .expect("counsellor duty");
    assert_eq!(counsellor["now"][0]["staff_id"], json!(k1.to_string()));

    // Take it out.
    c.find(Locator::Css("#duty-override-list form button"))
        .await
        .expect("remove")
        .click()
        .await
        .expect("submit");
    eventually(Duration::from_secs(20), "the override removed", || async {
        let url = c.current_url().await.ok()?;
        (url.query() == Some("done=removed")).then_some(())
    })
    .await;
    let roster: Value = stack
        .get(&stack.school.crisis_team, "/v1/duty")
        .await
        .json()
        .await
        .expect("roster");
    assert_eq!(roster["overrides"], json!([]));
    // 我的通知, linked from every page: contact methods and channels.
    c.find(Locator::Css("a[href='/me']"))
        .await
        .expect("the link to 我的通知")
        .click()
        .await
        .expect("open");
    console::wait_for_path(&c, "/me").await;
    c.find(Locator::Id("me-form")).await.expect("the form");
    console::shoot(&c, "me").await;
    c.close().await.expect("close");

    // A head teacher reads the page, without the form or the buttons.
    let mut teacher = console::signed_in_agent(&stack, "t1@sch1.test", 1).await;
    let page = teacher.get("/duty").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("duty-roles"));
    // The school's contacts check: every rung reaches someone.
    assert!(page.body.contains("duty-check-ok"), "{}", page.body);
    assert!(
        !page.body.contains("duty-add"),
        "no form for a head teacher"
    );
    // And a head teacher's post is refused by the API's own check.
    let csrf = page.field("csrf");
    let refused = teacher
        .post(
            "/duty/overrides",
            &[
                ("csrf", csrf.as_str()),
                ("staff_id", &k1.to_string()),
                ("from", &local(now)),
                ("to", &local(now + chrono::Duration::days(1))),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
}
