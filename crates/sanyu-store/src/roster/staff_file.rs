//! The staff file: staff of existing schools, with roles and contacts; a role
//! that reads cases may wait for a second person (see [`super`]).

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};

use super::*;

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
    let school = super::school_by_code(conn, &school_code)
        .await?
        .ok_or_else(|| row.error("school_code", "unknown school: import its students first"))?;
    let class_id = match row.get("class_code") {
        Some(code) => Some(
            super::class_by_code(conn, school.id, code)
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
            row_fields(s, name, class_id, phone, email, now)
                .update(conn)
                .await?;
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
            let mut a = row_fields(s, name, class_id, phone, email, now);
            a.role = Set(role.as_str().to_owned());
            a.active = Set(true);
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

/// Staff member `s` with the name, class and contacts of their row, updated
/// at `now` (what every change of an existing person writes).
fn row_fields(
    s: staff::Model,
    name: String,
    class_id: Option<Uuid>,
    phone: Option<String>,
    email: Option<String>,
    now: DateTime<Utc>,
) -> staff::ActiveModel {
    let mut a: staff::ActiveModel = s.into();
    a.name = Set(name);
    a.class_id = Set(class_id);
    a.phone = Set(phone);
    a.email = Set(email);
    a.updated_at = Set(now);
    a
}
