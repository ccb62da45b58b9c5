//! `mailmycustomer doctor`: checks, in a fixed order, what a running instance depends on (the
//! config, the database, the SMTP relay, each integration's Stripe key and endpoint, the public
//! URL, the clock, the DKIM record) and returns one typed `Check` per finding, each failure with
//! its fix, so the CLI prints them and a page could show them.
//!
//! It runs beside a live server on the same database: the database is opened read-only, the
//! serve lock is never taken, Stripe is only read, and the relay gets EHLO (and AUTH) then QUIT,
//! never a message.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

use crate::config::{Config, Overrides, SmtpConfig, Source};
use crate::db::{self, integrations::Integration};
use crate::manage::connect::{endpoint_advice, lacking, public_url_problem, write_missing};
use crate::outbox::smtp::{Mailer, OutgoingEmail};
use crate::stripe::api::endpoints::is_live_key;
use crate::stripe::api::{Credentials, StripeClient, StripeError};

/// Below this much free space on the database's filesystem the server is not ready: SQLite
/// needs room for the WAL and for each transaction's pages, and a webhook refused with 503 for
/// a full disk is retried by Stripe, while one that fails halfway is not better. `/readyz` and
/// `doctor` judge by the same bound.
pub const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// A WAL past this size means checkpoints cannot reset it: the server checkpoints as it goes,
/// so the WAL stays within megabytes unless a reader holds an old snapshot open the whole time
/// (an open `sqlite3` shell, a stuck backup, a Litestream that stopped replicating).
pub const WAL_LIMIT_BYTES: u64 = 1024 * 1024 * 1024;

/// How long the DKIM lookup may take before the resolver is taken as not answering.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Free space for unprivileged writers on the filesystem holding `database`; `None` when the
/// system cannot say.
pub fn free_bytes(database: &Path) -> Option<u64> {
    let dir = match database.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// Not checked, for the reason given; never a failure.
    Skip,
}

/// One finding: what was checked (`smtp`, `stripe shop (int_…)`), how it went, what was found,
/// and for a failure the fix when `detail` does not already say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix,
        }
    }

    fn skip(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// Every check made, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether nothing failed (skips do not fail).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}

/// Collects the checks and hands each to `shown` as it is made, so a terminal sees the slow ones
/// (SMTP, Stripe, DNS) come in.
struct Run<'a> {
    report: Report,
    shown: &'a mut dyn FnMut(&Check),
}

impl Run<'_> {
    fn add(&mut self, check: Check) {
        (self.shown)(&check);
        self.report.checks.push(check);
    }
}

/// What the database told the later checks.
#[derive(Default)]
struct Found {
    /// `None`: the database could not be read, so the integrations are unknown.
    integrations: Option<Vec<Integration>>,
    /// The newest received event's (`created`, `received_at`), for the clock's weak hint.
    newest_event: Option<(i64, i64)>,
}

/// Runs every check on the config read from `file`, `env` and `overrides` (as every command
/// reads it), calling `shown` with each finding as it is made.
pub async fn run(
    file: Option<&Path>,
    env: Vec<(String, String)>,
    overrides: &Overrides,
    shown: &mut dyn FnMut(&Check),
) -> Report {
    let mut run = Run {
        report: Report::default(),
        shown,
    };
    let config = match Config::load_unchecked(file, env, overrides) {
        Ok(config) => config,
        Err(e) => {
            run.add(Check::fail(
                "config",
                e.to_string(),
                Some("fix the file or the environment variable named above".to_owned()),
            ));
            for name in ["database", "smtp", "stripe", "public url", "clock", "dkim"] {
                run.add(Check::skip(name, "the config does not load"));
            }
            return run.report;
        }
    };
    run.add(check_config(&config, file));

    let (config, found) = check_database(&mut run, config, file).await;
    run.add(check_smtp(&config.smtp).await);
    let clock_creds = check_stripe(&mut run, &config, found.integrations.as_deref()).await;
    run.add(check_public_url(&config, found.integrations.as_deref()));
    run.add(check_clock(&config, clock_creds, found.newest_event).await);
    run.add(check_dkim(&config.smtp).await);
    run.report
}

/// Where a key's value came from, as a person would look for it.
fn layer(source: &Source, file: Option<&Path>) -> String {
    match source {
        Source::Default => "its default".to_owned(),
        Source::File => match file {
            Some(path) => format!("the config file {}", path.display()),
            None => "the config file".to_owned(),
        },
        Source::Page => "the settings page".to_owned(),
        Source::Env(var) => format!("the environment variable {var}"),
        Source::Flag(flag) => format!("the flag {flag}"),
    }
}

fn check_config(config: &Config, file: Option<&Path>) -> Check {
    let problems = config.problems();
    if problems.is_empty() {
        let from = match file {
            Some(path) => format!("the config file {}", path.display()),
            None => "the embedded defaults (no config file)".to_owned(),
        };
        return Check::ok(
            "config",
            format!("loads and is valid: {from}, the environment and the flags"),
        );
    }
    let keys: Vec<String> = problems
        .iter()
        .map(|(key, _)| format!("{key} in {}", layer(&config.source(key), file)))
        .collect();
    let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
    Check::fail(
        "config",
        messages.join("; "),
        Some(format!("change {}", keys.join(", "))),
    )
}

/// The database checks, one line each, off the async executor; returns the config with the
/// values saved on the settings page laid over it (what the server runs with) and what the
/// later checks need.
async fn check_database(run: &mut Run<'_>, config: Config, file: Option<&Path>) -> (Config, Found) {
    let kept = config.clone();
    let file = file.map(Path::to_path_buf);
    match tokio::task::spawn_blocking(move || database_checks(config, file.as_deref())).await {
        Ok((config, checks, found)) => {
            for check in checks {
                run.add(check);
            }
            (config, found)
        }
        Err(e) => {
            run.add(Check::fail(
                "database",
                format!("the check stopped: {e}"),
                None,
            ));
            (kept, Found::default())
        }
    }
}

fn database_checks(config: Config, file: Option<&Path>) -> (Config, Vec<Check>, Found) {
    let path = config.database.path.clone();
    let mut checks = Vec::new();
    if !path.exists() {
        checks.push(Check::fail(
            "database",
            format!("there is no database at {}", path.display()),
            Some(format!(
                "check database.path (set in {}); `mailmycustomer migrate` or `serve` makes a new \
                 one, `mailmycustomer restore FILE` puts a backup there",
                layer(&config.source("database.path"), file)
            )),
        ));
        return (config, checks, Found::default());
    }
    // First the file as SQLite sees it, without the key: a damaged file and a wrong key are
    // different troubles with different fixes, and the checks that need no key still run.
    let plain = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|conn| {
        conn.busy_timeout(Duration::from_millis(config.database.busy_timeout_ms))?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(conn)
    });
    let plain = match plain {
        Ok(conn) => conn,
        Err(e) => {
            checks.push(Check::fail(
                "database",
                format!("cannot read {} as a SQLite database: {e}", path.display()),
                Some(restore()),
            ));
            return (config, checks, Found::default());
        }
    };
    checks.push(Check::ok(
        "database",
        format!("{} opens (read-only)", path.display()),
    ));
    let keyed = match db::Options::new(&config).and_then(|options| {
        let conn = db::open_read_only(&options)?;
        Ok((conn, options.sealer.location().to_owned()))
    }) {
        Ok((conn, location)) => {
            checks.push(Check::ok(
                "database key",
                format!("the key from {location} opens its secrets"),
            ));
            Some(conn)
        }
        // The message names where the key was looked for and what to give instead.
        Err(e) => {
            checks.push(Check::fail("database key", e.to_string(), None));
            None
        }
    };
    read_database(plain, keyed, config, checks)
}

/// What to do about a damaged database file.
fn restore() -> String {
    "the file is damaged: stop the server and restore the last backup \
     (`mailmycustomer restore FILE`), or a Litestream replica"
        .to_owned()
}

/// The blocking part of the database checks: the file's on `conn`, what needs the secrets on
/// `keyed` (none when the key does not open them).
fn read_database(
    conn: rusqlite::Connection,
    keyed: Option<rusqlite::Connection>,
    config: Config,
    mut checks: Vec<Check>,
) -> (Config, Vec<Check>, Found) {
    let path = config.database.path.clone();
    let mut found = Found::default();

    // quick_check reads every page and checks each b-tree's structure, but not that every index
    // matches its table row for row: integrity_check's extra pass costs minutes on a database
    // of gigabytes, holding a read snapshot (and so the WAL) the whole time. `backup` runs the
    // full integrity_check on its copy.
    let quick = conn.prepare("PRAGMA quick_check(5)").and_then(|mut s| {
        s.query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()
    });
    let integrity_ok = match quick {
        Ok(lines) if lines == ["ok"] => {
            checks.push(Check::ok(
                "database integrity",
                "PRAGMA quick_check: ok (the full integrity_check runs on each backup's copy)",
            ));
            true
        }
        Ok(lines) => {
            // SQLite puts several findings in one row, a line each.
            checks.push(damaged(
                lines.join("\n").lines().collect::<Vec<_>>().join("; "),
            ));
            false
        }
        Err(e) => {
            checks.push(damaged(e.to_string()));
            false
        }
    };

    let latest = db::latest_embedded_version();
    match db::schema_version(&conn) {
        Ok(version) if version == latest => checks.push(Check::ok(
            "database schema",
            format!("version {version}, this binary's"),
        )),
        Ok(version) if version < latest => checks.push(Check::fail(
            "database schema",
            format!("version {version}, this binary's is {latest}: migrations are pending"),
            Some("run `mailmycustomer migrate` (serve migrates at start too)".to_owned()),
        )),
        Ok(version) => checks.push(Check::fail(
            "database schema",
            format!(
                "version {version}, newer than this binary's {latest}: a newer mailmycustomer \
                 upgraded it"
            ),
            Some("run that newer version again; this one cannot run the database".to_owned()),
        )),
        Err(e) => checks.push(Check::fail("database schema", e.to_string(), None)),
    }

    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    checks.push(wal_check(wal_bytes));
    checks.push(disk_check(free_bytes(&path), &path));

    found.newest_event = conn
        .query_row(
            "SELECT created, received_at FROM events ORDER BY received_at DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    // The rows of a damaged file are not worth reading further.
    let Some(keyed) = keyed.filter(|_| integrity_ok) else {
        return (config, checks, found);
    };
    let config = match db::settings::load(&keyed) {
        Ok(saved) if saved.is_empty() => config,
        Ok(saved) => match config.with_saved(&saved) {
            Ok(effective) => {
                checks.push(Check::ok(
                    "saved settings",
                    format!("{} value(s) saved on the settings page, valid", saved.len()),
                ));
                effective
            }
            Err(e) => {
                checks.push(Check::fail(
                    "saved settings",
                    format!("a value saved on the settings page: {e}"),
                    Some("change it on the Settings page".to_owned()),
                ));
                config
            }
        },
        Err(e) => {
            checks.push(Check::fail("saved settings", e.to_string(), None));
            config
        }
    };
    match db::integrations::list(&keyed) {
        Ok(all) => found.integrations = Some(all),
        Err(e) => checks.push(Check::fail("integrations", e.to_string(), None)),
    }
    (config, checks, found)
}

/// The WAL's size against `WAL_LIMIT_BYTES`.
fn wal_check(wal_bytes: u64) -> Check {
    match wal_bytes > WAL_LIMIT_BYTES {
        false => Check::ok(
            "database wal",
            format!(
                "{:.1} MB (a WAL past {} MB means checkpoints are held back)",
                wal_bytes as f64 / 1e6,
                WAL_LIMIT_BYTES / (1024 * 1024)
            ),
        ),
        true => Check::fail(
            "database wal",
            format!(
                "{:.1} MB, past {} MB: checkpoints cannot reset it, so a reader keeps an old \
                 snapshot open (an open sqlite3 shell, a stuck backup, a Litestream that stopped \
                 replicating)",
                wal_bytes as f64 / 1e6,
                WAL_LIMIT_BYTES / (1024 * 1024)
            ),
            Some(
                "end that reader (close the shell, stop the stuck process); the server's next \
                 checkpoint then starts the WAL over"
                    .to_owned(),
            ),
        ),
    }
}

/// The free space under the database against `MIN_FREE_BYTES`, the bound `/readyz` uses.
fn disk_check(free: Option<u64>, path: &Path) -> Check {
    match free {
        None => Check::skip("database disk", "the system cannot say what is free"),
        Some(free) if free < MIN_FREE_BYTES => Check::fail(
            "database disk",
            format!(
                "{} MB free on the database's disk, under {} MB: /readyz answers 503 and SQLite may fail to write",
                free / 1_000_000,
                MIN_FREE_BYTES / 1_000_000
            ),
            Some(format!(
                "free some space on the disk holding {}",
                path.display()
            )),
        ),
        Some(free) => Check::ok("database disk", format!("{} MB free", free / 1_000_000)),
    }
}

fn damaged(what: String) -> Check {
    Check::fail(
        "database integrity",
        format!("PRAGMA quick_check: {what}"),
        Some(restore()),
    )
}

/// Connect, EHLO, STARTTLS or TLS as configured, AUTH when a username is set, QUIT.
async fn check_smtp(smtp: &SmtpConfig) -> Check {
    if !smtp.is_configured() {
        return Check::skip("smtp", "no relay configured (smtp.host is empty)");
    }
    // The DKIM key has its own line; a bad one must not hide whether the relay answers.
    let relay_only = SmtpConfig {
        dkim_key_path: String::new(),
        dkim_selector: String::new(),
        dkim_domain: String::new(),
        ..smtp.clone()
    };
    let mailer = match Mailer::new(&relay_only) {
        Ok(mailer) => mailer,
        Err(e) => return Check::fail("smtp", e.to_string(), None),
    };
    let addr = format!("{}:{}", smtp.host, smtp.port);
    match mailer.connect().await {
        Ok(connection) => {
            connection.quit().await;
            let auth = match smtp.username.is_empty() {
                true => String::new(),
                false => format!(", logged in as {:?}", smtp.username),
            };
            Check::ok(
                "smtp",
                format!(
                    "{addr} answered EHLO (security = {:?}{auth}); no mail sent",
                    smtp.security
                ),
            )
        }
        Err(e) => Check::fail("smtp", e.message().to_owned(), e.hint(smtp)),
    }
}

/// One line per integration; returns the credentials of one whose key Stripe accepted, to ask
/// Stripe the time with.
async fn check_stripe<'a>(
    run: &mut Run<'_>,
    config: &Config,
    integrations: Option<&'a [Integration]>,
) -> Option<Credentials<'a>> {
    let Some(integrations) = integrations else {
        run.add(Check::skip("stripe", "the integrations could not be read"));
        return None;
    };
    if integrations.is_empty() {
        run.add(Check::skip("stripe", "no integrations yet"));
        return None;
    }
    // Few retries: a doctor that waits a minute on a Stripe outage says less, later.
    let stripe =
        StripeClient::new(&config.stripe.api_base).with_retry_policy(1, Duration::from_millis(250));
    let mut accepted = None;
    for integration in integrations {
        let name = format!("stripe {} ({})", integration.name, integration.id);
        if !integration.is_listening() {
            run.add(Check::skip(
                name,
                "disconnected (its webhook URL answers 410 Gone)",
            ));
            continue;
        }
        let Some(creds) = Credentials::of(integration) else {
            run.add(Check::skip(
                name,
                "no API key (a signing secret only; Stripe is never asked)",
            ));
            continue;
        };
        let check = check_integration(&stripe, integration, &creds, &name).await;
        if check.status == Status::Ok && accepted.is_none() {
            accepted = Some(creds);
        }
        run.add(check);
    }
    accepted
}

async fn check_integration(
    stripe: &StripeClient,
    integration: &Integration,
    creds: &Credentials<'_>,
    name: &str,
) -> Check {
    let new_key = format!(
        "paste a working key on its page (Integrations → {} → Change the API key), or run \
         `mailmycustomer integration update {} --api-key -`",
        integration.name, integration.id
    );
    let account = match stripe.account(creds).await {
        Ok(account) => account,
        Err(StripeError::InvalidKey { message }) => {
            return Check::fail(
                name,
                format!("Stripe refuses the key: {message}"),
                Some(new_key),
            )
        }
        Err(e) => return Check::fail(name, stripe_failed(&e), None),
    };
    let missing = match stripe.missing_permissions(creds).await {
        Ok(missing) => missing,
        Err(e) => return Check::fail(name, stripe_failed(&e), None),
    };
    if !missing.is_empty() {
        return Check::fail(name, lacking(&missing).to_string(), None);
    }
    let account_name = match &account.name {
        Some(shown) => format!("{shown} ({})", account.id),
        None => account.id.clone(),
    };
    let Some(endpoint) = &integration.endpoint else {
        return Check::ok(
            name,
            format!("the key opens {account_name} and may read all it needs"),
        );
    };
    let status = match stripe.webhook_endpoint(creds, &endpoint.id).await {
        Ok(now) => now.status,
        Err(StripeError::NotFound { .. }) => "deleted".to_owned(),
        Err(StripeError::PermissionDenied { .. }) => {
            return Check::fail(name, lacking(&[write_missing()]).to_string(), None)
        }
        Err(e) => return Check::fail(name, stripe_failed(&e), None),
    };
    match status.as_str() {
        "enabled" => Check::ok(
            name,
            format!(
                "the key opens {account_name} and may read all it needs; webhook endpoint {} \
                 is enabled",
                endpoint.id
            ),
        ),
        other => Check::fail(
            name,
            format!("webhook endpoint {} is {other}", endpoint.id),
            Some(endpoint_advice(other)),
        ),
    }
}

fn stripe_failed(e: &StripeError) -> String {
    match e.is_transient() {
        true => format!("could not ask Stripe: {e}; run doctor again in a minute"),
        false => format!("Stripe refused: {e}"),
    }
}

fn check_public_url(config: &Config, integrations: Option<&[Integration]>) -> Check {
    let live = integrations.unwrap_or_default().iter().any(|i| {
        i.is_listening()
            && (i.livemode == Some(true)
                || i.api_key.as_ref().is_some_and(|k| is_live_key(k.expose())))
    });
    match public_url_problem(config, live) {
        None => Check::ok(
            "public url",
            format!(
                "{}: a shape Stripe can send to",
                config.server.public_url.trim()
            ),
        ),
        Some(problem) => Check::fail(
            "public url",
            problem,
            Some(
                "set server.public_url to this server's public https address (Settings, or \
                 server.public_url in the config)"
                    .to_owned(),
            ),
        ),
    }
}

/// Compares this machine's clock with the `Date` of a Stripe API answer: a webhook whose
/// signed timestamp is more than `stripe.webhook_tolerance_secs` from this clock is refused,
/// so the clock must be well within it.
async fn check_clock(
    config: &Config,
    creds: Option<Credentials<'_>>,
    newest_event: Option<(i64, i64)>,
) -> Check {
    let tolerance = config.stripe.webhook_tolerance_secs as i64;
    let bound = tolerance / 2;
    let fix = Some(format!(
        "set this machine's clock by NTP (systemd-timesyncd, chrony): Stripe's webhooks carry a \
         signed timestamp, refused when it is more than stripe.webhook_tolerance_secs = \
         {tolerance} s from this clock"
    ));
    let Some(creds) = creds else {
        return clock_hint(newest_event, tolerance, fix);
    };
    match stripe_offset(&config.stripe.api_base, &creds).await {
        Ok(offset) if offset.abs() > bound => Check::fail(
            "clock",
            format!(
                "this clock is {} s {} Stripe's, over half the webhook tolerance ({bound} s)",
                offset.abs(),
                if offset > 0 { "ahead of" } else { "behind" }
            ),
            fix,
        ),
        Ok(offset) => Check::ok("clock", format!("within {} s of Stripe's", offset.abs())),
        Err(why) => Check::fail("clock", why, None),
    }
}

/// Without a key, the newest event says only this much: Stripe made it at `created`, and this
/// clock said `received_at` when it came, which cannot be earlier than `created`.
fn clock_hint(newest_event: Option<(i64, i64)>, tolerance: i64, fix: Option<String>) -> Check {
    match newest_event {
        Some((created, received)) if created - received > tolerance / 2 => Check::fail(
            "clock",
            format!(
                "the newest event arrived {} s before Stripe made it, by this clock: it is \
                 behind (a hint only: no API key to ask Stripe the time)",
                created - received
            ),
            fix,
        ),
        _ => Check::skip("clock", "no API key to ask Stripe the time"),
    }
}

/// This clock minus Stripe's, in seconds, from the `Date` header of `GET /v1/account`, taken
/// at the middle of the request.
async fn stripe_offset(api_base: &str, creds: &Credentials<'_>) -> Result<i64, String> {
    let mut url = reqwest::Url::parse(api_base)
        .map_err(|e| format!("stripe.api_base {api_base:?} is not a URL ({e})"))?;
    url.path_segments_mut()
        .map_err(|()| format!("stripe.api_base {api_base:?} is not an http(s) URL"))?
        .pop_if_empty()
        .extend(["v1", "account"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))?;
    let mut request = http.get(url).bearer_auth(creds.api_key);
    if let Some(account) = creds.account.filter(|a| !a.is_empty()) {
        request = request.header("Stripe-Account", account);
    }
    let sent = Instant::now();
    let before = unix_now();
    let response = request
        .send()
        .await
        .map_err(|e| format!("could not ask Stripe the time: {e}"))?;
    let half_trip = sent.elapsed().as_secs_f64() / 2.0;
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .ok_or("Stripe's answer carries no Date header to compare with")?;
    let theirs = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(date)
        .map_err(|e| format!("Stripe's Date header {date:?} does not parse: {e}"))?;
    Ok((before + half_trip - theirs.as_second() as f64).round() as i64)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The DKIM key signs, and the record at `<selector>._domainkey.<domain>` verifies what it
/// signed: mail-auth's own verifier looks the record up, so a record with another key fails.
async fn check_dkim(smtp: &SmtpConfig) -> Check {
    let set = [&smtp.dkim_key_path, &smtp.dkim_selector, &smtp.dkim_domain];
    if set.iter().all(|v| v.trim().is_empty()) {
        return Check::skip("dkim", "not configured (smtp.dkim_*)");
    }
    let (selector, domain) = (smtp.dkim_selector.trim(), smtp.dkim_domain.trim());
    let record = format!("{selector}._domainkey.{domain}");
    // A signer for a probe message only: the relay's own settings have their line above.
    let signing = SmtpConfig {
        host: "localhost".to_owned(),
        from_address: format!("postmaster@{domain}"),
        timeout_secs: smtp.timeout_secs.max(1),
        ..smtp.clone()
    };
    let mailer = match Mailer::new(&signing) {
        Ok(mailer) => mailer,
        Err(e) => return Check::fail("dkim", e.to_string(), None),
    };
    let probe = OutgoingEmail {
        delivery_id: 0,
        created_at: 0,
        to: "doctor@example.com",
        to_name: None,
        from_address: None,
        subject: "MailMyCustomer DKIM check",
        html: "<p>DKIM check</p>",
        text: "DKIM check",
    };
    let signed = match mailer.build(&probe) {
        Ok(signed) => signed,
        Err(e) => return Check::fail("dkim", e.to_string(), None),
    };
    if !has_nameserver() {
        return Check::skip(
            "dkim",
            format!(
                "key {} reads and signs; the record {record} was not looked up: no DNS \
                 resolver here (/etc/resolv.conf names no nameserver)",
                smtp.dkim_key_path.trim()
            ),
        );
    }
    let Some(message) = AuthenticatedMessage::parse(&signed) else {
        return Check::fail("dkim", "the signed probe message does not parse", None);
    };
    let resolver = match MessageAuthenticator::new_system_conf() {
        Ok(resolver) => resolver,
        Err(e) => return Check::skip("dkim", format!("no DNS resolver here ({e})")),
    };
    let verified = match tokio::time::timeout(DNS_TIMEOUT, resolver.verify_dkim(&message)).await {
        Ok(outputs) => outputs,
        Err(_) => {
            return Check::skip(
                "dkim",
                format!(
                    "the DNS resolver did not answer within {} s",
                    DNS_TIMEOUT.as_secs()
                ),
            )
        }
    };
    let publish = Some(format!(
        "publish the public key of smtp.dkim_key_path as a TXT record at {record} \
         (\"v=DKIM1; k=rsa or ed25519; p=<base64 public key>\"), or set smtp.dkim_selector to \
         the selector whose record holds it"
    ));
    let no_record = |e: &mail_auth::Error| {
        matches!(
            e,
            mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_))
        )
    };
    match verified.first().map(|o| o.result()) {
        Some(DkimResult::Pass) => Check::ok(
            "dkim",
            format!(
                "the record {record} holds the public key of {}",
                smtp.dkim_key_path.trim()
            ),
        ),
        Some(DkimResult::TempError(e)) => Check::skip(
            "dkim",
            format!("the DNS lookup of {record} failed for now ({e})"),
        ),
        Some(DkimResult::Fail(e) | DkimResult::PermError(e) | DkimResult::Neutral(e))
            if no_record(e) =>
        {
            Check::fail(
                "dkim",
                format!("there is no TXT record at {record} ({e})"),
                publish,
            )
        }
        Some(DkimResult::Fail(e) | DkimResult::PermError(e) | DkimResult::Neutral(e)) => {
            Check::fail(
                "dkim",
                format!("the record {record} does not verify this key's signature: {e}"),
                publish,
            )
        }
        Some(DkimResult::None) | None => Check::fail(
            "dkim",
            format!("no DKIM signature to verify against {record}"),
            publish,
        ),
    }
}

/// Whether `/etc/resolv.conf` names a nameserver: without one there is no resolver to ask.
fn has_nameserver() -> bool {
    std::fs::read_to_string("/etc/resolv.conf").is_ok_and(|text| {
        text.lines()
            .any(|l| l.split_whitespace().next() == Some("nameserver"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_of_a_key_is_named_as_a_person_finds_it() {
        let file = Path::new("/etc/mmc/config.toml");
        assert_eq!(
            layer(&Source::File, Some(file)),
            "the config file /etc/mmc/config.toml"
        );
        assert_eq!(
            layer(&Source::Env("MMC_SERVER__LISTEN".into()), Some(file)),
            "the environment variable MMC_SERVER__LISTEN"
        );
        assert_eq!(layer(&Source::Flag("--listen"), None), "the flag --listen");
        assert_eq!(layer(&Source::Page, None), "the settings page");
    }

    #[test]
    fn a_bad_value_names_its_key_and_layer() {
        let vars = vec![("MMC_SERVER__LISTEN".to_owned(), "nowhere".to_owned())];
        let config = Config::load_unchecked(None, vars, &Overrides::default()).unwrap();
        let check = check_config(&config, None);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("server.listen"), "{check:?}");
        assert_eq!(
            check.fix.as_deref(),
            Some("change server.listen in the environment variable MMC_SERVER__LISTEN")
        );
        let good = Config::load_unchecked(None, vec![], &Overrides::default()).unwrap();
        assert_eq!(check_config(&good, None).status, Status::Ok);
    }

    #[test]
    fn a_wal_past_a_gib_fails_naming_what_holds_it() {
        assert_eq!(wal_check(0).status, Status::Ok);
        assert_eq!(wal_check(WAL_LIMIT_BYTES).status, Status::Ok);
        let held = wal_check(WAL_LIMIT_BYTES + 1);
        assert_eq!(held.status, Status::Fail);
        assert!(held.detail.contains("past 1024 MB"), "{held:?}");
        assert!(held.detail.contains("sqlite3 shell"), "{held:?}");
        assert!(held.fix.is_some());
    }

    #[test]
    fn a_disk_under_the_readyz_bound_fails() {
        let path = Path::new("/var/lib/mmc/mailmycustomer.db");
        assert_eq!(disk_check(Some(MIN_FREE_BYTES), path).status, Status::Ok);
        let full = disk_check(Some(MIN_FREE_BYTES - 1), path);
        assert_eq!(full.status, Status::Fail);
        assert!(full.fix.unwrap().contains("/var/lib/mmc/mailmycustomer.db"));
        assert_eq!(disk_check(None, path).status, Status::Skip);
    }

    #[test]
    fn without_a_key_only_an_event_from_the_future_says_the_clock_is_behind() {
        let fix = Some("fix".to_owned());
        assert_eq!(clock_hint(None, 300, fix.clone()).status, Status::Skip);
        // Received a minute after Stripe made it (a retry, a catch-up): nothing to say.
        assert_eq!(
            clock_hint(Some((1000, 1060)), 300, fix.clone()).status,
            Status::Skip
        );
        assert_eq!(
            clock_hint(Some((1150, 1000)), 300, fix.clone()).status,
            Status::Skip
        );
        let behind = clock_hint(Some((1151, 1000)), 300, fix);
        assert_eq!(behind.status, Status::Fail);
        assert!(behind.detail.contains("151 s before"), "{behind:?}");
    }

    #[test]
    fn skips_do_not_fail_the_report() {
        let report = Report {
            checks: vec![Check::ok("a", "fine"), Check::skip("b", "nothing")],
        };
        assert!(report.passed());
        let failed = Report {
            checks: vec![Check::ok("a", "fine"), Check::fail("c", "broken", None)],
        };
        assert!(!failed.passed());
        assert_eq!(failed.count(Status::Fail), 1);
    }
}
