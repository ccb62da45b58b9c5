//! The single writer for webhook intake, with group commit: it takes every insert waiting at the
//! moment, commits them in one transaction (one fsync), then answers them all. A lone request is
//! committed at once; there is no batching timer. The queue in front of it is bounded, so a
//! storm of webhooks waits in the HTTP layer instead of growing memory.

use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, Notify};

use super::events::{self, NewEvent, Stored};
use super::turns::WriteTurns;
use crate::error::{classify_db_error, Error};

/// Most inserts committed together; bounds the transaction's size and the answer latency.
const MAX_BATCH: usize = 512;

struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<Stored, Error>>,
}

#[derive(Clone)]
pub struct EventWriter {
    jobs: mpsc::Sender<Job>,
    turns: Arc<WriteTurns>,
}

impl EventWriter {
    /// Starts the writer thread on `conn`; `stored` is notified after each commit that stored a
    /// new event. It writes in turns with the server's other writers (`turns`), first whenever
    /// a webhook waits. The thread ends when every `EventWriter` clone is dropped and the queue
    /// is drained; join the handle to wait for the last commit.
    pub fn start(
        conn: Connection,
        queue: usize,
        stored: Arc<Notify>,
        turns: Arc<WriteTurns>,
    ) -> (EventWriter, JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(queue);
        let writer_turns = turns.clone();
        let handle = std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || run(conn, rx, &stored, &writer_turns))
            .expect("spawn the event writer thread");
        (EventWriter { jobs, turns }, handle)
    }

    /// Stores the event durably; returns once it is committed (or was already stored).
    pub async fn store(&self, event: NewEvent) -> Result<Stored, Error> {
        let (reply, answer) = oneshot::channel();
        let ticket = self.turns.intake_ticket();
        self.jobs
            .send(Job { event, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        ticket.handed_over();
        answer.await.map_err(|_| Error::ShuttingDown)?
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, stored: &Notify, turns: &WriteTurns) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let taken = batch.len();
        answer_batch(&mut conn, &mut batch, stored, turns);
        turns.intake_answered(taken);
    }
}

/// Commits the batch and answers each of its webhooks.
fn answer_batch(conn: &mut Connection, batch: &mut Vec<Job>, stored: &Notify, turns: &WriteTurns) {
    let turn = turns.intake_turn();
    let committed = commit(conn, batch.iter().map(|j| &j.event));
    drop(turn);
    match committed {
        Ok(results) => {
            if results.contains(&Stored::New) {
                stored.notify_one();
            }
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(Ok(result));
            }
        }
        // One bad row (say, its integration was removed a moment ago) must not fail the
        // others that shared its transaction: retry each alone and answer each its own way.
        Err(batch_error) if batch.len() > 1 => {
            tracing::debug!(error = %batch_error, size = batch.len(), "group commit failed, retrying one by one");
            for job in batch.drain(..) {
                let turn = turns.intake_turn();
                let result = commit(conn, std::iter::once(&job.event))
                    .map(|mut r| r.remove(0))
                    .map_err(classify_db_error);
                drop(turn);
                if matches!(result, Ok(Stored::New)) {
                    stored.notify_one();
                }
                let _ = job.reply.send(result);
            }
        }
        Err(error) => {
            if let Some(job) = batch.pop() {
                let _ = job.reply.send(Err(classify_db_error(error)));
            }
        }
    }
}

fn commit<'a>(
    conn: &mut Connection,
    events: impl Iterator<Item = &'a NewEvent>,
) -> rusqlite::Result<Vec<Stored>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let received_at = super::now_unix();
    let results = events
        .map(|e| events::insert(&tx, e, received_at))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(results)
}
