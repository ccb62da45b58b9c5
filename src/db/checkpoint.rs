//! Checkpoints off the intake path. SQLite's automatic checkpoint runs inside whichever commit
//! pushes the WAL past 1,000 pages, so during a storm every few hundred webhooks waited on a
//! copy of the WAL into the database file and its fsync (40–48% of the intake writer's time in
//! the profiles). `serve` turns that off on all its connections (`Options::background_checkpoints`)
//! and runs this thread instead:
//!
//! - every `TICK` it reads how many WAL frames are not in the database yet (a NOOP checkpoint,
//!   which reads the WAL's index and writes nothing), and once `COPY_AFTER` are (SQLite's own
//!   automatic threshold), runs PASSIVE checkpoints on its own connection. They take no write
//!   lock, so intake goes on committing meanwhile. SQLite fsyncs the database file only after a
//!   pass that reached the WAL's end; beside a storm none does, so before the last pass (below)
//!   the pages they copied are written out (`flush_database`), outside any lock, and again while
//!   a write-out takes long enough for the passes after it to copy many more pages; the last
//!   pass's fsync, in its turn, then has only a few to write.
//! - A WAL is only rewound to its start by a commit that finds every frame already in the
//!   database and no reader still inside the WAL, which a storm that never pauses (and the
//!   processor's and sender's reads beside it) would never give: the first full run of the
//!   storm benchmark saw the WAL reach 440 MB. So once the WAL holds `RESTART_AFTER` frames, the
//!   last pass runs in a write turn (`db::turns`, at the next gap between intake batches) as a
//!   RESTART checkpoint: nothing is appended meanwhile, it copies the rest, waits up to
//!   `READERS_WAIT` for readers still inside the WAL to finish, and the next commit starts the
//!   WAL over. A reader still there after that keeps the turn no longer: it is given back to
//!   intake and taken again `BETWEEN_ATTEMPTS` later, until `LAST_PASS_PATIENCE` runs out. (One
//!   20 ms wait in the turn, in SQLite's busy handler that sleeps 1, 2, 5, 10 ms whenever the
//!   reader ends, held intake long enough to triple its p99 at c=64.)
//!
//! Each rewind holds intake for the last pass, so they are rare: at a storm's 16k events/s, 16 MiB
//! of WAL came every 100 ms and the last pass landed in most ticks (p99 30 ms at c=64 on the
//! pre-filled database); at 64 MiB, 10.5–18 ms over several runs (BENCHMARKS.md).
//!
//! The bound: the WAL holds `RESTART_AFTER` frames (64 MiB at 4 KiB pages) plus what is written
//! during one tick, the passes and the write-outs (at most `MAX_WRITE_OUTS`; 91–152 MB measured
//! at c=64 on the pre-filled database), and its file is cut back to
//! `WAL_SIZE_LIMIT` at that rewind. A reader
//! that keeps one snapshot for long (a backup, a big export) stops any checkpoint from copying
//! past its snapshot; the WAL then grows for as long as it reads, and once it is done the next
//! passes copy everything, the WAL starts over, and its file shrinks back to the limit.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::turns::WriteTurns;

/// How often the WAL is looked at while something writes.
const TICK: Duration = Duration::from_millis(100);
/// Frames not yet in the database that start a checkpoint (SQLite's automatic threshold).
const COPY_AFTER: i64 = 1000;
/// Frames in the WAL past which the last pass holds a write turn, so the WAL starts over.
const RESTART_AFTER: i64 = 16384;
/// Frames left after a pass that the last, turn-holding pass may copy: each is a write at a
/// random place of a large database, and the fsync after them is intake's wait.
const TAIL_FRAMES: i64 = 256;
/// Passes without a turn before the last one, while each leaves more than `TAIL_FRAMES`.
const MAX_PASSES: usize = 8;
/// The longest one attempt of the last pass, holding a turn, waits for readers inside the WAL
/// (the checkpointer's busy handler, which looks every `READERS_POLL`).
const READERS_WAIT: Duration = Duration::from_millis(2);
const READERS_POLL: Duration = Duration::from_micros(100);
/// How long intake writes between two attempts of the last pass.
const BETWEEN_ATTEMPTS: Duration = Duration::from_millis(5);
/// How long the last pass goes on trying; a longer reader (a backup) makes it give up until the
/// next tick.
const LAST_PASS_PATIENCE: Duration = Duration::from_millis(100);
/// A write-out before the last pass that took longer than this is followed by another: the pages
/// the passes copied meanwhile are what the last pass's fsync, holding intake, would write, and
/// there are about as many as the write-out took time (random places of the file, at the pace
/// intake adds frames). In pre-filled storms (BENCHMARKS.md), with one write-out the last pass
/// held intake 5.8–6.9 ms at the median and 42–325 ms at the worst (five runs); writing out
/// again after any over 5 ms, 2.9–3.8 ms and 12–44 ms (five runs).
const WRITE_OUT_AGAIN_AFTER: Duration = Duration::from_millis(5);
/// Write-outs before one last pass at most: on a disk slower than intake's writes none gets
/// under `WRITE_OUT_AGAIN_AFTER`, and the WAL grows while they run.
const MAX_WRITE_OUTS: usize = 8;
/// The size, in bytes, a WAL file is cut back to when it starts over (`journal_size_limit`).
pub const WAL_SIZE_LIMIT: u64 = 128 * 1024 * 1024;

/// What one `PRAGMA wal_checkpoint` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Another checkpoint held the checkpoint lock (a CLI command's automatic one).
    pub busy: bool,
    /// Frames in the WAL.
    pub frames: i64,
    /// Of those, how many are in the database file now.
    pub copied: i64,
}

impl Pass {
    fn left(&self) -> i64 {
        (self.frames - self.copied).max(0)
    }
}

pub fn passive(conn: &Connection) -> rusqlite::Result<Pass> {
    wal_checkpoint(conn, "PASSIVE")
}

/// The WAL's frames and how many are in the database, without copying anything.
pub fn look(conn: &Connection) -> rusqlite::Result<Pass> {
    wal_checkpoint(conn, "NOOP")
}

fn wal_checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Pass> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok(Pass {
            busy: r.get::<_, i64>(0)? != 0,
            frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })
}

/// Copies the WAL into the database when `COPY_AFTER` frames wait (always when `all`), in
/// passes beside intake, and a last one in a write turn past `RESTART_AFTER` (or when `all`)
/// so the next commit can start the WAL over (see the module's comment).
pub fn checkpoint(conn: &Connection, turns: &WriteTurns, all: bool) -> rusqlite::Result<Pass> {
    let looked = look(conn)?;
    if !all && looked.left() < COPY_AFTER {
        return Ok(looked);
    }
    let mut pass = passes(conn)?;
    if !pass.busy && (all || pass.frames >= RESTART_AFTER) {
        // Written out beside intake, then what came meanwhile copied, and written out again
        // while that was much: the fsync in the turn then writes only the last few pages.
        for write_outs in 1.. {
            let started = Instant::now();
            flush_database(conn)?;
            let took = started.elapsed();
            pass = passes(conn)?;
            if pass.busy || !write_out_again(took, write_outs) {
                break;
            }
        }
        if pass.busy {
            return Ok(pass);
        }
        let give_up = Instant::now() + LAST_PASS_PATIENCE;
        loop {
            pass = {
                let _turn = turns.prompt_turn();
                wal_checkpoint(conn, "RESTART")?
            };
            if !pass.busy || Instant::now() + BETWEEN_ATTEMPTS >= give_up {
                break;
            }
            std::thread::sleep(BETWEEN_ATTEMPTS);
        }
    }
    Ok(pass)
}

/// Whether the pages copied after a write-out that took `took`, the `done`th before this last
/// pass, are worth writing out again before it.
fn write_out_again(took: Duration, done: usize) -> bool {
    took > WRITE_OUT_AGAIN_AFTER && done < MAX_WRITE_OUTS
}

/// PASSIVE passes while each leaves more than `TAIL_FRAMES` (at most `MAX_PASSES`).
fn passes(conn: &Connection) -> rusqlite::Result<Pass> {
    let mut pass = passive(conn)?;
    for _ in 1..MAX_PASSES {
        if pass.busy || pass.left() <= TAIL_FRAMES {
            break;
        }
        pass = passive(conn)?;
    }
    Ok(pass)
}

/// Writes the pages the passes copied to the disk, outside any lock. SQLite syncs the database
/// file only in a pass that reaches the WAL's end, which no pass beside a storm does, so the
/// copied pages stayed dirty until the last pass, in its write turn, reached the end: its
/// fsync then wrote all of them (up to `RESTART_AFTER` frames at random places) while intake
/// waited. `perf trace` on the storm saw those fsyncs take 20–64 ms, and intake's writer wait
/// as long for its turn. Only the data is written here (`sync_file_range`, a `WRITE_OUT_RANGE`
/// at a time), with no journal commit or device cache flush: durability still comes from
/// SQLite's own fsync, which then has little left to write. Only before the last pass (again
/// while the last call took long, `write_out_again`): after every tick's passes instead, the
/// pages rewritten most (an index's last leaf) were written out ten times a second, and intake
/// on an empty database lost 10–30% (`bench/run.sh`, 3c9c53d).
fn flush_database(conn: &Connection) -> rusqlite::Result<()> {
    let Some(path) = conn.path().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    std::fs::File::open(path)
        .and_then(|file| write_out(&file))
        .map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
                Some(format!("writing out {path}: {e}")),
            )
        })
}

/// The database is written out this much of the file at a time, each range waited for before
/// the next is started. Written out whole, the pages the passes had copied (thousands, at random
/// places of a large file) reached the disk in one burst, and intake's fsyncs of the WAL waited
/// behind it: in pre-filled storms the round after the largest write-out had a p99 of 14–25 ms
/// at c=64, against 7–9 ms in the others. A range at a time, no round's p99 was over 9.7 ms in
/// four runs, and the WAL grew further meanwhile (up to 119 MB, against 105 MB; at 8 MiB ranges
/// 149 MB): BENCHMARKS.md, "Writing out the database a range at a time".
#[cfg(target_os = "linux")]
const WRITE_OUT_RANGE: u64 = 32 * 1024 * 1024;

#[cfg(target_os = "linux")]
fn write_out(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // Pages past the length read here (the file grew meanwhile) are left to the next write-out,
    // or to the last pass's fsync.
    for (offset, len) in ranges(file.metadata()?.len(), WRITE_OUT_RANGE) {
        // SAFETY: the descriptor is open for the whole call; nothing is read from or written to
        // our memory.
        let written =
            unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags) };
        if written != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The first `len` bytes of a file as (offset, length) pieces of at most `range` bytes.
#[cfg(target_os = "linux")]
fn ranges(len: u64, range: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..len)
        .step_by(range as usize)
        .map(move |offset| (offset, range.min(len - offset)))
}

#[cfg(not(target_os = "linux"))]
fn write_out(file: &std::fs::File) -> std::io::Result<()> {
    file.sync_data()
}

/// The checkpointer connection's busy handler: SQLite's own sleeps 1, 2, 5, 10 ms between
/// looks, so a reader that ends a moment after the first look still cost a millisecond of
/// intake's turn, and one that ends after 3 ms cost 8.
fn wait_for_readers(looks: i32) -> bool {
    let waited = READERS_POLL * u32::try_from(looks).unwrap_or(u32::MAX);
    if waited >= READERS_WAIT {
        return false;
    }
    std::thread::sleep(READERS_POLL);
    true
}

/// Gives the checkpointer's connection its short waits for readers.
fn wait_briefly_for_readers(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(wait_for_readers))
}

/// The thread; dropping it (a start that failed halfway) tells it to stop, `stop` also waits.
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(conn: Connection, turns: Arc<WriteTurns>) -> Checkpointer {
        if let Err(e) = wait_briefly_for_readers(&conn) {
            tracing::warn!(error = %e, "checkpoints: cannot shorten the wait for readers");
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || run(&conn, &turns, &stopping))
            .expect("spawn the checkpointer thread");
        Checkpointer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread after one last checkpoint (call it when the writers are done).
    pub fn stop(mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn signal(&self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.signal();
    }
}

fn run(conn: &Connection, turns: &WriteTurns, stop: &(Mutex<bool>, Condvar)) {
    let mut failing = false;
    loop {
        let stopping = {
            let guard = stop.0.lock().unwrap_or_else(|p| p.into_inner());
            let (guard, _) = stop
                .1
                .wait_timeout_while(guard, TICK, |stopped| !*stopped)
                .unwrap_or_else(|p| p.into_inner());
            *guard
        };
        match checkpoint(conn, turns, stopping) {
            Ok(_) => {
                if std::mem::replace(&mut failing, false) {
                    tracing::info!("checkpoints work again");
                }
            }
            // Logged once per spell: a full disk would otherwise log ten lines a second.
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::error!(error = %e, "checkpoint failed; the WAL grows until one works");
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;

    fn wal_frames(conn: &Connection) -> i64 {
        passive(conn).unwrap().frames
    }

    /// As `serve` opens them: a writer, and the checkpointer's own connection.
    fn opened(dir: &tempfile::TempDir) -> (db::Options, Connection, Connection) {
        let options = db::Options::at(&dir.path().join("t.db"))
            .unwrap()
            .with_background_checkpoints();
        let writer = db::open(&options).unwrap();
        let checkpointer = db::open(&options).unwrap();
        wait_briefly_for_readers(&checkpointer).unwrap();
        (options, writer, checkpointer)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_write_out_covers_the_whole_file_a_range_at_a_time() {
        assert_eq!(ranges(0, 8).count(), 0);
        assert_eq!(ranges(8, 8).collect::<Vec<_>>(), [(0, 8)]);
        assert_eq!(ranges(21, 8).collect::<Vec<_>>(), [(0, 8), (8, 8), (16, 5)]);
        let len = 7 * WRITE_OUT_RANGE + 4096;
        let pieces: Vec<_> = ranges(len, WRITE_OUT_RANGE).collect();
        assert_eq!(pieces.len(), 8);
        assert!(pieces.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        assert_eq!(pieces.last(), Some(&(7 * WRITE_OUT_RANGE, 4096)));
    }

    #[test]
    fn a_long_write_out_is_followed_by_another_up_to_the_limit() {
        let long = WRITE_OUT_AGAIN_AFTER + Duration::from_millis(1);
        assert!(write_out_again(long, 1));
        assert!(write_out_again(long, MAX_WRITE_OUTS - 1));
        assert!(!write_out_again(long, MAX_WRITE_OUTS), "bounded");
        assert!(!write_out_again(WRITE_OUT_AGAIN_AFTER, 1), "short enough");
        assert!(!write_out_again(Duration::ZERO, 1));
    }

    #[test]
    fn a_checkpoint_empties_the_wal_so_the_next_commit_starts_it_over() {
        let dir = tempfile::tempdir().unwrap();
        let (_, writer, checkpointer) = opened(&dir);
        writer.execute_batch("CREATE TABLE t (x BLOB); ").unwrap();
        let turns = WriteTurns::default();
        let write = |n: usize| {
            for _ in 0..n {
                writer
                    .execute("INSERT INTO t VALUES (zeroblob(6000))", [])
                    .unwrap();
            }
        };
        write(10);
        let few = checkpoint(&checkpointer, &turns, false).unwrap();
        assert!(few.left() > 0, "a few frames wait for more: {few:?}");
        write(2000);
        // No automatic checkpoint: every commit's pages are still in the WAL.
        let before = wal_frames(&checkpointer);
        assert!(before > 4000, "{before}");
        let pass = checkpoint(&checkpointer, &turns, true).unwrap();
        assert_eq!(pass.left(), 0, "{pass:?}");
        // The WAL starts over: it holds only what came after.
        write(10);
        let after = wal_frames(&checkpointer);
        assert!(
            after < 100,
            "the WAL went on growing: {after} frames after {before}"
        );
    }

    #[test]
    fn a_reader_inside_the_wal_at_the_last_pass_lets_intake_in_and_the_wal_starts_over_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (options, writer, checkpointer) = opened(&dir);
        writer.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        for _ in 0..2000 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(6000))", [])
                .unwrap();
        }
        // The last frames are copied while a reader (as the processor's and the sender's are)
        // is inside the WAL, and it reads on past one attempt's `READERS_WAIT`.
        assert_eq!(passive(&checkpointer).unwrap().left(), 0);
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let (reading, read) = std::sync::mpsc::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let reader = {
            let options = options.clone();
            std::thread::spawn(move || {
                let mut conn = db::open(&options).unwrap();
                let tx = conn.transaction().unwrap();
                let _: i64 = tx
                    .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .unwrap();
                reading.send(()).unwrap();
                finished.recv().unwrap();
            })
        };
        read.recv().unwrap();
        let turns = std::sync::Arc::new(WriteTurns::default());
        let last_pass = {
            let turns = turns.clone();
            std::thread::spawn(move || checkpoint(&checkpointer, &turns, true).unwrap())
        };
        std::thread::sleep(READERS_WAIT);
        // Intake is let in while the reader still reads: the last pass does not hold the turn
        // for as long as the reader takes.
        drop(turns.intake_turn());
        finish.send(()).unwrap();
        reader.join().unwrap();
        let pass = last_pass.join().unwrap();
        assert!(
            !pass.busy,
            "it tries again once the reader is done: {pass:?}"
        );
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let frames: i64 = writer
            .query_row("PRAGMA wal_checkpoint(NOOP)", [], |r| r.get(1))
            .unwrap();
        assert!(frames < 10, "the WAL went on growing: {frames} frames");
    }

    #[test]
    fn a_long_reader_holds_the_wal_back_and_it_starts_over_once_the_reader_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let (options, writer, checkpointer) = opened(&dir);
        let mut reader = db::open(&options).unwrap();
        writer
            .execute_batch("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (1);")
            .unwrap();
        let turns = WriteTurns::default();
        let read = reader.transaction().unwrap();
        let _: i64 = read
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        for _ in 0..500 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(6000))", [])
                .unwrap();
        }
        let held = checkpoint(&checkpointer, &turns, true).unwrap();
        assert!(
            look(&checkpointer).unwrap().frames > 900,
            "NOOP reads the frames"
        );
        assert!(
            held.left() > 900,
            "the reader's snapshot must keep frames: {held:?}"
        );
        drop(read);
        assert_eq!(checkpoint(&checkpointer, &turns, true).unwrap().left(), 0);
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert!(wal_frames(&checkpointer) < 10);
    }
}
