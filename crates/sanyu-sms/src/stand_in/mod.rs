//! Stand-ins for the SMS providers, for tests (feature `stand-in`).
//!
//! Each [`StandIn`] is a small axum server on `127.0.0.1:0` that speaks one
//! provider's protocol: it recomputes the request signature from what it
//! actually received (method, query, headers, body) with the known secret,
//! exactly as the provider documents it, and refuses a mismatch with that
//! provider's own error body. Accepted requests are recorded
//! ([`StandIn::received`]) and answered as scripted ([`StandIn::script`],
//! [`StandIn::script_for`]); without a script they succeed.
//!
//! | | refusal of a bad signature | scripted answers |
//! |---|---|---|
//! | webhook | 401 `{"code":"bad_signature"}` | 500, 429 `throttled`, 422 `invalid_number` / `template_rejected` |
//! | Alibaba Cloud | 400 `SignatureDoesNotMatch` (404 `InvalidAccessKeyId.NotFound` for an unknown key id) | 500 `isp.SYSTEM_ERROR`, `isv.BUSINESS_LIMIT_CONTROL`, `isv.MOBILE_NUMBER_ILLEGAL`, `isv.SMS_TEMPLATE_ILLEGAL` |
//! | Tencent Cloud | 200 `Response.Error` `AuthFailure.SignatureFailure` (`AuthFailure.SecretIdNotFound`, `AuthFailure.SignatureExpire`) | `InternalError.Timeout`, per-number `LimitExceeded.PhoneNumberDailyLimit` / `InvalidParameterValue.IncorrectPhoneNumber`, `FailedOperation.TemplateIncorrectOrUnapproved` |
//!
//! The Alibaba Cloud and Tencent Cloud stand-ins also take the voice
//! products' calls (`SingleCallByTts` of `dyvmsapi`, `SendTtsVoice` of `vms`),
//! signed the same way, and record them with `channel = "voice"`.
//!
//! The error bodies follow the shapes the providers document; their message
//! texts are paraphrased where the documentation does not give them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDateTime, Utc};
use serde_json::json;

use crate::message::PhoneNumber;
use aliyun::handle_aliyun;
use tencent::handle_tencent;
use webhook::handle_webhook;
mod aliyun;
mod tencent;
mod webhook;

/// Which provider a stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInKind {
    Webhook,
    Aliyun,
    Tencent,
}

/// How the stand-in answers an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Success, with a fresh provider message id.
    Accept,
    /// The provider's own server-side failure (see the module table).
    ServerError,
    /// A bare HTTP status with a plain-text body (e.g. 502 from a gateway).
    HttpStatus(u16),
    /// The provider's throttling code.
    Throttled,
    /// The provider's invalid-number code.
    InvalidNumber,
    /// The provider's template-rejected code.
    TemplateRejected,
    /// Wait this long, then accept (for client timeouts).
    Delay(Duration),
}

/// One request the stand-in authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `sms`, or `voice` for a text-to-speech call (Alibaba Cloud
    /// `SingleCallByTts`, Tencent Cloud `SendTtsVoice`).
    pub channel: &'static str,
    /// The number as the provider received it (`+86…`, or 11 digits for Alibaba Cloud).
    pub phone: String,
    /// Webhook template name, Alibaba `TemplateCode` / `TtsCode` or Tencent `TemplateId`.
    pub template: String,
    /// Named parameters (Tencent's positional ones are named `1`, `2`, …).
    pub params: Vec<(String, String)>,
    /// The rendered text (webhook only).
    pub text: Option<String>,
    /// `SignName` (Alibaba Cloud, Tencent Cloud).
    pub sign_name: Option<String>,
    /// `Idempotency-Key`, `OutId` or `SessionContext`.
    pub idempotency_key: Option<String>,
}

/// A running stand-in. Dropping it stops the server.
pub struct StandIn {
    base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    kind: StandInKind,
    key_id: String,
    secret: String,
    state: Mutex<StateInner>,
}

#[derive(Default)]
struct StateInner {
    queue: VecDeque<Reply>,
    rules: HashMap<String, Reply>,
    received: Vec<Received>,
    rejections: Vec<String>,
    nonces: HashSet<String>,
    next_id: u64,
    /// Webhook: the message id each accepted `Idempotency-Key` got first.
    first_ids: HashMap<String, u64>,
    /// The account's request limit per second ([`StandIn::limit_per_second`]).
    limit: Option<u32>,
    /// When the requests of the last second came in (for `limit`).
    recent: VecDeque<std::time::Instant>,
    /// Requests answered "throttled" because of `limit`.
    over_limit: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, StateInner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reject(&self, code: &str) {
        self.lock().rejections.push(code.to_owned());
    }

    /// Records the request and picks the reply: a rule for the number first,
    /// then the queue, then `Accept`.
    fn record(&self, received: Received) -> (Reply, u64) {
        let key = normalize(&received.phone);
        let mut state = self.lock();
        if let Some(limit) = state.limit {
            let now = std::time::Instant::now();
            while state
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                state.recent.pop_front();
            }
            if state.recent.len() >= limit as usize {
                // Refused like the provider refuses: nothing reaches a phone.
                state.over_limit += 1;
                return (Reply::Throttled, 0);
            }
            state.recent.push_back(now);
        }
        state.received.push(received);
        state.next_id += 1;
        let id = state.next_id;
        let reply = match state.rules.get(&key) {
            Some(reply) => reply.clone(),
            None => state.queue.pop_front().unwrap_or(Reply::Accept),
        };
        (reply, id)
    }
}

fn normalize(phone: &str) -> String {
    PhoneNumber::parse(phone)
        .map(|p| p.e164().to_owned())
        .unwrap_or_else(|_| phone.to_owned())
}

impl StandIn {
    /// Starts a stand-in for `kind` that accepts requests signed with
    /// `key_id`/`secret` (`AccessKeyId`/`AccessKeySecret`, `SecretId`/`SecretKey`;
    /// the webhook uses only `secret`).
    pub async fn start(kind: StandInKind, key_id: &str, secret: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            kind,
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
            state: Mutex::new(StateInner::default()),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "SMS stand-in stopped");
            }
        });
        Ok(Self {
            base_url: format!("http://{addr}/"),
            shared,
            server,
        })
    }

    pub fn kind(&self) -> StandInKind {
        self.shared.kind
    }

    /// `http://127.0.0.1:<port>/` — the endpoint/URL to configure.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every authenticated request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// The messages that would reach a handset: every request the provider
    /// accepted, except that the signed webhook sends each `Idempotency-Key`
    /// once (a repeated key answers the first message's id and sends nothing),
    /// as its protocol asks of receivers. Alibaba Cloud's `OutId` and Tencent
    /// Cloud's `SessionContext` are only echoed in receipts: those providers
    /// send a repeated request again, and so does their stand-in.
    pub fn handset_messages(&self) -> usize {
        let received = self.received();
        match self.shared.kind {
            StandInKind::Webhook => {
                let mut keys = HashSet::new();
                received
                    .iter()
                    .filter(|r| match &r.idempotency_key {
                        Some(k) if !k.is_empty() => keys.insert(k.clone()),
                        _ => true,
                    })
                    .count()
            }
            StandInKind::Aliyun | StandInKind::Tencent => received.len(),
        }
    }

    /// The error codes of requests refused before they were recorded (bad
    /// signature, unknown key id, expired timestamp, reused nonce).
    pub fn rejections(&self) -> Vec<String> {
        self.shared.lock().rejections.clone()
    }

    /// Answers the next authenticated request (not covered by a rule) with `reply`.
    pub fn script(&self, reply: Reply) {
        self.shared.lock().queue.push_back(reply);
    }

    /// Plays the account's request limit: past `per_second` requests in any
    /// second, the provider's throttling answer, and nothing is recorded.
    pub fn limit_per_second(&self, per_second: u32) {
        self.shared.lock().limit = Some(per_second);
    }

    /// Requests refused because of [`StandIn::limit_per_second`].
    pub fn over_limit(&self) -> usize {
        self.shared.lock().over_limit
    }

    /// Answers every request for `phone` (any spelling) with `reply`.
    pub fn script_for(&self, phone: &str, reply: Reply) {
        self.shared.lock().rules.insert(normalize(phone), reply);
    }

    /// Posts a reply SMS (`text` from `from`) to Sanyu's reply callback at
    /// `url`, the way this provider pushes one (see [`crate::reply`]): the
    /// webhook signs it with its secret (`signing_secret`, to forge one pass
    /// another), Alibaba Cloud posts its up-message array and Tencent Cloud
    /// its reply object, unsigned (their token is in `url`). `id` is the
    /// provider's message id (Alibaba Cloud `sequence_id`, the webhook's
    /// `id`; Tencent Cloud has none and sends the time instead).
    pub async fn post_reply(
        &self,
        url: &str,
        from: &str,
        text: &str,
        id: u64,
        signing_secret: Option<&str>,
    ) -> reqwest::Result<reqwest::Response> {
        let client = reqwest::Client::new();
        let national = normalize(from).trim_start_matches("+86").to_owned();
        match self.shared.kind {
            StandInKind::Webhook => {
                let body = serde_json::to_vec(&crate::reply::WebhookReply {
                    id: id.to_string(),
                    from: normalize(from),
                    text: text.to_owned(),
                })
                .unwrap_or_default();
                let ts = Utc::now().timestamp();
                let secret = signing_secret.unwrap_or(&self.shared.secret);
                let sig = crate::webhook::sign(secret.as_bytes(), ts, &body);
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .header(crate::webhook::TIMESTAMP_HEADER, ts.to_string())
                    .header(crate::webhook::SIGNATURE_HEADER, sig)
                    .body(body)
                    .send()
                    .await
            }
            StandInKind::Aliyun => {
                let body = json!([{
                    "phone_number": national,
                    "send_time": Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
                    "content": text,
                    "sign_name": "测试学校",
                    "dest_code": "1",
                    "sequence_id": id,
                }]);
                client.post(url).json(&body).send().await
            }
            StandInKind::Tencent => {
                let body = json!({
                    "extend": "",
                    "mobile": national,
                    "nationcode": "86",
                    "sign": "测试学校",
                    "text": text,
                    "time": id,
                });
                client.post(url).json(&body).send().await
            }
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match shared.kind {
        StandInKind::Webhook => handle_webhook(&shared, &headers, &body).await,
        StandInKind::Aliyun => handle_aliyun(&shared, &method, &uri, &headers, &body).await,
        StandInKind::Tencent => handle_tencent(&shared, &method, &uri, &headers, &body).await,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn settle(reply: Reply) -> Reply {
    match reply {
        Reply::Delay(wait) => {
            tokio::time::sleep(wait).await;
            Reply::Accept
        }
        other => other,
    }
}

fn plain_status(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, "stand-in: scripted HTTP status").into_response()
}
