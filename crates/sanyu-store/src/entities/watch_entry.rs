//! Table `watch_list`: students the rules put on the key-population list.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "watch_list")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub student_id: Uuid,
    pub school_id: Uuid,
    pub class_id: Uuid,
    pub since: DateTimeUtc,
    pub follow_up_on: Date,
    pub signal_id: String,
    pub rule_id: String,
    pub rules_version: String,
    pub done_at: Option<DateTimeUtc>,
    pub done_by: Option<Uuid>,
}

no_relations!();
