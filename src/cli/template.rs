//! `mailmycustomer template …` and `mailmycustomer preview`: the merchant's templates from the
//! command line, and what an event file would send.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::{app, printable as p, printable_block, runtime};
use crate::config::Config;
use crate::db::deliveries::Status;
use crate::manage;
use crate::manage::templates::{Format, TemplateInput};
use crate::pipeline::prepare::Outcome;
use crate::templates::context;
use crate::templates::files;
use crate::templates::render::validate;
use crate::trigger::TriggerKind;

#[derive(Debug, Subcommand)]
pub enum TemplateAction {
    /// List templates: id, integration (shared: every one), trigger, product, plan, enabled,
    /// subject.
    List {
        /// Only the templates that can answer for this integration: its own and the shared.
        #[arg(long, value_name = "int_…")]
        integration: Option<String>,
    },
    /// Add a template, or replace the one with the same integration, trigger, product and plan.
    /// An MJML body is compiled to HTML; the template is checked against a sample event first,
    /// and an unknown variable or broken MJML is refused with its line.
    #[command(visible_alias = "add")]
    Set {
        /// Only for this integration, where it beats a shared template of the same product and
        /// plan; default: shared by every integration.
        #[arg(long, value_name = "int_…")]
        integration: Option<String>,
        /// One of subscription_created, subscription_cancelled, payment_failed,
        /// renewal_upcoming, trial_ending, payment_received, refund_completed.
        #[arg(long)]
        trigger: TriggerKind,
        /// Only for this Stripe product (prod_…); default: any product.
        #[arg(long, value_name = "prod_…")]
        product: Option<String>,
        /// Only for this Stripe price / plan (price_…); default: any plan.
        #[arg(long, value_name = "price_…")]
        plan: Option<String>,
        /// The subject line (a template too, e.g. "Welcome, {{ customer.name }}").
        #[arg(long)]
        subject: String,
        /// The HTML body; a file ending in .mjml is read as MJML.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "mjml_file",
            conflicts_with = "mjml_file"
        )]
        html_file: Option<PathBuf>,
        /// The body in MJML, compiled to responsive HTML when saved.
        #[arg(long, value_name = "FILE")]
        mjml_file: Option<PathBuf>,
        /// The plain-text body; default: derived from the HTML.
        #[arg(long, value_name = "FILE")]
        text_file: Option<PathBuf>,
        /// Store it switched off.
        #[arg(long)]
        disabled: bool,
    },
    /// Show a template, its variables, and a preview with a sample event.
    Show { id: i64 },
    /// Remove a template. Removing a trigger's last template stops that email.
    Remove { id: i64 },
    /// Switch a template on.
    Enable { id: i64 },
    /// Switch a template off (the next less specific template is used instead).
    Disable { id: i64 },
    /// Write every template to DIR, one TOML file each (to keep them in git).
    Export { dir: PathBuf },
    /// Read every *.toml in DIR and save them; nothing is saved if any is invalid.
    Import {
        dir: PathBuf,
        /// Save every file as this integration's own template, whatever the file says.
        #[arg(long, value_name = "int_…")]
        integration: Option<String>,
    },
}

pub fn run(config: &Config, action: TemplateAction) -> anyhow::Result<ExitCode> {
    let app = app(config)?;
    let runtime = runtime()?;
    match action {
        TemplateAction::List { integration } => {
            let all = match &integration {
                Some(id) => runtime.block_on(manage::templates::list_for(&app, id))?,
                None => runtime.block_on(manage::templates::list(&app))?,
            };
            println!(
                "{:<4} {:<22} {:<23} {:<24} {:<32} {:<5} {:<8} SUBJECT",
                "ID", "INTEGRATION", "TRIGGER", "PRODUCT", "PLAN", "BODY", "ENABLED"
            );
            for t in all {
                println!(
                    "{:<4} {:<22} {:<23} {:<24} {:<32} {:<5} {:<8} {}",
                    t.id,
                    p(t.integration_id.as_deref().unwrap_or("shared")),
                    t.trigger.as_str(),
                    p(t.product_id.as_deref().unwrap_or("any")),
                    p(t.plan_id.as_deref().unwrap_or("any")),
                    t.format.as_str(),
                    if t.enabled { "yes" } else { "no" },
                    p(&t.source.subject)
                );
            }
        }
        TemplateAction::Set {
            integration,
            trigger,
            product,
            plan,
            subject,
            html_file,
            mjml_file,
            text_file,
            disabled,
        } => {
            let (format, body_flag, body) = match (html_file, mjml_file) {
                (_, Some(file)) => (Format::Mjml, "--mjml-file", read(&file, "--mjml-file")?),
                (Some(file), None) if file.extension().is_some_and(|e| e == "mjml") => {
                    (Format::Mjml, "--html-file", read(&file, "--html-file")?)
                }
                (Some(file), None) => (Format::Html, "--html-file", read(&file, "--html-file")?),
                (None, None) => bail!("give the body with --html-file or --mjml-file"),
            };
            let text = text_file
                .as_deref()
                .map(|file| read(file, "--text-file"))
                .transpose()?;
            let input = TemplateInput {
                id: None,
                integration_id: integration,
                trigger,
                product_id: product,
                plan_id: plan,
                subject,
                format,
                body,
                text,
                enabled: !disabled,
            };
            // The body's flag is the one that was typed: --html-file or --mjml-file.
            let saved = runtime
                .block_on(manage::templates::save(&app, input))
                .map_err(|e| match e {
                    crate::Error::Invalid {
                        field: "body",
                        message,
                    } => anyhow::anyhow!("{body_flag}: {message}"),
                    other => other.into(),
                })?;
            println!(
                "saved template {} ({}, {}, version {})",
                saved.id,
                p(&saved.scope()),
                saved.format,
                saved.version
            );
        }
        TemplateAction::Show { id } => {
            let t = runtime.block_on(manage::templates::get(&app, id))?;
            println!(
                "template {} ({}), {}",
                t.id,
                p(&t.scope()),
                if t.enabled { "enabled" } else { "disabled" }
            );
            println!(
                "variables: {}",
                context::variable_names(t.trigger).join(", ")
            );
            println!("subject: {}", p(&t.source.subject));
            println!(
                "--- {} ---\n{}",
                t.format,
                printable_block(t.body().trim_end())
            );
            if let Some(text) = &t.source.text {
                println!("--- text ---\n{}", printable_block(text.trim_end()));
            }
            match validate(t.trigger, &t.source) {
                Ok(sample) => println!(
                    "--- preview with a sample event ---\nsubject: {}\n{}",
                    p(&sample.subject),
                    printable_block(&sample.text)
                ),
                Err(e) => println!("--- this template no longer renders: {}", p(&e.to_string())),
            }
        }
        TemplateAction::Remove { id } => {
            runtime.block_on(manage::templates::remove(&app, id))?;
            println!("removed template {id}");
        }
        TemplateAction::Enable { id } | TemplateAction::Disable { id } => {
            let enable = matches!(action, TemplateAction::Enable { .. });
            runtime.block_on(manage::templates::set_enabled(&app, id, enable))?;
            println!(
                "template {id} {}",
                if enable { "enabled" } else { "disabled" }
            );
        }
        TemplateAction::Export { dir } => {
            let all = runtime.block_on(manage::templates::export(&app))?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for file in &all {
                let path = dir.join(file.file_name());
                files::write_regular(&path, &file.to_toml())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("exported {} templates to {}", all.len(), dir.display());
        }
        TemplateAction::Import { dir, integration } => {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            paths.sort();
            let mut texts = Vec::with_capacity(paths.len());
            let mut unreadable = Vec::new();
            for path in &paths {
                match files::read_regular(path) {
                    Ok(text) => texts.push((path.display().to_string(), text)),
                    Err(e) => unreadable.push(format!("{}: {e}", path.display())),
                }
            }
            if !unreadable.is_empty() {
                bail!("nothing imported:\n  {}", unreadable.join("\n  "));
            }
            let saved = runtime.block_on(manage::templates::import(
                &app,
                texts,
                integration.as_deref(),
            ))?;
            println!("imported {saved} templates from {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The file a flag names; a failure says which flag.
fn read(path: &Path, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{flag}: reading {}", path.display()))
}

pub fn preview(
    config: &Config,
    event: &Path,
    integration: Option<&str>,
    html: bool,
) -> anyhow::Result<ExitCode> {
    let payload = read(event, "--event")?;
    let app = app(config)?;
    let outcome = runtime()?.block_on(manage::templates::preview(&app, &payload, integration))?;
    match outcome {
        Outcome::Ignore(reason) => println!("no email: {}", p(&reason)),
        Outcome::Retry(reason) => println!("no email yet, would retry: {}", p(&reason)),
        Outcome::Disconnect(reason) => println!("no email: {}", p(&reason)),
        Outcome::Delivery(d) => {
            println!(
                "trigger: {}\nbusiness key: {}",
                d.trigger,
                p(&d.business_key)
            );
            if let Some(id) = d.template_id {
                println!("template: {id}");
            }
            if d.status != Status::Queued {
                println!("no email: {}", p(d.note.as_deref().unwrap_or("?")));
                return Ok(ExitCode::FAILURE);
            }
            let to = p(d.recipient.as_deref().unwrap_or_default());
            match &d.recipient_name {
                Some(name) => println!("to: {} <{to}>", p(name)),
                None => println!("to: {to}"),
            }
            println!(
                "subject: {}\n--- text ---\n{}",
                p(d.subject.as_deref().unwrap_or_default()),
                printable_block(d.text.as_deref().unwrap_or_default())
            );
            if html {
                println!(
                    "--- html ---\n{}",
                    printable_block(d.html.as_deref().unwrap_or_default())
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
