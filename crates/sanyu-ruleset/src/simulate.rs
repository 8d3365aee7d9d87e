//! Replay of stored signals through a rules file, without side effects:
//! `sanyu rules simulate` runs the history once through the rules in force and
//! once through a candidate, and reports per school what would change.
//!
//! Each run starts from an empty state at the start of the replayed range and
//! lets the decisions it makes build the state (open cases and their levels,
//! the watch list, recent signals). People's actions (closing a case, lowering
//! a level) are not replayed: the comparison is between rules, not between
//! what the crisis team did.

use std::collections::{BTreeMap, HashMap};

use sanyu_domain::RiskLevel;

use crate::{Decision, Outcome, RuleSet, Signal, StudentState};

/// One stored signal with whom it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    pub school: String,
    pub student: String,
    pub signal: Signal,
}

/// What one run did for one school.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub signals: u64,
    /// Cases opened, by level.
    pub opened: BTreeMap<RiskLevel, u64>,
    /// Level raises of open cases.
    pub raised: u64,
    /// Students newly put on the watch list.
    pub watched: u64,
    pub no_action: u64,
}

impl Effects {
    pub fn cases_opened(&self) -> u64 {
        self.opened.values().sum()
    }
}

/// Both runs for one school, and the signals decided differently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchoolComparison {
    pub in_force: Effects,
    pub candidate: Effects,
    /// Signals whose decision or rule differs between the two runs.
    pub changed_signals: u64,
}

/// Replay `history` (oldest first) through `rules`; one outcome per signal.
pub fn replay(rules: &RuleSet, history: &[Replayed]) -> Vec<Outcome> {
    let mut states: HashMap<&str, StudentState> = HashMap::new();
    let lookback = chrono::Duration::days(i64::from(rules.lookback_days()));
    history
        .iter()
        .map(|r| {
            let state = states.entry(r.student.as_str()).or_default();
            let now = r.signal.at;
            state.recent.retain(|s| s.at >= now - lookback);
            let outcome = rules.decide(&r.signal, state, now);
            match outcome.decision {
                Decision::Open { level } => state.open_case = Some(level),
                Decision::Attach {
                    raise_to: Some(level),
                } => state.open_case = Some(level),
                Decision::Watch { .. } => state.watched = true,
                Decision::Attach { raise_to: None } | Decision::NoAction => {}
            }
            state.recent.push(r.signal.clone());
            outcome
        })
        .collect()
}

fn tally(effects: &mut Effects, outcome: &Outcome, already_watched: bool) {
    effects.signals += 1;
    match outcome.decision {
        Decision::Open { level } => *effects.opened.entry(level).or_default() += 1,
        Decision::Attach { raise_to: Some(_) } => effects.raised += 1,
        Decision::Watch { .. } if !already_watched => effects.watched += 1,
        Decision::Watch { .. } | Decision::Attach { raise_to: None } => {}
        Decision::NoAction => effects.no_action += 1,
    }
}

/// Run the history through both rule sets; per school (sorted by code).
pub fn compare(
    in_force: &RuleSet,
    candidate: &RuleSet,
    history: &[Replayed],
) -> BTreeMap<String, SchoolComparison> {
    let before = replay(in_force, history);
    let after = replay(candidate, history);
    let mut out: BTreeMap<String, SchoolComparison> = BTreeMap::new();
    let mut watched_before: HashMap<&str, bool> = HashMap::new();
    let mut watched_after: HashMap<&str, bool> = HashMap::new();
    for ((r, b), a) in history.iter().zip(&before).zip(&after) {
        let school = out.entry(r.school.clone()).or_default();
        let wb = watched_before.entry(r.student.as_str()).or_default();
        tally(&mut school.in_force, b, *wb);
        *wb |= matches!(b.decision, Decision::Watch { .. });
        let wa = watched_after.entry(r.student.as_str()).or_default();
        tally(&mut school.candidate, a, *wa);
        *wa |= matches!(a.decision, Decision::Watch { .. });
        if a.decision != b.decision || a.rule_id != b.rule_id {
            school.changed_signals += 1;
        }
    }
    out
}

/// The comparison as the text `sanyu rules simulate` prints.
pub fn render(
    in_force: &RuleSet,
    candidate: &RuleSet,
    comparison: &BTreeMap<String, SchoolComparison>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rules in force: {}  candidate: {}",
        in_force.version, candidate.version
    );
    let levels = |e: &Effects| {
        e.opened
            .iter()
            .rev()
            .map(|(l, n)| format!("{l} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (school, c) in comparison {
        let _ = writeln!(out, "school {school}: {} signals", c.in_force.signals);
        let row = |out: &mut String, what: &str, before: u64, after: u64| {
            let delta = after as i64 - before as i64;
            let _ = writeln!(out, "  {what:<16} {before:>6} -> {after:>6} ({delta:+})");
        };
        row(
            &mut out,
            "cases opened",
            c.in_force.cases_opened(),
            c.candidate.cases_opened(),
        );
        let _ = writeln!(
            out,
            "    by level: [{}] -> [{}]",
            levels(&c.in_force),
            levels(&c.candidate)
        );
        row(
            &mut out,
            "levels raised",
            c.in_force.raised,
            c.candidate.raised,
        );
        row(
            &mut out,
            "watch list",
            c.in_force.watched,
            c.candidate.watched,
        );
        row(
            &mut out,
            "no action",
            c.in_force.no_action,
            c.candidate.no_action,
        );
        let _ = writeln!(out, "  signals decided differently: {}", c.changed_signals);
    }
    if comparison.is_empty() {
        let _ = writeln!(out, "no signals in the range");
    }
    out
}
