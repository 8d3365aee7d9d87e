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

pub mod file;
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
use sanyu_store::sea_orm::EntityTrait;
use sanyu_store::{Db, StoreError, begin_write};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use file::FileFormat;
pub use runner::Runner;

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

impl From<sanyu_store::sea_orm::DbErr> for ImportError {
    fn from(e: sanyu_store::sea_orm::DbErr) -> Self {
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

/// What an import declares about its file.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// Instrument id or name (`PHQ-9`, `phq9`).
    pub instrument: String,
    /// Response coding of the file (`0-3`, `1-4`, `yes1-no2`…).
    pub coding: String,
    pub administered_on: NaiveDate,
    /// XLSX only: the worksheet (default: the first).
    pub sheet: Option<String>,
    pub profile: ColumnProfile,
    /// The file's name as uploaded (for people; never used as a path).
    pub file_name: String,
}

/// The instrument and coding of a declaration, checked.
pub fn check_declaration(
    instrument: &str,
    coding: &str,
) -> Result<(&'static Instrument, Coding), ImportError> {
    let instrument =
        sanyu_screening::instrument(instrument.trim()).map_err(|e| ImportError::Declaration {
            field: "instrument",
            message: e.to_string(),
        })?;
    let coding: Coding =
        coding
            .trim()
            .parse()
            .map_err(|e: ScreeningError| ImportError::Declaration {
                field: "coding",
                message: e.to_string(),
            })?;
    instrument
        .check_coding(coding)
        .map_err(|e| ImportError::Declaration {
            field: "coding",
            message: e.to_string(),
        })?;
    Ok((instrument, coding))
}

/// A new import of a file already on this machine's disk.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub school: school::Model,
    pub declaration: Declaration,
    /// Where the file is (the gateway's spool, or the operator's file).
    pub path: PathBuf,
    pub created_by: Option<Uuid>,
    /// What an XLSX file may unpack to (`[screening.xlsx]`).
    pub xlsx_limits: XlsxLimits,
}

/// Check a file against its declaration and record the import job: `queued`
/// when it fits, `refused` (and [`ImportError::Refused`]) when its columns do
/// not fit the instrument or coding. Invalid declarations record nothing.
#[tracing::instrument(skip_all, fields(import_id = %job.id))]
pub async fn prepare(db: &Db, job: NewJob) -> Result<screening_import::Model, ImportError> {
    let d = &job.declaration;
    let (instrument, coding) = check_declaration(&d.instrument, &d.coding)?;
    let profile_json =
        serde_json::to_string(&d.profile).map_err(|e| ImportError::File(e.to_string()))?;
    let path = job.path.clone();
    let sheet = d.sheet.clone();
    let profile = d.profile.clone();
    let xlsx_limits = job.xlsx_limits.clone();
    let checked = tokio::task::spawn_blocking(move || -> Result<_, ScreeningError> {
        let format = FileFormat::detect(&path)?;
        let reading = file::Reading {
            format,
            instrument,
            coding,
            sheet: sheet.as_deref(),
            profile: &profile,
            xlsx_limits: &xlsx_limits,
        };
        file::with_rows(&path, reading, |_| ())?;
        let total = match format {
            FileFormat::Csv => Some(file::count_csv_rows(&path, profile.header_row())?),
            FileFormat::Xlsx => None,
        };
        Ok((format, total))
    })
    .await
    .map_err(|e| ImportError::File(format!("checking the file: {e}")))?;
    let (format, rows_total, refusal) = match checked {
        Ok((format, total)) => (format, total, None),
        Err(ScreeningError::Io(e)) => {
            return Err(ImportError::File(format!("reading the file: {e}")));
        }
        Err(e) => (FileFormat::Csv, None, Some(e.to_string())),
    };
    let record = NewImport {
        id: job.id,
        school_id: job.school.id,
        instrument: instrument.id().to_owned(),
        coding: coding.as_str().to_owned(),
        administered_on: d.administered_on,
        file_name: d.file_name.clone(),
        file_format: format.as_str().to_owned(),
        sheet: d.sheet.clone(),
        profile: Some(profile_json),
        spool_path: Some(job.path.display().to_string()),
        state: if refusal.is_some() {
            state::REFUSED
        } else {
            state::QUEUED
        },
        error: refusal.clone(),
        rows_total,
        created_by: job.created_by,
    };
    let txn = begin_write(db).await?;
    store::create(&*txn, record).await?;
    txn.commit().await?;
    if let Some(message) = refusal {
        tracing::info!("screening import refused: columns or coding do not fit");
        return Err(ImportError::Refused {
            import_id: job.id,
            message,
        });
    }
    store::get(db, job.id)
        .await?
        .ok_or(ImportError::NotFound(job.id))
}

/// Counters of a job, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub rows_read: i64,
    pub rows_accepted: i64,
    pub rows_rejected: i64,
    pub alerts_raised: i64,
    pub rows_total: Option<i64>,
}

impl From<&screening_import::Model> for Progress {
    fn from(j: &screening_import::Model) -> Self {
        Self {
            rows_read: j.rows_read,
            rows_accepted: j.rows_accepted,
            rows_rejected: j.rows_rejected,
            alerts_raised: j.alerts_raised,
            rows_total: j.rows_total,
        }
    }
}

/// Percent done of a job: 100 when it ended, otherwise from the row estimate.
pub fn percent_done(job: &screening_import::Model) -> Option<u8> {
    match job.state.as_str() {
        state::DONE | state::FAILED | state::REFUSED => Some(100),
        _ => job.rows_total.map(|total| {
            if total <= 0 {
                0
            } else {
                u8::try_from((job.rows_read.saturating_mul(100) / total).clamp(0, 99)).unwrap_or(99)
            }
        }),
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

/// One row handed from the reader thread to the writer.
enum Item {
    Row {
        row: i64,
        student_no: String,
        outcome: RowOutcome,
    },
    /// A record the CSV parser could not read.
    Unreadable { row: i64, message: String },
    /// The file cannot be read further.
    Fatal(String),
}

impl Item {
    fn row(&self) -> Option<i64> {
        match self {
            Item::Row { row, .. } | Item::Unreadable { row, .. } => Some(*row),
            Item::Fatal(_) => None,
        }
    }

    fn has_suicide_alert(&self) -> bool {
        matches!(self, Item::Row { outcome, .. } if outcome.has_suicide_alert())
    }
}

/// What a job is about, resolved once.
struct JobContext {
    job_id: Uuid,
    school: school::Model,
    instrument: &'static Instrument,
    administered_on: NaiveDate,
    /// The lease this process holds on the job.
    worker: String,
    lease: chrono::Duration,
    /// Sequence of the next `ScreeningResultBatch` (stored with each batch,
    /// so a resumed job goes on where it left off).
    signal_batches: i32,
}

/// Run (or resume) an import job until its file is read, and return the job
/// as it ended. A job that already ended is returned as it is.
#[tracing::instrument(skip_all, fields(import_id = %job_id))]
pub async fn process(
    db: &Db,
    waker: &Waker,
    job_id: Uuid,
    options: &ProcessOptions,
) -> Result<screening_import::Model, ImportError> {
    let job = store::get(db, job_id)
        .await?
        .ok_or(ImportError::NotFound(job_id))?;
    if !matches!(job.state.as_str(), state::QUEUED | state::RUNNING) {
        return Ok(job);
    }
    let lease = chrono::Duration::from_std(options.lease).unwrap_or(chrono::Duration::MAX);
    {
        let txn = begin_write(db).await?;
        let claimed = store::claim(&*txn, job_id, &options.worker, lease).await?;
        txn.commit().await?;
        match claimed {
            store::Lease::Held => {}
            store::Lease::Busy { owner, .. } => {
                return Err(ImportError::Busy {
                    import_id: job_id,
                    owner,
                });
            }
            store::Lease::Ended => {
                return store::get(db, job_id)
                    .await?
                    .ok_or(ImportError::NotFound(job_id));
            }
        }
    }
    // Read again under the lease: the checkpoint is the last committed batch's.
    let job = store::get(db, job_id)
        .await?
        .ok_or(ImportError::NotFound(job_id))?;
    let school = school::Entity::find_by_id(job.school_id)
        .one(db)
        .await?
        .ok_or(StoreError::NotFound("school"))?;
    let (instrument, coding) = match check_declaration(&job.instrument, &job.coding) {
        Ok(checked) => checked,
        Err(e) => return fail(db, job_id, e.to_string()).await,
    };
    let profile: ColumnProfile = match job.profile.as_deref().map(serde_json::from_str) {
        None => ColumnProfile::default(),
        Some(Ok(p)) => p,
        Some(Err(e)) => return fail(db, job_id, format!("stored column profile: {e}")).await,
    };
    let Some(format) = FileFormat::parse(&job.file_format) else {
        return fail(
            db,
            job_id,
            format!("unknown file format `{}`", job.file_format),
        )
        .await;
    };
    let Some(path) = job.spool_path.clone().map(PathBuf::from) else {
        return fail(db, job_id, "the import has no file".to_owned()).await;
    };
    if !path.exists() {
        return fail(
            db,
            job_id,
            "the uploaded file is no longer on disk; import it again".to_owned(),
        )
        .await;
    }
    tracing::info!(
        resume_after_row = job.checkpoint_row,
        "screening import running"
    );

    let batch_rows = options.batch_rows.max(1);
    let (tx, mut rx) = mpsc::channel::<Item>(batch_rows.saturating_mul(2).min(8192));
    let checkpoint = job.checkpoint_row;
    let sheet = job.sheet.clone();
    let reader_path = path.clone();
    let xlsx_limits = options.xlsx_limits.clone();
    let reader = tokio::task::spawn_blocking(move || {
        read_file(
            &reader_path,
            file::Reading {
                format,
                instrument,
                coding,
                sheet: sheet.as_deref(),
                profile: &profile,
                xlsx_limits: &xlsx_limits,
            },
            checkpoint,
            &tx,
        );
    });

    let mut ctx = JobContext {
        job_id,
        school,
        instrument,
        administered_on: job.administered_on,
        worker: options.worker.clone(),
        lease,
        signal_batches: job.signal_batches,
    };
    let mut batch: Vec<Item> = Vec::with_capacity(batch_rows);
    let mut batches = 0usize;
    let mut fatal = None;
    let mut stopped = false;
    // A batch holding a suicide alert takes only the rows already read and
    // waiting (it never waits for the file), then is written at once; other
    // batches fill up to `batch_rows`.
    let mut urgent = false;
    loop {
        let next = if urgent {
            rx.try_recv().ok()
        } else {
            rx.recv().await
        };
        let write_now = match next {
            Some(Item::Fatal(message)) => {
                fatal = Some(message);
                break;
            }
            Some(item) => {
                urgent |= item.has_suicide_alert();
                batch.push(item);
                batch.len() >= batch_rows
            }
            // The file ended (or the reader stopped).
            None if !urgent => break,
            // An alert waits and no further row is at hand: write it now.
            None => true,
        };
        if write_now {
            write_batch(db, waker, &mut ctx, std::mem::take(&mut batch), options).await?;
            urgent = false;
            batches += 1;
            if options.cancel.is_cancelled()
                || options.stop_after_batches.is_some_and(|n| batches >= n)
            {
                stopped = true;
                break;
            }
        }
    }
    drop(rx);
    if stopped {
        // The reader thread ends at its next send; the job stays `running`.
        let _ = reader.await;
        if options.cancel.is_cancelled() {
            // A clean stop gives the lease back: another process may resume
            // the job at once. (A simulated death keeps it until it expires.)
            let txn = begin_write(db).await?;
            store::release_lease(&*txn, job_id, &options.worker).await?;
            txn.commit().await?;
        }
        tracing::info!("screening import paused; it resumes after its checkpoint");
        return store::get(db, job_id)
            .await?
            .ok_or(ImportError::NotFound(job_id));
    }
    if !batch.is_empty() {
        write_batch(db, waker, &mut ctx, batch, options).await?;
    }
    let _ = reader.await;
    let job = match fatal {
        Some(message) => fail(db, job_id, message).await?,
        None => {
            let txn = begin_write(db).await?;
            if !store::renew_lease(&*txn, job_id, &ctx.worker, ctx.lease).await? {
                txn.rollback().await?;
                return Err(ImportError::LeaseLost(job_id));
            }
            store::finish(&*txn, job_id, state::DONE, None).await?;
            txn.commit().await?;
            store::get(db, job_id)
                .await?
                .ok_or(ImportError::NotFound(job_id))?
        }
    };
    if options.delete_file_when_done
        && let Err(e) = std::fs::remove_file(&path)
    {
        tracing::warn!(error = %e, "could not delete the spooled file");
    }
    tracing::info!(
        state = %job.state,
        rows = job.rows_read,
        accepted = job.rows_accepted,
        rejected = job.rows_rejected,
        alerts = job.alerts_raised,
        "screening import ended"
    );
    Ok(job)
}

pub(crate) async fn fail(
    db: &Db,
    job_id: Uuid,
    message: String,
) -> Result<screening_import::Model, ImportError> {
    tracing::warn!("screening import failed");
    let txn = begin_write(db).await?;
    store::finish(&*txn, job_id, state::FAILED, Some(message)).await?;
    txn.commit().await?;
    store::get(db, job_id)
        .await?
        .ok_or(ImportError::NotFound(job_id))
}

/// The reader thread: stream the file, score each row after the checkpoint,
/// and hand it over. Returns when the file ends, it cannot be read, or the
/// writer is gone.
fn read_file(path: &Path, reading: file::Reading<'_>, checkpoint: i64, tx: &mpsc::Sender<Item>) {
    let coding = reading.coding;
    let instrument = reading.instrument;
    let visited = file::with_rows(path, reading, |rows| {
        for next in rows {
            let item = match next {
                Ok(source) => {
                    let row = i64::try_from(source.row_number).unwrap_or(i64::MAX);
                    if row <= checkpoint {
                        continue;
                    }
                    let student_no = source.student_no.clone();
                    let outcome = instrument.score_row(&source.into_answers(coding));
                    Item::Row {
                        row,
                        student_no,
                        outcome,
                    }
                }
                Err(ScreeningError::Csv { row, source })
                    if !matches!(source.kind(), csv::ErrorKind::Io(_)) =>
                {
                    let row = i64::try_from(row).unwrap_or(i64::MAX);
                    if row <= checkpoint {
                        continue;
                    }
                    Item::Unreadable {
                        row,
                        message: format!("unreadable CSV record: {source}"),
                    }
                }
                Err(e) => Item::Fatal(e.to_string()),
            };
            let fatal = matches!(item, Item::Fatal(_));
            if tx.blocking_send(item).is_err() || fatal {
                return;
            }
        }
    });
    if let Err(e) = visited {
        let _ = tx.blocking_send(Item::Fatal(e.to_string()));
    }
}

/// A signal of one row, before it is written: alone (a suicide alert, at
/// once) or in the batch's `ScreeningResultBatch`.
struct PendingSignal {
    event_id: String,
    partition: u32,
    result: v1::ScreeningResultRecorded,
    alone: bool,
}

/// What one row becomes.
struct RowRecord {
    result: NewResult,
    errors: Vec<NewRowError>,
    event: Option<PendingSignal>,
    dead_letter: Option<NewDeadLetter>,
    accepted: bool,
    alert: bool,
}

fn flag_names(flags: &[sanyu_screening::Flag]) -> Vec<String> {
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
async fn mark_worse_than_previous(
    txn: &impl sanyu_store::sea_orm::ConnectionTrait,
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

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Decide what one row becomes: its result, its errors, and its signal (a
/// student on the roster) or dead letter (a suicide alert for a student
/// number that is not).
fn assess(ctx: &JobContext, item: Item, student: Option<&student::Model>) -> Option<RowRecord> {
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

/// The event id of a screening signal: one per student, instrument,
/// administration and level, whichever import (or row) carries it.
pub fn signal_event_id(
    school_code: &str,
    student_id: Uuid,
    instrument: &str,
    administered_on: NaiveDate,
    level: RiskLevel,
) -> String {
    format!(
        "screening:{school_code}:{student_id}:{instrument}:{administered_on}:{}",
        level.as_str()
    )
}

#[allow(clippy::too_many_arguments)]
fn signal(
    ctx: &JobContext,
    student: &student::Model,
    result_id: Uuid,
    level: RiskLevel,
    band: Option<String>,
    flags: Vec<String>,
    rejected: bool,
    alert: bool,
) -> PendingSignal {
    let partition = student_partition(student.id);
    let event_id = signal_event_id(
        &ctx.school.code,
        student.id,
        ctx.instrument.id(),
        ctx.administered_on,
        level,
    );
    let administered_at = ctx.administered_on.and_time(NaiveTime::MIN).and_utc();
    PendingSignal {
        result: v1::ScreeningResultRecorded {
            result_id: result_id.to_string(),
            import_id: ctx.job_id.to_string(),
            student_id: student.id.to_string(),
            instrument: ctx.instrument.id().to_owned(),
            band: band.unwrap_or_default(),
            flags,
            administered_at: Some(sanyu_events::timestamp(administered_at)),
            suggested_level: sanyu_events::level_to_proto(level) as i32,
            rejected,
            signal_id: String::new(),
        },
        event_id,
        partition,
        alone: alert,
    }
}

/// The outbox row of a signal that travels alone (a suicide alert): its
/// envelope's event id is the signal id.
fn alone_event(ctx: &JobContext, signal: PendingSignal, now: DateTime<Utc>) -> OutboxEvent {
    let envelope = sanyu_events::envelope(
        signal.event_id.clone(),
        now,
        ctx.school.code.clone(),
        signal.partition,
        Payload::ScreeningResult(signal.result),
    );
    OutboxEvent {
        subject: subjects::screening_result(&ctx.school.code, signal.partition),
        payload: sanyu_events::encode(&envelope),
        event_id: signal.event_id,
        traceparent: sanyu_platform::trace::current_traceparent(),
    }
}

/// The event id of an import's `sequence`th `ScreeningResultBatch`: the same
/// whichever process writes it (the sequence is stored with each batch).
pub fn batch_event_id(import_id: Uuid, sequence: u32) -> String {
    format!("screening.batch:{import_id}:{sequence}")
}

/// The outbox row of a batch's other signals: one `ScreeningResultBatch`,
/// each result carrying its own signal id.
fn batch_event(ctx: &JobContext, signals: Vec<PendingSignal>, now: DateTime<Utc>) -> OutboxEvent {
    let sequence = u32::try_from(ctx.signal_batches).unwrap_or(u32::MAX);
    let event_id = batch_event_id(ctx.job_id, sequence);
    let results = signals
        .into_iter()
        .map(|s| v1::ScreeningResultRecorded {
            signal_id: s.event_id,
            ..s.result
        })
        .collect();
    let envelope = sanyu_events::envelope(
        event_id.clone(),
        now,
        ctx.school.code.clone(),
        0,
        Payload::ScreeningBatch(v1::ScreeningResultBatch {
            import_id: ctx.job_id.to_string(),
            sequence,
            results,
        }),
    );
    OutboxEvent {
        subject: subjects::screening_batch(&ctx.school.code),
        payload: sanyu_events::encode(&envelope),
        event_id,
        traceparent: sanyu_platform::trace::current_traceparent(),
    }
}

/// Write one batch in one transaction: results, errors, signals, dead letters,
/// progress and checkpoint.
async fn write_batch(
    db: &Db,
    waker: &Waker,
    ctx: &mut JobContext,
    batch: Vec<Item>,
    options: &ProcessOptions,
) -> Result<(), ImportError> {
    let rows: Vec<i64> = batch.iter().filter_map(Item::row).collect();
    let Some(checkpoint_row) = rows.iter().max().copied() else {
        return Ok(());
    };
    let txn = begin_write(db).await?;
    // Fenced by the lease: a process whose lease passed on writes nothing.
    if !store::renew_lease(&*txn, ctx.job_id, &ctx.worker, ctx.lease).await? {
        txn.rollback().await?;
        return Err(ImportError::LeaseLost(ctx.job_id));
    }
    let stored = store::stored_rows(&*txn, ctx.job_id, &rows).await?;
    let batch: Vec<Item> = batch
        .into_iter()
        .filter(|i| i.row().is_some_and(|r| !stored.contains(&r)))
        .collect();
    let numbers: BTreeSet<String> = batch
        .iter()
        .filter_map(|i| match i {
            Item::Row { student_no, .. } if !student_no.is_empty() => Some(student_no.clone()),
            _ => None,
        })
        .collect();
    let students: HashMap<String, student::Model> =
        store::students_by_no(&*txn, ctx.school.id, &numbers)
            .await?
            .into_iter()
            .map(|s| (s.student_no.clone(), s))
            .collect();
    let mut progress = BatchProgress {
        checkpoint_row,
        ..BatchProgress::default()
    };
    let mut results = Vec::with_capacity(batch.len());
    let mut errors = Vec::new();
    let mut events = Vec::new();
    let mut batched = Vec::new();
    let mut letters = Vec::new();
    let now = Utc::now();
    for item in batch {
        let student = match &item {
            Item::Row { student_no, .. } => students.get(student_no),
            _ => None,
        };
        let Some(record) = assess(ctx, item, student) else {
            continue;
        };
        progress.rows_read += 1;
        if record.accepted {
            progress.rows_accepted += 1;
        } else {
            progress.rows_rejected += 1;
        }
        if record.alert {
            progress.alerts_raised += 1;
        }
        results.push(record.result);
        errors.extend(record.errors);
        match record.event {
            Some(signal) if signal.alone => events.push(alone_event(ctx, signal, now)),
            Some(signal) => batched.push(signal),
            None => {}
        }
        letters.extend(record.dead_letter);
    }
    if !batched.is_empty() {
        events.push(batch_event(ctx, batched, now));
        progress.signal_batches = 1;
    }
    mark_worse_than_previous(&*txn, ctx, &mut results, options.worse_margin_percent).await?;
    let wake = !events.is_empty();
    store::record_batch(&*txn, ctx.job_id, results, errors, progress).await?;
    outbox::enqueue_all(&*txn, events).await?;
    for letter in letters {
        tracing::warn!(
            "screening suicide alert for a student number not on the roster: dead letter recorded"
        );
        dead_letters::record(&*txn, letter).await?;
    }
    txn.commit().await?;
    ctx.signal_batches += progress.signal_batches;
    if wake {
        waker.wake();
    }
    if let Some(report) = &options.progress
        && let Some(job) = store::get(db, ctx.job_id).await?
    {
        report(Progress::from(&job));
    }
    Ok(())
}

/// The row errors of an import as CSV (`row,column,reason`), in file order.
pub async fn errors_csv(db: &Db, import_id: Uuid) -> Result<Vec<u8>, ImportError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| ImportError::File(format!("writing CSV: {e}"));
    out.write_record(["row", "column", "reason"]).map_err(io)?;
    let mut after = (0i64, -1i32);
    loop {
        let page = store::row_errors(db, import_id, after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = (last.row_number, last.seq);
        for e in &page {
            out.write_record([e.row_number.to_string().as_str(), &e.column, &e.reason])
                .map_err(io)?;
        }
    }
    out.into_inner()
        .map_err(|e| ImportError::File(format!("writing CSV: {e}")))
}
