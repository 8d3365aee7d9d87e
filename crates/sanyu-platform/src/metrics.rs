//! The Prometheus `/metrics` endpoint of every service (on its health
//! listener, never on the public API port), through the `metrics` facade and
//! `metrics-exporter-prometheus`. Counters and histograms are recorded where
//! things happen (HTTP requests by route template, deliveries by channel and
//! outcome); gauges that describe the whole deployment (outbox backlog, dead
//! letters, ladders, timers, imports, consumer lag) are read at scrape time
//! from the database and JetStream. Labels carry route templates, channels,
//! outcomes, stream and consumer names: never an id, a name or a score.
//! `deploy/prometheus/sanyu-alerts.yml` pages on them.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::nats::Backbone;

/// Latency buckets in seconds: 5 ms … 60 s (SMTP and SMS providers can be slow).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// A scrape waits this long for JetStream's consumer info at most.
const LAG_TIMEOUT: Duration = Duration::from_secs(2);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide recorder (once; `sanyu dev` runs every service
/// in one process). `None` when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match built {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the Prometheus recorder could not be installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "sanyu_http_request_duration_seconds",
        "HTTP requests by route template, method and status class"
    );
    describe_counter!(
        "sanyu_deliveries_total",
        "Notification sends by channel, provider and outcome"
    );
    describe_histogram!(
        "sanyu_delivery_duration_seconds",
        "Time a provider took to answer a send, by channel and outcome"
    );
    describe_gauge!("sanyu_outbox_waiting", "Events written, not yet published");
    describe_gauge!(
        "sanyu_outbox_oldest_seconds",
        "Age of the oldest event waiting in the outbox"
    );
    describe_gauge!(
        "sanyu_dead_letters_open",
        "Dead letters nobody resolved yet"
    );
    describe_gauge!(
        "sanyu_dead_letter_oldest_open_seconds",
        "Age of the oldest unresolved dead letter"
    );
    describe_gauge!(
        "sanyu_ladders",
        "Open cases by escalation ladder state (running, exhausted, late)"
    );
    describe_gauge!(
        "sanyu_timers_overdue",
        "Pending durable timers more than a minute past due"
    );
    describe_gauge!(
        "sanyu_imports_running",
        "Screening imports queued or running"
    );
    describe_gauge!(
        "sanyu_consumer_pending",
        "Messages a JetStream consumer has not been delivered yet"
    );
    describe_gauge!(
        "sanyu_consumer_ack_pending",
        "Messages delivered to a JetStream consumer and not acknowledged yet"
    );
    describe_gauge!("sanyu_up", "1 while the service runs");
}

/// Axum middleware: request latency by matched route template (never the
/// raw path, which carries ids). Layer it on the router that holds the routes.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    histogram!(
        "sanyu_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => status
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// One notification send and how it ended (`sent`, `failed`, `retry`,
/// `deferred`).
pub fn record_delivery(
    channel: &'static str,
    provider: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    counter!(
        "sanyu_deliveries_total",
        "channel" => channel,
        "provider" => provider,
        "outcome" => outcome
    )
    .increment(1);
    histogram!(
        "sanyu_delivery_duration_seconds",
        "channel" => channel,
        "outcome" => outcome
    )
    .record(took.as_secs_f64());
}

/// Read the deployment's gauges (database and JetStream) and render every
/// metric in Prometheus' text format.
pub async fn render(backends: Option<&(sanyu_store::Db, Backbone)>) -> Response {
    let Some(handle) = install() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response();
    };
    gauge!("sanyu_up").set(1.0);
    if let Some((db, backbone)) = backends {
        match sanyu_store::ops::snapshot(db, chrono::Utc::now()).await {
            Ok(s) => {
                gauge!("sanyu_outbox_waiting").set(s.outbox_waiting as f64);
                gauge!("sanyu_outbox_oldest_seconds").set(s.outbox_oldest_secs);
                gauge!("sanyu_dead_letters_open").set(s.dead_letters_open as f64);
                gauge!("sanyu_dead_letter_oldest_open_seconds").set(s.dead_letter_oldest_open_secs);
                gauge!("sanyu_ladders", "state" => "running").set(s.ladders_running as f64);
                gauge!("sanyu_ladders", "state" => "exhausted").set(s.ladders_exhausted as f64);
                gauge!("sanyu_ladders", "state" => "late").set(s.ladders_late as f64);
                gauge!("sanyu_timers_overdue").set(s.timers_overdue as f64);
                gauge!("sanyu_imports_running").set(s.imports_running as f64);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: the database gauges could not be read"),
        }
        match tokio::time::timeout(LAG_TIMEOUT, backbone.consumer_lag()).await {
            Ok(Ok(lags)) => {
                for lag in lags {
                    let labels = [
                        ("stream", lag.stream.clone()),
                        ("consumer", lag.consumer.clone()),
                    ];
                    gauge!("sanyu_consumer_pending", &labels).set(lag.pending as f64);
                    gauge!("sanyu_consumer_ack_pending", &labels).set(lag.ack_pending as f64);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics: consumer lag could not be read"),
            Err(_) => tracing::warn!("metrics: consumer lag timed out"),
        }
    }
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
