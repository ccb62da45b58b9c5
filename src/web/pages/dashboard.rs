//! The dashboard (`GET /`): emails sent, failed and waiting today and over 30 days with a bar
//! chart drawn here as inline SVG (no script, no chart library), what needs attention with a
//! link to the fix, and the latest deliveries. A fresh instance gets the steps to its first
//! email instead. Everything comes from `manage::dashboard::overview`.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::Data;
use poem::{handler, Response};

use crate::app::App;
use crate::db::dashboard::{Counts, DAY};
use crate::db::deliveries::{Reason, Status};
use crate::manage::dashboard::{self as overview, Attention, Overview};
use crate::web::auth::SignedIn;
use crate::web::components::{badge, empty_state, timestamp, Tone};
use crate::web::flash::Flash;
use crate::web::layout::{html_response, Nav, Page};
use crate::web::page_error;

#[handler]
pub async fn show(app: Data<&Arc<App>>, signed_in: SignedIn, jar: &CookieJar) -> Response {
    match overview::overview(&app).await {
        Ok(o) => {
            let page = Page {
                title: "Dashboard",
                nav: Nav::Dashboard,
                session: Some(signed_in.session()),
                flash: Flash::take(jar),
            };
            html_response(StatusCode::OK, page.render(view(&o)))
        }
        Err(e) => page_error(&e, Some(signed_in.session())),
    }
}

pub fn view(o: &Overview) -> Markup {
    html! {
        @if o.is_empty() {
            (first_steps(o))
        } @else {
            (attention(o))
            (totals(o))
            section.card.chart-card aria-labelledby="chart-heading" {
                h2 #chart-heading { "Sent and failed, last " (overview::DAYS) " days" }
                (chart(&o.days))
            }
            (latest(o))
        }
    }
}

/// A fresh instance: what to do, in order, each step marked once done.
fn first_steps(o: &Overview) -> Markup {
    let has_integration = o.integrations > 0;
    html! {
        @if !has_integration {
            (empty_state(
                "No emails yet",
                html! { "MailMyCustomer emails your customers when Stripe tells it something happened. Three steps to the first email:" },
                Some(("/integrations", "Add an integration")),
            ))
        } @else {
            (empty_state(
                "No emails yet",
                html! { "Your integration is set up. Once Stripe sends an event, its email shows here." },
                None,
            ))
        }
        ol.steps {
            (step(has_integration, html! {
                a href="/integrations" { "Add an integration" }
                ": paste the webhook signing secret of your Stripe account, then give Stripe the webhook URL it shows."
            }))
            (step(o.smtp_configured, html! {
                a href="/settings" { "Configure SMTP" }
                ": the relay your emails go out through (your provider's host, port and login), then send a test email."
            }))
            (step(false, html! {
                "Send a test event with the Stripe CLI: "
                code { "stripe trigger invoice.paid" }
                ". Its email appears here a moment later."
            }))
        }
        @if !o.attention.is_empty() {
            (attention(o))
        }
    }
}

fn step(done: bool, text: Markup) -> Markup {
    html! {
        li.done[done] {
            @if done { span.check { "Done" } " " }
            (text)
        }
    }
}

fn attention(o: &Overview) -> Markup {
    html! {
        section.attention aria-labelledby="attention-heading" {
            h2 #attention-heading { "Needs attention" }
            @if o.attention.is_empty() {
                p.all-good { "All good: nothing needs your attention." }
            } @else {
                ul.attention-list {
                    @for item in &o.attention {
                        (attention_item(item, o.now))
                    }
                }
            }
        }
    }
}

fn attention_item(item: &Attention, now: i64) -> Markup {
    let (tone, text, href, action): (&str, Markup, String, &str) = match item {
        Attention::Failed { count, newest_at } => (
            "bad",
            html! {
                (plural(*count, "email")) " failed in the last " (overview::RECENT_DAYS)
                " days and " (if *count == 1 { "was" } else { "were" }) " not sent again (newest "
                (timestamp(*newest_at, now)) ")."
            },
            "/log?status=failed".into(),
            "See failed deliveries",
        ),
        Attention::SmtpNotConfigured { waiting } => (
            "bad",
            html! {
                "SMTP is not configured, so no email can go out"
                @if *waiting > 0 { ": " (plural(*waiting, "email")) " waiting" }
                "."
            },
            "/settings".into(),
            "Configure SMTP",
        ),
        Attention::Disconnected { id, name, since } => (
            "bad",
            html! {
                strong { (name) } " is disconnected from Stripe"
                @if let Some(since) = since {
                    " (" (timestamp(since.at, now)) ": " (since.reason) ")"
                }
                ": its events are no longer emailed. Its history stays until you erase it."
            },
            integration_href(id),
            "Open the integration",
        ),
        Attention::NoEvents { id, name } => (
            "warning",
            html! {
                strong { (name) } " has not received any event yet. Give Stripe its webhook URL, then try "
                code { "stripe trigger invoice.paid" } "."
            },
            integration_href(id),
            "See its webhook URL",
        ),
        Attention::Quiet { id, name } => (
            "warning",
            html! {
                strong { (name) } " has received no event in the last " (overview::QUIET_DAYS)
                " days. Check that its webhook is still enabled in Stripe."
            },
            integration_href(id),
            "Check the integration",
        ),
        Attention::NotSent {
            id: _,
            name,
            reason: Reason::NoTemplate,
            count,
            newest_at,
        } => (
            "warning",
            html! {
                (plural(*count, "event")) " of " strong { (name) } " in the last " (overview::RECENT_DAYS)
                " days had no template to email them with (newest " (timestamp(*newest_at, now)) ")."
            },
            "/templates".into(),
            "Add a template",
        ),
        Attention::NotSent {
            id,
            name,
            reason: Reason::NoApiKey,
            count,
            newest_at,
        } => (
            "warning",
            html! {
                (plural(*count, "event")) " of " strong { (name) } " in the last " (overview::RECENT_DAYS)
                " days could not be emailed: they need a Stripe API key to look up what they lack (newest "
                (timestamp(*newest_at, now)) ")."
            },
            integration_href(id),
            "Add an API key",
        ),
    };
    html! {
        li class={ "attention-item " (tone) } {
            p { (text) }
            a.button href=(href) { (action) }
        }
    }
}

fn integration_href(id: &str) -> String {
    format!("/integrations/{id}")
}

fn plural(n: i64, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        _ => format!("{n} {word}s"),
    }
}

fn totals(o: &Overview) -> Markup {
    let stats = [
        ("Sent", "sent", o.today.sent, o.month.sent),
        ("Failed", "failed", o.today.failed, o.month.failed),
        ("Waiting", "waiting", o.today.waiting(), o.month.waiting()),
    ];
    html! {
        section.stats aria-label="Totals" {
            @for (label, class, today, month) in stats {
                div class={ "stat " (class) } {
                    h2 { (label) }
                    p.today { span.number { (today) } " today" }
                    p.month { (month) " in " (overview::DAYS) " days" }
                }
            }
        }
    }
}

/// Width of one day's slot in the chart, its bar, and the plot's height, in SVG units.
const SLOT: i64 = 20;
const BAR: i64 = 14;
const PLOT: i64 = 120;
/// Room above the plot for the scale and below it for the dates.
const TOP: i64 = 16;
const BOTTOM: i64 = 22;

/// Sent and failed per day as stacked bars, oldest on the left; each day's bar says its numbers
/// on hover (`<title>`), and the whole chart has a text summary for screen readers.
pub fn chart(days: &[(i64, Counts)]) -> Markup {
    let width = SLOT * days.len().max(1) as i64;
    let height = TOP + PLOT + BOTTOM;
    let highest = days
        .iter()
        .map(|(_, c)| c.sent + c.failed)
        .max()
        .unwrap_or(0);
    let scale = highest.max(1);
    let bar = |value: i64| value * PLOT / scale;
    let (sent, failed) = days
        .iter()
        .fold((0, 0), |(s, f), (_, c)| (s + c.sent, f + c.failed));
    let first = days.first().map(|(d, _)| *d).unwrap_or(0);
    let last = days.last().map(|(d, _)| *d).unwrap_or(0);
    html! {
        svg.chart viewBox={ "0 0 " (width) " " (height) } role="img"
            aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet" {
            title #chart-title { "Emails sent and failed per day" }
            desc #chart-desc {
                (sent) " sent and " (failed) " failed from " (date(first)) " to " (date(last)) "."
            }
            line.baseline x1="0" y1=(TOP + PLOT) x2=(width) y2=(TOP + PLOT) {}
            text.scale x="0" y=(TOP - 4) { (highest) }
            @for (i, (day, counts)) in days.iter().enumerate() {
                @let x = i as i64 * SLOT + (SLOT - BAR) / 2;
                @let sent_h = bar(counts.sent);
                @let failed_h = bar(counts.failed);
                g.day {
                    title { (date(*day)) ": " (counts.sent) " sent, " (counts.failed) " failed" }
                    // The whole slot answers the hover, not only the bar.
                    rect.slot x=(i as i64 * SLOT) y=(TOP) width=(SLOT) height=(PLOT) {}
                    @if sent_h > 0 {
                        rect.sent x=(x) y=(TOP + PLOT - sent_h) width=(BAR) height=(sent_h) {}
                    }
                    @if failed_h > 0 {
                        rect.failed x=(x) y=(TOP + PLOT - sent_h - failed_h) width=(BAR) height=(failed_h) {}
                    }
                }
            }
            text.date x="0" y=(height - 6) { (date(first)) }
            text.date.end x=(width) y=(height - 6) { "today" }
        }
        p.legend {
            span.key.sent { "Sent" }
            span.key.failed { "Failed" }
        }
    }
}

/// "Nov 3" for a `daily_counts` day.
fn date(day: i64) -> String {
    jiff::Timestamp::from_second(day * DAY)
        .map(|t| t.strftime("%b %-d").to_string())
        .unwrap_or_default()
}

fn latest(o: &Overview) -> Markup {
    html! {
        section aria-labelledby="latest-heading" {
            h2 #latest-heading { "Latest deliveries" }
            div.table-wrap {
                table.stack.latest {
                    thead {
                        tr {
                            th scope="col" { "When" }
                            th scope="col" { "To" }
                            th scope="col" { "Email" }
                            th scope="col" { "Integration" }
                            th scope="col" { "Status" }
                        }
                    }
                    tbody {
                        @for l in &o.latest {
                            @let d = &l.delivery;
                            tr {
                                td data-label="When" { (timestamp(d.created_at, o.now)) }
                                td data-label="To" {
                                    @if let Some(r) = &d.recipient { (r) } @else { span.muted { "no address" } }
                                }
                                td data-label="Email" {
                                    @if let Some(s) = &d.subject { (s) } @else { span.muted { (d.trigger) } }
                                    @if let Some(e) = d.last_error.as_ref().filter(|_| d.status != Status::Sent) {
                                        p.why { (e) }
                                    }
                                }
                                td data-label="Integration" { (l.integration) }
                                td data-label="Status" { (status_badge(d.status)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn status_badge(status: Status) -> Markup {
    let tone = match status {
        Status::Sent => Tone::Good,
        Status::Failed => Tone::Bad,
        Status::Retrying => Tone::Warning,
        Status::Queued | Status::Sending | Status::Skipped => Tone::Neutral,
    };
    badge(status.as_str(), tone)
}
