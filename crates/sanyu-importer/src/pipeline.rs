//! Running a job: the reader thread streams and scores the file, the writer
//! takes its rows in batches (a suicide alert at once) until the file ends.

use super::*;

/// One row handed from the reader thread to the writer.
pub(crate) enum Item {
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
    pub(crate) fn row(&self) -> Option<i64> {
        match self {
            Item::Row { row, .. } | Item::Unreadable { row, .. } => Some(*row),
            Item::Fatal(_) => None,
        }
    }

    pub(crate) fn has_suicide_alert(&self) -> bool {
        matches!(self, Item::Row { outcome, .. } if outcome.has_suicide_alert())
    }
}

/// What a job is about, resolved once.
pub(crate) struct JobContext {
    pub(crate) job_id: Uuid,
    pub(crate) school: school::Model,
    pub(crate) instrument: &'static Instrument,
    pub(crate) administered_on: NaiveDate,
    /// The lease this process holds on the job.
    pub(crate) worker: String,
    pub(crate) lease: chrono::Duration,
    /// Sequence of the next `ScreeningResultBatch` (stored with each batch,
    /// so a resumed job goes on where it left off).
    pub(crate) signal_batches: i32,
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
    let school = sanyu_store::roster::school_by_id(db, job.school_id)
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
pub(crate) fn read_file(
    path: &Path,
    reading: file::Reading<'_>,
    checkpoint: i64,
    tx: &mpsc::Sender<Item>,
) {
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
