//! The default signal level suggested to the rules engine for a screening result.
//!
//! This is a **default**, kept in one table so that it can be read and changed in
//! one place. Level names are those of `sanyu_domain::RiskLevel`.
//!
//! | result                                                                  | level        |
//! |-------------------------------------------------------------------------|--------------|
//! | any suicide flag (`suicide_item`, `suicide_risk`), scored or rejected    | `"high"` (the rules engine escalates) |
//! | flag `screen_positive` (SCL-90) or `total_high` (MHT)                   | `"elevated"` |
//! | band `severe`, `moderately_severe` (PHQ), `very_high` (K10), `class_1` (UPI), `abnormal` (SDQ) | `"elevated"` |
//! | band `moderate` (PHQ/GAD/K10), `high` (K10), `borderline` (SDQ), `class_2` (UPI) | `"watch"` |
//! | an MHT content scale marked high                                        | `"watch"`    |
//! | anything else (`validity_warning` alone included)                        | none         |
//!
//! C-SSRS bands other than `none` always come with `suicide_item`, so they map
//! to `"high"` through the flag.

use crate::scoring::{Flag, RowOutcome, ScoreResult};

/// Bands suggesting `"elevated"`.
pub const ELEVATED_BANDS: &[&str] = &[
    "severe",
    "moderately_severe",
    "very_high",
    "class_1",
    "abnormal",
];

/// Bands suggesting `"watch"`.
pub const WATCH_BANDS: &[&str] = &["moderate", "high", "borderline", "class_2"];

/// Flags suggesting `"elevated"`.
pub const ELEVATED_FLAGS: &[Flag] = &[Flag::ScreenPositive, Flag::TotalHigh];

/// The suggested signal level of a scored row (see the module table).
pub fn suggested_level(result: &ScoreResult) -> Option<&'static str> {
    if result.has_suicide_alert() {
        return Some("high");
    }
    let band = result.band.as_deref();
    if result.flags.iter().any(|f| ELEVATED_FLAGS.contains(f))
        || band.is_some_and(|b| ELEVATED_BANDS.contains(&b))
    {
        return Some("elevated");
    }
    if band.is_some_and(|b| WATCH_BANDS.contains(&b)) || result.subscales.iter().any(|s| s.high) {
        return Some("watch");
    }
    None
}

/// The suggested signal level of any row: a rejected row suggests `"high"` when it
/// carries a suicide alert, and nothing otherwise.
pub fn suggested_level_for(outcome: &RowOutcome) -> Option<&'static str> {
    match outcome {
        RowOutcome::Scored(result) => suggested_level(result),
        RowOutcome::Rejected { alert_flags, .. } => alert_flags
            .iter()
            .any(|f| f.is_suicide_alert())
            .then_some("high"),
    }
}
