//! Table `reports`.
use sanyu_domain::RiskLevel;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub school_id: Uuid,
    pub class_id: Uuid,
    pub student_id: Uuid,
    pub category: String,
    pub level: RiskLevel,
    pub observed_at: DateTimeUtc,
    /// Narrative sealed with the data key (nonce || ciphertext).
    pub narrative_sealed: Vec<u8>,
    pub reporter_token_id: Uuid,
    #[sea_orm(unique)]
    pub event_id: String,
    pub created_at: DateTimeUtc,
}

no_relations!();
