//! Opaque API tokens: random, shown once, stored only as a SHA-256 hash, with
//! role and scope (school, class), expiry and revocation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sanyu_domain::{Holder, Principal, Role};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entities::{api_token, staff};
use crate::{Result, StoreError};

const PREFIX: &str = "sy_";

/// What to issue.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub role: Role,
    pub school_code: String,
    pub class_code: Option<String>,
    pub staff_no: Option<String>,
    pub label: Option<String>,
    pub ttl: Duration,
}

/// An issued token: `secret` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: Uuid,
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("unknown school `{0}`")]
    UnknownSchool(String),
    #[error("unknown class `{0}` in this school")]
    UnknownClass(String),
    #[error("unknown staff number `{0}` in this school")]
    UnknownStaff(String),
    #[error("role `{0}` is bound to a class: give --class")]
    ClassRequired(Role),
    #[error(
        "staff `{staff}` has the role `{has}` on the roster (or is not active), not `{asked}`: a token that reads cases goes only with the staff member's confirmed role"
    )]
    RoleNotHeld {
        staff: String,
        has: String,
        asked: Role,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for IssueError {
    fn from(e: sea_orm::DbErr) -> Self {
        IssueError::Store(StoreError::Db(e))
    }
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub async fn issue(
    conn: &impl ConnectionTrait,
    req: TokenRequest,
) -> std::result::Result<IssuedToken, IssueError> {
    let school = crate::roster::school_by_code(conn, &req.school_code)
        .await?
        .ok_or_else(|| IssueError::UnknownSchool(req.school_code.clone()))?;
    let class_id = match &req.class_code {
        Some(code) => Some(
            crate::roster::class_by_code(conn, school.id, code)
                .await?
                .ok_or_else(|| IssueError::UnknownClass(code.clone()))?
                .id,
        ),
        None if req.role.is_class_bound() => return Err(IssueError::ClassRequired(req.role)),
        None => None,
    };
    let staff_id = match &req.staff_no {
        Some(no) => {
            let person = staff::Entity::find()
                .filter(staff::Column::SchoolId.eq(school.id))
                .filter(staff::Column::StaffNo.eq(no))
                .one(conn)
                .await?
                .ok_or_else(|| IssueError::UnknownStaff(no.clone()))?;
            if !holds(&person, req.role) {
                return Err(IssueError::RoleNotHeld {
                    staff: no.clone(),
                    has: person.role,
                    asked: req.role,
                });
            }
            Some(person.id)
        }
        None => None,
    };
    let holder = NewToken {
        role: req.role,
        school_id: Some(school.id),
        class_id,
        staff_id,
    };
    Ok(insert(conn, holder, req.label, req.ttl).await?)
}

/// Whether `person` holds `role` for a token naming them: a role that reads
/// cases only while it is the staff member's active (confirmed) roster role,
/// so that a grant waiting for confirmation, or a role taken away, gives no
/// token that reads cases.
fn holds(person: &staff::Model, role: Role) -> bool {
    !role.reads_cases() || (person.active && person.role == role.as_str())
}

/// Issue a deployment-level admin's token (no school): it lists the dead
/// letters no school can be told of and confirms role grants of schools
/// without a leader or crisis team. Only the operator's CLI issues one.
pub async fn issue_deployment(
    conn: &impl ConnectionTrait,
    label: Option<String>,
    ttl: Duration,
) -> std::result::Result<IssuedToken, IssueError> {
    let holder = NewToken {
        role: Role::Admin,
        school_id: None,
        class_id: None,
        staff_id: None,
    };
    Ok(insert(conn, holder, label, ttl).await?)
}

/// Whom a new token speaks for.
struct NewToken {
    role: Role,
    school_id: Option<Uuid>,
    class_id: Option<Uuid>,
    staff_id: Option<Uuid>,
}

/// Store a new token for `holder` (only its secret's hash) and answer the
/// secret, which is shown this once.
async fn insert(
    conn: &impl ConnectionTrait,
    holder: NewToken,
    label: Option<String>,
    ttl: Duration,
) -> Result<IssuedToken> {
    let secret = new_secret();
    let now = Utc::now();
    let id = Uuid::now_v7();
    let expires_at = now + ttl;
    api_token::Entity::insert(api_token::ActiveModel {
        id: Set(id),
        token_hash: Set(hash(&secret)),
        role: Set(holder.role.as_str().to_owned()),
        school_id: Set(holder.school_id),
        class_id: Set(holder.class_id),
        staff_id: Set(holder.staff_id),
        label: Set(label),
        created_at: Set(now),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(IssuedToken {
        id,
        secret,
        expires_at,
    })
}

/// The holder of a presented token, or `None` when it is unknown, expired
/// or revoked (the caller answers 401 without saying which). A token naming
/// a staff member in a role that reads cases holds only while that is the
/// staff member's active roster role (see [`holds`]): a downgrade takes
/// effect at once.
pub async fn authenticate(conn: &impl ConnectionTrait, secret: &str) -> Result<Option<Holder>> {
    if !secret.starts_with(PREFIX) {
        return Ok(None);
    }
    let Some(token) = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(hash(secret)))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    if token.revoked_at.is_some() || token.expires_at <= Utc::now() {
        return Ok(None);
    }
    let role: Role =
        token
            .role
            .parse()
            .map_err(|e: sanyu_domain::ParseError| StoreError::Corrupt {
                table: "api_tokens",
                detail: e.to_string(),
            })?;
    let Some(school_id) = token.school_id else {
        if role != Role::Admin {
            return Err(StoreError::Corrupt {
                table: "api_tokens",
                detail: format!("token {} has no school but role `{role}`", token.id),
            });
        }
        return Ok(Some(Holder::Deployment { token_id: token.id }));
    };
    if let Some(staff_id) = token.staff_id
        && role.reads_cases()
    {
        let person = staff::Entity::find_by_id(staff_id).one(conn).await?;
        if !person.is_some_and(|p| p.school_id == school_id && holds(&p, role)) {
            return Ok(None);
        }
    }
    Ok(Some(Holder::School(Principal {
        token_id: token.id,
        role,
        school_id,
        class_id: token.class_id,
        staff_id: token.staff_id,
    })))
}

/// Revoke a token by id. Returns `false` if there is no such token.
pub async fn revoke(conn: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    let Some(token) = api_token::Entity::find_by_id(id).one(conn).await? else {
        return Ok(false);
    };
    if token.revoked_at.is_none() {
        let mut active: api_token::ActiveModel = token.into();
        active.revoked_at = Set(Some(Utc::now()));
        sea_orm::ActiveModelTrait::update(active, conn).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hashed() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX));
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), a);
    }
}
