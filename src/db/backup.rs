//! Backups while the server runs, and putting one back.
//!
//! `copy` uses SQLite's online backup in a single step: the whole copy is read inside one read
//! transaction, so it is one consistent moment of the database even while webhooks are being
//! committed (in WAL mode a reader blocks no writer; the writers' new pages wait in the WAL, which
//! cannot be checkpointed past the copy's snapshot until it ends). A stepwise copy would restart
//! each time another process committed, and under a storm might never finish.
//!
//! Secrets stay as they are stored: sealed. A copy restores only with the same key.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::{classify_db_error, Error};

/// What a database file holds, as a backup and a restore report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub schema_version: i64,
    pub integrations: i64,
    pub events: i64,
    pub deliveries: i64,
    pub templates: i64,
    pub users: i64,
}

/// How many times a copy is tried again when the database is locked at the moment it begins
/// (another process in the middle of a schema change, e.g. a server migrating).
const BUSY_TRIES: u32 = 50;
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// Copies the database at `source` to `dest` (which must not exist) and checks the copy. The
/// copy is written beside `dest` under a temporary name, synced, and renamed into place only once
/// it passed the checks, so `dest` is never a half-made file.
pub fn copy(source: &Path, dest: &Path) -> Result<Summary, Error> {
    if !source.is_file() {
        return Err(Error::Config(format!(
            "there is no database at {} (database.path) to back up",
            source.display()
        )));
    }
    if dest.exists() {
        return Err(Error::Config(format!(
            "{} exists already; give the backup a new file name (a backup never overwrites)",
            dest.display()
        )));
    }
    let partial = sibling(dest, ".partial");
    let _ = std::fs::remove_file(&partial);
    let result = copy_to(source, &partial).and_then(|()| verify(&partial));
    match result {
        Ok(summary) => {
            std::fs::rename(&partial, dest).map_err(|e| {
                Error::Config(format!("cannot name the backup {}: {e}", dest.display()))
            })?;
            sync_dir(dest);
            Ok(Summary {
                bytes: file_size(dest),
                ..summary
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn copy_to(source: &Path, partial: &Path) -> Result<(), Error> {
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify_db_error)?;
    from.busy_timeout(Duration::from_secs(5))
        .map_err(classify_db_error)?;
    // The backup holds customers' addresses and sealed secrets: owner-only, like the database.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .map_err(|e| {
            Error::Config(format!(
                "cannot create the backup file {}: {e}",
                partial.display()
            ))
        })?;
    let mut to = Connection::open(partial).map_err(classify_db_error)?;
    {
        let backup = Backup::new(&from, &mut to).map_err(classify_db_error)?;
        let mut tries = 0;
        loop {
            // -1: every page in one step, so the copy is a single snapshot.
            match backup.step(-1).map_err(classify_db_error)? {
                StepResult::Done => break,
                StepResult::Busy | StepResult::Locked | StepResult::More if tries < BUSY_TRIES => {
                    tries += 1;
                    std::thread::sleep(BUSY_PAUSE);
                }
                other => {
                    return Err(Error::Config(format!(
                        "the database stayed locked for {} s ({other:?}); try the backup again",
                        (BUSY_PAUSE * BUSY_TRIES).as_secs()
                    )))
                }
            }
        }
    }
    // A backup is a single file: no WAL beside it.
    to.execute_batch("PRAGMA journal_mode = DELETE;")
        .map_err(classify_db_error)?;
    drop(to);
    File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::Config(format!("cannot sync {}: {e}", partial.display())))?;
    Ok(())
}

/// Checks that `path` is a whole MailMyCustomer database this binary can run on, and says what
/// it holds: `PRAGMA integrity_check` (it reads every page, so it takes a while on a big file),
/// the schema version (newer than this binary → refused), and counts of what matters.
pub fn verify(path: &Path) -> Result<Summary, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| not_a_database(path, &e.to_string()))?;
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| not_a_database(path, &e.to_string()))?;
    if integrity != "ok" {
        return Err(Error::Config(format!(
            "{} is damaged (integrity_check: {integrity}); use another backup",
            path.display()
        )));
    }
    let schema_version = super::schema_version(&conn)
        .map_err(|_| not_a_database(path, "it has no MailMyCustomer schema history"))?;
    let latest = super::latest_embedded_version();
    if schema_version > latest {
        return Err(Error::Config(format!(
            "{} has schema version {schema_version}, newer than this binary's {latest}: run the \
             newer mailmycustomer that made it",
            path.display()
        )));
    }
    let count = |table: &str| -> Result<i64, Error> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .map_err(|e| not_a_database(path, &e.to_string()))
    };
    Ok(Summary {
        bytes: file_size(path),
        schema_version,
        integrations: count("integrations")?,
        events: count("events")?,
        deliveries: count("deliveries")?,
        templates: count("templates")?,
        users: count("users")?,
    })
}

/// Where `restore` puts the database it replaces: `<database>.before-restore-<unix seconds>`.
pub fn aside_path(database: &Path, now: i64) -> PathBuf {
    sibling(database, &format!(".before-restore-{now}"))
}

/// Puts the backup at `backup` in place of the database at `database`, which must not be in
/// use (the caller holds the serve lock). The current database, with its `-wal` and `-shm`,
/// moves aside (see `aside_path`) first, so nothing is lost if the backup was the wrong one.
/// Returns where the old one went, if there was one.
pub fn restore(backup: &Path, database: &Path, now: i64) -> Result<Option<PathBuf>, Error> {
    verify(backup)?;
    let incoming = sibling(database, ".restoring");
    let _ = std::fs::remove_file(&incoming);
    let copy_failed = |e: std::io::Error| {
        Error::Config(format!(
            "cannot copy {} to {}: {e}",
            backup.display(),
            incoming.display()
        ))
    };
    {
        let mut from = File::open(backup).map_err(copy_failed)?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&incoming)
            .map_err(copy_failed)?;
        std::io::copy(&mut from, &mut to).map_err(copy_failed)?;
        to.sync_all().map_err(copy_failed)?;
    }
    let aside = match database.exists() {
        true => {
            let aside = aside_path(database, now);
            // The WAL goes with its database: it may hold commits not yet in the main file.
            for suffix in ["-wal", "-shm", ""] {
                let from = sibling(database, suffix);
                if from.exists() {
                    std::fs::rename(&from, sibling(&aside, suffix)).map_err(|e| {
                        Error::Config(format!("cannot move {} aside: {e}", from.display()))
                    })?;
                }
            }
            Some(aside)
        }
        false => None,
    };
    std::fs::rename(&incoming, database).map_err(|e| {
        Error::Config(format!(
            "cannot put the backup in place at {}: {e}",
            database.display()
        ))
    })?;
    sync_dir(database);
    Ok(aside)
}

fn not_a_database(path: &Path, why: &str) -> Error {
    Error::Config(format!(
        "{} is not a MailMyCustomer database: {why}",
        path.display()
    ))
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Makes a rename durable: the directory entry is synced too. Best effort (some filesystems
/// refuse to sync a directory).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> PathBuf {
        let path = dir.join("live.db");
        let mut conn = crate::db::open(&path, Duration::from_secs(1)).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO integrations (id, name, webhook_secret, created_at)
             VALUES ('int_0123456789abcdef', 'shop', 'whsec_x', 0)",
            [],
        )
        .unwrap();
        path
    }

    #[test]
    fn a_copy_holds_what_was_committed_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let live = database(dir.path());
        let dest = dir.path().join("copy.db");
        let summary = copy(&live, &dest).unwrap();
        assert_eq!(summary.integrations, 1);
        assert_eq!(summary.schema_version, crate::db::latest_embedded_version());
        assert!(summary.templates > 0, "the built-in templates");
        assert!(summary.bytes > 0);
        assert!(!sibling(&dest, ".partial").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let again = copy(&live, &dest).unwrap_err().to_string();
        assert!(again.contains("never overwrites"), "{again}");
    }

    #[test]
    fn a_file_that_is_not_ours_or_is_newer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database at all, just text").unwrap();
        let err = verify(&junk).unwrap_err().to_string();
        assert!(err.contains("not a MailMyCustomer database"), "{err}");

        let live = database(dir.path());
        let conn = Connection::open(&live).unwrap();
        conn.execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (9999, 'future', '2030-01-01', '0')",
            [],
        )
        .unwrap();
        drop(conn);
        let err = verify(&live).unwrap_err().to_string();
        assert!(err.contains("newer than this binary"), "{err}");
    }

    #[test]
    fn a_restore_keeps_the_old_database_and_its_wal_aside() {
        let dir = tempfile::tempdir().unwrap();
        let live = database(dir.path());
        let dest = dir.path().join("copy.db");
        copy(&live, &dest).unwrap();
        // A change after the backup, left in the WAL by a connection still open.
        let conn = crate::db::open(&live, Duration::from_secs(1)).unwrap();
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .unwrap();
        conn.execute(
            "INSERT INTO integrations (id, name, webhook_secret, created_at)
             VALUES ('int_fedcba9876543210', 'later', 'whsec_y', 0)",
            [],
        )
        .unwrap();

        let aside = restore(&dest, &live, 1_700_000_000).unwrap().unwrap();
        drop(conn);
        assert_eq!(aside, aside_path(&live, 1_700_000_000));
        assert_eq!(verify(&live).unwrap().integrations, 1, "the backup's rows");
        assert_eq!(
            verify(&aside).unwrap().integrations,
            2,
            "the old database with the commit its WAL held"
        );
    }
}
