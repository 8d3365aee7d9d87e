//! `sanyu contacts check`: every rung of every school's ladder that would
//! reach nobody, found before a crisis rather than during one.

use sanyu_domain::escalation::EscalationPolicy;
use sanyu_domain::{CaseSubject, RiskLevel, Role};
use sanyu_store::entities::school;
use sanyu_store::sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
use sanyu_store::{StoreError, roster};

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

/// What the check found.
#[derive(Debug, Clone, Default)]
pub struct ContactsReport {
    pub schools: usize,
    pub rungs_checked: usize,
    pub gaps: Vec<Gap>,
}

/// Check every school (or the one with `only_school` code) against `policy`.
pub async fn check(
    conn: &impl ConnectionTrait,
    policy: &EscalationPolicy,
    only_school: Option<&str>,
) -> Result<ContactsReport, StoreError> {
    let mut report = ContactsReport::default();
    let schools = school::Entity::find()
        .order_by_asc(school::Column::Code)
        .all(conn)
        .await?;
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
                for role in roles {
                    let staff = roster::staff_in_role(conn, s.id, *role).await?;
                    let reachable = staff.iter().filter(|p| crate::has_email(p)).count();
                    if reachable > 0 {
                        anyone = true;
                    } else if staff.is_empty() {
                        reasons.push((*role, "no active staff in this role".to_owned()));
                    } else {
                        reasons.push((
                            *role,
                            format!("{} active staff, none with an email address", staff.len()),
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
    }
    Ok(report)
}
