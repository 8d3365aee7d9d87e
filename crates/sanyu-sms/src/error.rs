//! How a send can fail, classified for the caller's retry decision.
//!
//! The notifier acts on the class, not on the provider's code:
//!
//! * [`SmsError::Transient`] — trying the *same* message again later may work:
//!   HTTP 5xx, timeouts, connection failures, throttling (per-number and
//!   per-account rate limits, daily quotas), and any provider code this crate
//!   does not know. Unknown codes are transient on purpose: a missed crisis
//!   notification costs more than a few bounded retries, and the notifier's
//!   retry budget turns a never-ending "transient" into a dead letter anyway.
//! * [`SmsError::Permanent`] — this provider will not deliver this message
//!   until a person changes something: invalid or blocked number, template or
//!   SMS signature (签名) not approved or rejected, content rejected,
//!   authentication/permission failure (wrong key, bad signature, clock skew
//!   past the provider's window), account unavailable (insufficient balance,
//!   service suspended, product not subscribed), or a malformed request.
//!   The notifier should stop retrying and fall back to another channel.
//!
//! Insufficient balance is *permanent* by this definition: retrying in seconds
//! or minutes cannot top up the account, and the fallback channel is what
//! reaches the counsellor in time.

use std::fmt;

/// Why a transient failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientKind {
    /// HTTP 5xx or the provider's own "system error" codes.
    ServerError,
    /// Our request timed out (connect or overall).
    Timeout,
    /// The connection could not be made or broke.
    Connection,
    /// A rate limit or quota: per number, per account, per day.
    Throttled,
    /// A response we could not understand (e.g. a 2xx without the fields we need).
    UnexpectedResponse,
    /// A provider code this crate does not know (see the module docs).
    Unclassified,
}

/// Why a permanent failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermanentKind {
    /// The phone number is malformed, unassigned or not supported.
    InvalidNumber,
    /// The recipient opted out or is on a carrier/provider block list.
    RecipientBlocked,
    /// The template is not approved, does not exist, or the parameters do not match it.
    TemplateRejected,
    /// The SMS signature (签名, `SignName`) is not approved or not usable.
    SignNameRejected,
    /// The content was refused (sensitive words, URL in a variable, too long).
    ContentRejected,
    /// Our credentials or our request signature were refused, or permission is missing.
    AuthFailure,
    /// The account cannot send: insufficient balance, suspended, not subscribed.
    AccountUnavailable,
    /// The request itself is wrong (missing template configuration, bad parameter).
    BadRequest,
}

/// A failed send. `code` is the provider's code (or an HTTP status / our own
/// snake_case code where the provider gave none); `reason` is the provider's
/// message. Neither contains message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    #[error("{provider}: transient failure ({kind:?}, code {code}): {reason}")]
    Transient {
        provider: &'static str,
        kind: TransientKind,
        code: String,
        reason: String,
    },
    #[error("{provider}: permanent failure ({kind:?}, code {code}): {reason}")]
    Permanent {
        provider: &'static str,
        kind: PermanentKind,
        code: String,
        reason: String,
    },
}

impl SmsError {
    pub fn transient(
        provider: &'static str,
        kind: TransientKind,
        code: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Transient {
            provider,
            kind,
            code: code.into(),
            reason: reason.into(),
        }
    }

    pub fn permanent(
        provider: &'static str,
        kind: PermanentKind,
        code: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Permanent {
            provider,
            kind,
            code: code.into(),
            reason: reason.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent { .. })
    }

    pub fn provider(&self) -> &'static str {
        match self {
            Self::Transient { provider, .. } | Self::Permanent { provider, .. } => provider,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::Transient { code, .. } | Self::Permanent { code, .. } => code,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Transient { reason, .. } | Self::Permanent { reason, .. } => reason,
        }
    }

    pub fn transient_kind(&self) -> Option<TransientKind> {
        match self {
            Self::Transient { kind, .. } => Some(*kind),
            Self::Permanent { .. } => None,
        }
    }

    pub fn permanent_kind(&self) -> Option<PermanentKind> {
        match self {
            Self::Permanent { kind, .. } => Some(*kind),
            Self::Transient { .. } => None,
        }
    }

    /// Classifies a transport error from reqwest (no HTTP response at all).
    pub(crate) fn from_transport(provider: &'static str, err: &reqwest::Error) -> Self {
        // The reqwest error's Display may contain the URL; our URLs carry no
        // message content (webhook and Tencent put everything in the body,
        // Alibaba Cloud too: see `aliyun`), so it is safe to keep as reason.
        let reason = err.to_string();
        if err.is_timeout() {
            Self::transient(provider, TransientKind::Timeout, "timeout", reason)
        } else if err.is_connect() {
            Self::transient(provider, TransientKind::Connection, "connect", reason)
        } else {
            Self::transient(provider, TransientKind::Connection, "transport", reason)
        }
    }

    /// Classifies a bare HTTP status when the body told us nothing better.
    pub(crate) fn from_status(provider: &'static str, status: u16, reason: String) -> Self {
        let code = format!("http_{status}");
        match status {
            408 => Self::transient(provider, TransientKind::Timeout, code, reason),
            429 => Self::transient(provider, TransientKind::Throttled, code, reason),
            500..=599 => Self::transient(provider, TransientKind::ServerError, code, reason),
            401 | 403 => Self::permanent(provider, PermanentKind::AuthFailure, code, reason),
            400..=499 => Self::permanent(provider, PermanentKind::BadRequest, code, reason),
            _ => Self::transient(provider, TransientKind::UnexpectedResponse, code, reason),
        }
    }
}

/// A configuration that cannot be turned into a provider.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {field} URL: {reason}")]
    InvalidUrl { field: &'static str, reason: String },
    #[error(
        "approved template for {audience}/{locale} names parameter `{param}`, which that audience does not have (allowed: {allowed})"
    )]
    UnknownTemplateParam {
        audience: String,
        locale: String,
        param: String,
        allowed: String,
    },
    #[error("approved template for {audience}/{locale} is listed twice")]
    DuplicateTemplate { audience: String, locale: String },
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("invalid {field}: {reason}")]
    InvalidSetting {
        field: &'static str,
        reason: &'static str,
    },
}

/// A template could not be rendered, or its output failed the privacy check.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template engine: {0}")]
    Engine(#[from] minijinja::Error),
    /// A field did not have the shape it must have (e.g. a case reference that
    /// is not an opaque `C-…` code). The value itself is not repeated here.
    #[error("field `{field}` is not valid: {rule}")]
    InvalidField {
        field: &'static str,
        rule: &'static str,
    },
    /// The rendered text contains a word that must never reach this audience.
    #[error("rendered {audience} {channel} contains a denied word (`{word}`); nothing was sent")]
    DeniedWord {
        audience: &'static str,
        channel: &'static str,
        word: &'static str,
    },
}

/// A delivery receipt (or its signature) could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt body is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("receipt signature header is missing or malformed")]
    MalformedSignature,
    #[error("receipt signature does not match")]
    BadSignature,
    #[error("receipt timestamp is outside the accepted window")]
    StaleTimestamp,
    #[error("receipt status `{0}` is not known")]
    UnknownStatus(String),
}

/// Masks all but the last four characters (for phone numbers in `Debug`).
pub(crate) struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        let keep = chars.len().saturating_sub(4);
        for (i, c) in chars.iter().enumerate() {
            if i < keep && c.is_ascii_digit() {
                f.write_str("*")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn http_statuses_are_classified_by_retry_value() {
        assert_eq!(
            SmsError::from_status("t", 503, String::new()).transient_kind(),
            Some(TransientKind::ServerError)
        );
        assert_eq!(
            SmsError::from_status("t", 429, String::new()).transient_kind(),
            Some(TransientKind::Throttled)
        );
        assert_eq!(
            SmsError::from_status("t", 401, String::new()).permanent_kind(),
            Some(PermanentKind::AuthFailure)
        );
        assert_eq!(
            SmsError::from_status("t", 422, String::new()).permanent_kind(),
            Some(PermanentKind::BadRequest)
        );
    }

    #[test]
    fn masking_keeps_only_the_last_four_digits() {
        assert_eq!(Masked("+8613800138000").to_string(), "+*********8000");
    }
}
