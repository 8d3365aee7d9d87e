//! The first rule of the rules engine: a teacher's report opens a case at its
//! suggested level, or attaches to the student's open case and raises its level.
//! A level is never lowered by a rule: only a person lowers a level.

use crate::RiskLevel;

/// Rule id recorded with every decision this rule makes.
pub const RULE_REPORT_OPENS_OR_RAISES: &str = "report.opens_or_raises.v1";

/// What the rules engine knows about the student's open case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenCaseView {
    pub level: RiskLevel,
}

/// The outcome of deciding one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No open case: open one at this level.
    OpenCase {
        level: RiskLevel,
        rule: &'static str,
    },
    /// Attach to the open case; `raise_to` is set when the level goes up.
    Attach {
        raise_to: Option<RiskLevel>,
        rule: &'static str,
    },
    /// Nothing to do (e.g. a `watch` suggestion with no open case).
    NoAction { rule: &'static str },
}

/// Decide a teacher's report with suggested `level` given the student's open case.
pub fn decide_report(level: RiskLevel, open_case: Option<OpenCaseView>) -> Decision {
    let rule = RULE_REPORT_OPENS_OR_RAISES;
    match open_case {
        None if level.is_case_level() => Decision::OpenCase { level, rule },
        None => Decision::NoAction { rule },
        Some(open) => Decision::Attach {
            raise_to: (level > open.level).then_some(level),
            rule,
        },
    }
}

/// Rule id: a screening result's suicide alert opens a case at, or raises it to, `critical`.
pub const RULE_SCREENING_SUICIDE_ALERT: &str = "screening.suicide_alert_critical.v1";
/// Rule id: any other screening result past a cut-off, at its suggested level.
pub const RULE_SCREENING_OPENS_OR_RAISES: &str = "screening.opens_or_raises.v1";

/// Decide a screening result with suggested `level` given the student's open
/// case. A positive suicide item (`suicide_alert`, even on a row that could not
/// be scored) opens or raises to `critical` at once; other results open or
/// attach at their suggested level (`watch` opens nothing, but attaches to an
/// open case). Levels are never lowered.
pub fn decide_screening(
    level: RiskLevel,
    suicide_alert: bool,
    open_case: Option<OpenCaseView>,
) -> Decision {
    let (level, rule) = if suicide_alert {
        (RiskLevel::Critical, RULE_SCREENING_SUICIDE_ALERT)
    } else {
        (level, RULE_SCREENING_OPENS_OR_RAISES)
    };
    match decide_report(level, open_case) {
        Decision::OpenCase { level, .. } => Decision::OpenCase { level, rule },
        Decision::Attach { raise_to, .. } => Decision::Attach { raise_to, rule },
        Decision::NoAction { .. } => Decision::NoAction { rule },
    }
}

/// Rule id: a hotline caller nobody could identify, rated high or critical,
/// opens an `unidentified_caller` case for the crisis team.
pub const RULE_HOTLINE_UNIDENTIFIED_CALLER: &str = "hotline.unidentified_caller.v1";

/// Decide a hotline call about nobody identified. There is no student whose
/// open case it could join: a caller at `high` or `critical` opens a case of
/// their own (linked to a student later); a lower rating opens nothing.
pub fn decide_unidentified_call(level: RiskLevel) -> Decision {
    let rule = RULE_HOTLINE_UNIDENTIFIED_CALLER;
    if level >= RiskLevel::High {
        Decision::OpenCase { level, rule }
    } else {
        Decision::NoAction { rule }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unidentified_caller_opens_a_case_only_at_high_or_critical() {
        for level in RiskLevel::ALL {
            let d = decide_unidentified_call(level);
            if level >= RiskLevel::High {
                assert_eq!(
                    d,
                    Decision::OpenCase {
                        level,
                        rule: RULE_HOTLINE_UNIDENTIFIED_CALLER
                    }
                );
            } else {
                assert!(matches!(d, Decision::NoAction { .. }), "{level}");
            }
        }
    }

    #[test]
    fn a_suicide_alert_opens_or_raises_to_critical_whatever_the_suggestion() {
        for level in RiskLevel::ALL {
            assert_eq!(
                decide_screening(level, true, None),
                Decision::OpenCase {
                    level: RiskLevel::Critical,
                    rule: RULE_SCREENING_SUICIDE_ALERT
                }
            );
            for open in RiskLevel::ALL {
                let d = decide_screening(level, true, Some(OpenCaseView { level: open }));
                assert_eq!(
                    d,
                    Decision::Attach {
                        raise_to: (open < RiskLevel::Critical).then_some(RiskLevel::Critical),
                        rule: RULE_SCREENING_SUICIDE_ALERT
                    }
                );
            }
        }
    }

    #[test]
    fn other_screening_results_follow_their_suggested_level() {
        assert_eq!(
            decide_screening(RiskLevel::Elevated, false, None),
            Decision::OpenCase {
                level: RiskLevel::Elevated,
                rule: RULE_SCREENING_OPENS_OR_RAISES
            }
        );
        assert_eq!(
            decide_screening(RiskLevel::Watch, false, None),
            Decision::NoAction {
                rule: RULE_SCREENING_OPENS_OR_RAISES
            }
        );
        assert_eq!(
            decide_screening(
                RiskLevel::Watch,
                false,
                Some(OpenCaseView {
                    level: RiskLevel::High
                })
            ),
            Decision::Attach {
                raise_to: None,
                rule: RULE_SCREENING_OPENS_OR_RAISES
            }
        );
    }

    #[test]
    fn a_report_without_open_case_opens_one_at_its_level() {
        for level in [RiskLevel::Elevated, RiskLevel::High, RiskLevel::Critical] {
            assert!(matches!(
                decide_report(level, None),
                Decision::OpenCase { level: l, .. } if l == level
            ));
        }
    }

    #[test]
    fn a_report_attaches_and_only_ever_raises() {
        for open in RiskLevel::ALL {
            for new in RiskLevel::ALL {
                let d = decide_report(new, Some(OpenCaseView { level: open }));
                let Decision::Attach { raise_to, .. } = d else {
                    panic!("expected attach, got {d:?}");
                };
                assert_eq!(raise_to, (new > open).then_some(new));
            }
        }
    }
}
