//! The input rules of `sanyu_domain::input` as API errors: 422
//! `validation_failed` with the path of the field.
//!
//! Every JSON body goes through [`json`] in the extractor (no control
//! characters, a length bound on every string), every query string through
//! [`crate::extract::Query`]; handlers add the tighter bound of a field and
//! the plausible-date window with [`line`], [`text`], [`time`] and [`date`].

use chrono::{DateTime, NaiveDate, Utc};
use sanyu_domain::input::{self, Shape};
use serde_json::Value;

use crate::error::ApiError;

pub use sanyu_domain::input::{MAX_CODE, MAX_LINE, MAX_NAME, MAX_NARRATIVE, MAX_TEXT};

/// Fields of free text (by their name in any body): tabs and line breaks
/// allowed, up to [`MAX_TEXT`] characters. Every other string is one line of
/// at most [`MAX_LINE`] characters.
const FREE_TEXT: &[&str] = &[
    "narrative",
    "text",
    "reason",
    "summary",
    "outcome",
    "referral_advice",
    // A referral's return-to-school assessment (复学评估).
    "result",
];

/// Whether a body field of this name is free text.
pub fn is_free_text(field: &str) -> bool {
    FREE_TEXT.contains(&field)
}

fn refuse(field: &str, e: input::TextError) -> ApiError {
    ApiError::validation(field, e.to_string())
}

/// One line of at most `max` characters.
pub fn line(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    input::line(value, max).map_err(|e| refuse(field, e))
}

/// Free text of at most `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    input::text(value, max).map_err(|e| refuse(field, e))
}

/// A time in the plausible window around `now`.
pub fn time(field: &str, t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ApiError> {
    input::time(t, now).map_err(|e| ApiError::validation(field, e.to_string()))
}

/// A date in the plausible window around `now`.
pub fn date(field: &str, d: NaiveDate, now: DateTime<Utc>) -> Result<(), ApiError> {
    input::date(d, now).map_err(|e| ApiError::validation(field, e.to_string()))
}

/// A page size: `default` when absent, else 1 to `max` (never clamped
/// silently: a caller asking for more learns the bound).
pub fn limit(value: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation("limit", format!("1 to {max}"))),
    }
}

/// Every string of a JSON body: no control characters (free-text fields may
/// hold tabs and line breaks) and a length bound. The error names the path
/// of the field as the deserializer does (`incidents[0].narrative`).
pub fn json(value: &Value) -> Result<(), ApiError> {
    walk(value, &mut String::new(), None)
}

fn walk(value: &Value, path: &mut String, key: Option<&str>) -> Result<(), ApiError> {
    match value {
        Value::String(s) => {
            let (shape, max) = match key {
                Some(k) if is_free_text(k) => (Shape::Text, MAX_TEXT),
                _ => (Shape::Line, MAX_LINE),
            };
            input::check(s, shape, max).map_err(|e| refuse(path, e))
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, key)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(v, path, Some(k))?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(r: Result<(), ApiError>) -> String {
        match r {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_nul_anywhere_in_a_body_is_refused_with_its_path() {
        assert_eq!(
            field_of(json(&json!({"student_no": "S\u{0}1"}))),
            "student_no"
        );
        assert_eq!(
            field_of(json(
                &json!({"incidents": [{"narrative": "ok"}, {"student_no": "\u{0}"}]})
            )),
            "incidents[1].student_no"
        );
        assert_eq!(
            field_of(json(&json!({"return_assessment": {"result": "a\u{1}"}}))),
            "return_assessment.result"
        );
    }

    #[test]
    fn free_text_may_hold_line_breaks_and_names_may_not() {
        assert!(json(&json!({"narrative": "line one\nline two\ttab"})).is_ok());
        assert_eq!(field_of(json(&json!({"counsellor": "a\nb"}))), "counsellor");
    }

    #[test]
    fn every_string_has_a_length_bound() {
        assert_eq!(
            field_of(json(&json!({"institution": "x".repeat(MAX_LINE + 1)}))),
            "institution"
        );
        assert!(json(&json!({"text": "x".repeat(MAX_TEXT)})).is_ok());
        assert_eq!(
            field_of(json(&json!({"text": "x".repeat(MAX_TEXT + 1)}))),
            "text"
        );
    }
}
