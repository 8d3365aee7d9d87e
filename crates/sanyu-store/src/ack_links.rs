//! Acknowledging from the message: the link a case notification carries
//! (`/a/<token>`) and the SMS a staff member's reply answers.
//!
//! # The link's token
//!
//! The token is **derived**, not drawn: the first 128 bits of
//! HMAC-SHA256(key, notification key), in lower-case base32 (26 characters),
//! with a key derived from the data key ([`AckKey`]). So
//!
//! * every send of a notification key — a retry, a takeover after a crash,
//!   the email and the SMS of the same request — carries the same link, and
//!   composing a message needs no write and no coordination: any notifier
//!   replica, before or after a restart, computes the same token;
//! * nobody without the data key can compute a token for a case (the
//!   notification key is made of ids, the MAC is what makes it secret), and
//!   tokens are as unguessable as 128 random bits;
//! * the database holds only a keyed hash of the token
//!   (HMAC-SHA256(key, `lookup` ‖ token), [`AckKey::lookup_hash`]) on the
//!   delivery row that the notifier writes anyway when it claims the key
//!   ([`crate::deliveries::DeliveryRequest::ack_token_hash`]): a copy of the
//!   database does not give away working links, and the gateway finds the
//!   row of a link with one indexed look-up, whichever replica wrote it.
//!
//! A link is bound to what its delivery row says: the case, the staff member
//! it was sent to, and the ladder epoch of its notification key; it holds for
//! `console.ack_link_ttl_hours` after the notification was first claimed.

use chrono::{DateTime, Duration, Utc};
use hmac::Mac;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::Result;
use crate::entities::delivery;

/// The path prefix of an acknowledgement link.
pub const LINK_PREFIX: &str = "/a/";

/// Characters of a token (128 bits in base32, no padding).
pub const TOKEN_LEN: usize = 26;

/// The key of acknowledgement links, derived from the data key.
#[derive(Clone)]
pub struct AckKey([u8; 32]);

impl std::fmt::Debug for AckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckKey(<redacted>)")
    }
}

impl AckKey {
    pub fn from_data_key(data_key_base64: &str) -> Result<Self> {
        Ok(Self(crate::crypto::derive_key(
            data_key_base64,
            b"sanyu-ack-link-v1",
        )?))
    }

    fn mac(&self, label: &[u8], value: &[u8]) -> [u8; 32] {
        let mut mac = crate::crypto::hmac_sha256(&self.0);
        mac.update(&(label.len() as u64).to_be_bytes());
        mac.update(label);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// The link token of notification `notification_key` (the request's
    /// key, not a channel's delivery key): the same on every send.
    pub fn token(&self, notification_key: &str) -> String {
        let mac = self.mac(b"token", notification_key.as_bytes());
        data_encoding::BASE32_NOPAD
            .encode(&mac[..16])
            .to_ascii_lowercase()
    }

    /// What the delivery row stores of `token`.
    pub fn lookup_hash(&self, token: &str) -> String {
        hex::encode(self.mac(b"lookup", token.as_bytes()))
    }
}

/// Whether `token` has the shape of a link token (checked before any
/// look-up: anything else is no link).
pub fn plausible_token(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// The ladder epoch named by a notification key
/// (`<case>:<staff>:e<epoch>:r<rung>`, see `sanyu_case::ladder`), if any.
pub fn epoch_of(notification_key: &str) -> Option<u32> {
    notification_key
        .split(':')
        .find_map(|part| part.strip_prefix('e')?.parse().ok())
}

/// What an acknowledgement link points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckLink {
    pub case_id: Uuid,
    /// Who the notification was sent to.
    pub staff_id: Uuid,
    /// The notification's key (its request's, without the channel).
    pub notification_key: String,
    pub epoch: Option<u32>,
    pub sent_at: DateTime<Utc>,
}

/// The link of `token`, while it holds (`ttl` after the notification was
/// first claimed). Unknown, malformed and expired tokens are all `None`.
pub async fn find_link(
    conn: &impl ConnectionTrait,
    key: &AckKey,
    token: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Option<AckLink>> {
    if !plausible_token(token) {
        return Ok(None);
    }
    let row = delivery::Entity::find()
        .filter(delivery::Column::AckTokenHash.eq(key.lookup_hash(token)))
        .order_by_asc(delivery::Column::CreatedAt)
        .one(conn)
        .await?;
    Ok(row
        .filter(|r| r.created_at + ttl > now && !r.case_id.is_nil())
        .map(|r| {
            let notification_key = crate::deliveries::request_key(&r.notification_key).to_owned();
            AckLink {
                case_id: r.case_id,
                staff_id: r.recipient_staff_id,
                epoch: epoch_of(&notification_key),
                notification_key,
                sent_at: r.created_at,
            }
        }))
}

/// The cases a staff member was sent an SMS about since `since` (one entry
/// per case, the most recent send first): what a reply of theirs answers.
/// Sends that failed for good do not count (they never reached the phone).
pub async fn cases_sent_by_sms(
    conn: &impl ConnectionTrait,
    staff_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
    let rows = delivery::Entity::find()
        .filter(delivery::Column::RecipientStaffId.eq(staff_id))
        .filter(delivery::Column::Channel.eq("sms"))
        .filter(delivery::Column::CreatedAt.gt(since))
        .filter(delivery::Column::Status.ne(crate::deliveries::FAILED))
        .filter(delivery::Column::CaseId.ne(Uuid::nil()))
        .order_by_desc(delivery::Column::CreatedAt)
        .all(conn)
        .await?;
    let mut cases: Vec<(Uuid, DateTime<Utc>)> = Vec::new();
    for r in rows {
        if !cases.iter().any(|(c, _)| *c == r.case_id) {
            cases.push((r.case_id, r.created_at));
        }
    }
    Ok(cases)
}

/// The delivery row of the voice call that `provider` placed with id
/// `call_id` (the provider's answer to the call request, recorded on the
/// accepted attempt): the case and the person called, for a key pressed
/// during the call. `None` for a call Sanyu did not place.
pub async fn voice_call(
    conn: &impl ConnectionTrait,
    provider: &str,
    call_id: &str,
) -> Result<Option<delivery::Model>> {
    use crate::entities::delivery_attempt;
    if call_id.trim().is_empty() {
        return Ok(None);
    }
    let Some(attempt) = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::ProviderMessageId.eq(call_id))
        .filter(delivery_attempt::Column::Provider.eq(provider))
        .filter(delivery_attempt::Column::Channel.eq("voice"))
        .filter(delivery_attempt::Column::Status.eq(crate::deliveries::ACCEPTED))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(delivery::Entity::find()
        .filter(delivery::Column::NotificationKey.eq(attempt.delivery_key))
        .filter(delivery::Column::CaseId.ne(Uuid::nil()))
        .one(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn key() -> AckKey {
        AckKey::from_data_key(&STANDARD.encode([7u8; 32])).expect("key")
    }

    #[test]
    fn a_token_is_the_same_for_every_send_of_a_key_and_differs_between_keys() {
        let k = key();
        let a = k.token("c:s:e1:r0");
        assert_eq!(a, k.token("c:s:e1:r0"));
        assert_ne!(a, k.token("c:s:e1:r1"));
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(plausible_token(&a), "{a}");
        let other = AckKey::from_data_key(&STANDARD.encode([8u8; 32])).expect("key");
        assert_ne!(a, other.token("c:s:e1:r0"), "the data key makes the token");
        assert_ne!(k.lookup_hash(&a), a, "only a hash is stored");
    }

    #[test]
    fn only_token_shaped_strings_are_looked_up() {
        assert!(!plausible_token(""));
        assert!(!plausible_token("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        assert!(!plausible_token("abcdefghijklmnopqrstuvwxy1"));
        assert!(!plausible_token("abcdefghijklmnopqrstuvwxyz2"));
        assert!(plausible_token("abcdefghijklmnopqrstuvwx27"));
    }

    #[test]
    fn the_epoch_is_read_from_the_notification_key() {
        assert_eq!(epoch_of("0193-a:0193-b:e3:r1"), Some(3));
        assert_eq!(epoch_of("sign_in:0193"), None);
    }
}
