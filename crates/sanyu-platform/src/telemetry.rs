//! Logs and traces: structured `tracing` output (ids only, never names,
//! narratives or scores) and OpenTelemetry export over OTLP when an endpoint is
//! configured. A tracer provider is always installed so that trace context is
//! real and travels across NATS even without an exporter.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetryConfig;
use crate::{PlatformError, Result};

/// Keeps the tracer and meter providers alive; `shutdown` flushes spans and metrics.
pub struct Telemetry {
    provider: SdkTracerProvider,
    meters: SdkMeterProvider,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {e}");
        }
        if let Err(e) = self.meters.shutdown() {
            eprintln!("metrics shutdown: {e}");
        }
    }
}

/// Install the global subscriber. Must run inside the tokio runtime.
pub fn init(service: &'static str, config: &TelemetryConfig) -> Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder().with_service_name(service).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
    // Metrics (counters of alarms, fired timers, deliveries …) carry ids of
    // nothing: no names, narratives or scores, not even case ids.
    let mut meters = SdkMeterProvider::builder().with_resource(resource);
    if !config.otlp_endpoint.is_empty() {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .build()
            .map_err(|e| PlatformError::Telemetry(e.to_string()))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(std::time::Duration::from_secs(
                config.metrics_interval_secs.max(1),
            ))
            .build();
        meters = meters.with_reader(reader);
    }
    let meters = meters.build();
    opentelemetry::global::set_meter_provider(meters.clone());
    if !config.otlp_endpoint.is_empty() {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .build()
            .map_err(|e| PlatformError::Telemetry(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(service);
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|e| PlatformError::Telemetry(format!("log_filter: {e}")))?;
    let fmt = if config.log_format == "pretty" {
        tracing_subscriber::fmt::layer().with_target(false).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed()
    };
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    // A second init in one process (tests, `sanyu dev`) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Telemetry { provider, meters })
}
