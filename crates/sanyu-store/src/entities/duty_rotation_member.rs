//! Table `duty_rotation_members`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "duty_rotation_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub rotation_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i32,
    pub staff_id: Uuid,
}

no_relations!();
