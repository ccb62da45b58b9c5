//! HTTP routes, all in one place. Handlers parse the request, call the service layer
//! (`manage`) or, for intake, the writer, and answer; they hold no SQL and do no Stripe or SMTP
//! I/O themselves.
//!
//! Two sets: what Stripe and monitors reach (webhooks, health) and the merchant's pages. They
//! share one listener unless `server.admin_listen` gives the pages their own address.

pub mod assets;
pub mod auth;
pub mod body;
pub mod components;
pub mod connect_webhook;
pub mod flash;
pub mod health;
pub mod layout;
pub mod listener;
pub mod metrics;
pub mod pages;
pub mod security;
pub mod webhook;

use std::sync::Arc;

use poem::error::NotFoundError;
use poem::http::StatusCode;
use poem::middleware::CookieJarManager;
use poem::web::Json;
use poem::{get, post, Endpoint, EndpointExt, IntoResponse, Response, Route};

use crate::app::App;
use crate::web::auth::Auth;
use crate::web::webhook::Intake;
use crate::Error;

/// Which routes one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// Webhooks, health and the pages (the default: one port behind one proxy).
    Everything,
    /// Webhooks and health only (the pages have their own `admin_listen`).
    Public,
    /// The pages and health only.
    Admin,
}

pub fn routes(
    app: Arc<App>,
    intake: Arc<Intake>,
    auth: Arc<Auth>,
    serves: Serves,
) -> impl Endpoint {
    let mut route = Route::new()
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(metrics::on_listen));
    if serves != Serves::Admin {
        route = route.at(
            "/webhooks/stripe/connect",
            post(connect_webhook::receive).around(metrics::timed),
        );
        route = route.at(
            "/webhooks/stripe/:integration_id",
            post(webhook::receive).around(metrics::timed),
        );
    }
    if serves != Serves::Public {
        let deadline = std::time::Duration::from_secs(app.config().server.body_timeout_secs);
        let ui = pages::routes()
            .at("/assets/:hash/:name", get(assets::serve))
            .catch_error(|_: NotFoundError| async {
                layout::error_page(
                    StatusCode::NOT_FOUND,
                    "There is no page at this address.",
                    None,
                )
            })
            // Outermost last: cookies, then the body read whole within its bounds, then the
            // sign-in and CSRF guard (which reads the form's token from that body).
            .with(auth::Guard)
            .around(move |ep, req| body::bounded(ep, req, deadline))
            .with(CookieJarManager::new());
        route = route.nest("/", ui);
    }
    route
        .around(security::headers)
        .data(app)
        .data(intake)
        .data(auth)
}

/// A page's answer for an error that has no form to show it on: the status it calls for, and
/// its message. What went wrong inside goes to the log, not to the page.
pub fn page_error(err: &Error, session: Option<layout::Session>) -> Response {
    if err.status().is_server_error() {
        tracing::error!(error = %err, detail = ?err, "page failed");
    }
    layout::error_page(err.status(), &err.public_message(), session)
}

/// The JSON body of every error answer: a stable code and a short message.
pub fn error_response(err: &Error) -> Response {
    json_response(
        err.status(),
        serde_json::json!({ "error": { "code": err.code(), "message": err.public_message() } }),
    )
}

pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    Json(body).with_status(status).into_response()
}

/// How much of a value taken from a request (a URL segment, a header) the log and error
/// messages show: integration ids are 36 characters.
const SHOWN_CHARS: usize = 64;

/// A value taken from a request, cut to `SHOWN_CHARS` characters ("…" marks a cut).
pub fn truncated(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

/// A value taken from a request, fit for the log: truncated, quoted, and with control
/// characters escaped, so a crafted value can neither forge a log line nor flood the log.
pub fn for_log(value: &str) -> String {
    format!("{:?}", truncated(value))
}
