//! Console sessions: opened on sign-in, checked on every request, ended by
//! sign-out, a timeout or a change to the staff member.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::key::{random_secret, sha256_hex};
use crate::Result;
use crate::entities::{console_session, staff};

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
    console_session::Entity::insert(console_session::ActiveModel::from(session.clone()))
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
