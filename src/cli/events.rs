//! `mailmycustomer events …`: the received events (`list`), one event with its outcome,
//! deliveries and payload (`show`), and processing a skipped or failed one again
//! (`reprocess`), all through `manage::events`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{app, printable as p, printable_block, runtime};
use crate::config::Config;
use crate::db::events::{EventFilter, EventRow};
use crate::manage::events::{self, outcome_name};

#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Received events, newest first.
    List(ListArgs),
    /// One event: its outcome and why, the deliveries it produced, its payload.
    Show {
        /// The event's number, as `events list` shows it.
        id: i64,
        /// Leave the payload out.
        #[arg(long)]
        no_payload: bool,
    },
    /// Process a skipped or failed event again (e.g. after adding a template or an API key).
    /// A fact already emailed is never emailed twice.
    Reprocess {
        /// The event's number, as `events list` shows it.
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// A Stripe event type, e.g. invoice.paid.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// emailed, skipped, ignored, failed or pending.
    #[arg(long, value_name = "OUTCOME")]
    outcome: Option<String>,
    /// Only this integration's events (int_…).
    #[arg(long, value_name = "ID")]
    integration: Option<String>,
    /// Only events older than this number (the "older" line of the previous page).
    #[arg(long, value_name = "ID")]
    before: Option<i64>,
    /// How many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

fn when(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ts.to_string())
}

pub fn run(config: &Config, action: EventsAction) -> anyhow::Result<ExitCode> {
    let app = app(config)?;
    let runtime = runtime()?;
    match action {
        EventsAction::List(args) => {
            let filter = EventFilter {
                integration_id: args.integration,
                event_type: args
                    .event_type
                    .as_deref()
                    .map(events::parse_type)
                    .transpose()?,
                outcome: args
                    .outcome
                    .as_deref()
                    .map(events::parse_outcome)
                    .transpose()?,
                before: args.before,
                limit: args.limit,
            };
            let page = runtime.block_on(events::list(&app, filter))?;
            println!(
                "{:<7} {:<19} {:<36} {:<8} {:<30} DETAIL",
                "ID", "RECEIVED (UTC)", "TYPE", "OUTCOME", "STRIPE EVENT"
            );
            for e in &page.rows {
                print_row(e);
            }
            if page.rows.is_empty() {
                println!("(no events match)");
            }
            if let Some(older) = page.older {
                let why = if page.scan_ended {
                    "looked through the latest events only"
                } else {
                    "more"
                };
                println!("({why}: older ones with --before {older})");
            }
        }
        EventsAction::Show { id, no_payload } => {
            let detail = runtime.block_on(events::get(&app, id))?;
            let e = &detail.event;
            println!("event {}: {}", e.id, p(&e.stripe_event_id));
            println!("type:         {}", p(&e.event_type));
            println!(
                "integration:  {} ({})",
                p(&detail.integration),
                p(&e.integration_id)
            );
            println!("mode:         {}", if e.livemode { "live" } else { "test" });
            println!("created:      {} (Stripe)", when(e.created));
            println!("received:     {}", when(e.received_at));
            println!(
                "outcome:      {}{}",
                outcome_name(e.processing),
                e.processing_detail
                    .as_deref()
                    .map(|d| format!(": {}", p(d)))
                    .unwrap_or_default()
            );
            if let Some(at) = e.processed_at {
                println!("processed:    {}", when(at));
            }
            if let Some(at) = e.reprocessed_at {
                println!("again asked:  {}", when(at));
            }
            for d in &detail.deliveries {
                let mut notes = Vec::new();
                if d.is_resend {
                    notes.push("a resend".to_owned());
                }
                if let Some(old) = d.supersedes {
                    notes.push(format!("replaces delivery {old}"));
                }
                if let Some(new) = d.superseded_by {
                    notes.push(format!("superseded by delivery {new}"));
                }
                println!(
                    "delivery:     {} {} {} to {}{}",
                    d.id,
                    d.status,
                    d.trigger,
                    p(d.recipient.as_deref().unwrap_or("-")),
                    if notes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", notes.join(", "))
                    }
                );
            }
            if detail.can_reprocess() {
                println!(
                    "process it again with: mailmycustomer events reprocess {}",
                    e.id
                );
            }
            if let Some(notice) = e.damage_notice() {
                println!("payload: {notice}");
            } else if !no_payload {
                let pretty = serde_json::from_str::<serde_json::Value>(&e.payload)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| e.payload.clone());
                println!("payload:\n{}", printable_block(&pretty));
            }
        }
        EventsAction::Reprocess { id } => {
            let event = runtime.block_on(events::reprocess(&app, id))?;
            println!(
                "event {id} ({}) will be processed again; a running server does it within a \
                 minute (at once when asked on its page)",
                p(&event.stripe_event_id)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_row(e: &EventRow) {
    println!(
        "{:<7} {:<19} {:<36} {:<8} {:<30} {}",
        e.id,
        when(e.received_at),
        p(&e.event_type),
        outcome_name(e.processing),
        p(&e.stripe_event_id),
        p(e.processing_detail.as_deref().unwrap_or(""))
    );
}
