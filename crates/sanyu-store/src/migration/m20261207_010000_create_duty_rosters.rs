//! Duty rosters (issue 16): a school's rotations (`duty_rotations`, their
//! ordered members in `duty_rotation_members`) and overrides
//! (`duty_overrides`: a staff member covers a role from one instant to
//! another). Local times are `HH:MM` text in the school's time zone.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("duty_rotations")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(string("name"))
                    .col(string("role"))
                    .col(string("cadence"))
                    .col(string("handover"))
                    .col(date("start_date"))
                    .col(string_null("shift_start"))
                    .col(string_null("shift_end"))
                    .col(string("days"))
                    .col(string("kinds"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut fk("duty_rotations", "school_id", "schools"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "duty_rotations_by_school",
                "duty_rotations",
                &["school_id"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("duty_rotation_members")
                    .col(uuid("rotation_id"))
                    .col(integer("position"))
                    .col(uuid("staff_id"))
                    .primary_key(Index::create().col("rotation_id").col("position"))
                    .foreign_key(&mut fk(
                        "duty_rotation_members",
                        "rotation_id",
                        "duty_rotations",
                    ))
                    .foreign_key(&mut fk("duty_rotation_members", "staff_id", "staff"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("duty_overrides")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(string("role"))
                    .col(uuid("staff_id"))
                    .col(timestamp_with_time_zone("starts_at"))
                    .col(timestamp_with_time_zone("ends_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut fk("duty_overrides", "school_id", "schools"))
                    .foreign_key(&mut fk("duty_overrides", "staff_id", "staff"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "duty_overrides_by_school",
                "duty_overrides",
                &["school_id", "ends_at"],
            ))
            .await
    }
}
