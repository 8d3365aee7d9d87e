//! Shared by the scheduler's tests: what the scheduler asked the notifier to
//! send, read back from the outbox.

use std::collections::BTreeMap;

use sanyu_events::{Payload, v1};
use sanyu_store::Db;
use sanyu_store::entities::{outbox, staff};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

/// Every notification request in the outbox, in order, with its recipient's
/// staff number.
pub async fn requests(db: &Db) -> Vec<(String, v1::NotificationRequested)> {
    let staff: BTreeMap<Uuid, String> = staff::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.staff_no))
        .collect();
    outbox::Entity::find()
        .filter(outbox::Column::Subject.starts_with("sanyu.notify.requested"))
        .order_by_asc(outbox::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .filter_map(
            |r| match sanyu_events::decode(&r.payload).unwrap().payload {
                Some(Payload::NotificationRequested(n)) => {
                    let who = staff[&Uuid::parse_str(&n.recipient_staff_id).unwrap()].clone();
                    Some((who, n))
                }
                _ => None,
            },
        )
        .collect()
}
