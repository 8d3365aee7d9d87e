//! WeCom (企业微信) application messages.
//!
//! From the WeCom server API ("获取access_token", "手机号获取userid",
//! "发送应用消息", developer.work.weixin.qq.com/document/path/91039, /95402,
//! /90236):
//!
//! * `GET /cgi-bin/gettoken?corpid=ID&corpsecret=SECRET` →
//!   `{"errcode":0,"errmsg":"ok","access_token":"…","expires_in":7200}`;
//! * `POST /cgi-bin/user/getuserid?access_token=…` `{"mobile":"13800000000"}` →
//!   `{"errcode":0,"errmsg":"ok","userid":"zhangsan"}` (46004: no member
//!   with this number; the application needs the contacts read permission);
//! * `POST /cgi-bin/message/send?access_token=…`
//!   `{"touser":"zhangsan","msgtype":"text","agentid":1000002,"text":{"content":"…"},
//!   "safe":0,"enable_duplicate_check":1,"duplicate_check_interval":1800}` →
//!   `{"errcode":0,"errmsg":"ok","invaliduser":"","msgid":"…"}`; a person the
//!   application may not reach comes back in `invaliduser` (or
//!   `unlicenseduser`) with errcode 0, which is a failure here.
//!
//! The duplicate check makes WeCom drop the same text to the same person
//! within 30 minutes: a retried send after a lost answer is not shown twice.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::platform::{Api, Client, HttpSettings};
use crate::{ImConfigError, ImMessage, ImProvider, SendFuture};

pub const PROVIDER: &str = "wecom";
pub const DEFAULT_ENDPOINT: &str = "https://qyapi.weixin.qq.com/";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomConfig {
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// 企业ID (`ww…`).
    pub corp_id: String,
    /// The application's Secret.
    pub corp_secret: sanyu_sms::Secret,
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
    token_path: "/cgi-bin/gettoken",
    token_params: ("corpid", "corpsecret"),
    lookup_path: "/cgi-bin/user/getuserid",
    user_id: |v| v.get("userid").and_then(Value::as_str).map(str::to_owned),
    no_user_codes: &[46004, 60111],
    send_path: "/cgi-bin/message/send",
    body: |agent_id, user_id, text| {
        json!({
            "touser": user_id,
            "msgtype": "text",
            "agentid": agent_id,
            "text": {"content": text},
            "safe": 0,
            "enable_duplicate_check": 1,
            "duplicate_check_interval": 1800,
        })
    },
    accepted,
    // 40001 invalid secret, 40013 invalid corpid, 40056 invalid agentid,
    // 60020 IP not allowed, 48002 API forbidden, 81013 every recipient
    // invalid or out of the application's range, 82001 no recipient,
    // 301002 no permission for the application, 44004 empty text.
    permanent_codes: &[
        40001, 40013, 40056, 60020, 48002, 81013, 82001, 301002, 44004,
    ],
};

fn accepted(v: &Value) -> Result<String, String> {
    for field in ["invaliduser", "unlicenseduser"] {
        if v.get(field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(format!("the recipient came back in `{field}`"));
        }
    }
    match v.get("msgid").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err("errcode 0 without msgid".to_owned()),
    }
}

/// Sends WeCom application messages.
#[derive(Debug)]
pub struct WecomProvider {
    client: Client,
}

impl WecomProvider {
    pub fn new(config: WecomConfig) -> Result<Self, ImConfigError> {
        Ok(Self {
            client: Client::new(
                &API,
                &config.endpoint,
                config.corp_id,
                config.corp_secret,
                config.agent_id,
                config.http,
            )?,
        })
    }
}

impl ImProvider for WecomProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn send<'a>(&'a self, message: &'a ImMessage) -> SendFuture<'a> {
        Box::pin(self.client.send(message))
    }
}
