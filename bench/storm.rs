//! The storm (issue 13): a merchant's server as it lives, one process taking consecutive rounds
//! of distinct signed `invoice.paid` at concurrency 1, 16 and 64 (five rounds each), every event
//! emailed to a real `smtp-sink` and the outbox drained between rounds, first on an empty
//! database and then on one pre-filled with months of history (400,000 events and their
//! deliveries by default). Every round is printed, then per level the median and the worst round,
//! so a server whose speed drifts from round to round shows it. Meanwhile the harness samples the
//! WAL's size every 50 ms, and during one c=64 round on the pre-filled database it plays the
//! merchant: the CLI `log` and two signed-in pages, timed.
//!
//! The pre-filled database takes minutes to build, so it is cached under the target directory
//! (`bench-cache/prefilled-v<schema>-f<fill format>-<events>.db` and its key file) and copied for
//! each run, so every run starts from the same file. Its rows are written by direct SQL against
//! the schema of migration V14 (`FILL_SCHEMA`), then the real migrations take it to the binary's
//! schema, as they would a merchant's database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mailmycustomer::db;
use rusqlite::params;

use crate::events::{signed_requests, Events};
use crate::http::{self, Report};
use crate::logscale::PageClient;
use crate::support::{self, median, mib, ms, rate, Bench, Server, Sink, Table};

/// The schema version the fill's SQL is written for. The fill migrates to it, writes its rows,
/// then runs the remaining migrations, so a later migration that moves rows moves these too.
const FILL_SCHEMA: i32 = 14;
/// Bumped whenever the fill writes something different, so an older cache is not reused.
const FILL_FORMAT: u32 = 1;
/// The merchant's integration in the pre-filled database: its history and the storm are its.
const HISTORY_INTEGRATION: &str = "int_5707e0000000000f";
const HISTORY_SECRET: &str = "whsec_bench_storm_history";
/// The history spans this many days before the build.
const HISTORY_DAYS: i64 = 180;
const ROUNDS: usize = 5;
/// The c=64 round (0-based) during which the merchant works, on the pre-filled database: the
/// middle one, so the rounds before it say how long a round lasts.
const PROBE_ROUND: usize = 2;
/// Probes of each kind spread over that round.
const PROBES: usize = 20;
/// How often the WAL and the database file are measured.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Events still waiting for the processor, counted through the two partial indexes that cover
/// them (`events_fresh`, `events_postponed`): a plain `processing = 'pending'` would read every
/// row of a 400,000-event table every 50 ms.
const PENDING_SQL: &str = "SELECT
    (SELECT COUNT(*) FROM events WHERE processing = 'pending' AND process_after IS NULL)
  + (SELECT COUNT(*) FROM events WHERE processing = 'pending' AND process_after IS NOT NULL)";
/// Deliveries the sender still has to do (the `deliveries_due` partial index).
const ACTIVE_SQL: &str =
    "SELECT COUNT(*) FROM deliveries WHERE status IN ('queued', 'retrying', 'sending')";

/// The size of the WAL and of the database file over a window, sampled every 50 ms.
#[derive(Clone, Copy, Default)]
pub struct Sizes {
    pub max_wal: u64,
    pub last_wal: u64,
    pub max_db: u64,
    pub last_db: u64,
}

pub struct Round {
    pub concurrency: usize,
    pub index: usize,
    pub report: Report,
    pub cores: support::Cores,
    /// While posting.
    pub posting: Sizes,
    /// How long until no event was pending and no delivery left to send; None if not within
    /// the bound.
    pub drain: Option<Duration>,
    /// While draining; `last_*` is after it.
    pub draining: Sizes,
}

/// One timed action of the merchant's, repeated over a c=64 round.
pub struct Probe {
    pub name: &'static str,
    pub times: Vec<Duration>,
}

pub struct Run {
    pub prefilled: bool,
    pub rounds: Vec<Round>,
    pub idle_rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    pub probes: Vec<Probe>,
}

pub struct Prefill {
    pub events: usize,
    pub bytes: u64,
    pub path: PathBuf,
    /// None when the cached file was reused.
    pub built: Option<Duration>,
    pub copied: Option<Duration>,
}

pub struct Storm {
    pub runs: Vec<Run>,
    pub prefill: Option<Prefill>,
    /// `MMC_BENCH_STORM_SCALE`: 1 unless rounds were shrunk.
    pub scale: f64,
}

const LEVELS: [usize; 3] = [1, 16, 64];

/// Events per round at each concurrency; `scale` (`MMC_BENCH_STORM_SCALE`, e.g. 0.1) shrinks
/// them for a quicker look between two changes, or a disk too small for the full run.
fn plan(smoke: bool, scale: f64) -> [(usize, usize); 3] {
    let counts = if smoke {
        [20, 64, 160]
    } else {
        [5_000, 30_000, 50_000]
    };
    let mut plan = [(0, 0); 3];
    for (slot, (concurrency, count)) in plan.iter_mut().zip(LEVELS.into_iter().zip(counts)) {
        *slot = (
            concurrency,
            ((count as f64 * scale) as usize).max(concurrency),
        );
    }
    plan
}

pub fn run(b: &Bench, failures: &mut Vec<String>) -> anyhow::Result<Storm> {
    let prefill_events = match std::env::var("MMC_BENCH_PREFILL_EVENTS") {
        Ok(n) => n.trim().replace([',', '_'], "").parse().with_context(|| {
            format!("MMC_BENCH_PREFILL_EVENTS={n:?}: expected a number of events")
        })?,
        Err(_) if b.smoke => 3_000,
        Err(_) => 400_000,
    };
    let scale = match std::env::var("MMC_BENCH_STORM_SCALE") {
        Ok(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && *s <= 1.0)
            .with_context(|| format!("MMC_BENCH_STORM_SCALE={s:?}: expected a number in (0, 1]"))?,
        Err(_) => 1.0,
    };
    let plan = plan(b.smoke, scale);
    let mut storm = Storm {
        runs: Vec::new(),
        prefill: None,
        scale,
    };
    // The empty database first: its files are gone before the big copy is made.
    // `MMC_BENCH_STORM_SKIP_EMPTY=1` skips it, for a quicker look at the pre-filled rounds.
    if std::env::var_os("MMC_BENCH_STORM_SKIP_EMPTY").is_none() {
        storm.runs.push(storm_run(b, None, &plan, failures)?);
    }
    let mut prefill = prefilled(b, prefill_events)?;
    let run = storm_run(b, Some(&mut prefill), &plan, failures);
    storm.prefill = Some(prefill);
    storm.runs.push(run?);
    print(&storm);
    Ok(storm)
}

/// One server process on one database taking every round.
fn storm_run(
    b: &Bench,
    prefill: Option<&mut Prefill>,
    plan: &[(usize, usize)],
    failures: &mut Vec<String>,
) -> anyhow::Result<Run> {
    let prefilled = prefill.is_some();
    let what = if prefilled { "pre-filled" } else { "empty" };
    let dir = b.tempdir(&format!("storm-{what}"))?;
    let db_path = dir.path().join("mmc.db");
    // What the rounds add: a stored event and its sent delivery take about 10 KB.
    let posted: usize = plan.iter().map(|(_, n)| n * ROUNDS).sum();
    let growth = posted as u64 * 12 * 1024;
    let (integration, secret) = match prefill {
        Some(prefill) => {
            check_space(dir.path(), prefill.bytes + growth)?;
            let t0 = Instant::now();
            std::fs::copy(&prefill.path, &db_path).context("copying the pre-filled database")?;
            std::fs::copy(key_file(&prefill.path), key_file(&db_path))?;
            // On disk before the server starts: the kernel writing the copy back during the
            // first rounds (0.3–0.6 cores of "others", fsyncs queued behind it) was measured
            // as the server's.
            std::fs::File::open(&db_path)?.sync_all()?;
            prefill.copied = Some(t0.elapsed());
            (HISTORY_INTEGRATION.to_owned(), HISTORY_SECRET.to_owned())
        }
        None => {
            check_space(dir.path(), growth)?;
            let secret = format!("whsec_bench_{}", b.run_id);
            (support::add_integration(&b.bin, &db_path, &secret)?, secret)
        }
    };
    let session = if prefilled {
        Some(sign_in(&db_path)?)
    } else {
        None
    };
    let sink = Sink::start(dir.path(), b.smoke)?;
    let (server, _) = Server::start(
        &b.bin,
        &db_path,
        Some(sink.port),
        &dir.path().join("server.log"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss_kib = support::memory_kib(server.pid(), "VmRSS");

    let events = Events::new(&b.run_id)?;
    let cap = Duration::from_secs(120);
    let drain_within = Duration::from_secs(if b.smoke { 60 } else { 600 });
    let post = |series: &str, count: usize, concurrency: usize| -> anyhow::Result<Report> {
        let bodies = events.bodies(&format!("{what}-{series}"), count);
        let requests = signed_requests(server.addr, &integration, &secret, &bodies);
        drop(bodies);
        http::run(
            server.addr,
            Arc::new(requests),
            concurrency,
            cap,
            http::stored_new,
        )
    };
    let mut stored_new = 0;
    let warm = post("warmup", if b.smoke { 20 } else { 500 }, 16)?;
    stored_new += warm.ok;
    check_errors(what, "warm-up", &warm, failures);
    if drain(&db_path, drain_within).is_none() {
        failures.push(format!("storm ({what}): the warm-up did not drain"));
    }

    let mut rounds = Vec::new();
    let mut probes = Vec::new();
    for &(concurrency, count) in plan {
        for index in 0..ROUNDS {
            // The merchant works during the middle c=64 round, one probe of each kind about
            // every 1/20 of the round before it.
            let probe_every = match (&session, concurrency, index) {
                (Some(token), 64, PROBE_ROUND) => rounds
                    .last()
                    .map(|r: &Round| (token, r.report.elapsed / PROBES as u32)),
                _ => None,
            };
            let series = format!("c{concurrency}r{index}");
            let stop = AtomicBool::new(false);
            let (report, cores, posting, probed) = std::thread::scope(|s| {
                let sampler = s.spawn(|| sample(&db_path, &stop));
                let prober = probe_every.map(|(token, every)| {
                    let (stop, db_path, addr) = (&stop, &db_path, server.addr);
                    s.spawn(move || merchant(b, db_path, addr, token, every, stop))
                });
                let cpu = support::CpuWindow::start(server.pid());
                // With `MMC_BENCH_PERF_DIR`, one round per level is profiled: the second, after
                // the first has warmed the caches, and not the merchant's.
                let profiler = match index {
                    1 => support::profile(server.pid(), &format!("storm-{what}-{series}"), None),
                    _ => Vec::new(),
                };
                let report = post(&series, count, concurrency);
                drop(profiler);
                let cores = cpu.cores();
                stop.store(true, Ordering::SeqCst);
                let probed = prober.map(|p| p.join().expect("the merchant's thread panicked"));
                let posting = sampler.join().expect("the sampler panicked");
                (report, cores, posting, probed)
            });
            let report = report?;
            if let Some(probed) = probed {
                let (found, problems) = probed?;
                failures.extend(problems.into_iter().map(|p| format!("storm: {p}")));
                probes = found;
            }
            stored_new += report.ok;
            check_errors(what, &series, &report, failures);
            if report.sent < count {
                eprintln!(
                    "bench: storm ({what}) {series}: the {cap:?} cap stopped the round after {} of {count} events",
                    report.sent
                );
            }
            let stop = AtomicBool::new(false);
            let (drained, draining) = std::thread::scope(|s| {
                let sampler = s.spawn(|| sample(&db_path, &stop));
                let drained = drain(&db_path, drain_within);
                stop.store(true, Ordering::SeqCst);
                (drained, sampler.join().expect("the sampler panicked"))
            });
            if drained.is_none() {
                failures.push(format!(
                    "storm ({what}) {series}: the outbox did not drain within {drain_within:?}"
                ));
            }
            // Every email of the rounds so far is at the sink, none twice.
            let at_sink = wait_for_sink(&sink, stored_new as u64);
            if at_sink != stored_new as u64 {
                failures.push(format!(
                    "storm ({what}) after {series}: {stored_new} events stored, the sink counted {at_sink} messages"
                ));
            }
            eprintln!(
                "bench: storm ({what}) {series}: {} in {}, p99 {}, max {}, {} errors; WAL max {}; drained in {}",
                rate(report.per_sec()),
                ms(report.elapsed),
                ms(report.quantile(0.99)),
                ms(report.quantile(1.0)),
                report.errors,
                bytes(posting.max_wal),
                drained.map_or_else(|| "—".to_owned(), ms)
            );
            rounds.push(Round {
                concurrency,
                index,
                report,
                cores,
                posting,
                drain: drained,
                draining,
            });
        }
    }
    let peak_rss_kib = support::memory_kib(server.pid(), "VmHWM");

    // Every event answered as new is stored once, and emailed once.
    std::thread::sleep(Duration::from_millis(500));
    let (stored, distinct, sent) = {
        let conn = rusqlite::Connection::open_with_flags(
            &db_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // This run's ids, a range of the (integration_id, stripe_event_id) index.
        let (from, to) = (
            format!("evt_bench_{}_", b.run_id),
            format!("evt_bench_{}`", b.run_id),
        );
        conn.query_row(
            "SELECT COUNT(*), COUNT(DISTINCT stripe_event_id),
                 (SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id
                  WHERE e.integration_id = ?1 AND e.stripe_event_id >= ?2
                    AND e.stripe_event_id < ?3 AND d.status = 'sent')
             FROM events WHERE integration_id = ?1
                 AND stripe_event_id >= ?2 AND stripe_event_id < ?3",
            params![integration, from, to],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?
    };
    let at_sink = sink.count();
    if stored != stored_new as i64 || distinct != stored || sent != stored {
        failures.push(format!(
            "storm ({what}): {stored_new} events answered as new, {stored} stored ({distinct} distinct ids), {sent} deliveries sent"
        ));
    }
    if at_sink != stored_new as u64 {
        failures.push(format!(
            "storm ({what}): {stored_new} events, the sink counted {at_sink} messages"
        ));
    }
    if b.smoke {
        check_files(what, &sink, stored_new, failures)?;
    }
    for error in server.logged_errors() {
        failures.push(format!("storm ({what}): the server logged: {error}"));
    }
    drop(server);
    Ok(Run {
        prefilled,
        rounds,
        idle_rss_kib,
        peak_rss_kib,
        probes,
    })
}

fn check_errors(what: &str, series: &str, report: &Report, failures: &mut Vec<String>) {
    if report.errors > 0 || report.ok != report.sent {
        failures.push(format!(
            "storm ({what}) {series}: {} of {} requests failed, first: {}",
            report.sent - report.ok,
            report.sent,
            report.first_error.as_deref().unwrap_or("?")
        ));
    }
}

/// Samples the WAL's and the database's size every 50 ms until `stop`, and once more then.
fn sample(db_path: &Path, stop: &AtomicBool) -> Sizes {
    let wal = PathBuf::from(format!("{}-wal", db_path.display()));
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut sizes = Sizes::default();
    loop {
        let done = stop.load(Ordering::SeqCst);
        sizes.last_wal = len(&wal);
        sizes.last_db = len(db_path);
        sizes.max_wal = sizes.max_wal.max(sizes.last_wal);
        sizes.max_db = sizes.max_db.max(sizes.last_db);
        if done {
            return sizes;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// Waits until no event is pending and no delivery is queued, retrying or being sent; how long
/// that took, if it happened within `within`.
fn drain(db_path: &Path, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let left = support::count(db_path, PENDING_SQL)
            .and_then(|pending| Ok(pending + support::count(db_path, ACTIVE_SQL)?));
        if matches!(left, Ok(0)) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The sink's count once it reached `n` (the sender marks a row sent after the sink's 250, and
/// the counter is printed a moment later), or what it had after 10 s.
fn wait_for_sink(sink: &Sink, n: u64) -> u64 {
    sink.wait_for(n, Instant::now(), Duration::from_secs(10));
    sink.count()
}

/// Smoke mode: one file per event, each with its own Message-ID, each to the fixture's customer.
fn check_files(
    what: &str,
    sink: &Sink,
    n: usize,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let files = sink.files();
    let mut ids = std::collections::HashSet::new();
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file)?).into_owned();
        if !text.contains("jenny.rosen@example.com") {
            failures.push(format!(
                "storm ({what}): {} is not to the customer",
                file.display()
            ));
        }
        ids.insert(
            text.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .map(str::to_owned)
                .unwrap_or_default(),
        );
    }
    if files.len() != n || ids.len() != n {
        failures.push(format!(
            "storm ({what}): {} emails at the sink with {} distinct Message-IDs, expected {n}",
            files.len(),
            ids.len()
        ));
    }
    Ok(())
}

/// The merchant at work during a storm: `mailmycustomer log --status sent --limit 50` on the
/// same database (exec → exit), the dashboard and the log page of sent emails over HTTP with a
/// signed-in session, one of each about every `every`, at most 20 each, until the round ends
/// (at least once). Returns the timings and whatever answered wrongly.
fn merchant(
    b: &Bench,
    db_path: &Path,
    addr: std::net::SocketAddr,
    token: &str,
    every: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<(Vec<Probe>, Vec<String>)> {
    let mut client = PageClient::open(addr, token)?;
    let mut probes = [
        "CLI `log --status sent --limit 50`",
        "dashboard `/`",
        "log page `/log?status=sent`",
    ]
    .map(|name| Probe {
        name,
        times: Vec::with_capacity(PROBES),
    });
    let mut problems = Vec::new();
    for n in 0..PROBES {
        if n > 0 && stop.load(Ordering::SeqCst) {
            break;
        }
        let tick = Instant::now();
        let t0 = Instant::now();
        let out = Command::new(&b.bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MMC_DATABASE__PATH", db_path)
            .env("MMC_LOG__LEVEL", "warn")
            .args(["log", "--status", "sent", "--limit", "50"])
            .stdin(Stdio::null())
            .output()
            .context("running mailmycustomer log")?;
        probes[0].times.push(t0.elapsed());
        // A header line and 50 rows.
        let lines = String::from_utf8_lossy(&out.stdout).lines().count();
        if !out.status.success() || lines < 51 {
            problems.push(format!(
                "`log --status sent --limit 50` during the storm: {}, {lines} lines, {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        for (probe, path) in [(1, "/"), (2, "/log?status=sent")] {
            let t0 = Instant::now();
            let (status, body) = client.get(path)?;
            probes[probe].times.push(t0.elapsed());
            let rows = body.matches("<tr>").count();
            if status != 200 || (probe == 2 && rows < 51) {
                problems.push(format!(
                    "GET {path} during the storm: {status}, {rows} table rows"
                ));
            }
        }
        while tick.elapsed() < every && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok((probes.into(), problems))
}

/// A signed-in session made in the database, as a sign-in would leave it; returns the cookie's
/// token.
pub(crate) fn sign_in(db_path: &Path) -> anyhow::Result<String> {
    let token = mailmycustomer::manage::users::SessionToken::generate()?;
    let conn = db::open(&db::Options::at(db_path)?)?;
    let now = db::now_unix();
    conn.execute(
        "INSERT INTO users (email, password_hash, created_at) VALUES ('bench@bench.example', 'unused', ?1)",
        [now],
    )?;
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at)
         VALUES (?1, last_insert_rowid(), ?2, ?2)",
        params![token.hash(), now],
    )?;
    Ok(token.as_str().to_owned())
}

fn key_file(db_path: &Path) -> PathBuf {
    mailmycustomer::seal::key_file(db_path)
}

/// Where built databases are kept between runs: `bench-cache` in cargo's target directory.
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let target = if target.is_absolute() {
        target
    } else {
        support::repo_root().join(target)
    };
    target.join("bench-cache")
}

/// Fails early, with what to do, when `dir` lacks `needed` bytes: a full disk mid-storm would
/// be a harness error after minutes, and would starve whatever else runs here.
fn check_space(dir: &Path, needed: u64) -> anyhow::Result<()> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .context("running df")?;
    let avail: Option<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok());
    match avail {
        Some(avail) if avail < needed => bail!(
            "{} has {} free, the storm needs about {}: free some space, pass --tmp on another \
             disk, or lower MMC_BENCH_PREFILL_EVENTS",
            dir.display(),
            bytes(avail),
            bytes(needed)
        ),
        _ => Ok(()),
    }
}

/// The cached pre-filled database of `events` events for this binary's schema, built if missing.
/// Caches of other schema versions or fill formats are removed (each is gigabytes).
fn prefilled(b: &Bench, events: usize) -> anyhow::Result<Prefill> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let current = format!(
        "prefilled-v{}-f{FILL_FORMAT}-",
        db::latest_embedded_version()
    );
    let path = dir.join(format!("{current}{events}.db"));
    let done = dir.join(format!("{current}{events}.done"));
    let mut built = None;
    if !(done.exists() && path.exists() && key_file(&path).exists()) {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with("prefilled-") && !name.starts_with(&current);
            let partial = name.starts_with(&format!("{current}{events}."));
            if stale || partial {
                std::fs::remove_file(entry.path())?;
            }
        }
        // ~12 KB an event as filled; V15 then copies each 6 KB payload and V16 each delivery's
        // ~4 KB of bodies before the old tables' pages are freed.
        check_space(&dir, events as u64 * 28 * 1024)?;
        eprintln!(
            "bench: building the pre-filled database ({events} events) in {}",
            path.display()
        );
        let t0 = Instant::now();
        fill(&path, events)?;
        built = Some(t0.elapsed());
        std::fs::write(&done, format!("{events} events\n"))?;
    } else if b.smoke {
        // The cache is only trusted as far as its marker; smoke mode also counts the rows.
        let stored = support::count(&path, "SELECT COUNT(*) FROM events")?;
        if stored != events as i64 {
            bail!(
                "{} holds {stored} events, not {events}: remove it to rebuild",
                path.display()
            );
        }
    }
    Ok(Prefill {
        events,
        bytes: std::fs::metadata(&path)?.len(),
        path,
        built,
        copied: None,
    })
}

/// The fixture with placeholders for the event id, the invoice id and the event's time, as
/// Stripe sends it (pretty-printed, ~6 KB).
struct Payload(String);

impl Payload {
    fn load() -> anyhow::Result<Payload> {
        let path = support::repo_root().join("tests/fixtures/stripe/events/invoice.paid.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut event: serde_json::Value = serde_json::from_str(&text)?;
        event["id"] = "@EVENT@".into();
        event["data"]["object"]["id"] = "@INVOICE@".into();
        event["created"] = "@CREATED@".into();
        Ok(Payload(serde_json::to_string_pretty(&event)?))
    }

    fn render(&self, event: &str, invoice: &str, created: i64) -> String {
        self.0
            .replace("@EVENT@", event)
            .replace("@INVOICE@", invoice)
            .replace("\"@CREATED@\"", &created.to_string())
    }
}

/// Writes `events` processed `invoice.paid` events over the last 180 days and their deliveries
/// (96% sent with their SMTP attempt, 2% failed, 2% skipped for want of a template; nothing left
/// for the sender), through the schema of V14, then migrates to the binary's schema and
/// checkpoints. `synchronous=OFF` only here: the file is built once, not served.
fn fill(path: &Path, events: usize) -> anyhow::Result<()> {
    let mut conn = db::open(&db::Options::at(path)?)?;
    db::migrate_to(&mut conn, FILL_SCHEMA)?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
    let now = db::now_unix();
    let start = now - HISTORY_DAYS * 86_400;
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at)
         VALUES (?1, 'Storm Shop', seal(?2), ?3)",
        params![HISTORY_INTEGRATION, HISTORY_SECRET, start - 86_400],
    )?;
    let payload = Payload::load()?;
    let (html, text) = crate::logscale::bodies("Jenny Rosen", "$20.00", "Pro plan");
    let mut rng = 0x5707_e000_0000_0001_u64;
    let mut next = move |below: u64| {
        // splitmix64: the same history on every build.
        rng = rng.wrapping_add(crate::support::SPLITMIX_GAMMA);
        crate::support::mix64(rng) % below
    };
    const PER_TX: usize = 20_000;
    let span = HISTORY_DAYS * 86_400;
    let mut done = 0;
    while done < events {
        let tx = conn.transaction()?;
        {
            let mut event = tx.prepare_cached(
                "INSERT INTO events (integration_id, stripe_event_id, type, api_version, livemode,
                     created, received_at, payload, processing, processing_attempts, processed_at)
                 VALUES (?1, ?2, 'invoice.paid', '2026-07-29.dahlia', 0, ?3, ?3, ?4, ?5, 1, ?3 + 1)",
            )?;
            let mut delivery = tx.prepare_cached(
                "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key,
                     trigger, template_id, template_version, product_id, plan_id, recipient,
                     recipient_name, subject, html, text, status, attempts, last_error,
                     message_id, created_at, sent_at, reason)
                 VALUES (?1, ?2, ?3, ?4, 'payment_received', 1, 1, ?5, ?6, ?7, 'Jenny Rosen',
                     ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )?;
            let mut attempt = tx.prepare_cached(
                "INSERT INTO delivery_attempts (delivery_id, at, outcome, reply_code, reply, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 9)",
            )?;
            for n in done..(done + PER_TX).min(events) {
                let at = start + (n as i64 * span) / events as i64;
                let event_id = format!("evt_hist_{n:09}");
                let invoice = format!("in_hist_{n:09}");
                let outcome = match n % 50 {
                    0 => "failed",
                    1 => "skipped",
                    _ => "sent",
                };
                event.execute(params![
                    HISTORY_INTEGRATION,
                    event_id,
                    at,
                    payload.render(&event_id, &invoice, at),
                    if outcome == "skipped" {
                        "skipped"
                    } else {
                        "queued"
                    },
                ])?;
                let event_row = tx.last_insert_rowid();
                let plan = next(crate::logscale::PLANS as u64) as usize;
                let product = plan % crate::logscale::PRODUCTS;
                let recipient = format!("customer{:05}@example.com", next(100_000));
                let (recipient, subject, html, text, attempts, error, message_id, sent_at, reason) =
                    match outcome {
                        "sent" => (
                            Some(recipient),
                            Some("Your receipt from Storm Shop ($20.00)"),
                            Some(&html),
                            Some(&text),
                            1,
                            None,
                            Some(format!("<h{n}.{at}@bench.example>")),
                            Some(at + 2),
                            None,
                        ),
                        "failed" => (
                            Some(recipient),
                            Some("Your receipt from Storm Shop ($20.00)"),
                            Some(&html),
                            Some(&text),
                            1,
                            Some("550 5.1.1 Recipient address rejected: User unknown"),
                            None,
                            None,
                            None,
                        ),
                        _ => (
                            None,
                            None,
                            None,
                            None,
                            0,
                            Some("no template for payment_received, any product"),
                            None,
                            None,
                            Some("no_template"),
                        ),
                    };
                delivery.execute(params![
                    HISTORY_INTEGRATION,
                    event_row,
                    event_id,
                    format!("invoice:{invoice}:paid"),
                    crate::logscale::product_id(product),
                    crate::logscale::plan_id(plan),
                    recipient,
                    subject,
                    html,
                    text,
                    outcome,
                    attempts,
                    error,
                    message_id,
                    at + 1,
                    sent_at,
                    reason,
                ])?;
                let delivery_row = tx.last_insert_rowid();
                match outcome {
                    "sent" => attempt.execute(params![
                        delivery_row,
                        at + 2,
                        "sent",
                        250,
                        "250 2.0.0 Ok: queued as 4Storm"
                    ])?,
                    "failed" => attempt.execute(params![
                        delivery_row,
                        at + 2,
                        "failed",
                        550,
                        "550 5.1.1 Recipient address rejected: User unknown"
                    ])?,
                    _ => 0,
                };
            }
        }
        tx.commit()?;
        done = (done + PER_TX).min(events);
    }
    // What the event processor records as it finishes each integration's events (V12).
    conn.execute(
        "UPDATE integrations SET last_event_at = ?2, last_event_livemode = 0 WHERE id = ?1",
        params![HISTORY_INTEGRATION, start + span],
    )?;
    let migrating = Instant::now();
    db::migrate(&mut conn)?;
    eprintln!(
        "bench: the migrations after V{FILL_SCHEMA} took {:.1} s",
        migrating.elapsed().as_secs_f64()
    );
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

pub fn bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2} GB", n as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1} MB", n as f64 / f64::from(1u32 << 20))
    }
}

impl Run {
    fn name(&self) -> &'static str {
        if self.prefilled {
            "pre-filled"
        } else {
            "empty"
        }
    }

    fn level(&self, concurrency: usize) -> Vec<&Round> {
        self.rounds
            .iter()
            .filter(|r| r.concurrency == concurrency)
            .collect()
    }
}

/// Per level: the median round and the worst one.
pub struct Summary {
    pub median_rate: f64,
    pub worst_rate: f64,
    pub median_p50: Duration,
    pub median_p99: Duration,
    pub worst_p50: Duration,
    pub worst_p99: Duration,
    pub worst_max: Duration,
    pub errors: usize,
}

impl Summary {
    fn of(rounds: &[&Round]) -> Option<Summary> {
        if rounds.is_empty() {
            return None;
        }
        let mut rates: Vec<f64> = rounds.iter().map(|r| r.report.per_sec()).collect();
        rates.sort_by(f64::total_cmp);
        let quantiles = |q: f64| {
            let mut all: Vec<Duration> = rounds.iter().map(|r| r.report.quantile(q)).collect();
            let worst = all.iter().max().copied().unwrap_or_default();
            (median(&mut all), worst)
        };
        let (median_p50, worst_p50) = quantiles(0.5);
        let (median_p99, worst_p99) = quantiles(0.99);
        let (_, worst_max) = quantiles(1.0);
        Some(Summary {
            median_rate: rates[rates.len() / 2],
            worst_rate: rates[0],
            median_p50,
            median_p99,
            worst_p50,
            worst_p99,
            worst_max,
            errors: rounds.iter().map(|r| r.report.errors).sum(),
        })
    }

    /// How far the worst round's rate is below the median's, in percent.
    pub fn spread(&self) -> f64 {
        100.0 * (self.median_rate - self.worst_rate) / self.median_rate.max(1e-9)
    }
}

impl Storm {
    fn prefilled(&self) -> Option<&Run> {
        self.runs.iter().find(|r| r.prefilled)
    }

    /// Issue 13's targets, for `main`'s table: measured on the pre-filled database.
    pub fn targets(&self, add: &mut dyn FnMut(&str, String, bool)) {
        let Some(run) = self.prefilled() else {
            return;
        };
        if let Some(s) = Summary::of(&run.level(64)) {
            add(
                "storm c=64, pre-filled: ≥ 16,000 events/s (median of 5 rounds)",
                rate(s.median_rate),
                s.median_rate >= 16_000.0,
            );
            add(
                "storm c=64, pre-filled: p99 ≤ 10 ms (median round / worst round)",
                format!("{} / {}", ms(s.median_p99), ms(s.worst_p99)),
                s.worst_p99 <= Duration::from_millis(10),
            );
            add(
                "storm c=64, pre-filled: max ≤ 50 ms (worst round)",
                ms(s.worst_max),
                s.worst_max <= Duration::from_millis(50),
            );
            add(
                "storm c=64, pre-filled: worst round within 25% of the median",
                format!("{:.0}% below", s.spread()),
                s.spread() <= 25.0,
            );
            add(
                "storm c=64, pre-filled: no errors",
                s.errors.to_string(),
                s.errors == 0,
            );
        }
        if let Some(s) = Summary::of(&run.level(16)) {
            add(
                "storm c=16, pre-filled: ≥ 14,000 events/s (median)",
                rate(s.median_rate),
                s.median_rate >= 14_000.0,
            );
        }
        if let Some(s) = Summary::of(&run.level(1)) {
            add(
                "storm c=1, pre-filled: p50 ≤ 0.5 ms (median round / worst round)",
                format!("{} / {}", ms(s.median_p50), ms(s.worst_p50)),
                s.worst_p50 <= Duration::from_micros(500),
            );
        }
        let peak = self.runs.iter().filter_map(|r| r.peak_rss_kib).max();
        add(
            "storm: peak RSS ≤ 40 MB",
            mib(peak),
            peak.is_some_and(|k| k <= 40 * 1024),
        );
        let idle = self.runs.iter().filter_map(|r| r.idle_rss_kib).max();
        add(
            "storm: idle RSS ≤ 15 MB",
            mib(idle),
            idle.is_some_and(|k| k <= 15 * 1024),
        );
        for p in &run.probes {
            let worst = p.times.iter().max().copied().unwrap_or_default();
            add(
                &format!("storm c=64, pre-filled: {} < 50 ms (max)", p.name),
                ms(worst),
                !p.times.is_empty() && worst < Duration::from_millis(50),
            );
        }
        let wal = self
            .runs
            .iter()
            .flat_map(|r| &r.rounds)
            .map(|r| r.posting.max_wal.max(r.draining.max_wal))
            .max()
            .unwrap_or(0);
        add("(storm: largest WAL seen, no target)", bytes(wal), true);
    }
}

fn print(s: &Storm) {
    println!(
        "### Storm: consecutive rounds on one server process (distinct signed invoice.paid, each emailed to smtp-sink, outbox drained between rounds)\n"
    );
    if s.scale < 1.0 {
        println!(
            "**Rounds scaled by MMC_BENCH_STORM_SCALE={}**: not the issue's round sizes.\n",
            s.scale
        );
    }
    if let Some(p) = &s.prefill {
        println!(
            "Pre-filled database: {} events and their deliveries over {HISTORY_DAYS} days, {}, {}; copied (and synced) for this run in {}.\n",
            p.events,
            bytes(p.bytes),
            p.built.map_or_else(
                || format!("reused from {}", p.path.display()),
                |t| format!("built in {:.1} s as {}", t.as_secs_f64(), p.path.display())
            ),
            p.copied.map_or_else(|| "?".to_owned(), ms)
        );
    }
    for run in &s.runs {
        println!(
            "#### Every round, {} database (WAL and database sampled every 50 ms)\n",
            run.name()
        );
        let mut table = Table::new(&[
            "concurrency",
            "round",
            "events",
            "events/s",
            "p50",
            "p99",
            "max",
            "errors",
            "CPU cores: server + generator + others",
            "WAL max / at end",
            "database at end",
            "drain",
            "WAL max in drain / after",
        ]);
        for r in &run.rounds {
            table.row(vec![
                r.concurrency.to_string(),
                (r.index + 1).to_string(),
                r.report.sent.to_string(),
                rate(r.report.per_sec()),
                ms(r.report.quantile(0.5)),
                ms(r.report.quantile(0.99)),
                ms(r.report.quantile(1.0)),
                r.report.errors.to_string(),
                r.cores.to_string(),
                format!(
                    "{} / {}",
                    bytes(r.posting.max_wal),
                    bytes(r.posting.last_wal)
                ),
                bytes(r.posting.last_db),
                r.drain.map_or_else(|| "not drained".to_owned(), ms),
                format!(
                    "{} / {}",
                    bytes(r.draining.max_wal),
                    bytes(r.draining.last_wal)
                ),
            ]);
        }
        table.print();
        println!("Per level, {} database:\n", run.name());
        let mut table = Table::new(&[
            "concurrency",
            "median events/s",
            "worst round events/s",
            "worst within X% of median",
            "p50 median / worst",
            "p99 median / worst",
            "max (worst round)",
            "errors",
        ]);
        for concurrency in LEVELS {
            let Some(sum) = Summary::of(&run.level(concurrency)) else {
                continue;
            };
            table.row(vec![
                concurrency.to_string(),
                rate(sum.median_rate),
                rate(sum.worst_rate),
                format!("{:.0}%", sum.spread()),
                format!("{} / {}", ms(sum.median_p50), ms(sum.worst_p50)),
                format!("{} / {}", ms(sum.median_p99), ms(sum.worst_p99)),
                ms(sum.worst_max),
                sum.errors.to_string(),
            ]);
        }
        table.print();
        if !run.probes.is_empty() {
            println!(
                "The merchant at work during c=64 round {} ({} database; each probe from another thread, spread over the round):\n",
                PROBE_ROUND + 1,
                run.name()
            );
            let mut table = Table::new(&["probe", "runs", "p50", "p99", "max", "under 50 ms"]);
            for p in &run.probes {
                let mut times = p.times.clone();
                times.sort();
                let q = |q: f64| {
                    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
                    times.get(rank - 1).copied().unwrap_or_default()
                };
                let max = times.last().copied().unwrap_or_default();
                table.row(vec![
                    p.name.to_owned(),
                    times.len().to_string(),
                    ms(q(0.5)),
                    ms(q(0.99)),
                    ms(max),
                    if max < Duration::from_millis(50) {
                        "yes"
                    } else {
                        "**no**"
                    }
                    .to_owned(),
                ]);
            }
            table.print();
        }
        println!(
            "Server memory, {} database: idle {} after start, peak (VmHWM) {} after the last round.\n",
            run.name(),
            mib(run.idle_rss_kib),
            mib(run.peak_rss_kib)
        );
    }
}
