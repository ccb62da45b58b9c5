//! Settings saved on the settings page: the SMTP relay and the public URL. Saving checks the
//! values as the config file's are checked (and the SMTP settings as `serve` checks them at
//! start, DKIM key included), stores them, and publishes the new effective config, which the
//! sender follows at once. A key set by the environment or a flag cannot be changed here.
//!
//! The SMTP password is stored in the database sealed (`crate::seal`).

use std::collections::BTreeMap;

use crate::app::App;
use crate::config::{Config, SETTABLE};
use crate::db;
use crate::outbox::smtp::Mailer;
use crate::Error;

/// What the password field asks for. It is write-only: the page never shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// An empty field: keep the password as it is.
    Keep,
    Set(String),
    /// The "clear" box: no password.
    Clear,
}

/// A save from the settings page: the keys it sent (`smtp.host` → text as typed) and what to do
/// with the password. Keys not sent are left as they are.
#[derive(Debug, Clone)]
pub struct Changes {
    pub values: BTreeMap<String, String>,
    pub password: Password,
}

/// The outcome of a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The keys whose effective value changed.
    pub changed: Vec<&'static str>,
}

/// One save at a time, so the stored values and the published config are the same ones.
static SAVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `config` with the values saved on the settings page laid over it (`Config::with_saved`), as
/// `App::new` builds it. Saved values the config no longer accepts (the file changed under them)
/// are left out and the log says why, so the server still starts and the page can fix them.
pub fn with_saved(config: Config, conn: &rusqlite::Connection) -> Result<Config, Error> {
    let saved = db::settings::load(conn)?;
    Ok(match config.with_saved(&saved) {
        Ok(effective) => effective,
        Err(e) => {
            tracing::error!(error = %e, "the values saved on the settings page are not used until they are fixed there");
            config
        }
    })
}

/// What `config check` and `config dump` show: `config` with the values saved on the settings
/// page laid over it, read from its database without changing it. Unlike a starting server,
/// a saved value the config no longer accepts is an error here, so `config check` reports it.
/// `config` itself when there is no database yet.
pub fn effective_offline(config: Config) -> Result<Config, Error> {
    match db::settings::load_read_only(&config)? {
        Some(saved) if !saved.is_empty() => config.with_saved(&saved).map_err(|e| {
            Error::invalid(
                e.field().unwrap_or("settings"),
                format!("a value saved on the settings page: {e}; change it there"),
            )
        }),
        _ => Ok(config),
    }
}

/// The config in effect now, with each key's source (`Config::source`).
pub fn current(app: &App) -> std::sync::Arc<Config> {
    app.config()
}

pub async fn save(app: &App, changes: Changes) -> Result<Saved, Error> {
    let _one_at_a_time = SAVING.lock().await;
    let current = app.config();
    let mut saved = app.db(db::settings::load).await?;
    let password = match changes.password {
        Password::Keep => None,
        Password::Set(password) => Some(password),
        Password::Clear => Some(String::new()),
    };
    let wanted = changes
        .values
        .into_iter()
        .map(|(key, value)| (key, value.trim().to_owned()))
        .chain(password.map(|p| ("smtp.password".to_owned(), p)));
    for (key, value) in wanted {
        let Some(&key) = SETTABLE.iter().find(|k| **k == key) else {
            return Err(Error::Invalid {
                field: "settings",
                message: format!("{key} cannot be changed on the settings page"),
            });
        };
        if let Some(reason) = current.source(key).read_only_reason() {
            if current.setting(key).as_deref() != Some(value.as_str()) {
                return Err(Error::invalid(
                    key,
                    format!("{key} is {reason}, which wins over this page: change it there"),
                ));
            }
            continue;
        }
        // Only what differs from the file (or the default) is kept, so the page says truly
        // which values are its own, and a value put back to the file's follows the file again.
        match current.below_page(key).as_deref() == Some(value.as_str()) {
            true => saved.remove(key),
            false => saved.insert(key.to_owned(), value),
        };
    }
    let effective = current.with_saved(&saved)?;
    if effective.smtp.is_configured() {
        Mailer::new(&effective.smtp).map_err(|e| smtp_invalid(&e.to_string()))?;
    }
    let changed: Vec<&'static str> = SETTABLE
        .iter()
        .copied()
        .filter(|key| effective.setting(key) != current.setting(key))
        .collect();
    app.db(move |c| db::settings::replace(c, &saved, db::now_unix()))
        .await?;
    app.publish_config(effective);
    Ok(Saved { changed })
}

/// The settings the relay refused to be built from (an address it cannot use, an unreadable DKIM
/// key): `Invalid`, naming the settable key the message is about, else the host that turned
/// sending on.
fn smtp_invalid(message: &str) -> Error {
    let field = SETTABLE
        .iter()
        .copied()
        .find(|key| message.contains(key))
        .unwrap_or("smtp.host");
    Error::invalid(field, format!("{message} (nothing was saved)"))
}
