//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use sanyu_screening::{
    Coding, Flag, Instrument, RowAnswers, RowError, RowOutcome, ScoreResult, instrument,
};

pub fn inst(id: &str) -> &'static Instrument {
    instrument(id).unwrap()
}

/// Numbered items `1..=values.len()` from canonical values, encoded in `coding`.
pub fn encoded(inst: &Instrument, coding: Coding, values: &[u8]) -> RowAnswers {
    let min = inst.scale().0;
    RowAnswers::numbered(coding, values.iter().map(|v| coding.encode(*v, min)))
}

/// `n` canonical values on `[min, max]` adding up to `total`, filled from item 1,
/// skipping the items in `avoid` (kept at `min`).
pub fn spread(n: usize, min: u8, max: u8, total: u32, avoid: &[usize]) -> Vec<u8> {
    let mut values = vec![min; n];
    let mut left = total - u32::from(min) * u32::try_from(n).unwrap();
    for (i, v) in values.iter_mut().enumerate() {
        if avoid.contains(&(i + 1)) {
            continue;
        }
        let add = left.min(u32::from(max - min));
        *v = min + u8::try_from(add).unwrap();
        left -= add;
    }
    assert_eq!(left, 0, "total {total} not reachable");
    values
}

pub fn scored(outcome: RowOutcome) -> ScoreResult {
    match outcome {
        RowOutcome::Scored(r) => r,
        RowOutcome::Rejected { errors, .. } => panic!("row rejected: {errors:?}"),
    }
}

pub fn rejected(outcome: RowOutcome) -> (Vec<RowError>, Vec<Flag>) {
    match outcome {
        RowOutcome::Rejected {
            errors,
            alert_flags,
        } => (errors, alert_flags),
        RowOutcome::Scored(r) => panic!("row scored: {r:?}"),
    }
}
