//! The catalog tables: product and plan (price) names and ids from Stripe, cached so each is
//! asked of Stripe once. The only Stripe data kept besides the delivery log.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{classify_db_error, Error};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub product_id: Option<String>,
    pub name: String,
    pub interval: Option<String>,
}

pub fn product_name(
    conn: &Connection,
    integration: &str,
    id: &str,
) -> Result<Option<String>, Error> {
    conn.prepare_cached("SELECT name FROM catalog_products WHERE integration_id = ?1 AND id = ?2")
        .and_then(|mut s| s.query_row([integration, id], |r| r.get(0)).optional())
        .map_err(classify_db_error)
}

pub fn put_product(
    conn: &Connection,
    integration: &str,
    id: &str,
    name: &str,
) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO catalog_products (integration_id, id, name, fetched_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (integration_id, id) DO UPDATE SET name = excluded.name, fetched_at = excluded.fetched_at",
    )
    .and_then(|mut s| s.execute(params![integration, id, name, super::now_unix()]))
    .map_err(classify_db_error)?;
    Ok(())
}

pub fn plan(conn: &Connection, integration: &str, id: &str) -> Result<Option<Plan>, Error> {
    conn.prepare_cached(
        "SELECT id, product_id, name, interval FROM catalog_plans WHERE integration_id = ?1 AND id = ?2",
    )
    .and_then(|mut s| {
        s.query_row([integration, id], |r| {
            Ok(Plan {
                id: r.get(0)?,
                product_id: r.get(1)?,
                name: r.get(2)?,
                interval: r.get(3)?,
            })
        })
        .optional()
    })
    .map_err(classify_db_error)
}

pub fn put_plan(conn: &Connection, integration: &str, plan: &Plan) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO catalog_plans (integration_id, id, product_id, name, interval, fetched_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (integration_id, id) DO UPDATE SET product_id = excluded.product_id,
             name = excluded.name, interval = excluded.interval, fetched_at = excluded.fetched_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            integration,
            plan.id,
            plan.product_id,
            plan.name,
            plan.interval,
            super::now_unix()
        ])
    })
    .map_err(classify_db_error)?;
    Ok(())
}

/// Every cached product and plan of an integration, for the UI's template pickers.
pub fn products(conn: &Connection, integration: &str) -> Result<Vec<(String, String)>, Error> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, name FROM catalog_products WHERE integration_id = ?1 ORDER BY name",
        )
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([integration], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}
