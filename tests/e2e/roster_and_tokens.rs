//! The operator's CLI (`sanyu migrate`, `roster import`, `token issue|revoke`)
//! as a real binary, and the store on both databases. (The roster API is
//! tested in-process: `crates/sanyu-gateway/tests/routes/roster.rs`.)

use std::process::Command;

use sanyu_domain::{CaseStatus, RiskLevel};
use sanyu_e2e::support::{TestDb, binary, fixtures};
use sanyu_store::entities::{api_token, case, student};
use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};

fn sanyu(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("sanyu"))
        .args(args)
        .env("SANYU_DATABASE__URL", db.url())
        .output()
        .expect("run sanyu");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_cli_imports_the_roster_idempotently_and_issues_tokens(db: TestDb) {
    let dir = tempfile_dir();
    let students = dir.join("students.csv");
    let staff_file = dir.join("staff.csv");
    std::fs::write(&students, fixtures::students_csv("SCH7")).expect("write");
    std::fs::write(&staff_file, fixtures::staff_csv("SCH7")).expect("write");

    let (code, _, err) = sanyu(&db, &["migrate"]);
    assert_eq!(code, 0, "{err}");
    let args = [
        "roster",
        "import",
        "--students",
        students.to_str().expect("path"),
        "--staff",
        staff_file.to_str().expect("path"),
    ];
    let (code, out, err) = sanyu(&db, &args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("3 rows, 3 created, 0 updated, 0 unchanged, 0 rejected"),
        "{out}"
    );
    assert!(out.contains("8 rows, 8 created"), "{out}");

    // Re-importing the same files changes nothing.
    let (code, out, _) = sanyu(&db, &args);
    assert_eq!(code, 0);
    assert!(
        out.contains("3 rows, 0 created, 0 updated, 3 unchanged, 0 rejected"),
        "{out}"
    );
    assert!(
        out.contains("8 rows, 0 created, 0 updated, 8 unchanged, 0 rejected"),
        "{out}"
    );

    // A bad row gets a line-numbered error; the other rows still import.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "school_code,grade_code,class_code,student_no,student_name,guardian_name,guardian_phone\n\
         SCH7,G1,C1,S10,Ten,,\n\
         SCH7,G1,C1,S11,Eleven,Parent,not-a-phone\n\
         SCH7,G1,C1,,Nameless,,\n\
         SCH7,G1,C2,S12,Twelve,,\n",
    )
    .expect("write");
    let (code, out, _) = sanyu(
        &db,
        &[
            "roster",
            "import",
            "--students",
            bad.to_str().expect("path"),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("4 rows, 2 created, 0 updated, 0 unchanged, 2 rejected"),
        "{out}"
    );
    assert!(out.contains("line 3: guardian_phone"), "{out}");
    assert!(out.contains("line 4: student_no"), "{out}");

    let conn = db.connect().await;
    assert_eq!(
        student::Entity::find().count(&conn).await.expect("count"),
        5
    );

    // Tokens: printed once on stdout, stored only as a hash.
    let (code, token, err) = sanyu(
        &db,
        &[
            "token",
            "issue",
            "--role",
            "counsellor",
            "--school",
            "SCH7",
            "--staff",
            "K1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("sy_") && token.len() > 40, "{token}");
    let rows = api_token::Entity::find().all(&conn).await.expect("tokens");
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].token_hash, token);
    assert!(!rows[0].token_hash.contains(&token));
    let principal = sanyu_store::tokens::authenticate(&conn, &token)
        .await
        .expect("auth");
    assert!(matches!(principal, Some(sanyu_domain::Holder::School(_))));
    let (code, _, err) = sanyu(
        &db,
        &["token", "issue", "--role", "teacher", "--school", "SCH7"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--class"), "{err}");
    let (code, _, _) = sanyu(
        &db,
        &["token", "issue", "--role", "counsellor", "--school", "NOPE"],
    );
    assert_ne!(code, 0);
    let (code, _, _) = sanyu(
        &db,
        &["token", "issue", "--role", "wizard", "--school", "SCH7"],
    );
    assert_ne!(code, 0);

    // Revocation and expiry end a token.
    let (code, _, err) = sanyu(&db, &["token", "revoke", "--id", &rows[0].id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        sanyu_store::tokens::authenticate(&conn, &token)
            .await
            .expect("auth")
            .is_none()
    );
    let (_, expired, _) = sanyu(
        &db,
        &[
            "token",
            "issue",
            "--role",
            "admin",
            "--school",
            "SCH7",
            "--ttl-days",
            "-1",
        ],
    );
    assert!(
        sanyu_store::tokens::authenticate(&conn, expired.trim())
            .await
            .expect("auth")
            .is_none()
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sanyu-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_imports_the_roster_idempotently_and_issues_tokens_on_sqlite() {
    the_cli_imports_the_roster_idempotently_and_issues_tokens(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_imports_the_roster_idempotently_and_issues_tokens_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_cli_imports_the_roster_idempotently_and_issues_tokens(db).await;
    }
}

async fn the_database_allows_one_open_case_per_student(db: TestDb) {
    let conn = db.connect().await;
    sanyu_e2e::support::seed_school(&conn, "SCH1").await;
    let s = student::Entity::find()
        .one(&conn)
        .await
        .expect("q")
        .expect("student");
    let open = |status: CaseStatus| case::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        reference: Set(format!("C-{}", uuid::Uuid::new_v4().simple())),
        school_id: Set(s.school_id),
        class_id: Set(Some(s.class_id)),
        student_id: Set(Some(s.id)),
        level: Set(RiskLevel::High),
        level_rank: Set(3),
        status: Set(status),
        opened_rule: Set("test".into()),
        opened_at: Set(chrono::Utc::now()),
        updated_at: Set(chrono::Utc::now()),
        closed_at: Set(None),
        version: Set(1),
        // The ladder columns take their database defaults.
        ..Default::default()
    };
    case::Entity::insert(open(CaseStatus::Closed))
        .exec_without_returning(&conn)
        .await
        .expect("closed case");
    case::Entity::insert(open(CaseStatus::Open))
        .exec_without_returning(&conn)
        .await
        .expect("first open case");
    let second = case::Entity::insert(open(CaseStatus::InProgress))
        .exec_without_returning(&conn)
        .await;
    let err = second.expect_err("a second active case must be refused");
    assert!(sanyu_store::db::is_unique_violation(&err), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_allows_one_open_case_per_student_on_sqlite() {
    the_database_allows_one_open_case_per_student(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_allows_one_open_case_per_student_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_database_allows_one_open_case_per_student(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_runs_in_wal_mode_with_full_sync_and_refuses_other_settings() {
    let db = TestDb::sqlite();
    let conn = db.connect().await;
    sanyu_store::db::check_sqlite_settings(&conn, "full")
        .await
        .expect("settings as configured");
    let err = sanyu_store::db::check_sqlite_settings(&conn, "normal")
        .await
        .expect_err("mismatch detected");
    assert!(err.to_string().contains("synchronous"), "{err}");
    let mut config = sanyu_store::DbConfig::new(db.url());
    config.sqlite_synchronous = "off".into();
    assert!(
        sanyu_store::db::connect(&config).await.is_err(),
        "`off` is refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_and_processed_tables_exist_on_both_backends() {
    for db in TestDb::all().await {
        let conn = db.connect().await;
        assert!(
            sanyu_store::processed::record(&conn, "c", "m1")
                .await
                .expect("record")
        );
        assert!(
            !sanyu_store::processed::record(&conn, "c", "m1")
                .await
                .expect("record")
        );
        assert!(
            sanyu_store::processed::record(&conn, "other", "m1")
                .await
                .expect("record")
        );
    }
}
