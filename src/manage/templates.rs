//! Templates: the merchant's emails per trigger, optionally per integration, product and plan.
//! Saving one compiles an MJML body and checks the template against its trigger's sample event;
//! an import saves a whole set or nothing; the matrix shows, for one integration, which template
//! answers each product × plan × trigger today; a preview shows what a Stripe event would send,
//! as one integration or as a stand-in shop.

use serde_json::Value;

use crate::app::App;
use crate::db::integrations::{self, Integration};
use crate::db::templates::{self, CatalogEntry};
use crate::error::classify_db_error;
use crate::pipeline::prepare::Outcome;
use crate::secret::Secret;
use crate::templates::choose::{choose, ItemScope, Occasion};
use crate::templates::files::TemplateFile;
use crate::trigger::TriggerKind;
use crate::Error;

pub use crate::db::templates::{Checked, Template, TemplateInput};
pub use crate::templates::body::Format;

pub async fn list(app: &App) -> Result<Vec<Template>, Error> {
    app.db(templates::list).await
}

/// The templates that can answer for `integration`: its own and the shared ones.
pub async fn list_for(app: &App, integration: &str) -> Result<Vec<Template>, Error> {
    super::integrations::get(app, integration).await?;
    let all = list(app).await?;
    Ok(all
        .into_iter()
        .filter(|t| t.integration_id.as_deref().is_none_or(|i| i == integration))
        .collect())
}

pub async fn get(app: &App, id: i64) -> Result<Template, Error> {
    app.db(move |c| templates::get(c, id))
        .await?
        .ok_or_else(|| not_found(id))
}

/// Compiles and checks a template without saving it: the HTML an MJML body compiles to and the
/// template rendered with its trigger's sample event, or `Error::Invalid` naming the part at
/// fault (`subject`, `body`, `text`) and its line.
pub fn check(input: &TemplateInput) -> Result<Checked, Error> {
    templates::check(&tidy(input.clone()))
}

/// Saves a template: with `input.id`, changes that template (scope included; a scope another
/// template holds is `Error::Conflict`); without, adds one or replaces the template of the same
/// scope. The version goes up; a template that does not compile or render is refused as
/// `check` says, and nothing is saved.
pub async fn save(app: &App, input: TemplateInput) -> Result<Template, Error> {
    let input = tidy(input);
    app.db(move |c| templates::save(c, &input)).await
}

/// Where a template applies: which integration (None: every one), trigger, product and plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub integration_id: Option<String>,
    pub trigger: TriggerKind,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
}

/// Copies template `id` to another scope (e.g. from "any product" to one product), as a new
/// template; a scope that already has one is `Error::Conflict` (edit that one instead).
pub async fn duplicate(app: &App, id: i64, scope: Scope) -> Result<Template, Error> {
    let original = get(app, id).await?;
    let input = tidy(TemplateInput {
        id: None,
        integration_id: scope.integration_id,
        trigger: scope.trigger,
        product_id: scope.product_id,
        plan_id: scope.plan_id,
        ..original.input()
    });
    app.db(move |c| {
        let holder = templates::find(
            c,
            input.integration_id.as_deref(),
            input.trigger,
            input.product_id.as_deref(),
            input.plan_id.as_deref(),
        )?;
        if let Some(holder) = holder {
            return Err(Error::Conflict {
                field: "scope",
                message: format!(
                    "template {} already answers {}; choose another product, plan or trigger",
                    holder.id,
                    input.scope()
                ),
            });
        }
        templates::save(c, &input)
    })
    .await
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

/// Puts a template back to its trigger's built-in subject and body, keeping its scope.
pub async fn restore_builtin(app: &App, id: i64) -> Result<Template, Error> {
    app.db(move |c| templates::restore_builtin(c, id))
        .await?
        .ok_or_else(|| not_found(id))
}

/// What would answer template `id`'s own scope once it is gone: the next less specific
/// template for its integration (for a shared one: for an integration without templates of its
/// own), or None when that event would then be skipped.
pub async fn fallback(app: &App, id: i64) -> Result<Option<Template>, Error> {
    let gone = get(app, id).await?;
    let rest: Vec<Template> = list(app)
        .await?
        .into_iter()
        .filter(|t| t.id != id)
        .collect();
    let occasion = Occasion {
        integration_id: gone.integration_id.as_deref().unwrap_or_default(),
        trigger: gone.trigger,
    };
    let items = item_of(gone.product_id.as_deref(), gone.plan_id.as_deref());
    Ok(choose(&rest, occasion, &items).map(|(t, _)| t.clone()))
}

/// A template to start from for a scope: the one answering it today (a copy), or the
/// trigger's built-in, set to exactly that scope.
pub async fn draft(app: &App, scope: Scope) -> Result<TemplateInput, Error> {
    let all = list(app).await?;
    let occasion = Occasion {
        integration_id: scope.integration_id.as_deref().unwrap_or_default(),
        trigger: scope.trigger,
    };
    let items = item_of(scope.product_id.as_deref(), scope.plan_id.as_deref());
    let start = match choose(&all, occasion, &items) {
        Some((t, _)) => t.input(),
        None => {
            let builtin = crate::templates::defaults::builtin(scope.trigger);
            TemplateInput {
                text: builtin.text,
                ..TemplateInput::html(scope.trigger, &builtin.subject, &builtin.html)
            }
        }
    };
    Ok(TemplateInput {
        id: None,
        integration_id: scope.integration_id,
        trigger: scope.trigger,
        product_id: scope.product_id,
        plan_id: scope.plan_id,
        enabled: true,
        ..start
    })
}

/// The event items a cell of the matrix stands for: none for "any product" (matched only by
/// "any product" templates, like a one-off charge), else one item of that product and plan.
fn item_of<'a>(product: Option<&'a str>, plan: Option<&'a str>) -> Vec<ItemScope<'a>> {
    if product.is_none() && plan.is_none() {
        Vec::new()
    } else {
        vec![ItemScope {
            product_id: product,
            plan_id: plan,
        }]
    }
}

/// For one integration, which template answers each product × plan × trigger today.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub integration: Integration,
    pub rows: Vec<MatrixRow>,
    /// Every template, as read for the matrix (for the page's plain list).
    pub templates: Vec<Template>,
}

/// "Any product", a product (any plan), or one plan of a product.
#[derive(Debug, Clone)]
pub struct MatrixRow {
    pub product_id: Option<String>,
    pub product_name: Option<String>,
    pub plan_id: Option<String>,
    pub plan_name: Option<String>,
    /// One per trigger, in `TriggerKind::ALL` order.
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub trigger: TriggerKind,
    /// The template chosen for an event of this row and trigger; None: the event is skipped.
    pub chosen: Option<Chosen>,
    /// This integration's own template of exactly this scope, also when disabled: what the
    /// cell edits rather than creating one.
    pub exact: Option<Exact>,
}

impl Cell {
    /// The chosen template is this integration's own, of exactly this row's scope.
    pub fn is_own(&self) -> bool {
        matches!((&self.chosen, &self.exact), (Some(c), Some(e)) if c.id == e.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub id: i64,
    pub subject: String,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    /// Shared by every integration rather than this one's own.
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exact {
    pub id: i64,
    pub enabled: bool,
}

/// The matrix of `integration`: rows are "any product", then the catalog's products each with
/// its plans, then products and plans only templates name; columns the seven triggers. Reads
/// the templates and the catalog once and computes every cell with the pipeline's own choice.
pub async fn matrix(app: &App, integration: &str) -> Result<Matrix, Error> {
    let integration = super::integrations::get(app, integration).await?;
    let key = integration.id.clone();
    let (all, catalog) = app
        .db(move |c| Ok((templates::list(c)?, templates::catalog(c, &key)?)))
        .await?;
    let rows = matrix_rows(&integration.id, &all, catalog);
    Ok(Matrix {
        integration,
        rows,
        templates: all,
    })
}

fn matrix_rows(integration: &str, all: &[Template], catalog: Vec<CatalogEntry>) -> Vec<MatrixRow> {
    let relevant: Vec<&Template> = all
        .iter()
        .filter(|t| t.integration_id.as_deref().is_none_or(|i| i == integration))
        .collect();
    let mut scopes: Vec<CatalogEntry> = vec![CatalogEntry {
        product_id: None,
        product_name: None,
        plan_id: None,
        plan_name: None,
    }];
    scopes.extend(catalog);
    // A template for a product or plan the catalog does not know still gets its row, after the
    // product it belongs to when that has one.
    for t in &relevant {
        for (product, plan) in [
            (t.product_id.clone(), None),
            (t.product_id.clone(), t.plan_id.clone()),
        ] {
            if product.is_none() && plan.is_none() {
                continue;
            }
            let known = scopes
                .iter()
                .any(|s| s.product_id == product && s.plan_id == plan);
            if !known {
                let at = scopes
                    .iter()
                    .rposition(|s| product.is_some() && s.product_id == product)
                    .map_or(scopes.len(), |i| i + 1);
                scopes.insert(
                    at,
                    CatalogEntry {
                        product_id: product,
                        product_name: None,
                        plan_id: plan,
                        plan_name: None,
                    },
                );
            }
        }
    }
    // Each cell looks only at its trigger's templates (choose checks the trigger again).
    let by_trigger: Vec<Vec<&Template>> = TriggerKind::ALL
        .iter()
        .map(|k| {
            relevant
                .iter()
                .copied()
                .filter(|t| t.trigger == *k)
                .collect()
        })
        .collect();
    scopes
        .into_iter()
        .map(|s| {
            let items = item_of(s.product_id.as_deref(), s.plan_id.as_deref());
            let cells = TriggerKind::ALL
                .into_iter()
                .zip(&by_trigger)
                .map(|(trigger, candidates)| {
                    let occasion = Occasion {
                        integration_id: integration,
                        trigger,
                    };
                    let chosen = choose(candidates, occasion, &items).map(|(t, _)| Chosen {
                        id: t.id,
                        subject: t.source.subject.clone(),
                        product_id: t.product_id.clone(),
                        plan_id: t.plan_id.clone(),
                        shared: t.integration_id.is_none(),
                    });
                    let exact = candidates
                        .iter()
                        .find(|t| {
                            t.integration_id.as_deref() == Some(integration)
                                && t.product_id == s.product_id
                                && t.plan_id == s.plan_id
                        })
                        .map(|t| Exact {
                            id: t.id,
                            enabled: t.enabled,
                        });
                    Cell {
                        trigger,
                        chosen,
                        exact,
                    }
                })
                .collect();
            MatrixRow {
                product_id: s.product_id,
                product_name: s.product_name,
                plan_id: s.plan_id,
                plan_name: s.plan_name,
                cells,
            }
        })
        .collect()
}

/// Every template as a file (`file_name()`, `to_toml()`), to keep them in git.
pub async fn export(app: &App) -> Result<Vec<TemplateFile>, Error> {
    Ok(list(app).await?.iter().map(TemplateFile::of).collect())
}

/// Saves the templates of a set of exported files, given as (file name, TOML text): all of them,
/// or, when any one cannot be read, does not compile or does not render, none, with every
/// problem named by its file (`Error::Invalid` of `files`). With `integration`, every file is
/// saved as that integration's own template, whatever it says. Returns how many were saved.
pub async fn import(
    app: &App,
    files: Vec<(String, String)>,
    integration: Option<&str>,
) -> Result<usize, Error> {
    if let Some(id) = integration {
        super::integrations::get(app, id).await?;
    }
    let mut inputs = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for (name, text) in &files {
        let parsed = TemplateFile::from_toml(text).and_then(|f| f.input());
        match parsed {
            Ok(mut input) => {
                if let Some(id) = integration {
                    input.integration_id = Some(id.to_owned());
                }
                let input = tidy(input);
                match templates::check(&input) {
                    Ok(_) => inputs.push((name.clone(), input)),
                    Err(e) => problems.push(format!("{name}: {e}")),
                }
            }
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(refused(&problems));
    }
    app.db(move |c| {
        let tx = c.unchecked_transaction().map_err(classify_db_error)?;
        for (name, input) in &inputs {
            templates::save(&tx, input).map_err(|e| match e {
                Error::Invalid { message, .. } | Error::Conflict { message, .. } => {
                    refused(&[format!("{name}: {message}")])
                }
                other => other,
            })?;
        }
        tx.commit().map_err(classify_db_error)?;
        Ok(inputs.len())
    })
    .await
}

fn refused(problems: &[String]) -> Error {
    Error::invalid(
        "files",
        format!("nothing imported:\n  {}", problems.join("\n  ")),
    )
}

/// What `payload` (a Stripe event as JSON) would send with the templates saved now: as
/// integration `integration` (its name, its own templates, and its API key for what the event
/// lacks), or, without one, as a stand-in shop that uses only shared templates and what the
/// event carries. Sends nothing and records no delivery; product and plan names looked up are
/// cached, as the processor would.
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
        ..Default::default()
    }
}

/// Integration, product and plan as typed: surrounding blanks dropped, an empty one meaning
/// "any".
fn tidy(mut input: TemplateInput) -> TemplateInput {
    let any = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    input.integration_id = any(input.integration_id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::render::TemplateSource;

    fn template(
        id: i64,
        integration: Option<&str>,
        trigger: TriggerKind,
        product: Option<&str>,
        plan: Option<&str>,
        enabled: bool,
    ) -> Template {
        Template {
            id,
            integration_id: integration.map(Into::into),
            trigger,
            product_id: product.map(Into::into),
            plan_id: plan.map(Into::into),
            format: Format::Html,
            mjml: None,
            source: TemplateSource {
                subject: format!("t{id}"),
                html: "<p>x</p>".into(),
                text: None,
            },
            enabled,
            builtin: false,
            version: 1,
            updated_at: 0,
        }
    }

    fn entry(product: &str, plan: Option<&str>) -> CatalogEntry {
        CatalogEntry {
            product_id: Some(product.into()),
            product_name: Some(format!("{product} name")),
            plan_id: plan.map(Into::into),
            plan_name: plan.map(|p| format!("{p} name")),
        }
    }

    #[test]
    fn cells_say_own_inherited_or_none() {
        use TriggerKind::*;
        let all = [
            template(1, None, PaymentFailed, None, None, true),
            template(2, Some("int_a"), PaymentFailed, Some("prod_a"), None, true),
            template(3, Some("int_b"), PaymentFailed, Some("prod_a"), None, true),
            template(
                4,
                Some("int_a"),
                PaymentReceived,
                Some("prod_a"),
                Some("price_a"),
                false,
            ),
            template(5, None, PaymentReceived, Some("prod_z"), None, true),
        ];
        let catalog = vec![entry("prod_a", None), entry("prod_a", Some("price_a"))];
        let rows = matrix_rows("int_a", &all, catalog);
        let scopes: Vec<(Option<&str>, Option<&str>)> = rows
            .iter()
            .map(|r| (r.product_id.as_deref(), r.plan_id.as_deref()))
            .collect();
        assert_eq!(
            scopes,
            [
                (None, None),
                (Some("prod_a"), None),
                (Some("prod_a"), Some("price_a")),
                (Some("prod_z"), None),
            ],
            "any first, the catalog, then a product only a template names"
        );
        let cell = |row: usize, trigger: TriggerKind| {
            rows[row]
                .cells
                .iter()
                .find(|c| c.trigger == trigger)
                .unwrap()
                .clone()
        };
        let any = cell(0, PaymentFailed);
        assert_eq!(
            any.chosen.as_ref().map(|c| (c.id, c.shared)),
            Some((1, true))
        );
        assert!(!any.is_own() && any.exact.is_none());
        let own = cell(1, PaymentFailed);
        assert!(own.is_own(), "{own:?}");
        let plan = cell(2, PaymentFailed);
        assert_eq!(
            plan.chosen.map(|c| c.id),
            Some(2),
            "inherited from the product"
        );
        assert!(plan.exact.is_none());
        // The disabled own template is passed over but still what the cell edits.
        let disabled = cell(2, PaymentReceived);
        assert_eq!(disabled.chosen, None, "nothing answers: skipped");
        assert_eq!(
            disabled.exact,
            Some(Exact {
                id: 4,
                enabled: false
            })
        );
        assert_eq!(cell(3, PaymentReceived).chosen.map(|c| c.id), Some(5));
        assert_eq!(cell(0, RefundCompleted).chosen, None);
    }
}
