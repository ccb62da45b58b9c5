//! Whose turn it is to write. SQLite lets one connection write at a time; a writer that finds the
//! lock taken sleeps in the busy handler (1, 2, 5 ms…) however soon the lock frees, and during a
//! webhook storm those sleeps land on the requests Stripe is waiting for. So the server's own
//! writers take turns here instead, and webhook intake goes first:
//!
//! - intake's writer waits only for a background transaction already under way (they are short:
//!   no checkpoint runs inside one, see `checkpoint`);
//! - the processor, the sender, retention and the checkpointer's last step write only while no
//!   webhook waits to be stored. During a storm they fall behind and catch up after; events are
//!   durable before their 2xx, so nothing is lost by waiting.
//! - A background writer that has waited `PATIENCE` is let in between two intake batches, so a
//!   storm that never pauses delays emails but cannot stop them.
//! - While intake is busy, background turns are `SPACING` apart: the processor's outcomes, the
//!   sender's claims and its outcomes pile up meanwhile and go in fewer, larger commits, instead
//!   of one commit per email that a webhook might arrive behind (and the CPU each costs).
//!
//! Other processes (a CLI command) and the pages' rare writes still meet SQLite's own lock and
//! its busy timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a background writer yields to a storm before it is let in between two batches.
const PATIENCE: Duration = Duration::from_millis(200);
/// The least time between two background turns while intake is busy. At 2 ms a webhook at a
/// time (c=1) still met a small background commit behind most requests; 20 ms took its p50
/// down ~0.15 ms (BENCHMARKS.md, "Spacing background turns"). At 50 ms the processor, which
/// commits at most its window (64 events) a turn, takes the lock ~2.5× less often during a
/// storm and catches up after it: c=16 ran ~14% faster, and the p99 fell by a third at c=16
/// and by half at c=1 ("Spacing background turns further"). While webhooks keep coming faster
/// than ~1,300 a second, emails then trail them until the stream slows.
const SPACING: Duration = Duration::from_millis(50);
/// Intake counts as busy until this long after it last answered.
const BUSY_FOR: Duration = Duration::from_millis(20);

#[derive(Default)]
pub struct WriteTurns {
    /// Webhooks handed to the writer and not yet answered (queued or in the batch being
    /// committed).
    intake_queued: AtomicUsize,
    state: Mutex<State>,
    changed: Condvar,
    /// Notified when the last queued webhook is answered, for `yield_to_intake`.
    intake_idle: Notify,
}

#[derive(Default)]
struct State {
    intake_writing: bool,
    background_writing: bool,
    /// Background writers that waited `PATIENCE` and now go before intake's next batch.
    background_overdue: usize,
    /// When intake last answered webhooks, and when the last background turn ended.
    intake_answered_at: Option<Instant>,
    background_ended_at: Option<Instant>,
}

impl State {
    /// Until when the next background turn waits for `SPACING` (None: it need not).
    fn spaced_until(&self, now: Instant) -> Option<Instant> {
        let busy = self
            .intake_answered_at
            .is_some_and(|at| now.duration_since(at) < BUSY_FOR);
        let until = self.background_ended_at? + SPACING;
        (busy && until > now).then_some(until)
    }
}

impl WriteTurns {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few flags changed in single statements; a panic elsewhere never leaves
        // it half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A webhook is on its way to the writer: background writers hold back until it is
    /// answered. Dropping the ticket before `handed_over` (the request gave up while the queue
    /// was full) takes it back.
    pub fn intake_ticket(&self) -> IntakeTicket<'_> {
        self.intake_queued.fetch_add(1, Ordering::SeqCst);
        IntakeTicket {
            turns: self,
            live: true,
        }
    }

    /// The writer answered `n` webhooks.
    pub fn intake_answered(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Taking the lock orders the wake-up below after a waiter's check of the count.
        let mut state = self.state();
        state.intake_answered_at = Some(Instant::now());
        if self.intake_queued.fetch_sub(n, Ordering::SeqCst) == n {
            self.changed.notify_all();
            self.intake_idle.notify_waiters();
        }
    }

    pub fn intake_waiting(&self) -> bool {
        self.intake_queued.load(Ordering::SeqCst) > 0
    }

    /// Intake's writer, before its transaction: waits for a background transaction under way
    /// and for background writers that waited too long, then holds the turn until dropped.
    pub fn intake_turn(&self) -> Turn<'_> {
        let mut state = self.state();
        while state.background_writing || state.background_overdue > 0 {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.intake_writing = true;
        Turn {
            turns: self,
            intake: true,
        }
    }

    /// A background writer, before its transaction: waits until no webhook waits to be stored
    /// (or `PATIENCE` passed) and no other writer writes, then holds the turn until dropped.
    /// Blocking: call it on the thread that then writes.
    pub fn background_turn(&self) -> Turn<'_> {
        self.background_turn_since(Instant::now())
    }

    /// As `background_turn`, for a writer that began yielding at `since` (`yield_to_intake`).
    pub fn background_turn_since(&self, since: Instant) -> Turn<'_> {
        self.turn_after(PATIENCE.saturating_sub(since.elapsed()))
    }

    /// Waits without holding a thread until no webhook waits to be stored, or `PATIENCE`
    /// passed; returns when the wait began, for `background_turn_since`. Background writers
    /// call it before they go to a blocking thread for their turn: during a storm each of them
    /// would otherwise hold one of tokio's blocking threads (and its memory) while it waits.
    pub async fn yield_to_intake(&self) -> Instant {
        let since = Instant::now();
        let deadline = tokio::time::Instant::from_std(since + PATIENCE);
        loop {
            let idle = self.intake_idle.notified();
            tokio::pin!(idle);
            // Registered before the check, so an answer between the two is not missed.
            idle.as_mut().enable();
            if !self.intake_waiting() || tokio::time::timeout_at(deadline, idle).await.is_err() {
                return since;
            }
        }
    }

    /// As `background_turn`, but let in at the next gap between intake's batches: for a write
    /// that must not wait out a storm, such as the `sent` mark of an email the relay accepted
    /// (until it is committed, a crash would send the email again).
    pub fn prompt_turn(&self) -> Turn<'_> {
        self.turn_after(Duration::ZERO)
    }

    /// As `background_turn`, but let in between intake's batches once it has waited `patience`.
    pub fn turn_within(&self, patience: Duration) -> Turn<'_> {
        self.turn_after(patience)
    }

    fn turn_after(&self, patience: Duration) -> Turn<'_> {
        let deadline = Instant::now() + patience;
        let mut overdue = false;
        let mut state = self.state();
        loop {
            let now = Instant::now();
            let others_writing = state.intake_writing || state.background_writing;
            let spaced_until = state.spaced_until(now).filter(|_| !overdue);
            if !others_writing && (overdue || !self.intake_waiting()) && spaced_until.is_none() {
                break;
            }
            if !overdue && now >= deadline {
                overdue = true;
                state.background_overdue += 1;
                continue;
            }
            let wait = match (overdue, spaced_until) {
                (true, _) => Duration::from_secs(1),
                (false, Some(until)) if !others_writing => (until - now).min(deadline - now),
                (false, _) => deadline - now,
            };
            state = self
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if overdue {
            state.background_overdue -= 1;
        }
        state.background_writing = true;
        Turn {
            turns: self,
            intake: false,
        }
    }
}

/// See `WriteTurns::intake_ticket`.
pub struct IntakeTicket<'a> {
    turns: &'a WriteTurns,
    live: bool,
}

impl IntakeTicket<'_> {
    /// The writer has the webhook now and will count it answered.
    pub fn handed_over(mut self) {
        self.live = false;
    }
}

impl Drop for IntakeTicket<'_> {
    fn drop(&mut self) {
        if self.live {
            self.turns.intake_answered(1);
        }
    }
}

/// The right to write, until dropped.
pub struct Turn<'a> {
    turns: &'a WriteTurns,
    intake: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.turns.state();
        match self.intake {
            true => state.intake_writing = false,
            false => {
                state.background_writing = false;
                state.background_ended_at = Some(Instant::now());
            }
        }
        self.turns.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn background_waits_while_a_webhook_is_queued_and_goes_once_it_is_answered() {
        let turns = Arc::new(WriteTurns::default());
        let ticket = turns.intake_ticket();
        ticket.handed_over();
        // Set just before the answer: a turn granted while the webhook was queued sees it unset.
        // (Not a time: the waiting thread may start late on a loaded machine.)
        let answering = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (turns, answering) = (turns.clone(), answering.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                drop(turns.background_turn());
                (answering.load(Ordering::SeqCst), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        answering.store(true, Ordering::SeqCst);
        turns.intake_answered(1);
        let (after_the_answer, waited) = waiter.join().unwrap();
        assert!(after_the_answer, "let in while a webhook was queued");
        assert!(
            waited < PATIENCE,
            "let in when the queue emptied: {waited:?}"
        );
    }

    #[test]
    fn a_background_writer_gets_in_between_batches_of_a_storm_that_never_pauses() {
        let turns = Arc::new(WriteTurns::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Intake always has a webhook queued and writes batch after batch.
        let storm = {
            let (turns, stop) = (turns.clone(), stop.clone());
            std::thread::spawn(move || {
                turns.intake_ticket().handed_over();
                while !stop.load(Ordering::SeqCst) {
                    let _turn = turns.intake_turn();
                    std::thread::sleep(Duration::from_millis(2));
                }
                turns.intake_answered(1);
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        drop(turns.background_turn());
        let waited = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        storm.join().unwrap();
        assert!(waited >= PATIENCE, "{waited:?}");
        assert!(waited < PATIENCE * 3, "{waited:?}");
    }

    #[tokio::test]
    async fn yielding_to_intake_ends_when_the_queue_empties_and_keeps_the_patience_already_spent() {
        let turns = Arc::new(WriteTurns::default());
        assert!(turns.yield_to_intake().await.elapsed() < PATIENCE / 4);
        turns.intake_ticket().handed_over();
        let waiter = tokio::spawn({
            let turns = turns.clone();
            async move { turns.yield_to_intake().await.elapsed() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        turns.intake_answered(1);
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(
            waited < PATIENCE,
            "let go when the queue emptied: {waited:?}"
        );

        // A storm that never pauses: the yield ends at PATIENCE, and the blocking turn after
        // it does not wait a second PATIENCE.
        turns.intake_ticket().handed_over();
        let since = turns.yield_to_intake().await;
        assert!(since.elapsed() >= PATIENCE, "{:?}", since.elapsed());
        let storm_batch = turns.intake_turn();
        let overdue = std::thread::spawn({
            let turns = turns.clone();
            move || {
                drop(turns.background_turn_since(since));
                since.elapsed()
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(storm_batch);
        let waited = overdue.join().unwrap();
        assert!(waited < PATIENCE * 3 / 2, "{waited:?}");
        turns.intake_answered(1);
    }

    #[test]
    fn background_turns_are_spaced_while_intake_is_busy_and_not_once_it_is_idle() {
        let turns = WriteTurns::default();
        drop(turns.background_turn());
        let started = Instant::now();
        drop(turns.background_turn());
        assert!(
            started.elapsed() < SPACING,
            "intake idle: {:?}",
            started.elapsed()
        );

        // Webhooks keep being answered between the turns, as in a storm.
        let answer = || {
            turns.intake_ticket().handed_over();
            turns.intake_answered(1);
        };
        answer();
        let started = Instant::now();
        drop(turns.background_turn());
        answer();
        drop(turns.background_turn());
        let took = started.elapsed();
        assert!(
            took >= SPACING * 2,
            "two turns while intake is busy: {took:?}"
        );
        assert!(took < PATIENCE, "{took:?}");
    }

    #[test]
    fn a_prompt_turn_goes_at_the_next_gap_between_batches() {
        let turns = Arc::new(WriteTurns::default());
        turns.intake_ticket().handed_over();
        let intake = turns.intake_turn();
        let prompt = {
            let turns = turns.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                drop(turns.prompt_turn());
                started.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(intake);
        let waited = prompt.join().unwrap();
        assert!(waited < PATIENCE / 2, "{waited:?}");
        turns.intake_answered(1);
    }

    #[test]
    fn intake_waits_for_the_background_transaction_under_way_and_never_writes_beside_it() {
        let turns = Arc::new(WriteTurns::default());
        let background = turns.background_turn();
        let ended = Arc::new(AtomicBool::new(false));
        let intake = {
            let (turns, ended) = (turns.clone(), ended.clone());
            std::thread::spawn(move || {
                let _turn = turns.intake_turn();
                ended.load(Ordering::SeqCst)
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        ended.store(true, Ordering::SeqCst);
        drop(background);
        assert!(
            intake.join().unwrap(),
            "intake wrote while the background transaction was under way"
        );
    }

    #[test]
    fn a_ticket_given_up_before_the_writer_took_it_is_taken_back() {
        let turns = WriteTurns::default();
        drop(turns.intake_ticket());
        assert!(!turns.intake_waiting());
        turns.intake_ticket().handed_over();
        assert!(turns.intake_waiting());
    }
}
