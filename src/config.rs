//! Typed configuration: embedded defaults < TOML file < values saved on the settings page (the
//! `settings` table) < `MMC_SECTION__KEY` environment variables < command-line flags. Unknown
//! keys are errors that name the key, so a typo never silently falls back to a default.
//!
//! `Config::load` reads the file, the environment and the flags and remembers where each key's
//! value came from (`Source`); `Config::with_saved` lays the page's values over that, so the
//! page can say which value is whose and leave the environment's and the flags' alone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The commented example config, embedded so `init-config` can print it on any machine.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Prefix of the environment variables that set config keys: `MMC_SERVER__LISTEN` sets
/// `server.listen`.
pub const ENV_PREFIX: &str = "MMC_";

/// Environment variables with the prefix that are flags of the CLI rather than config keys.
pub const CLI_ENV_VARS: &[&str] = &["MMC_CONFIG"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub stripe: StripeConfig,
    pub smtp: SmtpConfig,
    pub outbox: OutboxConfig,
    pub processor: ProcessorConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub backup: BackupConfig,
    /// Where each value came from; not a setting itself.
    #[serde(skip)]
    pub origin: Origin,
}

/// Where a key's effective value came from, from the weakest layer to the strongest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    /// Saved on the settings page.
    Page,
    /// The environment variable that set it (`MMC_SMTP__HOST`, or `MMC_SMTP__PASSWORD_FILE`).
    Env(String),
    /// The command-line flag that set it (`--public-url`).
    Flag(&'static str),
}

impl Source {
    /// Why the settings page cannot change the value, when it cannot: the environment and the
    /// flags win over the page.
    pub fn read_only_reason(&self) -> Option<String> {
        match self {
            Source::Env(var) => Some(format!("set by {var}")),
            Source::Flag(flag) => Some(format!("set by {flag}")),
            Source::Default | Source::File | Source::Page => None,
        }
    }
}

/// The keys the settings page can set, named as in the config file; the `settings` table stores
/// its values under these names.
pub const SETTABLE: &[&str] = &[
    "smtp.host",
    "smtp.port",
    "smtp.security",
    "smtp.username",
    "smtp.password",
    "smtp.from_address",
    "smtp.from_name",
    "smtp.reply_to",
    "smtp.pool_size",
    "smtp.rate_limit_per_sec",
    "server.public_url",
];

/// The provenance of a config's values: the source of every key not at its default, and the
/// settable keys' values as they were below the page, so saved values can be replaced or
/// removed again.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    sources: BTreeMap<String, Source>,
    below_page: BTreeMap<&'static str, (String, Source)>,
}

/// Two configs with the same values are the same config, wherever the values came from.
impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds to.
    pub listen: String,
    /// When set, the merchant's pages are served only on this address (e.g. 127.0.0.1:8081,
    /// reached through an SSH tunnel or a VPN), and `listen` serves only webhooks and health.
    pub admin_listen: String,
    /// The address Stripe reaches this server at, used to print webhook URLs. Empty: derived
    /// from `listen`, which only works for `stripe listen --forward-to` on this machine.
    pub public_url: String,
    /// Largest webhook body accepted; Stripe events are well under this.
    pub max_webhook_bytes: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_timeout_secs: u64,
    /// A request's headers must arrive within this many seconds of the connection opening, or
    /// of their first byte on a kept-alive connection; otherwise the connection is closed.
    pub header_timeout_secs: u64,
    /// A webhook's whole body must arrive within this many seconds of its headers (408).
    pub body_timeout_secs: u64,
    /// A kept-alive connection waiting this many seconds for its next request is closed.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen queue until one closes.
    pub max_connections: u32,
    /// Reverse proxies (addresses or networks such as 10.0.0.0/8) whose `X-Forwarded-For` is
    /// believed; sign-in limits key on the client address it names. Empty: the peer's address.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            admin_listen: String::new(),
            public_url: String::new(),
            max_webhook_bytes: 512 * 1024,
            shutdown_timeout_secs: 30,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub path: PathBuf,
    /// How long a connection waits for a lock held by another connection or process before
    /// giving up (webhooks then get 503 and Stripe retries).
    pub busy_timeout_ms: u64,
    /// The key the database's secrets are sealed with (32 random bytes as 64 hex digits or
    /// base64). Empty: the key file beside the database, `<path>.key` (`crate::seal`).
    pub secret_key: Secret,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            path: PathBuf::from("./mailmycustomer.db"),
            busy_timeout_ms: 5000,
            secret_key: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    pub api_base: String,
    pub webhook_tolerance_secs: u64,
    /// How often, in minutes, integrations that can read events (`GET /v1/events`) list the
    /// ones no webhook brought (`pipeline::catchup`); also once at start. 0: never.
    pub catch_up_interval_minutes: u64,
    /// Connect OAuth ("Connect with Stripe"), for an operator who runs a Connect platform.
    pub connect: ConnectConfig,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            api_base: "https://api.stripe.com".to_owned(),
            webhook_tolerance_secs: 300,
            catch_up_interval_minutes: 60,
            connect: ConnectConfig::default(),
        }
    }
}

/// The platform's Connect settings (`[stripe.connect]`): all of `client_id`, `secret_key` and
/// `webhook_secret`, or none (then the Add page offers no "Connect with Stripe").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectConfig {
    /// The platform's client id (`ca_…`, Dashboard → Settings → Connect → Onboarding options → OAuth).
    pub client_id: String,
    /// The platform's secret key (`sk_…`): the code exchange's `client_secret`, and the key
    /// that deauthorizes an account.
    pub secret_key: Secret,
    /// The signing secret of the platform's Connect webhook endpoint (`whsec_…`), which
    /// delivers every connected account's events to `/webhooks/stripe/connect`.
    pub webhook_secret: Secret,
    pub authorize_url: String,
    pub token_url: String,
    pub deauthorize_url: String,
    /// `read_write` (a Standard account's platform) or `read_only` (an extension).
    pub scope: String,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            client_id: String::new(),
            secret_key: Secret::default(),
            webhook_secret: Secret::default(),
            authorize_url: "https://connect.stripe.com/oauth/authorize".to_owned(),
            token_url: "https://connect.stripe.com/oauth/token".to_owned(),
            deauthorize_url: "https://connect.stripe.com/oauth/deauthorize".to_owned(),
            scope: "read_write".to_owned(),
        }
    }
}

impl ConnectConfig {
    /// Whether Connect OAuth is set up (validation makes the three keys go together).
    pub fn is_configured(&self) -> bool {
        !self.client_id.is_empty() && !self.secret_key.is_empty() && !self.webhook_secret.is_empty()
    }

    /// What `validate` says about this section.
    fn problems(&self, problems: &mut Vec<(&'static str, String)>) {
        let keys: [(&'static str, bool); 3] = [
            ("stripe.connect.client_id", self.client_id.is_empty()),
            ("stripe.connect.secret_key", self.secret_key.is_empty()),
            (
                "stripe.connect.webhook_secret",
                self.webhook_secret.is_empty(),
            ),
        ];
        if keys.iter().any(|(_, empty)| !empty) {
            for (key, _) in keys.iter().filter(|(_, empty)| *empty) {
                problems.push((
                    key,
                    format!(
                        "{key} is missing: stripe.connect.client_id, secret_key and webhook_secret                          go together (set all three for Connect with Stripe, or none)"
                    ),
                ));
            }
        }
        let prefixed = [
            (
                "stripe.connect.client_id",
                self.client_id.as_str(),
                "ca_",
                "the platform's client id (ca_…)",
            ),
            (
                "stripe.connect.secret_key",
                self.secret_key.expose(),
                "sk_",
                "the platform's secret key (sk_…)",
            ),
            (
                "stripe.connect.webhook_secret",
                self.webhook_secret.expose(),
                "whsec_",
                "the Connect endpoint's signing secret (whsec_…)",
            ),
        ];
        for (key, value, prefix, what) in prefixed {
            if !value.is_empty() && !value.starts_with(prefix) {
                problems.push((key, format!("{key} must be {what}")));
            }
        }
        for (key, value) in [
            ("stripe.connect.authorize_url", &self.authorize_url),
            ("stripe.connect.token_url", &self.token_url),
            ("stripe.connect.deauthorize_url", &self.deauthorize_url),
        ] {
            check_url(key, value, problems);
        }
        if !["read_write", "read_only"].contains(&self.scope.as_str()) {
            problems.push((
                "stripe.connect.scope",
                format!(
                    "stripe.connect.scope = {:?} is not \"read_write\" or \"read_only\"",
                    self.scope
                ),
            ));
        }
    }
}

/// A secret string: `Debug` never shows it, and `Config::dump` redacts it.
pub use crate::secret::Secret;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP: only for a relay on the same machine or network (port 25).
    None,
    /// SMTP upgraded with STARTTLS (port 587), the usual submission setup.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// The relay's host name. Empty: no SMTP yet; emails wait in the outbox until it is set.
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    pub password: Secret,
    /// The sender address, e.g. "billing@example.com". Its domain also names the Message-ID.
    pub from_address: String,
    pub from_name: String,
    pub reply_to: String,
    /// Name given in EHLO; empty: the from address's domain.
    pub helo_name: String,
    /// Connect and per-command timeout.
    pub timeout_secs: u64,
    /// Parallel connections to the relay.
    pub pool_size: usize,
    /// Messages per second at most (0: no limit), for relays that impose one.
    pub rate_limit_per_sec: u32,
    /// DKIM signing: all three set, or none. The key is a PEM RSA or Ed25519 private key.
    pub dkim_key_path: String,
    pub dkim_selector: String,
    pub dkim_domain: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 587,
            security: SmtpSecurity::Starttls,
            username: String::new(),
            password: Secret::default(),
            from_address: String::new(),
            from_name: String::new(),
            reply_to: String::new(),
            helo_name: String::new(),
            timeout_secs: 30,
            pool_size: 4,
            rate_limit_per_sec: 0,
            dkim_key_path: String::new(),
            dkim_selector: String::new(),
            dkim_domain: String::new(),
        }
    }
}

impl SmtpSecurity {
    /// The name used in the config file and on the settings page.
    pub fn name(self) -> &'static str {
        match self {
            SmtpSecurity::None => "none",
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
        }
    }

    pub fn from_name(name: &str) -> Option<SmtpSecurity> {
        [
            SmtpSecurity::None,
            SmtpSecurity::Starttls,
            SmtpSecurity::Tls,
        ]
        .into_iter()
        .find(|s| s.name() == name.trim())
    }
}

impl SmtpConfig {
    pub fn is_configured(&self) -> bool {
        !self.host.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// How long a message keeps being retried after a temporary failure before it is marked
    /// failed (Stripe itself retries webhooks for 3 days).
    pub max_retry_hours: u64,
    /// How long a worker's claim on a message lasts; it renews the claim while a slow relay keeps
    /// it busy. A crashed server's claims are handed back when `serve` starts, not after this.
    pub lease_secs: u64,
    /// The first retry waits about this long; each further one twice as long, at most an hour.
    pub retry_base_secs: u64,
    /// Delete sent, failed and skipped deliveries (and their events) older than this many days;
    /// 0 keeps everything.
    pub retention_days: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_retry_hours: 72,
            lease_secs: 300,
            retry_base_secs: 60,
            retention_days: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Events prepared at once; each may wait on Stripe's API, so one slow lookup holds up no
    /// other event.
    pub concurrency: usize,
    /// The longest one event's preparation (mostly its Stripe lookups) may take; past it the
    /// event is postponed and tried again.
    pub event_timeout_secs: u64,
    /// About how long the first retry of an event whose lookups failed waits; each further one
    /// twice as long, at most an hour.
    pub retry_base_secs: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            concurrency: 8,
            event_timeout_secs: 30,
            retry_base_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, or per module such as `info,mailmycustomer=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `GET /metrics` (Prometheus text). Off unless one of the two is set, so it is never open to
/// the internet by accident.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this address of its own (e.g. `127.0.0.1:9090`), without a token.
    pub listen: String,
    /// A bearer token: when set, `/metrics` is also served on `server.listen` to requests that
    /// carry `Authorization: Bearer <token>`.
    pub token: Secret,
}

impl MetricsConfig {
    pub fn is_enabled(&self) -> bool {
        !self.listen.is_empty() || !self.token.is_empty()
    }
}

/// The scheduled backup `serve` makes (`mailmycustomer backup` makes one by hand).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Hours between scheduled backups; 0 turns them off.
    pub interval_hours: u64,
    /// Where they go. Empty: a `backups` directory beside the database.
    pub dir: PathBuf,
    /// How many scheduled backups are kept; older ones are deleted after a new one is checked.
    pub keep: u32,
    /// Compress them (zstd), as `backup --compress` does.
    pub compress: bool,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            interval_hours: 0,
            dir: PathBuf::new(),
            keep: 7,
            compress: true,
        }
    }
}

/// Values given as command-line flags; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub database: Option<PathBuf>,
    pub log_level: Option<String>,
}

impl Config {
    /// Builds the effective config. `file` is None when no config file was given, in which case
    /// the embedded defaults apply; `env` is the process environment (passed in for tests).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, Error> {
        let config = Config::load_unchecked(file, env, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// `load` short of `validate`: the layers read and merged, each key's source kept, so
    /// `doctor` can name the layer that set each value `problems` reports.
    pub fn load_unchecked(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, Error> {
        let mut sources = BTreeMap::new();
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("cannot read config file {}: {e}", path.display()))
                })?;
                // Parsing the text straight into the struct gives errors with line, column
                // and the unknown key's name.
                let from_file: Config =
                    toml::from_str(&text).map_err(|e| file_error(path, &text, &e))?;
                // The keys the file names (the struct alone cannot tell a key written at its
                // default from one left out).
                let written: toml::Table = toml::from_str(&text).unwrap_or_default();
                for (section, keys) in &written {
                    for (key, value) in keys.as_table().into_iter().flatten() {
                        // `[stripe.connect]` is a table within a section.
                        match value.as_table() {
                            Some(table) => {
                                for inner in table.keys() {
                                    sources
                                        .insert(format!("{section}.{key}.{inner}"), Source::File);
                                }
                            }
                            None => {
                                sources.insert(format!("{section}.{key}"), Source::File);
                            }
                        }
                    }
                }
                toml::Table::try_from(from_file).expect("config serializes to a table")
            }
            None => toml::Table::try_from(Config::default()).expect("config serializes"),
        };

        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !CLI_ENV_VARS.contains(&k.as_str()))
            .collect();
        env.sort();
        for (name, value) in env {
            let key = apply_env(&mut tree, &name, &value)?;
            sources.insert(key, Source::Env(name));
        }

        let mut config: Config = toml::Value::Table(tree)
            .try_into()
            .map_err(|e| Error::Config(format!("environment: {e}")))?;

        if let Some(v) = &overrides.listen {
            config.server.listen = v.clone();
            sources.insert("server.listen".into(), Source::Flag("--listen"));
        }
        if let Some(v) = &overrides.public_url {
            config.server.public_url = v.clone();
            sources.insert("server.public_url".into(), Source::Flag("--public-url"));
        }
        if let Some(v) = &overrides.database {
            config.database.path = v.clone();
            sources.insert("database.path".into(), Source::Flag("--database"));
        }
        if let Some(v) = &overrides.log_level {
            config.log.level = v.clone();
            sources.insert("log.level".into(), Source::Flag("--log-level"));
        }
        config.origin.sources = sources;
        Ok(config)
    }

    /// Checks what types alone cannot; every problem is reported, not only the first.
    pub fn validate(&self) -> Result<(), Error> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let messages: Vec<String> = problems.into_iter().map(|(_, message)| message).collect();
        Err(Error::Config(messages.join("; ")))
    }

    /// What `validate` reports, each problem with the key it is about, so the settings page can
    /// mark the field.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(e) = self.server.listen.parse::<SocketAddr>() {
            problems.push((
                "server.listen",
                format!(
                    "server.listen = {:?} is not an address like 127.0.0.1:8080 ({e})",
                    self.server.listen
                ),
            ));
        }
        if !self.server.admin_listen.is_empty() {
            if let Err(e) = self.server.admin_listen.parse::<SocketAddr>() {
                problems.push((
                    "server.admin_listen",
                    format!(
                        "server.admin_listen = {:?} is not an address like 127.0.0.1:8081 ({e})",
                        self.server.admin_listen
                    ),
                ));
            }
        }
        if !self.server.public_url.is_empty() {
            check_url("server.public_url", &self.server.public_url, &mut problems);
        }
        for entry in &self.server.trusted_proxies {
            if parse_network(entry).is_none() {
                problems.push((
                    "server.trusted_proxies",
                    format!(
                        "server.trusted_proxies: {entry:?} is not an address or network like \
                         127.0.0.1 or 10.0.0.0/8"
                    ),
                ));
            }
        }
        check_url("stripe.api_base", &self.stripe.api_base, &mut problems);
        self.stripe.connect.problems(&mut problems);
        if self.server.max_webhook_bytes < 1024 {
            problems.push((
                "server.max_webhook_bytes",
                "server.max_webhook_bytes must be at least 1024".to_owned(),
            ));
        }
        for (key, secs) in [
            (
                "server.header_timeout_secs",
                self.server.header_timeout_secs,
            ),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
            ("server.idle_timeout_secs", self.server.idle_timeout_secs),
            ("outbox.retry_base_secs", self.outbox.retry_base_secs),
            (
                "processor.event_timeout_secs",
                self.processor.event_timeout_secs,
            ),
            ("processor.retry_base_secs", self.processor.retry_base_secs),
        ] {
            if secs == 0 {
                problems.push((key, format!("{key} must be at least 1")));
            }
        }
        if self.server.max_connections == 0 {
            problems.push((
                "server.max_connections",
                "server.max_connections must be at least 1".to_owned(),
            ));
        }
        let smtp = &self.smtp;
        if smtp.is_configured() {
            if !smtp.from_address.contains('@') {
                problems.push((
                    "smtp.from_address",
                    format!(
                        "smtp.from_address = {:?} must be an email address when smtp.host is set",
                        smtp.from_address
                    ),
                ));
            }
            if smtp.port == 0 {
                problems.push((
                    "smtp.port",
                    "smtp.port must be a port number from 1 to 65535 when smtp.host is set"
                        .to_owned(),
                ));
            }
            if smtp.pool_size == 0 {
                problems.push((
                    "smtp.pool_size",
                    "smtp.pool_size must be at least 1".to_owned(),
                ));
            }
            if smtp.username.is_empty() != smtp.password.is_empty() {
                let missing = match smtp.username.is_empty() {
                    true => "smtp.username",
                    false => "smtp.password",
                };
                problems.push((
                    missing,
                    "smtp.username and smtp.password go together: set both or neither".to_owned(),
                ));
            }
        }
        let dkim = [&smtp.dkim_key_path, &smtp.dkim_selector, &smtp.dkim_domain];
        if dkim.iter().any(|v| v.is_empty()) && dkim.iter().any(|v| !v.is_empty()) {
            problems.push(("smtp.dkim_key_path", "smtp.dkim_key_path, smtp.dkim_selector and smtp.dkim_domain go together: set all three or none".to_owned()));
        }
        if self.outbox.lease_secs < 10 {
            problems.push((
                "outbox.lease_secs",
                "outbox.lease_secs must be at least 10".to_owned(),
            ));
        }
        if self.processor.concurrency == 0 {
            problems.push((
                "processor.concurrency",
                "processor.concurrency must be at least 1".to_owned(),
            ));
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            problems.push((
                "metrics.listen",
                format!(
                    "metrics.listen = {:?} is not an address and port such as \"127.0.0.1:9090\"",
                    self.metrics.listen
                ),
            ));
        }
        if self.backup.keep == 0 {
            problems.push((
                "backup.keep",
                "backup.keep must be at least 1 (backup.interval_hours = 0 turns backups off)"
                    .to_owned(),
            ));
        }
        if self.database.path.as_os_str().is_empty() {
            problems.push(("database.path", "database.path is empty".to_owned()));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push((
                "log.level",
                format!(
                    "log.level = {:?} is not a level or filter such as \"info\" ({e})",
                    self.log.level
                ),
            ));
        }
        problems
    }

    /// The URL to paste into Stripe for an integration.
    pub fn webhook_url(&self, integration_id: &str) -> String {
        format!("{}/webhooks/stripe/{integration_id}", self.base_url())
    }

    /// The public URL, or one derived from `listen` when none is configured.
    pub fn base_url(&self) -> String {
        if !self.server.public_url.is_empty() {
            return self.server.public_url.trim_end_matches('/').to_owned();
        }
        format!("http://{}", local_address(&self.server.listen))
    }

    /// Where `key`'s value (`smtp.host`) came from.
    pub fn source(&self, key: &str) -> Source {
        self.origin
            .sources
            .get(key)
            .cloned()
            .unwrap_or(Source::Default)
    }

    /// A settable key's value as text, as the settings page stores it; None for a key the page
    /// cannot set.
    pub fn setting(&self, key: &str) -> Option<String> {
        let smtp = &self.smtp;
        Some(match key {
            "smtp.host" => smtp.host.clone(),
            "smtp.port" => smtp.port.to_string(),
            "smtp.security" => smtp.security.name().to_owned(),
            "smtp.username" => smtp.username.clone(),
            "smtp.password" => smtp.password.expose().to_owned(),
            "smtp.from_address" => smtp.from_address.clone(),
            "smtp.from_name" => smtp.from_name.clone(),
            "smtp.reply_to" => smtp.reply_to.clone(),
            "smtp.pool_size" => smtp.pool_size.to_string(),
            "smtp.rate_limit_per_sec" => smtp.rate_limit_per_sec.to_string(),
            "server.public_url" => self.server.public_url.clone(),
            _ => return None,
        })
    }

    /// A settable key's value below the page (from the file or the default): what it falls
    /// back to when the page's value is removed.
    pub fn below_page(&self, key: &str) -> Option<String> {
        match self.origin.below_page.get(key) {
            Some((value, _)) => Some(value.clone()),
            None => self.setting(key),
        }
    }

    /// Sets a settable key from text; a value of the wrong kind is `Invalid`, naming the key.
    fn set_setting(&mut self, key: &'static str, value: &str) -> Result<(), Error> {
        fn number<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, Error> {
            value.trim().parse().map_err(|_| Error::Invalid {
                field: key,
                message: format!("{key} = {value:?} is not a whole number"),
            })
        }
        let smtp = &mut self.smtp;
        match key {
            "smtp.host" => smtp.host = value.to_owned(),
            "smtp.port" => {
                smtp.port = value.trim().parse().map_err(|_| Error::Invalid {
                    field: key,
                    message: format!("smtp.port = {value:?} is not a port number from 1 to 65535"),
                })?
            }
            "smtp.security" => {
                smtp.security = SmtpSecurity::from_name(value).ok_or_else(|| Error::Invalid {
                    field: key,
                    message: format!(
                        "smtp.security = {value:?} is not one of \"starttls\", \"tls\" or \"none\""
                    ),
                })?
            }
            "smtp.username" => smtp.username = value.to_owned(),
            "smtp.password" => smtp.password = Secret(value.to_owned()),
            "smtp.from_address" => smtp.from_address = value.to_owned(),
            "smtp.from_name" => smtp.from_name = value.to_owned(),
            "smtp.reply_to" => smtp.reply_to = value.to_owned(),
            "smtp.pool_size" => smtp.pool_size = number(key, value)?,
            "smtp.rate_limit_per_sec" => smtp.rate_limit_per_sec = number(key, value)?,
            "server.public_url" => self.server.public_url = value.to_owned(),
            _ => {
                return Err(Error::Invalid {
                    field: key,
                    message: format!("{key} cannot be changed on the settings page"),
                })
            }
        }
        Ok(())
    }

    /// This config with the values saved on the settings page (`smtp.host` → text) laid over
    /// the file and the defaults; a key set by the environment or a flag keeps that value.
    /// Works on a loaded config and on one that already has saved values, which `saved`
    /// replaces: a key no longer saved returns to its value below the page. The result is
    /// checked as the config file is; the first problem is `Invalid`, naming its key.
    pub fn with_saved(&self, saved: &BTreeMap<String, String>) -> Result<Config, Error> {
        if let Some(key) = saved.keys().find(|k| !SETTABLE.contains(&k.as_str())) {
            return Err(Error::Config(format!(
                "the saved setting {key} is not one the settings page sets (saved by a newer version?)"
            )));
        }
        let mut config = self.clone();
        for &key in SETTABLE {
            let (below, below_source) = config
                .origin
                .below_page
                .entry(key)
                .or_insert_with(|| (self.setting(key).unwrap_or_default(), self.source(key)))
                .clone();
            if config.source(key).read_only_reason().is_some() {
                continue;
            }
            let (value, source) = match saved.get(key) {
                Some(value) => (value.as_str(), Source::Page),
                None => (below.as_str(), below_source),
            };
            config.set_setting(key, value)?;
            config.origin.sources.insert(key.to_owned(), source);
        }
        let problems = config.problems();
        let first = problems
            .iter()
            .find(|(field, _)| SETTABLE.contains(field))
            .or(problems.first());
        match first {
            Some((field, message)) => Err(Error::invalid(field, message.clone())),
            None => Ok(config),
        }
    }

    /// The config as TOML with secrets (the SMTP password, the database's key) redacted. (Stripe
    /// keys and webhook secrets live in the database, sealed, not in the config.)
    /// It opens with comment lines naming the keys that come from the settings page, the
    /// environment or a flag, since the values alone do not say which layer won.
    pub fn dump(&self) -> String {
        let mut shown = self.clone();
        for secret in [
            &mut shown.smtp.password,
            &mut shown.database.secret_key,
            &mut shown.stripe.connect.secret_key,
            &mut shown.stripe.connect.webhook_secret,
            &mut shown.metrics.token,
        ] {
            if !secret.is_empty() {
                *secret = Secret("[redacted]".to_owned());
            }
        }
        let mut out = String::from(
            "# The effective configuration: defaults < config file < settings page < environment < flags.\n",
        );
        let mut page = Vec::new();
        let mut env = Vec::new();
        let mut flags = Vec::new();
        for (key, source) in &self.origin.sources {
            match source {
                Source::Page => page.push(key.clone()),
                Source::Env(var) => env.push(format!("{key} ({var})")),
                Source::Flag(flag) => flags.push(format!("{key} ({flag})")),
                Source::Default | Source::File => {}
            }
        }
        for (from, keys) in [
            ("the settings page", page),
            ("the environment", env),
            ("flags", flags),
        ] {
            if !keys.is_empty() {
                out.push_str(&format!("# From {from}: {}\n", keys.join(", ")));
            }
        }
        out.push('\n');
        out.push_str(&toml::to_string_pretty(&shown).expect("config serializes"));
        out
    }
}

impl ServerConfig {
    /// `trusted_proxies` as networks (an address is a network of one).
    pub fn trusted_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|entry| parse_network(entry))
            .collect()
    }
}

fn parse_network(entry: &str) -> Option<ipnet::IpNet> {
    let entry = entry.trim();
    entry.parse::<ipnet::IpNet>().ok().or_else(|| {
        entry
            .parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// `0.0.0.0:8080` is where the server listens, but not an address to send requests to.
pub fn local_address(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let loopback = if addr.is_ipv4() { "127.0.0.1" } else { "[::1]" };
            format!("{loopback}:{}", addr.port())
        }
        _ => listen.to_owned(),
    }
}

fn check_url(key: &'static str, value: &str, problems: &mut Vec<(&'static str, String)>) {
    let ok = (value.starts_with("http://") || value.starts_with("https://"))
        && reqwest::Url::parse(value).is_ok();
    if !ok {
        problems.push((
            key,
            format!("{key} = {value:?} is not an http:// or https:// URL"),
        ));
    }
}

/// A config file error that says where (file, line, column, and the key when the line has
/// one) and what, but never shows the line: toml's own message quotes it, and a broken line
/// may hold an SMTP password. A value the message itself repeats (`invalid type: integer
/// `123456``) is hidden too.
fn file_error(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    let mut message = err.message().trim().to_owned();
    let mut place = path.display().to_string();
    if let Some(span) = err.span() {
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = text[line_start..].lines().next().unwrap_or_default();
        place = format!(
            "{place}, line {}, column {}",
            text[..start].matches('\n').count() + 1,
            text[line_start..start].chars().count() + 1
        );
        if let Some((key, value)) = line.split_once('=') {
            let section = text[..line_start]
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .map(|l| l.trim_matches(['[', ']', ' ']));
            let key = key.trim();
            match section {
                Some(section) => place = format!("{place}, key {section}.{key}"),
                None => place = format!("{place}, key {key}"),
            }
            let value = value.trim().trim_matches(['"', '\'']).trim();
            if !value.is_empty() {
                message = message.replace(value, "(value hidden)");
            }
        }
    }
    Error::Config(format!("{place}: {message}"))
}

/// Sets the key named by one `MMC_SECTION__KEY` variable and returns its name (`section.key`);
/// `MMC_STRIPE__CONNECT__CLIENT_ID` reaches a table within a section (`stripe.connect.client_id`).
/// The value takes the type of the key's default, so `MMC_SERVER__MAX_WEBHOOK_BYTES=abc` is an
/// error that names the variable.
fn apply_env(tree: &mut toml::Table, name: &str, value: &str) -> Result<String, Error> {
    let path = &name[ENV_PREFIX.len()..];
    let mut parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if parts.len() < 2 || parts.iter().any(String::is_empty) {
        return Err(Error::Config(format!(
            "environment variable {name} is not a setting: settings are named MMC_SECTION__KEY, e.g. MMC_SERVER__LISTEN"
        )));
    }
    let mut key = parts.pop().expect("two parts at least");
    let tables = parts;
    let find_table = |tree: &toml::Table| -> Option<toml::Table> {
        let mut table = tree;
        for part in &tables {
            table = table.get(part)?.as_table()?;
        }
        Some(table.clone())
    };
    // `MMC_SMTP__PASSWORD_FILE=/run/secrets/smtp` reads a secret from a file (systemd
    // credentials, Docker secrets) instead of the environment.
    let mut value = value.to_owned();
    if let Some(base) = key.strip_suffix("_file") {
        let is_text = find_table(tree)
            .and_then(|t| t.get(base).cloned())
            .is_some_and(|v| v.is_str());
        if is_text {
            value = std::fs::read_to_string(&value)
                .map_err(|e| {
                    Error::Config(format!(
                        "environment variable {name}: cannot read {value}: {e}"
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            key = base.to_owned();
        }
    }
    let value = value.as_str();
    let setting = format!("{}.{key}", tables.join("."));
    let unknown = || {
        Error::Config(format!(
            "environment variable {name} names unknown setting {setting}"
        ))
    };
    let mut table = &mut *tree;
    for part in &tables {
        table = table
            .get_mut(part)
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(unknown)?;
    }
    let current = table.get(&key).ok_or_else(unknown)?;
    let parsed = match current {
        toml::Value::String(_) => toml::Value::String(value.to_owned()),
        toml::Value::Integer(_) => toml::Value::Integer(value.trim().parse().map_err(|_| {
            Error::Config(format!("environment variable {name}={value:?} is not a whole number"))
        })?),
        toml::Value::Boolean(_) => toml::Value::Boolean(value.trim().parse().map_err(|_| {
            Error::Config(format!("environment variable {name}={value:?} is not true or false"))
        })?),
        // A list of text, comma-separated: MMC_SERVER__TRUSTED_PROXIES=10.0.0.1,10.0.0.2
        toml::Value::Array(_) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| toml::Value::String(v.to_owned()))
                .collect(),
        ),
        other => {
            return Err(Error::Config(format!(
                "environment variable {name}: setting {setting} of type {} cannot be set from the environment",
                other.type_str()
            )))
        }
    };
    table.insert(key.clone(), parsed);
    Ok(setting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_without_file() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.database.path, PathBuf::from("./mailmycustomer.db"));
        assert_eq!(c.stripe.api_base, "https://api.stripe.com");
        assert_eq!(c.stripe.webhook_tolerance_secs, 300);
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let file = write(
            "[server]\nlisten = \"127.0.0.1:9000\"\npublic_url = \"https://file.example\"\n\
             [stripe]\nwebhook_tolerance_secs = 60\n[log]\nlevel = \"warn\"\n",
        );
        let vars = env(&[
            ("MMC_SERVER__PUBLIC_URL", "https://env.example"),
            ("MMC_LOG__LEVEL", "debug"),
            ("MMC_STRIPE__WEBHOOK_TOLERANCE_SECS", "120"),
            ("PATH", "/usr/bin"),
            ("MMC_CONFIG", "/ignored/as/a/flag"),
        ]);
        let flags = Overrides {
            log_level: Some("error".into()),
            ..Overrides::default()
        };
        let c = Config::load(Some(file.path()), vars, &flags).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9000", "file over default");
        assert_eq!(c.server.public_url, "https://env.example", "env over file");
        assert_eq!(c.stripe.webhook_tolerance_secs, 120, "env over file");
        assert_eq!(c.log.level, "error", "flag over env");
        assert_eq!(
            c.database.path,
            PathBuf::from("./mailmycustomer.db"),
            "default kept"
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let file = write("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
        let err = Config::load(Some(file.path()), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");

        let file = write("[smtpp]\nhost = \"x\"\n");
        let err = Config::load(Some(file.path()), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("smtpp"), "{err}");

        for var in ["MMC_SERVER__LISEN", "MMC_NOPE__LISTEN", "MMC_LISTEN"] {
            let err = Config::load(None, env(&[(var, "x")]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn wrong_values_are_named() {
        let err = Config::load(
            None,
            env(&[("MMC_STRIPE__WEBHOOK_TOLERANCE_SECS", "five")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("MMC_STRIPE__WEBHOOK_TOLERANCE_SECS"), "{err}");

        let err = Config::load(
            None,
            env(&[("MMC_LOG__FORMAT", "xml")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("xml"), "{err}");

        let file = write("[server]\nlisten = \"localhost\"\npublic_url = \"ftp://x\"\n");
        let err = Config::load(Some(file.path()), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.listen") && err.contains("server.public_url"),
            "{err}"
        );

        let file = write("[server]\nlisten = 8080\n");
        let err = Config::load(Some(file.path()), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }

    /// Issue 9.3: toml's message quotes the broken line; a password on it must not be shown.
    #[test]
    fn a_syntax_error_names_the_place_but_never_shows_a_secret() {
        let cases = [
            (
                "[server]\nlisten = \"127.0.0.1:1\"\n[smtp]\nhost = \"x\"\npassword = \"hunter2-Zq9 \n",
                "line 5",
                Some("smtp.password"),
            ),
            ("[smtp]\npassword = hunter2-Zq9\n", "line 2", Some("smtp.password")),
            ("[smtp]\n\npassword = 4242hunter2\n", "line 3", Some("smtp.password")),
            // An unclosed multi-line string: toml reports the end of the file.
            ("[smtp]\npassword = \"\"\"hunter2-Zq9\n", "line 3", None),
            // Well-formed, but of the wrong type: serde's message repeats the value.
            ("[smtp]\npassword = 987654321\n", "line 2", Some("smtp.password")),
        ];
        for (text, line, key) in cases {
            let file = write(text);
            let err = Config::load(Some(file.path()), env(&[]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                !err.contains("hunter2") && !err.contains("987654321"),
                "{err}"
            );
            let file_name = file.path().display().to_string();
            for want in [file_name.as_str(), line, "column", key.unwrap_or("")] {
                assert!(err.contains(want), "{want:?} missing from: {err}");
            }
        }
    }

    #[test]
    fn trusted_proxies_come_from_the_file_or_a_comma_separated_variable() {
        let file = write("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
        let c = Config::load(Some(file.path()), env(&[]), &Overrides::default()).unwrap();
        let nets = c.server.trusted_networks();
        assert!(nets[0].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(nets[1].contains(&"::1".parse::<std::net::IpAddr>().unwrap()));

        let vars = env(&[("MMC_SERVER__TRUSTED_PROXIES", "127.0.0.1, 192.168.0.0/16")]);
        let c = Config::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(c.server.trusted_proxies, ["127.0.0.1", "192.168.0.0/16"]);

        let vars = env(&[("MMC_SERVER__TRUSTED_PROXIES", "10.0.0.300")]);
        let err = Config::load(None, vars, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.trusted_proxies") && err.contains("10.0.0.300"),
            "{err}"
        );
    }

    #[test]
    fn a_half_configured_connect_section_names_the_missing_key() {
        let file = write("[stripe.connect]\nclient_id = \"ca_123\"\n");
        let err = Config::load(Some(file.path()), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stripe.connect.secret_key is missing")
                && err.contains("stripe.connect.webhook_secret is missing")
                && !err.contains("client_id is missing"),
            "{err}"
        );
        let vars = env(&[
            ("MMC_STRIPE__CONNECT__CLIENT_ID", "ca_123"),
            ("MMC_STRIPE__CONNECT__SECRET_KEY", "sk_test_platform"),
        ]);
        let err = Config::load(None, vars, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stripe.connect.webhook_secret is missing"),
            "{err}"
        );
        let vars = env(&[("MMC_STRIPE__CONNECT__SCOPE", "everything")]);
        let err = Config::load(None, vars, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("stripe.connect.scope"), "{err}");
    }

    #[test]
    fn connect_secrets_come_from_files_and_are_never_dumped() {
        let key = write("sk_test_platform_from_a_file\n");
        let vars = env(&[
            ("MMC_STRIPE__CONNECT__CLIENT_ID", "ca_123"),
            (
                "MMC_STRIPE__CONNECT__SECRET_KEY_FILE",
                key.path().to_str().unwrap(),
            ),
            (
                "MMC_STRIPE__CONNECT__WEBHOOK_SECRET",
                "whsec_connect_endpoint",
            ),
        ]);
        let c = Config::load(None, vars, &Overrides::default()).unwrap();
        let connect = &c.stripe.connect;
        assert!(connect.is_configured());
        assert_eq!(connect.secret_key.expose(), "sk_test_platform_from_a_file");
        assert_eq!(
            c.source("stripe.connect.secret_key"),
            Source::Env("MMC_STRIPE__CONNECT__SECRET_KEY_FILE".into())
        );
        let dump = c.dump();
        assert!(
            !dump.contains("sk_test_platform") && !dump.contains("whsec_connect"),
            "{dump}"
        );
        assert!(dump.contains("ca_123"), "{dump}");

        let file = write("[stripe.connect]\nscope = \"read_only\"\n");
        let c = Config::load(Some(file.path()), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.source("stripe.connect.scope"), Source::File);
        assert!(!c.stripe.connect.is_configured());
    }

    #[test]
    fn example_file_is_the_defaults() {
        let file = write(EXAMPLE);
        let c = Config::load(Some(file.path()), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn webhook_urls() {
        let mut c = Config::default();
        c.server.listen = "0.0.0.0:8080".into();
        assert_eq!(
            c.webhook_url("in_1"),
            "http://127.0.0.1:8080/webhooks/stripe/in_1"
        );
        c.server.public_url = "https://mail.example.com/".into();
        assert_eq!(
            c.webhook_url("in_1"),
            "https://mail.example.com/webhooks/stripe/in_1"
        );
    }
}
