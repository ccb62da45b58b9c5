//! Integrations: the Stripe accounts this instance listens to. Adding one, changing its name,
//! sender address, signing secret or API key while keeping its id (so its webhook URL, templates
//! and log stay), and removing it in two steps: `disconnect` (stop listening, keep the history)
//! and `erase` (delete the history and the integration).

use std::time::Instant;

use crate::app::App;
use crate::db::deliveries::{DELETE_BATCH, MAX_PAUSE, MIN_PAUSE};
use crate::db::integrations::{self, ConnectedBy, Held, Holdings, Integration, LatestEvent};
use crate::stripe::api::{Credentials, StripeError};
use crate::Error;

/// What a person gives to add an integration. Text is taken as typed; `add` trims and checks it.
#[derive(Debug, Default, Clone)]
pub struct NewIntegration {
    pub name: String,
    pub webhook_secret: String,
    pub api_key: Option<String>,
    pub stripe_account: Option<String>,
    pub from_address: Option<String>,
}

/// A change to an integration; `None` leaves that part as it is. An empty `api_key` or
/// `from_address` removes it.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub name: Option<String>,
    pub webhook_secret: Option<String>,
    pub api_key: Option<String>,
    pub from_address: Option<String>,
}

pub async fn list(app: &App) -> Result<Vec<Integration>, Error> {
    app.db(integrations::list).await
}

/// An integration with what its events say: when the newest arrived, and in which mode.
#[derive(Debug, Clone)]
pub struct Overview {
    pub integration: Integration,
    /// `None`: no event received yet.
    pub latest: Option<LatestEvent>,
}

/// Every integration with its newest event, oldest integration first.
pub async fn overview(app: &App) -> Result<Vec<Overview>, Error> {
    app.db(|c| {
        let mut latest = integrations::latest_events(c)?;
        Ok(integrations::list(c)?
            .into_iter()
            .map(|integration| Overview {
                latest: latest.remove(&integration.id),
                integration,
            })
            .collect())
    })
    .await
}

/// One integration with its newest event.
pub async fn overview_of(app: &App, id: &str) -> Result<Overview, Error> {
    let key = id.to_owned();
    app.db(move |c| match integrations::get(c, &key)? {
        Some(integration) => Ok(Some(Overview {
            latest: integrations::latest_event(c, &key)?,
            integration,
        })),
        None => Ok(None),
    })
    .await?
    .ok_or_else(|| not_found(id))
}

/// What erasing the integration would delete beside its events.
pub async fn holdings(app: &App, id: &str) -> Result<Holdings, Error> {
    let key = id.to_owned();
    app.db(move |c| match integrations::get(c, &key)? {
        Some(_) => integrations::holdings(c, &key).map(Some),
        None => Ok(None),
    })
    .await?
    .ok_or_else(|| not_found(id))
}

/// An id for an integration about to be added, so its webhook URL can be shown (and given to
/// Stripe) before the signing secret Stripe makes for that URL is pasted.
pub fn new_id() -> Result<String, Error> {
    integrations::new_id()
}

pub async fn get(app: &App, id: &str) -> Result<Integration, Error> {
    let key = id.to_owned();
    app.db(move |c| integrations::get(c, &key))
        .await?
        .ok_or_else(|| not_found(id))
}

pub async fn add(app: &App, new: NewIntegration) -> Result<Integration, Error> {
    add_with_id(app, &new_id()?, new).await
}

/// Adds under an id from `new_id` (see there); a second add with the same id is a conflict.
pub async fn add_with_id(app: &App, id: &str, new: NewIntegration) -> Result<Integration, Error> {
    if !integrations::is_id(id) {
        return Err(Error::invalid(
            "id",
            "this form's webhook URL is damaged; open Add an integration again",
        ));
    }
    let id = id.to_owned();
    let name = checked_name(&new.name)?;
    let webhook_secret = checked_webhook_secret(&new.webhook_secret)?;
    let api_key = optional(new.api_key).map(checked_api_key).transpose()?;
    let from_address = optional(new.from_address)
        .map(checked_from_address)
        .transpose()?;
    let stripe_account = optional(new.stripe_account)
        .map(|acct| match acct.starts_with("acct_") {
            true => Ok(acct),
            false => Err(Error::invalid(
                "account",
                "the Stripe account id starts with acct_",
            )),
        })
        .transpose()?;
    app.db(move |c| {
        integrations::insert_with_id(
            c,
            &id,
            &integrations::NewIntegration {
                name: &name,
                webhook_secret: &webhook_secret,
                api_key: api_key.as_deref(),
                stripe_account: stripe_account.as_deref(),
                from_address: from_address.as_deref(),
            },
        )
    })
    .await
}

pub async fn update(app: &App, id: &str, changes: Changes) -> Result<Integration, Error> {
    let name = changes.name.as_deref().map(checked_name).transpose()?;
    let webhook_secret = changes
        .webhook_secret
        .as_deref()
        .map(checked_webhook_secret)
        .transpose()?;
    // Some("") removes the key or the address; None keeps it.
    let api_key = changes
        .api_key
        .map(|k| optional(Some(k)).map(checked_api_key).transpose())
        .transpose()?;
    let from_address = changes
        .from_address
        .map(|a| optional(Some(a)).map(checked_from_address).transpose())
        .transpose()?;
    let key = id.to_owned();
    let updated = app
        .db(move |c| {
            integrations::update(
                c,
                &key,
                &integrations::Update {
                    name: name.as_deref(),
                    webhook_secret: webhook_secret.as_deref(),
                    api_key: api_key.as_ref().map(|k| k.as_deref()),
                    from_address: from_address.as_ref().map(|a| a.as_deref()),
                },
            )
        })
        .await?;
    updated.ok_or_else(|| not_found(id))
}

/// Why a disconnect made here is recorded, as the dashboard shows it.
pub const DISCONNECTED_BY_YOU: &str = "you disconnected it";

/// What became of the integration's side on Stripe when it was disconnected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnStripe {
    /// Nothing of ours was there: a signing-secret integration's endpoint is the merchant's own
    /// (made in the Dashboard, or `stripe listen`), which the merchant deletes.
    NothingOfOurs,
    /// The endpoint the program had created was deleted.
    EndpointDeleted { id: String },
    /// Stripe had no such endpoint any more (deleted in the Dashboard, or by an earlier try).
    EndpointAlreadyGone { id: String },
    /// Deleting the endpoint failed: it stays on Stripe, which keeps sending to a URL that now
    /// answers 410, until the merchant deletes it in the Dashboard.
    EndpointLeft { id: String, error: String },
    /// A Connect (OAuth) integration: Stripe revoked the platform's access to its account.
    AccessRevoked { account: String },
    /// A Connect (OAuth) integration: its access stays granted on Stripe (`error` says why).
    AccessNotRevoked {
        account: Option<String>,
        error: String,
    },
}

impl OnStripe {
    /// One sentence for the person who disconnected: what happened on Stripe, and what is left
    /// for them to do there.
    pub fn describe(&self) -> String {
        match self {
            OnStripe::NothingOfOurs => "the webhook endpoint is your own: delete it in the Stripe \
                Dashboard (Developers → Webhooks), or stop `stripe listen`"
                .into(),
            OnStripe::EndpointDeleted { id } => format!("webhook endpoint {id} deleted"),
            OnStripe::EndpointAlreadyGone { id } => {
                format!("webhook endpoint {id} was already deleted")
            }
            OnStripe::EndpointLeft { id, error } => format!(
                "webhook endpoint {id} could not be deleted ({error}): delete it in the Stripe \
                 Dashboard (Developers → Webhooks)"
            ),
            OnStripe::AccessRevoked { account } => {
                format!("access to account {account} was revoked")
            }
            OnStripe::AccessNotRevoked { account, error } => format!(
                "access to account {} is still granted ({error}): revoke it in the Stripe \
                 Dashboard (Settings → Connected accounts)",
                account.as_deref().unwrap_or("(unknown)")
            ),
        }
    }
}

/// What `disconnect` did.
#[derive(Debug, Clone)]
pub struct Disconnection {
    /// As it is now: not listening, no secret, key or token left.
    pub integration: Integration,
    pub on_stripe: OnStripe,
    /// It was disconnected before (by a person, or by Stripe revoking access): nothing changed.
    pub already: bool,
}

/// Stops listening to an integration: deletes the webhook endpoint the program created on
/// Stripe (when it did), then forgets its key, secret, tokens and endpoint, so its webhook URL
/// answers 410 Gone. Its events, delivery log, catalog and templates stay (retention still
/// applies) until `erase`. A failure on Stripe's side does not stop the disconnect, since the
/// person asked to stop listening: it is reported in `on_stripe` instead.
pub async fn disconnect(app: &App, id: &str) -> Result<Disconnection, Error> {
    let before = get(app, id).await?;
    if !before.is_listening() {
        return Ok(Disconnection {
            integration: before,
            on_stripe: OnStripe::NothingOfOurs,
            already: true,
        });
    }
    let on_stripe = match before.connected_by {
        ConnectedBy::SigningSecret | ConnectedBy::ApiKey => match &before.endpoint {
            Some(endpoint) => delete_endpoint(app, &before, &endpoint.id).await,
            None => OnStripe::NothingOfOurs,
        },
        // Stripe's `POST /oauth/deauthorize`; a refusal leaves the access granted, and says so.
        ConnectedBy::OAuth => match (
            crate::manage::oauth::deauthorize(app, &before).await,
            &before.stripe_account,
        ) {
            (Ok(()), Some(account)) => OnStripe::AccessRevoked {
                account: account.clone(),
            },
            (Ok(()), None) => OnStripe::NothingOfOurs,
            (Err(e), account) => {
                tracing::warn!(integration = %before.id, error = %e, "access not revoked on Stripe");
                OnStripe::AccessNotRevoked {
                    account: account.clone(),
                    error: e.public_message(),
                }
            }
        },
    };
    let key = id.to_owned();
    let integration = app
        .db(move |c| integrations::disconnect(c, &key, DISCONNECTED_BY_YOU))
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Disconnection {
        integration,
        on_stripe,
        already: false,
    })
}

/// Deletes the endpoint the program created; 404 means it is gone already, which is the aim.
async fn delete_endpoint(app: &App, integration: &Integration, endpoint: &str) -> OnStripe {
    let id = endpoint.to_owned();
    let Some(creds) = Credentials::of(integration) else {
        return OnStripe::EndpointLeft {
            id,
            error: "the integration has no API key left to delete it with".into(),
        };
    };
    match app
        .stripe()
        .delete(&creds, &["webhook_endpoints", endpoint])
        .await
    {
        Ok(_) => OnStripe::EndpointDeleted { id },
        Err(StripeError::NotFound { .. }) => OnStripe::EndpointAlreadyGone { id },
        Err(e) => {
            tracing::warn!(integration = %integration.id, endpoint = %id, error = %e, "webhook endpoint not deleted on Stripe");
            OnStripe::EndpointLeft {
                id,
                error: e.to_string(),
            }
        }
    }
}

/// How many busy timeouts in a row one erase batch sits out before the erase gives up (each
/// `database.busy_timeout_ms`, 5 s by default): a minute of a database that never frees up.
const ERASE_PATIENCE: u32 = 12;

/// What `erase` deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    pub name: String,
    pub events: usize,
    pub deliveries: usize,
    pub products: usize,
    pub plans: usize,
    /// Templates of its own, gone with it by cascade (shared templates stay).
    pub templates: i64,
}

/// Deletes a disconnected integration with everything it holds: its deliveries, events and
/// catalog, then its row (its own templates go by cascade). A connected one is a conflict:
/// `disconnect` it first.
///
/// The rows go in batches of `DELETE_BATCH`, each its own short transaction on a connection
/// taken for that batch only, with an async pause between them as long as the batch took (see
/// `deliveries::delete_in_batches` for why): webhook intake takes the write lock in between, so
/// erasing a large history never holds up another integration's webhooks.
pub async fn erase(app: &App, id: &str) -> Result<Erased, Error> {
    let integration = get(app, id).await?;
    if integration.is_listening() {
        return Err(integrations::still_connected(&integration));
    }
    let mut erased = Erased {
        name: integration.name,
        ..Erased::default()
    };
    for held in Held::ALL {
        let total = match held {
            Held::Deliveries => &mut erased.deliveries,
            Held::Events => &mut erased.events,
            Held::Plans => &mut erased.plans,
            Held::Products => &mut erased.products,
        };
        loop {
            let started = Instant::now();
            let key = id.to_owned();
            let deleted = patiently(|| {
                let (key, turns) = (key.clone(), app.write_turns.clone());
                app.db(move |c| {
                    let _turn = turns.background_turn();
                    integrations::erase_batch(c, &key, held)
                })
            })
            .await?;
            *total += deleted;
            if deleted < DELETE_BATCH {
                break;
            }
            tokio::time::sleep(started.elapsed().clamp(MIN_PAUSE, MAX_PAUSE)).await;
        }
    }
    let key = id.to_owned();
    erased.templates = patiently(|| {
        let key = key.clone();
        app.db(move |c| integrations::erase(c, &key))
    })
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(erased)
}

/// Runs one step of an erase; when intake and the processor kept the write lock for a whole
/// busy timeout, they go first and the step is tried again after a pause, up to
/// `ERASE_PATIENCE` times in a row.
async fn patiently<T, F>(step: impl Fn() -> F) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    let mut waited = 0;
    loop {
        match step().await {
            Err(Error::DatabaseUnavailable(_)) if waited < ERASE_PATIENCE => {
                waited += 1;
                tokio::time::sleep(MAX_PAUSE).await;
            }
            done => return done,
        }
    }
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::NotFound {
        what: "integration",
        id: id.to_owned(),
    }
}

pub(crate) fn optional(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(crate) fn checked_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    match name.chars().count() {
        0 => Err(Error::invalid(
            "name",
            "give the integration a name you recognise, e.g. your shop's",
        )),
        n if n > 100 => Err(Error::invalid("name", "keep the name under 100 characters")),
        _ if name.chars().any(char::is_control) => Err(Error::invalid(
            "name",
            "the name cannot contain control characters",
        )),
        _ => Ok(name.to_owned()),
    }
}

fn checked_webhook_secret(secret: &str) -> Result<String, Error> {
    let secret = secret.trim();
    if !secret.starts_with("whsec_") || secret.len() < 10 || secret.chars().any(char::is_whitespace)
    {
        return Err(Error::invalid(
            "webhook_secret",
            "the webhook signing secret starts with whsec_ (Stripe Dashboard → Developers → \
             Webhooks → your endpoint → Signing secret, or `stripe listen --print-secret`)",
        ));
    }
    Ok(secret.to_owned())
}

pub(crate) fn checked_api_key(key: String) -> Result<String, Error> {
    if key.starts_with("pk_") {
        return Err(Error::invalid(
            "api_key",
            "this is a publishable key (pk_…), which cannot read customers: use a restricted \
             key (rk_…) or a secret key (sk_…)",
        ));
    }
    if !(key.starts_with("sk_") || key.starts_with("rk_")) || key.chars().any(char::is_whitespace) {
        return Err(Error::invalid(
            "api_key",
            "the API key is a secret (sk_…) or restricted (rk_…) Stripe key",
        ));
    }
    Ok(key)
}

pub(crate) fn checked_from_address(address: String) -> Result<String, Error> {
    match crate::outbox::smtp::is_address(&address) {
        true => Ok(address),
        false => Err(Error::invalid(
            "from_address",
            format!("{address:?} is not an email address"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_field() {
        let field = |r: Result<String, Error>| r.unwrap_err().field();
        assert_eq!(field(checked_name("  ")), Some("name"));
        assert_eq!(
            field(checked_webhook_secret("sk_test_x")),
            Some("webhook_secret")
        );
        assert_eq!(
            field(checked_api_key("pk_live_123".into())),
            Some("api_key")
        );
        assert_eq!(
            field(checked_from_address("nope".into())),
            Some("from_address")
        );
        assert_eq!(checked_name(" Rosen Goods ").unwrap(), "Rosen Goods");
    }
}
