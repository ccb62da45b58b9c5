//! The delivery log: searching it (a page at a time, with product and plan names), one
//! delivery with its event and attempts, resending one; and the test email that checks the SMTP
//! settings.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::app::App;
use crate::config::SmtpConfig;
use crate::db::deliveries::{self, Attempt, Delivery, LogFilter, LogPage, LogRow};
use crate::db::events::{self, StoredEvent};
use crate::db::{catalog, integrations, now_unix};
use crate::outbox::smtp::SendError;
use crate::Error;

/// A delivery and what its page shows beside it.
pub struct DeliveryDetail {
    pub delivery: Delivery,
    /// The event it came from (gone once retention pruned it).
    pub event: Option<StoredEvent>,
    /// Every attempt at sending it, oldest first.
    pub attempts: Vec<Attempt>,
    pub names: Names,
}

/// The names of a delivery's integration, product and plan, when known (the catalog holds
/// product and plan names fetched from Stripe; an id it lacks stays an id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub integration: Option<String>,
    pub product: Option<String>,
    pub plan: Option<String>,
}

/// One row of the log page with its names.
pub struct LogEntry {
    pub row: LogRow,
    pub names: Names,
}

/// Deliveries matching `filter`, whole, newest first (the CLI's `log`).
pub async fn search(app: &App, filter: LogFilter) -> Result<Vec<Delivery>, Error> {
    app.db(move |c| deliveries::search(c, &filter)).await
}

/// One page of the log (see `deliveries::log_page`), each row with its names.
pub async fn log_page(app: &App, filter: LogFilter) -> Result<LogPage<LogEntry>, Error> {
    app.db(move |c| {
        let page = deliveries::log_page(c, &filter)?;
        let mut lookup = NameLookup::default();
        let mut rows = Vec::with_capacity(page.rows.len());
        for row in page.rows {
            let names = lookup.names(
                c,
                &row.integration_id,
                row.product_id.as_deref(),
                row.plan_id.as_deref(),
            )?;
            rows.push(LogEntry { row, names });
        }
        Ok(LogPage {
            rows,
            older: page.older,
            newer: page.newer,
            window_ended: page.window_ended,
        })
    })
    .await
}

/// Names looked up once per page: a page of 50 rows names a few products, each read once.
#[derive(Default)]
struct NameLookup {
    integrations: Option<HashMap<String, String>>,
    products: HashMap<(String, String), Option<String>>,
    plans: HashMap<(String, String), Option<String>>,
}

impl NameLookup {
    fn names(
        &mut self,
        c: &Connection,
        integration: &str,
        product: Option<&str>,
        plan: Option<&str>,
    ) -> Result<Names, Error> {
        if self.integrations.is_none() {
            let all = integrations::list(c)?;
            self.integrations = Some(all.into_iter().map(|i| (i.id, i.name)).collect());
        }
        let integration_name = self
            .integrations
            .as_ref()
            .and_then(|all| all.get(integration).cloned());
        let product = match product {
            Some(id) => {
                let key = (integration.to_owned(), id.to_owned());
                match self.products.get(&key) {
                    Some(name) => name.clone(),
                    None => {
                        let name = catalog::product_name(c, integration, id)?;
                        self.products.insert(key, name.clone());
                        name
                    }
                }
            }
            None => None,
        };
        let plan = match plan {
            Some(id) => {
                let key = (integration.to_owned(), id.to_owned());
                match self.plans.get(&key) {
                    Some(name) => name.clone(),
                    None => {
                        let name = catalog::plan(c, integration, id)?.map(|p| p.name);
                        self.plans.insert(key, name.clone());
                        name
                    }
                }
            }
            None => None,
        };
        Ok(Names {
            integration: integration_name,
            product,
            plan,
        })
    }
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
            let attempts = deliveries::attempts(c, id)?;
            let names = NameLookup::default().names(
                c,
                &delivery.integration_id,
                delivery.product_id.as_deref(),
                delivery.plan_id.as_deref(),
            )?;
            Ok(Some(DeliveryDetail {
                delivery,
                event,
                attempts,
                names,
            }))
        })
        .await?;
    found.ok_or_else(|| not_found(id))
}

/// The HTML part of a delivery as it was sent (or is to be sent); None when it has none (a
/// skipped or failed delivery that was never rendered).
pub async fn email_html(app: &App, id: i64) -> Result<Option<String>, Error> {
    let found = app
        .db(move |c| Ok(deliveries::get(c, id)?.map(|d| d.html)))
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
