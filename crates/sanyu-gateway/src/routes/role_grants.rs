//! Role grants: a role that reads cases asked for through the roster import
//! waits for a second person of the school. `GET /v1/roster/role-grants`
//! lists them; `POST /v1/roster/role-grants/{id}/confirm` and `…/refuse`
//! decide one. A leader or a crisis-team member of the grant's school decides,
//! never the grantee nor who asked; a deployment-level admin only for a
//! school that has no leader or crisis team yet. Every request and decision
//! is in the audit log and announced by email to the school's leaders and
//! crisis team (ids only).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use sanyu_domain::{Holder, Role};
use sanyu_escalation::announce_role_grant;
use sanyu_events::NotificationReason;
use sanyu_store::entities::{role_grant, school};
use sanyu_store::role_grants::{self, Actor, DecideError};
use sanyu_store::{Conn, roster};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Bearer;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;

/// A role grant as its deciders see it: ids, the role and who did what when.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleGrantView {
    pub id: Uuid,
    pub school_id: Uuid,
    /// The staff member the role is for.
    pub staff_id: Uuid,
    /// `counsellor`, `crisis_team`, `leader` or `district`.
    pub role: String,
    /// `pending`, `confirmed`, `refused` or `withdrawn` (a later import asked
    /// for something else).
    pub status: String,
    pub requested_by_staff: Option<Uuid>,
    pub requested_at: DateTime<Utc>,
    pub decided_by_staff: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl From<role_grant::Model> for RoleGrantView {
    fn from(g: role_grant::Model) -> Self {
        Self {
            id: g.id,
            school_id: g.school_id,
            staff_id: g.staff_id,
            role: g.role,
            status: g.status,
            requested_by_staff: g.requested_by_staff,
            requested_at: g.requested_at,
            decided_by_staff: g.decided_by_staff,
            decided_at: g.decided_at,
        }
    }
}

fn actor(holder: &Holder) -> Actor {
    match holder {
        Holder::School(p) => Actor {
            token_id: Some(p.token_id),
            staff_id: p.staff_id,
        },
        Holder::Deployment { token_id } => Actor {
            token_id: Some(*token_id),
            staff_id: None,
        },
    }
}

/// Announce a grant (asked for or confirmed) to the school's leaders and
/// crisis team, in the caller's transaction.
pub async fn announce(
    txn: &impl Conn,
    school: &school::Model,
    grant: &role_grant::Model,
    reason: NotificationReason,
    at: DateTime<Utc>,
) -> Result<usize, ApiError> {
    announce_role_grant(
        txn,
        school,
        grant.id,
        reason,
        at,
        sanyu_platform::trace::current_traceparent(),
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The role grants of the caller's school, pending first (a deployment-level
/// admin: every school's).
#[utoipa::path(
    get,
    path = "/v1/roster/role-grants",
    tag = "roster",
    responses((status = 200, body = Vec<RoleGrantView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Bearer(holder): Bearer,
    peer: Peer,
) -> Result<Json<Vec<RoleGrantView>>, ApiError> {
    let (rows, target) = match &holder {
        Holder::School(p) if p.role.confirms_role_grants() => (
            role_grants::list(&state.db, p.school_id, 500).await?,
            format!("school:{}", p.school_id),
        ),
        Holder::School(_) => {
            return Err(ApiError::Forbidden(
                "only the school's leaders and crisis team see role grants",
            ));
        }
        Holder::Deployment { .. } => (
            role_grants::list_all(&state.db, 500).await?,
            "deployment".to_owned(),
        ),
    };
    audit::record_entry(
        &state,
        audit::holder_entry(&holder, &peer, "role_grants.list", target),
    )
    .await?;
    Ok(Json(rows.into_iter().map(RoleGrantView::from).collect()))
}

/// Confirm a pending role grant: the staff member gets the role now.
#[utoipa::path(
    post,
    path = "/v1/roster/role-grants/{id}/confirm",
    tag = "roster",
    params(("id" = Uuid, Path, description = "role grant id")),
    responses((status = 200, body = RoleGrantView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not a leader or crisis-team member of the school, or the grantee or who asked"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "decided already")),
    security(("bearer" = []))
)]
pub async fn confirm(
    State(state): State<AppState>,
    Bearer(holder): Bearer,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<Json<RoleGrantView>, ApiError> {
    decide(state, holder, peer, id, true).await
}

/// Refuse a pending role grant: the staff member keeps what they had.
#[utoipa::path(
    post,
    path = "/v1/roster/role-grants/{id}/refuse",
    tag = "roster",
    params(("id" = Uuid, Path, description = "role grant id")),
    responses((status = 200, body = RoleGrantView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not a leader or crisis-team member of the school, or the grantee or who asked"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "decided already")),
    security(("bearer" = []))
)]
pub async fn refuse(
    State(state): State<AppState>,
    Bearer(holder): Bearer,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<Json<RoleGrantView>, ApiError> {
    decide(state, holder, peer, id, false).await
}

async fn decide(
    state: AppState,
    holder: Holder,
    peer: Peer,
    id: Uuid,
    confirm: bool,
) -> Result<Json<RoleGrantView>, ApiError> {
    if let Holder::School(p) = &holder
        && !p.role.confirms_role_grants()
    {
        return Err(ApiError::Forbidden(
            "only the school's leaders and crisis team decide role grants",
        ));
    }
    let txn = sanyu_store::begin_write(&state.db).await?;
    let grant = role_grants::get(&*txn, id)
        .await?
        .ok_or(ApiError::NotFound("role grant"))?;
    match &holder {
        Holder::School(p) if p.school_id != grant.school_id => {
            return Err(ApiError::NotFound("role grant"));
        }
        Holder::School(_) => {}
        Holder::Deployment { .. } => {
            // Only where the school has nobody to decide: its first leader
            // or crisis team.
            let deciders = reachable_or_not(&*txn, grant.school_id).await?;
            if deciders > 0 {
                return Err(ApiError::Forbidden(
                    "this school has a leader or crisis team: they decide its role grants",
                ));
            }
        }
    }
    let now = Utc::now();
    let decided = role_grants::decide(&*txn, &grant, actor(&holder), confirm, now)
        .await
        .map_err(|e| match e {
            DecideError::Grantee => ApiError::Forbidden("nobody decides a role grant for themself"),
            DecideError::Requester => ApiError::Forbidden(
                "a role grant needs a second person: who asked for it cannot decide it",
            ),
            DecideError::NotPending(status) => ApiError::Conflict {
                message: format!("the role grant is {status} already"),
                allowed: Vec::new(),
            },
            DecideError::Store(e) => ApiError::from(e),
        })?;
    let action = if confirm {
        "role_grants.confirm"
    } else {
        "role_grants.refuse"
    };
    let entry = audit::holder_entry(&holder, &peer, action, format!("role_grant:{id}"));
    audit::record_in_or_refuse(&*txn, &state, entry).await?;
    if confirm {
        let school = roster::school_by_id(&*txn, decided.school_id)
            .await?
            .ok_or(ApiError::NotFound("school"))?;
        announce(
            &*txn,
            &school,
            &decided,
            NotificationReason::RoleGranted,
            now,
        )
        .await?;
    }
    txn.commit().await?;
    state.waker.wake();
    tracing::info!(grant_id = %id, confirm, "role grant decided");
    Ok(Json(RoleGrantView::from(decided)))
}

/// How many active leaders and crisis-team members a school has (reachable
/// or not: anyone who could sign in and decide).
async fn reachable_or_not(txn: &impl Conn, school_id: Uuid) -> Result<usize, ApiError> {
    let mut n = 0;
    for role in [Role::Leader, Role::CrisisTeam] {
        n += roster::staff_in_role(txn, school_id, role).await?.len();
    }
    Ok(n)
}
