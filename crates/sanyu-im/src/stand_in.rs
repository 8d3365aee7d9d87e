//! Stand-ins for WeCom and DingTalk, for tests (feature `stand-in`).
//!
//! A [`StandIn`] is a small axum server on `127.0.0.1:0` that plays one
//! platform the way its documentation describes (see [`crate::wecom`] and
//! [`crate::dingtalk`]): it issues access tokens only for the configured
//! application id and secret, answers every other call without a token with
//! 41001, with an unknown one with 40014 and with an expired one
//! ([`StandIn::expire_tokens`]) with 42001; finds users by mobile number in
//! its directory ([`StandIn::add_user`]); checks the application's agent id
//! and the message shape; and records what it accepted ([`StandIn::received`]).
//! WeCom answers a recipient outside the application with errcode 0 and the
//! user in `invaliduser`, as WeCom does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Which platform a stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInKind {
    Wecom,
    Dingtalk,
}

/// One message the stand-in accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImReceived {
    pub user_id: String,
    pub agent_id: i64,
    pub text: String,
}

/// A running stand-in. Dropping it stops the server.
pub struct StandIn {
    base_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    kind: StandInKind,
    app_id: String,
    app_secret: String,
    agent_id: i64,
    state: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Issued tokens: `true` while valid.
    tokens: HashMap<String, bool>,
    token_requests: usize,
    directory: HashMap<String, String>,
    received: Vec<ImReceived>,
    rejections: Vec<i64>,
    busy: usize,
    next_id: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StandIn {
    /// Starts a stand-in for `kind` whose application is `app_id`/`app_secret`
    /// (WeCom corpid/corpsecret, DingTalk appkey/appsecret) and `agent_id`.
    pub async fn start(
        kind: StandInKind,
        app_id: &str,
        app_secret: &str,
        agent_id: i64,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            kind,
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
            agent_id,
            state: Mutex::new(Inner::default()),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "IM stand-in stopped");
            }
        });
        Ok(Self {
            base_url: format!("http://{addr}/"),
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:<port>/` — the endpoint to configure.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A member reachable by the application, found by `mobile` (11 digits).
    pub fn add_user(&self, mobile: &str, user_id: &str) {
        self.shared
            .lock()
            .directory
            .insert(mobile.to_owned(), user_id.to_owned());
    }

    /// Every token issued so far now answers "expired" (42001).
    pub fn expire_tokens(&self) {
        for valid in self.shared.lock().tokens.values_mut() {
            *valid = false;
        }
    }

    /// The next `n` sends answer "system busy" (errcode -1).
    pub fn script_busy(&self, n: usize) {
        self.shared.lock().busy = n;
    }

    pub fn received(&self) -> Vec<ImReceived> {
        self.shared.lock().received.clone()
    }

    /// The errcodes of refused calls, in order.
    pub fn rejections(&self) -> Vec<i64> {
        self.shared.lock().rejections.clone()
    }

    /// How many tokens were asked for (successfully or not).
    pub fn token_requests(&self) -> usize {
        self.shared.lock().token_requests
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn answer(code: i64, message: &str) -> Response {
    Json(json!({"errcode": code, "errmsg": message})).into_response()
}

fn refuse(shared: &Shared, code: i64, message: &str) -> Response {
    shared.lock().rejections.push(code);
    answer(code, message)
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let (token_path, id_name, secret_name, lookup_path, send_path) = match shared.kind {
        StandInKind::Wecom => (
            "/cgi-bin/gettoken",
            "corpid",
            "corpsecret",
            "/cgi-bin/user/getuserid",
            "/cgi-bin/message/send",
        ),
        StandInKind::Dingtalk => (
            "/gettoken",
            "appkey",
            "appsecret",
            "/topapi/v2/user/getbymobile",
            "/topapi/message/corpconversation/asyncsend_v2",
        ),
    };
    let params = query(&uri);
    let path = uri.path();
    if path == token_path && method == Method::GET {
        shared.lock().token_requests += 1;
        let id_ok = params.get(id_name) == Some(&shared.app_id);
        let secret_ok = params.get(secret_name) == Some(&shared.app_secret);
        return match (shared.kind, id_ok, secret_ok) {
            (_, true, true) => {
                let token = uuid::Uuid::new_v4().simple().to_string();
                shared.lock().tokens.insert(token.clone(), true);
                Json(json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}))
                    .into_response()
            }
            (StandInKind::Wecom, false, _) => refuse(&shared, 40013, "invalid corpid"),
            (StandInKind::Wecom, true, false) => refuse(&shared, 40001, "invalid credential"),
            (StandInKind::Dingtalk, _, _) => refuse(&shared, 40089, "不合法的appkey或appsecret"),
        };
    }
    if path != lookup_path && path != send_path {
        return (StatusCode::NOT_FOUND, "no such API").into_response();
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST only").into_response();
    }
    let token_state = params
        .get("access_token")
        .map(|t| shared.lock().tokens.get(t).copied());
    match token_state {
        None => return refuse(&shared, 41001, "access_token missing"),
        Some(None) => return refuse(&shared, 40014, "invalid access_token"),
        Some(Some(false)) => return refuse(&shared, 42001, "access_token expired"),
        Some(Some(true)) => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&shared, 40035, "invalid JSON");
    };
    if path == lookup_path {
        let user = body
            .get("mobile")
            .and_then(Value::as_str)
            .and_then(|m| shared.lock().directory.get(m).cloned());
        return match (shared.kind, user) {
            (StandInKind::Wecom, Some(u)) => {
                Json(json!({"errcode": 0, "errmsg": "ok", "userid": u})).into_response()
            }
            (StandInKind::Dingtalk, Some(u)) => Json(json!({
                "errcode": 0, "errmsg": "ok", "result": {"userid": u},
                "request_id": uuid::Uuid::new_v4().simple().to_string(),
            }))
            .into_response(),
            (StandInKind::Wecom, None) => refuse(&shared, 46004, "mobile not found"),
            (StandInKind::Dingtalk, None) => refuse(&shared, 60121, "找不到该用户"),
        };
    }
    send(&shared, &body)
}

fn send(shared: &Shared, body: &Value) -> Response {
    let (agent_field, user_field, text) = match shared.kind {
        StandInKind::Wecom => (
            "agentid",
            "touser",
            (body.get("msgtype").and_then(Value::as_str) == Some("text"))
                .then(|| body.pointer("/text/content").and_then(Value::as_str))
                .flatten(),
        ),
        StandInKind::Dingtalk => (
            "agent_id",
            "userid_list",
            (body.pointer("/msg/msgtype").and_then(Value::as_str) == Some("text"))
                .then(|| body.pointer("/msg/text/content").and_then(Value::as_str))
                .flatten(),
        ),
    };
    let agent_id = body.get(agent_field).and_then(Value::as_i64);
    if agent_id != Some(shared.agent_id) {
        return refuse(shared, 40056, "invalid agentid");
    }
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return refuse(shared, 44004, "empty text content");
    };
    let user = body
        .get(user_field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut state = shared.lock();
    if state.busy > 0 {
        state.busy -= 1;
        state.rejections.push(-1);
        return answer(-1, "system busy");
    }
    let known = state.directory.values().any(|u| *u == user);
    if !known {
        return match shared.kind {
            StandInKind::Wecom => Json(json!({
                "errcode": 0, "errmsg": "ok", "invaliduser": user, "msgid": "",
            }))
            .into_response(),
            StandInKind::Dingtalk => {
                state.rejections.push(33012);
                answer(33012, "无效的userid")
            }
        };
    }
    state.received.push(ImReceived {
        user_id: user,
        agent_id: shared.agent_id,
        text: text.to_owned(),
    });
    state.next_id += 1;
    let id = state.next_id;
    match shared.kind {
        StandInKind::Wecom => Json(json!({
            "errcode": 0, "errmsg": "ok", "invaliduser": "", "invalidparty": "",
            "invalidtag": "", "unlicenseduser": "", "msgid": format!("msg-{id:08}"),
        }))
        .into_response(),
        StandInKind::Dingtalk => Json(json!({
            "errcode": 0, "errmsg": "ok", "task_id": 256_271_667_000_u64 + id,
            "request_id": uuid::Uuid::new_v4().simple().to_string(),
        }))
        .into_response(),
    }
}
