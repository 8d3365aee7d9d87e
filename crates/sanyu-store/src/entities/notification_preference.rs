//! Table `notification_preferences`: the channels a staff member adds to a
//! level's (see `crate::preferences`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_preferences")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub staff_id: Uuid,
    /// `critical`, `high` or `elevated`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub level: String,
    /// The channels added, comma-separated, in the person's order.
    pub channels: String,
    pub updated_at: DateTimeUtc,
}

no_relations!();
