//! `GET/POST /integrations/{id}`: one integration's page. What its events say, its webhook URL,
//! and a form to rename it, change its sender, or replace its signing secret or API key. The id
//! never changes, so the webhook URL Stripe sends to, the templates and the log all stay.
//! Secret fields start empty: empty keeps the secret, a value replaces it.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form, Path};
use poem::{handler, Response};
use serde::Deserialize;

use super::{default_sender, done, failed, last_event, mode, path, status_badge, webhook_url};
use crate::app::App;
use crate::config::Config;
use crate::db::integrations::{redact, Integration, Status};
use crate::manage::integrations::{self, Changes, Overview};
use crate::web::auth::SignedIn;
use crate::web::components::{csrf_input, form_error, timestamp, Field, Input};
use crate::web::flash::Flash;
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::web::webhook::Intake;
use crate::Error;

/// What the form sends. The secret fields are empty unless something new was pasted.
#[derive(Debug, Default, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub from_address: String,
    #[serde(default)]
    pub webhook_secret: String,
    #[serde(default)]
    pub api_key: String,
    /// The "Remove the API key" checkbox: present when ticked.
    pub remove_api_key: Option<String>,
}

impl EditForm {
    /// The form as the page first shows it: the integration's current values.
    fn of(integration: &Integration) -> EditForm {
        EditForm {
            name: integration.name.clone(),
            from_address: integration.from_address.clone().unwrap_or_default(),
            ..EditForm::default()
        }
    }

    fn changes(&self) -> Result<Changes, Error> {
        let typed = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let api_key = match (self.remove_api_key.is_some(), typed(&self.api_key)) {
            (true, Some(_)) => {
                return Err(Error::invalid(
                    "api_key",
                    "paste a new key or tick “Remove the API key”, not both",
                ))
            }
            (true, None) => Some(String::new()),
            (false, key) => key,
        };
        Ok(Changes {
            name: Some(self.name.clone()),
            from_address: Some(self.from_address.clone()),
            webhook_secret: typed(&self.webhook_secret),
            api_key,
        })
    }
}

const FIELDS: [&str; 4] = ["name", "from_address", "webhook_secret", "api_key"];

#[handler]
pub async fn show(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let session = signed_in.session();
    match integrations::overview_of(app, &id).await {
        Ok(overview) => {
            let form = EditForm::of(&overview.integration);
            answer(
                &app.config(),
                session,
                Flash::take(jar),
                &overview,
                &form,
                None,
            )
        }
        Err(e) => failed(&e, session),
    }
}

#[handler]
pub async fn save(
    Data(app): Data<&Arc<App>>,
    Data(intake): Data<&Arc<Intake>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let session = signed_in.session();
    let before = match integrations::overview_of(app, &id).await {
        Ok(overview) => overview,
        Err(e) => return failed(&e, session),
    };
    let saved = match form.changes() {
        Ok(changes) => integrations::update(app, &id, changes).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(after) => {
            // The next webhook must be checked against the new secret, not a remembered one.
            intake.forget(&id);
            done(jar, &path(&id), summary(&before.integration, &after))
        }
        Err(e) if e.field().is_some() => {
            answer(&app.config(), session, None, &before, &form, Some(&e))
        }
        Err(e) => failed(&e, session),
    }
}

/// What a save changed, for the flash message.
fn summary(before: &Integration, after: &Integration) -> String {
    let mut changed = Vec::new();
    if before.name != after.name {
        changed.push(format!("renamed to “{}”", after.name));
    }
    if before.from_address != after.from_address {
        changed.push(match &after.from_address {
            Some(address) => format!("sends from {address}"),
            None => "sends from the default sender".to_owned(),
        });
    }
    if before.webhook_secret != after.webhook_secret {
        changed.push("signing secret replaced".to_owned());
    }
    match (&before.api_key, &after.api_key) {
        (None, Some(_)) => changed.push("API key added".to_owned()),
        (Some(_), None) => changed.push("API key removed".to_owned()),
        (Some(old), Some(new)) if old != new => changed.push("API key replaced".to_owned()),
        _ => {}
    }
    match changed.is_empty() {
        true => "Nothing changed.".to_owned(),
        false => {
            let mut text = changed.join(", ");
            text[..1].make_ascii_uppercase();
            format!("{text}. The webhook URL is the same.")
        }
    }
}

fn answer(
    config: &Config,
    session: Session,
    flash: Option<Flash>,
    overview: &Overview,
    form: &EditForm,
    error: Option<&Error>,
) -> Response {
    let status = error.map_or(StatusCode::OK, Error::status);
    let page = Page {
        title: &overview.integration.name,
        nav: Nav::Integrations,
        session: Some(session),
        flash,
    };
    let body = view(
        config,
        session,
        overview,
        form,
        error,
        crate::db::now_unix(),
    );
    html_response(status, page.render(body))
}

pub fn view(
    config: &Config,
    session: Session,
    overview: &Overview,
    form: &EditForm,
    error: Option<&Error>,
    now: i64,
) -> Markup {
    let i = &overview.integration;
    let latest = overview.latest.as_ref();
    html! {
        p.back { a href="/integrations" { "← All integrations" } }
        section.card.summary aria-label="What its events say" {
            dl.facts {
                dt { "Status" }
                dd {
                    (status_badge(i))
                    @if i.status == Status::Disconnected {
                        " " span.muted { "The Stripe account revoked access; its events are no longer emailed." }
                    }
                }
                @if let Some(account) = &i.stripe_account {
                    dt { "Stripe account" }
                    dd { code { (account) } }
                }
                dt { "Mode" }
                dd { (mode(latest)) }
                dt { "Last event" }
                dd { (last_event(latest, now)) }
                dt { "Added" }
                dd { (timestamp(i.created_at, now)) }
            }
            p.url-label { "Webhook URL" }
            (webhook_url(&config.webhook_url(&i.id), &i.id))
            p.help { "It stays the same whatever you change below, so Stripe keeps sending here." }
            p { a href=(crate::web::pages::catalog::path(&i.id)) { "Products and plans from Stripe →" } }
        }
        section.card aria-labelledby="settings-heading" {
            h2 #settings-heading { "Settings" }
            (the_form(config, session, i, form, error))
        }
        section.card.danger-zone aria-labelledby="remove-heading" {
            h2 #remove-heading { "Remove this integration" }
            p { "Its events, its delivery log and its product names go with it. You are asked first." }
            p { a.button.danger href={ (path(&i.id)) "/remove" } { "Remove…" } }
        }
    }
}

fn the_form(
    config: &Config,
    session: Session,
    i: &Integration,
    form: &EditForm,
    error: Option<&Error>,
) -> Markup {
    let again = |typed: &str| -> Markup {
        html! {
            @if error.is_some() && !typed.is_empty() {
                " " strong { "Paste it again: secrets are never sent back to the browser." }
            }
        }
    };
    html! {
        form.stack method="post" action=(path(&i.id)) {
            (csrf_input(session.csrf))
            (form_error(error, &FIELDS))
            (Field::new("Name", "name", &form.name)
                .required()
                .autocomplete("off")
                .render(error))
            (Field::new("Send from", "from_address", &form.from_address)
                .input(Input::Email)
                .autocomplete("off")
                .placeholder("billing@your-shop.example")
                .help(html! { "Empty: " (default_sender(config)) "." })
                .render(error))
            (Field::new("Webhook signing secret", "webhook_secret", "")
                .input(Input::Password)
                .autocomplete("new-password")
                .placeholder("whsec_…")
                .help(html! {
                    "Set, ends in " code { (redact(i.webhook_secret.expose())) } ". Paste a new one to \
                     replace it (after rolling it in Stripe: the endpoint's page → Roll secret); \
                     leave empty to keep it." (again(&form.webhook_secret))
                })
                .render(error))
            (Field::new("Stripe API key", "api_key", "")
                .input(Input::Password)
                .autocomplete("new-password")
                .placeholder("rk_live_…")
                .help(html! {
                    @match &i.api_key {
                        Some(key) => { "Set, ends in " code { (redact(key.expose())) } ". Paste a new key to replace it; leave empty to keep it." }
                        None => { "Not set: events that do not carry the customer's email (subscriptions, refunds) cannot be emailed. Paste a restricted key (rk_…) to add one." }
                    }
                    (again(&form.api_key))
                })
                .render(error))
            @if i.api_key.is_some() {
                div.field.check {
                    label {
                        input type="checkbox" name="remove_api_key" value="1"
                            checked[form.remove_api_key.is_some()];
                        "Remove the API key"
                    }
                }
            }
            div.actions {
                button.primary type="submit" { "Save changes" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration() -> Integration {
        Integration {
            id: "int_0123456789abcdef".into(),
            name: "Rosen Goods".into(),
            webhook_secret: "whsec_0123456789abcdefWXYZ".into(),
            api_key: Some("rk_test_0123456789abcdefQRST".into()),
            stripe_account: None,
            status: Status::Active,
            created_at: 0,
            from_address: None,
            ..Default::default()
        }
    }

    #[test]
    fn a_save_says_what_it_changed() {
        let before = integration();
        assert_eq!(summary(&before, &before), "Nothing changed.");
        let after = Integration {
            webhook_secret: "whsec_new_secret_value_1234".into(),
            api_key: None,
            ..integration()
        };
        assert_eq!(
            summary(&before, &after),
            "Signing secret replaced, API key removed. The webhook URL is the same."
        );
    }

    #[test]
    fn secret_fields_left_empty_keep_the_secrets() {
        let form = EditForm {
            name: "Rosen".into(),
            from_address: "".into(),
            webhook_secret: "  ".into(),
            api_key: "".into(),
            remove_api_key: None,
        };
        let changes = form.changes().unwrap();
        assert_eq!(changes.webhook_secret, None);
        assert_eq!(changes.api_key, None);
        // An empty sender is a change: back to the default sender.
        assert_eq!(changes.from_address.as_deref(), Some(""));
        let both = EditForm {
            api_key: "rk_test_x".into(),
            remove_api_key: Some("1".into()),
            ..form
        };
        assert_eq!(both.changes().unwrap_err().field(), Some("api_key"));
    }
}
