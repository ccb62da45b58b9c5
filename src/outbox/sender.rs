//! The sender: a few workers, each with its own reused SMTP connection, claim due deliveries,
//! send them, and record each outcome on its row at once, with a row per attempt (when, the
//! relay's reply, how long it took) in the same commit. A worker hands its outcome over and
//! sends the next message meanwhile; the outcomes waiting are committed together (`Outcomes`). A transient failure (relay down, 4xx)
//! is retried with backoff until `outbox.max_retry_hours`; a permanent one (5xx, bad address)
//! fails at once with the relay's reply. Claims are leases under a token of their own: only
//! the worker holding a row's lease records its outcome, and it renews the lease while a slow
//! relay keeps it in one conversation. Rows a dead server was sending are handed back when the
//! next one starts (`serve`, under the database's lock).
//!
//! The SMTP settings come from the effective config, which the settings page can change while
//! serving: the sender then lets each worker finish the message in flight and starts workers
//! with the new settings, so the next message goes through them. Without a relay it sends
//! nothing, and deliveries wait in the outbox marked with why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{oneshot, watch, Notify};

use super::smtp::{reply_code, Mailer, OutgoingEmail, SendError, SmtpConnection};
use crate::config::SmtpConfig;
use crate::db::deliveries::{self, AttemptResult, Delivery, Outcome};
use crate::db::{self, integrations, now_unix, turns::WriteTurns, Pool};
use crate::pipeline::WAITING_FOR_SMTP;
use crate::{Config, Error};

/// Rows claimed at a time by one worker, so that a few queued at once go out side by side
/// over the workers' connections.
const CLAIM_BATCH: usize = 32;
/// Rows claimed at a time by a worker whose last claim came back full: a backlog, which every
/// worker is busy with. Each claim ends with a wait for the batch's outcomes and a write turn for
/// the next claim; larger batches make those gaps rarer (BENCHMARKS.md, "Unpacking contexts
/// kept, and larger claims under a backlog").
const BACKLOG_CLAIM_BATCH: usize = 128;
/// The longest outcomes yield to intake (`db::turns`) before they are recorded between two of
/// its batches: until then a crash would send their emails again.
const OUTCOME_PATIENCE: Duration = Duration::from_millis(20);
/// How long the committing worker lets outcomes gather before recording them, unless
/// `OUTCOMES_ENOUGH` wait already. Without it the four workers' outcomes went in commits of ~4,
/// each rewriting the same index pages; gathered they go ~25 at a time and the outcomes' share
/// of the write lock halves (BENCHMARKS.md, "The write lock after a storm"). A crash in those
/// 2 ms sends their emails again, as a crash before any commit would.
const OUTCOME_GATHER: Duration = Duration::from_millis(2);
/// Outcomes that make a commit worth it at once.
const OUTCOMES_ENOUGH: usize = 16;
/// The longest a worker sleeps without looking at the database; bounds how long a delivery
/// queued by another process (`mailmycustomer log resend`) waits.
const IDLE_CHECK: Duration = Duration::from_secs(2);

pub struct Sender {
    pub pool: Pool,
    /// The sender's write connection (claims and outcomes), opened with `synchronous=NORMAL`:
    /// a write lost to a power cut can only make a message go out again, never lose one.
    pub conn: Arc<Mutex<Connection>>,
    /// Claims wait while webhooks wait to be stored; outcomes go at the next gap
    /// (`db::turns`).
    pub turns: Arc<WriteTurns>,
    /// The effective config; its `smtp` section says where and how to send.
    pub config: watch::Receiver<Arc<Config>>,
    /// Notified when the processor queues deliveries.
    pub wake: Arc<Notify>,
    pub max_retry: Duration,
    pub lease: Duration,
    pub retry_base: Duration,
    /// The next free send slot when rate limited.
    pub next_slot: Mutex<Option<Instant>>,
    /// Outcomes waiting to be recorded.
    pub outcomes: Arc<Outcomes>,
}

/// Outcomes waiting to be recorded. A worker hands its outcome over and goes on sending;
/// whoever finds no commit under way lets outcomes gather for `OUTCOME_GATHER`, commits every
/// outcome waiting in one transaction, then those that came meanwhile in the next. The workers'
/// outcomes then cost one commit, and its index pages are written once, instead of one commit
/// per email.
#[derive(Default)]
pub struct Outcomes {
    queue: Mutex<OutcomeQueue>,
}

#[derive(Default)]
struct OutcomeQueue {
    waiting: Vec<Recording>,
    committing: bool,
}

/// An outcome to record, and who waits to hear whether the row was still held.
struct Recording {
    attempt: Attempt,
    /// Whether the row was still held, or why nothing could be recorded.
    recorded: oneshot::Sender<Result<bool, String>>,
}

/// `deliveries::AttemptResult`, owned, to cross to the committing thread.
struct Attempt {
    id: i64,
    owner: i64,
    sent: Option<String>,
    next_attempt_at: Option<i64>,
    reply: String,
    reply_code: Option<u16>,
    from: String,
    duration_ms: i64,
    now: i64,
}

impl Attempt {
    fn result(&self) -> AttemptResult<'_> {
        let outcome = match (&self.sent, self.next_attempt_at) {
            (Some(message_id), _) => Outcome::Sent { message_id },
            (None, Some(next_attempt_at)) => Outcome::Retry { next_attempt_at },
            (None, None) => Outcome::Failed,
        };
        AttemptResult {
            id: self.id,
            owner: self.owner,
            outcome,
            reply: &self.reply,
            reply_code: self.reply_code,
            from_address: &self.from,
            duration_ms: self.duration_ms,
            now: self.now,
        }
    }
}

/// How many rows a worker claims next, having asked for `asked` and got `got`: a full claim
/// means more rows are due than it took (a backlog), so the next takes more.
fn next_claim_size(asked: usize, got: usize) -> usize {
    if got == asked {
        BACKLOG_CLAIM_BATCH
    } else {
        CLAIM_BATCH
    }
}

/// One attempt's result as the worker saw it: the Message-ID and the relay's reply, or why it
/// failed; the From address it went out with; how long it took.
struct Sent {
    result: Result<(String, String), SendError>,
    from: String,
    took: Duration,
}

/// What the workers sending through one SMTP configuration share.
struct Relay {
    mailer: Mailer,
    /// At most this many messages per second over all workers (None: no limit).
    rate_limit: Option<u32>,
}

impl Sender {
    /// Sends until `stop`, with the SMTP settings of the moment: when they change, the workers
    /// finish the message in flight and hand back the rest of their batch, and workers with the
    /// new settings take over.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut config = self.config.clone();
        let mut stopping = *stop.borrow();
        let mut changed_settings = false;
        while !stopping {
            let smtp = config.borrow_and_update().smtp.clone();
            let (halt, halted) = watch::channel(false);
            let mut workers = tokio::task::JoinSet::new();
            if let Some(relay) = self.relay(&smtp, changed_settings).await {
                for n in 0..smtp.pool_size.max(1) {
                    workers.spawn(self.clone().worker(relay.clone(), n, halted.clone()));
                }
            }
            // Once nobody can change the settings any more, these stay until the stop.
            let mut settings_final = false;
            loop {
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => {
                        stopping = true;
                        break;
                    }
                    changed = config.changed(), if !settings_final => match changed {
                        Ok(()) if config.borrow().smtp != smtp => break,
                        Ok(()) => {}
                        Err(_) => settings_final = true,
                    },
                }
            }
            let _ = halt.send(true);
            while workers.join_next().await.is_some() {}
            changed_settings = true;
        }
    }

    /// The relay to send through, or None without usable SMTP settings (deliveries then wait,
    /// and say so). With `changed` settings, deliveries waiting to retry after a failure are
    /// tried again at once: the new settings may well be the fix.
    async fn relay(&self, smtp: &SmtpConfig, changed: bool) -> Option<Arc<Relay>> {
        if !smtp.is_configured() {
            match db::call(&self.pool, |c| {
                deliveries::note_waiting(c, WAITING_FOR_SMTP)
            })
            .await
            {
                Ok(waiting) => tracing::warn!(
                    waiting,
                    "SMTP is not configured (smtp.host): emails are prepared and wait in the outbox"
                ),
                Err(e) => tracing::error!(error = %e, "cannot mark deliveries as waiting for SMTP"),
            }
            return None;
        }
        // Settings are checked before they are saved or served; this fails only when what they
        // point at changed since (a DKIM key file removed).
        let mailer = match Mailer::new(smtp) {
            Ok(mailer) => mailer,
            Err(e) => {
                tracing::error!(error = %e, "the SMTP settings cannot work: emails wait in the outbox until they are fixed");
                return None;
            }
        };
        let ready = db::call(&self.pool, move |c| {
            deliveries::clear_note(c, WAITING_FOR_SMTP)?;
            match changed {
                true => deliveries::retry_now(c, now_unix()),
                false => Ok(0),
            }
        })
        .await;
        match ready {
            Ok(0) => {}
            Ok(retrying) => tracing::info!(
                retrying,
                "new SMTP settings: deliveries waiting for a retry are tried now"
            ),
            Err(e) => tracing::error!(error = %e, "cannot clear the waiting-for-SMTP notes"),
        }
        tracing::info!(
            relay = %format!("{}:{}", smtp.host, smtp.port),
            connections = smtp.pool_size,
            "sending through SMTP"
        );
        Some(Arc::new(Relay {
            mailer,
            rate_limit: Some(smtp.rate_limit_per_sec).filter(|r| *r > 0),
        }))
    }

    async fn worker(self: Arc<Self>, relay: Arc<Relay>, n: usize, mut stop: watch::Receiver<bool>) {
        let mut smtp: Option<SmtpConnection> = None;
        let mut claim_size = CLAIM_BATCH;
        loop {
            if *stop.borrow() {
                break;
            }
            // Registered before looking for work, so a wake-up between the look and the wait
            // is not missed.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Taken before the claim, so the leases are known to last at least this long.
            let claimed_at = Instant::now();
            let claimed = self.claim(claim_size).await;
            claim_size = next_claim_size(claim_size, claimed.as_ref().map_or(0, Vec::len));
            let wait = match claimed {
                Ok(batch) if !batch.is_empty() => {
                    self.send_batch(&relay, &mut smtp, batch, claimed_at, &stop)
                        .await;
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

    async fn claim(&self, limit: usize) -> Result<Vec<Delivery>, Error> {
        let (conn, turns) = (self.conn.clone(), self.turns.clone());
        let lease = self.lease.as_secs() as i64;
        let since = self.turns.yield_to_intake().await;
        tokio::task::spawn_blocking(move || {
            let _turn = turns.background_turn_since(since);
            let conn = conn.lock().expect("sender connection");
            deliveries::claim_due(&conn, now_unix(), lease, limit)
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
        relay: &Relay,
        smtp: &mut Option<SmtpConnection>,
        batch: Vec<Delivery>,
        started: Instant,
        stop: &watch::Receiver<bool>,
    ) {
        let from_addresses: HashMap<String, Option<String>> =
            db::call(&self.pool, integrations::list)
                .await
                .map(|all| all.into_iter().map(|i| (i.id, i.from_address)).collect())
                .unwrap_or_default();
        let mut rows = batch.into_iter();
        let mut recording = Vec::new();
        for delivery in rows.by_ref() {
            // Only the row in flight has its lease renewed; the rest keep the claim's. Once half
            // of it is gone they go back, for an idle worker to take, as do rows held across a
            // shutdown.
            if started.elapsed() > self.lease / 2 || *stop.borrow() {
                self.release(delivery).await;
                break;
            }
            let from = from_addresses
                .get(&delivery.integration_id)
                .cloned()
                .flatten();
            let sending = Instant::now();
            match self
                .send_leased(relay, smtp, &delivery, from.as_deref(), started)
                .await
            {
                Some(result) => {
                    crate::metrics::smtp_send(&result, sending.elapsed());
                    let sent = Sent {
                        result,
                        from: relay.mailer.from_address(from.as_deref()).to_owned(),
                        took: sending.elapsed(),
                    };
                    recording.push(self.record(&delivery, sent));
                }
                // The conversation was dropped midway, in an unknown state.
                None => *smtp = None,
            }
        }
        for delivery in rows {
            self.release(delivery).await;
        }
        // Recorded before the next claim, so a worker never has more than one batch unrecorded.
        for recorded in recording {
            recorded.await;
        }
    }

    /// Sends one claimed row, renewing its lease every half lease (counted from the claim,
    /// `claimed`) while the relay takes its time. None when the lease was lost meanwhile (the
    /// database was unreachable for longer than half a lease and another worker claimed the
    /// row): the conversation is dropped, and a relay that has not seen the message's final dot
    /// discards it.
    async fn send_leased(
        &self,
        relay: &Relay,
        smtp: &mut Option<SmtpConnection>,
        d: &Delivery,
        from: Option<&str>,
        claimed: Instant,
    ) -> Option<Result<(String, String), SendError>> {
        let send = self.send_one(relay, smtp, d, from);
        tokio::pin!(send);
        let every = self.lease / 2;
        let mut renewal = tokio::time::interval_at((claimed + every).into(), every);
        renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = &mut send => return Some(result),
                _ = renewal.tick() => {
                    if !self.renew(d).await {
                        tracing::warn!(
                            delivery = d.id,
                            "another worker took over this delivery; abandoning this attempt"
                        );
                        return None;
                    }
                }
            }
        }
    }

    /// Extends the lease of `d`; false only when it is known to be lost. A database error keeps
    /// the attempt going (the lease may well still be ours; the outcome is checked on record).
    async fn renew(&self, d: &Delivery) -> bool {
        let (id, owner) = (d.id, d.lease_owner.unwrap_or_default());
        let until = now_unix() + self.lease.as_secs() as i64;
        let (conn, turns) = (self.conn.clone(), self.turns.clone());
        let renewed = tokio::task::spawn_blocking(move || {
            let _turn = turns.prompt_turn();
            deliveries::renew_lease(&conn.lock().expect("sender connection"), id, owner, until)
        })
        .await;
        match renewed {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::error!(delivery = id, error = %e, "outbox: cannot renew a lease");
                true
            }
            Err(e) => {
                tracing::error!(delivery = id, error = %e, "outbox: renewing a lease panicked");
                true
            }
        }
    }

    async fn send_one(
        &self,
        relay: &Relay,
        smtp: &mut Option<SmtpConnection>,
        d: &Delivery,
        from: Option<&str>,
    ) -> Result<(String, String), SendError> {
        let (Some(to), Some(subject)) = (d.recipient.as_deref(), d.subject.as_deref()) else {
            return Err(SendError::Permanent {
                message: "the delivery has no recipient or subject".into(),
            });
        };
        self.wait_for_rate_limit(relay.rate_limit).await;
        if !smtp.as_ref().is_some_and(SmtpConnection::is_usable) {
            *smtp = Some(relay.mailer.connect().await?);
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
        connection.send_replied(&relay.mailer, &email).await
    }

    async fn wait_for_rate_limit(&self, rate_limit: Option<u32>) {
        let Some(per_sec) = rate_limit.filter(|r| *r > 0) else {
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

    /// Records what one attempt came to: the outcome on the row and its `delivery_attempts` row,
    /// in one commit with the other outcomes waiting (`Outcomes`). The outcome is handed over at
    /// once; the returned future says what came of it.
    fn record(&self, d: &Delivery, sent: Sent) -> impl std::future::Future<Output = ()> + 'static {
        let now = now_unix();
        let id = d.id;
        let Sent { result, from, took } = sent;
        let mut attempt = Attempt {
            id,
            owner: d.lease_owner.unwrap_or_default(),
            sent: None,
            next_attempt_at: None,
            reply: String::new(),
            reply_code: None,
            from,
            duration_ms: took.as_millis().try_into().unwrap_or(i64::MAX),
            now,
        };
        match &result {
            Ok((message_id, reply)) => {
                attempt.sent = Some(message_id.clone());
                attempt.reply = reply.clone();
            }
            Err(SendError::Permanent { message }) => attempt.reply = message.clone(),
            Err(SendError::Transient { message }) => {
                let age = Duration::from_secs((now - d.created_at).max(0) as u64);
                if age >= self.max_retry {
                    attempt.reply = format!(
                        "gave up after {} attempts over {} h: {message}",
                        d.attempts,
                        age.as_secs() / 3600
                    );
                } else {
                    let tried = u32::try_from(d.attempts).unwrap_or(u32::MAX);
                    let wait =
                        crate::backoff::delay(tried, self.retry_base, Duration::from_secs(3600));
                    attempt.next_attempt_at = Some(now + wait.as_secs().max(1) as i64);
                    attempt.reply = message.clone();
                }
            }
        }
        // A relay's reply starts with its code; an error quotes it after ": ".
        attempt.reply_code = match &result {
            Ok((_, reply)) => reply.get(..3).and_then(|c| c.parse().ok()),
            Err(e) => reply_code(e.message()),
        };
        let (recorded, outcome) = oneshot::channel();
        let lead = {
            let mut queue = self.outcomes.queue.lock().expect("outcome queue");
            queue.waiting.push(Recording { attempt, recorded });
            !std::mem::replace(&mut queue.committing, true)
        };
        if lead {
            self.commit_outcomes();
        }
        async move {
            match outcome.await {
                // The lease ran out and another worker holds the row now: its outcome stands.
                Ok(Ok(false)) => tracing::warn!(
                    delivery = id,
                    sent = result.is_ok(),
                    "outbox: lost this delivery's lease before recording the outcome; left to its new holder"
                ),
                Ok(Ok(true)) => match result {
                    Ok((message_id, _)) => tracing::info!(delivery = id, %message_id, "sent"),
                    Err(e) if e.is_permanent() => {
                        tracing::warn!(delivery = id, error = %e, "failed permanently")
                    }
                    Err(e) => tracing::warn!(delivery = id, error = %e, "will retry"),
                },
                // The row stays `sending`; its lease expiring makes it due again.
                Ok(Err(e)) => {
                    tracing::error!(delivery = id, error = %e, "outbox: cannot record the outcome")
                }
                Err(_) => tracing::error!(delivery = id, "outbox: recording panicked"),
            }
        }
    }

    /// Commits the outcomes waiting, batch after batch until none is left, on a blocking thread.
    /// Until an outcome is committed, the lease running out would send the email again: a
    /// database that is busy or stalls a while is waited out, for at most a third of the lease
    /// (it is renewed at half).
    fn commit_outcomes(&self) {
        let (conn, turns) = (self.conn.clone(), self.turns.clone());
        let patience = self.lease / 3;
        let outcomes = self.outcomes.clone();
        tokio::task::spawn_blocking(move || {
            let _leader = Leader(&outcomes);
            commit_outcomes(&outcomes, &conn, &turns, patience)
        });
    }
}

/// Lets another worker lead the next commit should this one panic (its outcomes' waiters hear
/// of it as their channel closing).
struct Leader<'a>(&'a Outcomes);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.committing = false;
        }
    }
}

/// `Sender::commit_outcomes`, on the blocking thread.
fn commit_outcomes(
    outcomes: &Outcomes,
    conn: &Mutex<Connection>,
    turns: &WriteTurns,
    patience: Duration,
) {
    loop {
        let gathered = outcomes.queue.lock().expect("outcome queue").waiting.len();
        if (1..OUTCOMES_ENOUGH).contains(&gathered) {
            std::thread::sleep(OUTCOME_GATHER);
        }
        let batch = {
            let mut queue = outcomes.queue.lock().expect("outcome queue");
            if queue.waiting.is_empty() {
                queue.committing = false;
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        let attempts: Vec<AttemptResult> = batch.iter().map(|r| r.attempt.result()).collect();
        let record = |attempts: &[AttemptResult]| {
            let _turn = turns.turn_within(OUTCOME_PATIENCE);
            deliveries::record_attempts(&conn.lock().expect("sender connection"), attempts)
        };
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let recorded = loop {
            match record(&attempts) {
                Err(Error::DatabaseUnavailable(e)) if started.elapsed() + pause < patience => {
                    tracing::warn!(outcomes = attempts.len(), error = %e, "outbox: the database is busy; recording the outcomes again shortly");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                recorded => break recorded,
            }
        };
        let answers: Vec<Result<bool, String>> = match recorded {
            Ok(held) => held.into_iter().map(Ok).collect(),
            // One outcome the database refuses must not keep the others from being recorded:
            // each alone, each answered its own way.
            Err(_) if attempts.len() > 1 => attempts
                .iter()
                .map(|a| {
                    record(std::slice::from_ref(a))
                        .map(|held| held[0])
                        .map_err(|e| e.to_string())
                })
                .collect(),
            Err(e) => vec![Err(e.to_string())],
        };
        drop(attempts);
        for (recording, answer) in batch.into_iter().zip(answers) {
            let _ = recording.recorded.send(answer);
        }
    }
}

impl Sender {
    /// Puts a claimed row back, due now, without counting an attempt (unless another worker
    /// holds it by now).
    async fn release(&self, d: Delivery) {
        let (conn, turns) = (self.conn.clone(), self.turns.clone());
        let owner = d.lease_owner.unwrap_or_default();
        let _ = tokio::task::spawn_blocking(move || {
            let _turn = turns.prompt_turn();
            let conn = conn.lock().expect("sender connection");
            deliveries::release(&conn, d.id, owner, now_unix())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_is_claimed_in_larger_batches_and_a_trickle_in_small_ones() {
        // A few rows: small claims, so the other workers' connections take their share.
        assert_eq!(next_claim_size(CLAIM_BATCH, 5), CLAIM_BATCH);
        assert_eq!(next_claim_size(CLAIM_BATCH, 0), CLAIM_BATCH);
        // A full claim: more are due, so the next one takes more, until a claim comes back short.
        assert_eq!(
            next_claim_size(CLAIM_BATCH, CLAIM_BATCH),
            BACKLOG_CLAIM_BATCH
        );
        assert_eq!(
            next_claim_size(BACKLOG_CLAIM_BATCH, BACKLOG_CLAIM_BATCH),
            BACKLOG_CLAIM_BATCH
        );
        assert_eq!(next_claim_size(BACKLOG_CLAIM_BATCH, 100), CLAIM_BATCH);
    }
}
