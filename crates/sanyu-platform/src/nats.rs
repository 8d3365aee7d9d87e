//! The JetStream backbone: streams and durable consumers defined in code and
//! ensured at start-up (idempotently), and publishing that always awaits the
//! server's ack with `Nats-Msg-Id` set from the event id.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use sanyu_events::subjects::{self, *};

use crate::config::NatsConfig;
use crate::trace::TRACEPARENT;
use crate::{PlatformError, Result};

/// Keep signals and case events for replay and audit (rules simulation reads them).
const RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// A connected client with the settings the streams and consumers use.
#[derive(Clone)]
pub struct Backbone {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub settings: NatsConfig,
}

/// A durable pull consumer of one of Sanyu's streams.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: &'static str,
    pub durable: &'static str,
    pub filter_subject: String,
    /// How many messages one process handles at once.
    pub lanes: usize,
    /// Up to this many messages a lane already holds go to the handler
    /// together ([`crate::consumer::Handler::handle_batch`]); 1 = one at a time.
    pub max_batch: usize,
    /// Which messages must be handled one after another.
    pub ordering: Ordering,
}

/// Ordering inside one process: messages with the same key go to the same
/// lane and are handled in stream order; different keys run in parallel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Same school and student partition (the last two subject tokens), whatever
    /// the event kind → same lane.
    BySubject,
    /// No ordering needed (each message is independent).
    Unordered,
}

fn nats_err(context: &str, e: impl std::fmt::Display) -> PlatformError {
    PlatformError::Nats(format!("{context}: {e}"))
}

/// Whether a connection error is a TLS handshake's refusal (the client
/// reports a refused certificate as an I/O error carrying rustls' error).
fn is_tls_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Seconds between client pings (two unanswered: reconnect elsewhere).
const PING_INTERVAL_SECS: u64 = 5;

/// The servers of `nats.url`: one URL, or a comma-separated list of a
/// cluster's nodes (the client picks one and reconnects across the others).
pub fn server_list(url: &str) -> Result<Vec<async_nats::ServerAddr>> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| nats_err("nats.url", format!("{u:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    if servers.is_empty() {
        return Err(nats_err("nats.url", "no server given"));
    }
    Ok(servers)
}

/// Connect once (trying every server of the list); the caller retries an
/// outage (`runner::connect`), a refused TLS certificate is `PlatformError::Config`.
pub async fn connect(settings: &NatsConfig, name: &str) -> Result<Backbone> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        // A node that stops answering (a partition, a frozen host) is given up
        // after two missed pings, and the client moves to another node: the
        // default (60 s) would hold a crisis notice for minutes.
        .ping_interval(Duration::from_secs(PING_INTERVAL_SECS))
        .max_reconnects(None);
    if !settings.tls_ca_file.is_empty() {
        options = options
            .add_root_certificates(settings.tls_ca_file.clone().into())
            .require_tls(true);
    }
    if !settings.tls_client_cert.is_empty() {
        options = options.add_client_certificate(
            settings.tls_client_cert.clone().into(),
            settings.tls_client_key.clone().into(),
        );
    }
    if !settings.user.is_empty() {
        options =
            options.user_and_password(settings.user.clone(), settings.password.expose().to_owned());
    }
    if !settings.creds_file.is_empty() {
        options = options
            .credentials_file(&settings.creds_file)
            .await
            .map_err(|e| nats_err("credentials file", e))?;
    }
    let servers = server_list(&settings.url)?;
    let client = tokio::time::timeout(Duration::from_secs(30), options.connect(servers))
        .await
        .map_err(|_| {
            nats_err(
                "connect",
                format!("no NATS server at {} after 30 s", settings.url),
            )
        })?
        .map_err(|e| {
            // A certificate the client does not trust (or a server without
            // the TLS the settings require) is a configuration error, not an
            // outage: the caller stops rather than retrying for ever.
            if e.kind() == async_nats::ConnectErrorKind::Tls || is_tls_refusal(&e) {
                PlatformError::Config(format!("nats.url: TLS refused: {e}"))
            } else {
                nats_err("connect", e)
            }
        })?;
    let js = jetstream::new(client.clone());
    Ok(Backbone {
        client,
        js,
        settings: settings.clone(),
    })
}

impl Backbone {
    /// The stream definitions, all on file storage.
    pub fn stream_configs(&self) -> Vec<stream::Config> {
        let base = |name: &str, subjects: Vec<String>| stream::Config {
            name: name.to_owned(),
            subjects,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: RETENTION,
            num_replicas: self.settings.stream_replicas.max(1),
            duplicate_window: Duration::from_secs(self.settings.duplicate_window_secs),
            allow_direct: true,
            ..Default::default()
        };
        vec![
            base(INTAKE_STREAM, vec![INTAKE_SUBJECTS.into()]),
            base(CASE_STREAM, vec![CASE_SUBJECTS.into()]),
            base(NOTIFY_STREAM, vec![NOTIFY_SUBJECTS.into()]),
            base(ZERO_STREAM, vec![ZERO_SUBJECTS.into()]),
            base(
                DEAD_LETTER_STREAM,
                vec![
                    format!("{DEAD_LETTER_PREFIX}.>"),
                    ADVISORY_MAX_DELIVERIES.into(),
                ],
            ),
        ]
    }

    /// Create the streams, or bring their mutable settings up to date.
    pub async fn ensure_streams(&self) -> Result<()> {
        for config in self.stream_configs() {
            match self.js.get_stream(&config.name).await {
                Ok(mut existing) => {
                    let info = existing
                        .info()
                        .await
                        .map_err(|e| nats_err("stream info", e))?;
                    let current = &info.config;
                    if current.subjects != config.subjects
                        || current.duplicate_window != config.duplicate_window
                        || current.max_age != config.max_age
                        || current.num_replicas != config.num_replicas
                    {
                        self.js
                            .update_stream(&config)
                            .await
                            .map_err(|e| nats_err("update stream", e))?;
                    }
                }
                Err(_) => {
                    self.js
                        .get_or_create_stream(config)
                        .await
                        .map_err(|e| nats_err("create stream", e))?;
                }
            }
        }
        Ok(())
    }

    /// The pull-consumer configuration for a spec.
    ///
    /// - explicit ack: nothing is removed from a consumer until the service says so;
    /// - `ack_wait`: how long a crashed or hung worker keeps a message before redelivery;
    /// - backoff: the retry schedule is `backoff_secs`, carried by each nak as its
    ///   delay. The consumer-level `backoff` list is left empty on purpose: when it is
    ///   set, nats-server replaces `ack_wait` by its first step and lengthens every
    ///   nak's delay by `backoff[n] - backoff[0]` (measured: four deliveries with
    ///   `backoff_secs = [1, 1, 1]` took 11 s instead of 3 s), so the schedule an
    ///   operator configures would not be the one that runs;
    /// - `max_deliver`: after that many deliveries the loop dead-letters the message;
    ///   a message that is never acked (a crashing handler) makes the server emit the
    ///   max-deliveries advisory, which the dead-letter stream captures.
    pub fn consumer_config(&self, spec: &ConsumerSpec) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(spec.durable.to_owned()),
            description: Some(format!("sanyu {} on {}", spec.durable, spec.stream)),
            filter_subject: spec.filter_subject.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait: Duration::from_secs(self.settings.ack_wait_secs.max(1)),
            max_deliver: self.settings.max_deliver.max(2),
            backoff: Vec::new(),
            max_ack_pending: 1000,
            ..Default::default()
        }
    }

    /// Create the durable consumer, or update it to the configuration in code.
    pub async fn ensure_consumer(&self, spec: &ConsumerSpec) -> Result<consumer::PullConsumer> {
        let stream = self
            .js
            .get_stream(spec.stream)
            .await
            .map_err(|e| nats_err("get stream", e))?;
        let config = self.consumer_config(spec);
        if stream.consumer_info(spec.durable).await.is_ok() {
            stream
                .update_consumer(config)
                .await
                .map_err(|e| nats_err("update consumer", e))
        } else {
            stream
                .get_or_create_consumer(spec.durable, config)
                .await
                .map_err(|e| nats_err("create consumer", e))
        }
    }

    /// Publish and wait for JetStream's ack. Returns whether the server saw the
    /// id before (a duplicate inside the dedup window: nothing new was stored).
    pub async fn publish(
        &self,
        subject: &str,
        event_id: &str,
        payload: Vec<u8>,
        traceparent: Option<&str>,
    ) -> Result<bool> {
        let ack = self
            .publish_async(subject, event_id, payload, traceparent)
            .await?
            .await
            .map_err(|e| nats_err("publish ack", e))?;
        Ok(ack.duplicate)
    }

    /// Send a publish and return the future of its ack (for pipelining a batch).
    pub async fn publish_async(
        &self,
        subject: &str,
        event_id: &str,
        payload: Vec<u8>,
        traceparent: Option<&str>,
    ) -> Result<jetstream::context::PublishAckFuture> {
        let mut headers = HeaderMap::new();
        if let Some(tp) = traceparent.filter(|t| !t.is_empty()) {
            headers.insert(TRACEPARENT, tp);
        }
        let mut message = PublishMessage::build()
            .payload(payload.into())
            .headers(headers)
            .message_id(event_id);
        if let Some(stream) = stream_of(subject) {
            message = message.expected_stream(stream);
        }
        self.js
            .send_publish(subject.to_owned(), message)
            .await
            .map_err(|e| nats_err("publish", e))
    }

    /// Version string of the connected server.
    pub fn server_version(&self) -> String {
        self.client.server_info().version
    }

    /// How far behind every durable consumer of every Sanyu stream is (for
    /// `/metrics`).
    pub async fn consumer_lag(&self) -> Result<Vec<ConsumerLag>> {
        use futures::TryStreamExt;
        let mut lags = Vec::new();
        for config in self.stream_configs() {
            let stream = self
                .js
                .get_stream(&config.name)
                .await
                .map_err(|e| nats_err("stream info", e))?;
            let names: Vec<String> = stream
                .consumer_names()
                .try_collect()
                .await
                .map_err(|e| nats_err("consumer names", e))?;
            for name in names {
                let info = stream
                    .consumer_info(&name)
                    .await
                    .map_err(|e| nats_err("consumer info", e))?;
                lags.push(ConsumerLag {
                    stream: config.name.clone(),
                    consumer: name,
                    pending: info.num_pending,
                    ack_pending: info.num_ack_pending as u64,
                });
            }
        }
        Ok(lags)
    }

    /// Whether the connection is up (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// One durable consumer's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    pub stream: String,
    pub consumer: String,
    /// Not delivered yet.
    pub pending: u64,
    /// Delivered, not acknowledged yet.
    pub ack_pending: u64,
}

/// The stream a Sanyu subject belongs to.
pub fn stream_of(subject: &str) -> Option<&'static str> {
    let area = subject.strip_prefix("sanyu.")?.split('.').next()?;
    match area {
        "intake" => Some(INTAKE_STREAM),
        "case" => Some(CASE_STREAM),
        "notify" => Some(NOTIFY_STREAM),
        "zero" => Some(ZERO_STREAM),
        "dlq" => Some(subjects::DEAD_LETTER_STREAM),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::server_list;

    #[test]
    fn one_url_or_a_cluster_list() {
        assert_eq!(
            server_list("nats://127.0.0.1:4222").expect("one URL").len(),
            1
        );
        let cluster = server_list("tls://n1:4222, tls://n2:4222,tls://n3:4222").expect("a list");
        let hosts: Vec<_> = cluster.iter().map(|s| s.host().to_owned()).collect();
        assert_eq!(hosts, ["n1", "n2", "n3"]);
        assert!(server_list(" , ").is_err());
        assert!(server_list("nats://n1:notaport").is_err());
    }
}
