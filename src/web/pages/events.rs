//! The events pages. `GET /events`: what Stripe sent, newest first, filtered by type, outcome
//! and integration, a page at a time by id (never OFFSET). `GET /events/{id}`: one event, its
//! outcome and why, the deliveries it produced (their pages are in the log), its payload as a
//! tree of `<details>` (no script needed) and as text; **Process again** for a skipped or
//! failed one, `POST /events/{id}/reprocess`, which answers 303 back to the event with a flash.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Path, Query};
use poem::{handler, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::app::App;
use crate::db::deliveries::Status;
use crate::db::events::{EventDelivery, EventFilter, EventPage, EventRow, Processing, SCAN};
use crate::db::integrations::Integration;
use crate::manage::events::{self, outcome_name, EventDetail, TRIGGER_TYPES};
use crate::manage::integrations;
use crate::web::auth::SignedIn;
use crate::web::components::{badge, csrf_input, empty_state, field_error, timestamp, Tone};
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::web::page_error;
use crate::Error;

/// Events per page.
const PER_PAGE: usize = 50;
/// Below this depth the payload's objects start open.
const OPEN_DEPTH: usize = 3;
/// Deeper than this, a value is shown as compact JSON text rather than as more `<details>`.
const MAX_DEPTH: usize = 24;

/// The list's query string, as typed: every value is checked by `filter`.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default, rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub integration: String,
    #[serde(default)]
    pub before: String,
}

impl ListQuery {
    fn filter(&self) -> Result<EventFilter, Error> {
        let given = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        Ok(EventFilter {
            event_type: given(&self.event_type)
                .map(|t| events::parse_type(&t))
                .transpose()?,
            outcome: given(&self.outcome)
                .map(|o| events::parse_outcome(&o))
                .transpose()?,
            integration_id: given(&self.integration),
            before: given(&self.before)
                .map(|b| {
                    b.parse::<i64>().map_err(|_| {
                        Error::invalid("before", format!("{b:?} is not an event number"))
                    })
                })
                .transpose()?,
            limit: PER_PAGE,
        })
    }

    /// This query's link with `before` set to `before` (None: the newest page).
    fn link(&self, before: Option<i64>) -> String {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("type", &self.event_type),
            ("outcome", &self.outcome),
            ("integration", &self.integration),
        ] {
            if !value.trim().is_empty() {
                pairs.append_pair(key, value.trim());
            }
        }
        if let Some(before) = before {
            pairs.append_pair("before", &before.to_string());
        }
        let query = pairs.finish();
        match query.is_empty() {
            true => "/events".to_owned(),
            false => format!("/events?{query}"),
        }
    }

    fn filtered(&self) -> bool {
        [&self.event_type, &self.outcome, &self.integration]
            .iter()
            .any(|v| !v.trim().is_empty())
    }
}

#[handler]
pub async fn list(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> Response {
    let session = signed_in.session();
    let all = match integrations::list(app).await {
        Ok(all) => all,
        Err(e) => return page_error(&e, Some(session)),
    };
    let found = match query.filter() {
        Ok(filter) => events::list(app, filter).await,
        Err(e) => Err(e),
    };
    let (status, result) = match found {
        Ok(page) => (StatusCode::OK, Ok(page)),
        Err(e) if e.field().is_some() => (e.status(), Err(e)),
        Err(e) => return page_error(&e, Some(session)),
    };
    let page = Page {
        title: "Events",
        nav: Nav::Events,
        session: Some(session),
        flash: Flash::take(jar),
    };
    let body = list_view(&query, &all, result.as_ref(), crate::db::now_unix());
    html_response(status, page.render(body))
}

#[handler]
pub async fn show(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let session = signed_in.session();
    let detail = match parse_id(&id) {
        Ok(id) => events::get(app, id).await,
        Err(e) => Err(e),
    };
    let detail = match detail {
        Ok(detail) => detail,
        Err(e) => return page_error(&e, Some(session)),
    };
    let title = format!("Event {}", detail.event.stripe_event_id);
    let page = Page {
        title: &title,
        nav: Nav::Events,
        session: Some(session),
        flash: Flash::take(jar),
    };
    let body = event_view(session, &detail, crate::db::now_unix());
    html_response(StatusCode::OK, page.render(body))
}

#[handler]
pub async fn reprocess(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let session = signed_in.session();
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return page_error(&e, Some(session)),
    };
    let back = format!("/events/{id}");
    match events::reprocess(app, id).await {
        Ok(event) => redirect_with(
            jar,
            &back,
            Flash::success(format!(
                "Processing {} again. A fact already emailed is not emailed twice.",
                event.stripe_event_id
            )),
        ),
        Err(e @ Error::Conflict { .. }) => redirect_with(jar, &back, Flash::error(e.to_string())),
        Err(e) => page_error(&e, Some(session)),
    }
}

/// An event's number from the URL; anything else is no event (404).
fn parse_id(id: &str) -> Result<i64, Error> {
    id.parse().map_err(|_| Error::NotFound {
        what: "event",
        id: crate::web::truncated(id),
    })
}

pub fn outcome_badge(state: Processing) -> Markup {
    let tone = match state {
        Processing::Queued => Tone::Good,
        Processing::Skipped => Tone::Warning,
        Processing::Failed => Tone::Bad,
        Processing::Ignored | Processing::Pending => Tone::Neutral,
    };
    badge(outcome_name(state), tone)
}

fn status_badge(status: Status) -> Markup {
    let tone = match status {
        Status::Sent => Tone::Good,
        Status::Queued | Status::Sending => Tone::Neutral,
        Status::Retrying | Status::Skipped => Tone::Warning,
        Status::Failed => Tone::Bad,
    };
    badge(status.as_str(), tone)
}

const OUTCOMES: [Processing; 5] = [
    Processing::Queued,
    Processing::Skipped,
    Processing::Ignored,
    Processing::Failed,
    Processing::Pending,
];

pub fn list_view(
    query: &ListQuery,
    all: &[Integration],
    result: Result<&EventPage, &Error>,
    now: i64,
) -> Markup {
    let error = result.err();
    let names = |id: &str| {
        all.iter()
            .find(|i| i.id == id)
            .map_or(id.to_owned(), |i| i.name.clone())
    };
    html! {
        p.lead { "Every event Stripe sent, newest first, and what came of it. Open one to see its payload, or to process a skipped or failed one again." }
        form.filters method="get" action="/events" role="search" aria-label="Filter events" {
            (text_filter(query, error))
            (select_filter("Outcome", "outcome", &query.outcome, error,
                &OUTCOMES.map(|o| (outcome_name(o).to_owned(), outcome_label(o).to_owned()))))
            (select_filter("Integration", "integration", &query.integration, error,
                &all.iter().map(|i| (i.id.clone(), i.name.clone())).collect::<Vec<_>>()))
            @if let Some(message) = field_error(error, "before") {
                p.error role="alert" { (message) }
            }
            div.actions {
                @if query.filtered() {
                    a.button href="/events" { "Clear" }
                }
                button.primary type="submit" { "Filter" }
            }
        }
        @if let Ok(page) = result {
            @if page.rows.is_empty() && !query.filtered() && query.before.trim().is_empty() {
                (empty_state(
                    "No events yet",
                    html! {
                        "Events appear here as Stripe sends them to an integration's webhook URL. \
                         Send a test one with " code { "stripe trigger invoice.paid" } "."
                    },
                    Some(("/integrations", "See the webhook URLs")),
                ))
            } @else if page.rows.is_empty() {
                p.empty-list { "No events match." }
            } @else {
                div.table-wrap {
                    table.stack.events-list {
                        thead { tr { th { "Received" } th { "Event" } th { "Integration" } th { "Outcome" } } }
                        tbody {
                            @for row in &page.rows {
                                (list_row(row, &names(&row.integration_id), now))
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if !query.before.trim().is_empty() {
                    a href=(query.link(None)) { "← Newest" }
                }
                @if let Some(older) = page.older {
                    @if page.scan_ended {
                        span.muted { "Looked through " (SCAN) " events for this page." }
                    }
                    a rel="next" href=(query.link(Some(older))) { "Older →" }
                }
            }
        }
    }
}

fn outcome_label(state: Processing) -> &'static str {
    match state {
        Processing::Queued => "Emailed",
        Processing::Skipped => "Skipped",
        Processing::Ignored => "Ignored",
        Processing::Failed => "Failed",
        Processing::Pending => "Pending",
    }
}

fn text_filter(query: &ListQuery, error: Option<&Error>) -> Markup {
    let message = field_error(error, "type");
    html! {
        div.field.invalid[message.is_some()] {
            label for="f-type" { "Type" }
            input #f-type name="type" type="text" list="event-types" value=(query.event_type)
                placeholder="invoice.paid" autocomplete="off"
                aria-invalid=[message.as_ref().map(|_| "true")]
                aria-describedby=[message.as_ref().map(|_| "f-type-error")];
            datalist #event-types {
                @for t in TRIGGER_TYPES { option value=(t) {} }
            }
            @if let Some(message) = message {
                p.error #f-type-error { (message) }
            }
        }
    }
}

fn select_filter(
    label: &str,
    name: &'static str,
    value: &str,
    error: Option<&Error>,
    options: &[(String, String)],
) -> Markup {
    let id = format!("f-{name}");
    let message = field_error(error, name);
    let known = options.iter().any(|(v, _)| v == value.trim());
    html! {
        div.field.invalid[message.is_some()] {
            label for=(id) { (label) }
            select id=(id) name=(name)
                aria-invalid=[message.as_ref().map(|_| "true")]
                aria-describedby=[message.as_ref().map(|_| format!("{id}-error"))] {
                option value="" { "Any" }
                @for (v, text) in options {
                    option value=(v) selected[v == value.trim()] { (text) }
                }
                // What was asked for stays selected, so a wrong value is visible and kept.
                @if !known && !value.trim().is_empty() {
                    option value=(value) selected { (value) }
                }
            }
            @if let Some(message) = message {
                p.error id={ (id) "-error" } { (message) }
            }
        }
    }
}

fn list_row(row: &EventRow, integration: &str, now: i64) -> Markup {
    html! {
        tr {
            td data-label="Received" { (timestamp(row.received_at, now)) }
            td data-label="Event" {
                a href={ "/events/" (row.id) } { code { (row.event_type) } }
                span.sub { (row.stripe_event_id) @if !row.livemode { " · test" } }
            }
            td data-label="Integration" { (integration) }
            td data-label="Outcome" {
                (outcome_badge(row.processing))
                @if let Some(detail) = &row.processing_detail {
                    span.why { (detail) }
                }
            }
        }
    }
}

pub fn event_view(session: Session, detail: &EventDetail, now: i64) -> Markup {
    let e = &detail.event;
    html! {
        p.back { a href="/events" { "← All events" } }
        section.card.event-summary aria-label="What came of it" {
            dl.facts {
                dt { "Outcome" }
                dd {
                    (outcome_badge(e.processing))
                    @if let Some(why) = &e.processing_detail { " " span.why { (why) } }
                }
                dt { "Type" }
                dd { code { (e.event_type) } }
                dt { "Integration" }
                dd { a href={ "/integrations/" (e.integration_id) } { (detail.integration) } }
                dt { "Received" }
                dd { (timestamp(e.received_at, now)) }
                dt { "Created at Stripe" }
                dd { (timestamp(e.created, now)) }
                dt { "Mode" }
                dd { @if e.livemode { "live" } @else { "test" } }
                @if let Some(version) = &e.api_version {
                    dt { "API version" }
                    dd { code { (version) } }
                }
                @if let Some(at) = e.processed_at {
                    dt { "Processed" }
                    dd { (timestamp(at, now)) }
                }
                @if let Some(at) = e.reprocessed_at {
                    dt { "Processing again asked" }
                    dd { (timestamp(at, now)) }
                }
            }
            @if detail.can_reprocess() {
                form.reprocess method="post" action={ "/events/" (e.id) "/reprocess" } {
                    (csrf_input(session.csrf))
                    p.help {
                        "Added the missing template or API key? Process it again: a fact \
                         already emailed is never emailed twice, and what was skipped stays \
                         in the log, marked superseded."
                    }
                    button.primary type="submit" { "Process again" }
                }
            }
        }
        section.event-deliveries aria-labelledby="deliveries-title" {
            h2 #deliveries-title { "Deliveries" }
            @if detail.deliveries.is_empty() {
                p.muted { (no_delivery(e.processing)) }
            } @else {
                div.table-wrap {
                    table.stack.deliveries-list {
                        thead { tr { th { "Delivery" } th { "Status" } th { "To" } th { "Subject or note" } } }
                        tbody {
                            @for d in &detail.deliveries { (delivery_row(d, now)) }
                        }
                    }
                }
            }
        }
        section.payload aria-labelledby="payload-title" {
            h2 #payload-title { "Payload" }
            @if let Some(notice) = e.damage_notice() {
                p.error role="alert" { "Cannot show it: " (notice) "." }
            } @else {
                p.help { "As Stripe sent it. Open and close the parts you need." }
                div.json-tree { (tree(None, &parsed(&e.payload), 0)) }
                details.json-text {
                    summary { "As text" }
                    pre { code { (pretty(&e.payload)) } }
                }
            }
        }
    }
}

fn no_delivery(state: Processing) -> &'static str {
    match state {
        Processing::Pending => "None yet: it is waiting to be processed.",
        Processing::Ignored => "None: nothing in it is emailed.",
        _ => "None of its own: see the outcome above.",
    }
}

fn delivery_row(d: &EventDelivery, now: i64) -> Markup {
    html! {
        tr.superseded[d.superseded_by.is_some()] {
            td data-label="Delivery" {
                a href={ "/log/" (d.id) } { "#" (d.id) }
                span.sub { (timestamp(d.created_at, now)) }
            }
            td data-label="Status" {
                (status_badge(d.status))
                @if let Some(new) = d.superseded_by {
                    " " (badge("superseded", Tone::Neutral))
                    span.sub { "by " a href={ "/log/" (new) } { "#" (new) } }
                }
                @if let Some(old) = d.supersedes {
                    span.sub { "replaces " a href={ "/log/" (old) } { "#" (old) } }
                }
                @if d.is_resend { span.sub { "a resend" } }
            }
            td data-label="To" { (d.recipient.as_deref().unwrap_or("—")) }
            td data-label="Subject or note" {
                @if let Some(subject) = &d.subject { (subject) }
                @if let Some(note) = d.last_error.as_ref().filter(|_| d.status != Status::Sent) {
                    span.why { (note) }
                }
            }
        }
    }
}

/// The payload as JSON, or as one string when it is not JSON (the tree then shows the text).
fn parsed(payload: &str) -> Value {
    serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.to_owned()))
}

fn pretty(payload: &str) -> String {
    serde_json::from_str::<Value>(payload)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| payload.to_owned())
}

/// One value of the payload: an object or array as a `<details>` whose summary names it and
/// says how big it is, open near the top; anything else as `key: value`. maud escapes it all.
fn tree(key: Option<&str>, value: &Value, depth: usize) -> Markup {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    if children.is_empty() || depth >= MAX_DEPTH {
        let (class, text) = scalar(value);
        return html! {
            div.json-leaf {
                @if let Some(key) = key { span.json-key { (key) } ": " }
                span class=(class) { (text) }
            }
        };
    }
    let size = match value {
        Value::Array(_) => format!("[{}]", children.len()),
        _ => format!("{{{}}}", children.len()),
    };
    html! {
        details.json-node open[depth < OPEN_DEPTH] {
            summary {
                @if let Some(key) = key { span.json-key { (key) } " " }
                span.json-size { (size) }
            }
            @for (k, v) in &children {
                (tree(Some(k), v, depth + 1))
            }
        }
    }
}

fn scalar(value: &Value) -> (&'static str, String) {
    match value {
        Value::String(s) => ("json-string", format!("{s:?}")),
        Value::Number(n) => ("json-number", n.to_string()),
        Value::Bool(b) => ("json-bool", b.to_string()),
        Value::Null => ("json-null", "null".to_owned()),
        // An empty object or array, or one past the depth limit: its compact text.
        other => ("json-compact", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_tree_escapes_and_nests() {
        let value: Value = serde_json::from_str(
            r#"{"data":{"object":{"name":"<script>alert(1)</script>","items":[1,{"a":null}],"e":{}}}}"#,
        )
        .unwrap();
        let html = tree(None, &value, 0).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        // root, data, object, items, items[1]: five nodes; the empty object is a leaf.
        assert_eq!(html.matches("<details").count(), 5, "{html}");
        assert!(html.contains("json-compact\">{}"), "{html}");
    }

    #[test]
    fn a_filter_link_keeps_the_filters_and_moves_the_page() {
        let q = ListQuery {
            event_type: "invoice.paid".into(),
            outcome: "skipped".into(),
            integration: String::new(),
            before: "99".into(),
        };
        assert_eq!(
            q.link(Some(40)),
            "/events?type=invoice.paid&outcome=skipped&before=40"
        );
        assert_eq!(q.link(None), "/events?type=invoice.paid&outcome=skipped");
    }
}
