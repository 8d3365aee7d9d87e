//! `dead_letters.school_id`: the school a dead letter belongs to, when it is
//! known from the message body or the database; NULL when it is not (an
//! unreadable message), and then only a deployment-level admin lists it.
//!
//! Rows already stored get their school where it can be told without a
//! subject's guess: an alarm or gap about a case (`event_id` `case:<id>`)
//! from the case; an older dead letter whose subject names a school whose
//! code is plain ASCII letters, digits, `-` and `_` (the old subject token
//! was the code itself then, and only one school can have it). The rest
//! stays school-less.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use uuid::Uuid;

use crate::entities::{case, dead_letter, school};

use super::{add_columns, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_columns(manager, "dead_letters", [uuid_null("school_id")]).await?;
        manager
            .create_index(index(
                "dead_letters_by_school",
                "dead_letters",
                &["school_id", "resolved_at"],
            ))
            .await?;
        backfill(manager.get_connection()).await
    }
}

async fn backfill(conn: &impl sea_orm::ConnectionTrait) -> Result<(), DbErr> {
    // Only the columns this migration knows: later ones may add others.
    let plain: std::collections::HashMap<String, Uuid> = school::Entity::find()
        .select_only()
        .column(school::Column::Code)
        .column(school::Column::Id)
        .into_tuple::<(String, Uuid)>()
        .all(conn)
        .await?
        .into_iter()
        .filter(|(code, _)| {
            code.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .collect();
    let letters = dead_letter::Entity::find()
        .select_only()
        .column(dead_letter::Column::Id)
        .column(dead_letter::Column::EventId)
        .column(dead_letter::Column::Subject)
        .filter(dead_letter::Column::SchoolId.is_null())
        .into_tuple::<(Uuid, Option<String>, Option<String>)>()
        .all(conn)
        .await?;
    for (id, event_id, subject) in letters {
        let from_case = match event_id
            .as_deref()
            .and_then(|e| e.strip_prefix("case:"))
            .and_then(|id| Uuid::parse_str(id).ok())
        {
            Some(case_id) => {
                case::Entity::find_by_id(case_id)
                    .select_only()
                    .column(case::Column::SchoolId)
                    .into_tuple::<Uuid>()
                    .one(conn)
                    .await?
            }
            None => None,
        };
        let from_subject = || {
            let subject = subject.as_deref()?;
            let parts: Vec<&str> = subject.split('.').collect();
            (parts.len() >= 4 && parts[0] == "sanyu")
                .then(|| plain.get(parts[3]).copied())
                .flatten()
        };
        let Some(school_id) = from_case.or_else(from_subject) else {
            continue;
        };
        dead_letter::Entity::update_many()
            .col_expr(
                dead_letter::Column::SchoolId,
                sea_orm::sea_query::Expr::value(school_id),
            )
            .filter(dead_letter::Column::Id.eq(id))
            .exec(conn)
            .await?;
    }
    Ok(())
}
