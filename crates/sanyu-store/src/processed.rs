//! The processed-message record: a consumer writes the id of each message it
//! handled in the same transaction as the message's effect, so a redelivery is
//! recognised and has no second effect.

use std::collections::HashSet;

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::OnConflict,
};

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

/// Which of these messages `consumer` already processed.
pub async fn already(
    conn: &impl ConnectionTrait,
    consumer: &str,
    message_ids: &[String],
) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    if conn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // One primary-key probe per id (see `db::probe_ids`); as an `IN (…)`
        // list it was scanned by consumer alone.
        let json = crate::db::probe_ids("processed_messages", message_ids)?;
        let rows = conn
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT m.id AS message_id FROM json_array_elements_text($1::json) AS m(id) \
                 CROSS JOIN LATERAL (SELECT 1 FROM processed_messages p \
                 WHERE p.consumer = $2 AND p.message_id = m.id OFFSET 0) AS found",
                [json.into(), consumer.into()],
            ))
            .await?;
        for row in rows {
            out.insert(row.try_get::<String>("", "message_id")?);
        }
        return Ok(out);
    }
    for chunk in message_ids.chunks(500) {
        let found: Vec<String> = processed_message::Entity::find()
            .select_only()
            .column(processed_message::Column::MessageId)
            .filter(processed_message::Column::Consumer.eq(consumer))
            .filter(processed_message::Column::MessageId.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await?;
        out.extend(found);
    }
    Ok(out)
}

/// Record several messages at once (callers checked [`already`] first under
/// their own locks; a concurrent writer of the same id makes this fail, and
/// the caller's transaction is retried).
pub async fn record_many(
    conn: &impl ConnectionTrait,
    consumer: &str,
    message_ids: &[String],
) -> Result<()> {
    let now = Utc::now();
    for chunk in message_ids.chunks(500) {
        if chunk.is_empty() {
            continue;
        }
        processed_message::Entity::insert_many(chunk.iter().map(|id| {
            processed_message::ActiveModel {
                consumer: Set(consumer.to_owned()),
                message_id: Set(id.clone()),
                processed_at: Set(now),
            }
        }))
        .exec_without_returning(conn)
        .await?;
    }
    Ok(())
}
