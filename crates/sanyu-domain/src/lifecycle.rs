//! The case lifecycle the crisis team works through:
//! `open` → `acknowledged` → `in_progress` → (`referred` | `monitoring`) → `closed`,
//! and `reopen`. An illegal transition names the actions that are allowed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::CaseStatus;

/// What a person does to a case's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseAction {
    /// Someone has taken the case (stops the escalation ladder).
    Acknowledge,
    /// Work has started (first contact with the student or family).
    Start,
    /// Referred to a hospital or specialist (转介).
    Refer,
    /// Under follow-up (重点关注).
    Monitor,
    Close,
    Reopen,
}

impl CaseAction {
    pub const ALL: [CaseAction; 6] = [
        Self::Acknowledge,
        Self::Start,
        Self::Refer,
        Self::Monitor,
        Self::Close,
        Self::Reopen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledge => "acknowledge",
            Self::Start => "start",
            Self::Refer => "refer",
            Self::Monitor => "monitor",
            Self::Close => "close",
            Self::Reopen => "reopen",
        }
    }
}

impl fmt::Display for CaseAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action that the case's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a case that is {}", from.as_str())]
pub struct IllegalTransition {
    pub from: CaseStatus,
    pub action: CaseAction,
    /// What is allowed from `from` (for the 409 body).
    pub allowed: Vec<CaseAction>,
}

/// The status after `action`, if `from` allows it.
fn next(from: CaseStatus, action: CaseAction) -> Option<CaseStatus> {
    use CaseAction as A;
    use CaseStatus as S;
    match (from, action) {
        (S::Open, A::Acknowledge) => Some(S::Acknowledged),
        (S::Acknowledged, A::Start) => Some(S::InProgress),
        (S::InProgress | S::Monitoring, A::Refer) => Some(S::Referred),
        (S::InProgress | S::Referred, A::Monitor) => Some(S::Monitoring),
        // Nobody closes a case nobody has taken.
        (S::Acknowledged | S::InProgress | S::Referred | S::Monitoring, A::Close) => {
            Some(S::Closed)
        }
        // A reopened case is taken again like a new one: the ladder runs.
        (S::Closed, A::Reopen) => Some(S::Open),
        _ => None,
    }
}

/// The actions `from` allows.
pub fn allowed_actions(from: CaseStatus) -> Vec<CaseAction> {
    CaseAction::ALL
        .into_iter()
        .filter(|a| next(from, *a).is_some())
        .collect()
}

/// Apply `action` to a case in status `from`.
pub fn transition(from: CaseStatus, action: CaseAction) -> Result<CaseStatus, IllegalTransition> {
    next(from, action).ok_or_else(|| IllegalTransition {
        from,
        action,
        allowed: allowed_actions(from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaseAction as A;
    use CaseStatus as S;

    #[test]
    fn the_happy_path_runs_from_open_to_closed_and_back() {
        let mut s = S::Open;
        for (action, expected) in [
            (A::Acknowledge, S::Acknowledged),
            (A::Start, S::InProgress),
            (A::Refer, S::Referred),
            (A::Monitor, S::Monitoring),
            (A::Close, S::Closed),
            (A::Reopen, S::Open),
        ] {
            s = transition(s, action).expect("legal");
            assert_eq!(s, expected);
        }
    }

    #[test]
    fn every_illegal_transition_names_the_allowed_ones() {
        let legal: [(S, A); 11] = [
            (S::Open, A::Acknowledge),
            (S::Acknowledged, A::Start),
            (S::Acknowledged, A::Close),
            (S::InProgress, A::Refer),
            (S::InProgress, A::Monitor),
            (S::InProgress, A::Close),
            (S::Referred, A::Monitor),
            (S::Referred, A::Close),
            (S::Monitoring, A::Refer),
            (S::Monitoring, A::Close),
            (S::Closed, A::Reopen),
        ];
        for from in S::ALL {
            for action in A::ALL {
                let result = transition(from, action);
                if legal.contains(&(from, action)) {
                    assert!(result.is_ok(), "{from:?} {action:?}");
                } else {
                    let err = result.expect_err("illegal");
                    assert_eq!(err.from, from);
                    assert!(!err.allowed.contains(&action));
                    let expected: Vec<A> = legal
                        .iter()
                        .filter(|(f, _)| *f == from)
                        .map(|(_, a)| *a)
                        .collect();
                    assert_eq!(err.allowed, expected, "{from:?}");
                }
            }
        }
    }

    #[test]
    fn an_open_case_cannot_be_closed_without_being_taken() {
        let err = transition(S::Open, A::Close).expect_err("illegal");
        assert_eq!(err.allowed, vec![A::Acknowledge]);
        assert_eq!(err.to_string(), "cannot close a case that is open");
    }
}
