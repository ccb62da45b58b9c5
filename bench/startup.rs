//! Start-up: exec of `mailmycustomer serve` → first `/healthz` 200, on an existing database
//! (migrated, built-in templates seeded, one integration), repeated; each run ends with SIGTERM.

use std::path::Path;
use std::time::Duration;

use crate::support::{self, median, ms, Bench, Server, Table};

pub struct Startup {
    pub runs: usize,
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
    pub stop_median: Duration,
}

pub fn run(b: &Bench, failures: &mut Vec<String>) -> anyhow::Result<Startup> {
    let dir = b.tempdir("startup")?;
    let db_path = dir.path().join("mmc.db");
    support::add_integration(&b.bin, &db_path, &format!("whsec_bench_{}", b.run_id))?;
    // One start so the database is exactly as a server leaves it.
    Server::start(&b.bin, &db_path, None, &dir.path().join("first.log"))?;
    let result = measure(b, &db_path, if b.smoke { 3 } else { 20 }, failures)?;
    println!("### Start-up (exec → first /healthz 200, existing database)\n");
    let mut table = Table::new(&[
        "database",
        "runs",
        "min",
        "median",
        "max",
        "SIGTERM → exit (median)",
    ]);
    table.row(row("migrated, one integration, no events", &result));
    table.print();
    Ok(result)
}

/// Starts the server on `db_path` `runs` times and times each start.
pub fn measure(
    b: &Bench,
    db_path: &Path,
    runs: usize,
    failures: &mut Vec<String>,
) -> anyhow::Result<Startup> {
    let log = db_path.with_extension("startup.log");
    let mut starts = Vec::with_capacity(runs);
    let mut stops = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (mut server, took) = Server::start(&b.bin, db_path, None, &log)?;
        starts.push(took);
        stops.push(server.guard.stop(Duration::from_secs(10)));
        for error in server.logged_errors() {
            failures.push(format!("start-up: the server logged: {error}"));
        }
    }
    let min = starts.iter().min().copied().unwrap_or_default();
    let max = starts.iter().max().copied().unwrap_or_default();
    Ok(Startup {
        runs,
        min,
        median: median(&mut starts),
        max,
        stop_median: median(&mut stops),
    })
}

pub fn row(what: &str, s: &Startup) -> Vec<String> {
    vec![
        what.to_owned(),
        s.runs.to_string(),
        ms(s.min),
        ms(s.median),
        ms(s.max),
        ms(s.stop_median),
    ]
}
