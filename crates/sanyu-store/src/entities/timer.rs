//! Table `timers`: the scheduler's durable timers.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "timers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub key: String,
    pub kind: String,
    pub case_id: Option<Uuid>,
    pub due_at: DateTimeUtc,
    pub payload: String,
    pub state: String,
    pub created_at: DateTimeUtc,
    pub fired_at: Option<DateTimeUtc>,
}

no_relations!();
