//! How people are told: the channels per case level, quiet hours, digests,
//! and the settings of the SMS, voice and work-IM providers.

use serde::{Deserialize, Serialize};

use super::Secret;

/// SMS providers (see `sanyu_sms::ProviderConfig`, e.g. `[sms.primary]` with
/// `kind = "aliyun"`). Without a primary provider the SMS channel is off and
/// every notification goes by email.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    #[serde(skip_serializing)]
    pub primary: Option<sanyu_sms::ProviderConfig>,
    /// Tried when the primary fails after its retries.
    #[serde(skip_serializing)]
    pub secondary: Option<sanyu_sms::ProviderConfig>,
    /// The unguessable path segment of the delivery-receipt callbacks
    /// (`/v1/sms/receipts/<provider>/<secret>`). Alibaba Cloud and Tencent
    /// Cloud do not sign their callbacks, so this secret is what keeps
    /// strangers from marking messages delivered. Empty: receipts are refused.
    pub receipt_path_secret: Secret,
    /// The tokens of the SMS reply (uplink) callbacks, one per provider
    /// (`/v1/sms/replies/<provider>/<token>`): Alibaba Cloud's up-message
    /// push and Tencent Cloud's reply callback are not signed, so the token
    /// in the address configured at the provider is what authenticates them.
    /// Empty: that provider's replies are refused. The webhook's replies are
    /// HMAC-signed with its own secret instead.
    pub reply_tokens: ReplyTokens,
}

/// See [`SmsConfig::reply_tokens`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplyTokens {
    pub aliyun: Secret,
    pub tencent: Secret,
}

/// The voice-call provider (see `sanyu_sms::VoiceProviderConfig`, e.g.
/// `[voice.provider]` with `kind = "aliyun"`). Without one the voice channel
/// is off and a critical case goes by SMS and email only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceConfig {
    #[serde(skip_serializing)]
    pub provider: Option<sanyu_sms::VoiceProviderConfig>,
    /// The token in the address of the provider's key-press callback
    /// (`{public_base_url}/v1/voice/keypress/tencent/<token>`): pressing 1
    /// during a case's call acknowledges the case. Tencent Cloud's callback
    /// is not signed, so the token is what authenticates it. Empty: key
    /// presses are refused.
    pub keypress_token: Secret,
}

/// The work-IM platform (see `sanyu_im::ImConfig`, e.g. `[im.provider]` with
/// `kind = "wecom"`). Without one the IM channel is off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImConfig {
    #[serde(skip_serializing)]
    pub provider: Option<sanyu_im::ImConfig>,
}

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyChannel {
    Sms,
    /// A text-to-speech call to the person's mobile number.
    Voice,
    /// A WeCom application message or DingTalk work notification, to the
    /// account the platform finds for the person's mobile number.
    Im,
    Email,
}

impl NotifyChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Voice => "voice",
            Self::Im => "im",
            Self::Email => "email",
        }
    }

    /// Every channel, in the order pages list them.
    pub const ALL: [NotifyChannel; 4] = [Self::Sms, Self::Voice, Self::Im, Self::Email];

    /// The channel named `s` (`sms`, `voice`, `im`, `email`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s.trim())
    }
}

impl ChannelsPerLevel {
    /// The channels of `level` (`critical`, `high`, `elevated`).
    pub fn of(&self, level: &str) -> &[NotifyChannel] {
        match level {
            "critical" => &self.critical,
            "high" => &self.high,
            _ => &self.elevated,
        }
    }
}

/// Which channels each level uses at first (defaults from the design: critical
/// by SMS, a voice call, work IM and email, high by SMS, work IM and email,
/// elevated by email and work IM; a call or an IM message only where
/// `[voice.provider]` or `[im.provider]` is configured). When every channel of a
/// request fails, the others are tried before the delivery counts as failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsPerLevel {
    pub critical: Vec<NotifyChannel>,
    pub high: Vec<NotifyChannel>,
    pub elevated: Vec<NotifyChannel>,
}

impl Default for ChannelsPerLevel {
    fn default() -> Self {
        Self {
            critical: vec![
                NotifyChannel::Sms,
                NotifyChannel::Voice,
                NotifyChannel::Im,
                NotifyChannel::Email,
            ],
            high: vec![NotifyChannel::Sms, NotifyChannel::Im, NotifyChannel::Email],
            elevated: vec![NotifyChannel::Email, NotifyChannel::Im],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    pub channels: ChannelsPerLevel,
    /// How long a claim protects a send from other workers. Sending (with its
    /// retries and failover) stops at half of it, so a send never runs on an
    /// expired lease.
    pub lease_secs: u64,
    /// A notifier that takes over an expired claim whose holder stopped
    /// during a send (the provider may have accepted it) waits this long
    /// before sending again with the same idempotency identity, in case the
    /// holder still records the outcome.
    pub takeover_grace_ms: u64,
    /// Attempts on one provider before the next one (or the next channel) is tried.
    pub attempts_per_provider: u32,
    /// Exponential backoff between attempts, with jitter.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Per recipient and channel, for non-critical messages: at most this many
    /// per hour (0 = no limit). A critical message is never limited.
    pub recipient_per_hour: u32,
    /// Per provider (SMS provider or SMTP), for non-critical messages (0 = no limit).
    pub provider_per_second: u32,
    pub quiet_hours: QuietHoursConfig,
    /// The school's time zone (IANA name) for quiet hours and message times.
    pub time_zone: String,
    /// `zh-CN` or `en`.
    pub locale: sanyu_sms::Locale,
    /// Non-critical notices (a `high` or `elevated` case opened or raised, a
    /// follow-up due, a stale case) to one person on one channel within
    /// this many seconds go out as one digest listing the case references,
    /// sent when the window closes. A critical notice is never held,
    /// grouped or delayed. 0 sends every notice on its own, at once.
    pub digest_window_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            channels: ChannelsPerLevel::default(),
            lease_secs: 60,
            takeover_grace_ms: 2000,
            attempts_per_provider: 3,
            backoff_initial_ms: 200,
            backoff_max_ms: 3000,
            recipient_per_hour: 12,
            provider_per_second: 50,
            quiet_hours: QuietHoursConfig::default(),
            time_zone: "Asia/Shanghai".into(),
            locale: sanyu_sms::Locale::ZhCn,
            digest_window_secs: 600,
        }
    }
}

/// Non-critical messages on these channels wait for the end of quiet hours.
/// By default SMS, voice and work IM wait (they buzz a phone; a voice call
/// goes to critical cases only, unless configured otherwise, and critical
/// never waits): an email at night wakes nobody and is read first
/// thing; a text message at 23:00 about an `elevated` case does not help.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuietHoursConfig {
    pub enabled: bool,
    /// `HH:MM` local time.
    pub start: String,
    pub end: String,
    pub channels: Vec<NotifyChannel>,
}

impl Default for QuietHoursConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            start: "22:00".into(),
            end: "07:00".into(),
            channels: vec![NotifyChannel::Sms, NotifyChannel::Voice, NotifyChannel::Im],
        }
    }
}
