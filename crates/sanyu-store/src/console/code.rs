//! Asking for a one-time code and checking one typed in.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use uuid::Uuid;

use super::channel::{address_of, mark_verified};
use super::key::{random_code, random_secret, sha256_hex};
use super::{CODE_TTL_MINUTES, CodeChannel, ConsoleKey, MAX_ATTEMPTS, pick_channel};
use crate::Result;
use crate::entities::{console_sign_in_code, staff};

/// How many codes may be asked for within [`Self::window`].
#[derive(Debug, Clone, Copy)]
pub struct CodeLimits {
    /// Per thing typed (staff number, email, phone): answered "too many".
    pub per_identifier: u64,
    /// Per client address: answered "too many".
    pub per_address: u64,
    /// Per staff member (over all their identifiers): further codes are
    /// silently not sent (the answer must not tell that the account exists).
    pub per_staff: u64,
    pub window: Duration,
}

impl Default for CodeLimits {
    fn default() -> Self {
        Self {
            per_identifier: 3,
            per_address: 20,
            per_staff: 5,
            window: Duration::minutes(15),
        }
    }
}

/// What a person asked a code for.
#[derive(Debug, Clone)]
pub struct CodeAsk<'a> {
    /// Staff number, email or phone, as typed.
    pub identifier: &'a str,
    pub client_addr: &'a str,
    /// The console page to land on after sign-in.
    pub return_to: Option<String>,
    /// The channel chosen on the form.
    pub wanted: CodeChannel,
    /// Whether the deployment has an SMS provider.
    pub sms_enabled: bool,
}

/// A code to send: to whom, how, and (by email) the token of its link.
#[derive(Debug)]
pub struct CodeSend {
    pub staff: staff::Model,
    pub code: String,
    pub channel: CodeChannel,
    /// The one-time sign-in link's token (an emailed code only).
    pub link_token: Option<String>,
}

/// The answer to asking for a code.
#[derive(Debug)]
pub enum CodeRequest {
    /// A challenge exists: the browser keeps `secret`. `send` is what to
    /// send to whom, when somebody matched, can be reached and is not over
    /// their own limit.
    Issued {
        challenge_id: Uuid,
        secret: String,
        send: Option<Box<CodeSend>>,
    },
    /// Too many codes for what was typed or from this address.
    RateLimited,
}

/// The one active staff member with an email address or a phone whom
/// `identifier` names (staff number, email or phone); `None` when nobody or
/// more than one person matches (a staff number is unique only within a
/// school).
pub async fn find_staff(
    conn: &impl ConnectionTrait,
    identifier: &str,
) -> Result<Option<staff::Model>> {
    let typed = identifier.trim();
    if typed.is_empty() {
        return Ok(None);
    }
    let lower = typed.to_lowercase();
    let found: Vec<staff::Model> = staff::Entity::find()
        .filter(staff::Column::Active.eq(true))
        .filter(
            Condition::any()
                .add(staff::Column::StaffNo.eq(typed))
                .add(staff::Column::Phone.eq(typed))
                .add(staff::Column::Email.eq(typed))
                .add(staff::Column::Email.eq(lower.as_str())),
        )
        .all(conn)
        .await?
        .into_iter()
        .filter(|s| pick_channel(s, CodeChannel::Email, true).is_some())
        .collect();
    Ok(match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// Ask for a code (see the module's notes). Runs in the caller's write
/// transaction, where the caller also enqueues the message.
pub async fn request_code(
    txn: &impl ConnectionTrait,
    key: &ConsoleKey,
    ask: CodeAsk<'_>,
    limits: CodeLimits,
    now: DateTime<Utc>,
) -> Result<CodeRequest> {
    let CodeAsk {
        identifier,
        client_addr,
        return_to,
        wanted,
        sms_enabled,
    } = ask;
    let since = now - limits.window;
    let identifier_hash = key.identifier_hash(identifier);
    let by_identifier = console_sign_in_code::Entity::find()
        .filter(console_sign_in_code::Column::IdentifierHash.eq(&identifier_hash))
        .filter(console_sign_in_code::Column::CreatedAt.gt(since))
        .count(txn)
        .await?;
    let by_address = console_sign_in_code::Entity::find()
        .filter(console_sign_in_code::Column::ClientAddr.eq(client_addr))
        .filter(console_sign_in_code::Column::CreatedAt.gt(since))
        .count(txn)
        .await?;
    if by_identifier >= limits.per_identifier || by_address >= limits.per_address {
        return Ok(CodeRequest::RateLimited);
    }
    let mut person = find_staff(txn, identifier).await?;
    if let Some(p) = &person {
        let by_staff = console_sign_in_code::Entity::find()
            .filter(console_sign_in_code::Column::StaffId.eq(p.id))
            .filter(console_sign_in_code::Column::CreatedAt.gt(since))
            .count(txn)
            .await?;
        if by_staff >= limits.per_staff {
            person = None;
        }
    }
    let send = person.and_then(|p| pick_channel(&p, wanted, sms_enabled).map(|c| (p, c)));
    let channel = send.as_ref().map_or(CodeChannel::Email, |(_, c)| *c);
    let link_token = (channel == CodeChannel::Email && send.is_some()).then(random_secret);
    let challenge_id = Uuid::now_v7();
    let secret = random_secret();
    let code = random_code();
    console_sign_in_code::Entity::insert(console_sign_in_code::ActiveModel {
        id: Set(challenge_id),
        challenge_hash: Set(sha256_hex(&secret)),
        identifier_hash: Set(identifier_hash),
        staff_id: Set(send.as_ref().map(|(p, _)| p.id)),
        code_hash: Set(key.code_hash(challenge_id, &code)),
        client_addr: Set(client_addr.to_owned()),
        return_to: Set(return_to),
        attempts: Set(0),
        created_at: Set(now),
        expires_at: Set(now + Duration::minutes(CODE_TTL_MINUTES)),
        used_at: Set(None),
        link_hash: Set(link_token.as_deref().map(|t| key.link_hash(t))),
        channel: Set(channel.as_str().to_owned()),
        sent_to_hash: Set(send
            .as_ref()
            .and_then(|(p, c)| address_of(p, *c))
            .map(|a| key.sent_to_hash(challenge_id, channel, a))),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(CodeRequest::Issued {
        challenge_id,
        secret,
        send: send.map(|(staff, channel)| {
            Box::new(CodeSend {
                staff,
                code,
                channel,
                link_token,
            })
        }),
    })
}

/// The answer to a code typed in.
#[derive(Debug)]
pub enum CodeCheck {
    /// Right: the challenge is used up; open a session for `staff`.
    Accepted {
        challenge_id: Uuid,
        staff: Box<staff::Model>,
        return_to: Option<String>,
        /// How the code went (for the audit record).
        channel: CodeChannel,
    },
    /// Wrong (or nobody matched): `left` tries remain.
    Wrong {
        challenge_id: Uuid,
        left: i32,
    },
    /// No tries left.
    Locked {
        challenge_id: Uuid,
    },
    /// Used already (a code works once).
    Used {
        challenge_id: Uuid,
    },
    Expired {
        challenge_id: Uuid,
    },
    /// No such challenge (no cookie, or a forged one).
    Unknown,
}

/// Check a typed code against the browser's challenge, in the caller's write
/// transaction. Every try counts, right or wrong.
pub async fn check_code(
    txn: &impl ConnectionTrait,
    key: &ConsoleKey,
    secret: &str,
    code: &str,
    now: DateTime<Utc>,
) -> Result<CodeCheck> {
    let Some(row) = console_sign_in_code::Entity::find()
        .filter(console_sign_in_code::Column::ChallengeHash.eq(sha256_hex(secret)))
        .one(txn)
        .await?
    else {
        return Ok(CodeCheck::Unknown);
    };
    let challenge_id = row.id;
    if row.used_at.is_some() {
        return Ok(CodeCheck::Used { challenge_id });
    }
    if row.expires_at <= now {
        return Ok(CodeCheck::Expired { challenge_id });
    }
    if row.attempts >= MAX_ATTEMPTS {
        return Ok(CodeCheck::Locked { challenge_id });
    }
    // Count the try; a concurrent try of the same challenge loses the race
    // and is answered as locked rather than getting a free attempt.
    let counted = console_sign_in_code::Entity::update_many()
        .col_expr(
            console_sign_in_code::Column::Attempts,
            Expr::value(row.attempts + 1),
        )
        .filter(console_sign_in_code::Column::Id.eq(row.id))
        .filter(console_sign_in_code::Column::Attempts.eq(row.attempts))
        .filter(console_sign_in_code::Column::UsedAt.is_null())
        .exec(txn)
        .await?;
    if counted.rows_affected != 1 {
        return Ok(CodeCheck::Locked { challenge_id });
    }
    let typed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let right = key.code_matches(row.id, &typed, &row.code_hash);
    let person = if right {
        active_staff(txn, row.staff_id).await?
    } else {
        None
    };
    let Some(person) = person else {
        let left = MAX_ATTEMPTS - (row.attempts + 1);
        return Ok(if left <= 0 {
            CodeCheck::Locked { challenge_id }
        } else {
            CodeCheck::Wrong { challenge_id, left }
        });
    };
    if !use_up(txn, row.id, now).await? {
        return Ok(CodeCheck::Used { challenge_id });
    }
    mark_verified(
        txn,
        key,
        &row,
        &person,
        CodeChannel::parse(&row.channel),
        now,
    )
    .await?;
    Ok(CodeCheck::Accepted {
        challenge_id,
        staff: Box::new(person),
        return_to: row.return_to,
        channel: CodeChannel::parse(&row.channel),
    })
}

/// The staff member `staff_id`, while active; `None` for no id.
pub(super) async fn active_staff(
    txn: &impl ConnectionTrait,
    staff_id: Option<Uuid>,
) -> Result<Option<staff::Model>> {
    Ok(match staff_id {
        Some(id) => staff::Entity::find_by_id(id)
            .one(txn)
            .await?
            .filter(|s| s.active),
        None => None,
    })
}

/// Use up challenge `id` (its code and its link); `false` when it was used
/// already.
pub(super) async fn use_up(
    txn: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool> {
    let used = console_sign_in_code::Entity::update_many()
        .col_expr(console_sign_in_code::Column::UsedAt, Expr::value(now))
        .filter(console_sign_in_code::Column::Id.eq(id))
        .filter(console_sign_in_code::Column::UsedAt.is_null())
        .exec(txn)
        .await?;
    Ok(used.rows_affected == 1)
}
