//! The one-time sign-in link an emailed code comes with.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::channel::mark_verified;
use super::code::{active_staff, use_up};
use super::{CodeChannel, ConsoleKey, MAX_ATTEMPTS};
use crate::Result;
use crate::entities::{console_sign_in_code, staff};

/// The answer to a sign-in link used.
#[derive(Debug)]
pub enum LinkCheck {
    /// The link's challenge is used up now; open a session for `staff`.
    Accepted {
        challenge_id: Uuid,
        staff: Box<staff::Model>,
        return_to: Option<String>,
    },
    /// No such link, or it is used, expired, locked, or its person is no
    /// longer active: `why` (for the audit record only; every refusal gets
    /// the same answer).
    Refused {
        challenge_id: Option<Uuid>,
        why: &'static str,
    },
}

async fn link_row(
    conn: &impl ConnectionTrait,
    key: &ConsoleKey,
    token: &str,
) -> Result<Option<console_sign_in_code::Model>> {
    let token = token.trim();
    // A token is 43 base64url characters; anything else is nobody's.
    if token.len() != 43
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(None);
    }
    Ok(console_sign_in_code::Entity::find()
        .filter(console_sign_in_code::Column::LinkHash.eq(key.link_hash(token)))
        .one(conn)
        .await?)
}

/// Why a link's challenge no longer signs anybody in, if it does not.
fn link_refusal(row: &console_sign_in_code::Model, now: DateTime<Utc>) -> Option<&'static str> {
    if row.used_at.is_some() {
        Some("used")
    } else if row.expires_at <= now {
        Some("expired")
    } else if row.attempts >= MAX_ATTEMPTS {
        Some("locked")
    } else if row.staff_id.is_none() {
        Some("unknown")
    } else {
        None
    }
}

/// Whether sign-in link `token` would sign somebody in now. Reads only: the
/// page a link opens (and a chat app's preview of it) uses nothing up.
pub async fn peek_link(
    conn: &impl ConnectionTrait,
    key: &ConsoleKey,
    token: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    Ok(link_row(conn, key, token)
        .await?
        .is_some_and(|row| link_refusal(&row, now).is_none()))
}

/// Use sign-in link `token`, in the caller's write transaction: once, before
/// its challenge expires, and only while the challenge is unused (the code
/// and the link are one challenge: either signs in, once).
pub async fn use_link(
    txn: &impl ConnectionTrait,
    key: &ConsoleKey,
    token: &str,
    now: DateTime<Utc>,
) -> Result<LinkCheck> {
    let Some(row) = link_row(txn, key, token).await? else {
        return Ok(LinkCheck::Refused {
            challenge_id: None,
            why: "unknown",
        });
    };
    let challenge_id = Some(row.id);
    if let Some(why) = link_refusal(&row, now) {
        return Ok(LinkCheck::Refused { challenge_id, why });
    }
    let person = active_staff(txn, row.staff_id).await?;
    let Some(person) = person else {
        return Ok(LinkCheck::Refused {
            challenge_id,
            why: "inactive",
        });
    };
    if !use_up(txn, row.id, now).await? {
        return Ok(LinkCheck::Refused {
            challenge_id,
            why: "used",
        });
    }
    mark_verified(txn, key, &row, &person, CodeChannel::Email, now).await?;
    Ok(LinkCheck::Accepted {
        challenge_id: row.id,
        staff: Box::new(person),
        return_to: row.return_to,
    })
}
