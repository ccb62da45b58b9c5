//! What `GET /metrics` reports, in Prometheus text format: the registry and the small typed
//! functions the pipeline calls where something happens (`webhook_stored`, `event`,
//! `smtp_send`, `stripe_call`, `catch_up`, …), and `render`, which adds what is read at scrape
//! time (processor lag, outbox depth, database and WAL size) and encodes it all.
//!
//! One registry per process, in a `OnceLock` that `serve` fills only when `[metrics]` is on
//! (`enable`). A process serves one database, and the call sites (the sender, the processor,
//! the Stripe client) hold no `App`, so a process-wide registry spares threading a handle
//! through each of them. While metrics are off every function here is one atomic load and a
//! branch. Tests that count run the binary as its own process, so their counters are theirs.
//!
//! Labels are bounded: integration ids (a merchant has a handful; a webhook to an id nobody
//! knows is counted under an empty `integration`, never under what the URL said), outcomes and
//! results from fixed lists. Never a customer's data.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::app::App;
use crate::db::deliveries::Status;
use crate::db::events::{Processing, Stored};
use crate::outbox::smtp::SendError;
use crate::pipeline::catchup::Caught;
use crate::stripe::api::StripeError;
use crate::Error;

/// The `Content-Type` of the answer: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `integration` label of what came through the platform's Connect endpoint and was not
/// routed to an integration (refused, or for an account nobody here listens to). Integration
/// ids are `int_…`, so it names none of them.
pub const CONNECT: &str = "connect";

static METRICS: OnceLock<Metrics> = OnceLock::new();

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    integration: String,
    /// `stored`, `duplicate`, `unrouted` (Connect, no integration owns the account) or
    /// `refused`.
    outcome: &'static str,
    /// Why it was refused: the error code of the answer (`signature_mismatch`,
    /// `unknown_integration`, `integration_disconnected`, `payload_too_large`, …); empty
    /// otherwise.
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabel {
    integration: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CatchUpLabels {
    integration: String,
    result: &'static str,
}

struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    signature_failures: Family<IntegrationLabel, Counter>,
    intake_seconds: Histogram,
    events: Family<OutcomeLabel, Counter>,
    processor_lag: Gauge,
    outbox: Family<StatusLabel, Gauge>,
    smtp_sends: Family<ResultLabel, Counter>,
    smtp_seconds: Histogram,
    stripe_calls: Family<ResultLabel, Counter>,
    catch_ups: Family<CatchUpLabels, Counter>,
    database_bytes: Gauge,
    wal_bytes: Gauge,
}

/// Intake answers in about a millisecond (one group commit with fsync); the upper buckets catch
/// a slow disk or a body trickling in up to its deadline.
const INTAKE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A relay answers one message in milliseconds on a LAN and in seconds across the internet;
/// `smtp.timeout_secs` bounds it.
const SMTP_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            webhooks: Family::default(),
            signature_failures: Family::default(),
            intake_seconds: Histogram::new(INTAKE_BUCKETS),
            events: Family::default(),
            processor_lag: Gauge::default(),
            outbox: Family::default(),
            smtp_sends: Family::default(),
            smtp_seconds: Histogram::new(SMTP_BUCKETS),
            stripe_calls: Family::default(),
            catch_ups: Family::default(),
            database_bytes: Gauge::default(),
            wal_bytes: Gauge::default(),
        };
        registry.register(
            "mmc_webhooks",
            "Webhooks received, by integration and outcome (refused ones by reason)",
            m.webhooks.clone(),
        );
        registry.register(
            "mmc_webhook_signature_failures",
            "Webhooks refused for their Stripe-Signature, by integration",
            m.signature_failures.clone(),
        );
        registry.register(
            "mmc_webhook_duration_seconds",
            "Time from the webhook handler's start to its answer",
            m.intake_seconds.clone(),
        );
        registry.register(
            "mmc_events",
            "Events processed, by outcome (queued, skipped, failed, ignored)",
            m.events.clone(),
        );
        registry.register(
            "mmc_processor_lag_seconds",
            "Age of the oldest event still pending, 0 when none is",
            m.processor_lag.clone(),
        );
        registry.register(
            "mmc_outbox_deliveries",
            "Deliveries in the log by status (queued, sending and retrying are the outbox's depth)",
            m.outbox.clone(),
        );
        registry.register(
            "mmc_smtp_sends",
            "SMTP send attempts, by result (sent, transient, permanent)",
            m.smtp_sends.clone(),
        );
        registry.register(
            "mmc_smtp_send_duration_seconds",
            "Time of one SMTP send attempt",
            m.smtp_seconds.clone(),
        );
        registry.register(
            "mmc_stripe_api_calls",
            "Stripe API requests (each retry is one), by result",
            m.stripe_calls.clone(),
        );
        registry.register(
            "mmc_catchup_runs",
            "Catch-up runs (listing Stripe's events no webhook brought), by integration and result",
            m.catch_ups.clone(),
        );
        registry.register(
            "mmc_database_size_bytes",
            "Size of the database file",
            m.database_bytes.clone(),
        );
        registry.register(
            "mmc_database_wal_size_bytes",
            "Size of the database's write-ahead log",
            m.wal_bytes.clone(),
        );
        Metrics { registry, ..m }
    }
}

/// Turns recording on for this process (`serve` calls it when `[metrics]` is on). Idempotent.
pub fn enable() {
    METRICS.get_or_init(Metrics::new);
}

fn on() -> Option<&'static Metrics> {
    METRICS.get()
}

/// A webhook stored (or found already stored) for `integration`.
pub fn webhook_stored(integration: &str, stored: Stored) {
    let Some(m) = on() else { return };
    let outcome = match stored {
        Stored::New => "stored",
        Stored::Duplicate => "duplicate",
    };
    webhook(m, integration, outcome, "");
}

/// A Connect webhook for an account no listening integration owns: acknowledged, not stored.
pub fn webhook_unrouted() {
    let Some(m) = on() else { return };
    webhook(m, CONNECT, "unrouted", "");
}

/// A webhook refused with `err`, sent to `integration` (the URL's id, or `CONNECT`).
pub fn webhook_refused(integration: &str, err: &Error) {
    let Some(m) = on() else { return };
    // The URL's id of an unknown integration is whatever the sender made up: one label value
    // per request would grow the registry without bound. A server error may come before the
    // id was looked up (the database did not answer), so it is not trusted there either.
    let integration = match err {
        Error::UnknownIntegration(_) => "",
        _ if err.status().is_server_error() => "",
        _ => integration,
    };
    if let Error::Signature(_) = err {
        m.signature_failures
            .get_or_create(&IntegrationLabel {
                integration: integration.to_owned(),
            })
            .inc();
    }
    webhook(m, integration, "refused", err.code());
}

fn webhook(m: &Metrics, integration: &str, outcome: &'static str, reason: &'static str) {
    m.webhooks
        .get_or_create(&WebhookLabels {
            integration: integration.to_owned(),
            outcome,
            reason,
        })
        .inc();
}

/// How long one webhook took, from the handler's start to its answer.
pub fn intake_latency(elapsed: Duration) {
    let Some(m) = on() else { return };
    m.intake_seconds.observe(elapsed.as_secs_f64());
}

/// Whether recording is on, for callers that would do work (read the clock) only to record.
pub fn is_on() -> bool {
    on().is_some()
}

/// An event's outcome, counted as the processor records it in the transaction that commits it.
/// A commit the database refuses is redone, and its events are then counted again: the count
/// can run ahead of the rows only by such a failed commit's events (the log says when).
pub fn event(outcome: Processing) {
    let Some(m) = on() else { return };
    m.events
        .get_or_create(&OutcomeLabel {
            outcome: outcome.as_str(),
        })
        .inc();
}

/// One SMTP attempt and how long it took.
pub fn smtp_send(result: &Result<(String, String), SendError>, took: Duration) {
    let Some(m) = on() else { return };
    let result = match result {
        Ok(_) => "sent",
        Err(SendError::Transient { .. }) => "transient",
        Err(SendError::Permanent { .. }) => "permanent",
    };
    m.smtp_sends.get_or_create(&ResultLabel { result }).inc();
    m.smtp_seconds.observe(took.as_secs_f64());
}

/// One request to the Stripe API: `None` when it succeeded, else why it failed.
pub fn stripe_call(failure: Option<&StripeError>) {
    let Some(m) = on() else { return };
    let result = match failure {
        None => "ok",
        Some(StripeError::NotFound { .. }) => "not_found",
        Some(StripeError::InvalidKey { .. }) => "invalid_key",
        Some(StripeError::PermissionDenied { .. }) => "permission_denied",
        Some(StripeError::RateLimited { .. }) => "rate_limited",
        Some(StripeError::Server { .. }) => "server_error",
        Some(StripeError::Network { .. }) => "network_error",
        Some(StripeError::Invalid { .. }) => "invalid",
        Some(StripeError::Other { .. }) => "other",
    };
    m.stripe_calls.get_or_create(&ResultLabel { result }).inc();
}

/// One catch-up run of `integration`.
pub fn catch_up(integration: &str, result: &Result<Caught, Error>) {
    let Some(m) = on() else { return };
    m.catch_ups
        .get_or_create(&CatchUpLabels {
            integration: integration.to_owned(),
            result: if result.is_ok() { "ok" } else { "failed" },
        })
        .inc();
}

/// What is read at scrape time.
struct Snapshot {
    lag_secs: i64,
    outbox: Vec<(Status, i64)>,
    database_bytes: u64,
    wal_bytes: u64,
}

/// Everything, in Prometheus text format; `None` while metrics are off in this process.
pub async fn render(app: &App) -> Result<Option<String>, Error> {
    let Some(m) = on() else { return Ok(None) };
    let path = app.config().database.path.clone();
    let snapshot = app.db(move |conn| snapshot(conn, &path)).await?;
    m.processor_lag.set(snapshot.lag_secs);
    // A status with no delivery has no row in `daily_counts`: it reads 0, not its last value.
    for status in Status::ALL {
        let n = snapshot
            .outbox
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        m.outbox
            .get_or_create(&StatusLabel {
                status: status.as_str(),
            })
            .set(n);
    }
    m.database_bytes
        .set(i64::try_from(snapshot.database_bytes).unwrap_or(i64::MAX));
    m.wal_bytes
        .set(i64::try_from(snapshot.wal_bytes).unwrap_or(i64::MAX));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &m.registry)
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
    Ok(Some(text))
}

/// The oldest pending event: the smallest id of the two partial indexes (fresh events: the
/// first entry; postponed or held ones: a walk over them alone), so only pending events are
/// read, never the log. Ids grow with `received_at`, so the smallest id is the oldest. Left
/// to itself, SQLite would find the postponed minimum by walking the table in id order from
/// its oldest row, through every processed event: `INDEXED BY` keeps it on the index.
const OLDEST_PENDING: &str = "SELECT received_at FROM events WHERE id = (SELECT MIN(id) FROM (
         SELECT MIN(id) AS id FROM events WHERE processing = 'pending' AND process_after IS NULL
         UNION ALL
         SELECT MIN(id) FROM events INDEXED BY events_postponed
             WHERE processing = 'pending' AND process_after IS NOT NULL))";

/// Deliveries by status from `daily_counts` (a row per day, status and integration, kept exact
/// by triggers), never a count over the delivery log.
const BY_STATUS: &str = "SELECT status, SUM(n) FROM daily_counts GROUP BY status";

fn snapshot(conn: &rusqlite::Connection, path: &std::path::Path) -> Result<Snapshot, Error> {
    use rusqlite::OptionalExtension;
    let oldest: Option<i64> = conn
        .query_row(OLDEST_PENDING, [], |row| row.get(0))
        .optional()?;
    let lag_secs = oldest.map_or(0, |at| (crate::db::now_unix() - at).max(0));
    let mut statement = conn.prepare_cached(BY_STATUS)?;
    let outbox = statement
        .query_map([], |row| {
            Ok((row.get::<_, Status>(0)?, row.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    Ok(Snapshot {
        lag_secs,
        outbox,
        database_bytes: size(path.to_path_buf()),
        wal_bytes: size(PathBuf::from(wal)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrated(dir: &tempfile::TempDir) -> rusqlite::Connection {
        let options = crate::db::Options::at(&dir.path().join("t.db")).unwrap();
        let mut conn = crate::db::open(&options.with_busy_timeout(Default::default())).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn
    }

    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = statement
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    /// The scrape reads the pending events through their partial indexes only, whatever the
    /// size of the log.
    #[test]
    fn the_oldest_pending_event_is_found_through_the_pending_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        let plan = plan(&conn, OLDEST_PENDING);
        assert!(plan.contains("USING INDEX events_fresh"), "{plan}");
        assert!(
            plan.contains("USING COVERING INDEX events_postponed"),
            "{plan}"
        );
        assert!(plan.contains("INTEGER PRIMARY KEY (rowid=?)"), "{plan}");
        // Every read of `events` goes through an index or the primary key.
        for line in plan.lines().filter(|l| l.contains(" events")) {
            assert!(
                line.contains("INDEX") || line.contains("PRIMARY KEY"),
                "events read without an index: {plan}"
            );
        }
    }

    /// The outbox depth is read from `daily_counts`, never from `deliveries`.
    #[test]
    fn the_outbox_depth_reads_daily_counts_not_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        let plan = plan(&conn, BY_STATUS);
        assert!(plan.contains("daily_counts"), "{plan}");
        assert!(!plan.contains("deliveries"), "{plan}");
    }

    /// The lag is the age of the oldest pending event, fresh or postponed; processed events,
    /// however old, do not count.
    #[test]
    fn the_lag_is_the_age_of_the_oldest_pending_event() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        let integration = crate::db::integrations::insert(
            &conn,
            &crate::db::integrations::NewIntegration {
                name: "shop",
                webhook_secret: "whsec_x",
                api_key: None,
                stripe_account: None,
                from_address: None,
            },
        )
        .unwrap()
        .id;
        let now = crate::db::now_unix();
        let event = |id: &str, received_ago: i64, processing: &str, process_after: Option<i64>| {
            conn.execute(
                "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                     received_at, processing, process_after)
                 VALUES (?1, ?2, 'invoice.paid', 0, ?3, ?3, ?4, ?5)",
                rusqlite::params![
                    integration,
                    id,
                    now - received_ago,
                    processing,
                    process_after
                ],
            )
            .unwrap();
        };
        let lag = || snapshot(&conn, &dir.path().join("t.db")).unwrap().lag_secs;
        // The age as of now: at least what it was made with, plus the seconds since.
        let age = |made: i64| made..=made + (crate::db::now_unix() - now);
        event("evt_done", 5_000, "queued", None);
        assert_eq!(lag(), 0);
        event("evt_postponed", 300, "pending", Some(now + 60));
        event("evt_fresh", 20, "pending", None);
        let measured = lag();
        assert!(age(300).contains(&measured), "{measured}");
        conn.execute(
            "UPDATE events SET processing = 'failed', process_after = NULL
             WHERE stripe_event_id = 'evt_postponed'",
            [],
        )
        .unwrap();
        let measured = lag();
        assert!(age(20).contains(&measured), "{measured}");
    }

    #[test]
    fn a_snapshot_of_an_empty_database_has_no_lag_and_no_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        let snapshot = snapshot(&conn, &dir.path().join("t.db")).unwrap();
        assert_eq!(snapshot.lag_secs, 0);
        assert!(snapshot.outbox.is_empty());
        assert!(snapshot.database_bytes > 0);
    }
}
