//! Work IM for Sanyu: messages to staff in the work chat their school lives
//! in — WeCom (企业微信) application messages and DingTalk (钉钉) work
//! notifications.
//!
//! Both platforms work the same way, and [`platform::Client`] is the one home
//! of that flow: an **access token** from the application's credentials
//! (WeCom `GET /cgi-bin/gettoken?corpid&corpsecret`, DingTalk
//! `GET /gettoken?appkey&appsecret`; valid `expires_in` seconds, 7200), kept
//! and reused until five minutes before it ends, and fetched again at once
//! when the platform says it is invalid or expired (errcode 40014, 42001,
//! 41001); the recipient's **user id, looked up by the mobile number** the
//! roster already holds (WeCom `POST /cgi-bin/user/getuserid`, DingTalk
//! `POST /topapi/v2/user/getbymobile`; the number goes in the body, never in
//! a URL); then the **message** (WeCom `POST /cgi-bin/message/send`, a `text`
//! message from the application `agentid`, with the platform's duplicate
//! check; DingTalk `POST /topapi/message/corpconversation/asyncsend_v2`, a
//! `text` work notification from `agent_id`). Every answer carries `errcode`
//! and `errmsg`; `0` is success.
//!
//! The text is rendered by [`sanyu_sms::render_staff_im`]: the staff SMS's
//! facts (school, level, case reference, time) and the link to the
//! acknowledgement or case page, nothing more.
//! Errors are transient or permanent ([`ImError`]): bad credentials, a number
//! with no account, an application not allowed to message the person are
//! permanent; throttling, a busy platform and unknown codes are transient.
//!
//! * `stand_in` (feature `stand-in`) — servers that play either platform and
//!   enforce its token rules, for tests.

use std::future::Future;
use std::pin::Pin;

use serde::Deserialize;

pub use sanyu_sms::PhoneNumber;

pub mod dingtalk;
mod platform;
#[cfg(feature = "stand-in")]
pub mod stand_in;
pub mod wecom;

pub use dingtalk::DingtalkConfig;
pub use platform::HttpSettings;
pub use wecom::WecomConfig;

/// One message to one person.
#[derive(Debug, Clone)]
pub struct ImMessage {
    /// The person's mobile number: the key to their account on the platform.
    pub phone: PhoneNumber,
    /// The rendered text (see the crate docs for what it may hold).
    pub text: String,
    /// Our notification key (for logs; neither platform takes one).
    pub idempotency_key: String,
}

/// The platform took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImAccepted {
    pub provider: &'static str,
    /// WeCom `msgid`, DingTalk `task_id`.
    pub message_id: String,
}

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} {code}: {message}")]
pub struct ImError {
    pub provider: &'static str,
    /// Worth trying again later (throttled, busy, unreachable, unknown).
    pub transient: bool,
    /// The platform's `errcode`, or `http_<status>` / `transport`.
    pub code: String,
    pub message: String,
}

impl ImError {
    pub(crate) fn transient(
        provider: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            transient: true,
            code: code.into(),
            message: message.into(),
        }
    }

    pub(crate) fn permanent(
        provider: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            transient: false,
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ImConfigError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// The future a provider returns from [`ImProvider::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<ImAccepted, ImError>> + Send + 'a>>;

/// Something that sends one work-IM message.
pub trait ImProvider: Send + Sync {
    /// `wecom` or `dingtalk`.
    fn name(&self) -> &'static str;

    /// Sends `message` (fetching a token and looking the person up as needed).
    fn send<'a>(&'a self, message: &'a ImMessage) -> SendFuture<'a>;
}

/// Which platform, and its settings. In TOML:
///
/// ```toml
/// [im.provider]
/// kind = "wecom"
/// corp_id = "ww…"
/// corp_secret = "…"
/// agent_id = 1000002
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImConfig {
    Wecom(WecomConfig),
    Dingtalk(DingtalkConfig),
}

/// Builds the configured provider.
pub fn build_im_provider(config: &ImConfig) -> Result<Box<dyn ImProvider>, ImConfigError> {
    Ok(match config {
        ImConfig::Wecom(c) => Box::new(wecom::WecomProvider::new(c.clone())?),
        ImConfig::Dingtalk(c) => Box::new(dingtalk::DingtalkProvider::new(c.clone())?),
    })
}
