//! The processed-message record: a consumer writes the id of each message it
//! handled in the same transaction as the message's effect, so a redelivery is
//! recognised and has no second effect.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict};

use crate::Result;
use crate::entities::processed_message;

/// Record `message_id` for `consumer`. Returns `false` when it was already
/// recorded: the caller must then skip the effect (and still ack).
pub async fn record(conn: &impl ConnectionTrait, consumer: &str, message_id: &str) -> Result<bool> {
    let row = processed_message::ActiveModel {
        consumer: Set(consumer.to_owned()),
        message_id: Set(message_id.to_owned()),
        processed_at: Set(Utc::now()),
    };
    let inserted = processed_message::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                processed_message::Column::Consumer,
                processed_message::Column::MessageId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(inserted == 1)
}
