//! The benchmark harness (issue 5): drives the real `mailmycustomer` binary as a subprocess on
//! temporary databases and prints markdown tables. `bash bench/run.sh` builds and runs it; see
//! BENCHMARKS.md for what each phase measures and the results on the reference machine.
//!
//! ```text
//! mmc_bench [--smoke] [--bin PATH] [intake] [e2e] [startup] [log] [metrics] [storm]   (no phase: all)
//! ```
//!
//! `--smoke` runs a few hundred events and 10k log rows and checks correctness only (every
//! event stored once, every email received once, log queries return matching rows); any
//! failure exits 1. Speed is never asserted: the targets table is printed, not enforced.

mod dashboard;
mod e2e;
mod events;
mod http;
mod intake;
mod logscale;
mod metrics;
mod startup;
mod storm;
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use support::{mib, ms, rate, Bench, Table};

const USAGE: &str =
    "usage: mmc_bench [--smoke] [--bin PATH] [--tmp DIR] [intake] [e2e] [startup] [log] [metrics] [storm]";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[derive(Default)]
struct Results {
    intake: Option<intake::Intake>,
    e2e: Option<e2e::EndToEnd>,
    startup: Option<startup::Startup>,
    log: Option<logscale::LogScale>,
    storm: Option<storm::Storm>,
}

fn run() -> anyhow::Result<bool> {
    let mut smoke = false;
    let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_mailmycustomer"));
    let mut tmp = std::env::temp_dir();
    let mut phases = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--bin" => {
                bin = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow::anyhow!(USAGE))?
            }
            "--tmp" => {
                tmp = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow::anyhow!(USAGE))?
            }
            // `cargo bench` passes this to every bench target.
            "--bench" => {}
            "intake" | "e2e" | "startup" | "log" | "metrics" | "storm" => phases.push(arg),
            "all" => {}
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if phases.is_empty() {
        phases = ["intake", "e2e", "startup", "log", "storm", "metrics"]
            .map(String::from)
            .to_vec();
    }
    let bin = bin
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", bin.display()))?;
    let bench = Bench {
        bin,
        smoke,
        tmp,
        run_id: format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros()
        ),
    };
    println!(
        "## MailMyCustomer benchmarks{}\n\nbinary {}, source {}, {} CPUs, load average {} before the run, {}\n",
        if smoke {
            " (smoke mode: correctness only)"
        } else {
            ""
        },
        bench.bin.display(),
        source_version(),
        std::thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        now_utc()
    );

    let started = Instant::now();
    let mut failures = Vec::new();
    let mut results = Results::default();
    for phase in &phases {
        let t0 = Instant::now();
        let outcome = match phase.as_str() {
            "intake" => intake::run(&bench, &mut failures).map(|r| results.intake = Some(r)),
            "e2e" => e2e::run(&bench, &mut failures).map(|r| results.e2e = Some(r)),
            "startup" => startup::run(&bench, &mut failures).map(|r| results.startup = Some(r)),
            "log" => logscale::run(&bench, &mut failures).map(|r| results.log = Some(r)),
            "metrics" => metrics::run(&bench, &mut failures),
            "storm" => storm::run(&bench, &mut failures).map(|r| results.storm = Some(r)),
            _ => unreachable!("phases are checked above"),
        };
        if let Err(e) = outcome {
            failures.push(format!("{phase}: {e:#}"));
        }
        eprintln!("bench: {phase} took {:.1} s", t0.elapsed().as_secs_f64());
    }
    if !smoke {
        targets(&results);
    }
    eprintln!("bench: done in {:.1} s", started.elapsed().as_secs_f64());
    if failures.is_empty() {
        println!("Correctness checks: all passed.");
        return Ok(true);
    }
    println!("Correctness checks FAILED:");
    for f in &failures {
        println!("- {f}");
    }
    Ok(false)
}

/// The issue's targets for this machine, next to what was measured. Printed, never asserted.
fn targets(r: &Results) {
    let mut table = Table::new(&["target", "measured", "met"]);
    let mut add = |what: &str, measured: String, met: bool| {
        table.row(vec![
            what.to_owned(),
            measured,
            if met { "yes" } else { "**no**" }.to_owned(),
        ]);
    };
    if let Some(i) = &r.intake {
        if let Some(c64) = i.at(64) {
            add(
                "intake ≥ 15,000 events/s at concurrency 64",
                rate(c64.per_sec()),
                c64.per_sec() >= 15_000.0,
            );
            let p99 = c64.quantile(0.99);
            add(
                "intake p99 ≤ 20 ms at concurrency 64",
                ms(p99),
                p99 <= Duration::from_millis(20),
            );
        }
        if let Some(c1) = i.at(1) {
            let p50 = c1.quantile(0.5);
            add(
                "intake p50 ≤ 1 ms at concurrency 1",
                ms(p50),
                p50 <= Duration::from_millis(1),
            );
        }
        let idle = i.idle_rss_kib.unwrap_or(u64::MAX);
        add(
            "idle RSS ≤ 15 MB",
            format!(
                "{} ({} anonymous)",
                mib(i.idle_rss_kib),
                mib(i.idle_anon_kib)
            ),
            idle <= 15 * 1024,
        );
        let peak = i.peak_rss_kib.unwrap_or(u64::MAX);
        add(
            "peak RSS ≤ 60 MB during intake",
            mib(i.peak_rss_kib),
            peak <= 60 * 1024,
        );
    }
    if let Some(e) = &r.e2e {
        add(
            "end to end ≥ 2,000 emails/s",
            rate(e.per_sec()),
            e.per_sec() >= 2_000.0,
        );
        add(
            "(peak RSS during end to end, no target)",
            mib(e.peak_rss_kib),
            true,
        );
    }
    if let Some(s) = &r.startup {
        add(
            "start-up ≤ 100 ms (median)",
            ms(s.median),
            s.median <= Duration::from_millis(100),
        );
    }
    if let Some(l) = &r.log {
        for q in l.queries.iter().filter(|q| q.targeted) {
            add(
                &format!("log query ≤ 10 ms at {} rows: {}", l.rows, q.name),
                ms(q.median),
                q.median <= Duration::from_millis(10),
            );
        }
    }
    if let Some(s) = &r.storm {
        s.targets(&mut add);
    }
    println!("### Targets\n");
    table.print();
    // On a shared machine, other processes' CPU use skews everything measured here. In the
    // end-to-end run, "others" includes smtp-sink (about 0.1 core).
    let others = r
        .intake
        .iter()
        .flat_map(|i| i.levels.iter().map(|l| l.cores.others))
        .chain(r.e2e.iter().map(|e| e.cores.others - 0.2))
        .fold(0.0, f64::max);
    if others > 0.1 {
        println!(
            "**Warning:** other processes used up to {others:.2} cores during these measurements \
             (column \"others\" above); rerun on an otherwise idle machine before comparing.\n"
        );
    }
}

/// The commit the source is at, and which files differ from it (others may be editing).
fn source_version() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(support::repo_root())
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).trim().to_owned();
    let changed = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "src",
        "migrations",
    ]);
    let changed: Vec<&str> = changed.lines().filter_map(|l| l.get(3..)).collect();
    if changed.is_empty() {
        format!("commit {commit}")
    } else {
        format!(
            "commit {commit} + uncommitted changes to {}",
            changed.join(", ")
        )
    }
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
