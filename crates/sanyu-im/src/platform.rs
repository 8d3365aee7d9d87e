//! The flow both platforms share: token, lookup by mobile, send (see the
//! crate docs). What differs — paths, parameter names, body and answer
//! shapes — is an [`Api`] value in [`crate::wecom`] and [`crate::dingtalk`].

use std::time::{Duration, Instant};

use sanyu_sms::Secret;
use serde_json::Value;

use crate::{ImAccepted, ImConfigError, ImError, ImMessage};

/// The errcodes both platforms answer for a token that is invalid (40014),
/// expired (42001) or missing (41001): fetch a new one and try once more.
pub(crate) const TOKEN_CODES: [i64; 3] = [40014, 42001, 41001];

/// A token is fetched again this long before the platform says it ends.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// One platform's protocol.
pub(crate) struct Api {
    pub(crate) provider: &'static str,
    /// `GET` path of the token, and the names of its two query parameters.
    pub(crate) token_path: &'static str,
    pub(crate) token_params: (&'static str, &'static str),
    /// `POST {"mobile": …}` → the user id ([`Api::user_id`]).
    pub(crate) lookup_path: &'static str,
    pub(crate) user_id: fn(&Value) -> Option<String>,
    /// The errcodes that mean "no account for this number".
    pub(crate) no_user_codes: &'static [i64],
    /// `POST` of [`Api::body`] → the message id ([`Api::accepted`]).
    pub(crate) send_path: &'static str,
    pub(crate) body: fn(agent_id: i64, user_id: &str, text: &str) -> Value,
    pub(crate) accepted: fn(&Value) -> Result<String, String>,
    /// Permanent errcodes besides the no-user ones (credentials, permissions,
    /// content); everything else is transient.
    pub(crate) permanent_codes: &'static [i64],
}

pub(crate) struct Client {
    api: &'static Api,
    base: url::Url,
    app_id: String,
    app_secret: Secret,
    agent_id: i64,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("provider", &self.api.provider)
            .field("base", &self.base.as_str())
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

/// HTTP timeouts (milliseconds).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct HttpSettings {
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 3_000,
            request_timeout_ms: 10_000,
        }
    }
}

impl Client {
    pub(crate) fn new(
        api: &'static Api,
        base: &str,
        app_id: String,
        app_secret: Secret,
        agent_id: i64,
        http: HttpSettings,
    ) -> Result<Self, ImConfigError> {
        let base = url::Url::parse(base).map_err(|e| ImConfigError::Invalid {
            field: "im endpoint",
            reason: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(ImConfigError::Invalid {
                field: "im endpoint",
                reason: "must be an http(s) URL with a host".to_owned(),
            });
        }
        if app_id.trim().is_empty() || app_secret.expose().trim().is_empty() {
            return Err(ImConfigError::Invalid {
                field: "im credentials",
                reason: "the application's id and secret must be set".to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(http.connect_timeout_ms))
            .timeout(Duration::from_millis(http.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sanyu-im/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ImConfigError::HttpClient)?;
        Ok(Self {
            api,
            base,
            app_id,
            app_secret,
            agent_id,
            http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> Result<url::Url, ImError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ImError::permanent(self.api.provider, "config", e.to_string()))
    }

    /// Reads `errcode`/`errmsg` of an answer; `Ok` for `errcode == 0`.
    fn read(&self, status: u16, body: &[u8]) -> Result<Value, (i64, ImError)> {
        let p = self.api.provider;
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            let error = if status == 429 || status >= 500 {
                ImError::transient(p, format!("http_{status}"), "no JSON answer")
            } else {
                ImError::permanent(p, format!("http_{status}"), "no JSON answer")
            };
            return Err((-1, error));
        };
        let code = value.get("errcode").and_then(Value::as_i64).unwrap_or(-1);
        if code == 0 && (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>();
        let permanent =
            self.api.permanent_codes.contains(&code) || self.api.no_user_codes.contains(&code);
        let error = if permanent {
            ImError::permanent(p, code.to_string(), message)
        } else {
            ImError::transient(p, code.to_string(), message)
        };
        Err((code, error))
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Value, (i64, ImError)> {
        let p = self.api.provider;
        let transport = |e: reqwest::Error| (-1, ImError::transient(p, "transport", e.to_string()));
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport)?;
        self.read(status, &body)
    }

    /// The cached token, or a new one (`renew`: the platform refused the cached one).
    async fn token(&self, renew: bool) -> Result<String, ImError> {
        let mut held = self.token.lock().await;
        if !renew
            && let Some((token, until)) = held.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (id_name, secret_name) = self.api.token_params;
        let mut url = self.url(self.api.token_path)?;
        url.query_pairs_mut()
            .append_pair(id_name, &self.app_id)
            .append_pair(secret_name, self.app_secret.expose());
        let answer = self
            .exchange(self.http.get(url))
            .await
            .map_err(|(_, e)| e)?;
        let Some(token) = answer.get("access_token").and_then(Value::as_str) else {
            return Err(ImError::transient(
                self.api.provider,
                "no_token",
                "errcode 0 without access_token",
            ));
        };
        let lifetime = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .map_or(Duration::from_secs(7200), Duration::from_secs);
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *held = Some((token.to_owned(), until));
        Ok(token.to_owned())
    }

    /// `POST path?access_token=…` with `body`; a refused token is renewed once.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, ImError> {
        let mut renew = false;
        loop {
            let token = self.token(renew).await?;
            let mut url = self.url(path)?;
            url.query_pairs_mut().append_pair("access_token", &token);
            match self.exchange(self.http.post(url).json(body)).await {
                Ok(answer) => return Ok(answer),
                Err((code, _)) if !renew && TOKEN_CODES.contains(&code) => {
                    tracing::info!(
                        provider = self.api.provider,
                        code,
                        "access token refused; fetching a new one"
                    );
                    renew = true;
                }
                Err((_, error)) => return Err(error),
            }
        }
    }

    // Ids only: never the number or the text.
    #[tracing::instrument(
        name = "im.send",
        skip_all,
        fields(provider = self.api.provider, idempotency_key = %message.idempotency_key)
    )]
    pub(crate) async fn send(&self, message: &ImMessage) -> Result<ImAccepted, ImError> {
        let p = self.api.provider;
        let mobile = message.phone.without_plus_or_86();
        let found = self
            .call(
                self.api.lookup_path,
                &serde_json::json!({ "mobile": mobile }),
            )
            .await?;
        let Some(user_id) = (self.api.user_id)(&found).filter(|u| !u.is_empty()) else {
            return Err(ImError::permanent(
                p,
                "no_user",
                "no account for this mobile number",
            ));
        };
        let sent = self
            .call(
                self.api.send_path,
                &(self.api.body)(self.agent_id, &user_id, &message.text),
            )
            .await?;
        match (self.api.accepted)(&sent) {
            Ok(message_id) => Ok(ImAccepted {
                provider: p,
                message_id,
            }),
            Err(why) => Err(ImError::permanent(p, "not_delivered", why)),
        }
    }
}
