//! SQLite storage: every connection is opened the same way, the schema comes only from the
//! embedded migrations in `migrations/`, and there is one file per table.
//!
//! Reads go through a small pool on tokio's blocking threads; webhook inserts go through the
//! single group-committing writer in `writer`.
//!
//! The database holds Stripe keys, webhook secrets and customers' addresses, so whichever
//! command creates it (serve, the CLI, migrate) creates it readable by its owner only. The
//! secrets are also sealed (`crate::seal`): every connection gets the SQL functions `seal(text)`
//! and `unseal(text)` under the key its `Options` carry, and checks that key before any use.
//!
//! Every bound `LIMIT` (and `OFFSET`) is written `CAST(?N AS INTEGER)`. SQLite's planner reads a
//! bare `LIMIT ?N`'s bound value, which ties the compiled statement to that value: each time
//! rusqlite returns it to the statement cache and clears its bindings, SQLite compiles it again
//! (`SQLITE_STMTSTATUS_REPREPARE`). That was a sixth of the server's CPU at one webhook at a time
//! (the processor's `events::due_after`). A test below keeps bare ones out.

pub mod backup;
pub mod catalog;
pub mod checkpoint;
pub mod dashboard;
pub mod deliveries;
pub mod events;
pub mod integrations;
pub mod lock;
pub mod payload;
pub mod scheduled_backup;
pub mod sessions;
pub mod settings;
mod state;
pub mod templates;
pub mod turns;
pub mod users;
pub mod writer;

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::error::{classify_db_error, Error};
use crate::seal::{self, Sealer};
use crate::Config;

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// How to open the database: where it is, how long a connection waits for a lock, and the
/// key its secrets are sealed with. Made once per process (`serve`, each CLI command) and
/// shared by every connection, so all of them seal and unseal alike.
#[derive(Debug, Clone)]
pub struct Options {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    pub sealer: Arc<Sealer>,
    /// No connection checkpoints inside its own commits: `serve` sets it and runs
    /// `checkpoint::Checkpointer` instead, so no webhook waits on a checkpoint. Every other
    /// process keeps SQLite's automatic checkpoints.
    pub background_checkpoints: bool,
}

impl Options {
    /// `config`'s database, with its key found (or, for a database with nothing sealed yet,
    /// made) by the one rule of `Sealer::for_config`.
    pub fn new(config: &Config) -> Result<Options, Error> {
        Ok(Options {
            path: config.database.path.clone(),
            busy_timeout: Duration::from_millis(config.database.busy_timeout_ms),
            sealer: Arc::new(Sealer::for_config(config)?),
            background_checkpoints: false,
        })
    }

    /// The database at `path` with the default settings, and so the key file beside it.
    pub fn at(path: &Path) -> Result<Options, Error> {
        let mut config = Config::default();
        config.database.path = path.to_owned();
        Options::new(&config)
    }

    /// For `serve`: see `background_checkpoints`.
    pub fn with_background_checkpoints(self) -> Options {
        Options {
            background_checkpoints: true,
            ..self
        }
    }

    pub fn with_busy_timeout(self, busy_timeout: Duration) -> Options {
        Options {
            busy_timeout,
            ..self
        }
    }
}

/// Applied to every connection. `synchronous=FULL` makes each commit durable (fsync of the WAL)
/// before a webhook is answered 2xx; see ARCHITECTURE.md for why NORMAL is not enough here.
/// `journal_size_limit`: once a checkpoint has emptied the WAL, the next commit cuts the file
/// back to this size, so a WAL that grew while a long reader held checkpoints back shrinks again.
fn configure(conn: &Connection, options: &Options) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA journal_size_limit = {};",
        checkpoint::WAL_SIZE_LIMIT
    ))?;
    if options.background_checkpoints {
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    }
    register_sealing(conn, &options.sealer)
}

/// For `serve`'s hot writers (intake, the processor, the sender), after migrating: a statement
/// that may have to undo itself midway (an upsert, a trigger) keeps its statement journal in
/// memory instead of a temporary file, one write per page. Not for connections that vacuum or
/// build indexes: their temporary data can be as big as the database.
pub fn keep_temporary_data_in_memory(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch("PRAGMA temp_store = MEMORY;")
        .map_err(classify_db_error)
}

/// Opens one connection with the project's settings; a key that does not open the database's
/// secrets stops it here, before anything else is read or written.
pub fn open(options: &Options) -> Result<Connection, Error> {
    let path = &options.path;
    create_private(path)?;
    let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
    configure(&conn, options).map_err(|e| open_error(path, e))?;
    check_key(&conn, options)?;
    Ok(conn)
}

/// A connection for background work whose writes can be redone: the event processor and the
/// sender. `synchronous=NORMAL` skips the fsync per commit; a commit lost to a power cut leaves
/// an event pending (processed again, deduplicated by its business key) or a message unmarked
/// (sent again), never a lost email. Intake keeps FULL: its 2xx is a promise to Stripe.
pub fn open_background(options: &Options) -> Result<Connection, Error> {
    let conn = open(options)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL;")
        .map_err(|e| open_error(&options.path, e))?;
    Ok(conn)
}

/// A connection that reads an existing database without creating, migrating or changing it
/// (`config check`), with the sealing functions and the key checked.
pub fn open_read_only(options: &Options) -> Result<Connection, Error> {
    let path = &options.path;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|c| {
        c.busy_timeout(options.busy_timeout)?;
        register_sealing(&c, &options.sealer)?;
        Ok(c)
    })
    .map_err(|e| open_error(path, e))?;
    check_key(&conn, options)?;
    Ok(conn)
}

/// A pool of reader connections, opened with the same settings.
pub fn pool(options: &Options, size: u32) -> Result<Pool, Error> {
    create_private(&options.path)?;
    // A wrong key is refused here at once rather than as a pool timeout.
    drop(open(options)?);
    let init = options.clone();
    let manager = SqliteConnectionManager::file(&options.path).with_init(move |c| {
        configure(c, &init)?;
        check_key(c, &init).map_err(to_sql_error)
    });
    Ok(r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(5))
        .build(manager)?)
}

/// An empty in-memory database with the project's settings, under a fresh random key (tests:
/// migrate it, or migrate it to an old version to test a migration).
pub fn memory() -> Result<Connection, Error> {
    let options = Options {
        path: PathBuf::from(":memory:"),
        busy_timeout: Duration::from_secs(5),
        sealer: Arc::new(Sealer::from_text(&seal::new_key_text()?, "a test key")?),
        background_checkpoints: false,
    };
    let conn = Connection::open_in_memory().map_err(classify_db_error)?;
    configure(&conn, &options).map_err(classify_db_error)?;
    Ok(conn)
}

/// What the seal step seals into `sealing.check_value` (V14): a key that opens it to this text
/// is the key the database's secrets were sealed with.
const CHECK_TEXT: &str = "MailMyCustomer: this key opens this database's secrets";

/// The secret columns of `integrations`, sealed by `seal()` in every write and read through
/// `unseal()` (`db::integrations`).
const INTEGRATION_SECRETS: [&str; 4] = [
    "webhook_secret",
    "api_key",
    "oauth_access_token",
    "oauth_refresh_token",
];

/// The `seal(text)` and `unseal(text)` SQL functions, closing over the key; NULL stays NULL.
/// Direct-only: no trigger or view in the file can call them. `seal` is not deterministic
/// (a fresh nonce each call).
fn register_sealing(conn: &Connection, sealer: &Arc<Sealer>) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    let sealing = sealer.clone();
    conn.create_scalar_function("seal", 1, flags, move |ctx| {
        ctx.get::<Option<String>>(0)?
            .map(|plain| sealing.seal(&plain))
            .transpose()
            .map_err(to_sql_error)
    })?;
    let unsealing = sealer.clone();
    conn.create_scalar_function("unseal", 1, flags, move |ctx| {
        let Some(stored) = ctx.get::<Option<String>>(0)? else {
            return Ok(None);
        };
        // Plain text is only asked about when met: before the seal step (an old database being
        // migrated) or never again.
        let plain_allowed = !seal::is_sealed(&stored) && !seal_step_ran(ctx)?;
        unsealing
            .unseal(&stored, plain_allowed)
            .map(Some)
            .map_err(to_sql_error)
    })
}

/// Whether the database the function runs in has had its seal step (the `sealing` row).
fn seal_step_ran(ctx: &Context) -> rusqlite::Result<bool> {
    // SAFETY: the handle is the connection running this very statement; the reference is only
    // used on this thread, for two reads, and dropped before the function returns. SQLite
    // allows an application-defined function to run statements on its own connection.
    let conn = unsafe { ctx.get_connection()? };
    sealing_row(&conn)
}

/// Whether `conn`'s database has a `sealing` row (V14's table, written by the seal step).
fn sealing_row(conn: &Connection) -> rusqlite::Result<bool> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sealing')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(false);
    }
    conn.query_row("SELECT EXISTS (SELECT 1 FROM sealing)", [], |r| r.get(0))
}

/// Whether the database at `path` has been through the seal step, read without creating or
/// changing it and without the key: a sealed database must never get a new key.
pub fn is_sealed(path: &Path) -> Result<bool, Error> {
    if !path.exists() {
        return Ok(false);
    }
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|conn| {
        conn.busy_timeout(Duration::from_secs(5))?;
        sealing_row(&conn)
    })
    .map_err(|e| open_error(path, e))
}

/// Refuses a key that does not open the check value the seal step left: the error names where
/// the key came from, before any secret is read (or written under the wrong key).
fn check_key(conn: &Connection, options: &Options) -> Result<(), Error> {
    let check: Option<String> = match sealing_row(conn).map_err(classify_db_error)? {
        false => None,
        true => conn
            .query_row("SELECT check_value FROM sealing WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(classify_db_error)?,
    };
    let opens = check.is_none_or(|check| {
        options
            .sealer
            .unseal(&check, false)
            .is_ok_and(|text| text == CHECK_TEXT)
    });
    match opens {
        true => Ok(()),
        false => Err(Error::Config(format!(
            "the key from {} does not open the secrets of the database {}: it is not the key \
             they were sealed with. Give that key (database.secret_key, MMC_DATABASE__SECRET_KEY \
             or MMC_DATABASE__SECRET_KEY_FILE; or, when none is set, the key file {})",
            options.sealer.location(),
            options.path.display(),
            seal::key_file(&options.path).display()
        ))),
    }
}

/// An error of ours as SQLite reports a failed function: its message kept whole, with a code
/// that no caller takes for a constraint violation.
fn to_sql_error(err: Error) -> rusqlite::Error {
    let message = match err {
        Error::Config(message) => message,
        other => other.to_string(),
    };
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(message),
    )
}

/// The one-time seal step, right after the migrations (SQL cannot encrypt): every secret still
/// in plain text (from before V14) is sealed in one transaction, which also records the step
/// with its check value. It runs once; later starts find the row and do nothing. When it sealed
/// anything, the file is rewritten (VACUUM) and the WAL emptied, so no plain copy stays in free
/// space or in old WAL frames.
fn seal_secrets(conn: &mut Connection) -> Result<usize, Error> {
    // Read first: every later start (and CLI command beside a busy server) must not wait for
    // the write lock only to find the step done.
    if sealing_row(conn).map_err(classify_db_error)? {
        return Ok(0);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify_db_error)?;
    if sealing_row(&tx).map_err(classify_db_error)? {
        return Ok(0);
    }
    let unsealed = |column: &str| {
        format!(
            "{column} <> '' AND substr({column}, 1, {}) <> '{}'",
            seal::PREFIX.len(),
            seal::PREFIX
        )
    };
    let mut sealed = 0;
    for column in INTEGRATION_SECRETS {
        sealed += tx
            .execute(
                &format!(
                    "UPDATE integrations SET {column} = seal({column}) WHERE {}",
                    unsealed(column)
                ),
                [],
            )
            .map_err(classify_db_error)?;
    }
    sealed += tx
        .execute(
            &format!(
                "UPDATE saved_settings SET value = seal(value)
                 WHERE key IN ({}) AND {}",
                settings::SECRET_KEYS_SQL,
                unsealed("value")
            ),
            [],
        )
        .map_err(classify_db_error)?;
    tx.execute(
        "INSERT INTO sealing (id, sealed_at, sealed_values, check_value)
         VALUES (1, ?1, ?2, seal(?3))",
        params![now_unix(), sealed as i64, CHECK_TEXT],
    )
    .map_err(classify_db_error)?;
    tx.commit().map_err(classify_db_error)?;
    if sealed > 0 {
        conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(classify_db_error)?;
        tracing::info!(sealed, "sealed the secrets stored in plain text before");
    }
    Ok(sealed)
}

/// Applies the embedded migrations that this database lacks, seeds the built-in templates on a
/// new database, runs the one-time seal step, and returns the schema version.
pub fn migrate(conn: &mut Connection) -> Result<i64, Error> {
    // A database already at this binary's schema skips refinery's runner: building it parses
    // every embedded migration's name with a regex, work and memory an ordinary start does not
    // need (idle RSS, BENCHMARKS.md).
    if applied_version(conn)? < LATEST_SCHEMA_VERSION {
        run_migrations(conn, embedded::migrations::runner())?;
    }
    templates::seed_builtins(conn)?;
    seal_secrets(conn)?;
    schema_version(conn)
}

/// Applies the embedded migrations up to `version` only, nothing else: how tests build the
/// database an older release left behind.
pub fn migrate_to(conn: &mut Connection, version: i32) -> Result<i64, Error> {
    run_migrations(
        conn,
        embedded::migrations::runner().set_target(refinery::Target::Version(version)),
    )?;
    schema_version(conn)
}

/// Runs migrations with foreign keys off, as SQLite's guide to schema changes asks of a table
/// rebuild (V15 rebuilds `events`: dropping the old table with them on would delete every
/// payload by cascade and unlink every delivery), then turns them back on and, when anything
/// was applied, checks that every reference still holds.
fn run_migrations(conn: &mut Connection, runner: refinery::Runner) -> Result<(), Error> {
    conn.execute_batch("PRAGMA foreign_keys = OFF;")
        .map_err(classify_db_error)?;
    let report = runner.run(conn);
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .map_err(classify_db_error)?;
    if report?.applied_migrations().is_empty() {
        return Ok(());
    }
    let broken: Option<String> = conn
        .query_row(
            "SELECT \"table\" || ' row ' || rowid || ' refers to a missing ' || parent
             FROM pragma_foreign_key_check LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(classify_db_error)?;
    match broken {
        Some(broken) => Err(Error::Config(format!(
            "after the migrations, {broken}: restore a backup from before the upgrade and \
             report this"
        ))),
        None => Ok(()),
    }
}

/// The schema version the database is at, 0 for a new one. A database a newer release has
/// migrated cannot be run by this one: its tables have columns and meanings this binary does not
/// know. That is said plainly here, before refinery would say a migration "is missing from the
/// filesystem".
fn applied_version(conn: &Connection) -> Result<i64, Error> {
    let has_history: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'refinery_schema_history')",
            [],
            |r| r.get(0),
        )
        .map_err(classify_db_error)?;
    if !has_history {
        return Ok(0);
    }
    let (found, latest) = (schema_version(conn)?, LATEST_SCHEMA_VERSION);
    if found > latest {
        return Err(Error::Config(format!(
            "the database is at schema version {found}, newer than this binary's {latest}: a \
             newer mailmycustomer has upgraded it. Run that version again (an older binary \
             cannot undo an upgrade), or restore a backup made before it"
        )));
    }
    Ok(found)
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

/// The newest migration embedded in this binary (`migrations/`). A constant, so that a start
/// and `/readyz` need not build refinery's runner to know it;
/// `latest_schema_version_is_the_newest_embedded_migration` keeps it true.
const LATEST_SCHEMA_VERSION: i64 = 18;

/// The newest migration embedded in this binary.
pub fn latest_embedded_version() -> i64 {
    LATEST_SCHEMA_VERSION
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
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

/// Creates the database's directory, mode 0700, when it does not exist yet.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    if dir.exists() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            Error::Config(format!(
                "cannot create the database directory {}: {e}",
                dir.display()
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

/// Tests: adds an integration named `name` without a key; its id.
#[cfg(test)]
pub(crate) fn test_integration(conn: &Connection, name: &str) -> String {
    integrations::insert(
        conn,
        &integrations::NewIntegration {
            name,
            webhook_secret: "whsec_test",
            api_key: None,
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap()
    .id
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, StatementStatus};

    #[test]
    fn latest_schema_version_is_the_newest_embedded_migration() {
        let newest = super::embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .max();
        assert_eq!(newest, Some(super::LATEST_SCHEMA_VERSION));
    }

    /// Times a cached statement was compiled again over 20 uses with a new bound value each.
    fn recompiled(conn: &Connection, sql: &str) -> i32 {
        for i in 0..20i64 {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            stmt.raw_bind_parameter(1, i).unwrap();
            stmt.raw_bind_parameter(2, 5i64).unwrap();
            let mut rows = stmt.raw_query();
            while rows.next().unwrap().is_some() {}
        }
        let stmt = conn.prepare_cached(sql).unwrap();
        stmt.get_status(StatementStatus::RePrepare)
    }

    #[test]
    fn a_bound_limit_is_cast_so_cached_statements_are_not_compiled_again() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .unwrap();
        let bare = recompiled(&conn, "SELECT id FROM t WHERE id > ?1 ORDER BY id LIMIT ?2");
        let cast = recompiled(
            &conn,
            "SELECT id FROM t WHERE id > ?1 ORDER BY id LIMIT CAST(?2 AS INTEGER)",
        );
        assert!(
            bare > 0,
            "SQLite no longer recompiles a bare LIMIT ?: the rule can go"
        );
        assert_eq!(cast, 0);

        let sources = [
            ("catalog.rs", include_str!("catalog.rs")),
            ("dashboard.rs", include_str!("dashboard.rs")),
            ("deliveries.rs", include_str!("deliveries.rs")),
            ("events.rs", include_str!("events.rs")),
            ("integrations.rs", include_str!("integrations.rs")),
            ("sessions.rs", include_str!("sessions.rs")),
            ("settings.rs", include_str!("settings.rs")),
            ("templates.rs", include_str!("templates.rs")),
            ("users.rs", include_str!("users.rs")),
        ];
        for (file, text) in sources {
            for bare in ["LIMIT ?", "OFFSET ?"] {
                assert!(!text.contains(bare), "src/db/{file} has a bare `{bare}`");
            }
        }
    }
}
