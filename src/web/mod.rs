//! HTTP routes, all in one place. Handlers parse the request, call storage, and answer; they
//! hold no SQL and do no Stripe or SMTP I/O.

pub mod health;
pub mod listener;
pub mod webhook;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Json;
use poem::{get, post, EndpointExt, IntoResponse, Response, Route};

use crate::server::AppState;
use crate::Error;

pub fn routes(state: Arc<AppState>) -> impl poem::Endpoint {
    Route::new()
        .at("/healthz", get(health::healthz))
        .at("/webhooks/stripe/:integration_id", post(webhook::receive))
        .data(state)
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
