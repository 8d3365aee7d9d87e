//! One batch inside its transaction: lock the students, drop what was
//! decided before, read the students' state, decide each signal with the
//! rules in force, turn each decision about a case into a [`RuleCommand`]
//! planned by `sanyu_case::plan_rule`, and write the plans
//! (`sanyu_case::apply_all`), the watch list, the decision rows and the
//! processed-message records.

use std::collections::{HashMap, HashSet};

use sanyu_case::plan::{Plan, PlanCtx, Refusal};
use sanyu_case::rule::action;
use sanyu_case::{RuleCommand, RuleSignal, RuleSnapshot, StudentRef};
use sanyu_domain::RiskLevel;
use sanyu_domain::hotline::RULE_HOTLINE_UNIDENTIFIED_CALLER;
use sanyu_ruleset::{Decision, RuleSet, Signal, Source, StudentState};
use sanyu_store::decisions::{self, NewDecision};
use sanyu_store::entities::{case, school};
use sanyu_store::{Conn, StoreError, cases, processed, roster};
use uuid::Uuid;

use crate::watch::Watches;
use crate::{CONSUMER, Decided, Facts, MessageResult, RulesEngine, RulesError};

/// What a message of a batch asks to decide.
pub(crate) enum Work {
    /// Signals about identified students.
    Signals(Vec<Facts>),
    /// A hotline caller nobody identified, rated `level`: no student to
    /// decide about; a case of their own at high or critical.
    Unidentified { level: RiskLevel, source_id: Uuid },
}

/// A message of a batch on its way through the transaction.
pub(crate) struct Pending {
    pub(crate) index: usize,
    pub(crate) envelope: sanyu_events::Envelope,
    pub(crate) work: Work,
    pub(crate) traceparent: Option<String>,
}

impl Pending {
    fn facts(&self) -> &[Facts] {
        match &self.work {
            Work::Signals(facts) => facts,
            Work::Unidentified { .. } => &[],
        }
    }
}

impl From<sanyu_case::CaseError> for RulesError {
    fn from(e: sanyu_case::CaseError) -> Self {
        match e {
            sanyu_case::CaseError::Store(s) => RulesError::Store(s),
            other => RulesError::Corrupt(other.to_string()),
        }
    }
}

impl From<Refusal> for RulesError {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::NotFound("case") => RulesError::Corrupt("attach without an open case".into()),
            other => RulesError::Corrupt(other.to_string()),
        }
    }
}

/// New case ids.
fn new_id() -> Uuid {
    Uuid::now_v7()
}

impl RulesEngine {
    /// The batch inside its transaction; `true` when events were emitted.
    pub(crate) async fn decide_in(
        &self,
        txn: &impl Conn,
        rules: &RuleSet,
        pending: Vec<Pending>,
        results: &mut [Option<MessageResult>],
    ) -> Result<bool, RulesError> {
        let now = self.clock.now();
        let t0 = std::time::Instant::now();
        // 1. Lock the students (the per-student mutual exclusion of replicas).
        let student_ids: Vec<Uuid> = pending
            .iter()
            .flat_map(|p| p.facts().iter().map(|f| f.student_id))
            .collect();
        let students = decisions::lock_students(txn, &student_ids).await?;
        let mut pending: Vec<Pending> = pending
            .into_iter()
            .filter(|p| {
                match p
                    .facts()
                    .iter()
                    .find(|f| !students.contains_key(&f.student_id))
                {
                    Some(unknown) => {
                        results[p.index] =
                            Some(Err(RulesError::UnknownStudent(unknown.student_id)));
                        false
                    }
                    None => true,
                }
            })
            .collect();
        // 2. Messages and signals decided before (redelivery, duplicate publish).
        let message_ids: Vec<String> = pending
            .iter()
            .map(|p| p.envelope.event_id.clone())
            .collect();
        let seen_messages = processed::already(txn, CONSUMER, &message_ids).await?;
        let mut fresh_messages = HashSet::new();
        pending.retain(|p| {
            let fresh = !seen_messages.contains(&p.envelope.event_id)
                && fresh_messages.insert(p.envelope.event_id.clone());
            if !fresh {
                results[p.index] = Some(Ok(vec![Decided::Duplicate]));
            }
            fresh
        });
        if pending.is_empty() {
            return Ok(false);
        }
        let signal_ids: Vec<String> = pending
            .iter()
            .flat_map(|p| p.facts().iter().map(|f| f.signal_id.clone()))
            .collect();
        let mut decided = decisions::decided(txn, &signal_ids).await?;
        let t_lock = t0.elapsed();
        // 3. The students' state: open cases, recent signals, watch list,
        // their schools (and those of unidentified callers) and the schools'
        // reachable staff for the ladders.
        let ids: Vec<Uuid> = students.keys().copied().collect();
        let mut open = cases::active_for_students(txn, &ids).await?;
        let since = now - chrono::Duration::days(i64::from(rules.lookback_days()) + 1);
        let mut recent: HashMap<Uuid, Vec<Signal>> = HashMap::new();
        for row in decisions::recent_for_students(txn, &ids, since).await? {
            if let Some(signal) = signal_of_row(&row) {
                recent.entry(row.student_id).or_default().push(signal);
            }
        }
        let mut watches = Watches::new(decisions::active_watches(txn, &ids).await?);
        let schools = load_schools(txn, &students, &pending).await?;
        let school_list: Vec<Uuid> = schools.keys().copied().collect();
        let staff = sanyu_case::snapshot::reachable_of_schools(txn, &school_list).await?;
        let no_staff = sanyu_case::ladder::Reachable::new();
        let school_rows: Vec<school::Model> = schools.values().cloned().collect();
        let rosters =
            sanyu_case::duty::rosters_of_schools(txn, &school_rows, &self.duty, now).await?;
        let no_roster = sanyu_domain::duty::Roster::empty(self.duty.tz);
        let t_state = t0.elapsed();
        // 4. Decide, in stream order.
        let mut rows = Vec::new();
        let mut plans: Vec<Plan> = Vec::new();
        let mut recorded = Vec::with_capacity(pending.len());
        for p in &pending {
            let ctx = PlanCtx {
                now,
                policy: &self.policy,
                traceparent: p.traceparent.clone(),
                ids: &new_id,
            };
            if let Work::Unidentified { level, source_id } = &p.work {
                let result = unidentified(
                    &p.envelope,
                    *level,
                    *source_id,
                    &schools,
                    (&staff, &rosters),
                    &ctx,
                );
                match result {
                    Ok(Some(plan)) => {
                        results[p.index] = Some(Ok(vec![decided_of(&plan, None)?]));
                        plans.push(plan);
                    }
                    Ok(None) => results[p.index] = Some(Ok(vec![Decided::NoAction])),
                    Err(e) => {
                        // Not recorded as processed: retried.
                        results[p.index] = Some(Err(e));
                        continue;
                    }
                }
                recorded.push(p.envelope.event_id.clone());
                continue;
            }
            let mut out = Vec::with_capacity(p.facts().len());
            for f in p.facts() {
                if !decided.insert(f.signal_id.clone()) {
                    out.push(Decided::Duplicate);
                    continue;
                }
                let student = students
                    .get(&f.student_id)
                    .ok_or(RulesError::UnknownStudent(f.student_id))?;
                let school = schools
                    .get(&student.school_id)
                    .ok_or(StoreError::NotFound("school"))?;
                let history = recent.entry(f.student_id).or_default();
                let state = StudentState {
                    open_case: open.get(&f.student_id).map(|c| c.level),
                    recent: history.clone(),
                    watched: watches.contains(&f.student_id),
                };
                let outcome = rules.decide(&f.signal, &state, now);
                let command = match outcome.decision {
                    Decision::NoAction => None,
                    Decision::Watch { .. } => None,
                    Decision::Open { level } => Some(RuleCommand::Open { level }),
                    Decision::Attach { raise_to: Some(to) } => Some(RuleCommand::Raise { to }),
                    Decision::Attach { raise_to: None } => Some(RuleCommand::Attach),
                };
                let (did, row_case) = match (command, &outcome.decision) {
                    (None, Decision::Watch { follow_up_days }) => {
                        let on =
                            (now + chrono::Duration::days(i64::from(*follow_up_days))).date_naive();
                        watches.watch(txn, f, student, &outcome, now, on).await?;
                        (Decided::Watched { follow_up_on: on }, None)
                    }
                    (None, _) => (Decided::NoAction, None),
                    (Some(cmd), _) => {
                        let before = open.get(&f.student_id);
                        let snap = RuleSnapshot {
                            school_id: school.id,
                            school_code: &school.code,
                            student: Some(StudentRef {
                                id: student.id,
                                class_id: student.class_id,
                            }),
                            open_case: before,
                            staff: staff.get(&school.id).unwrap_or(&no_staff),
                            duty: rosters.get(&school.id).unwrap_or(&no_roster),
                        };
                        let signal = RuleSignal {
                            event_id: f.signal_id.clone(),
                            kind: f.kind.clone(),
                            source_id: Some(f.source_id),
                            level: f.level,
                            rule_id: outcome.rule_id.clone(),
                        };
                        let plan = sanyu_case::plan_rule(&snap, &signal, cmd, &ctx)?;
                        let did = decided_of(&plan, before)?;
                        let written = plan.case_as_written();
                        let row_case = (written.id, written.level);
                        open.insert(f.student_id, written);
                        plans.push(plan);
                        (did, Some(row_case))
                    }
                };
                let follow_up_on = match &did {
                    Decided::Watched { follow_up_on } => Some(*follow_up_on),
                    _ => None,
                };
                rows.push(NewDecision {
                    signal_id: f.signal_id.clone(),
                    message_id: p.envelope.event_id.clone(),
                    student_id: f.student_id,
                    school_id: student.school_id,
                    source: f.signal.source.as_str().to_owned(),
                    signal_at: f.signal.at,
                    level: f.signal.level,
                    instrument: f.signal.instrument.clone(),
                    band: f.signal.band.clone(),
                    flags: f.signal.flags.clone(),
                    category: f.signal.category.clone(),
                    decision: decision_name(&did).to_owned(),
                    case_id: row_case.as_ref().map(|c| c.0),
                    case_level: row_case.map(|c| c.1),
                    follow_up_on,
                    rule_id: outcome.rule_id.clone(),
                    rules_version: outcome.rules_version.clone(),
                    used: outcome.used.clone(),
                    decided_at: now,
                });
                history.push(f.signal.clone());
                out.push(did);
            }
            results[p.index] = Some(Ok(out));
            recorded.push(p.envelope.event_id.clone());
        }
        let t_decide = t0.elapsed();
        let emitted = !plans.is_empty();
        let alarms: usize = plans.iter().map(|p| p.alarms.len()).sum();
        sanyu_case::apply_all(txn, plans, None).await?;
        watches.flush(txn).await?;
        decisions::insert_many(txn, rows).await?;
        processed::record_many(txn, CONSUMER, &recorded).await?;
        tracing::debug!(
            lock_ms = t_lock.as_millis() as u64,
            state_ms = (t_state - t_lock).as_millis() as u64,
            decide_ms = (t_decide - t_state).as_millis() as u64,
            write_ms = (t0.elapsed() - t_decide).as_millis() as u64,
            alarms,
            moved_watches = watches.moved,
            "batch phases"
        );
        Ok(emitted)
    }
}

/// The schools of the batch's students and of its unidentified callers.
async fn load_schools(
    txn: &impl Conn,
    students: &HashMap<Uuid, sanyu_store::entities::student::Model>,
    pending: &[Pending],
) -> Result<HashMap<Uuid, school::Model>, RulesError> {
    let school_ids: HashSet<Uuid> = students.values().map(|s| s.school_id).collect();
    let codes: HashSet<String> = pending
        .iter()
        .filter(|p| matches!(p.work, Work::Unidentified { .. }))
        .map(|p| p.envelope.school.clone())
        .collect();
    let mut schools: HashMap<Uuid, school::Model> = HashMap::new();
    for s in roster::schools_by_ids(txn, school_ids.into_iter().collect()).await? {
        schools.insert(s.id, s);
    }
    for s in roster::schools_by_codes(txn, codes.into_iter().collect()).await? {
        schools.insert(s.id, s);
    }
    Ok(schools)
}

/// A hotline caller nobody identified, rated `high` or `critical`: an
/// `unidentified_caller` case for the school's crisis team (linked to a
/// student later); a lower rating opens nothing (`None`).
fn unidentified(
    envelope: &sanyu_events::Envelope,
    level: RiskLevel,
    source_id: Uuid,
    schools: &HashMap<Uuid, school::Model>,
    (staff, rosters): (
        &HashMap<Uuid, sanyu_case::ladder::Reachable>,
        &HashMap<Uuid, sanyu_domain::duty::Roster>,
    ),
    ctx: &PlanCtx<'_>,
) -> Result<Option<Plan>, RulesError> {
    let Some(level) = sanyu_domain::hotline::unidentified_caller_case(level) else {
        return Ok(None);
    };
    let school = schools
        .values()
        .find(|s| s.code == envelope.school)
        .ok_or_else(|| RulesError::UnknownSchool(envelope.school.clone()))?;
    let no_staff = sanyu_case::ladder::Reachable::new();
    let no_roster = sanyu_domain::duty::Roster::empty(chrono_tz::Asia::Shanghai);
    let snap = RuleSnapshot {
        school_id: school.id,
        school_code: &school.code,
        student: None,
        open_case: None,
        staff: staff.get(&school.id).unwrap_or(&no_staff),
        duty: rosters.get(&school.id).unwrap_or(&no_roster),
    };
    let signal = RuleSignal {
        event_id: envelope.event_id.clone(),
        kind: envelope.kind.clone(),
        source_id: Some(source_id),
        level,
        rule_id: RULE_HOTLINE_UNIDENTIFIED_CALLER.to_owned(),
    };
    let plan = sanyu_case::plan_rule(&snap, &signal, RuleCommand::Open { level }, ctx)?;
    Ok(Some(plan))
}

/// What a rule plan did, from the case as it was (`before`) and the plan.
fn decided_of(plan: &Plan, before: Option<&case::Model>) -> Result<Decided, RulesError> {
    let case_id = plan.case.id;
    let level = plan.case.level;
    let did = match plan.action.as_str() {
        action::OPENED => Decided::Opened { case_id, level },
        action::RAISED => Decided::Raised {
            case_id,
            from: before.map_or(level, |c| c.level),
            to: level,
        },
        _ => Decided::Attached { case_id },
    };
    match &did {
        Decided::Opened { .. } => {
            tracing::info!(%case_id, level = level.as_str(), subject = %plan.case.subject, "case opened");
        }
        Decided::Raised { from, to, .. } => {
            tracing::info!(%case_id, from = from.as_str(), to = to.as_str(), "case level raised");
        }
        _ => {}
    }
    Ok(did)
}

pub(crate) fn decision_name(d: &Decided) -> &'static str {
    match d {
        Decided::Opened { .. } => "opened",
        Decided::Raised { .. } => "raised",
        Decided::Attached { .. } => "attached",
        Decided::Watched { .. } => "watch",
        Decided::NoAction => "no_action",
        Decided::Duplicate => "duplicate",
        Decided::Ignored => "ignored",
    }
}

/// A stored decision as a signal of the student's history.
pub fn signal_of_row(row: &sanyu_store::entities::decision::Model) -> Option<Signal> {
    Some(Signal {
        id: row.signal_id.clone(),
        source: Source::parse(&row.source)?,
        at: row.signal_at,
        level: row.level,
        instrument: row.instrument.clone(),
        band: row.band.clone(),
        flags: decisions::flags_of(row),
        category: row.category.clone(),
    })
}
