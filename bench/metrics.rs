//! Metrics (issue 14): what recording costs intake. Two release servers side by side, one with
//! `/metrics` off and one with it on (`metrics.listen`, scraped every second meanwhile, 15
//! times Prometheus's default rate), take the same kind of signed events in alternating rounds,
//! each round at concurrency 64 and then 1, so a drift of the machine's load hits both alike.
//! After each round the server's processor drains before the other server's round starts.
//!
//! Correctness (also in `--smoke`): every event is stored once on each server, and the on
//! server's `mmc_webhooks_total{outcome="stored"}` equals what it stored.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::events::{signed_requests, Events};
use crate::http::{self, Report};
use crate::intake::{check_errors, drain};
use crate::support::{self, ms, rate, Bench, Guard, Table};

/// One server of the comparison.
struct Side {
    name: &'static str,
    _guard: Guard,
    addr: SocketAddr,
    /// `metrics.listen`, on the server with metrics on.
    metrics: Option<SocketAddr>,
    db: std::path::PathBuf,
    integration: String,
    /// Per concurrency: every round's report.
    rounds: Vec<(usize, Report)>,
    sent: usize,
}

pub fn run(b: &Bench, failures: &mut Vec<String>) -> anyhow::Result<()> {
    let dir = b.tempdir("metrics")?;
    let secret = format!("whsec_bench_{}", b.run_id);
    let mut off = start(b, dir.path(), "off", &secret, false)?;
    let mut on = start(b, dir.path(), "on", &secret, true)?;
    let events = Events::new(&b.run_id)?;
    // `MMC_BENCH_METRICS_EVENTS` sets the events per round at concurrency 64 (a tenth go at
    // concurrency 1), for a shorter run on a slow or busy machine.
    let per_round = std::env::var("MMC_BENCH_METRICS_EVENTS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok());
    let (rounds, plan): (usize, [(usize, usize); 2]) = match (b.smoke, per_round) {
        (true, _) => (2, [(64, 200), (1, 50)]),
        (false, Some(n)) => (6, [(64, n), (1, (n / 10).max(1))]),
        (false, None) => (6, [(64, 20_000), (1, 2_000)]),
    };
    let cap = Duration::from_secs(60);

    // Prometheus's scraper, every second, for the whole run.
    let scraping = Arc::new(AtomicBool::new(true));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (scraping, scrapes) = (scraping.clone(), scrapes.clone());
        let address = on.metrics.context("the on server has a metrics address")?;
        std::thread::spawn(move || {
            let mut failed = None;
            while scraping.load(Ordering::Relaxed) {
                match scrape(address) {
                    Ok(_) => {
                        scrapes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failed = Some(e.to_string()),
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            failed
        })
    };

    let warm = |side: &mut Side| -> anyhow::Result<()> {
        let report = post(
            side,
            &events,
            &secret,
            "warmup",
            500.min(plan[0].1),
            16,
            cap,
        )?;
        side.sent += report.sent;
        drain(&side.db, Duration::from_secs(120));
        Ok(())
    };
    warm(&mut off)?;
    warm(&mut on)?;
    for round in 0..rounds {
        // Alternate which goes first, so neither always follows the other's drain.
        let order: [&mut Side; 2] = if round % 2 == 0 {
            [&mut off, &mut on]
        } else {
            [&mut on, &mut off]
        };
        for side in order {
            for (concurrency, count) in plan {
                let series = format!("r{round}c{concurrency}");
                let report = post(side, &events, &secret, &series, count, concurrency, cap)?;
                check_errors(
                    &format!("metrics {} round {round} c={concurrency}", side.name),
                    &report,
                    failures,
                );
                side.sent += report.sent;
                side.rounds.push((concurrency, report));
                if drain(&side.db, Duration::from_secs(300)).is_none() {
                    failures.push(format!(
                        "metrics {}: the processor did not drain",
                        side.name
                    ));
                }
            }
        }
    }
    scraping.store(false, Ordering::Relaxed);
    if let Ok(Some(error)) = scraper.join() {
        failures.push(format!("metrics: a scrape failed: {error}"));
    }

    for side in [&off, &on] {
        let stored = support::count(&side.db, "SELECT COUNT(*) FROM events")?;
        if stored != side.sent as i64 {
            failures.push(format!(
                "metrics {}: {} events posted, {stored} stored",
                side.name, side.sent
            ));
        }
    }
    let text = scrape(on.metrics.context("metrics address")?)?;
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
    let counted: f64 = parsed
        .samples
        .iter()
        .filter(|s| s.metric == "mmc_webhooks_total" && s.labels.get("outcome") == Some("stored"))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    if counted != on.sent as f64 {
        failures.push(format!(
            "metrics: the on server stored {} events, its mmc_webhooks_total says {counted}",
            on.sent
        ));
    }
    print(&off, &on, plan, scrapes.load(Ordering::Relaxed));
    Ok(())
}

fn post(
    side: &Side,
    events: &Events,
    secret: &str,
    series: &str,
    count: usize,
    concurrency: usize,
    cap: Duration,
) -> anyhow::Result<Report> {
    let bodies = events.bodies(&format!("{}{series}", side.name), count);
    let requests = signed_requests(side.addr, &side.integration, secret, &bodies);
    http::run(
        side.addr,
        Arc::new(requests),
        concurrency,
        cap,
        http::stored_new,
    )
}

/// `mailmycustomer serve` on a fresh database, with only the settings given here (as
/// `support::Server` does), and `/metrics` on a port of its own when `metrics`.
fn start(
    b: &Bench,
    dir: &Path,
    name: &'static str,
    secret: &str,
    metrics: bool,
) -> anyhow::Result<Side> {
    let db = dir.join(format!("{name}.db"));
    let integration = support::add_integration(&b.bin, &db, secret)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port()?).parse()?;
    let metrics_addr: Option<SocketAddr> = if metrics {
        Some(format!("127.0.0.1:{}", support::free_port()?).parse()?)
    } else {
        None
    };
    let mut command = Command::new(&b.bin);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MMC_DATABASE__PATH", &db)
        .env("MMC_LOG__LEVEL", "warn")
        .env("MMC_SERVER__LISTEN", addr.to_string())
        .env("MMC_SERVER__SHUTDOWN_TIMEOUT_SECS", "5")
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?);
    if let Some(metrics) = metrics_addr {
        command.env("MMC_METRICS__LISTEN", metrics.to_string());
    }
    let mut guard = Guard::new(
        command.spawn().context("starting serve")?,
        format!("the metrics-{name} server"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::healthz(addr) != Some(200) {
        if let Some(status) = guard.exited() {
            bail!("the metrics-{name} server exited with {status}");
        }
        if Instant::now() > deadline {
            bail!("the metrics-{name} server did not answer /healthz within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Side {
        name,
        _guard: guard,
        addr,
        metrics: metrics_addr,
        db,
        integration,
        rounds: Vec::new(),
        sent: 0,
    })
}

/// One `GET /metrics` on a new connection; the body of a 200.
fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("no end of headers in the answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("/metrics answered {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_owned())
}

fn print(off: &Side, on: &Side, plan: [(usize, usize); 2], scrapes: usize) {
    println!(
        "### Metrics on versus off (intake, alternating rounds; on = `metrics.listen`, scraped every second: {scrapes} scrapes)\n"
    );
    let mut table = Table::new(&[
        "concurrency",
        "rounds",
        "off: median requests/s",
        "on: median requests/s",
        "on / off",
        "off: p50 / p99",
        "on: p50 / p99",
    ]);
    for (concurrency, _) in plan {
        let (a, b) = (at(off, concurrency), at(on, concurrency));
        let (ra, rb) = (median_rate(&a), median_rate(&b));
        table.row(vec![
            concurrency.to_string(),
            a.len().to_string(),
            rate(ra),
            rate(rb),
            format!("{:.3}", rb / ra.max(1e-9)),
            latencies(&a),
            latencies(&b),
        ]);
    }
    table.print();
}

/// The side's reports at `concurrency`, one per round.
fn at(side: &Side, concurrency: usize) -> Vec<&Report> {
    side.rounds
        .iter()
        .filter(|(c, _)| *c == concurrency)
        .map(|(_, r)| r)
        .collect()
}

fn median_rate(reports: &[&Report]) -> f64 {
    let mut rates: Vec<f64> = reports.iter().map(|r| r.per_sec()).collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

/// The median over rounds of each round's p50 and p99.
fn latencies(reports: &[&Report]) -> String {
    let median = |q: f64| {
        let mut all: Vec<Duration> = reports.iter().map(|r| r.quantile(q)).collect();
        all.sort();
        all.get(all.len() / 2).copied().unwrap_or_default()
    };
    format!("{} / {}", ms(median(0.5)), ms(median(0.99)))
}
