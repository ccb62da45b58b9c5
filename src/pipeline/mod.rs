//! The event processor: turns stored events into deliveries. It wakes when intake commits new
//! events (no polling delay), works in batches, and commits each batch's outcomes in one
//! transaction, each delivery row together with its event's new state, so nothing falls
//! between two steps. After a restart it resumes from the rows: pending events are still pending.

pub mod prepare;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{watch, Notify};

use crate::db::deliveries::{self, Inserted, Status};
use crate::db::events::{self, StoredEvent};
use crate::db::{self, integrations, now_unix, templates};
use crate::error::classify_db_error;
use crate::Error;
use prepare::{Outcome, Preparer};

/// Events prepared per batch; bounds memory and the size of one transaction.
const BATCH: usize = 64;
/// The longest the processor sleeps without looking at the database.
const IDLE_CHECK: Duration = Duration::from_secs(60);

pub struct Processor {
    pub preparer: Arc<Preparer>,
    /// The processor's own write connection.
    pub conn: Arc<Mutex<Connection>>,
    /// Notified by intake after it commits new events.
    pub new_events: Arc<Notify>,
    /// Notified after deliveries are queued, to wake the sender.
    pub new_deliveries: Arc<Notify>,
    pub smtp_configured: bool,
    /// How long an event whose lookups keep failing is retried before it is marked failed.
    pub max_retry: Duration,
    /// Finished deliveries and processed events older than this are deleted, checked hourly.
    pub retention: Option<Duration>,
}

impl Processor {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut next_prune = std::time::Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            if let Some(keep) = self
                .retention
                .filter(|_| std::time::Instant::now() >= next_prune)
            {
                next_prune += Duration::from_secs(3600);
                self.prune(keep).await;
            }
            let wait = match self.run_batch().await {
                Ok(0) => self.until_next_due().await,
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "event processor: batch failed, retrying in 1 s");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.new_events.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn prune(&self, keep: Duration) {
        let before = now_unix() - keep.as_secs() as i64;
        let conn = self.conn.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            deliveries::prune(&conn.lock().expect("processor connection"), before)
        })
        .await;
        match pruned {
            Ok(Ok((deliveries, events))) if deliveries + events > 0 => {
                tracing::info!(
                    deliveries,
                    events,
                    "retention: deleted old deliveries and events"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention: pruning failed"),
            Err(e) => tracing::error!(error = %e, "retention: pruning panicked"),
        }
    }

    async fn until_next_due(&self) -> Duration {
        match db::call(&self.preparer.pool, events::next_due_at).await {
            Ok(Some(at)) => {
                Duration::from_secs((at - now_unix()).clamp(0, IDLE_CHECK.as_secs() as i64) as u64)
            }
            _ => IDLE_CHECK,
        }
    }

    /// Prepares and records one batch of due events; returns how many it handled.
    pub async fn run_batch(&self) -> Result<usize, Error> {
        let now = now_unix();
        let due = db::call(&self.preparer.pool, move |c| events::due(c, now, BATCH)).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let integrations: HashMap<String, integrations::Integration> =
            db::call(&self.preparer.pool, integrations::list)
                .await?
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect();
        let templates = db::call(&self.preparer.pool, templates::list).await?;
        let mut outcomes = Vec::with_capacity(due.len());
        for event in due {
            let outcome = match integrations.get(&event.integration_id) {
                Some(integration) => {
                    self.preparer
                        .prepare(integration, &templates, Some(event.id), &event.payload)
                        .await
                }
                None => Outcome::Ignore("its integration was removed".into()),
            };
            outcomes.push((event, outcome));
        }
        let handled = outcomes.len();
        let conn = self.conn.clone();
        let (smtp_configured, max_retry) = (self.smtp_configured, self.max_retry);
        let queued = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().expect("processor connection");
            record(&mut conn, outcomes, smtp_configured, max_retry)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        if queued > 0 {
            self.new_deliveries.notify_waiters();
        }
        Ok(handled)
    }
}

/// Commits a batch's outcomes in one transaction; returns how many deliveries were queued.
fn record(
    conn: &mut Connection,
    outcomes: Vec<(StoredEvent, Outcome)>,
    smtp_configured: bool,
    max_retry: Duration,
) -> Result<usize, Error> {
    let now = now_unix();
    let tx = conn.transaction().map_err(classify_db_error)?;
    let mut queued = 0;
    for (event, outcome) in outcomes {
        match outcome {
            Outcome::Delivery(mut delivery) => {
                if delivery.status == Status::Queued && !smtp_configured {
                    delivery.note = Some(WAITING_FOR_SMTP.to_owned());
                }
                match deliveries::insert(&tx, &delivery, now)? {
                    Inserted::New(id) => {
                        let (state, detail) = match delivery.status {
                            Status::Queued => {
                                queued += 1;
                                (
                                    "queued",
                                    format!(
                                        "delivery {id} to {}",
                                        delivery.recipient.as_deref().unwrap_or("?")
                                    ),
                                )
                            }
                            Status::Failed => ("failed", delivery.note.clone().unwrap_or_default()),
                            _ => ("skipped", delivery.note.clone().unwrap_or_default()),
                        };
                        events::finish(&tx, event.id, state, &detail, now)?;
                        log_outcome(&event, state, &detail);
                    }
                    Inserted::AlreadyCovered(id) => {
                        let detail = format!(
                            "same business fact ({}) as delivery {id}: not emailed twice",
                            delivery.business_key
                        );
                        events::finish(&tx, event.id, "skipped", &detail, now)?;
                        log_outcome(&event, "skipped", &detail);
                    }
                }
            }
            Outcome::Ignore(reason) => {
                events::finish(&tx, event.id, "ignored", &reason, now)?;
                log_outcome(&event, "ignored", &reason);
            }
            Outcome::Disconnect(reason) => {
                integrations::set_status(&tx, &event.integration_id, "disconnected")?;
                events::finish(&tx, event.id, "ignored", &reason, now)?;
                tracing::warn!(integration = %event.integration_id, "{reason}");
            }
            Outcome::Retry(reason) => {
                let age = Duration::from_secs((now - event.received_at).max(0) as u64);
                if age > max_retry {
                    let detail = format!(
                        "gave up after {} attempts: {reason}",
                        event.processing_attempts + 1
                    );
                    events::finish(&tx, event.id, "failed", &detail, now)?;
                    log_outcome(&event, "failed", &detail);
                } else {
                    let attempt = u32::try_from(event.processing_attempts + 1).unwrap_or(u32::MAX);
                    let wait = crate::backoff::delay(
                        attempt,
                        Duration::from_secs(30),
                        Duration::from_secs(3600),
                    );
                    events::postpone(&tx, event.id, &reason, now + wait.as_secs() as i64)?;
                    tracing::warn!(event = %event.stripe_event_id, retry_in_secs = wait.as_secs(), "{reason}");
                }
            }
        }
    }
    tx.commit().map_err(classify_db_error)?;
    Ok(queued)
}

/// Shown on deliveries that wait because no relay is configured.
pub const WAITING_FOR_SMTP: &str =
    "waiting for SMTP settings: set smtp.host and smtp.from_address, then restart";

fn log_outcome(event: &StoredEvent, state: &str, detail: &str) {
    match state {
        "failed" => {
            tracing::warn!(event = %event.stripe_event_id, event_type = %event.event_type, "not emailed: {detail}")
        }
        _ => {
            tracing::info!(event = %event.stripe_event_id, event_type = %event.event_type, state, "{detail}")
        }
    }
}
