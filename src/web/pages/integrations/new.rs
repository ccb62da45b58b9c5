//! `GET/POST /integrations/new`: adding an integration by pasting the signing secret of a
//! webhook endpoint made in the Stripe Dashboard (or by `stripe listen`), with an optional API
//! key and sender address, as `integration add` does.
//!
//! The page picks the new integration's id up front (a hidden field), so it can show the
//! webhook URL to give Stripe before Stripe hands out the secret for it.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form};
use poem::{handler, Response};
use serde::Deserialize;

use super::{default_sender, done, failed, local_webhook_url, webhook_url};
use crate::app::App;
use crate::config::Config;
use crate::manage::integrations::{self, NewIntegration};
use crate::web::auth::SignedIn;
use crate::web::components::{csrf_input, form_error, Field, Input};
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::Error;

/// What the form sends; kept as typed so a failed save shows it again (all but the secrets).
#[derive(Debug, Default, Deserialize)]
pub struct NewForm {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub webhook_secret: String,
    #[serde(default)]
    pub api_key: String,
    #[serde(default)]
    pub from_address: String,
}

/// The fields this form shows errors next to; an error about anything else is a banner.
const FIELDS: [&str; 4] = ["name", "webhook_secret", "api_key", "from_address"];

#[handler]
pub async fn show(Data(app): Data<&Arc<App>>, signed_in: SignedIn) -> Response {
    let session = signed_in.session();
    let form = match integrations::new_id() {
        Ok(id) => NewForm {
            id,
            ..NewForm::default()
        },
        Err(e) => return failed(&e, session),
    };
    answer(&app.config(), session, &form, None)
}

#[handler]
pub async fn add(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Form(mut form): Form<NewForm>,
) -> Response {
    let session = signed_in.session();
    let new = NewIntegration {
        name: form.name.clone(),
        webhook_secret: form.webhook_secret.clone(),
        api_key: Some(form.api_key.clone()),
        stripe_account: None,
        from_address: Some(form.from_address.clone()),
    };
    match integrations::add_with_id(app, &form.id, new).await {
        Ok(added) => done(
            jar,
            "/integrations",
            format!(
                "Added “{}”. Stripe can send its events to its webhook URL now.",
                added.name
            ),
        ),
        Err(e) if e.field().is_some() => {
            if e.field() == Some("id") {
                // The id was damaged or is taken (the form was sent twice): a fresh one, so
                // sending the form again adds the integration under a URL the page shows.
                match integrations::new_id() {
                    Ok(id) => form.id = id,
                    Err(e) => return failed(&e, session),
                }
            }
            answer(&app.config(), session, &form, Some(&e))
        }
        Err(e) => failed(&e, session),
    }
}

fn answer(config: &Config, session: Session, form: &NewForm, error: Option<&Error>) -> Response {
    let status = error.map_or(StatusCode::OK, Error::status);
    let page = Page {
        title: "Add an integration",
        nav: Nav::Integrations,
        session: Some(session),
        flash: None,
    };
    html_response(status, page.render(view(config, session, form, error)))
}

pub fn view(config: &Config, session: Session, form: &NewForm, error: Option<&Error>) -> Markup {
    html! {
        p.lead {
            "An integration is one Stripe account sending its events here. Stripe signs each \
             event with a secret that only it and this server know, so nobody else can make \
             this server send emails."
        }
        // The ways to connect through Stripe itself (sign in with Stripe, or have the endpoint
        // made for you) go here, above the manual way, each in its own `section.connect`.
        (super::oauth::section(config, session))
        section.card.connect aria-labelledby="paste-heading" {
            h2 #paste-heading { "Paste a signing secret" }
            (steps(config, &form.id))
            (the_form(config, session, form, error))
        }
    }
}

fn steps(config: &Config, id: &str) -> Markup {
    html! {
        ol.steps {
            li {
                p {
                    "In the Stripe Dashboard, open " strong { "Developers → Webhooks" }
                    " and add an endpoint with this URL:"
                }
                (webhook_url(&config.webhook_url(id), "new"))
                @if config.server.public_url.is_empty() {
                    p.note {
                        "This address only works on this machine, since "
                        code { "server.public_url" }
                        " is not set: Stripe needs the HTTPS address it can reach."
                    }
                }
                details {
                    summary { "Which events to select" }
                    p {
                        @for (n, event) in EVENTS.iter().enumerate() {
                            @if n > 0 { ", " }
                            code { (event) }
                        }
                        ". The product and price events send nothing; they keep product and \
                         plan names current."
                    }
                }
            }
            li {
                p {
                    "On the endpoint's page, reveal its " strong { "Signing secret" }
                    " (" code { "whsec_…" } ") and paste it below."
                }
            }
        }
        p.help.testing {
            "Testing on this machine? "
            code { "stripe listen --forward-to " (local_webhook_url(config, id)) }
            " forwards your test-mode events here and prints the signing secret to paste when \
             it starts."
        }
    }
}

/// The events to enable on the endpoint (README's trigger table says which email each sends).
const EVENTS: [&str; 14] = [
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.upcoming",
    "charge.succeeded",
    "charge.refunded",
    "refund.created",
    "refund.updated",
    "product.updated",
    "product.deleted",
    "price.updated",
    "price.deleted",
];

fn the_form(config: &Config, session: Session, form: &NewForm, error: Option<&Error>) -> Markup {
    // A secret typed into a form that failed is not sent back; say so beside its field.
    let again = |typed: &str| -> Markup {
        html! {
            @if error.is_some() && !typed.is_empty() {
                " " strong { "Paste it again: secrets are never sent back to the browser." }
            }
        }
    };
    html! {
        form.stack method="post" action="/integrations/new" {
            (csrf_input(session.csrf))
            input type="hidden" name="id" value=(form.id);
            (form_error(error, &FIELDS))
            (Field::new("Name", "name", &form.name)
                .required()
                .autocomplete("off")
                .placeholder("Rosen Goods")
                .help(html! { "A name you recognise, e.g. your shop's. Emails can use it as " code { "{{ merchant.name }}" } "." })
                .render(error))
            (Field::new("Webhook signing secret", "webhook_secret", "")
                .input(Input::Password)
                .required()
                .autocomplete("new-password")
                .placeholder("whsec_…")
                .help(html! {
                    "From the endpoint's page in Stripe, or printed by " code { "stripe listen" }
                    ". Kept in the database and never shown again." (again(&form.webhook_secret))
                })
                .render(error))
            (Field::new("Stripe API key (optional)", "api_key", "")
                .input(Input::Password)
                .autocomplete("new-password")
                .placeholder("rk_live_…")
                .help(html! {
                    "A restricted key (" strong { "Developers → API keys → Create restricted key" }
                    ") with read access to Customers, Products, Prices, Charges, Invoices, \
                     Invoice payments, PaymentIntents and Refunds. Without it, events that do \
                     not carry the customer's email (subscriptions, refunds) cannot be emailed."
                    (again(&form.api_key))
                })
                .render(error))
            (Field::new("Send from (optional)", "from_address", &form.from_address)
                .input(Input::Email)
                .autocomplete("off")
                .placeholder("billing@your-shop.example")
                .help(html! {
                    "This integration's emails come from this address instead of "
                    (default_sender(config)) ". Your mail relay must accept it."
                })
                .render(error))
            div.actions {
                a.button href="/integrations" { "Cancel" }
                button.primary type="submit" { "Add integration" }
            }
        }
    }
}
