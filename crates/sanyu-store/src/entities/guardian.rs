//! Table `guardians`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "guardians")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub student_id: Uuid,
    pub name: String,
    pub relation: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

no_relations!();
