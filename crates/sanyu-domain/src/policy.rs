//! Who is told first when a case opens or its level rises (the first rung of
//! the escalation ladder; the full ladder comes with the scheduler).

use crate::{RiskLevel, Role};

/// Roles contacted first for a case at `level`.
pub fn first_contact_roles(level: RiskLevel) -> &'static [Role] {
    match level {
        // 一级: counsellor and crisis-team lead at once, any hour.
        RiskLevel::Critical => &[Role::Counsellor, Role::CrisisTeam],
        RiskLevel::High | RiskLevel::Elevated | RiskLevel::Watch => &[Role::Counsellor],
    }
}

/// When nobody in the first-contact roles is reachable, these are tried in order.
pub const FALLBACK_ROLES: [Role; 2] = [Role::CrisisTeam, Role::Leader];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_cases_reach_the_crisis_team_at_once() {
        assert!(first_contact_roles(RiskLevel::Critical).contains(&Role::CrisisTeam));
        assert!(first_contact_roles(RiskLevel::Critical).contains(&Role::Counsellor));
        assert_eq!(first_contact_roles(RiskLevel::High), &[Role::Counsellor]);
    }
}
