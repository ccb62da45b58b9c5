//! `POST /webhooks/stripe/{integration_id}`: look up the integration → read the raw body →
//! verify the signature → store the event idempotently → answer 2xx. Nothing else happens on
//! this path: no Stripe API call, no mail. A 2xx means the event is committed to disk.
//!
//! The cheap refusals come before the body is read (an unknown integration is 404, a
//! disconnected one 410 Gone, a declared `Content-Length` over the limit 413), so a flood of
//! bodies nobody will store costs no memory; the body itself must arrive within
//! `server.body_timeout_secs` (408).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::{header, HeaderValue, StatusCode};
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};

use crate::app::App;
use crate::db::integrations::{self, Integration};
use crate::db::writer::{Arriving, EventWriter};
use crate::db::{self, events::NewEvent, events::Stored};
use crate::error::{Error, ReadBodyLimit};
use crate::stripe::{envelope::Envelope, signature};
use crate::web::{error_response, for_log, json_response, truncated};

/// What intake holds beside the `App`: the one writer, and integrations it looked up recently.
pub struct Intake {
    pub(crate) writer: EventWriter,
    /// Integrations recently looked up, with when (see `find_integration`).
    integrations: Mutex<HashMap<String, (Instant, Lookup)>>,
}

/// One lookup of an integration, shared by every request for it while it runs and then for
/// `INTEGRATION_TTL`: when the memo expires in a storm, one request reads the database and the
/// others wait for its answer, rather than each taking a blocking thread for the same row.
type Lookup = Arc<tokio::sync::OnceCell<Option<Integration>>>;

impl Intake {
    pub fn new(writer: EventWriter) -> Intake {
        Intake {
            writer,
            integrations: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets what intake remembers of an integration, so a change made in this process (a
    /// replaced signing secret, a removal) holds from the next webhook on.
    pub fn forget(&self, integration_id: &str) {
        self.integrations
            .lock()
            .expect("memo")
            .remove(integration_id);
    }
}

#[handler]
pub async fn receive(
    Path(integration_id): Path<String>,
    request: &Request,
    body: Body,
    Data(app): Data<&Arc<App>>,
    Data(state): Data<&Arc<Intake>>,
) -> Response {
    let config = app.config();
    let body_deadline =
        tokio::time::Instant::now() + Duration::from_secs(config.server.body_timeout_secs);
    match intake(
        app,
        state,
        &config,
        &integration_id,
        request,
        body,
        body_deadline,
    )
    .await
    {
        Ok((envelope, stored)) => {
            crate::metrics::webhook_stored(&integration_id, stored);
            let duplicate = stored == Stored::Duplicate;
            tracing::info!(
                integration = %for_log(&integration_id),
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
            crate::metrics::webhook_refused(&integration_id, &err);
            if err.status().is_server_error() {
                tracing::error!(integration = %for_log(&integration_id), error = %err, detail = ?err, "webhook not stored");
            } else {
                tracing::warn!(integration = %for_log(&integration_id), code = err.code(), error = %err, "webhook refused");
            }
            let mut response = error_response(&err);
            // These refusals leave the body unread (or half read), so the connection cannot carry
            // another request: saying so keeps a client from sending its next request down a
            // connection the server is about to close.
            if matches!(
                err,
                Error::UnknownIntegration(_)
                    | Error::IntegrationDisconnected(_)
                    | Error::PayloadTooLarge { .. }
                    | Error::BodyTimeout { .. }
            ) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

/// How long a looked-up integration is trusted before it is read again; bounds how late a change
/// made with the CLI (another process) is seen.
const INTEGRATION_TTL: Duration = Duration::from_secs(1);

/// The integration, from a short-lived memo or the database (one read at a time per id, see
/// `Lookup`). Unknown ids are not remembered, so requests with made-up ids cannot grow it.
async fn find_integration(app: &App, state: &Intake, id: &str) -> Result<Integration, Error> {
    let lookup = {
        let mut memo = state.integrations.lock().expect("memo");
        match memo.get(id) {
            Some((at, lookup)) if at.elapsed() < INTEGRATION_TTL => lookup.clone(),
            _ => {
                memo.retain(|_, (at, _)| at.elapsed() < INTEGRATION_TTL);
                let lookup = Lookup::default();
                memo.insert(id.to_owned(), (Instant::now(), lookup.clone()));
                lookup
            }
        }
    };
    // A failed read leaves the cell empty: the next request waiting on it reads again.
    let found = lookup
        .get_or_try_init(|| {
            let key = id.to_owned();
            app.db(move |conn| integrations::get(conn, &key))
        })
        .await?;
    match found {
        Some(integration) => Ok(integration.clone()),
        None => {
            let mut memo = state.integrations.lock().expect("memo");
            if memo.get(id).is_some_and(|(_, l)| Arc::ptr_eq(l, &lookup)) {
                memo.remove(id);
            }
            Err(Error::UnknownIntegration(truncated(id)))
        }
    }
}

async fn intake(
    app: &App,
    state: &Intake,
    config: &crate::Config,
    integration_id: &str,
    request: &Request,
    body: Body,
    body_deadline: tokio::time::Instant,
) -> Result<(Envelope, Stored), Error> {
    let integration = find_integration(app, state, integration_id).await?;
    if !integration.is_listening() {
        // Stripe counts a 410 as a failed delivery and, after enough of them, disables the
        // endpoint: the right end for an endpoint nobody listens to any more.
        return Err(Error::IntegrationDisconnected(truncated(integration_id)));
    }

    let (envelope, payload, arriving) = read_verified(
        config,
        request,
        body,
        body_deadline,
        integration.webhook_secret.expose(),
        &state.writer,
    )
    .await?;
    let stored = state
        .writer
        .store(
            NewEvent::new(integration.id, envelope.clone(), &payload),
            Some(arriving),
        )
        .await?;
    Ok((envelope, stored))
}

/// The body of a webhook, read within the bounds (a declared length over
/// `server.max_webhook_bytes` refused before reading, the whole body within the deadline),
/// verified against `secret` on its raw bytes, then parsed: the envelope and the exact text to
/// store, with the webhook counted as on its way to `writer` from when its body is read.
/// Shared by the per-integration route and the platform's Connect route.
pub(crate) async fn read_verified(
    config: &crate::Config,
    request: &Request,
    body: Body,
    deadline: tokio::time::Instant,
    secret: &str,
    writer: &EventWriter,
) -> Result<(Envelope, String, Arriving), Error> {
    let limit = config.server.max_webhook_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let raw = tokio::time::timeout_at(deadline, body.into_bytes_limit(limit))
        .await
        .map_err(|_| Error::BodyTimeout {
            secs: config.server.body_timeout_secs,
        })?
        .map_err(|e| e.into_error(limit))?;
    let arriving = writer.arriving();

    let header = request
        .headers()
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or(""));
    signature::verify(
        header,
        &raw,
        &[secret],
        db::now_unix(),
        config.stripe.webhook_tolerance_secs,
    )?;

    let envelope = Envelope::parse(&raw)?;
    let payload = String::from_utf8(raw.to_vec())
        .map_err(|_| Error::NotAnEvent("body is not UTF-8".to_owned()))?;
    Ok((envelope, payload, arriving))
}
