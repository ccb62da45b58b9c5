//! `POST /webhooks/stripe/connect`: the platform's Connect endpoint, where Stripe sends the
//! events of every connected account. Read the raw body → verify it with
//! `stripe.connect.webhook_secret` → route it by the envelope's `account` to the integration
//! connected to that account → store it through the same writer as the per-integration route →
//! answer 2xx. No Stripe API call and no mail on this path.
//!
//! An event for an account no listening integration owns (one connected to the platform some
//! other way, or disconnected here) is acknowledged, so Stripe stops retrying it, counted
//! (`manage::oauth::unrouted_events`) and logged with its account and type, and not stored.
//!
//! `account.application.deauthorized` also disconnects its integration here, right after the
//! event is stored: the account revoked access, and nothing should use its token or take its
//! events meanwhile, however busy the processor is (which records the same when it reaches
//! the event).

use std::sync::Arc;
use std::time::Duration;

use poem::http::{header, HeaderValue, StatusCode};
use poem::web::Data;
use poem::{handler, Body, Request, Response};

use crate::app::App;
use crate::db::events::{NewEvent, Stored};
use crate::db::integrations;
use crate::error::Error;
use crate::stripe::envelope::Envelope;
use crate::web::webhook::{read_verified, Intake};
use crate::web::{error_response, for_log, json_response};

/// What became of one verified event.
enum Routed {
    Stored {
        integration: String,
        stored: Stored,
    },
    /// No listening integration owns its account.
    Unowned,
}

#[handler]
pub async fn receive(
    request: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
    Data(intake): Data<&Arc<Intake>>,
) -> Response {
    let config = app.config();
    if !config.stripe.connect.is_configured() {
        let mut response = json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": {
                "code": "connect_not_configured",
                "message": "Connect is not configured on this server: set stripe.connect.client_id, \
                            secret_key and webhook_secret, or send events to \
                            /webhooks/stripe/{integration id}",
            }}),
        );
        close(&mut response);
        return response;
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(config.server.body_timeout_secs);
    match route(app, intake, &config, request, body, deadline).await {
        Ok((
            envelope,
            Routed::Stored {
                integration,
                stored,
            },
        )) => {
            crate::metrics::webhook_stored(&integration, stored);
            let duplicate = stored == Stored::Duplicate;
            tracing::info!(
                integration = %integration,
                account = %for_log(envelope.account.as_deref().unwrap_or("")),
                event = %envelope.id,
                event_type = %envelope.event_type,
                duplicate,
                "connect webhook stored"
            );
            json_response(
                StatusCode::OK,
                serde_json::json!({ "received": true, "duplicate": duplicate }),
            )
        }
        Ok((envelope, Routed::Unowned)) => {
            crate::metrics::webhook_unrouted();
            let unrouted = crate::manage::oauth::count_unrouted();
            tracing::warn!(
                account = %for_log(envelope.account.as_deref().unwrap_or("(none)")),
                event = %for_log(&envelope.id),
                event_type = %for_log(&envelope.event_type),
                unrouted,
                "connect webhook for an account no integration listens for: acknowledged, not stored"
            );
            json_response(
                StatusCode::OK,
                serde_json::json!({ "received": true, "stored": false }),
            )
        }
        Err(err) => {
            crate::metrics::webhook_refused(crate::metrics::CONNECT, &err);
            if err.status().is_server_error() {
                tracing::error!(error = %err, detail = ?err, "connect webhook not stored");
            } else {
                tracing::warn!(code = err.code(), error = %err, "connect webhook refused");
            }
            let mut response = error_response(&err);
            if matches!(
                err,
                Error::PayloadTooLarge { .. } | Error::BodyTimeout { .. }
            ) {
                close(&mut response);
            }
            response
        }
    }
}

/// The body was left unread (or half read): the connection cannot carry another request.
fn close(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

async fn route(
    app: &App,
    intake: &Intake,
    config: &crate::Config,
    request: &Request,
    body: Body,
    deadline: tokio::time::Instant,
) -> Result<(Envelope, Routed), Error> {
    // The same bounds and check as the per-integration route, with the platform's secret.
    let (envelope, payload, arriving) = read_verified(
        config,
        request,
        body,
        deadline,
        config.stripe.connect.webhook_secret.expose(),
        &intake.writer,
    )
    .await?;

    let Some(account) = envelope.account.clone() else {
        return Ok((envelope, Routed::Unowned));
    };
    let owner = app
        .db(move |c| integrations::by_account(c, &account))
        .await?
        .filter(|i| i.is_listening());
    let Some(owner) = owner else {
        return Ok((envelope, Routed::Unowned));
    };
    let stored = intake
        .writer
        .store(
            NewEvent::new(owner.id.clone(), envelope.clone(), &payload),
            Some(arriving),
        )
        .await?;
    if envelope.event_type == "account.application.deauthorized" {
        let (id, account) = (
            owner.id.clone(),
            envelope.account.clone().unwrap_or_default(),
        );
        let reason = format!("Stripe account {account} revoked access; emails for it stop");
        app.db(move |c| integrations::disconnect(c, &id, &reason))
            .await?;
        intake.forget(&owner.id);
    }
    Ok((
        envelope,
        Routed::Stored {
            integration: owner.id,
            stored,
        },
    ))
}
