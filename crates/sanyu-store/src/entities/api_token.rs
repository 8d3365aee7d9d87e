//! Table `api_tokens`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub role: String,
    /// `None`: a deployment-level admin's token.
    pub school_id: Option<Uuid>,
    pub class_id: Option<Uuid>,
    pub staff_id: Option<Uuid>,
    pub label: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

no_relations!();
