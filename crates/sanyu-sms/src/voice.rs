//! Voice calls for critical cases: a text-to-speech call that says the
//! school, the level and the case reference, nothing else.
//!
//! * [`aliyun`](AliyunVoiceProvider) — Alibaba Cloud voice notification
//!   (语音通知), `dyvmsapi` action `SingleCallByTts` (API version
//!   2017-05-25), signed with the same RPC HMAC-SHA1 signature as SMS
//!   ([`crate::aliyun::sign`]). Parameters: `CalledNumber` (national number),
//!   optional `CalledShowNumber` (the caller id; empty uses the public number
//!   pool), `TtsCode` (the approved TTS template), `TtsParam` (JSON object of
//!   the template's variables), `PlayTimes`, `OutId` (our idempotency key).
//!   Success: `{"Code":"OK","CallId":"…","RequestId":"…"}`.
//! * [`tencent`](TencentVoiceProvider) — Tencent Cloud voice message
//!   (语音消息), service `vms`, action `SendTtsVoice`, version `2020-09-02`,
//!   signed TC3-HMAC-SHA256 like SMS ([`crate::tencent`]) with the `vms`
//!   credential scope. Body: `TemplateId`, `TemplateParamSet` (positional),
//!   `CalledNumber` (E.164), `VoiceSdkAppid`, `PlayTimes`, `SessionContext`.
//!   Success: `{"Response":{"SendStatus":{"CallId":"…","SessionContext":"…"}}}`.
//!
//! A call is built from the same [`SmsMessage`] as the staff SMS: its
//! rendered parameters, of which a voice template may use only
//! [`VOICE_PARAMS`] (checked when the provider is built). No link, no time,
//! no name: what a person hears on a speaker phone at 03:00 is no more than
//! what a text message shows.
//!
//! Errors are [`SmsError`]s, classified by each provider's SMS classifier
//! (the two products share their error code families; an unknown code is
//! transient). Neither adapter asks for key presses: "press 1 to
//! acknowledge" needs the providers' interactive call products and their
//! call-report callbacks, which are not built yet.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aliyun;
use crate::error::{ConfigError, PermanentKind, SmsError, TransientKind};
use crate::message::{SmsAccepted, SmsMessage};
use crate::provider::{HttpSettings, excerpt, exchange, parse_endpoint};
use crate::secret::Secret;
use crate::tencent::{self, Tc3Call, Tc3Signer};

/// The message parameters a TTS template may speak.
pub const VOICE_PARAMS: [&str; 3] = ["school", "case_ref", "level"];

pub const ALIYUN_DEFAULT_ENDPOINT: &str = "https://dyvmsapi.aliyuncs.com/";
pub const ALIYUN_ACTION: &str = "SingleCallByTts";
pub const TENCENT_DEFAULT_ENDPOINT: &str = "https://vms.tencentcloudapi.com/";
pub const TENCENT_SERVICE: &str = "vms";
pub const TENCENT_ACTION: &str = "SendTtsVoice";
pub const TENCENT_API_VERSION: &str = "2020-09-02";

/// The future a provider returns from [`VoiceProvider::call`].
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<SmsAccepted, SmsError>> + Send + 'a>>;

/// Something that places one text-to-speech call.
pub trait VoiceProvider: Send + Sync {
    /// `aliyun` or `tencent`.
    fn name(&self) -> &'static str;

    /// Calls `message.phone` and speaks the template with the message's
    /// parameters. Exactly one HTTP request; the provider's call id comes back
    /// as [`SmsAccepted::provider_message_id`].
    fn call<'a>(&'a self, message: &'a SmsMessage) -> CallFuture<'a>;
}

/// [`VoiceProvider`] for `$ty`, named `$name`, calling with its own `call_one`.
macro_rules! voice_provider {
    ($ty:ty, $name:expr) => {
        impl VoiceProvider for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn call<'a>(&'a self, message: &'a SmsMessage) -> CallFuture<'a> {
                Box::pin(self.call_one(message))
            }
        }
    };
}

/// Which voice provider, and its settings. In TOML:
///
/// ```toml
/// [voice.provider]
/// kind = "aliyun"
/// access_key_id = "LTAI…"
/// access_key_secret = "…"
/// tts_code = "TTS_100001"
/// params = ["school", "level", "case_ref"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VoiceProviderConfig {
    Aliyun(AliyunVoiceConfig),
    Tencent(TencentVoiceConfig),
}

impl VoiceProviderConfig {
    /// The provider's HTTP settings (timeouts, request limit).
    pub fn http(&self) -> &HttpSettings {
        match self {
            Self::Aliyun(c) => &c.http,
            Self::Tencent(c) => &c.http,
        }
    }
}

/// Builds the configured voice provider.
pub fn build_voice_provider(
    config: &VoiceProviderConfig,
) -> Result<Box<dyn VoiceProvider>, ConfigError> {
    Ok(match config {
        VoiceProviderConfig::Aliyun(c) => Box::new(AliyunVoiceProvider::new(c.clone())?),
        VoiceProviderConfig::Tencent(c) => Box::new(TencentVoiceProvider::new(c.clone())?),
    })
}

fn default_play_times() -> u8 {
    2
}

fn check_params(params: &[String]) -> Result<(), ConfigError> {
    match params.iter().find(|p| !VOICE_PARAMS.contains(&p.as_str())) {
        Some(bad) => Err(ConfigError::UnknownTemplateParam {
            audience: "voice".to_owned(),
            locale: "any".to_owned(),
            param: bad.clone(),
            allowed: VOICE_PARAMS.join(", "),
        }),
        None => Ok(()),
    }
}

fn check_play_times(play_times: u8) -> Result<(), ConfigError> {
    if (1..=3).contains(&play_times) {
        Ok(())
    } else {
        Err(ConfigError::InvalidSetting {
            field: "voice play_times",
            reason: "must be 1, 2 or 3",
        })
    }
}

/// The template's parameter values, in its order.
fn values<'a>(
    provider: &'static str,
    params: &'a [String],
    message: &SmsMessage,
) -> Result<Vec<(&'a str, String)>, SmsError> {
    params
        .iter()
        .map(|name| {
            message
                .content
                .param(name)
                .map(|v| (name.as_str(), v.to_owned()))
                .ok_or_else(|| {
                    SmsError::permanent(
                        provider,
                        PermanentKind::BadRequest,
                        "template_param_missing",
                        format!("rendered message has no parameter `{name}`"),
                    )
                })
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunVoiceConfig {
    #[serde(default = "aliyun_default_endpoint")]
    pub endpoint: String,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    #[serde(default = "aliyun::default_region")]
    pub region_id: String,
    /// The caller id (被叫显号) bought for the account; empty uses the
    /// public number pool.
    #[serde(default)]
    pub called_show_number: String,
    /// The approved TTS template (`TTS_…`).
    pub tts_code: String,
    /// The template's variables, from [`VOICE_PARAMS`].
    pub params: Vec<String>,
    #[serde(default = "default_play_times")]
    pub play_times: u8,
    #[serde(default)]
    pub http: HttpSettings,
}

fn aliyun_default_endpoint() -> String {
    ALIYUN_DEFAULT_ENDPOINT.to_owned()
}

/// Calls through Alibaba Cloud voice notification.
#[derive(Debug)]
pub struct AliyunVoiceProvider {
    endpoint: url::Url,
    config: AliyunVoiceConfig,
    client: reqwest::Client,
}

impl AliyunVoiceProvider {
    pub fn new(config: AliyunVoiceConfig) -> Result<Self, ConfigError> {
        check_params(&config.params)?;
        check_play_times(config.play_times)?;
        Ok(Self {
            endpoint: parse_endpoint("voice aliyun endpoint", &config.endpoint)?,
            client: config.http.client()?,
            config,
        })
    }

    /// The signed parameters of a `SingleCallByTts` request (with `Signature`).
    pub fn signed_params(
        &self,
        message: &SmsMessage,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, String>, SmsError> {
        let c = &self.config;
        let tts_param: serde_json::Map<String, serde_json::Value> =
            values(aliyun::PROVIDER, &c.params, message)?
                .into_iter()
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
                .collect();
        let mut params =
            aliyun::rpc_params(&c.access_key_id, ALIYUN_ACTION, &c.region_id, nonce, now);
        for (k, v) in [
            (
                "CalledNumber",
                message.phone.without_plus_or_86().to_owned(),
            ),
            ("TtsCode", c.tts_code.clone()),
            ("TtsParam", serde_json::Value::Object(tts_param).to_string()),
            ("PlayTimes", c.play_times.to_string()),
            ("OutId", message.idempotency_key.clone()),
        ] {
            params.insert(k.to_owned(), v);
        }
        if !c.called_show_number.is_empty() {
            params.insert("CalledShowNumber".into(), c.called_show_number.clone());
        }
        let signature = aliyun::sign("POST", &params, c.access_key_secret.expose());
        params.insert("Signature".into(), signature);
        Ok(params)
    }

    // Ids only: never the number or the parameters.
    #[tracing::instrument(
        name = "voice.call",
        skip_all,
        fields(provider = aliyun::PROVIDER, idempotency_key = %message.idempotency_key)
    )]
    async fn call_one(&self, message: &SmsMessage) -> Result<SmsAccepted, SmsError> {
        let nonce = uuid::Uuid::new_v4().to_string();
        let params = self.signed_params(message, &nonce, Utc::now())?;
        let request = aliyun::rpc_request(&self.client, &self.endpoint, &params);
        exchange(aliyun::PROVIDER, request, interpret_aliyun).await
    }
}

voice_provider!(AliyunVoiceProvider, aliyun::PROVIDER);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliyunCallResponse {
    code: Option<String>,
    message: Option<String>,
    call_id: Option<String>,
}

fn interpret_aliyun(status: u16, body: &[u8]) -> Result<SmsAccepted, SmsError> {
    let parsed = serde_json::from_slice::<AliyunCallResponse>(body).ok();
    let Some(AliyunCallResponse {
        code: Some(code),
        message,
        call_id,
    }) = parsed
    else {
        return Err(SmsError::from_status(
            aliyun::PROVIDER,
            status,
            excerpt(body),
        ));
    };
    if code == "OK" && (200..300).contains(&status) {
        return match call_id {
            Some(id) if !id.is_empty() => Ok(SmsAccepted {
                provider: aliyun::PROVIDER,
                provider_message_id: id,
            }),
            _ => Err(SmsError::transient(
                aliyun::PROVIDER,
                TransientKind::UnexpectedResponse,
                code,
                "Code OK without CallId",
            )),
        };
    }
    Err(aliyun::classify(&code, status, message.unwrap_or_default()))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentVoiceConfig {
    #[serde(default = "tencent_default_endpoint")]
    pub endpoint: String,
    pub secret_id: String,
    pub secret_key: Secret,
    #[serde(default = "tencent::default_region")]
    pub region: String,
    /// `VoiceSdkAppid` of the voice message application.
    pub voice_sdk_app_id: String,
    /// The approved TTS template's `TemplateId`.
    pub template_id: String,
    /// The template's variables ({1}, {2}, … in this order), from [`VOICE_PARAMS`].
    pub params: Vec<String>,
    #[serde(default = "default_play_times")]
    pub play_times: u8,
    #[serde(default)]
    pub http: HttpSettings,
}

fn tencent_default_endpoint() -> String {
    TENCENT_DEFAULT_ENDPOINT.to_owned()
}

/// The `SendTtsVoice` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendTtsVoiceRequest {
    pub template_id: String,
    pub template_param_set: Vec<String>,
    pub called_number: String,
    pub voice_sdk_appid: String,
    pub play_times: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_context: Option<String>,
}

const SEND_TTS_VOICE: Tc3Call = Tc3Call {
    service: TENCENT_SERVICE,
    action: TENCENT_ACTION,
    version: TENCENT_API_VERSION,
};

/// Calls through Tencent Cloud voice messages.
#[derive(Debug)]
pub struct TencentVoiceProvider {
    signer: Tc3Signer,
    config: TencentVoiceConfig,
    client: reqwest::Client,
}

impl TencentVoiceProvider {
    pub fn new(config: TencentVoiceConfig) -> Result<Self, ConfigError> {
        check_params(&config.params)?;
        check_play_times(config.play_times)?;
        let endpoint = parse_endpoint("voice tencent endpoint", &config.endpoint)?;
        Ok(Self {
            signer: Tc3Signer {
                host: tencent::host_header("voice tencent endpoint", &endpoint)?,
                endpoint,
                secret_id: config.secret_id.clone(),
                secret_key: config.secret_key.clone(),
                region: config.region.clone(),
            },
            client: config.http.client()?,
            config,
        })
    }

    /// The JSON body of a `SendTtsVoice` request.
    pub fn body(&self, message: &SmsMessage) -> Result<Vec<u8>, SmsError> {
        let c = &self.config;
        let request = SendTtsVoiceRequest {
            template_id: c.template_id.clone(),
            template_param_set: values(tencent::PROVIDER, &c.params, message)?
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            called_number: message.phone.e164().to_owned(),
            voice_sdk_appid: c.voice_sdk_app_id.clone(),
            play_times: c.play_times,
            session_context: Some(message.idempotency_key.clone()),
        };
        serde_json::to_vec(&request).map_err(|e| {
            SmsError::permanent(
                tencent::PROVIDER,
                PermanentKind::BadRequest,
                "encode",
                e.to_string(),
            )
        })
    }

    // Ids only: never the number or the parameters.
    #[tracing::instrument(
        name = "voice.call",
        skip_all,
        fields(provider = tencent::PROVIDER, idempotency_key = %message.idempotency_key)
    )]
    async fn call_one(&self, message: &SmsMessage) -> Result<SmsAccepted, SmsError> {
        let body = self.body(message)?;
        let request = self
            .signer
            .request(&self.client, &SEND_TTS_VOICE, body, Utc::now());
        exchange(tencent::PROVIDER, request, interpret_tencent).await
    }
}

voice_provider!(TencentVoiceProvider, tencent::PROVIDER);

#[derive(Debug, Deserialize)]
struct TencentEnvelope {
    #[serde(rename = "Response")]
    response: TencentResponse,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TencentResponse {
    send_status: Option<TencentSendStatus>,
    error: Option<tencent::ApiError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TencentSendStatus {
    call_id: Option<String>,
}

fn interpret_tencent(status: u16, body: &[u8]) -> Result<SmsAccepted, SmsError> {
    let Ok(envelope) = serde_json::from_slice::<TencentEnvelope>(body) else {
        return Err(SmsError::from_status(
            tencent::PROVIDER,
            status,
            excerpt(body),
        ));
    };
    if let Some(error) = envelope.response.error {
        return Err(tencent::classify(&error.code, error.message));
    }
    if !(200..300).contains(&status) {
        return Err(SmsError::from_status(
            tencent::PROVIDER,
            status,
            excerpt(body),
        ));
    }
    match envelope.response.send_status.and_then(|s| s.call_id) {
        Some(id) if !id.is_empty() => Ok(SmsAccepted {
            provider: tencent::PROVIDER,
            provider_message_id: id,
        }),
        _ => Err(SmsError::transient(
            tencent::PROVIDER,
            TransientKind::UnexpectedResponse,
            format!("http_{status}"),
            "response without Error or SendStatus.CallId",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::PermanentKind;
    use crate::message::PhoneNumber;
    use crate::stand_in::{Reply, StandIn, StandInKind};
    use crate::templates::{Audience, Locale, RenderedSms};

    fn message() -> SmsMessage {
        SmsMessage {
            phone: PhoneNumber::parse("13900000003").unwrap(),
            content: RenderedSms {
                audience: Audience::Staff,
                locale: Locale::ZhCn,
                text: "unused".into(),
                params: vec![
                    ("school", "第一中学".into()),
                    ("case_ref", "C-7K3M".into()),
                    ("level", "危急".into()),
                    ("link", "https://example.org/a/x".into()),
                    ("time", "03:00".into()),
                ],
            },
            idempotency_key: "notif-1".into(),
        }
    }

    fn aliyun_config(endpoint: &str, secret: &str) -> AliyunVoiceConfig {
        AliyunVoiceConfig {
            endpoint: endpoint.into(),
            access_key_id: "LTAI-voice".into(),
            access_key_secret: Secret::new(secret),
            region_id: "cn-hangzhou".into(),
            called_show_number: String::new(),
            tts_code: "TTS_100001".into(),
            params: vec!["school".into(), "level".into(), "case_ref".into()],
            play_times: 2,
            http: HttpSettings::default(),
        }
    }

    fn tencent_config(endpoint: &str, secret: &str) -> TencentVoiceConfig {
        TencentVoiceConfig {
            endpoint: endpoint.into(),
            secret_id: "AKID-voice".into(),
            secret_key: Secret::new(secret),
            region: "ap-guangzhou".into(),
            voice_sdk_app_id: "1400000001".into(),
            template_id: "100001".into(),
            params: vec!["school".into(), "level".into(), "case_ref".into()],
            play_times: 2,
            http: HttpSettings::default(),
        }
    }

    #[test]
    fn a_voice_template_may_speak_only_school_level_and_reference() {
        let mut c = aliyun_config(ALIYUN_DEFAULT_ENDPOINT, "s");
        c.params.push("link".into());
        let err = AliyunVoiceProvider::new(c).unwrap_err();
        assert!(err.to_string().contains("link"), "{err}");
        let mut c = tencent_config(TENCENT_DEFAULT_ENDPOINT, "s");
        c.params = vec!["time".into()];
        assert!(TencentVoiceProvider::new(c).is_err());
        let mut c = aliyun_config(ALIYUN_DEFAULT_ENDPOINT, "s");
        c.play_times = 9;
        assert!(AliyunVoiceProvider::new(c).is_err());
    }

    #[test]
    fn the_aliyun_call_is_signed_like_the_sms_api_and_carries_only_the_template_values() {
        let p = AliyunVoiceProvider::new(aliyun_config(ALIYUN_DEFAULT_ENDPOINT, "sek")).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-06T19:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let params = p.signed_params(&message(), "nonce-1", now).unwrap();
        assert_eq!(params["Action"], "SingleCallByTts");
        assert_eq!(params["Version"], "2017-05-25");
        assert_eq!(params["CalledNumber"], "13900000003");
        assert_eq!(params["TtsCode"], "TTS_100001");
        assert_eq!(params["OutId"], "notif-1");
        let tts: serde_json::Value = serde_json::from_str(&params["TtsParam"]).unwrap();
        assert_eq!(
            tts,
            serde_json::json!({"school": "第一中学", "level": "危急", "case_ref": "C-7K3M"})
        );
        assert!(!params.contains_key("CalledShowNumber"));
        assert_eq!(params["Signature"], aliyun::sign("POST", &params, "sek"));
    }

    #[test]
    fn the_tencent_body_is_positional_and_e164() {
        let p = TencentVoiceProvider::new(tencent_config(TENCENT_DEFAULT_ENDPOINT, "k")).unwrap();
        let body: SendTtsVoiceRequest =
            serde_json::from_slice(&p.body(&message()).unwrap()).unwrap();
        assert_eq!(body.called_number, "+8613900000003");
        assert_eq!(body.template_param_set, ["第一中学", "危急", "C-7K3M"]);
        assert_eq!(body.voice_sdk_appid, "1400000001");
        assert_eq!(body.session_context.as_deref(), Some("notif-1"));
    }

    #[test]
    fn answers_are_read_into_call_ids_and_classified_errors() {
        let ok =
            br#"{"RequestId":"r","CallId":"116012354148^10281378","Code":"OK","Message":"OK"}"#;
        assert_eq!(
            interpret_aliyun(200, ok).unwrap().provider_message_id,
            "116012354148^10281378"
        );
        let bad = br#"{"RequestId":"r","Code":"isv.MOBILE_NUMBER_ILLEGAL","Message":"x"}"#;
        assert_eq!(
            interpret_aliyun(200, bad).unwrap_err().permanent_kind(),
            Some(PermanentKind::InvalidNumber)
        );
        assert!(interpret_aliyun(502, b"<html>").unwrap_err().is_transient());
        let ok = br#"{"Response":{"SendStatus":{"CallId":"8bd3","SessionContext":"n"},"RequestId":"r"}}"#;
        assert_eq!(
            interpret_tencent(200, ok).unwrap().provider_message_id,
            "8bd3"
        );
        let auth = br#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"m"},"RequestId":"r"}}"#;
        assert_eq!(
            interpret_tencent(200, auth).unwrap_err().permanent_kind(),
            Some(PermanentKind::AuthFailure)
        );
        let throttled = br#"{"Response":{"Error":{"Code":"LimitExceeded.DailyLimit","Message":"m"},"RequestId":"r"}}"#;
        assert!(
            interpret_tencent(200, throttled)
                .unwrap_err()
                .is_transient()
        );
    }

    #[tokio::test]
    async fn both_stand_ins_verify_the_signature_of_a_call_and_refuse_a_wrong_secret() {
        let m = message();
        for kind in [StandInKind::Aliyun, StandInKind::Tencent] {
            let (id, secret) = match kind {
                StandInKind::Aliyun => ("LTAI-voice", "voice-secret"),
                _ => ("AKID-voice", "voice-secret"),
            };
            let stand_in = StandIn::start(kind, id, secret).await.unwrap();
            let build = |secret: &str| -> Box<dyn VoiceProvider> {
                match kind {
                    StandInKind::Aliyun => Box::new(
                        AliyunVoiceProvider::new(aliyun_config(stand_in.base_url(), secret))
                            .unwrap(),
                    ),
                    _ => Box::new(
                        TencentVoiceProvider::new(tencent_config(stand_in.base_url(), secret))
                            .unwrap(),
                    ),
                }
            };
            let accepted = build(secret).call(&m).await.unwrap();
            assert!(!accepted.provider_message_id.is_empty());
            let calls = stand_in.received();
            assert_eq!(calls.len(), 1, "{kind:?}");
            assert_eq!(calls[0].channel, "voice");
            let mut spoken: Vec<&str> = calls[0].params.iter().map(|(_, v)| v.as_str()).collect();
            spoken.sort_unstable();
            assert_eq!(
                spoken,
                ["C-7K3M", "危急", "第一中学"],
                "{kind:?}: the template's values and nothing else"
            );
            assert_eq!(calls[0].idempotency_key.as_deref(), Some("notif-1"));

            let refused = build("not-the-secret").call(&m).await.unwrap_err();
            assert_eq!(refused.permanent_kind(), Some(PermanentKind::AuthFailure));
            assert_eq!(
                stand_in.received().len(),
                1,
                "a bad signature is not a call"
            );

            stand_in.script(Reply::Throttled);
            assert!(build(secret).call(&m).await.unwrap_err().is_transient());
        }
    }
}
