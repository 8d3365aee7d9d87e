//! Who is tried when nobody on a ladder rung is reachable. The ladder itself
//! (who is told first, then who, and when) is `escalation::EscalationPolicy`.

use crate::{RiskLevel, Role};

/// When nobody in a rung's roles is reachable, these are tried in order.
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
    fn recipient_limits_never_hold_back_high_or_critical_warnings() {
        assert!(!recipient_limit_applies(RiskLevel::Critical));
        assert!(!recipient_limit_applies(RiskLevel::High));
        assert!(recipient_limit_applies(RiskLevel::Elevated));
        assert!(recipient_limit_applies(RiskLevel::Watch));
    }
}
