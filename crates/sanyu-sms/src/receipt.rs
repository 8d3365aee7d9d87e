//! Delivery receipts: what the provider later says happened to a message.
//!
//! The parsers live with their providers ([`crate::aliyun::parse_sms_report`],
//! [`crate::tencent::parse_status_callback`], [`crate::webhook::parse_receipt`]);
//! they are pure functions from the callback body (and, for the webhook, its
//! signature headers) to [`DeliveryReceipt`]s. The HTTP route that receives
//! them belongs to the gateway.
//!
//! Neither Alibaba Cloud's `SmsReport` HTTP push nor Tencent Cloud's status
//! callback is signed by the provider (their documentation describes no
//! signature), so the route must be protected otherwise: an unguessable path
//! segment and, where the deployment allows, the provider's published source
//! addresses. The webhook's receipts are HMAC-signed like its requests.

use chrono::NaiveDateTime;

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Handed to the carrier; no final word yet.
    Sent,
    /// The handset received it.
    Delivered,
    /// It will not arrive. `reason` is the provider's/carrier's code and text.
    Failed { reason: String },
}

impl DeliveryStatus {
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Sent)
    }
}

/// One delivery receipt. It carries no phone number: the ids are enough to
/// find the notification, and a receipt store without numbers is one less
/// copy of personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    pub provider: &'static str,
    /// Webhook `id`, Alibaba Cloud `biz_id` (= `BizId`), Tencent Cloud `sid`
    /// (= `SerialNo`): what [`crate::SmsAccepted::provider_message_id`] held.
    pub provider_message_id: Option<String>,
    /// Our idempotency key when the provider echoes it: Alibaba Cloud
    /// `out_id` (= `OutId`), the webhook's `idempotency_key`. Tencent Cloud's
    /// callback does not carry `SessionContext`.
    pub idempotency_key: Option<String>,
    pub status: DeliveryStatus,
    /// The provider's status code (`DELIVERED`, `DELIVRD`, carrier codes).
    pub provider_code: Option<String>,
    /// When the provider says the status was reported/received, as written
    /// by the provider (China Standard Time for both Chinese providers).
    pub reported_at: Option<NaiveDateTime>,
}

/// Parses the `yyyy-MM-dd HH:mm:ss` times both Chinese providers use.
pub(crate) fn parse_provider_time(value: Option<&str>) -> Option<NaiveDateTime> {
    value.and_then(|v| NaiveDateTime::parse_from_str(v.trim(), "%Y-%m-%d %H:%M:%S").ok())
}

pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}
