//! Connect with Stripe (Connect OAuth), for an operator who runs a Connect platform: starting
//! the flow, finishing it when Stripe sends the merchant back, and revoking the platform's
//! access when an OAuth integration is disconnected. `stripe::connect` speaks to Stripe; this
//! module keeps the `state` values and writes the integration.
//!
//! A flow's `state` is 32 random bytes, bound to the signed-in session that started it (by a
//! hash of its CSRF token), good once and for ten minutes. They are kept in this process's
//! memory only: a restart between "Connect with Stripe" and Stripe's callback makes the
//! callback refuse its state as unknown, and the merchant clicks the button again (nothing was
//! connected, and the code Stripe issued expires unused).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::app::App;
use crate::db::integrations::{self, ConnectedBy, Integration, Link, NewIntegration};
use crate::manage::catalog::{self, Refreshed};
use crate::stripe::api::Credentials;
use crate::stripe::connect::{Connect, ConnectError, Grant};
use crate::{Config, Error};

/// Where Stripe sends the merchant back; give Stripe `server.public_url` + this as the
/// redirect URI.
pub const CALLBACK_PATH: &str = "/integrations/connect/callback";

/// How long a started flow may take on Stripe's pages.
const STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// Flows pending at once, at most; past it the oldest is dropped, so a script pressing the
/// button cannot grow the memory without bound.
const MAX_PENDING: usize = 1024;

struct Pending {
    session: [u8; 32],
    /// The integration whose card started the flow; `None`: a new one.
    integration: Option<String>,
    started: Instant,
}

fn pending() -> &'static Mutex<HashMap<String, Pending>> {
    static PENDING: OnceLock<Mutex<HashMap<String, Pending>>> = OnceLock::new();
    PENDING.get_or_init(Default::default)
}

fn session_key(csrf: &str) -> [u8; 32] {
    Sha256::digest(csrf.as_bytes()).into()
}

/// Whether "Connect with Stripe" is offered.
pub fn is_configured(config: &Config) -> bool {
    config.stripe.connect.is_configured()
}

/// The origin of Stripe's authorize page when Connect is configured (`https://connect.stripe.com`).
/// "Connect with Stripe" is a form whose answer redirects there, and browsers check a page's
/// `form-action` along that redirect, so our pages' policy allows this one origin besides our own.
pub fn form_target(config: &Config) -> Option<String> {
    if !is_configured(config) {
        return None;
    }
    let origin = reqwest::Url::parse(&config.stripe.connect.authorize_url)
        .ok()?
        .origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The platform's client, sending merchants back to this server's callback.
fn client(config: &Config) -> Result<Connect, Error> {
    if !is_configured(config) {
        return Err(Error::invalid(
            "connect",
            "Connect with Stripe is not set up on this server: the operator sets \
             stripe.connect.client_id, secret_key and webhook_secret (see config.example.toml)",
        ));
    }
    Connect::new(
        &config.stripe.connect,
        &format!("{}{CALLBACK_PATH}", config.base_url()),
    )
    .map_err(|e| Error::Config(e.to_string()))
}

/// Starts a flow for the session whose CSRF token is `csrf`, to connect a new integration or
/// (`integration`) to change the account an existing one is connected to. Returns Stripe's
/// authorize URL to send the browser to.
pub async fn start(app: &App, csrf: &str, integration: Option<&str>) -> Result<String, Error> {
    let config = app.config();
    let connect = client(&config)?;
    if let Some(id) = integration {
        crate::manage::integrations::get(app, id).await?;
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    let state = hex::encode(random);
    {
        let mut pending = pending().lock().expect("pending flows");
        pending.retain(|_, p| p.started.elapsed() < STATE_TTL);
        if pending.len() >= MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            state.clone(),
            Pending {
                session: session_key(csrf),
                integration: integration.map(str::to_owned),
                started: Instant::now(),
            },
        );
    }
    Ok(connect.authorize_url(&state).to_string())
}

/// What Stripe's redirect back carries: `code` and `state`, or `error` and
/// `error_description` when the merchant denied access or Stripe refused.
#[derive(Debug, Default, Clone)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A finished flow: the integration as now connected, whether it is new, and how reading its
/// catalog went (the connection stands either way).
pub struct Connected {
    pub integration: Integration,
    pub created: bool,
    pub catalog: Result<Refreshed, Error>,
}

/// Finishes a flow: checks the state (this session's, unused, not expired), Stripe's answer,
/// exchanges the code, names the account, stores the link and reads the catalog.
pub async fn finish(app: &App, csrf: &str, callback: Callback) -> Result<Connected, Error> {
    let flow = take_state(csrf, callback.state.as_deref())?;
    if let Some(code) = &callback.error {
        let description = callback
            .error_description
            .as_deref()
            .unwrap_or("no description given");
        let message = match code.as_str() {
            "access_denied" => format!(
                "Nothing was connected: access was denied on Stripe's page ({description}). \
                 Click Connect with Stripe again and choose to connect the account."
            ),
            _ => format!(
                "Stripe did not connect the account ({code}: {description}). Check the \
                 platform's Connect settings (stripe.connect) and try again."
            ),
        };
        return Err(Error::invalid("stripe", truncated(&message)));
    }
    let Some(code) = callback.code.filter(|c| !c.is_empty()) else {
        return Err(Error::invalid(
            "code",
            "Stripe's answer carried no authorization code: click Connect with Stripe again",
        ));
    };
    let config = app.config();
    let grant = client(&config)?
        .exchange(&code)
        .await
        .map_err(exchange_failed)?;
    let account_name = account_name(app, &grant).await;
    let (integration, created) = store(app, flow.integration, &grant, account_name).await?;
    tracing::info!(
        integration = %integration.id,
        account = %grant.stripe_user_id,
        livemode = grant.livemode,
        scope = grant.scope.as_deref().unwrap_or(""),
        "connected with Stripe"
    );
    let catalog = catalog::refresh(app, &integration.id).await;
    Ok(Connected {
        integration,
        created,
        catalog,
    })
}

/// Revokes the platform's access to an OAuth integration's account (its Disconnect). Stripe
/// then sends `account.application.deauthorized`, which finds it disconnected already.
pub async fn deauthorize(app: &App, integration: &Integration) -> Result<(), Error> {
    let Some(account) = &integration.stripe_account else {
        return Ok(());
    };
    let connect = client(&app.config())?;
    connect.deauthorize(account).await.map_err(|e| {
        Error::invalid(
            "stripe",
            format!("Stripe did not revoke this server's access to {account}: {e}"),
        )
    })
}

/// Events that reached the Connect endpoint for an account no listening integration owns,
/// since this process started (acknowledged so Stripe stops retrying, not stored).
pub fn unrouted_events() -> u64 {
    UNROUTED.load(Ordering::Relaxed)
}

static UNROUTED: AtomicU64 = AtomicU64::new(0);

/// Counts one event `unrouted_events` reports.
pub fn count_unrouted() -> u64 {
    UNROUTED.fetch_add(1, Ordering::Relaxed) + 1
}

/// The pending flow `state` names, removed so it is used once, if it belongs to this session
/// and has not expired.
fn take_state(csrf: &str, state: Option<&str>) -> Result<Pending, Error> {
    let refused = || {
        Error::invalid(
            "state",
            "This answer from Stripe does not belong to a Connect with Stripe started in this \
             sign-in, or it was used already or is older than ten minutes (or the server \
             restarted meanwhile). Nothing was connected: click Connect with Stripe again.",
        )
    };
    let state = state.filter(|s| !s.is_empty()).ok_or_else(refused)?;
    let mut pending = pending().lock().expect("pending flows");
    let belongs = pending.get(state).is_some_and(|p| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            &p.session[..],
            &session_key(csrf)[..],
        ))
    });
    if !belongs {
        return Err(refused());
    }
    let flow = pending.remove(state).expect("checked above");
    if flow.started.elapsed() >= STATE_TTL {
        return Err(refused());
    }
    Ok(flow)
}

fn exchange_failed(e: ConnectError) -> Error {
    let message = match &e {
        ConnectError::Refused { code, .. } if code == "invalid_grant" => format!(
            "Stripe refused the authorization code ({e}). Codes are good once and for a few \
             minutes: click Connect with Stripe again."
        ),
        ConnectError::Refused { .. } => format!(
            "Stripe refused to connect the account ({e}). Check stripe.connect.client_id and \
             secret_key: they must be the same platform's, in the same mode."
        ),
        ConnectError::Network(_) | ConnectError::Invalid(_) | ConnectError::Config(_) => {
            format!("The code exchange with Stripe failed ({e}). Try Connect with Stripe again.")
        }
    };
    Error::invalid("stripe", truncated(&message))
}

/// Text that came from Stripe (or a request) is shown, but not without bound.
fn truncated(message: &str) -> String {
    const MAX_CHARS: usize = 600;
    match message.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_owned(),
    }
}

/// The account's name as its own token reads it (`GET /v1/account`): the Dashboard's display
/// name, the business name, or its email. `None` when the read fails; the card then shows the
/// account id alone.
async fn account_name(app: &App, grant: &Grant) -> Option<String> {
    let creds = Credentials {
        api_key: grant.access_token.expose(),
        account: None,
    };
    match app.stripe().get(&creds, "account").await {
        Ok(account) => [
            &account["settings"]["dashboard"]["display_name"],
            &account["business_profile"]["name"],
            &account["email"],
        ]
        .into_iter()
        .filter_map(|v| v.as_str())
        .map(crate::trigger::clean_text)
        .find(|name| !name.trim().is_empty()),
        Err(e) => {
            tracing::warn!(account = %grant.stripe_user_id, error = %e, "could not read the connected account's name");
            None
        }
    }
}

/// Links the account: to the integration whose card started the flow, else to the one that
/// had this account before (connected again), else to a new integration named after it.
async fn store(
    app: &App,
    started_from: Option<String>,
    grant: &Grant,
    account_name: Option<String>,
) -> Result<(Integration, bool), Error> {
    let grant = grant.clone();
    app.db(move |conn| {
        let tx = conn.unchecked_transaction()?;
        let account = grant.stripe_user_id.as_str();
        let owner = integrations::by_account(&tx, account)?;
        let (id, created) = match (started_from, owner) {
            (Some(id), Some(owner)) if owner.id != id && owner.is_listening() => {
                return Err(Error::Conflict {
                    field: "stripe",
                    message: format!(
                        "The Stripe account {account} is already connected as “{}”: disconnect \
                         it there first, or keep using that integration",
                        owner.name
                    ),
                })
            }
            (Some(id), _) => (id, false),
            (None, Some(owner)) => (owner.id, false),
            (None, None) => {
                let base = account_name.clone().unwrap_or_else(|| account.to_owned());
                let mut inserted = None;
                for name in [base.clone(), format!("{base} ({account})")] {
                    let new = NewIntegration {
                        name: &name,
                        webhook_secret: "",
                        api_key: None,
                        stripe_account: Some(account),
                        from_address: None,
                    };
                    match integrations::insert(&tx, &new) {
                        Ok(i) => {
                            inserted = Some(i.id);
                            break;
                        }
                        Err(Error::Conflict { field: "name", .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let id = inserted.ok_or_else(|| Error::Conflict {
                    field: "name",
                    message: format!(
                        "integrations named “{base}” exist already: rename one, then connect again"
                    ),
                })?;
                (id, true)
            }
        };
        let linked = integrations::set_link(
            &tx,
            &id,
            &Link {
                connected_by: ConnectedBy::OAuth,
                webhook_secret: "",
                api_key: None,
                stripe_account: Some(account),
                endpoint_id: None,
                endpoint_status: None,
                account_name: account_name.as_deref(),
                livemode: Some(grant.livemode),
                oauth_access_token: Some(grant.access_token.expose()),
                oauth_refresh_token: grant.refresh_token.as_ref().map(|t| t.expose()),
            },
        )?
        .ok_or_else(|| Error::NotFound {
            what: "integration",
            id: id.clone(),
        })?;
        tx.commit()?;
        Ok((linked, created))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_good_once_and_only_for_its_session() {
        let state = "a".repeat(64);
        pending().lock().unwrap().insert(
            state.clone(),
            Pending {
                session: session_key("csrf-one"),
                integration: None,
                started: Instant::now(),
            },
        );
        let field = |r: Result<Pending, Error>| r.err().and_then(|e| e.field());
        assert_eq!(field(take_state("csrf-two", Some(&state))), Some("state"));
        assert!(take_state("csrf-one", Some(&state)).is_ok());
        assert_eq!(field(take_state("csrf-one", Some(&state))), Some("state"));
        assert_eq!(field(take_state("csrf-one", None)), Some("state"));
    }
}
