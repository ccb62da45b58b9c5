//! The `integrations` table: the Stripe accounts this instance listens to.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::deliveries::{delete_in_batches, DELETE_BATCH};
use crate::error::{classify_db_error, Error};
use crate::secret::Secret;

/// Whether emails go out for an integration (`integrations.status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Status {
    #[default]
    Active,
    /// The Stripe account revoked access (`account.application.deauthorized`): its events
    /// send nothing.
    Disconnected,
}

impl Status {
    pub const ALL: [Status; 2] = [Status::Active, Status::Disconnected];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disconnected => "disconnected",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown integration status {s:?}: use active or disconnected"))
    }
}

/// `Debug` shows the secret and the key as `[redacted]`.
#[derive(Debug, Clone)]
pub struct Integration {
    pub id: String,
    pub name: String,
    pub webhook_secret: Secret,
    pub api_key: Option<Secret>,
    pub stripe_account: Option<String>,
    pub status: Status,
    pub created_at: i64,
    pub from_address: Option<String>,
}

pub struct NewIntegration<'a> {
    pub name: &'a str,
    pub webhook_secret: &'a str,
    pub api_key: Option<&'a str>,
    pub stripe_account: Option<&'a str>,
    /// Overrides `smtp.from_address` for this integration's emails.
    pub from_address: Option<&'a str>,
}

const COLUMNS: &str =
    "id, name, webhook_secret, api_key, stripe_account, status, created_at, from_address";

fn from_row(row: &Row) -> rusqlite::Result<Integration> {
    Ok(Integration {
        id: row.get(0)?,
        name: row.get(1)?,
        webhook_secret: row.get(2)?,
        api_key: row.get(3)?,
        stripe_account: row.get(4)?,
        status: row.get(5)?,
        created_at: row.get(6)?,
        from_address: row.get(7)?,
    })
}

/// A fresh integration id: `int_` and 16 random hex digits. It is the last segment of the
/// webhook URL, so it names the integration but guards nothing (signatures do).
pub fn new_id() -> Result<String, Error> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(format!("int_{}", hex::encode(random)))
}

/// Whether `id` has the shape `new_id` makes.
pub fn is_id(id: &str) -> bool {
    id.strip_prefix("int_").is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

pub fn insert(conn: &Connection, new: &NewIntegration) -> Result<Integration, Error> {
    insert_with_id(conn, &new_id()?, new)
}

/// Inserts under an id chosen beforehand (shown as the webhook URL while the form was filled
/// in); an id already taken is a conflict, so a form sent twice adds one integration.
pub fn insert_with_id(
    conn: &Connection,
    id: &str,
    new: &NewIntegration,
) -> Result<Integration, Error> {
    if get(conn, id)?.is_some() {
        return Err(Error::Conflict {
            field: "id",
            message: format!(
                "an integration with the webhook URL ending in {id} exists already (was the \
                 form sent twice?); find it under Integrations"
            ),
        });
    }
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, api_key, stripe_account, created_at, from_address)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            new.name,
            new.webhook_secret,
            new.api_key,
            new.stripe_account,
            super::now_unix(),
            new.from_address
        ],
    )
    .map_err(|e| name_taken(e, new.name))?;
    Ok(get(conn, id)?.expect("row just inserted"))
}

/// A change to an integration's own fields; `None` keeps a field, `Some(None)` clears an
/// optional one. The id, and so the webhook URL, templates and log, never change.
#[derive(Debug, Default)]
pub struct Update<'a> {
    pub name: Option<&'a str>,
    pub webhook_secret: Option<&'a str>,
    pub api_key: Option<Option<&'a str>>,
    pub from_address: Option<Option<&'a str>>,
}

/// Applies `change`; `None` when there is no such integration.
pub fn update(conn: &Connection, id: &str, change: &Update) -> Result<Option<Integration>, Error> {
    let Some(current) = get(conn, id)? else {
        return Ok(None);
    };
    let name = change.name.unwrap_or(&current.name);
    conn.execute(
        "UPDATE integrations SET name = ?2, webhook_secret = ?3, api_key = ?4, from_address = ?5
         WHERE id = ?1",
        params![
            id,
            name,
            change
                .webhook_secret
                .unwrap_or(current.webhook_secret.expose()),
            change
                .api_key
                .unwrap_or(current.api_key.as_ref().map(Secret::expose)),
            change
                .from_address
                .unwrap_or(current.from_address.as_deref()),
        ],
    )
    .map_err(|e| name_taken(e, name))?;
    get(conn, id)
}

fn name_taken(err: rusqlite::Error, name: &str) -> Error {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => Error::Conflict {
            field: "name",
            message: format!("an integration named {name:?} already exists; pick another name"),
        },
        _ => classify_db_error(err),
    }
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Integration>, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM integrations WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
}

pub fn list(conn: &Connection) -> Result<Vec<Integration>, Error> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM integrations ORDER BY created_at, id"
        ))
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([], from_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// What an integration's newest event says: when it arrived, and whether it came from Stripe's
/// live or test mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestEvent {
    pub received_at: i64,
    pub livemode: bool,
}

/// The newest event of every integration that has received one, by integration id: the
/// columns the event processor keeps (migration V12), so this never reads `events`.
pub fn latest_events(conn: &Connection) -> Result<HashMap<String, LatestEvent>, Error> {
    conn.prepare_cached(
        "SELECT id, last_event_at, last_event_livemode FROM integrations
         WHERE last_event_at IS NOT NULL",
    )
    .and_then(|mut s| {
        s.query_map([], |r| {
            Ok((
                r.get(0)?,
                LatestEvent {
                    received_at: r.get(1)?,
                    livemode: r.get::<_, Option<bool>>(2)?.unwrap_or(false),
                },
            ))
        })?
        .collect()
    })
    .map_err(classify_db_error)
}

/// The newest event of one integration, if it has received any.
pub fn latest_event(conn: &Connection, id: &str) -> Result<Option<LatestEvent>, Error> {
    conn.prepare_cached(
        "SELECT last_event_at, last_event_livemode FROM integrations
         WHERE id = ?1 AND last_event_at IS NOT NULL",
    )
    .and_then(|mut s| {
        s.query_row([id], |r| {
            Ok(LatestEvent {
                received_at: r.get(0)?,
                livemode: r.get::<_, Option<bool>>(1)?.unwrap_or(false),
            })
        })
        .optional()
    })
    .map_err(classify_db_error)
}

/// Records that `id` received an event at `received_at`, unless a newer one is recorded
/// already (a postponed event is processed after newer ones). Called by the event processor
/// once per integration per commit.
pub fn note_event(conn: &Connection, id: &str, latest: LatestEvent) -> Result<(), Error> {
    conn.prepare_cached(
        "UPDATE integrations SET last_event_at = ?2, last_event_livemode = ?3
         WHERE id = ?1 AND (last_event_at IS NULL OR last_event_at <= ?2)",
    )
    .and_then(|mut s| s.execute(params![id, latest.received_at, latest.livemode]))
    .map_err(classify_db_error)?;
    Ok(())
}

/// What goes when an integration is removed, as the confirmation names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    pub deliveries: i64,
    pub products: i64,
    pub plans: i64,
}

/// Counts what `remove` would delete beside the events (reads the `deliveries_integration`
/// index and the catalog's primary keys).
pub fn holdings(conn: &Connection, id: &str) -> Result<Holdings, Error> {
    conn.query_row(
        "SELECT (SELECT COUNT(*) FROM deliveries WHERE integration_id = ?1),
                (SELECT COUNT(*) FROM catalog_products WHERE integration_id = ?1),
                (SELECT COUNT(*) FROM catalog_plans WHERE integration_id = ?1)",
        [id],
        |r| {
            Ok(Holdings {
                deliveries: r.get(0)?,
                products: r.get(1)?,
                plans: r.get(2)?,
            })
        },
    )
    .map_err(classify_db_error)
}

/// Marks an integration connected or disconnected (e.g. on `account.application.deauthorized`).
pub fn set_status(conn: &Connection, id: &str, status: Status) -> Result<(), Error> {
    conn.execute(
        "UPDATE integrations SET status = ?2 WHERE id = ?1",
        params![id, status],
    )
    .map_err(classify_db_error)?;
    Ok(())
}

/// Removes an integration with its deliveries, events and catalog. Returns whether it existed.
/// Its rows go in batches (see `deliveries::delete_in_batches`), so a server running beside the
/// CLI keeps answering webhooks while a large history is deleted; the last statement's cascade
/// takes whatever arrived meanwhile.
pub fn remove(conn: &Connection, id: &str) -> Result<bool, Error> {
    if get(conn, id)?.is_none() {
        return Ok(false);
    }
    // Each table has an index leading with integration_id (deliveries: `deliveries_integration`),
    // so each batch starts at the front of it. Deliveries go before the events they point to.
    for table in ["deliveries", "events", "catalog_plans", "catalog_products"] {
        delete_in_batches(|| {
            conn.prepare_cached(&format!(
                "DELETE FROM {table} WHERE integration_id = ?1 AND id IN (
                     SELECT id FROM {table} WHERE integration_id = ?1 LIMIT ?2)"
            ))
            .and_then(|mut s| s.execute(params![id, DELETE_BATCH as i64]))
            .map_err(classify_db_error)
        })?;
    }
    let n = conn
        .execute("DELETE FROM integrations WHERE id = ?1", [id])
        .map_err(classify_db_error)?;
    Ok(n > 0)
}

/// Shows enough of a secret to recognise it (its kind and last four characters), never all of it.
pub fn redact(secret: &str) -> String {
    let prefix = secret.split_once('_').map(|(p, _)| p).unwrap_or("");
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if secret.chars().count() <= 12 {
        format!("{prefix}_…")
    } else {
        format!("{prefix}_…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn
    }

    fn add(conn: &Connection, name: &str) -> String {
        insert(
            conn,
            &NewIntegration {
                name,
                webhook_secret: "whsec_test_secret",
                api_key: None,
                stripe_account: None,
                from_address: None,
            },
        )
        .unwrap()
        .id
    }

    #[test]
    fn the_newest_event_noted_wins_and_an_older_one_changes_nothing() {
        let conn = database();
        let quiet = add(&conn, "quiet");
        let busy = add(&conn, "busy");
        let silent = add(&conn, "silent");
        let at = |received_at, livemode| LatestEvent {
            received_at,
            livemode,
        };
        note_event(&conn, &quiet, at(1_000, false)).unwrap();
        note_event(&conn, &quiet, at(2_000, true)).unwrap();
        note_event(&conn, &busy, at(10_000, false)).unwrap();
        // A postponed event, processed after a newer one, leaves the newer one in place.
        note_event(&conn, &busy, at(9_000, true)).unwrap();
        let latest = latest_events(&conn).unwrap();
        assert_eq!(latest.get(&quiet), Some(&at(2_000, true)));
        assert_eq!(latest.get(&busy), Some(&at(10_000, false)));
        assert_eq!(latest.get(&silent), None);
        assert_eq!(latest.len(), 2);
        assert_eq!(latest_event(&conn, &quiet).unwrap(), Some(at(2_000, true)));
        assert_eq!(latest_event(&conn, &silent).unwrap(), None);
    }

    #[test]
    fn an_id_chosen_beforehand_is_used_once() {
        let conn = database();
        let id = new_id().unwrap();
        assert!(is_id(&id), "{id}");
        let new = NewIntegration {
            name: "shop",
            webhook_secret: "whsec_test_secret",
            api_key: None,
            stripe_account: None,
            from_address: None,
        };
        assert_eq!(insert_with_id(&conn, &id, &new).unwrap().id, id);
        let again = insert_with_id(
            &conn,
            &id,
            &NewIntegration {
                name: "other",
                ..new
            },
        );
        assert!(
            matches!(again, Err(Error::Conflict { field: "id", .. })),
            "{again:?}"
        );
        for bad in [
            "int_",
            "int_0123456789ABCDEF",
            "int_0123456789abcdef0",
            "x_0123456789abcdef",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn redaction_keeps_kind_and_last_four_only() {
        assert_eq!(redact("whsec_abcdefghijklmnop1234"), "whsec_…1234");
        assert_eq!(redact("sk_test_51Pgaf0000000000XYZW"), "sk_…XYZW");
        assert_eq!(redact("whsec_short"), "whsec_…");
    }
}
