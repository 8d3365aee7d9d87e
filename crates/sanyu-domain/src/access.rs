//! Who may do what. A principal is the holder of an API token: a role, a
//! school, and for class-bound roles a class.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 班主任: reports, sees own class.
    Teacher,
    /// 心理委员: may only submit reports for own class.
    Monitor,
    /// 心理教师: works the school's cases.
    Counsellor,
    /// 危机干预小组: all cases of the school, escalations.
    CrisisTeam,
    /// 校长 / 德育校长: escalation target, aggregated views.
    Leader,
    /// 区教育局: compliance and statistics, no narratives.
    District,
    /// Roster, rules, tokens of a school.
    Admin,
    /// Machine identity for importers and hotline systems.
    Service,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Self::Teacher,
        Self::Monitor,
        Self::Counsellor,
        Self::CrisisTeam,
        Self::Leader,
        Self::District,
        Self::Admin,
        Self::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Teacher => "teacher",
            Self::Monitor => "monitor",
            Self::Counsellor => "counsellor",
            Self::CrisisTeam => "crisis_team",
            Self::Leader => "leader",
            Self::District => "district",
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }

    /// Roles bound to one class: their token must name a class.
    pub fn is_class_bound(self) -> bool {
        matches!(self, Self::Teacher | Self::Monitor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

from_str_by_name!(
    Role,
    Self::ALL,
    "role",
    "teacher, monitor, counsellor, crisis_team, leader, district, admin, service"
);

/// Work on a case, for [`Principal::may_work_case`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseWork {
    Acknowledge,
    Assign {
        to_self: bool,
    },
    /// Notes, guardian contacts, referrals, follow-ups.
    Record,
    ChangeLevel,
    Close,
    Reopen,
    /// Name the student an unidentified caller's case is about.
    LinkStudent,
}

/// How much of a student's record a reader sees. One rule for every route
/// that shows cases, timelines or the key population: a route answers with
/// the response type of the caller's disclosure, so what a role may see is a
/// property of the type it gets, and a field added to the full record is
/// hidden from oversight until someone adds it to the oversight type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// Counsellors and the crisis team, who work cases: the whole record,
    /// with narratives, notes, outcomes, referrals, screening detail and
    /// where each signal came from.
    Casework,
    /// Head teachers and leaders: the state of a case, its level, who works
    /// it and when. Never free text, screening detail, rule ids or the source
    /// of a signal (that a student called the hotline).
    Oversight,
}

/// A case-timeline action as oversight sees it: the lifecycle steps by name;
/// the work in between (notes, guardian contacts, referrals, follow-ups,
/// naming a caller) only as `work`, which says that someone is on the case
/// without saying what they did.
pub fn oversight_action(action: &str) -> &'static str {
    match action {
        "acknowledge" => "acknowledge",
        "assign" => "assign",
        "level" => "level",
        "close" | "merge" => "close",
        "reopen" => "reopen",
        _ => "work",
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: Uuid,
    pub role: Role,
    pub school_id: Uuid,
    pub class_id: Option<Uuid>,
    pub staff_id: Option<Uuid>,
}

/// Who holds a presented API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Staff or a system of one school: every `/v1` route checks its role
    /// and scope.
    School(Principal),
    /// A deployment-level admin (a token without a school): sees the dead
    /// letters no school can be told of and confirms role grants of a school
    /// with no leader or crisis team yet. Reads no cases and no roster.
    Deployment { token_id: Uuid },
}

impl Role {
    /// Roles that read cases: giving one to somebody through the API needs a
    /// second person of the school (a role grant); taking it away does not.
    pub fn reads_cases(self) -> bool {
        matches!(
            self,
            Self::Counsellor | Self::CrisisTeam | Self::Leader | Self::District
        )
    }

    /// Roles that confirm or refuse a role grant of their school.
    pub fn confirms_role_grants(self) -> bool {
        matches!(self, Self::Leader | Self::CrisisTeam)
    }
}

/// Whether a principal may act on a student, given where the student is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// The role may never do this.
    Forbidden,
    /// The student is outside the caller's scope. Another school's records are
    /// reported as not found, so that their existence does not leak.
    OutOfScope,
}

impl Principal {
    /// May this caller's role submit warning reports at all? Asked before any
    /// student is looked up, so that the answer says nothing about whether
    /// the student exists.
    pub fn may_submit_reports(&self) -> bool {
        matches!(
            self.role,
            Role::Teacher | Role::Monitor | Role::Counsellor | Role::CrisisTeam
        )
    }

    /// May this caller submit a warning report about a student of `school_id`/`class_id`?
    pub fn may_report_on(&self, school_id: Uuid, class_id: Uuid) -> Access {
        if !self.may_submit_reports() {
            return Access::Forbidden;
        }
        self.student_scope(school_id, class_id)
    }

    /// How much of a student's record this caller sees (none for roles that
    /// read no records: monitors, district officers, admins, services).
    pub fn disclosure(&self) -> Option<Disclosure> {
        match self.role {
            Role::Counsellor | Role::CrisisTeam => Some(Disclosure::Casework),
            Role::Teacher | Role::Leader => Some(Disclosure::Oversight),
            Role::Monitor | Role::District | Role::Admin | Role::Service => None,
        }
    }

    /// Does this caller see who a student is (number and name)? Those who
    /// work cases, and a head teacher (whose scope is the own class, whose
    /// students they report on by number). Leaders see states without names.
    pub fn sees_identity(&self) -> bool {
        matches!(
            self.role,
            Role::Counsellor | Role::CrisisTeam | Role::Teacher
        )
    }

    /// May this caller list and read cases? Admins run the roster and tokens,
    /// not cases; district officers see statistics, not cases.
    pub fn may_read_cases(&self) -> bool {
        matches!(
            self.role,
            Role::Teacher | Role::Counsellor | Role::CrisisTeam | Role::Leader
        )
    }

    /// May this caller read one case of `school_id` about a student of
    /// `class_id`? A case about no student (an unidentified hotline caller,
    /// `class_id` none) is for the school's counsellors, crisis team and
    /// leaders (whom its escalation ladder reaches; there is no identity to
    /// hide): head teachers, bound to a class, do not learn that it exists.
    pub fn may_read_case_of(&self, school_id: Uuid, class_id: Option<Uuid>) -> Access {
        if !self.may_read_cases() {
            return Access::Forbidden;
        }
        match class_id {
            Some(class_id) => self.student_scope(school_id, class_id),
            None if school_id != self.school_id => Access::OutOfScope,
            None if self.may_read_unidentified_cases() => Access::Allowed,
            None => Access::OutOfScope,
        }
    }

    /// Cases about no identified student (unidentified hotline callers): the
    /// counsellors, the crisis team and the leaders of the school (a leader
    /// emailed by the ladder must be able to open the case).
    pub fn may_read_unidentified_cases(&self) -> bool {
        matches!(
            self.role,
            Role::Counsellor | Role::CrisisTeam | Role::Leader
        )
    }

    /// Narratives are for the people who work cases, never for leaders or admins.
    pub fn may_read_narratives(&self) -> bool {
        self.disclosure() == Some(Disclosure::Casework)
    }

    /// May this caller do `work` on a case of `school_id`/`class_id` that is
    /// assigned to `assignee`? The crisis team works every case of its school;
    /// a counsellor acknowledges any case, takes an unassigned one, and works
    /// the cases assigned to them. Head teachers and leaders read, never act.
    pub fn may_work_case(
        &self,
        school_id: Uuid,
        class_id: Option<Uuid>,
        assignee: Option<Uuid>,
        work: CaseWork,
    ) -> Access {
        match self.may_read_case_of(school_id, class_id) {
            Access::Allowed => {}
            other => return other,
        }
        let mine = self.staff_id.is_some() && assignee == self.staff_id;
        let allowed = match (self.role, work) {
            (Role::CrisisTeam, _) => true,
            (Role::Counsellor, CaseWork::Acknowledge) => true,
            (Role::Counsellor, CaseWork::Assign { to_self }) => {
                to_self && self.staff_id.is_some() && (assignee.is_none() || mine)
            }
            (Role::Counsellor, CaseWork::Record | CaseWork::ChangeLevel | CaseWork::Close) => mine,
            (Role::Counsellor, CaseWork::Reopen) => mine,
            // Naming who called is for whoever on the case learns it.
            (Role::Counsellor, CaseWork::LinkStudent) => true,
            _ => false,
        };
        if allowed {
            Access::Allowed
        } else {
            Access::Forbidden
        }
    }

    /// May this caller read a student's timeline (心理档案) in full? Leaders
    /// get counts and states only ([`Principal::may_read_timeline_summary`]).
    pub fn may_read_timeline(&self, school_id: Uuid) -> Access {
        if !matches!(self.role, Role::Counsellor | Role::CrisisTeam) {
            return Access::Forbidden;
        }
        if school_id != self.school_id {
            return Access::OutOfScope;
        }
        Access::Allowed
    }

    /// Counts and states of a student's history, without narratives.
    pub fn may_read_timeline_summary(&self, school_id: Uuid) -> Access {
        if self.role == Role::Leader {
            if school_id != self.school_id {
                return Access::OutOfScope;
            }
            return Access::Allowed;
        }
        self.may_read_timeline(school_id)
    }

    /// May this caller import the roster of its school?
    pub fn may_import_roster(&self) -> bool {
        self.role == Role::Admin
    }

    fn student_scope(&self, school_id: Uuid, class_id: Uuid) -> Access {
        if school_id != self.school_id {
            return Access::OutOfScope;
        }
        if self.role.is_class_bound() && self.class_id != Some(class_id) {
            return Access::OutOfScope;
        }
        Access::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, class: Option<Uuid>) -> Principal {
        Principal {
            token_id: Uuid::from_u128(1),
            role,
            school_id: Uuid::from_u128(10),
            class_id: class,
            staff_id: None,
        }
    }

    #[test]
    fn a_teacher_reports_only_on_own_class() {
        let own = Uuid::from_u128(100);
        let other = Uuid::from_u128(101);
        let t = principal(Role::Teacher, Some(own));
        assert_eq!(t.may_report_on(Uuid::from_u128(10), own), Access::Allowed);
        assert_eq!(
            t.may_report_on(Uuid::from_u128(10), other),
            Access::OutOfScope
        );
        assert_eq!(
            t.may_report_on(Uuid::from_u128(11), own),
            Access::OutOfScope
        );
    }

    #[test]
    fn a_counsellor_reaches_every_class_of_own_school_only() {
        let c = principal(Role::Counsellor, None);
        assert_eq!(
            c.may_read_case_of(Uuid::from_u128(10), Some(Uuid::from_u128(5))),
            Access::Allowed
        );
        assert_eq!(
            c.may_read_case_of(Uuid::from_u128(11), Some(Uuid::from_u128(5))),
            Access::OutOfScope
        );
    }

    #[test]
    fn monitors_admins_district_and_services_never_read_cases() {
        for role in [Role::Monitor, Role::Admin, Role::District, Role::Service] {
            let p = principal(role, Some(Uuid::from_u128(5)));
            assert!(!p.may_read_cases(), "{role}");
        }
    }

    #[test]
    fn a_counsellor_works_only_the_cases_assigned_to_them() {
        let me = Uuid::from_u128(7);
        let other = Uuid::from_u128(8);
        let school = Uuid::from_u128(10);
        let class = Some(Uuid::from_u128(5));
        let c = Principal {
            staff_id: Some(me),
            ..principal(Role::Counsellor, None)
        };
        assert_eq!(
            c.may_work_case(school, class, None, CaseWork::Acknowledge),
            Access::Allowed
        );
        assert_eq!(
            c.may_work_case(school, class, None, CaseWork::Assign { to_self: true }),
            Access::Allowed
        );
        assert_eq!(
            c.may_work_case(
                school,
                class,
                Some(other),
                CaseWork::Assign { to_self: true }
            ),
            Access::Forbidden
        );
        assert_eq!(
            c.may_work_case(school, class, Some(me), CaseWork::Record),
            Access::Allowed
        );
        assert_eq!(
            c.may_work_case(school, class, Some(other), CaseWork::Record),
            Access::Forbidden
        );
        assert_eq!(
            c.may_work_case(Uuid::from_u128(11), class, Some(me), CaseWork::Record),
            Access::OutOfScope
        );
    }

    #[test]
    fn teachers_and_leaders_never_act_on_a_case() {
        let school = Uuid::from_u128(10);
        let class = Some(Uuid::from_u128(5));
        let t = principal(Role::Teacher, class);
        let l = principal(Role::Leader, None);
        for p in [t, l] {
            assert_eq!(
                p.may_work_case(school, class, None, CaseWork::Acknowledge),
                Access::Forbidden
            );
        }
        let t = principal(Role::Teacher, Some(Uuid::from_u128(6)));
        assert_eq!(
            t.may_work_case(school, class, None, CaseWork::Acknowledge),
            Access::OutOfScope
        );
    }

    #[test]
    fn leaders_and_admins_never_read_narratives() {
        for role in Role::ALL {
            let p = principal(role, None);
            assert_eq!(
                p.may_read_narratives(),
                matches!(role, Role::Counsellor | Role::CrisisTeam),
                "{role}"
            );
        }
    }

    #[test]
    fn every_case_reader_has_a_disclosure_and_only_case_workers_see_everything() {
        for role in Role::ALL {
            let p = principal(role, role.is_class_bound().then(|| Uuid::from_u128(5)));
            assert_eq!(p.disclosure().is_some(), p.may_read_cases(), "{role}");
            assert_eq!(
                p.disclosure() == Some(Disclosure::Casework),
                matches!(role, Role::Counsellor | Role::CrisisTeam),
                "{role}"
            );
            if p.sees_identity() {
                assert!(p.disclosure().is_some(), "{role}");
            }
        }
        assert!(!principal(Role::Leader, None).sees_identity());
        assert!(principal(Role::Teacher, Some(Uuid::from_u128(5))).sees_identity());
    }

    #[test]
    fn oversight_sees_lifecycle_steps_by_name_and_other_work_only_as_work() {
        for (action, seen) in [
            ("acknowledge", "acknowledge"),
            ("assign", "assign"),
            ("level", "level"),
            ("close", "close"),
            ("merge", "close"),
            ("reopen", "reopen"),
            ("note", "work"),
            ("guardian_contact", "work"),
            ("referral", "work"),
            ("referral_update", "work"),
            ("follow_up", "work"),
            ("follow_up_done", "work"),
            ("link_student", "work"),
            ("merged_in", "work"),
            ("something_new", "work"),
        ] {
            assert_eq!(oversight_action(action), seen, "{action}");
        }
    }

    #[test]
    fn the_role_to_report_is_checked_before_the_student() {
        for role in Role::ALL {
            let p = principal(role, role.is_class_bound().then(|| Uuid::from_u128(5)));
            let may = p.may_submit_reports();
            assert_eq!(
                p.may_report_on(Uuid::from_u128(10), Uuid::from_u128(5)) != Access::Forbidden,
                may,
                "{role}"
            );
        }
    }

    #[test]
    fn a_case_about_no_student_is_for_counsellors_the_crisis_team_and_leaders_only() {
        let school = Uuid::from_u128(10);
        for role in Role::ALL {
            let class = role.is_class_bound().then(|| Uuid::from_u128(5));
            let p = principal(role, class);
            let expected = match role {
                Role::Counsellor | Role::CrisisTeam | Role::Leader => Access::Allowed,
                Role::Teacher => Access::OutOfScope,
                _ => Access::Forbidden,
            };
            assert_eq!(p.may_read_case_of(school, None), expected, "{role}");
            if expected == Access::Allowed {
                assert_eq!(
                    p.may_read_case_of(Uuid::from_u128(11), None),
                    Access::OutOfScope,
                    "{role}: another school's"
                );
            }
        }
        let c = principal(Role::Counsellor, None);
        assert_eq!(
            c.may_work_case(school, None, None, CaseWork::LinkStudent),
            Access::Allowed
        );
        let t = principal(Role::Teacher, Some(Uuid::from_u128(5)));
        assert_eq!(
            t.may_work_case(school, None, None, CaseWork::LinkStudent),
            Access::OutOfScope
        );
    }
}
