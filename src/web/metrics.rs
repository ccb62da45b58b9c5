//! `GET /metrics` (`crate::metrics` renders it), never open by accident: served on
//! `metrics.listen`, a listener of its own, and, when `metrics.token` is set, on `server.listen`
//! (and `admin_listen`) to requests carrying `Authorization: Bearer <token>`. With both empty
//! it is 404 everywhere. A token, when set, is required on every listener.
//!
//! Also `timed`, the middleware that measures intake latency around the webhook routes.

use std::sync::Arc;
use std::time::Instant;

use poem::http::{header, HeaderValue, StatusCode};
use poem::web::Data;
use poem::{get, handler, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::web::{error_response, json_response, security};

/// `/metrics` on the server's own listeners: there only behind `metrics.token`. Answered
/// even when off (404), so the path never falls through to a page behind sign-in.
#[handler]
pub async fn on_listen(request: &Request, Data(app): Data<&Arc<App>>) -> Response {
    if app.config().metrics.token.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    answer(request, app).await
}

/// `/metrics` on `metrics.listen`.
#[handler]
pub async fn on_own_listener(request: &Request, Data(app): Data<&Arc<App>>) -> Response {
    answer(request, app).await
}

async fn answer(request: &Request, app: &App) -> Response {
    let config = app.config();
    if !config.metrics.is_enabled() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let token = config.metrics.token.expose();
    if !token.is_empty() && !bearer_matches(request, token) {
        let mut response = json_response(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({ "error": {
                "code": "unauthorized",
                "message": "send the metrics.token as \"Authorization: Bearer <token>\"",
            }}),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return response;
    }
    match crate::metrics::render(app).await {
        Ok(Some(text)) => Response::builder()
            .content_type(crate::metrics::CONTENT_TYPE)
            .body(text),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(err) => {
            tracing::error!(error = %err, detail = ?err, "metrics: cannot read the database");
            error_response(&err)
        }
    }
}

/// Whether the request's bearer token is `token`. Both are hashed first, so the comparison
/// takes the same time whatever their lengths and wherever they differ.
fn bearer_matches(request: &Request, token: &str) -> bool {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, given)| given.trim());
    let (given, token) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    bool::from(given.as_slice().ct_eq(token.as_slice()))
}

/// What `metrics.listen` serves: `/metrics` and nothing else.
pub fn routes(app: Arc<App>) -> impl Endpoint {
    Route::new()
        .at("/metrics", get(on_own_listener))
        .around(security::headers)
        .data(app)
}

/// Measures a webhook route from the handler's start to its answer, when metrics are on.
pub async fn timed<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    if !crate::metrics::is_on() {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let started = Instant::now();
    let answer = ep.call(req).await.map(IntoResponse::into_response);
    crate::metrics::intake_latency(started.elapsed());
    answer
}
