//! Stream and subject names. Subjects are `sanyu.<area>.<event>[.<school>.<partition>]`;
//! the payload version lives in the proto package, never in the subject.

/// Signals on their way to the rules engine.
pub const INTAKE_STREAM: &str = "INTAKE";
pub const INTAKE_SUBJECTS: &str = "sanyu.intake.>";
/// Case lifecycle events from the rules engine and the crisis team.
pub const CASE_STREAM: &str = "CASE";
pub const CASE_SUBJECTS: &str = "sanyu.case.>";
/// Notification requests and their results.
pub const NOTIFY_STREAM: &str = "NOTIFY";
pub const NOTIFY_SUBJECTS: &str = "sanyu.notify.>";
/// Zero-report submissions.
pub const ZERO_STREAM: &str = "ZERO";
pub const ZERO_SUBJECTS: &str = "sanyu.zero.>";
/// Dead letters: copies of terminated messages and the server's advisories.
pub const DEAD_LETTER_STREAM: &str = "DEADLETTER";
pub const DEAD_LETTER_PREFIX: &str = "sanyu.dlq";

/// Subject of a teacher's warning report.
pub fn report_submitted(school: &str, partition: u32) -> String {
    format!("sanyu.intake.report.{}.{partition}", token(school))
}

/// Subject of a screening result past a cut-off (or with a suicide alert).
pub fn screening_result(school: &str, partition: u32) -> String {
    format!("sanyu.intake.screening.{}.{partition}", token(school))
}

/// Subject of a `ScreeningResultBatch`: results of one school's import past a
/// cut-off, published together (suicide alerts travel alone, per partition).
pub fn screening_batch(school: &str) -> String {
    format!("sanyu.intake.screening_batch.{}", token(school))
}

/// Subject recorded on a screening alert that could not become a signal (the
/// student number is not on the roster): no partition, the school only.
pub fn screening_unmatched(school: &str) -> String {
    format!("sanyu.intake.screening.{}", token(school))
}

/// Subject of an identified student's hotline call.
pub fn hotline_call(school: &str, partition: u32) -> String {
    format!("sanyu.intake.hotline.{}.{partition}", token(school))
}

/// Subject of a unit's zero report.
pub fn zero_report_submitted(school: &str) -> String {
    format!("sanyu.zero.submitted.{}", token(school))
}

pub fn case_event(event: &str, school: &str, partition: u32) -> String {
    format!("sanyu.case.{event}.{}.{partition}", token(school))
}

pub fn notification_requested(school: &str) -> String {
    format!("sanyu.notify.requested.{}", token(school))
}

pub fn notification_result(school: &str) -> String {
    format!("sanyu.notify.result.{}", token(school))
}

/// Subject of a dead-lettered copy of a message from `stream`/`consumer`.
pub fn dead_letter(stream: &str, consumer: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}.{}.{}", token(stream), token(consumer))
}

/// Advisory subjects the dead-letter stream captures (they are sent once, so
/// they must be stored to be seen).
pub const ADVISORY_MAX_DELIVERIES: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>";
pub const ADVISORY_TERMINATED: &str = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>";

/// One subject token for any value, injectively: `[A-Za-z0-9_-]` stay as
/// they are, every other byte of the UTF-8 encoding becomes `%XX` (upper-case
/// hex), and the empty value is `%` alone. The result never holds `.`, `*`,
/// `>`, whitespace or a non-ASCII byte, so it is always exactly one token,
/// and two different values (`一中`, `二中`) never share one. A subject says
/// where a message goes, never whose it is: scope comes from the message body
/// or the database, never from decoding a token.
pub fn token(value: &str) -> String {
    if value.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The longest token [`token`] makes of a value of `bytes` bytes.
pub const fn max_token_len(bytes: usize) -> usize {
    bytes * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_single_tokens_per_value() {
        assert_eq!(
            report_submitted("S.01 *", 3),
            "sanyu.intake.report.S%2E01%20%2A.3"
        );
        assert_eq!(
            screening_result("S.01", 7),
            "sanyu.intake.screening.S%2E01.7"
        );
        assert_eq!(screening_unmatched("S01"), "sanyu.intake.screening.S01");
        assert_eq!(token(""), "%");
        assert_eq!(dead_letter("INTAKE", "rules"), "sanyu.dlq.INTAKE.rules");
    }

    #[test]
    fn tokens_of_different_codes_never_collide() {
        assert_eq!(token("一中"), "%E4%B8%80%E4%B8%AD");
        assert_ne!(token("一中"), token("二中"));
        let codes = [
            "", "_", "%", "S01", "S_01", "S.01", "S 01", "S%2E01", "一中", "二中", "a-b", "a_b",
        ];
        for (i, a) in codes.iter().enumerate() {
            let t = token(a);
            assert!(!t.is_empty());
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_graphic() && !b".*>".contains(&b)),
                "{a:?} -> {t:?}"
            );
            assert!(t.len() <= max_token_len(a.len()).max(1));
            for b in &codes[i + 1..] {
                assert_ne!(t, token(b), "{a:?} and {b:?}");
            }
        }
    }
}
