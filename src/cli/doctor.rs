//! `mailmycustomer doctor`: prints each check of `manage::doctor` on its own line as it is made
//! (`ok`, `FAIL` with the fix below it, `skip`), then a count; exit code 0 only when nothing
//! failed. It reads the config itself, so a config that does not load is its first finding
//! rather than an error before it starts.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::printable;
use crate::config::Overrides;
use crate::manage::doctor::{self, Check, Status};

pub fn run(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let report = super::runtime()?.block_on(doctor::run(file, env, overrides, &mut print));
    println!(
        "{} ok, {} failed, {} skipped",
        report.count(Status::Ok),
        report.count(Status::Fail),
        report.count(Status::Skip)
    );
    Ok(match report.passed() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

fn print(check: &Check) {
    let mark = match check.status {
        Status::Ok => "ok  ",
        Status::Fail => "FAIL",
        Status::Skip => "skip",
    };
    // Details quote relays, Stripe and file contents: shown escaped, as all CLI output is.
    println!("{mark}  {}: {}", check.name, printable(&check.detail));
    if let Some(fix) = &check.fix {
        println!("      fix: {}", printable(fix));
    }
}
