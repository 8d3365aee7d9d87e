//! Table `dead_letters`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub source_key: String,
    pub stream: String,
    pub consumer: String,
    pub stream_seq: Option<i64>,
    pub subject: Option<String>,
    pub event_id: Option<String>,
    pub reason: String,
    pub deliveries: Option<i64>,
    pub received_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    /// The school it belongs to, from the message body or the database;
    /// `None`: only a deployment-level admin sees it.
    pub school_id: Option<Uuid>,
}

no_relations!();
