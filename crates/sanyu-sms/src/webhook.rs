//! The generic JSON webhook: our own small, signed protocol for an SMS
//! gateway we do not integrate natively (or a school's own relay).
//!
//! # Request
//!
//! `POST <url>` with `Content-Type: application/json` and the body
//!
//! ```json
//! {"to": "+8613800138000", "template": "staff.zh-CN", "text": "…",
//!  "params": {"school": "…", "case_ref": "C-7F3K2Q", …},
//!  "idempotency_key": "…"}
//! ```
//!
//! Headers:
//! * `X-Sanyu-Timestamp: <unix seconds>`
//! * `X-Sanyu-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`
//! * `Idempotency-Key: <idempotency_key>` — the receiver should send each key once.
//!
//! The timestamp is part of the signed bytes (not only a header beside a
//! body-only MAC), so a captured request cannot be replayed later with a
//! fresh timestamp; receivers reject timestamps more than
//! [`SIGNATURE_TOLERANCE`] away from their clock.
//!
//! # Response
//!
//! * 2xx with `{"id": "<message id>"}`: accepted.
//! * Otherwise, optionally `{"code": "…", "reason": "…"}`. Codes:
//!   `invalid_number`, `recipient_blocked`, `template_rejected`,
//!   `content_rejected`, `bad_signature`/`unauthorized` (permanent);
//!   `throttled` (transient). Without a known code the HTTP status decides:
//!   408/429/5xx transient, 401/403 auth failure, other 4xx permanent.
//!
//! # Delivery receipts
//!
//! `POST`ed back to Sanyu with the same two signature headers and the body
//! `{"id": "…", "status": "sent"|"delivered"|"failed", "reason": "…",
//! "idempotency_key": "…"}`; see [`parse_receipt`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{ConfigError, PermanentKind, ReceiptError, SmsError, TransientKind};
use crate::message::{SmsAccepted, SmsMessage};
use crate::provider::{HttpSettings, SendFuture, SmsProvider, excerpt, exchange, parse_endpoint};
use crate::receipt::{DeliveryReceipt, DeliveryStatus, non_empty};
use crate::secret::Secret;

pub const PROVIDER: &str = "webhook";
pub const TIMESTAMP_HEADER: &str = "x-sanyu-timestamp";
pub const SIGNATURE_HEADER: &str = "x-sanyu-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How far a signed timestamp may be from the receiver's clock.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    #[serde(default)]
    pub http: HttpSettings,
}

/// The JSON body the webhook receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRequest {
    pub to: String,
    pub template: String,
    pub text: String,
    pub params: BTreeMap<String, String>,
    pub idempotency_key: String,
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks the two signature headers against `body` (constant-time compare).
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), ReceiptError> {
    let timestamp: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| ReceiptError::MalformedSignature)?;
    let expected = signature_header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(ReceiptError::MalformedSignature)?;
    // Signature first, then age: a forged request learns nothing about the window.
    mac(secret, timestamp, body)
        .verify_slice(&expected)
        .map_err(|_| ReceiptError::BadSignature)?;
    let tolerance = i64::try_from(SIGNATURE_TOLERANCE.as_secs()).unwrap_or(i64::MAX);
    if (now.timestamp() - timestamp).abs() > tolerance {
        return Err(ReceiptError::StaleTimestamp);
    }
    Ok(())
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cold]
fn unreachable_hmac() -> ! {
    // `InvalidLength` is only returned by fixed-key-size MACs, never by HMAC.
    panic!("HMAC-SHA256 rejected a key length, which HMAC never does")
}

/// Sends through the webhook.
#[derive(Debug)]
pub struct WebhookProvider {
    url: url::Url,
    secret: Secret,
    client: reqwest::Client,
}

impl WebhookProvider {
    pub fn new(config: WebhookConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            url: parse_endpoint("webhook", &config.url)?,
            secret: config.secret,
            client: config.http.client()?,
        })
    }

    // Ids only: never the number, the text or the parameters.
    #[tracing::instrument(
        name = "sms.send",
        skip_all,
        fields(provider = PROVIDER, idempotency_key = %message.idempotency_key)
    )]
    async fn send_one(&self, message: &SmsMessage) -> Result<SmsAccepted, SmsError> {
        let request = WebhookRequest {
            to: message.phone.e164().to_owned(),
            template: message.content.template_name(),
            text: message.content.text.clone(),
            params: message
                .content
                .params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            idempotency_key: message.idempotency_key.clone(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| {
            SmsError::permanent(PROVIDER, PermanentKind::BadRequest, "encode", e.to_string())
        })?;
        let timestamp = Utc::now().timestamp();
        let signature = sign(self.secret.expose().as_bytes(), timestamp, &body);
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(IDEMPOTENCY_HEADER, message.idempotency_key.as_str())
            .body(body);
        exchange(PROVIDER, request, interpret_response).await
    }
}

impl SmsProvider for WebhookProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn send<'a>(&'a self, message: &'a SmsMessage) -> SendFuture<'a> {
        Box::pin(self.send_one(message))
    }
}

#[derive(Deserialize)]
struct Accepted {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Refused {
    code: Option<String>,
    reason: Option<String>,
}

fn interpret_response(status: u16, body: &[u8]) -> Result<SmsAccepted, SmsError> {
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<Accepted>(body) {
            Ok(Accepted { id: Some(id) }) if !id.is_empty() => Ok(SmsAccepted {
                provider: PROVIDER,
                provider_message_id: id,
            }),
            _ => Err(SmsError::transient(
                PROVIDER,
                TransientKind::UnexpectedResponse,
                format!("http_{status}"),
                format!("2xx without an `id`: {}", excerpt(body)),
            )),
        };
    }
    let refused = serde_json::from_slice::<Refused>(body).ok();
    let reason = refused
        .as_ref()
        .and_then(|r| r.reason.clone())
        .unwrap_or_else(|| excerpt(body));
    let Some(code) = refused.and_then(|r| r.code) else {
        return Err(SmsError::from_status(PROVIDER, status, reason));
    };
    let permanent = |kind| {
        Err(SmsError::permanent(
            PROVIDER,
            kind,
            code.clone(),
            reason.clone(),
        ))
    };
    match code.as_str() {
        "invalid_number" => permanent(PermanentKind::InvalidNumber),
        "recipient_blocked" => permanent(PermanentKind::RecipientBlocked),
        "template_rejected" => permanent(PermanentKind::TemplateRejected),
        "content_rejected" => permanent(PermanentKind::ContentRejected),
        "bad_signature" | "unauthorized" => permanent(PermanentKind::AuthFailure),
        "throttled" => Err(SmsError::transient(
            PROVIDER,
            TransientKind::Throttled,
            code.clone(),
            reason,
        )),
        _ => match SmsError::from_status(PROVIDER, status, reason) {
            // Keep the receiver's code rather than `http_<status>`.
            SmsError::Transient { kind, reason, .. } => {
                Err(SmsError::transient(PROVIDER, kind, code, reason))
            }
            SmsError::Permanent { kind, reason, .. } => {
                Err(SmsError::permanent(PROVIDER, kind, code, reason))
            }
        },
    }
}

#[derive(Deserialize)]
struct ReceiptBody {
    id: String,
    status: String,
    reason: Option<String>,
    idempotency_key: Option<String>,
}

/// Verifies the signature headers of a webhook delivery receipt and parses it.
pub fn parse_receipt(
    secret: &Secret,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<DeliveryReceipt, ReceiptError> {
    verify(
        secret.expose().as_bytes(),
        timestamp_header,
        signature_header,
        body,
        now,
    )?;
    let receipt: ReceiptBody = serde_json::from_slice(body)?;
    let status = match receipt.status.as_str() {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "failed" => DeliveryStatus::Failed {
            reason: receipt.reason.clone().unwrap_or_default(),
        },
        other => return Err(ReceiptError::UnknownStatus(other.to_owned())),
    };
    Ok(DeliveryReceipt {
        provider: PROVIDER,
        provider_message_id: Some(receipt.id),
        idempotency_key: non_empty(receipt.idempotency_key),
        status,
        provider_code: Some(receipt.status),
        reported_at: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The fixed clock of the signed-request tests (replies' too).
    pub(crate) fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_740_800_000, 0).unwrap()
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Independent check: HMAC-SHA256("secret", "1740800000.{}")
        let expected = {
            let mut m = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
            m.update(b"1740800000.{}");
            format!("sha256={}", hex::encode(m.finalize().into_bytes()))
        };
        assert_eq!(sign(b"secret", 1_740_800_000, b"{}"), expected);
    }

    #[test]
    fn a_receipt_signed_with_the_secret_is_parsed() {
        let body = br#"{"id":"wh-1","status":"failed","reason":"UNDELIV","idempotency_key":"n-1"}"#;
        let sig = sign(b"s3cret", now().timestamp(), body);
        let receipt = parse_receipt(
            &Secret::new("s3cret"),
            &now().timestamp().to_string(),
            &sig,
            body,
            now(),
        )
        .unwrap();
        assert_eq!(receipt.provider_message_id.as_deref(), Some("wh-1"));
        assert_eq!(receipt.idempotency_key.as_deref(), Some("n-1"));
        assert_eq!(
            receipt.status,
            DeliveryStatus::Failed {
                reason: "UNDELIV".into()
            }
        );
    }

    #[test]
    fn a_receipt_with_a_wrong_signature_or_old_timestamp_is_refused() {
        let body = br#"{"id":"wh-1","status":"delivered"}"#;
        let ts = now().timestamp();
        let wrong = sign(b"other", ts, body);
        assert!(matches!(
            parse_receipt(&Secret::new("s3cret"), &ts.to_string(), &wrong, body, now()),
            Err(ReceiptError::BadSignature)
        ));
        let old = ts - 3600;
        let sig = sign(b"s3cret", old, body);
        assert!(matches!(
            parse_receipt(&Secret::new("s3cret"), &old.to_string(), &sig, body, now()),
            Err(ReceiptError::StaleTimestamp)
        ));
        assert!(matches!(
            parse_receipt(&Secret::new("s3cret"), "x", "sha256=zz", body, now()),
            Err(ReceiptError::MalformedSignature)
        ));
    }

    #[test]
    fn a_tampered_receipt_body_is_refused() {
        let ts = now().timestamp();
        let sig = sign(b"s3cret", ts, br#"{"id":"wh-1","status":"failed"}"#);
        let tampered = br#"{"id":"wh-1","status":"delivered"}"#;
        assert!(matches!(
            parse_receipt(
                &Secret::new("s3cret"),
                &ts.to_string(),
                &sig,
                tampered,
                now()
            ),
            Err(ReceiptError::BadSignature)
        ));
    }

    #[test]
    fn refusals_are_classified_by_code_then_status() {
        let e = interpret_response(422, br#"{"code":"invalid_number","reason":"x"}"#).unwrap_err();
        assert_eq!(e.permanent_kind(), Some(PermanentKind::InvalidNumber));
        let e = interpret_response(503, b"<html>busy</html>").unwrap_err();
        assert_eq!(e.transient_kind(), Some(TransientKind::ServerError));
        let e = interpret_response(500, br#"{"code":"weird","reason":"x"}"#).unwrap_err();
        assert_eq!(e.code(), "weird");
        assert!(e.is_transient());
        let e = interpret_response(200, b"{}").unwrap_err();
        assert_eq!(e.transient_kind(), Some(TransientKind::UnexpectedResponse));
    }
}
