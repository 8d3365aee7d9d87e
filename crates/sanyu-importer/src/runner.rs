//! Imports in the background of a long-running process (the gateway): one at
//! a time, resumed after a restart, stopped cleanly at shutdown.
//!
//! Several gateways may share one database (and one spool directory): a job
//! is run by the process holding its lease ([`ProcessOptions::lease`]), so two
//! gateways never run one import at once, and [`Runner::watch`] takes up jobs
//! whose lease expired (their gateway died) or was given back at shutdown.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sanyu_platform::relay::Waker;
use sanyu_screening::XlsxLimits;
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
    /// What an XLSX file may unpack to (checked at upload and by the import).
    pub xlsx_limits: XlsxLimits,
    batch_rows: usize,
    worse_margin_percent: u32,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// One import at a time: the database's writer (and the rules engine
    /// behind it) is the bottleneck, and memory stays at one batch.
    permits: Arc<Semaphore>,
    /// This process's name on the leases it holds.
    worker: String,
    lease: Duration,
    /// Jobs this process has spawned and not yet finished.
    in_hand: Arc<Mutex<HashSet<Uuid>>>,
}

impl Runner {
    /// Mark results worse than the previous screening by this percentage of the range.
    pub fn with_worse_margin_percent(mut self, percent: u32) -> Self {
        self.worse_margin_percent = percent;
        self
    }

    /// What an XLSX file may unpack to.
    pub fn with_xlsx_limits(mut self, limits: XlsxLimits) -> Self {
        self.xlsx_limits = limits;
        self
    }

    /// How long a job's lease lasts without a committed batch.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
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
            xlsx_limits: XlsxLimits::default(),
            batch_rows,
            worse_margin_percent: ProcessOptions::default().worse_margin_percent,
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            permits: Arc::new(Semaphore::new(1)),
            worker: crate::worker_name(),
            lease: ProcessOptions::default().lease,
            in_hand: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// This process's name on the leases it holds.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// How long a job's lease lasts without a committed batch.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Run a job in the background (retrying transient database failures; a
    /// retried job resumes after its checkpoint).
    pub fn spawn(&self, job_id: Uuid) {
        let this = self.clone();
        if let Ok(mut in_hand) = self.in_hand.lock()
            && !in_hand.insert(job_id)
        {
            return;
        }
        self.tracker.spawn(async move {
            this.run_job(job_id).await;
            if let Ok(mut in_hand) = this.in_hand.lock() {
                in_hand.remove(&job_id);
            }
        });
    }

    async fn run_job(&self, job_id: Uuid) {
        let this = self;
        let Ok(_permit) = this.permits.acquire().await else {
            return;
        };
        let options = ProcessOptions {
            batch_rows: this.batch_rows,
            delete_file_when_done: true,
            worse_margin_percent: this.worse_margin_percent,
            cancel: this.cancel.clone(),
            worker: this.worker.clone(),
            lease: this.lease,
            xlsx_limits: this.xlsx_limits.clone(),
            ..ProcessOptions::default()
        };
        let mut backoff = Duration::from_millis(500);
        loop {
            if this.cancel.is_cancelled() {
                return;
            }
            match process(&this.db, &this.waker, job_id, &options).await {
                Ok(_) => return,
                Err(e) if e.is_elsewhere() => {
                    tracing::info!(import_id = %job_id, reason = %e, "screening import runs elsewhere");
                    return;
                }
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
    }

    /// Take up unfinished jobs that nobody holds a live lease on (left by a
    /// previous run of this process, by a gateway that stopped or died) and
    /// whose file is in this process's spool directory. Returns how many
    /// were spawned.
    pub async fn resume_unfinished(&self) -> usize {
        let jobs = match sanyu_store::screening::unleased(&self.db, chrono::Utc::now()).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "could not list unfinished screening imports");
                return 0;
            }
        };
        let mut spawned = 0;
        for job in jobs {
            // Only a spooled file (never an operator's own file, which the
            // job would delete), and only one that is on this machine.
            let local = job.spool_path.as_deref().is_some_and(|p| {
                let p = std::path::Path::new(p);
                p.starts_with(&self.spool_dir) && p.exists()
            });
            if local {
                tracing::info!(import_id = %job.id, "taking up screening import");
                self.spawn(job.id);
                spawned += 1;
            }
        }
        spawned
    }

    /// Until stopped, look every `every` for jobs to take up
    /// ([`Self::resume_unfinished`]): those of a gateway that died resume here
    /// once their lease expires.
    pub fn watch(&self, every: Duration) {
        let this = self.clone();
        self.tracker.spawn(async move {
            loop {
                this.resume_unfinished().await;
                tokio::select! {
                    () = this.cancel.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
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
