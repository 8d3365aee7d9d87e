//! Matching a file's header to an instrument: default English and Chinese
//! headers, column-mapping profiles for other export formats, and the refusal
//! of files whose columns do not fit.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalogue::Instrument;
use crate::coding::Coding;
use crate::scoring::{RowAnswers, RowError, RowProblem, item_column};

/// Headers recognised as the student number when no profile names one.
pub const DEFAULT_STUDENT_NO_HEADERS: &[&str] = &[
    "student_no",
    "studentno",
    "student_id",
    "学号",
    "学生编号",
    "学籍号",
];

/// Item header patterns used when no profile gives any: `{n}` stands for the item
/// key, `*` for any text. Matching ignores case and whitespace.
pub const DEFAULT_ITEM_PATTERNS: &[&str] =
    &["item_{n}", "item{n}", "q{n}", "题{n}", "第{n}题", "题目{n}"];

/// How to find the columns of an export format that the defaults do not know.
///
/// ```toml
/// student_no = "考号"
/// item_patterns = ["{n}、*"]          # "1、你夜里睡觉时……" → item 1
/// header_row = 2                      # a title line above the header
/// [item_columns]
/// s1 = "附加题1"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColumnProfile {
    /// Header of the student-number column (default: [`DEFAULT_STUDENT_NO_HEADERS`]).
    pub student_no: Option<String>,
    /// Item header patterns with `{n}` for the item key and `*` for any text.
    /// When given, they replace [`DEFAULT_ITEM_PATTERNS`].
    pub item_patterns: Vec<String>,
    /// Explicit headers by item key; they win over patterns.
    pub item_columns: BTreeMap<String, String>,
    /// The file row (1-based) that holds the header; rows above it are skipped.
    /// Default 1.
    pub header_row: Option<u64>,
}

impl ColumnProfile {
    pub fn header_row(&self) -> u64 {
        self.header_row.unwrap_or(1).max(1)
    }
}

/// Why a file's columns do not fit the declared instrument. The file is refused
/// as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMismatch {
    pub instrument: String,
    pub missing_student_no: bool,
    /// Canonical names of the required item columns not found.
    pub missing: Vec<String>,
    /// Headers that look like item columns but are not items of the instrument.
    pub extra: Vec<String>,
    /// Headers that name an item (or the student number) a second time.
    pub duplicate: Vec<String>,
    /// What the instrument expects, for the message.
    pub expected: String,
}

impl fmt::Display for ColumnMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the file's columns do not fit {}:", self.instrument)?;
        let mut parts = Vec::new();
        if self.missing_student_no {
            parts.push(format!(
                "no student number column (looked for {})",
                DEFAULT_STUDENT_NO_HEADERS.join(", ")
            ));
        }
        if !self.missing.is_empty() {
            parts.push(format!("missing item columns: {}", compress(&self.missing)));
        }
        if !self.extra.is_empty() {
            parts.push(format!("extra item columns: {}", self.extra.join(", ")));
        }
        if !self.duplicate.is_empty() {
            parts.push(format!("duplicate columns: {}", self.duplicate.join(", ")));
        }
        write!(f, " {}; expected {}", parts.join("; "), self.expected)
    }
}

/// `item_1, item_2, item_3, item_5` → `item_1…item_3, item_5`.
fn compress(names: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    let flush = |run: &mut Option<(u32, u32)>, out: &mut Vec<String>| {
        if let Some((a, b)) = run.take() {
            out.push(match b - a {
                0 => format!("item_{a}"),
                1 => format!("item_{a}, item_{b}"),
                _ => format!("item_{a}…item_{b}"),
            });
        }
    };
    for name in names {
        match name
            .strip_prefix("item_")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) => match run {
                Some((a, b)) if b + 1 == n => run = Some((a, n)),
                _ => {
                    flush(&mut run, &mut out);
                    run = Some((n, n));
                }
            },
            None => {
                flush(&mut run, &mut out);
                out.push(name.clone());
            }
        }
    }
    flush(&mut run, &mut out);
    out.join(", ")
}

fn normalise_header(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{feff}')
        .flat_map(char::to_lowercase)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(Vec<char>),
    Key,
    Any,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let norm = normalise_header(pattern);
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let mut rest = norm.as_str();
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{n}") {
            if !lit.is_empty() {
                out.push(Token::Lit(std::mem::take(&mut lit)));
            }
            out.push(Token::Key);
            rest = after;
        } else if c == '*' {
            if !lit.is_empty() {
                out.push(Token::Lit(std::mem::take(&mut lit)));
            }
            out.push(Token::Any);
            rest = &rest[1..];
        } else {
            lit.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !lit.is_empty() {
        out.push(Token::Lit(lit));
    }
    out
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Match `text` against the pattern; the captured item key on success.
fn capture(toks: &[Token], text: &[char]) -> Option<String> {
    fn go(toks: &[Token], text: &[char], key: &mut Option<String>) -> bool {
        match toks.split_first() {
            None => text.is_empty(),
            Some((Token::Lit(l), rest)) => text.starts_with(l) && go(rest, &text[l.len()..], key),
            Some((Token::Any, rest)) => (0..=text.len()).any(|i| go(rest, &text[i..], key)),
            Some((Token::Key, rest)) => {
                let run = text.iter().take_while(|c| is_key_char(**c)).count();
                // Longest key first, so that `q{n}*` reads `q12` as item 12, not 1.
                for len in (1..=run).rev() {
                    if go(rest, &text[len..], key) {
                        *key = Some(text[..len].iter().collect());
                        return true;
                    }
                }
                false
            }
        }
    }
    let mut key = None;
    if go(toks, text, &mut key) { key } else { None }
}

/// Where the student number and each item are in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnLayout {
    student_no: (usize, String),
    /// `(item key, column index, header as written)`, in the instrument's order.
    items: Vec<(String, usize, String)>,
    width: usize,
}

impl ColumnLayout {
    /// Match a header row to an instrument.
    pub fn from_headers<S: AsRef<str>>(
        instrument: &Instrument,
        headers: &[S],
        profile: &ColumnProfile,
    ) -> Result<Self, Box<ColumnMismatch>> {
        let student_names: Vec<String> = match &profile.student_no {
            Some(name) => vec![normalise_header(name)],
            None => DEFAULT_STUDENT_NO_HEADERS
                .iter()
                .map(|h| normalise_header(h))
                .collect(),
        };
        let explicit: BTreeMap<String, &str> = profile
            .item_columns
            .iter()
            .map(|(key, header)| (normalise_header(header), key.as_str()))
            .collect();
        let custom_patterns = !profile.item_patterns.is_empty();
        let patterns: Vec<Vec<Token>> = if custom_patterns {
            profile.item_patterns.iter().map(|p| tokens(p)).collect()
        } else {
            DEFAULT_ITEM_PATTERNS.iter().map(|p| tokens(p)).collect()
        };

        let mut student: Option<(usize, String)> = None;
        let mut found: BTreeMap<String, (usize, String)> = BTreeMap::new();
        let mut extra = Vec::new();
        let mut duplicate = Vec::new();
        for (index, header) in headers.iter().enumerate() {
            let header = header.as_ref();
            let norm = normalise_header(header);
            if norm.is_empty() {
                continue;
            }
            if student_names.contains(&norm) {
                if student.is_some() {
                    duplicate.push(header.to_string());
                } else {
                    student = Some((index, header.to_string()));
                }
                continue;
            }
            let chars: Vec<char> = norm.chars().collect();
            let key = explicit.get(&norm).map(|k| (*k).to_string()).or_else(|| {
                patterns
                    .iter()
                    .find_map(|p| capture(p, &chars))
                    .map(|k| k.to_ascii_lowercase())
            });
            let Some(key) = key else { continue };
            if instrument.is_known_item(&key) {
                match found.entry(key) {
                    Entry::Occupied(_) => duplicate.push(header.to_string()),
                    Entry::Vacant(slot) => {
                        slot.insert((index, header.to_string()));
                    }
                }
            } else if custom_patterns
                || explicit.contains_key(&norm)
                || key.chars().all(|c| c.is_ascii_digit())
            {
                extra.push(header.to_string());
            }
        }

        let missing: Vec<String> = instrument
            .items()
            .iter()
            .filter(|i| !found.contains_key(&i.key))
            .map(|i| item_column(&i.key))
            .collect();
        match student {
            Some(student_no) if missing.is_empty() && extra.is_empty() && duplicate.is_empty() => {
                let items = instrument
                    .items()
                    .iter()
                    .filter_map(|i| {
                        found
                            .get(&i.key)
                            .map(|(idx, h)| (i.key.clone(), *idx, h.clone()))
                    })
                    .collect();
                Ok(Self {
                    student_no,
                    items,
                    width: headers.len(),
                })
            }
            student => Err(Box::new(ColumnMismatch {
                instrument: instrument.name().to_string(),
                missing_student_no: student.is_none(),
                missing,
                extra,
                duplicate,
                expected: expected_columns(instrument),
            })),
        }
    }

    /// The file's header of an item (`"第9题"`), by item key.
    pub fn header_for(&self, key: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, h)| h.as_str())
    }

    pub fn student_no_header(&self) -> &str {
        &self.student_no.1
    }

    /// Number of header fields.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Build a source row from one record's fields. `None` for a blank row.
    /// `check_width` (CSV only) makes a record with more or fewer fields than
    /// the header a malformed row: a field that is not there is not a blank
    /// answer (that is an empty field), and which one went missing (or came
    /// in addition) cannot be known, so the row is never scored. Its answers
    /// are still read by position, so that a positive suicide item still
    /// raises its alert.
    pub(crate) fn extract(
        &self,
        row_number: u64,
        fields: &[&str],
        check_width: bool,
    ) -> Option<SourceRow> {
        if fields.iter().all(|f| f.trim().is_empty()) {
            return None;
        }
        let mut problems = Vec::new();
        if check_width && fields.len() != self.width {
            problems.push(RowError {
                column: "(row)".to_string(),
                reason: RowProblem::FieldCount {
                    found: fields.len(),
                    expected: self.width,
                },
            });
        }
        let student_no = fields
            .get(self.student_no.0)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if student_no.is_empty() {
            problems.push(RowError {
                column: "student_no".to_string(),
                reason: RowProblem::MissingStudentNo,
            });
        }
        let answers = self
            .items
            .iter()
            .filter_map(|(key, idx, _)| fields.get(*idx).map(|v| (key.clone(), (*v).to_string())))
            .collect();
        Some(SourceRow {
            row_number,
            student_no,
            answers,
            problems,
        })
    }
}

fn expected_columns(instrument: &Instrument) -> String {
    let required: Vec<String> = instrument
        .items()
        .iter()
        .map(|i| item_column(&i.key))
        .collect();
    let mut s = format!(
        "a student number column and {} (also written 题N or 第N题)",
        compress(&required)
    );
    if !instrument.optional_items().is_empty() {
        let optional: Vec<String> = instrument
            .optional_items()
            .iter()
            .map(|k| item_column(k))
            .collect();
        s.push_str(&format!(", optionally {}", optional.join(", ")));
    }
    s
}

/// One data row of a file, before scoring: raw answers by item key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// The file's row number (the header is row 1 unless the profile says otherwise).
    pub row_number: u64,
    pub student_no: String,
    /// Raw answers by item key (`"1"`, `"9"`, `"s1"`); a short row lacks its last items.
    pub answers: BTreeMap<String, String>,
    /// Problems of the row itself (blank student number, more or fewer fields
    /// than the header).
    pub problems: Vec<RowError>,
}

impl SourceRow {
    /// The row's answers for scoring.
    pub fn to_answers(&self, coding: Coding) -> RowAnswers {
        RowAnswers {
            coding,
            values: self.answers.clone(),
            problems: self.problems.clone(),
        }
    }

    /// The row's answers for scoring, without copying.
    pub fn into_answers(self, coding: Coding) -> RowAnswers {
        RowAnswers {
            coding,
            values: self.answers,
            problems: self.problems,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::catalogue::instrument;

    fn cap(pattern: &str, text: &str) -> Option<String> {
        let chars: Vec<char> = normalise_header(text).chars().collect();
        capture(&tokens(pattern), &chars)
    }

    #[test]
    fn default_patterns_capture_the_item_key() {
        assert_eq!(cap("item_{n}", "item_9"), Some("9".into()));
        assert_eq!(cap("item_{n}", "ITEM_6_recent"), Some("6_recent".into()));
        assert_eq!(cap("第{n}题", "第12题"), Some("12".into()));
        assert_eq!(cap("题{n}", " 题 3 "), Some("3".into()));
        assert_eq!(cap("item_{n}", "name"), None);
    }

    #[test]
    fn profile_patterns_may_surround_the_key_with_text() {
        assert_eq!(
            cap("{n}、*", "1、你夜里睡觉时，是否总想着明天的功课？"),
            Some("1".into())
        );
        assert_eq!(cap("q{n}_score", "Q12_score"), Some("12".into()));
        assert_eq!(cap("q{n}*", "q12x"), Some("12x".into()));
    }

    #[test]
    fn missing_item_names_are_compressed_into_ranges() {
        let names: Vec<String> = [1, 2, 3, 5, 7, 8]
            .iter()
            .map(|n| format!("item_{n}"))
            .collect();
        assert_eq!(compress(&names), "item_1…item_3, item_5, item_7, item_8");
    }

    #[test]
    fn a_phq9_header_with_seven_items_is_refused_listing_what_is_missing() {
        let phq = instrument("phq9").unwrap();
        let mut headers = vec!["student_no".to_string(), "name".to_string()];
        headers.extend((1..=7).map(|n| format!("item_{n}")));
        let err = ColumnLayout::from_headers(phq, &headers, &ColumnProfile::default()).unwrap_err();
        assert_eq!(err.missing, ["item_8", "item_9"]);
        assert!(!err.missing_student_no);
        assert!(
            err.to_string()
                .contains("missing item columns: item_8, item_9"),
            "{err}"
        );
    }

    #[test]
    fn extra_and_duplicate_item_columns_are_refused() {
        let gad = instrument("gad7").unwrap();
        let mut headers = vec!["学号".to_string()];
        headers.extend((1..=7).map(|n| format!("第{n}题")));
        headers.push("第9题".into());
        headers.push("item_1".into());
        let err = ColumnLayout::from_headers(gad, &headers, &ColumnProfile::default()).unwrap_err();
        assert_eq!(err.extra, ["第9题"]);
        assert_eq!(err.duplicate, ["item_1"]);
        assert!(err.missing.is_empty());
    }

    #[test]
    fn optional_items_and_other_columns_are_accepted() {
        let phq = instrument("phq9").unwrap();
        let mut headers = vec!["班级".to_string(), "学号".to_string(), "姓名".to_string()];
        headers.extend((1..=10).map(|n| format!("题{n}")));
        let layout = ColumnLayout::from_headers(phq, &headers, &ColumnProfile::default()).unwrap();
        assert_eq!(layout.header_for("9"), Some("题9"));
        assert_eq!(layout.student_no_header(), "学号");
    }

    #[test]
    fn a_file_without_student_number_is_refused() {
        let gad = instrument("gad7").unwrap();
        let headers: Vec<String> = (1..=7).map(|n| format!("item_{n}")).collect();
        let err = ColumnLayout::from_headers(gad, &headers, &ColumnProfile::default()).unwrap_err();
        assert!(err.missing_student_no);
        assert!(err.to_string().contains("no student number column"));
    }
}
