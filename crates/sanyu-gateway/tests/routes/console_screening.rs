//! The console's screening pages (`/screening`, `/screening/{id}`) in-process:
//! a signed-in session of a real staff member (opened in the database the
//! way sign-in opens one), the upload form behind the session's CSRF token,
//! who sees what (an admin: progress and counts, no scores), and another
//! school's import answering exactly like a missing one.

use axum::http::Method;
use sanyu_store::entities::{screening_import, staff};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use sanyu_test_support::TestDb;

use crate::support::{Answer, App, Sch, Who, multipart};

/// S1 minimal, S2 moderately severe (16), S3 an invalid answer, S9 not on
/// the roster.
const PHQ9: &str = "学号,姓名,题1,题2,题3,题4,题5,题6,题7,题8,题9\n\
S1,张三,0,0,0,0,0,0,0,0,0\n\
S2,李四,2,2,2,2,2,2,2,2,0\n\
S3,王五,0,x,0,0,0,0,0,0,0\n\
S9,赵六,1,0,0,0,0,0,0,0,0\n";

/// A browser signed in as staff member `staff_no` of `sch`.
struct Browser<'a> {
    app: &'a App,
    cookie: String,
    csrf: String,
}

async fn staff_member(app: &App, sch: Sch, staff_no: &str) -> staff::Model {
    let id = app.staff_id(sch, staff_no).await;
    staff::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .expect("staff")
        .expect("staff row")
}

async fn sign_in<'a>(app: &'a App, sch: Sch, staff_no: &str) -> Browser<'a> {
    let person = staff_member(app, sch, staff_no).await;
    let opened = sanyu_store::console::open_session(
        &app.db,
        &person,
        "127.0.0.1",
        chrono::Duration::hours(1),
        chrono::Utc::now(),
    )
    .await
    .expect("session");
    Browser {
        app,
        cookie: format!("sanyu_session={}", opened.token),
        csrf: opened.session.csrf_token,
    }
}

impl Browser<'_> {
    async fn get(&self, path: &str) -> Answer {
        self.app
            .with_token(None)
            .send(
                Method::GET,
                path,
                &[("cookie", self.cookie.as_str())],
                Vec::new(),
            )
            .await
    }

    /// The upload form, its fields in the form's order (CSRF first).
    async fn upload(&self, fields: &[(&str, &str)], file: &str) -> Answer {
        let (content_type, body) = multipart(fields, "phq9.csv", file.as_bytes());
        self.app
            .with_token(None)
            .send(
                Method::POST,
                "/screening",
                &[
                    ("cookie", self.cookie.as_str()),
                    ("content-type", content_type.as_str()),
                ],
                body,
            )
            .await
    }

    async fn upload_phq9(&self, file: &str) -> Answer {
        let today = chrono::Utc::now().date_naive().to_string();
        self.upload(
            &[
                ("csrf", self.csrf.as_str()),
                ("instrument", "phq9"),
                ("coding", "0-3"),
                ("administered", today.as_str()),
            ],
            file,
        )
        .await
    }
}

fn location(a: &Answer) -> String {
    a.headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn imports_of(app: &App, sch: Sch) -> u64 {
    let school = sanyu_store::roster::school_by_code(&app.db, sch.code())
        .await
        .expect("school")
        .expect("seeded school");
    screening_import::Entity::find()
        .filter(screening_import::Column::SchoolId.eq(school.id))
        .count(&app.db)
        .await
        .expect("imports")
}

async fn wait_done(app: &App, id: &str) {
    let path = format!("/v1/screening-imports/{id}");
    sanyu_test_support::eventually(
        std::time::Duration::from_secs(30),
        "import done",
        || async {
            let v = app.as_(Who::Counsellor, Sch::A).get(&path).await.json();
            (v["state"] == "done").then_some(())
        },
    )
    .await;
}

async fn the_screening_pages_show_each_role_what_the_api_allows(db: TestDb) {
    let app = App::start(db).await;
    let counsellor = sign_in(&app, Sch::A, "K1").await;
    let admin = sign_in(&app, Sch::A, "A1").await;
    let leader = sign_in(&app, Sch::A, "L1").await;
    let other_school = sign_in(&app, Sch::B, "K1").await;

    // Not signed in: to sign-in, and back here after.
    let r = app.with_token(None).get("/screening").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/sign-in?next=/screening");

    // The form: every instrument of the catalogue, the CSRF token first.
    let r = counsellor.get("/screening").await;
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.headers["cache-control"], "no-store");
    let page = r.text();
    let form = &page[page.find("id=\"sc-form\"").expect("the upload form")..];
    let first_input = &form[form.find("<input").expect("an input")..];
    assert!(
        first_input.starts_with("<input type=\"hidden\" name=\"csrf\""),
        "{first_input}"
    );
    for instrument in ["phq9", "gad7", "scl90", "cssrs"] {
        assert!(
            page.contains(&format!("value=\"{instrument}\"")),
            "{instrument}"
        );
    }
    assert!(page.contains("href=\"/screening\""), "the nav links here");

    // An upload through the form: to the import's page.
    let r = counsellor.upload_phq9(PHQ9).await;
    assert_eq!(r.status(), 303, "{}", r.text());
    let to = location(&r);
    let id = to
        .strip_prefix("/screening/")
        .expect("to the import's page")
        .to_owned();
    wait_done(&app, &id).await;

    // The counsellor: counts, bands, results and row errors.
    let r = counsellor.get(&to).await;
    assert_eq!(r.status(), 200, "{}", r.text());
    let page = r.text();
    assert!(page.contains("id=\"sc-bands-phq9\""), "the band chart");
    assert!(page.contains("<progress id=\"sc-bar\" max=\"100\" value=\"100\""));
    assert!(
        !page.contains("hx-trigger"),
        "a finished import is not polled"
    );
    assert!(page.contains("id=\"sc-results\""));
    assert!(page.contains(">16<"), "S2's total");
    assert!(page.contains("id=\"sc-errors\""));
    assert!(
        page.contains("student number is not on the"),
        "S9's row error"
    );
    for name in ["张三", "李四", "王五", "赵六"] {
        assert!(!page.contains(name), "the file's names are not shown");
    }
    // The list shows it.
    let list = counsellor.get("/screening").await.text();
    assert!(list.contains(&format!("href=\"/screening/{id}\"")));

    // An admin: progress and counts, no bands, no scores, no rows.
    let r = admin.get(&to).await;
    assert_eq!(r.status(), 200, "{}", r.text());
    let page = r.text();
    assert!(page.contains("id=\"sc-counts\""));
    for hidden in [
        "sc-bands",
        "sc-results",
        "sc-errors",
        ">16<",
        ">S2<",
        ">S9<",
    ] {
        assert!(!page.contains(hidden), "an admin sees {hidden}");
    }
    assert!(admin.get("/screening").await.text().contains(&id));

    // A leader does not import or follow imports.
    assert_eq!(leader.get("/screening").await.status(), 403);
    assert_eq!(leader.get(&to).await.status(), 403);

    // Another school's import answers exactly like a missing one.
    let theirs = other_school.get(&to).await;
    let missing = other_school
        .get(&format!("/screening/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(missing.status(), 404);
    assert_eq!(theirs.text(), missing.text());
    assert_eq!(other_school.get("/screening/not-an-id").await.status(), 404);
    let theirs_csv = other_school.get(&format!("{to}/errors.csv")).await;
    assert_eq!(theirs_csv.status(), 404);
    assert!(!other_school.get("/screening").await.text().contains(&id));

    // The live part: a finished import's progress fragment asks htmx for a
    // full reload (its results); a queued import's page polls the fragment.
    let fragment = format!("{to}/progress");
    let hx = [
        ("cookie", counsellor.cookie.as_str()),
        ("hx-request", "true"),
    ];
    let r = app
        .with_token(None)
        .send(Method::GET, &fragment, &hx, Vec::new())
        .await;
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.headers["hx-refresh"], "true");
    assert!(r.text().contains("<progress"), "{}", r.text());
    let r = counsellor.get(&fragment).await;
    assert_eq!(
        (r.status(), location(&r)),
        (303, to.clone()),
        "without htmx"
    );
    let queued = uuid::Uuid::now_v7();
    sanyu_store::screening::create(
        &app.db,
        sanyu_store::screening::NewImport {
            id: queued,
            school_id: staff_member(&app, Sch::A, "K1").await.school_id,
            instrument: "phq9".into(),
            coding: "0-3".into(),
            administered_on: chrono::Utc::now().date_naive(),
            file_name: "later.csv".into(),
            file_format: "csv".into(),
            sheet: None,
            profile: None,
            spool_path: None,
            state: sanyu_store::screening::state::QUEUED,
            error: None,
            rows_total: Some(40),
            created_by: None,
        },
    )
    .await
    .expect("a queued import");
    let page = counsellor.get(&format!("/screening/{queued}")).await.text();
    assert!(
        page.contains(&format!(
            "hx-get=\"/screening/{queued}/progress\" hx-trigger=\"every 1s\""
        )),
        "{page}"
    );
    let r = app
        .with_token(None)
        .send(
            Method::GET,
            &format!("/screening/{queued}/progress"),
            &hx,
            Vec::new(),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers.get("hx-refresh").is_none(), "still polling");

    // The counsellor's CSV of row errors.
    let csv = counsellor.get(&format!("{to}/errors.csv")).await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.text().starts_with("row,column,reason"),
        "{}",
        csv.text()
    );
}

async fn the_upload_form_needs_the_sessions_csrf_token_first_and_shows_a_refusal_in_words(
    db: TestDb,
) {
    let app = App::start(db).await;
    let counsellor = sign_in(&app, Sch::A, "K1").await;
    let today = chrono::Utc::now().date_naive().to_string();
    let before = imports_of(&app, Sch::A).await;

    // A wrong token, no token, the token after the file: refused, nothing imported.
    let mine = counsellor.csrf.clone();
    for fields in [
        vec![
            ("csrf", "forged"),
            ("instrument", "phq9"),
            ("coding", "0-3"),
        ],
        vec![("instrument", "phq9"), ("coding", "0-3")],
        vec![
            ("instrument", "phq9"),
            ("coding", "0-3"),
            ("csrf", mine.as_str()),
        ],
    ] {
        let mut fields = fields;
        fields.push(("administered", today.as_str()));
        let r = counsellor.upload(&fields, PHQ9).await;
        assert_eq!(r.status(), 403, "{fields:?}: {}", r.text());
    }
    assert_eq!(imports_of(&app, Sch::A).await, before);

    // Another session's token is not this one's.
    let other = sign_in(&app, Sch::A, "X1").await;
    let r = counsellor
        .upload(
            &[
                ("csrf", other.csrf.as_str()),
                ("instrument", "phq9"),
                ("coding", "0-3"),
                ("administered", today.as_str()),
            ],
            PHQ9,
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(imports_of(&app, Sch::A).await, before);

    // A file whose columns do not fit the instrument: 422 on the form, in words.
    let r = counsellor
        .upload(
            &[
                ("csrf", counsellor.csrf.as_str()),
                ("instrument", "gad7"),
                ("coding", "0-3"),
                ("administered", today.as_str()),
            ],
            PHQ9,
        )
        .await;
    assert_eq!(r.status(), 422, "{}", r.text());
    let page = r.text();
    assert!(page.contains("id=\"sc-error\""), "{page}");
    assert!(page.contains("文件未导入"), "the refusal in words");
    assert!(page.contains("id=\"sc-form\""), "the form again");
    // The importer keeps the refusal on record (as through the API): listed
    // as refused.
    assert_eq!(imports_of(&app, Sch::A).await, before + 1);
    assert!(page.contains("badge st-refused"), "{page}");

    // A coding the instrument does not take.
    let r = counsellor
        .upload(
            &[
                ("csrf", counsellor.csrf.as_str()),
                ("instrument", "phq9"),
                ("coding", "yes1-no0"),
                ("administered", today.as_str()),
            ],
            PHQ9,
        )
        .await;
    assert_eq!(r.status(), 422, "{}", r.text());
    assert!(r.text().contains("未导入：量表、编码或日期有误"));

    // The right token: imported.
    let r = counsellor.upload_phq9(PHQ9).await;
    assert_eq!(r.status(), 303, "{}", r.text());
    assert_eq!(imports_of(&app, Sch::A).await, before + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_screening_pages_show_each_role_what_the_api_allows_on_sqlite() {
    the_screening_pages_show_each_role_what_the_api_allows(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_screening_pages_show_each_role_what_the_api_allows_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_screening_pages_show_each_role_what_the_api_allows(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upload_form_needs_the_sessions_csrf_token_first_and_shows_a_refusal_in_words_on_sqlite()
 {
    the_upload_form_needs_the_sessions_csrf_token_first_and_shows_a_refusal_in_words(
        TestDb::sqlite(),
    )
    .await;
}
