//! `GET/POST /integrations/{id}`: one integration's page. How it is connected and what Stripe and
//! its events say, its webhook URL, and a form to rename it, change its sender, or (connected by
//! signing secret) replace its signing secret or API key. `POST /integrations/{id}/key` gives it
//! a new API key (`manage::connect::change_key`: a new endpoint); `POST /integrations/{id}/recheck`
//! asks Stripe again about its endpoint and account. The id never changes, so the webhook URL
//! Stripe sends to, the templates and the log all stay. Secret fields start empty: empty keeps
//! the secret, a value replaces it.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form, Path};
use poem::{handler, Response};
use serde::Deserialize;

use super::{
    connection_facts, default_sender, done, failed, path, recheck_button, status_badge, webhook_url,
};
use crate::app::App;
use crate::config::Config;
use crate::db::integrations::{redact, ConnectedBy, Integration, Status};
use crate::manage::connect;
use crate::manage::integrations::{self, Changes, Overview};
use crate::web::auth::SignedIn;
use crate::web::components::{csrf_input, form_error, timestamp, Field, Input};
use crate::web::flash::{redirect_with, Flash};
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

/// What the change-key form sends.
#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    pub new_api_key: String,
}

/// What the Re-check button sends: `list` to come back to the Integrations page.
#[derive(Debug, Default, Deserialize)]
pub struct RecheckForm {
    #[serde(default)]
    pub back: String,
}

/// Which of the page's forms an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Settings,
    Key,
}

/// `error` about the key, named as the change-key form names its field.
fn on_key_form(error: Error) -> Error {
    match error {
        Error::Invalid {
            field: "api_key",
            message,
        } => Error::Invalid {
            field: "new_api_key",
            message,
        },
        Error::Conflict {
            field: "api_key",
            message,
        } => Error::Conflict {
            field: "new_api_key",
            message,
        },
        other => other,
    }
}

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
        Err(e) if e.field().is_some() => answer(
            &app.config(),
            session,
            None,
            &before,
            &form,
            Some((Part::Settings, &e)),
        ),
        Err(e) => failed(&e, session),
    }
}

#[handler]
pub async fn change_key(
    Data(app): Data<&Arc<App>>,
    Data(intake): Data<&Arc<Intake>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<KeyForm>,
) -> Response {
    let session = signed_in.session();
    let before = match integrations::overview_of(app, &id).await {
        Ok(overview) => overview,
        Err(e) => return failed(&e, session),
    };
    match connect::change_key(app, &id, &form.new_api_key).await {
        Ok(changed) => {
            // The next webhook must be checked against the new endpoint's secret.
            intake.forget(&id);
            let mut message = format!(
                "New key in place: Stripe now sends to webhook endpoint {}. The webhook URL, \
                 templates and log are the same.",
                changed.endpoint_id
            );
            for note in changed.notes() {
                message.push(' ');
                message.push_str(&note);
            }
            done(jar, &path(&id), message)
        }
        Err(e) if e.field().is_some() => {
            let error = on_key_form(e);
            let settings = EditForm::of(&before.integration);
            answer(
                &app.config(),
                session,
                None,
                &before,
                &settings,
                Some((Part::Key, &error)),
            )
        }
        Err(e) => failed(&e, session),
    }
}

#[handler]
pub async fn recheck(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<RecheckForm>,
) -> Response {
    let session = signed_in.session();
    let back = match form.back.as_str() {
        "list" => "/integrations".to_owned(),
        _ => path(&id),
    };
    match connect::recheck(app, &id).await {
        Ok(checked) => {
            let flash = match checked.summary() {
                (true, text) => Flash::success(text),
                (false, text) => Flash::error(text),
            };
            redirect_with(jar, &back, flash)
        }
        Err(e) if e.field().is_some() => {
            redirect_with(jar, &back, Flash::error(e.public_message()))
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
    error: Option<(Part, &Error)>,
) -> Response {
    let status = error.map_or(StatusCode::OK, |(_, e)| e.status());
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
    error: Option<(Part, &Error)>,
    now: i64,
) -> Markup {
    let i = &overview.integration;
    let latest = overview.latest.as_ref();
    let error_on = |part: Part| error.filter(|(p, _)| *p == part).map(|(_, e)| e);
    html! {
        p.back { a href="/integrations" { "← All integrations" } }
        section.card.summary aria-label="How it is connected" {
            dl.facts {
                dt { "Status" }
                dd {
                    (status_badge(i))
                    @if let Some(gone) = &i.disconnected {
                        " " span.muted { (timestamp(gone.at, now)) ": " (gone.reason) ". Its events are no longer emailed." }
                    } @else if i.status == Status::Disconnected {
                        " " span.muted { "Its events are no longer emailed." }
                    }
                }
                (connection_facts(i, latest, now))
                dt { "Added" }
                dd { (timestamp(i.created_at, now)) }
            }
            (recheck_button(i, session.csrf, "page"))
            @if i.connected_by != ConnectedBy::OAuth {
                p.url-label { "Webhook URL" }
                (webhook_url(&config.webhook_url(&i.id), &i.id))
                p.help { "It stays the same whatever you change below, so Stripe keeps sending here." }
            }
            p { a href=(crate::web::pages::catalog::path(&i.id)) { "Products and plans from Stripe →" } }
        }
        section.card aria-labelledby="settings-heading" {
            h2 #settings-heading { "Settings" }
            (the_form(config, session, i, form, error_on(Part::Settings)))
        }
        @if i.connected_by != ConnectedBy::OAuth {
            section.card.change-key aria-labelledby="key-heading" {
                (key_form(session, i, error_on(Part::Key)))
            }
        }
        section.card.danger-zone aria-labelledby="remove-heading" {
            h2 #remove-heading { "Remove this integration" }
            p { "Two steps: disconnect (it stops listening; its events and delivery log stay), then, if you wish, erase its history. You are asked first." }
            p { a.button.danger href={ (path(&i.id)) "/remove" } { "Remove…" } }
        }
    }
}

/// The change-key form: a new key makes a new endpoint (for an integration connected by
/// signing secret, it switches it to the API-key way).
fn key_form(session: Session, i: &Integration, error: Option<&Error>) -> Markup {
    let by_key = i.connected_by == ConnectedBy::ApiKey;
    html! {
        h2 #key-heading {
            @if by_key { "Change the API key" } @else { "Connect with an API key instead" }
        }
        p.help {
            @if by_key {
                "A new key (rolled, or of another account) gets a new webhook endpoint at the same \
                 URL; the old endpoint is deleted on Stripe while the old key still works. The \
                 templates and the log stay."
            } @else {
                "This program then makes its own webhook endpoint at this integration's URL and \
                 keeps its secret, in place of the one pasted (an endpoint at this URL made by \
                 hand is replaced). The templates and the log stay."
            }
        }
        form.stack method="post" action={ (path(&i.id)) "/key" } {
            (csrf_input(session.csrf))
            (form_error(error, &["new_api_key"]))
            (Field::new("New Stripe API key", "new_api_key", "")
                .input(Input::Password)
                .required()
                .autocomplete("new-password")
                .placeholder("rk_live_…")
                .help(html! {
                    @if let Some(key) = i.api_key.as_ref().filter(|_| by_key) {
                        "Now: ends in " code { (redact(key.expose())) } ". "
                    }
                    "A restricted key with the permissions listed on "
                    a href="/integrations/new" { "Add an integration" } "."
                    @if error.is_some() {
                        " " strong { "Paste it again: keys are never sent back to the browser." }
                    }
                })
                .render(error))
            div.actions {
                button.primary type="submit" {
                    @if by_key { "Change the key" } @else { "Connect with this key" }
                }
            }
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
            // Connected by key, the secret and the key are the endpoint's: the form below changes
            // them together.
            @if i.connected_by == ConnectedBy::SigningSecret {
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
