//! Rules as data. The school's psychologists review one TOML file: key-date
//! periods and an ordered list of rules, each a set of conditions over the
//! signal and the student's recent history, and a decision. Evaluation is a
//! pure function of (rules, signal, student state, now): no I/O, so every rule
//! is unit- and property-tested, and `sanyu rules simulate` replays history
//! through a candidate file without side effects.
//!
//! Why not an expression language (CEL, zen-engine's decision tables)? The
//! conditions the crisis teams asked for are few and fixed (source, level,
//! band, flags, category, counts in a window, corroboration across sources,
//! key-date periods); a closed vocabulary of named fields is easier to review
//! than expressions, cannot fail at run time, and `sanyu rules check` reports
//! an unknown field or a bad value with its line and column.
//!
//! Two rules are not data and cannot be switched off: a positive suicide item,
//! and a `critical` report or hotline rating, open or raise the case to
//! `critical` ([`SAFETY_RULE`]). A rule never lowers a level: only a person does.

use std::fmt;

pub mod simulate;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sanyu_domain::RiskLevel;
use serde::Deserialize;

/// Rule id of the built-in safety rule.
pub const SAFETY_RULE: &str = "builtin.suicide_or_critical";

/// Where a signal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Screening,
    Report,
    Hotline,
    ZeroReport,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Screening => "screening",
            Source::Report => "report",
            Source::Hotline => "hotline",
            Source::ZeroReport => "zero_report",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Source::Screening,
            Source::Report,
            Source::Hotline,
            Source::ZeroReport,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One signal as the rules see it: codes and levels, never text.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub id: String,
    pub source: Source,
    pub at: DateTime<Utc>,
    /// The source's own suggestion (report level, hotline rating, screening default).
    pub level: Option<RiskLevel>,
    pub instrument: Option<String>,
    pub band: Option<String>,
    pub flags: Vec<String>,
    pub category: Option<String>,
}

impl Signal {
    fn has_suicide_flag(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f == "suicide_item" || f == "suicide_risk")
    }
}

/// What the engine knows about the student when a signal arrives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudentState {
    /// Level of the student's open case, if any.
    pub open_case: Option<RiskLevel>,
    /// Earlier signals (any order), at least those within the longest window of the rules.
    pub recent: Vec<Signal>,
    /// On the key-population (watch) list.
    pub watched: bool,
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    NoAction,
    /// Put the student on the key-population list with a follow-up date.
    Watch {
        follow_up_days: u32,
    },
    /// Open a case at this level.
    Open {
        level: RiskLevel,
    },
    /// Attach to the open case; raise it when `raise_to` is set.
    Attach {
        raise_to: Option<RiskLevel>,
    },
}

/// A decision with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    /// The rule that made it (the safety rule, a rule of the file, or `default`).
    pub rule_id: String,
    pub rules_version: String,
    /// Ids of the signals the rule used (the new one first).
    pub used: Vec<String>,
}

// ---------------------------------------------------------------- the file

/// A parsed and checked rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub version: String,
    pub periods: Vec<Period>,
    pub rules: Vec<Rule>,
}

/// A key-date period (e.g. the two weeks before 中考/高考): rules may apply only within one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub name: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub when: Conditions,
    pub then: Then,
}

/// All conditions must hold (an absent one always holds).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// The signal's source is one of these.
    pub source: Option<Vec<Source>>,
    /// The signal's suggested level is at least this.
    pub level_at_least: Option<RiskLevel>,
    pub instrument: Option<Vec<String>>,
    /// The screening band is one of these.
    pub band: Option<Vec<String>>,
    /// The signal carries at least one of these flags.
    pub flags_any: Option<Vec<String>>,
    /// The report or incident category is one of these.
    pub category: Option<Vec<String>>,
    /// At least `at_least` signals (this one included) of `sources` within `within_days`.
    pub count: Option<Count>,
    /// Another source also signalled within the window (e.g. a screening and a teacher report).
    pub corroborated_by: Option<Corroboration>,
    /// Only within one of these key-date periods.
    pub during: Option<Vec<String>>,
    /// The student has (true) or has not (false) an open case.
    pub open_case: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    #[serde(default)]
    pub sources: Vec<Source>,
    pub within_days: u32,
    pub at_least: u32,
    /// Only signals at this level or above count.
    pub level_at_least: Option<RiskLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corroboration {
    pub sources: Vec<Source>,
    pub within_days: u32,
    pub level_at_least: Option<RiskLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Then {
    /// Open a case at `level`, or attach to the open one raising it to `level`.
    Case { level: RiskLevel },
    /// Key-population watch with a follow-up in `follow_up_days` (attach if a case is open).
    Watch { follow_up_days: u32 },
    /// Record that nothing is done (attach if a case is open).
    NoAction,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: String,
    #[serde(default, rename = "period")]
    periods: Vec<Period>,
    #[serde(default, rename = "rule")]
    rules: Vec<toml::Spanned<Rule>>,
}

/// A problem in a rules file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CheckError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

impl RuleSet {
    /// Parse and check a rules file; every problem is reported with its line and column.
    pub fn parse(text: &str) -> Result<Self, Vec<CheckError>> {
        let file: File = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| position(text, s.start));
            vec![CheckError {
                line,
                column,
                message: e.message().to_owned(),
            }]
        })?;
        let mut errors = Vec::new();
        let mut ids: Vec<&str> = Vec::new();
        let period_names: Vec<&str> = file.periods.iter().map(|p| p.name.as_str()).collect();
        for p in &file.periods {
            if p.to < p.from {
                errors.push(CheckError {
                    line: 1,
                    column: 1,
                    message: format!("period `{}` ends before it starts", p.name),
                });
            }
        }
        for spanned in &file.rules {
            let (line, column) = position(text, spanned.span().start);
            let rule = spanned.get_ref();
            let mut problem = |message: String| {
                errors.push(CheckError {
                    line,
                    column,
                    message: format!("rule `{}`: {message}", rule.id),
                })
            };
            if rule.id.trim().is_empty() {
                problem("the id is empty".into());
            }
            if ids.contains(&rule.id.as_str()) {
                problem("the id is used twice".into());
            }
            ids.push(&rule.id);
            if let Some(during) = &rule.when.during {
                for name in during {
                    if !period_names.contains(&name.as_str()) {
                        problem(format!("period `{name}` is not defined"));
                    }
                }
            }
            if let Some(c) = &rule.when.count
                && (c.at_least == 0 || c.within_days == 0)
            {
                problem("count needs at_least ≥ 1 and within_days ≥ 1".into());
            }
            if let Some(c) = &rule.when.corroborated_by
                && (c.sources.is_empty() || c.within_days == 0)
            {
                problem("corroborated_by needs sources and within_days ≥ 1".into());
            }
            if let Then::Case { level } = rule.then
                && !level.is_case_level()
            {
                problem(format!(
                    "a case cannot be opened at `{level}`; use action = \"watch\""
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            version: file.version,
            periods: file.periods,
            rules: file
                .rules
                .into_iter()
                .map(toml::Spanned::into_inner)
                .collect(),
        })
    }

    /// The longest window any rule looks back over, in days.
    pub fn lookback_days(&self) -> u32 {
        self.rules
            .iter()
            .flat_map(|r| {
                [
                    r.when.count.as_ref().map(|c| c.within_days),
                    r.when.corroborated_by.as_ref().map(|c| c.within_days),
                ]
            })
            .flatten()
            .max()
            .unwrap_or(0)
    }

    /// Decide one signal. Every rule that matches proposes a decision; the most
    /// severe wins (a case over a watch over nothing, a higher level over a
    /// lower), the earlier rule on a tie. The safety rule comes first of all.
    pub fn decide(&self, signal: &Signal, state: &StudentState, now: DateTime<Utc>) -> Outcome {
        let outcome = |then: &Then, rule_id: &str, used: Vec<String>| Outcome {
            decision: apply(then, state),
            rule_id: rule_id.to_owned(),
            rules_version: self.version.clone(),
            used,
        };
        if signal.has_suicide_flag() || signal.level == Some(RiskLevel::Critical) {
            return outcome(
                &Then::Case {
                    level: RiskLevel::Critical,
                },
                SAFETY_RULE,
                vec![signal.id.clone()],
            );
        }
        let mut best: Option<(u8, &Rule, Vec<String>)> = None;
        for rule in &self.rules {
            let Some(used) = self.matches(rule, signal, state, now) else {
                continue;
            };
            let severity = severity(&rule.then);
            if best.as_ref().is_none_or(|(s, _, _)| severity > *s) {
                best = Some((severity, rule, used));
            }
        }
        match best {
            Some((_, rule, used)) => outcome(&rule.then, &rule.id, used),
            None => outcome(&Then::NoAction, "default", vec![signal.id.clone()]),
        }
    }

    /// The signals a rule used when all its conditions hold.
    fn matches(
        &self,
        rule: &Rule,
        signal: &Signal,
        state: &StudentState,
        now: DateTime<Utc>,
    ) -> Option<Vec<String>> {
        let w = &rule.when;
        let mut used = vec![signal.id.clone()];
        let one_of = |list: &Option<Vec<String>>, value: &Option<String>| {
            list.as_ref()
                .is_none_or(|l| value.as_ref().is_some_and(|v| l.iter().any(|x| x == v)))
        };
        let level_ok = |min: Option<RiskLevel>, level: Option<RiskLevel>| {
            min.is_none_or(|m| level.is_some_and(|l| l >= m))
        };
        if !w.source.as_ref().is_none_or(|s| s.contains(&signal.source))
            || !level_ok(w.level_at_least, signal.level)
            || !one_of(&w.instrument, &signal.instrument)
            || !one_of(&w.band, &signal.band)
            || !one_of(&w.category, &signal.category)
            || !w
                .flags_any
                .as_ref()
                .is_none_or(|f| signal.flags.iter().any(|x| f.contains(x)))
            || w.open_case.is_some_and(|o| o != state.open_case.is_some())
        {
            return None;
        }
        if let Some(during) = &w.during {
            let today = signal.at.date_naive();
            let inside = self
                .periods
                .iter()
                .filter(|p| during.contains(&p.name))
                .any(|p| p.from <= today && today <= p.to);
            if !inside {
                return None;
            }
        }
        let within = |days: u32, s: &Signal| {
            s.at <= now && s.at >= signal.at - Duration::days(i64::from(days))
        };
        if let Some(c) = &w.count {
            let hits: Vec<&Signal> = state
                .recent
                .iter()
                .filter(|s| c.sources.is_empty() || c.sources.contains(&s.source))
                .filter(|s| level_ok(c.level_at_least, s.level))
                .filter(|s| within(c.within_days, s))
                .collect();
            let this_counts = (c.sources.is_empty() || c.sources.contains(&signal.source))
                && level_ok(c.level_at_least, signal.level);
            if hits.len() + usize::from(this_counts) < c.at_least as usize {
                return None;
            }
            used.extend(hits.iter().map(|s| s.id.clone()));
        }
        if let Some(c) = &w.corroborated_by {
            let hits: Vec<&Signal> = state
                .recent
                .iter()
                .filter(|s| s.source != signal.source && c.sources.contains(&s.source))
                .filter(|s| level_ok(c.level_at_least, s.level))
                .filter(|s| within(c.within_days, s))
                .collect();
            if hits.is_empty() {
                return None;
            }
            used.extend(hits.iter().map(|s| s.id.clone()));
        }
        used.dedup();
        Some(used)
    }
}

fn severity(then: &Then) -> u8 {
    match then {
        Then::NoAction => 0,
        Then::Watch { .. } => 1,
        Then::Case { level } => 1 + level.rank().max(0) as u8,
    }
}

/// Turn a rule's `then` into a decision given the open case: never two open
/// cases, never a lower level.
fn apply(then: &Then, state: &StudentState) -> Decision {
    match (then, state.open_case) {
        (Then::Case { level }, None) => Decision::Open { level: *level },
        (Then::Case { level }, Some(open)) => Decision::Attach {
            raise_to: (*level > open).then_some(*level),
        },
        (_, Some(_)) => Decision::Attach { raise_to: None },
        (Then::Watch { follow_up_days }, None) => Decision::Watch {
            follow_up_days: *follow_up_days,
        },
        (Then::NoAction, None) => Decision::NoAction,
    }
}

/// The rules in force when no file is configured (the behaviour of the first
/// rules engine, now as data).
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_are_valid() {
        let rules = RuleSet::parse(DEFAULT_RULES).expect("valid");
        assert!(!rules.rules.is_empty());
    }

    #[test]
    fn positions_count_lines_and_columns_from_one() {
        assert_eq!(position("ab\ncd", 0), (1, 1));
        assert_eq!(position("ab\ncd", 4), (2, 2));
    }
}
