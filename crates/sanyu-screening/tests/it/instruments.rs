//! Scoring rules of every instrument: bands at each boundary, flags, codings,
//! reverse scoring, prorating, skip logic, and the alert of rejected rows.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{encoded, inst, rejected, scored, spread};
use sanyu_screening::{
    Coding, Flag, RowAnswers, RowOutcome, RowProblem, suggested_level, suggested_level_for,
};

fn band_of(result: &sanyu_screening::ScoreResult) -> &str {
    result.band.as_deref().unwrap()
}

// ---------------------------------------------------------------- PHQ-9

#[test]
fn phq9_bands_change_exactly_at_the_published_boundaries() {
    let phq = inst("phq9");
    let cases = [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (24, "severe"),
        (27, "severe"),
    ];
    for (total, band) in cases {
        let values = spread(9, 0, 3, total, &[]);
        let r = scored(phq.score_row(&encoded(phq, Coding::Zero3, &values)));
        assert_eq!(r.total, total);
        assert_eq!(band_of(&r), band, "total {total}");
    }
}

#[test]
fn phq9_item_9_positive_flags_suicide_even_with_a_minimal_total() {
    let phq = inst("phq9");
    let r = scored(phq.score_row(&encoded(phq, Coding::Zero3, &[0, 0, 0, 0, 0, 0, 0, 0, 1])));
    assert_eq!(r.total, 1);
    assert_eq!(band_of(&r), "minimal");
    assert_eq!(r.flags, [Flag::SuicideItem]);
    assert_eq!(suggested_level(&r), Some("high"));
}

#[test]
fn phq9_severe_total_without_item_9_raises_no_suicide_flag() {
    let phq = inst("phq9");
    let r = scored(phq.score_row(&encoded(phq, Coding::Zero3, &[3, 3, 3, 3, 3, 3, 3, 3, 0])));
    assert_eq!(r.total, 24);
    assert!(r.flags.is_empty());
    assert_eq!(suggested_level(&r), Some("elevated"));
}

#[test]
fn phq9_coded_one_to_four_scores_like_zero_to_three() {
    let phq = inst("phq9");
    let values = [0, 1, 2, 3, 0, 1, 2, 3, 1];
    let a = scored(phq.score_row(&encoded(phq, Coding::Zero3, &values)));
    let b = scored(phq.score_row(&encoded(phq, Coding::One4, &values)));
    assert_eq!(a, b);
    assert_eq!(a.total, 13);
}

#[test]
fn phq9_difficulty_item_10_is_optional_and_not_scored() {
    let phq = inst("phq9");
    let base = encoded(phq, Coding::Zero3, &[1; 9]);
    let without = scored(phq.score_row(&base));
    let with = scored(phq.score_row(&base.clone().with("10", "3")));
    let blank = scored(phq.score_row(&base.with("10", "")));
    assert_eq!(without.total, 9);
    assert_eq!(with, without);
    assert_eq!(blank, without);
}

#[test]
fn phq9_row_with_an_out_of_range_answer_is_rejected_with_column_and_reason() {
    let phq = inst("phq9");
    let row = encoded(phq, Coding::Zero3, &[0; 9]).with("3", "4");
    let (errors, alerts) = rejected(phq.score_row(&row));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].column, "item_3");
    assert!(matches!(
        errors[0].reason,
        RowProblem::OutOfRange { value: 4, .. }
    ));
    assert!(errors[0].to_string().contains("0-3"), "{}", errors[0]);
    assert!(alerts.is_empty());
}

#[test]
fn phq9_row_with_a_missing_answer_and_a_text_answer_reports_both() {
    let phq = inst("phq9");
    let row = encoded(phq, Coding::Zero3, &[0; 9])
        .without("2")
        .with("5", "often");
    let (errors, _) = rejected(phq.score_row(&row));
    let columns: Vec<&str> = errors.iter().map(|e| e.column.as_str()).collect();
    assert_eq!(columns, ["item_2", "item_5"]);
    assert_eq!(errors[0].reason, RowProblem::Missing);
    assert!(matches!(errors[1].reason, RowProblem::NotANumber { .. }));
}

#[test]
fn phq9_row_with_too_many_items_is_rejected() {
    let phq = inst("phq9");
    let row = encoded(phq, Coding::Zero3, &[0; 9]).with("11", "1");
    let (errors, _) = rejected(phq.score_row(&row));
    assert_eq!(errors[0].column, "item_11");
    assert_eq!(errors[0].reason, RowProblem::UnknownItem);
}

#[test]
fn phq9_rejected_row_with_a_valid_positive_item_9_still_alerts() {
    let phq = inst("phq9");
    let row = encoded(phq, Coding::One4, &[0, 0, 0, 0, 0, 0, 0, 0, 2]).with("4", "9");
    let outcome = phq.score_row(&row);
    assert!(outcome.has_suicide_alert());
    assert_eq!(suggested_level_for(&outcome), Some("high"));
    let (errors, alerts) = rejected(outcome);
    assert_eq!(errors[0].column, "item_4");
    assert_eq!(alerts, [Flag::SuicideItem]);
}

#[test]
fn phq9_rejected_row_whose_item_9_is_itself_invalid_cannot_alert() {
    let phq = inst("phq9");
    let row = encoded(phq, Coding::Zero3, &[0; 9]).with("9", "x");
    let outcome = phq.score_row(&row);
    assert_eq!(suggested_level_for(&outcome), None);
    let (_, alerts) = rejected(outcome);
    assert!(alerts.is_empty());
}

#[test]
fn a_row_coded_with_a_coding_the_instrument_does_not_accept_is_rejected() {
    let phq = inst("phq9");
    let row = encoded(phq, Coding::Zero3, &[0; 9]);
    let row = RowAnswers {
        coding: Coding::Yes1No0,
        ..row
    };
    let (errors, _) = rejected(phq.score_row(&row));
    assert!(matches!(
        errors[0].reason,
        RowProblem::CodingNotAccepted { .. }
    ));
}

// ---------------------------------------------------------------- PHQ-A

fn phq_a_row(values: &[u8], s1: &str, s2: &str) -> RowAnswers {
    encoded(inst("phq_a"), Coding::Zero3, values)
        .with("s1", s1)
        .with("s2", s2)
}

#[test]
fn phq_a_uses_the_phq9_bands() {
    let a = inst("phq_a");
    for (total, band) in [
        (4, "minimal"),
        (5, "mild"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (20, "severe"),
    ] {
        let r = scored(a.score_row(&phq_a_row(&spread(9, 0, 3, total, &[9]), "0", "0")));
        assert_eq!(band_of(&r), band);
        assert!(r.flags.is_empty());
    }
}

#[test]
fn phq_a_yes_to_either_supplementary_question_flags_suicide_risk() {
    let a = inst("phq_a");
    for (s1, s2) in [
        ("1", "0"),
        ("0", "1"),
        ("是", "否"),
        ("yes", "no"),
        ("2", "1"),
    ] {
        let r = scored(a.score_row(&phq_a_row(&[0; 9], s1, s2)));
        assert_eq!(r.flags, [Flag::SuicideRisk], "{s1}/{s2}");
        assert_eq!(r.total, 0);
        assert_eq!(suggested_level(&r), Some("high"));
    }
    for (s1, s2) in [("0", "0"), ("2", "2"), ("否", "no")] {
        let r = scored(a.score_row(&phq_a_row(&[0; 9], s1, s2)));
        assert!(r.flags.is_empty(), "{s1}/{s2}");
    }
}

#[test]
fn phq_a_item_9_positive_flags_suicide_item() {
    let a = inst("phq_a");
    let r = scored(a.score_row(&phq_a_row(&[0, 0, 0, 0, 0, 0, 0, 0, 3], "1", "0")));
    assert_eq!(r.flags, [Flag::SuicideItem, Flag::SuicideRisk]);
}

#[test]
fn phq_a_rejected_row_with_a_yes_to_a_suicide_question_still_alerts() {
    let a = inst("phq_a");
    let row = phq_a_row(&[0; 9], "0", "1").without("2");
    let (errors, alerts) = rejected(a.score_row(&row));
    assert_eq!(errors[0].column, "item_2");
    assert_eq!(alerts, [Flag::SuicideRisk]);
}

#[test]
fn phq_a_supplementary_questions_are_required() {
    let a = inst("phq_a");
    let row = encoded(a, Coding::Zero3, &[0; 9]).with("s1", "0");
    let (errors, _) = rejected(a.score_row(&row));
    assert_eq!(errors[0].column, "item_s2");
    assert_eq!(errors[0].reason, RowProblem::Missing);
}

// ---------------------------------------------------------------- GAD-7

#[test]
fn gad7_bands_change_exactly_at_the_published_boundaries() {
    let gad = inst("gad7");
    let cases = [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ];
    for (total, band) in cases {
        let r = scored(gad.score_row(&encoded(gad, Coding::One4, &spread(7, 0, 3, total, &[]))));
        assert_eq!(r.total, total);
        assert_eq!(band_of(&r), band, "total {total}");
        assert!(r.flags.is_empty(), "GAD-7 has no suicide item");
    }
}

#[test]
fn gad7_has_only_seven_items() {
    let gad = inst("gad7");
    let (errors, _) = rejected(gad.score_row(&encoded(gad, Coding::Zero3, &[0; 9])));
    assert_eq!(
        errors.len(),
        1,
        "item 8 is the optional difficulty item; 9 is unknown"
    );
    assert_eq!(errors[0].column, "item_9");
}

// ---------------------------------------------------------------- SCL-90

/// The SCL-90 subscales with their item numbers.
fn scl_factor_sizes() -> Vec<(String, Vec<usize>)> {
    inst("scl90")
        .subscales()
        .iter()
        .map(|s| {
            (
                s.key.clone(),
                s.items.iter().map(|k| k.parse().unwrap()).collect(),
            )
        })
        .collect()
}

/// SCL-90 values (1-5) with `count` items raised to `value`, never raising more
/// than `per_factor(n)` items of a factor of `n` items (the 其他 items are free).
fn scl_raise(count: usize, value: u8, per_factor: impl Fn(usize) -> usize) -> Vec<u8> {
    let mut values = vec![1u8; 90];
    let mut left = count;
    for (key, items) in scl_factor_sizes() {
        let allowed = if key == "additional" {
            items.len()
        } else {
            per_factor(items.len())
        };
        // Item 15 (suicide item) is left alone so that no suicide flag interferes.
        for item in items.into_iter().filter(|i| *i != 15).take(allowed) {
            if left == 0 {
                break;
            }
            values[item - 1] = value;
            left -= 1;
        }
    }
    assert_eq!(left, 0);
    values
}

fn max_factor_mean(r: &sanyu_screening::ScoreResult) -> f64 {
    r.subscales
        .iter()
        .filter(|s| s.role == sanyu_screening::SubscaleRole::Factor)
        .map(|s| s.mean.unwrap())
        .fold(0.0, f64::max)
}

#[test]
fn scl90_all_ones_totals_ninety_with_factor_sums_and_means() {
    let scl = inst("scl90");
    let r = scored(scl.score_row(&encoded(scl, Coding::One5, &[1; 90])));
    assert_eq!(r.total, 90);
    assert!(r.flags.is_empty());
    assert_eq!(r.band, None);
    let som = r.subscale("somatization").unwrap();
    assert_eq!((som.sum, som.items, som.mean), (12, 12, Some(1.0)));
    assert_eq!(r.subscale("additional").unwrap().name, "其他");
    assert_eq!(r.subscales.len(), 10);
}

#[test]
fn scl90_files_coded_zero_to_four_are_shifted_up_by_one() {
    let scl = inst("scl90");
    let zero = RowAnswers::numbered(Coding::Zero4, vec!["0"; 90]);
    assert_eq!(scored(scl.score_row(&zero)).total, 90);
    let four = RowAnswers::numbered(Coding::Zero4, vec!["4"; 90]);
    assert_eq!(scored(scl.score_row(&four)).total, 450);
    let five = RowAnswers::numbered(Coding::Zero4, vec!["5"; 90]);
    assert!(!scl.score_row(&five).is_scored());
}

#[test]
fn scl90_total_above_160_is_screen_positive_and_160_is_not() {
    let scl = inst("scl90");
    // 35 items at 3 (+70) → 160; one more (其他) at 2 → 161. No factor reaches
    // mean 2, and at most 36 items are positive.
    let mut v160 = scl_raise(35, 3, |n| (n - 1) / 2);
    let r160 = scored(scl.score_row(&encoded(scl, Coding::One5, &v160)));
    assert_eq!(r160.total, 160);
    assert!(max_factor_mean(&r160) < 2.0);
    assert!(!r160.has_flag(Flag::ScreenPositive));

    let free = [19, 44, 59, 60, 64, 66, 89]
        .into_iter()
        .find(|i| v160[i - 1] == 1)
        .unwrap();
    v160[free - 1] = 2;
    let r161 = scored(scl.score_row(&encoded(scl, Coding::One5, &v160)));
    assert_eq!(r161.total, 161);
    assert!(max_factor_mean(&r161) < 2.0);
    assert!(r161.has_flag(Flag::ScreenPositive));
    assert_eq!(suggested_level(&r161), Some("elevated"));
}

#[test]
fn scl90_more_than_43_positive_items_is_screen_positive_and_43_is_not() {
    let scl = inst("scl90");
    let v43 = scl_raise(43, 2, |n| n - 1);
    let r43 = scored(scl.score_row(&encoded(scl, Coding::One5, &v43)));
    assert_eq!(r43.total, 133);
    assert!(max_factor_mean(&r43) < 2.0);
    assert!(!r43.has_flag(Flag::ScreenPositive));

    let v44 = scl_raise(44, 2, |n| n - 1);
    let r44 = scored(scl.score_row(&encoded(scl, Coding::One5, &v44)));
    assert_eq!(r44.total, 134);
    assert!(max_factor_mean(&r44) < 2.0);
    assert!(r44.has_flag(Flag::ScreenPositive));
}

#[test]
fn scl90_one_factor_mean_of_two_is_screen_positive() {
    let scl = inst("scl90");
    let hostility = [11, 24, 63, 67, 74, 81];
    let mut values = vec![1u8; 90];
    for i in hostility {
        values[i - 1] = 2;
    }
    let r = scored(scl.score_row(&encoded(scl, Coding::One5, &values)));
    assert_eq!(r.subscale("hostility").unwrap().mean, Some(2.0));
    assert!(r.has_flag(Flag::ScreenPositive));

    values[hostility[0] - 1] = 1;
    let r = scored(scl.score_row(&encoded(scl, Coding::One5, &values)));
    assert!(!r.has_flag(Flag::ScreenPositive));
    assert_eq!(suggested_level(&r), None);
}

#[test]
fn scl90_additional_items_do_not_make_a_factor_positive() {
    let scl = inst("scl90");
    let mut values = vec![1u8; 90];
    for i in [19, 44, 59, 60, 64, 66, 89] {
        values[i - 1] = 5;
    }
    let r = scored(scl.score_row(&encoded(scl, Coding::One5, &values)));
    assert_eq!(r.subscale("additional").unwrap().mean, Some(5.0));
    assert!(!r.has_flag(Flag::ScreenPositive));
}

#[test]
fn scl90_item_15_at_two_or_more_flags_suicide() {
    let scl = inst("scl90");
    let mut values = vec![1u8; 90];
    values[14] = 2;
    let r = scored(scl.score_row(&encoded(scl, Coding::One5, &values)));
    assert_eq!(r.flags, [Flag::SuicideItem]);
    // The same answer in a 0-4 file is written 1.
    let r0 = scored(scl.score_row(&encoded(scl, Coding::Zero4, &values)));
    assert_eq!(r0.flags, [Flag::SuicideItem]);
    values[14] = 1;
    let r = scored(scl.score_row(&encoded(scl, Coding::One5, &values)));
    assert!(r.flags.is_empty());
}

#[test]
fn scl90_rejected_row_with_item_15_positive_still_alerts() {
    let scl = inst("scl90");
    let mut values = vec![1u8; 90];
    values[14] = 4;
    let row = encoded(scl, Coding::One5, &values)
        .with("90", "7")
        .without("1");
    let (errors, alerts) = rejected(scl.score_row(&row));
    assert_eq!(errors.len(), 2);
    assert_eq!(alerts, [Flag::SuicideItem]);
}

// ---------------------------------------------------------------- MHT

const MHT_LIE: [usize; 10] = [82, 84, 86, 88, 90, 92, 94, 96, 98, 100];

fn mht_yes(items: &[usize]) -> Vec<u8> {
    let mut v = vec![0u8; 100];
    for i in items {
        v[i - 1] = 1;
    }
    v
}

#[test]
fn mht_content_total_of_65_is_total_high_and_64_is_not() {
    let mht = inst("mht");
    let content: Vec<usize> = (1..=100)
        .filter(|i| !MHT_LIE.contains(i) && *i != 85 && *i != 97)
        .collect();
    let r64 = scored(mht.score_row(&encoded(mht, Coding::Yes1No0, &mht_yes(&content[..64]))));
    assert_eq!(r64.total, 64);
    assert!(!r64.has_flag(Flag::TotalHigh));
    let r65 = scored(mht.score_row(&encoded(mht, Coding::Yes1No0, &mht_yes(&content[..65]))));
    assert_eq!(r65.total, 65);
    assert!(r65.has_flag(Flag::TotalHigh));
    assert!(!r65.has_suicide_alert());
    assert_eq!(suggested_level(&r65), Some("elevated"));
}

#[test]
fn mht_content_scale_of_eight_is_high_and_seven_is_not() {
    let mht = inst("mht");
    let r = scored(mht.score_row(&encoded(
        mht,
        Coding::Yes1No0,
        &mht_yes(&[1, 2, 3, 4, 5, 6, 7, 8]),
    )));
    assert_eq!(r.high_scales(), ["learning_anxiety"]);
    assert_eq!(r.subscale("learning_anxiety").unwrap().name, "学习焦虑");
    assert_eq!(suggested_level(&r), Some("watch"));
    let r = scored(mht.score_row(&encoded(
        mht,
        Coding::Yes1No0,
        &mht_yes(&[1, 2, 3, 4, 5, 6, 7]),
    )));
    assert!(r.high_scales().is_empty());
    assert_eq!(suggested_level(&r), None);
}

#[test]
fn mht_lie_scale_of_seven_warns_and_is_not_in_the_total() {
    let mht = inst("mht");
    let r = scored(mht.score_row(&encoded(mht, Coding::Yes1No2, &mht_yes(&MHT_LIE[..7]))));
    assert_eq!(r.total, 0);
    assert_eq!(r.subscale("lie").unwrap().sum, 7);
    assert_eq!(r.flags, [Flag::ValidityWarning]);
    assert!(
        r.high_scales().is_empty(),
        "the lie scale is never a high content scale"
    );
    assert_eq!(suggested_level(&r), None);
    let r = scored(mht.score_row(&encoded(mht, Coding::Yes1No2, &mht_yes(&MHT_LIE[..6]))));
    assert!(r.flags.is_empty());
}

#[test]
fn mht_item_85_or_97_yes_flags_suicide() {
    let mht = inst("mht");
    for item in [85, 97] {
        let r = scored(mht.score_row(&encoded(mht, Coding::Yes1No2, &mht_yes(&[item]))));
        assert_eq!(r.flags, [Flag::SuicideItem], "item {item}");
        assert_eq!(r.subscale("impulsive_tendency").unwrap().sum, 1);
    }
}

#[test]
fn mht_rejected_row_with_item_97_yes_still_alerts() {
    let mht = inst("mht");
    let row = encoded(mht, Coding::Yes1No2, &mht_yes(&[97])).with("1", "0");
    let (errors, alerts) = rejected(mht.score_row(&row));
    assert_eq!(errors[0].column, "item_1");
    assert_eq!(alerts, [Flag::SuicideItem]);
}

// ---------------------------------------------------------------- UPI

/// UPI canonical values with the given items yes; supplementary answers separately.
fn upi_row(yes_items: &[usize], supplementary: [u8; 3]) -> RowAnswers {
    let upi = inst("upi");
    let mut v = vec![0u8; 60];
    for i in yes_items {
        v[i - 1] = 1;
    }
    let mut row = encoded(upi, Coding::Yes1No0, &v);
    for (i, s) in supplementary.iter().enumerate() {
        row = row.with(format!("s{}", i + 1), s.to_string());
    }
    row
}

/// `n` scored UPI items avoiding the lie items and the key items 8, 16, 25, 26.
fn upi_plain_items(n: usize) -> Vec<usize> {
    (1..=60)
        .filter(|i| ![5, 20, 35, 50, 8, 16, 25, 26].contains(i))
        .take(n)
        .collect()
}

#[test]
fn upi_classes_change_at_totals_25_and_20() {
    let upi = inst("upi");
    for (n, class) in [
        (52, "class_1"),
        (25, "class_1"),
        (24, "class_2"),
        (20, "class_2"),
        (19, "class_3"),
        (0, "class_3"),
    ] {
        let r = scored(upi.score_row(&upi_row(&upi_plain_items(n), [0, 0, 0])));
        assert_eq!(r.total, u32::try_from(n).unwrap());
        assert_eq!(band_of(&r), class, "total {n}");
    }
}

#[test]
fn upi_lie_items_are_not_scored() {
    let upi = inst("upi");
    let r = scored(upi.score_row(&upi_row(&[5, 20, 35, 50], [0, 0, 0])));
    assert_eq!(r.total, 0);
    assert_eq!(band_of(&r), "class_3");
}

#[test]
fn upi_item_25_yes_is_class_1_and_a_suicide_flag_whatever_the_total() {
    let upi = inst("upi");
    let r = scored(upi.score_row(&upi_row(&[25], [0, 0, 0])));
    assert_eq!(r.total, 1);
    assert_eq!(band_of(&r), "class_1");
    assert_eq!(r.flags, [Flag::SuicideItem]);
    assert_eq!(suggested_level(&r), Some("high"));
}

#[test]
fn upi_item_8_16_or_26_yes_is_class_2() {
    let upi = inst("upi");
    for item in [8, 16, 26] {
        let r = scored(upi.score_row(&upi_row(&[item], [0, 0, 0])));
        assert_eq!(band_of(&r), "class_2", "item {item}");
        assert!(r.flags.is_empty());
        assert_eq!(suggested_level(&r), Some("watch"));
    }
}

#[test]
fn upi_two_supplementary_yes_answers_are_class_1_and_one_is_not() {
    let upi = inst("upi");
    let r = scored(upi.score_row(&upi_row(&[], [1, 0, 1])));
    assert_eq!(band_of(&r), "class_1");
    assert_eq!(r.total, 0, "supplementary questions are not in the total");
    assert_eq!(suggested_level(&r), Some("elevated"));
    let r = scored(upi.score_row(&upi_row(&[], [0, 0, 1])));
    assert_eq!(band_of(&r), "class_3");
}

#[test]
fn upi_coded_one_yes_two_no_reads_two_as_no() {
    let upi = inst("upi");
    let row = RowAnswers::numbered(Coding::Yes1No2, vec!["2"; 60])
        .with("s1", "2")
        .with("s2", "2")
        .with("s3", "2")
        .with("25", "1");
    let r = scored(upi.score_row(&row));
    assert_eq!(r.total, 1);
    assert_eq!(band_of(&r), "class_1");
    // 0 is not an answer in a 1/2 file.
    let (errors, alerts) = rejected(upi.score_row(&row.with("3", "0")));
    assert_eq!(errors[0].column, "item_3");
    assert_eq!(alerts, [Flag::SuicideItem]);
}

// ---------------------------------------------------------------- SDQ

fn sdq_row(values: &[Option<u8>]) -> RowAnswers {
    RowAnswers::from_pairs(
        Coding::Zero2,
        values.iter().enumerate().map(|(i, v)| {
            (
                (i + 1).to_string(),
                v.map(|v| v.to_string()).unwrap_or_default(),
            )
        }),
    )
}

#[test]
fn sdq_reverse_scored_items_count_two_when_answered_zero() {
    let sdq = inst("sdq");
    let r = scored(sdq.score_row(&sdq_row(&[Some(0); 25])));
    // Reverse items: 7 (conduct), 11 and 14 (peer), 21 and 25 (hyperactivity).
    assert_eq!(r.subscale("emotional").unwrap().sum, 0);
    assert_eq!(r.subscale("conduct").unwrap().sum, 2);
    assert_eq!(r.subscale("peer").unwrap().sum, 4);
    assert_eq!(r.subscale("hyperactivity").unwrap().sum, 4);
    assert_eq!(r.subscale("prosocial").unwrap().sum, 0);
    assert_eq!(r.total, 10);
    assert_eq!(band_of(&r), "normal");
}

#[test]
fn sdq_total_is_the_four_problem_subscales_without_prosocial() {
    let sdq = inst("sdq");
    let r = scored(sdq.score_row(&sdq_row(&[Some(2); 25])));
    assert_eq!(r.subscale("prosocial").unwrap().sum, 10);
    // Each problem subscale: 5 items at 2, of which the reversed count 0.
    assert_eq!(r.total, 10 + 8 + 6 + 6);
    assert_eq!(band_of(&r), "abnormal");
}

#[test]
fn sdq_bands_follow_the_chinese_norms() {
    let sdq = inst("sdq");
    for (total, band) in [
        (0, "normal"),
        (14, "normal"),
        (15, "borderline"),
        (17, "borderline"),
        (18, "abnormal"),
        (40, "abnormal"),
    ] {
        assert_eq!(sdq.band_for(total).unwrap().name, band, "total {total}");
    }
}

#[test]
fn sdq_subscale_with_four_answers_is_prorated_and_rounded_half_up() {
    let sdq = inst("sdq");
    let mut v = vec![Some(0); 25];
    // Emotional items 3, 8, 13, 16, 24: answer 2 and 0 and 0 and 0, item 24 blank.
    v[2] = Some(2);
    v[23] = None;
    let r = scored(sdq.score_row(&sdq_row(&v)));
    let emotional = r.subscale("emotional").unwrap();
    assert_eq!((emotional.answered, emotional.scored), (4, true));
    assert_eq!(emotional.sum, 3, "2 * 5 / 4 = 2.5 rounds up to 3");
    assert_eq!(emotional.mean, Some(0.5));
}

#[test]
fn sdq_subscale_with_three_answers_is_prorated() {
    let sdq = inst("sdq");
    let mut v = vec![Some(0); 25];
    v[2] = Some(1); // item 3
    v[7] = None; // item 8
    v[12] = None; // item 13
    let r = scored(sdq.score_row(&sdq_row(&v)));
    let emotional = r.subscale("emotional").unwrap();
    assert_eq!(emotional.answered, 3);
    assert_eq!(emotional.sum, 2, "1 * 5 / 3 = 1.67 rounds to 2");
}

#[test]
fn sdq_problem_subscale_with_two_answers_rejects_the_row() {
    let sdq = inst("sdq");
    let mut v = vec![Some(0); 25];
    for item in [5, 7, 12] {
        v[item - 1] = None; // conduct keeps items 18 and 22 only
    }
    let (errors, alerts) = rejected(sdq.score_row(&sdq_row(&v)));
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].reason,
        RowProblem::TooFewAnswered {
            subscale: "conduct".into(),
            answered: 2,
            needed: 3
        }
    );
    assert!(alerts.is_empty());
}

#[test]
fn sdq_prosocial_with_two_answers_is_unscored_but_the_row_is_scored() {
    let sdq = inst("sdq");
    let mut v = vec![Some(1); 25];
    for item in [1, 4, 9] {
        v[item - 1] = None;
    }
    let r = scored(sdq.score_row(&sdq_row(&v)));
    let prosocial = r.subscale("prosocial").unwrap();
    assert!(!prosocial.scored);
    assert_eq!(prosocial.answered, 2);
    assert_eq!(r.total, 20);
    assert_eq!(band_of(&r), "abnormal");
}

#[test]
fn sdq_answers_outside_zero_to_two_are_rejected() {
    let sdq = inst("sdq");
    let mut v = vec![Some(0); 25];
    v[0] = Some(3);
    let (errors, _) = rejected(sdq.score_row(&sdq_row(&v)));
    assert_eq!(errors[0].column, "item_1");
}

// ---------------------------------------------------------------- K10

#[test]
fn k10_bands_change_exactly_at_the_published_boundaries() {
    let k10 = inst("k10");
    let cases = [
        (10, "low", None),
        (15, "low", None),
        (16, "moderate", Some("watch")),
        (21, "moderate", Some("watch")),
        (22, "high", Some("watch")),
        (29, "high", Some("watch")),
        (30, "very_high", Some("elevated")),
        (50, "very_high", Some("elevated")),
    ];
    for (total, band, level) in cases {
        let r = scored(k10.score_row(&encoded(k10, Coding::One5, &spread(10, 1, 5, total, &[]))));
        assert_eq!(r.total, total);
        assert_eq!(band_of(&r), band, "total {total}");
        assert_eq!(suggested_level(&r), level, "total {total}");
    }
}

#[test]
fn k10_accepts_only_one_to_five() {
    let k10 = inst("k10");
    assert!(k10.check_coding(Coding::Zero4).is_err());
    let (errors, _) = rejected(k10.score_row(&RowAnswers::numbered(Coding::One5, vec!["0"; 10])));
    assert_eq!(errors.len(), 10);
}

// ---------------------------------------------------------------- C-SSRS

fn cssrs(answers: &[(&str, &str)]) -> RowAnswers {
    RowAnswers::from_pairs(Coding::Yes1No0, answers.iter().copied())
}

#[test]
fn cssrs_all_no_is_band_none_without_flags() {
    let c = inst("cssrs");
    let r = scored(c.score_row(&cssrs(&[("1", "0"), ("2", "0"), ("6", "0")])));
    assert_eq!((r.total, band_of(&r)), (0, "none"));
    assert!(r.flags.is_empty());
    assert_eq!(suggested_level(&r), None);
}

#[test]
fn cssrs_yes_to_question_1_or_2_only_is_low_and_alerts() {
    let c = inst("cssrs");
    let r = scored(c.score_row(&cssrs(&[("1", "1"), ("2", "0"), ("6", "0")])));
    assert_eq!(band_of(&r), "low");
    assert_eq!(r.flags, [Flag::SuicideItem]);
    assert_eq!(suggested_level(&r), Some("high"));
    let r = scored(c.score_row(&cssrs(&[
        ("1", "1"),
        ("2", "1"),
        ("3", "0"),
        ("4", "0"),
        ("5", "0"),
        ("6", "0"),
    ])));
    assert_eq!(band_of(&r), "low");
    assert_eq!(r.total, 2);
}

#[test]
fn cssrs_yes_to_question_3_is_moderate() {
    let c = inst("cssrs");
    let r = scored(c.score_row(&cssrs(&[
        ("1", "1"),
        ("2", "1"),
        ("3", "1"),
        ("4", "0"),
        ("5", "0"),
        ("6", "0"),
    ])));
    assert_eq!(band_of(&r), "moderate");
}

#[test]
fn cssrs_yes_to_question_4_or_5_is_high() {
    let c = inst("cssrs");
    for q in ["4", "5"] {
        let mut answers = vec![
            ("1", "1"),
            ("2", "1"),
            ("3", "0"),
            ("4", "0"),
            ("5", "0"),
            ("6", "0"),
        ];
        for a in &mut answers {
            if a.0 == q {
                a.1 = "1";
            }
        }
        let r = scored(c.score_row(&cssrs(&answers)));
        assert_eq!(band_of(&r), "high", "question {q}");
    }
}

#[test]
fn cssrs_behaviour_in_the_past_three_months_is_high_and_longer_ago_moderate() {
    let c = inst("cssrs");
    let recent = scored(c.score_row(&cssrs(&[
        ("1", "0"),
        ("2", "0"),
        ("6", "1"),
        ("6_recent", "1"),
    ])));
    assert_eq!(band_of(&recent), "high");
    assert_eq!(recent.flags, [Flag::SuicideItem]);
    assert_eq!(recent.total, 1, "the recency answer is not counted");
    let past = scored(c.score_row(&cssrs(&[
        ("1", "0"),
        ("2", "0"),
        ("6", "1"),
        ("6_recent", "0"),
    ])));
    assert_eq!(band_of(&past), "moderate");
}

#[test]
fn cssrs_question_2_yes_with_question_4_blank_breaks_skip_logic_and_still_alerts() {
    let c = inst("cssrs");
    let row = cssrs(&[
        ("1", "1"),
        ("2", "1"),
        ("3", "0"),
        ("4", ""),
        ("5", "0"),
        ("6", "0"),
    ]);
    let outcome = c.score_row(&row);
    assert_eq!(suggested_level_for(&outcome), Some("high"));
    let (errors, alerts) = rejected(outcome);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].column, "item_4");
    assert!(matches!(errors[0].reason, RowProblem::SkipLogic { .. }));
    assert_eq!(alerts, [Flag::SuicideItem]);
}

#[test]
fn cssrs_behaviour_yes_without_recency_breaks_skip_logic_and_still_alerts() {
    let c = inst("cssrs");
    let (errors, alerts) = rejected(c.score_row(&cssrs(&[("1", "0"), ("2", "0"), ("6", "1")])));
    assert_eq!(errors[0].column, "item_6_recent");
    assert_eq!(alerts, [Flag::SuicideItem]);
}

#[test]
fn cssrs_questions_1_2_and_6_are_always_required() {
    let c = inst("cssrs");
    let (errors, alerts) = rejected(c.score_row(&cssrs(&[("2", "0"), ("6", "0")])));
    assert_eq!(errors[0].column, "item_1");
    assert_eq!(errors[0].reason, RowProblem::Missing);
    assert!(alerts.is_empty());
}

#[test]
fn cssrs_in_a_one_two_file_reads_two_as_no() {
    let c = inst("cssrs");
    let row = RowAnswers::from_pairs(Coding::Yes1No2, [("1", "2"), ("2", "2"), ("6", "2")]);
    let r = scored(c.score_row(&row));
    assert_eq!(band_of(&r), "none");
}

// ---------------------------------------------------------------- levels

#[test]
fn default_levels_for_depression_bands() {
    let phq = inst("phq9");
    let level = |total| {
        suggested_level(&scored(phq.score_row(&encoded(
            phq,
            Coding::Zero3,
            &spread(9, 0, 3, total, &[9]),
        ))))
    };
    assert_eq!(level(4), None);
    assert_eq!(level(9), None);
    assert_eq!(level(10), Some("watch"));
    assert_eq!(level(15), Some("elevated"));
    assert_eq!(level(20), Some("elevated"));
}

#[test]
fn a_rejected_row_without_an_alert_suggests_no_level() {
    let gad = inst("gad7");
    let outcome = gad.score_row(&RowAnswers::numbered(Coding::Zero3, ["9"]));
    assert!(matches!(outcome, RowOutcome::Rejected { .. }));
    assert_eq!(suggested_level_for(&outcome), None);
}
