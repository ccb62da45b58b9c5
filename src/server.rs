//! `serve(config, listener, shutdown)`: opens and migrates the database, builds the `App`,
//! starts the event writer, the processor, retention, the catch-up and the sender, and serves
//! HTTP (and `/metrics` on `metrics.listen` when set) until `shutdown` resolves, finishing
//! requests in flight; then stops the background work.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::db::lock::ServeLock;
use crate::db::{self, checkpoint::Checkpointer, deliveries, writer::EventWriter};
use crate::outbox::sender::Sender;
use crate::outbox::smtp::Mailer;
use crate::pipeline::{catchup::CatchUps, retention::Retention, Processor};
use crate::web::auth::{self, Auth};
use crate::web::listener::{self, Limits};
use crate::web::webhook::Intake;
use crate::web::Serves;
use crate::{web, Config, Error};

/// Webhooks waiting for the writer; beyond this, requests wait in the HTTP layer.
const WRITE_QUEUE: usize = 1024;

/// Serves on `listener`, and the pages on `server.admin_listen` when it is set.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let admin = match config.server.admin_listen.as_str() {
        "" => None,
        address => Some(listener::bind(address).await.map_err(|e| {
            Error::Config(format!(
                "cannot listen on server.admin_listen = {address:?}: {e}"
            ))
        })?),
    };
    serve_split(config, listener, admin, shutdown).await
}

/// As `serve`, with the pages' own listener given (tests bind port 0 and pass it).
pub async fn serve_split(
    config: Config,
    listener: tokio::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    // Bound first, so an address in use stops the start before anything else happens.
    let metrics_listener = match config.metrics.listen.as_str() {
        "" => None,
        address => Some(listener::bind(address).await.map_err(|e| {
            Error::Config(format!(
                "cannot listen on metrics.listen = {address:?}: {e}"
            ))
        })?),
    };
    if config.metrics.is_enabled() {
        crate::metrics::enable();
    }
    let opening = config.clone();
    let (_lock, writer_conn, processor_conn, schema_version, options) =
        tokio::task::spawn_blocking(move || {
            // The key is found (and checked against the database) first: a wrong one stops
            // the start here, before anything else happens.
            let options = db::Options::new(&opening)?.with_background_checkpoints();
            let mut conn = db::open(&options)?;
            // Held until serve returns. With it, no other live process is sending, so rows
            // still marked `sending` belong to a server that died: they go out again at once
            // instead of waiting for their lease.
            let lock = ServeLock::acquire(&options.path)?;
            let version = db::migrate(&mut conn)?;
            let handed_back = deliveries::hand_back_orphans(&conn, db::now_unix())?;
            if handed_back > 0 {
                tracing::warn!(
                    handed_back,
                    "deliveries a stopped server was sending are due again now"
                );
            }
            let background = db::open_background(&options)?;
            db::keep_temporary_data_in_memory(&conn)?;
            db::keep_temporary_data_in_memory(&background)?;
            Ok::<_, Error>((lock, conn, background, version, options))
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let app = Arc::new(App::with_options(config, &options)?);
    // With the values saved on the settings page.
    let config = Config::clone(&app.config());
    // A broken SMTP setting (say, an unreadable DKIM key) stops the start, before anything runs.
    if config.smtp.is_configured() {
        Mailer::new(&config.smtp).map_err(|e| Error::Config(format!("smtp: {e}")))?;
    }
    let checkpointer = {
        let (options, turns) = (options.clone(), app.write_turns.clone());
        let conn = tokio::task::spawn_blocking(move || db::open_background(&options))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        Checkpointer::start(conn, turns)
    };
    let (writer, writer_thread) = EventWriter::start(
        writer_conn,
        WRITE_QUEUE,
        app.wake_processor.clone(),
        app.write_turns.clone(),
        db::writer::LINGER,
    );

    let (stop, stopped) = watch::channel(false);
    let processor = Processor {
        preparer: app.preparer.clone(),
        conn: Arc::new(Mutex::new(processor_conn)),
        turns: app.write_turns.clone(),
        new_events: app.wake_processor.clone(),
        new_deliveries: app.wake_sender.clone(),
        config: app.watch_config(),
        max_retry: Duration::from_secs(config.outbox.max_retry_hours * 3600),
        concurrency: config.processor.concurrency,
        event_timeout: Duration::from_secs(config.processor.event_timeout_secs),
        retry_base: Duration::from_secs(config.processor.retry_base_secs),
    };
    let processor = tokio::spawn(processor.run(stopped.clone()));
    let retention = match config.outbox.retention_days {
        0 => None,
        days => {
            let retention = Retention {
                database: options.clone(),
                turns: app.write_turns.clone(),
                keep: Duration::from_secs(days * 86_400),
            };
            Some(tokio::spawn(retention.run(stopped.clone())))
        }
    };
    // It shares intake's writer (a clone is a handle on the same queue), so a listed event is
    // stored exactly as a webhook's would be.
    let catch_up = match config.stripe.catch_up_interval_minutes {
        0 => None,
        minutes => {
            let catch_ups = CatchUps {
                app: app.clone(),
                writer: writer.clone(),
                every: Duration::from_secs(minutes.saturating_mul(60)),
            };
            Some(tokio::spawn(catch_ups.run(stopped.clone())))
        }
    };
    let metrics_stop = stopped.clone();
    let sender = start_sender(&config, &options, &app, stopped).await?;
    let backups = db::scheduled_backup::Schedule::from_config(&config)
        .map(|s| s.start())
        .transpose()?;

    let address = listener.local_addr()?;
    let admin_address = admin.as_ref().map(|a| a.local_addr()).transpose()?;
    let metrics_address = metrics_listener
        .as_ref()
        .map(|m| m.local_addr())
        .transpose()?;
    let auth = Arc::new(Auth::default());
    let pages_url = auth::pages_url(&config, admin_address.unwrap_or(address), admin.is_some());
    auth.offer_setup(&app, &pages_url).await?;
    tracing::info!(
        listen = %address,
        pages = %admin_address.map_or("on listen".to_owned(), |a| a.to_string()),
        metrics = %match (metrics_address, config.metrics.token.is_empty()) {
            (Some(address), _) => address.to_string(),
            (None, false) => "on listen, behind metrics.token".to_owned(),
            (None, true) => "off".to_owned(),
        },
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
    let intake = Arc::new(Intake::new(writer));
    // Stopped with the background work, after the last webhook was answered.
    let metrics_served = metrics_listener.map(|m| {
        let routes = web::metrics::routes(app.clone());
        let mut stop = metrics_stop;
        let until = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        tokio::spawn(listener::serve(m, routes, limits, until, grace))
    });
    let served = match admin {
        None => {
            let routes = web::routes(app, intake, auth, Serves::Everything);
            listener::serve(listener, routes, limits, shutdown, grace).await
        }
        Some(admin) => {
            // One shutdown signal, seen by both listeners.
            let (stopping, stop_serving) = watch::channel(false);
            let until = |mut rx: watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            let public = web::routes(app.clone(), intake.clone(), auth.clone(), Serves::Public);
            let pages = web::routes(app, intake, auth, Serves::Admin);
            let (public, pages, ()) = tokio::join!(
                listener::serve(listener, public, limits, until(stop_serving.clone()), grace),
                listener::serve(admin, pages, limits, until(stop_serving), grace),
                async {
                    shutdown.await;
                    let _ = stopping.send(true);
                },
            );
            public.and(pages)
        }
    };

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
    if let Some(catch_up) = catch_up {
        if let Err(e) = catch_up.await {
            tracing::error!(error = %e, "the catch-up panicked");
        }
    }
    if let Err(e) = sender.await {
        tracing::error!(error = %e, "the sender panicked");
    }
    if let Some(metrics_served) = metrics_served {
        match metrics_served.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the metrics listener failed"),
            Err(e) => tracing::error!(error = %e, "the metrics listener panicked"),
        }
    }
    if let Some(backups) = backups {
        let _ = tokio::task::spawn_blocking(move || backups.stop(grace)).await;
    }
    // The routes held the last writer handle; once they are gone the writer drains its queue
    // and ends, so every answered webhook is on disk before serve returns.
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .map_err(|_| Error::Io(std::io::Error::other("the event writer thread panicked")))?;
    tokio::task::spawn_blocking(move || checkpointer.stop())
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
    tracing::info!("stopped");
    Ok(served?)
}

/// Starts the sender. It sends with the SMTP settings in effect at each moment (`app`'s
/// config); without any, deliveries are still prepared and wait in the outbox, each marked
/// with why.
async fn start_sender(
    config: &Config,
    options: &db::Options,
    app: &App,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let options = options.clone();
    let conn = tokio::task::spawn_blocking(move || {
        let conn = db::open_background(&options)?;
        db::keep_temporary_data_in_memory(&conn)?;
        Ok::<_, Error>(conn)
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let sender = Arc::new(Sender {
        pool: app.pool.clone(),
        conn: Arc::new(Mutex::new(conn)),
        turns: app.write_turns.clone(),
        config: app.watch_config(),
        wake: app.wake_sender.clone(),
        max_retry: Duration::from_secs(config.outbox.max_retry_hours * 3600),
        lease: Duration::from_secs(config.outbox.lease_secs),
        retry_base: Duration::from_secs(config.outbox.retry_base_secs),
        next_slot: Mutex::new(None),
        outcomes: Default::default(),
    });
    Ok(tokio::spawn(sender.run(stop)))
}
