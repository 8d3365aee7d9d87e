//! Duty rosters (值班表, issue #16): `POST /v1/duty/rotations` and
//! `POST /v1/duty/overrides` add to the caller's school's roster, `DELETE
//! /v1/duty/rotations/{id}` and `DELETE /v1/duty/overrides/{id}` take out of
//! it (its admin, leaders and crisis team); `GET /v1/duty` lists it and `GET
//! /v1/on-call` says who is on duty now and who next, per rostered role
//! (every staff role of the school but monitors and district officers). Whether a time is on duty is
//! `sanyu_domain::duty`'s; the rows are `sanyu_store::duty`'s. Members and
//! covering staff must be active staff of the caller's school in the role:
//! another school's staff answers as staff that does not exist.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use sanyu_domain::duty::{Cadence, Days, DutyError, Override, Rotation, Shift};
use sanyu_domain::{Principal, Role};
use sanyu_store::{Conn, begin_write, duty, roster};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Peer};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};

/// The roles whose duty `GET /v1/on-call` reports.
const ROSTERED: [Role; 3] = [Role::Counsellor, Role::CrisisTeam, Role::Leader];

/// Whether `role` changes the school's duty roster (the API and the
/// console's page ask here).
pub fn manages(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Leader | Role::CrisisTeam)
}

/// Whether `role` reads who is on duty: the school's staff (not monitors,
/// district officers or services).
pub fn reads(role: Role) -> bool {
    matches!(
        role,
        Role::Teacher | Role::Counsellor | Role::CrisisTeam | Role::Leader | Role::Admin
    )
}

/// Who may change the school's duty roster.
fn may_manage(caller: &Principal) -> Result<(), ApiError> {
    if manages(caller.role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the school's admin, leaders and crisis team change the duty roster",
        ))
    }
}

/// Who may read who is on duty.
fn may_read(caller: &Principal) -> Result<(), ApiError> {
    if reads(caller.role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the school's staff see who is on duty",
        ))
    }
}

fn duty_error(e: DutyError) -> ApiError {
    let field = match e {
        DutyError::Role(_) => "role",
        DutyError::Members => "members",
        DutyError::Name => "name",
        DutyError::Shift => "shift",
        DutyError::Kinds => "kinds",
        DutyError::Window => "to",
    };
    ApiError::validation(field, e.to_string())
}

fn hhmm(field: &str, s: &str) -> Result<NaiveTime, ApiError> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| ApiError::validation(field, "a local time as HH:MM, e.g. 08:00"))
}

fn role_of(s: &str) -> Result<Role, ApiError> {
    let role: Role = s
        .parse()
        .map_err(|_| ApiError::validation("role", "counsellor, crisis_team or leader"))?;
    sanyu_domain::duty::rostered(role).map_err(duty_error)?;
    Ok(role)
}

/// Check that `id` is active staff of the caller's school in `role`.
async fn check_staff(
    conn: &impl Conn,
    caller: &Principal,
    field: String,
    id: Uuid,
    role: Role,
) -> Result<(), ApiError> {
    let found = roster::staff_by_id(conn, id).await?;
    match found {
        Some(s) if s.school_id == caller.school_id && s.active && s.role == role.as_str() => Ok(()),
        _ => Err(ApiError::validation(
            field,
            format!("no active staff of this school in role {}", role.as_str()),
        )),
    }
}

/// A shift: a window of local time (`22:00`–`07:00` crosses midnight).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShiftBody {
    /// `HH:MM`, local.
    pub start: String,
    /// `HH:MM`, local; not after `start`: the shift ends the next day.
    pub end: String,
}

/// A new rotation of one role's members.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationRequest {
    /// 1 to 100 characters, e.g. `夜间值班`.
    pub name: String,
    /// `counsellor`, `crisis_team` or `leader`.
    pub role: String,
    /// `daily` or `weekly`.
    pub cadence: String,
    /// Hand-over time, `HH:MM` local.
    pub handover: String,
    /// The first member takes over at `handover` on this local date.
    pub start_date: NaiveDate,
    /// Staff ids in the order they take over (active staff of the school in
    /// `role`).
    pub members: Vec<Uuid>,
    /// Without a shift the rotation covers the whole day.
    pub shift: Option<ShiftBody>,
    /// `every` (default), `school_days` or `key_dates`.
    pub days: Option<String>,
    /// For `key_dates`: the calendar kinds (`holiday`, `gaokao`, …).
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// A rotation as stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotationView {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub cadence: String,
    pub handover: String,
    pub start_date: NaiveDate,
    pub members: Vec<Uuid>,
    pub shift: Option<ShiftBody>,
    pub days: String,
    pub kinds: Vec<String>,
}

impl From<&Rotation> for RotationView {
    fn from(r: &Rotation) -> Self {
        let hm = |t: NaiveTime| t.format("%H:%M").to_string();
        Self {
            id: r.id,
            name: r.name.clone(),
            role: r.role.as_str().to_owned(),
            cadence: r.cadence.as_str().to_owned(),
            handover: hm(r.handover),
            start_date: r.start_date,
            members: r.members.clone(),
            shift: r.shift.map(|s| ShiftBody {
                start: hm(s.start),
                end: hm(s.end),
            }),
            days: r.days.as_str().to_owned(),
            kinds: r.kinds.clone(),
        }
    }
}

/// Add a rotation to the caller's school's duty roster.
#[utoipa::path(post, path = "/v1/duty/rotations", tag = "duty roster",
    request_body = RotationRequest,
    responses((status = 201, body = RotationView), (status = 403, body = ErrorBody),
        (status = 422, description = "a field that cannot work, or a member who is not active staff of the school in the role", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_rotation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    body: JsonBody<RotationRequest>,
) -> Result<(StatusCode, Json<RotationView>), ApiError> {
    may_manage(&caller)?;
    let req = body.value;
    let now = Utc::now();
    let role = role_of(&req.role)?;
    let cadence: Cadence = req
        .cadence
        .parse()
        .map_err(|_| ApiError::validation("cadence", "daily or weekly"))?;
    let days: Days = match req.days.as_deref() {
        None => Days::Every,
        Some(d) => d
            .parse()
            .map_err(|_| ApiError::validation("days", "every, school_days or key_dates"))?,
    };
    let shift = match &req.shift {
        None => None,
        Some(s) => Some(Shift {
            start: hhmm("shift.start", &s.start)?,
            end: hhmm("shift.end", &s.end)?,
        }),
    };
    let today = now.date_naive();
    if (req.start_date - today).num_days().abs() > 5 * 366 {
        return Err(ApiError::validation(
            "start_date",
            "within five years of today",
        ));
    }
    let rotation = Rotation {
        id: Uuid::now_v7(),
        name: req.name.trim().to_owned(),
        role,
        cadence,
        handover: hhmm("handover", &req.handover)?,
        start_date: req.start_date,
        members: req.members,
        shift,
        days,
        kinds: req.kinds,
    };
    rotation.validate().map_err(duty_error)?;
    let txn = begin_write(&state.db).await?;
    for (i, id) in rotation.members.iter().enumerate() {
        check_staff(&*txn, &caller, format!("members[{i}]"), *id, role).await?;
    }
    duty::create_rotation(&*txn, caller.school_id, &rotation, now).await?;
    let entry = audit::entry(
        &caller,
        &peer,
        "duty.rotation_create",
        format!("duty_rotation:{}", rotation.id),
    );
    audit::record_in(&*txn, &state, entry).await?;
    txn.commit().await?;
    tracing::info!(rotation_id = %rotation.id, role = role.as_str(), "duty rotation added");
    Ok((StatusCode::CREATED, Json(RotationView::from(&rotation))))
}

/// A named staff member covers a role from one instant to another (exam
/// week, a holiday): it wins over every rotation of the role meanwhile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    /// `counsellor`, `crisis_team` or `leader`.
    pub role: String,
    /// Active staff of the school in `role`.
    pub staff_id: Uuid,
    pub from: DateTime<Utc>,
    /// After `from` (at most 366 days later) and after now.
    pub to: DateTime<Utc>,
}

/// An override as stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OverrideView {
    pub id: Uuid,
    pub role: String,
    pub staff_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl From<&Override> for OverrideView {
    fn from(o: &Override) -> Self {
        Self {
            id: o.id,
            role: o.role.as_str().to_owned(),
            staff_id: o.staff_id,
            from: o.from,
            to: o.to,
        }
    }
}

/// Add an override to the caller's school's duty roster.
#[utoipa::path(post, path = "/v1/duty/overrides", tag = "duty roster",
    request_body = OverrideRequest,
    responses((status = 201, body = OverrideView), (status = 403, body = ErrorBody),
        (status = 422, description = "a window that cannot work, or staff who is not active staff of the school in the role", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_override(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    body: JsonBody<OverrideRequest>,
) -> Result<(StatusCode, Json<OverrideView>), ApiError> {
    may_manage(&caller)?;
    let req = body.value;
    let now = Utc::now();
    let o = Override {
        id: Uuid::now_v7(),
        role: role_of(&req.role)?,
        staff_id: req.staff_id,
        from: req.from,
        to: req.to,
    };
    o.validate().map_err(duty_error)?;
    if o.to <= now {
        return Err(ApiError::validation("to", "the override ends in the past"));
    }
    let txn = begin_write(&state.db).await?;
    check_staff(&*txn, &caller, "staff_id".into(), o.staff_id, o.role).await?;
    duty::create_override(&*txn, caller.school_id, &o, now).await?;
    let entry = audit::entry(
        &caller,
        &peer,
        "duty.override_create",
        format!("duty_override:{}", o.id),
    );
    audit::record_in(&*txn, &state, entry).await?;
    txn.commit().await?;
    tracing::info!(override_id = %o.id, role = o.role.as_str(), "duty override added");
    Ok((StatusCode::CREATED, Json(OverrideView::from(&o))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OnCallQuery {
    /// The instant to answer for (default: now), within a year of now.
    pub at: Option<DateTime<Utc>>,
}

/// A staff member on duty.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OnDutyStaff {
    pub staff_id: Uuid,
    pub name: String,
}

/// The next change of a role's duty.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NextDuty {
    /// When it changes (within 60 days).
    pub at: DateTime<Utc>,
    /// Who is on duty then (empty: nobody).
    pub staff: Vec<OnDutyStaff>,
}

/// One role's duty.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleDuty {
    /// `counsellor`, `crisis_team` or `leader`.
    pub role: String,
    /// Whether the roster names anybody for the role at all.
    pub rostered: bool,
    /// On duty at `at`; empty: nobody, and a rung for the member on duty
    /// tells the whole role.
    pub now: Vec<OnDutyStaff>,
    /// The next change, if any within 60 days.
    pub next: Option<NextDuty>,
}

/// Who is on duty.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OnCall {
    pub at: DateTime<Utc>,
    /// The time zone rotations' local times are in.
    pub time_zone: String,
    pub roles: Vec<RoleDuty>,
}

/// Who of the caller's school is on duty at `at` (default now) and who next,
/// per rostered role.
#[utoipa::path(get, path = "/v1/on-call", tag = "duty roster",
    params(OnCallQuery),
    responses((status = 200, body = OnCall), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn on_call(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Query(q): Query<OnCallQuery>,
) -> Result<Json<OnCall>, ApiError> {
    may_read(&caller)?;
    let now = Utc::now();
    let at = q.at.unwrap_or(now);
    if (at - now).abs() > Duration::days(366) {
        return Err(ApiError::validation("at", "within a year of now"));
    }
    let roster = sanyu_case::duty::roster(&state.db, caller.school_id, &state.duty, at).await?;
    let people = roster::active_staff_of_schools(&state.db, &[caller.school_id]).await?;
    let named = |ids: &[Uuid]| -> Vec<OnDutyStaff> {
        ids.iter()
            .map(|id| OnDutyStaff {
                staff_id: *id,
                name: people
                    .iter()
                    .find(|p| p.id == *id)
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
            })
            .collect()
    };
    let on = roster.on_duty(at);
    let roles = ROSTERED
        .iter()
        .map(|role| RoleDuty {
            role: role.as_str().to_owned(),
            rostered: roster.has_role(*role),
            now: named(on.get(role).map(Vec::as_slice).unwrap_or_default()),
            next: roster.next_change(at, *role).map(|(t, ids)| NextDuty {
                at: t,
                staff: named(&ids),
            }),
        })
        .collect();
    audit::record(
        &state,
        &caller,
        &peer,
        "duty.on_call",
        format!("school:{}", caller.school_id),
    )
    .await?;
    Ok(Json(OnCall {
        at,
        time_zone: roster.tz.name().to_owned(),
        roles,
    }))
}

/// The school's duty roster: its rotations and the overrides not yet over.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DutyRoster {
    pub rotations: Vec<RotationView>,
    pub overrides: Vec<OverrideView>,
}

/// The caller's school's duty roster.
#[utoipa::path(get, path = "/v1/duty", tag = "duty roster",
    responses((status = 200, body = DutyRoster), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
) -> Result<Json<DutyRoster>, ApiError> {
    may_read(&caller)?;
    let rotations = duty::rotations(&state.db, caller.school_id).await?;
    let overrides = duty::overrides(&state.db, caller.school_id, Utc::now()).await?;
    audit::record(
        &state,
        &caller,
        &peer,
        "duty.list",
        format!("school:{}", caller.school_id),
    )
    .await?;
    Ok(Json(DutyRoster {
        rotations: rotations.iter().map(RotationView::from).collect(),
        overrides: overrides.iter().map(OverrideView::from).collect(),
    }))
}

/// Take a rotation out of the caller's school's duty roster.
#[utoipa::path(delete, path = "/v1/duty/rotations/{id}", tag = "duty roster",
    params(("id" = Uuid, Path, description = "rotation id")),
    responses((status = 204, description = "taken out"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(rotation_id = %id))]
pub async fn delete_rotation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    take_out(&state, &caller, &peer, Entry::Rotation, id).await
}

/// Take an override out of the caller's school's duty roster.
#[utoipa::path(delete, path = "/v1/duty/overrides/{id}", tag = "duty roster",
    params(("id" = Uuid, Path, description = "override id")),
    responses((status = 204, description = "taken out"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(override_id = %id))]
pub async fn delete_override(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    take_out(&state, &caller, &peer, Entry::Override, id).await
}

/// What a `DELETE` takes out of the roster.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Rotation,
    Override,
}

/// Take a rotation or an override of the caller's school out, audited in the
/// same transaction; another school's (or no) entry answers 404.
async fn take_out(
    state: &AppState,
    caller: &Principal,
    peer: &Peer,
    entry: Entry,
    id: Uuid,
) -> Result<StatusCode, ApiError> {
    may_manage(caller)?;
    let txn = begin_write(&state.db).await?;
    let (found, what, action, target) = match entry {
        Entry::Rotation => (
            duty::delete_rotation(&*txn, caller.school_id, id).await?,
            "rotation",
            "duty.rotation_delete",
            format!("duty_rotation:{id}"),
        ),
        Entry::Override => (
            duty::delete_override(&*txn, caller.school_id, id).await?,
            "override",
            "duty.override_delete",
            format!("duty_override:{id}"),
        ),
    };
    if !found {
        return Err(ApiError::NotFound(what));
    }
    audit::record_in(&*txn, state, audit::entry(caller, peer, action, target)).await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
