//! `mailmycustomer log …` (the delivery log) and `mailmycustomer send-test-email`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{app, printable as p, runtime};
use crate::config::Config;
use crate::db::deliveries::{Attempt, Delivery, LogFilter, Status};
use crate::db::events::StoredEvent;
use crate::db::now_unix;
use crate::manage::{self, deliveries::DeliveryDetail, deliveries::TestEmail};

#[derive(Debug, Args)]
pub struct LogArgs {
    /// queued, sending, sent, retrying, failed or skipped.
    #[arg(long, value_parser = parse_status)]
    status: Option<Status>,
    /// One of the 7 trigger ids, e.g. payment_failed.
    #[arg(long)]
    trigger: Option<crate::trigger::TriggerKind>,
    /// A Stripe product id (prod_…).
    #[arg(long, value_name = "prod_…")]
    product: Option<String>,
    /// A Stripe price / plan id (price_…).
    #[arg(long, value_name = "price_…")]
    plan: Option<String>,
    /// The recipient's email address.
    #[arg(long, value_name = "EMAIL")]
    to: Option<String>,
    /// Only deliveries since DATE: 2026-11-01, 2026-11-01T09:30:00Z, or 7d / 12h / 30m ago.
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    since: Option<i64>,
    /// How many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum LogAction {
    /// One delivery in full: its event, template and version, From address, every attempt with
    /// the relay's reply, and errors.
    Show { id: i64 },
    /// Queue a delivery again, as a new delivery (the old one stays in the log).
    Resend { id: i64 },
}

fn parse_status(s: &str) -> Result<Status, String> {
    s.parse()
}

fn parse_since(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let relative = |unit: char, secs: i64| -> Option<i64> {
        let n: i64 = s.strip_suffix(unit)?.parse().ok()?;
        Some(now_unix() - n * secs)
    };
    if let Some(t) = relative('d', 86_400)
        .or_else(|| relative('h', 3600))
        .or_else(|| relative('m', 60))
    {
        return Ok(t);
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_second());
    }
    if let Ok(date) = s.parse::<jiff::civil::Date>() {
        if let Ok(zoned) = date.to_zoned_datetime(jiff::tz::TimeZone::UTC) {
            return Ok(zoned.timestamp().as_second());
        }
    }
    Err(format!(
        "{s:?} is not a date like 2026-11-01, 2026-11-01T09:30:00Z, 7d, 12h or 30m"
    ))
}

fn when(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ts.to_string())
}

pub fn run(config: &Config, action: Option<LogAction>, args: LogArgs) -> anyhow::Result<ExitCode> {
    let app = app(config)?;
    let runtime = runtime()?;
    match action {
        None => {
            let filter = LogFilter {
                status: args.status,
                trigger: args.trigger,
                product_id: args.product,
                plan_id: args.plan,
                recipient: args.to,
                since: args.since,
                limit: args.limit,
                ..LogFilter::default()
            };
            let rows = runtime.block_on(manage::deliveries::search(&app, filter))?;
            println!(
                "{:<7} {:<19} {:<8} {:<22} {:<32} SUBJECT / LAST ERROR",
                "ID", "CREATED (UTC)", "STATUS", "TRIGGER", "TO"
            );
            for d in &rows {
                let detail = match (&d.last_error, &d.subject) {
                    (Some(e), _) if d.status != Status::Sent => e.as_str(),
                    (_, Some(s)) => s.as_str(),
                    _ => "",
                };
                println!(
                    "{:<7} {:<19} {:<8} {:<22} {:<32} {}",
                    d.id,
                    when(d.created_at),
                    d.status.as_str(),
                    d.trigger.as_str(),
                    p(d.recipient.as_deref().unwrap_or("-")),
                    p(detail)
                );
            }
            if rows.is_empty() {
                println!("(no deliveries match)");
            }
        }
        Some(LogAction::Show { id }) => {
            let DeliveryDetail {
                delivery: d,
                event,
                attempts,
                ..
            } = runtime.block_on(manage::deliveries::get(&app, id))?;
            show(&d, event.as_ref(), &attempts);
        }
        Some(LogAction::Resend { id }) => {
            let new = runtime.block_on(manage::deliveries::resend(&app, id))?;
            println!(
                "queued delivery {new} (a resend of {id}); a running server sends it within seconds"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(d: &Delivery, event: Option<&StoredEvent>, attempts: &[Attempt]) {
    let opt = |v: &Option<String>| p(v.as_deref().unwrap_or("-")).into_owned();
    println!("delivery {}: {}", d.id, d.status);
    println!("trigger:      {}", d.trigger);
    println!(
        "to:           {}{}",
        d.recipient_name
            .as_deref()
            .map(|n| format!("{} ", p(n)))
            .unwrap_or_default(),
        d.recipient
            .as_deref()
            .map(|r| format!("<{}>", p(r)))
            .unwrap_or("-".into())
    );
    println!(
        "from:         {}",
        d.from_address
            .as_deref()
            .map(p)
            .unwrap_or("(the default sender, smtp.from_address)".into())
    );
    println!("subject:      {}", opt(&d.subject));
    println!("product:      {}", opt(&d.product_id));
    println!("plan:         {}", opt(&d.plan_id));
    println!(
        "template:     {}",
        match (d.template_id, d.template_version) {
            (Some(t), Some(v)) => format!("{t}, version {v}"),
            (Some(t), None) => t.to_string(),
            (None, _) => "-".into(),
        }
    );
    println!("business key: {}", p(&d.business_key));
    println!("created:      {}", when(d.created_at));
    println!("attempts:     {}", d.attempts);
    let waiting = matches!(d.status, Status::Queued | Status::Retrying);
    if let Some(next) = d.next_attempt_at.filter(|_| waiting) {
        println!("next attempt: {}", when(next));
    }
    if let Some(sent) = d.sent_at {
        println!("sent:         {}", when(sent));
    }
    if let Some(m) = &d.message_id {
        println!("message id:   {}", p(m));
    }
    if let Some(e) = &d.last_error {
        println!("last error:   {}", p(e));
    }
    if let Some(of) = d.resend_of {
        println!("resend of:    {of}");
    }
    for a in attempts {
        println!(
            "  {}  {:<6} {}{}",
            when(a.at),
            a.outcome.as_str(),
            p(&a.reply),
            a.duration_ms
                .map(|ms| format!(" ({ms} ms)"))
                .unwrap_or_default()
        );
    }
    match event {
        Some(e) => println!(
            "event:        {} {} (received {}; {}{})",
            p(&e.stripe_event_id),
            p(&e.event_type),
            when(e.received_at),
            e.processing,
            e.processing_detail
                .as_deref()
                .map(|d| format!(": {}", p(d)))
                .unwrap_or_default()
        ),
        None => println!("event:        {} (no longer stored)", p(&d.stripe_event_id)),
    }
}

pub fn send_test(config: &Config, to: &str) -> anyhow::Result<ExitCode> {
    let app = app(config)?;
    match runtime()?.block_on(manage::deliveries::send_test_email(&app, to))? {
        TestEmail::Accepted(line) => {
            println!("{}", p(&line));
            Ok(ExitCode::SUCCESS)
        }
        TestEmail::Refused { error, likely_fix } => {
            eprintln!("sending failed: {}", p(&error));
            if let Some(fix) = likely_fix {
                eprintln!("likely fix: {}", p(&fix));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
