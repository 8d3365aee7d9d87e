//! The migration that seals free text stored in clear (referrals, hotline
//! calls, the timeline's close outcomes and return assessments), on a
//! database that already holds such rows: without the data key it refuses
//! and changes nothing; with it, the raw columns hold no clear text, the
//! clear columns are gone, and the sealed values open to what was stored.

use crate::common;

use chrono::Utc;
use sanyu_store::crypto::Sealer;
use sanyu_store::entities::{case_action, hotline_call, referral};
use sanyu_store::sea_orm::sea_query::{Expr, ExprTrait, Query};
use sanyu_store::sea_orm::{ConnectionTrait, DatabaseBackend, EntityTrait, Statement};
use sanyu_store::{Db, cases};
use sanyu_test_support::TestDb;
use uuid::Uuid;

/// Every migration before the sealing one.
const BEFORE: u32 = 12;

const CANARIES: [&str; 5] = [
    "CANARY-INSTITUTION",
    "CANARY-RETURN",
    "CANARY-HOTLINE-COUNSELLOR",
    "CANARY-ADVICE",
    "CANARY-OUTCOME",
];

struct Old {
    referral: Uuid,
    referral_without_assessment: Uuid,
    call: Uuid,
    close: Uuid,
    referral_action: Uuid,
    note: Uuid,
}

/// Rows in the shape before the migration, free text in clear.
async fn old_rows(conn: &Db) -> Old {
    let s = common::seeded_student(conn, "SEAL1").await;
    let now = Utc::now();
    let case_id = Uuid::now_v7();
    cases::open(
        conn,
        cases::NewCase {
            id: case_id,
            reference: "C-SEAL0001".into(),
            school_id: s.school_id,
            class_id: Some(s.class_id),
            student_id: Some(s.id),
            subject: sanyu_domain::CaseSubject::Student,
            level: sanyu_domain::RiskLevel::High,
            rule: "r".into(),
            at: now,
        },
    )
    .await
    .expect("case");
    let old = Old {
        referral: Uuid::now_v7(),
        referral_without_assessment: Uuid::now_v7(),
        call: Uuid::now_v7(),
        close: Uuid::now_v7(),
        referral_action: Uuid::now_v7(),
        note: Uuid::now_v7(),
    };
    let day = now.date_naive();
    for (id, assessment) in [
        (old.referral, Some("CANARY-RETURN fit to return")),
        (old.referral_without_assessment, None),
    ] {
        let insert = Query::insert()
            .into_table("referrals")
            .columns([
                "id",
                "case_id",
                "institution",
                "referred_on",
                "receipt_confirmed",
                "return_assessed_on",
                "return_assessment",
                "created_at",
                "updated_at",
            ])
            .values_panic([
                id.into(),
                case_id.into(),
                "CANARY-INSTITUTION City Hospital".into(),
                day.into(),
                true.into(),
                assessment.map(|_| day).into(),
                assessment.map(str::to_owned).into(),
                now.into(),
                now.into(),
            ])
            .to_owned();
        conn.execute(&insert).await.expect("old referral");
    }
    let call = Query::insert()
        .into_table("hotline_calls")
        .columns([
            "id",
            "school_id",
            "call_id",
            "started_at",
            "caller_type",
            "student_id",
            "level",
            "counsellor",
            "referral_advice",
            "submitted_by",
            "created_at",
        ])
        .values_panic([
            old.call.into(),
            s.school_id.into(),
            "CALL-OLD-1".into(),
            now.into(),
            "student".into(),
            s.id.into(),
            "high".into(),
            "CANARY-HOTLINE-COUNSELLOR Wang".into(),
            "CANARY-ADVICE see a psychiatrist".into(),
            Uuid::now_v7().into(),
            now.into(),
        ])
        .to_owned();
    conn.execute(&call).await.expect("old call");
    for (id, action, detail) in [
        (
            old.close,
            "close",
            serde_json::json!({"outcome": "CANARY-OUTCOME moved away"}),
        ),
        (
            old.referral_action,
            "referral",
            serde_json::json!({"referral_id": old.referral, "receipt_confirmed": true,
                "return_assessment": "CANARY-RETURN fit to return"}),
        ),
        (old.note, "note", serde_json::json!({})),
    ] {
        let insert = Query::insert()
            .into_table("case_actions")
            .columns([
                "id",
                "case_id",
                "action",
                "actor_role",
                "status_after",
                "detail",
                "at",
            ])
            .values_panic([
                id.into(),
                case_id.into(),
                action.into(),
                "crisis_team".into(),
                "in_progress".into(),
                detail.to_string().into(),
                now.into(),
            ])
            .to_owned();
        conn.execute(&insert).await.expect("old action");
    }
    old
}

/// Every row of `table` as text: PostgreSQL renders the whole row, SQLite
/// each column (`quote` shows blobs as hex, text as text).
async fn raw_rows(conn: &Db, table: &str) -> Vec<String> {
    let sql = match conn.get_database_backend() {
        DatabaseBackend::Postgres => format!("SELECT t::text FROM {table} t"),
        _ => {
            let columns = conn
                .query_all_raw(Statement::from_string(
                    DatabaseBackend::Sqlite,
                    format!("SELECT name FROM pragma_table_info('{table}')"),
                ))
                .await
                .expect("columns")
                .iter()
                .map(|r| {
                    let name: String = r.try_get_by_index(0).expect("name");
                    format!("quote(\"{name}\")")
                })
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            format!("SELECT {columns} FROM {table}")
        }
    };
    conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect("raw rows")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("row text"))
        .collect()
}

/// The files that hold the database's tables, after a checkpoint: the SQLite
/// file and its WAL, or every file of the database's PostgreSQL directory
/// (`None` where they cannot be read).
async fn database_files(db: &TestDb, conn: &Db) -> Option<Vec<(String, Vec<u8>)>> {
    let paths: Vec<std::path::PathBuf> = match conn.get_database_backend() {
        DatabaseBackend::Postgres => {
            conn.execute_unprepared("CHECKPOINT").await.ok()?;
            let row = conn
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    "SELECT current_setting('data_directory') || '/base/' || oid::text \
                     FROM pg_database WHERE datname = current_database()",
                ))
                .await
                .ok()??;
            let dir: String = row.try_get_by_index(0).ok()?;
            std::fs::read_dir(&dir)
                .map_err(|e| eprintln!("cannot read {dir}: {e}: skipping the file check"))
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect()
        }
        _ => {
            let path = db.url().strip_prefix("sqlite://")?.split('?').next()?;
            vec![path.into(), format!("{path}-wal").into()]
        }
    };
    Some(
        paths
            .into_iter()
            .filter_map(|p| Some((p.display().to_string(), std::fs::read(&p).ok()?)))
            .collect(),
    )
}

async fn column_names(conn: &Db, table: &str) -> Vec<String> {
    let sql = match conn.get_database_backend() {
        DatabaseBackend::Postgres => format!(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
        _ => format!("SELECT name FROM pragma_table_info('{table}')"),
    };
    conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect("columns")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("name"))
        .collect()
}

async fn clear_free_text_is_sealed_by_the_migration(db: TestDb) {
    let conn = common::migrated_up_to(&db, BEFORE).await;
    let old = old_rows(&conn).await;

    // Without the data key there is nothing to seal with: refused, and the
    // migration's transaction leaves everything as it was.
    let refused = sanyu_store::db::migrate(&conn)
        .await
        .expect_err("sealing without a key");
    assert!(refused.to_string().contains("data key"), "{refused}");
    assert!(
        column_names(&conn, "referrals")
            .await
            .contains(&"institution".to_owned())
    );
    assert!(
        raw_rows(&conn, "referrals")
            .await
            .concat()
            .contains("CANARY-INSTITUTION")
    );

    let key = Sealer::from_base64(&Sealer::generate_key()).expect("key");
    sanyu_store::db::migrate_with_key(&conn, &key)
        .await
        .expect("migrate with the data key");

    // The raw rows hold no clear text, and no clear column is left.
    for table in ["referrals", "hotline_calls", "case_actions"] {
        let rows = raw_rows(&conn, table).await;
        assert!(!rows.is_empty(), "{table}");
        for row in &rows {
            for canary in CANARIES {
                assert!(!row.contains(canary), "{table}: clear text left: {row}");
            }
        }
    }
    let referral_columns = column_names(&conn, "referrals").await;
    let call_columns = column_names(&conn, "hotline_calls").await;
    for gone in ["institution", "return_assessment"] {
        assert!(!referral_columns.contains(&gone.to_owned()), "{gone}");
    }
    for gone in ["counsellor", "referral_advice"] {
        assert!(!call_columns.contains(&gone.to_owned()), "{gone}");
    }

    // The sealed values open to what was stored.
    let open = |sealed: &Option<Vec<u8>>| sealed.as_deref().map(|s| key.open(s).expect("opens"));
    let r = referral::Entity::find_by_id(old.referral)
        .one(&conn)
        .await
        .expect("read")
        .expect("referral");
    assert_eq!(
        open(&r.institution_sealed).as_deref(),
        Some("CANARY-INSTITUTION City Hospital")
    );
    assert_eq!(
        open(&r.return_assessment_sealed).as_deref(),
        Some("CANARY-RETURN fit to return")
    );
    let r = referral::Entity::find_by_id(old.referral_without_assessment)
        .one(&conn)
        .await
        .expect("read")
        .expect("referral");
    assert_eq!(r.return_assessment_sealed, None);
    assert!(r.institution_sealed.is_some());
    let c = hotline_call::Entity::find_by_id(old.call)
        .one(&conn)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(
        open(&c.counsellor_sealed).as_deref(),
        Some("CANARY-HOTLINE-COUNSELLOR Wang")
    );
    assert_eq!(
        open(&c.referral_advice_sealed).as_deref(),
        Some("CANARY-ADVICE see a psychiatrist")
    );
    let action = |id: Uuid| {
        let conn = &conn;
        async move {
            case_action::Entity::find_by_id(id)
                .one(conn)
                .await
                .expect("read")
                .expect("action")
        }
    };
    let close = action(old.close).await;
    assert_eq!(close.detail, "{}");
    assert_eq!(
        open(&close.detail_sealed).as_deref(),
        Some(r#"{"outcome":"CANARY-OUTCOME moved away"}"#)
    );
    let referral_action = action(old.referral_action).await;
    let clear: serde_json::Value = serde_json::from_str(&referral_action.detail).expect("json");
    assert_eq!(clear["referral_id"], old.referral.to_string());
    assert!(clear.get("return_assessment").is_none(), "{clear}");
    assert_eq!(
        open(&referral_action.detail_sealed).as_deref(),
        Some(r#"{"return_assessment":"CANARY-RETURN fit to return"}"#)
    );
    assert_eq!(action(old.note).await.detail_sealed, None);

    // Nor is it left in the files: SQLite zeroed what the migration freed
    // and the WAL was truncated; PostgreSQL rewrote the tables without the
    // dead tuples that held it (its WAL keeps it until recycled).
    if let Some(files) = database_files(&db, &conn).await {
        for (path, bytes) in files {
            let text = String::from_utf8_lossy(&bytes);
            for canary in CANARIES {
                assert!(!text.contains(canary), "{canary} in {path}");
            }
        }
    }

    // New rows have only sealed columns to go into.
    let update = Query::update()
        .table("referrals")
        .value("institution", "x")
        .and_where(Expr::col("id").eq(old.referral))
        .to_owned();
    assert!(conn.execute(&update).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_free_text_is_sealed_by_the_migration_on_sqlite() {
    clear_free_text_is_sealed_by_the_migration(TestDb::sqlite()).await;
}

/// On a private server: the test checkpoints it and reads its files.
#[tokio::test(flavor = "multi_thread")]
async fn clear_free_text_is_sealed_by_the_migration_on_postgres() {
    if let Some(cluster) = sanyu_test_support::PgCluster::start().await {
        clear_free_text_is_sealed_by_the_migration(TestDb::postgres_at(&cluster.admin_url()).await)
            .await;
    }
}
