//! One row's answers, and what scoring it yields: flags, problems, scores and
//! the outcome.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalogue::SubscaleRole;
use crate::coding::Coding;

/// A flag raised by a scored or rejected row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The instrument's suicide item is positive (PHQ-9/PHQ-A item 9, SCL-90 item 15,
    /// MHT items 85/97, UPI item 25, any C-SSRS yes).
    SuicideItem,
    /// PHQ-A supplementary question: serious thoughts of ending one's life in the
    /// past month, or a suicide attempt ever.
    SuicideRisk,
    /// SCL-90 screen positive (Chinese norms).
    ScreenPositive,
    /// MHT content total at or above the threshold.
    TotalHigh,
    /// MHT lie scale high: the answer sheet may not be valid.
    ValidityWarning,
}

impl Flag {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuicideItem => "suicide_item",
            Self::SuicideRisk => "suicide_risk",
            Self::ScreenPositive => "screen_positive",
            Self::TotalHigh => "total_high",
            Self::ValidityWarning => "validity_warning",
        }
    }

    /// Whether this flag is a suicide alert, which the rules engine must escalate
    /// whether or not the row could be scored.
    pub fn is_suicide_alert(self) -> bool {
        matches!(self, Self::SuicideItem | Self::SuicideRisk)
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one value (or the row) could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RowProblem {
    /// A required answer is blank or its column is absent.
    Missing,
    /// Not a whole number.
    NotANumber { value: String },
    /// Not a yes/no answer.
    NotYesNo { value: String },
    /// A number outside the declared coding.
    OutOfRange { value: i64, allowed: String },
    /// An answer for an item the instrument does not have (wrong item count).
    UnknownItem,
    /// The row's coding is not one the instrument accepts.
    CodingNotAccepted { coding: String },
    /// C-SSRS skip logic broken (e.g. question 2 yes but question 4 blank).
    SkipLogic { detail: String },
    /// SDQ: a problem subscale has too few answers to be scored.
    TooFewAnswered {
        subscale: String,
        answered: u32,
        needed: u32,
    },
    /// The file row has a different number of fields than the header.
    FieldCount { found: usize, expected: usize },
    /// The student number is blank.
    MissingStudentNo,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("answer missing"),
            Self::NotANumber { value } => write!(f, "`{value}` is not a whole number"),
            Self::NotYesNo { value } => write!(f, "`{value}` is not a yes/no answer"),
            Self::OutOfRange { value, allowed } => {
                write!(f, "{value} is out of range; allowed: {allowed}")
            }
            Self::UnknownItem => f.write_str("not an item of this instrument"),
            Self::CodingNotAccepted { coding } => {
                write!(f, "coding {coding} is not accepted by this instrument")
            }
            Self::SkipLogic { detail } => write!(f, "skip logic broken: {detail}"),
            Self::TooFewAnswered {
                subscale,
                answered,
                needed,
            } => write!(
                f,
                "subscale {subscale} has {answered} answers; at least {needed} are needed"
            ),
            Self::FieldCount { found, expected } => {
                write!(f, "the row has {found} fields; the header has {expected}")
            }
            Self::MissingStudentNo => f.write_str("student number missing"),
        }
    }
}

/// One problem in a row: the column it concerns and why.
///
/// `column` is the canonical column name (`item_9`, `student_no`); the file's own
/// header for an item is available from [`ColumnLayout::header_for`](crate::ColumnLayout::header_for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub column: String,
    pub reason: RowProblem,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.column, self.reason)
    }
}

/// The canonical column name of an item key (`"9"` → `item_9`).
pub fn item_column(key: &str) -> String {
    format!("item_{key}")
}

/// The raw answers of one row, keyed by item key (`"1"`, `"9"`, `"s1"`, `"6_recent"`),
/// with the coding of the file they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowAnswers {
    pub coding: Coding,
    pub values: BTreeMap<String, String>,
    /// Problems found while reading the row (field count, student number); any
    /// problem rejects the row, but its alert flags are still evaluated.
    pub problems: Vec<RowError>,
}

impl RowAnswers {
    pub fn new(coding: Coding) -> Self {
        Self {
            coding,
            values: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    /// Answers from `(key, raw)` pairs.
    pub fn from_pairs<K, V>(coding: Coding, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut a = Self::new(coding);
        for (k, v) in pairs {
            a.values.insert(k.into(), v.into());
        }
        a
    }

    /// Answers for items `"1"`, `"2"`, ... in order.
    pub fn numbered<V: Into<String>>(coding: Coding, values: impl IntoIterator<Item = V>) -> Self {
        Self::from_pairs(
            coding,
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| ((i + 1).to_string(), v)),
        )
    }

    /// Set one answer (builder style).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, raw: impl Into<String>) -> Self {
        self.values.insert(key.into(), raw.into());
        self
    }

    /// Remove one answer (builder style): the item's column is then absent.
    #[must_use]
    pub fn without(mut self, key: &str) -> Self {
        self.values.remove(key);
        self
    }
}

/// The score of one subscale (factor, content scale, SDQ subscale).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscaleScore {
    pub key: String,
    pub name: String,
    pub role: SubscaleRole,
    /// Sum of the subscale's items on the canonical scale; for SDQ the score
    /// prorated to all items (sum * items / answered, rounded half up).
    pub sum: u32,
    /// Mean of the answered items (`None` when none was answered).
    pub mean: Option<f64>,
    pub answered: u32,
    pub items: u32,
    /// Whether the subscale could be scored (SDQ: enough answers).
    pub scored: bool,
    /// MHT content scale at or above the threshold.
    pub high: bool,
}

/// The result of a scored row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreResult {
    pub instrument: String,
    pub total: u32,
    pub band: Option<String>,
    pub subscales: Vec<SubscaleScore>,
    /// Sorted, without duplicates.
    pub flags: Vec<Flag>,
}

impl ScoreResult {
    pub fn has_flag(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    pub fn subscale(&self, key: &str) -> Option<&SubscaleScore> {
        self.subscales.iter().find(|s| s.key == key)
    }

    /// Keys of the subscales marked high (MHT content scales).
    pub fn high_scales(&self) -> Vec<&str> {
        self.subscales
            .iter()
            .filter(|s| s.high)
            .map(|s| s.key.as_str())
            .collect()
    }

    pub fn has_suicide_alert(&self) -> bool {
        self.flags.iter().any(|f| f.is_suicide_alert())
    }
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RowOutcome {
    Scored(ScoreResult),
    /// The row could not be scored. `alert_flags` holds the suicide flags whose
    /// items were themselves valid and positive: they must be escalated anyway.
    Rejected {
        errors: Vec<RowError>,
        alert_flags: Vec<Flag>,
    },
}

impl RowOutcome {
    pub fn is_scored(&self) -> bool {
        matches!(self, Self::Scored(_))
    }

    pub fn scored(&self) -> Option<&ScoreResult> {
        match self {
            Self::Scored(r) => Some(r),
            Self::Rejected { .. } => None,
        }
    }

    /// The suicide alerts of the row, scored or rejected.
    pub fn suicide_alerts(&self) -> Vec<Flag> {
        let flags = match self {
            Self::Scored(r) => &r.flags,
            Self::Rejected { alert_flags, .. } => alert_flags,
        };
        flags
            .iter()
            .copied()
            .filter(|f| f.is_suicide_alert())
            .collect()
    }

    pub fn has_suicide_alert(&self) -> bool {
        !self.suicide_alerts().is_empty()
    }
}
