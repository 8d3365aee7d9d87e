//! SMS replies (uplink, 上行短信): what a staff member texts back to an
//! alert, as each provider pushes it to Sanyu. Pure parsers from the
//! callback body to [`InboundSms`]; the gateway's route authenticates the
//! callback and decides what the reply means.
//!
//! | provider | callback | authenticated by | answer |
//! |---|---|---|---|
//! | webhook | `{"id","from","text"}` | `X-Sanyu-Timestamp` + `X-Sanyu-Signature` (HMAC-SHA256 of `"<ts>." + body` with the webhook's secret, ±5 min) | 204 |
//! | Alibaba Cloud | up-message HTTP batch push (`SmsUp`): `[{"phone_number","send_time","content","sign_name","dest_code","sequence_id"}]` | not signed by Alibaba Cloud: a token in the configured address (`sms.reply_tokens.aliyun`) | [`aliyun::SMS_REPORT_ACK`](crate::aliyun::SMS_REPORT_ACK) |
//! | Tencent Cloud | reply callback (回复短信回调): `{"extend","mobile","nationcode","sign","text","time"}` | not signed by Tencent Cloud: a token in the configured address (`sms.reply_tokens.tencent`) | [`tencent::CALLBACK_ACK`](crate::tencent::CALLBACK_ACK) |
//!
//! Nothing here logs a number or a text; `Debug` of [`InboundSms`] masks both.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ReceiptError;
use crate::message::PhoneNumber;
use crate::secret::Secret;

/// One SMS a person sent to us.
#[derive(Clone, PartialEq, Eq)]
pub struct InboundSms {
    pub provider: &'static str,
    /// The provider's id of the message (Alibaba Cloud `sequence_id`, the
    /// webhook's `id`; Tencent Cloud sends none, so a digest of the
    /// callback): a provider's retry of the callback carries the same id.
    pub id: String,
    /// The sender; `None` when the provider's number is not a mobile number.
    pub from: Option<PhoneNumber>,
    pub text: String,
}

impl fmt::Debug for InboundSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSms")
            .field("provider", &self.provider)
            .field("id", &self.id)
            .field("from", &self.from)
            .field(
                "text",
                &format_args!("<{} chars>", self.text.chars().count()),
            )
            .finish()
    }
}

/// The webhook's reply body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookReply {
    pub id: String,
    pub from: String,
    pub text: String,
}

/// Verifies the signature headers of a webhook reply and parses it.
pub fn parse_webhook_reply(
    secret: &Secret,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<InboundSms, ReceiptError> {
    crate::webhook::verify(
        secret.expose().as_bytes(),
        timestamp_header,
        signature_header,
        body,
        now,
    )?;
    let r: WebhookReply = serde_json::from_slice(body)?;
    Ok(InboundSms {
        provider: crate::webhook::PROVIDER,
        id: r.id,
        from: PhoneNumber::parse(&r.from).ok(),
        text: r.text,
    })
}

#[derive(Debug, Deserialize)]
struct AliyunUp {
    phone_number: String,
    content: String,
    #[serde(default)]
    sequence_id: serde_json::Value,
    #[serde(default)]
    send_time: String,
}

/// Alibaba Cloud's up-message push: a JSON array of messages.
pub fn parse_aliyun_up(body: &[u8]) -> Result<Vec<InboundSms>, ReceiptError> {
    let ups: Vec<AliyunUp> = serde_json::from_slice(body)?;
    Ok(ups
        .into_iter()
        .map(|u| {
            let id = match &u.sequence_id {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) if !s.is_empty() => s.clone(),
                _ => digest(&[&u.phone_number, &u.send_time, &u.content]),
            };
            InboundSms {
                provider: crate::aliyun::PROVIDER,
                id,
                from: PhoneNumber::parse(&u.phone_number).ok(),
                text: u.content,
            }
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct TencentReply {
    mobile: String,
    #[serde(default)]
    nationcode: String,
    text: String,
    #[serde(default)]
    time: serde_json::Value,
}

/// Tencent Cloud's reply callback: one JSON object per message.
pub fn parse_tencent_reply(body: &[u8]) -> Result<InboundSms, ReceiptError> {
    let r: TencentReply = serde_json::from_slice(body)?;
    let number = match r.nationcode.trim() {
        "" => r.mobile.clone(),
        code => format!("+{code}{}", r.mobile.trim()),
    };
    Ok(InboundSms {
        provider: crate::tencent::PROVIDER,
        id: digest(&[&number, &r.time.to_string(), &r.text]),
        from: PhoneNumber::parse(&number).ok(),
        text: r.text,
    })
}

/// A key pressed during a voice call, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPress {
    /// `tencent`.
    pub provider: &'static str,
    /// The call's id, as the provider answered the call request with it
    /// (Tencent Cloud `SendStatus.CallId`): it names the call Sanyu placed.
    pub call_id: String,
    /// The key pressed (`1`, …).
    pub key: String,
    /// The number called, when the report carries a valid one.
    pub to: Option<PhoneNumber>,
}

#[derive(serde::Deserialize)]
struct TencentKeyCallback {
    voicekey_callback: TencentKey,
}

#[derive(serde::Deserialize)]
struct TencentKey {
    callid: String,
    keypress: String,
    #[serde(default)]
    mobile: String,
    #[serde(default)]
    nationcode: String,
}

/// Tencent Cloud voice messages' key-press callback (语音消息 按键回调):
/// `{"voicekey_callback":{"callid","keypress","mobile","nationcode","call_from"}}`.
/// Answer it with [`TENCENT_KEYPRESS_ACK`].
pub fn parse_tencent_keypress(body: &[u8]) -> Result<KeyPress, ReceiptError> {
    let r: TencentKeyCallback = serde_json::from_slice(body)?;
    let k = r.voicekey_callback;
    let number = match k.nationcode.trim() {
        "" => k.mobile.trim().to_owned(),
        code => format!("+{code}{}", k.mobile.trim()),
    };
    Ok(KeyPress {
        provider: crate::tencent::PROVIDER,
        call_id: k.callid.trim().to_owned(),
        key: k.keypress.trim().to_owned(),
        to: PhoneNumber::parse(&number).ok(),
    })
}

/// What Tencent Cloud expects in answer to a callback.
pub const TENCENT_KEYPRESS_ACK: &str = r#"{"result":0,"errmsg":"OK"}"#;

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::webhook::tests::now;

    #[test]
    fn a_signed_webhook_reply_is_parsed_and_a_forged_one_refused() {
        let body = br#"{"id":"r-1","from":"13900000003","text":"1"}"#;
        let ts = now().timestamp();
        let sig = crate::webhook::sign(b"s3cret", ts, body);
        let r = parse_webhook_reply(&Secret::new("s3cret"), &ts.to_string(), &sig, body, now())
            .unwrap();
        assert_eq!(r.id, "r-1");
        assert_eq!(r.from.unwrap().e164(), "+8613900000003");
        assert_eq!(r.text, "1");
        let forged = crate::webhook::sign(b"guess", ts, body);
        assert!(matches!(
            parse_webhook_reply(
                &Secret::new("s3cret"),
                &ts.to_string(),
                &forged,
                body,
                now()
            ),
            Err(ReceiptError::BadSignature)
        ));
    }

    #[test]
    fn aliyun_and_tencent_replies_are_parsed_with_a_stable_id() {
        let body = r#"[{"phone_number":"13900000003","send_time":"2026-12-06 03:00:00","content":"C-7F3K2Q","sign_name":"测试","dest_code":"1","sequence_id":123456}]"#;
        let ups = parse_aliyun_up(body.as_bytes()).unwrap();
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].id, "123456");
        assert_eq!(ups[0].text, "C-7F3K2Q");
        assert_eq!(ups[0].from.as_ref().unwrap().e164(), "+8613900000003");

        let body = br#"{"extend":"","mobile":"13900000003","nationcode":"86","sign":"x","text":"1","time":1740800000}"#;
        let a = parse_tencent_reply(body).unwrap();
        let b = parse_tencent_reply(body).unwrap();
        assert_eq!(a.id, b.id, "a retried callback has the same id");
        assert_eq!(a.from.as_ref().unwrap().e164(), "+8613900000003");
        assert!(!format!("{a:?}").contains("13900000003"));
    }

    #[test]
    fn a_tencent_key_press_names_the_call_the_key_and_the_number() {
        let body = br#"{"voicekey_callback":{"call_from":"","callid":"8bd3e4a0-0001","keypress":"1","mobile":"13900000003","nationcode":"86"}}"#;
        let k = parse_tencent_keypress(body).unwrap();
        assert_eq!(k.call_id, "8bd3e4a0-0001");
        assert_eq!(k.key, "1");
        assert_eq!(k.to.unwrap().e164(), "+8613900000003");
        assert!(parse_tencent_keypress(b"{}").is_err());
        assert!(parse_tencent_keypress(b"not json").is_err());
    }
}
