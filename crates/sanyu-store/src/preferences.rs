//! Per-person notification preferences (issue 16): the channels a staff
//! member adds to those a case level's policy requires. Only additions are
//! stored — the policy's channels are always used — so a preference can
//! never drop below the policy, whatever is written here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::Result;
use crate::entities::notification_preference as preference;

/// The levels a person sets channels for.
pub const LEVELS: [&str; 3] = ["critical", "high", "elevated"];

/// A person's added channels, by level (`critical`, `high`, `elevated`).
pub type Added = BTreeMap<String, Vec<String>>;

/// The channels `staff_id` added, by level.
pub async fn of(conn: &impl ConnectionTrait, staff_id: Uuid) -> Result<Added> {
    Ok(preference::Entity::find()
        .filter(preference::Column::StaffId.eq(staff_id))
        .all(conn)
        .await?
        .into_iter()
        .map(|p| {
            let channels = p
                .channels
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            (p.level, channels)
        })
        .collect())
}

/// Set the channels `staff_id` adds for `level` (none: the policy's alone).
pub async fn set(
    conn: &impl ConnectionTrait,
    staff_id: Uuid,
    level: &str,
    channels: &[&str],
    at: DateTime<Utc>,
) -> Result<()> {
    if channels.is_empty() {
        preference::Entity::delete_many()
            .filter(preference::Column::StaffId.eq(staff_id))
            .filter(preference::Column::Level.eq(level))
            .exec(conn)
            .await?;
        return Ok(());
    }
    preference::Entity::insert(preference::ActiveModel {
        staff_id: Set(staff_id),
        level: Set(level.to_owned()),
        channels: Set(channels.join(",")),
        updated_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([preference::Column::StaffId, preference::Column::Level])
            .update_columns([preference::Column::Channels, preference::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}
