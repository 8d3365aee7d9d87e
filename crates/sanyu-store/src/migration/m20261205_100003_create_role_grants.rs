//! `role_grants`: a role that reads cases (counsellor, crisis team, leader,
//! district) given to a staff member through the API waits here until a
//! second person of the school confirms it (`pending` → `confirmed` |
//! `refused`; `withdrawn` when a later import asks for something else).

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
                    .table("role_grants")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(uuid("staff_id"))
                    .col(string("role"))
                    .col(string("status"))
                    .col(uuid_null("requested_by_token"))
                    .col(uuid_null("requested_by_staff"))
                    .col(timestamp_with_time_zone("requested_at"))
                    .col(uuid_null("decided_by_token"))
                    .col(uuid_null("decided_by_staff"))
                    .col(timestamp_with_time_zone_null("decided_at"))
                    .foreign_key(&mut fk("role_grants", "school_id", "schools"))
                    .foreign_key(&mut fk("role_grants", "staff_id", "staff"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "role_grants_by_school",
                "role_grants",
                &["school_id", "status"],
            ))
            .await?;
        manager
            .create_index(index(
                "role_grants_by_staff",
                "role_grants",
                &["staff_id", "status"],
            ))
            .await
    }
}
