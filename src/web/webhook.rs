//! `POST /webhooks/stripe/{integration_id}`: read the raw body → verify the signature → store the
//! event idempotently → answer 2xx. Nothing else happens on this path: no Stripe API call, no
//! mail. A 2xx means the event is committed to disk.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};

use crate::db::{self, events::NewEvent, events::Stored, integrations};
use crate::error::{Error, ReadBodyLimit};
use crate::server::AppState;
use crate::stripe::{envelope::Envelope, signature};
use crate::web::{error_response, json_response};

#[handler]
pub async fn receive(
    Path(integration_id): Path<String>,
    request: &Request,
    body: Body,
    Data(state): Data<&Arc<AppState>>,
) -> Response {
    match intake(state, &integration_id, request, body).await {
        Ok((envelope, stored)) => {
            let duplicate = stored == Stored::Duplicate;
            tracing::info!(
                integration = %integration_id,
                event = %envelope.id,
                event_type = %envelope.event_type,
                duplicate,
                "webhook stored"
            );
            json_response(
                StatusCode::OK,
                serde_json::json!({ "received": true, "duplicate": duplicate }),
            )
        }
        Err(err) => {
            if err.status().is_server_error() {
                tracing::error!(integration = %integration_id, error = %err, detail = ?err, "webhook not stored");
            } else {
                tracing::warn!(integration = %integration_id, code = err.code(), error = %err, "webhook refused");
            }
            error_response(&err)
        }
    }
}

async fn intake(
    state: &AppState,
    integration_id: &str,
    request: &Request,
    body: Body,
) -> Result<(Envelope, Stored), Error> {
    let limit = state.config.server.max_webhook_bytes;
    let raw = body
        .into_bytes_limit(limit)
        .await
        .map_err(|e| e.into_error(limit))?;

    let id = integration_id.to_owned();
    let integration = db::call(&state.pool, move |conn| integrations::get(conn, &id))
        .await?
        .ok_or_else(|| Error::UnknownIntegration(integration_id.to_owned()))?;

    let header = request
        .headers()
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or(""));
    signature::verify(
        header,
        &raw,
        &[integration.webhook_secret.as_str()],
        db::now_unix(),
        state.config.stripe.webhook_tolerance_secs,
    )?;

    let envelope = Envelope::parse(&raw)?;
    let payload = String::from_utf8(raw.to_vec())
        .map_err(|_| Error::NotAnEvent("body is not UTF-8".to_owned()))?;
    let stored = state
        .writer
        .store(NewEvent {
            integration_id: integration.id,
            envelope: envelope.clone(),
            payload,
        })
        .await?;
    Ok((envelope, stored))
}
