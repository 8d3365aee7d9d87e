//! XLSX files that would unpack to more than the limits allow (issue #13,
//! item 1): each shape of decompression bomb is refused before calamine reads
//! it, and the import checks the workbook again (SQLite and PostgreSQL).
#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use chrono::NaiveDate;
use sanyu_importer::{Declaration, NewJob, ProcessOptions};
use sanyu_platform::relay::Waker;
use sanyu_screening::{
    Coding, ColumnProfile, ScreeningError, XlsxLimits, XlsxRefusal, XlsxWorkbook, instrument,
};
use sanyu_store::roster;
use sanyu_test_support::xlsx_bombs::{self, Part};
use sanyu_test_support::{TestDb, seed_school};
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const MAIN_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";

fn open(bytes: &[u8], limits: &XlsxLimits) -> Result<(), ScreeningError> {
    XlsxWorkbook::open(Cursor::new(bytes), limits).map(|_| ())
}

fn refusal(bytes: &[u8], limits: &XlsxLimits) -> XlsxRefusal {
    match open(bytes, limits) {
        Err(ScreeningError::XlsxRefused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Limits that let everything but the one bound a test is about through.
fn only(set: impl FnOnce(&mut XlsxLimits)) -> XlsxLimits {
    let mut limits = XlsxLimits {
        max_inflated_bytes: u64::MAX,
        max_part_bytes: u64::MAX,
        max_ratio: u64::MAX,
        max_cells: u64::MAX,
        max_shared_strings: u64::MAX,
    };
    set(&mut limits);
    limits
}

/// A workbook whose only sheet is `sheet_data` (the rows inside `<sheetData>`).
fn workbook_with_sheet(head: &str, chunk: &[u8], times: u64, tail: &str) -> Vec<u8> {
    let mut parts = xlsx_bombs::frame(false);
    parts.push(Part::repeated(
        "xl/worksheets/sheet1.xml",
        format!(r#"<?xml version="1.0"?><worksheet xmlns="{MAIN_NS}"><sheetData>{head}"#),
        chunk,
        times,
        format!("{tail}</sheetData></worksheet>"),
    ));
    xlsx_bombs::build(&parts)
}

#[test]
fn a_valid_workbook_opens_within_the_default_limits() {
    let bytes = xlsx_bombs::phq9_workbook(&[("S1", [0, 1, 2, 3, 0, 1, 2, 3, 1])]);
    open(&bytes, &XlsxLimits::default()).unwrap();
}

#[test]
fn a_file_that_is_not_a_zip_is_left_to_calamine_to_name() {
    let err = open(b"PK\x03\x04 not really a zip", &XlsxLimits::default()).unwrap_err();
    assert!(matches!(err, ScreeningError::Xlsx(_)), "{err:?}");
}

#[test]
fn a_sheet_that_inflates_a_thousandfold_is_refused_by_its_declared_ratio() {
    let bomb = xlsx_bombs::sheet_bomb(64 * MIB);
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    let refusal = refusal(&bomb, &XlsxLimits::default());
    assert!(
        matches!(&refusal, XlsxRefusal::Ratio { part, limit: 100 } if part == "xl/worksheets/sheet1.xml"),
        "{refusal:?}"
    );
    assert!(refusal.to_string().contains("decompression bomb"));
}

#[test]
fn a_part_declaring_less_than_it_holds_is_refused_once_past_its_declared_size() {
    let mut parts = xlsx_bombs::frame(false);
    parts.push(
        Part::repeated(
            "xl/worksheets/sheet1.xml",
            format!(
                r#"<worksheet xmlns="{MAIN_NS}"><sheetData><row r="1"><c t="inlineStr"><is><t>"#
            ),
            vec![b' '; 1 << 20],
            64,
            "</t></is></c></row></sheetData></worksheet>",
        )
        // Under the ratio and every size limit: the directory lies.
        .declaring(100_000),
    );
    let bomb = xlsx_bombs::build(&parts);
    let refusal = refusal(&bomb, &XlsxLimits::default());
    assert_eq!(
        refusal,
        XlsxRefusal::LargerThanDeclared {
            part: "xl/worksheets/sheet1.xml".into()
        }
    );
}

#[test]
fn a_shared_string_table_larger_than_the_part_limit_is_refused() {
    let bomb = xlsx_bombs::shared_strings_bomb(8 * MIB);
    let refusal = refusal(&bomb, &only(|l| l.max_part_bytes = 4 * MIB));
    assert_eq!(
        refusal,
        XlsxRefusal::PartTooLarge {
            part: "xl/sharedStrings.xml".into(),
            limit: 4 * MIB
        }
    );
    assert!(refusal.to_string().contains("4 MiB"), "{refusal}");
}

#[test]
fn a_workbook_larger_than_the_total_limit_is_refused() {
    // Two worksheets of 600 KB, each within the limit.
    let mut parts = xlsx_bombs::frame(false);
    for n in 1..=2 {
        parts.push(Part::repeated(
            &format!("xl/worksheets/sheet{n}.xml"),
            format!(r#"<worksheet xmlns="{MAIN_NS}"><sheetData>"#),
            b"<row/>".as_slice(),
            100_000,
            "</sheetData></worksheet>",
        ));
    }
    let book = xlsx_bombs::build(&parts);
    let refusal = refusal(&book, &only(|l| l.max_inflated_bytes = MIB));
    assert_eq!(refusal, XlsxRefusal::TooLargeInAll { limit: MIB });
}

#[test]
fn more_cells_or_shared_strings_than_allowed_are_refused() {
    let rows: Vec<(&str, [u8; 9])> = (0..10).map(|_| ("S1", [0; 9])).collect();
    let book = xlsx_bombs::phq9_workbook(&rows);
    assert_eq!(
        refusal(&book, &only(|l| l.max_cells = 100)),
        XlsxRefusal::TooManyCells { limit: 100 }
    );
    open(&book, &only(|l| l.max_cells = 110)).unwrap();

    let strings = xlsx_bombs::shared_strings_bomb(MIB);
    assert_eq!(
        refusal(&strings, &only(|l| l.max_shared_strings = 1000)),
        XlsxRefusal::TooManySharedStrings { limit: 1000 }
    );
}

#[test]
fn a_shared_string_table_declaring_billions_of_strings_is_refused_before_room_is_made_for_them() {
    // calamine reserves room for `uniqueCount` strings when it opens the table:
    // 24 bytes each, so 240 GB here, which would abort the process.
    let mut parts = xlsx_bombs::frame(true);
    parts.push(Part::plain(
        "xl/sharedStrings.xml",
        format!(r#"<sst xmlns="{MAIN_NS}" count="1" uniqueCount="10000000000"><si><t>学号</t></si></sst>"#),
    ));
    parts.push(Part::plain(
        "xl/worksheets/sheet1.xml",
        format!(r#"<worksheet xmlns="{MAIN_NS}"><sheetData/></worksheet>"#),
    ));
    let book = xlsx_bombs::build(&parts);
    assert_eq!(
        refusal(&book, &XlsxLimits::default()),
        XlsxRefusal::TooManySharedStrings { limit: 1_000_000 }
    );
}

#[test]
fn a_piece_of_text_or_a_cell_longer_than_a_mebibyte_is_refused() {
    // One piece of text of 4 MiB (calamine's XML reader would buffer it whole).
    let bomb = xlsx_bombs::sheet_bomb(4 * MIB);
    assert!(matches!(
        refusal(&bomb, &only(|_| {})),
        XlsxRefusal::PieceTooLong { limit, .. } if limit == MIB
    ));
    // A cell of many short runs, which calamine joins into one string.
    let run = format!("<r><t>{}</t></r>", "0".repeat(60_000));
    let cell = workbook_with_sheet(
        r#"<row r="1"><c r="A1" t="inlineStr"><is>"#,
        run.as_bytes(),
        40,
        "</is></c></row>",
    );
    assert!(matches!(
        refusal(&cell, &only(|_| {})),
        XlsxRefusal::ElementTooLarge { limit, .. } if limit == MIB
    ));
}

#[test]
fn a_row_repeating_one_long_shared_string_is_refused_when_it_is_read() {
    // Ten cells all showing one 600 KB shared string: the file is small and
    // passes the guard, but the row would hold 6 MB of text.
    let mut parts = xlsx_bombs::frame(true);
    let mut strings = String::from("<si><t>学号</t></si>");
    for n in 1..=9 {
        strings.push_str(&format!("<si><t>第{n}题</t></si>"));
    }
    strings.push_str(&format!("<si><t>{}</t></si>", "1".repeat(600_000)));
    parts.push(Part::plain(
        "xl/sharedStrings.xml",
        format!(r#"<sst xmlns="{MAIN_NS}" uniqueCount="11">{strings}</sst>"#),
    ));
    let mut header = String::new();
    let mut row = String::new();
    for c in 0..10u8 {
        let col = char::from(b'A' + c);
        header.push_str(&format!(r#"<c r="{col}1" t="s"><v>{c}</v></c>"#));
        row.push_str(&format!(r#"<c r="{col}2" t="s"><v>10</v></c>"#));
    }
    parts.push(Part::plain(
        "xl/worksheets/sheet1.xml",
        format!(
            r#"<worksheet xmlns="{MAIN_NS}"><sheetData><row r="1">{header}</row><row r="2">{row}</row></sheetData></worksheet>"#
        ),
    ));
    let book = xlsx_bombs::build(&parts);
    let mut book = XlsxWorkbook::open(Cursor::new(book), &XlsxLimits::default()).unwrap();
    let phq9 = instrument("PHQ-9").unwrap();
    let mut rows = book
        .rows(None, phq9, Coding::Zero3, &ColumnProfile::default())
        .unwrap();
    let err = rows.next().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            ScreeningError::XlsxRefused(XlsxRefusal::RowTooLarge { row: 2, .. })
        ),
        "{err:?}"
    );
}

/// A workbook accepted at upload is checked again when the import reads it
/// (here with a stricter limit, as after a configuration change): the job
/// fails with the refusal, having read nothing.
async fn the_import_checks_the_workbook_again_before_reading_it(test_db: TestDb) {
    let db = test_db.connect().await;
    seed_school(&db, "SCH1").await;
    let school = roster::school_by_code(&db, "SCH1").await.unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phq9.xlsx");
    std::fs::write(
        &path,
        xlsx_bombs::phq9_workbook(&[("S1", [0; 9]), ("S2", [1; 9]), ("S3", [2; 9])]),
    )
    .unwrap();
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
                file_name: "phq9.xlsx".into(),
            },
            path,
            created_by: None,
            xlsx_limits: XlsxLimits::default(),
        },
    )
    .await
    .unwrap();
    assert_eq!(job.state, "queued");
    let options = ProcessOptions {
        xlsx_limits: XlsxLimits {
            max_cells: 20,
            ..XlsxLimits::default()
        },
        ..ProcessOptions::default()
    };
    let job = sanyu_importer::process(&db, &Waker::default(), job.id, &options)
        .await
        .unwrap();
    assert_eq!(job.state, "failed");
    assert_eq!(job.rows_read, 0);
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains("XLSX file refused: it has more than 20 cells"),
        "{error}"
    );
}

#[tokio::test]
async fn the_import_checks_the_workbook_again_before_reading_it_on_sqlite() {
    the_import_checks_the_workbook_again_before_reading_it(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_import_checks_the_workbook_again_before_reading_it_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_import_checks_the_workbook_again_before_reading_it(db).await;
    }
}
