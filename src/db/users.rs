//! The `users` table: the people who may sign in to the web UI. Emails are stored lower-cased
//! and password hashes are argon2id PHC strings; hashing and checking are `manage::users`'.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{classify_db_error, Error};

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub created_at: i64,
}

/// A user with the hash their password is checked against; only sign-in reads it.
#[derive(Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

/// The hash stays out of `Debug`, so a logged value never carries it.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password_hash", &"[redacted]")
            .finish()
    }
}

fn from_row(row: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        created_at: row.get(2)?,
    })
}

/// Inserts a user; `Ok(None)` when the email is taken.
pub fn insert(conn: &Connection, email: &str, password_hash: &str) -> Result<Option<User>, Error> {
    let inserted = conn.execute(
        "INSERT INTO users (email, password_hash, created_at) VALUES (?1, ?2, ?3)",
        params![email, password_hash, super::now_unix()],
    );
    match inserted {
        Ok(_) => get(conn, conn.last_insert_rowid()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            Ok(None)
        }
        Err(e) => Err(classify_db_error(e)),
    }
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<User>, Error> {
    conn.query_row(
        "SELECT id, email, created_at FROM users WHERE id = ?1",
        [id],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
}

pub fn by_email(conn: &Connection, email: &str) -> Result<Option<User>, Error> {
    conn.query_row(
        "SELECT id, email, created_at FROM users WHERE email = ?1",
        [email],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
}

pub fn credentials(conn: &Connection, email: &str) -> Result<Option<Credentials>, Error> {
    conn.query_row(
        "SELECT id, email, created_at, password_hash FROM users WHERE email = ?1",
        [email],
        |row| {
            Ok(Credentials {
                user: from_row(row)?,
                password_hash: row.get(3)?,
            })
        },
    )
    .optional()
    .map_err(classify_db_error)
}

pub fn list(conn: &Connection) -> Result<Vec<User>, Error> {
    let mut stmt = conn
        .prepare("SELECT id, email, created_at FROM users ORDER BY email")
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([], from_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// Whether anyone can sign in yet; with nobody, `serve` offers the first-run setup link.
pub fn any(conn: &Connection) -> Result<bool, Error> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |row| row.get(0))
        .map_err(classify_db_error)
}

/// Removes a user; their sessions go with them (cascade). Returns whether they existed.
pub fn remove(conn: &Connection, id: i64) -> Result<bool, Error> {
    let n = conn
        .execute("DELETE FROM users WHERE id = ?1", [id])
        .map_err(classify_db_error)?;
    Ok(n > 0)
}

pub fn set_password_hash(conn: &Connection, id: i64, password_hash: &str) -> Result<bool, Error> {
    let n = conn
        .execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![id, password_hash],
        )
        .map_err(classify_db_error)?;
    Ok(n > 0)
}
