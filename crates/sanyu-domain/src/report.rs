use serde::{Deserialize, Serialize};

/// What a head teacher or class monitor observed. A closed list, so that
/// reports can be counted and routed; free text goes in the narrative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportCategory {
    SuicidalIdeation,
    SelfHarm,
    Depression,
    Anxiety,
    Bullying,
    FamilyCrisis,
    BehaviourChange,
    Other,
}

impl ReportCategory {
    pub const ALL: [ReportCategory; 8] = [
        Self::SuicidalIdeation,
        Self::SelfHarm,
        Self::Depression,
        Self::Anxiety,
        Self::Bullying,
        Self::FamilyCrisis,
        Self::BehaviourChange,
        Self::Other,
    ];
    pub const EXPECTED: &'static str = "suicidal_ideation, self_harm, depression, anxiety, bullying, family_crisis, behaviour_change, other";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuicidalIdeation => "suicidal_ideation",
            Self::SelfHarm => "self_harm",
            Self::Depression => "depression",
            Self::Anxiety => "anxiety",
            Self::Bullying => "bullying",
            Self::FamilyCrisis => "family_crisis",
            Self::BehaviourChange => "behaviour_change",
            Self::Other => "other",
        }
    }
}

from_str_by_name!(ReportCategory, Self::ALL, "report category", Self::EXPECTED);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_round_trip() {
        for c in ReportCategory::ALL {
            assert_eq!(c.as_str().parse::<ReportCategory>(), Ok(c));
        }
        assert!("sad".parse::<ReportCategory>().is_err());
    }
}
