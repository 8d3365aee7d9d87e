use std::fmt;

use serde::{Deserialize, Serialize};

/// How urgent a student's situation is. Ordered: `Watch < Elevated < High < Critical`.
///
/// `Watch` (关注) never opens a case; the other three are the case levels
/// 三级 (`Elevated`), 二级 (`High`) and 一级 (`Critical`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Watch,
    Elevated,
    High,
    Critical,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 4] = [Self::Watch, Self::Elevated, Self::High, Self::Critical];
    const EXPECTED: &'static str = "watch, elevated, high, critical";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watch => "watch",
            Self::Elevated => "elevated",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Rank used for sorting queues (higher is more urgent) and for storage.
    pub fn rank(self) -> i16 {
        match self {
            Self::Watch => 1,
            Self::Elevated => 2,
            Self::High => 3,
            Self::Critical => 4,
        }
    }

    pub fn from_rank(rank: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.rank() == rank)
    }

    /// Levels a teacher may suggest in a report.
    pub fn is_case_level(self) -> bool {
        self >= Self::Elevated
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

from_str_by_name!(RiskLevel, Self::ALL, "risk level", Self::EXPECTED);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_by_urgency() {
        assert!(RiskLevel::Watch < RiskLevel::Elevated);
        assert!(RiskLevel::Elevated < RiskLevel::High);
        assert!(RiskLevel::High < RiskLevel::Critical);
    }

    #[test]
    fn levels_round_trip_through_text_and_rank() {
        for level in RiskLevel::ALL {
            assert_eq!(level.as_str().parse::<RiskLevel>(), Ok(level));
            assert_eq!(RiskLevel::from_rank(level.rank()), Some(level));
        }
        assert!("severe".parse::<RiskLevel>().is_err());
    }
}
