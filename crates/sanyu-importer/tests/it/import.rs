//! Screening imports against real databases (SQLite and PostgreSQL): what a
//! mixed file becomes, refusal of a file that does not fit, and idempotency of
//! resumed, repeated and re-imported jobs.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use prost::Message;
use sanyu_events::{Payload, v1};
use sanyu_importer::{Declaration, ImportError, NewJob, ProcessOptions};
use sanyu_platform::relay::Waker;
use sanyu_screening::ColumnProfile;
use sanyu_store::entities::{dead_letter, outbox, school, screening_result};
use sanyu_store::sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Statement,
};
use sanyu_store::{Db, roster};
use sanyu_test_support::{TestDb, seed_school};
use uuid::Uuid;

/// A PHQ-9 export as Excel in China writes it: GBK, Chinese headers, a name
/// column. Students S1–S3 are on the roster; S8 and S9 are not.
const MIXED_PHQ9: &str = "学号,姓名,题1,题2,题3,题4,题5,题6,题7,题8,题9\n\
S1,张三,0,0,0,0,0,0,0,0,1\n\
S2,李四,0,x,0,0,0,0,0,0,2\n\
S3,王五,2,2,2,2,2,2,2,2,0\n\
S9,赵六,0,0,0,0,0,0,0,0,3\n\
S8,钱七,1,0,0,0,0,0,0,0,0\n\
,孙八,0,0,0,0,0,0,0,0,0\n";

fn gbk(text: &str) -> Vec<u8> {
    let (bytes, _, had_errors) = encoding_rs::GBK.encode(text);
    assert!(!had_errors);
    bytes.into_owned()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn school_of(db: &Db, code: &str) -> school::Model {
    roster::school_by_code(db, code).await.unwrap().unwrap()
}

fn declaration(instrument: &str) -> Declaration {
    Declaration {
        instrument: instrument.into(),
        coding: "0-3".into(),
        administered_on: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        sheet: None,
        profile: ColumnProfile::default(),
        file_name: "phq9.csv".into(),
    }
}

async fn prepare(
    db: &Db,
    school: &school::Model,
    path: &Path,
    instrument: &str,
) -> Result<Uuid, ImportError> {
    sanyu_importer::prepare(
        db,
        NewJob {
            id: Uuid::now_v7(),
            school: school.clone(),
            declaration: declaration(instrument),
            path: path.to_path_buf(),
            created_by: None,
            xlsx_limits: Default::default(),
        },
    )
    .await
    .map(|j| j.id)
}

/// One signal as the outbox carries it: alone (its message's event id is the
/// signal id) or inside a `ScreeningResultBatch` (its own `signal_id`).
#[derive(Debug)]
struct Sent {
    subject: String,
    /// The signal id.
    event_id: String,
    /// The outbox row's (the message's) event id.
    message_id: String,
}

/// Every screening signal in the outbox, batches unpacked.
async fn screening_events(db: &Db) -> Vec<(Sent, v1::ScreeningResultRecorded)> {
    let mut signals = Vec::new();
    for row in outbox::Entity::find()
        .filter(outbox::Column::Subject.starts_with("sanyu.intake.screening"))
        .order_by_asc(outbox::Column::Id)
        .all(db)
        .await
        .unwrap()
    {
        let envelope = v1::Envelope::decode(row.payload.as_slice()).unwrap();
        match envelope.payload {
            Some(Payload::ScreeningResult(result)) => {
                assert_eq!(
                    result.signal_id, "",
                    "a signal travelling alone is its envelope"
                );
                signals.push((
                    Sent {
                        subject: row.subject.clone(),
                        event_id: row.event_id.clone(),
                        message_id: row.event_id.clone(),
                    },
                    result,
                ));
            }
            Some(Payload::ScreeningBatch(batch)) => {
                assert_eq!(
                    row.event_id,
                    sanyu_importer::batch_event_id(
                        batch.import_id.parse().unwrap(),
                        batch.sequence
                    )
                );
                for result in batch.results {
                    signals.push((
                        Sent {
                            subject: row.subject.clone(),
                            event_id: result.signal_id.clone(),
                            message_id: row.event_id.clone(),
                        },
                        result,
                    ));
                }
            }
            other => panic!("not a screening signal: {other:?}"),
        }
    }
    signals
}

async fn result_count(db: &Db) -> u64 {
    screening_result::Entity::find().count(db).await.unwrap()
}

async fn a_mixed_gbk_phq9_file_becomes_results_signals_and_a_dead_letter(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let school = school_of(&db, "SCH1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "phq9.csv", &gbk(MIXED_PHQ9));

    let id = prepare(&db, &school, &path, "PHQ-9").await.unwrap();
    let job = sanyu_importer::process(&db, &Waker::default(), id, &ProcessOptions::default())
        .await
        .unwrap();
    assert_eq!(job.state, "done");
    assert_eq!(job.rows_total, Some(6));
    assert_eq!(
        (
            job.rows_read,
            job.rows_accepted,
            job.rows_rejected,
            job.alerts_raised
        ),
        (6, 2, 4, 3)
    );
    assert_eq!(sanyu_importer::percent_done(&job), Some(100));
    assert!(path.exists(), "the operator's file is never deleted");

    let results = sanyu_store::screening::results(&db, id, 0, 100)
        .await
        .unwrap();
    let by_row = |row: i64| results.iter().find(|r| r.row_number == row).unwrap();
    assert_eq!(results.len(), 6);
    let s1 = by_row(2);
    assert_eq!((s1.outcome.as_str(), s1.total), ("ok", Some(1)));
    assert_eq!(s1.band.as_deref(), Some("minimal"));
    assert_eq!(s1.flags, r#"["suicide_item"]"#);
    let s2 = by_row(3);
    assert_eq!(s2.outcome, "reject");
    assert_eq!(s2.total, None);
    assert_eq!(
        s2.flags, r#"["suicide_item"]"#,
        "the alert survives the rejection"
    );
    assert!(s2.reason.as_deref().unwrap().contains("item_2"), "{s2:?}");
    let s3 = by_row(4);
    assert_eq!(
        (s3.total, s3.band.as_deref(), s3.level.as_deref()),
        (Some(16), Some("moderately_severe"), Some("elevated"))
    );
    let s9 = by_row(5);
    assert_eq!((s9.outcome.as_str(), s9.student_id), ("reject", None));
    assert!(
        s9.reason
            .as_deref()
            .unwrap()
            .contains(sanyu_importer::UNKNOWN_STUDENT)
    );
    assert!(
        by_row(7)
            .reason
            .as_deref()
            .unwrap()
            .contains("student number missing")
    );

    // Three signals: S1's suicide item, S2's alert on a rejected row, S3's band.
    let events = screening_events(&db).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let s1_id = s1.student_id.unwrap().to_string();
    let (row, e) = events.iter().find(|(_, e)| e.student_id == s1_id).unwrap();
    assert!(row.subject.starts_with("sanyu.intake.screening.SCH1."));
    assert_eq!(e.flags, ["suicide_item"]);
    assert_eq!(e.suggested_level, v1::RiskLevel::High as i32);
    assert!(!e.rejected);
    assert_eq!(e.result_id, s1.id.to_string());
    assert_eq!(s1.event_id.as_deref(), Some(row.event_id.as_str()));
    let s2_id = s2.student_id.unwrap().to_string();
    let (_, e) = events.iter().find(|(_, e)| e.student_id == s2_id).unwrap();
    assert!(e.rejected);
    assert_eq!(e.flags, ["suicide_item"]);
    let s3_id = s3.student_id.unwrap().to_string();
    let (row, e) = events.iter().find(|(_, e)| e.student_id == s3_id).unwrap();
    assert_eq!(
        (e.band.as_str(), e.suggested_level),
        ("moderately_severe", v1::RiskLevel::Elevated as i32)
    );
    // Past a cut-off without a suicide alert: in the batch's one
    // `ScreeningResultBatch`, under its own signal id.
    assert_eq!(row.subject, "sanyu.intake.screening_batch.SCH1");
    assert_eq!(row.message_id, sanyu_importer::batch_event_id(id, 0));
    assert_eq!(s3.event_id.as_deref(), Some(row.event_id.as_str()));
    for (row, _) in &events {
        // Event payloads carry no totals or answers: the only numbers are ids and times.
        assert!(
            row.event_id.starts_with("screening:SCH1:"),
            "{}",
            row.event_id
        );
    }

    // S9's alert cannot become a signal: a dead letter names the import and row.
    let letters = dead_letter::Entity::find().all(&db).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0].subject.as_deref(),
        Some("sanyu.intake.screening.SCH1")
    );
    assert!(letters[0].reason.contains(&id.to_string()));
    assert!(letters[0].reason.contains("row 5"));
    assert!(!letters[0].reason.contains("赵六"));

    // The error report: one line per problem, with row and column.
    let csv = String::from_utf8(sanyu_importer::errors_csv(&db, id).await.unwrap()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "row,column,reason");
    assert!(
        lines.contains(&"3,item_2,`x` is not a whole number"),
        "{csv}"
    );
    assert!(
        lines.contains(&format!("5,student_no,{}", sanyu_importer::UNKNOWN_STUDENT).as_str()),
        "{csv}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("7,student_no,")),
        "{csv}"
    );
}

#[tokio::test]
async fn a_mixed_gbk_phq9_file_becomes_results_signals_and_a_dead_letter_on_sqlite() {
    a_mixed_gbk_phq9_file_becomes_results_signals_and_a_dead_letter(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_mixed_gbk_phq9_file_becomes_results_signals_and_a_dead_letter_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_mixed_gbk_phq9_file_becomes_results_signals_and_a_dead_letter(db).await;
    }
}

#[tokio::test]
async fn a_file_whose_columns_do_not_fit_is_refused_as_a_whole() {
    let test_db = TestDb::sqlite();
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let school = school_of(&db, "SCH1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "phq9.csv", &gbk(MIXED_PHQ9));

    // A PHQ-9 file declared as GAD-7: item 9 is not a GAD-7 item.
    let err = prepare(&db, &school, &path, "GAD-7").await.unwrap_err();
    let ImportError::Refused { import_id, message } = err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert!(message.contains("do not fit GAD-7"), "{message}");
    assert!(message.contains("extra item columns: 题9"), "{message}");
    let job = sanyu_store::screening::get(&db, import_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, "refused");
    assert_eq!(job.error.as_deref(), Some(message.as_str()));
    // Nothing is read from a refused file, even when asked.
    let job = sanyu_importer::process(&db, &Waker::default(), import_id, &Default::default())
        .await
        .unwrap();
    assert_eq!(job.state, "refused");
    assert_eq!(result_count(&db).await, 0);

    // A declaration error records nothing.
    let err = prepare(&db, &school, &path, "PHQ-99").await.unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Declaration {
                field: "instrument",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn resumed_repeated_and_reimported_jobs_create_no_duplicates(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let school = school_of(&db, "SCH1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "phq9.csv", &gbk(MIXED_PHQ9));
    let waker = Waker::default();

    // The process "dies" after its first batch of two rows...
    let id = prepare(&db, &school, &path, "PHQ-9").await.unwrap();
    let first = ProcessOptions {
        batch_rows: 2,
        stop_after_batches: Some(1),
        worker: "first".into(),
        lease: std::time::Duration::from_millis(300),
        ..ProcessOptions::default()
    };
    let job = sanyu_importer::process(&db, &waker, id, &first)
        .await
        .unwrap();
    assert_eq!(job.state, "running");
    assert!(job.checkpoint_row >= 2);
    let read_before = job.rows_read;
    assert!((1..6).contains(&read_before), "{job:?}");

    // ...another process may not take the job while the lease lasts...
    let small = ProcessOptions {
        batch_rows: 2,
        worker: "second".into(),
        ..ProcessOptions::default()
    };
    let busy = sanyu_importer::process(&db, &waker, id, &small).await;
    assert!(
        matches!(&busy, Err(ImportError::Busy { owner, .. }) if owner == "first"),
        "{busy:?}"
    );
    // ...and once it expired, the next run resumes after the checkpoint.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let job = sanyu_importer::process(&db, &waker, id, &small)
        .await
        .unwrap();
    assert_eq!(job.state, "done");
    assert_eq!(
        (
            job.rows_read,
            job.rows_accepted,
            job.rows_rejected,
            job.alerts_raised
        ),
        (6, 2, 4, 3)
    );
    assert_eq!(result_count(&db).await, 6);
    let events = screening_events(&db).await.len();
    assert_eq!(events, 3);

    // The same job run again from the very start (its checkpoint lost):
    // nothing is written twice and the counters stay.
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        format!(
            "UPDATE screening_imports SET state = 'running', checkpoint_row = 0 WHERE id = '{id}'"
        ),
    ))
    .await
    .unwrap();
    let job = sanyu_importer::process(&db, &waker, id, &small)
        .await
        .unwrap();
    assert_eq!(job.state, "done");
    assert_eq!(
        (
            job.rows_read,
            job.rows_accepted,
            job.rows_rejected,
            job.alerts_raised
        ),
        (6, 2, 4, 3)
    );
    assert_eq!(result_count(&db).await, 6);
    assert_eq!(screening_events(&db).await.len(), events);
    let letters = dead_letter::Entity::find().count(&db).await.unwrap();
    assert_eq!(letters, 1);

    // Re-importing the same file as a new import: its own results, but not a
    // single new signal (same student, instrument, date and level).
    let again = prepare(&db, &school, &path, "PHQ-9").await.unwrap();
    let job = sanyu_importer::process(&db, &waker, again, &ProcessOptions::default())
        .await
        .unwrap();
    assert_eq!(job.rows_read, 6);
    // The alerts travel alone under their signal ids, which the outbox keeps
    // once; S3's result rides again in the new import's batch, under the same
    // signal id, which the rules engine decides once (sanyu-rules' tests).
    let signal_ids: std::collections::BTreeSet<String> = screening_events(&db)
        .await
        .into_iter()
        .map(|(sent, _)| sent.event_id)
        .collect();
    assert_eq!(signal_ids.len(), events);
    let again_results = screening_result::Entity::find()
        .filter(screening_result::Column::ImportId.eq(again))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(again_results, 6);
}

#[tokio::test]
async fn resumed_repeated_and_reimported_jobs_create_no_duplicates_on_sqlite() {
    resumed_repeated_and_reimported_jobs_create_no_duplicates(TestDb::sqlite()).await;
}

#[tokio::test]
async fn resumed_repeated_and_reimported_jobs_create_no_duplicates_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        resumed_repeated_and_reimported_jobs_create_no_duplicates(db).await;
    }
}

async fn a_result_worse_than_the_previous_screening_is_marked(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let school = school_of(&db, "SCH1").await;
    let dir = tempfile::tempdir().unwrap();
    let waker = Waker::default();
    let run = |text: &'static str, name: &'static str, date: (i32, u32, u32)| {
        let db = db.clone();
        let school = school.clone();
        let waker = waker.clone();
        let path = write_file(dir.path(), name, text.as_bytes());
        async move {
            let mut decl = declaration("PHQ-9");
            decl.administered_on = NaiveDate::from_ymd_opt(date.0, date.1, date.2).unwrap();
            let job = sanyu_importer::prepare(
                &db,
                NewJob {
                    id: Uuid::now_v7(),
                    school,
                    declaration: decl,
                    path,
                    created_by: None,
                    xlsx_limits: Default::default(),
                },
            )
            .await
            .unwrap();
            sanyu_importer::process(&db, &waker, job.id, &ProcessOptions::default())
                .await
                .unwrap();
            sanyu_store::screening::results(&db, job.id, 0, 100)
                .await
                .unwrap()
        }
    };
    // Spring: S1 total 3, S2 total 6. Autumn: S1 total 8 (+5, the margin: 15 %
    // of 27 rounded up: marked), S2 total 9 (+3: not marked), S3 first screening.
    run(
        "student_no,item_1,item_2,item_3,item_4,item_5,item_6,item_7,item_8,item_9\n\
         S1,1,1,1,0,0,0,0,0,0\nS2,2,2,2,0,0,0,0,0,0\n",
        "spring.csv",
        (2026, 3, 10),
    )
    .await;
    let autumn = run(
        "student_no,item_1,item_2,item_3,item_4,item_5,item_6,item_7,item_8,item_9\n\
         S1,1,1,1,1,1,1,1,1,0\nS2,3,3,3,0,0,0,0,0,0\nS3,3,3,3,3,0,0,0,0,0\n",
        "autumn.csv",
        (2026, 11, 20),
    )
    .await;
    assert_eq!(
        sanyu_importer::worse_margin(sanyu_screening::instrument("PHQ-9").unwrap(), 15),
        5
    );
    let flagged: Vec<(String, bool)> = autumn
        .iter()
        .map(|r| {
            (
                r.student_no.clone(),
                r.flags.contains(sanyu_importer::WORSE_THAN_PREVIOUS),
            )
        })
        .collect();
    assert_eq!(
        flagged,
        vec![
            ("S1".to_owned(), true),
            ("S2".to_owned(), false),
            ("S3".to_owned(), false)
        ]
    );
}

#[tokio::test]
async fn a_result_worse_than_the_previous_screening_is_marked_on_sqlite() {
    a_result_worse_than_the_previous_screening_is_marked(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_result_worse_than_the_previous_screening_is_marked_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_result_worse_than_the_previous_screening_is_marked(db).await;
    }
}
