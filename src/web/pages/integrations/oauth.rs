//! Connect with Stripe (Connect OAuth), when the operator configured `stripe.connect`:
//! `POST /integrations/connect` starts the flow (a form, so it carries the CSRF token, then 303
//! to Stripe's authorize page), and `GET /integrations/connect/callback` is where Stripe sends
//! the merchant back with `code` and `state` (or `error`). A refusal (a wrong or reused state,
//! access denied, a failed exchange) is a page saying what happened and what to do, with the
//! status it calls for; success goes to Integrations with a flash.
//!
//! `section` is the Add page's block; `reconnect` is a card's button that changes the account
//! an integration is connected to.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form, Query};
use poem::{handler, IntoResponse, Response};
use serde::Deserialize;

use super::{count, done, failed};
use crate::app::App;
use crate::config::Config;
use crate::db::integrations::{ConnectedBy, Integration};
use crate::manage::oauth::{self, Callback, Connected};
use crate::web::auth::SignedIn;
use crate::web::components::csrf_input;
use crate::web::flash::see_other;
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::web::webhook::Intake;
use crate::Error;

/// The form's path; `integration` (hidden) names the card that started it, if one did.
pub const START_PATH: &str = "/integrations/connect";

#[derive(Debug, Default, Deserialize)]
pub struct StartForm {
    #[serde(default)]
    pub integration: String,
}

#[handler]
pub async fn start(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    Form(form): Form<StartForm>,
) -> Response {
    let session = signed_in.session();
    let config = app.config();
    if !oauth::is_configured(&config) {
        return not_configured(session);
    }
    let integration = Some(form.integration.trim()).filter(|id| !id.is_empty());
    match oauth::start(app, &signed_in.csrf, integration).await {
        Ok(url) => see_other(&url),
        Err(e) => failed(&e, session),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[handler]
pub async fn callback(
    Data(app): Data<&Arc<App>>,
    Data(intake): Data<&Arc<Intake>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let session = signed_in.session();
    if !oauth::is_configured(&app.config()) {
        return not_configured(session);
    }
    let callback = Callback {
        code: query.code,
        state: query.state,
        error: query.error,
        error_description: query.error_description,
    };
    match oauth::finish(app, &signed_in.csrf, callback).await {
        Ok(connected) => {
            // Its own webhook URL no longer takes events signed with an old secret.
            intake.forget(&connected.integration.id);
            done(jar, "/integrations", message(&connected))
        }
        Err(e) if e.status().is_server_error() => failed(&e, session),
        Err(e) => refused(&e, session),
    }
}

fn message(connected: &Connected) -> String {
    let i = &connected.integration;
    let account = i.stripe_account.as_deref().unwrap_or_default();
    let verb = match connected.created {
        true => "Connected",
        false => "Connected again",
    };
    let catalog = match &connected.catalog {
        Ok(read) => {
            let products =
                read.products.added.len() + read.products.renamed.len() + read.products.unchanged;
            let plans = read.plans.added.len() + read.plans.renamed.len() + read.plans.unchanged;
            format!(
                "Read {} and {} from Stripe.",
                count(products as i64, "product", "products"),
                count(plans as i64, "plan", "plans")
            )
        }
        Err(e) => format!(
            "Its products and plans could not be read yet ({}); use Refresh on its catalog.",
            e.public_message()
        ),
    };
    format!(
        "{verb} “{}” ({account}) with Stripe: its events now arrive through the platform's \
         Connect endpoint. {catalog}",
        i.name
    )
}

/// Why the flow did not finish, and what to do: its own page, since Stripe's redirect has no
/// form to show it on.
fn refused(err: &Error, session: Session) -> Response {
    let page = Page {
        title: "Connect with Stripe did not finish",
        nav: Nav::Integrations,
        session: Some(session),
        flash: None,
    };
    let body = html! {
        section.card.connect-refused role="alert" {
            p.lead { (err.public_message()) }
            div.actions {
                a.button href="/integrations" { "Back to Integrations" }
                a.button.primary href="/integrations/new" { "Add an integration" }
            }
        }
    };
    html_response(err.status(), page.render(body))
}

fn not_configured(session: Session) -> Response {
    let page = Page {
        title: "Not found",
        nav: Nav::Integrations,
        session: Some(session),
        flash: None,
    };
    let body = html! {
        p.lead {
            "Connect with Stripe is not set up on this server: the operator sets "
            code { "stripe.connect.client_id" } ", " code { "secret_key" } " and "
            code { "webhook_secret" } " (see config.example.toml)."
        }
        p { a.button href="/integrations/new" { "Add an integration another way" } }
    };
    html_response(StatusCode::NOT_FOUND, page.render(body)).into_response()
}

/// The Add page's "Connect with Stripe" block, shown only when Connect is configured.
pub fn section(config: &Config, session: Session) -> Markup {
    html! {
        @if oauth::is_configured(config) {
            section.card.connect.connect-oauth aria-labelledby="oauth-heading" {
                h2 #oauth-heading { "Connect with Stripe" }
                p {
                    "Sign in to Stripe and allow this server to read the account's events. \
                     Nothing to copy: the events arrive through the platform's Connect endpoint."
                }
                (start_form(session, None, "Connect with Stripe"))
            }
        }
    }
}

/// An OAuth integration's button that sends the merchant through Stripe again, to connect it
/// to an account (the same one with fresh tokens, or another), keeping its id, templates and log.
pub fn reconnect(config: &Config, session: Session, integration: &Integration) -> Markup {
    html! {
        @if oauth::is_configured(config) && integration.connected_by == ConnectedBy::OAuth {
            (start_form(session, Some(&integration.id), "Connect again with Stripe"))
        }
    }
}

fn start_form(session: Session, integration: Option<&str>, label: &str) -> Markup {
    html! {
        form.connect-oauth method="post" action=(START_PATH) {
            (csrf_input(session.csrf))
            @if let Some(id) = integration {
                input type="hidden" name="integration" value=(id);
            }
            button.primary.stripe type="submit" { (label) }
        }
    }
}
