//! End to end: N distinct events posted to the real binary, timed from the first post until
//! Postfix's `smtp-sink` has counted N messages. Then `smtp-source` → `smtp-sink` with the same
//! message size in the same run, the ceiling of the SMTP leg on this machine, for the ratio.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::events::{signed_requests, Events};
use crate::http;
use crate::support::{self, mib, ms, rate, Bench, Server, Sink, Table};

pub struct EndToEnd {
    pub emails: usize,
    pub message_bytes: usize,
    pub posted_in: Duration,
    /// When the processor had turned every event into a delivery.
    pub processed_in: Option<Duration>,
    pub received_in: Duration,
    /// Cores used from the first post to the last message.
    pub cores: support::Cores,
    pub idle_rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    /// (what, messages/s) for each smtp-source run.
    pub baselines: Vec<(String, f64)>,
}

impl EndToEnd {
    pub fn per_sec(&self) -> f64 {
        self.emails as f64 / self.received_in.as_secs_f64().max(1e-9)
    }
}

pub fn run(b: &Bench, failures: &mut Vec<String>) -> anyhow::Result<EndToEnd> {
    let n = if b.smoke { 300 } else { 10_000 };
    let dir = b.tempdir("e2e")?;
    let db_path = dir.path().join("mmc.db");
    let secret = format!("whsec_bench_{}", b.run_id);
    let integration = support::add_integration(&b.bin, &db_path, &secret)?;
    let events = Events::new(&b.run_id)?;
    let post = |server: &Server, bodies: &[Vec<u8>], concurrency: usize| {
        let requests = signed_requests(server.addr, &integration, &secret, bodies);
        http::run(
            server.addr,
            Arc::new(requests),
            concurrency,
            Duration::from_secs(120),
            http::stored_new,
        )
    };

    // One email first, kept as a file, to learn the size of our messages for smtp-source.
    let message_bytes = {
        let sink = Sink::start(dir.path(), true)?;
        let (server, _) = Server::start(
            &b.bin,
            &db_path,
            Some(sink.port),
            &dir.path().join("probe.log"),
        )?;
        let report = post(&server, &[events.body("probe", 0)], 1)?;
        if report.ok != 1 {
            bail!(
                "the probe event was refused: {}",
                report.first_error.unwrap_or_default()
            );
        }
        if sink
            .wait_for(1, Instant::now(), Duration::from_secs(30))
            .is_none()
        {
            bail!(
                "the probe email did not arrive within 30 s: {}",
                server.log_tail()
            );
        }
        let file = sink
            .files()
            .into_iter()
            .next()
            .context("no dumped probe email")?;
        message_size(&std::fs::read(file)?)
    };

    // The run: a counting sink (in smoke mode also keeping files, to check them one by one).
    let sink = Sink::start(dir.path(), b.smoke)?;
    let (server, _) = Server::start(
        &b.bin,
        &db_path,
        Some(sink.port),
        &dir.path().join("server.log"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss_kib = support::memory_kib(server.pid(), "VmRSS");
    let bodies = events.bodies("e2e", n);
    let profiler = support::profile(server.pid(), "e2e", None);
    let cpu = support::CpuWindow::start(server.pid());
    let started = Instant::now();
    let report = post(&server, &bodies, 64)?;
    let posted_in = started.elapsed();
    if report.ok != n {
        failures.push(format!(
            "end to end: {} of {n} events refused, first: {}",
            n - report.ok,
            report.first_error.as_deref().unwrap_or("?")
        ));
    }
    let within = Duration::from_secs(if b.smoke { 60 } else { 300 });
    let (processed_in, received_in) = wait(&sink, &db_path, n, started, within);
    let cores = cpu.cores();
    drop(profiler);
    // Anything beyond n arriving a little later would be a duplicate.
    std::thread::sleep(Duration::from_millis(500));
    let received = sink.count();
    let peak_rss_kib = support::memory_kib(server.pid(), "VmHWM");
    if received != n as u64 {
        failures.push(format!(
            "end to end: {n} events posted, the sink received {received} messages"
        ));
    }
    let sent_rows = support::count(
        &db_path,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'",
    )?;
    if sent_rows != n as i64 + 1 {
        failures.push(format!(
            "end to end: {} deliveries marked sent, expected {}",
            sent_rows,
            n + 1
        ));
    }
    if b.smoke {
        check_files(&sink, n, failures)?;
    }
    for error in server.logged_errors() {
        failures.push(format!("end to end: the server logged: {error}"));
    }
    drop(server);
    drop(sink);

    let mut baselines = Vec::new();
    for (what, options) in [
        (
            "20 sessions, a new connection per message",
            &["-s", "20"][..],
        ),
        (
            "20 sessions, connections reused (-d)",
            &["-s", "20", "-d"][..],
        ),
        (
            "4 sessions, connections reused (-d), like smtp.pool_size = 4",
            &["-s", "4", "-d"][..],
        ),
    ] {
        let per_sec = smtp_source(b, dir.path(), options, message_bytes, n, failures)?;
        baselines.push((what.to_owned(), per_sec));
    }

    let result = EndToEnd {
        emails: n,
        message_bytes,
        posted_in,
        processed_in,
        received_in: received_in.unwrap_or(within),
        cores,
        idle_rss_kib,
        peak_rss_kib,
        baselines,
    };
    print(&result);
    Ok(result)
}

/// Waits for the sink to count `n` messages, noting on the way when the processor had no
/// pending event left. Returns (processed, received), each since `started`.
fn wait(
    sink: &Sink,
    db: &std::path::Path,
    n: usize,
    started: Instant,
    within: Duration,
) -> (Option<Duration>, Option<Duration>) {
    let mut processed = None;
    let mut last_look = Instant::now() - Duration::from_secs(1);
    while started.elapsed() < within {
        if sink.count() >= n as u64 {
            return (processed, Some(started.elapsed()));
        }
        // The pending count is a query: ask it every 20 ms, the sink's counter every 2 ms.
        if processed.is_none() && last_look.elapsed() >= Duration::from_millis(20) {
            last_look = Instant::now();
            let pending = support::count(
                db,
                "SELECT COUNT(*) FROM events WHERE processing = 'pending'",
            );
            if matches!(pending, Ok(0)) {
                processed = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (processed, None)
}

/// The size of the message as it went over SMTP: smtp-sink's dump starts with its own
/// `X-Client-…`/`X-Helo-…`/`X-Mail-…`/`X-Rcpt-…` lines and a `Received:` header, not ours.
fn message_size(dump: &[u8]) -> usize {
    let text = String::from_utf8_lossy(dump);
    let added = ["X-Client-", "X-Helo-", "X-Mail-", "X-Rcpt-"];
    let mut lines = text.split_inclusive('\n').peekable();
    let mut skipped = 0;
    while let Some(line) = lines.next_if(|l| added.iter().any(|p| l.starts_with(p))) {
        skipped += line.len();
    }
    if let Some(line) = lines.next_if(|l| l.starts_with("Received: ")) {
        skipped += line.len();
        while let Some(line) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
            skipped += line.len();
        }
    }
    dump.len() - skipped
}

/// Smoke mode: n files, n distinct Message-IDs, each to the fixture's customer.
fn check_files(sink: &Sink, n: usize, failures: &mut Vec<String>) -> anyhow::Result<()> {
    let files = sink.files();
    let mut ids = HashSet::new();
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file)?).into_owned();
        let id = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            .map(str::to_owned);
        if !text.contains("jenny.rosen@example.com") {
            failures.push(format!(
                "end to end: {} is not to the customer",
                file.display()
            ));
        }
        ids.insert(id.unwrap_or_default());
    }
    if files.len() != n || ids.len() != n {
        failures.push(format!(
            "end to end: {} files with {} distinct Message-IDs, expected {n}",
            files.len(),
            ids.len()
        ));
    }
    Ok(())
}

/// `smtp-source` into a fresh counting sink; messages/s from exec until the sink counted all.
fn smtp_source(
    b: &Bench,
    dir: &std::path::Path,
    options: &[&str],
    bytes: usize,
    n: usize,
    failures: &mut Vec<String>,
) -> anyhow::Result<f64> {
    let sink = Sink::start(dir, false)?;
    let started = Instant::now();
    let status = Command::new(support::postfix_tool("smtp-source")?)
        .args(options)
        .args(["-l", &bytes.to_string(), "-m", &n.to_string()])
        .args([
            "-f",
            "billing@bench.example",
            "-t",
            "customer@bench.example",
        ])
        .arg(format!("127.0.0.1:{}", sink.port))
        .stdout(Stdio::null())
        .status()
        .context("running smtp-source")?;
    let took = sink.wait_for(
        n as u64,
        started,
        Duration::from_secs(if b.smoke { 30 } else { 120 }),
    );
    if !status.success() || took.is_none() {
        failures.push(format!(
            "smtp-source {}: exit {status}, sink counted {} of {n}",
            options.join(" "),
            sink.count()
        ));
    }
    Ok(n as f64 / took.unwrap_or(started.elapsed()).as_secs_f64())
}

fn print(r: &EndToEnd) {
    println!("### End to end (post → store → process → render → SMTP → smtp-sink)\n");
    let mut table = Table::new(&["what", "messages", "time", "messages/s", "ours / this"]);
    table.row(vec![
        format!(
            "MailMyCustomer: {} events posted at concurrency 64",
            r.emails
        ),
        r.emails.to_string(),
        ms(r.received_in),
        rate(r.per_sec()),
        "1.00".to_owned(),
    ]);
    for (what, per_sec) in &r.baselines {
        table.row(vec![
            format!("smtp-source → smtp-sink, {what}"),
            r.emails.to_string(),
            ms(Duration::from_secs_f64(r.emails as f64 / per_sec)),
            rate(*per_sec),
            format!("{:.2}", r.per_sec() / per_sec),
        ]);
    }
    table.print();
    println!(
        "All events answered after {}; all turned into deliveries (no event pending) after {}; \
         all {} messages at the sink after {}. CPU cores used meanwhile: server {:.2}, load generator \
         {:.2}, smtp-sink and others {:.2}.\n",
        ms(r.posted_in),
        r.processed_in.map_or_else(|| "?".to_owned(), ms),
        r.emails,
        ms(r.received_in),
        r.cores.server,
        r.cores.generator,
        r.cores.others
    );
    println!(
        "Server CPU by thread meanwhile (cores): {}.\n",
        r.cores.busiest()
    );
    println!(
        "Message size (ours, as sent; smtp-source -l): {} bytes. Server memory: idle {} after start, peak (VmHWM) {}.\n",
        r.message_bytes,
        mib(r.idle_rss_kib),
        mib(r.peak_rss_kib)
    );
}
