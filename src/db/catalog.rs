//! The catalog tables: product and plan (price) names and ids from Stripe, cached so each is
//! asked of Stripe once and kept current by `product.*` / `price.*` events. The only Stripe data
//! kept besides the delivery log.
//!
//! `fetched_at` is when the stored name was known to be true: the time of the fetch, or the
//! Stripe `created` time of the event that reported it. A write older than the row is dropped,
//! since Stripe does not deliver events in order.

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

/// Stores a product's name as known at `as_of` (unix seconds). Returns `false` when the catalog
/// already holds a name known later, which is kept.
pub fn put_product(
    conn: &Connection,
    integration: &str,
    id: &str,
    name: &str,
    as_of: i64,
) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO catalog_products (integration_id, id, name, fetched_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (integration_id, id) DO UPDATE SET name = excluded.name, fetched_at = excluded.fetched_at
             WHERE excluded.fetched_at >= catalog_products.fetched_at",
        )
        .and_then(|mut s| s.execute(params![integration, id, name, as_of]))
        .map_err(classify_db_error)?;
    Ok(changed > 0)
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

/// Stores a plan as known at `as_of`; `false` when a later one is kept (see `put_product`).
pub fn put_plan(
    conn: &Connection,
    integration: &str,
    plan: &Plan,
    as_of: i64,
) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO catalog_plans (integration_id, id, product_id, name, interval, fetched_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (integration_id, id) DO UPDATE SET product_id = excluded.product_id,
                 name = excluded.name, interval = excluded.interval, fetched_at = excluded.fetched_at
             WHERE excluded.fetched_at >= catalog_plans.fetched_at",
        )
        .and_then(|mut s| {
            s.execute(params![
                integration,
                plan.id,
                plan.product_id,
                plan.name,
                plan.interval,
                as_of
            ])
        })
        .map_err(classify_db_error)?;
    Ok(changed > 0)
}

/// Forgets a deleted product or price (ids never come back, so the next mention asks Stripe,
/// which says it is gone).
pub fn forget(conn: &Connection, integration: &str, id: &str) -> Result<(), Error> {
    for sql in [
        "DELETE FROM catalog_products WHERE integration_id = ?1 AND id = ?2",
        "DELETE FROM catalog_plans WHERE integration_id = ?1 AND id = ?2",
    ] {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([integration, id]))
            .map_err(classify_db_error)?;
    }
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
