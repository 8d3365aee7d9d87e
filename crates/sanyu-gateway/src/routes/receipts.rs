//! SMS delivery receipts: `POST /v1/sms/receipts/{provider}/{secret}`.
//!
//! Providers call back to say what became of a message (sent → delivered or
//! failed); the delivery and the attempt it confirms record it, so the case
//! shows whether the SMS reached the handset.
//!
//! Alibaba Cloud's `SmsReport` push and Tencent Cloud's status callback are
//! not signed, so these routes take no bearer token: the unguessable path
//! segment `sms.receipt_path_secret` is what keeps strangers out (keep it
//! long and random, and restrict the route to the providers' addresses at the
//! proxy where you can). A wrong or missing secret answers 404, like an unknown
//! route. The webhook's receipts are also HMAC-signed and checked with the
//! webhook's secret. The path is never logged with its secret.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sanyu_sms::{DeliveryReceipt, DeliveryStatus, ProviderConfig, aliyun, tencent, webhook};
use sanyu_store::begin_write;
use sanyu_store::deliveries::{self, Receipt};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;

/// The path prefix, for redaction in request spans.
pub const PREFIX: &str = "/v1/sms/receipts/";

/// What the receipt routes need from configuration.
#[derive(Clone, Default)]
pub struct ReceiptSettings {
    /// Empty: receipts are refused.
    pub path_secret: String,
    /// The secrets of configured webhook providers (their receipts and
    /// replies are signed).
    pub webhook_secrets: Vec<sanyu_sms::Secret>,
    /// `sms.reply_tokens.aliyun` (empty: refused).
    pub aliyun_reply_token: String,
    /// `sms.reply_tokens.tencent` (empty: refused).
    pub tencent_reply_token: String,
    /// How far back an SMS reply looks for the case SMS it answers.
    pub reply_window: chrono::Duration,
    /// `voice.keypress_token` (empty: key presses refused).
    pub keypress_token: String,
}

impl std::fmt::Debug for ReceiptSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptSettings([redacted])")
    }
}

impl ReceiptSettings {
    pub fn from_config(config: &sanyu_platform::Config) -> Self {
        let webhook_secrets = [&config.sms.primary, &config.sms.secondary]
            .into_iter()
            .flatten()
            .filter_map(|p| match p {
                ProviderConfig::Webhook(w) => Some(w.secret.clone()),
                _ => None,
            })
            .collect();
        Self {
            path_secret: config.sms.receipt_path_secret.expose().to_owned(),
            webhook_secrets,
            aliyun_reply_token: config.sms.reply_tokens.aliyun.expose().to_owned(),
            tencent_reply_token: config.sms.reply_tokens.tencent.expose().to_owned(),
            reply_window: chrono::Duration::hours(config.console.sms_reply_window_hours.max(1)),
            keypress_token: config.voice.keypress_token.expose().to_owned(),
        }
    }

    /// Constant-time in the secret's content: compares digests.
    fn accepts(&self, candidate: &str) -> bool {
        same_secret(&self.path_secret, candidate)
    }
}

/// Whether `candidate` is `expected` (never when `expected` is empty);
/// constant-time in the secret's content: compares digests.
pub fn same_secret(expected: &str, candidate: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(candidate.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Receive delivery receipts from an SMS provider (`webhook`, `aliyun` or `tencent`).
#[utoipa::path(
    post,
    path = "/v1/sms/receipts/{provider}/{secret}",
    tag = "sms",
    params(
        ("provider" = String, Path, description = "webhook, aliyun or tencent"),
        ("secret" = String, Path, description = "sms.receipt_path_secret"),
    ),
    request_body(content = String, description = "The provider's receipt body (JSON)"),
    responses(
        (status = 200, description = "Receipts recorded; the body is the provider's expected acknowledgement"),
        (status = 401, description = "Webhook receipt signature invalid", body = ErrorBody),
        (status = 404, description = "Unknown provider or wrong secret", body = ErrorBody),
        (status = 422, description = "Body is not a receipt", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    Path((provider, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !state.receipts.accepts(&secret) {
        return Err(ApiError::NotFound("route"));
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let invalid = |e: sanyu_sms::ReceiptError| ApiError::Validation {
        field: "body".into(),
        message: e.to_string(),
    };
    let (receipts, ack): (Vec<DeliveryReceipt>, Response) = match provider.as_str() {
        "webhook" => {
            let (ts, sig) = (
                header(webhook::TIMESTAMP_HEADER),
                header(webhook::SIGNATURE_HEADER),
            );
            let mut last_error = None;
            let mut parsed = None;
            for secret in &state.receipts.webhook_secrets {
                match webhook::parse_receipt(secret, &ts, &sig, &body, Utc::now()) {
                    Ok(r) => {
                        parsed = Some(r);
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            match (parsed, last_error) {
                (Some(r), _) => (vec![r], StatusCode::NO_CONTENT.into_response()),
                (None, Some(sanyu_sms::ReceiptError::Json(e))) => {
                    return Err(invalid(sanyu_sms::ReceiptError::Json(e)));
                }
                (None, _) => return Err(ApiError::Unauthorized),
            }
        }
        "aliyun" => (
            aliyun::parse_sms_report(&body).map_err(invalid)?,
            json_ack(aliyun::SMS_REPORT_ACK),
        ),
        "tencent" => (
            tencent::parse_status_callback(&body).map_err(invalid)?,
            json_ack(tencent::CALLBACK_ACK),
        ),
        _ => return Err(ApiError::NotFound("route")),
    };
    let mut matched = 0usize;
    let txn = begin_write(&state.db).await?;
    for r in &receipts {
        let (status, reason) = match &r.status {
            DeliveryStatus::Sent => (deliveries::SENT, None),
            DeliveryStatus::Delivered => (deliveries::DELIVERED, None),
            DeliveryStatus::Failed { reason } => (deliveries::FAILED, Some(reason.clone())),
        };
        let applied = deliveries::apply_receipt(
            &*txn,
            &Receipt {
                provider: r.provider,
                provider_message_id: r.provider_message_id.as_deref(),
                notification_key: r.idempotency_key.as_deref(),
                status,
                reason,
            },
        )
        .await?;
        matched += usize::from(applied.is_some());
    }
    txn.commit().await?;
    tracing::info!(
        provider = %provider,
        receipts = receipts.len(),
        matched,
        "SMS delivery receipts"
    );
    Ok(ack)
}

fn json_ack(body: &'static str) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
