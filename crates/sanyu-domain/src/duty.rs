//! Duty rosters (值班表): who of a school's crisis team, counsellors and
//! leaders is on duty at a given instant.
//!
//! A school has rotations and overrides. A **rotation** names a role, an
//! ordered list of members, a cadence (daily or weekly) with a hand-over time
//! in the school's local time, a start date (the first member takes over at
//! the hand-over time of that date), an optional shift (a window of local time
//! such as school hours `08:00–17:00` or nights `22:00–07:00`, crossing
//! midnight when the end is not after the start; without one it covers the
//! whole day) and the days it applies to: every day, school days (Monday to
//! Friday outside the calendar's holidays), or the key dates of the zero-report
//! calendar ([`crate::zero_report::Calendar`]) of given kinds (`holiday`,
//! `gaokao`, …): the calendar is the one calendar of key dates, reused here.
//! A shift belongs to the day it starts on. When rotations of one role
//! overlap, the most specific kind of day wins (key dates over school days over
//! every day), so a holiday rotation replaces the regular one. An **override**
//! (a named staff member covers a role from one instant to another, e.g. exam
//! week) always wins in its window.
//!
//! Everything here is pure: the caller passes the instant.

use std::collections::BTreeMap;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Role;
use crate::zero_report::Period;

/// How often a rotation hands over to its next member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    Daily,
    Weekly,
}

impl Cadence {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }

    fn days(self) -> i64 {
        match self {
            Self::Daily => 1,
            Self::Weekly => 7,
        }
    }
}

from_str_by_name!(
    Cadence,
    [Cadence::Daily, Cadence::Weekly],
    "cadence",
    "daily, weekly"
);

/// Which days a rotation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Days {
    /// Every day.
    Every,
    /// Monday to Friday, except the calendar's `holiday` key dates.
    SchoolDays,
    /// The calendar's key dates of the rotation's kinds (`holiday`, `gaokao`, …).
    KeyDates,
}

impl Days {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Every => "every",
            Self::SchoolDays => "school_days",
            Self::KeyDates => "key_dates",
        }
    }
}

from_str_by_name!(
    Days,
    [Days::Every, Days::SchoolDays, Days::KeyDates],
    "days",
    "every, school_days, key_dates"
);

/// A window of local time; it crosses midnight when `end` is not after `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Shift {
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }
}

/// A rotation of one role's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub cadence: Cadence,
    /// Local time of the hand-over.
    pub handover: NaiveTime,
    /// The first member takes over at `handover` on this (local) date.
    pub start_date: NaiveDate,
    /// Staff ids in the order they take over.
    pub members: Vec<Uuid>,
    /// `None`: the whole day.
    pub shift: Option<Shift>,
    pub days: Days,
    /// For [`Days::KeyDates`]: the calendar kinds (`holiday`, `gaokao`, …).
    pub kinds: Vec<String>,
}

/// A named staff member covers `role` in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub id: Uuid,
    pub role: Role,
    pub staff_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A calendar key date as the roster sees it: its kind and window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDate {
    pub kind: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl From<&Period> for KeyDate {
    fn from(p: &Period) -> Self {
        Self {
            kind: p.kind.clone(),
            from: p.opens_at,
            to: p.deadline,
        }
    }
}

/// A window in which nobody of `role` is on duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub role: Role,
}

/// Who is on duty, per role (roles with nobody are absent).
pub type OnDuty = BTreeMap<Role, Vec<Uuid>>;

/// A rotation or override that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DutyError {
    #[error("role: `{0}` is not on escalation ladders (counsellor, crisis_team or leader)")]
    Role(&'static str),
    #[error("members: at least one and at most 64, each once")]
    Members,
    #[error("name: 1 to 100 characters")]
    Name,
    #[error("shift: the start and the end must differ")]
    Shift,
    #[error("kinds: key-date rotations name 1 to 16 calendar kinds of [a-z0-9_], others none")]
    Kinds,
    #[error("to: must be after from, and within 366 days of it")]
    Window,
}

/// The roles a roster can name: those on escalation ladders.
pub fn rostered(role: Role) -> Result<(), DutyError> {
    if crate::escalation::receives_escalations(role) {
        Ok(())
    } else {
        Err(DutyError::Role(role.as_str()))
    }
}

impl Rotation {
    pub fn validate(&self) -> Result<(), DutyError> {
        rostered(self.role)?;
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(DutyError::Name);
        }
        let mut seen = std::collections::HashSet::new();
        if self.members.is_empty()
            || self.members.len() > 64
            || !self.members.iter().all(|m| seen.insert(*m))
        {
            return Err(DutyError::Members);
        }
        if self.shift.is_some_and(|s| s.start == s.end) {
            return Err(DutyError::Shift);
        }
        let kinds_ok = self.kinds.iter().all(|k| {
            !k.is_empty()
                && k.len() <= 32
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        let want_kinds = self.days == Days::KeyDates;
        if !kinds_ok || self.kinds.len() > 16 || want_kinds == self.kinds.is_empty() {
            return Err(DutyError::Kinds);
        }
        Ok(())
    }

    /// The member on duty at local time `t`, ignoring shifts and days; `None`
    /// before the first hand-over.
    fn member_at(&self, t: NaiveDateTime) -> Option<Uuid> {
        let first = self.start_date.and_time(self.handover);
        if t < first || self.members.is_empty() {
            return None;
        }
        let period = (t - first).num_seconds() / (self.cadence.days() * 86_400);
        let i = usize::try_from(period).ok()? % self.members.len();
        Some(self.members[i])
    }
}

impl Override {
    pub fn validate(&self) -> Result<(), DutyError> {
        rostered(self.role)?;
        if self.to <= self.from || self.to - self.from > Duration::days(366) {
            return Err(DutyError::Window);
        }
        Ok(())
    }

    fn covers(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.to
    }
}

/// One school's duty roster in its time zone, with the calendar's key dates.
#[derive(Debug, Clone)]
pub struct Roster {
    pub tz: Tz,
    pub rotations: Vec<Rotation>,
    pub overrides: Vec<Override>,
    pub key_dates: Vec<KeyDate>,
}

/// How far ahead [`Roster::next_change`] looks.
const HORIZON_DAYS: i64 = 60;

impl Roster {
    /// A roster with nothing on it: nobody is ever on duty.
    pub fn empty(tz: Tz) -> Self {
        Self {
            tz,
            rotations: Vec::new(),
            overrides: Vec::new(),
            key_dates: Vec::new(),
        }
    }

    /// Whether the roster names anybody for `role` (a role without a roster
    /// falls back to the whole role without counting as a gap).
    pub fn has_role(&self, role: Role) -> bool {
        self.rotations.iter().any(|r| r.role == role)
            || self.overrides.iter().any(|o| o.role == role)
    }

    fn local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&self.tz).naive_local()
    }

    /// The instant of local time `t` (the earlier one if ambiguous, the
    /// first one after a gap).
    fn instant(&self, t: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&t) {
            LocalResult::Single(x) | LocalResult::Ambiguous(x, _) => x.with_timezone(&Utc),
            LocalResult::None => self.instant(t + Duration::hours(1)),
        }
    }

    /// Whether some key date of one of `kinds` overlaps local day `day`.
    fn is_key_date(&self, day: NaiveDate, kinds: &[String]) -> bool {
        let from = self.instant(day.and_time(NaiveTime::MIN));
        let to = self.instant((day + Duration::days(1)).and_time(NaiveTime::MIN));
        self.key_dates
            .iter()
            .any(|k| kinds.contains(&k.kind) && k.from < to && from < k.to)
    }

    fn applies_on(&self, r: &Rotation, day: NaiveDate) -> bool {
        match r.days {
            Days::Every => true,
            Days::SchoolDays => {
                !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
                    && !self.is_key_date(day, &["holiday".to_owned()])
            }
            Days::KeyDates => self.is_key_date(day, &r.kinds),
        }
    }

    /// Whether rotation `r` covers local time `t` (shift and days).
    fn covers(&self, r: &Rotation, t: NaiveDateTime) -> bool {
        match r.shift {
            None => self.applies_on(r, t.date()),
            Some(s) => {
                let today = t.date();
                [today, today - Duration::days(1)].into_iter().any(|day| {
                    let start = day.and_time(s.start);
                    let end_day = if s.crosses_midnight() {
                        day + Duration::days(1)
                    } else {
                        day
                    };
                    let end = end_day.and_time(s.end);
                    start <= t && t < end && self.applies_on(r, day)
                })
            }
        }
    }

    /// The staff on duty at `at`, per role: the overrides covering it, else
    /// the members of the most specific rotations covering it.
    pub fn on_duty(&self, at: DateTime<Utc>) -> OnDuty {
        let t = self.local(at);
        let mut out = OnDuty::new();
        for o in self.overrides.iter().filter(|o| o.covers(at)) {
            let ids = out.entry(o.role).or_default();
            if !ids.contains(&o.staff_id) {
                ids.push(o.staff_id);
            }
        }
        let mut best: BTreeMap<Role, (Days, Vec<Uuid>)> = BTreeMap::new();
        for r in &self.rotations {
            if out.contains_key(&r.role) || !self.covers(r, t) {
                continue;
            }
            let Some(member) = r.member_at(t) else {
                continue;
            };
            let slot = best.entry(r.role).or_insert((r.days, Vec::new()));
            if r.days > slot.0 {
                *slot = (r.days, Vec::new());
            }
            if r.days == slot.0 && !slot.1.contains(&member) {
                slot.1.push(member);
            }
        }
        for (role, (_, ids)) in best {
            if !ids.is_empty() {
                out.insert(role, ids);
            }
        }
        out
    }

    /// Every instant in `(from, to]` at which who is on duty may change
    /// (hand-overs, shift edges, midnights, override edges), sorted, each once.
    fn change_points(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out: Vec<DateTime<Utc>> = Vec::new();
        let first = self.local(from).date() - Duration::days(1);
        let last = self.local(to).date() + Duration::days(1);
        let mut day = first;
        while day <= last {
            out.push(self.instant(day.and_time(NaiveTime::MIN)));
            for r in &self.rotations {
                out.push(self.instant(day.and_time(r.handover)));
                if let Some(s) = r.shift {
                    out.push(self.instant(day.and_time(s.start)));
                    out.push(self.instant(day.and_time(s.end)));
                }
            }
            day += Duration::days(1);
        }
        for o in &self.overrides {
            out.push(o.from);
            out.push(o.to);
        }
        out.retain(|t| from < *t && *t <= to);
        out.sort();
        out.dedup();
        out
    }

    /// The next instant after `at` (within 60 days) at which who is on duty
    /// as `role` changes, and who is on duty then.
    pub fn next_change(&self, at: DateTime<Utc>, role: Role) -> Option<(DateTime<Utc>, Vec<Uuid>)> {
        let now = self.on_duty(at).remove(&role).unwrap_or_default();
        self.change_points(at, at + Duration::days(HORIZON_DAYS))
            .into_iter()
            .map(|t| (t, self.on_duty(t).remove(&role).unwrap_or_default()))
            .find(|(_, ids)| *ids != now)
    }

    /// The next hand-over after `at`: the first instant within 60 days at
    /// which who is on duty changes, in any role.
    pub fn next_handover(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let now = self.on_duty(at);
        self.change_points(at, at + Duration::days(HORIZON_DAYS))
            .into_iter()
            .find(|t| self.on_duty(*t) != now)
    }

    /// The windows of `[from, to)` in which nobody of a role of `roles` is on
    /// duty, per role in the order given, each as long as it lasts (clipped
    /// to the range).
    pub fn gaps(&self, from: DateTime<Utc>, to: DateTime<Utc>, roles: &[Role]) -> Vec<Gap> {
        self.gaps_among(from, to, roles, |_, _| true)
    }

    /// As [`Self::gaps`], counting only the staff on duty for whom
    /// `counts(role, staff)` holds (e.g. those reachable in the role): a
    /// window whose only people on duty cannot be reached is a gap too.
    pub fn gaps_among(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        roles: &[Role],
        counts: impl Fn(Role, Uuid) -> bool,
    ) -> Vec<Gap> {
        if to <= from {
            return Vec::new();
        }
        let mut points = vec![from];
        points.extend(self.change_points(from, to).into_iter().filter(|t| *t < to));
        let covered: Vec<OnDuty> = points.iter().map(|t| self.on_duty(*t)).collect();
        let mut out = Vec::new();
        for role in roles {
            let mut open: Option<DateTime<Utc>> = None;
            for (i, t) in points.iter().enumerate() {
                let nobody = covered[i]
                    .get(role)
                    .is_none_or(|ids| !ids.iter().any(|id| counts(*role, *id)));
                match (nobody, open) {
                    (true, None) => open = Some(*t),
                    (false, Some(start)) => {
                        out.push(Gap {
                            start,
                            end: *t,
                            role: *role,
                        });
                        open = None;
                    }
                    _ => {}
                }
            }
            if let Some(start) = open {
                out.push(Gap {
                    start,
                    end: to,
                    role: *role,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("time")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    /// Shanghai local time as an instant.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Shanghai
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("local")
            .with_timezone(&Utc)
    }

    fn rotation(role: Role, cadence: Cadence, members: Vec<Uuid>) -> Rotation {
        Rotation {
            id: id(1000),
            name: "r".into(),
            role,
            cadence,
            handover: hm(8, 0),
            // A Monday.
            start_date: date(2026, 12, 7),
            members,
            shift: None,
            days: Days::Every,
            kinds: Vec::new(),
        }
    }

    fn roster(rotations: Vec<Rotation>) -> Roster {
        Roster {
            tz: Shanghai,
            rotations,
            overrides: Vec::new(),
            key_dates: Vec::new(),
        }
    }

    fn on(r: &Roster, t: DateTime<Utc>, role: Role) -> Vec<Uuid> {
        r.on_duty(t).remove(&role).unwrap_or_default()
    }

    #[test]
    fn a_weekly_rotation_hands_over_at_the_handover_time() {
        let r = roster(vec![rotation(
            Role::CrisisTeam,
            Cadence::Weekly,
            vec![id(1), id(2), id(3)],
        )]);
        assert!(on(&r, at(2026, 12, 7, 7, 59), Role::CrisisTeam).is_empty());
        assert_eq!(on(&r, at(2026, 12, 7, 8, 0), Role::CrisisTeam), [id(1)]);
        assert_eq!(on(&r, at(2026, 12, 14, 7, 59), Role::CrisisTeam), [id(1)]);
        assert_eq!(on(&r, at(2026, 12, 14, 8, 0), Role::CrisisTeam), [id(2)]);
        assert_eq!(on(&r, at(2026, 12, 21, 8, 0), Role::CrisisTeam), [id(3)]);
        assert_eq!(on(&r, at(2026, 12, 28, 8, 0), Role::CrisisTeam), [id(1)]);
        assert_eq!(
            r.next_handover(at(2026, 12, 9, 12, 0)),
            Some(at(2026, 12, 14, 8, 0))
        );
        assert_eq!(
            r.next_change(at(2026, 12, 9, 12, 0), Role::CrisisTeam),
            Some((at(2026, 12, 14, 8, 0), vec![id(2)]))
        );
    }

    #[test]
    fn a_night_shift_crosses_midnight() {
        let mut night = rotation(Role::CrisisTeam, Cadence::Daily, vec![id(1), id(2)]);
        night.handover = hm(12, 0);
        night.shift = Some(Shift {
            start: hm(22, 0),
            end: hm(7, 0),
        });
        let r = roster(vec![night]);
        // The night of Monday 7th is member 1's (hand-over Monday 12:00).
        assert_eq!(on(&r, at(2026, 12, 7, 22, 0), Role::CrisisTeam), [id(1)]);
        assert_eq!(on(&r, at(2026, 12, 8, 3, 0), Role::CrisisTeam), [id(1)]);
        assert!(on(&r, at(2026, 12, 8, 7, 0), Role::CrisisTeam).is_empty());
        assert!(on(&r, at(2026, 12, 8, 21, 59), Role::CrisisTeam).is_empty());
        assert_eq!(on(&r, at(2026, 12, 9, 3, 0), Role::CrisisTeam), [id(2)]);
        let gaps = r.gaps(
            at(2026, 12, 8, 0, 0),
            at(2026, 12, 9, 0, 0),
            &[Role::CrisisTeam],
        );
        assert_eq!(
            gaps,
            [Gap {
                start: at(2026, 12, 8, 7, 0),
                end: at(2026, 12, 8, 22, 0),
                role: Role::CrisisTeam
            }]
        );
    }

    #[test]
    fn a_window_whose_only_staff_on_duty_cannot_be_reached_is_a_gap() {
        let mut r = roster(vec![rotation(
            Role::CrisisTeam,
            Cadence::Daily,
            vec![id(1), id(2)],
        )]);
        // Member 2 (the 8th, from 08:00) cannot be reached; member 1 can.
        let reachable = |_: Role, s: Uuid| s == id(1);
        let from = at(2026, 12, 7, 12, 0);
        let to = at(2026, 12, 9, 12, 0);
        let gap = Gap {
            start: at(2026, 12, 8, 8, 0),
            end: at(2026, 12, 9, 8, 0),
            role: Role::CrisisTeam,
        };
        assert_eq!(
            r.gaps_among(from, to, &[Role::CrisisTeam], reachable),
            [gap]
        );
        assert!(r.gaps(from, to, &[Role::CrisisTeam]).is_empty());
        // Member 1 covers the 8th: no gap left.
        r.overrides.push(Override {
            id: id(60),
            role: Role::CrisisTeam,
            staff_id: id(1),
            from: at(2026, 12, 8, 8, 0),
            to: at(2026, 12, 9, 8, 0),
        });
        assert!(
            r.gaps_among(from, to, &[Role::CrisisTeam], reachable)
                .is_empty()
        );
    }

    #[test]
    fn an_override_wins_in_its_window() {
        let mut r = roster(vec![rotation(
            Role::CrisisTeam,
            Cadence::Daily,
            vec![id(1), id(2)],
        )]);
        r.overrides.push(Override {
            id: id(50),
            role: Role::CrisisTeam,
            staff_id: id(9),
            from: at(2026, 12, 8, 0, 0),
            to: at(2026, 12, 10, 0, 0),
        });
        assert_eq!(on(&r, at(2026, 12, 7, 23, 0), Role::CrisisTeam), [id(1)]);
        assert_eq!(on(&r, at(2026, 12, 8, 0, 0), Role::CrisisTeam), [id(9)]);
        assert_eq!(on(&r, at(2026, 12, 9, 23, 59), Role::CrisisTeam), [id(9)]);
        assert_eq!(on(&r, at(2026, 12, 10, 0, 0), Role::CrisisTeam), [id(1)]);
    }

    #[test]
    fn school_days_skip_weekends_and_holidays_and_key_dates_pull_in_their_rotation() {
        let mut school = rotation(Role::Counsellor, Cadence::Daily, vec![id(1)]);
        school.days = Days::SchoolDays;
        school.shift = Some(Shift {
            start: hm(8, 0),
            end: hm(17, 0),
        });
        let mut every = rotation(Role::Counsellor, Cadence::Daily, vec![id(2)]);
        every.shift = school.shift;
        let mut gaokao = rotation(Role::Counsellor, Cadence::Daily, vec![id(3)]);
        gaokao.days = Days::KeyDates;
        gaokao.kinds = vec!["gaokao".into()];
        let mut r = roster(vec![school, every, gaokao]);
        r.key_dates.push(KeyDate {
            kind: "gaokao".into(),
            from: at(2026, 12, 10, 0, 0),
            to: at(2026, 12, 11, 0, 0),
        });
        r.key_dates.push(KeyDate {
            kind: "holiday".into(),
            from: at(2026, 12, 11, 0, 0),
            to: at(2026, 12, 12, 0, 0),
        });
        // Tuesday: the school-days rotation is more specific than every day.
        assert_eq!(on(&r, at(2026, 12, 8, 9, 0), Role::Counsellor), [id(1)]);
        // Saturday: only every day.
        assert_eq!(on(&r, at(2026, 12, 12, 9, 0), Role::Counsellor), [id(2)]);
        // Thursday, gaokao: the key-date rotation, all day.
        assert_eq!(on(&r, at(2026, 12, 10, 9, 0), Role::Counsellor), [id(3)]);
        assert_eq!(on(&r, at(2026, 12, 10, 23, 0), Role::Counsellor), [id(3)]);
        // Friday, a holiday: not a school day.
        assert_eq!(on(&r, at(2026, 12, 11, 9, 0), Role::Counsellor), [id(2)]);
    }

    #[test]
    fn validation_refuses_what_cannot_work() {
        let ok = rotation(Role::CrisisTeam, Cadence::Daily, vec![id(1)]);
        assert_eq!(ok.validate(), Ok(()));
        let mut bad = ok.clone();
        bad.role = Role::Teacher;
        assert!(matches!(bad.validate(), Err(DutyError::Role(_))));
        let mut bad = ok.clone();
        bad.members = vec![id(1), id(1)];
        assert_eq!(bad.validate(), Err(DutyError::Members));
        let mut bad = ok.clone();
        bad.days = Days::KeyDates;
        assert_eq!(bad.validate(), Err(DutyError::Kinds));
        let mut bad = ok;
        bad.shift = Some(Shift {
            start: hm(8, 0),
            end: hm(8, 0),
        });
        assert_eq!(bad.validate(), Err(DutyError::Shift));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn arb_rotation() -> impl Strategy<Value = Rotation> {
            (
                prop_oneof![Just(Role::CrisisTeam), Just(Role::Counsellor)],
                prop_oneof![Just(Cadence::Daily), Just(Cadence::Weekly)],
                0u32..24,
                0i64..10,
                1u128..4,
                proptest::option::of((0u32..24, 0u32..24)),
                prop_oneof![
                    Just(Days::Every),
                    Just(Days::SchoolDays),
                    Just(Days::KeyDates)
                ],
            )
                .prop_filter_map(
                    "a shift needs two different times",
                    |(role, cadence, h, start, n, shift, days)| {
                        let shift = match shift {
                            Some((a, b)) if a == b => return None,
                            Some((a, b)) => Some(Shift {
                                start: hm(a, 0),
                                end: hm(b, 30),
                            }),
                            None => None,
                        };
                        Some(Rotation {
                            id: id(999),
                            name: "p".into(),
                            role,
                            cadence,
                            handover: hm(h, 0),
                            start_date: date(2026, 12, 1) + Duration::days(start),
                            members: (1..=n).map(id).collect(),
                            shift,
                            days,
                            kinds: if days == Days::KeyDates {
                                vec!["holiday".into()]
                            } else {
                                Vec::new()
                            },
                        })
                    },
                )
        }

        fn arb_roster() -> impl Strategy<Value = (Roster, Vec<i64>)> {
            (
                proptest::collection::vec(arb_rotation(), 0..4),
                proptest::collection::vec((0i64..20 * 24, 1i64..72, 0u8..2), 0..3),
                proptest::collection::vec((0i64..20, 1i64..4), 0..2),
                proptest::collection::vec(0i64..20 * 24 * 60, 1..40),
            )
                .prop_map(|(rotations, overrides, holidays, samples)| {
                    let base = at(2026, 12, 1, 0, 0);
                    let roster = Roster {
                        tz: Shanghai,
                        rotations,
                        overrides: overrides
                            .into_iter()
                            .enumerate()
                            .map(|(i, (from, len, role))| Override {
                                id: id(500 + i as u128),
                                role: if role == 0 {
                                    Role::CrisisTeam
                                } else {
                                    Role::Counsellor
                                },
                                staff_id: id(900 + i as u128),
                                from: base + Duration::hours(from),
                                to: base + Duration::hours(from + len),
                            })
                            .collect(),
                        key_dates: holidays
                            .into_iter()
                            .map(|(d, len)| KeyDate {
                                kind: "holiday".into(),
                                from: base + Duration::days(d),
                                to: base + Duration::days(d + len),
                            })
                            .collect(),
                    };
                    (roster, samples)
                })
        }

        proptest! {
            #[test]
            fn an_override_always_wins_in_its_window((r, samples) in arb_roster()) {
                let base = at(2026, 12, 1, 0, 0);
                for m in samples {
                    let t = base + Duration::minutes(m);
                    let duty = r.on_duty(t);
                    for o in r.overrides.iter().filter(|o| o.from <= t && t < o.to) {
                        let ids = duty.get(&o.role).cloned().unwrap_or_default();
                        prop_assert!(ids.contains(&o.staff_id));
                        prop_assert!(ids.iter().all(|s| r.overrides.iter().any(|x| x.staff_id == *s && x.role == o.role)));
                    }
                }
            }

            #[test]
            fn gaps_are_exactly_the_uncovered_windows((r, samples) in arb_roster()) {
                let from = at(2026, 12, 1, 0, 0);
                let to = from + Duration::days(20);
                let roles = [Role::CrisisTeam, Role::Counsellor];
                let gaps = r.gaps(from, to, &roles);
                for g in &gaps {
                    prop_assert!(g.start < g.end);
                    prop_assert!(from <= g.start && g.end <= to);
                }
                for m in samples {
                    let t = from + Duration::minutes(m);
                    for role in roles {
                        let nobody = r.on_duty(t).get(&role).is_none_or(|v| v.is_empty());
                        let in_gap = gaps.iter().any(|g| g.role == role && g.start <= t && t < g.end);
                        prop_assert_eq!(nobody, in_gap, "{} at {}", role.as_str(), t);
                    }
                }
                // Gaps of one role neither touch nor overlap: each is maximal.
                for role in roles {
                    let mine: Vec<_> = gaps.iter().filter(|g| g.role == role).collect();
                    for w in mine.windows(2) {
                        prop_assert!(w[0].end < w[1].start);
                    }
                }
            }

            #[test]
            fn the_next_change_is_the_first_change(r in arb_roster().prop_map(|x| x.0), m in 0i64..10 * 24 * 60) {
                let t = at(2026, 12, 1, 0, 0) + Duration::minutes(m);
                if let Some((next, ids)) = r.next_change(t, Role::CrisisTeam) {
                    prop_assert!(next > t);
                    let now = r.on_duty(t).remove(&Role::CrisisTeam).unwrap_or_default();
                    prop_assert_ne!(&ids, &now);
                    // Nothing changes in between (sampled each quarter hour).
                    let mut x = t;
                    while x < next {
                        prop_assert_eq!(r.on_duty(x).remove(&Role::CrisisTeam).unwrap_or_default(), now.clone());
                        x += Duration::minutes(15);
                    }
                }
            }
        }
    }
}
