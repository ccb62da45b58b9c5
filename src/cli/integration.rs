//! `mailmycustomer integration connect|add|list|update|remove`: the Stripe accounts this instance
//! listens to.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Context;

use super::{app, runtime, IntegrationAction};
use crate::config::{self, Config};
use crate::db::integrations;
use crate::db::integrations::ConnectedBy;
use crate::manage::connect::{self, Connected, KeyConnection};
use crate::manage::{self, integrations::Changes, integrations::NewIntegration};

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
    let app = app(config)?;
    let runtime = runtime()?;
    match action {
        IntegrationAction::Add {
            name,
            webhook_secret,
            api_key,
            account,
            from_address,
        } => {
            let added = runtime.block_on(manage::integrations::add(
                &app,
                NewIntegration {
                    name,
                    webhook_secret: secret_arg(webhook_secret, "webhook secret")?,
                    api_key: api_key.map(|k| secret_arg(k, "API key")).transpose()?,
                    stripe_account: account,
                    from_address,
                },
            ))?;
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
        IntegrationAction::Connect {
            name,
            api_key,
            from_address,
        } => {
            let connected = runtime.block_on(connect::connect_with_key(
                &app,
                KeyConnection {
                    id: None,
                    name,
                    api_key: secret_arg(api_key, "API key")?,
                    from_address,
                },
            ))?;
            print_connected(&connected)?;
        }
        IntegrationAction::List => {
            let all = runtime.block_on(manage::integrations::list(&app))?;
            if all.is_empty() {
                println!("no integrations; add one with `mailmycustomer integration add`");
            }
            for i in all {
                println!("{}", describe(config, &i));
            }
        }
        IntegrationAction::Update {
            id,
            name,
            webhook_secret,
            api_key,
            remove_api_key,
            from_address,
        } => {
            let mut api_key = match remove_api_key {
                true => Some(String::new()),
                false => api_key.map(|k| secret_arg(k, "API key")).transpose()?,
            };
            let current = runtime.block_on(manage::integrations::get(&app, &id))?;
            // Connected by key, the key is the endpoint's: a new one gets a new endpoint.
            let mut connected = None;
            if current.connected_by == ConnectedBy::ApiKey {
                match api_key.take().filter(|k| !k.is_empty()) {
                    Some(key) => {
                        connected = Some(runtime.block_on(connect::change_key(&app, &id, &key))?)
                    }
                    None if remove_api_key => anyhow::bail!(
                        "integration {id} is connected with its API key, which its webhook \
                         endpoint needs; give a new one with --api-key, or remove the integration"
                    ),
                    None => {}
                }
            }
            let changes = Changes {
                name,
                webhook_secret: webhook_secret
                    .map(|s| secret_arg(s, "webhook secret"))
                    .transpose()?,
                api_key,
                from_address,
            };
            let touched = changes.name.is_some()
                || changes.webhook_secret.is_some()
                || changes.api_key.is_some()
                || changes.from_address.is_some();
            let updated = match touched {
                true => runtime.block_on(manage::integrations::update(&app, &id, changes))?,
                false => runtime.block_on(manage::integrations::get(&app, &id))?,
            };
            println!("{}", describe(config, &updated));
            if let Some(connected) = &connected {
                println!("endpoint_id: {}", connected.endpoint_id);
                for note in connected.notes() {
                    println!("{}", super::printable(&note));
                }
            }
            println!("The webhook URL, templates and delivery log are unchanged.");
        }
        IntegrationAction::Remove { id, erase } => {
            let done = runtime.block_on(manage::integrations::disconnect(&app, &id))?;
            let name = super::printable(&done.integration.name);
            let mut out = std::io::stdout().lock();
            match done.already {
                true => writeln!(out, "integration {id} ({name}) was already disconnected")?,
                false => {
                    writeln!(out, "disconnected integration {id} ({name}): its webhook URL now answers 410 Gone")?;
                    writeln!(out, "Stripe: {}", done.on_stripe.describe())?;
                }
            }
            if !erase {
                writeln!(out, "Kept: its events, delivery log, catalog and templates (retention still applies).")?;
                writeln!(
                    out,
                    "To delete them too: mailmycustomer integration remove {id} --erase"
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            drop(out);
            let erased = runtime.block_on(manage::integrations::erase(&app, &id))?;
            println!(
                "erased integration {id} ({name}): {} events, {} deliveries, {} product names, \
                 {} plan names and {} templates of its own deleted; shared templates stay",
                erased.events, erased.deliveries, erased.products, erased.plans, erased.templates
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `integration connect` (and a key change) prints: the id, the webhook URL and the
/// endpoint id as `key: value` lines, then what else happened.
fn print_connected(connected: &Connected) -> anyhow::Result<()> {
    let i = &connected.integration;
    let mut out = std::io::stdout().lock();
    writeln!(out, "id: {}", i.id)?;
    writeln!(out, "webhook_url: {}", connected.webhook_url)?;
    writeln!(out, "endpoint_id: {}", connected.endpoint_id)?;
    writeln!(
        out,
        "account: {}{}",
        super::printable(i.stripe_account.as_deref().unwrap_or("-")),
        i.account_name
            .as_deref()
            .map(|n| format!(" ({})", super::printable(n)))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "mode: {}",
        if i.livemode == Some(true) {
            "live"
        } else {
            "test"
        }
    )?;
    for note in connected.notes() {
        writeln!(out, "{}", super::printable(&note))?;
    }
    Ok(())
}

/// One integration on two lines, secrets redacted and text from the database made printable.
fn describe(config: &Config, i: &integrations::Integration) -> String {
    format!(
        "{}  {}  status={}  account={}  from={}  webhook_secret={}  api_key={}\n    {}",
        i.id,
        super::printable(&i.name),
        i.status,
        super::printable(i.stripe_account.as_deref().unwrap_or("-")),
        super::printable(i.from_address.as_deref().unwrap_or("(smtp.from_address)")),
        integrations::redact(i.webhook_secret.expose()),
        i.api_key
            .as_ref()
            .map(|k| integrations::redact(k.expose()))
            .unwrap_or("-".into()),
        config.webhook_url(&i.id),
    )
}
