//! `sanyu contacts check`: every rung of every school's ladder that would
//! reach nobody, found before a crisis rather than during one; and, for the
//! rungs that name the member of a role on duty (`on_duty:<role>`), every
//! window of the next 30 days in which the school's duty roster has nobody
//! reachable on duty in that role (the rung then tells the whole role), with
//! the windows that start within a week as warnings.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use sanyu_domain::escalation::{EscalationPolicy, Target};
use sanyu_domain::{CaseSubject, RiskLevel, Role};
use sanyu_store::entities::school;
use sanyu_store::{Conn, StoreError, roster};

pub use crate::DutyCalendar;

/// How far ahead duty gaps are looked for.
pub const DUTY_HORIZON_DAYS: i64 = 30;
/// Duty gaps that start this soon are warnings.
pub const DUTY_WARN_DAYS: i64 = 7;

/// A rung that reaches nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub school: String,
    pub level: RiskLevel,
    /// `unidentified_caller`: the first contact of a hotline caller's case,
    /// which is the crisis team's (see [`crate::ladder_for`]).
    pub subject: CaseSubject,
    /// 0 = first contact.
    pub rung: usize,
    /// Per role of the rung: why nobody in it is reachable.
    pub reasons: Vec<(Role, String)>,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rung = if self.subject == CaseSubject::UnidentifiedCaller {
            "unidentified caller first contact".to_owned()
        } else if self.rung == 0 {
            "first contact".to_owned()
        } else {
            format!("rung {}", self.rung)
        };
        write!(
            f,
            "{} {} {}: reaches nobody (",
            self.school, self.level, rung
        )?;
        for (i, (role, why)) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{role}: {why}")?;
        }
        f.write_str(")")
    }
}

/// A window in which an on-duty target of the ladders has nobody reachable
/// on duty: its rungs tell the whole role instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DutyGap {
    pub school: String,
    pub role: Role,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The roster's time zone (the window is shown in it).
    pub tz: Tz,
    /// It starts within [`DUTY_WARN_DAYS`] of the check.
    pub soon: bool,
}

impl std::fmt::Display for DutyGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fmt = "%Y-%m-%d %H:%M";
        write!(
            f,
            "{} {}: nobody on duty {} → {} ({}); the whole role is told instead",
            self.school,
            Target::OnDuty(self.role),
            self.start.with_timezone(&self.tz).format(fmt),
            self.end.with_timezone(&self.tz).format(fmt),
            self.tz.name(),
        )
    }
}

/// What the check found.
#[derive(Debug, Clone, Default)]
pub struct ContactsReport {
    pub schools: usize,
    pub rungs_checked: usize,
    pub gaps: Vec<Gap>,
    /// Duty-roster gaps of the next [`DUTY_HORIZON_DAYS`], by school, role
    /// and start.
    pub duty_gaps: Vec<DutyGap>,
}

impl ContactsReport {
    /// Duty gaps that start within a week.
    pub fn duty_warnings(&self) -> usize {
        self.duty_gaps.iter().filter(|g| g.soon).count()
    }
}

/// The roles the policy's ladders name as `on_duty:<role>`, each once.
pub fn on_duty_roles(policy: &EscalationPolicy) -> Vec<Role> {
    let mut out: Vec<Role> = Vec::new();
    for level in [RiskLevel::Critical, RiskLevel::High, RiskLevel::Elevated] {
        let ladder = policy.ladder(level);
        let all = std::iter::once(&ladder.first).chain(ladder.rungs.iter().map(|r| &r.roles));
        for t in all.flatten() {
            if let Target::OnDuty(role) = t
                && !out.contains(role)
            {
                out.push(*role);
            }
        }
    }
    out.sort();
    out
}

/// Check every school (or the one with `only_school` code) against `policy`;
/// duty rosters (read with `duty`) from `now` on. `phones`: whether a
/// channel to a mobile number (an SMS, voice or work-IM provider) is
/// configured; without one, staff with only a mobile number reach nobody.
pub async fn check(
    conn: &impl Conn,
    policy: &EscalationPolicy,
    only_school: Option<&str>,
    duty: &sanyu_case::DutyCalendar,
    now: DateTime<Utc>,
    phones: bool,
) -> Result<ContactsReport, StoreError> {
    let duty_roles = on_duty_roles(policy);
    let mut report = ContactsReport::default();
    let schools = roster::schools(conn).await?;
    for s in schools
        .into_iter()
        .filter(|s| only_school.is_none_or(|c| c == s.code))
    {
        report.schools += 1;
        for level in [RiskLevel::Critical, RiskLevel::High, RiskLevel::Elevated] {
            let ladder = policy.ladder(level);
            let rungs = std::iter::once((CaseSubject::Student, &ladder.first)).chain(
                ladder
                    .rungs
                    .iter()
                    .map(|r| (CaseSubject::Student, &r.roles)),
            );
            // An unidentified caller (high or critical) first reaches the
            // crisis team; its later rungs are the level's, checked above.
            let unidentified = crate::ladder_for(policy, level, CaseSubject::UnidentifiedCaller);
            let extra = (level >= RiskLevel::High)
                .then_some((CaseSubject::UnidentifiedCaller, &unidentified.first));
            for (rung, (subject, roles)) in
                rungs.enumerate().chain(extra.into_iter().map(|e| (0, e)))
            {
                report.rungs_checked += 1;
                let mut reasons = Vec::new();
                let mut anyone = false;
                for role in roles.iter().map(|t| t.role()) {
                    let staff = roster::staff_in_role(conn, s.id, role).await?;
                    let ids: Vec<uuid::Uuid> = staff.iter().map(|p| p.id).collect();
                    let checked = sanyu_store::contacts::verified(conn, &ids).await?;
                    let told = |p: &&sanyu_store::entities::staff::Model| {
                        crate::has_email(p) || (phones && checked.phone(p))
                    };
                    let reachable = staff.iter().filter(told).count();
                    let unverified = staff
                        .iter()
                        .filter(|p| crate::has_phone(p) && !checked.phone(p))
                        .count();
                    let verified = staff.iter().filter(|p| checked.phone(p)).count();
                    if reachable > 0 {
                        anyone = true;
                    } else if staff.is_empty() {
                        reasons.push((role, "no active staff in this role".to_owned()));
                    } else if verified > 0 {
                        reasons.push((
                            role,
                            format!(
                                "{} active staff, none with an email address, {verified} with a verified mobile number only and no SMS provider configured",
                                staff.len()
                            ),
                        ));
                    } else if unverified > 0 {
                        reasons.push((
                            role,
                            format!(
                                "{} active staff, none with an email address; {unverified} with a mobile number not yet verified (it counts once they sign in to the console with a code by SMS)",
                                staff.len()
                            ),
                        ));
                    } else {
                        reasons.push((
                            role,
                            format!(
                                "{} active staff, none with an email address or a mobile number",
                                staff.len()
                            ),
                        ));
                    }
                }
                if !anyone {
                    report.gaps.push(Gap {
                        school: s.code.clone(),
                        level,
                        subject,
                        rung,
                        reasons,
                    });
                }
            }
        }
        if !duty_roles.is_empty() {
            report
                .duty_gaps
                .extend(duty_gaps(conn, &s, &duty_roles, duty, now).await?);
        }
    }
    Ok(report)
}

/// The windows of the next [`DUTY_HORIZON_DAYS`] in which school `s` has
/// nobody reachable on duty in one of `roles`.
async fn duty_gaps(
    conn: &impl Conn,
    s: &school::Model,
    roles: &[Role],
    duty: &sanyu_case::DutyCalendar,
    now: DateTime<Utc>,
) -> Result<Vec<DutyGap>, StoreError> {
    let staff = sanyu_case::snapshot::reachable(conn, s.id).await?;
    let roster = sanyu_case::duty::roster(conn, s.id, duty, now).await?;
    let reachable =
        |role: Role, id: uuid::Uuid| staff.get(&role).is_some_and(|ids| ids.contains(&id));
    let to = now + Duration::days(DUTY_HORIZON_DAYS);
    let warn = now + Duration::days(DUTY_WARN_DAYS);
    let mut out: Vec<DutyGap> = roster
        .gaps_among(now, to, roles, reachable)
        .into_iter()
        .map(|g| DutyGap {
            school: s.code.clone(),
            role: g.role,
            start: g.start,
            end: g.end,
            tz: roster.tz,
            soon: g.start < warn,
        })
        .collect();
    out.sort_by_key(|g| (g.role, g.start));
    Ok(out)
}
