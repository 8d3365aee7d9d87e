//! What the rules need to know of a signal, whatever its source: the ids it
//! concerns and the codes and levels the rules look at (never text).

use chrono::{DateTime, NaiveTime, Utc};
use sanyu_domain::RiskLevel;
use sanyu_events::{Envelope, Payload, v1};
use sanyu_ruleset::{Signal, Source};
use uuid::Uuid;

use crate::RulesError;

/// Flags of a screening result that are suicide alerts (the catalogue's
/// `suicide_item` and PHQ-A's `suicide_risk`).
pub const SUICIDE_FLAGS: [&str; 2] = ["suicide_item", "suicide_risk"];

/// One signal to decide.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Stable id of the signal: decided once, whatever the redelivery.
    pub signal_id: String,
    pub student_id: Uuid,
    /// The row the signal came from (report, screening result, call record).
    pub source_id: Uuid,
    /// Event kind recorded with the signal on the case.
    pub kind: String,
    /// The level the signal is recorded at on the case.
    pub level: RiskLevel,
    /// The signal as the rules see it.
    pub signal: Signal,
}

fn parse_uuid(field: &'static str, value: &str) -> Result<Uuid, RulesError> {
    Uuid::parse_str(value).map_err(|_| RulesError::Malformed(format!("{field} is not a uuid")))
}

fn time(ts: Option<&prost_types::Timestamp>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .unwrap_or(fallback)
}

/// The signals an envelope carries (none: a kind the rules do not decide).
pub fn of_envelope(envelope: &Envelope) -> Result<Vec<Facts>, RulesError> {
    let occurred = time(envelope.occurred_at.as_ref(), Utc::now());
    match &envelope.payload {
        Some(Payload::ReportSubmitted(report)) => Ok(vec![of_report(
            envelope.event_id.clone(),
            &envelope.kind,
            report,
            occurred,
        )?]),
        // An identified student's hotline call is a signal; unidentified
        // callers never reach INTAKE.
        Some(Payload::HotlineCall(call)) if !call.student_id.is_empty() => Ok(vec![of_hotline(
            envelope.event_id.clone(),
            &envelope.kind,
            call,
            occurred,
        )?]),
        Some(Payload::ScreeningResult(result)) => Ok(vec![of_screening(
            envelope.event_id.clone(),
            result,
            occurred,
        )?]),
        Some(Payload::ScreeningBatch(batch)) => batch
            .results
            .iter()
            .map(|result| {
                if result.signal_id.is_empty() {
                    return Err(RulesError::Malformed(
                        "a screening batch result has no signal_id".into(),
                    ));
                }
                of_screening(result.signal_id.clone(), result, occurred)
            })
            .collect(),
        _ => Ok(Vec::new()),
    }
}

fn of_report(
    signal_id: String,
    kind: &str,
    report: &v1::ReportSubmitted,
    occurred: DateTime<Utc>,
) -> Result<Facts, RulesError> {
    let level = sanyu_events::level_from_proto(report.suggested_level)
        .ok_or_else(|| RulesError::Malformed("suggested_level is unspecified".into()))?;
    Ok(Facts {
        student_id: parse_uuid("student_id", &report.student_id)?,
        source_id: parse_uuid("report_id", &report.report_id)?,
        kind: kind.to_owned(),
        level,
        signal: Signal {
            id: signal_id.clone(),
            source: if report.zero_report {
                Source::ZeroReport
            } else {
                Source::Report
            },
            at: time(report.observed_at.as_ref(), occurred).min(occurred),
            level: Some(level),
            instrument: None,
            band: None,
            flags: Vec::new(),
            category: (!report.category.is_empty()).then(|| report.category.clone()),
        },
        signal_id,
    })
}

fn of_hotline(
    signal_id: String,
    kind: &str,
    call: &v1::HotlineCallLogged,
    occurred: DateTime<Utc>,
) -> Result<Facts, RulesError> {
    let level = sanyu_events::level_from_proto(call.risk_level)
        .ok_or_else(|| RulesError::Malformed("risk_level is unspecified".into()))?;
    Ok(Facts {
        student_id: parse_uuid("student_id", &call.student_id)?,
        source_id: parse_uuid("record_id", &call.record_id)?,
        kind: kind.to_owned(),
        level,
        signal: Signal {
            id: signal_id.clone(),
            source: Source::Hotline,
            at: time(call.started_at.as_ref(), occurred).min(occurred),
            level: Some(level),
            instrument: None,
            band: None,
            flags: Vec::new(),
            category: None,
        },
        signal_id,
    })
}

fn of_screening(
    signal_id: String,
    result: &v1::ScreeningResultRecorded,
    occurred: DateTime<Utc>,
) -> Result<Facts, RulesError> {
    let suicide_alert = result
        .flags
        .iter()
        .any(|f| SUICIDE_FLAGS.contains(&f.as_str()));
    let suggested = sanyu_events::level_from_proto(result.suggested_level);
    let level = match (suicide_alert, suggested) {
        (true, _) => RiskLevel::Critical,
        (false, Some(level)) => level,
        (false, None) => {
            return Err(RulesError::Malformed(
                "suggested_level is unspecified and no suicide flag is set".into(),
            ));
        }
    };
    let administered = result
        .administered_at
        .as_ref()
        .map(|t| time(Some(t), occurred))
        .map(|t| t.date_naive().and_time(NaiveTime::MIN).and_utc());
    Ok(Facts {
        student_id: parse_uuid("student_id", &result.student_id)?,
        source_id: parse_uuid("result_id", &result.result_id)?,
        kind: sanyu_events::kind_of(&Payload::ScreeningResult(result.clone())).to_owned(),
        level,
        signal: Signal {
            id: signal_id.clone(),
            source: Source::Screening,
            at: administered.unwrap_or(occurred).min(occurred),
            level: suggested,
            instrument: Some(result.instrument.clone()),
            band: (!result.band.is_empty()).then(|| result.band.clone()),
            flags: result.flags.clone(),
            category: None,
        },
        signal_id,
    })
}
