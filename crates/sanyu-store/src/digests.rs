//! Digests: non-critical notices to one person on one channel within a
//! window, sent as one message listing the case references (issue 16).
//!
//! A digest is `open` while it takes members: one per person and channel
//! (`open_key`, unique), shared by every notifier replica. A notice joins
//! the open digest (or opens one that closes a window later) in the same
//! transaction that gives its delivery row back, and is redelivered when the
//! digest closes. Whichever member comes back first then claims the digest
//! with a lease (`sending`; it takes no more members, so a later notice opens
//! the next digest), sends it once, and finishes every member's delivery row
//! with the outcome: the ladder still sees each case's notice. A send that
//! failed for now leaves it `waiting` for the next member to try again; a
//! claim whose holder stopped is taken over when its lease ends, like a
//! delivery row's.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::{
    delivery, notification_digest as digest, notification_digest_member as member,
};
use crate::{Result, StoreError};

pub const OPEN: &str = "open";
pub const SENDING: &str = "sending";
pub const WAITING: &str = "waiting";
pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";

/// A digest as its members see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub id: Uuid,
    pub status: String,
    pub closes_at: DateTime<Utc>,
    /// The live claim's end while `sending`.
    pub lease_until: Option<DateTime<Utc>>,
    pub members: i32,
}

impl From<digest::Model> for Digest {
    fn from(m: digest::Model) -> Self {
        Self {
            id: m.id,
            status: m.status,
            closes_at: m.closes_at,
            lease_until: m.lease_until,
            members: m.members,
        }
    }
}

/// One notice in a digest: one channel of one notification request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its delivery row (`<notification_key>:<channel>`).
    pub delivery_key: String,
    pub notification_key: String,
    pub case_id: Uuid,
    pub reference: String,
    /// The level's name (`high`, `elevated`).
    pub level: String,
    /// The notification reason's name.
    pub reason: String,
    /// The request's envelope school and partition.
    pub school: String,
    pub partition: u32,
}

impl From<member::Model> for Member {
    fn from(m: member::Model) -> Self {
        Self {
            delivery_key: m.delivery_key,
            notification_key: m.notification_key,
            case_id: m.case_id,
            reference: m.reference,
            level: m.level,
            reason: m.reason,
            school: m.school,
            partition: u32::try_from(m.partition).unwrap_or(0),
        }
    }
}

/// Where a notice goes and for how long digests of it gather.
#[derive(Debug, Clone)]
pub struct Join<'a> {
    pub recipient_staff_id: Uuid,
    pub channel: &'a str,
    pub window: Duration,
    /// The worker whose claim on the member's delivery row is given back.
    pub worker: &'a str,
}

fn open_key(staff: Uuid, channel: &str) -> String {
    format!("{staff}:{channel}")
}

/// The digest `member` is in: the one it joined before, or the open digest of
/// the person and channel (opened now, to close a window later, when there is
/// none). The member's delivery row, claimed by `join.worker`, is given back
/// in the same transaction (the digest's sender finishes it).
pub async fn join(conn: &impl ConnectionTrait, join: &Join<'_>, m: &Member) -> Result<Digest> {
    let digest = join_once(conn, join, m).await?;
    delivery::Entity::update_many()
        .col_expr(
            delivery::Column::Status,
            Expr::value(crate::deliveries::PENDING),
        )
        .col_expr(
            delivery::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            delivery::Column::LastError,
            Expr::value(Some(format!("in digest {}", digest.id))),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(delivery::Column::NotificationKey.eq(&m.delivery_key))
        .filter(delivery::Column::Status.eq(crate::deliveries::CLAIMED))
        .filter(delivery::Column::ClaimedBy.eq(join.worker))
        .exec(conn)
        .await?;
    Ok(digest)
}

async fn join_once(conn: &impl ConnectionTrait, join: &Join<'_>, m: &Member) -> Result<Digest> {
    if let Some(found) = member::Entity::find_by_id(m.delivery_key.clone())
        .one(conn)
        .await?
    {
        return get(conn, found.digest_id)
            .await?
            .ok_or(StoreError::NotFound("digest"));
    }
    let key = open_key(join.recipient_staff_id, join.channel);
    // Twice at most: a digest opened by another replica between the look-up
    // and the insert is found on the second round; one claimed for sending in
    // that moment leaves the key free for ours.
    for _ in 0..3 {
        let now = Utc::now();
        let open = digest::Entity::find()
            .filter(digest::Column::OpenKey.eq(&key))
            .one(conn)
            .await?;
        let Some(open) = open else {
            digest::Entity::insert(digest::ActiveModel {
                id: Set(Uuid::now_v7()),
                recipient_staff_id: Set(join.recipient_staff_id),
                channel: Set(join.channel.to_owned()),
                status: Set(OPEN.to_owned()),
                open_key: Set(Some(key.clone())),
                members: Set(0),
                opened_at: Set(now),
                closes_at: Set(now + join.window),
                claimed_by: Set(None),
                lease_until: Set(None),
                sending_since: Set(None),
                finished_at: Set(None),
                last_error: Set(None),
            })
            .on_conflict(
                OnConflict::column(digest::Column::OpenKey)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
            continue;
        };
        // Counting the member locks the row: a claim for sending waits for
        // this transaction, then reads the member with the rest.
        let counted = digest::Entity::update_many()
            .col_expr(
                digest::Column::Members,
                Expr::col(digest::Column::Members).add(1),
            )
            .filter(digest::Column::Id.eq(open.id))
            .filter(digest::Column::Status.eq(OPEN))
            .exec(conn)
            .await?;
        if counted.rows_affected != 1 {
            continue;
        }
        member::Entity::insert(member::ActiveModel {
            delivery_key: Set(m.delivery_key.clone()),
            digest_id: Set(open.id),
            notification_key: Set(m.notification_key.clone()),
            case_id: Set(m.case_id),
            reference: Set(m.reference.clone()),
            level: Set(m.level.clone()),
            reason: Set(m.reason.clone()),
            school: Set(m.school.clone()),
            partition: Set(i64::from(m.partition)),
            added_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        return Ok(Digest {
            members: open.members + 1,
            ..open.into()
        });
    }
    Err(StoreError::Db(sea_orm::DbErr::Custom(
        "no open digest could be joined (contention)".into(),
    )))
}

pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Digest>> {
    Ok(digest::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(Into::into))
}

/// A claim on a digest for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Every member, oldest first.
    pub members: Vec<Member>,
    /// When the previous holder started a send whose outcome it never
    /// recorded: the provider may have accepted it (a possible duplicate).
    pub interrupted: Option<DateTime<Utc>>,
}

/// Claim digest `id` for sending: an open one that has closed (or any open
/// one when `early`: its members' last delivery), a waiting one, or one
/// whose sender's lease ended. It takes no more members from now on.
pub async fn claim(
    conn: &impl ConnectionTrait,
    id: Uuid,
    worker: &str,
    lease: Duration,
    early: bool,
) -> Result<Option<Claimed>> {
    let now = Utc::now();
    let before = digest::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(StoreError::NotFound("digest"))?;
    let mut open = Condition::all().add(digest::Column::Status.eq(OPEN));
    if !early {
        open = open.add(digest::Column::ClosesAt.lte(now));
    }
    let taken = digest::Entity::update_many()
        .col_expr(digest::Column::Status, Expr::value(SENDING))
        .col_expr(digest::Column::OpenKey, Expr::value(Option::<String>::None))
        .col_expr(digest::Column::ClaimedBy, Expr::value(Some(worker)))
        .col_expr(digest::Column::LeaseUntil, Expr::value(Some(now + lease)))
        .filter(digest::Column::Id.eq(id))
        .filter(
            Condition::any()
                .add(open)
                .add(digest::Column::Status.eq(WAITING))
                .add(
                    Condition::all()
                        .add(digest::Column::Status.eq(SENDING))
                        .add(digest::Column::LeaseUntil.lt(now)),
                ),
        )
        .exec(conn)
        .await?;
    if taken.rows_affected != 1 {
        return Ok(None);
    }
    let members = member::Entity::find()
        .filter(member::Column::DigestId.eq(id))
        .order_by_asc(member::Column::AddedAt)
        .order_by_asc(member::Column::DeliveryKey)
        .all(conn)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Some(Claimed {
        members,
        interrupted: if before.status == SENDING {
            before.sending_since
        } else {
            None
        },
    }))
}

/// Record, before the provider is called, that `worker` is sending digest
/// `id` (the caller commits it first). False when the claim is no longer its.
pub async fn mark_sending(conn: &impl ConnectionTrait, id: Uuid, worker: &str) -> Result<bool> {
    let updated = digest::Entity::update_many()
        .col_expr(digest::Column::SendingSince, Expr::value(Some(Utc::now())))
        .filter(digest::Column::Id.eq(id))
        .filter(digest::Column::Status.eq(SENDING))
        .filter(digest::Column::ClaimedBy.eq(worker))
        .exec(conn)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Hold an open digest until `until` (quiet hours): it keeps taking members.
pub async fn hold(conn: &impl ConnectionTrait, id: Uuid, until: DateTime<Utc>) -> Result<()> {
    digest::Entity::update_many()
        .col_expr(digest::Column::ClosesAt, Expr::value(until))
        .filter(digest::Column::Id.eq(id))
        .filter(digest::Column::Status.eq(OPEN))
        .exec(conn)
        .await?;
    Ok(())
}

/// The outcome of a claimed digest: `sent` or `failed` (final), or
/// `waiting` (failed for now: the next member tries again).
pub async fn finish(
    conn: &impl ConnectionTrait,
    id: Uuid,
    status: &str,
    error: Option<String>,
) -> Result<()> {
    let now = Utc::now();
    let mut update = digest::Entity::update_many()
        .col_expr(digest::Column::Status, Expr::value(status))
        .col_expr(
            digest::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            digest::Column::SendingSince,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(digest::Column::LastError, Expr::value(error));
    if status != WAITING {
        update = update.col_expr(digest::Column::FinishedAt, Expr::value(Some(now)));
    }
    update.filter(digest::Column::Id.eq(id)).exec(conn).await?;
    Ok(())
}
