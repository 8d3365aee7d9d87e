//! Health, readiness and dead letters.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use sanyu_domain::{Holder, Role};
use sanyu_store::dead_letters::{self, Readers};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Bearer;
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
    /// The school it belongs to; none: only a deployment-level admin sees it.
    pub school_id: Option<Uuid>,
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
            school_id: d.school_id,
        }
    }
}

/// Whose dead letters a token holder sees, or 403. A school's admins and
/// crisis team see their school's (the school recorded with the letter, from
/// the message body or the database, never from a subject); a
/// deployment-level admin sees every one, with those no school can be told of.
fn readers(holder: &Holder, verb: &'static str) -> Result<Readers, ApiError> {
    match holder {
        Holder::Deployment { .. } => Ok(Readers::Deployment),
        Holder::School(caller) if matches!(caller.role, Role::Admin | Role::CrisisTeam) => {
            Ok(Readers::School(caller.school_id))
        }
        Holder::School(_) => Err(ApiError::Forbidden(verb)),
    }
}

/// Messages the services gave up on, for the operators and the crisis team to
/// act on: the caller's school's; for a deployment-level admin every school's
/// and those whose school cannot be told.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "ops",
    responses((status = 200, body = Vec<DeadLetterView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    Bearer(holder): Bearer,
    peer: Peer,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    let readers = readers(&holder, "only admins and the crisis team see dead letters")?;
    let rows = dead_letters::list_open(&state.db, readers, 500).await?;
    let target = match readers {
        Readers::School(id) => format!("school:{id}"),
        Readers::Deployment => "deployment".to_owned(),
    };
    audit::record_entry(
        &state,
        audit::holder_entry(&holder, &peer, "dead_letters.list", target),
    )
    .await?;
    Ok(Json(rows.into_iter().map(DeadLetterView::from).collect()))
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
    Bearer(holder): Bearer,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<Json<DeadLetterView>, ApiError> {
    let readers = readers(
        &holder,
        "only admins and the crisis team resolve dead letters",
    )?;
    let letter = dead_letters::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("dead letter"))?;
    if !readers.sees(&letter) {
        return Err(ApiError::NotFound("dead letter"));
    }
    let txn = sanyu_store::begin_write(&state.db).await?;
    dead_letters::resolve(&*txn, id).await?;
    let entry = audit::holder_entry(
        &holder,
        &peer,
        "dead_letters.resolve",
        format!("dead_letter:{id}"),
    );
    audit::record_in_or_refuse(&*txn, &state, entry).await?;
    txn.commit().await?;
    let d = dead_letters::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("dead letter"))?;
    Ok(Json(DeadLetterView::from(d)))
}
