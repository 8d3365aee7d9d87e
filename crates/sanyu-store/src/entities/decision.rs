//! Table `decisions`: one row per decided signal.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "decisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub signal_id: String,
    pub message_id: String,
    pub student_id: Uuid,
    pub school_id: Uuid,
    pub source: String,
    pub signal_at: DateTimeUtc,
    pub level: Option<sanyu_domain::RiskLevel>,
    pub instrument: Option<String>,
    pub band: Option<String>,
    /// Comma-separated flag names (empty when none).
    pub flags: String,
    pub category: Option<String>,
    pub decision: String,
    pub case_id: Option<Uuid>,
    pub case_level: Option<sanyu_domain::RiskLevel>,
    pub follow_up_on: Option<Date>,
    pub rule_id: String,
    pub rules_version: String,
    /// JSON array of the signal ids the rule used.
    pub used: String,
    pub decided_at: DateTimeUtc,
}

no_relations!();
