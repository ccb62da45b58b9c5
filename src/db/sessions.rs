//! The `sessions` table: one row per signed-in browser, keyed by the SHA-256 (hex) of the
//! cookie's token. The token itself is never stored; what it means (expiry, CSRF) is
//! `manage::users`' and `web::auth`'.

use rusqlite::{params, Connection, OptionalExtension};

use super::users::User;
use crate::error::{classify_db_error, Error};

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub user: User,
    pub created_at: i64,
    pub last_seen_at: i64,
}

pub fn insert(conn: &Connection, token_hash: &str, user_id: i64, now: i64) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?3)",
        params![token_hash, user_id, now],
    )
    .map_err(classify_db_error)?;
    Ok(())
}

/// The session with this token hash and its user, expired or not.
pub fn get(conn: &Connection, token_hash: &str) -> Result<Option<Session>, Error> {
    conn.query_row(
        "SELECT u.id, u.email, u.created_at, s.created_at, s.last_seen_at
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ?1",
        [token_hash],
        |row| {
            Ok(Session {
                user: User {
                    id: row.get(0)?,
                    email: row.get(1)?,
                    created_at: row.get(2)?,
                },
                created_at: row.get(3)?,
                last_seen_at: row.get(4)?,
            })
        },
    )
    .optional()
    .map_err(classify_db_error)
}

pub fn touch(conn: &Connection, token_hash: &str, now: i64) -> Result<(), Error> {
    conn.execute(
        "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1",
        params![token_hash, now],
    )
    .map_err(classify_db_error)?;
    Ok(())
}

pub fn remove(conn: &Connection, token_hash: &str) -> Result<bool, Error> {
    let n = conn
        .execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])
        .map_err(classify_db_error)?;
    Ok(n > 0)
}

/// Ends a user's sessions, all but `keep` when given (the one changing the password).
pub fn remove_for_user(
    conn: &Connection,
    user_id: i64,
    keep: Option<&str>,
) -> Result<usize, Error> {
    conn.execute(
        "DELETE FROM sessions WHERE user_id = ?1 AND token_hash IS NOT ?2",
        params![user_id, keep],
    )
    .map_err(classify_db_error)
}

/// Deletes sessions idle since before `idle_before` or created before `created_before`.
pub fn remove_expired(
    conn: &Connection,
    idle_before: i64,
    created_before: i64,
) -> Result<usize, Error> {
    conn.execute(
        "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
        params![idle_before, created_before],
    )
    .map_err(classify_db_error)
}

pub fn count_for_user(conn: &Connection, user_id: i64) -> Result<i64, Error> {
    conn.query_row(
        "SELECT COUNT(*) FROM sessions WHERE user_id = ?1",
        [user_id],
        |row| row.get(0),
    )
    .map_err(classify_db_error)
}
