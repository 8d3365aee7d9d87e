//! Rule evaluation: pure functions, no I/O.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use sanyu_domain::RiskLevel;
use sanyu_ruleset::{DEFAULT_RULES, Decision, RuleSet, SAFETY_RULE, Signal, Source, StudentState};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 5, 30, 9, 0, 0).unwrap()
}

fn signal(id: &str, source: Source, level: Option<RiskLevel>, days_ago: i64) -> Signal {
    Signal {
        id: id.into(),
        source,
        at: now() - Duration::days(days_ago),
        level,
        instrument: None,
        band: None,
        flags: vec![],
        category: None,
    }
}

fn rules() -> RuleSet {
    RuleSet::parse(DEFAULT_RULES).unwrap()
}

#[test]
fn a_report_opens_a_case_at_its_level_and_explains_why() {
    let s = signal("r1", Source::Report, Some(RiskLevel::High), 0);
    let o = rules().decide(&s, &StudentState::default(), now());
    assert_eq!(
        o.decision,
        Decision::Open {
            level: RiskLevel::High
        }
    );
    assert_eq!(o.rule_id, "report.high");
    assert_eq!(
        o.rules_version,
        rules().version,
        "the version in force is recorded"
    );
    assert!(!o.rules_version.is_empty());
    assert_eq!(o.used, vec!["r1".to_owned()]);
}

#[test]
fn a_suicide_item_opens_critical_whatever_the_rules_say() {
    let mut s = signal("s1", Source::Screening, Some(RiskLevel::Watch), 0);
    s.flags = vec!["suicide_item".into()];
    let empty = RuleSet::parse("version = \"empty\"\n").unwrap();
    for rs in [rules(), empty] {
        let o = rs.decide(&s, &StudentState::default(), now());
        assert_eq!(
            o.decision,
            Decision::Open {
                level: RiskLevel::Critical
            }
        );
        assert_eq!(o.rule_id, SAFETY_RULE);
        let open_high = StudentState {
            open_case: Some(RiskLevel::High),
            ..Default::default()
        };
        let o = rs.decide(&s, &open_high, now());
        assert_eq!(
            o.decision,
            Decision::Attach {
                raise_to: Some(RiskLevel::Critical)
            }
        );
    }
}

#[test]
fn an_elevated_screening_with_a_recent_report_is_high() {
    let report = signal("r1", Source::Report, Some(RiskLevel::Elevated), 20);
    let screening = signal("s1", Source::Screening, Some(RiskLevel::Elevated), 0);
    let state = StudentState {
        open_case: None,
        recent: vec![report.clone()],
        watched: false,
    };
    let o = rules().decide(&screening, &state, now());
    assert_eq!(
        o.decision,
        Decision::Open {
            level: RiskLevel::High
        }
    );
    assert_eq!(o.rule_id, "screening.corroborated");
    assert_eq!(o.used, vec!["s1".to_owned(), "r1".to_owned()]);
    // 40 days apart: not corroborated, elevated only.
    let old = StudentState {
        recent: vec![signal("r0", Source::Report, Some(RiskLevel::Elevated), 40)],
        ..Default::default()
    };
    let o = rules().decide(&screening, &old, now());
    assert_eq!(
        o.decision,
        Decision::Open {
            level: RiskLevel::Elevated
        }
    );
    assert_eq!(o.rule_id, "screening.elevated");
}

#[test]
fn mild_signals_put_the_student_on_watch() {
    let s = signal("w1", Source::Screening, Some(RiskLevel::Watch), 0);
    let o = rules().decide(&s, &StudentState::default(), now());
    assert_eq!(o.decision, Decision::Watch { follow_up_days: 14 });
    let none = signal("n1", Source::Screening, None, 0);
    let o = rules().decide(&none, &StudentState::default(), now());
    assert_eq!(o.decision, Decision::NoAction);
    assert_eq!(o.rule_id, "default");
}

#[test]
fn stricter_rules_apply_only_within_a_key_date_period() {
    let text = r#"
version = "exam"
[[period]]
name = "gaokao"
from = "2027-05-24"
to = "2027-06-09"

[[rule]]
id = "exam.watch_becomes_case"
when = { level_at_least = "watch", during = ["gaokao"] }
then = { action = "case", level = "elevated" }
"#;
    let rs = RuleSet::parse(text).unwrap();
    let inside = signal("a", Source::Report, Some(RiskLevel::Watch), 0);
    assert_eq!(
        rs.decide(&inside, &StudentState::default(), now()).decision,
        Decision::Open {
            level: RiskLevel::Elevated
        }
    );
    let before = signal("b", Source::Report, Some(RiskLevel::Watch), 10);
    assert_eq!(
        rs.decide(&before, &StudentState::default(), now()).decision,
        Decision::NoAction
    );
}

#[test]
fn a_bad_rules_file_is_reported_with_line_and_column() {
    let text = "version = \"x\"\n\n[[rule]]\nid = \"a\"\nwhen = { sauce = [\"report\"] }\nthen = { action = \"no_action\" }\n";
    let errors = RuleSet::parse(text).unwrap_err();
    assert_eq!(errors[0].line, 5, "{errors:?}");
    assert!(errors[0].message.contains("sauce"), "{errors:?}");
    let text = "version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = { level_at_least = \"severe\" }\nthen = { action = \"no_action\" }\n";
    let errors = RuleSet::parse(text).unwrap_err();
    assert_eq!(errors[0].line, 4, "{errors:?}");
    let text = "version = \"x\"\n[[rule]]\nid = \"a\"\nwhen = {}\nthen = { action = \"case\", level = \"watch\" }\n\n[[rule]]\nid = \"a\"\nwhen = { during = [\"nope\"] }\nthen = { action = \"no_action\" }\n";
    let errors = RuleSet::parse(text).unwrap_err();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 7, 7], "{errors:?}");
    assert!(errors[1].message.contains("used twice"));
    assert!(errors[2].message.contains("`nope` is not defined"));
}

fn level() -> impl Strategy<Value = Option<RiskLevel>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(RiskLevel::ALL.to_vec()).prop_map(Some)
    ]
}

fn source() -> impl Strategy<Value = Source> {
    proptest::sample::select(vec![
        Source::Screening,
        Source::Report,
        Source::Hotline,
        Source::ZeroReport,
    ])
}

proptest! {
    /// Whatever the signal and history: never a second case, never a lower level,
    /// and a suicide flag or a critical level always ends at critical.
    #[test]
    fn decisions_never_lower_a_level_nor_open_a_second_case(
        open in level(),
        new_level in level(),
        src in source(),
        suicide in any::<bool>(),
        history in proptest::collection::vec((source(), level(), 0i64..60), 0..8),
    ) {
        let mut s = signal("new", src, new_level, 0);
        if suicide { s.flags.push("suicide_item".into()); }
        let recent = history.iter().enumerate()
            .map(|(i, (src, l, d))| signal(&format!("h{i}"), *src, *l, *d)).collect();
        let open_case = open.filter(|l| l.is_case_level());
        let state = StudentState { open_case, recent, watched: false };
        let o = rules().decide(&s, &state, now());
        match (open_case, &o.decision) {
            (Some(_), Decision::Open { .. }) => prop_assert!(false, "second case: {o:?}"),
            (Some(current), Decision::Attach { raise_to: Some(to) }) => prop_assert!(*to > current),
            (Some(_), Decision::Watch { .. } | Decision::NoAction) => prop_assert!(false, "dropped an open case's signal: {o:?}"),
            _ => {}
        }
        if suicide || new_level == Some(RiskLevel::Critical) {
            let critical = match o.decision {
                Decision::Open { level } => level == RiskLevel::Critical,
                Decision::Attach { raise_to } => raise_to == Some(RiskLevel::Critical) || open_case == Some(RiskLevel::Critical),
                _ => false,
            };
            prop_assert!(critical, "{o:?}");
            prop_assert_eq!(o.rule_id.as_str(), SAFETY_RULE);
        }
        prop_assert!(o.used.first() == Some(&"new".to_owned()));
    }

    /// A higher suggested level never yields a milder decision.
    #[test]
    fn decisions_are_monotone_in_the_signal_level(src in source(), a in level(), b in level()) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let rank = |d: &Decision| match d {
            Decision::NoAction => 0,
            Decision::Watch { .. } => 1,
            Decision::Open { level } => 1 + level.rank(),
            Decision::Attach { .. } => 0,
        };
        let st = StudentState::default();
        let d_lo = rules().decide(&signal("x", src, lo, 0), &st, now()).decision;
        let d_hi = rules().decide(&signal("x", src, hi, 0), &st, now()).decision;
        prop_assert!(rank(&d_hi) >= rank(&d_lo), "{lo:?} → {d_lo:?}, {hi:?} → {d_hi:?}");
    }
}

#[test]
fn simulation_compares_two_rule_sets_per_school_without_side_effects() {
    use sanyu_ruleset::simulate::{Replayed, compare, render};
    let candidate = RuleSet::parse(
        r#"
version = "stricter"
[[rule]]
id = "every.report"
when = { source = ["report"], level_at_least = "watch" }
then = { action = "case", level = "elevated" }
"#,
    )
    .unwrap();
    let at = |school: &str, student: &str, id: &str, level: RiskLevel, days_ago: i64| Replayed {
        school: school.into(),
        student: student.into(),
        signal: signal(id, Source::Report, Some(level), days_ago),
    };
    let history = vec![
        at("A", "a1", "r1", RiskLevel::Watch, 5),
        at("A", "a1", "r2", RiskLevel::Watch, 4),
        at("A", "a2", "r3", RiskLevel::Elevated, 3),
        at("B", "b1", "r4", RiskLevel::High, 2),
    ];
    let c = compare(&rules(), &candidate, &history);
    let a = &c["A"];
    assert_eq!(a.in_force.signals, 3);
    assert_eq!(
        a.in_force.cases_opened(),
        1,
        "only the elevated report opens"
    );
    assert_eq!(a.in_force.watched, 1, "a1 is watched once, not twice");
    assert_eq!(a.candidate.cases_opened(), 2, "a1 and a2 both get a case");
    assert_eq!(a.candidate.watched, 0);
    assert_eq!(a.changed_signals, 3);
    let b = &c["B"];
    assert_eq!(b.in_force.opened.get(&RiskLevel::High), Some(&1));
    assert_eq!(b.candidate.opened.get(&RiskLevel::Elevated), Some(&1));
    let text = render(&rules(), &candidate, &c);
    assert!(text.contains("school A: 3 signals"), "{text}");
    assert!(text.contains("candidate: stricter"), "{text}");
}
