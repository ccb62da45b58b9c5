//! `/login` (the sign-in page and its form) and `/logout`. A wrong email and a wrong password
//! get the same answer; attempts are limited per client address and per account
//! (`auth::Auth`), and a held sign-in says when to try again (429, `Retry-After`).

use std::net::{IpAddr, Ipv4Addr};

use maud::{html, Markup};
use poem::http::{header, StatusCode};
use poem::web::{Form, Query};
use poem::{handler, Request, Response};
use serde::Deserialize;

use crate::manage::users;
use crate::web::auth::{self, SignedIn, LOGIN_PATH};
use crate::web::components::{csrf_input, Field, Input};
use crate::web::flash::{redirect_with, see_other, Flash};
use crate::web::layout::{html_response, Nav, Page};
use crate::web::page_error;

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

const WRONG: &str = "Wrong email or password.";

#[handler]
pub async fn show(req: &Request, Query(query): Query<NextQuery>) -> Response {
    match auth::current(req).await {
        Ok(Some(_)) => return see_other(auth::local_next(query.next.as_deref())),
        Ok(None) => {}
        Err(e) => return page_error(&e, None),
    }
    let csrf = match app_config(req).and_then(|c| auth::presession_csrf(&c, req.cookie())) {
        Ok(csrf) => csrf,
        Err(e) => return page_error(&e, None),
    };
    let flash = Flash::take(req.cookie());
    html_response(
        StatusCode::OK,
        view(&csrf, "", query.next.as_deref(), None, flash),
    )
}

#[handler]
pub async fn submit(req: &Request, Form(form): Form<LoginForm>) -> Response {
    match try_submit(req, &form).await {
        Ok(response) => response,
        Err(e) => page_error(&e, None),
    }
}

async fn try_submit(req: &Request, form: &LoginForm) -> Result<Response, crate::Error> {
    let app = auth::app(req)?;
    let limits = auth::auth(req)?;
    let config = app.config();
    // Without a peer address (never on our listener) everyone shares one counter: stricter.
    let client = auth::client_address(req, &config).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let csrf = auth::presession_csrf(&config, req.cookie())?;
    let again = |status, message: String| {
        html_response(
            status,
            view(
                &csrf,
                &form.email,
                form.next.as_deref(),
                Some(&message),
                None,
            ),
        )
    };
    if let Err(wait) = limits.may_try(client, &form.email) {
        tracing::warn!(client = %client, "sign-in held: too many failed attempts");
        let mut response = again(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many sign-in attempts; try again in {}.",
                auth::minutes(wait)
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
        return Ok(response);
    }
    match users::check_password(app, &form.email, &form.password).await? {
        Some(user) => {
            limits.succeeded(&form.email);
            auth::sign_in(app, req.cookie(), &user).await?;
            tracing::info!(client = %client, user = user.id, "signed in");
            Ok(see_other(auth::local_next(form.next.as_deref())))
        }
        None => {
            limits.failed(client, &form.email);
            tracing::info!(client = %client, "failed sign-in: wrong email or password");
            Ok(again(StatusCode::UNPROCESSABLE_ENTITY, WRONG.to_owned()))
        }
    }
}

#[handler]
pub async fn logout(req: &Request, signed_in: SignedIn) -> Response {
    let app = match auth::app(req) {
        Ok(app) => app,
        Err(e) => return page_error(&e, None),
    };
    if let Err(e) = auth::sign_out(app, req.cookie(), &signed_in).await {
        return page_error(&e, None);
    }
    redirect_with(req.cookie(), LOGIN_PATH, Flash::success("Signed out."))
}

fn app_config(req: &Request) -> Result<std::sync::Arc<crate::Config>, crate::Error> {
    Ok(auth::app(req)?.config())
}

pub fn view(
    csrf: &str,
    email: &str,
    next: Option<&str>,
    error: Option<&str>,
    flash: Option<Flash>,
) -> Markup {
    let page = Page {
        title: "Sign in",
        nav: Nav::None,
        session: None,
        flash,
    };
    page.render(html! {
        form.card.stack.auth method="post" action=(LOGIN_PATH) {
            (csrf_input(csrf))
            @if let Some(next) = next {
                input type="hidden" name="next" value=(next);
            }
            @if let Some(error) = error {
                div.flash.error role="alert" { (error) }
            }
            (Field::new("Email", "email", email)
                .input(Input::Email)
                .required()
                .autocomplete("username")
                .render(None))
            (Field::new("Password", "password", "")
                .input(Input::Password)
                .required()
                .autocomplete("current-password")
                .render(None))
            div.actions {
                button.primary type="submit" { "Sign in" }
            }
        }
        p.muted.auth {
            "Forgot your password? On the server, run "
            code { "mailmycustomer user passwd EMAIL" } "."
        }
    })
}
