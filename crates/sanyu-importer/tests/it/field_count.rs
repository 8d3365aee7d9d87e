//! A CSV record with more or fewer fields than the header (issue #13, item
//! 17) is a malformed row: rejected, never scored, and its positive suicide
//! item still raises an alert (SQLite and PostgreSQL).
#![allow(clippy::unwrap_used)]

use chrono::NaiveDate;
use sanyu_importer::{Declaration, NewJob, ProcessOptions};
use sanyu_platform::relay::Waker;
use sanyu_screening::ColumnProfile;
use sanyu_store::entities::outbox;
use sanyu_store::roster;
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sanyu_test_support::{TestDb, seed_school};
use uuid::Uuid;

/// S1 and S2 are on the roster. Row 2: S1 one field short, item 9 positive.
/// Row 3: S2 complete, item 10 (optional) left blank.
const PHQ9: &str = "student_no,item_1,item_2,item_3,item_4,item_5,item_6,item_7,item_8,item_9,item_10\n\
S1,0,0,0,0,0,0,0,0,2\n\
S2,0,0,0,0,0,0,0,0,0,\n";

async fn a_row_with_fewer_fields_is_rejected_and_its_suicide_item_still_raises_an_alert(
    test_db: TestDb,
) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let school = roster::school_by_code(&db, "SCH1").await.unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phq9.csv");
    std::fs::write(&path, PHQ9).unwrap();
    let job = sanyu_importer::prepare(
        &db,
        NewJob {
            id: Uuid::now_v7(),
            school,
            declaration: Declaration {
                instrument: "PHQ-9".into(),
                coding: "0-3".into(),
                administered_on: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
                sheet: None,
                profile: ColumnProfile::default(),
                file_name: "phq9.csv".into(),
            },
            path,
            created_by: None,
            xlsx_limits: Default::default(),
        },
    )
    .await
    .unwrap();
    let job = sanyu_importer::process(&db, &Waker::default(), job.id, &ProcessOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (
            job.state.as_str(),
            job.rows_accepted,
            job.rows_rejected,
            job.alerts_raised
        ),
        ("done", 1, 1, 1)
    );
    let results = sanyu_store::screening::results(&db, job.id, 0, 10)
        .await
        .unwrap();
    let short = &results[0];
    assert_eq!((short.row_number, short.outcome.as_str()), (2, "reject"));
    assert_eq!(short.total, None, "a short row is never scored");
    assert_eq!(
        short.reason.as_deref(),
        Some("(row): the row has 10 fields; the header has 11")
    );
    assert_eq!(short.flags, r#"["suicide_item"]"#);
    assert_eq!(
        (results[1].outcome.as_str(), results[1].total),
        ("ok", Some(0))
    );

    // The alert travels as a signal of its own.
    let alone = outbox::Entity::find()
        .filter(outbox::Column::Subject.starts_with("sanyu.intake.screening.SCH1."))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(alone.len(), 1);
    assert_eq!(short.event_id.as_deref(), Some(alone[0].event_id.as_str()));

    let csv = String::from_utf8(sanyu_importer::errors_csv(&db, job.id).await.unwrap()).unwrap();
    assert!(
        csv.lines()
            .any(|l| l == "2,(row),the row has 10 fields; the header has 11"),
        "{csv}"
    );
}

#[tokio::test]
async fn a_row_with_fewer_fields_is_rejected_and_its_suicide_item_still_raises_an_alert_on_sqlite()
{
    a_row_with_fewer_fields_is_rejected_and_its_suicide_item_still_raises_an_alert(
        TestDb::sqlite(),
    )
    .await;
}

#[tokio::test]
async fn a_row_with_fewer_fields_is_rejected_and_its_suicide_item_still_raises_an_alert_on_postgres()
 {
    if let Some(db) = TestDb::postgres().await {
        a_row_with_fewer_fields_is_rejected_and_its_suicide_item_still_raises_an_alert(db).await;
    }
}
