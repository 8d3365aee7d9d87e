//! `Idempotency-Key` records: a repeated request gets the first response again.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use uuid::Uuid;

use crate::Result;
use crate::entities::idempotency_key;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

pub async fn find(
    conn: &impl ConnectionTrait,
    token_id: Uuid,
    key: &str,
) -> Result<Option<StoredResponse>> {
    Ok(
        idempotency_key::Entity::find_by_id((token_id, key.to_owned()))
            .one(conn)
            .await?
            .map(|m| StoredResponse {
                request_hash: m.request_hash,
                status: u16::try_from(m.response_status).unwrap_or(500),
                body: m.response_body,
            }),
    )
}

pub async fn save(
    conn: &impl ConnectionTrait,
    token_id: Uuid,
    key: &str,
    response: &StoredResponse,
) -> Result<()> {
    idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        token_id: Set(token_id),
        key: Set(key.to_owned()),
        request_hash: Set(response.request_hash.clone()),
        response_status: Set(i32::from(response.status)),
        response_body: Set(response.body.clone()),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}
