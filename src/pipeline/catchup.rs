//! The catch-up: events no webhook brought (the server was down beyond Stripe's retries, the
//! endpoint was disabled, the integration was just connected) are listed from Stripe
//! (`GET /v1/events`) and stored through the same `EventWriter` as intake, so the processor
//! handles them exactly as if they had arrived by webhook. Duplicates stay impossible: the
//! insert ignores an event id the integration has, and the processor dedupes on the business
//! key before emailing.
//!
//! It runs for every integration that listens and has a key to read with, once at start and
//! then every `stripe.catch_up_interval_minutes`, one integration after another; one that fails
//! is logged with its reason and tried again next time, and the others go on. `once` runs it for
//! one integration now (the CLI's `integration catch-up`).
//!
//! **The window.** Stripe does not deliver in order, so "newer than the newest stored event"
//! would skip one that a retry brings late. Each run lists what was created since the last
//! successful run, minus a margin (`window_start`), and never reaches before the integration
//! existed by more than that margin, nor before Stripe's 30 days: a merchant connecting today
//! must not have last month's renewals emailed.
//!
//! **Order.** Stripe lists newest first, but the processor keeps a customer's emails in the
//! order of their events only among events it reads together or in order. So the pages are
//! stored oldest first, each page from its oldest event: the listing is read to its end first,
//! kept in memory up to `HELD_EVENTS`, and past that only each page's cursor is kept and the
//! pages are read again, from the last, as they are stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::app::App;
use crate::db::events::{NewEvent, Stored};
use crate::db::integrations::{self, ConnectedBy, Integration};
use crate::db::writer::EventWriter;
use crate::db::{self, now_unix};
use crate::stripe::api::{Credentials, StripeError};
use crate::stripe::envelope::Envelope;
use crate::trigger::SUBSCRIBED_EVENTS;
use crate::Error;

/// How far before the last successful run's start (and before the integration's creation) a
/// run reaches back, in seconds. It covers what makes "created since the last run" miss an
/// event: `created` is Stripe's clock and the run's time ours (skew); Stripe's list may show an
/// event a moment after it was created; and the last run is known by when it finished, later
/// than it started by its length (events created while it read are not on the pages it read).
/// An hour is far beyond all three; what it costs is relisting an hour of events each time,
/// which the insert skips.
pub const MARGIN_SECS: i64 = 3600;

/// Stripe lists events of the last 30 days only.
pub const STRIPE_KEEPS_SECS: i64 = 30 * 86_400;

/// Events held in memory while a listing is read (about 5 KB each); a longer listing is read
/// again page by page as it is stored.
const HELD_EVENTS: usize = 2_000;

/// Sent to Stripe in `types[]` only for Connect (OAuth) integrations: a Connect application's
/// access being revoked is an event about the platform's connection.
const DEAUTHORIZED: &str = "account.application.deauthorized";

/// What one catch-up of one integration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caught {
    /// The `created` time it listed from, unix seconds.
    pub from: i64,
    /// Events Stripe listed in the window.
    pub listed: usize,
    /// Of those, the ones the integration lacked, now stored for processing.
    pub stored: usize,
    /// Listed events that are not readable as events (logged and left out).
    pub unreadable: usize,
}

/// Where a run lists from: `max(last run − margin, now − 30 days, creation − margin)`, and,
/// when retention deletes old events (`retention_days` > 0), not before what retention keeps:
/// an event already processed and deleted would come back as new and be emailed again.
pub fn window_start(integration: &Integration, now: i64, retention_days: u64) -> i64 {
    let mut from = (now - STRIPE_KEEPS_SECS).max(integration.created_at - MARGIN_SECS);
    if let Some(last) = integration.catch_up.at {
        from = from.max(last - MARGIN_SECS);
    }
    if retention_days > 0 {
        let kept = i64::try_from(retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        from = from.max(now.saturating_sub(kept));
    }
    from
}

/// The event types a run lists for `integration`: those the webhook endpoint subscribes to, and
/// the deauthorization for a Connect integration.
pub fn event_types(integration: &Integration) -> Vec<&'static str> {
    let mut types = SUBSCRIBED_EVENTS.to_vec();
    if integration.connected_by == ConnectedBy::OAuth {
        types.push(DEAUTHORIZED);
    }
    types
}

/// Lists `integration`'s events over its window, stores those it lacks through `writer`, and
/// records the run (`note_catch_up`). A failure records nothing, so the next run covers the
/// same window again.
pub async fn catch_up(
    app: &App,
    writer: &EventWriter,
    integration: &Integration,
) -> Result<Caught, Error> {
    if !integration.is_listening() {
        return Err(Error::invalid(
            "id",
            format!(
                "“{}” is disconnected, so its events are not caught up: connect it again on its \
                 page (Integrations)",
                integration.name
            ),
        ));
    }
    let Some(creds) = Credentials::of(integration) else {
        return Err(Error::invalid(
            "id",
            format!(
                "“{}” has no Stripe API key to read its events with: add one on the \
                 integration's page (Integrations), a restricted key (rk_…) with Read on Events",
                integration.name
            ),
        ));
    };
    let now = now_unix();
    let from = window_start(integration, now, app.config().outbox.retention_days);
    let types = event_types(integration);
    let listing = app.stripe().events(from, &types).map_err(from_stripe)?;

    // Read to the end, newest first; keep the pages while they are few.
    let mut cursors: Vec<Option<String>> = vec![None];
    let mut held: Vec<Vec<String>> = Vec::new();
    let mut holding = true;
    let mut listed = 0;
    loop {
        let after = cursors.last().cloned().flatten();
        let page = listing
            .page(&creds, after.as_deref())
            .await
            .map_err(from_stripe)?;
        listed += page.events.len();
        if holding {
            held.push(page.events);
            holding = listed <= HELD_EVENTS;
            if !holding {
                held.clear();
            }
        }
        match page.next {
            Some(next) => cursors.push(Some(next)),
            None => break,
        }
    }

    // Store oldest first.
    let mut caught = Caught {
        from,
        listed,
        stored: 0,
        unreadable: 0,
    };
    for cursor in cursors.iter().rev() {
        let events = match held.pop() {
            Some(events) => events,
            None => {
                listing
                    .page(&creds, cursor.as_deref())
                    .await
                    .map_err(from_stripe)?
                    .events
            }
        };
        for text in events.into_iter().rev() {
            let envelope = match Envelope::parse(text.as_bytes()) {
                Ok(envelope) => envelope,
                Err(e) => {
                    tracing::warn!(integration = %integration.id, error = %e, "catch-up: Stripe listed something that is not an event; left out");
                    caught.unreadable += 1;
                    continue;
                }
            };
            let stored = writer
                .store(NewEvent::new(integration.id.clone(), envelope, &text), None)
                .await?;
            if stored == Stored::New {
                caught.stored += 1;
            }
        }
    }

    let (id, recovered) = (integration.id.clone(), caught.stored as i64);
    app.db(move |conn| integrations::note_catch_up(conn, &id, from, recovered))
        .await?;
    Ok(caught)
}

/// A Stripe failure as the error a person reads: what was being done, and the fix.
fn from_stripe(error: StripeError) -> Error {
    let message = match error {
        StripeError::PermissionDenied { message, .. } => {
            format!("catching up needs Read on Events for the API key: {message}")
        }
        StripeError::InvalidKey { message } => message,
        e if e.is_transient() => {
            format!("could not list events from Stripe: {e}; the next catch-up tries again")
        }
        e => format!("could not list events from Stripe: {e}"),
    };
    Error::invalid("stripe", message)
}

/// One catch-up of integration `id` now, with a writer of its own (the CLI's `integration
/// catch-up`; it works while `serve` runs, as SQLite serializes the two writers). The events it
/// stores are emailed by the running server, which looks for new events at least every minute,
/// or by the next one to start.
pub async fn once(app: &App, id: &str) -> Result<Caught, Error> {
    let integration = crate::manage::integrations::get(app, id).await?;
    let config = app.config();
    let options = db::Options::new(&config)?;
    let conn = tokio::task::spawn_blocking(move || db::open(&options))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let (writer, thread) = EventWriter::start(
        conn,
        64,
        app.wake_processor.clone(),
        app.write_turns.clone(),
        db::writer::LINGER,
    );
    let caught = catch_up(app, &writer, &integration).await;
    // The thread ends once its last handle is gone and its queue is committed.
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .map_err(|_| Error::Io(std::io::Error::other("the event writer thread panicked")))?;
    caught
}

/// The catch-up loop `serve` runs beside the processor.
pub struct CatchUps {
    pub app: Arc<App>,
    /// Intake's writer, shared.
    pub writer: EventWriter,
    /// `stripe.catch_up_interval_minutes`.
    pub every: Duration,
}

impl CatchUps {
    /// Catches up every integration now, then every `every`, until `stop`. A run in progress is
    /// dropped at `stop`: it recorded nothing, so the next start covers its window again.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = self.all_once() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// One run over every integration that listens and can read events, one after another.
    async fn all_once(&self) {
        let all = match self.app.db(integrations::list).await {
            Ok(all) => all,
            Err(e) => {
                tracing::error!(error = %e, "catch-up: could not read the integrations; the next run tries again");
                return;
            }
        };
        for integration in all
            .iter()
            .filter(|i| i.is_listening() && Credentials::of(i).is_some())
        {
            let started = Instant::now();
            let caught = catch_up(&self.app, &self.writer, integration).await;
            crate::metrics::catch_up(&integration.id, &caught);
            match caught {
                // A run that found nothing missing is the usual case: not worth a line an hour.
                Ok(caught) if caught.stored + caught.unreadable == 0 => tracing::debug!(
                    integration = %integration.id,
                    from = caught.from,
                    listed = caught.listed,
                    ms = started.elapsed().as_millis() as u64,
                    "caught up with Stripe's events: none was missing",
                ),
                Ok(caught) => tracing::info!(
                    integration = %integration.id,
                    from = caught.from,
                    listed = caught.listed,
                    recovered = caught.stored,
                    unreadable = caught.unreadable,
                    ms = started.elapsed().as_millis() as u64,
                    "caught up with Stripe's events: stored those no webhook brought",
                ),
                Err(e) => tracing::warn!(
                    integration = %integration.id,
                    error = %e,
                    "catch-up failed; the next run tries again",
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::integrations::CatchUp;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn integration(created_at: i64, last_run: Option<i64>) -> Integration {
        Integration {
            created_at,
            catch_up: CatchUp {
                at: last_run,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_new_integration_reaches_back_only_the_margin_before_it_existed() {
        let created = NOW - 600;
        assert_eq!(
            window_start(&integration(created, None), NOW, 0),
            created - MARGIN_SECS
        );
    }

    #[test]
    fn an_old_integration_never_caught_up_reaches_back_30_days() {
        let old = integration(NOW - 400 * DAY, None);
        assert_eq!(window_start(&old, NOW, 0), NOW - 30 * DAY);
    }

    #[test]
    fn after_a_run_the_window_starts_the_margin_before_it() {
        let last = NOW - 2 * 3600;
        let caught_up = integration(NOW - 400 * DAY, Some(last));
        assert_eq!(window_start(&caught_up, NOW, 0), last - MARGIN_SECS);
    }

    #[test]
    fn a_run_long_ago_is_bounded_by_stripes_30_days() {
        let stale = integration(NOW - 400 * DAY, Some(NOW - 90 * DAY));
        assert_eq!(window_start(&stale, NOW, 0), NOW - 30 * DAY);
    }

    #[test]
    fn the_creation_bounds_even_a_run_recorded_before_it() {
        // A run recorded before a reconnect under the same id cannot widen the window.
        let created = NOW - 3600;
        let odd = integration(created, Some(created - 5 * DAY));
        assert_eq!(window_start(&odd, NOW, 0), created - MARGIN_SECS);
    }

    #[test]
    fn retention_bounds_the_window_so_deleted_events_do_not_come_back() {
        let stale = integration(NOW - 400 * DAY, Some(NOW - 20 * DAY));
        assert_eq!(window_start(&stale, NOW, 7), NOW - 7 * DAY);
        assert_eq!(
            window_start(&stale, NOW, 365),
            NOW - 20 * DAY - MARGIN_SECS,
            "a longer retention changes nothing"
        );
        assert_eq!(
            window_start(&stale, NOW, u64::MAX),
            NOW - 20 * DAY - MARGIN_SECS
        );
    }

    #[test]
    fn the_types_fit_stripes_limit_and_add_deauthorization_for_connect() {
        let by_key = integration(NOW, None);
        assert_eq!(event_types(&by_key), SUBSCRIBED_EVENTS);
        let connect = Integration {
            connected_by: ConnectedBy::OAuth,
            ..by_key
        };
        let types = event_types(&connect);
        assert_eq!(types.last(), Some(&DEAUTHORIZED));
        assert!(types.len() <= crate::stripe::api::events::MAX_TYPES);
    }
}
