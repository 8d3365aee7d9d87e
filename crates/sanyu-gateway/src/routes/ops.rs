//! Health, readiness and dead letters.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use sanyu_domain::Role;
use sanyu_store::dead_letters;
use sanyu_store::entities::school;
use sanyu_store::sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub database: bool,
    pub nats: bool,
    /// The relay, the dead-letter recorder and the import runner are running.
    pub consumers: bool,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database and NATS are reachable and the gateway's
/// consumers run (503 while it starts or waits for them).
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let report = state.readiness.check().await;
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            database: report.database,
            nats: report.nats,
            consumers: report.consumers,
        }),
    )
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    pub id: Uuid,
    pub stream: String,
    pub consumer: String,
    pub stream_seq: Option<i64>,
    pub subject: Option<String>,
    pub event_id: Option<String>,
    pub reason: String,
    pub deliveries: Option<i64>,
    pub received_at: DateTime<Utc>,
}

impl From<sanyu_store::entities::dead_letter::Model> for DeadLetterView {
    fn from(d: sanyu_store::entities::dead_letter::Model) -> Self {
        Self {
            id: d.id,
            stream: d.stream,
            consumer: d.consumer,
            stream_seq: d.stream_seq,
            subject: d.subject,
            event_id: d.event_id,
            reason: d.reason,
            deliveries: d.deliveries,
            received_at: d.received_at,
        }
    }
}

/// Messages the services gave up on, for the operators and the crisis team to
/// act on. Listed for the caller's school (by subject) plus those whose school
/// cannot be told.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "ops",
    responses((status = 200, body = Vec<DeadLetterView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    if !matches!(caller.role, Role::Admin | Role::CrisisTeam) {
        return Err(ApiError::Forbidden(
            "only admins and the crisis team see dead letters",
        ));
    }
    let school = school::Entity::find_by_id(caller.school_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("school"))?;
    let own = sanyu_events::subjects::token(&school.code);
    let rows = dead_letters::list_open(&state.db, 500).await?;
    audit::record(
        &state,
        &caller,
        &peer,
        "dead_letters.list",
        format!("school:{}", school.id),
    )
    .await?;
    Ok(Json(
        rows.into_iter()
            .filter(|d| match d.subject.as_deref().and_then(school_token) {
                Some(token) => token == own,
                None => true,
            })
            .map(DeadLetterView::from)
            .collect(),
    ))
}

/// Mark a dead letter dealt with (e.g. the unknown student was added to the
/// roster and the report submitted again): it leaves the open list. Same
/// roles and scope as the list; recorded in the audit log in the same
/// transaction. Resolving twice answers the same.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/{id}/resolve",
    tag = "ops",
    params(("id" = Uuid, Path, description = "dead letter id")),
    responses((status = 200, body = DeadLetterView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn resolve_dead_letter(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<Json<DeadLetterView>, ApiError> {
    if !matches!(caller.role, Role::Admin | Role::CrisisTeam) {
        return Err(ApiError::Forbidden(
            "only admins and the crisis team resolve dead letters",
        ));
    }
    let school = school::Entity::find_by_id(caller.school_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("school"))?;
    let own = sanyu_events::subjects::token(&school.code);
    let letter = dead_letters::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("dead letter"))?;
    let in_scope = match letter.subject.as_deref().and_then(school_token) {
        Some(token) => token == own,
        None => true,
    };
    if !in_scope {
        return Err(ApiError::NotFound("dead letter"));
    }
    let txn = sanyu_store::begin_write(&state.db).await?;
    dead_letters::resolve(&*txn, id).await?;
    sanyu_store::audit::append_in(
        &*txn,
        &state.audit_key,
        audit::entry(
            &caller,
            &peer,
            "dead_letters.resolve",
            format!("dead_letter:{id}"),
        ),
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "audit log write failed");
        ApiError::Unavailable("the audit log cannot be written; try again".into())
    })?;
    txn.commit().await?;
    let d = dead_letters::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("dead letter"))?;
    Ok(Json(DeadLetterView::from(d)))
}

/// The school token of `sanyu.<area>.<event>.<school>[.<partition>]`.
fn school_token(subject: &str) -> Option<&str> {
    let parts: Vec<&str> = subject.split('.').collect();
    (parts.len() >= 4 && parts[0] == "sanyu").then(|| parts[3])
}
