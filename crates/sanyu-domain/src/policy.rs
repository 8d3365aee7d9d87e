//! Who is tried when nobody on a ladder rung is reachable. The ladder itself
//! (who is told first, then who, and when) is `escalation::EscalationPolicy`.

use crate::Role;

/// When nobody in a rung's roles is reachable, these are tried in order.
pub const FALLBACK_ROLES: [Role; 2] = [Role::CrisisTeam, Role::Leader];
