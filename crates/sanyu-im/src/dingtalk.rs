//! DingTalk (钉钉) work notifications (工作通知).
//!
//! From the DingTalk server API ("获取企业内部应用的access_token", "根据手机号查询用户",
//! "发送工作通知", open.dingtalk.com/document/orgapp/obtain-orgapp-token,
//! /query-users-by-phone-number, /asynchronous-sending-of-enterprise-session-messages):
//!
//! * `GET /gettoken?appkey=KEY&appsecret=SECRET` →
//!   `{"errcode":0,"errmsg":"ok","access_token":"…","expires_in":7200}`;
//! * `POST /topapi/v2/user/getbymobile?access_token=…` `{"mobile":"13800000000"}` →
//!   `{"errcode":0,"errmsg":"ok","result":{"userid":"…"}}` (60121: no user
//!   with this number);
//! * `POST /topapi/message/corpconversation/asyncsend_v2?access_token=…`
//!   `{"agent_id":123,"userid_list":"…","msg":{"msgtype":"text","text":{"content":"…"}}}` →
//!   `{"errcode":0,"errmsg":"ok","task_id":256271667526,"request_id":"…"}`.
//!
//! The send is asynchronous on DingTalk's side: `task_id` says it was taken.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::platform::{Api, Client, HttpSettings};
use crate::{ImConfigError, ImMessage, ImProvider, SendFuture};

pub const PROVIDER: &str = "dingtalk";
pub const DEFAULT_ENDPOINT: &str = "https://oapi.dingtalk.com/";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingtalkConfig {
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The internal application's AppKey.
    pub app_key: String,
    pub app_secret: sanyu_sms::Secret,
    /// The application's AgentId.
    pub agent_id: i64,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

pub(crate) static API: Api = Api {
    provider: PROVIDER,
    token_path: "/gettoken",
    token_params: ("appkey", "appsecret"),
    lookup_path: "/topapi/v2/user/getbymobile",
    user_id: |v| {
        v.get("result")
            .and_then(|r| r.get("userid"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    },
    no_user_codes: &[60121],
    send_path: "/topapi/message/corpconversation/asyncsend_v2",
    body: |agent_id, user_id, text| {
        json!({
            "agent_id": agent_id,
            "userid_list": user_id,
            "msg": {"msgtype": "text", "text": {"content": text}},
        })
    },
    accepted: |v| match v.get("task_id") {
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err("errcode 0 without task_id".to_owned()),
    },
    // 40089 invalid appkey or appsecret, 60020 IP not allowed, 40035 invalid
    // parameter, 33012 invalid userid, 40056 invalid agent id.
    permanent_codes: &[40089, 60020, 40035, 33012, 40056],
};

/// Sends DingTalk work notifications.
#[derive(Debug)]
pub struct DingtalkProvider {
    client: Client,
}

impl DingtalkProvider {
    pub fn new(config: DingtalkConfig) -> Result<Self, ImConfigError> {
        Ok(Self {
            client: Client::new(
                &API,
                &config.endpoint,
                config.app_key,
                config.app_secret,
                config.agent_id,
                config.http,
            )?,
        })
    }
}

impl ImProvider for DingtalkProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn send<'a>(&'a self, message: &'a ImMessage) -> SendFuture<'a> {
        Box::pin(self.client.send(message))
    }
}
