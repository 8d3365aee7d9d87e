//! Property tests of the scoring rules over every instrument of the catalogue.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::inst;
use proptest::prelude::*;
use sanyu_screening::{Coding, Flag, Instrument, RowAnswers, RowOutcome, RowProblem, catalogue};

const IDS: [&str; 9] = [
    "phq9", "phq_a", "gad7", "scl90", "mht", "upi", "sdq", "k10", "cssrs",
];

/// Canonical values for every required item (yes/no supplements folded to 0/1).
fn canonical_values(inst: &Instrument, raw: &[u8]) -> Vec<u8> {
    let (min, max) = inst.scale();
    inst.items()
        .iter()
        .zip(raw)
        .map(|(item, r)| {
            if item.is_binary_supplement() {
                r % 2
            } else {
                min + r % (max - min + 1)
            }
        })
        .collect()
}

/// A complete row from canonical values, encoded in `coding`.
fn row_from(inst: &Instrument, coding: Coding, values: &[u8]) -> RowAnswers {
    let min = inst.scale().0;
    RowAnswers::from_pairs(
        coding,
        inst.items().iter().zip(values).map(|(item, v)| {
            let raw = if item.is_binary_supplement() {
                v.to_string()
            } else {
                coding.encode(*v, min)
            };
            (item.key.clone(), raw)
        }),
    )
}

/// Any instrument, one of its codings, and a complete valid row of canonical values.
fn any_valid_row() -> impl Strategy<Value = (&'static Instrument, Coding, Vec<u8>)> {
    (
        prop::sample::select(IDS.to_vec()),
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<u8>(), 100..=100),
    )
        .prop_map(|(id, coding_index, raw)| {
            let i = inst(id);
            let coding = *coding_index.get(i.codings());
            let values = canonical_values(i, &raw);
            (i, coding, values)
        })
}

fn band_rank(inst: &Instrument, total: u32) -> usize {
    inst.bands()
        .iter()
        .position(|b| b.min <= total && total <= b.max)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_valid_row_is_scored_within_the_published_total_range(
        (i, coding, values) in any_valid_row()
    ) {
        let outcome = i.score_row(&row_from(i, coding, &values));
        let RowOutcome::Scored(r) = outcome else {
            return Err(TestCaseError::fail(format!("{} rejected a valid row: {outcome:?}", i.id())));
        };
        let (min, max) = i.total_range();
        prop_assert!(min <= r.total && r.total <= max, "{}: total {} outside {min}-{max}", i.id(), r.total);
        if !i.bands().is_empty() {
            prop_assert_eq!(r.band.as_deref(), i.band_for(r.total).map(|b| b.name.as_str()));
        }
        let scale_max = u32::from(i.scale().1);
        for s in &r.subscales {
            prop_assert!(s.sum <= s.items * scale_max, "{}: {} = {}", i.id(), s.key, s.sum);
            prop_assert!(s.scored);
        }
    }

    #[test]
    fn the_same_answers_score_the_same_in_every_accepted_coding(
        (i, _, values) in any_valid_row()
    ) {
        let outcomes: Vec<RowOutcome> = i
            .codings()
            .iter()
            .map(|c| i.score_row(&row_from(i, *c, &values)))
            .collect();
        for o in &outcomes[1..] {
            prop_assert_eq!(o, &outcomes[0]);
        }
    }

    #[test]
    fn phq9_suicide_flag_is_set_iff_item_9_is_at_least_one(
        values in prop::collection::vec(0u8..=3, 9),
        coding in prop::sample::select(vec![Coding::Zero3, Coding::One4]),
    ) {
        let phq = inst("phq9");
        let r = phq.score_row(&row_from(phq, coding, &values));
        let r = r.scored().unwrap();
        prop_assert_eq!(r.has_flag(Flag::SuicideItem), values[8] >= 1);
        prop_assert_eq!(r.total, values.iter().map(|v| u32::from(*v)).sum::<u32>());
    }

    #[test]
    fn a_row_with_a_valid_positive_suicide_item_and_another_invalid_answer_is_rejected_and_alerts(
        (i, coding, mut values) in any_valid_row()
            .prop_filter("instruments with a suicide item", |(i, _, _)| !i.item_flags().is_empty()),
        rule_pick in any::<prop::sample::Index>(),
        item_pick in any::<prop::sample::Index>(),
        other_pick in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec!["9", "x", "-1", "2.5", "？"]),
    ) {
        let rule = rule_pick.get(i.item_flags());
        let key = item_pick.get(&rule.items).clone();
        let position = i.items().iter().position(|it| it.key == key).unwrap();
        let item = &i.items()[position];
        let top = if item.is_binary_supplement() { 1 } else { i.scale().1 };
        values[position] = top.max(rule.at_least);
        let others: Vec<&str> = i.items().iter().map(|it| it.key.as_str()).filter(|k| *k != key).collect();
        let other = *other_pick.get(&others);
        let row = row_from(i, coding, &values).with(other, bad);
        match i.score_row(&row) {
            RowOutcome::Rejected { errors, alert_flags } => {
                prop_assert!(errors.iter().any(|e| e.column == format!("item_{other}")), "{errors:?}");
                prop_assert!(alert_flags.contains(&rule.flag), "{}: {alert_flags:?}", i.id());
            }
            RowOutcome::Scored(r) => {
                return Err(TestCaseError::fail(format!("{}: `{bad}` in item {other} was accepted: {r:?}", i.id())));
            }
        }
    }

    #[test]
    fn phq9_rows_with_item_9_positive_and_another_item_invalid_are_rejected_and_alert(
        values in prop::collection::vec(0u8..=3, 9),
        item9 in 1u8..=3,
        other in 1usize..=8,
        bad in prop::sample::select(vec!["4", "-1", "", "abc", "1.5", "99"]),
    ) {
        let phq = inst("phq9");
        let mut values = values;
        values[8] = item9;
        let row = row_from(phq, Coding::Zero3, &values).with(other.to_string(), bad);
        let outcome = phq.score_row(&row);
        prop_assert!(!outcome.is_scored());
        prop_assert_eq!(outcome.suicide_alerts(), vec![Flag::SuicideItem]);
    }

    #[test]
    fn bands_are_monotone_in_the_total(
        id in prop::sample::select(vec!["phq9", "phq_a", "gad7", "sdq", "k10"]),
        a in 0u32..=60,
        b in 0u32..=60,
    ) {
        let i = inst(id);
        let (min, max) = i.total_range();
        let (lo, hi) = (a.min(b).clamp(min, max), a.max(b).clamp(min, max));
        prop_assert!(band_rank(i, lo) <= band_rank(i, hi));
    }

    #[test]
    fn sdq_with_missing_answers_is_scored_within_range_or_rejected_for_too_few_answers(
        answers in prop::collection::vec(prop::option::weighted(0.8, 0u8..=2), 25),
    ) {
        let sdq = inst("sdq");
        let row = RowAnswers::numbered(
            Coding::Zero2,
            answers.iter().map(|a| a.map(|v| v.to_string()).unwrap_or_default()),
        );
        match sdq.score_row(&row) {
            RowOutcome::Scored(r) => {
                prop_assert!(r.total <= 40);
                for s in &r.subscales {
                    prop_assert!(s.sum <= 10);
                    if s.answered == 5 {
                        let raw = (s.mean.unwrap() * 5.0).round();
                        prop_assert_eq!(f64::from(s.sum), raw, "no prorating with all answers");
                    }
                    prop_assert_eq!(s.scored, s.answered >= 3);
                }
                prop_assert_eq!(r.band.as_deref(), sdq.band_for(r.total).map(|b| b.name.as_str()));
            }
            RowOutcome::Rejected { errors, alert_flags } => {
                prop_assert!(alert_flags.is_empty());
                let too_few = errors
                    .iter()
                    .all(|e| matches!(e.reason, RowProblem::TooFewAnswered { .. }));
                prop_assert!(too_few, "{:?}", errors);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_never_scores_out_of_range(
        id in prop::sample::select(IDS.to_vec()),
        cells in prop::collection::vec((1u32..=105, ".{0,4}"), 0..120),
        coding in prop::sample::select(Coding::ALL.to_vec()),
    ) {
        let i = inst(id);
        let row = RowAnswers::from_pairs(coding, cells.into_iter().map(|(k, v)| (k.to_string(), v)));
        if let RowOutcome::Scored(r) = i.score_row(&row) {
            let (min, max) = i.total_range();
            prop_assert!(min <= r.total && r.total <= max);
        }
    }
}

#[test]
fn the_property_tests_cover_every_instrument_of_the_catalogue() {
    let ids: Vec<&str> = catalogue()
        .instruments()
        .iter()
        .map(Instrument::id)
        .collect();
    assert_eq!(ids, IDS);
}
