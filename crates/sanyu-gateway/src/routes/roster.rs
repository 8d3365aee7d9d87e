//! `POST /v1/roster/students` and `POST /v1/roster/staff`: an admin imports the
//! school's roster as CSV (the same format as `sanyu roster import`).

use axum::Json;
use axum::extract::{Request, State};
use sanyu_events::NotificationReason;
use sanyu_store::begin_write;
use sanyu_store::role_grants::Actor;
use sanyu_store::roster::{self, ImportScope, ImportSummary};

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::body::raw_body;
use crate::error::{ApiError, ErrorBody};
use crate::routes::role_grants;

#[derive(Clone, Copy)]
enum Kind {
    Students,
    Staff,
}

async fn import(
    state: AppState,
    caller: sanyu_domain::Principal,
    peer: Peer,
    req: Request,
    kind: Kind,
) -> Result<Json<ImportSummary>, ApiError> {
    if !caller.may_import_roster() {
        return Err(ApiError::Forbidden("only an admin may import the roster"));
    }
    let body = raw_body(req, &state, state.csv_limit()).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation("", "the CSV file is empty"));
    }
    let school = roster::school_by_id(&state.db, caller.school_id)
        .await?
        .ok_or(ApiError::NotFound("school"))?;
    let txn = begin_write(&state.db).await?;
    let scope = ImportScope::School {
        code: &school.code,
        by: Actor {
            token_id: Some(caller.token_id),
            staff_id: caller.staff_id,
        },
    };
    let summary = match kind {
        Kind::Students => roster::import_students(&*txn, body.as_ref(), scope).await?,
        Kind::Staff => roster::import_staff(&*txn, body.as_ref(), scope).await?,
    };
    // A file whose header does not fit is refused whole.
    if summary.rows == 0
        && let Some(header) = summary.errors.iter().find(|e| e.line == 1)
    {
        return Err(ApiError::validation(
            header.field.clone().unwrap_or_default(),
            header.message.clone(),
        ));
    }
    let action = match kind {
        Kind::Students => "roster.import_students",
        Kind::Staff => "roster.import_staff",
    };
    let entry = audit::entry(&caller, &peer, action, format!("school:{}", school.id));
    audit::record_in(&*txn, &state, entry).await?;
    // A role that reads cases waits for a second person: each grant asked
    // for is in the audit log and announced to the leaders and crisis team
    // at once, in this transaction.
    let now = chrono::Utc::now();
    for pending in &summary.pending_role_grants {
        let entry = audit::entry(
            &caller,
            &peer,
            "role_grants.request",
            format!("role_grant:{}", pending.grant_id),
        );
        audit::record_in(&*txn, &state, entry).await?;
        let grant = sanyu_store::role_grants::get(&*txn, pending.grant_id)
            .await?
            .ok_or(ApiError::NotFound("role grant"))?;
        role_grants::announce(
            &*txn,
            &school,
            &grant,
            NotificationReason::RoleGrantRequested,
            now,
        )
        .await?;
    }
    txn.commit().await?;
    if !summary.pending_role_grants.is_empty() {
        state.waker.wake();
    }
    tracing::info!(
        rows = summary.rows,
        created = summary.created,
        updated = summary.updated,
        rejected = summary.errors.len(),
        role_grants = summary.pending_role_grants.len(),
        "roster imported"
    );
    Ok(Json(summary))
}

/// Import students (CSV). Bad rows are reported with their line numbers; the rest imports.
#[utoipa::path(
    post,
    path = "/v1/roster/students",
    tag = "roster",
    request_body(content = String, content_type = "text/csv", description = "school_code,school_name,grade_code,grade_name,class_code,class_name,student_no,student_name,gender,guardian_name,guardian_relation,guardian_phone,guardian_email"),
    responses((status = 200, description = "Import summary with row errors"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn students(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    req: Request,
) -> Result<Json<ImportSummary>, ApiError> {
    import(state, caller, peer, req, Kind::Students).await
}

/// Import staff (CSV) with roles and contacts. A row that gives somebody a
/// role that reads cases (counsellor, crisis_team, leader, district) they do
/// not hold yet creates a pending role grant instead (listed in
/// `pending_role_grants`; the rest of the row imports): it takes effect when
/// a leader or crisis-team member of the school confirms it at
/// `POST /v1/roster/role-grants/{id}/confirm`. Removing such a role takes
/// effect at once.
#[utoipa::path(
    post,
    path = "/v1/roster/staff",
    tag = "roster",
    request_body(content = String, content_type = "text/csv", description = "school_code,staff_no,name,role,class_code,phone,email"),
    responses((status = 200, description = "Import summary with row errors"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn staff(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    req: Request,
) -> Result<Json<ImportSummary>, ApiError> {
    import(state, caller, peer, req, Kind::Staff).await
}
