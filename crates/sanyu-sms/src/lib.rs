//! SMS for Sanyu: provider adapters, delivery receipts, message templates,
//! and stand-ins that check signatures the way the providers do.
//!
//! * [`SmsProvider`] — one trait, three adapters: a signed JSON [`webhook`],
//!   [`aliyun`] (Alibaba Cloud `dysmsapi` SendSms, HMAC-SHA1 RPC signature)
//!   and [`tencent`] (Tencent Cloud SMS SendSms, TC3-HMAC-SHA256). Built from
//!   [`ProviderConfig`] by [`build_provider`].
//! * [`SmsError`] — transient or permanent, with the provider's code and
//!   reason; the policy is in [`error`].
//! * [`render_sms`] / [`render_staff_email`] — the only way to turn case
//!   facts into message text; they read [`NotificationFacts`] and nothing
//!   else, and refuse denied words (see [`templates`]).
//! * Delivery receipts — [`webhook::parse_receipt`],
//!   [`aliyun::parse_sms_report`], [`tencent::parse_status_callback`] into
//!   [`DeliveryReceipt`].
//! * Replies (uplink) — [`reply`]: a staff member's answer to an alert, into
//!   [`InboundSms`].
//! * Voice calls for critical cases — [`voice`]: Alibaba Cloud
//!   `SingleCallByTts` and Tencent Cloud `SendTtsVoice` behind
//!   [`VoiceProvider`], built by [`build_voice_provider`], signed by the same
//!   code as SMS.
//! * `stand_in` (feature `stand-in`) — provider stand-ins for tests.
//!
//! Nothing here logs message content or phone numbers; `Debug` of messages,
//! numbers and secrets is masked.

pub mod aliyun;
pub mod error;
mod message;
mod provider;
pub mod receipt;
pub mod reply;
mod secret;
#[cfg(feature = "stand-in")]
pub mod stand_in;
pub mod templates;
pub mod tencent;
pub mod voice;
pub mod webhook;

pub use error::{ConfigError, PermanentKind, ReceiptError, SmsError, TemplateError, TransientKind};
pub use message::{InvalidPhoneNumber, PhoneNumber, SmsAccepted, SmsMessage};
pub use provider::{
    ApprovedTemplate, HttpSettings, ProviderConfig, SendFuture, SmsProvider, build_provider,
};
pub use receipt::{DeliveryReceipt, DeliveryStatus};
pub use reply::{InboundSms, KeyPress};
pub use secret::Secret;
pub use templates::{
    AckReplyOutcome, AlertLevel, Audience, Channel, DigestEntry, DigestFacts, Locale,
    NotificationFacts, RenderedEmail, RenderedSms, render_ack_reply_sms, render_digest_email,
    render_digest_im, render_digest_sms, render_sign_in_sms, render_sms, render_staff_email,
    render_staff_im,
};
pub use voice::{VoiceProvider, VoiceProviderConfig, build_voice_provider};
