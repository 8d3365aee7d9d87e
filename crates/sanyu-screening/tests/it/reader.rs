//! Reading screening files: encodings, header styles, profiles, refusals, XLSX
//! and streaming.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::cell::Cell;
use std::io::{Cursor, Read};
use std::rc::Rc;

use common::{inst, rejected, scored};
use sanyu_screening::{
    Coding, ColumnProfile, Flag, RowOutcome, RowProblem, ScreeningError, ScreeningReader,
    SourceRow, XlsxLimits, XlsxWorkbook,
};

/// Encode text as GBK, as Excel in China saves "CSV (逗号分隔)".
fn gbk(text: &str) -> Vec<u8> {
    let (bytes, _, had_errors) = encoding_rs::GBK.encode(text);
    assert!(!had_errors);
    bytes.into_owned()
}

fn phq9_csv(
    header_style: impl Fn(u32) -> String,
    student: &str,
    rows: &[(&str, [u8; 9])],
) -> String {
    let mut s = format!("{student},姓名");
    for n in 1..=9 {
        s.push(',');
        s.push_str(&header_style(n));
    }
    s.push('\n');
    for (id, values) in rows {
        s.push_str(&format!("{id},张三"));
        for v in values {
            s.push_str(&format!(",{v}"));
        }
        s.push('\n');
    }
    s
}

fn collect<I: Iterator<Item = Result<SourceRow, ScreeningError>>>(rows: I) -> Vec<SourceRow> {
    rows.map(Result::unwrap).collect()
}

const ROWS: [(&str, [u8; 9]); 2] = [
    ("2024001", [1, 1, 1, 1, 1, 1, 1, 1, 1]),
    ("2024002", [3, 3, 3, 3, 3, 3, 3, 3, 0]),
];

#[test]
fn utf8_csv_with_bom_and_english_headers_is_read_row_by_row() {
    let text = format!(
        "\u{feff}{}",
        phq9_csv(|n| format!("item_{n}"), "student_no", &ROWS)
    );
    let phq = inst("phq9");
    let reader = ScreeningReader::open_csv(
        text.as_bytes(),
        phq,
        Coding::Zero3,
        &ColumnProfile::default(),
    )
    .unwrap();
    assert_eq!(reader.encoding(), "UTF-8");
    assert_eq!(reader.layout().student_no_header(), "student_no");
    let rows = collect(reader);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].row_number, rows[0].student_no.as_str()),
        (2, "2024001")
    );
    assert_eq!(rows[1].row_number, 3);
    let first = scored(phq.score_row(&rows[0].to_answers(Coding::Zero3)));
    assert_eq!(first.total, 9);
    assert!(first.has_flag(Flag::SuicideItem));
    let second = scored(phq.score_row(&rows[1].clone().into_answers(Coding::Zero3)));
    assert_eq!(second.total, 24);
}

#[test]
fn utf8_csv_without_bom_and_chinese_headers_is_read() {
    let text = phq9_csv(|n| format!("题{n}"), "学号", &ROWS);
    let phq = inst("phq9");
    let reader = ScreeningReader::open_csv(
        text.as_bytes(),
        phq,
        Coding::Zero3,
        &ColumnProfile::default(),
    )
    .unwrap();
    assert_eq!(reader.encoding(), "UTF-8");
    assert_eq!(reader.layout().header_for("9"), Some("题9"));
    let rows = collect(reader);
    assert_eq!(rows[1].student_no, "2024002");
    assert_eq!(rows[1].answers["1"], "3");
}

#[test]
fn gbk_csv_with_chinese_headers_and_text_answers_is_decoded() {
    let upi = inst("upi");
    let mut text = String::from("学号,姓名,班级");
    for n in 1..=60 {
        text.push_str(&format!(",第{n}题"));
    }
    text.push_str(",第s1题,第s2题,第s3题\r\n");
    for (id, name, yes) in [("S01", "李四", 25), ("S02", "王五", 8)] {
        text.push_str(&format!("{id},{name},高一(3)班"));
        for n in 1..=60 {
            text.push_str(if n == yes { ",是" } else { ",否" });
        }
        text.push_str(",否,否,否\r\n");
    }
    let bytes = gbk(&text);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the test file really is GBK"
    );
    let reader =
        ScreeningReader::open_csv(&bytes[..], upi, Coding::Yes1No2, &ColumnProfile::default())
            .unwrap();
    assert_eq!(reader.encoding(), "gb18030");
    let rows = collect(reader);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].answers["25"], "是");
    let first = scored(upi.score_row(&rows[0].to_answers(Coding::Yes1No2)));
    assert_eq!(first.band.as_deref(), Some("class_1"));
    assert_eq!(first.flags, [Flag::SuicideItem]);
    let second = scored(upi.score_row(&rows[1].to_answers(Coding::Yes1No2)));
    assert_eq!(second.band.as_deref(), Some("class_2"));
}

#[test]
fn a_phq9_file_with_seven_item_columns_is_refused_as_a_whole() {
    let mut text = String::from("student_no");
    for n in 1..=7 {
        text.push_str(&format!(",item_{n}"));
    }
    text.push_str("\n1,0,0,0,0,0,0,0\n");
    let err = ScreeningReader::open_csv(
        text.as_bytes(),
        inst("phq9"),
        Coding::Zero3,
        &ColumnProfile::default(),
    )
    .err()
    .unwrap();
    let ScreeningError::Columns(mismatch) = &err else {
        panic!("{err}")
    };
    assert_eq!(mismatch.missing, ["item_8", "item_9"]);
    let message = err.to_string();
    assert!(message.contains("PHQ-9"), "{message}");
    assert!(
        message.contains("missing item columns: item_8, item_9"),
        "{message}"
    );
}

#[test]
fn a_gad7_file_declared_as_phq9_lists_the_missing_items_and_a_phq9_file_as_gad7_the_extra_ones() {
    let text = phq9_csv(|n| format!("item_{n}"), "student_no", &ROWS);
    let err = ScreeningReader::open_csv(
        text.as_bytes(),
        inst("gad7"),
        Coding::Zero3,
        &ColumnProfile::default(),
    )
    .err()
    .unwrap();
    let ScreeningError::Columns(mismatch) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        mismatch.extra,
        ["item_9"],
        "item 8 is GAD-7's optional difficulty item"
    );
    assert!(
        err.to_string().contains("extra item columns: item_9"),
        "{err}"
    );
}

#[test]
fn a_coding_the_instrument_does_not_accept_is_refused_before_reading() {
    let err = ScreeningReader::open_csv(
        &b"student_no\n"[..],
        inst("k10"),
        Coding::Zero4,
        &ColumnProfile::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, ScreeningError::CodingNotAccepted { .. }));
    assert!(err.to_string().contains("1-5"), "{err}");
}

#[test]
fn an_empty_file_has_no_header() {
    let err = ScreeningReader::open_csv(
        &b""[..],
        inst("phq9"),
        Coding::Zero3,
        &ColumnProfile::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, ScreeningError::NoHeader(1)));
}

#[test]
fn a_profile_maps_an_unusual_export_with_a_title_line() {
    let profile: ColumnProfile = toml::from_str(
        r#"
        student_no = "考号"
        item_patterns = ["Q{n}_score"]
        header_row = 2
        [item_columns]
        s1 = "近一个月自杀念头"
        s2 = "曾经自杀未遂"
        "#,
    )
    .unwrap();
    let mut text = String::from("2024年秋季心理普查 PHQ-A\n考号,近一个月自杀念头");
    for n in 1..=9 {
        text.push_str(&format!(",Q{n}_score"));
    }
    text.push_str(",曾经自杀未遂\n");
    text.push_str("A1,否,0,0,0,0,0,0,0,0,0,是\n");
    text.push_str("A2,否,1,1,1,1,1,1,1,1,0,否\n");
    let a = inst("phq_a");
    let rows =
        collect(ScreeningReader::open_csv(text.as_bytes(), a, Coding::Zero3, &profile).unwrap());
    assert_eq!(rows[0].row_number, 3);
    let first = scored(a.score_row(&rows[0].to_answers(Coding::Zero3)));
    assert_eq!(first.flags, [Flag::SuicideRisk]);
    let second = scored(a.score_row(&rows[1].to_answers(Coding::Zero3)));
    assert_eq!(second.total, 8);
    assert!(second.flags.is_empty());
}

#[test]
fn a_profile_pattern_reads_question_text_headers() {
    let profile = ColumnProfile {
        item_patterns: vec!["{n}、*".into()],
        ..ColumnProfile::default()
    };
    let text = "学号,1、紧张不安,2、无法停止担忧,3、过度担忧,4、很难放松,5、坐立不安,6、容易烦恼,7、害怕\n7,3,3,3,3,3,3,3\n";
    let gad = inst("gad7");
    let rows =
        collect(ScreeningReader::open_csv(text.as_bytes(), gad, Coding::Zero3, &profile).unwrap());
    let r = scored(gad.score_row(&rows[0].to_answers(Coding::Zero3)));
    assert_eq!((r.total, r.band.as_deref()), (21, Some("severe")));
}

#[test]
fn row_numbers_are_file_lines_even_after_blank_lines() {
    let mut text = phq9_csv(|n| format!("item_{n}"), "student_no", &ROWS[..1]);
    text.push('\n');
    text.push_str(",,,,,,,,,,\n");
    text.push_str("2024009,x,0,0,0,0,0,0,0,0,0\n");
    let rows = collect(
        ScreeningReader::open_csv(
            text.as_bytes(),
            inst("phq9"),
            Coding::Zero3,
            &ColumnProfile::default(),
        )
        .unwrap(),
    );
    let numbers: Vec<u64> = rows.iter().map(|r| r.row_number).collect();
    assert_eq!(numbers, [2, 5]);
}

#[test]
fn a_short_row_is_rejected_for_its_missing_items_and_still_alerts() {
    let text =
        "student_no,item_9,item_1,item_2,item_3,item_4,item_5,item_6,item_7,item_8\n55,3,0,0\n";
    let phq = inst("phq9");
    let rows = collect(
        ScreeningReader::open_csv(
            text.as_bytes(),
            phq,
            Coding::Zero3,
            &ColumnProfile::default(),
        )
        .unwrap(),
    );
    let (errors, alerts) = rejected(phq.score_row(&rows[0].to_answers(Coding::Zero3)));
    assert_eq!(
        errors[0].reason,
        RowProblem::FieldCount {
            found: 4,
            expected: 10
        }
    );
    assert_eq!(errors.len(), 7);
    assert!(errors[1..].iter().all(|e| e.reason == RowProblem::Missing));
    assert_eq!(alerts, [Flag::SuicideItem]);
}

/// Issue #13, item 17: a record with fewer fields than the header is a
/// malformed row, never "the last items unanswered" (which an instrument that
/// prorates, like the SDQ, or one with an optional item, like PHQ-9's item 10,
/// would score). A blank answer is an empty field.
#[test]
fn a_row_with_fewer_fields_than_the_header_is_rejected_where_blanks_would_be_scored() {
    let sdq = inst("sdq");
    let header: Vec<String> = (1..=25).map(|n| format!("item_{n}")).collect();
    let answers = vec!["1"; 24].join(",");
    // Row 2: the 25th field is missing. Row 3: the 25th answer is blank.
    let text = format!(
        "student_no,{}\nS1,{answers}\nS2,{answers},\n",
        header.join(",")
    );
    let rows = collect(
        ScreeningReader::open_csv(
            text.as_bytes(),
            sdq,
            Coding::Zero2,
            &ColumnProfile::default(),
        )
        .unwrap(),
    );
    let (errors, _) = rejected(sdq.score_row(&rows[0].to_answers(Coding::Zero2)));
    assert_eq!(errors[0].column, "(row)");
    assert_eq!(
        errors[0].reason,
        RowProblem::FieldCount {
            found: 25,
            expected: 26
        }
    );
    assert!(
        errors[0]
            .to_string()
            .contains("the row has 25 fields; the header has 26"),
        "{}",
        errors[0]
    );
    // The same answers with the last one left blank: prorated and scored.
    let blank_last = scored(sdq.score_row(&rows[1].to_answers(Coding::Zero2)));
    assert!(blank_last.total > 0);

    // PHQ-9 with its optional item 10: a row one field short is not scored
    // either, and its positive suicide item still alerts.
    let phq = inst("phq9");
    let text = "student_no,item_1,item_2,item_3,item_4,item_5,item_6,item_7,item_8,item_9,item_10\n\
                S1,0,0,0,0,0,0,0,0,2\n\
                S2,0,0,0,0,0,0,0,0,2,\n";
    let rows = collect(
        ScreeningReader::open_csv(
            text.as_bytes(),
            phq,
            Coding::Zero3,
            &ColumnProfile::default(),
        )
        .unwrap(),
    );
    let (errors, alerts) = rejected(phq.score_row(&rows[0].to_answers(Coding::Zero3)));
    assert_eq!(
        errors,
        [sanyu_screening::RowError {
            column: "(row)".into(),
            reason: RowProblem::FieldCount {
                found: 10,
                expected: 11
            }
        }]
    );
    assert_eq!(alerts, [Flag::SuicideItem]);
    assert!(
        phq.score_row(&rows[1].to_answers(Coding::Zero3))
            .is_scored()
    );
}

#[test]
fn a_row_with_extra_fields_or_no_student_number_is_rejected_and_still_alerts() {
    let text = "student_no,item_1,item_2,item_3,item_4,item_5,item_6,item_7,item_8,item_9\n\
                1,0,0,0,0,0,0,0,0,2,surplus\n\
                ,0,0,0,0,0,0,0,0,1\n\
                3,0,0,0,0,0,0,0,0,0,\n";
    let phq = inst("phq9");
    let rows = collect(
        ScreeningReader::open_csv(
            text.as_bytes(),
            phq,
            Coding::Zero3,
            &ColumnProfile::default(),
        )
        .unwrap(),
    );
    let (errors, alerts) = rejected(phq.score_row(&rows[0].to_answers(Coding::Zero3)));
    assert!(matches!(
        errors[0].reason,
        RowProblem::FieldCount {
            found: 11,
            expected: 10
        }
    ));
    assert_eq!(alerts, [Flag::SuicideItem]);
    let (errors, alerts) = rejected(phq.score_row(&rows[1].to_answers(Coding::Zero3)));
    assert_eq!(errors[0].column, "student_no");
    assert_eq!(alerts, [Flag::SuicideItem]);
    // An extra field is a wrong field count even when it is empty: an empty
    // field inserted earlier in the row would shift every answer after it.
    let (errors, _) = rejected(phq.score_row(&rows[2].to_answers(Coding::Zero3)));
    assert_eq!(
        errors[0].reason,
        RowProblem::FieldCount {
            found: 11,
            expected: 10
        }
    );
}

// ---------------------------------------------------------------- XLSX

fn xlsx_bytes() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let phq = book.add_worksheet();
    phq.set_name("PHQ9").unwrap();
    phq.write_string(0, 0, "学号").unwrap();
    phq.write_string(0, 1, "姓名").unwrap();
    for n in 1..=9u16 {
        phq.write_string(0, 1 + n, format!("第{n}题")).unwrap();
    }
    for (r, (id, values)) in ROWS.iter().enumerate() {
        let r = u32::try_from(r).unwrap() + 1;
        phq.write_string(r, 0, *id).unwrap();
        phq.write_string(r, 1, "张三").unwrap();
        for (c, v) in values.iter().enumerate() {
            // Coded 1-4, written as numbers.
            phq.write_number(r, 2 + u16::try_from(c).unwrap(), f64::from(*v + 1))
                .unwrap();
        }
    }
    // Row 5 (after an empty row 4): student number written as a number, item 9 positive,
    // item 3 blank.
    phq.write_number(4, 0, 2_024_003.0).unwrap();
    for c in 0..9u16 {
        if c != 2 {
            phq.write_number(4, 2 + c, if c == 8 { 3.0 } else { 1.0 })
                .unwrap();
        }
    }

    let gad = book.add_worksheet();
    gad.set_name("GAD7").unwrap();
    gad.write_string(0, 0, "student_no").unwrap();
    for n in 1..=7u16 {
        gad.write_string(0, n, format!("item_{n}")).unwrap();
    }
    gad.write_string(1, 0, "G1").unwrap();
    for n in 1..=7u16 {
        gad.write_number(1, n, 2.0).unwrap();
    }
    book.save_to_buffer().unwrap()
}

#[test]
fn xlsx_first_sheet_is_streamed_with_worksheet_row_numbers() {
    let mut book = XlsxWorkbook::open(Cursor::new(xlsx_bytes()), &XlsxLimits::default()).unwrap();
    assert_eq!(book.sheet_names(), ["PHQ9", "GAD7"]);
    let phq = inst("phq9");
    let rows = collect(
        book.rows(None, phq, Coding::One4, &ColumnProfile::default())
            .unwrap(),
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0].row_number, rows[0].student_no.as_str()),
        (2, "2024001")
    );
    let first = scored(phq.score_row(&rows[0].to_answers(Coding::One4)));
    assert_eq!(first.total, 9);
    assert_eq!(
        (rows[2].row_number, rows[2].student_no.as_str()),
        (5, "2024003")
    );
    let (errors, alerts) = rejected(phq.score_row(&rows[2].to_answers(Coding::One4)));
    assert_eq!(errors[0].column, "item_3");
    assert_eq!(alerts, [Flag::SuicideItem]);
}

#[test]
fn xlsx_named_sheet_is_read() {
    let mut book =
        ScreeningReader::open_xlsx(Cursor::new(xlsx_bytes()), &XlsxLimits::default()).unwrap();
    let gad = inst("gad7");
    let rows = collect(
        book.rows(Some("GAD7"), gad, Coding::Zero3, &ColumnProfile::default())
            .unwrap(),
    );
    let r = scored(gad.score_row(&rows[0].to_answers(Coding::Zero3)));
    assert_eq!((r.total, r.band.as_deref()), (14, Some("moderate")));
}

#[test]
fn xlsx_missing_sheet_and_misfit_sheet_are_refused() {
    let mut book = XlsxWorkbook::open(Cursor::new(xlsx_bytes()), &XlsxLimits::default()).unwrap();
    let err = book
        .rows(
            Some("K10"),
            inst("k10"),
            Coding::One5,
            &ColumnProfile::default(),
        )
        .err()
        .unwrap();
    assert!(matches!(err, ScreeningError::SheetNotFound(_)), "{err}");
    let err = book
        .rows(
            Some("GAD7"),
            inst("phq9"),
            Coding::Zero3,
            &ColumnProfile::default(),
        )
        .err()
        .unwrap();
    let ScreeningError::Columns(mismatch) = err else {
        panic!()
    };
    assert_eq!(mismatch.missing, ["item_8", "item_9"]);
}

// ---------------------------------------------------------------- streaming

/// A CSV of `rows` PHQ-9 rows generated on the fly; counts the bytes handed out.
struct GeneratedCsv {
    rows: u64,
    next_row: u64,
    pending: Vec<u8>,
    produced: Rc<Cell<u64>>,
}

impl GeneratedCsv {
    fn line(n: u64) -> String {
        let item9 = u8::from(n.is_multiple_of(7));
        format!("S{n:07},学生{n},1,2,3,0,1,2,3,0,{item9}\n")
    }
}

impl Read for GeneratedCsv {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            if self.next_row == 0 {
                self.pending = "学号,姓名,第1题,第2题,第3题,第4题,第5题,第6题,第7题,第8题,第9题\n"
                    .as_bytes()
                    .to_vec();
            } else if self.next_row <= self.rows {
                self.pending = Self::line(self.next_row).into_bytes();
            } else {
                return Ok(0);
            }
            self.next_row += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.produced.set(self.produced.get() + n as u64);
        Ok(n)
    }
}

#[test]
fn a_200k_row_file_is_read_one_row_at_a_time_without_buffering_the_file() {
    const ROWS: u64 = 200_000;
    let produced = Rc::new(Cell::new(0));
    let source = GeneratedCsv {
        rows: ROWS,
        next_row: 0,
        pending: Vec::new(),
        produced: Rc::clone(&produced),
    };
    let total_bytes: u64 = (1..=ROWS).map(|n| GeneratedCsv::line(n).len() as u64).sum();
    assert!(total_bytes > 7_000_000);

    let phq = inst("phq9");
    let mut rows =
        ScreeningReader::open_csv(source, phq, Coding::Zero3, &ColumnProfile::default()).unwrap();
    let first = rows.next().unwrap().unwrap();
    assert_eq!(first.row_number, 2);
    // Only the encoding sample and the decoder's and parser's buffers were read.
    assert!(
        produced.get() < 256 * 1024,
        "read {} bytes before the first row",
        produced.get()
    );

    let mut count = 1;
    let mut alerts = 0;
    let mut max_ahead = 0;
    let mut consumed: u64 = GeneratedCsv::line(1).len() as u64;
    for row in rows {
        let row = row.unwrap();
        count += 1;
        consumed += GeneratedCsv::line(count).len() as u64;
        max_ahead = max_ahead.max(produced.get().saturating_sub(consumed));
        match phq.score_row(&row.into_answers(Coding::Zero3)) {
            RowOutcome::Scored(r) => alerts += u64::from(r.has_suicide_alert()),
            RowOutcome::Rejected { errors, .. } => panic!("{errors:?}"),
        }
    }
    assert_eq!(count, ROWS);
    assert_eq!(alerts, ROWS / 7);
    // The reader never ran more than a small buffer ahead of the rows it yielded.
    assert!(max_ahead < 256 * 1024, "ran {max_ahead} bytes ahead");
}
