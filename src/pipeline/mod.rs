//! The event processor: turns stored events into deliveries. It wakes when intake commits new
//! events (no polling delay) and prepares several events at once, so one event waiting on a slow
//! Stripe API holds up no other: each preparation has a deadline, and outcomes are committed as
//! they finish, whatever finished since the last commit in one transaction, each delivery row
//! together with its event's new state. After a restart it resumes from the rows: pending events
//! are still pending.
//!
//! **Order.** Events with the same key (the customer's id, else the Stripe object's id; the
//! `order_key` column) are recorded in Stripe's order, by `created` then id: they may be
//! prepared side by side, but an outcome is committed only after every earlier event of its
//! key held here, in the same transaction or before, so deliveries are queued in that order. An
//! event behind a postponed one (postponed in this commit or already in the database) is held:
//! postponed to the same time, without counting an attempt, whatever it prepared. Stripe's
//! order among events this processor has read together is kept; an event that arrives after a
//! later one was already recorded cannot be put before it.
//!
//! **Writes.** Preparing never writes events or deliveries; the only write is the group commit
//! in `commit`, on the processor's own connection, one transaction at a time while preparation
//! goes on. That is the one place that can wait for intake to be idle: outcomes then pile up
//! (at most `window` events are held in memory) and go out in one larger commit.

pub mod catchup;
pub mod prepare;
pub mod retention;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::db::deliveries::{Inserted, Status};
use crate::db::events::{self, DueEvent, Processing, StoredEvent};
use crate::db::{self, integrations, now_unix, templates, turns::WriteTurns};
use crate::error::classify_db_error;
use crate::{Config, Error};
use prepare::{Outcome, Preparer};

/// Events held in memory (waiting, running, finished) per unit of concurrency: enough that
/// events blocked behind an earlier one of their customer leave others to run.
const WINDOW_PER_TASK: usize = 8;
/// The longest the processor sleeps without looking at the database when it holds no events.
const IDLE_CHECK: Duration = Duration::from_secs(60);
/// How often postponed events are looked for while events are in memory.
const BUSY_CHECK: Duration = Duration::from_secs(1);
/// The pause after a failed read or commit before trying again.
const PAUSE_AFTER_ERROR: Duration = Duration::from_secs(1);
/// The longest wait between retries of an event.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

pub struct Processor {
    pub preparer: Arc<Preparer>,
    /// The processor's own write connection.
    pub conn: Arc<Mutex<Connection>>,
    /// Its commits wait while webhooks wait to be stored (`db::turns`).
    pub turns: Arc<WriteTurns>,
    /// Notified by intake after it commits new events.
    pub new_events: Arc<Notify>,
    /// Notified after deliveries are queued, to wake the sender.
    pub new_deliveries: Arc<Notify>,
    /// The effective config: whether SMTP is configured at the moment an outcome is recorded
    /// decides whether a queued delivery is marked as waiting for it.
    pub config: watch::Receiver<Arc<Config>>,
    /// How long an event whose lookups keep failing is retried before it is marked failed.
    pub max_retry: Duration,
    /// Events prepared at once (`processor.concurrency`).
    pub concurrency: usize,
    /// The longest one event's preparation may take (`processor.event_timeout_secs`); past it
    /// the event is postponed like any other transient failure.
    pub event_timeout: Duration,
    /// About how long the first retry of an event waits (`processor.retry_base_secs`); each
    /// further one twice as long, at most an hour.
    pub retry_base: Duration,
}

/// (integration id, order key): events with the same one go in Stripe's order.
type Key = (String, String);

/// What happened to one event, ready to be committed.
enum Finished {
    Prepared(Outcome),
    /// It waits for an earlier event with its key, which is postponed until `until`.
    Held {
        detail: String,
        until: i64,
    },
    /// Preparing it panicked: a bug. The event is marked failed with the panic's message.
    Panicked(String),
    /// Its stored payload cannot be read (damaged at rest): marked failed with why, so that one
    /// damaged row does not stop the events after it.
    Unreadable(String),
}

enum State {
    Waiting,
    Running,
    Done(Finished),
    Committing,
}

struct Slot {
    event: StoredEvent,
    key: Option<Key>,
    /// It was read as a postponed event that came due (so it is still due in the database).
    postponed: bool,
    state: State,
    /// Set while it runs when an earlier event of its key was postponed: it is held instead.
    behind: Option<Finished>,
}

/// The events this processor holds, from being read until their outcome is committed.
#[derive(Default)]
struct Work {
    slots: BTreeMap<i64, Slot>,
    /// Every held event's (created, id), by key: a key's events are committed in this order.
    by_key: HashMap<Key, BTreeSet<(i64, i64)>>,
    /// The highest id of a fresh event read so far; fresh events are read in id order.
    fresh_after: i64,
    tasks: JoinSet<Outcome>,
    running: HashMap<tokio::task::Id, i64>,
}

/// What a commit reports back, per event: its id, and when it postponed or held the event.
struct Committed {
    queued: usize,
    postponed: Vec<(i64, i64)>,
}

/// The event fields `record` needs (the payload stays in memory).
struct EventMeta {
    id: i64,
    integration_id: String,
    stripe_event_id: String,
    event_type: String,
    received_at: i64,
    /// When intake stored it (`received_at` is when a reprocess asked for it again), and its
    /// mode: what the integration's "last event received" shows.
    stored_at: i64,
    livemode: bool,
    processing_attempts: i64,
    /// The order key: once one event of a key is postponed, the later ones in the same
    /// commit are held behind it.
    key: Option<String>,
}

type CommitTask = tokio::task::JoinHandle<(Vec<i64>, Result<Committed, Error>)>;

impl Processor {
    fn window(&self) -> usize {
        self.concurrency.max(1) * WINDOW_PER_TASK
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut work = Work::default();
        let mut commit: Option<CommitTask> = None;
        // Whether the database may hold due events not read yet.
        let mut more = true;
        let mut paused_until: Option<Instant> = None;
        let mut lookups = Arc::new(Lookups::default());
        loop {
            if *stop.borrow() {
                break;
            }
            let paused = paused_until.is_some_and(|t| Instant::now() < t);
            if more && !paused && work.slots.len() <= self.window() / 2 {
                match self.load(&mut work).await {
                    Ok((fresh_lookups, full)) => {
                        lookups = fresh_lookups;
                        more = full;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "event processor: cannot read events, retrying in 1 s");
                        paused_until = Some(Instant::now() + PAUSE_AFTER_ERROR);
                    }
                }
            }
            self.start_ready(&mut work, &lookups);
            if commit.is_none() && !paused {
                commit = self.start_commit(&mut work);
            }

            let wait = if work.slots.is_empty() && !more {
                self.until_next_due().await
            } else {
                BUSY_CHECK
            };
            tokio::select! {
                Some(joined) = work.tasks.join_next_with_id(), if !work.tasks.is_empty() => {
                    work.finish_task(joined);
                }
                done = async { commit.as_mut().expect("a commit runs").await }, if commit.is_some() => {
                    commit = None;
                    if !self.commit_done(&mut work, done) {
                        paused_until = Some(Instant::now() + PAUSE_AFTER_ERROR);
                    }
                }
                _ = self.new_events.notified() => more = true,
                _ = tokio::time::sleep(wait) => more = true,
                _ = stop.changed() => {}
            }
        }
        // Stopping: what is still being prepared stays pending and is prepared again at the next
        // start; what is finished is committed now.
        work.tasks.abort_all();
        while let Some(joined) = work.tasks.join_next_with_id().await {
            work.finish_task(joined);
        }
        if let Some(running) = commit.take() {
            let done = running.await;
            self.commit_done(&mut work, done);
        }
        if let Some(last) = self.start_commit(&mut work) {
            let done = last.await;
            self.commit_done(&mut work, done);
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

    /// Reads due events into `work` up to the window, holding each one that has an earlier
    /// postponed event with its key. Returns the integrations and templates as read now, and
    /// whether the read was full (more may be due).
    async fn load(&self, work: &mut Work) -> Result<(Arc<Lookups>, bool), Error> {
        let now = now_unix();
        let limit = self.window() - work.slots.len();
        let fresh_after = work.fresh_after;
        let held_postponed = work.slots.values().filter(|s| s.postponed).count();
        let in_memory: Vec<i64> = work.slots.keys().copied().collect();
        let (due, blockers, lookups) = db::call(&self.preparer.pool, move |c| {
            let due = events::due_after(c, now, fresh_after, held_postponed, limit)?;
            // An event behind a postponed one of its customer waits for it. A blocker this
            // processor holds (or has just read) is ordered in memory, so it is passed over.
            let mut known = in_memory.clone();
            known.extend(due.iter().map(|d| d.event.id));
            known.sort_unstable();
            let mut blockers = HashMap::new();
            for d in &due {
                let (Some(key), false) =
                    (&d.order_key, in_memory.binary_search(&d.event.id).is_ok())
                else {
                    continue;
                };
                let e = &d.event;
                let earlier = events::postponed_before(
                    c,
                    &e.integration_id,
                    key,
                    e.created,
                    e.id,
                    known.len() + 1,
                )?;
                if let Some((_, stripe_id, until)) = earlier
                    .into_iter()
                    .find(|(blocker, ..)| known.binary_search(blocker).is_err())
                {
                    blockers.insert(e.id, (stripe_id, until));
                }
            }
            let lookups = Lookups {
                integrations: integrations::list(c)?
                    .into_iter()
                    .map(|i| (i.id.clone(), i))
                    .collect(),
                templates: templates::list(c)?,
            };
            Ok((due, blockers, lookups))
        })
        .await?;
        for DueEvent {
            event,
            order_key,
            postponed,
        } in due
        {
            if work.slots.contains_key(&event.id) {
                continue;
            }
            if !postponed {
                work.fresh_after = work.fresh_after.max(event.id);
            }
            let key = order_key.map(|k| (event.integration_id.clone(), k));
            if let Some(key) = &key {
                work.by_key
                    .entry(key.clone())
                    .or_default()
                    .insert((event.created, event.id));
            }
            let mut slot = Slot {
                event,
                key,
                postponed,
                state: State::Waiting,
                behind: None,
            };
            if let Some((stripe_id, until)) = blockers.get(&slot.event.id) {
                // A blocker already due is not held here only because the window is full: look
                // again in a second rather than at once.
                slot.state = State::Done(held_behind(&slot, stripe_id, (*until).max(now + 1)));
            }
            if let Some(notice) = slot.event.damage_notice() {
                slot.state = State::Done(Finished::Unreadable(notice));
            }
            work.slots.insert(slot.event.id, slot);
        }
        let full = work.slots.len() >= self.window();
        Ok((Arc::new(lookups), full))
    }

    /// Starts waiting events, oldest first, up to the concurrency. Events of one key may be
    /// prepared side by side: preparing changes nothing the next one reads, and `start_commit`
    /// records them in order.
    fn start_ready(&self, work: &mut Work, lookups: &Arc<Lookups>) {
        let Work {
            slots,
            tasks,
            running,
            ..
        } = work;
        for slot in slots.values_mut() {
            if running.len() >= self.concurrency.max(1) {
                return;
            }
            if !matches!(slot.state, State::Waiting) {
                continue;
            }
            slot.state = State::Running;
            let task = tasks.spawn(prepare_one(
                self.preparer.clone(),
                lookups.clone(),
                slot.event.clone(),
                self.event_timeout,
            ));
            running.insert(task.id(), slot.event.id);
        }
    }

    /// Commits finished outcomes in one transaction, beside the preparations: every finished
    /// event without a key, and of each key the finished events before its first unfinished
    /// one, in Stripe's order. So no event's outcome is recorded before an earlier one's.
    fn start_commit(&self, work: &mut Work) -> Option<CommitTask> {
        let mut ready: Vec<i64> = work
            .slots
            .iter()
            .filter(|(_, s)| s.key.is_none() && matches!(s.state, State::Done(_)))
            .map(|(id, _)| *id)
            .collect();
        for set in work.by_key.values() {
            ready.extend(set.iter().map(|&(_, id)| id).take_while(|id| {
                work.slots
                    .get(id)
                    .is_some_and(|s| matches!(s.state, State::Done(_)))
            }));
        }
        let mut batch = Vec::with_capacity(ready.len());
        for id in ready {
            let slot = work.slots.get_mut(&id).expect("a held event");
            let State::Done(finished) = std::mem::replace(&mut slot.state, State::Committing)
            else {
                unreachable!("only finished events are committed")
            };
            let e = &slot.event;
            let meta = EventMeta {
                id: e.id,
                integration_id: e.integration_id.clone(),
                stripe_event_id: e.stripe_event_id.clone(),
                event_type: e.event_type.clone(),
                // A reprocessed event's retries are counted from when it was asked for.
                received_at: e.reprocessed_at.unwrap_or(e.received_at),
                stored_at: e.received_at,
                livemode: e.livemode,
                processing_attempts: e.processing_attempts,
                key: slot.key.as_ref().map(|(_, k)| k.clone()),
            };
            batch.push((meta, finished));
        }
        if batch.is_empty() {
            return None;
        }
        let (conn, turns) = (self.conn.clone(), self.turns.clone());
        let policy = RetryPolicy {
            max_retry: self.max_retry,
            base: self.retry_base,
        };
        let smtp_configured = self.config.borrow().smtp.is_configured();
        Some(tokio::spawn(async move {
            let since = turns.yield_to_intake().await;
            let committing = tokio::task::spawn_blocking(move || {
                let ids = batch.iter().map(|(meta, _)| meta.id).collect();
                let _turn = turns.background_turn_since(since);
                let result = record(&mut lock(&conn), batch, smtp_configured, &policy);
                (ids, result)
            });
            match committing.await {
                Ok(done) => done,
                // Reported through this task's handle, as if it had failed itself.
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(cancelled) => panic!("the commit did not run: {cancelled}"),
                },
            }
        }))
    }

    /// Applies a finished commit to `work`; false when it failed (its events are prepared again).
    fn commit_done(
        &self,
        work: &mut Work,
        done: Result<(Vec<i64>, Result<Committed, Error>), tokio::task::JoinError>,
    ) -> bool {
        let (ids, result) = match done {
            Ok(done) => done,
            Err(e) => {
                // The blocking task itself died; every event being committed goes back.
                tracing::error!(error = %e, "event processor: the commit panicked, retrying in 1 s");
                let ids = work
                    .slots
                    .iter()
                    .filter(|(_, s)| matches!(s.state, State::Committing))
                    .map(|(id, _)| *id)
                    .collect();
                (ids, Err(Error::Io(std::io::Error::other(e.to_string()))))
            }
        };
        let committed = match result {
            Ok(committed) => committed,
            Err(e) => {
                tracing::error!(error = %e, events = ids.len(), "event processor: commit failed, preparing those events again in 1 s");
                for id in ids {
                    if let Some(slot) = work.slots.get_mut(&id) {
                        slot.state = State::Waiting;
                    }
                }
                return false;
            }
        };
        if committed.queued > 0 {
            self.new_deliveries.notify_waiters();
        }
        let postponed: HashMap<i64, i64> = committed.postponed.into_iter().collect();
        let now = now_unix();
        for id in ids {
            let Some(slot) = work.slots.remove(&id) else {
                continue;
            };
            let Some(key) = slot.key else { continue };
            if let Some(set) = work.by_key.get_mut(&key) {
                set.remove(&(slot.event.created, id));
                if set.is_empty() {
                    work.by_key.remove(&key);
                }
            }
            // Events behind a postponed one of their key wait for it in the database, not here.
            let Some(&until) = postponed.get(&id) else {
                continue;
            };
            let behind: Vec<i64> = work
                .by_key
                .get(&key)
                .map(|set| {
                    set.range((slot.event.created, id)..)
                        .map(|&(_, id)| id)
                        .collect()
                })
                .unwrap_or_default();
            for later in behind {
                if let Some(waiting) = work.slots.get_mut(&later) {
                    let held =
                        held_behind(waiting, &slot.event.stripe_event_id, until.max(now + 1));
                    match waiting.state {
                        // Its preparation finishes first; what it prepared is then dropped.
                        State::Running => waiting.behind = Some(held),
                        _ => waiting.state = State::Done(held),
                    }
                }
            }
        }
        true
    }
}

/// What every preparation reads: the integrations and templates as of the last read.
#[derive(Default)]
struct Lookups {
    integrations: HashMap<String, integrations::Integration>,
    templates: Vec<templates::Template>,
}

impl Work {
    fn finish_task(&mut self, joined: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>) {
        let (task, finished) = match joined {
            Ok((task, outcome)) => (task, Finished::Prepared(outcome)),
            Err(e) if e.is_panic() => {
                let task = e.id();
                (task, Finished::Panicked(panic_message(e.into_panic())))
            }
            // Aborted at shutdown: the event stays pending.
            Err(e) => {
                let task = e.id();
                if let Some(slot) = self
                    .running
                    .remove(&task)
                    .and_then(|id| self.slots.get_mut(&id))
                {
                    slot.state = State::Waiting;
                }
                return;
            }
        };
        if let Some(slot) = self
            .running
            .remove(&task)
            .and_then(|id| self.slots.get_mut(&id))
        {
            slot.state = State::Done(slot.behind.take().unwrap_or(finished));
        }
    }
}

fn held_behind(slot: &Slot, blocker: &str, until: i64) -> Finished {
    let key = slot.key.as_ref().map_or("", |(_, k)| k.as_str());
    Finished::Held {
        detail: held_detail(blocker, key),
        until,
    }
}

fn held_detail(blocker: &str, key: &str) -> String {
    format!(
        "waits for event {blocker} of the same customer or object ({key}), which is postponed: \
         emails go out in Stripe's order"
    )
}

/// Prepares one event within the deadline. Runs as its own task, so a panic in it is caught by
/// the task and recorded on the event rather than taking the processor down.
async fn prepare_one(
    preparer: Arc<Preparer>,
    lookups: Arc<Lookups>,
    event: StoredEvent,
    deadline: Duration,
) -> Outcome {
    // Lets the panic test make one event panic; compiled out of every normal build.
    #[cfg(feature = "fault-injection")]
    {
        if event.stripe_event_id.contains("fault_injection_panic") {
            panic!(
                "fault injection: event {} panics on purpose",
                event.stripe_event_id
            );
        }
    }
    let Some(integration) = lookups.integrations.get(&event.integration_id) else {
        return Outcome::Ignore("its integration was removed".into());
    };
    let prepared = preparer.prepare(
        integration,
        &lookups.templates,
        Some(event.id),
        &event.payload,
    );
    match tokio::time::timeout(deadline, prepared).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Retry(format!(
            "preparing the email took longer than {} s (processor.event_timeout_secs), most \
             likely waiting on the Stripe API; trying again later",
            deadline.as_secs_f64()
        )),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!(
        "processing this event hit a bug and stopped ({text}); it will not be tried again: \
         please report it with the event's id"
    )
}

/// A commit that failed halfway left the connection unpoisoned in every way that matters: its
/// transaction was rolled back when dropped.
fn lock(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct RetryPolicy {
    max_retry: Duration,
    base: Duration,
}

/// Commits finished outcomes in one transaction.
fn record(
    conn: &mut Connection,
    outcomes: Vec<(EventMeta, Finished)>,
    smtp_configured: bool,
    policy: &RetryPolicy,
) -> Result<Committed, Error> {
    let now = now_unix();
    let tx = conn.transaction().map_err(classify_db_error)?;
    let mut committed = Committed {
        queued: 0,
        postponed: Vec::new(),
    };
    // Keys postponed in this commit, with the event and its time: later events of the key in
    // this commit wait behind it, whatever they prepared.
    let mut postponed_keys: HashMap<String, (String, i64)> = HashMap::new();
    // Each integration's newest event in this commit, for its "last event received".
    let mut newest: HashMap<String, integrations::LatestEvent> = HashMap::new();
    for (event, finished) in outcomes {
        let seen = integrations::LatestEvent {
            received_at: event.stored_at,
            livemode: event.livemode,
        };
        newest
            .entry(event.integration_id.clone())
            .and_modify(|n| {
                if seen.received_at >= n.received_at {
                    *n = seen;
                }
            })
            .or_insert(seen);
        let finished = match event.key.as_ref().and_then(|k| postponed_keys.get(k)) {
            Some((blocker, until)) => Finished::Held {
                detail: held_detail(blocker, event.key.as_deref().unwrap_or("")),
                until: (*until).max(now + 1),
            },
            None => finished,
        };
        let mut postpone_key = |until: i64| {
            if let Some(key) = &event.key {
                postponed_keys
                    .entry(key.clone())
                    .or_insert_with(|| (event.stripe_event_id.clone(), until));
            }
        };
        let outcome = match finished {
            Finished::Prepared(outcome) => outcome,
            Finished::Held { detail, until } => {
                events::hold(&tx, event.id, &detail, until)?;
                committed.postponed.push((event.id, until));
                postpone_key(until);
                tracing::info!(event = %event.stripe_event_id, event_type = %event.event_type, state = "held", "{detail}");
                continue;
            }
            Finished::Panicked(detail) | Finished::Unreadable(detail) => {
                events::finish(&tx, event.id, Processing::Failed, &detail, now)?;
                crate::metrics::event(Processing::Failed);
                tracing::error!(event = %event.stripe_event_id, event_type = %event.event_type, "not emailed: {detail}");
                continue;
            }
        };
        match outcome {
            Outcome::Delivery(mut delivery) => {
                if delivery.status == Status::Queued && !smtp_configured {
                    delivery.note = Some(WAITING_FOR_SMTP.to_owned());
                }
                match events::insert_delivery(&tx, &delivery, now)? {
                    Inserted::New(id) => {
                        // The address stays in the delivery row (the log the merchant reads),
                        // out of the event's detail and out of the server log.
                        let (state, detail) = match delivery.status {
                            Status::Queued => {
                                committed.queued += 1;
                                (Processing::Queued, format!("delivery {id} queued"))
                            }
                            Status::Failed => (
                                Processing::Failed,
                                delivery.note.clone().unwrap_or_default(),
                            ),
                            _ => (
                                Processing::Skipped,
                                delivery.note.clone().unwrap_or_default(),
                            ),
                        };
                        events::finish(&tx, event.id, state, &detail, now)?;
                        log_outcome(&event, state, &detail);
                    }
                    Inserted::AlreadyCovered(id) => {
                        let detail = format!(
                            "same business fact ({}) as delivery {id}: not emailed twice",
                            delivery.business_key
                        );
                        events::finish(&tx, event.id, Processing::Skipped, &detail, now)?;
                        log_outcome(&event, Processing::Skipped, &detail);
                    }
                }
            }
            Outcome::Ignore(reason) => {
                events::finish(&tx, event.id, Processing::Ignored, &reason, now)?;
                log_outcome(&event, Processing::Ignored, &reason);
            }
            Outcome::Disconnect(reason) => {
                integrations::disconnect(&tx, &event.integration_id, &reason)?;
                events::finish(&tx, event.id, Processing::Ignored, &reason, now)?;
                crate::metrics::event(Processing::Ignored);
                tracing::warn!(integration = %event.integration_id, "{reason}");
            }
            Outcome::Retry(reason) => {
                let age = Duration::from_secs((now - event.received_at).max(0) as u64);
                if age > policy.max_retry {
                    let detail = format!(
                        "gave up after {} attempts: {reason}",
                        event.processing_attempts + 1
                    );
                    events::finish(&tx, event.id, Processing::Failed, &detail, now)?;
                    log_outcome(&event, Processing::Failed, &detail);
                } else {
                    let attempt = u32::try_from(event.processing_attempts + 1).unwrap_or(u32::MAX);
                    let wait = crate::backoff::delay(attempt, policy.base, MAX_RETRY_DELAY);
                    // Whole seconds, at least one, so a retry is never due at once.
                    let until = now + wait.as_secs().max(1) as i64;
                    events::postpone(&tx, event.id, &reason, until)?;
                    committed.postponed.push((event.id, until));
                    postpone_key(until);
                    tracing::warn!(event = %event.stripe_event_id, retry_in_secs = until - now, "{reason}");
                }
            }
        }
    }
    for (integration, latest) in newest {
        integrations::note_event(&tx, &integration, latest)?;
    }
    tx.commit().map_err(classify_db_error)?;
    Ok(committed)
}

/// Shown on deliveries that wait because no relay is configured.
pub const WAITING_FOR_SMTP: &str =
    "waiting for SMTP settings: set the relay on the Settings page (or smtp.host and smtp.from_address in the config)";

fn log_outcome(event: &EventMeta, state: Processing, detail: &str) {
    crate::metrics::event(state);
    match state {
        Processing::Failed => {
            tracing::warn!(event = %event.stripe_event_id, event_type = %event.event_type, "not emailed: {detail}")
        }
        _ => {
            tracing::info!(event = %event.stripe_event_id, event_type = %event.event_type, state = %state, "{detail}")
        }
    }
}
