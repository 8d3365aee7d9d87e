//! Table `case_signals`.
use sanyu_domain::RiskLevel;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "case_signals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub case_id: Uuid,
    pub event_id: String,
    pub kind: String,
    pub source_id: Option<Uuid>,
    pub level: RiskLevel,
    pub decision: String,
    pub rule_id: String,
    pub attached_at: DateTimeUtc,
}

no_relations!();
