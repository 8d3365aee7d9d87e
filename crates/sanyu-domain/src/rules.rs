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

#[cfg(test)]
mod tests {
    use super::*;

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
