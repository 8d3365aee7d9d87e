//! Table `deliveries`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub notification_key: String,
    pub case_id: Uuid,
    pub recipient_staff_id: Uuid,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub lease_until: Option<DateTimeUtc>,
    pub claimed_by: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    /// Set (committed) just before a send, cleared when its outcome is recorded.
    pub sending_since: Option<DateTimeUtc>,
    /// Claims taken over from a notifier that stopped during a send.
    pub takeovers: i32,
    /// Keyed hash of the acknowledgement link's token of the notification
    /// (see `crate::ack_links`); none for notices about no case.
    pub ack_token_hash: Option<String>,
}

no_relations!();
