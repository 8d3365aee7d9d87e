//! The key-population watch list within a batch: a student put on the list
//! is written with the batch (the earliest follow-up date the batch settled
//! on, with its reminder); a student already on the list keeps an earlier
//! date, or has it brought forward (with a reminder for the new date; the
//! old one finds the date moved).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sanyu_escalation as escalation;
use sanyu_ruleset::Outcome as RuleOutcome;
use sanyu_store::Conn;
use sanyu_store::decisions::{self, NewWatch};
use sanyu_store::entities::{student, watch_entry};
use uuid::Uuid;

use crate::{Facts, RulesError};

/// The watch list of a batch's students: as loaded, and the entries new in
/// this batch (not written yet).
pub(crate) struct Watches {
    pub(crate) active: HashMap<Uuid, watch_entry::Model>,
    new: HashMap<Uuid, watch_entry::Model>,
    /// Dates brought forward on entries already written (one write each).
    pub(crate) moved: u32,
}

impl Watches {
    pub(crate) fn new(active: HashMap<Uuid, watch_entry::Model>) -> Self {
        Self {
            active,
            new: HashMap::new(),
            moved: 0,
        }
    }

    pub(crate) fn contains(&self, student_id: &Uuid) -> bool {
        self.active.contains_key(student_id)
    }

    /// Put the student of `f` on the list until `on` (an earlier date
    /// stands).
    pub(crate) async fn watch(
        &mut self,
        txn: &impl Conn,
        f: &Facts,
        student: &student::Model,
        outcome: &RuleOutcome,
        now: DateTime<Utc>,
        on: NaiveDate,
    ) -> Result<(), RulesError> {
        match self.active.get_mut(&f.student_id) {
            // On the list since earlier in this batch: not written yet.
            Some(w) if self.new.contains_key(&f.student_id) => {
                w.follow_up_on = w.follow_up_on.min(on);
                if let Some(pending) = self.new.get_mut(&f.student_id) {
                    pending.follow_up_on = w.follow_up_on;
                }
            }
            // On the list: an earlier follow-up date stands.
            Some(w) => {
                if on < w.follow_up_on {
                    self.moved += 1;
                    let moved = decisions::watch(
                        txn,
                        Some(w),
                        NewWatch {
                            student_id: f.student_id,
                            school_id: student.school_id,
                            class_id: student.class_id,
                            since: now,
                            follow_up_on: on,
                            signal_id: f.signal_id.clone(),
                            rule_id: outcome.rule_id.clone(),
                            rules_version: outcome.rules_version.clone(),
                        },
                    )
                    .await?;
                    if let Some(moved) = moved {
                        sanyu_store::timers::schedule(txn, watch_timer(&moved)?).await?;
                    }
                    w.follow_up_on = on;
                }
            }
            None => {
                let entry = watch_entry::Model {
                    id: Uuid::now_v7(),
                    student_id: f.student_id,
                    school_id: student.school_id,
                    class_id: student.class_id,
                    since: now,
                    follow_up_on: on,
                    signal_id: f.signal_id.clone(),
                    rule_id: outcome.rule_id.clone(),
                    rules_version: outcome.rules_version.clone(),
                    done_at: None,
                    done_by: None,
                };
                self.new.insert(f.student_id, entry.clone());
                self.active.insert(f.student_id, entry);
            }
        }
        Ok(())
    }

    /// Write the entries new in this batch, each with its follow-up reminder
    /// (at the date the batch settled on).
    pub(crate) async fn flush(&mut self, txn: &impl Conn) -> Result<(), RulesError> {
        let entries: Vec<watch_entry::Model> =
            std::mem::take(&mut self.new).into_values().collect();
        let reminders = entries
            .iter()
            .map(watch_timer)
            .collect::<Result<Vec<_>, _>>()?;
        decisions::insert_watches(txn, entries).await?;
        sanyu_store::timers::schedule_all(txn, reminders).await?;
        Ok(())
    }
}

/// The follow-up reminder of a watch entry.
fn watch_timer(entry: &watch_entry::Model) -> Result<sanyu_store::timers::NewTimer, RulesError> {
    escalation::WatchTimer::of(entry).map_err(|e| RulesError::Corrupt(e.to_string()))
}
