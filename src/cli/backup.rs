//! `mailmycustomer backup FILE` and `mailmycustomer restore FILE`: a consistent copy of the
//! database while the server runs, and putting one back while it does not.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::db::{self, backup::Summary, lock::ServeLock};

pub fn backup(config: &Config, file: &Path, compress: bool) -> anyhow::Result<ExitCode> {
    let database = &config.database.path;
    let started = std::time::Instant::now();
    // The main file only: what the WAL holds beside it is in the copy too, but not in this size.
    let database_bytes = db::backup::file_size(database);
    let (summary, backup_bytes, kind) = match compress {
        false => {
            let summary = db::backup::copy(database, file)?;
            (summary.clone(), summary.bytes, "plain SQLite")
        }
        true => {
            let made = db::backup::copy_compressed(database, file)?;
            (made.summary, made.bytes, "zstd")
        }
    };
    println!(
        "backed up {} to {} in {:.1} s",
        database.display(),
        file.display(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  database {}, backup {} ({kind}, {:.1}% of the checked copy's {})",
        megabytes(database_bytes),
        megabytes(backup_bytes),
        100.0 * backup_bytes as f64 / summary.bytes.max(1) as f64,
        megabytes(summary.bytes),
    );
    print_summary(&summary);
    println!(
        "Secrets in it stay sealed: restoring it needs this database's key as well \
         (see \"Secrets at rest\" in the README)."
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(config: &Config, file: &Path) -> anyhow::Result<ExitCode> {
    let database = &config.database.path;
    // Holding the serve lock keeps a server from starting on the database while it is swapped;
    // failing to take it means one is running, and its error says which.
    let _lock = ServeLock::acquire(database).map_err(|e| {
        anyhow::anyhow!(
            "{e}\nrestore replaces the database, so it runs only while no server uses it"
        )
    })?;
    let started = std::time::Instant::now();
    let compressed = db::backup::is_compressed(file)?;
    let aside = db::backup::restore(file, database, db::now_unix())?;
    let took = started.elapsed();
    let summary = db::backup::verify(database)?;
    println!(
        "restored {} to {} in {:.1} s",
        file.display(),
        database.display(),
        took.as_secs_f64()
    );
    println!(
        "  backup {} ({}), database {}",
        megabytes(db::backup::file_size(file)),
        if compressed { "zstd" } else { "plain SQLite" },
        megabytes(summary.bytes)
    );
    print_summary(&summary);
    match aside {
        Some(aside) => println!(
            "The database it replaced is kept at {} (with its -wal and -shm, if any); delete it \
             once the restored one serves as it should.",
            aside.display()
        ),
        None => println!("There was no database at {} before.", database.display()),
    }
    println!(
        "Secrets in it are sealed with the key of the database it came from: start the server \
         with that key."
    );
    Ok(ExitCode::SUCCESS)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn print_summary(s: &Summary) {
    println!(
        "  {:.1} MB, schema version {}: {} integration(s), {} event(s), {} delivery(ies), \
         {} template(s), {} user(s); integrity check ok",
        s.bytes as f64 / 1e6,
        s.schema_version,
        s.integrations,
        s.events,
        s.deliveries,
        s.templates,
        s.users
    );
}
