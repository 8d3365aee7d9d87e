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
use crate::{aliyun, tencent, webhook};

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
    /// The number as the provider received it (`+86…`, or 11 digits for Alibaba Cloud).
    pub phone: String,
    /// Webhook template name, Alibaba `TemplateCode` or Tencent `TemplateId`.
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

    /// Answers every request for `phone` (any spelling) with `reply`.
    pub fn script_for(&self, phone: &str, reply: Reply) {
        self.shared.lock().rules.insert(normalize(phone), reply);
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

// ---------------------------------------------------------------- webhook

async fn handle_webhook(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let error = |status: StatusCode, code: &str, reason: &str| {
        (status, Json(json!({"code": code, "reason": reason}))).into_response()
    };
    let verified = webhook::verify(
        shared.secret.as_bytes(),
        header(headers, webhook::TIMESTAMP_HEADER).unwrap_or_default(),
        header(headers, webhook::SIGNATURE_HEADER).unwrap_or_default(),
        body,
        Utc::now(),
    );
    if verified.is_err() {
        shared.reject("bad_signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "X-Sanyu-Signature does not match",
        );
    }
    let Ok(request) = serde_json::from_slice::<webhook::WebhookRequest>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "body is not a webhook request",
        );
    };
    let idempotency_key = header(headers, webhook::IDEMPOTENCY_HEADER)
        .map(str::to_owned)
        .or(Some(request.idempotency_key.clone()));
    let (reply, id) = shared.record(Received {
        phone: request.to,
        template: request.template,
        params: request.params.into_iter().collect(),
        text: Some(request.text),
        sign_name: None,
        idempotency_key: idempotency_key.clone(),
    });
    let reply = settle(reply).await;
    // A key accepted before answers the first message's id (nothing is sent
    // again; see `StandIn::handset_messages`).
    let id = match (&reply, &idempotency_key) {
        (Reply::Accept | Reply::Delay(_), Some(key)) if !key.is_empty() => {
            *shared.lock().first_ids.entry(key.clone()).or_insert(id)
        }
        _ => id,
    };
    match reply {
        Reply::Accept | Reply::Delay(_) => Json(json!({"id": format!("wh-{id}")})).into_response(),
        Reply::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "scripted server error",
        ),
        Reply::HttpStatus(status) => plain_status(status),
        Reply::Throttled => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "throttled", "slow down");
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            response
        }
        Reply::InvalidNumber => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_number",
            "number is not a mobile number",
        ),
        Reply::TemplateRejected => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_rejected",
            "template is not approved",
        ),
    }
}

// ---------------------------------------------------------- Alibaba Cloud

fn aliyun_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
            "HostId": "dysmsapi.aliyuncs.com",
            "Code": code,
            "Message": message,
        })),
    )
        .into_response()
}

async fn handle_aliyun(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    // RPC parameters may come in the query string and/or a form body; the
    // signature covers all of them.
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    if let Some(query) = uri.query() {
        params.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    let is_form = header(headers, "content-type")
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        params.extend(url::form_urlencoded::parse(body).into_owned());
    }
    let get = |name: &str| params.get(name).cloned().unwrap_or_default();

    let complete = ["AccessKeyId", "Signature", "SignatureNonce", "Timestamp"]
        .iter()
        .all(|p| params.contains_key(*p))
        && get("SignatureMethod") == aliyun::SIGNATURE_METHOD
        && get("SignatureVersion") == aliyun::SIGNATURE_VERSION;
    if !complete {
        shared.reject("IncompleteSignature");
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        );
    }
    if get("AccessKeyId") != shared.key_id {
        shared.reject("InvalidAccessKeyId.NotFound");
        return aliyun_error(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    }
    let expected = aliyun::sign(method.as_str(), &params, &shared.secret);
    if expected != get("Signature") {
        shared.reject("SignatureDoesNotMatch");
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        );
    }
    let fresh = NaiveDateTime::parse_from_str(&get("Timestamp"), "%Y-%m-%dT%H:%M:%SZ")
        .map(|t| (Utc::now().naive_utc() - t).num_minutes().abs() <= 15)
        .unwrap_or(false);
    if !fresh {
        shared.reject("InvalidTimeStamp.Expired");
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        );
    }
    if !shared.lock().nonces.insert(get("SignatureNonce")) {
        shared.reject("SignatureNonceUsed");
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }
    if get("Action") != "SendSms" || get("Version") != aliyun::API_VERSION {
        return aliyun_error(
            StatusCode::NOT_FOUND,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        );
    }
    let template_params = match serde_json::from_str::<serde_json::Value>(&get("TemplateParam")) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        _ => {
            return aliyun_error(
                StatusCode::OK,
                "isv.INVALID_JSON_PARAM",
                "JSON参数不合法，只接受字符串值",
            );
        }
    };
    let (reply, id) = shared.record(Received {
        phone: get("PhoneNumbers"),
        template: get("TemplateCode"),
        params: template_params,
        text: None,
        sign_name: Some(get("SignName")),
        idempotency_key: params.get("OutId").cloned(),
    });
    let answer = |code: &str, message: &str| aliyun_error(StatusCode::OK, code, message);
    match settle(reply).await {
        Reply::Accept | Reply::Delay(_) => Json(json!({
            "Code": "OK",
            "Message": "OK",
            "BizId": format!("{:06}^{}", 900_619 + id, id),
            "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
        }))
        .into_response(),
        Reply::ServerError => aliyun_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "isp.SYSTEM_ERROR",
            "isp.SYSTEM_ERROR",
        ),
        Reply::HttpStatus(status) => plain_status(status),
        Reply::Throttled => answer("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1"),
        Reply::InvalidNumber => answer("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"),
        Reply::TemplateRejected => answer("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法(不存在或被拉黑)"),
    }
}

// ---------------------------------------------------------- Tencent Cloud

fn tencent_error(code: &str, message: &str) -> Response {
    Json(json!({"Response": {
        "Error": {"Code": code, "Message": message},
        "RequestId": uuid::Uuid::new_v4().to_string(),
    }}))
    .into_response()
}

struct Authorization {
    secret_id: String,
    date: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(value: &str) -> Option<Authorization> {
    let rest = value.strip_prefix(tencent::ALGORITHM)?.trim_start();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let (secret_id, date, service, terminator) =
        (scope.next()?, scope.next()?, scope.next()?, scope.next()?);
    if terminator != "tc3_request" || scope.next().is_some() {
        return None;
    }
    Some(Authorization {
        secret_id: secret_id.to_owned(),
        date: date.to_owned(),
        service: service.to_owned(),
        signed_headers: signed_headers?.split(';').map(str::to_owned).collect(),
        signature: signature?.to_owned(),
    })
}

async fn handle_tencent(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Some(auth) = header(headers, "authorization").and_then(parse_authorization) else {
        shared.reject("AuthFailure.InvalidAuthorization");
        return tencent_error(
            "AuthFailure.InvalidAuthorization",
            "Authorization in the request header is invalid.",
        );
    };
    if auth.secret_id != shared.key_id {
        shared.reject("AuthFailure.SecretIdNotFound");
        return tencent_error(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        );
    }
    let timestamp = header(headers, "x-tc-timestamp").and_then(|t| t.parse::<i64>().ok());
    let Some(timestamp) = timestamp.filter(|t| (Utc::now().timestamp() - t).abs() <= 300) else {
        shared.reject("AuthFailure.SignatureExpire");
        return tencent_error("AuthFailure.SignatureExpire", "Signature expired.");
    };
    // The signed headers must include content-type and host, and be present.
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        match header(headers, name) {
            Some(value) => signed.push((name.as_str(), value)),
            None => {
                shared.reject("AuthFailure.InvalidAuthorization");
                return tencent_error(
                    "AuthFailure.InvalidAuthorization",
                    "A signed header is missing from the request.",
                );
            }
        }
    }
    let has = |n: &str| auth.signed_headers.iter().any(|h| h == n);
    if !has("content-type") || !has("host") {
        shared.reject("AuthFailure.InvalidAuthorization");
        return tencent_error(
            "AuthFailure.InvalidAuthorization",
            "SignedHeaders must include content-type and host.",
        );
    }
    let query = if method == Method::GET {
        uri.query().unwrap_or_default()
    } else {
        ""
    };
    let (canonical, signed_headers) =
        tencent::canonical_request(method.as_str(), query, &signed, body);
    let expected = tencent::signature(
        &shared.secret,
        &auth.date,
        &auth.service,
        &tencent::string_to_sign(timestamp, &auth.date, &auth.service, &canonical),
    );
    let scope_ok = tencent::utc_date(timestamp).as_deref() == Some(auth.date.as_str())
        && auth.service == tencent::SERVICE
        && signed_headers == auth.signed_headers.join(";");
    if !scope_ok || expected != auth.signature {
        shared.reject("AuthFailure.SignatureFailure");
        return tencent_error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        );
    }
    if header(headers, "x-tc-action") != Some(tencent::ACTION) {
        return tencent_error("InvalidAction", "The requested action does not exist.");
    }
    if header(headers, "x-tc-version") != Some(tencent::API_VERSION) {
        return tencent_error("NoSuchVersion", "The requested version does not exist.");
    }
    let Ok(request) = serde_json::from_slice::<tencent::SendSmsRequest>(body) else {
        return tencent_error(
            "FailedOperation.FailResolvePacket",
            "Failed to parse the request packet.",
        );
    };
    let phone = request
        .phone_number_set
        .first()
        .cloned()
        .unwrap_or_default();
    let (reply, id) = shared.record(Received {
        phone: phone.clone(),
        template: request.template_id.clone(),
        params: request
            .template_param_set
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1).to_string(), v.clone()))
            .collect(),
        text: None,
        sign_name: Some(request.sign_name.clone()),
        idempotency_key: request.session_context.clone(),
    });
    let status = |code: &str, message: &str, serial: &str| {
        Json(json!({"Response": {
            "SendStatusSet": [{
                "SerialNo": serial,
                "PhoneNumber": phone,
                "Fee": if code == "Ok" { 1 } else { 0 },
                "SessionContext": request.session_context.clone().unwrap_or_default(),
                "Code": code,
                "Message": message,
                "IsoCode": "CN",
            }],
            "RequestId": uuid::Uuid::new_v4().to_string(),
        }}))
        .into_response()
    };
    match settle(reply).await {
        Reply::Accept | Reply::Delay(_) => status(
            "Ok",
            "send success",
            &format!("5000:10457106691570536578494961{id:04}"),
        ),
        Reply::ServerError => tencent_error("InternalError.Timeout", "request timed out"),
        Reply::HttpStatus(code) => plain_status(code),
        Reply::Throttled => status(
            "LimitExceeded.PhoneNumberDailyLimit",
            "the number of sms messages sent from a single mobile number every day exceeds the upper limit",
            "",
        ),
        Reply::InvalidNumber => status(
            "InvalidParameterValue.IncorrectPhoneNumber",
            "incorrect phone number",
            "",
        ),
        Reply::TemplateRejected => tencent_error(
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "template is not approved or request content does not match the approved template content",
        ),
    }
}
