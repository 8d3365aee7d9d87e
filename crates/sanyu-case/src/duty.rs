//! The duty roster a ladder resolves its on-duty targets on: the school's
//! rotations and overrides (from the store) in the deployment's time zone,
//! with the school's key dates of the zero-report calendar. Loaded beside
//! the reachable staff ([`crate::snapshot::reachable`]) by every caller that
//! plans a ladder rung.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sanyu_domain::duty::{KeyDate, Roster};
use sanyu_domain::zero_report::Calendar;
use sanyu_store::entities::school;
use sanyu_store::{Conn, StoreError, duty};
use uuid::Uuid;

/// What a roster needs besides its rows: the time zone its local times are
/// in (`notify.time_zone`) and the calendar of key dates (`[zero_report]`).
#[derive(Debug, Clone)]
pub struct DutyCalendar {
    pub tz: Tz,
    pub calendar: Calendar,
}

impl Default for DutyCalendar {
    /// China's time zone and no key dates.
    fn default() -> Self {
        Self {
            tz: chrono_tz::Asia::Shanghai,
            calendar: Calendar::default(),
        }
    }
}

impl DutyCalendar {
    /// The calendar of time zone `tz` (an IANA name, e.g. `Asia/Shanghai`).
    pub fn new(tz: &str, calendar: Calendar) -> Result<Self, String> {
        let tz = tz
            .parse::<Tz>()
            .map_err(|e| format!("time zone `{tz}`: {e}"))?;
        Ok(Self { tz, calendar })
    }

    /// The roster of `school` from its rows.
    pub fn roster(
        &self,
        school: &school::Model,
        rotations: Vec<sanyu_domain::duty::Rotation>,
        overrides: Vec<sanyu_domain::duty::Override>,
    ) -> Roster {
        Roster {
            tz: self.tz,
            rotations,
            overrides,
            key_dates: self
                .calendar
                .periods
                .iter()
                .filter(|p| p.applies_to(&school.code, school.district_code.as_deref()))
                .map(KeyDate::from)
                .collect(),
        }
    }
}

/// The rosters of several schools (overrides that end after `after`), by
/// school; a school without rows has an empty roster.
pub async fn rosters_of_schools(
    txn: &impl Conn,
    schools: &[school::Model],
    cal: &DutyCalendar,
    after: DateTime<Utc>,
) -> Result<HashMap<Uuid, Roster>, StoreError> {
    let ids: Vec<Uuid> = schools.iter().map(|s| s.id).collect();
    let mut rotations = duty::rotations_of_schools(txn, &ids).await?;
    let mut overrides = duty::overrides_of_schools(txn, &ids, after).await?;
    Ok(schools
        .iter()
        .map(|s| {
            let r = rotations.remove(&s.id).unwrap_or_default();
            let o = overrides.remove(&s.id).unwrap_or_default();
            (s.id, cal.roster(s, r, o))
        })
        .collect())
}

/// The roster of one school.
pub async fn roster(
    txn: &impl Conn,
    school_id: Uuid,
    cal: &DutyCalendar,
    after: DateTime<Utc>,
) -> Result<Roster, StoreError> {
    let schools = sanyu_store::roster::schools_by_ids(txn, vec![school_id]).await?;
    Ok(rosters_of_schools(txn, &schools, cal, after)
        .await?
        .remove(&school_id)
        .unwrap_or_else(|| Roster::empty(cal.tz)))
}
