//! The sender: a few workers, each with its own reused SMTP connection, claim due deliveries,
//! send them, and record each outcome on its row at once. A transient failure (relay down, 4xx)
//! is retried with backoff until `outbox.max_retry_hours`; a permanent one (5xx, bad address)
//! fails at once with the relay's reply. Claims are leases: rows claimed by a process that died
//! become due again when the lease passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{watch, Notify};

use super::smtp::{Mailer, OutgoingEmail, SendError, SmtpConnection};
use crate::db::deliveries::{self, Delivery};
use crate::db::{self, integrations, now_unix, Pool};
use crate::Error;

/// Rows claimed at a time by one worker.
const CLAIM_BATCH: usize = 32;
/// The longest a worker sleeps without looking at the database; bounds how long a delivery
/// queued by another process (`mailmycustomer log resend`) waits.
const IDLE_CHECK: Duration = Duration::from_secs(2);

pub struct Sender {
    pub pool: Pool,
    /// The sender's write connection (claims and outcomes), opened with `synchronous=NORMAL`:
    /// a write lost to a power cut can only make a message go out again, never lose one.
    pub conn: Arc<Mutex<Connection>>,
    pub mailer: Mailer,
    /// Notified when the processor queues deliveries.
    pub wake: Arc<Notify>,
    pub workers: usize,
    /// At most this many messages per second over all workers (None: no limit).
    pub rate_limit: Option<u32>,
    pub max_retry: Duration,
    pub lease: Duration,
    pub retry_base: Duration,
    /// The next free send slot when rate limited.
    pub next_slot: Mutex<Option<Instant>>,
}

impl Sender {
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..self.workers.max(1) {
            workers.spawn(self.clone().worker(n, stop.clone()));
        }
        while workers.join_next().await.is_some() {}
    }

    async fn worker(self: Arc<Self>, n: usize, mut stop: watch::Receiver<bool>) {
        let mut smtp: Option<SmtpConnection> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            // Registered before looking for work, so a wake-up between the look and the wait
            // is not missed.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claimed = self.claim().await;
            let wait = match claimed {
                Ok(batch) if !batch.is_empty() => {
                    self.send_batch(&mut smtp, batch, &stop).await;
                    continue;
                }
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    tracing::error!(worker = n, error = %e, "outbox: cannot claim deliveries, retrying in 1 s");
                    Duration::from_secs(1)
                }
            };
            // An idle relay connection would be dropped by the server anyway; close it cleanly.
            if let Some(connection) = smtp.take() {
                connection.quit().await;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        if let Some(connection) = smtp {
            connection.quit().await;
        }
    }

    async fn claim(&self) -> Result<Vec<Delivery>, Error> {
        let conn = self.conn.clone();
        let lease = self.lease.as_secs() as i64;
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().expect("sender connection");
            deliveries::claim_due(&conn, now_unix(), lease, CLAIM_BATCH)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    async fn until_next_due(&self) -> Duration {
        match db::call(&self.pool, deliveries::next_due_at).await {
            Ok(Some(at)) => {
                Duration::from_secs((at - now_unix()).clamp(0, IDLE_CHECK.as_secs() as i64) as u64)
            }
            _ => IDLE_CHECK,
        }
    }

    async fn send_batch(
        &self,
        smtp: &mut Option<SmtpConnection>,
        batch: Vec<Delivery>,
        stop: &watch::Receiver<bool>,
    ) {
        let from_addresses: HashMap<String, Option<String>> =
            db::call(&self.pool, integrations::list)
                .await
                .map(|all| all.into_iter().map(|i| (i.id, i.from_address)).collect())
                .unwrap_or_default();
        let started = Instant::now();
        let mut rows = batch.into_iter();
        for delivery in rows.by_ref() {
            // Rows whose lease runs out before they are sent would be claimed by another worker
            // too; hand them back instead. So would rows held across a shutdown.
            if started.elapsed() > self.lease / 2 || *stop.borrow() {
                self.release(delivery).await;
                break;
            }
            let from = from_addresses
                .get(&delivery.integration_id)
                .cloned()
                .flatten();
            let result = self.send_one(smtp, &delivery, from.as_deref()).await;
            self.record(&delivery, result).await;
        }
        for delivery in rows {
            self.release(delivery).await;
        }
    }

    async fn send_one(
        &self,
        smtp: &mut Option<SmtpConnection>,
        d: &Delivery,
        from: Option<&str>,
    ) -> Result<String, SendError> {
        let (Some(to), Some(subject)) = (d.recipient.as_deref(), d.subject.as_deref()) else {
            return Err(SendError::Permanent {
                message: "the delivery has no recipient or subject".into(),
            });
        };
        self.wait_for_rate_limit().await;
        if !smtp.as_ref().is_some_and(SmtpConnection::is_usable) {
            *smtp = Some(self.mailer.connect().await?);
        }
        let connection = smtp.as_mut().expect("connected above");
        let email = OutgoingEmail {
            delivery_id: d.id,
            created_at: d.created_at,
            to,
            to_name: d.recipient_name.as_deref(),
            from_address: from,
            subject,
            html: d.html.as_deref().unwrap_or_default(),
            text: d.text.as_deref().unwrap_or_default(),
        };
        connection.send(&self.mailer, &email).await
    }

    async fn wait_for_rate_limit(&self) {
        let Some(per_sec) = self.rate_limit.filter(|r| *r > 0) else {
            return;
        };
        let slot = {
            let mut next = self.next_slot.lock().expect("rate limiter");
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + Duration::from_secs(1) / per_sec);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }

    async fn record(&self, d: &Delivery, result: Result<String, SendError>) {
        let now = now_unix();
        let (id, attempts, created_at) = (d.id, d.attempts, d.created_at);
        let (max_retry, retry_base) = (self.max_retry, self.retry_base);
        let conn = self.conn.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().expect("sender connection");
            match &result {
                Ok(message_id) => deliveries::mark_sent(&conn, id, message_id, now),
                Err(SendError::Permanent { message }) => {
                    deliveries::mark_failed(&conn, id, message)
                }
                Err(SendError::Transient { message }) => {
                    let age = Duration::from_secs((now - created_at).max(0) as u64);
                    if age >= max_retry {
                        let note = format!(
                            "gave up after {attempts} attempts over {} h: {message}",
                            age.as_secs() / 3600
                        );
                        deliveries::mark_failed(&conn, id, &note)
                    } else {
                        let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
                        let wait =
                            crate::backoff::delay(attempt, retry_base, Duration::from_secs(3600));
                        deliveries::mark_retry(
                            &conn,
                            id,
                            message,
                            now + wait.as_secs().max(1) as i64,
                        )
                    }
                }
            }
            .map(|_| result)
        })
        .await;
        match outcome {
            Ok(Ok(Ok(message_id))) => tracing::info!(delivery = id, %message_id, "sent"),
            Ok(Ok(Err(e))) if e.is_permanent() => {
                tracing::warn!(delivery = id, error = %e, "failed permanently")
            }
            Ok(Ok(Err(e))) => tracing::warn!(delivery = id, error = %e, "will retry"),
            // The row stays `sending`; its lease expiring makes it due again.
            Ok(Err(e)) => {
                tracing::error!(delivery = id, error = %e, "outbox: cannot record the outcome")
            }
            Err(e) => tracing::error!(delivery = id, error = %e, "outbox: recording panicked"),
        }
    }

    /// Puts a claimed row back, due now, without counting an attempt.
    async fn release(&self, d: Delivery) {
        let conn = self.conn.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().expect("sender connection");
            deliveries::release(&conn, d.id, now_unix())
        })
        .await;
    }
}
