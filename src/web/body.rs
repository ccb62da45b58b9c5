//! Bounds on what a page's request may send: the whole body read up front, within the same
//! deadline and a small size cap, so a client trickling a form (or sending a huge one) holds a
//! connection only briefly and no memory to speak of. Webhook intake has its own bounds.

use std::time::Duration;

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response, Result};

use crate::error::ReadBodyLimit;
use crate::web::layout;

/// Forms here are a few fields; a template body (part 2) is the largest thing a page takes.
pub const MAX_FORM_BYTES: usize = 1024 * 1024;

pub async fn bounded<E: Endpoint>(ep: E, mut req: Request, deadline: Duration) -> Result<Response> {
    let body = req.take_body();
    let read = tokio::time::timeout(deadline, body.into_bytes_limit(MAX_FORM_BYTES)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let err = e.into_error(MAX_FORM_BYTES);
            return Ok(refusal(err.status(), &err.public_message()));
        }
        Err(_) => {
            let message = format!("the request did not arrive within {} s", deadline.as_secs());
            return Ok(refusal(StatusCode::REQUEST_TIMEOUT, &message));
        }
    };
    req.set_body(bytes);
    Ok(ep.call(req).await?.into_response())
}

/// The body was left unread or half read, so the connection cannot carry another request.
fn refusal(status: StatusCode, message: &str) -> Response {
    let mut response = layout::error_page(status, message, None);
    response.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    response
}
