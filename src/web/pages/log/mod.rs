//! The delivery log (`GET /log`): every email the pipeline wrote down, newest first, filtered by
//! status, trigger, product, plan, recipient, integration and dates, a page at a time by keyset
//! (`?before=created_at:id` for older rows, `?after=…` back to newer ones; never an OFFSET or a
//! count over the log). Each filter walks one index in order (`db::deliveries::log_page`); a
//! combination no index answers is searched among the newest `SEARCH_WINDOW` rows at a time, and
//! the page says so. `delivery` is one delivery's page, its email and its resend.

pub mod delivery;

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Query};
use poem::{handler, Response};
use serde::Deserialize;

use crate::app::App;
use crate::db::deliveries::{LogFilter, LogPage, Status, SEARCH_WINDOW};
use crate::db::integrations::Integration;
use crate::manage::deliveries::{self, LogEntry, Names};
use crate::manage::integrations;
use crate::trigger::TriggerKind;
use crate::web::auth::SignedIn;
use crate::web::components::{empty_state, field_error, timestamp};
use crate::web::flash::Flash;
use crate::web::layout::{html_response, Nav, Page};
use crate::web::page_error;
use crate::web::pages::dashboard::status_badge;
use crate::Error;

/// Rows per page.
pub const PAGE: usize = 50;
const DAY: i64 = 86_400;

/// The log's query string as typed: every value kept as text, so a page refused for one bad
/// value shows the others as they were.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogQuery {
    pub status: String,
    pub trigger: String,
    pub product: String,
    pub plan: String,
    pub recipient: String,
    pub integration: String,
    /// First day shown (YYYY-MM-DD, UTC).
    pub from: String,
    /// Last day shown (YYYY-MM-DD, UTC), inclusive.
    pub to: String,
    pub before: String,
    pub after: String,
}

impl LogQuery {
    /// The filter it asks for; `Error::Invalid` naming the field that cannot be read.
    pub fn filter(&self) -> Result<LogFilter, Error> {
        let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let status = text(&self.status)
            .map(|s| s.parse::<Status>())
            .transpose()
            .map_err(|e| Error::invalid("status", e))?;
        let trigger = text(&self.trigger)
            .map(|t| t.parse::<TriggerKind>())
            .transpose()
            .map_err(|e| Error::invalid("trigger", e.to_string()))?;
        let since = text(&self.from).map(|d| day("from", &d)).transpose()?;
        let until = text(&self.to)
            .map(|d| day("to", &d).map(|t| t + DAY))
            .transpose()?;
        if let (Some(since), Some(until)) = (since, until) {
            if until <= since {
                return Err(Error::invalid(
                    "to",
                    "the last day comes before the first: swap them",
                ));
            }
        }
        Ok(LogFilter {
            status,
            trigger,
            product_id: text(&self.product),
            plan_id: text(&self.plan),
            recipient: text(&self.recipient),
            integration_id: text(&self.integration),
            since,
            until,
            before: text(&self.before)
                .map(|c| cursor("before", &c))
                .transpose()?,
            after: text(&self.after).map(|c| cursor("after", &c)).transpose()?,
            limit: PAGE,
        })
    }

    /// The query string of this filter (without paging) and `extra`, for links.
    fn href(&self, extra: Option<(&str, (i64, i64))>) -> String {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", &self.status),
            ("trigger", &self.trigger),
            ("integration", &self.integration),
            ("product", &self.product),
            ("plan", &self.plan),
            ("recipient", &self.recipient),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !value.trim().is_empty() {
                pairs.append_pair(name, value.trim());
            }
        }
        if let Some((name, (created, id))) = extra {
            pairs.append_pair(name, &format!("{created}:{id}"));
        }
        let query = pairs.finish();
        match query.is_empty() {
            true => "/log".to_owned(),
            false => format!("/log?{query}"),
        }
    }

    fn is_filtered(&self) -> bool {
        self.href(None) != "/log"
    }
}

/// A day (YYYY-MM-DD) as the unix time of its start, UTC.
fn day(field: &'static str, text: &str) -> Result<i64, Error> {
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().as_second())
        .ok_or_else(|| Error::invalid(field, format!("{text:?} is not a day like 2026-11-30")))
}

/// A page boundary, `created_at:id` as the log's links write it.
fn cursor(field: &'static str, text: &str) -> Result<(i64, i64), Error> {
    text.split_once(':')
        .and_then(|(c, id)| Some((c.parse().ok()?, id.parse().ok()?)))
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{text:?} is not a page of the log: follow the Older and Newer links"),
            )
        })
}

#[handler]
pub async fn list(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    jar: &CookieJar,
    Query(query): Query<LogQuery>,
) -> Response {
    let session = signed_in.session();
    let page = Page {
        title: "Delivery log",
        nav: Nav::Log,
        session: Some(session),
        flash: Flash::take(jar),
    };
    let integrations = match integrations::list(app).await {
        Ok(all) => all,
        Err(e) => return page_error(&e, Some(session)),
    };
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(e) if e.field().is_some() => {
            let body = view(&query, &integrations, Err(&e), crate::db::now_unix());
            return html_response(StatusCode::UNPROCESSABLE_ENTITY, page.render(body));
        }
        Err(e) => return page_error(&e, Some(session)),
    };
    match deliveries::log_page(app, filter).await {
        Ok(found) => {
            let body = view(&query, &integrations, Ok(&found), crate::db::now_unix());
            html_response(StatusCode::OK, page.render(body))
        }
        Err(e) => page_error(&e, Some(session)),
    }
}

pub fn view(
    query: &LogQuery,
    integrations: &[Integration],
    found: Result<&LogPage<LogEntry>, &Error>,
    now: i64,
) -> Markup {
    html! {
        (filters(query, integrations, found.err()))
        @match found {
            Err(_) => {}
            Ok(page) if page.rows.is_empty() && !page.window_ended => {
                @if query.is_filtered() || page.newer.is_some() {
                    (empty_state(
                        "No deliveries match",
                        html! { "Nothing in the log matches these filters. Try fewer of them." },
                        Some(("/log", "Show every delivery")),
                    ))
                } @else {
                    (empty_state(
                        "No deliveries yet",
                        html! {
                            "Every email sent, waiting or not sent appears here. Send a test event with "
                            code { "stripe trigger invoice.paid" } "."
                        },
                        None,
                    ))
                }
                (pager(query, page))
            }
            Ok(page) => {
                @if !page.rows.is_empty() { (table(&page.rows, now)) }
                @if page.window_ended {
                    p.searched role="status" {
                        "Searched the newest " (SEARCH_WINDOW) " rows of this part of the log"
                        @if page.rows.is_empty() { " and found none that match" }
                        ". These filters together have no index of their own; “Older” searches on."
                    }
                }
                (pager(query, page))
            }
        }
    }
}

fn filters(query: &LogQuery, integrations: &[Integration], error: Option<&Error>) -> Markup {
    let statuses = Status::ALL.map(|s| (s.as_str(), s.as_str()));
    let triggers = TriggerKind::ALL.map(|t| (t.as_str(), t.as_str()));
    let integration_options: Vec<(&str, &str)> = integrations
        .iter()
        .map(|i| (i.id.as_str(), i.name.as_str()))
        .collect();
    html! {
        form.card.log-filters method="get" action="/log" aria-label="Filter the log" {
            div.filter-grid {
                (select("Status", "status", &query.status, &statuses, error))
                (select("Trigger", "trigger", &query.trigger, &triggers, error))
                @if integrations.len() > 1 || !query.integration.is_empty() {
                    (select("Integration", "integration", &query.integration, &integration_options, error))
                }
                (input("Recipient", "recipient", "email", &query.recipient, "jenny@example.com", error))
                (input("Product id", "product", "text", &query.product, "prod_…", error))
                (input("Plan id", "plan", "text", &query.plan, "price_…", error))
                (input("From day", "from", "date", &query.from, "2026-11-01", error))
                (input("To day", "to", "date", &query.to, "2026-11-30", error))
            }
            @for field in ["before", "after"] {
                @if let Some(message) = field_error(error, field) {
                    p.error role="alert" { (message) }
                }
            }
            div.actions {
                @if query.is_filtered() { a.button href="/log" { "Clear" } }
                button.primary type="submit" { "Filter" }
            }
        }
    }
}

fn select(
    label: &str,
    name: &'static str,
    value: &str,
    options: &[(&str, &str)],
    error: Option<&Error>,
) -> Markup {
    let id = format!("f-{name}");
    let message = field_error(error, name);
    html! {
        div.field.invalid[message.is_some()] {
            label for=(id) { (label) }
            select id=(id) name=(name) aria-invalid=[message.is_some().then_some("true")]
                aria-describedby=[message.as_ref().map(|_| format!("{id}-error"))] {
                option value="" selected[value.is_empty()] { "Any" }
                @for (v, text) in options {
                    option value=(v) selected[*v == value] { (text) }
                }
                // A value no option has (typed into the URL) stays visible, marked invalid.
                @if !value.is_empty() && !options.iter().any(|(v, _)| *v == value) {
                    option value=(value) selected { (value) }
                }
            }
            @if let Some(message) = message {
                p.error id={ (id) "-error" } { (message) }
            }
        }
    }
}

fn input(
    label: &str,
    name: &'static str,
    kind: &str,
    value: &str,
    placeholder: &str,
    error: Option<&Error>,
) -> Markup {
    let id = format!("f-{name}");
    let message = field_error(error, name);
    html! {
        div.field.invalid[message.is_some()] {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value) placeholder=(placeholder)
                aria-invalid=[message.is_some().then_some("true")]
                aria-describedby=[message.as_ref().map(|_| format!("{id}-error"))];
            @if let Some(message) = message {
                p.error id={ (id) "-error" } { (message) }
            }
        }
    }
}

fn table(rows: &[LogEntry], now: i64) -> Markup {
    html! {
        div.table-wrap {
            table.stack.log {
                thead {
                    tr {
                        th scope="col" { "When" }
                        th scope="col" { "To" }
                        th scope="col" { "Trigger" }
                        th scope="col" { "Product and plan" }
                        th scope="col" { "Subject" }
                        th scope="col" { "Status" }
                    }
                }
                tbody {
                    @for entry in rows {
                        @let d = &entry.row;
                        tr {
                            td data-label="When" {
                                a href={ "/log/" (d.id) } { (timestamp(d.created_at, now)) }
                            }
                            td data-label="To" {
                                @if let Some(r) = &d.recipient { (r) } @else { span.muted { "no address" } }
                            }
                            td data-label="Trigger" { code { (d.trigger) } }
                            td data-label="Product" { (product_and_plan(d.product_id.as_deref(), d.plan_id.as_deref(), &entry.names)) }
                            td data-label="Subject" {
                                a href={ "/log/" (d.id) } {
                                    @if let Some(s) = &d.subject { (s) } @else { span.muted { "(no email)" } }
                                }
                            }
                            td data-label="Status" { (status_badge(d.status)) }
                        }
                    }
                }
            }
        }
    }
}

/// "Pro · Monthly", each name from the catalog, else its id; "any" when the email was for no
/// particular product.
pub fn product_and_plan(product: Option<&str>, plan: Option<&str>, names: &Names) -> Markup {
    let named = |name: &Option<String>, id: &str| -> Markup {
        match name {
            Some(name) => html! { span title=(id) { (name) } },
            None => html! { code { (id) } },
        }
    };
    html! {
        @match (product, plan) {
            (None, None) => span.muted { "—" },
            _ => {
                @if let Some(p) = product { (named(&names.product, p)) }
                @if product.is_some() && plan.is_some() { " · " }
                @if let Some(p) = plan { (named(&names.plan, p)) }
            }
        }
    }
}

fn pager(query: &LogQuery, page: &LogPage<LogEntry>) -> Markup {
    html! {
        @if page.newer.is_some() || page.older.is_some() {
            nav.pager aria-label="Pages of the log" {
                @if let Some(newer) = page.newer {
                    a.button href=(query.href(Some(("after", newer)))) rel="prev" { "← Newer" }
                } @else { span {} }
                @if page.newer.is_some() {
                    a.newest href=(query.href(None)) { "Newest" }
                }
                @if let Some(older) = page.older {
                    a.button href=(query.href(Some(("before", older)))) rel="next" { "Older →" }
                } @else { span {} }
            }
        }
    }
}
