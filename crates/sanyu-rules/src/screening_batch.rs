//! Batches of screening results (`ScreeningResultBatch`): a large import
//! publishes the results past a cut-off together, one durable publish per
//! batch, and the rules engine decides every result of a batch exactly once.
//!
//! Kept apart from the per-signal path on purpose: it only unpacks the batch
//! and calls the same per-signal decision ([`decide_signal_in`]) for each
//! result, inside one transaction that also holds
//!
//! * the processed record of the batch message itself (a redelivered batch
//!   decides nothing), and
//! * one processed record per result, keyed by the result's `signal_id` — the
//!   same key a result travelling alone is recorded under (its envelope's
//!   event id) — so a signal that arrives twice, in two batches (a re-run or
//!   overlapping import) or once alone and once in a batch, is decided once.
//!
//! A malformed result (no `signal_id`, no level, a bad uuid) rejects the
//! whole batch before anything is written; the importer never produces one.

use std::collections::HashSet;

use sanyu_domain::{CaseStatus, Decision};
use sanyu_events::{Envelope, Payload, v1};
use sanyu_store::entities::{case, student};
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use sanyu_store::{begin_write, processed};
use uuid::Uuid;

use crate::{CONSUMER, Decided, RulesEngine, RulesError, Signal, decide_signal_in};

/// What one batch came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchDecided {
    /// Results that opened, raised or attached to a case.
    pub acted: usize,
    /// Results decided with no action.
    pub no_action: usize,
    /// Results whose signal was already decided (in another batch or alone).
    pub duplicates: usize,
}

impl RulesEngine {
    /// Decide every result of a batch once, in one transaction.
    pub(crate) async fn decide_screening_batch(
        &self,
        envelope: &Envelope,
        batch: &v1::ScreeningResultBatch,
    ) -> Result<Decided, RulesError> {
        let mut signals = Vec::with_capacity(batch.results.len());
        for result in &batch.results {
            if result.signal_id.is_empty() {
                return Err(RulesError::Malformed(
                    "a batched screening result has no signal_id".into(),
                ));
            }
            signals.push((
                single_envelope(envelope, result),
                Signal::of_screening(result)?,
            ));
        }
        let txn = begin_write(&self.db).await?;
        if !processed::record(&*txn, CONSUMER, &envelope.event_id).await? {
            txn.rollback().await?;
            return Ok(Decided::Duplicate);
        }
        // Most results of a mass screening concern students without a case
        // whose level opens none (`watch`): the same decision the per-signal
        // path would reach, taken here without its three lookups per signal.
        // Students with an open case, and any result that may act, take the
        // per-signal path.
        let students: Vec<Uuid> = signals.iter().map(|(_, f)| f.student_id).collect();
        let known: HashSet<Uuid> = student::Entity::find()
            .select_only()
            .column(student::Column::Id)
            .filter(student::Column::Id.is_in(students.iter().copied()))
            .into_tuple()
            .all(&*txn)
            .await?
            .into_iter()
            .collect();
        let mut with_case: HashSet<Uuid> = case::Entity::find()
            .select_only()
            .column(case::Column::StudentId)
            .filter(case::Column::StudentId.is_in(students))
            .filter(case::Column::Status.ne(CaseStatus::Closed.as_str()))
            .into_tuple()
            .all(&*txn)
            .await?
            .into_iter()
            .collect();
        let mut outcome = BatchDecided::default();
        for (single, facts) in &signals {
            if !processed::record(&*txn, CONSUMER, &single.event_id).await? {
                outcome.duplicates += 1;
                continue;
            }
            if known.contains(&facts.student_id)
                && !with_case.contains(&facts.student_id)
                && matches!(facts.decide(None), Decision::NoAction { .. })
            {
                outcome.no_action += 1;
                continue;
            }
            match decide_signal_in(&*txn, &self.policy, single, facts).await? {
                Decided::NoAction => outcome.no_action += 1,
                _ => {
                    with_case.insert(facts.student_id);
                    outcome.acted += 1;
                }
            }
        }
        txn.commit().await?;
        if outcome.acted > 0 {
            self.waker.wake();
        }
        Ok(Decided::Batch(outcome))
    }
}

/// The envelope a batched result would have had travelling alone: its
/// `signal_id` as the event id, so the case's signal record, its events and
/// the processed record carry the same id either way.
fn single_envelope(batch: &Envelope, result: &v1::ScreeningResultRecorded) -> Envelope {
    let payload = Payload::ScreeningResult(result.clone());
    Envelope {
        event_id: result.signal_id.clone(),
        kind: sanyu_events::kind_of(&payload).to_owned(),
        occurred_at: batch.occurred_at,
        school: batch.school.clone(),
        // The decision derives the student's partition itself.
        partition: batch.partition,
        trace: batch.trace.clone(),
        payload: Some(payload),
    }
}
