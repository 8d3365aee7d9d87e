//! `api_tokens.school_id` becomes nullable: a token without a school is a
//! deployment-level admin's (`sanyu token issue --deployment`). It lists the
//! dead letters no school can be told of, and confirms role grants of a
//! school that has no leader or crisis team yet; it reads no cases.
//!
//! PostgreSQL drops the NOT NULL in place; SQLite rebuilds the table
//! (`super::sqlite_rebuild`).

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;

use super::sqlite_rebuild;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        match conn.get_database_backend() {
            DatabaseBackend::Sqlite => {
                sqlite_rebuild::relax_not_null(conn, "api_tokens", &["school_id"]).await
            }
            _ => conn
                .execute_unprepared("ALTER TABLE api_tokens ALTER COLUMN school_id DROP NOT NULL")
                .await
                .map(|_| ()),
        }
    }
}
