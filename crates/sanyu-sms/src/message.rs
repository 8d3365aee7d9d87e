//! What is sent: a phone number, rendered content and our idempotency key.

use std::fmt;

use crate::error::Masked;
use crate::templates::RenderedSms;

/// A mobile number in E.164 form (`+8613800138000`).
///
/// [`PhoneNumber::parse`] accepts E.164 (`+…`), a mainland-China 11-digit
/// number (`13800138000`, also with a `86`/`0086` prefix), and ignores spaces
/// and dashes. `Debug` and `Display` mask all but the last four digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
}

/// The text given to [`PhoneNumber::parse`] is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid mobile number (E.164 or mainland-China 11 digits)")]
pub struct InvalidPhoneNumber;

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, InvalidPhoneNumber> {
        let compact: String = input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let (plus, digits) = match compact.strip_prefix('+') {
            Some(rest) => (true, rest.to_owned()),
            None => (false, compact),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidPhoneNumber);
        }
        let e164_digits = if plus {
            digits
        } else if let Some(rest) = digits.strip_prefix("0086") {
            format!("86{rest}")
        } else if digits.len() == 13 && digits.starts_with("861") {
            digits
        } else if digits.len() == 11 && digits.starts_with('1') {
            format!("86{digits}")
        } else {
            return Err(InvalidPhoneNumber);
        };
        // E.164: at most 15 digits, country code never starts with 0.
        if e164_digits.len() < 8 || e164_digits.len() > 15 || e164_digits.starts_with('0') {
            return Err(InvalidPhoneNumber);
        }
        if let Some(national) = e164_digits.strip_prefix("86") {
            // Mainland mobile numbers: 11 digits starting with 1.
            if national.len() != 11 || !national.starts_with('1') {
                return Err(InvalidPhoneNumber);
            }
        }
        Ok(Self {
            e164: format!("+{e164_digits}"),
        })
    }

    /// `+8613800138000`
    pub fn e164(&self) -> &str {
        &self.e164
    }

    pub fn is_mainland_china(&self) -> bool {
        self.e164.starts_with("+86")
    }

    /// The national number for mainland numbers (`13800138000`), otherwise
    /// the E.164 digits without `+` (`85212345678`): the form Alibaba Cloud's
    /// `PhoneNumbers` expects.
    pub fn without_plus_or_86(&self) -> &str {
        let digits = &self.e164[1..];
        if self.is_mainland_china() {
            &digits[2..]
        } else {
            digits
        }
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", Masked(&self.e164))
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Masked(&self.e164))
    }
}

/// One SMS to one number.
#[derive(Debug, Clone)]
pub struct SmsMessage {
    pub phone: PhoneNumber,
    /// The rendered text and its named parameters (see [`crate::render_sms`]).
    /// Providers in mainland China send an approved template id with the
    /// parameters; the webhook sends the text.
    pub content: RenderedSms,
    /// Our notification key. Sent as `Idempotency-Key` (webhook), `OutId`
    /// (Alibaba Cloud, echoed in its delivery report) and `SessionContext`
    /// (Tencent Cloud, echoed in its send response).
    pub idempotency_key: String,
}

/// The provider took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsAccepted {
    pub provider: &'static str,
    /// Webhook `id`, Alibaba Cloud `BizId`, Tencent Cloud `SerialNo`: the key
    /// that delivery receipts carry.
    pub provider_message_id: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mainland_numbers_in_every_common_spelling_become_e164() {
        for input in [
            "13800138000",
            "138 0013 8000",
            "+8613800138000",
            "8613800138000",
            "008613800138000",
            "138-0013-8000",
        ] {
            let phone = PhoneNumber::parse(input).unwrap();
            assert_eq!(phone.e164(), "+8613800138000", "{input}");
            assert_eq!(phone.without_plus_or_86(), "13800138000");
        }
    }

    #[test]
    fn international_numbers_keep_their_country_code() {
        let phone = PhoneNumber::parse("+85212345678").unwrap();
        assert_eq!(phone.e164(), "+85212345678");
        assert_eq!(phone.without_plus_or_86(), "85212345678");
        assert!(!phone.is_mainland_china());
    }

    #[test]
    fn things_that_are_not_mobile_numbers_are_rejected() {
        for input in [
            "",
            "12345",
            "+86123",
            "2380013800",
            "+8623800138000",
            "abc",
            "+0123456789",
            "+1234567890123456",
        ] {
            assert_eq!(
                PhoneNumber::parse(input),
                Err(InvalidPhoneNumber),
                "{input}"
            );
        }
    }

    #[test]
    fn a_phone_number_prints_masked() {
        let phone = PhoneNumber::parse("13800138000").unwrap();
        assert_eq!(format!("{phone:?}"), "PhoneNumber(+*********8000)");
        assert!(!phone.to_string().contains("138001"));
    }
}
