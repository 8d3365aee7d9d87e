use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Number of student partitions in subjects (`sanyu.intake.<kind>.<school>.<partition>`).
pub const PARTITIONS: u32 = 16;

/// Lifecycle of an intervention case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Open,
    Acknowledged,
    InProgress,
    Referred,
    Monitoring,
    Closed,
}

impl CaseStatus {
    pub const ALL: [CaseStatus; 6] = [
        Self::Open,
        Self::Acknowledged,
        Self::InProgress,
        Self::Referred,
        Self::Monitoring,
        Self::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::InProgress => "in_progress",
            Self::Referred => "referred",
            Self::Monitoring => "monitoring",
            Self::Closed => "closed",
        }
    }

    /// Every status except `closed` counts as the student's one open case.
    pub fn is_active(self) -> bool {
        self != Self::Closed
    }
}

from_str_by_name!(
    CaseStatus,
    Self::ALL,
    "case status",
    "open, acknowledged, in_progress, referred, monitoring, closed"
);

/// Who a case is about.
///
/// Almost every case is about a student of the roster. A hotline caller rated
/// high or critical whom nobody could identify still needs the crisis team at
/// once: that case is about an `unidentified_caller` (no student, no class)
/// until someone links it to a student, when it becomes a `student` case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseSubject {
    Student,
    UnidentifiedCaller,
}

impl CaseSubject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Student => "student",
            Self::UnidentifiedCaller => "unidentified_caller",
        }
    }
}

from_str_by_name!(
    CaseSubject,
    [Self::Student, Self::UnidentifiedCaller],
    "case subject",
    "student, unidentified_caller"
);

/// Where a case's escalation ladder stands (`cases.ladder_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LadderState {
    /// Rungs are due: nobody has acknowledged since the ladder (re)started.
    Running,
    /// Acknowledged or closed (and a case before its first ladder).
    Stopped,
    /// Every rung fired and nobody acknowledged.
    Exhausted,
}

impl LadderState {
    pub const ALL: [LadderState; 3] = [Self::Running, Self::Stopped, Self::Exhausted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Exhausted => "exhausted",
        }
    }
}

from_str_by_name!(
    LadderState,
    Self::ALL,
    "ladder state",
    "running, stopped, exhausted"
);

macro_rules! display_as_str {
    ($($ty:ty),+) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

display_as_str!(CaseStatus, CaseSubject, LadderState);

/// The opaque, human-quotable reference of a case (e.g. `C-7KQ2M9XA`), derived
/// from its id. It says nothing about the student and is safe in an SMS.
pub fn case_reference(case_id: Uuid) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford base32
    let digest = Sha256::digest(case_id.as_bytes());
    let mut bits: u64 = 0;
    for byte in &digest[..8] {
        bits = (bits << 8) | u64::from(*byte);
    }
    let mut out = String::from("C-");
    for i in 0..8 {
        let idx = ((bits >> (i * 5)) & 31) as usize;
        out.push(char::from(ALPHABET[idx]));
    }
    out
}

/// Stable partition of a student, so that all events about one student travel
/// on one subject and are decided in order.
pub fn student_partition(student_id: Uuid) -> u32 {
    let digest = Sha256::digest(student_id.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % PARTITIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_reference_is_stable_and_opaque() {
        let id = Uuid::from_u128(42);
        let a = case_reference(id);
        assert_eq!(a, case_reference(id));
        assert_eq!(a.len(), 10);
        assert!(a.starts_with("C-"));
        assert_ne!(a, case_reference(Uuid::from_u128(43)));
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        for n in 0..1000u128 {
            let p = student_partition(Uuid::from_u128(n));
            assert!(p < PARTITIONS);
            assert_eq!(p, student_partition(Uuid::from_u128(n)));
        }
    }

    #[test]
    fn case_subjects_round_trip() {
        for s in [CaseSubject::Student, CaseSubject::UnidentifiedCaller] {
            assert_eq!(s.as_str().parse::<CaseSubject>(), Ok(s));
        }
        assert!("nobody".parse::<CaseSubject>().is_err());
    }

    #[test]
    fn ladder_states_round_trip() {
        for s in LadderState::ALL {
            assert_eq!(s.as_str().parse::<LadderState>(), Ok(s));
        }
        assert!("paused".parse::<LadderState>().is_err());
    }

    #[test]
    fn only_closed_cases_are_inactive() {
        for s in CaseStatus::ALL {
            assert_eq!(s.is_active(), s != CaseStatus::Closed);
            assert_eq!(s.as_str().parse::<CaseStatus>(), Ok(s));
        }
    }
}
