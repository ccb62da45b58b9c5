//! `mailmycustomer integration add|list|remove`: the Stripe accounts this instance listens to.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::{open_db, IntegrationAction};
use crate::config::{self, Config};
use crate::db::integrations;

/// `-` means "read it from standard input", which keeps secrets out of shell history and `ps`.
fn secret_arg(value: String, what: &str) -> anyhow::Result<String> {
    if value != "-" {
        return Ok(value.trim().to_owned());
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    Ok(line.trim().to_owned())
}

pub fn run(config: &Config, action: IntegrationAction) -> anyhow::Result<ExitCode> {
    let conn = open_db(config)?;
    match action {
        IntegrationAction::Add {
            name,
            webhook_secret,
            api_key,
            account,
            from_address,
        } => {
            let name = name.trim();
            if name.is_empty() {
                bail!("--name is empty");
            }
            let webhook_secret = secret_arg(webhook_secret, "webhook secret")?;
            if !webhook_secret.starts_with("whsec_") || webhook_secret.len() < 10 {
                bail!(
                    "--webhook-secret must be an endpoint signing secret starting with whsec_ \
                     (Stripe Dashboard → Developers → Webhooks → your endpoint → Signing secret, \
                     or `stripe listen --print-secret`)"
                );
            }
            let api_key = api_key.map(|k| secret_arg(k, "API key")).transpose()?;
            if let Some(key) = &api_key {
                if key.starts_with("pk_") {
                    bail!("--api-key is a publishable key (pk_…); it cannot read customers. Use a restricted key (rk_…) or a secret key (sk_…)");
                }
                if !(key.starts_with("sk_") || key.starts_with("rk_")) {
                    bail!("--api-key must be a secret (sk_…) or restricted (rk_…) Stripe API key");
                }
            }
            if let Some(from) = &from_address {
                if !crate::outbox::smtp::is_address(from) {
                    bail!("--from-address {from:?} is not an email address");
                }
            }
            if let Some(acct) = &account {
                if !acct.starts_with("acct_") {
                    bail!("--account must be a Stripe account id starting with acct_");
                }
            }
            let added = integrations::insert(
                &conn,
                &integrations::NewIntegration {
                    name,
                    webhook_secret: &webhook_secret,
                    api_key: api_key.as_deref(),
                    stripe_account: account.as_deref(),
                    from_address: from_address.as_deref(),
                },
            )?;
            let url = config.webhook_url(&added.id);
            let mut out = std::io::stdout().lock();
            writeln!(out, "id: {}", added.id)?;
            writeln!(out, "webhook_url: {url}")?;
            writeln!(
                out,
                "\nIn Stripe: Dashboard → Developers → Webhooks → Add endpoint, paste the URL above."
            )?;
            writeln!(
                out,
                "For local testing: stripe listen --forward-to {}",
                Config {
                    server: config::ServerConfig {
                        public_url: String::new(),
                        ..config.server.clone()
                    },
                    ..config.clone()
                }
                .webhook_url(&added.id)
            )?;
            if config.server.public_url.is_empty() {
                writeln!(out, "Note: server.public_url is not set, so this URL is only reachable from this machine.")?;
            }
        }
        IntegrationAction::List => {
            let all = integrations::list(&conn)?;
            if all.is_empty() {
                println!("no integrations; add one with `mailmycustomer integration add`");
            }
            for i in all {
                println!(
                    "{}  {}  status={}  account={}  from={}  webhook_secret={}  api_key={}\n    {}",
                    i.id,
                    super::printable(&i.name),
                    i.status,
                    super::printable(i.stripe_account.as_deref().unwrap_or("-")),
                    super::printable(i.from_address.as_deref().unwrap_or("(smtp.from_address)")),
                    integrations::redact(&i.webhook_secret),
                    i.api_key
                        .as_deref()
                        .map(integrations::redact)
                        .unwrap_or("-".into()),
                    config.webhook_url(&i.id),
                );
            }
        }
        IntegrationAction::Remove { id } => {
            if !integrations::remove(&conn, &id)? {
                bail!(
                    "no integration with id {id:?}; `mailmycustomer integration list` shows them"
                );
            }
            println!("removed integration {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
