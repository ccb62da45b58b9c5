//! Templates: the merchant's emails per trigger (optionally per product and plan). Saving one
//! checks it against its trigger's sample event; an import saves a whole set or nothing; a
//! preview shows what a Stripe event would send, as one integration or as a stand-in shop.

use serde_json::Value;

use crate::app::App;
use crate::db::integrations::{self, Integration};
use crate::db::templates::{self, Template, TemplateInput};
use crate::error::classify_db_error;
use crate::pipeline::prepare::Outcome;
use crate::secret::Secret;
use crate::templates::files::TemplateFile;
use crate::templates::render::validate;
use crate::trigger::TriggerKind;
use crate::Error;

pub async fn list(app: &App) -> Result<Vec<Template>, Error> {
    app.db(templates::list).await
}

pub async fn get(app: &App, id: i64) -> Result<Template, Error> {
    app.db(move |c| templates::get(c, id))
        .await?
        .ok_or_else(|| not_found(id))
}

/// Adds a template, or replaces the one with the same trigger, product and plan. A part that
/// does not render is `Error::Invalid` naming it: `subject`, `html` or `text`.
pub async fn save(app: &App, input: TemplateInput) -> Result<Template, Error> {
    let input = tidy(input);
    app.db(move |c| templates::save(c, &input)).await
}

/// Removes a template; the trigger then uses the next less specific one, or sends nothing.
pub async fn remove(app: &App, id: i64) -> Result<(), Error> {
    match app.db(move |c| templates::remove(c, id)).await? {
        true => Ok(()),
        false => Err(not_found(id)),
    }
}

/// Switches a template on or off (off: the next less specific template is used instead).
pub async fn set_enabled(app: &App, id: i64, enabled: bool) -> Result<(), Error> {
    match app
        .db(move |c| templates::set_enabled(c, id, enabled))
        .await?
    {
        true => Ok(()),
        false => Err(not_found(id)),
    }
}

/// Every template as a file (`file_name()`, `to_toml()`), to keep them in git.
pub async fn export(app: &App) -> Result<Vec<TemplateFile>, Error> {
    let all = list(app).await?;
    Ok(all
        .iter()
        .map(|t| {
            TemplateFile::new(
                t.trigger,
                t.product_id.clone(),
                t.plan_id.clone(),
                t.enabled,
                &t.source,
            )
        })
        .collect())
}

/// Saves the templates of a set of exported files, given as (file name, TOML text): all of them,
/// or, when any one cannot be read or does not render, none, with every problem named by its
/// file (`Error::Invalid` of `files`). Returns how many were saved.
pub async fn import(app: &App, files: Vec<(String, String)>) -> Result<usize, Error> {
    let mut inputs = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for (name, text) in &files {
        match parse_file(text) {
            Ok(input) => inputs.push((name.clone(), input)),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(refused(&problems));
    }
    app.db(move |c| {
        let tx = c.unchecked_transaction().map_err(classify_db_error)?;
        for (_, input) in &inputs {
            templates::save(&tx, input)?;
        }
        tx.commit().map_err(classify_db_error)?;
        Ok(inputs.len())
    })
    .await
}

fn parse_file(text: &str) -> Result<TemplateInput, String> {
    let file = TemplateFile::from_toml(text)?;
    let trigger: TriggerKind = file.trigger.parse().map_err(|e| format!("{e}"))?;
    let input = tidy(TemplateInput {
        trigger,
        product_id: file.product.clone(),
        plan_id: file.plan.clone(),
        source: file.source(),
        enabled: file.enabled,
    });
    validate(trigger, &input.source).map_err(|e| e.to_string())?;
    Ok(input)
}

fn refused(problems: &[String]) -> Error {
    Error::invalid(
        "files",
        format!("nothing imported:\n  {}", problems.join("\n  ")),
    )
}

/// What `payload` (a Stripe event as JSON) would send with the templates saved now: as
/// integration `integration` (its name, and its API key for what the event lacks), or, without
/// one, as a stand-in shop that uses only what the event carries. Sends nothing and records no
/// delivery; product and plan names looked up are cached, as the processor would.
pub async fn preview(
    app: &App,
    payload: &str,
    integration: Option<&str>,
) -> Result<Outcome, Error> {
    if let Err(e) = serde_json::from_str::<Value>(payload) {
        return Err(Error::invalid(
            "event",
            format!("this is not a Stripe event (JSON): {e}"),
        ));
    }
    let integration = match integration {
        Some(id) => super::integrations::get(app, id).await?,
        None => stand_in(),
    };
    let all = list(app).await?;
    Ok(app
        .preparer
        .prepare(&integration, &all, None, payload)
        .await)
}

/// The shop a preview without an integration speaks for.
pub(crate) fn stand_in() -> Integration {
    Integration {
        id: "preview".into(),
        name: "Your shop".into(),
        webhook_secret: Secret::default(),
        api_key: None,
        stripe_account: None,
        status: integrations::Status::Active,
        created_at: 0,
        from_address: None,
    }
}

/// Product and plan as typed: surrounding blanks dropped, an empty one meaning "any".
fn tidy(mut input: TemplateInput) -> TemplateInput {
    let any = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    input.product_id = any(input.product_id);
    input.plan_id = any(input.plan_id);
    input
}

fn not_found(id: i64) -> Error {
    Error::NotFound {
        what: "template",
        id: id.to_string(),
    }
}
