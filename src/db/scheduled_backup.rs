//! The backups `serve` makes on its own (`[backup]` in the config): every `interval_hours` a
//! checked copy (`db::backup`, compressed when `compress`) named by its UTC time into `dir`, then
//! the oldest beyond `keep` deleted. It runs on a thread of its own, with the copy's own read
//! connection, so intake and the sender never wait on it (a WAL reader blocks no writer).
//!
//! Only files named as this module names them (`mailmycustomer-YYYYMMDDTHHMMSSZ.db`, with `.zst`
//! when compressed) are ever counted or deleted: whatever else is in the directory (a backup made
//! by hand, install.sh's `before-upgrade-*`) stays.
//!
//! The next backup is due `interval_hours` after the newest one found there, so restarts neither
//! postpone it forever nor add extra ones; with none there, the first is made at start. A failure
//! (disk full, directory not writable) is logged at error and tried again an hour later; the
//! server goes on serving.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::db::backup;
use crate::Error;

const PREFIX: &str = "mailmycustomer-";
/// UTC, to the second: the names sort as the times do.
const STAMP: &str = "%Y%m%dT%H%M%SZ";
const PLAIN: &str = ".db";
const COMPRESSED: &str = ".db.zst";
/// After a failed backup: an hour, so a full disk is not hammered, and a fixed one is soon used.
const AFTER_FAILURE: Duration = Duration::from_secs(3600);

/// What the scheduled backups do, from `config.backup`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub database: PathBuf,
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
    pub compress: bool,
}

impl Schedule {
    /// The schedule `config` asks for; `None` when `backup.interval_hours` is 0.
    pub fn from_config(config: &Config) -> Option<Schedule> {
        let b = &config.backup;
        if b.interval_hours == 0 {
            return None;
        }
        let dir = match b.dir.as_os_str().is_empty() {
            true => config
                .database
                .path
                .parent()
                .unwrap_or(Path::new(""))
                .join("backups"),
            false => b.dir.clone(),
        };
        Some(Schedule {
            database: config.database.path.clone(),
            dir,
            every: Duration::from_secs(b.interval_hours.saturating_mul(3600)),
            keep: b.keep.max(1) as usize,
            compress: b.compress,
        })
    }

    /// Starts the schedule on its own thread; `Running::stop` ends it.
    pub fn start(self) -> Result<Running, Error> {
        let (stop, stopped) = mpsc::channel::<()>();
        let (done, finished) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("scheduled-backup".into())
            .spawn(move || {
                self.run(&stopped);
                let _ = done.send(());
            })?;
        Ok(Running {
            stop,
            finished,
            thread,
        })
    }

    fn run(&self, stop: &mpsc::Receiver<()>) {
        self.remove_leftovers();
        let newest = self.ours().last().map(|(taken, _)| *taken);
        let mut wait = first_wait(newest, now(), self.every);
        tracing::info!(
            dir = %self.dir.display(),
            every_hours = self.every.as_secs() / 3600,
            keep = self.keep,
            next_in_secs = wait.as_secs(),
            "scheduled backups are on"
        );
        loop {
            match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            wait = match self.backup_once(now()) {
                Ok(path) => {
                    tracing::info!(backup = %path.display(), "scheduled backup made and checked");
                    self.every
                }
                Err(e) => {
                    let retry = AFTER_FAILURE.min(self.every);
                    tracing::error!(
                        error = %e,
                        dir = %self.dir.display(),
                        retry_in_secs = retry.as_secs(),
                        "scheduled backup failed; serving goes on"
                    );
                    retry
                }
            };
        }
    }

    /// One backup named for `now` (unix seconds), checked, then the oldest beyond `keep` deleted.
    pub fn backup_once(&self, now: i64) -> Result<PathBuf, Error> {
        // Owner-only, like the database: the backups hold the same addresses and secrets.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| {
                Error::Config(format!(
                    "cannot create the backup directory {} (backup.dir): {e}",
                    self.dir.display()
                ))
            })?;
        let path = self.dir.join(name_for(now, self.compress));
        match self.compress {
            true => backup::copy_compressed(&self.database, &path).map(drop)?,
            false => backup::copy(&self.database, &path).map(drop)?,
        }
        let ours = self.ours();
        for (_, old) in ours.iter().take(ours.len().saturating_sub(self.keep)) {
            match std::fs::remove_file(old) {
                Ok(()) => {
                    tracing::info!(deleted = %old.display(), keep = self.keep, "old scheduled backup deleted")
                }
                Err(e) => {
                    tracing::warn!(error = %e, file = %old.display(), "cannot delete an old scheduled backup")
                }
            }
        }
        Ok(path)
    }

    /// Our backups in `dir`, oldest first, with the time each was taken (unix seconds).
    fn ours(&self) -> Vec<(i64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ours: Vec<(i64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some((taken_at(&name)?, e.path()))
            })
            .collect();
        ours.sort();
        ours
    }

    /// A server killed in the middle of a backup leaves its temporary file (`<name>.partial`,
    /// `<name>.partial.zst`); the next start removes those of ours.
    fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let base = name
                .strip_suffix(".partial.zst")
                .or_else(|| name.strip_suffix(".partial"));
            if base.is_some_and(|base| taken_at(base).is_some()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The scheduled backups' thread, while it runs.
pub struct Running {
    stop: mpsc::Sender<()>,
    finished: mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Stops the schedule, waiting up to `grace` for a backup being made (blocking: call it off
    /// the async executor). A copy still going after that is left to die with the process; its
    /// temporary file is removed at the next start.
    pub fn stop(self, grace: Duration) {
        let _ = self.stop.send(());
        match self.finished.recv_timeout(grace) {
            Ok(()) => {
                if self.thread.join().is_err() {
                    tracing::error!("the scheduled backup thread panicked");
                }
            }
            Err(RecvTimeoutError::Timeout) => tracing::warn!(
                "a scheduled backup was still being made at shutdown; its temporary file is \
                 removed at the next start"
            ),
            Err(RecvTimeoutError::Disconnected) => {
                tracing::error!("the scheduled backup thread panicked")
            }
        }
    }
}

/// How long until the first backup: at once when there is none or the newest is `every` old,
/// else when it will be.
fn first_wait(newest: Option<i64>, now: i64, every: Duration) -> Duration {
    let Some(newest) = newest else {
        return Duration::ZERO;
    };
    let age = Duration::from_secs(now.saturating_sub(newest).max(0) as u64);
    every.saturating_sub(age)
}

fn now() -> i64 {
    crate::db::now_unix()
}

/// `mailmycustomer-20261202T095016Z.db` (`.db.zst` compressed) for `now`, unix seconds.
fn name_for(now: i64, compress: bool) -> String {
    let stamp = jiff::Timestamp::from_second(now)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime(STAMP)
        .to_string();
    let suffix = if compress { COMPRESSED } else { PLAIN };
    format!("{PREFIX}{stamp}{suffix}")
}

/// When the backup named `name` was taken, if the name is one `name_for` makes.
fn taken_at(name: &str) -> Option<i64> {
    let rest = name.strip_prefix(PREFIX)?;
    let stamp = rest
        .strip_suffix(COMPRESSED)
        .or_else(|| rest.strip_suffix(PLAIN))?;
    if stamp.len() != "YYYYMMDDTHHMMSSZ".len() {
        return None;
    }
    let time = jiff::civil::DateTime::strptime(&STAMP[..STAMP.len() - 1], stamp.strip_suffix('Z')?)
        .ok()?;
    Some(
        time.to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_second(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn names_sort_as_times_and_only_ours_are_read_back() {
        let t = 1_796_205_016; // 2026-12-02T09:50:16Z
        assert_eq!(name_for(t, false), "mailmycustomer-20261202T095016Z.db");
        assert_eq!(name_for(t, true), "mailmycustomer-20261202T095016Z.db.zst");
        assert_eq!(taken_at(&name_for(t, true)), Some(t));
        assert_eq!(taken_at(&name_for(t, false)), Some(t));
        assert!(name_for(t, false) < name_for(t + 1, false));
        for foreign in [
            "mailmycustomer-20261202T095016Z.db.partial",
            "mailmycustomer-20261202T095016Z.sqlite",
            "mailmycustomer-2026-12-02.db",
            "before-upgrade-20261202T095016Z.db.zst",
            "mailmycustomer-20261302T095016Z.db",
            "mailmycustomer.db",
            "notes.txt",
        ] {
            assert_eq!(taken_at(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_first_backup_is_due_an_interval_after_the_newest() {
        let every = Duration::from_secs(DAY as u64);
        let now = 1_796_205_016;
        assert_eq!(first_wait(None, now, every), Duration::ZERO);
        assert_eq!(first_wait(Some(now - 2 * DAY), now, every), Duration::ZERO);
        assert_eq!(
            first_wait(Some(now - 3600), now, every),
            Duration::from_secs(23 * 3600)
        );
        // A clock set back: the newest is "in the future"; wait one interval, no more.
        assert_eq!(first_wait(Some(now + 3600), now, every), every);
    }

    fn live_database(dir: &Path) -> PathBuf {
        let path = dir.join("live.db");
        let mut conn = crate::db::open(&crate::db::Options::at(&path).unwrap()).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        path
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The schedule itself, with a short interval: a backup at start (the newest is old), more
    /// on the interval, never more than `keep` of ours, nobody else's file touched, and a stop
    /// that does not wait for the next one.
    #[test]
    fn backups_on_the_interval_keep_the_newest_and_touch_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let database = live_database(dir.path());
        let backups = dir.path().join("backups");
        std::fs::create_dir(&backups).unwrap();
        let stale = [
            "mailmycustomer-20200101T000000Z.db.zst",
            "mailmycustomer-20200102T000000Z.db",
        ];
        let foreign = [
            "before-upgrade-20200101T000000Z.db",
            "mailmycustomer-by-hand.db",
            "notes.txt",
        ];
        for name in stale.iter().chain(&foreign) {
            std::fs::write(backups.join(name), "x").unwrap();
        }
        // A server killed mid-copy left this.
        std::fs::write(
            backups.join("mailmycustomer-20200103T000000Z.db.partial"),
            "x",
        )
        .unwrap();
        let schedule = Schedule {
            database,
            dir: backups.clone(),
            every: Duration::from_millis(1200),
            keep: 2,
            compress: true,
        };
        let running = schedule.clone().start().unwrap();

        let ours = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| taken_at(n).is_some())
                .cloned()
                .collect()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = std::collections::BTreeSet::new();
        // Three made: the one at start, then two on the interval.
        while seen.len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                names(&backups)
            );
            let now = names(&backups);
            // keep = 2; a third exists only between its check and the pruning of the oldest.
            assert!(ours(&now).len() <= 3, "{now:?}");
            for n in ours(&now) {
                if !stale.contains(&n.as_str()) {
                    seen.insert(n);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let started = std::time::Instant::now();
        running.stop(Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "stop waits for no interval"
        );

        let left = names(&backups);
        let newest: Vec<String> = seen.iter().rev().take(2).rev().cloned().collect();
        assert_eq!(ours(&left), newest, "the two newest of ours: {left:?}");
        for name in foreign {
            assert!(left.contains(&name.to_owned()), "{name} kept: {left:?}");
        }
        assert!(!left.iter().any(|n| n.contains(".partial")), "{left:?}");
        for name in &newest {
            assert!(backup::is_compressed(&backups.join(name)).unwrap());
        }
        use std::os::unix::fs::PermissionsExt;
        let fresh = tempfile::tempdir().unwrap();
        let made = Schedule {
            dir: fresh.path().join("a/b"),
            ..schedule
        };
        made.backup_once(now()).unwrap();
        let mode = std::fs::metadata(fresh.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    /// A directory that cannot be made fails the backup with a message naming backup.dir, and
    /// the schedule keeps running (stopped here at once, not killed by the failure).
    #[test]
    fn a_failed_backup_names_the_directory_and_the_schedule_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let database = live_database(dir.path());
        let blocker = dir.path().join("a-file");
        std::fs::write(&blocker, "x").unwrap();
        let schedule = Schedule {
            database,
            dir: blocker.join("backups"),
            every: Duration::from_millis(100),
            keep: 1,
            compress: false,
        };
        let err = schedule.backup_once(now()).unwrap_err().to_string();
        assert!(
            err.contains("backup.dir") && err.contains("a-file"),
            "{err}"
        );
        let running = schedule.start().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(!running.thread.is_finished(), "a failure ends nothing");
        running.stop(Duration::from_secs(5));
    }
}
