//! `mailmycustomer catalog list|refresh INTEGRATION`: an integration's products and plans as
//! cached from Stripe, and reading them all from Stripe again.

use std::process::ExitCode;

use clap::Subcommand;

use super::{app, printable, runtime};
use crate::config::Config;
use crate::manage::catalog::{self, Changes, PlanEntry};

#[derive(Debug, Subcommand)]
pub enum CatalogAction {
    /// List the products and their plans (prices) cached from Stripe, with their ids, how many
    /// templates are made for each, and when each name was fetched.
    List {
        /// The integration id (int_…), as shown by `integration list`.
        integration: String,
    },
    /// Read every product and price from Stripe again (needs the integration's API key) and
    /// print what changed. Nothing is deleted.
    Refresh {
        /// The integration id (int_…), as shown by `integration list`.
        integration: String,
    },
}

pub fn run(config: &Config, action: CatalogAction) -> anyhow::Result<ExitCode> {
    let app = app(config)?;
    let runtime = runtime()?;
    match action {
        CatalogAction::List { integration } => {
            let mut after: Option<String> = None;
            loop {
                let page = runtime.block_on(catalog::show(&app, &integration, after.as_deref()))?;
                if after.is_none() {
                    println!(
                        "{}: {} product(s), {} plan(s)",
                        printable(&page.integration.name),
                        page.product_count,
                        page.plan_count
                    );
                    if page.product_count == 0 && page.plan_count == 0 {
                        println!(
                            "nothing cached yet; read them with `mailmycustomer catalog refresh {}`",
                            page.integration.id
                        );
                    }
                }
                for entry in &page.products {
                    let p = &entry.product;
                    println!(
                        "{}  {}  templates={}  fetched {}",
                        printable(&p.id),
                        printable(&p.name),
                        entry.templates,
                        when(p.fetched_at)
                    );
                    for plan in &entry.plans {
                        print_plan("  ", plan);
                    }
                }
                if !page.unattached.is_empty() {
                    println!("plans of products not in the catalog:");
                    for plan in &page.unattached {
                        print_plan("  ", plan);
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        CatalogAction::Refresh { integration } => {
            let refreshed = runtime.block_on(catalog::refresh(&app, &integration))?;
            println!("{}", printable(&refreshed.summary()));
            print_changes("product", &refreshed.products);
            print_changes("plan", &refreshed.plans);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(indent: &str, entry: &PlanEntry) {
    let plan = &entry.plan.plan;
    println!(
        "{indent}{}  {}  interval={}  templates={}  fetched {}",
        printable(&plan.id),
        printable(&plan.name),
        plan.interval.as_deref().unwrap_or("one-time"),
        entry.templates,
        when(entry.plan.fetched_at)
    );
}

/// One line per change, for scripts and for reading back what a refresh did.
fn print_changes(kind: &str, changes: &Changes) {
    for (id, name) in &changes.added {
        println!("added {kind} {}  {}", printable(id), printable(name));
    }
    for renamed in &changes.renamed {
        println!(
            "renamed {kind} {}  {} → {}",
            printable(&renamed.id),
            printable(&renamed.old),
            printable(&renamed.new)
        );
    }
    for (id, name) in &changes.gone {
        println!(
            "no longer on Stripe: {kind} {}  {} (kept)",
            printable(id),
            printable(name)
        );
    }
}

fn when(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ts.to_string())
}
