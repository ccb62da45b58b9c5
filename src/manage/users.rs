//! Accounts and sessions: the people who may sign in to the web UI (added, listed, removed and
//! given a new password from the CLI, the first one from the setup page), and the sessions a
//! sign-in starts.
//!
//! Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes), at most two at
//! a time, so a burst of sign-ins costs waiting rather than memory. A session is a random token
//! in a cookie; the database keeps only its SHA-256, so a copy of the database signs nobody
//! in. Sessions end at sign out, after `SESSION_IDLE` without a request or `SESSION_MAX_AGE`
//! in all, when their user is removed, and (but the one making the change) at a new password.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::app::App;
use crate::db;
use crate::db::sessions::{self, Session};
use crate::db::users::{self, User};
use crate::error::classify_db_error;
use crate::Error;

pub const MIN_PASSWORD_CHARS: usize = 10;
/// Long enough for any passphrase or generated password; longer is a mistake or an attack.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after sign-in, however much it is used.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
/// `last_seen_at` is written at most this often per session, so browsing is not a write per
/// page; idle expiry is that much less exact, which does not matter at 12 hours.
const TOUCH_EVERY_SECS: i64 = 60;

/// Each argon2 computation holds 19 MiB for tens of milliseconds.
static HASHING: Semaphore = Semaphore::const_new(2);

/// The random token a session cookie carries: 32 bytes from the OS, hex. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

impl SessionToken {
    pub fn generate() -> Result<SessionToken, Error> {
        Ok(SessionToken(random_hex()?))
    }

    /// A token as a cookie gives it back; anything not shaped like one is no token.
    pub fn parse(value: &str) -> Option<SessionToken> {
        (value.len() == 64
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| SessionToken(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database keeps: the SHA-256 of the token, hex.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

/// 32 random bytes from the OS, hex: session tokens, the setup token.
pub fn random_hex() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(hex::encode(bytes))
}

/// A user and how many sessions they have open, for `user list`.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub user: User,
    pub sessions: i64,
}

/// The email as stored and compared: trimmed and lower-cased (addresses accepted here are
/// ASCII, see `outbox::smtp::is_address`).
pub fn normalise_email(email: &str) -> Result<String, Error> {
    let email = email.trim();
    if email.is_empty() {
        return Err(Error::invalid("email", "enter an email address"));
    }
    if !crate::outbox::smtp::is_address(email) {
        return Err(Error::invalid(
            "email",
            format!(
                "{:?} is not an email address",
                email.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(email.to_ascii_lowercase())
}

/// The rules a new password must meet.
pub fn check_new_password(password: &str) -> Result<(), Error> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Error::invalid(
            "password",
            format!("the password is too short: use at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Error::invalid(
            "password",
            format!("the password is too long: use at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

pub async fn list(app: &App) -> Result<Vec<Account>, Error> {
    app.db(|c| {
        users::list(c)?
            .into_iter()
            .map(|user| {
                let sessions = sessions::count_for_user(c, user.id)?;
                Ok(Account { user, sessions })
            })
            .collect()
    })
    .await
}

/// Whether anyone can sign in yet.
pub async fn any(app: &App) -> Result<bool, Error> {
    app.db(users::any).await
}

pub async fn add(app: &App, email: &str, password: &str) -> Result<User, Error> {
    let email = normalise_email(email)?;
    check_new_password(password)?;
    let hash = hash_password(password).await?;
    let shown = email.clone();
    app.db(move |c| users::insert(c, &email, &hash))
        .await?
        .ok_or_else(|| Error::Conflict {
            field: "email",
            message: format!("a user with the email {shown} already exists"),
        })
}

/// Removes a user and ends their sessions; says how many sessions that ended.
pub async fn remove(app: &App, email: &str) -> Result<Account, Error> {
    let user = get(app, email).await?;
    let id = user.id;
    let sessions = app
        .db(move |c| {
            let open = sessions::count_for_user(c, id)?;
            users::remove(c, id)?;
            Ok(open)
        })
        .await?;
    Ok(Account { user, sessions })
}

/// Gives a user a new password and ends their sessions, but `keep` (the session making the
/// change, when it is made from a page). Returns how many sessions ended.
pub async fn set_password(
    app: &App,
    email: &str,
    password: &str,
    keep: Option<&SessionToken>,
) -> Result<usize, Error> {
    check_new_password(password)?;
    let user = get(app, email).await?;
    let hash = hash_password(password).await?;
    let keep = keep.map(SessionToken::hash);
    app.db(move |c| {
        let tx = c.unchecked_transaction().map_err(classify_db_error)?;
        users::set_password_hash(&tx, user.id, &hash)?;
        let ended = sessions::remove_for_user(&tx, user.id, keep.as_deref())?;
        tx.commit().map_err(classify_db_error)?;
        Ok(ended)
    })
    .await
}

async fn get(app: &App, email: &str) -> Result<User, Error> {
    let key = normalise_email(email)?;
    app.db(move |c| users::by_email(c, &key))
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "user",
            id: email.trim().to_owned(),
        })
}

/// Checks an email and password; `None` when either is wrong (which one is not said). An
/// unknown email costs the same hashing as a known one, so timing does not tell them apart.
pub async fn check_password(app: &App, email: &str, password: &str) -> Result<Option<User>, Error> {
    let Ok(email) = normalise_email(email) else {
        verify_password(password, dummy_hash()?.to_owned()).await?;
        return Ok(None);
    };
    let found = app.db(move |c| users::credentials(c, &email)).await?;
    match found {
        Some(found) => Ok(verify_password(password, found.password_hash)
            .await?
            .then_some(found.user)),
        None => {
            verify_password(password, dummy_hash()?.to_owned()).await?;
            Ok(None)
        }
    }
}

/// Starts a session for a user who has just proved who they are.
pub async fn start_session(app: &App, user_id: i64) -> Result<SessionToken, Error> {
    let token = SessionToken::generate()?;
    let hash = token.hash();
    app.db(move |c| {
        let now = db::now_unix();
        // Sign-in is rare: a good moment to forget sessions that have expired.
        sessions::remove_expired(c, now - idle_secs(), now - max_age_secs())?;
        sessions::insert(c, &hash, user_id, now)
    })
    .await?;
    Ok(token)
}

/// The session a token belongs to, if it is still alive; an expired one is deleted.
pub async fn session(app: &App, token: &SessionToken) -> Result<Option<Session>, Error> {
    let hash = token.hash();
    app.db(move |c| {
        let Some(session) = sessions::get(c, &hash)? else {
            return Ok(None);
        };
        let now = db::now_unix();
        if now - session.last_seen_at > idle_secs() || now - session.created_at > max_age_secs() {
            sessions::remove(c, &hash)?;
            return Ok(None);
        }
        if now - session.last_seen_at >= TOUCH_EVERY_SECS {
            sessions::touch(c, &hash, now)?;
        }
        Ok(Some(session))
    })
    .await
}

pub async fn end_session(app: &App, token: &SessionToken) -> Result<(), Error> {
    let hash = token.hash();
    app.db(move |c| sessions::remove(c, &hash)).await?;
    Ok(())
}

fn idle_secs() -> i64 {
    SESSION_IDLE.as_secs() as i64
}

fn max_age_secs() -> i64 {
    SESSION_MAX_AGE.as_secs() as i64
}

async fn hash_password(password: &str) -> Result<String, Error> {
    let password = password.to_owned();
    let _permit = HASHING
        .acquire()
        .await
        .expect("the semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| Error::Io(std::io::Error::other(format!("hashing a password: {e}"))))
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

async fn verify_password(password: &str, hash: String) -> Result<bool, Error> {
    let password = password.to_owned();
    let _permit = HASHING
        .acquire()
        .await
        .expect("the semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| {
            Error::Io(std::io::Error::other(format!(
                "a stored password hash is not a PHC string: {e}"
            )))
        })?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// A hash of a random password, checked against when the email is unknown.
fn dummy_hash() -> Result<&'static str, Error> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = Argon2::default()
        .hash_password(random_hex()?.as_bytes())
        .map_err(|e| Error::Io(std::io::Error::other(format!("hashing a password: {e}"))))?
        .to_string();
    Ok(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lower_cased_and_checked() {
        assert_eq!(
            normalise_email("  Jenny.Rosen@Example.COM ").unwrap(),
            "jenny.rosen@example.com"
        );
        for bad in ["", "   ", "jenny", "jenny@", "a b@example.com"] {
            let err = normalise_email(bad).unwrap_err();
            assert_eq!(err.field(), Some("email"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn passwords_shorter_than_ten_characters_are_refused() {
        let err = check_new_password("123456789").unwrap_err();
        assert_eq!(err.field(), Some("password"));
        assert!(err.to_string().contains("at least 10 characters"), "{err}");
        // Characters, not bytes: ten of them pass even where each takes several bytes.
        check_new_password("ééééééééé").unwrap_err();
        check_new_password("éééééééééé").unwrap();
        check_new_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).unwrap_err();
    }

    #[test]
    fn tokens_hash_to_sha256_and_parse_only_their_own_shape() {
        let token = SessionToken::generate().unwrap();
        assert_eq!(token.as_str().len(), 64);
        assert_eq!(SessionToken::parse(token.as_str()), Some(token.clone()));
        assert_eq!(token.hash(), hex::encode(Sha256::digest(token.as_str())));
        assert_ne!(token.hash(), token.as_str());
        assert!(!format!("{token:?}").contains(token.as_str()));
        for bad in ["", "abc", &"G".repeat(64), &token.as_str().to_uppercase()] {
            assert_eq!(SessionToken::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_hash_is_argon2id_and_verifies_only_its_password() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let hash = hash_password("correct horse battery").await.unwrap();
            assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
            assert!(verify_password("correct horse battery", hash.clone())
                .await
                .unwrap());
            assert!(!verify_password("correct horse batterY", hash)
                .await
                .unwrap());
        });
    }
}
