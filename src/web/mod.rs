//! HTTP routes, all in one place. Handlers parse the request, call storage, and answer; they
//! hold no SQL and do no Stripe or SMTP I/O.

pub mod health;
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
