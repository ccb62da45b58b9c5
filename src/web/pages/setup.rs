//! `/setup`: the first-run page. While nobody can sign in, `serve` logs a link with a one-time
//! token (`auth::Auth::offer_setup`); this page, opened with it, creates the first user and
//! signs them in. Without the token it is refused (403), and once anyone can sign in it is gone
//! (404), so nobody can claim a fresh instance by finding it first.

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::{Form, Query};
use poem::{handler, Request, Response};
use serde::Deserialize;

use crate::manage::users;
use crate::web::auth::{self, SETUP_PATH};
use crate::web::components::{csrf_input, form_error, Field, Input};
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::{error_page, html_response, Nav, Page};
use crate::web::page_error;
use crate::Error;

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

const FIELDS: [&str; 3] = ["email", "password", "password_again"];

#[handler]
pub async fn show(req: &Request, Query(query): Query<TokenQuery>) -> Response {
    match try_show(req, query.token.as_deref().unwrap_or("")).await {
        Ok(response) | Err(response) => response,
    }
}

async fn try_show(req: &Request, token: &str) -> Result<Response, Response> {
    let app = auth::app(req).map_err(|e| page_error(&e, None))?;
    gone_once_set_up(req).await?;
    let limits = auth::auth(req).map_err(|e| page_error(&e, None))?;
    if !limits.setup_token_matches(token) {
        return Err(refused(token));
    }
    let csrf =
        auth::presession_csrf(&app.config(), req.cookie()).map_err(|e| page_error(&e, None))?;
    Ok(html_response(StatusCode::OK, view(&csrf, token, "", None)))
}

#[handler]
pub async fn submit(req: &Request, Form(form): Form<SetupForm>) -> Response {
    match try_submit(req, &form).await {
        Ok(response) | Err(response) => response,
    }
}

async fn try_submit(req: &Request, form: &SetupForm) -> Result<Response, Response> {
    let app = auth::app(req).map_err(|e| page_error(&e, None))?;
    gone_once_set_up(req).await?;
    let limits = auth::auth(req).map_err(|e| page_error(&e, None))?;
    let csrf =
        auth::presession_csrf(&app.config(), req.cookie()).map_err(|e| page_error(&e, None))?;
    let again = |error: &Error| {
        html_response(
            error.status(),
            view(&csrf, &form.token, &form.email, Some(error)),
        )
    };
    if !limits.setup_token_matches(&form.token) {
        return Err(refused(&form.token));
    }
    // What can be checked before the token is spent is, so a typo does not cost the link.
    let checked = users::normalise_email(&form.email)
        .and_then(|_| users::check_new_password(&form.password))
        .and_then(|_| match form.password == form.password_again {
            true => Ok(()),
            false => Err(Error::invalid(
                "password_again",
                "the two passwords differ: type the same one twice",
            )),
        });
    if let Err(e) = checked {
        return Err(again(&e));
    }
    let Some(token) = limits.take_setup_token(&form.token) else {
        return Err(refused(&form.token));
    };
    let user = match users::add(app, &form.email, &form.password).await {
        Ok(user) => user,
        Err(e) => {
            limits.restore_setup_token(token);
            return Err(match e.field() {
                Some(_) => again(&e),
                None => page_error(&e, None),
            });
        }
    };
    tracing::info!(user = user.id, "first user created through the setup link");
    auth::sign_in(app, req.cookie(), &user)
        .await
        .map_err(|e| page_error(&e, None))?;
    Ok(redirect_with(
        req.cookie(),
        "/",
        Flash::success(format!(
            "Welcome! You are signed in as {}. Add more people with `mailmycustomer user add`.",
            user.email
        )),
    ))
}

/// 404 once anyone can sign in: the setup page has done its job.
async fn gone_once_set_up(req: &Request) -> Result<(), Response> {
    let app = auth::app(req).map_err(|e| page_error(&e, None))?;
    match users::any(app).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(error_page(
            StatusCode::NOT_FOUND,
            "This MailMyCustomer is set up already: sign in at /login.",
            None,
        )),
        Err(e) => Err(page_error(&e, None)),
    }
}

fn refused(token: &str) -> Response {
    let message = match token.is_empty() {
        true => {
            "Open the setup link the server logged when it started: it carries the token \
             that proves you run this server."
        }
        false => {
            "This setup link is not valid: it works once, and only until the server restarts. \
             Use the link in the server's latest log, or run `mailmycustomer user add EMAIL`."
        }
    };
    error_page(StatusCode::FORBIDDEN, message, None)
}

pub fn view(csrf: &str, token: &str, email: &str, error: Option<&Error>) -> Markup {
    let page = Page {
        title: "Set up MailMyCustomer",
        nav: Nav::None,
        session: None,
        flash: None,
    };
    page.render(html! {
        p.lead.auth { "Create the first account. More people can be added later with "
            code { "mailmycustomer user add" } "." }
        form.card.stack.auth method="post" action=(SETUP_PATH) {
            (csrf_input(csrf))
            input type="hidden" name="token" value=(token);
            (form_error(error, &FIELDS))
            (Field::new("Email", "email", email)
                .input(Input::Email)
                .required()
                .autocomplete("username")
                .render(error))
            (Field::new("Password", "password", "")
                .input(Input::Password)
                .required()
                .autocomplete("new-password")
                .help(html! { "At least " (users::MIN_PASSWORD_CHARS) " characters." })
                .render(error))
            (Field::new("Password again", "password_again", "")
                .input(Input::Password)
                .required()
                .autocomplete("new-password")
                .render(error))
            div.actions {
                button.primary type="submit" { "Create account and sign in" }
            }
        }
    })
}
