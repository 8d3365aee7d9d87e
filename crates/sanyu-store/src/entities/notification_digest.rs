//! Table `notification_digests`: one message listing several non-critical
//! notices to one person on one channel (see `crate::digests`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_digests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub recipient_staff_id: Uuid,
    pub channel: String,
    /// `open`, `sending`, `waiting`, `sent` or `failed`.
    pub status: String,
    /// `<staff id>:<channel>` while `open`, else empty: one open digest per
    /// person and channel.
    #[sea_orm(unique)]
    pub open_key: Option<String>,
    pub members: i32,
    pub opened_at: DateTimeUtc,
    /// When it goes out (unless its members' last delivery comes first).
    pub closes_at: DateTimeUtc,
    pub claimed_by: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    /// Set (committed) just before the send, cleared with its outcome.
    pub sending_since: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
}

no_relations!();
