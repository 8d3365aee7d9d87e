//! Table `delivery_attempts`: one row per send attempt (and its receipt).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The `deliveries.notification_key` this attempt belongs to.
    pub delivery_key: String,
    pub case_id: Uuid,
    pub channel: String,
    /// `smtp`, `files`, `webhook`, `aliyun`, `tencent`, or `none` when no
    /// send was possible (no address).
    pub provider: String,
    /// `accepted`, `transient_error` or `permanent_error`.
    pub status: String,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
    /// From the provider's delivery receipt: `sent`, `delivered` or `failed`.
    pub receipt_status: Option<String>,
    pub receipt_at: Option<DateTimeUtc>,
    pub at: DateTimeUtc,
}

no_relations!();
