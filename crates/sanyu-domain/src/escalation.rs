//! The escalation ladder: who is told when a case opens, how long they have to
//! acknowledge it, and who is told next when nobody does.
//!
//! A ladder is data (from configuration) and is snapshotted onto the case when
//! it opens or its level changes, so that editing the policy never changes a
//! case in flight. Everything here is pure: the scheduler asks
//! [`Ladder::rung_due`] when each rung is due and [`Ladder::rung_roles`] whom it
//! reaches.
//!
//! A rung names targets: a role (`"crisis_team"`: everybody of the role) or
//! the member of a role on duty (`"on_duty:crisis_team"`: who the school's
//! duty roster, [`crate::duty`], has on duty when the rung fires; the whole
//! role when the roster has nobody then). Ladders snapshotted on cases before
//! on-duty targets existed name roles only and read the same.
//!
//! Timing: rung 0 (`first`) fires when the ladder starts; every later rung
//! fires its `after_secs` after the one before, so the first rung's delay is
//! normally the acknowledge deadline. The `rungs` sequence runs `repeat` times.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{RiskLevel, Role};

/// Whom a rung reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Everybody of the role.
    Role(Role),
    /// The members of the role on duty at that instant (the whole role when
    /// nobody is).
    OnDuty(Role),
}

impl Target {
    /// The role the target is drawn from.
    pub fn role(self) -> Role {
        match self {
            Self::Role(r) | Self::OnDuty(r) => r,
        }
    }

    pub fn is_on_duty(self) -> bool {
        matches!(self, Self::OnDuty(_))
    }
}

impl From<Role> for Target {
    fn from(r: Role) -> Self {
        Self::Role(r)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Role(r) => f.write_str(r.as_str()),
            Self::OnDuty(r) => write!(f, "on_duty:{}", r.as_str()),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = crate::ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("on_duty:") {
            Some(role) => role.parse().map(Self::OnDuty),
            None => s.parse().map(Self::Role),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Targets of roles only (every one the whole role).
pub fn roles(roles: &[Role]) -> Vec<Target> {
    roles.iter().copied().map(Target::Role).collect()
}

/// One step of the ladder after the first contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Delay after the previous rung (for the first rung: after the ladder started).
    pub after_secs: u64,
    /// Who is contacted at this rung (roles, or `on_duty:<role>`).
    pub roles: Vec<Target>,
}

/// The escalation ladder of one risk level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    /// Contacted at once when the ladder starts.
    pub first: Vec<Target>,
    /// Time to acknowledge before the next rung fires.
    pub ack_within_secs: u64,
    /// The rungs after the first contact, in order.
    #[serde(default)]
    pub rungs: Vec<Rung>,
    /// How many times the `rungs` sequence runs (at least once).
    #[serde(default = "one")]
    pub repeat: u32,
}

fn one() -> u32 {
    1
}

/// A ladder that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LadderError {
    #[error("{level}: the first rung names nobody")]
    NobodyFirst { level: &'static str },
    #[error("{level}: rung {rung} names nobody")]
    EmptyRung { level: &'static str, rung: usize },
    #[error("{level}: rung {rung} names role `{role}`, which never receives escalations")]
    WrongRole {
        level: &'static str,
        rung: usize,
        role: &'static str,
    },
    #[error("{level}: the acknowledge deadline must be at least one second")]
    NoDeadline { level: &'static str },
}

impl Ladder {
    /// Number of rungs including the first contact.
    pub fn len(&self) -> u32 {
        1 + self.rungs.len() as u32 * self.repeat.max(1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Targets contacted at rung `n` (0 = first contact); `None` past the end.
    pub fn rung_roles(&self, n: u32) -> Option<&[Target]> {
        if n == 0 {
            return Some(&self.first);
        }
        if n >= self.len() || self.rungs.is_empty() {
            return None;
        }
        let i = (n as usize - 1) % self.rungs.len();
        Some(&self.rungs[i].roles)
    }

    /// When rung `n` is due for a ladder started at `started`; `None` past the end.
    pub fn rung_due(&self, started: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        if n == 0 {
            return Some(started);
        }
        if n >= self.len() || self.rungs.is_empty() {
            return None;
        }
        let mut secs: u64 = 0;
        for k in 1..=n {
            let i = (k as usize - 1) % self.rungs.len();
            secs = secs.saturating_add(self.rungs[i].after_secs);
        }
        Some(started + secs_to_duration(secs))
    }

    /// The acknowledge deadline of a ladder started at `started`.
    pub fn ack_deadline(&self, started: DateTime<Utc>) -> DateTime<Utc> {
        started + secs_to_duration(self.ack_within_secs)
    }

    /// Check that every rung reaches somebody who receives escalations.
    pub fn validate(&self, level: RiskLevel) -> Result<(), LadderError> {
        let level = level.as_str();
        if self.first.is_empty() {
            return Err(LadderError::NobodyFirst { level });
        }
        if self.ack_within_secs == 0 {
            return Err(LadderError::NoDeadline { level });
        }
        let all = std::iter::once(&self.first).chain(self.rungs.iter().map(|r| &r.roles));
        for (rung, roles) in all.enumerate() {
            if roles.is_empty() {
                return Err(LadderError::EmptyRung { level, rung });
            }
            if let Some(t) = roles.iter().find(|t| !receives_escalations(t.role())) {
                return Err(LadderError::WrongRole {
                    level,
                    rung,
                    role: t.role().as_str(),
                });
            }
        }
        Ok(())
    }
}

fn secs_to_duration(secs: u64) -> Duration {
    Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// Roles that may be on a ladder: the people who act on a case.
pub fn receives_escalations(role: Role) -> bool {
    matches!(role, Role::Counsellor | Role::CrisisTeam | Role::Leader)
}

/// The ladder of every level that opens a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationPolicy {
    pub critical: Ladder,
    pub high: Ladder,
    pub elevated: Ladder,
}

impl EscalationPolicy {
    /// The ladder for `level` (`watch` never opens a case; it gets the elevated one).
    pub fn ladder(&self, level: RiskLevel) -> &Ladder {
        match level {
            RiskLevel::Critical => &self.critical,
            RiskLevel::High => &self.high,
            RiskLevel::Elevated | RiskLevel::Watch => &self.elevated,
        }
    }

    pub fn validate(&self) -> Result<(), LadderError> {
        self.critical.validate(RiskLevel::Critical)?;
        self.high.validate(RiskLevel::High)?;
        self.elevated.validate(RiskLevel::Elevated)
    }
}

impl Default for EscalationPolicy {
    /// The default ladders (written out with comments in
    /// `deploy/sanyu.example.toml`, `[escalation.*]`). School hours and school days are approximated by wall-clock
    /// time: 1 h for `high`, one day for "next school day".
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        const DAY: u64 = 24 * HOUR;
        Self {
            // 一级: counsellor + crisis team at once; 10 min to acknowledge; then
            // every 10 min crisis team → leaders, five times over.
            critical: Ladder {
                first: roles(&[Role::Counsellor, Role::CrisisTeam]),
                ack_within_secs: 10 * MIN,
                rungs: vec![
                    Rung {
                        after_secs: 10 * MIN,
                        roles: roles(&[Role::CrisisTeam]),
                    },
                    Rung {
                        after_secs: 10 * MIN,
                        roles: roles(&[Role::Leader]),
                    },
                ],
                repeat: 5,
            },
            // 二级: counsellor; 1 h; crisis team; leader at 4 h.
            high: Ladder {
                first: roles(&[Role::Counsellor]),
                ack_within_secs: HOUR,
                rungs: vec![
                    Rung {
                        after_secs: HOUR,
                        roles: roles(&[Role::CrisisTeam]),
                    },
                    Rung {
                        after_secs: 3 * HOUR,
                        roles: roles(&[Role::Leader]),
                    },
                ],
                repeat: 1,
            },
            // 三级: counsellor; next school day; crisis team after 2 school days.
            elevated: Ladder {
                first: roles(&[Role::Counsellor]),
                ack_within_secs: DAY,
                rungs: vec![Rung {
                    after_secs: 2 * DAY,
                    roles: roles(&[Role::CrisisTeam]),
                }],
                repeat: 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    #[test]
    fn the_default_critical_ladder_climbs_every_ten_minutes_five_times() {
        let ladder = EscalationPolicy::default().critical;
        assert_eq!(ladder.len(), 11);
        assert_eq!(ladder.rung_due(t0(), 0), Some(t0()));
        for n in 1..11 {
            assert_eq!(
                ladder.rung_due(t0(), n),
                Some(t0() + Duration::minutes(10 * i64::from(n))),
                "rung {n}"
            );
        }
        assert_eq!(ladder.rung_due(t0(), 11), None);
        assert_eq!(
            ladder.rung_roles(1),
            Some(&[Target::Role(Role::CrisisTeam)][..])
        );
        assert_eq!(
            ladder.rung_roles(2),
            Some(&[Target::Role(Role::Leader)][..])
        );
        assert_eq!(
            ladder.rung_roles(3),
            Some(&[Target::Role(Role::CrisisTeam)][..])
        );
        assert_eq!(ladder.rung_roles(11), None);
    }

    #[test]
    fn the_default_high_ladder_reaches_the_leader_at_four_hours() {
        let ladder = EscalationPolicy::default().high;
        assert_eq!(ladder.rung_due(t0(), 1), Some(t0() + Duration::hours(1)));
        assert_eq!(ladder.rung_due(t0(), 2), Some(t0() + Duration::hours(4)));
        assert_eq!(
            ladder.rung_roles(2),
            Some(&[Target::Role(Role::Leader)][..])
        );
        assert_eq!(ladder.len(), 3);
    }

    #[test]
    fn the_default_policy_is_valid() {
        assert_eq!(EscalationPolicy::default().validate(), Ok(()));
    }

    #[test]
    fn a_ladder_that_reaches_a_teacher_or_nobody_is_refused() {
        let mut policy = EscalationPolicy::default();
        policy.high.rungs[0].roles = vec![Target::OnDuty(Role::Teacher)];
        assert!(matches!(
            policy.validate(),
            Err(LadderError::WrongRole { rung: 1, .. })
        ));
        let mut policy = EscalationPolicy::default();
        policy.critical.first.clear();
        assert!(matches!(
            policy.validate(),
            Err(LadderError::NobodyFirst { .. })
        ));
    }

    #[test]
    fn targets_read_as_roles_or_on_duty_roles_and_old_snapshots_still_read() {
        let old = r#"{"first":["counsellor","crisis_team"],"ack_within_secs":600,"rungs":[{"after_secs":600,"roles":["leader"]}],"repeat":1}"#;
        let ladder: Ladder = serde_json::from_str(old).expect("old snapshot");
        assert_eq!(ladder.first, roles(&[Role::Counsellor, Role::CrisisTeam]));
        assert_eq!(serde_json::to_string(&ladder).expect("json"), old);
        let new: Ladder = serde_json::from_str(
            r#"{"first":["on_duty:crisis_team","counsellor"],"ack_within_secs":600}"#,
        )
        .expect("on duty");
        assert_eq!(new.first[0], Target::OnDuty(Role::CrisisTeam));
        assert_eq!(new.first[0].to_string(), "on_duty:crisis_team");
        assert!(
            serde_json::from_str::<Ladder>(r#"{"first":["on_duty:janitor"],"ack_within_secs":1}"#)
                .is_err()
        );
    }

    #[test]
    fn a_ladder_without_rungs_ends_after_the_first_contact() {
        let ladder = Ladder {
            first: roles(&[Role::Counsellor]),
            ack_within_secs: 60,
            rungs: vec![],
            repeat: 3,
        };
        assert_eq!(ladder.len(), 1);
        assert_eq!(ladder.rung_due(t0(), 1), None);
    }
}
