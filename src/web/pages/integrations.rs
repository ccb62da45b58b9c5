//! The Integrations pages: one card per Stripe account sending events here (`list`), adding one
//! (`new`), changing one while keeping its id and so its webhook URL, templates and log
//! (`edit`), and removing one after saying what goes with it (`remove`). Every change goes
//! through `manage::integrations`; this module only reads forms and draws pages.
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
use crate::db::integrations::{Integration, LatestEvent, Status};
use crate::web::components::{badge, timestamp, Tone};
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

/// Live or test mode as the newest event says (an integration's secret and key may be of
/// either mode; the events are what Stripe actually sends).
fn mode(latest: Option<&LatestEvent>) -> Markup {
    match latest {
        Some(LatestEvent { livemode: true, .. }) => badge("Live mode", Tone::Good),
        Some(LatestEvent {
            livemode: false, ..
        }) => badge("Test mode", Tone::Warning),
        None => html! { span.muted { "no events yet" } },
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
