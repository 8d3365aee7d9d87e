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
                    .table("schools")
                    .col(pk_uuid("id"))
                    .col(string_uniq("code"))
                    .col(string("name"))
                    .col(string_null("district_code"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("grades")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(string("code"))
                    .col(string("name"))
                    .foreign_key(&mut fk("grades", "school_id", "schools"))
                    .index(Index::create().unique().col("school_id").col("code"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("classes")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(uuid("grade_id"))
                    .col(string("code"))
                    .col(string("name"))
                    .foreign_key(&mut fk("classes", "school_id", "schools"))
                    .foreign_key(&mut fk("classes", "grade_id", "grades"))
                    .index(Index::create().unique().col("school_id").col("code"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("students")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(uuid("class_id"))
                    .col(string("student_no"))
                    .col(string("name"))
                    .col(string_null("gender"))
                    .col(boolean("active"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut fk("students", "school_id", "schools"))
                    .foreign_key(&mut fk("students", "class_id", "classes"))
                    .index(Index::create().unique().col("school_id").col("student_no"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("guardians")
                    .col(pk_uuid("id"))
                    .col(uuid("student_id"))
                    .col(string("name"))
                    .col(string_null("relation"))
                    .col(string_null("phone"))
                    .col(string_null("email"))
                    .foreign_key(&mut fk("guardians", "student_id", "students"))
                    .index(Index::create().unique().col("student_id").col("name"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("staff")
                    .col(pk_uuid("id"))
                    .col(uuid("school_id"))
                    .col(string("staff_no"))
                    .col(string("name"))
                    .col(string("role"))
                    .col(uuid_null("class_id"))
                    .col(string_null("phone"))
                    .col(string_null("email"))
                    .col(boolean("active"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut fk("staff", "school_id", "schools"))
                    .foreign_key(&mut fk("staff", "class_id", "classes"))
                    .index(Index::create().unique().col("school_id").col("staff_no"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "staff_by_school_role",
                "staff",
                &["school_id", "role"],
            ))
            .await
    }
}
