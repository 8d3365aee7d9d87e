//! Screening imports end to end: a spooled file is checked against its
//! declaration, then read row by row, scored, and written in batches. One
//! transaction per batch holds the rows' results and errors, their INTAKE
//! signals (outbox), the dead letters of alerts that cannot become signals,
//! and the job's progress and checkpoint. The gateway runs imports in the
//! background ([`Runner`]); `sanyu import` runs the same code in the foreground.
//!
//! * **Nothing lost, nothing twice.** A restarted job skips the rows up to its
//!   checkpoint; a job re-run from the start skips rows already stored; results
//!   are unique per `(import, row)`. A signal's event id is derived from its
//!   source — school, student, instrument, administration date and suggested
//!   level — so re-importing the same (or an overlapping) file raises no
//!   second signal: the outbox keeps the first write of an event id and the
//!   rules engine records every id it decided.
//! * **A suicide alert goes out at once.** A batch holding a suicide alert
//!   takes only the rows the reader has already handed over and is then
//!   committed (and the relay woken) without waiting for the rest of the file;
//!   the alert travels alone, as its own INTAKE message. The other signals of
//!   a batch travel together as one `ScreeningResultBatch`. An alert on a row that could not be scored still becomes
//!   a signal; an alert for a student number that is not on the roster becomes
//!   a dead letter that the crisis team sees at `/v1/dead-letters`.
//! * **Memory is bounded.** The reader streams the file on a blocking thread
//!   and hands rows over a bounded channel; at most one batch is in memory.
//! * Scores never reach a log: the log lines carry ids and counts only.

mod assess;
mod batch;
pub mod file;
mod job;
mod pipeline;
mod runner;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sanyu_domain::{RiskLevel, student_partition};
use sanyu_events::{Payload, subjects, v1};
use sanyu_platform::relay::Waker;
use sanyu_screening::{Coding, ColumnProfile, Instrument, RowOutcome, ScreeningError, XlsxLimits};
use sanyu_store::dead_letters::{self, NewDeadLetter};
use sanyu_store::entities::{school, screening_import, student};
use sanyu_store::outbox::{self, OutboxEvent};
use sanyu_store::screening::{
    self as store, BatchProgress, NewImport, NewResult, NewRowError, outcome, state,
};
use sanyu_store::{Db, StoreError, begin_write};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use file::FileFormat;
pub use runner::Runner;

use assess::*;
pub use assess::{WORSE_THAN_PREVIOUS, worse_margin};
use batch::*;
pub use batch::{batch_event_id, signal_event_id};
pub use job::*;
pub use pipeline::*;

/// The stream and consumer named on dead letters the importer records.
pub const DEAD_LETTER_STREAM: &str = "INTAKE";
pub const DEAD_LETTER_CONSUMER: &str = "importer";
/// The reason recorded on a row whose student number is not on the roster.
pub const UNKNOWN_STUDENT: &str = "student number is not on the school's roster";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A declaration field is missing or invalid; nothing was recorded.
    #[error("{message}")]
    Declaration {
        field: &'static str,
        message: String,
    },
    /// The file does not fit the declared instrument or coding: refused as a
    /// whole (the job is recorded as `refused`).
    #[error("{message}")]
    Refused { import_id: Uuid, message: String },
    #[error("import {0} not found")]
    NotFound(Uuid),
    #[error("{0}")]
    File(String),
    /// Another process holds the job's lease (it is running the job).
    #[error("import {import_id} is being run by {owner}")]
    Busy { import_id: Uuid, owner: String },
    /// This process's lease expired and another process took the job: the
    /// batch in hand was rolled back and this process stops.
    #[error("import {0}: the lease passed to another process")]
    LeaseLost(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sanyu_store::DbErr> for ImportError {
    fn from(e: sanyu_store::DbErr) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

impl ImportError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }

    /// Another process runs (or took over) the job: not a failure of the job.
    pub fn is_elsewhere(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::LeaseLost(_))
    }
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// How to run a job.
#[derive(Clone)]
pub struct ProcessOptions {
    /// Rows per transaction (a suicide alert closes a batch early).
    pub batch_rows: usize,
    /// Delete the file when the job ends (the gateway's spool; never the operator's file).
    pub delete_file_when_done: bool,
    /// Called after each committed batch.
    pub progress: Option<ProgressFn>,
    /// Stop (leaving the job `running`) when cancelled; a later run resumes it.
    pub cancel: CancellationToken,
    /// Stop after this many batches, as if the process died (tests only).
    pub stop_after_batches: Option<usize>,
    /// Mark results worse than the student's previous screening by this
    /// percentage of the instrument's total range.
    pub worse_margin_percent: u32,
    /// Who runs the job (the holder of its lease): unique per process.
    pub worker: String,
    /// How long the lease lasts without a committed batch; another process
    /// takes the job up when it expires.
    pub lease: std::time::Duration,
    /// What an XLSX file may unpack to: checked again before the import reads it.
    pub xlsx_limits: XlsxLimits,
}

/// A worker name unique to this process and call: host, pid and a random part.
pub fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            batch_rows: 2000,
            delete_file_when_done: false,
            progress: None,
            cancel: CancellationToken::new(),
            stop_after_batches: None,
            worse_margin_percent: 15,
            worker: worker_name(),
            lease: std::time::Duration::from_secs(60),
            xlsx_limits: XlsxLimits::default(),
        }
    }
}
