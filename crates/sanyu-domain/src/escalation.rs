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
    /// The after-acknowledgement ladder of this level, snapshotted with the
    /// ladder when it starts (from `[escalation.after_ack.<level>]`, never
    /// configured here): who is told when the case is acknowledged and then
    /// nobody acts. `None`: an acknowledgement is enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ack: Option<AfterAck>,
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
    #[error(
        "{level}: the after-acknowledgement ladder is configured in [escalation.after_ack.{level}], not in the level's ladder"
    )]
    AfterAckInLadder { level: &'static str },
    #[error("after_ack.{level}: {problem}")]
    AfterAck {
        level: &'static str,
        problem: String,
    },
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
        if self.after_ack.is_some() {
            return Err(LadderError::AfterAckInLadder { level });
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
    /// What follows an acknowledgement without action, per level.
    pub after_ack: AfterAckPolicy,
    /// After how many days without action a case being worked is stale.
    pub stale_after_days: StaleAfterDays,
}

impl EscalationPolicy {
    /// The ladder for `level` (`watch` never opens a case; it gets the elevated
    /// one), with the level's after-acknowledgement ladder.
    pub fn ladder(&self, level: RiskLevel) -> Ladder {
        let mut ladder = match level {
            RiskLevel::Critical => &self.critical,
            RiskLevel::High => &self.high,
            RiskLevel::Elevated | RiskLevel::Watch => &self.elevated,
        }
        .clone();
        ladder.after_ack = self.after_ack.of(level).cloned();
        ladder
    }

    pub fn validate(&self) -> Result<(), LadderError> {
        self.critical.validate(RiskLevel::Critical)?;
        self.high.validate(RiskLevel::High)?;
        self.elevated.validate(RiskLevel::Elevated)?;
        self.after_ack.validate()
    }
}

/// The after-acknowledgement ladder: a case acknowledged but without a first
/// action (a guardian contact or the recorded decision not to contact, a
/// note, an assignment, a referral, a follow-up, a close) escalates again.
/// Its first rung fires `action_within_secs` after the acknowledgement; every
/// later rung fires its `after_secs` after the one before (so the first
/// rung's `after_secs` only spaces the repeats); the `rungs` sequence runs
/// `repeat` times. A first action stops it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterAck {
    /// Time after the acknowledgement for a first action.
    pub action_within_secs: u64,
    /// Who is told, in order, while nobody acts.
    pub rungs: Vec<Rung>,
    /// How many times the `rungs` sequence runs (at least once).
    #[serde(default = "one")]
    pub repeat: u32,
}

impl AfterAck {
    /// Number of rungs (numbered from 1).
    pub fn len(&self) -> u32 {
        self.rungs.len() as u32 * self.repeat.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.rungs.is_empty()
    }

    /// Who is told at rung `n` (from 1); `None` past the end.
    pub fn rung_roles(&self, n: u32) -> Option<&[Target]> {
        if n == 0 || n > self.len() {
            return None;
        }
        Some(&self.rungs[(n as usize - 1) % self.rungs.len()].roles)
    }

    /// When rung `n` (from 1) is due after an acknowledgement at `acked`;
    /// `None` past the end.
    pub fn rung_due(&self, acked: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        if n == 0 || n > self.len() {
            return None;
        }
        let mut secs = self.action_within_secs;
        for k in 2..=n {
            let i = (k as usize - 1) % self.rungs.len();
            secs = secs.saturating_add(self.rungs[i].after_secs);
        }
        Some(acked + secs_to_duration(secs))
    }

    fn validate(&self, level: RiskLevel) -> Result<(), LadderError> {
        let level = level.as_str();
        let problem = |p: &str| {
            Err(LadderError::AfterAck {
                level,
                problem: p.to_owned(),
            })
        };
        if self.action_within_secs == 0 {
            return problem("action_within_secs must be at least one second");
        }
        if self.rungs.is_empty() {
            return problem("names no rung");
        }
        for (i, rung) in self.rungs.iter().enumerate() {
            if rung.roles.is_empty() {
                return problem(&format!("rung {} names nobody", i + 1));
            }
            if let Some(role) = rung.roles.iter().find(|r| !receives_escalations(r.role())) {
                return problem(&format!(
                    "rung {} names role `{}`, which never receives escalations",
                    i + 1,
                    role
                ));
            }
            if rung.after_secs == 0 && (i > 0 || self.repeat > 1) {
                return problem(&format!(
                    "rung {} must come at least a second after the one before",
                    i + 1
                ));
            }
        }
        Ok(())
    }
}

/// The after-acknowledgement ladder of each level (`None`: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AfterAckPolicy {
    pub critical: Option<AfterAck>,
    pub high: Option<AfterAck>,
    pub elevated: Option<AfterAck>,
}

impl AfterAckPolicy {
    pub fn of(&self, level: RiskLevel) -> Option<&AfterAck> {
        match level {
            RiskLevel::Critical => self.critical.as_ref(),
            RiskLevel::High => self.high.as_ref(),
            RiskLevel::Elevated | RiskLevel::Watch => self.elevated.as_ref(),
        }
    }

    pub fn validate(&self) -> Result<(), LadderError> {
        for level in [RiskLevel::Critical, RiskLevel::High, RiskLevel::Elevated] {
            if let Some(a) = self.of(level) {
                a.validate(level)?;
            }
        }
        Ok(())
    }
}

impl Default for AfterAckPolicy {
    /// Critical: the crisis team 30 min after an acknowledgement without
    /// action, the leaders 15 min later, and so on every 15 min, four times
    /// over. High: the crisis team after 4 h, the leaders 2 h later, twice.
    /// Elevated: none.
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        let climb = |first: u64, then: u64, repeat: u32| AfterAck {
            action_within_secs: first,
            rungs: vec![
                Rung {
                    after_secs: then,
                    roles: vec![Role::CrisisTeam.into()],
                },
                Rung {
                    after_secs: then,
                    roles: vec![Role::Leader.into()],
                },
            ],
            repeat,
        };
        Self {
            critical: Some(climb(30 * MIN, 15 * MIN, 4)),
            high: Some(climb(4 * HOUR, 2 * HOUR, 2)),
            elevated: None,
        }
    }
}

/// After how many days without an action a case that is being worked
/// (acknowledged, in progress, referred, monitored) is stale: flagged in the
/// queue and its assignee reminded once per period. 0: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaleAfterDays {
    pub critical: u32,
    pub high: u32,
    pub elevated: u32,
}

impl Default for StaleAfterDays {
    fn default() -> Self {
        Self {
            critical: 1,
            high: 3,
            elevated: 7,
        }
    }
}

impl StaleAfterDays {
    /// The period of `level` (`None`: never stale).
    pub fn of(&self, level: RiskLevel) -> Option<Duration> {
        let days = match level {
            RiskLevel::Critical => self.critical,
            RiskLevel::High => self.high,
            RiskLevel::Elevated | RiskLevel::Watch => self.elevated,
        };
        (days > 0).then(|| Duration::days(i64::from(days)))
    }

    /// Whether a case of `level` and `status`, last acted on (or
    /// acknowledged) at `since`, is stale at `now`. An open case is the
    /// acknowledge ladder's; a closed one nobody's.
    pub fn is_stale(
        &self,
        level: RiskLevel,
        status: crate::CaseStatus,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        use crate::CaseStatus as S;
        if matches!(status, S::Open | S::Closed) {
            return false;
        }
        match (self.of(level), since) {
            (Some(period), Some(since)) => now - since >= period,
            _ => false,
        }
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
                after_ack: None,
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
                after_ack: None,
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
                after_ack: None,
            },
            after_ack: AfterAckPolicy::default(),
            stale_after_days: StaleAfterDays::default(),
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
    fn the_default_after_ack_ladders_climb_from_thirty_minutes_and_four_hours() {
        let p = EscalationPolicy::default();
        let c = p
            .after_ack
            .of(RiskLevel::Critical)
            .expect("critical has one");
        assert_eq!(c.rung_due(t0(), 1), Some(t0() + Duration::minutes(30)));
        assert_eq!(c.rung_roles(1), Some(&[Target::Role(Role::CrisisTeam)][..]));
        assert_eq!(c.rung_due(t0(), 2), Some(t0() + Duration::minutes(45)));
        assert_eq!(c.rung_roles(2), Some(&[Target::Role(Role::Leader)][..]));
        assert_eq!(c.rung_due(t0(), 3), Some(t0() + Duration::minutes(60)));
        assert_eq!(c.rung_roles(3), Some(&[Target::Role(Role::CrisisTeam)][..]));
        assert_eq!(c.len(), 8);
        assert_eq!(c.rung_due(t0(), 9), None);
        assert_eq!(c.rung_roles(0), None);
        let h = p.after_ack.of(RiskLevel::High).expect("high has one");
        assert_eq!(h.rung_due(t0(), 1), Some(t0() + Duration::hours(4)));
        assert_eq!(h.rung_due(t0(), 2), Some(t0() + Duration::hours(6)));
        assert!(p.after_ack.of(RiskLevel::Elevated).is_none());
        // The snapshotted ladder carries it.
        assert_eq!(p.ladder(RiskLevel::Critical).after_ack.as_ref(), Some(c));
        assert_eq!(p.ladder(RiskLevel::Elevated).after_ack, None);
    }

    #[test]
    fn an_after_ack_ladder_that_cannot_work_is_refused() {
        let mut p = EscalationPolicy::default();
        if let Some(a) = p.after_ack.critical.as_mut() {
            a.rungs[1].roles = vec![Role::Teacher.into()];
        }
        assert!(matches!(p.validate(), Err(LadderError::AfterAck { .. })));
        let mut p = EscalationPolicy::default();
        p.high.after_ack = p.after_ack.high.clone();
        assert!(matches!(
            p.validate(),
            Err(LadderError::AfterAckInLadder { .. })
        ));
    }

    #[test]
    fn a_case_being_worked_is_stale_after_its_levels_days() {
        use crate::CaseStatus as S;
        let d = StaleAfterDays::default();
        let since = Some(t0());
        let at = |days| t0() + Duration::days(days);
        assert!(!d.is_stale(RiskLevel::High, S::InProgress, since, at(2)));
        assert!(d.is_stale(RiskLevel::High, S::InProgress, since, at(3)));
        assert!(d.is_stale(RiskLevel::Critical, S::Acknowledged, since, at(1)));
        assert!(!d.is_stale(RiskLevel::Elevated, S::Referred, since, at(6)));
        assert!(!d.is_stale(RiskLevel::Critical, S::Open, since, at(9)));
        assert!(!d.is_stale(RiskLevel::Critical, S::Closed, since, at(9)));
        assert!(!d.is_stale(RiskLevel::Critical, S::InProgress, None, at(9)));
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
            after_ack: None,
        };
        assert_eq!(ladder.len(), 1);
        assert_eq!(ladder.rung_due(t0(), 1), None);
    }
}
