//! Hotline calls (心理支持热线): the level a call is decided at, from the
//! C-SSRS screener answers and/or the hotline counsellor's rating.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::RiskLevel;

/// Rule id: a hotline caller nobody could identify, rated high or critical,
/// opens an `unidentified_caller` case for the crisis team. (There is no
/// student whose history the rules file could look at, so this rule is code.)
pub const RULE_HOTLINE_UNIDENTIFIED_CALLER: &str = "hotline.unidentified_caller.v1";

/// The level of the case an unidentified caller opens: the call's level at
/// `high` or `critical`; none below (the call is only logged, and linking it
/// to a student later files its signal).
pub fn unidentified_caller_case(level: RiskLevel) -> Option<RiskLevel> {
    (level >= RiskLevel::High).then_some(level)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerType {
    Student,
    Guardian,
    Teacher,
    Anonymous,
}

impl CallerType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Student => "student",
            Self::Guardian => "guardian",
            Self::Teacher => "teacher",
            Self::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for CallerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

from_str_by_name!(
    CallerType,
    [
        Self::Student,
        Self::Guardian,
        Self::Teacher,
        Self::Anonymous
    ],
    "caller type",
    "student, guardian, teacher, anonymous"
);

/// The C-SSRS screener: six yes/no items and whether the behaviour of item 6
/// happened within the last 3 months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CssrsScreener {
    pub answers: [bool; 6],
    pub behaviour_within_3_months: bool,
}

impl CssrsScreener {
    /// Suicidal behaviour within 3 months → critical; any yes → high; else watch.
    pub fn level(&self) -> RiskLevel {
        if self.behaviour_within_3_months {
            RiskLevel::Critical
        } else if self.answers.iter().any(|a| *a) {
            RiskLevel::High
        } else {
            RiskLevel::Watch
        }
    }

    /// Stored form: six `y`/`n`, a dash, then `y`/`n` for recent behaviour.
    pub fn encode(&self) -> String {
        let yn = |b: bool| if b { 'y' } else { 'n' };
        let mut s: String = self.answers.iter().map(|a| yn(*a)).collect();
        s.push('-');
        s.push(yn(self.behaviour_within_3_months));
        s
    }
}

/// The level a call is decided at: the higher of the screener's and the rating.
pub fn call_level(screener: Option<&CssrsScreener>, rating: Option<RiskLevel>) -> RiskLevel {
    let from_screener = screener.map_or(RiskLevel::Watch, CssrsScreener::level);
    rating.map_or(from_screener, |r| r.max(from_screener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unidentified_caller_opens_a_case_only_at_high_or_critical() {
        for level in RiskLevel::ALL {
            assert_eq!(
                unidentified_caller_case(level),
                (level >= RiskLevel::High).then_some(level),
                "{level}"
            );
        }
        assert_eq!(unidentified_caller_case(RiskLevel::Elevated), None);
        assert_eq!(
            unidentified_caller_case(RiskLevel::Critical),
            Some(RiskLevel::Critical)
        );
    }

    fn s(answers: [bool; 6], recent: bool) -> CssrsScreener {
        CssrsScreener {
            answers,
            behaviour_within_3_months: recent,
        }
    }

    #[test]
    fn all_no_is_watch_any_yes_is_high_recent_behaviour_is_critical() {
        assert_eq!(s([false; 6], false).level(), RiskLevel::Watch);
        assert_eq!(
            s([true, false, false, false, false, false], false).level(),
            RiskLevel::High
        );
        assert_eq!(
            s([false, false, false, false, false, true], true).level(),
            RiskLevel::Critical
        );
    }

    #[test]
    fn the_rating_and_the_screener_take_the_higher() {
        let high = s([true, false, false, false, false, false], false);
        assert_eq!(
            call_level(Some(&high), Some(RiskLevel::Critical)),
            RiskLevel::Critical
        );
        assert_eq!(
            call_level(Some(&high), Some(RiskLevel::Watch)),
            RiskLevel::High
        );
        assert_eq!(
            call_level(None, Some(RiskLevel::Elevated)),
            RiskLevel::Elevated
        );
        assert_eq!(s([false; 6], false).encode(), "nnnnnn-n");
    }
}
