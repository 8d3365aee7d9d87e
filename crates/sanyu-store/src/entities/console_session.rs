//! Table `console_sessions`: server-side sessions of the console.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub token_hash: String,
    pub csrf_token: String,
    pub staff_id: Uuid,
    pub school_id: Uuid,
    pub class_id: Option<Uuid>,
    pub role: String,
    pub client_addr: String,
    pub created_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    /// `sign_out`, `idle`, `absolute`, `staff_changed`.
    pub end_reason: Option<String>,
}

no_relations!();
