//! Scoring one row of answers: validation, normalisation, totals, bands,
//! subscales and flags, with the life-safety rule for rejected rows.

mod row;

pub use row::{
    Flag, RowAnswers, RowError, RowOutcome, RowProblem, ScoreResult, SubscaleScore, item_column,
};

use std::collections::{BTreeMap, BTreeSet};

use crate::catalogue::{Instrument, Method, SubscaleRole};
use crate::coding::normalise;

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
