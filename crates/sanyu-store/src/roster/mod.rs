//! Roster import from CSV: schools, grades, classes, students and guardians;
//! staff with roles and contacts. Re-importing the same file changes nothing;
//! a bad row gets a line-numbered error and the other rows still import.
//!
//! Students file header (guardian columns may be empty; one row per guardian):
//! `school_code,school_name,grade_code,grade_name,class_code,class_name,student_no,student_name,gender,guardian_name,guardian_relation,guardian_phone,guardian_email`
//!
//! Staff file header:
//! `school_code,staff_no,name,role,class_code,phone,email`
//!
//! Through the API ([`ImportScope::School`]) a staff row that would give
//! somebody a role that reads cases (counsellor, crisis team, leader,
//! district) which they do not hold yet creates a pending role grant instead
//! (`crate::role_grants`); the rest of the row imports. A new person waits
//! inactive. Taking such a role away takes effect at once. The operator's
//! CLI ([`ImportScope::Operator`], which also creates schools) is how a
//! school's first staff are set up: its roles take effect at once.

use std::collections::HashMap;
use std::io::Read;

use sanyu_domain::Role;
use sanyu_domain::input;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use uuid::Uuid;

use crate::entities::{class, guardian, school, staff, student};
use crate::{Result, StoreError};

mod staff_file;
mod students_file;

pub use staff_file::import_staff;
pub use students_file::import_students;

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub field: Option<String>,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub errors: Vec<RowError>,
    /// Roles that read cases which wait for a second person of the school
    /// to confirm them (API imports only).
    pub pending_role_grants: Vec<PendingGrant>,
    /// Roles that read cases which the operator's import gave at once (the
    /// CLI records them as confirmed grants, audits and announces them).
    #[serde(skip)]
    pub operator_role_grants: Vec<OperatorGrant>,
}

/// A role that reads cases the operator's import gave at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorGrant {
    pub line: u64,
    pub staff_id: Uuid,
    pub school_id: Uuid,
    pub role: Role,
}

/// What a staff row did about a role that reads cases.
enum RowGrant {
    None,
    /// Asked for through the API: waits for a second person.
    Pending(crate::entities::role_grant::Model),
    /// Given by the operator's import: in effect.
    Operator {
        staff_id: Uuid,
        school_id: Uuid,
        role: Role,
    },
}

/// A role grant a staff row asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingGrant {
    pub line: u64,
    pub grant_id: Uuid,
    pub staff_id: Uuid,
    pub role: String,
}

/// Limits an import to one school (an admin token's scope).
#[derive(Debug, Clone, Copy)]
pub enum ImportScope<'a> {
    /// The operator's CLI: every school, and new schools may be created.
    Operator,
    /// An API caller: only rows of this school code; roles that read cases
    /// wait for confirmation (role grants asked for by `by`).
    School {
        code: &'a str,
        by: crate::role_grants::Actor,
    },
}

impl ImportScope<'_> {
    fn check(&self, school_code: &str) -> Option<String> {
        match self {
            ImportScope::Operator => None,
            ImportScope::School { code, .. } if *code == school_code => None,
            ImportScope::School { .. } => {
                Some("row belongs to another school than your token's".into())
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    line: u64,
    fields: HashMap<String, String>,
}

impl Row {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> std::result::Result<String, RowError> {
        self.get(name).map(str::to_owned).ok_or_else(|| RowError {
            line: self.line,
            field: Some(name.to_owned()),
            message: format!("`{name}` is required"),
        })
    }

    fn error(&self, field: &str, message: impl Into<String>) -> RowError {
        RowError {
            line: self.line,
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

fn read_rows(
    input: impl Read,
    required_headers: &[&str],
    summary: &mut ImportSummary,
) -> std::result::Result<Vec<Row>, RowError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| RowError {
            line: 1,
            field: None,
            message: format!("unreadable header: {e}"),
        })?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_owned())
        .collect();
    for required in required_headers {
        if !headers.iter().any(|h| h == required) {
            return Err(RowError {
                line: 1,
                field: Some((*required).to_owned()),
                message: format!("missing column `{required}`"),
            });
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        summary.rows += 1;
        match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                // The input rules before anything is written: a bad field
                // rejects its row (with the line and the column).
                if let Some(e) = headers
                    .iter()
                    .zip(record.iter())
                    .find_map(|(h, v)| check_field(h, v.trim()).err())
                {
                    summary.errors.push(RowError {
                        line,
                        field: Some(e.0),
                        message: e.1,
                    });
                    continue;
                }
                let fields = headers
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_owned))
                    .collect();
                rows.push(Row { line, fields });
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                summary.errors.push(RowError {
                    line,
                    field: None,
                    message: format!("unreadable row: {e}"),
                });
            }
        }
    }
    Ok(rows)
}

/// One field of a roster file: one line, no control characters, at most the
/// column's length (codes, names, the rest).
fn check_field(column: &str, value: &str) -> std::result::Result<(), (String, String)> {
    if column == "school_code" {
        // Empty is reported as `required` by the row.
        return match value {
            "" => Ok(()),
            code => input::school_code(code).map_err(|e| (column.to_owned(), e.to_string())),
        };
    }
    let max = match column {
        "school_code" | "district_code" | "grade_code" | "class_code" | "student_no"
        | "staff_no" | "role" | "gender" => input::MAX_CODE,
        "school_name" | "grade_name" | "class_name" | "student_name" | "guardian_name"
        | "guardian_relation" | "name" => input::MAX_NAME,
        _ => input::MAX_LINE,
    };
    input::line(value, max).map_err(|e| (column.to_owned(), e.to_string()))
}

fn check_phone(row: &Row, field: &str) -> std::result::Result<Option<String>, RowError> {
    let Some(value) = row.get(field) else {
        return Ok(None);
    };
    let digits = value.strip_prefix('+').unwrap_or(value);
    if digits.len() < 5
        || digits.len() > 20
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '-')
    {
        return Err(row.error(field, "not a phone number"));
    }
    Ok(Some(value.to_owned()))
}

fn check_email(row: &Row, field: &str) -> std::result::Result<Option<String>, RowError> {
    let Some(value) = row.get(field) else {
        return Ok(None);
    };
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !value.contains(' ') =>
        {
            Ok(Some(value.to_owned()))
        }
        _ => Err(row.error(field, "not an email address")),
    }
}

enum Change {
    Created,
    Updated,
    Unchanged,
}

impl ImportSummary {
    fn count(&mut self, change: Change) {
        match change {
            Change::Created => self.created += 1,
            Change::Updated => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }
}

enum RowOutcome {
    Rejected(RowError),
    Store(StoreError),
}

impl From<RowError> for RowOutcome {
    fn from(e: RowError) -> Self {
        RowOutcome::Rejected(e)
    }
}

impl From<StoreError> for RowOutcome {
    fn from(e: StoreError) -> Self {
        RowOutcome::Store(e)
    }
}

impl From<sea_orm::DbErr> for RowOutcome {
    fn from(e: sea_orm::DbErr) -> Self {
        RowOutcome::Store(StoreError::Db(e))
    }
}

/// Find a school by id.
pub async fn school_by_id(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<school::Model>> {
    Ok(school::Entity::find_by_id(id).one(conn).await?)
}

/// The schools of `ids`, in no order. No ids, no query.
pub async fn schools_by_ids(
    conn: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> Result<Vec<school::Model>> {
    crate::db::find_in(conn, school::Entity::find(), school::Column::Id, ids).await
}

/// The schools of `codes`, in no order. No codes, no query.
pub async fn schools_by_codes(
    conn: &impl ConnectionTrait,
    codes: Vec<String>,
) -> Result<Vec<school::Model>> {
    crate::db::find_in(conn, school::Entity::find(), school::Column::Code, codes).await
}

/// Every school, in code order.
pub async fn schools(conn: &impl ConnectionTrait) -> Result<Vec<school::Model>> {
    Ok(school::Entity::find()
        .order_by_asc(school::Column::Code)
        .all(conn)
        .await?)
}

/// The schools of a district, in code order.
pub async fn schools_of_district(
    conn: &impl ConnectionTrait,
    district_code: &str,
) -> Result<Vec<school::Model>> {
    Ok(school::Entity::find()
        .filter(school::Column::DistrictCode.eq(district_code))
        .order_by_asc(school::Column::Code)
        .all(conn)
        .await?)
}

/// Find a staff member by id (active or not).
pub async fn staff_by_id(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<staff::Model>> {
    Ok(staff::Entity::find_by_id(id).one(conn).await?)
}

/// The active staff member `id` of `school_id`, if they are one.
pub async fn active_staff_of_school(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    id: Uuid,
) -> Result<Option<staff::Model>> {
    Ok(staff::Entity::find_by_id(id)
        .filter(staff::Column::SchoolId.eq(school_id))
        .filter(staff::Column::Active.eq(true))
        .one(conn)
        .await?)
}

/// Find a student by id (active or not).
pub async fn student_by_id(
    conn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<student::Model>> {
    Ok(student::Entity::find_by_id(id).one(conn).await?)
}

/// The students of `ids` (active or not), in no order. No ids, no query.
pub async fn students_by_ids(
    conn: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> Result<Vec<student::Model>> {
    crate::db::find_in(conn, student::Entity::find(), student::Column::Id, ids).await
}

/// Find a class by id.
pub async fn class_by_id(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<class::Model>> {
    Ok(class::Entity::find_by_id(id).one(conn).await?)
}

/// The classes of `ids`, in no order. No ids, no query.
pub async fn classes_by_ids(
    conn: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> Result<Vec<class::Model>> {
    crate::db::find_in(conn, class::Entity::find(), class::Column::Id, ids).await
}

/// The staff members of `ids` who belong to `school_id` (active or not), in
/// no order. No ids, no query.
pub async fn staff_of_school_by_ids(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    ids: Vec<Uuid>,
) -> Result<Vec<staff::Model>> {
    crate::db::find_in(
        conn,
        staff::Entity::find().filter(staff::Column::SchoolId.eq(school_id)),
        staff::Column::Id,
        ids,
    )
    .await
}

/// Those a case may be assigned to: the active counsellors and crisis-team
/// members of a school, by name.
pub async fn assignable_staff(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
) -> Result<Vec<staff::Model>> {
    Ok(staff::Entity::find()
        .filter(staff::Column::SchoolId.eq(school_id))
        .filter(staff::Column::Active.eq(true))
        .filter(staff::Column::Role.is_in([Role::Counsellor.as_str(), Role::CrisisTeam.as_str()]))
        .order_by_asc(staff::Column::Name)
        .all(conn)
        .await?)
}

/// The guardians of a student, by name.
pub async fn guardians_of_student(
    conn: &impl ConnectionTrait,
    student_id: Uuid,
) -> Result<Vec<guardian::Model>> {
    Ok(guardian::Entity::find()
        .filter(guardian::Column::StudentId.eq(student_id))
        .order_by_asc(guardian::Column::Name)
        .all(conn)
        .await?)
}

/// The guardian `id` of `student_id`, if they are one.
pub async fn guardian_of_student(
    conn: &impl ConnectionTrait,
    student_id: Uuid,
    id: Uuid,
) -> Result<Option<guardian::Model>> {
    Ok(guardian::Entity::find_by_id(id)
        .filter(guardian::Column::StudentId.eq(student_id))
        .one(conn)
        .await?)
}

/// The active head teachers of a class with an email address.
pub async fn reachable_teachers(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    class_id: Uuid,
) -> Result<Vec<staff::Model>> {
    Ok(staff::Entity::find()
        .filter(staff::Column::SchoolId.eq(school_id))
        .filter(staff::Column::ClassId.eq(class_id))
        .filter(staff::Column::Role.eq(Role::Teacher.as_str()))
        .filter(staff::Column::Active.eq(true))
        .all(conn)
        .await?
        .into_iter()
        .filter(|s| s.email.as_deref().is_some_and(|e| !e.trim().is_empty()))
        .collect())
}

/// Find a school by code.
pub async fn school_by_code(
    conn: &impl ConnectionTrait,
    code: &str,
) -> Result<Option<school::Model>> {
    Ok(school::Entity::find()
        .filter(school::Column::Code.eq(code))
        .one(conn)
        .await?)
}

/// Find a class of a school by code.
pub(crate) async fn class_by_code(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    code: &str,
) -> Result<Option<class::Model>> {
    Ok(class::Entity::find()
        .filter(class::Column::SchoolId.eq(school_id))
        .filter(class::Column::Code.eq(code))
        .one(conn)
        .await?)
}

/// Find a student of a school by student number.
pub async fn student_by_no(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    student_no: &str,
) -> Result<Option<student::Model>> {
    Ok(student::Entity::find()
        .filter(student::Column::SchoolId.eq(school_id))
        .filter(student::Column::StudentNo.eq(student_no))
        .filter(student::Column::Active.eq(true))
        .one(conn)
        .await?)
}

/// The active staff of several schools, in id order.
pub async fn active_staff_of_schools(
    conn: &impl ConnectionTrait,
    school_ids: &[Uuid],
) -> Result<Vec<staff::Model>> {
    Ok(staff::Entity::find()
        .filter(staff::Column::SchoolId.is_in(school_ids.iter().copied()))
        .filter(staff::Column::Active.eq(true))
        .order_by_asc(staff::Column::Id)
        .all(conn)
        .await?)
}

/// Active staff of a school in a role.
pub async fn staff_in_role(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    role: Role,
) -> Result<Vec<staff::Model>> {
    Ok(staff::Entity::find()
        .filter(staff::Column::SchoolId.eq(school_id))
        .filter(staff::Column::Role.eq(role.as_str()))
        .filter(staff::Column::Active.eq(true))
        .all(conn)
        .await?)
}

/// The active staff members whose mobile number is one of `spellings` (the
/// caller passes every way a number may be written: `13800138000`,
/// `+8613800138000`, `8613800138000`), for matching an SMS reply to its
/// sender. The number is the one alerts are sent to.
pub async fn active_staff_by_phone(
    conn: &impl ConnectionTrait,
    spellings: &[String],
) -> Result<Vec<staff::Model>> {
    if spellings.is_empty() {
        return Ok(Vec::new());
    }
    Ok(staff::Entity::find()
        .filter(staff::Column::Active.eq(true))
        .filter(staff::Column::Phone.is_in(spellings.iter().cloned()))
        .all(conn)
        .await?)
}
