//! Table `notification_digest_members`: one channel of one notification
//! request, gathered into a digest (see `crate::digests`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_digest_members")]
pub struct Model {
    /// The `deliveries.notification_key` of the member.
    #[sea_orm(primary_key, auto_increment = false)]
    pub delivery_key: String,
    pub digest_id: Uuid,
    /// The request's notification key (its result event carries it).
    pub notification_key: String,
    pub case_id: Uuid,
    /// The opaque case reference (`C-…`).
    pub reference: String,
    /// The case's level when the notice was requested.
    pub level: String,
    /// The notification reason's name (`case_opened`, …).
    pub reason: String,
    /// The request envelope's school and partition (for the result event).
    pub school: String,
    pub partition: i64,
    pub added_at: DateTimeUtc,
}

no_relations!();
