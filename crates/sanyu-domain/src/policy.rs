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

/// Whether a per-recipient rate limit may hold back a warning at `level`. A
/// person's warning about a student at `high` or `critical` risk — above all
/// the first one — is never held back by a limit; limits only spread
/// `elevated` and `watch` notices. (Provider limits may still spread any
/// non-critical message over a few seconds.)
pub fn recipient_limit_applies(level: RiskLevel) -> bool {
    level < RiskLevel::High
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_cases_reach_the_crisis_team_at_once() {
        assert!(first_contact_roles(RiskLevel::Critical).contains(&Role::CrisisTeam));
        assert!(first_contact_roles(RiskLevel::Critical).contains(&Role::Counsellor));
        assert_eq!(first_contact_roles(RiskLevel::High), &[Role::Counsellor]);
    }

    #[test]
    fn recipient_limits_never_hold_back_high_or_critical_warnings() {
        assert!(!recipient_limit_applies(RiskLevel::Critical));
        assert!(!recipient_limit_applies(RiskLevel::High));
        assert!(recipient_limit_applies(RiskLevel::Elevated));
        assert!(recipient_limit_applies(RiskLevel::Watch));
    }
}
