//! The command line: parses arguments, loads the config, and runs one command. Errors are
//! returned as `anyhow` chains for `main` to print; this is the only place anyhow is used.
//!
//! What the commands print from the database (customer names, subjects, relay replies, template
//! text) goes through `printable` or `printable_block` first: it came from customers, Stripe,
//! relays and merchants, and a terminal obeys the escape sequences in what it is given.

mod backup;
mod catalog;
mod catchup;
mod doctor;
mod events;
mod integration;
mod log;
mod template;
mod user;

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Config, LogFormat, Overrides};
use crate::db;

#[derive(Debug, Parser)]
#[command(
    name = "mailmycustomer",
    version,
    about = "Turns your Stripe events into emails to your customers.",
    long_about = "Turns your Stripe events into emails to your customers.\n\n\
        Quick start:\n  \
        mailmycustomer serve                      run on the embedded defaults (127.0.0.1:8080, ./mailmycustomer.db)\n  \
        mailmycustomer init-config > config.toml  write a commented config to edit\n  \
        mailmycustomer integration add --name shop --webhook-secret whsec_…\n\n\
        Every config key can also be set with an environment variable MMC_SECTION__KEY \
        (e.g. MMC_SERVER__LISTEN=0.0.0.0:8080); flags win over both."
)]
pub struct Cli {
    /// Config file (TOML). Without one, the embedded defaults apply.
    #[arg(long, short, global = true, env = "MMC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// SQLite database file; overrides database.path.
    #[arg(long, global = true, value_name = "FILE")]
    database: Option<PathBuf>,

    /// Log level or filter (error, warn, info, debug); overrides log.level.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: receive Stripe webhooks and store them (migrates the database first).
    Serve {
        /// Address to listen on, e.g. 0.0.0.0:8080; overrides server.listen.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Public URL Stripe reaches this server at; overrides server.public_url.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// Print a commented config file with every key at its default.
    InitConfig,
    /// Check or print the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Apply the database migrations this binary carries (serve does it too).
    Migrate,
    /// Copy the database to FILE while the server runs, check the copy and say what it holds.
    Backup {
        /// Where the copy goes; it must not exist yet.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write it compressed with zstd, to FILE as named (`restore` reads either kind).
        #[arg(long)]
        compress: bool,
    },
    /// Put a backup in place of the database (only while no server uses it); the database it
    /// replaces is kept aside.
    Restore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Exit 0 when the server answers /healthz, 1 otherwise (for systemd, Docker, monitors).
    Healthcheck {
        /// URL to check; default: /healthz on server.listen.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Seconds to wait for an answer.
        #[arg(long, default_value_t = 5, value_name = "SECS")]
        timeout: u64,
    },
    /// Manage the Stripe accounts this instance listens to.
    Integration {
        #[command(subcommand)]
        action: IntegrationAction,
    },
    /// An integration's products and plans from Stripe: list them, or read them again.
    Catalog {
        #[command(subcommand)]
        action: catalog::CatalogAction,
    },
    /// Manage email templates (per trigger, optionally per product and plan).
    Template {
        #[command(subcommand)]
        action: template::TemplateAction,
    },
    /// The delivery log, newest first; `log show ID` and `log resend ID` for one delivery.
    #[command(args_conflicts_with_subcommands = true)]
    Log {
        #[command(subcommand)]
        action: Option<log::LogAction>,
        #[command(flatten)]
        args: log::LogArgs,
    },
    /// Received Stripe events: list them, show one, process a skipped or failed one again.
    Events {
        #[command(subcommand)]
        action: events::EventsAction,
    },
    /// Manage the people who may sign in to the web UI.
    User {
        #[command(subcommand)]
        action: user::UserAction,
    },
    /// Send one test email with the current SMTP settings and print the relay's answer, or the
    /// likely fix when it fails.
    SendTestEmail {
        #[arg(long, value_name = "ADDRESS")]
        to: String,
    },
    /// Check the config, the database, the SMTP relay, each Stripe key, the public URL, the
    /// clock and the DKIM record, one line each with the fix for what fails (sends no mail,
    /// changes nothing; safe while the server runs). Exit code 0 only when nothing fails.
    Doctor,
    /// Show what a Stripe event file would send: the trigger, the template and the rendered
    /// email. Sends nothing.
    Preview {
        /// A Stripe event as JSON (e.g. saved from the Dashboard or `stripe events retrieve`).
        #[arg(long, value_name = "FILE.json")]
        event: PathBuf,
        /// Use this integration's name, templates and API key for lookups (customer email,
        /// product names); without it, only what the event carries is used.
        #[arg(long, value_name = "ID")]
        integration: Option<String>,
        /// Also print the HTML part.
        #[arg(long)]
        html: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate the config file, environment and flags; exit 1 with every problem found.
    Check,
    /// Print the effective config as TOML, secrets redacted.
    Dump,
}

#[derive(Debug, Subcommand)]
pub enum IntegrationAction {
    /// Add a Stripe account; prints its id and the webhook URL to give Stripe.
    Add {
        /// A name you recognise, e.g. your shop's.
        #[arg(long)]
        name: String,
        /// The endpoint's signing secret (whsec_…) from the Stripe Dashboard or from
        /// `stripe listen --print-secret`. Use - to read it from standard input.
        #[arg(long, value_name = "whsec_…")]
        webhook_secret: String,
        /// A secret (sk_…) or restricted (rk_…) API key, used to look up what a webhook lacks
        /// (a customer's email, a product's name). Use - to read it from standard input.
        #[arg(long, value_name = "rk_…|sk_…")]
        api_key: Option<String>,
        /// The connected account (acct_…) when this integration is a Stripe Connect account.
        #[arg(long, value_name = "acct_…")]
        account: Option<String>,
        /// Send this integration's emails from this address instead of smtp.from_address
        /// (the relay must accept it, and DKIM must cover its domain).
        #[arg(long, value_name = "EMAIL")]
        from_address: Option<String>,
    },
    /// Connect a Stripe account with an API key: checks the key, makes this program's own
    /// webhook endpoint on the account and keeps its signing secret; prints the integration id,
    /// the webhook URL and the endpoint id. Needs server.public_url reachable by Stripe.
    Connect {
        /// A name you recognise, e.g. your shop's.
        #[arg(long)]
        name: String,
        /// A restricted (rk_…) key with Write on Webhook endpoints and Read on Customers,
        /// Products, Prices, Charges, Invoices, Invoice payments, PaymentIntents, Refunds and
        /// Events, or a secret key (sk_…). Use - to read it from standard input.
        #[arg(long, value_name = "rk_…|sk_…")]
        api_key: String,
        /// Send this integration's emails from this address instead of smtp.from_address.
        #[arg(long, value_name = "EMAIL")]
        from_address: Option<String>,
    },
    /// List integrations, secrets redacted.
    List,
    /// Change an integration, keeping its id: its webhook URL, templates and log stay. For one
    /// connected with an API key, --api-key makes a new webhook endpoint with the new key.
    #[command(
        alias = "edit",
        group(clap::ArgGroup::new("change").required(true).multiple(true))
    )]
    Update {
        /// The integration id (int_…), as shown by `integration list`.
        id: String,
        /// A new name.
        #[arg(long, group = "change")]
        name: Option<String>,
        /// A new signing secret (whsec_…), e.g. after rolling it in Stripe. Use - to read it
        /// from standard input.
        #[arg(long, value_name = "whsec_…", group = "change")]
        webhook_secret: Option<String>,
        /// A new secret (sk_…) or restricted (rk_…) API key. Use - to read it from standard
        /// input.
        #[arg(
            long,
            value_name = "rk_…|sk_…",
            group = "change",
            conflicts_with = "remove_api_key"
        )]
        api_key: Option<String>,
        /// Forget the API key: events that need a lookup then fail, saying a key is missing.
        #[arg(long, group = "change")]
        remove_api_key: bool,
        /// Send this integration's emails from this address; "" goes back to smtp.from_address.
        #[arg(long, value_name = "EMAIL", group = "change")]
        from_address: Option<String>,
    },
    /// Disconnect an integration: delete the webhook endpoint the program created on Stripe,
    /// forget its key and secret, and answer its webhook URL with 410 Gone. Its events, delivery
    /// log, catalog and templates stay (retention still applies). With --erase, also delete them
    /// and the integration.
    Remove {
        /// The integration id (int_…), as shown by `integration list`.
        id: String,
        /// Also erase it: delete its events, delivery log and catalog (in batches, while the
        /// server keeps taking webhooks), its own templates, and the integration itself.
        #[arg(long)]
        erase: bool,
    },
    /// Fetch from Stripe the events no webhook brought (since the last catch-up, at most 30
    /// days) and store them to be emailed, now; the server also does it at start and every
    /// stripe.catch_up_interval_minutes. Needs an API key with Read on Events.
    CatchUp {
        /// The integration id (int_…), as shown by `integration list`.
        id: String,
    },
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let (listen, public_url) = match &cli.command {
        Command::Serve { listen, public_url } => (listen.clone(), public_url.clone()),
        _ => (None, None),
    };
    let overrides = Overrides {
        listen,
        public_url,
        database: cli.database.clone(),
        log_level: cli.log_level.clone(),
    };
    let loaded = Config::load(cli.config.as_deref(), std::env::vars(), &overrides);

    match cli.command {
        Command::InitConfig => {
            print!("{}", config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { action } => match (
            action,
            loaded.and_then(crate::manage::settings::effective_offline),
        ) {
            (ConfigAction::Check, Ok(_)) => {
                println!("config OK ({})", describe_source(&cli.config));
                Ok(ExitCode::SUCCESS)
            }
            (ConfigAction::Dump, Ok(config)) => {
                print!("{}", config.dump());
                Ok(ExitCode::SUCCESS)
            }
            (_, Err(e)) => {
                eprintln!("config invalid ({}): {e}", describe_source(&cli.config));
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Doctor => doctor::run(cli.config.as_deref(), &overrides),
        command => {
            let config = loaded?;
            init_logging(&config)?;
            let result = match command {
                Command::Serve { .. } => serve(config, cli.config.is_some()),
                Command::Migrate => migrate(&config),
                Command::Backup { file, compress } => backup::backup(&config, &file, compress),
                Command::Restore { file } => backup::restore(&config, &file),
                Command::Healthcheck { url, timeout } => healthcheck(&config, url, timeout),
                Command::Integration { action } => integration::run(&config, action),
                Command::Catalog { action } => catalog::run(&config, action),
                Command::Template { action } => template::run(&config, action),
                Command::Log { action, args } => log::run(&config, action, args),
                Command::User { action } => user::run(&config, action),
                Command::Events { action } => events::run(&config, action),
                Command::SendTestEmail { to } => log::send_test(&config, &to),
                Command::Preview {
                    event,
                    integration,
                    html,
                } => template::preview(&config, &event, integration.as_deref(), html),
                Command::InitConfig | Command::Config { .. } | Command::Doctor => {
                    unreachable!("handled above")
                }
            };
            result.map_err(name_the_flag)
        }
    }
}

/// The flag or argument a person typed for each field the service layer names in
/// `Error::Invalid` / `Error::Conflict` (the pages name their form fields the same way).
fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "name" => "--name",
        "webhook_secret" => "--webhook-secret",
        "api_key" => "--api-key",
        "account" => "--account",
        "from_address" => "--from-address",
        "trigger" => "--trigger",
        "product" => "--product",
        "plan" => "--plan",
        "subject" => "--subject",
        "html" => "--html-file",
        "text" => "--text-file",
        "event" => "--event",
        "integration" => "--integration",
        "to" => "--to",
        "type" => "--type",
        "outcome" => "--outcome",
        _ => return None,
    })
}

/// Puts the flag in front of a person-caused error about one field: `--html-file: HTML body,
/// line 2: …`, so the message says what to change on the command line.
fn name_the_flag(error: anyhow::Error) -> anyhow::Error {
    let flag = error
        .downcast_ref::<crate::Error>()
        .and_then(crate::Error::field)
        .and_then(flag);
    match flag {
        Some(flag) => anyhow::anyhow!("{flag}: {error}"),
        None => error,
    }
}

/// One value on one line of output: control characters (ESC opens terminal escape sequences,
/// CR and backspace overwrite what is shown, a newline would forge a line) and the invisible
/// characters that reorder text are shown escaped, as `\u{1b}`.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    escape_unless(text, |_| false)
}

/// A multi-line value (a template's body): as `printable`, keeping its newlines and tabs.
pub(crate) fn printable_block(text: &str) -> Cow<'_, str> {
    escape_unless(text, |c| c == '\n' || c == '\t')
}

fn escape_unless(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        !keep(c)
            && (c.is_control()
                || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn describe_source(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!("file {}", path.display()),
        None => "embedded defaults, no config file".to_owned(),
    }
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    // refinery reports every migration check at info; only its warnings are worth a line.
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)?
        .add_directive("refinery_core=warn".parse()?);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!(e))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(config: Config, from_file: bool) -> anyhow::Result<ExitCode> {
    if from_file {
        tracing::info!("configuration loaded");
    } else {
        tracing::info!(
            listen = %config.server.listen,
            database = %config.database.path.display(),
            "no config file given (--config or MMC_CONFIG): running on the embedded defaults; \
             `mailmycustomer init-config` prints a config to start from"
        );
    }
    runtime()?.block_on(async {
        let listener = crate::web::listener::bind(&config.server.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is another instance running? Change server.listen or pass --listen",
                    config.server.listen
                )
            })?;
        // Registered before serve logs that it is serving: a stop that comes right after that
        // line must shut down cleanly, not meet the default action and kill the process.
        let stop = shutdown_signal()?;
        crate::serve(config, listener, stop).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (systemd stop). Both handlers are installed when this
/// is called, not when the future is first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutdown requested: finishing requests in flight");
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested: finishing requests in flight");
    })
}

pub(crate) fn open_db(config: &Config) -> anyhow::Result<rusqlite::Connection> {
    let mut conn = db::open(&db::Options::new(config)?)?;
    db::migrate(&mut conn)?;
    Ok(conn)
}

/// The shared state the service layer works on, over a migrated database.
pub(crate) fn app(config: &Config) -> anyhow::Result<crate::app::App> {
    drop(open_db(config)?);
    Ok(crate::app::App::new(config.clone())?)
}

fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let conn = open_db(config)?;
    println!(
        "database {} is at schema version {}",
        config.database.path.display(),
        db::schema_version(&conn)?
    );
    Ok(ExitCode::SUCCESS)
}

fn healthcheck(config: &Config, url: Option<String>, timeout: u64) -> anyhow::Result<ExitCode> {
    let url = url.unwrap_or_else(|| {
        format!(
            "http://{}/healthz",
            config::local_address(&config.server.listen)
        )
    });
    let result = runtime()?.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .build()?;
        let response = client.get(&url).send().await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    });
    match result {
        Ok((status, body)) if status.is_success() => {
            println!("healthy: {url} answered {status}: {}", printable(&body));
            Ok(ExitCode::SUCCESS)
        }
        Ok((status, body)) => {
            eprintln!("unhealthy: {url} answered {status}: {}", printable(&body));
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_a_terminal_would_obey() {
        assert!(matches!(printable("Jenny Rösen 山田"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}[2Jb\rc\nd\u{9b}e\u{7f}\u{202e}f\tg"),
            "a\\u{1b}[2Jb\\u{d}c\\u{a}d\\u{9b}e\\u{7f}\\u{202e}f\\u{9}g"
        );
        assert_eq!(
            printable_block("<p>\n\tx\u{1b}]0;t\u{7}</p>\r\n"),
            "<p>\n\tx\\u{1b}]0;t\\u{7}</p>\\u{d}\n"
        );
    }
}
