//! `GET /integrations/new` and its two ways of adding an integration:
//! - `POST /integrations/new/key`: **connect with an API key** (the default): the program checks
//!   the key, makes its own webhook endpoint on the account and keeps its secret
//!   (`manage::connect`), as `integration connect` does;
//! - `POST /integrations/new`: **I have a webhook signing secret**: the secret of an endpoint made
//!   in the Stripe Dashboard (or printed by `stripe listen`), with an optional API key and sender
//!   address, as `integration add` does.
//!
//! The page picks the new integration's id up front (a hidden field in each form), so it can
//! show the webhook URL to give Stripe before Stripe hands out the secret for it, and so a key
//! form sent again finds the endpoint its first try made.
//!
//! The two forms sit on one page, so the key form's fields carry their own names
//! (`connect_…`): each label and error then belongs to exactly one input.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form};
use poem::{handler, Response};
use serde::Deserialize;

use super::{default_sender, done, failed, local_webhook_url, path, webhook_url};
use crate::app::App;
use crate::config::Config;
use crate::manage::connect::{self as connecting, KeyConnection};
use crate::manage::integrations::{self, NewIntegration};
use crate::stripe::api::endpoints::PERMISSIONS;
use crate::web::auth::SignedIn;
use crate::web::components::{csrf_input, form_error, Field, Input};
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::Error;

/// What the signing-secret form sends; kept as typed so a failed save shows it again (all but
/// the secrets).
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

/// What the API-key form sends; kept as typed so a failed connection shows it again (not the
/// key).
#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    pub connect_id: String,
    #[serde(default)]
    pub connect_name: String,
    #[serde(default)]
    pub connect_key: String,
    #[serde(default)]
    pub connect_from: String,
}

const KEY_FIELDS: [&str; 3] = ["connect_name", "connect_key", "connect_from"];

/// The key form's name for a field `manage` names.
fn key_field(field: &'static str) -> &'static str {
    match field {
        "name" => "connect_name",
        "api_key" => "connect_key",
        "from_address" => "connect_from",
        other => other,
    }
}

/// `error` with its field named as the key form names it.
fn on_key_form(error: Error) -> Error {
    match error {
        Error::Invalid { field, message } => Error::Invalid {
            field: key_field(field),
            message,
        },
        Error::Conflict { field, message } => Error::Conflict {
            field: key_field(field),
            message,
        },
        other => other,
    }
}

/// Which form a failed POST came from, so its error shows there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Key,
    Secret,
}

#[handler]
pub async fn show(Data(app): Data<&Arc<App>>, signed_in: SignedIn) -> Response {
    let session = signed_in.session();
    let id = match integrations::new_id() {
        Ok(id) => id,
        Err(e) => return failed(&e, session),
    };
    let form = NewForm {
        id: id.clone(),
        ..NewForm::default()
    };
    let key_form = KeyForm {
        connect_id: id,
        ..KeyForm::default()
    };
    answer(&app.config(), session, &key_form, &form, None)
}

#[handler]
pub async fn connect(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Form(mut form): Form<KeyForm>,
) -> Response {
    let session = signed_in.session();
    let new = KeyConnection {
        id: Some(form.connect_id.clone()),
        name: form.connect_name.clone(),
        api_key: form.connect_key.clone(),
        from_address: Some(form.connect_from.clone()),
    };
    match connecting::connect_with_key(app, new).await {
        Ok(connected) => {
            let i = &connected.integration;
            let account = match (&i.account_name, &i.stripe_account) {
                (Some(name), Some(id)) => format!("{name} ({id})"),
                (_, Some(id)) => id.clone(),
                _ => "the account".to_owned(),
            };
            let mut message = format!(
                "Connected “{}” to {account}: Stripe sends its events to webhook endpoint {}.",
                i.name, connected.endpoint_id
            );
            for note in connected.notes() {
                message.push(' ');
                message.push_str(&note);
            }
            done(jar, &path(&i.id), message)
        }
        Err(e) if e.field().is_some() => {
            if e.field() == Some("id") {
                // See `add`: a fresh id for a damaged or taken one.
                match integrations::new_id() {
                    Ok(id) => form.connect_id = id,
                    Err(e) => return failed(&e, session),
                }
            }
            let secret_form = NewForm {
                id: form.connect_id.clone(),
                ..NewForm::default()
            };
            let error = on_key_form(e);
            answer(
                &app.config(),
                session,
                &form,
                &secret_form,
                Some((Way::Key, &error)),
            )
        }
        Err(e) => failed(&e, session),
    }
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
            let key_form = KeyForm {
                connect_id: form.id.clone(),
                ..KeyForm::default()
            };
            answer(
                &app.config(),
                session,
                &key_form,
                &form,
                Some((Way::Secret, &e)),
            )
        }
        Err(e) => failed(&e, session),
    }
}

fn answer(
    config: &Config,
    session: Session,
    key_form: &KeyForm,
    form: &NewForm,
    error: Option<(Way, &Error)>,
) -> Response {
    let status = error.map_or(StatusCode::OK, |(_, e)| e.status());
    let page = Page {
        title: "Add an integration",
        nav: Nav::Integrations,
        session: Some(session),
        flash: None,
    };
    html_response(
        status,
        page.render(view(config, session, key_form, form, error)),
    )
}

pub fn view(
    config: &Config,
    session: Session,
    key_form: &KeyForm,
    form: &NewForm,
    error: Option<(Way, &Error)>,
) -> Markup {
    let error_on = |way: Way| error.filter(|(w, _)| *w == way).map(|(_, e)| e);
    html! {
        p.lead {
            "An integration is one Stripe account sending its events here. Stripe signs each \
             event with a secret that only it and this server know, so nobody else can make \
             this server send emails."
        }
        section.card.connect.by-key aria-labelledby="key-heading" {
            h2 #key-heading { "Connect with an API key" }
            p {
                "Paste a key and this program makes its own webhook endpoint on your Stripe \
                 account, with exactly the events it needs, and keeps the signing secret \
                 Stripe gives it. Test keys and live keys both work."
            }
            (key_form_view(config, session, key_form, error_on(Way::Key)))
        }
        (super::oauth::section(config, session))
        section.card.connect aria-labelledby="paste-heading" {
            h2 #paste-heading { "I have a webhook signing secret" }
            p.help {
                "For an endpoint you made yourself in the Stripe Dashboard, or for "
                code { "stripe listen" } " while testing on this machine."
            }
            (steps(config, &form.id))
            (the_form(config, session, form, error_on(Way::Secret)))
        }
    }
}

/// The permissions a restricted key needs, and why each.
fn permissions() -> Markup {
    html! {
        p {
            "Best is a restricted key: " strong { "Developers → API keys → Create restricted key" }
            ", with these permissions (a secret key " code { "sk_…" } " works too):"
        }
        ul.permissions {
            @for p in PERMISSIONS {
                li {
                    strong { (p.grant()) } span.purpose { " — " (p.why) }
                }
            }
        }
    }
}

fn key_form_view(
    config: &Config,
    session: Session,
    form: &KeyForm,
    error: Option<&Error>,
) -> Markup {
    let problem = connecting::reachability(config);
    html! {
        @if let Some(problem) = problem {
            p.note.reach {
                (problem) " Stripe cannot send events to this server yet, so connecting is \
                 refused until " code { "server.public_url" } " is this server's public HTTPS \
                 address (Settings). To test on this machine, use a signing secret and "
                code { "stripe listen" } " below."
            }
        }
        (permissions())
        form.stack method="post" action="/integrations/new/key" {
            (csrf_input(session.csrf))
            input type="hidden" name="connect_id" value=(form.connect_id);
            (form_error(error, &KEY_FIELDS))
            (Field::new("Integration name", "connect_name", &form.connect_name)
                .required()
                .autocomplete("off")
                .placeholder("Rosen Goods")
                .help(html! { "A name you recognise, e.g. your shop's. Emails can use it as " code { "{{ merchant.name }}" } "." })
                .render(error))
            (Field::new("Stripe API key", "connect_key", "")
                .input(Input::Password)
                .required()
                .autocomplete("new-password")
                .placeholder("rk_live_…")
                .help(html! {
                    "Kept in the database and never shown again."
                    @if error.is_some() && !form.connect_key.is_empty() {
                        " " strong { "Paste it again: keys are never sent back to the browser." }
                    }
                })
                .render(error))
            (Field::new("Sender address (optional)", "connect_from", &form.connect_from)
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
                button.primary type="submit" { "Connect" }
            }
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
                        @for (n, event) in crate::trigger::SUBSCRIBED_EVENTS.iter().enumerate() {
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
