//! The gateway: Sanyu's HTTP API. Every route under `/v1` authenticates a
//! bearer token and checks role and scope. The gateway also runs the outbox
//! relay for what it writes and the dead-letter recorder.

pub mod audit;
pub mod auth;
pub mod body;
pub mod console;
pub mod docs;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod validate;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use sanyu_platform::relay::{OutboxRelay, Waker};
use sanyu_platform::runner::{self, Readiness};
use sanyu_platform::{Config, PlatformError, Shutdown, consumer, deadletter, nats};
use sanyu_store::Db;
use sanyu_store::crypto::Sealer;
use tower::ServiceExt;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub backbone: nats::Backbone,
    pub sealer: Sealer,
    pub waker: Waker,
    pub body_limit: usize,
    pub audit_key: sanyu_store::audit::AuditKey,
    /// The escalation ladders snapshotted onto cases when a person changes a level or reopens.
    pub escalation: sanyu_domain::EscalationPolicy,
    /// Screening imports running in the background of this process.
    pub imports: sanyu_importer::Runner,
    /// The calendar of key dates for zero reports.
    pub zero_report: sanyu_domain::zero_report::Calendar,
    /// The time zone and key dates duty rosters are read in.
    pub duty: sanyu_case::DutyCalendar,
    /// The SMS delivery-receipt routes' secrets.
    pub receipts: std::sync::Arc<routes::receipts::ReceiptSettings>,
    /// What `/readyz` reports.
    pub readiness: Readiness,
    /// The staff console's sessions and sign-in.
    pub console: Arc<console::session::Settings>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Sanyu API", description = "三预: prevent · warn · intervene. Warning reports, cases and roster for schools' crisis teams."),
    paths(
        routes::reports::submit,
        routes::cases::list,
        routes::cases::get,
        routes::casework::acknowledge,
        routes::casework::assign,
        routes::casework::note,
        routes::casework::guardian_contact,
        routes::casework::referral,
        routes::casework::follow_up,
        routes::casework::level,
        routes::casework::close,
        routes::casework::reopen,
        routes::casework::link_student,
        routes::students::key_population,
        routes::students::finish_watch,
        routes::students::timeline,
        routes::roster::students,
        routes::roster::staff,
        routes::role_grants::list,
        routes::role_grants::confirm,
        routes::role_grants::refuse,
        routes::ops::healthz,
        routes::ops::readyz,
        routes::ops::dead_letters,
        routes::ops::resolve_dead_letter,
        routes::screening::create,
        routes::screening::status,
        routes::screening::results,
        routes::screening::errors,
        routes::screening::list,
        routes::screening::bands,
        routes::hotline::log,
        routes::hotline::list,
        routes::hotline::import,
        routes::hotline::link,
        routes::hotline::get,
        routes::zero_reports::periods,
        routes::zero_reports::submit,
        routes::duty::create_rotation,
        routes::duty::create_override,
        routes::duty::on_call,
        routes::duty::list,
        routes::duty::delete_rotation,
        routes::duty::delete_override,
        routes::zero_reports::compliance,
        routes::receipts::receive,
        routes::sms_replies::receive_signed,
        routes::sms_replies::receive,
        routes::voice_keys::receive,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi_json() -> axum::Json<&'static serde_json::Value> {
    axum::Json(openapi::document())
}

/// Smallest limit of CSV uploads (roster, hotline call logs).
pub const MIN_CSV_LIMIT: usize = 16 * 1024 * 1024;

impl AppState {
    /// The size limit of CSV uploads: larger than JSON requests.
    pub fn csv_limit(&self) -> usize {
        self.body_limit.max(MIN_CSV_LIMIT)
    }
}

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    let roster_limit = state.csv_limit();
    let roster = Router::new()
        .route("/v1/roster/students", post(routes::roster::students))
        .route("/v1/roster/staff", post(routes::roster::staff))
        .route("/v1/hotline-calls/import", post(routes::hotline::import))
        .layer(DefaultBodyLimit::max(roster_limit));
    // Screening files are spooled to disk as they arrive, up to their own limit.
    let screening_upload = Router::new()
        .route("/v1/screening-imports", post(routes::screening::create))
        .layer(DefaultBodyLimit::max(
            state.imports.upload_limit_bytes.max(body_limit),
        ));
    Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs::redirect))
        .route(docs::PATH, get(docs::index))
        .route("/docs/{*file}", get(docs::file))
        .route("/v1/reports", post(routes::reports::submit))
        .route("/v1/cases", get(routes::cases::list))
        .route("/v1/cases/{id}", get(routes::cases::get))
        .route(
            "/v1/cases/{id}/acknowledge",
            post(routes::casework::acknowledge),
        )
        .route("/v1/cases/{id}/assign", post(routes::casework::assign))
        .route("/v1/cases/{id}/notes", post(routes::casework::note))
        .route(
            "/v1/cases/{id}/guardian-contacts",
            post(routes::casework::guardian_contact),
        )
        .route("/v1/cases/{id}/referrals", post(routes::casework::referral))
        .route(
            "/v1/cases/{id}/follow-ups",
            post(routes::casework::follow_up),
        )
        .route("/v1/cases/{id}/level", post(routes::casework::level))
        .route("/v1/cases/{id}/close", post(routes::casework::close))
        .route("/v1/cases/{id}/reopen", post(routes::casework::reopen))
        .route(
            "/v1/cases/{id}/link-student",
            post(routes::casework::link_student),
        )
        .route("/v1/key-population", get(routes::students::key_population))
        .route(
            "/v1/key-population/watch/{id}/done",
            post(routes::students::finish_watch),
        )
        .route(
            "/v1/students/{id}/timeline",
            get(routes::students::timeline),
        )
        .route("/v1/dead-letters", get(routes::ops::dead_letters))
        .route("/v1/roster/role-grants", get(routes::role_grants::list))
        .route(
            "/v1/roster/role-grants/{id}/confirm",
            post(routes::role_grants::confirm),
        )
        .route(
            "/v1/roster/role-grants/{id}/refuse",
            post(routes::role_grants::refuse),
        )
        .route(
            "/v1/dead-letters/{id}/resolve",
            post(routes::ops::resolve_dead_letter),
        )
        .route("/v1/screening-imports", get(routes::screening::list))
        .route("/v1/screening-imports/{id}", get(routes::screening::status))
        .route(
            "/v1/screening-imports/{id}/bands",
            get(routes::screening::bands),
        )
        .route(
            "/v1/screening-imports/{id}/results",
            get(routes::screening::results),
        )
        .route(
            "/v1/screening-imports/{id}/errors",
            get(routes::screening::errors),
        )
        .route(
            "/v1/hotline-calls",
            post(routes::hotline::log).get(routes::hotline::list),
        )
        .route("/v1/hotline-calls/{id}/link", post(routes::hotline::link))
        .route("/v1/hotline-calls/{id}", get(routes::hotline::get))
        .route(
            "/v1/zero-report-periods",
            get(routes::zero_reports::periods),
        )
        .route(
            "/v1/zero-report-periods/{id}/compliance",
            get(routes::zero_reports::compliance),
        )
        .route("/v1/zero-reports", post(routes::zero_reports::submit))
        .route("/v1/duty", get(routes::duty::list))
        .route("/v1/duty/rotations", post(routes::duty::create_rotation))
        .route(
            "/v1/duty/rotations/{id}",
            delete(routes::duty::delete_rotation),
        )
        .route("/v1/duty/overrides", post(routes::duty::create_override))
        .route(
            "/v1/duty/overrides/{id}",
            delete(routes::duty::delete_override),
        )
        .route("/v1/on-call", get(routes::duty::on_call))
        .route(
            "/v1/sms/receipts/{provider}/{secret}",
            post(routes::receipts::receive),
        )
        .route(
            "/v1/sms/replies/webhook",
            post(routes::sms_replies::receive_signed),
        )
        .route(
            "/v1/sms/replies/{provider}/{token}",
            post(routes::sms_replies::receive),
        )
        .route(
            "/v1/voice/keypress/{provider}/{token}",
            post(routes::voice_keys::receive),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(roster)
        .merge(screening_upload)
        .merge(console::router(
            state.imports.upload_limit_bytes.max(body_limit),
        ))
        // Unknown routes and methods answer with the error body too.
        .fallback(extract::no_route)
        .method_not_allowed_fallback(extract::no_method)
        // Latency by route template (ids never become labels).
        .layer(axum::middleware::from_fn(
            sanyu_platform::metrics::track_http,
        ))
        .layer(
            tower::ServiceBuilder::new()
                // Every response carries an `x-request-id` (the caller's, or a new one),
                // and the request's span records it for support.
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                        let request_id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        // Path only: ids, never query strings or bodies; the
                        // receipt routes' path secret, the reply routes'
                        // tokens, a sign-in link's token and an
                        // acknowledgement link's token are not logged.
                        let path = req.uri().path();
                        let path = if path.starts_with(routes::receipts::PREFIX) {
                            routes::receipts::PREFIX
                        } else if path.starts_with(routes::sms_replies::PREFIX) {
                            routes::sms_replies::PREFIX
                        } else if path.starts_with(routes::voice_keys::PREFIX) {
                            routes::voice_keys::PREFIX
                        } else if path.starts_with(console::SIGN_IN_LINK_PREFIX) {
                            console::SIGN_IN_LINK_PREFIX
                        } else if path.starts_with(sanyu_store::ack_links::LINK_PREFIX) {
                            sanyu_store::ack_links::LINK_PREFIX
                        } else {
                            path
                        };
                        tracing::info_span!(
                            "http",
                            method = %req.method(),
                            path = %path,
                            request_id,
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// A built gateway: its listener bound, its settings checked. It connects to
/// the database and NATS when it runs (and waits for them if they are down).
pub struct Gateway {
    listener: tokio::net::TcpListener,
    config: Config,
    sealer: Sealer,
    audit_key: sanyu_store::audit::AuditKey,
    console: Arc<console::session::Settings>,
}

impl Gateway {
    pub async fn build(config: &Config) -> Result<Self, PlatformError> {
        let sealer = config.sealer()?;
        let audit_key =
            sanyu_store::audit::AuditKey::from_data_key(config.security.data_key.expose())
                .map_err(|e| PlatformError::Config(e.to_string()))?;
        let console = Arc::new(
            console::session::Settings::from_config(config).map_err(PlatformError::Config)?,
        );
        // Duty rosters are read in this time zone (`AppState::new` relies on it).
        sanyu_case::DutyCalendar::new(&config.notify.time_zone, config.zero_report.clone())
            .map_err(PlatformError::Config)?;
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .map_err(|e| {
                PlatformError::Config(format!("http.listen {}: {e}", config.http.listen))
            })?;
        Ok(Self {
            listener,
            config: config.clone(),
            sealer,
            audit_key,
            console,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serve until shutdown, with the outbox relay and the dead-letter
    /// recorder. Until the database and NATS are reachable, `/healthz`
    /// answers, `/readyz` and every other route answer 503.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), PlatformError> {
        let Gateway {
            listener,
            config,
            sealer,
            audit_key,
            console,
        } = self;
        let readiness = Readiness::new();
        let app: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
        tracing::info!(addr = ?listener.local_addr().ok(), "gateway listening");
        let server = tokio::spawn(sanyu_platform::http::serve(
            listener,
            switching_router(app.clone(), readiness.clone()),
            sanyu_platform::http::Limits::from_config(&config.http),
            shutdown.token.clone(),
        ));
        // `/metrics` (and health) on the internal `health.listen`, if set.
        runner::serve_health(&config, &readiness, &shutdown).await?;
        let connected =
            runner::connect(&config, "sanyu-gateway", &readiness, &shutdown.token).await?;
        let mut stopping = None;
        if let Some((db, backbone)) = connected {
            let state = AppState::new(
                &config,
                db,
                backbone,
                sealer,
                audit_key,
                readiness.clone(),
                console,
            );
            let _ = app.set(router(state.clone()));
            let relay = OutboxRelay::new(
                state.db.clone(),
                state.backbone.clone(),
                state.waker.clone(),
            );
            shutdown.tracker.spawn(relay.run(shutdown.token.clone()));
            shutdown.tracker.spawn(consumer::run(
                state.backbone.clone(),
                deadletter::spec(),
                deadletter::DeadLetterRecorder {
                    db: state.db.clone(),
                    backbone: state.backbone.clone(),
                },
                shutdown.token.clone(),
            ));
            // Imports left unfinished (by the previous run, or by another gateway
            // that died: once its lease expires) resume from their checkpoint.
            state.imports.watch(state.imports.lease() / 2);
            readiness.set_consumers_running();
            stopping = Some(state);
        }
        let served = server.await;
        if let Some(state) = stopping {
            // Running imports commit their batch and pause; the next start resumes them.
            if !state.imports.stop(Duration::from_secs(15)).await {
                tracing::warn!("gateway: screening imports did not pause in time");
            }
            if !shutdown.wait(Duration::from_secs(20)).await {
                tracing::warn!("gateway: tasks did not stop in time");
            }
            let _ = state.backbone.client.drain().await;
            let _ = state.db.close().await;
        }
        match served {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(PlatformError::Config(format!("http server: {e}"))),
            Err(e) => return Err(PlatformError::Config(format!("http server task: {e}"))),
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}

impl AppState {
    /// The state the gateway serves with, from its configuration and its
    /// connections (also how in-process route tests build the router).
    pub fn new(
        config: &Config,
        db: Db,
        backbone: nats::Backbone,
        sealer: Sealer,
        audit_key: sanyu_store::audit::AuditKey,
        readiness: Readiness,
        console: Arc<console::session::Settings>,
    ) -> Self {
        let waker = Waker::default();
        let imports = sanyu_importer::Runner::new(
            db.clone(),
            waker.clone(),
            std::path::PathBuf::from(&config.screening.spool_dir),
            config.screening.upload_limit_bytes,
            config.screening.batch_rows,
        )
        .with_worse_margin_percent(config.screening.worse_margin_percent)
        .with_xlsx_limits(config.screening.xlsx.clone())
        .with_lease(std::time::Duration::from_secs(
            config.screening.lease_secs.max(1),
        ));
        AppState {
            db,
            backbone,
            sealer,
            waker,
            body_limit: config.http.body_limit_bytes,
            audit_key,
            escalation: config.escalation.clone(),
            imports,
            zero_report: config.zero_report.clone(),
            duty: sanyu_case::DutyCalendar::new(
                &config.notify.time_zone,
                config.zero_report.clone(),
            )
            .unwrap_or_default(),
            receipts: std::sync::Arc::new(routes::receipts::ReceiptSettings::from_config(config)),
            readiness,
            console,
        }
    }
}

/// Until the gateway is connected: `/healthz` 200, `/readyz` 503 with what is
/// missing, every other route 503 `unavailable` with `Retry-After`. Then the
/// API.
fn switching_router(app: Arc<OnceLock<Router>>, readiness: Readiness) -> Router {
    let starting = Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(runner::readyz))
        .with_state(readiness)
        .fallback(|| async {
            error::ApiError::Unavailable("the service is starting; try again".into())
        });
    Router::new().fallback_service(tower::service_fn(move |req: axum::extract::Request| {
        let target = app.get().cloned().unwrap_or_else(|| starting.clone());
        async move { target.oneshot(req).await }
    }))
}

/// Build and run the gateway.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PlatformError> {
    Gateway::build(&config)
        .await?
        .run_until_stopped(shutdown)
        .await
}
