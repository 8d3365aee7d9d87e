//! The route × role × scope matrix, in-process (issue #14): every API route of
//! the router, called by every role of a school (head teachers and monitors of
//! the record's class and of another class), a deployment-level admin, no
//! token and a token nobody issued, about a record of the caller's own school
//! and about the same kind of record of another school. Each cell's expected
//! status is in [`MATRIX`], a table to audit against the README's routes
//! table. On top of the table:
//!
//! - another school's record answers exactly like a record that does not
//!   exist (status and body), for every caller;
//! - a record of the own school the caller may not see (another class's, for
//!   a head teacher) answers exactly like one that does not exist too;
//! - every `/v1` route of the router and every path of `/openapi.json` has a
//!   row (a new route without one fails [`every_route_has_a_row`]).
//!
//! Runs on SQLite and, with `SANYU_TEST_PG_URL`, on PostgreSQL.
use std::collections::{BTreeSet, HashMap};

use crate::support::{Answer, App, Sch, Who};
use axum::http::Method;
use sanyu_store::entities::case;
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use sanyu_test_support::TestDb;
use serde_json::{Value, json};
use uuid::Uuid;

/// What a route's path or body names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    /// Nothing of a school.
    Nothing,
    /// A student number in the body: `S1` of class C1; another school's: a
    /// student only that school has.
    StudentNo,
    /// A case just opened (unassigned, `open`).
    OpenCase,
    /// A case acknowledged by counsellor K1, and so assigned to K1.
    AssignedCase,
    /// A case of K1's, closed.
    ClosedCase,
    /// An unidentified hotline caller's case (no student, no class).
    CallerCase,
    /// A student's id (S1, class C1).
    Student,
    /// A watch-list entry of student in class C1.
    Watch,
    /// A pending role grant (asked by the school's admin).
    Grant,
    /// A dead letter of the school.
    DeadLetter,
    /// A screening import of the school, finished.
    Import,
    /// A logged hotline call about nobody, below high.
    Call,
    /// A zero-report key date: one for every school; another school's: one
    /// only for that school. The body names class C1.
    Period,
    /// As `Period`, the school's own report (no class).
    SchoolPeriod,
    /// The SMS receipt route's path secret (not a school's).
    ReceiptSecret,
    /// The SMS reply route's token of a provider (not a school's).
    ReplyToken,
    /// The voice key-press route's token (not a school's).
    KeypressToken,
    /// A school code in an upload (roster rows, a screening file's `school`).
    SchoolCode,
    /// A duty rotation of the school (its crisis lead, nights).
    Rotation,
    /// A duty override of the school (its crisis lead, tomorrow).
    Override,
}

use Target as T;

/// One route: its expected status for each caller (in the order of
/// [`COLUMNS`]) on the own school's record, and on another school's record
/// (`None`: the route names no record of a school; such routes are scoped
/// by the caller's own school alone).
struct Row {
    route: &'static str,
    target: Target,
    own: [u16; 13],
    elsewhere: Option<[u16; 13]>,
    /// Callers to whom a record that does not exist answers otherwise than
    /// another school's (its status for them). Empty for every row but the
    /// deployment admin's, who belongs to no school, and the admin's roster
    /// rows of a school that does not exist.
    missing: &'static [(Who, u16)],
}

/// The callers, in the order of the table's columns.
const COLUMNS: [Who; 13] = Who::ALL;

const fn row(route: &'static str, target: Target, own: [u16; 13], elsewhere: [u16; 13]) -> Row {
    Row {
        route,
        target,
        own,
        elsewhere: Some(elsewhere),
        missing: &[],
    }
}

/// A row whose record that does not exist answers some callers otherwise
/// than another school's.
const fn row_but(
    route: &'static str,
    target: Target,
    own: [u16; 13],
    elsewhere: [u16; 13],
    missing: &'static [(Who, u16)],
) -> Row {
    Row {
        route,
        target,
        own,
        elsewhere: Some(elsewhere),
        missing,
    }
}

const fn unscoped(route: &'static str, target: Target, own: [u16; 13]) -> Row {
    Row {
        route,
        target,
        own,
        elsewhere: None,
        missing: &[],
    }
}

// Columns: no token, bad token, head teacher (the record's class), head
// teacher (another class), monitor (the record's class), counsellor K1 (the
// assignee where a case is assigned), counsellor K2, crisis team, leader,
// district, admin, service, deployment admin.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                                                        none bad  T    T2   M    K1   K2   X    L    D    A    S    dep
    unscoped("GET /healthz",                               T::Nothing,       [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    // In-process no relay or consumer runs: "not ready", whoever asks.
    unscoped("GET /readyz",                                T::Nothing,       [503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503]),
    unscoped("GET /openapi.json",                          T::Nothing,       [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("POST /v1/reports",                                T::StudentNo,     [401, 401, 202, 404, 202, 202, 202, 202, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 404, 404, 404, 404, 403, 403, 403, 403, 403]),
    unscoped("GET /v1/cases",                              T::Nothing,       [401, 401, 200, 200, 403, 200, 200, 200, 200, 403, 403, 403, 403]),
    row("GET /v1/cases/{id}",                              T::OpenCase,      [401, 401, 200, 404, 403, 200, 200, 200, 200, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    // A role that may not work cases is refused before the case is looked
    // up: another school's case and one that does not exist answer alike.
    row("POST /v1/cases/{id}/acknowledge",             T::OpenCase,      [401, 401, 403, 404, 403, 200, 200, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    // The body names K1: K1 takes the unassigned case; K2 may not give it to K1.
    row("POST /v1/cases/{id}/assign",                  T::OpenCase,      [401, 401, 403, 404, 403, 200, 403, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    row("POST /v1/cases/{id}/notes",                   T::AssignedCase,  [401, 401, 403, 404, 403, 200, 403, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    row("POST /v1/cases/{id}/guardian-contacts",       T::AssignedCase,  [401, 401, 403, 404, 403, 200, 403, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    row("POST /v1/cases/{id}/referrals",               T::AssignedCase,  [401, 401, 403, 404, 403, 200, 403, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    row("POST /v1/cases/{id}/follow-ups",              T::AssignedCase,  [401, 401, 403, 404, 403, 200, 403, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    row("POST /v1/cases/{id}/level",                   T::AssignedCase,  [401, 401, 403, 404, 403, 200, 403, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    row("POST /v1/cases/{id}/close",                   T::AssignedCase,  [401, 401, 403, 404, 403, 200, 403, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    row("POST /v1/cases/{id}/reopen",                  T::ClosedCase,    [401, 401, 403, 404, 403, 200, 403, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    // A case about nobody: head teachers, bound to a class, do not learn it exists.
    row("POST /v1/cases/{id}/link-student",            T::CallerCase,    [401, 401, 404, 404, 403, 200, 200, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    unscoped("GET /v1/key-population",                     T::Nothing,       [401, 401, 403, 403, 403, 200, 200, 200, 200, 403, 403, 403, 403]),
    row("POST /v1/key-population/watch/{id}/done",         T::Watch,         [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 403, 403, 403, 403, 403]),
    row("GET /v1/students/{id}/timeline",                  T::Student,       [401, 401, 403, 403, 403, 200, 200, 200, 200, 403, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 404, 403, 403, 403, 403]),
    // Rows of another school are refused row by row (200), as rows of a school that does not exist.
    row_but("POST /v1/roster/students",                    T::SchoolCode,    [401, 401, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403, 403],
                                                                             [401, 401, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403, 403], ADMIN_ROWS_OF_NO_SCHOOL),
    row_but("POST /v1/roster/staff",                       T::SchoolCode,    [401, 401, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403, 403],
                                                                             [401, 401, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403, 403], ADMIN_ROWS_OF_NO_SCHOOL),
    unscoped("GET /v1/roster/role-grants",                 T::Nothing,       [401, 401, 403, 403, 403, 403, 403, 200, 200, 403, 403, 403, 200]),
    // The deployment admin decides only for a school without a leader or crisis team.
    row_but("POST /v1/roster/role-grants/{id}/confirm",    T::Grant,         [401, 401, 403, 403, 403, 403, 403, 200, 200, 403, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 403, 403, 404, 404, 403, 403, 403, 403], DEPLOYMENT_MISSING),
    row_but("POST /v1/roster/role-grants/{id}/refuse",     T::Grant,         [401, 401, 403, 403, 403, 403, 403, 200, 200, 403, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 403, 403, 404, 404, 403, 403, 403, 403], DEPLOYMENT_MISSING),
    unscoped("GET /v1/dead-letters",                       T::Nothing,       [401, 401, 403, 403, 403, 403, 403, 200, 403, 403, 200, 403, 200]),
    // The deployment admin resolves every school's.
    row("POST /v1/dead-letters/{id}/resolve",              T::DeadLetter,    [401, 401, 403, 403, 403, 403, 403, 200, 403, 403, 200, 403, 200],
                                                                             [401, 401, 403, 403, 403, 403, 403, 404, 403, 403, 404, 403, 200]),
    row("POST /v1/screening-imports",                      T::SchoolCode,    [401, 401, 403, 403, 403, 202, 202, 202, 403, 403, 202, 202, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 403, 403, 404, 404, 403]),
    unscoped("GET /v1/screening-imports",                  T::Nothing,       [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 200, 200, 403]),
    row("GET /v1/screening-imports/{id}/bands",            T::Import,        [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 403, 403, 403, 403, 403]),
    row("GET /v1/screening-imports/{id}",                  T::Import,        [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 200, 200, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 403, 403, 404, 404, 403]),
    row("GET /v1/screening-imports/{id}/results",          T::Import,        [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 403, 403, 403, 403, 403]),
    row("GET /v1/screening-imports/{id}/errors",           T::Import,        [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 200, 200, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 403, 403, 404, 404, 403]),
    row("POST /v1/hotline-calls",                          T::StudentNo,     [401, 401, 403, 403, 403, 403, 403, 403, 403, 403, 403, 202, 403],
                                                                             [401, 401, 403, 403, 403, 403, 403, 403, 403, 403, 403, 404, 403]),
    unscoped("POST /v1/hotline-calls/import",              T::Nothing,       [401, 401, 403, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403]),
    unscoped("GET /v1/hotline-calls",                      T::Nothing,       [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 403, 403, 403]),
    row("POST /v1/hotline-calls/{id}/link",                T::Call,          [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 403, 403, 403, 403, 403]),
    row("GET /v1/hotline-calls/{id}",                      T::Call,          [401, 401, 403, 403, 403, 200, 200, 200, 403, 403, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 403, 403, 403, 403, 403]),
    // NOTE: the README says "every staff role"; monitors (心理委员) have no zero-report duty: 403.
    unscoped("GET /v1/zero-report-periods",                T::Nothing,       [401, 401, 200, 200, 403, 200, 200, 200, 200, 200, 200, 403, 403]),
    row("GET /v1/zero-report-periods/{id}/compliance",     T::Period,        [401, 401, 403, 403, 403, 200, 200, 200, 200, 200, 403, 403, 403],
                                                                             [401, 401, 403, 403, 403, 404, 404, 404, 404, 404, 403, 403, 403]),
    // For class C1: its head teacher; a head teacher of another class may not.
    row("POST /v1/zero-reports",                           T::Period,        [401, 401, 201, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 403, 403, 403, 404, 403, 403, 403, 403]),
    // For the school (no class): its leader.
    row("POST /v1/zero-reports",                           T::SchoolPeriod,  [401, 401, 403, 403, 403, 403, 403, 403, 201, 403, 403, 403, 403],
                                                                             [401, 401, 404, 404, 403, 403, 403, 403, 404, 403, 403, 403, 403]),
    // The school's duty roster: its admin, leaders and crisis team change it;
    // its staff (not monitors, district officers or services) read who is on duty.
    unscoped("POST /v1/duty/rotations",                    T::Nothing,       [401, 401, 403, 403, 403, 403, 403, 201, 201, 403, 201, 403, 403]),
    unscoped("POST /v1/duty/overrides",                    T::Nothing,       [401, 401, 403, 403, 403, 403, 403, 201, 201, 403, 201, 403, 403]),
    unscoped("GET /v1/on-call",                            T::Nothing,       [401, 401, 200, 200, 403, 200, 200, 200, 200, 403, 200, 403, 403]),
    unscoped("GET /v1/duty",                               T::Nothing,       [401, 401, 200, 200, 403, 200, 200, 200, 200, 403, 200, 403, 403]),
    row("DELETE /v1/duty/rotations/{id}",                  T::Rotation,      [401, 401, 403, 403, 403, 403, 403, 204, 204, 403, 204, 403, 403],
                                                                             [401, 401, 403, 403, 403, 403, 403, 404, 404, 403, 404, 403, 403]),
    row("DELETE /v1/duty/overrides/{id}",                  T::Override,      [401, 401, 403, 403, 403, 403, 403, 204, 204, 403, 204, 403, 403],
                                                                             [401, 401, 403, 403, 403, 403, 403, 404, 404, 403, 404, 403, 403]),
    // No bearer token: the path secret is the credential (a wrong one: 404 like an unknown route).
    row("POST /v1/sms/receipts/{provider}/{secret}",       T::ReceiptSecret, [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200],
                                                                             [404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404]),
    // No bearer token either: the provider's token in the path (a wrong one: 401).
    row("POST /v1/sms/replies/{provider}/{token}",         T::ReplyToken,    [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200],
                                                                             [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    // The webhook's replies are signed; a bearer token grants nothing.
    unscoped("POST /v1/sms/replies/webhook",               T::Nothing,       [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
    // No bearer token: the key-press callback's token in the path (a wrong one: 401).
    row("POST /v1/voice/keypress/{provider}/{token}",      T::KeypressToken, [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200],
                                                                             [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
];

/// Which record a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The caller's own school's.
    Own,
    /// Another school's.
    OtherSchool,
    /// One that does not exist.
    Missing,
}

/// The deployment admin belongs to no school: another school's grant is
/// like the own school's (refused: the school has a leader), and a grant
/// that does not exist answers 404.
const DEPLOYMENT_MISSING: &[(Who, u16)] = &[(Who::Deployment, 404)];

/// Roster rows of a school that does not exist: the admin's import answers
/// 200 with the rows refused, as for rows of another school.
const ADMIN_ROWS_OF_NO_SCHOOL: &[(Who, u16)] = &[(Who::Admin, 200)];

const RECEIPT_SECRET: &str = "receipt-path-secret-for-tests-0123456789";
const REPLY_TOKEN: &str = "reply-token-for-tests-0123456789";
const KEYPRESS_TOKEN: &str = "keypress-token-for-tests-0123456789";
/// A key date of every school, and one of SCH2 only.
const PERIOD: &str = "midterm";
const PERIOD_OF_B: &str = "sch2-sports-day";
/// A student only SCH2 has.
const ONLY_B: &str = "ONLYB";

/// Prepares the records the rows name, and runs the rows.
struct Matrix<'a> {
    app: &'a App,
    /// Records ready for the next request, by kind and school.
    ready: HashMap<(Target, Sch), String>,
    /// The next fresh student (`B00000`…) per school.
    next_student: HashMap<Sch, usize>,
    counter: usize,
    /// Every record prepared, by school: (kind, id).
    created: Vec<(Sch, Target, Uuid)>,
}

impl<'a> Matrix<'a> {
    fn new(app: &'a App) -> Self {
        Self {
            app,
            ready: HashMap::new(),
            next_student: HashMap::new(),
            counter: 0,
            created: Vec::new(),
        }
    }

    fn fresh_student(&mut self, sch: Sch) -> String {
        let n = self.next_student.entry(sch).or_insert(0);
        let no = format!("B{:05}", *n);
        *n += 1;
        no
    }

    fn unique(&mut self) -> usize {
        self.counter += 1;
        self.counter
    }

    /// The id (or key) of a record of `target` at `sch`, prepared on first use.
    async fn record(&mut self, target: Target, sch: Sch) -> String {
        if let Some(id) = self.ready.get(&(target, sch)) {
            return id.clone();
        }
        let id = self.prepare(target, sch).await;
        if let Ok(uuid) = id.parse::<Uuid>() {
            self.created.push((sch, target, uuid));
        }
        self.ready.insert((target, sch), id.clone());
        id
    }

    /// The lists (routes that name no record) keep to the caller's scope:
    /// nothing of school A reaches any caller of school B, and no case of
    /// class C1 (or of nobody) reaches the head teacher of class C2.
    async fn lists_keep_to_scope(&self) -> Vec<String> {
        let mut wrong = Vec::new();
        // The check sees what it looks for: the own school's crisis team
        // lists SCH1's open cases.
        let own = self
            .app
            .as_(Who::CrisisTeam, Sch::A)
            .get("/v1/cases")
            .await
            .text();
        if !self
            .created
            .iter()
            .any(|(s, k, id)| *s == Sch::A && *k == T::OpenCase && own.contains(&id.to_string()))
        {
            wrong.push("GET /v1/cases as SCH1's crisis team lists none of its cases".into());
        }
        let calls = self
            .app
            .as_(Who::CrisisTeam, Sch::A)
            .get("/v1/hotline-calls")
            .await
            .text();
        if !self
            .created
            .iter()
            .any(|(s, k, id)| *s == Sch::A && *k == T::Call && calls.contains(&id.to_string()))
        {
            wrong
                .push("GET /v1/hotline-calls as SCH1's crisis team lists none of its calls".into());
        }
        let lists = MATRIX
            .iter()
            .filter(|r| r.elsewhere.is_none() && r.route.starts_with("GET /v1/"));
        for row in lists {
            let (_, path) = row.route.split_once(' ').expect("METHOD /path");
            for who in COLUMNS {
                if matches!(who, Who::Nobody | Who::BadToken | Who::Deployment) {
                    continue;
                }
                let r = self.app.as_(who, Sch::B).get(path).await;
                let body = r.text();
                for (_, kind, id) in self.created.iter().filter(|(s, _, _)| *s == Sch::A) {
                    if body.contains(&id.to_string()) {
                        wrong.push(format!(
                            "{} as {who:?} of SCH2 lists SCH1's {kind:?} {id}",
                            row.route
                        ));
                    }
                }
            }
            let r = self.app.as_(Who::TeacherOtherClass, Sch::A).get(path).await;
            let body = r.text();
            let cases = [T::OpenCase, T::AssignedCase, T::ClosedCase, T::CallerCase];
            for (_, kind, id) in self
                .created
                .iter()
                .filter(|(s, k, _)| *s == Sch::A && cases.contains(k))
            {
                if body.contains(&id.to_string()) {
                    wrong.push(format!(
                        "{} as the head teacher of C2 lists the {kind:?} {id} of class C1",
                        row.route
                    ));
                }
            }
        }
        wrong
    }

    async fn prepare(&mut self, target: Target, sch: Sch) -> String {
        let app = self.app;
        match target {
            T::Nothing => String::new(),
            T::StudentNo => match sch {
                Sch::A => "S1".into(),
                Sch::B => ONLY_B.into(),
            },
            T::OpenCase => {
                let no = self.fresh_student(sch);
                app.open_case(sch, &no, "high").await.to_string()
            }
            T::AssignedCase => {
                let no = self.fresh_student(sch);
                let case = app.open_case(sch, &no, "high").await;
                let r = app
                    .as_(Who::Counsellor, sch)
                    .post(&format!("/v1/cases/{case}/acknowledge"), json!({}))
                    .await;
                assert_eq!(r.status(), 200, "{}", r.text());
                case.to_string()
            }
            T::ClosedCase => {
                let case = Box::pin(self.prepare(T::AssignedCase, sch)).await;
                let r = app
                    .as_(Who::Counsellor, sch)
                    .post(
                        &format!("/v1/cases/{case}/close"),
                        json!({"outcome": "resolved"}),
                    )
                    .await;
                assert_eq!(r.status(), 200, "{}", r.text());
                case
            }
            T::CallerCase => {
                let call_id = format!("caller-{}", self.unique());
                let r = app
                    .as_(Who::Service, sch)
                    .post("/v1/hotline-calls", call(&call_id, None, "high"))
                    .await;
                assert_eq!(r.status(), 202, "{}", r.text());
                app.decide_intake().await;
                let school = sanyu_store::roster::school_by_code(&app.db, sch.code())
                    .await
                    .expect("school")
                    .expect("school row");
                case::Entity::find()
                    .filter(case::Column::SchoolId.eq(school.id))
                    .filter(case::Column::StudentId.is_null())
                    .filter(case::Column::Status.ne(sanyu_domain::CaseStatus::Closed))
                    .order_by_desc(case::Column::OpenedAt)
                    .one(&app.db)
                    .await
                    .expect("cases")
                    .expect("an unidentified caller's case")
                    .id
                    .to_string()
            }
            T::Student => app.student_id(sch, "S1").await.to_string(),
            T::Watch => {
                let no = self.fresh_student(sch);
                let s = app.student(sch, &no).await;
                sanyu_store::decisions::watch(
                    &app.db,
                    None,
                    sanyu_store::decisions::NewWatch {
                        student_id: s.id,
                        school_id: s.school_id,
                        class_id: s.class_id,
                        since: chrono::Utc::now(),
                        follow_up_on: chrono::Utc::now().date_naive(),
                        signal_id: format!("hotline:watch:{no}"),
                        rule_id: "watch.mild".into(),
                        rules_version: "test".into(),
                    },
                )
                .await
                .expect("watch")
                .expect("a new entry")
                .id
                .to_string()
            }
            T::Grant => {
                let n = self.unique();
                let csv = format!(
                    "school_code,staff_no,name,role,class_code,phone,email\n\
                     {},G{n},Grantee {n},counsellor,,,\n",
                    sch.code()
                );
                let r = app
                    .as_(Who::Admin, sch)
                    .post_bytes("/v1/roster/staff", "text/csv", csv.into_bytes())
                    .await;
                assert_eq!(r.status(), 200, "{}", r.text());
                r.json()["pending_role_grants"][0]["grant_id"]
                    .as_str()
                    .expect("a pending grant")
                    .to_owned()
            }
            T::DeadLetter => {
                let n = self.unique();
                let school = sanyu_store::roster::school_by_code(&app.db, sch.code())
                    .await
                    .expect("school")
                    .expect("school row");
                let source_key = format!("INTAKE:rules:{n}");
                sanyu_store::dead_letters::record(
                    &app.db,
                    sanyu_store::dead_letters::NewDeadLetter {
                        source_key: source_key.clone(),
                        stream: "INTAKE".into(),
                        consumer: "rules".into(),
                        stream_seq: Some(n as i64),
                        subject: None,
                        event_id: Some(format!("report:{n}")),
                        reason: "unknown student".into(),
                        deliveries: Some(1),
                        school_id: Some(school.id),
                    },
                )
                .await
                .expect("dead letter");
                use sanyu_store::entities::dead_letter;
                dead_letter::Entity::find()
                    .filter(dead_letter::Column::SourceKey.eq(source_key))
                    .one(&app.db)
                    .await
                    .expect("dead letters")
                    .expect("the dead letter")
                    .id
                    .to_string()
            }
            T::Import => {
                let (content_type, body) = screening_upload(sch.code());
                let r = app
                    .as_(Who::Counsellor, sch)
                    .post_bytes("/v1/screening-imports", &content_type, body)
                    .await;
                assert_eq!(r.status(), 202, "{}", r.text());
                let id = r.json()["import_id"]
                    .as_str()
                    .expect("import id")
                    .to_owned();
                let path = format!("/v1/screening-imports/{id}");
                sanyu_test_support::eventually(
                    std::time::Duration::from_secs(30),
                    "import done",
                    || async {
                        let v = app.as_(Who::Counsellor, sch).get(&path).await.json();
                        (v["state"] == "done").then_some(())
                    },
                )
                .await;
                id
            }
            T::Call => {
                let call_id = format!("call-{}", self.unique());
                let r = app
                    .as_(Who::Service, sch)
                    .post("/v1/hotline-calls", call(&call_id, None, "elevated"))
                    .await;
                assert_eq!(r.status(), 202, "{}", r.text());
                r.json()["id"].as_str().expect("call id").to_owned()
            }
            T::Period | T::SchoolPeriod => match sch {
                Sch::A => PERIOD.into(),
                Sch::B => PERIOD_OF_B.into(),
            },
            T::SchoolCode => sch.code().into(),
            T::Rotation | T::Override => {
                let school = sanyu_store::roster::school_by_code(&app.db, sch.code())
                    .await
                    .expect("school")
                    .expect("school row");
                let x1 = app.staff_id(sch, "X1").await;
                let id = Uuid::now_v7();
                let now = chrono::Utc::now();
                if target == T::Rotation {
                    let hm = |h| chrono::NaiveTime::from_hms_opt(h, 0, 0).expect("time");
                    let r = sanyu_domain::duty::Rotation {
                        id,
                        name: "夜间值班".into(),
                        role: sanyu_domain::Role::CrisisTeam,
                        cadence: sanyu_domain::duty::Cadence::Daily,
                        handover: hm(8),
                        start_date: now.date_naive(),
                        members: vec![x1],
                        shift: Some(sanyu_domain::duty::Shift {
                            start: hm(22),
                            end: hm(7),
                        }),
                        days: sanyu_domain::duty::Days::Every,
                        kinds: Vec::new(),
                    };
                    sanyu_store::duty::create_rotation(&app.db, school.id, &r, now)
                        .await
                        .expect("rotation");
                } else {
                    let o = sanyu_domain::duty::Override {
                        id,
                        role: sanyu_domain::Role::CrisisTeam,
                        staff_id: x1,
                        from: now + chrono::Duration::days(1),
                        to: now + chrono::Duration::days(2),
                    };
                    sanyu_store::duty::create_override(&app.db, school.id, &o, now)
                        .await
                        .expect("override");
                }
                id.to_string()
            }
            T::ReceiptSecret => match sch {
                Sch::A => RECEIPT_SECRET.into(),
                Sch::B => "guessed".into(),
            },
            T::ReplyToken => match sch {
                Sch::A => REPLY_TOKEN.into(),
                Sch::B => "guessed".into(),
            },
            T::KeypressToken => match sch {
                Sch::A => KEYPRESS_TOKEN.into(),
                Sch::B => "guessed".into(),
            },
        }
    }

    /// The request of `row` by `who` about a record in `scope`.
    async fn call(&mut self, row: &Row, who: Who, scope: Scope) -> Answer {
        let app = self.app;
        let (method, template) = row.route.split_once(' ').expect("METHOD /path");
        let record = match scope {
            Scope::Own => self.record(row.target, Sch::A).await,
            Scope::OtherSchool => self.record(row.target, Sch::B).await,
            Scope::Missing => match row.target {
                T::StudentNo => "NOSUCH".into(),
                T::Period | T::SchoolPeriod => "no-such-period".into(),
                T::ReceiptSecret | T::ReplyToken | T::KeypressToken => "guessed".into(),
                T::SchoolCode => "NOSUCH".into(),
                _ => Uuid::now_v7().to_string(),
            },
        };
        // Alibaba Cloud's SMS replies; Tencent Cloud's key presses (the one
        // provider that reports them).
        let provider = if template.starts_with("/v1/voice/") {
            "tencent"
        } else {
            "aliyun"
        };
        let path = template
            .replace("{id}", &record)
            .replace("{provider}", provider)
            .replace("{secret}", &record)
            .replace("{token}", &record);
        let client = app.as_(who, Sch::A);
        if method == "GET" {
            return client.get(&path).await;
        }
        let n = self.unique();
        let k1 = app.staff_id(Sch::A, "K1").await;
        let (content_type, body): (String, Vec<u8>) = match template {
            "/v1/reports" => json_body(crate::support::report_body(&record, "high")),
            "/v1/cases/{id}/acknowledge" => json_body(json!({})),
            "/v1/cases/{id}/assign" => json_body(json!({"staff_id": k1})),
            "/v1/cases/{id}/notes" => json_body(json!({"text": "called the family"})),
            "/v1/cases/{id}/guardian-contacts" => {
                json_body(json!({"contacted": false, "reason": "no answer yet"}))
            }
            "/v1/cases/{id}/referrals" => json_body(json!({
                "institution": "City Mental Health Centre",
                "referred_on": chrono::Utc::now().date_naive().to_string(),
            })),
            "/v1/cases/{id}/follow-ups" => json_body(json!({
                "due_at": (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339(),
            })),
            "/v1/cases/{id}/level" => {
                json_body(json!({"level": "critical", "reason": "worse today"}))
            }
            "/v1/cases/{id}/close" => json_body(json!({"outcome": "resolved"})),
            "/v1/cases/{id}/reopen" => json_body(json!({"reason": "new signs"})),
            "/v1/cases/{id}/link-student" | "/v1/hotline-calls/{id}/link" => {
                json_body(json!({"student_no": self.fresh_student(Sch::A)}))
            }
            "/v1/key-population/watch/{id}/done"
            | "/v1/roster/role-grants/{id}/confirm"
            | "/v1/roster/role-grants/{id}/refuse"
            | "/v1/dead-letters/{id}/resolve" => json_body(json!({})),
            "/v1/roster/students" => (
                "text/csv".into(),
                format!(
                    "school_code,grade_code,class_code,student_no,student_name\n\
                     {record},G1,C1,N{n},New Student {n}\n"
                )
                .into_bytes(),
            ),
            "/v1/roster/staff" => (
                "text/csv".into(),
                format!(
                    "school_code,staff_no,name,role,class_code,phone,email\n\
                     {record},N{n},New Teacher {n},teacher,C1,,\n"
                )
                .into_bytes(),
            ),
            "/v1/screening-imports" => screening_upload(&record),
            "/v1/hotline-calls" => json_body(call(&format!("log-{n}"), Some(&record), "high")),
            "/v1/hotline-calls/import" => (
                "text/csv".into(),
                format!(
                    "call_id,started_at,ended_at,caller_type,student_no,cssrs,rating,summary,counsellor,referral_advice\n\
                     csv-{n},{},,anonymous,,,elevated,a call,duty counsellor,\n",
                    chrono::Utc::now().to_rfc3339()
                )
                .into_bytes(),
            ),
            "/v1/zero-reports" if row.target == T::SchoolPeriod => {
                json_body(json!({"period_id": record, "zero": true}))
            }
            "/v1/zero-reports" => {
                json_body(json!({"period_id": record, "class_code": "C1", "zero": true}))
            }
            "/v1/sms/receipts/{provider}/{secret}" => json_body(json!([{
                "phone_number": "13900000003",
                "send_time": "2026-11-29 12:00:00",
                "report_time": "2026-11-29 12:00:05",
                "success": true,
                "err_code": "DELIVERED",
                "err_msg": "用户接收成功",
                "sms_size": "1",
                "biz_id": format!("biz-{n}"),
                "out_id": format!("nobody:{n}"),
            }])),
            "/v1/duty/rotations" => json_body(json!({
                "name": "夜间值班",
                "role": "crisis_team",
                "cadence": "daily",
                "handover": "08:00",
                "start_date": chrono::Utc::now().date_naive().to_string(),
                "members": [app.staff_id(Sch::A, "X1").await],
                "shift": {"start": "22:00", "end": "07:00"},
            })),
            "/v1/duty/overrides" => json_body(json!({
                "role": "crisis_team",
                "staff_id": app.staff_id(Sch::A, "X1").await,
                "from": chrono::Utc::now().to_rfc3339(),
                "to": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339(),
            })),
            "/v1/duty/rotations/{id}" | "/v1/duty/overrides/{id}" => json_body(json!({})),
            // A reply from a number not on the roster: changes nothing.
            "/v1/sms/replies/{provider}/{token}" => json_body(json!([{
                "phone_number": "13811112222",
                "send_time": "2026-11-29 12:00:00",
                "content": "1",
                "sign_name": "x",
                "dest_code": "1",
                "sequence_id": n,
            }])),
            "/v1/sms/replies/webhook" => json_body(json!({"id": n.to_string(), "from": "13811112222", "text": "1"})),
            // A key pressed during a call Sanyu did not place: changes nothing.
            "/v1/voice/keypress/{provider}/{token}" => json_body(json!({"voicekey_callback": {
                "call_from": "", "callid": format!("no-such-call-{n}"), "keypress": "1",
                "mobile": "13811112222", "nationcode": "86",
            }})),
            other => panic!("no request body for {method} {other}: add one"),
        };
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        client
            .send(method, &path, &[("content-type", &content_type)], body)
            .await
    }

    /// Run every row; the cells that differ from the table, as lines.
    async fn run(&mut self) -> Vec<String> {
        let mut wrong = Vec::new();
        for row in MATRIX {
            for (column, who) in COLUMNS.into_iter().enumerate() {
                let missing = self.call(row, who, Scope::Missing).await;
                let own = self.call(row, who, Scope::Own).await;
                let expected = row.own[column];
                if own.status() != expected {
                    wrong.push(format!(
                        "{} as {who:?} (own school): {} expected {expected}: {}",
                        row.route,
                        own.status(),
                        own.text()
                    ));
                }
                if own.status.is_success() && !row.route.starts_with("GET") {
                    // The record changed: the next caller gets a fresh one.
                    self.ready.remove(&(row.target, Sch::A));
                }
                // A record the caller may not see answers like none at all.
                if expected == 404 && row.elsewhere.is_some() && own.json() != missing.json() {
                    wrong.push(format!(
                        "{} as {who:?}: the own school's hidden record answers {} but a missing one {}",
                        row.route,
                        own.text(),
                        missing.text()
                    ));
                }
                let Some(elsewhere) = row.elsewhere else {
                    continue;
                };
                let other = self.call(row, who, Scope::OtherSchool).await;
                let expected = elsewhere[column];
                if other.status() != expected {
                    wrong.push(format!(
                        "{} as {who:?} (another school's record): {} expected {expected}: {}",
                        row.route,
                        other.status(),
                        other.text()
                    ));
                }
                if other.status.is_success() && !row.route.starts_with("GET") {
                    self.ready.remove(&(row.target, Sch::B));
                }
                // Another school's record answers exactly like one that does
                // not exist (a deployment admin, of no school, may see it).
                let expected_missing = match row.missing.iter().find(|(w, _)| *w == who) {
                    Some((_, status)) => *status,
                    None if (200..300).contains(&expected) => 404,
                    None => expected,
                };
                if missing.status() != expected_missing {
                    wrong.push(format!(
                        "{} as {who:?} (a record that does not exist): {} expected {expected_missing}: {}",
                        row.route,
                        missing.status(),
                        missing.text()
                    ));
                }
                if other.status == missing.status && other.json() != missing.json() {
                    wrong.push(format!(
                        "{} as {who:?}: another school's record answers {} but a missing one {}",
                        row.route,
                        other.text(),
                        missing.text()
                    ));
                }
            }
        }
        wrong
    }
}

fn json_body(v: Value) -> (String, Vec<u8>) {
    ("application/json".into(), v.to_string().into_bytes())
}

fn call(call_id: &str, student_no: Option<&str>, rating: &str) -> Value {
    json!({
        "call_id": call_id,
        "started_at": chrono::Utc::now().to_rfc3339(),
        "caller_type": if student_no.is_some() { "student" } else { "anonymous" },
        "student_no": student_no,
        "rating": rating,
        "summary": "confidential summary",
        "counsellor": "duty counsellor",
        "referral_advice": "see the school counsellor",
    })
}

/// A small PHQ-9 export of school `sch`.
fn screening_upload(school: &str) -> (String, Vec<u8>) {
    crate::support::multipart(
        &[
            ("school", school),
            ("instrument", "PHQ-9"),
            ("coding", "0-3"),
            ("administered", &chrono::Utc::now().date_naive().to_string()),
        ],
        "phq9.csv",
        "学号,姓名,题1,题2,题3,题4,题5,题6,题7,题8,题9\nS2,李四,0,0,0,0,0,0,0,0,0\n".as_bytes(),
    )
}

/// The app of the matrix: receipts accepted on [`RECEIPT_SECRET`], a key date
/// open now for every school and one for SCH2 only, and a student only SCH2 has.
async fn matrix_app(db: TestDb) -> App {
    let now = chrono::Utc::now();
    let t = |d: chrono::Duration| (now + d).to_rfc3339();
    let calendar: sanyu_domain::zero_report::Calendar = serde_json::from_value(json!({
        "periods": [
            {"id": PERIOD, "name": "期中考试", "kind": "midterm_exam",
             "opens_at": t(-chrono::Duration::hours(1)), "deadline": t(chrono::Duration::hours(3)),
             "levels": ["class", "school"]},
            {"id": PERIOD_OF_B, "name": "运动会", "kind": "other", "school": "SCH2",
             "opens_at": t(-chrono::Duration::hours(1)), "deadline": t(chrono::Duration::hours(3)),
             "levels": ["class", "school"]},
        ]
    }))
    .expect("calendar");
    let app = App::start_with(db, |config| {
        config.sms.receipt_path_secret =
            sanyu_platform::config::Secret::new(RECEIPT_SECRET.to_owned());
        config.zero_report.periods = calendar.periods;
        config.sms.reply_tokens.aliyun =
            sanyu_platform::config::Secret::new(REPLY_TOKEN.to_owned());
        config.voice.keypress_token =
            sanyu_platform::config::Secret::new(KEYPRESS_TOKEN.to_owned());
    })
    .await;
    app.add_numbered_students(Sch::A, 200).await;
    app.add_numbered_students(Sch::B, 200).await;
    app.add_students(
        Sch::B,
        &format!("school_code,grade_code,class_code,student_no,student_name\nSCH2,G1,C1,{ONLY_B},Only B\n"),
    )
    .await;
    app
}

async fn the_matrix_holds(db: TestDb) {
    let app = matrix_app(db).await;
    let started = std::time::Instant::now();
    let mut matrix = Matrix::new(&app);
    let mut wrong = matrix.run().await;
    assert!(
        matrix
            .created
            .iter()
            .filter(|(s, _, _)| *s == Sch::A)
            .count()
            > 20,
        "the matrix prepared records of SCH1"
    );
    wrong.extend(matrix.lists_keep_to_scope().await);
    eprintln!(
        "matrix on {:?}: {} rows × {} callers in {:?}",
        app.backend,
        MATRIX.len(),
        COLUMNS.len(),
        started.elapsed()
    );
    assert!(
        wrong.is_empty(),
        "{} cells differ from the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_matrix_holds_on_sqlite() {
    the_matrix_holds(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_matrix_holds_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        the_matrix_holds(db).await;
    }
}

/// Every route of the router under `/v1` (read from its source) and every
/// path and method of `/openapi.json` has a row, and every row is a route.
#[test]
fn every_route_has_a_row() {
    let rows: BTreeSet<String> = MATRIX.iter().map(|r| r.route.to_owned()).collect();
    let mut missing = Vec::new();
    let doc = sanyu_gateway::openapi::document();
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let route = format!("{} {path}", method.to_uppercase());
            if !rows.contains(&route) {
                missing.push(format!("{route} (in /openapi.json)"));
            }
            documented.insert(route);
        }
    }
    // Every path literal of the router's source: a route added to `router()`
    // but left out of the OpenAPI document is caught here.
    let source = include_str!("../../src/lib.rs");
    let router_paths: BTreeSet<&str> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("/v1/") || ["/healthz", "/readyz", "/openapi.json"].contains(s))
        .collect();
    for path in &router_paths {
        if !rows
            .iter()
            .any(|r| r.split_once(' ').is_some_and(|(_, p)| p == *path))
        {
            missing.push(format!("{path} (in router())"));
        }
    }
    for row in &rows {
        let (_, path) = row.split_once(' ').expect("METHOD /path");
        if !documented.contains(row) && !router_paths.contains(path) {
            missing.push(format!("{row}: a row for no route"));
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a row in MATRIX:\n{}",
        missing.join("\n")
    );
}
