//! `mailmycustomer integration catch-up ID`: one catch-up now (`pipeline::catchup::once`), for
//! tests and after a long outage; the server does the same at start and every
//! `stripe.catch_up_interval_minutes`. It works beside a running `serve`: the two processes
//! share the database, and only `serve` takes the serve lock.

use std::process::ExitCode;

use crate::app::App;
use crate::pipeline::catchup;

pub fn run(app: &App, runtime: &tokio::runtime::Runtime, id: &str) -> anyhow::Result<ExitCode> {
    let caught = runtime.block_on(catchup::once(app, id))?;
    let since = jiff::Timestamp::from_second(caught.from)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| caught.from.to_string());
    println!("listed: {} event(s) created since {since}", caught.listed);
    println!(
        "stored: {} that no webhook had brought; they are emailed by the running server \
         (within a minute) or by the next one to start",
        caught.stored
    );
    if caught.unreadable > 0 {
        println!(
            "left out: {} that Stripe listed but are not readable as events (see the log)",
            caught.unreadable
        );
    }
    Ok(ExitCode::SUCCESS)
}
