//! Scoring one row of answers: validation, normalisation, totals, bands,
//! subscales and flags, with the life-safety rule for rejected rows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalogue::{Instrument, Method, SubscaleRole};
use crate::coding::{Coding, normalise};

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

/// What a scoring method computes for a valid row.
struct Computed {
    total: u32,
    band: Option<String>,
    subscales: Vec<SubscaleScore>,
    flags: Vec<Flag>,
}

impl Computed {
    fn new(
        total: u32,
        band: Option<String>,
        subscales: Vec<SubscaleScore>,
        flags: Vec<Flag>,
    ) -> Self {
        Self {
            total,
            band,
            subscales,
            flags,
        }
    }
}

/// Valid canonical values of one row, by item key.
type Values<'a> = BTreeMap<&'a str, u8>;

fn yes(values: &Values<'_>, key: &str) -> bool {
    values.get(key).is_some_and(|v| *v >= 1)
}

fn any_yes(values: &Values<'_>, keys: &[String]) -> bool {
    keys.iter().any(|k| yes(values, k))
}

fn round_half_up_ratio(numerator: u32, denominator: u32) -> u32 {
    // floor(n / d + 1/2) in integers.
    (2 * numerator + denominator) / (2 * denominator)
}

impl Instrument {
    /// Score one row. Invalid rows are rejected with every problem found; the
    /// catalogue's item flag rules (suicide items) are evaluated on the valid
    /// answers of every row, so a rejected row still alerts.
    pub fn score_row(&self, answers: &RowAnswers) -> RowOutcome {
        let mut errors = answers.problems.clone();
        for key in answers.values.keys() {
            if !self.is_known_item(key) {
                errors.push(RowError {
                    column: item_column(key),
                    reason: RowProblem::UnknownItem,
                });
            }
        }
        if !self.accepts(answers.coding) {
            errors.push(RowError {
                column: "(coding)".to_string(),
                reason: RowProblem::CodingNotAccepted {
                    coding: answers.coding.to_string(),
                },
            });
            // Values cannot be interpreted under a coding the instrument does not
            // know, so no alert can be read either.
            return RowOutcome::Rejected {
                errors,
                alert_flags: Vec::new(),
            };
        }

        let mut values: Values<'_> = BTreeMap::new();
        for item in self.items() {
            let raw = answers.values.get(&item.key);
            match raw.map(|r| normalise(r, answers.coding, item.reading)) {
                Some(Ok(Some(v))) => {
                    values.insert(item.key.as_str(), v);
                }
                None | Some(Ok(None)) => {
                    if !item.blank_allowed {
                        errors.push(RowError {
                            column: item_column(&item.key),
                            reason: RowProblem::Missing,
                        });
                    }
                }
                Some(Err(reason)) => errors.push(RowError {
                    column: item_column(&item.key),
                    reason,
                }),
            }
        }

        let alerts: BTreeSet<Flag> = self
            .item_flags()
            .iter()
            .filter(|rule| {
                rule.items
                    .iter()
                    .any(|k| values.get(k.as_str()).is_some_and(|v| *v >= rule.at_least))
            })
            .map(|rule| rule.flag)
            .collect();

        if errors.is_empty() {
            match self.score_valid(&values) {
                Ok(computed) => {
                    let mut flags = alerts;
                    flags.extend(computed.flags);
                    return RowOutcome::Scored(ScoreResult {
                        instrument: self.id().to_string(),
                        total: computed.total,
                        band: computed.band,
                        subscales: computed.subscales,
                        flags: flags.into_iter().collect(),
                    });
                }
                Err(method_errors) => errors.extend(method_errors),
            }
        }
        RowOutcome::Rejected {
            errors,
            alert_flags: alerts.into_iter().collect(),
        }
    }

    fn plain_subscales(&self, values: &Values<'_>) -> Vec<SubscaleScore> {
        self.subscales()
            .iter()
            .map(|s| {
                let present: Vec<u32> = s
                    .items
                    .iter()
                    .filter_map(|k| values.get(k.as_str()).map(|v| u32::from(*v)))
                    .collect();
                let sum: u32 = present.iter().sum();
                let answered = u32::try_from(present.len()).unwrap_or(u32::MAX);
                let items = u32::try_from(s.items.len()).unwrap_or(u32::MAX);
                SubscaleScore {
                    key: s.key.clone(),
                    name: s.name.clone(),
                    role: s.role,
                    sum,
                    mean: (answered > 0).then(|| f64::from(sum) / f64::from(answered)),
                    answered,
                    items,
                    scored: answered == items,
                    high: false,
                }
            })
            .collect()
    }

    fn scored_total(&self, values: &Values<'_>) -> u32 {
        self.items()
            .iter()
            .filter(|i| i.scored)
            .filter_map(|i| values.get(i.key.as_str()).map(|v| u32::from(*v)))
            .sum()
    }

    fn score_valid(&self, values: &Values<'_>) -> Result<Computed, Vec<RowError>> {
        let band_of = |total: u32| self.band_for(total).map(|b| b.name.clone());
        match self.method() {
            Method::Sum => {
                let total = self.scored_total(values);
                Ok(Computed::new(
                    total,
                    band_of(total),
                    self.plain_subscales(values),
                    Vec::new(),
                ))
            }
            Method::Scl90 {
                total_above,
                positive_item_at_least,
                positive_items_above,
                factor_mean_at_least,
            } => {
                let total = self.scored_total(values);
                let subscales = self.plain_subscales(values);
                let positive_items = values
                    .values()
                    .filter(|v| **v >= *positive_item_at_least)
                    .count();
                let factor_high = subscales.iter().any(|s| {
                    s.role == SubscaleRole::Factor
                        && s.mean.is_some_and(|m| m >= *factor_mean_at_least)
                });
                let positive = total > *total_above
                    || u32::try_from(positive_items).unwrap_or(u32::MAX) > *positive_items_above
                    || factor_high;
                let flags = if positive {
                    vec![Flag::ScreenPositive]
                } else {
                    Vec::new()
                };
                Ok(Computed::new(total, band_of(total), subscales, flags))
            }
            Method::Mht {
                total_at_least,
                scale_high_at_least,
                lie_at_least,
            } => {
                let total = self.scored_total(values);
                let mut subscales = self.plain_subscales(values);
                let mut flags = Vec::new();
                for s in &mut subscales {
                    match s.role {
                        SubscaleRole::Content => s.high = s.sum >= *scale_high_at_least,
                        SubscaleRole::Validity if s.sum >= *lie_at_least => {
                            flags.push(Flag::ValidityWarning);
                        }
                        _ => {}
                    }
                }
                if total >= *total_at_least {
                    flags.push(Flag::TotalHigh);
                }
                Ok(Computed::new(total, band_of(total), subscales, flags))
            }
            Method::Upi {
                class_1_total_at_least,
                class_1_items,
                supplementary,
                class_1_supplementary_yes_at_least,
                class_2_total_at_least,
                class_2_items,
            } => {
                let total = self.scored_total(values);
                let supplementary_yes = supplementary.iter().filter(|k| yes(values, k)).count();
                let class = if total >= *class_1_total_at_least
                    || any_yes(values, class_1_items)
                    || u32::try_from(supplementary_yes).unwrap_or(u32::MAX)
                        >= *class_1_supplementary_yes_at_least
                {
                    "class_1"
                } else if total >= *class_2_total_at_least || any_yes(values, class_2_items) {
                    "class_2"
                } else {
                    "class_3"
                };
                Ok(Computed::new(
                    total,
                    Some(class.to_string()),
                    self.plain_subscales(values),
                    Vec::new(),
                ))
            }
            Method::Sdq {
                reverse_items,
                min_answered,
            } => self.score_sdq(values, reverse_items, *min_answered),
            Method::Cssrs {
                gate_item,
                gated_items,
                high_items,
                moderate_items,
                low_items,
                behaviour_item,
                recency_item,
            } => {
                let mut errors = Vec::new();
                if yes(values, gate_item) {
                    for k in gated_items {
                        if !values.contains_key(k.as_str()) {
                            errors.push(RowError {
                                column: item_column(k),
                                reason: RowProblem::SkipLogic {
                                    detail: format!(
                                        "question {k} must be answered when question {gate_item} is yes"
                                    ),
                                },
                            });
                        }
                    }
                }
                let behaviour = yes(values, behaviour_item);
                if behaviour && !values.contains_key(recency_item.as_str()) {
                    errors.push(RowError {
                        column: item_column(recency_item),
                        reason: RowProblem::SkipLogic {
                            detail: format!(
                                "the recency of the behaviour must be answered when question {behaviour_item} is yes"
                            ),
                        },
                    });
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                let recent = behaviour && yes(values, recency_item);
                let band = if any_yes(values, high_items) || recent {
                    "high"
                } else if any_yes(values, moderate_items) || behaviour {
                    "moderate"
                } else if any_yes(values, low_items) {
                    "low"
                } else {
                    "none"
                };
                Ok(Computed::new(
                    self.scored_total(values),
                    Some(band.to_string()),
                    self.plain_subscales(values),
                    Vec::new(),
                ))
            }
        }
    }

    fn score_sdq(
        &self,
        values: &Values<'_>,
        reverse_items: &[crate::catalogue::ItemRef],
        min_answered: u32,
    ) -> Result<Computed, Vec<RowError>> {
        let (_, smax) = self.scale();
        let reversed: Vec<String> = reverse_items.iter().map(|r| r.key()).collect();
        let value = |k: &str| -> Option<u32> {
            values.get(k).map(|v| {
                if reversed.iter().any(|r| r == k) {
                    u32::from(smax - *v)
                } else {
                    u32::from(*v)
                }
            })
        };
        let mut errors = Vec::new();
        let mut subscales = Vec::new();
        let mut total = 0;
        for s in self.subscales() {
            let present: Vec<u32> = s.items.iter().filter_map(|k| value(k)).collect();
            let raw: u32 = present.iter().sum();
            let answered = u32::try_from(present.len()).unwrap_or(u32::MAX);
            let items = u32::try_from(s.items.len()).unwrap_or(u32::MAX);
            let scored = answered >= min_answered && answered > 0;
            let sum = if scored {
                round_half_up_ratio(raw * items, answered)
            } else {
                0
            };
            if s.role == SubscaleRole::Problem {
                if scored {
                    total += sum;
                } else {
                    errors.push(RowError {
                        column: s.key.clone(),
                        reason: RowProblem::TooFewAnswered {
                            subscale: s.key.clone(),
                            answered,
                            needed: min_answered,
                        },
                    });
                }
            }
            subscales.push(SubscaleScore {
                key: s.key.clone(),
                name: s.name.clone(),
                role: s.role,
                sum,
                mean: (answered > 0).then(|| f64::from(raw) / f64::from(answered)),
                answered,
                items,
                scored,
                high: false,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Computed::new(
            total,
            self.band_for(total).map(|b| b.name.clone()),
            subscales,
            Vec::new(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn half_up_rounding_of_prorated_scores() {
        assert_eq!(round_half_up_ratio(5, 2), 3); // 2.5 -> 3
        assert_eq!(round_half_up_ratio(5, 3), 2); // 1.67 -> 2
        assert_eq!(round_half_up_ratio(4, 3), 1); // 1.33 -> 1
        assert_eq!(round_half_up_ratio(10, 4), 3); // 2.5 -> 3
        assert_eq!(round_half_up_ratio(0, 3), 0);
    }

    #[test]
    fn only_suicide_flags_are_suicide_alerts() {
        assert!(Flag::SuicideItem.is_suicide_alert());
        assert!(Flag::SuicideRisk.is_suicide_alert());
        assert!(!Flag::ScreenPositive.is_suicide_alert());
        assert!(!Flag::TotalHigh.is_suicide_alert());
        assert!(!Flag::ValidityWarning.is_suicide_alert());
    }
}
