//! The students file: schools, grades and classes as needed, students and
//! their guardians, one row per guardian.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};

use super::*;
use crate::entities::{class, grade, guardian};

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
    let school_id = match super::school_by_code(conn, &school_code).await? {
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
    let class_id = match super::class_by_code(conn, school_id, &class_code).await? {
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
