//! Intake: distinct, validly signed events posted to the real release binary at concurrency 1, 16
//! and 64, then the raw SQLite rate for the same rows with the same pragmas (one transaction per
//! row, and 512 rows per transaction like the group-committing writer) for the ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailmycustomer::db::{self, events};
use mailmycustomer::stripe::envelope::Envelope;

use crate::events::{signed_requests, Events};
use crate::http::{self, Report};
use crate::support::{self, mib, ms, rate, Bench, Server, Table};

pub struct Level {
    pub concurrency: usize,
    pub report: Report,
    /// How long the processor took to turn this level's events into deliveries afterwards.
    pub drain: Option<Duration>,
    /// Cores used while posting.
    pub cores: support::Cores,
    /// The server's threads right after posting.
    pub threads: Option<u64>,
}

pub struct Intake {
    pub levels: Vec<Level>,
    pub idle_rss_kib: Option<u64>,
    /// Of the idle RSS, what is not the binary's mapped code and data (`RssAnon`).
    pub idle_anon_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    pub raw_per_row: f64,
    pub raw_batched: f64,
}

impl Intake {
    pub fn at(&self, concurrency: usize) -> Option<&Report> {
        self.levels
            .iter()
            .find(|l| l.concurrency == concurrency)
            .map(|l| &l.report)
    }
}

/// Rows per transaction in the batched raw-SQLite run: the writer's `MAX_BATCH`.
const RAW_BATCH: usize = 512;

pub fn run(b: &Bench, failures: &mut Vec<String>) -> anyhow::Result<Intake> {
    let dir = b.tempdir("intake")?;
    let db_path = dir.path().join("mmc.db");
    let secret = format!("whsec_bench_{}", b.run_id);
    let integration = support::add_integration(&b.bin, &db_path, &secret)?;
    let (server, _) = Server::start(&b.bin, &db_path, None, &dir.path().join("server.log"))?;
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss_kib = support::memory_kib(server.pid(), "VmRSS");
    let idle_anon_kib = support::memory_kib(server.pid(), "RssAnon");

    let events = Events::new(&b.run_id)?;
    let (warmup, plan, cap): (usize, [(usize, usize); 3], Duration) = if b.smoke {
        (
            20,
            [(1, 100), (16, 150), (64, 250)],
            Duration::from_secs(30),
        )
    } else {
        (
            500,
            [(1, 5_000), (16, 30_000), (64, 60_000)],
            Duration::from_secs(30),
        )
    };

    let post = |series: &str, count: usize, concurrency: usize| -> anyhow::Result<Report> {
        let bodies = events.bodies(series, count);
        let requests = signed_requests(server.addr, &integration, &secret, &bodies);
        http::run(
            server.addr,
            Arc::new(requests),
            concurrency,
            cap,
            http::stored_new,
        )
    };
    let mut sent = 0;
    let warm = post("warmup", warmup, 16)?;
    sent += warm.sent;
    check_errors("warm-up", &warm, failures);
    drain(&db_path, Duration::from_secs(120));

    let mut levels = Vec::new();
    for (concurrency, count) in plan {
        let profiler = support::profile(server.pid(), &format!("intake-c{concurrency}"), None);
        let cpu = support::CpuWindow::start(server.pid());
        let report = post(&format!("c{concurrency}"), count, concurrency)?;
        let cores = cpu.cores();
        let threads = support::memory_kib(server.pid(), "Threads");
        drop(profiler);
        sent += report.sent;
        check_errors(&format!("concurrency {concurrency}"), &report, failures);
        if report.sent < count {
            eprintln!(
                "bench: concurrency {concurrency}: the {cap:?} cap stopped the run after {} of {count} events",
                report.sent
            );
        }
        let profiler = support::profile(
            server.pid(),
            &format!("intake-c{concurrency}-drain"),
            Some(Duration::from_secs(10)),
        );
        let drained = drain(&db_path, Duration::from_secs(300));
        drop(profiler);
        levels.push(Level {
            concurrency,
            report,
            drain: drained,
            cores,
            threads,
        });
    }
    let peak_rss_kib = support::memory_kib(server.pid(), "VmHWM");

    // Every event answered 2xx is stored exactly once; nothing else is.
    let stored = support::count(&db_path, "SELECT COUNT(*) FROM events")?;
    let distinct = support::count(
        &db_path,
        "SELECT COUNT(DISTINCT stripe_event_id) FROM events",
    )?;
    if stored != sent as i64 || distinct != stored {
        failures.push(format!(
            "intake: {sent} events posted, {stored} rows stored ({distinct} distinct ids)"
        ));
    }
    for error in server.logged_errors() {
        failures.push(format!("intake: the server logged: {error}"));
    }
    drop(server);

    let (raw_rows, raw_batched_rows) = if b.smoke {
        (200, 2 * RAW_BATCH)
    } else {
        (5_000, 100 * RAW_BATCH)
    };
    let raw_per_row = raw_sqlite(
        &dir.path().join("raw-per-row.db"),
        &events,
        raw_rows,
        1,
        failures,
    )?;
    let raw_batched = raw_sqlite(
        &dir.path().join("raw-batched.db"),
        &events,
        raw_batched_rows,
        RAW_BATCH,
        failures,
    )?;

    let result = Intake {
        levels,
        idle_rss_kib,
        idle_anon_kib,
        peak_rss_kib,
        raw_per_row,
        raw_batched,
    };
    print(&result, raw_rows, raw_batched_rows);
    Ok(result)
}

pub(crate) fn check_errors(what: &str, report: &Report, failures: &mut Vec<String>) {
    if report.errors > 0 || report.ok != report.sent {
        failures.push(format!(
            "intake {what}: {} of {} requests failed, first: {}",
            report.sent - report.ok,
            report.sent,
            report.first_error.as_deref().unwrap_or("?")
        ));
    }
}

/// Waits until the processor has no pending event left; how long that took, if it did.
pub(crate) fn drain(db_path: &std::path::Path, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let pending = support::count(
            db_path,
            "SELECT COUNT(*) FROM events WHERE processing = 'pending'",
        );
        if matches!(pending, Ok(0)) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Inserts `count` events through `db::events::insert` on a connection from `db::open` (WAL,
/// synchronous=FULL), `per_tx` rows per `BEGIN IMMEDIATE` transaction; returns rows/s.
fn raw_sqlite(
    path: &std::path::Path,
    events: &Events,
    count: usize,
    per_tx: usize,
    failures: &mut Vec<String>,
) -> anyhow::Result<f64> {
    let mut conn = db::open(&db::Options::at(path)?)?;
    db::migrate(&mut conn)?;
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at) VALUES ('int_raw', 'raw', seal('whsec_raw'), 0)",
        [],
    )?;
    let rows = (0..count)
        .map(|n| {
            let payload = events.body(&format!("raw{per_tx}"), n);
            Ok(events::NewEvent::new(
                "int_raw".into(),
                Envelope::parse(&payload)?,
                std::str::from_utf8(&payload)?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    for chunk in rows.chunks(per_tx) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = db::now_unix();
        for row in chunk {
            events::insert(&tx, row, now)?;
        }
        tx.commit()?;
    }
    let took = started.elapsed();
    let stored: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
    if stored != count as i64 {
        failures.push(format!(
            "raw SQLite: {count} rows inserted, {stored} stored"
        ));
    }
    Ok(count as f64 / took.as_secs_f64())
}

fn print(r: &Intake, raw_rows: usize, raw_batched_rows: usize) {
    println!("### Intake (distinct signed invoice.paid events, ~6 KB each)\n");
    let mut table = Table::new(&[
        "concurrency",
        "events",
        "requests/s",
        "p50",
        "p99",
        "max",
        "errors",
        "CPU cores: server + generator + others",
        "server threads",
        "processor drain after",
    ]);
    for l in &r.levels {
        table.row(vec![
            l.concurrency.to_string(),
            l.report.sent.to_string(),
            rate(l.report.per_sec()),
            ms(l.report.quantile(0.50)),
            ms(l.report.quantile(0.99)),
            ms(l.report.quantile(1.0)),
            l.report.errors.to_string(),
            l.cores.to_string(),
            l.threads.map_or_else(|| "?".to_owned(), |t| t.to_string()),
            l.drain.map_or_else(|| "not drained".to_owned(), ms),
        ]);
    }
    table.print();
    println!("Server CPU by thread while posting (cores; threads that ended are not counted):\n");
    for l in &r.levels {
        println!("- concurrency {}: {}", l.concurrency, l.cores.busiest());
    }
    println!();

    let c1 = r.at(1).map_or(0.0, Report::per_sec);
    let c64 = r.at(64).map_or(0.0, Report::per_sec);
    println!(
        "### Raw SQLite, same pragmas (WAL, synchronous=FULL), same rows, `db::events::insert`\n"
    );
    let mut table = Table::new(&[
        "mode",
        "rows",
        "rows/s",
        "intake c=1 / this",
        "intake c=64 / this",
    ]);
    for (mode, rows, per_sec) in [
        ("one transaction per row", raw_rows, r.raw_per_row),
        ("512 rows per transaction", raw_batched_rows, r.raw_batched),
    ] {
        table.row(vec![
            mode.to_owned(),
            rows.to_string(),
            rate(per_sec),
            format!("{:.2}", c1 / per_sec),
            format!("{:.2}", c64 / per_sec),
        ]);
    }
    table.print();
    println!(
        "Server memory during intake: idle {} after start ({} of it anonymous; the rest is the \
         binary's code as the kernel maps it, in 64 KiB fault-around blocks), peak (VmHWM) {}.\n",
        mib(r.idle_rss_kib),
        mib(r.idle_anon_kib),
        mib(r.peak_rss_kib)
    );
}
