//! The `templates` table. Every save path (CLI, import, web UI) goes through `save`, which
//! validates the template against its trigger's sample event first.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{classify_db_error, Error};
use crate::templates::choose::Scoped;
use crate::templates::defaults;
use crate::templates::render::{validate, TemplateSource};
use crate::trigger::TriggerKind;

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: i64,
    pub trigger: TriggerKind,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub source: TemplateSource,
    pub enabled: bool,
    pub builtin: bool,
    pub version: i64,
    pub updated_at: i64,
}

impl Template {
    /// "payment_failed × prod_… × any plan", for messages and listings.
    pub fn scope(&self) -> String {
        scope_text(
            self.trigger,
            self.product_id.as_deref(),
            self.plan_id.as_deref(),
        )
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

/// A template as the merchant gives it.
#[derive(Debug, Clone)]
pub struct TemplateInput {
    pub trigger: TriggerKind,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub source: TemplateSource,
    pub enabled: bool,
}

const COLUMNS: &str =
    "id, trigger, product_id, plan_id, subject, html, text, enabled, builtin, version, updated_at";

fn from_row(row: &Row) -> rusqlite::Result<Template> {
    let trigger: String = row.get(1)?;
    Ok(Template {
        id: row.get(0)?,
        trigger: trigger.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        product_id: row.get(2)?,
        plan_id: row.get(3)?,
        source: TemplateSource {
            subject: row.get(4)?,
            html: row.get(5)?,
            text: row.get(6)?,
        },
        enabled: row.get(7)?,
        builtin: row.get(8)?,
        version: row.get(9)?,
        updated_at: row.get(10)?,
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

pub fn list(conn: &Connection) -> Result<Vec<Template>, Error> {
    query(
        conn,
        "ORDER BY trigger, product_id IS NOT NULL, product_id, plan_id IS NOT NULL, plan_id",
        [],
    )
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Template>, Error> {
    Ok(query(conn, "WHERE id = ?1", [id])?.pop())
}

/// Validates and stores a template; one with the same trigger, product and plan is replaced.
/// A template that does not render against its trigger's sample event is `Error::Invalid`
/// naming the part at fault: `subject`, `html` or `text`.
pub fn save(conn: &Connection, input: &TemplateInput) -> Result<Template, Error> {
    validate(input.trigger, &input.source).map_err(|e| {
        let field = match e.part {
            "subject" => "subject",
            "text body" => "text",
            _ => "html",
        };
        Error::invalid(field, e.to_string())
    })?;
    write(conn, input, false)
}

fn write(conn: &Connection, input: &TemplateInput, builtin: bool) -> Result<Template, Error> {
    let existing: Option<i64> = conn
        .query_row(
            "SELECT id FROM templates WHERE trigger = ?1 AND product_id IS ?2 AND plan_id IS ?3",
            params![input.trigger.as_str(), input.product_id, input.plan_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(classify_db_error)?;
    let now = super::now_unix();
    let s = &input.source;
    let id = match existing {
        Some(id) => {
            conn.execute(
                "UPDATE templates SET subject = ?2, html = ?3, text = ?4, enabled = ?5, builtin = ?6,
                        version = version + 1, updated_at = ?7 WHERE id = ?1",
                params![id, s.subject, s.html, s.text, input.enabled, builtin, now],
            )
            .map_err(classify_db_error)?;
            id
        }
        None => {
            conn.execute(
                "INSERT INTO templates (trigger, product_id, plan_id, subject, html, text, enabled, builtin, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![input.trigger.as_str(), input.product_id, input.plan_id, s.subject, s.html, s.text, input.enabled, builtin, now],
            )
            .map_err(classify_db_error)?;
            conn.last_insert_rowid()
        }
    };
    Ok(get(conn, id)?.expect("template just written"))
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
            let input = TemplateInput {
                trigger,
                product_id: None,
                plan_id: None,
                source: defaults::builtin(trigger),
                enabled: true,
            };
            write(&tx, &input, true)?;
        }
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, '1')",
            [SEEDED],
        )
        .map_err(classify_db_error)?;
    }
    tx.commit().map_err(classify_db_error)
}
