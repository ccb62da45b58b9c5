//! The catalog tables: product and plan (price) names and ids from Stripe, cached so each is
//! asked of Stripe once and kept current by `product.*` / `price.*` events. The only Stripe data
//! kept besides the delivery log.
//!
//! `fetched_at` is when the stored name was known to be true: the time of the fetch, or the
//! Stripe `created` time of the event that reported it. A write older than the row is dropped,
//! since Stripe does not deliver events in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

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

/// The statements of the catalog page's reads (see `products_page`, `plans_of`,
/// `plans_without_product`), named so a test can check their query plans.
const PRODUCTS_PAGE: &str = "SELECT id, name, fetched_at FROM catalog_products
     WHERE integration_id = ?1 AND (?2 = 0 OR (name, id) > (?3, ?4))
     ORDER BY name, id LIMIT CAST(?5 AS INTEGER)";
const PLANS_OF: &str = "SELECT id, product_id, name, interval, fetched_at FROM catalog_plans
     WHERE integration_id = ?1 AND product_id IN (SELECT value FROM json_each(?2))
     ORDER BY name, id";
const PLANS_WITHOUT_PRODUCT: &str =
    "SELECT p.id, p.product_id, p.name, p.interval, p.fetched_at FROM catalog_plans p
     WHERE p.integration_id = ?1 AND NOT EXISTS (
         SELECT 1 FROM catalog_products c
         WHERE c.integration_id = p.integration_id AND c.id = p.product_id)
     ORDER BY p.name, p.id LIMIT CAST(?2 AS INTEGER)";

/// A product as the catalog keeps it, with when its name was known to be true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub fetched_at: i64,
}

/// A plan as the catalog keeps it, with when its name was known to be true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub plan: Plan,
    pub fetched_at: i64,
}

/// One page of an integration's products by name (then id, for products of the same name),
/// starting after the product `after` (its name and id). The rows come from the primary key's
/// range for the integration, sorted: the catalog of one Stripe account is small next to the
/// delivery log, and a merchant looks for a product by its name.
pub fn products_page(
    conn: &Connection,
    integration: &str,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<Product>, Error> {
    let (name, id) = after.unwrap_or(("", ""));
    let mut stmt = conn
        .prepare_cached(PRODUCTS_PAGE)
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map(
            params![integration, after.is_some(), name, id, limit as i64],
            product_row,
        )
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// One product, with when it was fetched.
pub fn product(conn: &Connection, integration: &str, id: &str) -> Result<Option<Product>, Error> {
    conn.prepare_cached(
        "SELECT id, name, fetched_at FROM catalog_products WHERE integration_id = ?1 AND id = ?2",
    )
    .and_then(|mut s| s.query_row([integration, id], product_row).optional())
    .map_err(classify_db_error)
}

fn product_row(r: &rusqlite::Row) -> rusqlite::Result<Product> {
    Ok(Product {
        id: r.get(0)?,
        name: r.get(1)?,
        fetched_at: r.get(2)?,
    })
}

/// The plans of the given products, by name. Plans are found by their product within the
/// integration's rows (the table's key is the plan's id, and a product has few plans).
pub fn plans_of(
    conn: &Connection,
    integration: &str,
    products: &[String],
) -> Result<Vec<StoredPlan>, Error> {
    if products.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(products).map_err(|e| Error::Io(std::io::Error::other(e)))?;
    let mut stmt = conn.prepare_cached(PLANS_OF).map_err(classify_db_error)?;
    let rows = stmt
        .query_map(params![integration, ids], plan_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// Up to `limit` plans whose product the catalog does not hold (a price cached by the pipeline
/// before its product was, or one of a product deleted in Stripe), by name.
pub fn plans_without_product(
    conn: &Connection,
    integration: &str,
    limit: usize,
) -> Result<Vec<StoredPlan>, Error> {
    let mut stmt = conn
        .prepare_cached(PLANS_WITHOUT_PRODUCT)
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map(params![integration, limit as i64], plan_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

fn plan_row(r: &rusqlite::Row) -> rusqlite::Result<StoredPlan> {
    Ok(StoredPlan {
        plan: Plan {
            id: r.get(0)?,
            product_id: r.get(1)?,
            name: r.get(2)?,
            interval: r.get(3)?,
        },
        fetched_at: r.get(4)?,
    })
}

/// Names by id.
pub type Names = HashMap<String, String>;

/// Every product's and every plan's name, to compare with what Stripe lists now.
pub fn names(conn: &Connection, integration: &str) -> Result<(Names, Names), Error> {
    let read = |sql: &str| -> Result<Names, Error> {
        let mut stmt = conn.prepare_cached(sql).map_err(classify_db_error)?;
        let rows = stmt
            .query_map([integration], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(classify_db_error)?;
        Ok(rows)
    };
    Ok((
        read("SELECT id, name FROM catalog_products WHERE integration_id = ?1")?,
        read("SELECT id, name FROM catalog_plans WHERE integration_id = ?1")?,
    ))
}

/// Rows `store` writes per transaction: each holds SQLite's write lock for a few milliseconds.
pub const STORE_BATCH: usize = 500;

/// Stores products (id, name) and plans as known at `as_of`, `STORE_BATCH` rows per
/// transaction with a pause after each (as big deletes do), so webhook intake gets the write
/// lock between batches. A row the catalog holds from later (an event newer than `as_of`)
/// is kept, as in `put_product`.
pub fn store(
    conn: &Connection,
    integration: &str,
    products: &[(String, String)],
    plans: &[Plan],
    as_of: i64,
) -> Result<(), Error> {
    for batch in products.chunks(STORE_BATCH) {
        in_batch(conn, |tx| {
            for (id, name) in batch {
                put_product(tx, integration, id, name, as_of)?;
            }
            Ok(())
        })?;
    }
    for batch in plans.chunks(STORE_BATCH) {
        in_batch(conn, |tx| {
            for plan in batch {
                put_plan(tx, integration, plan, as_of)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Runs `work` in one `BEGIN IMMEDIATE` transaction (taking the write lock at once, so it never
/// fails half-way on a lock upgrade), then pauses as long as it took, at least 2 ms: SQLite keeps
/// no queue for its write lock, and a writer going straight on would take it again before a
/// waiting one polls.
fn in_batch(
    conn: &Connection,
    work: impl FnOnce(&Transaction) -> Result<(), Error>,
) -> Result<(), Error> {
    let started = Instant::now();
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(classify_db_error)?;
    work(&tx)?;
    tx.commit().map_err(classify_db_error)?;
    std::thread::sleep(
        started
            .elapsed()
            .clamp(Duration::from_millis(2), Duration::from_millis(100)),
    );
    Ok(())
}

/// How many products and plans the catalog holds for an integration (each counted over the
/// integration's range of its table's primary key).
pub fn counts(conn: &Connection, integration: &str) -> Result<(i64, i64), Error> {
    conn.prepare_cached(
        "SELECT (SELECT COUNT(*) FROM catalog_products WHERE integration_id = ?1),
                (SELECT COUNT(*) FROM catalog_plans WHERE integration_id = ?1)",
    )
    .and_then(|mut s| s.query_row([integration], |r| Ok((r.get(0)?, r.get(1)?))))
    .map_err(classify_db_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::integrations::{insert, NewIntegration};

    fn database() -> (Connection, String) {
        let mut conn = crate::db::memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let id = insert(
            &conn,
            &NewIntegration {
                name: "shop",
                webhook_secret: "whsec_test_secret",
                api_key: None,
                stripe_account: None,
                from_address: None,
            },
        )
        .unwrap()
        .id;
        (conn, id)
    }

    fn plan(id: &str, product: Option<&str>, name: &str) -> Plan {
        Plan {
            id: id.into(),
            product_id: product.map(str::to_owned),
            name: name.into(),
            interval: Some("month".into()),
        }
    }

    #[test]
    fn store_writes_every_row_in_batches_and_keeps_what_is_newer() {
        let (conn, shop) = database();
        let products: Vec<(String, String)> = (0..1200)
            .map(|i| (format!("prod_{i:04}"), format!("Product {i:04}")))
            .collect();
        let plans: Vec<Plan> = (0..600)
            .map(|i| plan(&format!("price_{i:04}"), Some(&products[i].0), "Monthly"))
            .collect();
        store(&conn, &shop, &products, &plans, 100).unwrap();
        assert_eq!(counts(&conn, &shop).unwrap(), (1200, 600));

        // An event newer than the refresh's reading wins; an older name is replaced.
        put_product(&conn, &shop, "prod_0001", "Renamed by an event", 200).unwrap();
        put_product(&conn, &shop, "prod_0002", "Old event", 50).unwrap();
        store(&conn, &shop, &products[..3], &[], 150).unwrap();
        assert_eq!(
            product_name(&conn, &shop, "prod_0001").unwrap().as_deref(),
            Some("Renamed by an event")
        );
        assert_eq!(
            product(&conn, &shop, "prod_0002").unwrap(),
            Some(Product {
                id: "prod_0002".into(),
                name: "Product 0002".into(),
                fetched_at: 150
            })
        );
    }

    #[test]
    fn products_page_by_name_then_id_continues_after_a_product() {
        let (conn, shop) = database();
        let products: Vec<(String, String)> =
            [("b", "Gold"), ("a", "Gold"), ("c", "Basic"), ("d", "Zinc")]
                .iter()
                .map(|(id, name)| (id.to_string(), name.to_string()))
                .collect();
        store(&conn, &shop, &products, &[], 1).unwrap();
        let ids = |after: Option<(&str, &str)>, limit| -> Vec<String> {
            products_page(&conn, &shop, after, limit)
                .unwrap()
                .into_iter()
                .map(|p| p.id)
                .collect()
        };
        assert_eq!(ids(None, 10), ["c", "a", "b", "d"]);
        assert_eq!(ids(None, 2), ["c", "a"]);
        assert_eq!(ids(Some(("Gold", "a")), 2), ["b", "d"]);
        assert!(ids(Some(("Zinc", "d")), 2).is_empty());
        // Another integration's catalog is not this one's.
        assert!(products_page(&conn, "int_other", None, 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn plans_are_found_by_product_and_orphans_apart() {
        let (conn, shop) = database();
        let products = vec![
            ("p1".to_owned(), "One".to_owned()),
            ("p2".to_owned(), "Two".to_owned()),
        ];
        let plans = vec![
            plan("x2", Some("p1"), "Yearly"),
            plan("x1", Some("p1"), "Monthly"),
            plan("y1", Some("p2"), "Only"),
            plan("z1", Some("p_gone"), "Orphan"),
            plan("z2", None, "No product"),
        ];
        store(&conn, &shop, &products, &plans, 1).unwrap();
        let of = |ids: &[&str]| -> Vec<String> {
            let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            plans_of(&conn, &shop, &ids)
                .unwrap()
                .into_iter()
                .map(|p| p.plan.id)
                .collect()
        };
        assert_eq!(of(&["p1"]), ["x1", "x2"]);
        // By name, whatever the product: the page groups them.
        assert_eq!(of(&["p1", "p2"]), ["x1", "y1", "x2"]);
        assert!(of(&[]).is_empty());
        let orphans: Vec<String> = plans_without_product(&conn, &shop, 10)
            .unwrap()
            .into_iter()
            .map(|p| p.plan.id)
            .collect();
        assert_eq!(orphans, ["z2", "z1"]);
        let (products, plans) = names(&conn, &shop).unwrap();
        assert_eq!(products.get("p2").map(String::as_str), Some("Two"));
        assert_eq!(plans.len(), 5);
    }

    /// Every read here stays within one integration's range of the primary key: none scans a
    /// whole table.
    #[test]
    fn reads_search_the_primary_key() {
        let (conn, _) = database();
        for sql in [PRODUCTS_PAGE, PLANS_OF, PLANS_WITHOUT_PRODUCT] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            // Unbound parameters are NULL, which is enough to plan.
            let mut rows = stmt.raw_query();
            let mut plan: Vec<String> = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                plan.push(row.get(3).unwrap());
            }
            let scans = plan
                .iter()
                .filter(|d| d.starts_with("SCAN") && !d.contains("json_each"))
                .count();
            assert!(
                scans == 0
                    && plan
                        .iter()
                        .any(|d| d.starts_with("SEARCH") && d.contains("PRIMARY KEY")),
                "{sql}: {plan:?}"
            );
        }
    }
}
