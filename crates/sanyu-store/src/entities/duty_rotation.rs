//! Table `duty_rotations`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "duty_rotations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub school_id: Uuid,
    pub name: String,
    pub role: String,
    /// `daily` or `weekly`.
    pub cadence: String,
    /// `HH:MM`, local.
    pub handover: String,
    pub start_date: Date,
    pub shift_start: Option<String>,
    pub shift_end: Option<String>,
    /// `every`, `school_days` or `key_dates`.
    pub days: String,
    /// Calendar kinds, comma-separated.
    pub kinds: String,
    pub created_at: DateTimeUtc,
}

no_relations!();
