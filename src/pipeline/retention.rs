//! Retention: deletes finished deliveries and processed events older than
//! `outbox.retention_days`, hourly, on a connection of its own, opened for each prune (an hourly
//! job need not hold a schema copy and page cache in between). It runs beside the processor, not
//! inside its loop: a large prune takes a minute and must delay no email, and its batches
//! (`deliveries::prune`) leave the write lock to intake and the processor between them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::db::{self, deliveries, now_unix, turns::WriteTurns};

/// How often old rows are looked for.
const EVERY: Duration = Duration::from_secs(3600);
/// After a failed prune (say, the database stayed locked by a storm of writes): soon again,
/// rather than an hour later with the old rows still there.
const AFTER_FAILURE: Duration = Duration::from_secs(60);

pub struct Retention {
    /// How to open its own write connection: the processor's stays free for its commits.
    pub database: db::Options,
    /// Each batch waits its turn, after intake (`db::turns`).
    pub turns: Arc<WriteTurns>,
    /// Rows older than this go.
    pub keep: Duration,
}

impl Retention {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let wait = match self.prune_once().await {
                true => EVERY,
                false => AFTER_FAILURE,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One prune; false when it failed and should be tried again soon.
    async fn prune_once(&self) -> bool {
        let before = now_unix() - self.keep.as_secs() as i64;
        let (database, turns) = (self.database.clone(), self.turns.clone());
        let pruned = tokio::task::spawn_blocking(move || {
            let conn = db::open_background(&database)?;
            deliveries::prune(&conn, before, &turns)
        })
        .await;
        match pruned {
            Ok(Ok((deliveries, events))) => {
                if deliveries + events > 0 {
                    tracing::info!(
                        deliveries,
                        events,
                        "retention: deleted old deliveries and events"
                    );
                }
                true
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, retry_in_secs = AFTER_FAILURE.as_secs(), "retention: pruning failed");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in_secs = AFTER_FAILURE.as_secs(), "retention: pruning panicked");
                false
            }
        }
    }
}
