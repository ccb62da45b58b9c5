//! The advisory lock that lets one `serve` at a time own a database. The lock file sits beside
//! the database (`<database>.lock`) and holds the owner's PID. The operating system drops the
//! lock when its process ends, however it ends, so a crash never leaves a stale lock behind; that
//! is what lets a starting `serve` treat every row still marked `sending` as orphaned.
//! Only `serve` takes it: the CLI and backups keep opening the database while a server runs.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// Held for the life of `serve`; dropping it releases the lock (the file stays, harmless).
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

/// `mailmycustomer.db` → `mailmycustomer.db.lock`.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl ServeLock {
    /// Takes the lock without waiting, or says which process holds it and what to do.
    pub fn acquire(database: &Path) -> Result<ServeLock, Error> {
        let path = lock_path(database);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&path)
            .map_err(|e| {
                Error::Io(std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot open the lock file {}: {e} (serve needs write access to the database's directory)",
                        path.display()
                    ),
                ))
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let (who, stop) = match holder.trim().parse::<u32>() {
                    Ok(pid) => (format!("process {pid}"), format!("`kill {pid}`")),
                    Err(_) => (
                        "another process".to_owned(),
                        "its service manager".to_owned(),
                    ),
                };
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    format!(
                        "another `mailmycustomer serve` ({who}) is already serving the database {} \
                         (it holds {}). Two servers would send the same emails: stop that one first \
                         (`systemctl stop mailmycustomer` or {stop}), or give this one its own \
                         database.path",
                        database.display(),
                        path.display()
                    ),
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot lock {}: {e}", path.display()),
                )))
            }
        }
        // Only the holder writes its PID, so a refused second server can name the first.
        file.set_len(0)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        file.flush()?;
        Ok(ServeLock { _file: file })
    }
}
