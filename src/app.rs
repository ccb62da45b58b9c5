//! `App`: what the server's pages and the CLI's commands share, built once per process: the
//! database pool, the preparer (renderer, Stripe client, name memo), the handles that wake the
//! processor and the sender, and the effective configuration.
//!
//! The configuration sits behind a `watch` channel: a setting saved on the Settings page is
//! published here, and the sender, which holds a receiver, reconnects with it at once.

use std::sync::Arc;

use tokio::sync::{watch, Notify};

use crate::db::{self, turns::WriteTurns, Pool};
use crate::pipeline::prepare::Preparer;
use crate::stripe::api::StripeClient;
use crate::{Config, Error};

pub struct App {
    pub pool: Pool,
    pub preparer: Arc<Preparer>,
    /// Wakes the event processor (events to prepare again, e.g. after a key is added).
    pub wake_processor: Arc<Notify>,
    /// Wakes the sender (a resend, a retry made due now, new SMTP settings).
    pub wake_sender: Arc<Notify>,
    /// What the template editor keeps between requests (resolved events, rendered previews).
    pub previews: crate::manage::preview::Previews,
    /// Turns on the write lock among this process's writers, intake first (`db::turns`).
    pub write_turns: Arc<WriteTurns>,
    config: watch::Sender<Arc<Config>>,
}

/// Reader connections; SQLite in WAL mode serves reads concurrently with the one writer.
pub const READ_POOL_SIZE: u32 = 4;

impl App {
    /// Builds the shared state on an already migrated database.
    pub fn new(config: Config) -> Result<App, Error> {
        let options = db::Options::new(&config)?;
        App::with_options(config, &options)
    }

    /// As `new`, on a database whose `Options` (and so key) the caller found already.
    pub fn with_options(config: Config, options: &db::Options) -> Result<App, Error> {
        let pool = db::pool(options, READ_POOL_SIZE)?;
        let config = crate::manage::settings::with_saved(config, &*pool.get()?)?;
        let stripe = StripeClient::new(&config.stripe.api_base);
        Ok(App {
            preparer: Arc::new(Preparer::new(pool.clone(), stripe)),
            pool,
            wake_processor: Arc::new(Notify::new()),
            wake_sender: Arc::new(Notify::new()),
            previews: Default::default(),
            write_turns: Default::default(),
            config: watch::Sender::new(Arc::new(config)),
        })
    }

    /// The configuration in effect now.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// A receiver that sees every configuration published after it was made.
    pub fn watch_config(&self) -> watch::Receiver<Arc<Config>> {
        self.config.subscribe()
    }

    /// Makes `config` the one in effect and tells everyone watching.
    pub fn publish_config(&self, config: Config) {
        self.config.send_replace(Arc::new(config));
    }

    pub fn stripe(&self) -> &StripeClient {
        &self.preparer.stripe
    }

    /// Runs blocking database work on a pooled connection, off the async executor.
    pub async fn db<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, Error> + Send + 'static,
    {
        db::call(&self.pool, work).await
    }
}
