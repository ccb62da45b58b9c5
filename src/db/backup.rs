//! Backups while the server runs, and putting one back.
//!
//! `copy` uses SQLite's online backup in a single step: the whole copy is read inside one read
//! transaction, so it is one consistent moment of the database even while webhooks are being
//! committed (in WAL mode a reader blocks no writer; the writers' new pages wait in the WAL, which
//! cannot be checkpointed past the copy's snapshot until it ends). A stepwise copy would restart
//! each time another process committed, and under a storm might never finish.
//!
//! `copy_compressed` makes and checks the same plain copy first, then writes it as a zstd
//! stream; `restore` tells the two apart by zstd's magic bytes, not by the file's name.
//!
//! Secrets stay as they are stored: sealed. A copy restores only with the same key.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
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

/// What `copy_compressed` made: the checked database it holds and the sizes to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// The plain copy, as checked before it was compressed (`bytes` is its size).
    pub summary: Summary,
    /// The compressed file's size.
    pub bytes: u64,
}

/// The first four bytes of every zstd frame (RFC 8878, little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// zstd's own default: on a database it runs at hundreds of MB/s and still shrinks the text of
/// events and emails several times; higher levels cost far more time for a few percent.
const ZSTD_LEVEL: i32 = 3;

/// How many times a copy is tried again when the database is locked at the moment it begins
/// (another process in the middle of a schema change, e.g. a server migrating).
const BUSY_TRIES: u32 = 50;
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// Copies the database at `source` to `dest` (which must not exist) and checks the copy. The
/// copy is written beside `dest` under a temporary name, synced, and renamed into place only once
/// it passed the checks, so `dest` is never a half-made file.
pub fn copy(source: &Path, dest: &Path) -> Result<Summary, Error> {
    check_paths(source, dest)?;
    let partial = sibling(dest, ".partial");
    let summary = checked_copy(source, &partial)?;
    std::fs::rename(&partial, dest).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        Error::Config(format!("cannot name the backup {}: {e}", dest.display()))
    })?;
    sync_dir(dest);
    Ok(Summary {
        bytes: file_size(dest),
        ..summary
    })
}

/// As `copy`, and the checked copy is then written to `dest` as one zstd frame (with its
/// checksum), read back once to be sure it decodes whole, synced and renamed into place; the
/// plain copy is removed.
pub fn copy_compressed(source: &Path, dest: &Path) -> Result<Compressed, Error> {
    check_paths(source, dest)?;
    let plain = sibling(dest, ".partial");
    let packed = sibling(dest, ".partial.zst");
    let _ = std::fs::remove_file(&packed);
    let summary = checked_copy(source, &plain)?;
    let result = compress(&plain, &packed).and_then(|()| {
        let decoded = decoded_size(&packed)?;
        match decoded == summary.bytes {
            true => Ok(()),
            false => Err(Error::Config(format!(
                "the compressed backup {} reads back as {decoded} bytes, not {}; try again (is \
                 the disk failing?)",
                packed.display(),
                summary.bytes
            ))),
        }
    });
    let _ = std::fs::remove_file(&plain);
    let renamed = result.and_then(|()| {
        std::fs::rename(&packed, dest)
            .map_err(|e| Error::Config(format!("cannot name the backup {}: {e}", dest.display())))
    });
    if let Err(e) = renamed {
        let _ = std::fs::remove_file(&packed);
        return Err(e);
    }
    sync_dir(dest);
    Ok(Compressed {
        summary,
        bytes: file_size(dest),
    })
}

/// Whether the file at `path` starts as a zstd frame does.
pub fn is_compressed(path: &Path) -> Result<bool, Error> {
    let mut head = [0u8; 4];
    let mut file = File::open(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => {
                return Err(Error::Config(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Ok(read == head.len() && head == ZSTD_MAGIC)
}

fn check_paths(source: &Path, dest: &Path) -> Result<(), Error> {
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
    Ok(())
}

/// The online copy to `partial`, synced and checked; on failure nothing is left at `partial`.
fn checked_copy(source: &Path, partial: &Path) -> Result<Summary, Error> {
    let _ = std::fs::remove_file(partial);
    let result = copy_to(source, partial).and_then(|()| verify(partial));
    if result.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    result
}

/// Writes `plain` to the new file `packed` (owner-only) as zstd, and syncs it.
fn compress(plain: &Path, packed: &Path) -> Result<(), Error> {
    let failed =
        |e: std::io::Error| Error::Config(format!("cannot write {}: {e}", packed.display()));
    let mut from = BufReader::new(File::open(plain).map_err(failed)?);
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(packed)
        .map_err(failed)?;
    let mut encoder =
        zstd::stream::write::Encoder::new(BufWriter::new(to), ZSTD_LEVEL).map_err(failed)?;
    encoder.include_checksum(true).map_err(failed)?;
    std::io::copy(&mut from, &mut encoder).map_err(failed)?;
    let to = encoder
        .finish()
        .map_err(failed)?
        .into_inner()
        .map_err(|e| failed(e.into_error()))?;
    to.sync_all().map_err(failed)
}

/// Decodes the zstd file at `path` to nowhere, checking its checksum; its decoded size.
fn decoded_size(path: &Path) -> Result<u64, Error> {
    let file = File::open(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let mut decoder = zstd::stream::read::Decoder::new(file).map_err(|e| damaged_zstd(path, &e))?;
    std::io::copy(&mut decoder, &mut std::io::sink()).map_err(|e| damaged_zstd(path, &e))
}

/// Decodes the zstd file at `packed` into the new file `plain` (owner-only), synced.
fn decompress(packed: &Path, plain: &Path) -> Result<(), Error> {
    let file = File::open(packed)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", packed.display())))?;
    let mut decoder =
        zstd::stream::read::Decoder::new(file).map_err(|e| damaged_zstd(packed, &e))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(plain)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", plain.display())))?;
    let mut buffered = BufWriter::new(&mut to);
    // A read error is the backup's fault (cut short, damaged); a write error is this disk's.
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| damaged_zstd(packed, &e))?;
        if n == 0 {
            break;
        }
        buffered
            .write_all(&chunk[..n])
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", plain.display())))?;
    }
    buffered
        .flush()
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", plain.display())))?;
    drop(buffered);
    to.sync_all()
        .map_err(|e| Error::Config(format!("cannot sync {}: {e}", plain.display())))
}

fn damaged_zstd(path: &Path, e: &std::io::Error) -> Error {
    Error::Config(format!(
        "{} is a zstd file that does not decode whole ({e}): it was cut short or damaged; use \
         another backup",
        path.display()
    ))
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
///
/// A zstd backup is first decoded beside the database and checked there; whatever is wrong with
/// the backup, the database is not touched.
pub fn restore(backup: &Path, database: &Path, now: i64) -> Result<Option<PathBuf>, Error> {
    let incoming = sibling(database, ".restoring");
    let _ = std::fs::remove_file(&incoming);
    let staged = match is_compressed(backup)? {
        true => decompress(backup, &incoming).and_then(|()| verify(&incoming).map(drop)),
        false => verify(backup).and_then(|_| copy_plain(backup, &incoming)),
    };
    if let Err(e) = staged {
        let _ = std::fs::remove_file(&incoming);
        return Err(e);
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

fn copy_plain(backup: &Path, incoming: &Path) -> Result<(), Error> {
    let copy_failed = |e: std::io::Error| {
        Error::Config(format!(
            "cannot copy {} to {}: {e}",
            backup.display(),
            incoming.display()
        ))
    };
    let mut from = File::open(backup).map_err(copy_failed)?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(incoming)
        .map_err(copy_failed)?;
    std::io::copy(&mut from, &mut to).map_err(copy_failed)?;
    to.sync_all().map_err(copy_failed)
}

fn not_a_database(path: &Path, why: &str) -> Error {
    Error::Config(format!(
        "{} is not a MailMyCustomer database: {why}",
        path.display()
    ))
}

/// `path` with `suffix` appended to its file name.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub fn file_size(path: &Path) -> u64 {
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
        let mut conn = crate::db::open(&crate::db::Options::at(&path).unwrap()).unwrap();
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
        let conn = crate::db::open(&crate::db::Options::at(&live).unwrap()).unwrap();
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

    #[test]
    fn a_compressed_copy_restores_and_a_cut_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let live = database(dir.path());
        let packed = dir.path().join("copy.db.zst");
        let made = copy_compressed(&live, &packed).unwrap();
        assert_eq!(made.summary.integrations, 1);
        assert!(
            made.bytes > 0 && made.bytes < made.summary.bytes,
            "{made:?}"
        );
        assert!(is_compressed(&packed).unwrap());
        assert!(!sibling(&packed, ".partial").exists());
        assert!(!sibling(&packed, ".partial.zst").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&packed).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Cut short: refused, and the database stays as it was.
        let raw = std::fs::read(&packed).unwrap();
        let cut = dir.path().join("cut.db.zst");
        std::fs::write(&cut, &raw[..raw.len() / 2]).unwrap();
        let target = dir.path().join("target.db");
        let err = restore(&cut, &target, 1).unwrap_err().to_string();
        assert!(err.contains("does not decode whole"), "{err}");
        assert!(!target.exists() && !sibling(&target, ".restoring").exists());

        // Whole: restored under any name, found by its magic bytes.
        let renamed = dir.path().join("plain-looking.db");
        std::fs::rename(&packed, &renamed).unwrap();
        assert_eq!(restore(&renamed, &target, 1).unwrap(), None);
        assert_eq!(
            verify(&target).unwrap(),
            Summary {
                bytes: file_size(&target),
                ..made.summary
            }
        );
    }
}
