//! `GET /v1/events`: an account's events of the types we handle, created since a moment, page
//! by page, for the catch-up (`pipeline::catchup`). Each event comes back as the JSON text
//! Stripe sent for it, because it is stored exactly as a webhook body would be.
//!
//! Stripe lists events newest first and keeps them 30 days. A page is fetched only when the
//! caller asks for it, with the cursor it chooses, so the requests go one after another, far
//! below Stripe's rate limit (25 requests/s in test mode); a 429 is retried by the client like
//! any transient failure.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Call, Credentials, StripeClient, StripeError};

/// The most `types[]` Stripe takes in one request.
pub const MAX_TYPES: usize = 20;
/// Stripe's largest page.
const PAGE_SIZE: &str = "100";

/// A listing of events: the window and types, asked for one page at a time with `page`.
#[derive(Debug)]
pub struct EventListing<'c> {
    client: &'c StripeClient,
    created_gte: i64,
    types: Vec<String>,
}

/// One page of events, newest first, each as the JSON text Stripe sent.
#[derive(Debug, Default)]
pub struct EventPage {
    pub events: Vec<String>,
    /// The cursor for the next page (`starting_after`, the last event's id); `None`: the last
    /// page.
    pub next: Option<String>,
}

impl StripeClient {
    /// The events of `types` created at or after `created_gte` (unix seconds), as Stripe lists
    /// them (newest first); read them with `page`. One to 20 types (Stripe's limit).
    pub fn events(
        &self,
        created_gte: i64,
        types: &[&str],
    ) -> Result<EventListing<'_>, StripeError> {
        if types.is_empty() || types.len() > MAX_TYPES {
            return Err(StripeError::Invalid {
                message: format!(
                    "listing events takes 1 to {MAX_TYPES} types, not {}",
                    types.len()
                ),
            });
        }
        Ok(EventListing {
            client: self,
            created_gte,
            types: types.iter().map(|t| t.to_string()).collect(),
        })
    }
}

impl EventListing<'_> {
    /// The page after the event `after` (`None`: the first page, the newest events). The same
    /// cursor gives the same page again: events created since come before the first page.
    pub async fn page(
        &self,
        creds: &Credentials<'_>,
        after: Option<&str>,
    ) -> Result<EventPage, StripeError> {
        let mut url = self.client.url(&["events"])?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("created[gte]", &self.created_gte.to_string());
            for kind in &self.types {
                query.append_pair("types[]", kind);
            }
            query.append_pair("limit", PAGE_SIZE);
            if let Some(after) = after {
                query.append_pair("starting_after", after);
            }
        }
        let body = self
            .client
            .call_text(creds, &Call::get(url), "events")
            .await?;
        let (events, next) = read_page(&body, after)?;
        Ok(EventPage { events, next })
    }
}

/// One page of Stripe's list shape, each entry kept as the text it came as.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Deserialize)]
struct HasId {
    id: String,
}

/// A page's events as text, and the cursor for the next page when there is one. `after` is the
/// cursor this page was asked with: a page that says there is more must move it on, or the
/// listing would ask for the same page forever.
fn read_page(
    body: &str,
    after: Option<&str>,
) -> Result<(Vec<String>, Option<String>), StripeError> {
    let page: Page = serde_json::from_str(body).map_err(|e| StripeError::Invalid {
        message: format!("the events list is not a list of objects ({e})"),
    })?;
    let events: Vec<String> = page.data.iter().map(|raw| raw.get().to_owned()).collect();
    if !page.has_more {
        return Ok((events, None));
    }
    let last = match page.data.last() {
        Some(raw) => serde_json::from_str::<HasId>(raw.get())
            .map(|e| e.id)
            .map_err(|e| StripeError::Invalid {
                message: format!("an events list entry without an id ({e})"),
            })?,
        None => String::new(),
    };
    if last.is_empty() || after == Some(last.as_str()) {
        return Err(StripeError::Invalid {
            message: format!(
                "the events list says it has more, but its page does not move on (after {})",
                after.unwrap_or("the start")
            ),
        });
    }
    Ok((events, Some(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_keeps_its_own_text() {
        // Key order, spacing and escapes as Stripe sent them: this is what gets stored.
        let first =
            "{\n  \"id\": \"evt_2\",\n  \"type\": \"invoice.paid\", \"note\": \"a\\u00e9\" }";
        let body = format!(
            r#"{{"object": "list", "data": [{first}, {{"type":"x","id":"evt_1"}}], "has_more": true, "url": "/v1/events"}}"#
        );
        let (events, next) = read_page(&body, None).unwrap();
        assert_eq!(events, [first, r#"{"type":"x","id":"evt_1"}"#]);
        assert_eq!(next.as_deref(), Some("evt_1"));
    }

    #[test]
    fn the_last_page_ends_the_listing() {
        let (events, next) =
            read_page(r#"{"data": [], "has_more": false}"#, Some("evt_9")).unwrap();
        assert!(events.is_empty() && next.is_none());
        let (_, next) = read_page(r#"{"data": [{"id": "evt_1"}]}"#, None).unwrap();
        assert!(next.is_none(), "no has_more: no more");
    }

    #[test]
    fn a_page_that_does_not_move_on_is_refused() {
        for (body, after) in [
            (
                r#"{"data": [{"id": "evt_1"}], "has_more": true}"#,
                Some("evt_1"),
            ),
            (r#"{"data": [], "has_more": true}"#, None),
        ] {
            let error = read_page(body, after).unwrap_err();
            assert!(error.to_string().contains("does not move on"), "{error}");
        }
        let error = read_page(r#"{"data": [{"type": "x"}], "has_more": true}"#, None).unwrap_err();
        assert!(error.to_string().contains("without an id"), "{error}");
    }

    #[test]
    fn what_is_not_a_list_is_refused() {
        for body in ["[]", r#"{"data": {}}"#, r#"{"has_more": false}"#, "<html>"] {
            let error = read_page(body, None).unwrap_err();
            assert!(error.to_string().contains("events list"), "{body}: {error}");
        }
    }

    #[test]
    fn one_to_twenty_types() {
        let client = StripeClient::new("http://127.0.0.1:9");
        assert!(client.events(0, &[]).is_err());
        assert!(client.events(0, &["invoice.paid"; 21]).is_err());
        assert!(client.events(0, &["invoice.paid"; 20]).is_ok());
    }
}
