//! What text and dates Sanyu accepts from outside, in one place: the API's
//! JSON bodies, query strings and uploads, and the roster and hotline CSV
//! files all apply these rules before anything is written.
//!
//! - No control characters: PostgreSQL refuses NUL in text, and nothing a
//!   person types needs the others. Free text (narratives, notes, reasons)
//!   may hold tabs and line breaks; a name, a code or an id may not.
//! - Every field has a length bound (characters, not bytes).
//! - Dates lie in a plausible window around now: nothing recorded about a
//!   student happened more than [`PAST_YEARS`] years ago, and nothing is
//!   planned more than [`FUTURE_YEARS`] years ahead.

use chrono::{DateTime, Months, NaiveDate, Utc};

/// Student numbers, class, grade and school codes, staff numbers.
pub const MAX_CODE: usize = 64;
/// Names of people, schools, classes, relations; a hotline counsellor.
pub const MAX_NAME: usize = 128;
/// External ids (a hotline's call id), emails, institutions, short labels.
pub const MAX_LINE: usize = 256;
/// A report's narrative, a hotline call's summary.
pub const MAX_NARRATIVE: usize = 8_000;
/// Notes, reasons and outcomes on a case.
pub const MAX_TEXT: usize = 20_000;

/// How far back a date may lie (a student's school career and then some).
pub const PAST_YEARS: u32 = 10;
/// How far ahead a planned date (a follow-up) may lie.
pub const FUTURE_YEARS: u32 = 2;

/// Why a piece of text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("contains a control character (U+{0:04X})")]
    ControlCharacter(u32),
    #[error("at most {max} characters")]
    TooLong { max: usize },
}

/// Whether a field is one line (names, codes, ids) or free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Line,
    /// Tabs and line breaks allowed.
    Text,
}

/// Check `value` for control characters and its length.
pub fn check(value: &str, shape: Shape, max: usize) -> Result<(), TextError> {
    if let Some(c) = value.chars().find(|&c| refused(c, shape)) {
        return Err(TextError::ControlCharacter(u32::from(c)));
    }
    // Count characters only as far as needed to know.
    if value.len() > max && value.chars().nth(max).is_some() {
        return Err(TextError::TooLong { max });
    }
    Ok(())
}

/// One line of at most `max` characters.
pub fn line(value: &str, max: usize) -> Result<(), TextError> {
    check(value, Shape::Line, max)
}

/// Free text of at most `max` characters.
pub fn text(value: &str, max: usize) -> Result<(), TextError> {
    check(value, Shape::Text, max)
}

fn refused(c: char, shape: Shape) -> bool {
    match shape {
        Shape::Text if matches!(c, '\t' | '\n' | '\r') => false,
        // C0, DEL and C1 controls; the line and paragraph separators too.
        _ => c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'),
    }
}

/// School codes: they name the school in every subject of its messages.
pub const MAX_SCHOOL_CODE: usize = 32;

/// Why a school code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchoolCodeError {
    #[error("a school code is required")]
    Empty,
    #[error("at most {max} characters")]
    TooLong { max: usize },
    #[error("may hold only letters, digits, `-` and `_` (found U+{0:04X}); e.g. `S001` or `一中`")]
    Character(u32),
}

/// A school code: one word of letters and digits of any script, `-` and
/// `_`, at most [`MAX_SCHOOL_CODE`] characters. No spaces, dots, wildcards,
/// control or formatting characters (a zero-width space would make two codes
/// that look the same). Subjects carry any code injectively
/// (`sanyu_events::subjects::token`); this keeps codes what people can read
/// and type, and the subjects short.
pub fn school_code(value: &str) -> Result<(), SchoolCodeError> {
    if value.is_empty() {
        return Err(SchoolCodeError::Empty);
    }
    if let Some(c) = value
        .chars()
        .find(|&c| !(c.is_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(SchoolCodeError::Character(u32::from(c)));
    }
    if value.chars().nth(MAX_SCHOOL_CODE).is_some() {
        return Err(SchoolCodeError::TooLong {
            max: MAX_SCHOOL_CODE,
        });
    }
    Ok(())
}

/// Why a date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("is more than {PAST_YEARS} years ago")]
    TooEarly,
    #[error("is more than {FUTURE_YEARS} years ahead")]
    TooLate,
}

/// The plausible window around `now`: `[now − PAST_YEARS, now + FUTURE_YEARS]`.
pub fn window(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let earliest = now
        .checked_sub_months(Months::new(PAST_YEARS * 12))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let latest = now
        .checked_add_months(Months::new(FUTURE_YEARS * 12))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (earliest, latest)
}

/// A time inside the plausible window around `now`.
pub fn time(t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), DateError> {
    let (earliest, latest) = window(now);
    if t < earliest {
        Err(DateError::TooEarly)
    } else if t > latest {
        Err(DateError::TooLate)
    } else {
        Ok(())
    }
}

/// A calendar date inside the plausible window around `now`.
pub fn date(d: NaiveDate, now: DateTime<Utc>) -> Result<(), DateError> {
    let (earliest, latest) = window(now);
    if d < earliest.date_naive() {
        Err(DateError::TooEarly)
    } else if d > latest.date_naive() {
        Err(DateError::TooLate)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_other_controls_are_refused_in_a_line() {
        assert_eq!(
            line("S\u{0}1", MAX_CODE),
            Err(TextError::ControlCharacter(0))
        );
        assert!(line("a\nb", MAX_CODE).is_err());
        assert!(line("a\u{7f}b", MAX_CODE).is_err());
        assert!(line("a\u{85}b", MAX_CODE).is_err());
        assert!(line("张三 O'Neil-Smith", MAX_NAME).is_ok());
    }

    #[test]
    fn free_text_keeps_line_breaks_and_tabs_but_not_nul() {
        assert!(text("first\r\nsecond\tthird", MAX_TEXT).is_ok());
        assert!(text("no\u{0}nul", MAX_TEXT).is_err());
        assert!(text("no\u{1b}[31mescape", MAX_TEXT).is_err());
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert!(line(&"学".repeat(MAX_NAME), MAX_NAME).is_ok());
        assert_eq!(
            line(&"学".repeat(MAX_NAME + 1), MAX_NAME),
            Err(TextError::TooLong { max: MAX_NAME })
        );
        assert!(line(&"x".repeat(300_000), MAX_NAME).is_err());
    }

    #[test]
    fn dates_lie_in_a_plausible_window_around_now() {
        let now = Utc::now();
        assert_eq!(
            date(NaiveDate::from_ymd_opt(1, 1, 1).expect("date"), now),
            Err(DateError::TooEarly)
        );
        assert_eq!(
            date(NaiveDate::from_ymd_opt(9999, 12, 31).expect("date"), now),
            Err(DateError::TooLate)
        );
        assert!(date(now.date_naive(), now).is_ok());
        assert!(time(now - chrono::Duration::days(365 * 9), now).is_ok());
        assert_eq!(
            time(now - chrono::Duration::days(365 * 11), now),
            Err(DateError::TooEarly)
        );
        assert_eq!(
            time(now + chrono::Duration::days(365 * 3), now),
            Err(DateError::TooLate)
        );
        assert_eq!(
            time(DateTime::<Utc>::MIN_UTC, now),
            Err(DateError::TooEarly)
        );
    }

    #[test]
    fn school_codes_are_one_word_of_letters_and_digits() {
        for ok in ["S001", "一中", "二中", "北京-101_中学", "Ecole2"] {
            assert_eq!(school_code(ok), Ok(()), "{ok}");
        }
        assert_eq!(school_code(""), Err(SchoolCodeError::Empty));
        assert_eq!(school_code("一 中"), Err(SchoolCodeError::Character(0x20)));
        assert_eq!(school_code("S.01"), Err(SchoolCodeError::Character(0x2E)));
        assert_eq!(school_code("S*"), Err(SchoolCodeError::Character(0x2A)));
        assert_eq!(
            school_code("一\u{200B}中"),
            Err(SchoolCodeError::Character(0x200B))
        );
        assert_eq!(school_code("S\u{0}"), Err(SchoolCodeError::Character(0)));
        assert_eq!(
            school_code(&"中".repeat(33)),
            Err(SchoolCodeError::TooLong { max: 32 })
        );
        assert_eq!(school_code(&"中".repeat(32)), Ok(()));
    }
}
