//! The `saved_settings` table: config values saved on the settings page, by key (`smtp.host`). What
//! they mean and where they sit among the config's layers is `Config::with_saved`'s business.
//! The secret ones (the SMTP password) are stored sealed: written through `seal()`, read through
//! `unseal()` (`crate::seal`).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, TransactionBehavior};

use crate::error::{classify_db_error, Error};

/// The saved keys whose values are secrets, as an SQL list.
pub(crate) const SECRET_KEYS_SQL: &str = "'smtp.password'";

/// Every saved value, by key.
pub fn load(conn: &Connection) -> Result<BTreeMap<String, String>, Error> {
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT key, CASE WHEN key IN ({SECRET_KEYS_SQL}) THEN unseal(value) ELSE value END
             FROM saved_settings"
        ))
        .map_err(classify_db_error)?;
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(classify_db_error)?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(classify_db_error)
}

/// The saved values in `config`'s database, read without creating, migrating or locking it
/// for writes: None when there is no database there yet, or it predates the settings page.
pub fn load_read_only(config: &crate::Config) -> Result<Option<BTreeMap<String, String>>, Error> {
    if !config.database.path.exists() {
        return Ok(None);
    }
    let conn = super::open_read_only(&super::Options::new(config)?)?;
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'saved_settings')",
            [],
            |r| r.get(0),
        )
        .map_err(classify_db_error)?;
    if !has_table {
        return Ok(None);
    }
    load(&conn).map(Some)
}

/// Makes the saved values exactly `saved`, in one transaction: keys not in it are removed.
pub fn replace(conn: &Connection, saved: &BTreeMap<String, String>, now: i64) -> Result<(), Error> {
    // Immediate: it reads then writes, and a deferred transaction could not wait for the lock
    // once another writer got in between.
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(classify_db_error)?;
    let old = load(&tx)?;
    for key in old.keys().filter(|k| !saved.contains_key(*k)) {
        tx.execute("DELETE FROM saved_settings WHERE key = ?1", params![key])
            .map_err(classify_db_error)?;
    }
    for (key, value) in saved.iter().filter(|(k, v)| old.get(*k) != Some(*v)) {
        tx.execute(
            &format!(
                "INSERT INTO saved_settings (key, value, updated_at)
                 VALUES (?1, CASE WHEN ?1 IN ({SECRET_KEYS_SQL}) THEN seal(?2) ELSE ?2 END, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at"
            ),
            params![key, value, now],
        )
        .map_err(classify_db_error)?;
    }
    tx.commit().map_err(classify_db_error)
}
