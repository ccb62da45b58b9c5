//! The single writer for webhook intake, with group commit: it takes every insert waiting at the
//! moment, commits them in one transaction (one fsync), then answers them all. A lone request is
//! committed at once. Under load, when more webhooks are being read and verified at that moment
//! (`EventWriter::arriving`), it waits for them a little (`LINGER` at most), so one fsync answers
//! them all instead of each waiting a whole commit more; the last of them to be queued wakes it.
//! The queue in front of it is bounded, so a storm of webhooks waits in the HTTP layer instead
//! of growing memory.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, Notify};

use super::events::{self, NewEvent, Stored};
use super::turns::WriteTurns;
use crate::error::{classify_db_error, Error};

/// Most inserts committed together; bounds the transaction's size and the answer latency.
const MAX_BATCH: usize = 512;
/// The longest a batch waits for webhooks still being read and verified (`EventWriter::start`).
/// About what a commit takes: a webhook that just missed the batch would otherwise wait for that
/// commit, then its own.
pub const LINGER: Duration = Duration::from_micros(500);

struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<Stored, Error>>,
}

#[derive(Clone)]
pub struct EventWriter {
    jobs: mpsc::Sender<Job>,
    turns: Arc<WriteTurns>,
    arrivals: Arc<Arrivals>,
}

/// Webhooks on their way to the writer (read, verified, not yet queued), and the writer thread
/// to wake when one is queued while it lingers for them.
struct Arrivals {
    count: AtomicUsize,
    lingering: AtomicBool,
    linger: Duration,
    writer: Thread,
    commits: AtomicU64,
    /// Times a lingering writer woke (tests).
    wakes: AtomicU64,
}

/// A webhook on its way to the writer; see `EventWriter::arriving`.
pub struct Arriving {
    arrivals: Arc<Arrivals>,
}

impl Drop for Arriving {
    fn drop(&mut self) {
        // Only the last webhook on its way wakes a lingering writer, which then takes every one
        // queued meanwhile. Waking it for each costs two context switches per webhook: at c=64
        // intake ran ~6% faster without them (BENCHMARKS.md, "Waking the writer once per batch").
        let was_last = self.arrivals.count.fetch_sub(1, Ordering::SeqCst) == 1;
        if was_last && self.arrivals.lingering.load(Ordering::SeqCst) {
            self.arrivals.writer.unpark();
        }
    }
}

impl EventWriter {
    /// Starts the writer thread on `conn`; `stored` is notified after each commit that stored a
    /// new event. It writes in turns with the server's other writers (`turns`), first whenever
    /// a webhook waits, and lingers up to `linger` (`LINGER`) for webhooks on their way. The
    /// thread ends when every `EventWriter` clone is dropped and the queue is drained; join the
    /// handle to wait for the last commit.
    pub fn start(
        conn: Connection,
        queue: usize,
        stored: Arc<Notify>,
        turns: Arc<WriteTurns>,
        linger: Duration,
    ) -> (EventWriter, JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(queue);
        let writer_turns = turns.clone();
        let (thread, arrivals) = std::sync::mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || {
                let arrivals: Arc<Arrivals> = arrivals.recv().expect("the writer's arrivals");
                run(conn, rx, &stored, &writer_turns, &arrivals)
            })
            .expect("spawn the event writer thread");
        let arrivals = Arc::new(Arrivals {
            count: AtomicUsize::new(0),
            lingering: AtomicBool::new(false),
            linger,
            writer: handle.thread().clone(),
            commits: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
        });
        thread
            .send(arrivals.clone())
            .expect("the writer thread waits for its arrivals");
        (
            EventWriter {
                jobs,
                turns,
                arrivals,
            },
            handle,
        )
    }

    /// Counts a webhook as on its way from when its body is read until it is queued (the
    /// guard is dropped): a batch under load waits for it (`LINGER` at most). Take it only for
    /// work that takes microseconds (verifying, parsing), never across a slow client's body.
    pub fn arriving(&self) -> Arriving {
        self.arrivals.count.fetch_add(1, Ordering::SeqCst);
        Arriving {
            arrivals: self.arrivals.clone(),
        }
    }

    /// Transactions committed so far (a group commit is one).
    pub fn commits(&self) -> u64 {
        self.arrivals.commits.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn wakes(&self) -> u64 {
        self.arrivals.wakes.load(Ordering::Relaxed)
    }

    /// Stores the event durably; returns once it is committed (or was already stored).
    /// `arriving` (if any) is let go once the event is queued.
    pub async fn store(
        &self,
        event: NewEvent,
        arriving: Option<Arriving>,
    ) -> Result<Stored, Error> {
        let (reply, answer) = oneshot::channel();
        let ticket = self.turns.intake_ticket();
        self.jobs
            .send(Job { event, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        drop(arriving);
        ticket.handed_over();
        answer.await.map_err(|_| Error::ShuttingDown)?
    }
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    stored: &Notify,
    turns: &WriteTurns,
    arrivals: &Arrivals,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        take_waiting(&mut rx, &mut batch);
        if arrivals.count.load(Ordering::SeqCst) > 0 {
            linger(&mut rx, &mut batch, arrivals);
        }
        let taken = batch.len();
        answer_batch(&mut conn, &mut batch, stored, turns, &arrivals.commits);
        turns.intake_answered(taken);
    }
}

/// Adds the jobs queued now to the batch, up to `MAX_BATCH`.
fn take_waiting(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Waits up to the linger for the webhooks on their way, then adds what was queued meanwhile.
fn linger(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, arrivals: &Arrivals) {
    let until = Instant::now() + arrivals.linger;
    arrivals.lingering.store(true, Ordering::SeqCst);
    while batch.len() < MAX_BATCH && arrivals.count.load(Ordering::SeqCst) > 0 {
        let now = Instant::now();
        if now >= until {
            break;
        }
        // The last arrival, queued and let go between the check and the park, unparks us, and
        // a park after an unpark returns at once.
        std::thread::park_timeout(until - now);
        arrivals.wakes.fetch_add(1, Ordering::Relaxed);
        take_waiting(rx, batch);
    }
    arrivals.lingering.store(false, Ordering::SeqCst);
    take_waiting(rx, batch);
}

/// Commits the batch and answers each of its webhooks.
fn answer_batch(
    conn: &mut Connection,
    batch: &mut Vec<Job>,
    stored: &Notify,
    turns: &WriteTurns,
    commits: &AtomicU64,
) {
    let turn = turns.intake_turn();
    let committed = commit(conn, batch.iter().map(|j| &j.event));
    drop(turn);
    commits.fetch_add(1, Ordering::Relaxed);
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
                commits.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> NewEvent {
        let payload = format!(
            r#"{{"id":"evt_{n}","object":"event","type":"customer.updated","created":1,"livemode":false,"data":{{"object":{{"id":"cus_1"}}}}}}"#
        );
        NewEvent::new(
            "int_1".into(),
            crate::stripe::envelope::Envelope::parse(payload.as_bytes()).unwrap(),
            &payload,
        )
    }

    fn writer(dir: &tempfile::TempDir) -> (EventWriter, JoinHandle<()>) {
        let options = crate::db::Options::at(&dir.path().join("t.db")).unwrap();
        let mut conn = crate::db::open(&options).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO integrations (id, name, webhook_secret, created_at)
             VALUES ('int_1', 'shop', 'whsec_x', 0)",
            [],
        )
        .unwrap();
        let turns = Arc::new(WriteTurns::default());
        // Long enough that the test thread is sure to queue the second webhook in time.
        EventWriter::start(
            conn,
            8,
            Arc::new(Notify::new()),
            turns,
            Duration::from_secs(2),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_waits_for_a_webhook_on_its_way_and_commits_it_in_the_same_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, thread) = writer(&dir);
        // The second webhook is verified (on its way) when the first reaches the writer.
        let on_its_way = writer.arriving();
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.store(event(1), None).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!first.is_finished(), "the first waits for the second");
        let second = writer.store(event(2), Some(on_its_way)).await.unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Stored::New);
        assert_eq!(second, Stored::New);
        assert_eq!(writer.commits(), 1, "both in one transaction");

        // Nobody on the way: a lone webhook is committed at once.
        let started = Instant::now();
        writer.store(event(3), None).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(writer.commits(), 2);
        drop(writer);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lingering_batch_wakes_once_when_the_last_webhook_on_its_way_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _thread) = writer(&dir);
        let on_their_way = [writer.arriving(), writer.arriving(), writer.arriving()];
        let mut stores = tokio::task::JoinSet::new();
        stores.spawn({
            let writer = writer.clone();
            async move { writer.store(event(1), None).await }
        });
        for (n, arriving) in (2..).zip(on_their_way) {
            // Each lands while the writer lingers for the ones still on their way.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let writer = writer.clone();
            stores.spawn(async move { writer.store(event(n), Some(arriving)).await });
        }
        while let Some(stored) = stores.join_next().await {
            assert_eq!(stored.unwrap().unwrap(), Stored::New);
        }
        assert_eq!(writer.commits(), 1, "all four in one transaction");
        // Woken for each webhook, it would have woken three times.
        assert_eq!(writer.wakes(), 1, "woken by the last one only");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_webhook_that_never_arrives_holds_the_batch_no_longer_than_the_linger() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _thread) = writer(&dir);
        let _stuck = writer.arriving();
        let started = Instant::now();
        let stored = writer.store(event(1), None).await.unwrap();
        assert_eq!(stored, Stored::New);
        // The linger here is 2 s; without the bound it would wait forever.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(2), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }
}
