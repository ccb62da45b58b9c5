//! The Integrations pages: one card per Stripe account sending events here (`list`), adding one
//! (`new`: connecting with an API key first, pasting a signing secret second), changing one
//! while keeping its id and so its webhook URL, templates and log (`edit`: its settings, a new
//! API key, a re-check of what Stripe says), and removing one after saying what goes with it
//! (`remove`). Every change goes through `manage::integrations` and `manage::connect`; this
//! module only reads forms and draws pages.
//!
//! Secrets (the signing secret, the API key) are write-only here: a page says that one is set
//! and how it ends, a form takes a new one, and no answer ever carries one back, not even the
//! value just typed into a form that failed.

pub mod edit;
pub mod list;
pub mod new;
pub mod oauth;
pub mod remove;

use maud::{html, Markup};
use poem::web::cookie::CookieJar;
use poem::Response;

use crate::config::{self, Config};
use crate::db::integrations::{ConnectedBy, Integration, LatestEvent, Status};
use crate::manage::connect::endpoint_advice;
use crate::web::components::{badge, csrf_input, timestamp, Tone};
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::Session;
use crate::web::page_error;
use crate::Error;

/// The path of an integration's own page.
pub fn path(id: &str) -> String {
    format!("/integrations/{id}")
}

/// "Active" or "Disconnected" (Stripe told us the account revoked access).
fn status_badge(integration: &Integration) -> Markup {
    match integration.status {
        Status::Disconnected => badge("Disconnected", Tone::Bad),
        Status::Active => badge("Active", Tone::Good),
    }
}

/// Live or test mode: as the key says when the integration was connected with one, else as the
/// newest event says (a pasted secret may be of either mode; the events are what Stripe sends).
fn mode(integration: &Integration, latest: Option<&LatestEvent>) -> Markup {
    match integration.livemode.or(latest.map(|l| l.livemode)) {
        Some(true) => badge("Live mode", Tone::Good),
        Some(false) => badge("Test mode", Tone::Warning),
        None => html! { span.muted { "no events yet" } },
    }
}

/// How events reach the integration, in the merchant's words.
fn connected_by(integration: &Integration) -> &'static str {
    match integration.connected_by {
        ConnectedBy::ApiKey => "With an API key: this program made its webhook endpoint",
        ConnectedBy::SigningSecret => "With a webhook signing secret you pasted",
        ConnectedBy::OAuth => "Through Stripe (Connect)",
    }
}

/// What is known about the integration's link to Stripe, as `dt`/`dd` pairs for a `dl.facts`:
/// how it is connected, the mode, the account, the endpoint's health (what to do when Stripe
/// disabled it), the newest event and the last catch-up.
fn connection_facts(i: &Integration, latest: Option<&LatestEvent>, now: i64) -> Markup {
    html! {
        dt { "Connected" }
        dd { (connected_by(i)) }
        dt { "Mode" }
        dd { (mode(i, latest)) }
        @if i.account_name.is_some() || i.stripe_account.is_some() {
            dt { "Stripe account" }
            dd.account {
                @if let Some(name) = &i.account_name { (name) " " }
                @if let Some(account) = &i.stripe_account { code { (account) } }
            }
        }
        @if let Some(endpoint) = &i.endpoint {
            dt { "Webhook endpoint" }
            dd.endpoint {
                @match endpoint.status.as_deref() {
                    Some("enabled") => (badge("Enabled", Tone::Good)),
                    Some("disabled") => (badge("Disabled by Stripe", Tone::Bad)),
                    Some("deleted") => (badge("Gone from Stripe", Tone::Bad)),
                    Some(other) => (badge(other, Tone::Warning)),
                    None => (badge("Not checked yet", Tone::Neutral)),
                }
                " " code { (endpoint.id) }
                @if let Some(at) = endpoint.checked_at {
                    " " span.muted { "checked " (timestamp(at, now)) }
                }
                @if let Some(status) = endpoint.status.as_deref().filter(|s| *s != "enabled") {
                    p.note { (endpoint_advice(status)) "." }
                }
            }
        }
        dt { "Last event" }
        dd { (last_event(latest, now)) }
        @if let Some(at) = i.catch_up.at {
            dt { "Last catch-up" }
            dd {
                (timestamp(at, now)) ", "
                (count(i.catch_up.recovered_last, "missed event recovered", "missed events recovered"))
            }
        }
    }
}

/// The **Re-check** button: asks Stripe again about the endpoint and the account (only for an
/// integration with a key or token to ask with). `back` is where the answer leads: `list` for
/// the Integrations page, else the integration's own page.
fn recheck_button(integration: &Integration, csrf: &str, back: &str) -> Markup {
    let can_ask = integration.api_key.is_some() || integration.oauth_access_token.is_some();
    html! {
        @if can_ask && integration.is_listening() {
            form.recheck method="post" action={ (path(&integration.id)) "/recheck" } {
                (csrf_input(csrf))
                input type="hidden" name="back" value=(back);
                button type="submit" { "Re-check" }
            }
        }
    }
}

/// When the newest event arrived, or that none has.
fn last_event(latest: Option<&LatestEvent>, now: i64) -> Markup {
    match latest {
        Some(latest) => timestamp(latest.received_at, now),
        None => html! { span.muted { "none yet" } },
    }
}

/// The webhook URL with a copy button (shown once the script runs). `key` makes the element
/// id unique on a page with several.
fn webhook_url(url: &str, key: &str) -> Markup {
    let id = format!("webhook-url-{key}");
    html! {
        div.copyable {
            code id=(id) { (url) }
            button type="button" data-copy=(id) aria-label="Copy the webhook URL" { "Copy" }
        }
    }
}

/// The URL `stripe listen --forward-to` needs on this machine: the listen address, whatever
/// `server.public_url` says.
fn local_webhook_url(config: &Config, id: &str) -> String {
    format!(
        "http://{}/webhooks/stripe/{id}",
        config::local_address(&config.server.listen)
    )
}

/// The sender an integration without its own from address uses.
fn default_sender(config: &Config) -> Markup {
    html! {
        @if config.smtp.from_address.is_empty() {
            "the default sender (not set yet: see Settings)"
        } @else {
            "the default sender, " code { (config.smtp.from_address) }
        }
    }
}

/// A failed save whose form cannot be shown again (no such integration, a database failure).
fn failed(err: &Error, session: Session) -> Response {
    page_error(err, Some(session))
}

/// After a change: back to `location` with `message`.
fn done(jar: &CookieJar, location: &str, message: String) -> Response {
    redirect_with(jar, location, Flash::success(message))
}

/// "1 delivery", "3 deliveries".
fn count(n: i64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}
