//! Received events: the list with its filters, one event with what came of it, and processing
//! one again. Processing again is for events that were skipped or failed (after adding a
//! template or an API key); it puts the event back to `pending` and wakes the processor, which
//! lets it supersede the skipped or failed delivery of its fact but never one that was queued
//! or sent. Ignored events are not among the 7 triggers (or change nothing to email), so
//! processing them again would only ignore them again, and it is refused, as it is for an
//! event that was emailed (a resend from the log is the way to send that again).

use crate::app::App;
use crate::db::events::{self, EventDelivery, EventFilter, EventPage, Processing, StoredEvent};
use crate::db::{integrations, now_unix};
use crate::Error;

/// The event types the list offers as suggestions for its type filter: those behind the 7
/// triggers. Any other type can be typed.
pub const TRIGGER_TYPES: [&str; 12] = [
    "charge.refunded",
    "charge.succeeded",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "customer.subscription.updated",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "invoice.upcoming",
    "refund.created",
    "refund.updated",
];

/// An outcome as a person names it in a filter: `emailed` is the `queued` state.
pub fn parse_outcome(text: &str) -> Result<Processing, Error> {
    match text.trim() {
        "emailed" | "queued" => Ok(Processing::Queued),
        "skipped" => Ok(Processing::Skipped),
        "ignored" => Ok(Processing::Ignored),
        "failed" => Ok(Processing::Failed),
        "pending" => Ok(Processing::Pending),
        other => Err(Error::invalid(
            "outcome",
            format!(
                "{other:?} is not an outcome: use emailed, skipped, ignored, failed or pending"
            ),
        )),
    }
}

/// The word a person reads for an outcome (`parse_outcome` takes it back).
pub fn outcome_name(state: Processing) -> &'static str {
    match state {
        Processing::Queued => "emailed",
        other => other.as_str(),
    }
}

/// Checks a type typed into a filter: Stripe's types are lower-case words joined by dots.
pub fn parse_type(text: &str) -> Result<String, Error> {
    let t = text.trim();
    let valid = !t.is_empty()
        && t.len() <= 100
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_');
    if valid {
        Ok(t.to_owned())
    } else {
        Err(Error::invalid(
            "type",
            format!("{t:?} is not a Stripe event type: lower-case words joined by dots, like invoice.paid"),
        ))
    }
}

/// A page of events matching `filter`, newest first. An integration that does not exist is an
/// `Error::Invalid` of `integration`.
pub async fn list(app: &App, filter: EventFilter) -> Result<EventPage, Error> {
    app.db(move |c| {
        if let Some(id) = &filter.integration_id {
            if integrations::get(c, id)?.is_none() {
                return Err(Error::invalid(
                    "integration",
                    format!("no integration {id:?}: pick one from the list"),
                ));
            }
        }
        events::list(c, &filter)
    })
    .await
}

/// One event and what came of it.
pub struct EventDetail {
    pub event: StoredEvent,
    /// Its integration's name.
    pub integration: String,
    /// The deliveries it produced, oldest first: one in the common case, more when it was
    /// processed again or its email resent.
    pub deliveries: Vec<EventDelivery>,
}

impl EventDetail {
    /// Whether `reprocess` takes it.
    pub fn can_reprocess(&self) -> bool {
        can_reprocess(self.event.processing)
    }
}

/// Skipped and failed events can be processed again.
pub fn can_reprocess(state: Processing) -> bool {
    matches!(state, Processing::Skipped | Processing::Failed)
}

pub async fn get(app: &App, id: i64) -> Result<EventDetail, Error> {
    let found = app
        .db(move |c| {
            let Some(event) = events::get_by_id(c, id)? else {
                return Ok(None);
            };
            let integration = integrations::get(c, &event.integration_id)?
                .map(|i| i.name)
                .unwrap_or_else(|| event.integration_id.clone());
            let deliveries = events::deliveries_of(c, id)?;
            Ok(Some(EventDetail {
                event,
                integration,
                deliveries,
            }))
        })
        .await?;
    found.ok_or_else(|| not_found(id))
}

/// Puts a skipped or failed event back to pending and wakes the processor; returns the event
/// as it was. Anything else is an `Error::Conflict` saying why it would change nothing.
pub async fn reprocess(app: &App, id: i64) -> Result<StoredEvent, Error> {
    let event = app
        .db(move |c| {
            let event = events::get_by_id(c, id)?.ok_or_else(|| not_found(id))?;
            if let Some(why) = refusal(&event) {
                return Err(Error::Conflict {
                    field: "id",
                    message: why,
                });
            }
            if !events::reprocess(c, id, now_unix())? {
                return Err(Error::Conflict {
                    field: "id",
                    message: format!(
                        "event {} changed meanwhile; reload its page",
                        event.stripe_event_id
                    ),
                });
            }
            Ok(event)
        })
        .await?;
    app.wake_processor.notify_one();
    Ok(event)
}

/// Why an event cannot be processed again, in words; None when it can.
fn refusal(event: &StoredEvent) -> Option<String> {
    let id = &event.stripe_event_id;
    let detail = event.processing_detail.as_deref().unwrap_or("no detail");
    Some(match event.processing {
        Processing::Skipped | Processing::Failed => return None,
        Processing::Pending => format!("event {id} is waiting to be processed already"),
        Processing::Queued => format!(
            "event {id} was emailed ({detail}); processing it again would not send it twice: \
             resend its delivery from the log to send it again"
        ),
        Processing::Ignored => format!(
            "event {id} ({}) was ignored ({detail}): an ignored event is not one of the 7 \
             triggers or has nothing to email, so processing it again would ignore it again",
            event.event_type
        ),
    })
}

fn not_found(id: i64) -> Error {
    Error::NotFound {
        what: "event",
        id: id.to_string(),
    }
}
