//! Every read of a case and every action is written to the audit log before
//! the answer leaves: if the log cannot be written, the read is refused.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use sanyu_domain::{Holder, Principal, Role};
use sanyu_store::Conn;
use sanyu_store::audit::{self, AuditEntry};

use crate::AppState;
use crate::error::ApiError;

/// The peer address of the request ("from where").
pub struct Peer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
                .unwrap_or_else(|| "unknown".to_owned()),
        ))
    }
}

pub fn entry(caller: &Principal, peer: &Peer, action: &str, target: String) -> AuditEntry {
    AuditEntry {
        actor_token_id: Some(caller.token_id),
        actor_role: caller.role.as_str().to_owned(),
        actor_staff_id: caller.staff_id,
        school_id: Some(caller.school_id),
        action: action.to_owned(),
        target,
        source: peer.0.clone(),
    }
}

/// The audit entry of an action by any token holder (a deployment-level
/// admin has no school).
pub fn holder_entry(holder: &Holder, peer: &Peer, action: &str, target: String) -> AuditEntry {
    match holder {
        Holder::School(caller) => entry(caller, peer, action, target),
        Holder::Deployment { token_id } => AuditEntry {
            actor_token_id: Some(*token_id),
            actor_role: format!("deployment_{}", Role::Admin.as_str()),
            actor_staff_id: None,
            school_id: None,
            action: action.to_owned(),
            target,
            source: peer.0.clone(),
        },
    }
}

/// The answer when the audit log cannot be written: the request is refused.
fn refused(action: &str, e: sanyu_store::StoreError) -> ApiError {
    tracing::error!(error = %e, action, "audit log write failed");
    ApiError::Unavailable("the audit log cannot be written; try again".into())
}

/// Record `entry` in its own transaction (reads); the request is refused
/// when the log cannot be written.
pub async fn record_entry(state: &AppState, entry: AuditEntry) -> Result<(), ApiError> {
    let action = entry.action.clone();
    audit::append(&state.db, &state.audit_key, entry)
        .await
        .map(|_| ())
        .map_err(|e| refused(&action, e))
}

/// Record `action` on `target` by `caller` in its own transaction (reads).
pub async fn record(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    action: &str,
    target: String,
) -> Result<(), ApiError> {
    record_entry(state, entry(caller, peer, action, target)).await
}

/// Record `entry` in the caller's write transaction, so that the action and
/// its record commit together; a failed write is a database error.
pub async fn record_in(
    txn: &impl Conn,
    state: &AppState,
    entry: AuditEntry,
) -> Result<(), ApiError> {
    audit::append_in(txn, &state.audit_key, entry).await?;
    Ok(())
}

/// As [`record_in`], but a failed write refuses the request as [`record_entry`] does.
pub async fn record_in_or_refuse(
    txn: &impl Conn,
    state: &AppState,
    entry: AuditEntry,
) -> Result<(), ApiError> {
    let action = entry.action.clone();
    audit::append_in(txn, &state.audit_key, entry)
        .await
        .map(|_| ())
        .map_err(|e| refused(&action, e))
}
