//! Zero reports (零报告): at key dates every unit reports, even when there is
//! nothing to report, so that silence is never mistaken for safety.
//!
//! The calendar is configuration: periods with an open time, a deadline and
//! the levels that report (`class`: classes report to their school;
//! `school`: schools report to the district). A period applies to every school
//! of the deployment, to the schools of one district (`district = "<code>"`,
//! matched against the school's `district_code`: each district's own
//! calendar), or to one school (`school = "<code>"`), which is how a school
//! adds its own key dates to its district's calendar. A school sees the
//! deployment's periods, its district's and its own.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The unit that reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Each class reports to its school (head teacher).
    Class,
    /// Each school reports to the district (the school's leader).
    School,
}

/// One key date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// Stable id, e.g. `2026-autumn-final`.
    pub id: String,
    pub name: String,
    /// term_start, midterm_exam, final_exam, zhongkao, gaokao, holiday, special_event, …
    pub kind: String,
    pub opens_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// Which levels report (default both).
    #[serde(default = "both")]
    pub levels: Vec<Level>,
    /// Only the schools of this district (their `district_code`).
    #[serde(default)]
    pub district: Option<String>,
    /// Only this school (code): a school-level addition.
    #[serde(default)]
    pub school: Option<String>,
}

fn both() -> Vec<Level> {
    vec![Level::Class, Level::School]
}

/// The calendar and its reminder policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Calendar {
    pub periods: Vec<Period>,
    /// Reminders to the unit's reporter this long before the deadline.
    pub reminder_offsets_secs: Vec<u64>,
    /// After the deadline, the unit's leader is told after this delay.
    pub overdue_after_secs: u64,
    /// … and the next level up after this further delay.
    pub escalate_after_secs: u64,
    /// Periods whose deadline passed within this long are still listed.
    pub recent_days: u32,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            periods: Vec::new(),
            reminder_offsets_secs: vec![24 * 3600, 2 * 3600],
            overdue_after_secs: 0,
            escalate_after_secs: 24 * 3600,
            recent_days: 30,
        }
    }
}

/// A calendar that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("zero_report period `{0}`: the deadline is not after the open time")]
    Deadline(String),
    #[error("zero_report period id `{0}` appears twice")]
    Duplicate(String),
    #[error("zero_report period `{0}` names no reporting level")]
    NoLevel(String),
    #[error("zero_report period id `{0}` must be 1 to 64 of [A-Za-z0-9_-]")]
    Id(String),
    #[error(
        "zero_report period `{0}` names both a district and a school; a school's addition names the school only"
    )]
    DistrictAndSchool(String),
}

/// Where a unit's report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    Incidents,
    Zero,
    Missing,
}

impl UnitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incidents => "incidents",
            Self::Zero => "zero",
            Self::Missing => "missing",
        }
    }
}

/// The stage of a reminder timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Before the deadline: the unit's reporter.
    Reminder,
    /// After the deadline: the unit's leader.
    Overdue,
    /// After a further delay: the next level up.
    Escalated,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reminder => "reminder",
            Self::Overdue => "overdue",
            Self::Escalated => "escalated",
        }
    }
}

/// Timer kind of a zero-report reminder (`timers.kind`).
pub const ZERO_REPORT_TIMER: &str = "zero_report_due";

/// The payload of a zero-report timer (`timers.payload`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeroReportTimer {
    pub period_id: String,
    pub school_id: uuid::Uuid,
    pub stage: Stage,
    /// The reminder's offset before the deadline, or the delay after it.
    pub secs: u64,
}

impl ZeroReportTimer {
    /// The timer's key: once per period, school, stage and offset.
    pub fn key(&self) -> String {
        format!(
            "zero:{}:{}:{}:{}",
            self.period_id,
            self.school_id,
            self.stage.as_str(),
            self.secs
        )
    }
}

impl Period {
    /// Whether the school `school_code` (of district `district_code`) reports
    /// for this period: every school, its district's, or its own.
    pub fn applies_to(&self, school_code: &str, district_code: Option<&str>) -> bool {
        match (&self.school, &self.district) {
            (Some(s), _) => s == school_code,
            (None, Some(d)) => district_code == Some(d.as_str()),
            (None, None) => true,
        }
    }

    pub fn has(&self, level: Level) -> bool {
        self.levels.contains(&level)
    }

    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.opens_at <= now
    }

    pub fn is_late(&self, at: DateTime<Utc>) -> bool {
        at > self.deadline
    }
}

impl Calendar {
    pub fn validate(&self) -> Result<(), CalendarError> {
        let mut seen = std::collections::HashSet::new();
        for p in &self.periods {
            if p.id.is_empty()
                || p.id.len() > 64
                || !p
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(CalendarError::Id(p.id.clone()));
            }
            if !seen.insert(p.id.as_str()) {
                return Err(CalendarError::Duplicate(p.id.clone()));
            }
            if p.deadline <= p.opens_at {
                return Err(CalendarError::Deadline(p.id.clone()));
            }
            if p.levels.is_empty() {
                return Err(CalendarError::NoLevel(p.id.clone()));
            }
            if p.district.is_some() && p.school.is_some() {
                return Err(CalendarError::DistrictAndSchool(p.id.clone()));
            }
        }
        Ok(())
    }

    pub fn period(&self, id: &str) -> Option<&Period> {
        self.periods.iter().find(|p| p.id == id)
    }

    /// Periods of a school that are open now or whose deadline passed recently.
    pub fn visible(
        &self,
        school_code: &str,
        district_code: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<&Period> {
        let recent = Duration::days(i64::from(self.recent_days));
        self.periods
            .iter()
            .filter(|p| {
                p.applies_to(school_code, district_code)
                    && p.is_open(now)
                    && p.deadline + recent >= now
            })
            .collect()
    }

    /// Every reminder of a period: (stage, offset or delay in seconds, due time).
    pub fn timers(&self, p: &Period) -> Vec<(Stage, u64, DateTime<Utc>)> {
        let secs = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2));
        let mut out: Vec<_> = self
            .reminder_offsets_secs
            .iter()
            .map(|o| (Stage::Reminder, *o, (p.deadline - secs(*o)).max(p.opens_at)))
            .collect();
        let overdue = p.deadline + secs(self.overdue_after_secs);
        out.push((Stage::Overdue, self.overdue_after_secs, overdue));
        out.push((
            Stage::Escalated,
            self.escalate_after_secs,
            overdue + secs(self.escalate_after_secs),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period() -> Period {
        let opens = DateTime::parse_from_rfc3339("2026-12-20T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        Period {
            id: "final".into(),
            name: "期末考试".into(),
            kind: "final_exam".into(),
            opens_at: opens,
            deadline: opens + Duration::days(5),
            levels: both(),
            district: None,
            school: None,
        }
    }

    #[test]
    fn reminders_come_before_the_deadline_and_escalations_after_it() {
        let cal = Calendar {
            periods: vec![period()],
            ..Calendar::default()
        };
        cal.validate().expect("valid");
        let p = period();
        let t = cal.timers(&p);
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].2, p.deadline - Duration::hours(24));
        assert_eq!(t[1].2, p.deadline - Duration::hours(2));
        assert_eq!(t[2], (Stage::Overdue, 0, p.deadline));
        assert_eq!(t[3].2, p.deadline + Duration::hours(24));
    }

    #[test]
    fn a_bad_calendar_is_refused() {
        let mut p = period();
        p.deadline = p.opens_at;
        let cal = Calendar {
            periods: vec![p],
            ..Calendar::default()
        };
        assert!(matches!(cal.validate(), Err(CalendarError::Deadline(_))));
        let cal = Calendar {
            periods: vec![period(), period()],
            ..Calendar::default()
        };
        assert!(matches!(cal.validate(), Err(CalendarError::Duplicate(_))));
    }

    #[test]
    fn a_school_period_applies_to_that_school_only() {
        let mut p = period();
        p.school = Some("SCH1".into());
        assert!(p.applies_to("SCH1", Some("D1")));
        assert!(p.applies_to("SCH1", None));
        assert!(!p.applies_to("SCH2", Some("D1")));
    }

    #[test]
    fn a_school_sees_the_deployment_its_district_and_its_own_periods() {
        let opens = period().opens_at;
        let mk = |id: &str, district: Option<&str>, school: Option<&str>| Period {
            id: id.into(),
            district: district.map(Into::into),
            school: school.map(Into::into),
            ..period()
        };
        let cal = Calendar {
            periods: vec![
                mk("all", None, None),
                mk("d1-midterm", Some("D1"), None),
                mk("d2-midterm", Some("D2"), None),
                mk("sch1-sports-day", None, Some("SCH1")),
                mk("sch2-sports-day", None, Some("SCH2")),
            ],
            ..Calendar::default()
        };
        cal.validate().expect("valid");
        let ids = |school: &str, district: Option<&str>| -> Vec<String> {
            cal.visible(school, district, opens)
                .into_iter()
                .map(|p| p.id.clone())
                .collect()
        };
        assert_eq!(
            ids("SCH1", Some("D1")),
            ["all", "d1-midterm", "sch1-sports-day"]
        );
        assert_eq!(
            ids("SCH2", Some("D2")),
            ["all", "d2-midterm", "sch2-sports-day"]
        );
        assert_eq!(ids("SCH3", None), ["all"], "a school of no district");
        let both = Calendar {
            periods: vec![mk("x", Some("D1"), Some("SCH1"))],
            ..Calendar::default()
        };
        assert!(matches!(
            both.validate(),
            Err(CalendarError::DistrictAndSchool(_))
        ));
    }
}
