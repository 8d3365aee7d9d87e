//! Table `role_grants`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "role_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub school_id: Uuid,
    pub staff_id: Uuid,
    pub role: String,
    /// `pending`, `confirmed`, `refused` or `withdrawn`.
    pub status: String,
    pub requested_by_token: Option<Uuid>,
    pub requested_by_staff: Option<Uuid>,
    pub requested_at: DateTimeUtc,
    pub decided_by_token: Option<Uuid>,
    pub decided_by_staff: Option<Uuid>,
    pub decided_at: Option<DateTimeUtc>,
}

no_relations!();
