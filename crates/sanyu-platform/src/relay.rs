//! The outbox relay: publishes committed outbox rows to JetStream, in order,
//! awaiting every ack before marking them published. Writers in the same
//! process wake it right after their commit, so the path has no polling delay;
//! a slow idle poll picks up rows written by other processes or left by a crash.

use std::sync::Arc;
use std::time::Duration;

use sanyu_store::entities::outbox as outbox_row;
use sanyu_store::{Db, outbox};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::nats::Backbone;
use crate::{PlatformError, Result};

const BATCH: u64 = 256;

/// Wakes the relay after a commit that wrote outbox rows.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct OutboxRelay {
    db: Db,
    backbone: Backbone,
    waker: Waker,
    idle_poll: Duration,
    hold: bool,
}

/// Fault injection for the crash tests: the relay publishes nothing, as if the
/// process died between the commit and the publish. Never set in production.
pub const FAULT_HOLD_OUTBOX: &str = "SANYU_FAULT_HOLD_OUTBOX";

impl OutboxRelay {
    pub fn new(db: Db, backbone: Backbone, waker: Waker) -> Self {
        Self {
            db,
            backbone,
            waker,
            idle_poll: Duration::from_millis(500),
            hold: std::env::var_os(FAULT_HOLD_OUTBOX).is_some(),
        }
    }

    pub fn with_idle_poll(mut self, idle_poll: Duration) -> Self {
        self.idle_poll = idle_poll;
        self
    }

    /// Run until cancelled; on cancel, publish what is pending once more.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            match self.publish_pending().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: publish failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    continue;
                }
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.waker.0.notified() => {}
                () = tokio::time::sleep(self.idle_poll) => {}
            }
        }
        if let Err(e) = self.publish_pending().await {
            tracing::warn!(error = %e, "outbox relay: final flush failed; rows stay for the next start");
        }
    }

    /// Publish one batch; returns how many rows were published.
    pub async fn publish_pending(&self) -> Result<usize> {
        if self.hold {
            return Ok(0);
        }
        if sanyu_store::db::supports_row_locks(&self.db) {
            // PostgreSQL: rows locked with SKIP LOCKED, so replicas' relays
            // take different rows (a write transaction there is a plain
            // `BEGIN`; no writer lock is taken).
            let txn = sanyu_store::begin_write(&self.db)
                .await
                .map_err(store_err)?;
            let rows = outbox::claim_batch(&*txn, BATCH).await?;
            let ids = self.publish_rows(&rows).await?;
            outbox::mark_published(&*txn, &ids).await?;
            txn.commit().await.map_err(store_err)?;
            Ok(ids.len())
        } else {
            // SQLite: no write lock is held across the network; a row published
            // twice by two processes is removed by JetStream's dedup window.
            let rows = outbox::claim_batch(&self.db, BATCH).await?;
            let ids = self.publish_rows(&rows).await?;
            if !ids.is_empty() {
                // Through the process's writer lock, like every other write.
                let txn = sanyu_store::begin_write(&self.db)
                    .await
                    .map_err(store_err)?;
                outbox::mark_published(&*txn, &ids).await?;
                txn.commit().await.map_err(store_err)?;
            }
            Ok(ids.len())
        }
    }

    async fn publish_rows(&self, rows: &[outbox_row::Model]) -> Result<Vec<i64>> {
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let ack = self
                .backbone
                .publish_async(
                    &row.subject,
                    &row.event_id,
                    row.payload.clone(),
                    row.traceparent.as_deref(),
                )
                .await?;
            pending.push((row.id, ack));
        }
        let mut published = Vec::with_capacity(pending.len());
        for (id, ack) in pending {
            match ack.await {
                Ok(_) => published.push(id),
                Err(e) => {
                    // Stop at the first failure: later rows stay unpublished and
                    // are retried in order.
                    tracing::warn!(error = %e, "outbox relay: publish not acknowledged");
                    break;
                }
            }
        }
        Ok(published)
    }
}

fn store_err(e: sanyu_store::DbErr) -> PlatformError {
    PlatformError::Store(sanyu_store::StoreError::Db(e))
}
