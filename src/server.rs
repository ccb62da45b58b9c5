//! `serve(config, listener, shutdown)`: opens and migrates the database, starts the event
//! writer, and runs the HTTP server until `shutdown` resolves, finishing requests in flight.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::db::integrations::Integration;
use crate::db::lock::ServeLock;
use crate::db::{self, deliveries, writer::EventWriter, Pool};
use crate::outbox::sender::Sender;
use crate::outbox::smtp::Mailer;
use crate::pipeline::{prepare::Preparer, retention::Retention, Processor};
use crate::stripe::api::StripeClient;
use crate::web::listener::{self, Limits};
use crate::{web, Config, Error};

/// What every handler shares.
pub struct AppState {
    pub config: Config,
    pub pool: Pool,
    pub writer: EventWriter,
    /// Integrations recently looked up by webhook intake, with when (see `web::webhook`).
    pub integrations: Mutex<HashMap<String, (Instant, Integration)>>,
}

/// Reader connections; SQLite in WAL mode serves reads concurrently with the one writer.
const READ_POOL_SIZE: u32 = 4;
/// Webhooks waiting for the writer; beyond this, requests wait in the HTTP layer.
const WRITE_QUEUE: usize = 1024;

pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let busy_timeout = Duration::from_millis(config.database.busy_timeout_ms);
    let path = config.database.path.clone();
    let (_lock, writer_conn, processor_conn, schema_version, saved) =
        tokio::task::spawn_blocking(move || {
            let mut conn = db::open(&path, busy_timeout)?;
            // Held until serve returns. With it, no other live process is sending, so rows
            // still marked `sending` belong to a server that died: they go out again at once
            // instead of waiting for their lease.
            let lock = ServeLock::acquire(&path)?;
            let version = db::migrate(&mut conn)?;
            let handed_back = deliveries::hand_back_orphans(&conn, db::now_unix())?;
            if handed_back > 0 {
                tracing::warn!(
                    handed_back,
                    "deliveries a stopped server was sending are due again now"
                );
            }
            let background = db::open_background(&path, busy_timeout)?;
            let saved = db::settings::load(&conn)?;
            Ok::<_, Error>((lock, conn, background, version, saved))
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let config = with_saved_settings(config, &saved);
    // A broken SMTP setting (say, an unreadable DKIM key) stops the start, before anything runs.
    if config.smtp.is_configured() {
        Mailer::new(&config.smtp).map_err(|e| Error::Config(format!("smtp: {e}")))?;
    }
    let (_publish_config, effective) = watch::channel(Arc::new(config.clone()));
    let pool = db::pool(&config.database.path, busy_timeout, READ_POOL_SIZE)?;
    let new_events = Arc::new(Notify::new());
    let (writer, writer_thread) = EventWriter::start(writer_conn, WRITE_QUEUE, new_events.clone());

    let (stop, stopped) = watch::channel(false);
    let new_deliveries = Arc::new(Notify::new());
    let processor = Processor {
        preparer: Arc::new(Preparer::new(
            pool.clone(),
            StripeClient::new(&config.stripe.api_base),
        )),
        conn: Arc::new(Mutex::new(processor_conn)),
        new_events,
        new_deliveries: new_deliveries.clone(),
        config: effective.clone(),
        max_retry: Duration::from_secs(config.outbox.max_retry_hours * 3600),
        concurrency: config.processor.concurrency,
        event_timeout: Duration::from_secs(config.processor.event_timeout_secs),
        retry_base: Duration::from_secs(config.processor.retry_base_secs),
    };
    let processor = tokio::spawn(processor.run(stopped.clone()));
    let retention = match config.outbox.retention_days {
        0 => None,
        days => {
            let (path, keep) = (config.database.path.clone(), days * 86_400);
            let conn =
                tokio::task::spawn_blocking(move || db::open_background(&path, busy_timeout))
                    .await
                    .map_err(|e| Error::Io(std::io::Error::other(e)))??;
            let retention = Retention {
                conn: Arc::new(Mutex::new(conn)),
                keep: Duration::from_secs(keep),
            };
            Some(tokio::spawn(retention.run(stopped.clone())))
        }
    };
    let sender = start_sender(&config, effective, &pool, new_deliveries, stopped).await?;

    let address = listener.local_addr()?;
    tracing::info!(
        listen = %address,
        database = %config.database.path.display(),
        schema_version,
        "MailMyCustomer is serving; webhooks go to {}/webhooks/stripe/<integration id>",
        config.base_url(),
    );

    let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
    let limits = Limits {
        max_connections: config.server.max_connections,
        header_timeout: Duration::from_secs(config.server.header_timeout_secs),
        idle_timeout: Duration::from_secs(config.server.idle_timeout_secs),
    };
    let state = Arc::new(AppState {
        config,
        pool,
        writer,
        integrations: Mutex::new(HashMap::new()),
    });
    let served = listener::serve(listener, web::routes(state), limits, shutdown, grace).await;

    // Background work stops after the last request: what it has not done yet stays in the rows
    // and resumes on the next start.
    let _ = stop.send(true);
    if let Err(e) = processor.await {
        tracing::error!(error = %e, "the event processor panicked");
    }
    if let Some(retention) = retention {
        if let Err(e) = retention.await {
            tracing::error!(error = %e, "retention panicked");
        }
    }
    if let Err(e) = sender.await {
        tracing::error!(error = %e, "the sender panicked");
    }
    // The routes held the last writer handle; once they are gone the writer drains its queue
    // and ends, so every answered webhook is on disk before serve returns.
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .map_err(|_| Error::Io(std::io::Error::other("the event writer thread panicked")))?;
    tracing::info!("stopped");
    Ok(served?)
}

/// The config with the values saved on the settings page. Saved values the config no longer
/// accepts (the file changed under them) are left out, and the log says which, so the server
/// still starts and the page can fix them.
fn with_saved_settings(config: Config, saved: &BTreeMap<String, String>) -> Config {
    match config.with_saved(saved) {
        Ok(effective) => effective,
        Err(e) => {
            tracing::error!(error = %e, "the settings saved on the settings page are not used until they are fixed there");
            config
        }
    }
}

/// Starts the sender. It sends with the SMTP settings of the moment (`effective`); without
/// any, deliveries are still prepared and wait in the outbox, each marked with why.
async fn start_sender(
    config: &Config,
    effective: watch::Receiver<Arc<Config>>,
    pool: &Pool,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let path = config.database.path.clone();
    let busy_timeout = Duration::from_millis(config.database.busy_timeout_ms);
    let conn = tokio::task::spawn_blocking(move || db::open_background(&path, busy_timeout))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let sender = Arc::new(Sender {
        pool: pool.clone(),
        conn: Arc::new(Mutex::new(conn)),
        config: effective,
        wake,
        max_retry: Duration::from_secs(config.outbox.max_retry_hours * 3600),
        lease: Duration::from_secs(config.outbox.lease_secs),
        retry_base: Duration::from_secs(config.outbox.retry_base_secs),
        next_slot: Mutex::new(None),
    });
    Ok(tokio::spawn(sender.run(stop)))
}
