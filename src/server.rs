//! `serve(config, listener, shutdown)`: opens and migrates the database, starts the event
//! writer, and runs the HTTP server until `shutdown` resolves, finishing requests in flight.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::listener::{Acceptor, TcpAcceptor};
use poem::Server;

use tokio::sync::{watch, Notify};

use crate::db::{self, writer::EventWriter, Pool};
use crate::pipeline::{prepare::Preparer, Processor};
use crate::stripe::api::StripeClient;
use crate::templates::render::Renderer;
use crate::{web, Config, Error};

/// What every handler shares.
pub struct AppState {
    pub config: Config,
    pub pool: Pool,
    pub writer: EventWriter,
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
    let (writer_conn, processor_conn, schema_version) = tokio::task::spawn_blocking(move || {
        let mut conn = db::open(&path, busy_timeout)?;
        let version = db::migrate(&mut conn)?;
        Ok::<_, Error>((conn, db::open(&path, busy_timeout)?, version))
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let pool = db::pool(&config.database.path, busy_timeout, READ_POOL_SIZE)?;
    let new_events = Arc::new(Notify::new());
    let (writer, writer_thread) = EventWriter::start(writer_conn, WRITE_QUEUE, new_events.clone());

    let (stop, stopped) = watch::channel(false);
    let new_deliveries = Arc::new(Notify::new());
    let processor = Processor {
        preparer: Arc::new(Preparer {
            pool: pool.clone(),
            stripe: StripeClient::new(&config.stripe.api_base),
            renderer: Renderer::default(),
        }),
        conn: Arc::new(Mutex::new(processor_conn)),
        new_events,
        new_deliveries: new_deliveries.clone(),
        smtp_configured: config.smtp.is_configured(),
        max_retry: Duration::from_secs(config.outbox.max_retry_hours * 3600),
    };
    let processor = tokio::spawn(processor.run(stopped.clone()));

    let acceptor = TcpAcceptor::from_tokio(listener)?;
    let addresses = acceptor.local_addr();
    tracing::info!(
        listen = %addresses
            .first()
            .and_then(|a| a.as_socket_addr())
            .map(ToString::to_string)
            .unwrap_or_default(),
        database = %config.database.path.display(),
        schema_version,
        "MailMyCustomer is serving; webhooks go to {}/webhooks/stripe/<integration id>",
        config.base_url(),
    );

    let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
    let state = Arc::new(AppState {
        config,
        pool,
        writer,
    });
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(web::routes(state), shutdown, Some(grace))
        .await;

    // Background work stops after the last request: what it has not done yet stays in the rows
    // and resumes on the next start.
    let _ = stop.send(true);
    if let Err(e) = processor.await {
        tracing::error!(error = %e, "the event processor panicked");
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
