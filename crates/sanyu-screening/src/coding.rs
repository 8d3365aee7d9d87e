//! Response codings: how a file writes its answers, and normalisation to the
//! instrument's canonical scale.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ScreeningError;
use crate::scoring::RowProblem;

/// How the answers in one import file are coded. Every import declares one.
///
/// Numeric codings name their range (`"0-3"` means answers 0, 1, 2, 3); an
/// answer is shifted onto the instrument's canonical scale, so a PHQ-9 file
/// coded `1-4` scores exactly like the same answers coded `0-3`.
/// Yes/no codings say which number means yes and which means no; text answers
/// (`yes`/`no`, `是`/`否`, `y`/`n`, `true`/`false`) are accepted under both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Coding {
    #[serde(rename = "0-2")]
    Zero2,
    #[serde(rename = "0-3")]
    Zero3,
    #[serde(rename = "1-4")]
    One4,
    #[serde(rename = "0-4")]
    Zero4,
    #[serde(rename = "1-5")]
    One5,
    /// 1 = yes, 0 = no.
    #[serde(rename = "yes1-no0")]
    Yes1No0,
    /// 1 = yes, 2 = no (common in Chinese survey exports).
    #[serde(rename = "yes1-no2")]
    Yes1No2,
}

impl Coding {
    pub const ALL: [Coding; 7] = [
        Self::Zero2,
        Self::Zero3,
        Self::One4,
        Self::Zero4,
        Self::One5,
        Self::Yes1No0,
        Self::Yes1No2,
    ];
    const EXPECTED: &'static str = "0-2, 0-3, 1-4, 0-4, 1-5, yes1-no0, yes1-no2";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zero2 => "0-2",
            Self::Zero3 => "0-3",
            Self::One4 => "1-4",
            Self::Zero4 => "0-4",
            Self::One5 => "1-5",
            Self::Yes1No0 => "yes1-no0",
            Self::Yes1No2 => "yes1-no2",
        }
    }

    /// Whether this is a yes/no coding.
    pub fn is_yes_no(self) -> bool {
        matches!(self, Self::Yes1No0 | Self::Yes1No2)
    }

    /// The range of a numeric coding (inclusive); `None` for yes/no codings.
    pub fn numeric_range(self) -> Option<(u8, u8)> {
        match self {
            Self::Zero2 => Some((0, 2)),
            Self::Zero3 => Some((0, 3)),
            Self::One4 => Some((1, 4)),
            Self::Zero4 => Some((0, 4)),
            Self::One5 => Some((1, 5)),
            Self::Yes1No0 | Self::Yes1No2 => None,
        }
    }

    /// The number this coding writes for "no" (yes is always 1).
    pub fn no_value(self) -> Option<u8> {
        match self {
            Self::Yes1No0 => Some(0),
            Self::Yes1No2 => Some(2),
            _ => None,
        }
    }

    /// Encode a canonical value (as used by the catalogue) in this coding, for
    /// writing test files and fixtures. `canonical_min` is the instrument's scale
    /// minimum. Yes/no codings take 1 = yes, 0 = no.
    pub fn encode(self, canonical: u8, canonical_min: u8) -> String {
        match (self.numeric_range(), self.no_value()) {
            (Some((min, _)), _) => canonical
                .saturating_sub(canonical_min)
                .saturating_add(min)
                .to_string(),
            (None, Some(no)) => {
                if canonical >= 1 {
                    "1".to_string()
                } else {
                    no.to_string()
                }
            }
            (None, None) => canonical.to_string(),
        }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Coding {
    type Err = ScreeningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let coding = match norm.as_str() {
            "0-2" => Self::Zero2,
            "0-3" => Self::Zero3,
            "1-4" => Self::One4,
            "0-4" => Self::Zero4,
            "1-5" => Self::One5,
            "yes1-no0" | "yes1/no0" | "1/0" => Self::Yes1No0,
            "yes1-no2" | "yes1/no2" | "1/2" => Self::Yes1No2,
            _ => {
                return Err(ScreeningError::UnknownCoding {
                    value: s.to_string(),
                    expected: Self::EXPECTED,
                });
            }
        };
        Ok(coding)
    }
}

/// How one item's answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemReading {
    /// Coded with the file's declared coding, onto the canonical `[min, max]`.
    Declared { min: u8, max: u8 },
    /// A yes/no question inside a Likert instrument: 1 = yes, 0 or 2 = no, or text.
    LenientYesNo,
}

const YES_WORDS: [&str; 6] = ["yes", "y", "true", "是", "是的", "有"];
const NO_WORDS: [&str; 7] = ["no", "n", "false", "否", "不是", "没有", "无"];

fn yes_no_word(raw: &str) -> Option<u8> {
    let lower = raw.to_lowercase();
    if YES_WORDS.contains(&lower.as_str()) {
        Some(1)
    } else if NO_WORDS.contains(&lower.as_str()) {
        Some(0)
    } else {
        None
    }
}

/// An integer written as `2`, `+2` or `2.0` (spreadsheets export numbers as floats).
fn integer(raw: &str) -> Option<i64> {
    if let Ok(v) = raw.parse::<i64>() {
        return Some(v);
    }
    let f = raw.parse::<f64>().ok()?;
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        // The value is integral and small, so the conversion is exact.
        #[allow(clippy::cast_possible_truncation)]
        Some(f as i64)
    } else {
        None
    }
}

/// Normalise one raw answer. `Ok(None)` is a blank answer.
pub(crate) fn normalise(
    raw: &str,
    coding: Coding,
    reading: ItemReading,
) -> Result<Option<u8>, RowProblem> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match reading {
        ItemReading::LenientYesNo => {
            if let Some(v) = yes_no_word(raw) {
                return Ok(Some(v));
            }
            match integer(raw) {
                Some(1) => Ok(Some(1)),
                Some(0 | 2) => Ok(Some(0)),
                Some(value) => Err(RowProblem::OutOfRange {
                    value,
                    allowed: "1 (yes), 0 or 2 (no), or yes/no/是/否".to_string(),
                }),
                None => Err(RowProblem::NotYesNo {
                    value: raw.to_string(),
                }),
            }
        }
        ItemReading::Declared { min, max } => match (coding.numeric_range(), coding.no_value()) {
            (Some((cmin, cmax)), _) => {
                let Some(value) = integer(raw) else {
                    return Err(RowProblem::NotANumber {
                        value: raw.to_string(),
                    });
                };
                if value < i64::from(cmin) || value > i64::from(cmax) {
                    return Err(RowProblem::OutOfRange {
                        value,
                        allowed: format!("{cmin}-{cmax} (coding {coding})"),
                    });
                }
                // The catalogue guarantees that the coding and the scale have the
                // same width, so the shifted value is within [min, max].
                let shifted = value - i64::from(cmin) + i64::from(min);
                u8::try_from(shifted)
                    .ok()
                    .filter(|v| *v <= max)
                    .map(Some)
                    .ok_or(RowProblem::OutOfRange {
                        value,
                        allowed: format!("{cmin}-{cmax} (coding {coding})"),
                    })
            }
            (None, Some(no)) => {
                if let Some(v) = yes_no_word(raw) {
                    return Ok(Some(v));
                }
                match integer(raw) {
                    Some(1) => Ok(Some(1)),
                    Some(v) if v == i64::from(no) => Ok(Some(0)),
                    Some(value) => Err(RowProblem::OutOfRange {
                        value,
                        allowed: format!("1 (yes) or {no} (no) (coding {coding})"),
                    }),
                    None => Err(RowProblem::NotYesNo {
                        value: raw.to_string(),
                    }),
                }
            }
            (None, None) => Err(RowProblem::NotANumber {
                value: raw.to_string(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIKERT: ItemReading = ItemReading::Declared { min: 0, max: 3 };
    const SCL: ItemReading = ItemReading::Declared { min: 1, max: 5 };
    const YN: ItemReading = ItemReading::Declared { min: 0, max: 1 };

    #[test]
    fn coding_names_round_trip() {
        for c in Coding::ALL {
            assert_eq!(c.as_str().parse::<Coding>().unwrap(), c);
        }
        assert!("0-9".parse::<Coding>().is_err());
    }

    #[test]
    fn one_to_four_is_shifted_down_onto_zero_to_three() {
        assert_eq!(normalise("1", Coding::One4, LIKERT), Ok(Some(0)));
        assert_eq!(normalise("4", Coding::One4, LIKERT), Ok(Some(3)));
        assert!(normalise("0", Coding::One4, LIKERT).is_err());
        assert_eq!(normalise("0", Coding::Zero3, LIKERT), Ok(Some(0)));
        assert!(normalise("4", Coding::Zero3, LIKERT).is_err());
    }

    #[test]
    fn zero_to_four_is_shifted_up_onto_one_to_five() {
        assert_eq!(normalise("0", Coding::Zero4, SCL), Ok(Some(1)));
        assert_eq!(normalise("4", Coding::Zero4, SCL), Ok(Some(5)));
        assert!(normalise("5", Coding::Zero4, SCL).is_err());
        assert_eq!(normalise("5", Coding::One5, SCL), Ok(Some(5)));
    }

    #[test]
    fn spreadsheet_floats_and_spaces_are_read_as_integers() {
        assert_eq!(normalise(" 2.0 ", Coding::Zero3, LIKERT), Ok(Some(2)));
        assert!(matches!(
            normalise("2.5", Coding::Zero3, LIKERT),
            Err(RowProblem::NotANumber { .. })
        ));
        assert!(matches!(
            normalise("abc", Coding::Zero3, LIKERT),
            Err(RowProblem::NotANumber { .. })
        ));
    }

    #[test]
    fn blank_answers_are_none_not_errors() {
        assert_eq!(normalise("  ", Coding::Zero3, LIKERT), Ok(None));
    }

    #[test]
    fn yes_no_codings_follow_the_declared_no_value_and_accept_words() {
        assert_eq!(normalise("1", Coding::Yes1No2, YN), Ok(Some(1)));
        assert_eq!(normalise("2", Coding::Yes1No2, YN), Ok(Some(0)));
        assert!(normalise("0", Coding::Yes1No2, YN).is_err());
        assert_eq!(normalise("0", Coding::Yes1No0, YN), Ok(Some(0)));
        assert!(normalise("2", Coding::Yes1No0, YN).is_err());
        assert_eq!(normalise("是", Coding::Yes1No0, YN), Ok(Some(1)));
        assert_eq!(normalise("否", Coding::Yes1No2, YN), Ok(Some(0)));
        assert_eq!(normalise("Yes", Coding::Yes1No2, YN), Ok(Some(1)));
        assert!(matches!(
            normalise("maybe", Coding::Yes1No0, YN),
            Err(RowProblem::NotYesNo { .. })
        ));
    }

    #[test]
    fn lenient_yes_no_reads_both_conventions_because_one_is_always_yes() {
        let r = ItemReading::LenientYesNo;
        assert_eq!(normalise("1", Coding::Zero3, r), Ok(Some(1)));
        assert_eq!(normalise("0", Coding::Zero3, r), Ok(Some(0)));
        assert_eq!(normalise("2", Coding::One4, r), Ok(Some(0)));
        assert_eq!(normalise("是", Coding::One4, r), Ok(Some(1)));
        assert!(normalise("3", Coding::One4, r).is_err());
    }

    #[test]
    fn encode_inverts_normalise() {
        for c in [Coding::Zero3, Coding::One4] {
            for v in 0..=3u8 {
                assert_eq!(normalise(&c.encode(v, 0), c, LIKERT), Ok(Some(v)));
            }
        }
        for c in [Coding::Yes1No0, Coding::Yes1No2] {
            for v in 0..=1u8 {
                assert_eq!(normalise(&c.encode(v, 0), c, YN), Ok(Some(v)));
            }
        }
    }
}
