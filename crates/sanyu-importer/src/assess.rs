//! One row to what it becomes: its result, its errors, its signal or dead
//! letter, and the mark on a result worse than the student's previous one.

use super::*;

/// A signal of one row, before it is written: alone (a suicide alert, at
/// once) or in the batch's `ScreeningResultBatch`.
pub(crate) struct PendingSignal {
    pub(crate) event_id: String,
    pub(crate) partition: u32,
    pub(crate) result: v1::ScreeningResultRecorded,
    pub(crate) alone: bool,
}

/// What one row becomes.
pub(crate) struct RowRecord {
    pub(crate) result: NewResult,
    pub(crate) errors: Vec<NewRowError>,
    pub(crate) event: Option<PendingSignal>,
    pub(crate) dead_letter: Option<NewDeadLetter>,
    pub(crate) accepted: bool,
    pub(crate) alert: bool,
}

pub(crate) fn flag_names(flags: &[sanyu_screening::Flag]) -> Vec<String> {
    flags.iter().map(|f| f.as_str().to_owned()).collect()
}

/// Flag added to a result whose total is worse than the student's previous
/// screening on the same instrument by the configured margin.
pub const WORSE_THAN_PREVIOUS: &str = "worse_than_previous";

/// The margin in points for `instrument`: `percent` of its total range, at least 1.
pub fn worse_margin(instrument: &Instrument, percent: u32) -> i32 {
    let (min, max) = instrument.total_range();
    let width = u64::from(max.saturating_sub(min));
    let points = (width * u64::from(percent)).div_ceil(100).max(1);
    i32::try_from(points).unwrap_or(i32::MAX)
}

/// Mark the batch's results that are worse than the student's previous
/// screening (an earlier administration date) on the same instrument.
pub(crate) async fn mark_worse_than_previous(
    txn: &impl sanyu_store::Conn,
    ctx: &JobContext,
    results: &mut [NewResult],
    percent: u32,
) -> Result<(), ImportError> {
    let students: Vec<Uuid> = results
        .iter()
        .filter(|r| r.total.is_some())
        .filter_map(|r| r.student_id)
        .collect();
    if students.is_empty() || percent == 0 {
        return Ok(());
    }
    let previous =
        store::previous_totals(txn, ctx.instrument.id(), ctx.administered_on, &students).await?;
    let margin = worse_margin(ctx.instrument, percent);
    for r in results.iter_mut() {
        let (Some(student), Some(total)) = (r.student_id, r.total) else {
            continue;
        };
        if previous
            .get(&student)
            .is_some_and(|prev| total - prev >= margin)
        {
            let mut flags: Vec<String> = serde_json::from_str(&r.flags).unwrap_or_default();
            flags.push(WORSE_THAN_PREVIOUS.to_owned());
            r.flags = json(&flags);
        }
    }
    Ok(())
}

pub(crate) fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Decide what one row becomes: its result, its errors, and its signal (a
/// student on the roster) or dead letter (a suicide alert for a student
/// number that is not).
pub(crate) fn assess(
    ctx: &JobContext,
    item: Item,
    student: Option<&student::Model>,
) -> Option<RowRecord> {
    let result_id = Uuid::now_v7();
    let (row, student_no, outcome) = match item {
        Item::Row {
            row,
            student_no,
            outcome,
        } => (row, student_no, outcome),
        Item::Unreadable { row, message } => {
            return Some(RowRecord {
                result: NewResult {
                    id: result_id,
                    row_number: row,
                    student_id: None,
                    student_no: String::new(),
                    instrument: ctx.instrument.id().to_owned(),
                    administered_on: ctx.administered_on,
                    outcome: outcome::REJECT,
                    reason: Some(message.clone()),
                    total: None,
                    band: None,
                    subscales: None,
                    flags: "[]".to_owned(),
                    level: None,
                    event_id: None,
                },
                errors: vec![NewRowError {
                    row_number: row,
                    seq: 0,
                    column: "(row)".to_owned(),
                    reason: message,
                }],
                event: None,
                dead_letter: None,
                accepted: false,
                alert: false,
            });
        }
        Item::Fatal(_) => return None,
    };
    let alert = outcome.has_suicide_alert();
    let level =
        sanyu_screening::suggested_level_for(&outcome).and_then(|l| l.parse::<RiskLevel>().ok());
    let mut errors: Vec<(String, String)> = match &outcome {
        RowOutcome::Scored(_) => Vec::new(),
        RowOutcome::Rejected { errors, .. } => errors
            .iter()
            .map(|e| (e.column.clone(), e.reason.to_string()))
            .collect(),
    };
    if student.is_none() && !student_no.is_empty() {
        errors.push(("student_no".to_owned(), UNKNOWN_STUDENT.to_owned()));
    }
    let accepted = errors.is_empty();
    let (total, band, subscales, flags) = match (&outcome, accepted) {
        (RowOutcome::Scored(r), true) => (
            i32::try_from(r.total).ok(),
            r.band.clone(),
            Some(json(&r.subscales)),
            flag_names(&r.flags),
        ),
        // A rejected row keeps only its suicide alerts.
        _ => (None, None, None, flag_names(&outcome.suicide_alerts())),
    };
    let reason = (!accepted).then(|| {
        errors
            .iter()
            .map(|(c, r)| format!("{c}: {r}"))
            .collect::<Vec<_>>()
            .join("; ")
    });
    // A signal when past a cut-off (scored) or on any suicide alert (even rejected).
    let signal_level = match (student, level) {
        (Some(_), Some(level)) if accepted || alert => Some(level),
        _ => None,
    };
    let event = match (student, signal_level) {
        (Some(student), Some(level)) => Some(signal(
            ctx,
            student,
            result_id,
            level,
            band.clone(),
            flags.clone(),
            !accepted,
            alert,
        )),
        _ => None,
    };
    let dead_letter = (alert && student.is_none()).then(|| NewDeadLetter {
        source_key: format!("screening:{}:{row}", ctx.job_id),
        stream: DEAD_LETTER_STREAM.to_owned(),
        consumer: DEAD_LETTER_CONSUMER.to_owned(),
        stream_seq: None,
        subject: Some(subjects::screening_unmatched(&ctx.school.code)),
        event_id: None,
        reason: format!(
            "screening import {} row {row}: suicide alert for a student number that is not on \
             the roster; identify the student now (row {row} of GET /v1/screening-imports/{}/results)",
            ctx.job_id, ctx.job_id
        ),
        deliveries: None,
        school_id: Some(ctx.school.id),
    });
    Some(RowRecord {
        result: NewResult {
            id: result_id,
            row_number: row,
            student_id: student.map(|s| s.id),
            student_no,
            instrument: ctx.instrument.id().to_owned(),
            administered_on: ctx.administered_on,
            outcome: if accepted {
                outcome::OK
            } else {
                outcome::REJECT
            },
            reason,
            total,
            band,
            subscales,
            flags: json(&flags),
            level: level.map(|l| l.as_str().to_owned()),
            event_id: event.as_ref().map(|e| e.event_id.clone()),
        },
        errors: errors
            .into_iter()
            .enumerate()
            .map(|(seq, (column, reason))| NewRowError {
                row_number: row,
                seq: i32::try_from(seq).unwrap_or(i32::MAX),
                column,
                reason,
            })
            .collect(),
        event,
        dead_letter,
        accepted,
        alert,
    })
}
