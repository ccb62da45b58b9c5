//! Connecting a Stripe account with an API key (issue 12, the default way): the program checks
//! the key, makes its own webhook endpoint on the merchant's account and stores the signing
//! secret Stripe returns, so the merchant pastes one key and is done. Also changing the key of
//! an integration (a new endpoint; the id, templates and log stay) and re-checking what Stripe
//! says about the endpoint and the account.
//!
//! Order of work, each step refusing with the reason and the fix before anything is made:
//! `server.public_url` must be reachable by Stripe → the key opens an account
//! (`GET /v1/account`) and may read everything the pipeline reads → the account has room for
//! one more endpoint → the endpoint is created (proof of the write permission) → stored in one
//! transaction → leftovers deleted on Stripe → the catalog read (its failure is reported, it
//! does not undo the connection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::app::App;
use crate::config::{self, Config};
use crate::db::integrations::{self as table, ConnectedBy, Integration, Link};
use crate::manage::catalog::{self, Refreshed};
use crate::manage::integrations::{
    checked_api_key, checked_from_address, checked_name, not_found, optional,
};
use crate::stripe::api::endpoints::{
    is_live_key, Access, Account, Missing, WebhookEndpoint, ENDPOINT_LIMIT, PERMISSIONS,
};
use crate::stripe::api::{Credentials, StripeError};
use crate::Error;

/// What a person gives to connect an account by key. Text is taken as typed.
#[derive(Debug, Default, Clone)]
pub struct KeyConnection {
    /// An id chosen beforehand (`manage::integrations::new_id`, the Add page's hidden field), so
    /// a form sent again finds the endpoint the first try made; `None`: a fresh one.
    pub id: Option<String>,
    pub name: String,
    pub api_key: String,
    pub from_address: Option<String>,
}

/// What connecting (or changing the key) did.
#[derive(Debug)]
pub struct Connected {
    pub integration: Integration,
    pub webhook_url: String,
    /// The endpoint made now (`we_…`).
    pub endpoint_id: String,
    /// Endpoints found at the same URL and deleted (their secrets cannot be read again).
    pub replaced: Vec<String>,
    /// What could not be cleaned up on Stripe (an old endpoint left behind), with the fix.
    pub warnings: Vec<String>,
    /// The catalog read right after; a failure leaves the connection in place.
    pub catalog: Result<Refreshed, Error>,
}

impl Connected {
    /// The lines to show after the connection: the catalog's summary or failure, and what was
    /// left behind on Stripe.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.replaced.is_empty() {
            notes.push(format!(
                "Replaced the endpoint made earlier for this URL ({}).",
                self.replaced.join(", ")
            ));
        }
        match &self.catalog {
            Ok(refreshed) => notes.push(refreshed.summary()),
            Err(e) => notes.push(format!(
                "The products and plans could not be read yet ({e}); the connection stands: \
                 read them again from the integration's Products and plans page."
            )),
        }
        notes.extend(self.warnings.iter().cloned());
        notes
    }
}

/// What a re-check found.
#[derive(Debug)]
pub struct Rechecked {
    pub account: Account,
    /// The endpoint's status as Stripe reports it now (`enabled`, `disabled`, or `deleted` when
    /// Stripe no longer has it); `None` for an integration without an endpoint of ours.
    pub endpoint_status: Option<String>,
}

impl Rechecked {
    /// One paragraph for a flash message or a terminal; `true` when all is well.
    pub fn summary(&self) -> (bool, String) {
        let account = match &self.account.name {
            Some(name) => format!("{name} ({})", self.account.id),
            None => self.account.id.clone(),
        };
        match self.endpoint_status.as_deref() {
            None | Some("enabled") => (
                true,
                format!(
                    "Stripe says all is well: the key opens {account}{}.",
                    match self.endpoint_status {
                        Some(_) => " and the webhook endpoint is enabled",
                        None => "",
                    }
                ),
            ),
            Some(status) => (
                false,
                format!("{} (account {account}).", endpoint_advice(status)),
            ),
        }
    }
}

/// What to do about an endpoint that is not enabled.
pub fn endpoint_advice(status: &str) -> String {
    match status {
        "deleted" => "The webhook endpoint is gone from Stripe, so no events arrive: paste the \
                      API key again under Change the API key to make a new one"
            .to_owned(),
        "disabled" => "Stripe disabled the webhook endpoint (after repeated failed deliveries, \
                       or by hand), so no events arrive: make sure this server answers at its \
                       public URL, then enable the endpoint in the Stripe Dashboard (Developers \
                       → Webhooks → the endpoint → Enable) and re-check"
            .to_owned(),
        other => format!(
            "Stripe reports the webhook endpoint as {other:?}: open it in the Stripe Dashboard \
             (Developers → Webhooks)"
        ),
    }
}

/// Connects a new integration with `new.api_key`: see the module comment for the steps.
pub async fn connect_with_key(app: &App, new: KeyConnection) -> Result<Connected, Error> {
    let id = match new.id {
        Some(id) if table::is_id(&id) => id,
        Some(_) => {
            return Err(Error::invalid(
                "id",
                "this form's webhook URL is damaged; open Add an integration again",
            ))
        }
        None => table::new_id()?,
    };
    let name = checked_name(&new.name)?;
    let key = checked_key(&new.api_key)?;
    let from_address = optional(new.from_address)
        .map(checked_from_address)
        .transpose()?;
    // Refuse a clash before anything is made on Stripe.
    let (taken_id, taken_name) = {
        let (id, name) = (id.clone(), name.clone());
        app.db(move |c| {
            let all = table::list(c)?;
            Ok((
                all.iter().any(|i| i.id == id),
                all.iter().any(|i| i.name == name),
            ))
        })
        .await?
    };
    if taken_id {
        return Err(Error::Conflict {
            field: "id",
            message: format!(
                "an integration with the webhook URL ending in {id} exists already (was the form \
                 sent twice?); find it under Integrations"
            ),
        });
    }
    if taken_name {
        return Err(Error::Conflict {
            field: "name",
            message: format!("an integration named {name:?} already exists; pick another name"),
        });
    }

    let config = app.config();
    check_reachable(&config, &id, is_live_key(&key))?;
    let creds = Credentials {
        api_key: &key,
        account: None,
    };
    let account = check_key(app, &creds).await?;
    let url = config.webhook_url(&id);
    let made = make_endpoint(app, &creds, &url, &id, &name).await?;
    let secret = made.created.secret.clone().unwrap_or_default();

    let stored = {
        let (id, name, key) = (id.clone(), name.clone(), key.clone());
        let (endpoint, account) = (made.created.clone(), account.clone());
        app.db(move |c| {
            let tx = c.unchecked_transaction()?;
            table::insert_with_id(
                &tx,
                &id,
                &table::NewIntegration {
                    name: &name,
                    webhook_secret: secret.expose(),
                    api_key: Some(&key),
                    stripe_account: Some(&account.id),
                    from_address: from_address.as_deref(),
                },
            )?;
            let linked = table::set_link(&tx, &id, &link(&key, &secret, &endpoint, &account))?;
            tx.commit()?;
            Ok(linked.expect("the row was just inserted"))
        })
        .await
    };
    let integration = match stored {
        Ok(integration) => integration,
        Err(e) => {
            // Nothing stored: leave nothing on Stripe either.
            if let Err(cleanup) = app
                .stripe()
                .delete_webhook_endpoint(&creds, &made.created.id)
                .await
            {
                tracing::warn!(endpoint = %made.created.id, error = %cleanup,
                    "could not delete the endpoint of a connection that was not stored");
            }
            return Err(e);
        }
    };
    let mut warnings = Vec::new();
    let replaced = delete_leftovers(app, &creds, &made.same_url, &mut warnings).await;
    finish(app, integration, url, made.created.id, replaced, warnings).await
}

/// Gives integration `id` a new API key: checks it, makes a new endpoint at the same URL and
/// stores it with its secret in one go (name, sender, templates and log stay), then deletes the
/// old endpoint on Stripe while the old key still works. A failure there is only reported.
pub async fn change_key(app: &App, id: &str, api_key: &str) -> Result<Connected, Error> {
    let before = crate::manage::integrations::get(app, id).await?;
    if before.connected_by == ConnectedBy::OAuth {
        return Err(Error::invalid(
            "api_key",
            "this integration is connected through Stripe (OAuth) and has no key of its own; \
             connect it again from its page instead",
        ));
    }
    let key = checked_key(api_key)?;
    let config = app.config();
    check_reachable(&config, id, is_live_key(&key))?;
    let creds = Credentials {
        api_key: &key,
        account: None,
    };
    let account = check_key(app, &creds).await?;
    let url = config.webhook_url(id);
    let made = make_endpoint(app, &creds, &url, id, &before.name).await?;
    let secret = made.created.secret.clone().unwrap_or_default();

    let stored = {
        let (id, key) = (id.to_owned(), key.clone());
        let (endpoint, account) = (made.created.clone(), account.clone());
        app.db(move |c| table::set_link(c, &id, &link(&key, &secret, &endpoint, &account)))
            .await
    };
    let integration = match stored {
        Ok(Some(integration)) => integration,
        failed => {
            if let Err(cleanup) = app
                .stripe()
                .delete_webhook_endpoint(&creds, &made.created.id)
                .await
            {
                tracing::warn!(endpoint = %made.created.id, error = %cleanup,
                    "could not delete the endpoint of a key change that was not stored");
            }
            return Err(match failed {
                Err(e) => e,
                Ok(_) => not_found(id),
            });
        }
    };

    let mut warnings = Vec::new();
    let replaced = delete_leftovers(app, &creds, &made.same_url, &mut warnings).await;
    // The old endpoint lives on the old key's account, which the new key may not open.
    if let Some(old) = before
        .endpoint
        .as_ref()
        .filter(|old| old.id != made.created.id && !made.same_url.iter().any(|e| e.id == old.id))
    {
        let outcome = match Credentials::of(&before) {
            Some(old_creds) => app
                .stripe()
                .delete_webhook_endpoint(&old_creds, &old.id)
                .await
                .map_err(|e| e.to_string()),
            None => Err("the old key is no longer stored".to_owned()),
        };
        if let Err(e) = outcome {
            tracing::warn!(integration = %id, endpoint = %old.id, error = %e,
                "could not delete the old webhook endpoint");
            warnings.push(format!(
                "The old webhook endpoint {} could not be deleted on Stripe ({e}); delete it in \
                 the Stripe Dashboard (Developers → Webhooks), or Stripe keeps trying to send \
                 to it.",
                old.id
            ));
        }
    }
    finish(app, integration, url, made.created.id, replaced, warnings).await
}

/// Asks Stripe again about integration `id`: its endpoint's status (stored) and the account
/// the key opens (its name stored when it changed).
pub async fn recheck(app: &App, id: &str) -> Result<Rechecked, Error> {
    let found = crate::manage::integrations::get(app, id).await?;
    let Some(creds) = Credentials::of(&found) else {
        return Err(Error::invalid(
            "api_key",
            format!(
                "“{}” has no API key to ask Stripe with: connect it with an API key on its page \
                 (Integrations)",
                found.name
            ),
        ));
    };
    let stripe = app.stripe();
    let account = stripe.account(&creds).await.map_err(from_stripe)?;
    let endpoint_status = match &found.endpoint {
        None => None,
        Some(endpoint) => match stripe.webhook_endpoint(&creds, &endpoint.id).await {
            Ok(now) => Some(now.status),
            Err(StripeError::NotFound { .. }) => Some("deleted".to_owned()),
            Err(e) => return Err(from_stripe(e)),
        },
    };
    let (key, status, account_now) = (id.to_owned(), endpoint_status.clone(), account.clone());
    app.db(move |c| {
        if let Some(status) = &status {
            table::note_endpoint_status(c, &key, status)?;
        }
        let renamed = found.account_name != account_now.name
            || found.stripe_account.as_deref() != Some(account_now.id.as_str());
        // Only a listening API-key integration is linked again: `set_link` would reconnect a
        // disconnected one, and an OAuth one is the OAuth flow's to change.
        if renamed && found.is_listening() && found.connected_by == ConnectedBy::ApiKey {
            let endpoint = found.endpoint.as_ref();
            let api_key = found.api_key.as_ref().map(|k| k.expose());
            table::set_link(
                c,
                &key,
                &Link {
                    connected_by: found.connected_by,
                    webhook_secret: found.webhook_secret.expose(),
                    api_key,
                    stripe_account: Some(&account_now.id),
                    endpoint_id: endpoint.map(|e| e.id.as_str()),
                    endpoint_status: status.as_deref(),
                    account_name: account_now.name.as_deref(),
                    livemode: found.livemode,
                    ..Link::default()
                },
            )?;
        }
        Ok(())
    })
    .await?;
    Ok(Rechecked {
        account,
        endpoint_status,
    })
}

/// The link `set_link` stores for a key connection.
fn link<'a>(
    key: &'a str,
    secret: &'a crate::secret::Secret,
    endpoint: &'a WebhookEndpoint,
    account: &'a Account,
) -> Link<'a> {
    Link {
        connected_by: ConnectedBy::ApiKey,
        webhook_secret: secret.expose(),
        api_key: Some(key),
        stripe_account: Some(&account.id),
        endpoint_id: Some(&endpoint.id),
        endpoint_status: Some(&endpoint.status),
        account_name: account.name.as_deref(),
        livemode: Some(is_live_key(key)),
        ..Link::default()
    }
}

/// Reads the catalog and puts the outcome together.
async fn finish(
    app: &App,
    integration: Integration,
    webhook_url: String,
    endpoint_id: String,
    replaced: Vec<String>,
    warnings: Vec<String>,
) -> Result<Connected, Error> {
    let catalog = catalog::refresh(app, &integration.id).await;
    if let Err(e) = &catalog {
        tracing::warn!(integration = %integration.id, error = %e,
            "connected, but the catalog could not be read");
    }
    tracing::info!(integration = %integration.id, endpoint = %endpoint_id,
        "connected with an API key");
    // A refreshed catalog may have changed nothing on the row; read it again for what is shown.
    let integration = crate::manage::integrations::get(app, &integration.id).await?;
    Ok(Connected {
        integration,
        webhook_url,
        endpoint_id,
        replaced,
        warnings,
        catalog,
    })
}

/// The key as typed, checked for its shape.
fn checked_key(key: &str) -> Result<String, Error> {
    match optional(Some(key.to_owned())) {
        Some(key) => checked_api_key(key),
        None => Err(Error::invalid(
            "api_key",
            "paste a restricted key (rk_…) or a secret key (sk_…) from the Stripe Dashboard \
             (Developers → API keys)",
        )),
    }
}

/// Why Stripe cannot send to this server's webhook URLs even with a test key, for a page to say
/// before a key is pasted; `None` when it may.
pub fn reachability(config: &Config) -> Option<String> {
    public_url_problem(config, false).map(|problem| format!("{problem}."))
}

/// What is wrong with `server.public_url` for Stripe to send to (`live`: for a live-mode key),
/// or `None`; `connect` refuses on it and `doctor` reports it.
pub fn public_url_problem(config: &Config, live: bool) -> Option<String> {
    match config.server.public_url.trim() {
        "" => Some(
            "server.public_url is not set, so Stripe has no address to send events to".to_owned(),
        ),
        url => unreachable_reason(url, live).map(|why| format!("server.public_url {url} {why}")),
    }
}

/// Refuses a `server.public_url` Stripe cannot send to, with what to do instead.
fn check_reachable(config: &Config, id: &str, live: bool) -> Result<(), Error> {
    match public_url_problem(config, live) {
        None => Ok(()),
        Some(problem) => Err(Error::invalid(
            "public_url",
            format!(
                "{problem}. Set it to the public HTTPS address of this server (Settings, or \
                 server.public_url in the config). To test on this machine instead, use the \
                 signing-secret way: run `stripe listen --forward-to {}` and paste the signing \
                 secret it prints (Add an integration → I have a webhook signing secret).",
                local_webhook_url(config, id)
            ),
        )),
    }
}

fn local_webhook_url(config: &Config, id: &str) -> String {
    format!(
        "http://{}/webhooks/stripe/{id}",
        config::local_address(&config.server.listen)
    )
}

/// Why Stripe cannot reach `url`, or `None` when it may. Only what the URL itself says is
/// judged: a literal address by its range, a name by its suffix. Names are not resolved, since
/// this server's DNS (split horizon, /etc/hosts) need not be what Stripe sees.
fn unreachable_reason(url: &str, live: bool) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return Some(format!("is not a URL ({e})")),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if !live => {}
        "http" => {
            return Some(
                "is plain http, and Stripe sends live-mode events only to https addresses"
                    .to_owned(),
            )
        }
        other => return Some(format!("has the scheme {other}:, not https:")),
    }
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return private_address(ip).map(|kind| format!("is {kind}, which Stripe cannot reach"));
    }
    let name = host.trim_end_matches('.');
    if name == "localhost" || name.ends_with(".localhost") {
        return Some("names this machine (localhost), which Stripe cannot reach".to_owned());
    }
    for suffix in [".local", ".internal", ".lan", ".home.arpa"] {
        if name.ends_with(suffix) {
            return Some(format!(
                "is a local network name ({suffix}), which Stripe cannot reach"
            ));
        }
    }
    if !name.contains('.') {
        return Some("is a name without a domain, which Stripe cannot reach".to_owned());
    }
    None
}

/// What kind of address Stripe cannot reach `ip` is, or `None` for a public one.
fn private_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private_v4(v4),
            None => private_v6(v6),
        },
    }
}

fn private_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("a carrier-grade NAT address")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_documentation() {
        Some("not a host's address")
    } else {
        None
    }
}

fn private_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unique_local() {
        Some("a unique-local (private) address")
    } else if ip.is_unicast_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() {
        Some("not a host's address")
    } else {
        None
    }
}

/// Checks that the key opens an account and may read everything the pipeline reads, and that
/// it may manage webhook endpoints; every missing permission is named at once.
async fn check_key(app: &App, creds: &Credentials<'_>) -> Result<Account, Error> {
    let stripe = app.stripe();
    let account = stripe.account(creds).await.map_err(from_stripe)?;
    let mut missing = stripe
        .missing_permissions(creds)
        .await
        .map_err(from_stripe)?;
    // Listing the endpoints needs Read on them, which Write includes: a refusal here means the
    // key lacks the write too.
    if let Err(e) = stripe.webhook_endpoints(creds).await {
        match e {
            StripeError::PermissionDenied { .. } => missing.insert(0, write_missing()),
            other => return Err(from_stripe(other)),
        }
    }
    match missing.is_empty() {
        true => Ok(account),
        false => Err(lacking(&missing)),
    }
}

/// The webhook-endpoint write permission, as `lacking` names it.
pub fn write_missing() -> Missing {
    Missing {
        permission: PERMISSIONS
            .iter()
            .find(|p| p.access == Access::Write)
            .expect("the webhook write permission is listed"),
        stripe_name: Some("rak_webhook_write".to_owned()),
    }
}

/// The refusal naming every missing permission, what to grant and why.
pub fn lacking(missing: &[Missing]) -> Error {
    let each: Vec<String> = missing
        .iter()
        .map(|m| {
            let name = m
                .stripe_name
                .as_deref()
                .map(|n| format!(", {n}"))
                .unwrap_or_default();
            format!("{}{name} ({})", m.permission.grant(), m.permission.why)
        })
        .collect();
    Error::invalid(
        "api_key",
        format!(
            "the key lacks {} the program needs: {}. Edit the key in the Stripe Dashboard \
             (Developers → API keys → the key → Edit), grant {}, and paste it again",
            if missing.len() == 1 {
                "a permission"
            } else {
                "permissions"
            },
            each.join("; "),
            if missing.len() == 1 { "it" } else { "them" }
        ),
    )
}

/// The endpoint made for a connection, and the ones found at its URL, to delete once it is
/// stored.
struct Made {
    created: WebhookEndpoint,
    same_url: Vec<WebhookEndpoint>,
}

/// Makes the endpoint at `url`, minding the 16-endpoint limit.
///
/// An endpoint made earlier for the same URL (an earlier try of this form, a key changed
/// within one account, an endpoint made by hand for this integration) would be the one to use,
/// but Stripe shows an endpoint's signing secret only in the answer that created it, so it
/// cannot be taken over: it is replaced. The new one is made first and the old ones deleted
/// after it is stored, so no event falls between the two; only when the account is full does
/// one go first, to make room.
async fn make_endpoint(
    app: &App,
    creds: &Credentials<'_>,
    url: &str,
    id: &str,
    name: &str,
) -> Result<Made, Error> {
    let stripe = app.stripe();
    let existing = stripe.webhook_endpoints(creds).await.map_err(from_stripe)?;
    let mut same_url: Vec<WebhookEndpoint> =
        existing.iter().filter(|e| e.url == url).cloned().collect();
    if existing.len() >= ENDPOINT_LIMIT {
        match same_url.pop() {
            Some(room) => stripe
                .delete_webhook_endpoint(creds, &room.id)
                .await
                .map_err(from_stripe)?,
            None => return Err(full(existing.len())),
        }
    }
    let created = match stripe.create_webhook_endpoint(creds, url, id, name).await {
        Ok(created) => created,
        Err(StripeError::PermissionDenied { .. }) => return Err(lacking(&[write_missing()])),
        Err(StripeError::Other { message, .. }) if message.contains("maximum of") => {
            return Err(full(ENDPOINT_LIMIT))
        }
        Err(e) => return Err(from_stripe(e)),
    };
    Ok(Made { created, same_url })
}

fn full(count: usize) -> Error {
    Error::Conflict {
        field: "api_key",
        message: format!(
            "the Stripe account has {count} webhook endpoints, Stripe's limit is \
             {ENDPOINT_LIMIT}, so no endpoint can be made for this integration: delete one you \
             no longer use in the Stripe Dashboard (Developers → Webhooks), then try again"
        ),
    }
}

/// Deletes the endpoints that a new one replaced; a failure is logged and reported in
/// `warnings`. Returns the ids deleted.
async fn delete_leftovers(
    app: &App,
    creds: &Credentials<'_>,
    leftovers: &[WebhookEndpoint],
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut deleted = Vec::new();
    for old in leftovers {
        match app.stripe().delete_webhook_endpoint(creds, &old.id).await {
            Ok(()) => deleted.push(old.id.clone()),
            Err(e) => {
                tracing::warn!(endpoint = %old.id, error = %e,
                    "could not delete a replaced webhook endpoint");
                warnings.push(format!(
                    "The endpoint {} made earlier for this URL could not be deleted on Stripe \
                     ({e}); delete it in the Stripe Dashboard (Developers → Webhooks).",
                    old.id
                ));
            }
        }
    }
    deleted
}

/// A refusal from Stripe as an error naming the fix: a bad key or a missing permission is the
/// key's field; anything else says what Stripe said and to try again.
fn from_stripe(error: StripeError) -> Error {
    match error {
        StripeError::InvalidKey { message } | StripeError::PermissionDenied { message, .. } => {
            Error::invalid("api_key", message)
        }
        e if e.is_transient() => Error::invalid(
            "stripe",
            format!("could not talk to Stripe: {e}; nothing was changed, try again in a minute"),
        ),
        e => Error::invalid(
            "stripe",
            format!("Stripe refused: {e}; nothing was changed"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_pass_and_local_ones_are_refused_with_the_reason() {
        for ok in [
            "https://mmc.rosen.example",
            "https://mmc.rosen.example:8443/base/",
            "http://mmc.rosen.example",
            "https://203.0.113.9.nip.io",
            "https://8.8.8.8",
            "https://[2001:4860::8888]",
        ] {
            assert_eq!(unreachable_reason(ok, false), None, "{ok}");
        }
        let refused = |url: &str, live: bool| unreachable_reason(url, live).unwrap_or_default();
        assert!(refused("https://127.0.0.1:8080", false).contains("loopback"));
        assert!(refused("https://[::1]", false).contains("loopback"));
        assert!(refused("https://[::ffff:10.0.0.1]", false).contains("private"));
        assert!(refused("https://10.1.2.3", false).contains("private"));
        assert!(refused("https://192.168.1.20", false).contains("private"));
        assert!(refused("https://172.16.0.1", false).contains("private"));
        assert!(refused("https://169.254.1.1", false).contains("link-local"));
        assert!(refused("https://[fe80::1]", false).contains("link-local"));
        assert!(refused("https://[fd00::1]", false).contains("unique-local"));
        assert!(refused("https://100.64.0.1", false).contains("carrier-grade"));
        assert!(refused("https://0.0.0.0", false).contains("not a host"));
        assert!(refused("https://localhost:8080", false).contains("localhost"));
        assert!(refused("https://shop.localhost", false).contains("localhost"));
        assert!(refused("https://mmc.local", false).contains(".local"));
        assert!(refused("https://mmc.corp.internal", false).contains(".internal"));
        assert!(refused("https://server", false).contains("without a domain"));
        assert!(refused("http://mmc.rosen.example", true).contains("https"));
        assert!(refused("ftp://mmc.rosen.example", false).contains("scheme"));
    }

    #[test]
    fn an_unset_or_local_public_url_is_refused_with_the_stripe_listen_way() {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:8080".into();
        let id = "int_0123456789abcdef";
        let error = check_reachable(&config, id, false).unwrap_err();
        let text = error.to_string();
        assert_eq!(error.field(), Some("public_url"));
        assert!(text.contains("is not set"), "{text}");
        assert!(
            text.contains("stripe listen --forward-to http://127.0.0.1:8080/webhooks/stripe/int_0123456789abcdef"),
            "{text}"
        );
        config.server.public_url = "http://shop.example".into();
        assert!(check_reachable(&config, id, false).is_ok());
        assert!(check_reachable(&config, id, true).is_err());
    }

    #[test]
    fn every_missing_permission_is_named_with_what_to_grant() {
        let missing = [
            write_missing(),
            Missing {
                permission: &PERMISSIONS[2],
                stripe_name: Some("rak_product_read".into()),
            },
        ];
        let error = lacking(&missing);
        let text = error.to_string();
        assert_eq!(error.field(), Some("api_key"));
        assert!(
            text.contains("Write on Webhook endpoints, rak_webhook_write"),
            "{text}"
        );
        assert!(
            text.contains("Read on Products, rak_product_read"),
            "{text}"
        );
        assert!(text.contains("grant them"), "{text}");
    }

    #[test]
    fn a_disabled_endpoint_says_what_to_do() {
        let checked = Rechecked {
            account: Account {
                id: "acct_1".into(),
                name: Some("Rosen Goods".into()),
            },
            endpoint_status: Some("disabled".into()),
        };
        let (fine, text) = checked.summary();
        assert!(!fine);
        assert!(text.contains("Enable"), "{text}");
        assert!(text.contains("Rosen Goods (acct_1)"), "{text}");
    }
}
