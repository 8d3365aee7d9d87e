#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn builtin_catalogue_is_valid() {
    let c = Catalogue::from_toml(BUILTIN_TOML).unwrap();
    let ids: Vec<&str> = c.instruments().iter().map(Instrument::id).collect();
    assert_eq!(
        ids,
        [
            "phq9", "phq_a", "gad7", "scl90", "mht", "upi", "sdq", "k10", "cssrs"
        ]
    );
}

#[test]
fn every_instrument_and_every_flag_rule_cites_a_source() {
    for i in catalogue().instruments() {
        assert!(i.source().len() > 20, "{} has no source", i.id());
        for f in i.item_flags() {
            assert!(!f.source.is_empty(), "{} flag has no source", i.id());
        }
    }
}

#[test]
fn instruments_are_found_by_id_or_printed_name() {
    assert_eq!(instrument("PHQ-9").unwrap().id(), "phq9");
    assert_eq!(instrument("phq-a").unwrap().id(), "phq_a");
    assert_eq!(instrument("C-SSRS screener").unwrap().id(), "cssrs");
    assert_eq!(instrument("scl90").unwrap().name(), "SCL-90");
    assert!(matches!(
        instrument("BDI"),
        Err(ScreeningError::UnknownInstrument(_))
    ));
}

#[test]
fn scl90_factors_cover_all_ninety_items_exactly_once() {
    let scl = instrument("scl90").unwrap();
    let mut seen: Vec<u32> = scl
        .subscales()
        .iter()
        .flat_map(|s| s.items.iter().map(|k| k.parse::<u32>().unwrap()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=90).collect::<Vec<_>>());
    let factors = scl
        .subscales()
        .iter()
        .filter(|s| s.role == SubscaleRole::Factor)
        .count();
    assert_eq!(factors, 9);
}

#[test]
fn mht_scales_cover_all_hundred_items_exactly_once() {
    let mht = instrument("mht").unwrap();
    let mut seen: Vec<u32> = mht
        .subscales()
        .iter()
        .flat_map(|s| s.items.iter().map(|k| k.parse::<u32>().unwrap()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=100).collect::<Vec<_>>());
}

#[test]
fn sdq_subscales_cover_all_twenty_five_items_exactly_once() {
    let sdq = instrument("sdq").unwrap();
    let mut seen: Vec<u32> = sdq
        .subscales()
        .iter()
        .flat_map(|s| s.items.iter().map(|k| k.parse::<u32>().unwrap()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
}

#[test]
fn a_catalogue_whose_bands_leave_a_gap_is_refused() {
    let text = BUILTIN_TOML.replace(
        "{ name = \"mild\", min = 5, max = 9 },\n  { name = \"moderate\", min = 10, max = 14 },\n  { name = \"severe\", min = 15, max = 21 },",
        "{ name = \"mild\", min = 5, max = 8 },\n  { name = \"moderate\", min = 10, max = 14 },\n  { name = \"severe\", min = 15, max = 21 },",
    );
    assert_ne!(text, BUILTIN_TOML);
    let err = Catalogue::from_toml(&text).unwrap_err();
    assert!(err.to_string().contains("gad7"), "{err}");
}

#[test]
fn a_catalogue_whose_coding_does_not_fit_the_scale_is_refused() {
    let text = BUILTIN_TOML.replacen("codings = [\"1-5\"]", "codings = [\"0-3\"]", 1);
    assert_ne!(text, BUILTIN_TOML);
    let err = Catalogue::from_toml(&text).unwrap_err();
    assert!(err.to_string().contains("k10"), "{err}");
}

#[test]
fn a_flag_on_an_unknown_item_is_refused() {
    let text = BUILTIN_TOML.replacen(
        "items = [\"25\"], at_least = 1",
        "items = [\"61\"], at_least = 1",
        1,
    );
    assert_ne!(text, BUILTIN_TOML);
    assert!(Catalogue::from_toml(&text).is_err());
}
