//! Table `audit_log`: append-only, hash-chained (HMAC) record of reads and actions.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub at: DateTimeUtc,
    pub actor_token_id: Option<Uuid>,
    pub actor_role: String,
    pub actor_staff_id: Option<Uuid>,
    pub school_id: Option<Uuid>,
    pub action: String,
    pub target: String,
    pub source: String,
    pub prev_hash: String,
    pub hash: String,
}

no_relations!();
