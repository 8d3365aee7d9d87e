//! Imports in the background of a long-running process (the gateway): one at
//! a time, resumed after a restart, stopped cleanly at shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sanyu_platform::relay::Waker;
use sanyu_store::Db;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::{ProcessOptions, fail, process};

/// Runs import jobs on this process's tasks.
#[derive(Clone)]
pub struct Runner {
    db: Db,
    waker: Waker,
    /// Where uploaded files wait until their import ends.
    pub spool_dir: PathBuf,
    /// Largest file accepted over HTTP.
    pub upload_limit_bytes: usize,
    batch_rows: usize,
    worse_margin_percent: u32,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// One import at a time: the database's writer (and the rules engine
    /// behind it) is the bottleneck, and memory stays at one batch.
    permits: Arc<Semaphore>,
}

impl Runner {
    /// Mark results worse than the previous screening by this percentage of the range.
    pub fn with_worse_margin_percent(mut self, percent: u32) -> Self {
        self.worse_margin_percent = percent;
        self
    }

    pub fn new(
        db: Db,
        waker: Waker,
        spool_dir: PathBuf,
        upload_limit_bytes: usize,
        batch_rows: usize,
    ) -> Self {
        Self {
            db,
            waker,
            spool_dir,
            upload_limit_bytes,
            batch_rows,
            worse_margin_percent: ProcessOptions::default().worse_margin_percent,
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            permits: Arc::new(Semaphore::new(1)),
        }
    }

    /// Run a job in the background (retrying transient database failures; a
    /// retried job resumes after its checkpoint).
    pub fn spawn(&self, job_id: Uuid) {
        let this = self.clone();
        self.tracker.spawn(async move {
            let Ok(_permit) = this.permits.acquire().await else {
                return;
            };
            let options = ProcessOptions {
                batch_rows: this.batch_rows,
                delete_file_when_done: true,
                worse_margin_percent: this.worse_margin_percent,
                cancel: this.cancel.clone(),
                ..ProcessOptions::default()
            };
            let mut backoff = Duration::from_millis(500);
            loop {
                if this.cancel.is_cancelled() {
                    return;
                }
                match process(&this.db, &this.waker, job_id, &options).await {
                    Ok(_) => return,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(import_id = %job_id, error = %e, "screening import: retrying");
                        tokio::select! {
                            () = this.cancel.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    Err(e) => {
                        tracing::error!(import_id = %job_id, error = %e, "screening import failed");
                        if let Err(e) = fail(&this.db, job_id, e.to_string()).await {
                            tracing::error!(import_id = %job_id, error = %e, "could not record the failure");
                        }
                        return;
                    }
                }
            }
        });
    }

    /// Take up the jobs a previous run of this process left unfinished (those
    /// whose file is on this machine's disk).
    pub async fn resume_unfinished(&self) {
        match sanyu_store::screening::unfinished(&self.db).await {
            Ok(jobs) => {
                for job in jobs {
                    let local = job
                        .spool_path
                        .as_deref()
                        .is_some_and(|p| std::path::Path::new(p).starts_with(&self.spool_dir));
                    if local {
                        tracing::info!(import_id = %job.id, "resuming screening import");
                        self.spawn(job.id);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list unfinished screening imports"),
        }
    }

    /// Stop: running imports commit their current batch and pause (resumed at
    /// the next start). Waits up to `deadline`.
    pub async fn stop(&self, deadline: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}
