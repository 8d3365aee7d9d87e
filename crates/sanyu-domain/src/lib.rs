//! The pure domain of Sanyu: risk levels, roles and scope, cases and the first
//! rule. No I/O lives here, so everything can be tested as plain functions.

/// `FromStr` for a closed set of values: the one of `$values` whose
/// `as_str()` is the input, or a [`ParseError`] naming `$kind` and what was
/// `$expected`.
macro_rules! from_str_by_name {
    ($ty:ty, $values:expr, $kind:literal, $expected:expr) => {
        impl std::str::FromStr for $ty {
            type Err = $crate::ParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $values
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $crate::ParseError {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: $expected,
                    })
            }
        }
    };
}

pub mod access;
pub mod case;
#[cfg(feature = "sea-orm")]
pub mod column;
pub mod duty;
pub mod escalation;
pub mod hotline;
pub mod input;
pub mod level;
pub mod lifecycle;
pub mod policy;
pub mod report;
pub mod zero_report;

pub use access::{Access, CaseWork, Disclosure, Holder, Principal, Role, oversight_action};
pub use case::{CaseStatus, CaseSubject, LadderState, case_reference, student_partition};
pub use escalation::{AfterAck, AfterAckPolicy, EscalationPolicy, Ladder, Rung, StaleAfterDays};
pub use level::RiskLevel;
pub use report::ReportCategory;

/// A value that could not be parsed into a domain type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`; expected one of: {expected}")]
pub struct ParseError {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}
