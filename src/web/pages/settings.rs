//! The settings page (`/settings`): the SMTP relay and the public URL, where each value comes
//! from, and "Send test email". Values saved here take effect at once (`manage::settings`); a
//! value set by the environment or a flag is shown read-only with the reason. The password is
//! write-only: the page says whether one is set, never what it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form};
use poem::{handler, Response};

use crate::app::App;
use crate::config::{Config, Source};
use crate::manage::deliveries::{self, TestEmail};
use crate::manage::settings::{self, Changes, Password};
use crate::web::auth::SignedIn;
use crate::web::components::{csrf_input, form_error, Field, Input};
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::{html_response, Nav, Page};
use crate::web::page_error;
use crate::Error;

/// The form's fields other than the password, in the order shown, with their labels, input kinds
/// and help.
const FIELDS: &[(&str, &str, Input, &str)] = &[
    (
        "smtp.host",
        "Host",
        Input::Text,
        "Your provider's SMTP server, e.g. smtp.example.com. Empty: emails wait in the outbox.",
    ),
    (
        "smtp.port",
        "Port",
        Input::Number,
        "587 with STARTTLS, 465 with TLS, 25 without (a relay on this machine only).",
    ),
    (
        "smtp.username",
        "Username",
        Input::Text,
        "If the relay asks for a login.",
    ),
    (
        "smtp.from_address",
        "From address",
        Input::Email,
        "The sender, e.g. billing@example.com; required with a host.",
    ),
    (
        "smtp.from_name",
        "From name",
        Input::Text,
        "Shown beside the address, e.g. your shop's name.",
    ),
    (
        "smtp.reply_to",
        "Reply-to",
        Input::Email,
        "Where customers' replies go; empty: to the from address.",
    ),
    (
        "smtp.pool_size",
        "Connections",
        Input::Number,
        "Connections to the relay at once.",
    ),
    (
        "smtp.rate_limit_per_sec",
        "Rate limit",
        Input::Number,
        "Emails per second at most, for relays that impose one; 0: no limit.",
    ),
];

const PUBLIC_URL_HELP: &str =
    "The https address Stripe reaches this server at, e.g. https://mail.example.com; webhook URLs start with it.";

/// The security choices, as stored and as shown.
const SECURITY: [(&str, &str); 3] = [
    ("starttls", "STARTTLS (usually port 587)"),
    ("tls", "TLS from the first byte (usually port 465)"),
    ("none", "None: a relay on this machine only (port 25)"),
];

/// What the form shows: the values as saved, or as typed when a save failed.
struct Values {
    values: BTreeMap<String, String>,
    test_to: String,
}

impl Values {
    fn of(config: &Config) -> Values {
        let values = FIELDS
            .iter()
            .map(|(key, ..)| *key)
            .chain(["smtp.security", "server.public_url"])
            .map(|key| (key.to_owned(), config.setting(key).unwrap_or_default()))
            .collect();
        Values {
            values,
            test_to: String::new(),
        }
    }

    fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("", String::as_str)
    }
}

#[handler]
pub async fn show(app: Data<&Arc<App>>, jar: &CookieJar, signed_in: SignedIn) -> Response {
    let config = settings::current(&app);
    let page = Page {
        title: "Settings",
        nav: Nav::Settings,
        session: Some(signed_in.session()),
        flash: Flash::take(jar),
    };
    let body = view(&config, &Values::of(&config), &signed_in.csrf, None);
    html_response(StatusCode::OK, page.render(body))
}

/// The page again after a failed save or test, with what was typed and the error by its field
/// (422 for a value, or the error's own status).
fn refused(config: &Config, shown: &Values, signed_in: &SignedIn, error: &Error) -> Response {
    let page = Page {
        title: "Settings",
        nav: Nav::Settings,
        session: Some(signed_in.session()),
        flash: None,
    };
    let body = view(config, shown, &signed_in.csrf, Some(error));
    html_response(error.status(), page.render(body))
}

#[handler]
pub async fn save(
    app: Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let form: BTreeMap<String, String> = form.into_iter().collect();
    let typed = |key: &str| form.get(key).cloned().unwrap_or_default();
    let password = match (form.contains_key("clear_password"), typed("smtp.password")) {
        (true, _) => Password::Clear,
        (false, p) if p.is_empty() => Password::Keep,
        (false, p) => Password::Set(p),
    };
    let values: BTreeMap<String, String> = form
        .iter()
        .filter(|(key, _)| key.contains('.') && key.as_str() != "smtp.password")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let changes = Changes {
        values: values.clone(),
        password,
    };
    match settings::save(&app, changes).await {
        Ok(saved) => {
            let message = match saved.changed.len() {
                0 => "Settings saved; nothing changed.".to_owned(),
                _ => format!(
                    "Settings saved ({}); the next email goes out with them.",
                    saved.changed.join(", ")
                ),
            };
            redirect_with(jar, "/settings", Flash::success(message))
        }
        Err(e) if e.field().is_some() => {
            let config = settings::current(&app);
            let mut shown = Values::of(&config);
            shown.values.extend(values);
            refused(&config, &shown, &signed_in, &e)
        }
        Err(e) => page_error(&e, Some(signed_in.session())),
    }
}

#[handler]
pub async fn test_email(
    app: Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let to = form
        .into_iter()
        .find(|(key, _)| key == "to")
        .map(|(_, value)| value)
        .unwrap_or_default();
    match deliveries::send_test_email(&app, &to).await {
        Ok(TestEmail::Accepted(reply)) => redirect_with(jar, "/settings", Flash::success(reply)),
        Ok(TestEmail::Refused { error, likely_fix }) => {
            let message = match likely_fix {
                Some(hint) => format!(
                    "The test email to {} failed: {error}. Likely fix: {hint}.",
                    to.trim()
                ),
                None => format!("The test email to {} failed: {error}.", to.trim()),
            };
            redirect_with(jar, "/settings", Flash::error(message))
        }
        Err(e) if e.field().is_some() => {
            let config = settings::current(&app);
            let mut shown = Values::of(&config);
            shown.test_to = to;
            refused(&config, &shown, &signed_in, &e)
        }
        Err(e) => page_error(&e, Some(signed_in.session())),
    }
}

/// Where a value comes from, in words, for a value the page can change.
fn origin(source: &Source) -> &'static str {
    match source {
        Source::Default => "Default.",
        Source::File => "From the config file.",
        Source::Page => "Saved on this page.",
        Source::Env(_) | Source::Flag(_) => "",
    }
}

fn view(config: &Config, values: &Values, csrf: &str, error: Option<&Error>) -> Markup {
    let smtp = &config.smtp;
    let reasons: BTreeMap<&str, Option<String>> = FIELDS
        .iter()
        .map(|(key, ..)| *key)
        .chain(["smtp.security", "smtp.password", "server.public_url"])
        .map(|key| (key, config.source(key).read_only_reason()))
        .collect();
    let field = |key: &'static str, label: &'static str, input: Input, help: &'static str| {
        let source = config.source(key);
        Field::new(label, key, values.get(key))
            .input(input)
            .help(html! { (help) " " span.muted { (origin(&source)) } })
            .locked(reasons[key].as_deref())
            .render(error)
    };
    let mut known_fields: Vec<&str> = reasons.keys().copied().collect();
    known_fields.push("to");
    html! {
        div.settings {
            div.settings-main {
                (form_error(error, &known_fields))
                form.stack method="post" action="/settings" {
                    (csrf_input(csrf))
                    section.card aria-labelledby="smtp-heading" {
                        h2 #smtp-heading { "Sending email (SMTP)" }
                        @if smtp.is_configured() {
                            p.muted { "Emails go out through " code { (smtp.host) ":" (smtp.port) } "." }
                        } @else {
                            p.muted { "No relay yet: emails are prepared and wait in the outbox until a host and a from address are saved here." }
                        }
                        // Fields that belong together side by side on a wide screen.
                        div.pair {
                            @for (key, label, input, help) in &FIELDS[..2] {
                                (field(key, label, *input, help))
                            }
                        }
                        (security_field(values.get("smtp.security"), &config.source("smtp.security"), reasons["smtp.security"].as_deref()))
                        div.pair {
                            @for (key, label, input, help) in &FIELDS[2..3] {
                                (field(key, label, *input, help))
                            }
                            (password_field(config, reasons["smtp.password"].as_deref(), error))
                        }
                        div.pair {
                            @for (key, label, input, help) in &FIELDS[3..5] {
                                (field(key, label, *input, help))
                            }
                        }
                        @for (key, label, input, help) in &FIELDS[5..6] {
                            (field(key, label, *input, help))
                        }
                        div.pair {
                            @for (key, label, input, help) in &FIELDS[6..] {
                                (field(key, label, *input, help))
                            }
                        }
                    }
                    section.card aria-labelledby="url-heading" {
                        h2 #url-heading { "Public address" }
                        (field("server.public_url", "Public URL", Input::Url, PUBLIC_URL_HELP))
                    }
                    div.actions {
                        button.primary type="submit" { "Save settings" }
                    }
                }
            }
            aside.settings-aside {
                section.card aria-labelledby="test-heading" {
                    h2 #test-heading { "Send a test email" }
                    p.muted { "Sends a short email with the settings saved on this page, and shows the relay's answer." }
                    form.stack method="post" action="/settings/test-email" {
                        (csrf_input(csrf))
                        (Field::new("Send to", "to", &values.test_to)
                            .input(Input::Email)
                            .required()
                            .autocomplete("email")
                            .placeholder("you@example.com")
                            .render(error))
                        div.actions {
                            button type="submit" { "Send test email" }
                        }
                    }
                }
            }
        }
    }
}

/// The security choice: a list, or the value read-only when the environment or a flag sets it.
fn security_field(value: &str, source: &Source, locked: Option<&str>) -> Markup {
    if locked.is_some() {
        return Field::new("Security", "smtp.security", value)
            .locked(locked)
            .render(None);
    }
    html! {
        div.field {
            label for="f-smtp.security" { "Security" }
            select id="f-smtp.security" name="smtp.security" aria-describedby="f-smtp.security-help" {
                @for (name, label) in SECURITY {
                    option value=(name) selected[name == value] { (label) }
                }
            }
            p.help id="f-smtp.security-help" { "How the connection is encrypted. " span.muted { (origin(source)) } }
        }
    }
}

/// The password: never shown, only whether one is set. An empty field keeps it; the box
/// clears it.
fn password_field(config: &Config, locked: Option<&str>, error: Option<&Error>) -> Markup {
    let state = match config.smtp.password.is_empty() {
        true => "Not set.",
        false => "Set.",
    };
    let source = config.source("smtp.password");
    let locked = locked.map(|reason| format!("{reason}. {state}"));
    html! {
        (Field::new("Password", "smtp.password", "")
            .input(Input::Password)
            .autocomplete("new-password")
            .help(html! { (state) " Leave empty to keep it. " span.muted { (origin(&source)) } })
            .locked(locked.as_deref())
            .render(error))
        @if locked.is_none() && !config.smtp.password.is_empty() {
            div.field.check {
                label { input type="checkbox" name="clear_password" value="1"; "Clear the password" }
            }
        }
    }
}
