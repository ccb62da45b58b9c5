//! The `templates` table. Every save path (CLI, import, web UI) goes through `save`, which
//! compiles an MJML body and validates the template against its trigger's sample event first
//! (`check`), so no broken template is ever stored.

use rusqlite::{params, Connection, Row};

use crate::error::{classify_db_error, Error};
use crate::templates::body::{compile_mjml, Format};
use crate::templates::choose::Scoped;
use crate::templates::defaults;
use crate::templates::render::{validate, RenderedEmail, TemplateError, TemplateSource};
use crate::trigger::TriggerKind;

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: i64,
    /// None: shared by every integration.
    pub integration_id: Option<String>,
    pub trigger: TriggerKind,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub format: Format,
    /// The MJML as written, for an MJML body (`source.html` is then what it compiled to).
    pub mjml: Option<String>,
    /// What renders per email: the subject, the HTML body and the optional text body.
    pub source: TemplateSource,
    pub enabled: bool,
    /// Still the built-in default of its trigger, as seeded or restored.
    pub builtin: bool,
    pub version: i64,
    pub updated_at: i64,
}

impl Template {
    /// "payment_failed × product prod_… × any plan", plus "(int_… only)" for an integration's
    /// own template, for messages and listings.
    pub fn scope(&self) -> String {
        let scope = scope_text(
            self.trigger,
            self.product_id.as_deref(),
            self.plan_id.as_deref(),
        );
        match &self.integration_id {
            Some(integration) => format!("{scope} ({integration} only)"),
            None => scope,
        }
    }

    /// The body as the merchant wrote it: the MJML, or the HTML.
    pub fn body(&self) -> &str {
        self.mjml.as_deref().unwrap_or(&self.source.html)
    }

    /// This template as input, to save it changed or elsewhere.
    pub fn input(&self) -> TemplateInput {
        TemplateInput {
            id: Some(self.id),
            integration_id: self.integration_id.clone(),
            trigger: self.trigger,
            product_id: self.product_id.clone(),
            plan_id: self.plan_id.clone(),
            subject: self.source.subject.clone(),
            format: self.format,
            body: self.body().to_owned(),
            text: self.source.text.clone(),
            enabled: self.enabled,
        }
    }
}

pub fn scope_text(trigger: TriggerKind, product: Option<&str>, plan: Option<&str>) -> String {
    format!(
        "{trigger} × {} × {}",
        product
            .map(|p| format!("product {p}"))
            .unwrap_or("any product".into()),
        plan.map(|p| format!("plan {p}"))
            .unwrap_or("any plan".into())
    )
}

impl Scoped for Template {
    fn template_id(&self) -> i64 {
        self.id
    }
    fn integration_id(&self) -> Option<&str> {
        self.integration_id.as_deref()
    }
    fn trigger(&self) -> TriggerKind {
        self.trigger
    }
    fn product_id(&self) -> Option<&str> {
        self.product_id.as_deref()
    }
    fn plan_id(&self) -> Option<&str> {
        self.plan_id.as_deref()
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// A template as the merchant writes it (CLI, web editor, import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInput {
    /// Some: change this template (its scope too). None: add one, or replace the template of
    /// the same scope (as `template set` and import do).
    pub id: Option<i64>,
    /// None: shared by every integration.
    pub integration_id: Option<String>,
    pub trigger: TriggerKind,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub subject: String,
    pub format: Format,
    /// The HTML, or the MJML, as written.
    pub body: String,
    /// The plain-text body; None: derived from the HTML per email.
    pub text: Option<String>,
    pub enabled: bool,
}

impl TemplateInput {
    /// A shared HTML template for any product and plan, enabled: the usual start.
    pub fn html(trigger: TriggerKind, subject: &str, body: &str) -> Self {
        TemplateInput {
            id: None,
            integration_id: None,
            trigger,
            product_id: None,
            plan_id: None,
            subject: subject.to_owned(),
            format: Format::Html,
            body: body.to_owned(),
            text: None,
            enabled: true,
        }
    }

    pub fn scope(&self) -> String {
        let scope = scope_text(
            self.trigger,
            self.product_id.as_deref(),
            self.plan_id.as_deref(),
        );
        match &self.integration_id {
            Some(integration) => format!("{scope} ({integration} only)"),
            None => scope,
        }
    }
}

/// A template that compiles and renders: what would be stored, and its sample rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// What renders per email: the subject, the HTML (compiled from MJML) and the text.
    pub source: TemplateSource,
    /// The MJML as written, for an MJML body.
    pub mjml: Option<String>,
    /// The template rendered with its trigger's sample event.
    pub sample: RenderedEmail,
}

/// Compiles and checks a template without storing it: an MJML body must compile, and every
/// part must render against the trigger's sample event. A fault is `Error::Invalid` naming the
/// part (`subject`, `body` or `text`) and, where known, its line.
pub fn check(input: &TemplateInput) -> Result<Checked, Error> {
    let (html, mjml) = match input.format {
        Format::Html => (input.body.clone(), None),
        Format::Mjml => {
            // The template language runs over the MJML as written first, so a typo or an
            // unknown variable is reported at its line in what the merchant sees.
            let as_written = TemplateSource {
                subject: input.subject.clone(),
                html: input.body.clone(),
                text: input.text.clone(),
            };
            validate(input.trigger, &as_written).map_err(|e| invalid(e, Format::Mjml))?;
            let html =
                compile_mjml(&input.body).map_err(|e| Error::invalid("body", e.to_string()))?;
            (html, Some(input.body.clone()))
        }
    };
    let source = TemplateSource {
        subject: input.subject.clone(),
        html,
        text: input.text.clone(),
    };
    let sample = validate(input.trigger, &source).map_err(|e| invalid(e, Format::Html))?;
    Ok(Checked {
        source,
        mjml,
        sample,
    })
}

fn invalid(e: TemplateError, format: Format) -> Error {
    let field = match e.part {
        "subject" => "subject",
        "text body" => "text",
        _ => "body",
    };
    let e = match (field, format) {
        ("body", Format::Mjml) => TemplateError {
            part: "MJML body",
            ..e
        },
        _ => e,
    };
    Error::invalid(field, e.to_string())
}

const COLUMNS: &str = "id, integration_id, trigger, product_id, plan_id, format, source, subject, \
                       html, text, enabled, builtin, version, updated_at";

fn from_row(row: &Row) -> rusqlite::Result<Template> {
    let unreadable = |i, e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e),
        )
    };
    let trigger: String = row.get(2)?;
    let format: String = row.get(5)?;
    Ok(Template {
        id: row.get(0)?,
        integration_id: row.get(1)?,
        trigger: trigger.parse().map_err(|e| unreadable(2, format!("{e}")))?,
        product_id: row.get(3)?,
        plan_id: row.get(4)?,
        format: format.parse().map_err(|e| unreadable(5, e))?,
        mjml: row.get(6)?,
        source: TemplateSource {
            subject: row.get(7)?,
            html: row.get(8)?,
            text: row.get(9)?,
        },
        enabled: row.get(10)?,
        builtin: row.get(11)?,
        version: row.get(12)?,
        updated_at: row.get(13)?,
    })
}

fn query(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Template>, Error> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM templates {filter}"))
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map(args, from_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// Every template: shared ones first, then by trigger and from less to more specific.
pub fn list(conn: &Connection) -> Result<Vec<Template>, Error> {
    query(
        conn,
        "ORDER BY integration_id IS NOT NULL, integration_id, trigger,
                  product_id IS NOT NULL, product_id, plan_id IS NOT NULL, plan_id",
        [],
    )
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Template>, Error> {
    Ok(query(conn, "WHERE id = ?1", [id])?.pop())
}

/// The template of exactly this scope, if any.
pub fn find(
    conn: &Connection,
    integration: Option<&str>,
    trigger: TriggerKind,
    product: Option<&str>,
    plan: Option<&str>,
) -> Result<Option<Template>, Error> {
    Ok(query(
        conn,
        "WHERE IFNULL(integration_id, '') = IFNULL(?1, '') AND trigger = ?2
           AND IFNULL(product_id, '') = IFNULL(?3, '') AND IFNULL(plan_id, '') = IFNULL(?4, '')",
        params![integration, trigger.as_str(), product, plan],
    )?
    .pop())
}

/// Checks and stores a template (see `TemplateInput::id` for add, replace or change), bumping
/// its version. Nothing is stored when `check` refuses it; moving a template onto a scope
/// another template holds is `Error::Conflict`; an `id` that is gone is `Error::NotFound`.
pub fn save(conn: &Connection, input: &TemplateInput) -> Result<Template, Error> {
    let checked = check(input)?;
    write(conn, input, &checked, false)
}

fn write(
    conn: &Connection,
    input: &TemplateInput,
    checked: &Checked,
    builtin: bool,
) -> Result<Template, Error> {
    let holder = find(
        conn,
        input.integration_id.as_deref(),
        input.trigger,
        input.product_id.as_deref(),
        input.plan_id.as_deref(),
    )?
    .map(|t| t.id);
    let target = match (input.id, holder) {
        (Some(id), Some(other)) if other != id => {
            return Err(Error::Conflict {
                field: "scope",
                message: format!(
                    "template {other} already answers {}; edit that one, or remove it first",
                    input.scope()
                ),
            })
        }
        (Some(id), _) => {
            if get(conn, id)?.is_none() {
                return Err(Error::NotFound {
                    what: "template",
                    id: id.to_string(),
                });
            }
            Some(id)
        }
        (None, holder) => holder,
    };
    let now = super::now_unix();
    let s = &checked.source;
    let format = input.format.as_str();
    let id = match target {
        Some(id) => {
            conn.execute(
                "UPDATE templates SET integration_id = ?2, trigger = ?3, product_id = ?4,
                        plan_id = ?5, format = ?6, source = ?7, subject = ?8, html = ?9,
                        text = ?10, enabled = ?11, builtin = ?12, version = version + 1,
                        updated_at = ?13
                  WHERE id = ?1",
                params![
                    id,
                    input.integration_id,
                    input.trigger.as_str(),
                    input.product_id,
                    input.plan_id,
                    format,
                    checked.mjml,
                    s.subject,
                    s.html,
                    s.text,
                    input.enabled,
                    builtin,
                    now
                ],
            )
            .map_err(classify_db_error)?;
            id
        }
        None => {
            conn.execute(
                "INSERT INTO templates (integration_id, trigger, product_id, plan_id, format,
                        source, subject, html, text, enabled, builtin, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    input.integration_id,
                    input.trigger.as_str(),
                    input.product_id,
                    input.plan_id,
                    format,
                    checked.mjml,
                    s.subject,
                    s.html,
                    s.text,
                    input.enabled,
                    builtin,
                    now
                ],
            )
            .map_err(foreign_key(input))?;
            conn.last_insert_rowid()
        }
    };
    Ok(get(conn, id)?.expect("template just written"))
}

/// An integration id that names no integration is the merchant's to fix, not a database fault.
fn foreign_key(input: &TemplateInput) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) if e.to_string().contains("FOREIGN KEY") => {
            Error::invalid(
                "integration",
                format!(
                    "no integration {:?}; `mailmycustomer integration list` shows them",
                    input.integration_id.as_deref().unwrap_or_default()
                ),
            )
        }
        _ => classify_db_error(e),
    }
}

/// Puts template `id` back to its trigger's built-in subject and body (HTML), keeping its scope
/// and switch. None when there is no such template.
pub fn restore_builtin(conn: &Connection, id: i64) -> Result<Option<Template>, Error> {
    let Some(template) = get(conn, id)? else {
        return Ok(None);
    };
    let input = builtin_input(template.trigger, Some(&template));
    let checked = check(&input)?;
    write(conn, &input, &checked, true).map(Some)
}

/// The built-in template of `trigger`, in the scope of `like` (shared, any product, enabled,
/// without one).
fn builtin_input(trigger: TriggerKind, like: Option<&Template>) -> TemplateInput {
    let source = defaults::builtin(trigger);
    TemplateInput {
        id: like.map(|t| t.id),
        integration_id: like.and_then(|t| t.integration_id.clone()),
        trigger,
        product_id: like.and_then(|t| t.product_id.clone()),
        plan_id: like.and_then(|t| t.plan_id.clone()),
        subject: source.subject,
        format: Format::Html,
        body: source.html,
        text: source.text,
        enabled: like.is_none_or(|t| t.enabled),
    }
}

pub fn set_enabled(conn: &Connection, id: i64, enabled: bool) -> Result<bool, Error> {
    let n = conn
        .execute(
            "UPDATE templates SET enabled = ?2, version = version + 1, updated_at = ?3 WHERE id = ?1",
            params![id, enabled, super::now_unix()],
        )
        .map_err(classify_db_error)?;
    Ok(n > 0)
}

pub fn remove(conn: &Connection, id: i64) -> Result<bool, Error> {
    let n = conn
        .execute("DELETE FROM templates WHERE id = ?1", [id])
        .map_err(classify_db_error)?;
    Ok(n > 0)
}

/// One product or plan of an integration's catalog, as the template matrix lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub product_id: Option<String>,
    pub product_name: Option<String>,
    /// None: the product's own row.
    pub plan_id: Option<String>,
    pub plan_name: Option<String>,
}

/// The products of an integration's catalog, each followed by its plans (by name), plans of no
/// known product last: the matrix's rows, read in one query over the catalog's primary keys.
pub fn catalog(conn: &Connection, integration: &str) -> Result<Vec<CatalogEntry>, Error> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT p.id, p.name, NULL, NULL, 0 AS orphan, 0 AS is_plan
               FROM catalog_products p WHERE p.integration_id = ?1
             UNION ALL
             SELECT pl.product_id, p.name, pl.id, pl.name, p.id IS NULL, 1
               FROM catalog_plans pl
               LEFT JOIN catalog_products p
                 ON p.integration_id = pl.integration_id AND p.id = pl.product_id
              WHERE pl.integration_id = ?1
             ORDER BY 5, 2, 1, 6, 4, 3",
        )
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([integration], |r| {
            Ok(CatalogEntry {
                product_id: r.get(0)?,
                product_name: r.get(1)?,
                plan_id: r.get(2)?,
                plan_name: r.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

const SEEDED: &str = "builtin_templates_seeded";

/// Puts the built-in template of each trigger in place, once per database: a merchant who later
/// removes one has chosen not to send that email, and it must not come back on restart.
pub fn seed_builtins(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn.transaction().map_err(classify_db_error)?;
    let seeded: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM settings WHERE key = ?1)",
            [SEEDED],
            |r| r.get(0),
        )
        .map_err(classify_db_error)?;
    if !seeded {
        for trigger in TriggerKind::ALL {
            let input = builtin_input(trigger, None);
            let checked = check(&input)?;
            write(&tx, &input, &checked, true)?;
        }
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, '1')",
            [SEEDED],
        )
        .map_err(classify_db_error)?;
    }
    tx.commit().map_err(classify_db_error)
}
