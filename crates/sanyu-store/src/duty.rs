//! Duty rosters: a school's rotations (with their ordered members) and
//! overrides, stored and read back as the domain's
//! [`sanyu_domain::duty::Rotation`] and [`sanyu_domain::duty::Override`].
//! Checking the members against the school's staff is the caller's (in the
//! same transaction).

use std::collections::HashMap;

use chrono::{DateTime, NaiveTime, Utc};
use sanyu_domain::Role;
use sanyu_domain::duty::{Cadence, Days, Override, Rotation, Shift};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::{duty_override, duty_rotation, duty_rotation_member};
use crate::{Result, StoreError};

fn hm(t: NaiveTime) -> String {
    t.format("%H:%M").to_string()
}

fn corrupt(table: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.to_string(),
    }
}

fn time_of(s: &str) -> Result<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|e| corrupt("duty_rotations", e))
}

fn rotation_of(row: duty_rotation::Model, members: Vec<Uuid>) -> Result<Rotation> {
    let role: Role = row.role.parse().map_err(|e| corrupt("duty_rotations", e))?;
    let shift = match (row.shift_start.as_deref(), row.shift_end.as_deref()) {
        (Some(s), Some(e)) => Some(Shift {
            start: time_of(s)?,
            end: time_of(e)?,
        }),
        _ => None,
    };
    Ok(Rotation {
        id: row.id,
        name: row.name,
        role,
        cadence: row
            .cadence
            .parse::<Cadence>()
            .map_err(|e| corrupt("duty_rotations", e))?,
        handover: time_of(&row.handover)?,
        start_date: row.start_date,
        members,
        shift,
        days: row
            .days
            .parse::<Days>()
            .map_err(|e| corrupt("duty_rotations", e))?,
        kinds: row
            .kinds
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn override_of(row: duty_override::Model) -> Result<Override> {
    Ok(Override {
        id: row.id,
        role: row.role.parse().map_err(|e| corrupt("duty_overrides", e))?,
        staff_id: row.staff_id,
        from: row.starts_at,
        to: row.ends_at,
    })
}

/// Store a new rotation of `school_id` (already validated).
pub async fn create_rotation(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    r: &Rotation,
    at: DateTime<Utc>,
) -> Result<()> {
    let row = duty_rotation::Model {
        id: r.id,
        school_id,
        name: r.name.clone(),
        role: r.role.as_str().to_owned(),
        cadence: r.cadence.as_str().to_owned(),
        handover: hm(r.handover),
        start_date: r.start_date,
        shift_start: r.shift.map(|s| hm(s.start)),
        shift_end: r.shift.map(|s| hm(s.end)),
        days: r.days.as_str().to_owned(),
        kinds: r.kinds.join(","),
        created_at: at,
    };
    duty_rotation::Entity::insert(duty_rotation::ActiveModel::from(row))
        .exec_without_returning(conn)
        .await?;
    let members =
        r.members
            .iter()
            .enumerate()
            .map(|(i, staff_id)| duty_rotation_member::ActiveModel {
                rotation_id: Set(r.id),
                position: Set(i32::try_from(i).unwrap_or(i32::MAX)),
                staff_id: Set(*staff_id),
            });
    duty_rotation_member::Entity::insert_many(members)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The rotations of several schools, by school, members in order.
pub async fn rotations_of_schools(
    conn: &impl ConnectionTrait,
    school_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Rotation>>> {
    let rows = duty_rotation::Entity::find()
        .filter(duty_rotation::Column::SchoolId.is_in(school_ids.iter().copied()))
        .order_by_asc(duty_rotation::Column::CreatedAt)
        .order_by_asc(duty_rotation::Column::Id)
        .all(conn)
        .await?;
    let mut members: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    if !rows.is_empty() {
        for m in duty_rotation_member::Entity::find()
            .filter(duty_rotation_member::Column::RotationId.is_in(rows.iter().map(|r| r.id)))
            .order_by_asc(duty_rotation_member::Column::RotationId)
            .order_by_asc(duty_rotation_member::Column::Position)
            .all(conn)
            .await?
        {
            members.entry(m.rotation_id).or_default().push(m.staff_id);
        }
    }
    let mut out: HashMap<Uuid, Vec<Rotation>> = HashMap::new();
    for row in rows {
        let school = row.school_id;
        let m = members.remove(&row.id).unwrap_or_default();
        out.entry(school).or_default().push(rotation_of(row, m)?);
    }
    Ok(out)
}

/// The rotations of a school.
pub async fn rotations(conn: &impl ConnectionTrait, school_id: Uuid) -> Result<Vec<Rotation>> {
    Ok(rotations_of_schools(conn, &[school_id])
        .await?
        .remove(&school_id)
        .unwrap_or_default())
}

/// Delete a rotation of `school_id`: whether there was one (another school's
/// is none).
pub async fn delete_rotation(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    id: Uuid,
) -> Result<bool> {
    let found = duty_rotation::Entity::find_by_id(id)
        .filter(duty_rotation::Column::SchoolId.eq(school_id))
        .one(conn)
        .await?;
    if found.is_none() {
        return Ok(false);
    }
    duty_rotation_member::Entity::delete_many()
        .filter(duty_rotation_member::Column::RotationId.eq(id))
        .exec(conn)
        .await?;
    duty_rotation::Entity::delete_by_id(id).exec(conn).await?;
    Ok(true)
}

/// Store a new override of `school_id` (already validated).
pub async fn create_override(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    o: &Override,
    at: DateTime<Utc>,
) -> Result<()> {
    let row = duty_override::Model {
        id: o.id,
        school_id,
        role: o.role.as_str().to_owned(),
        staff_id: o.staff_id,
        starts_at: o.from,
        ends_at: o.to,
        created_at: at,
    };
    duty_override::Entity::insert(duty_override::ActiveModel::from(row))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The overrides of several schools that end after `after`, by school, in
/// order of their start.
pub async fn overrides_of_schools(
    conn: &impl ConnectionTrait,
    school_ids: &[Uuid],
    after: DateTime<Utc>,
) -> Result<HashMap<Uuid, Vec<Override>>> {
    let rows = duty_override::Entity::find()
        .filter(duty_override::Column::SchoolId.is_in(school_ids.iter().copied()))
        .filter(duty_override::Column::EndsAt.gt(after))
        .order_by_asc(duty_override::Column::StartsAt)
        .order_by_asc(duty_override::Column::Id)
        .all(conn)
        .await?;
    let mut out: HashMap<Uuid, Vec<Override>> = HashMap::new();
    for row in rows {
        let school = row.school_id;
        out.entry(school).or_default().push(override_of(row)?);
    }
    Ok(out)
}

/// The overrides of a school that end after `after`.
pub async fn overrides(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    after: DateTime<Utc>,
) -> Result<Vec<Override>> {
    Ok(overrides_of_schools(conn, &[school_id], after)
        .await?
        .remove(&school_id)
        .unwrap_or_default())
}

/// Delete an override of `school_id`: whether there was one.
pub async fn delete_override(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    id: Uuid,
) -> Result<bool> {
    let res = duty_override::Entity::delete_many()
        .filter(duty_override::Column::Id.eq(id))
        .filter(duty_override::Column::SchoolId.eq(school_id))
        .exec(conn)
        .await?;
    Ok(res.rows_affected > 0)
}
