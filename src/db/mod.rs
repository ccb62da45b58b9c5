//! SQLite storage: every connection is opened the same way, the schema comes only from the
//! embedded migrations in `migrations/`, and there is one file per table.
//!
//! Reads go through a small pool on tokio's blocking threads; webhook inserts go through the
//! single group-committing writer in `writer`.
//!
//! The database holds Stripe keys, webhook secrets and customers' addresses, so whichever
//! command creates it (serve, the CLI, migrate) creates it readable by its owner only.

pub mod backup;
pub mod catalog;
pub mod dashboard;
pub mod deliveries;
pub mod events;
pub mod integrations;
pub mod lock;
pub mod sessions;
pub mod settings;
mod state;
pub mod templates;
pub mod users;
pub mod writer;

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

use crate::error::{classify_db_error, Error};

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// Applied to every connection. `synchronous=FULL` makes each commit durable (fsync of the WAL)
/// before a webhook is answered 2xx; see ARCHITECTURE.md for why NORMAL is not enough here.
fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )
}

/// Opens one connection with the project's settings.
pub fn open(path: &Path, busy_timeout: Duration) -> Result<Connection, Error> {
    create_private(path)?;
    let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
    configure(&conn, busy_timeout).map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// A connection for background work whose writes can be redone: the event processor and the
/// sender. `synchronous=NORMAL` skips the fsync per commit; a commit lost to a power cut leaves
/// an event pending (processed again, deduplicated by its business key) or a message unmarked
/// (sent again), never a lost email. Intake keeps FULL: its 2xx is a promise to Stripe.
pub fn open_background(path: &Path, busy_timeout: Duration) -> Result<Connection, Error> {
    let conn = open(path, busy_timeout)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL;")
        .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// A pool of reader connections, opened with the same settings.
pub fn pool(path: &Path, busy_timeout: Duration, size: u32) -> Result<Pool, Error> {
    create_private(path)?;
    let manager =
        SqliteConnectionManager::file(path).with_init(move |c| configure(c, busy_timeout));
    Ok(r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(5))
        .build(manager)?)
}

/// Applies the embedded migrations that this database lacks, seeds the built-in templates on a
/// new database, and returns the schema version.
pub fn migrate(conn: &mut Connection) -> Result<i64, Error> {
    refuse_newer_schema(conn)?;
    embedded::migrations::runner().run(conn)?;
    templates::seed_builtins(conn)?;
    schema_version(conn)
}

/// Applies the embedded migrations up to `version` only, nothing else: how tests build the
/// database an older release left behind.
pub fn migrate_to(conn: &mut Connection, version: i32) -> Result<i64, Error> {
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run(conn)?;
    schema_version(conn)
}

/// A database a newer release has migrated cannot be run by this one: its tables have columns
/// and meanings this binary does not know. Said plainly, before refinery would say a migration
/// "is missing from the filesystem".
fn refuse_newer_schema(conn: &Connection) -> Result<(), Error> {
    let has_history: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'refinery_schema_history')",
            [],
            |r| r.get(0),
        )
        .map_err(classify_db_error)?;
    if !has_history {
        return Ok(());
    }
    let (found, latest) = (schema_version(conn)?, latest_embedded_version());
    if found > latest {
        return Err(Error::Config(format!(
            "the database is at schema version {found}, newer than this binary's {latest}: a \
             newer mailmycustomer has upgraded it. Run that version again (an older binary \
             cannot undo an upgrade), or restore a backup made before it"
        )));
    }
    Ok(())
}

/// The newest applied migration, as recorded by refinery.
pub fn schema_version(conn: &Connection) -> Result<i64, Error> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM refinery_schema_history",
        [],
        |row| row.get(0),
    )
    .map_err(classify_db_error)
}

/// The newest migration embedded in this binary.
pub fn latest_embedded_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// Runs blocking database work on a pooled connection on tokio's blocking threads, off the
/// async executor.
pub async fn call<T, F>(pool: &Pool, work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let conn = pool.get()?;
        work(&conn)
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// Creates the database file, mode 0600, when it does not exist yet, before SQLite opens it;
/// SQLite gives the `-wal` and `-shm` files it creates beside a database the database's own
/// mode, so all three end up 0600 whatever the umask. A missing directory is created 0700.
/// An existing file keeps the mode its owner gave it.
fn create_private(path: &Path) -> Result<(), Error> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::Config(format!(
                    "cannot create the database directory {}: {e}",
                    dir.display()
                ))
            })?,
        _ => {}
    }
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let result = match created {
        // The umask can only take bits away from 0600; set it whole again in case it did.
        Ok(file) => file.set_permissions(Permissions::from_mode(0o600)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| {
        Error::Config(format!(
            "cannot create the database {}: {e} (check database.path and the directory's permissions)",
            path.display()
        ))
    })
}

fn open_error(path: &Path, err: rusqlite::Error) -> Error {
    Error::Config(format!(
        "cannot open the database {}: {err} (check database.path and the directory's permissions)",
        path.display()
    ))
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
