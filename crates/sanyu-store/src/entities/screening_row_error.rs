//! Table `screening_row_errors`: why a row of an import was rejected.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "screening_row_errors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub import_id: Uuid,
    pub row_number: i64,
    /// Position of the error within its row.
    pub seq: i32,
    pub column: String,
    pub reason: String,
}

no_relations!();
