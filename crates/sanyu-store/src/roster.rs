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

use chrono::Utc;
use sanyu_domain::Role;
use sanyu_domain::input;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde::Serialize;
use uuid::Uuid;

use crate::entities::{class, grade, guardian, school, staff, student};
use crate::{Result, StoreError};

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

/// Import students (and their school, grade, class and guardians).
pub async fn import_students(
    conn: &impl ConnectionTrait,
    input: impl Read,
    scope: ImportScope<'_>,
) -> Result<ImportSummary> {
    let mut summary = ImportSummary::default();
    let headers = [
        "school_code",
        "grade_code",
        "class_code",
        "student_no",
        "student_name",
    ];
    let rows = match read_rows(input, &headers, &mut summary) {
        Ok(rows) => rows,
        Err(e) => {
            summary.errors.push(e);
            return Ok(summary);
        }
    };
    for row in rows {
        match import_student_row(conn, &row, scope).await {
            Ok(change) => summary.count(change),
            Err(RowOutcome::Rejected(e)) => summary.errors.push(e),
            Err(RowOutcome::Store(e)) => return Err(e),
        }
    }
    Ok(summary)
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

async fn import_student_row(
    conn: &impl ConnectionTrait,
    row: &Row,
    scope: ImportScope<'_>,
) -> std::result::Result<Change, RowOutcome> {
    let school_code = row.required("school_code")?;
    if let Some(msg) = scope.check(&school_code) {
        return Err(row.error("school_code", msg).into());
    }
    let grade_code = row.required("grade_code")?;
    let class_code = row.required("class_code")?;
    let student_no = row.required("student_no")?;
    let student_name = row.required("student_name")?;
    let gender = row.get("gender").map(str::to_owned);
    let guardian_phone = check_phone(row, "guardian_phone")?;
    let guardian_email = check_email(row, "guardian_email")?;

    let mut changed = false;
    let mut created = false;
    let school_id = match school::Entity::find()
        .filter(school::Column::Code.eq(&school_code))
        .one(conn)
        .await?
    {
        Some(s) => s.id,
        None => {
            if matches!(scope, ImportScope::School { .. }) {
                return Err(row.error("school_code", "unknown school").into());
            }
            let id = Uuid::now_v7();
            school::Entity::insert(school::ActiveModel {
                id: Set(id),
                code: Set(school_code.clone()),
                name: Set(row.get("school_name").unwrap_or(&school_code).to_owned()),
                district_code: Set(row.get("district_code").map(str::to_owned)),
                created_at: Set(Utc::now()),
            })
            .exec_without_returning(conn)
            .await?;
            changed = true;
            id
        }
    };
    let grade_name = row.get("grade_name").unwrap_or(&grade_code).to_owned();
    let grade_id = match grade::Entity::find()
        .filter(grade::Column::SchoolId.eq(school_id))
        .filter(grade::Column::Code.eq(&grade_code))
        .one(conn)
        .await?
    {
        Some(g) => {
            if g.name != grade_name {
                let mut a: grade::ActiveModel = g.clone().into();
                a.name = Set(grade_name);
                a.update(conn).await?;
                changed = true;
            }
            g.id
        }
        None => {
            let id = Uuid::now_v7();
            grade::Entity::insert(grade::ActiveModel {
                id: Set(id),
                school_id: Set(school_id),
                code: Set(grade_code.clone()),
                name: Set(grade_name),
            })
            .exec_without_returning(conn)
            .await?;
            changed = true;
            id
        }
    };
    let class_name = row.get("class_name").unwrap_or(&class_code).to_owned();
    let class_id = match class::Entity::find()
        .filter(class::Column::SchoolId.eq(school_id))
        .filter(class::Column::Code.eq(&class_code))
        .one(conn)
        .await?
    {
        Some(c) => {
            if c.name != class_name || c.grade_id != grade_id {
                let mut a: class::ActiveModel = c.clone().into();
                a.name = Set(class_name);
                a.grade_id = Set(grade_id);
                a.update(conn).await?;
                changed = true;
            }
            c.id
        }
        None => {
            let id = Uuid::now_v7();
            class::Entity::insert(class::ActiveModel {
                id: Set(id),
                school_id: Set(school_id),
                grade_id: Set(grade_id),
                code: Set(class_code.clone()),
                name: Set(class_name),
            })
            .exec_without_returning(conn)
            .await?;
            changed = true;
            id
        }
    };
    let now = Utc::now();
    let student_id = match student::Entity::find()
        .filter(student::Column::SchoolId.eq(school_id))
        .filter(student::Column::StudentNo.eq(&student_no))
        .one(conn)
        .await?
    {
        Some(s) => {
            if s.name != student_name || s.class_id != class_id || s.gender != gender || !s.active {
                let mut a: student::ActiveModel = s.clone().into();
                a.name = Set(student_name);
                a.class_id = Set(class_id);
                a.gender = Set(gender);
                a.active = Set(true);
                a.updated_at = Set(now);
                a.update(conn).await?;
                changed = true;
            }
            s.id
        }
        None => {
            let id = Uuid::now_v7();
            student::Entity::insert(student::ActiveModel {
                id: Set(id),
                school_id: Set(school_id),
                class_id: Set(class_id),
                student_no: Set(student_no),
                name: Set(student_name),
                gender: Set(gender),
                active: Set(true),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(conn)
            .await?;
            created = true;
            id
        }
    };
    if let Some(guardian_name) = row.get("guardian_name") {
        let relation = row.get("guardian_relation").map(str::to_owned);
        match guardian::Entity::find()
            .filter(guardian::Column::StudentId.eq(student_id))
            .filter(guardian::Column::Name.eq(guardian_name))
            .one(conn)
            .await?
        {
            Some(g) => {
                if g.relation != relation || g.phone != guardian_phone || g.email != guardian_email
                {
                    let mut a: guardian::ActiveModel = g.into();
                    a.relation = Set(relation);
                    a.phone = Set(guardian_phone);
                    a.email = Set(guardian_email);
                    a.update(conn).await?;
                    changed = true;
                }
            }
            None => {
                guardian::Entity::insert(guardian::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    student_id: Set(student_id),
                    name: Set(guardian_name.to_owned()),
                    relation: Set(relation),
                    phone: Set(guardian_phone),
                    email: Set(guardian_email),
                })
                .exec_without_returning(conn)
                .await?;
                changed = true;
            }
        }
    }
    Ok(if created {
        Change::Created
    } else if changed {
        Change::Updated
    } else {
        Change::Unchanged
    })
}

/// Import staff with roles and contacts. Their school must exist.
pub async fn import_staff(
    conn: &impl ConnectionTrait,
    input: impl Read,
    scope: ImportScope<'_>,
) -> Result<ImportSummary> {
    let mut summary = ImportSummary::default();
    let rows = match read_rows(
        input,
        &["school_code", "staff_no", "name", "role"],
        &mut summary,
    ) {
        Ok(rows) => rows,
        Err(e) => {
            summary.errors.push(e);
            return Ok(summary);
        }
    };
    for row in rows {
        match import_staff_row(conn, &row, scope).await {
            Ok((change, grant)) => {
                summary.count(change);
                match grant {
                    RowGrant::None => {}
                    RowGrant::Pending(g) => summary.pending_role_grants.push(PendingGrant {
                        line: row.line,
                        grant_id: g.id,
                        staff_id: g.staff_id,
                        role: g.role,
                    }),
                    RowGrant::Operator {
                        staff_id,
                        school_id,
                        role,
                    } => summary.operator_role_grants.push(OperatorGrant {
                        line: row.line,
                        staff_id,
                        school_id,
                        role,
                    }),
                }
            }
            Err(RowOutcome::Rejected(e)) => summary.errors.push(e),
            Err(RowOutcome::Store(e)) => return Err(e),
        }
    }
    Ok(summary)
}

async fn import_staff_row(
    conn: &impl ConnectionTrait,
    row: &Row,
    scope: ImportScope<'_>,
) -> std::result::Result<(Change, RowGrant), RowOutcome> {
    let school_code = row.required("school_code")?;
    if let Some(msg) = scope.check(&school_code) {
        return Err(row.error("school_code", msg).into());
    }
    let staff_no = row.required("staff_no")?;
    let name = row.required("name")?;
    let role_text = row.required("role")?;
    let role: Role = role_text
        .parse()
        .map_err(|e: sanyu_domain::ParseError| row.error("role", e.to_string()))?;
    let phone = check_phone(row, "phone")?;
    let email = check_email(row, "email")?;
    let school = school::Entity::find()
        .filter(school::Column::Code.eq(&school_code))
        .one(conn)
        .await?
        .ok_or_else(|| row.error("school_code", "unknown school: import its students first"))?;
    let class_id = match row.get("class_code") {
        Some(code) => Some(
            class::Entity::find()
                .filter(class::Column::SchoolId.eq(school.id))
                .filter(class::Column::Code.eq(code))
                .one(conn)
                .await?
                .ok_or_else(|| row.error("class_code", "unknown class in this school"))?
                .id,
        ),
        None if role.is_class_bound() => {
            return Err(row
                .error("class_code", format!("role `{role}` needs a class"))
                .into());
        }
        None => None,
    };
    let now = Utc::now();
    let by = match scope {
        ImportScope::School { by, .. } => Some(by),
        ImportScope::Operator => None,
    };
    let existing = staff::Entity::find()
        .filter(staff::Column::SchoolId.eq(school.id))
        .filter(staff::Column::StaffNo.eq(&staff_no))
        .one(conn)
        .await?;
    // A role that reads cases which this person does not hold (active) yet,
    // asked for through the API: a grant to confirm, not a change.
    let grant_needed = by.is_some()
        && role.reads_cases()
        && !existing
            .as_ref()
            .is_some_and(|s| s.active && s.role == role.as_str());
    match existing {
        Some(s) if grant_needed => {
            let grant = match by {
                Some(by) => {
                    crate::role_grants::request(conn, school.id, s.id, role, by, now).await?
                }
                None => None,
            };
            // The rest of the row imports; the role and whether the person
            // is active stay as they are until the grant is confirmed.
            let changed = if grant.is_some() {
                Change::Updated
            } else {
                Change::Unchanged
            };
            let grant = grant.map_or(RowGrant::None, RowGrant::Pending);
            if s.name == name && s.class_id == class_id && s.phone == phone && s.email == email {
                return Ok((changed, grant));
            }
            let mut a: staff::ActiveModel = s.into();
            a.name = Set(name);
            a.class_id = Set(class_id);
            a.phone = Set(phone);
            a.email = Set(email);
            a.updated_at = Set(now);
            a.update(conn).await?;
            Ok((Change::Updated, grant))
        }
        Some(s) => {
            // What the row asks for takes effect (a role that does not read
            // cases, or the one held): whatever was pending for this person
            // is withdrawn, the latest import stands.
            if by.is_some() {
                crate::role_grants::withdraw_pending(conn, s.id, now).await?;
            }
            if s.name == name
                && s.role == role.as_str()
                && s.class_id == class_id
                && s.phone == phone
                && s.email == email
                && s.active
            {
                return Ok((Change::Unchanged, RowGrant::None));
            }
            // The operator gives a role that reads cases the person did not
            // hold (active): in effect now, and told to the school.
            let given = if role.reads_cases() && !(s.active && s.role == role.as_str()) {
                RowGrant::Operator {
                    staff_id: s.id,
                    school_id: school.id,
                    role,
                }
            } else {
                RowGrant::None
            };
            if s.role != role.as_str() || s.class_id != class_id || !s.active {
                // A changed role or scope ends the person's console sessions.
                crate::console::end_sessions_of_staff(conn, s.id, now).await?;
            }
            let mut a: staff::ActiveModel = s.into();
            a.name = Set(name);
            a.role = Set(role.as_str().to_owned());
            a.class_id = Set(class_id);
            a.phone = Set(phone);
            a.email = Set(email);
            a.active = Set(true);
            a.updated_at = Set(now);
            a.update(conn).await?;
            Ok((Change::Updated, given))
        }
        None => {
            let id = Uuid::now_v7();
            staff::Entity::insert(staff::ActiveModel {
                id: Set(id),
                school_id: Set(school.id),
                staff_no: Set(staff_no),
                name: Set(name),
                role: Set(role.as_str().to_owned()),
                class_id: Set(class_id),
                phone: Set(phone),
                email: Set(email),
                // Waits inactive (told nothing, no token reads cases) until
                // the grant is confirmed.
                active: Set(!grant_needed),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(conn)
            .await?;
            let grant = match by {
                Some(by) if grant_needed => {
                    crate::role_grants::request(conn, school.id, id, role, by, now)
                        .await?
                        .map_or(RowGrant::None, RowGrant::Pending)
                }
                None if role.reads_cases() => RowGrant::Operator {
                    staff_id: id,
                    school_id: school.id,
                    role,
                },
                _ => RowGrant::None,
            };
            Ok((Change::Created, grant))
        }
    }
}

/// Find a school by id.
pub async fn school_by_id(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<school::Model>> {
    Ok(school::Entity::find_by_id(id).one(conn).await?)
}

/// Every school, in code order.
pub async fn schools(conn: &impl ConnectionTrait) -> Result<Vec<school::Model>> {
    Ok(school::Entity::find()
        .order_by_asc(school::Column::Code)
        .all(conn)
        .await?)
}

/// Find a staff member by id (active or not).
pub async fn staff_by_id(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<staff::Model>> {
    Ok(staff::Entity::find_by_id(id).one(conn).await?)
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

/// Active staff of a school in a role.
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
