//! The console's sign-in and sessions.
//!
//! - A one-time code is asked for with a staff number, email or phone. A
//!   challenge row is written whether or not anybody matched (then without a
//!   staff member, so no code can ever succeed): the answer, the attempts and
//!   the lock look the same either way. The code is stored as a keyed hash
//!   (HMAC with a key derived from the data key, bound to the challenge), the
//!   browser's challenge secret as a SHA-256 hash; what was typed is kept
//!   only as a keyed hash, for the rate limits.
//! - A code is single use, expires, and allows [`MAX_ATTEMPTS`] tries.
//! - The code goes by email, or by SMS when the deployment has an SMS
//!   provider, the person has a phone and chose SMS (or has no email):
//!   [`pick_channel`]. An emailed code comes with a one-time sign-in link:
//!   a random token stored as a keyed hash on the same challenge, so it
//!   expires with the code and is used up with it ([`use_link`]); looking
//!   at it ([`peek_link`]) changes nothing.
//! - Sessions are rows; the cookie's token is stored as a SHA-256 hash. A
//!   session holds only while its staff member is active in the role it was
//!   opened with: a revoked staff member or a changed role ends it at once.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entities::{console_session, console_sign_in_code, staff};
use crate::{Result, StoreError};

/// Tries a code allows.
pub const MAX_ATTEMPTS: i32 = 5;
/// How long a code holds.
pub const CODE_TTL_MINUTES: i64 = 10;
/// Digits of a code.
pub const CODE_DIGITS: usize = 6;

type HmacSha256 = Hmac<Sha256>;

/// A code sealed for its notification request (base64url of the sealed
/// bytes): only the notifier, holding the data key, opens it to send it.
pub fn seal_code(sealer: &crate::crypto::Sealer, code: &str) -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(sealer.seal(code)?))
}

/// Open a code sealed by [`seal_code`].
pub fn open_code(sealer: &crate::crypto::Sealer, sealed: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(sealed.trim())
        .map_err(|_| StoreError::Unseal)?;
    sealer.open(&bytes)
}

/// The key of the codes' and identifiers' hashes, derived from the data key.
#[derive(Clone)]
pub struct ConsoleKey([u8; 32]);

impl std::fmt::Debug for ConsoleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleKey(<redacted>)")
    }
}

impl ConsoleKey {
    pub fn from_data_key(data_key_base64: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(data_key_base64.trim())
            .map_err(|e| StoreError::DataKey(format!("not base64: {e}")))?;
        let mut hasher = Sha256::new();
        hasher.update(b"sanyu-console-sign-in-v1");
        hasher.update(&bytes);
        Ok(Self(hasher.finalize().into()))
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn hex(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    fn code_hash(&self, challenge: Uuid, code: &str) -> String {
        self.hex(&[b"code", challenge.as_bytes(), code.as_bytes()])
    }

    fn code_matches(&self, challenge: Uuid, code: &str, stored: &str) -> bool {
        let Ok(stored) = hex::decode(stored) else {
            return false;
        };
        self.mac(&[b"code", challenge.as_bytes(), code.as_bytes()])
            .verify_slice(&stored)
            .is_ok()
    }

    fn link_hash(&self, token: &str) -> String {
        self.hex(&[b"link", token.as_bytes()])
    }

    fn identifier_hash(&self, identifier: &str) -> String {
        self.hex(&[b"identifier", normalize(identifier).as_bytes()])
    }

    /// The keyed hash of the address a challenge's code went to.
    fn sent_to_hash(&self, challenge: Uuid, channel: CodeChannel, address: &str) -> String {
        self.hex(&[
            b"sent-to",
            challenge.as_bytes(),
            channel.as_str().as_bytes(),
            address.trim().as_bytes(),
        ])
    }
}

/// The address a code for `person` goes to on `channel`.
fn address_of(person: &staff::Model, channel: CodeChannel) -> Option<&str> {
    match channel {
        CodeChannel::Sms => person.phone.as_deref(),
        CodeChannel::Email => person.email.as_deref(),
    }
    .filter(|a| !a.trim().is_empty())
}

/// A code (or link) of challenge `row`, sent to `person` on `channel`, was
/// used: the address it went to is verified, while it is still theirs (an
/// address the roster changed since the send is not).
async fn mark_verified(
    txn: &impl ConnectionTrait,
    key: &ConsoleKey,
    row: &console_sign_in_code::Model,
    person: &staff::Model,
    channel: CodeChannel,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(address) = address_of(person, channel) else {
        return Ok(());
    };
    if row.sent_to_hash.as_deref() != Some(&key.sent_to_hash(row.id, channel, address)) {
        return Ok(());
    }
    let channel = match channel {
        CodeChannel::Sms => crate::contacts::SMS,
        CodeChannel::Email => crate::contacts::EMAIL,
    };
    crate::contacts::record(txn, person.id, channel, address, now).await
}

fn normalize(identifier: &str) -> String {
    identifier.trim().to_lowercase()
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_code() -> String {
    let n: u32 = rand::rng().random_range(0..10u32.pow(CODE_DIGITS as u32));
    format!("{n:0width$}", width = CODE_DIGITS)
}

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

/// How a code goes to its person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeChannel {
    Email,
    Sms,
}

impl CodeChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    /// `sms` is SMS; anything else is email (the default).
    pub fn parse(s: &str) -> Self {
        if s.trim() == "sms" {
            Self::Sms
        } else {
            Self::Email
        }
    }
}

/// The channel a code for `person` goes by: the one asked for when the person
/// can be reached on it, else the other one they can be reached on (SMS only
/// when the deployment has an SMS provider); `None` when neither.
pub fn pick_channel(
    person: &staff::Model,
    wanted: CodeChannel,
    sms_enabled: bool,
) -> Option<CodeChannel> {
    let has = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    let email = has(&person.email);
    let sms = sms_enabled && has(&person.phone);
    match wanted {
        CodeChannel::Sms if sms => Some(CodeChannel::Sms),
        _ if email => Some(CodeChannel::Email),
        _ if sms => Some(CodeChannel::Sms),
        _ => None,
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
    let person = match (right, row.staff_id) {
        (true, Some(staff_id)) => staff::Entity::find_by_id(staff_id)
            .one(txn)
            .await?
            .filter(|s| s.active),
        _ => None,
    };
    let Some(person) = person else {
        let left = MAX_ATTEMPTS - (row.attempts + 1);
        return Ok(if left <= 0 {
            CodeCheck::Locked { challenge_id }
        } else {
            CodeCheck::Wrong { challenge_id, left }
        });
    };
    let used = console_sign_in_code::Entity::update_many()
        .col_expr(console_sign_in_code::Column::UsedAt, Expr::value(now))
        .filter(console_sign_in_code::Column::Id.eq(row.id))
        .filter(console_sign_in_code::Column::UsedAt.is_null())
        .exec(txn)
        .await?;
    if used.rows_affected != 1 {
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
    let person = match row.staff_id {
        Some(id) => staff::Entity::find_by_id(id)
            .one(txn)
            .await?
            .filter(|s| s.active),
        None => None,
    };
    let Some(person) = person else {
        return Ok(LinkCheck::Refused {
            challenge_id,
            why: "inactive",
        });
    };
    let used = console_sign_in_code::Entity::update_many()
        .col_expr(console_sign_in_code::Column::UsedAt, Expr::value(now))
        .filter(console_sign_in_code::Column::Id.eq(row.id))
        .filter(console_sign_in_code::Column::UsedAt.is_null())
        .exec(txn)
        .await?;
    if used.rows_affected != 1 {
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

/// A session just opened: `token` goes into the cookie and is never stored.
#[derive(Debug)]
pub struct OpenedSession {
    pub session: console_session::Model,
    pub token: String,
}

/// Open a session for `person` in the role they hold now.
pub async fn open_session(
    txn: &impl ConnectionTrait,
    person: &staff::Model,
    client_addr: &str,
    absolute: Duration,
    now: DateTime<Utc>,
) -> Result<OpenedSession> {
    let token = random_secret();
    let session = console_session::Model {
        id: Uuid::now_v7(),
        token_hash: sha256_hex(&token),
        csrf_token: random_secret(),
        staff_id: person.id,
        school_id: person.school_id,
        class_id: person.class_id,
        role: person.role.clone(),
        client_addr: client_addr.to_owned(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + absolute,
        ended_at: None,
        end_reason: None,
    };
    console_session::Entity::insert(console_session::ActiveModel {
        id: Set(session.id),
        token_hash: Set(session.token_hash.clone()),
        csrf_token: Set(session.csrf_token.clone()),
        staff_id: Set(session.staff_id),
        school_id: Set(session.school_id),
        class_id: Set(session.class_id),
        role: Set(session.role.clone()),
        client_addr: Set(session.client_addr.clone()),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(session.expires_at),
        ended_at: Set(None),
        end_reason: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(OpenedSession { session, token })
}

/// Why a session ended.
pub mod end_reason {
    pub const SIGN_OUT: &str = "sign_out";
    pub const IDLE: &str = "idle";
    pub const ABSOLUTE: &str = "absolute";
    pub const STAFF_CHANGED: &str = "staff_changed";
}

/// A presented session token.
#[derive(Debug)]
pub enum SessionCheck {
    Valid(console_session::Model),
    /// It held until now: ended here for `reason` (audit it).
    Ended {
        session: console_session::Model,
        reason: &'static str,
    },
    /// Unknown, or ended before.
    None,
}

/// Check a session token: idle and absolute timeouts, and the staff member
/// still active in the session's role. `touch` moves the idle clock (a
/// person's request does; a page's background refresh does not).
pub async fn check_session(
    conn: &impl ConnectionTrait,
    token: &str,
    idle: Duration,
    touch: bool,
    now: DateTime<Utc>,
) -> Result<SessionCheck> {
    let Some(session) = console_session::Entity::find()
        .filter(console_session::Column::TokenHash.eq(sha256_hex(token)))
        .filter(console_session::Column::EndedAt.is_null())
        .one(conn)
        .await?
    else {
        return Ok(SessionCheck::None);
    };
    let reason = if now >= session.expires_at {
        Some(end_reason::ABSOLUTE)
    } else if now - session.last_seen_at >= idle {
        Some(end_reason::IDLE)
    } else {
        let person = staff::Entity::find_by_id(session.staff_id)
            .one(conn)
            .await?;
        let holds = person.is_some_and(|p| {
            p.active
                && p.role == session.role
                && p.school_id == session.school_id
                && p.class_id == session.class_id
        });
        (!holds).then_some(end_reason::STAFF_CHANGED)
    };
    if let Some(reason) = reason {
        return Ok(if end_session(conn, session.id, reason, now).await? {
            SessionCheck::Ended { session, reason }
        } else {
            SessionCheck::None
        });
    }
    if touch {
        console_session::Entity::update_many()
            .col_expr(console_session::Column::LastSeenAt, Expr::value(now))
            .filter(console_session::Column::Id.eq(session.id))
            .exec(conn)
            .await?;
    }
    Ok(SessionCheck::Valid(session))
}

/// End one session; `false` when it had ended already.
pub async fn end_session(
    conn: &impl ConnectionTrait,
    id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = console_session::Entity::update_many()
        .col_expr(console_session::Column::EndedAt, Expr::value(now))
        .col_expr(console_session::Column::EndReason, Expr::value(reason))
        .filter(console_session::Column::Id.eq(id))
        .filter(console_session::Column::EndedAt.is_null())
        .exec(conn)
        .await?;
    Ok(done.rows_affected == 1)
}

/// End every open session of a staff member (revoked, or their role
/// changed). Returns how many ended.
pub async fn end_sessions_of_staff(
    conn: &impl ConnectionTrait,
    staff_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64> {
    let done = console_session::Entity::update_many()
        .col_expr(console_session::Column::EndedAt, Expr::value(now))
        .col_expr(
            console_session::Column::EndReason,
            Expr::value(end_reason::STAFF_CHANGED),
        )
        .filter(console_session::Column::StaffId.eq(staff_id))
        .filter(console_session::Column::EndedAt.is_null())
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ConsoleKey {
        ConsoleKey::from_data_key(&STANDARD.encode([7u8; 32])).expect("key")
    }

    #[test]
    fn a_code_hash_is_bound_to_its_challenge_and_code() {
        let k = key();
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let h = k.code_hash(a, "123456");
        assert!(k.code_matches(a, "123456", &h));
        assert!(!k.code_matches(a, "123457", &h));
        assert!(!k.code_matches(b, "123456", &h));
        assert!(!h.contains("123456"));
    }

    #[test]
    fn codes_have_six_digits() {
        for _ in 0..200 {
            let c = random_code();
            assert_eq!(c.len(), CODE_DIGITS);
            assert!(c.chars().all(|c| c.is_ascii_digit()));
        }
    }

    fn person(email: Option<&str>, phone: Option<&str>) -> staff::Model {
        staff::Model {
            id: Uuid::now_v7(),
            school_id: Uuid::now_v7(),
            staff_no: "K1".into(),
            name: "K".into(),
            role: "counsellor".into(),
            class_id: None,
            phone: phone.map(str::to_owned),
            email: email.map(str::to_owned),
            active: true,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_code_goes_by_the_channel_asked_for_when_the_person_has_it_else_the_other() {
        use CodeChannel::{Email, Sms};
        let both = person(Some("k@x.test"), Some("13900000003"));
        let email_only = person(Some("k@x.test"), None);
        let phone_only = person(None, Some("13900000003"));
        let neither = person(Some(" "), Some(""));
        assert_eq!(pick_channel(&both, Sms, true), Some(Sms));
        assert_eq!(pick_channel(&both, Email, true), Some(Email));
        // No SMS provider: email, whatever was asked.
        assert_eq!(pick_channel(&both, Sms, false), Some(Email));
        assert_eq!(pick_channel(&email_only, Sms, true), Some(Email));
        assert_eq!(pick_channel(&phone_only, Email, true), Some(Sms));
        assert_eq!(pick_channel(&phone_only, Sms, false), None);
        assert_eq!(pick_channel(&neither, Sms, true), None);
    }

    #[test]
    fn a_link_hash_is_keyed_and_holds_no_token() {
        let k = key();
        let other = ConsoleKey::from_data_key(&STANDARD.encode([8u8; 32])).expect("key");
        let token = random_secret();
        assert_eq!(token.len(), 43);
        assert_eq!(k.link_hash(&token), k.link_hash(&token));
        assert_ne!(k.link_hash(&token), other.link_hash(&token));
        assert_ne!(k.link_hash(&token), k.identifier_hash(&token));
        assert!(!k.link_hash(&token).contains(&token));
    }

    #[test]
    fn identifiers_hash_without_case_or_spaces() {
        let k = key();
        assert_eq!(
            k.identifier_hash(" Zhang@School.cn "),
            k.identifier_hash("zhang@school.cn")
        );
    }
}
