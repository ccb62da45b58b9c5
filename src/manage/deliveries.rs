//! The delivery log: searching it, one delivery with its event, resending one; and the test
//! email that checks the SMTP settings.

use crate::app::App;
use crate::config::SmtpConfig;
use crate::db::deliveries::{self, Delivery, LogFilter};
use crate::db::events::{self, StoredEvent};
use crate::db::now_unix;
use crate::outbox::smtp::SendError;
use crate::Error;

/// A delivery and the event it came from (gone once retention pruned it).
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub event: Option<StoredEvent>,
}

/// Deliveries matching `filter`, newest first.
pub async fn search(app: &App, filter: LogFilter) -> Result<Vec<Delivery>, Error> {
    app.db(move |c| deliveries::search(c, &filter)).await
}

pub async fn get(app: &App, id: i64) -> Result<DeliveryDetail, Error> {
    let found = app
        .db(move |c| {
            let Some(delivery) = deliveries::get(c, id)? else {
                return Ok(None);
            };
            let event = match delivery.event_id {
                Some(event_id) => events::get_by_id(c, event_id)?,
                None => None,
            };
            Ok(Some(DeliveryDetail { delivery, event }))
        })
        .await?;
    found.ok_or_else(|| not_found(id))
}

/// Queues a delivery again as a new one (the old stays in the log as it was) and wakes the
/// sender, so a running server sends it at once. Returns the new delivery's id.
pub async fn resend(app: &App, id: i64) -> Result<i64, Error> {
    let new = app
        .db(move |c| deliveries::resend(c, id, now_unix()))
        .await?
        .ok_or_else(|| not_found(id))?;
    app.wake_sender.notify_one();
    Ok(new)
}

/// How the relay took a test email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestEmail {
    /// The relay's reply and the Message-ID, on one line.
    Accepted(String),
    /// Why it failed and, when known, the likely fix.
    Refused {
        error: String,
        likely_fix: Option<String>,
    },
}

/// Sends one short email to `to` with the SMTP settings in effect now and reports what the relay
/// said. Without a relay configured, `Error::Invalid` of `smtp`.
pub async fn send_test_email(app: &App, to: &str) -> Result<TestEmail, Error> {
    let (smtp, to) = test_relay(app, to)?;
    Ok(test_reply(
        crate::outbox::smtp::send_test_email(&smtp, &to).await,
    ))
}

/// The SMTP settings in effect and `to` trimmed, when a test email can be sent to it now:
/// `Error::Invalid` of `to` for what is not an address, of `smtp` without a relay.
pub(crate) fn test_relay(app: &App, to: &str) -> Result<(SmtpConfig, String), Error> {
    let to = to.trim().to_owned();
    if !crate::outbox::smtp::is_address(&to) {
        return Err(Error::invalid(
            "to",
            format!("{to:?} is not an email address"),
        ));
    }
    let smtp = app.config().smtp.clone();
    if !smtp.is_configured() {
        return Err(Error::invalid(
            "smtp",
            "smtp.host is not set: configure SMTP under Settings (or the [smtp] section of the \
             config, or MMC_SMTP__HOST) first",
        ));
    }
    Ok((smtp, to))
}

/// What the relay said to a test email, as the pages show it.
pub(crate) fn test_reply(sent: Result<String, (SendError, Option<String>)>) -> TestEmail {
    match sent {
        Ok(line) => TestEmail::Accepted(line),
        Err((error, likely_fix)) => TestEmail::Refused {
            error: error.message().to_owned(),
            likely_fix,
        },
    }
}

fn not_found(id: i64) -> Error {
    Error::NotFound {
        what: "delivery",
        id: id.to_string(),
    }
}
