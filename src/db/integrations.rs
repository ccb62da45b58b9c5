//! The `integrations` table: the Stripe accounts this instance listens to.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::deliveries::DELETE_BATCH;
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

/// How events reach an integration (`integrations.connection`, migration V13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ConnectedBy {
    /// The merchant made the endpoint (or runs `stripe listen`) and pasted its signing secret.
    #[default]
    SigningSecret,
    /// The program created its own endpoint (`endpoint`) with the merchant's API key.
    ApiKey,
    /// A Connect account through OAuth: its events come to the platform's Connect endpoint and
    /// are routed by their `account`; it has no signing secret of its own.
    OAuth,
}

impl ConnectedBy {
    pub const ALL: [ConnectedBy; 3] = [
        ConnectedBy::SigningSecret,
        ConnectedBy::ApiKey,
        ConnectedBy::OAuth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectedBy::SigningSecret => "signing_secret",
            ConnectedBy::ApiKey => "api_key",
            ConnectedBy::OAuth => "oauth",
        }
    }
}

impl std::fmt::Display for ConnectedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConnectedBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ConnectedBy::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!("unknown connection {s:?}: use signing_secret, api_key or oauth")
            })
    }
}

/// The webhook endpoint the program created on the merchant's account, as Stripe last
/// described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `we_…`
    pub id: String,
    /// `enabled`, or `disabled` (by Stripe after repeated failures, or by the merchant); `None`
    /// until first read back.
    pub status: Option<String>,
    pub checked_at: Option<i64>,
}

/// The last successful catch-up through `GET /v1/events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// When it last succeeded, unix seconds; `None`: never.
    pub at: Option<i64>,
    /// The `created` time that run reached back to; the next run starts before it by a margin.
    pub from: Option<i64>,
    /// Events that run stored because no webhook had brought them.
    pub recovered_last: i64,
    pub recovered_total: i64,
}

/// When and why an integration stopped listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    pub at: i64,
    pub reason: String,
}

/// `Debug` shows the secrets, the key and the tokens as `[redacted]`.
#[derive(Debug, Clone, Default)]
pub struct Integration {
    pub id: String,
    pub name: String,
    /// Empty when it has none: a Connect (OAuth) integration, or one disconnected.
    pub webhook_secret: Secret,
    pub api_key: Option<Secret>,
    pub stripe_account: Option<String>,
    pub status: Status,
    pub created_at: i64,
    pub from_address: Option<String>,
    pub connected_by: ConnectedBy,
    pub endpoint: Option<Endpoint>,
    /// The account's name as `GET /v1/account` gave it.
    pub account_name: Option<String>,
    /// Whether the key or token is for live mode; `None` when never learned.
    pub livemode: Option<bool>,
    pub oauth_access_token: Option<Secret>,
    pub oauth_refresh_token: Option<Secret>,
    pub catch_up: CatchUp,
    pub disconnected: Option<Disconnected>,
}

impl Integration {
    /// Whether its own webhook URL takes events: a disconnected one answers 410.
    pub fn is_listening(&self) -> bool {
        self.status == Status::Active
    }
}

pub struct NewIntegration<'a> {
    pub name: &'a str,
    pub webhook_secret: &'a str,
    pub api_key: Option<&'a str>,
    pub stripe_account: Option<&'a str>,
    /// Overrides `smtp.from_address` for this integration's emails.
    pub from_address: Option<&'a str>,
}

/// The secrets are stored sealed (`crate::seal`): read through `unseal()` here, written
/// through `seal()` in every statement that sets them.
const COLUMNS: &str = "id, name, unseal(webhook_secret), unseal(api_key), stripe_account, status, \
     created_at, from_address, connection, endpoint_id, endpoint_status, endpoint_checked_at, \
     account_name, livemode, unseal(oauth_access_token), unseal(oauth_refresh_token), \
     caught_up_at, caught_up_from, recovered_last, recovered_total, disconnected_at, \
     disconnect_reason";

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
        connected_by: row.get(8)?,
        endpoint: match row.get::<_, Option<String>>(9)? {
            Some(id) => Some(Endpoint {
                id,
                status: row.get(10)?,
                checked_at: row.get(11)?,
            }),
            None => None,
        },
        account_name: row.get(12)?,
        livemode: row.get(13)?,
        oauth_access_token: row.get(14)?,
        oauth_refresh_token: row.get(15)?,
        catch_up: CatchUp {
            at: row.get(16)?,
            from: row.get(17)?,
            recovered_last: row.get(18)?,
            recovered_total: row.get(19)?,
        },
        disconnected: match row.get::<_, Option<i64>>(20)? {
            Some(at) => Some(Disconnected {
                at,
                reason: row.get::<_, Option<String>>(21)?.unwrap_or_default(),
            }),
            None => None,
        },
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
         VALUES (?1, ?2, seal(?3), seal(?4), ?5, ?6, ?7)",
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
        "UPDATE integrations SET name = ?2, webhook_secret = seal(?3), api_key = seal(?4),
             from_address = ?5
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

/// Counts what `erase` would delete beside the events (reads the `deliveries_integration`
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

/// How an integration is connected, as `set_link` stores it in one go.
#[derive(Debug, Default)]
pub struct Link<'a> {
    pub connected_by: ConnectedBy,
    /// Empty for a Connect (OAuth) integration.
    pub webhook_secret: &'a str,
    pub api_key: Option<&'a str>,
    pub stripe_account: Option<&'a str>,
    pub endpoint_id: Option<&'a str>,
    pub endpoint_status: Option<&'a str>,
    pub account_name: Option<&'a str>,
    pub livemode: Option<bool>,
    pub oauth_access_token: Option<&'a str>,
    pub oauth_refresh_token: Option<&'a str>,
}

/// Connects (or reconnects) an integration as `link` says, replacing how it was connected
/// before: it listens again, and its name, sender, templates and log stay. `None` when there is
/// no such integration.
///
/// It also counts as caught up now: the catch-up reaches back from its last run, and what
/// happened before this link (a month under a hand-made endpoint that did not subscribe to every
/// type, or the time it was disconnected on purpose) is not this link's to email.
pub fn set_link(conn: &Connection, id: &str, link: &Link) -> Result<Option<Integration>, Error> {
    conn.execute(
        "UPDATE integrations SET connection = ?2, webhook_secret = seal(?3), api_key = seal(?4),
             stripe_account = ?5, endpoint_id = ?6, endpoint_status = ?7,
             endpoint_checked_at = CASE WHEN ?7 IS NULL THEN NULL ELSE ?12 END,
             account_name = ?8, livemode = ?9, oauth_access_token = seal(?10),
             oauth_refresh_token = seal(?11), status = 'active', disconnected_at = NULL,
             disconnect_reason = NULL, caught_up_at = ?12, caught_up_from = ?12,
             recovered_last = 0
         WHERE id = ?1",
        params![
            id,
            link.connected_by,
            link.webhook_secret,
            link.api_key,
            link.stripe_account,
            link.endpoint_id,
            link.endpoint_status,
            link.account_name,
            link.livemode,
            link.oauth_access_token,
            link.oauth_refresh_token,
            super::now_unix(),
        ],
    )
    .map_err(classify_db_error)?;
    get(conn, id)
}

/// Records the endpoint's status as Stripe just reported it (`enabled`, `disabled`).
pub fn note_endpoint_status(conn: &Connection, id: &str, status: &str) -> Result<(), Error> {
    conn.execute(
        "UPDATE integrations SET endpoint_status = ?2, endpoint_checked_at = ?3 WHERE id = ?1",
        params![id, status, super::now_unix()],
    )
    .map_err(classify_db_error)?;
    Ok(())
}

/// Records a successful catch-up that reached back to `from` and stored `recovered` events.
pub fn note_catch_up(conn: &Connection, id: &str, from: i64, recovered: i64) -> Result<(), Error> {
    conn.execute(
        "UPDATE integrations SET caught_up_at = ?2, caught_up_from = ?3, recovered_last = ?4,
             recovered_total = recovered_total + ?4
         WHERE id = ?1",
        params![id, super::now_unix(), from, recovered],
    )
    .map_err(classify_db_error)?;
    Ok(())
}

/// The Connect (OAuth) integration of account `account` (`acct_…`), if any; one connected
/// by key stores its own account id too, but the platform's events are not its to take.
pub fn by_account(conn: &Connection, account: &str) -> Result<Option<Integration>, Error> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM integrations WHERE stripe_account = ?1 AND connection = 'oauth'
             ORDER BY status, created_at LIMIT 1"
        ),
        [account],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
}

/// Stops listening: forgets the signing secret, the API key, the tokens and the endpoint, and
/// records when and why. Its events, deliveries, catalog and templates stay (see `erase`).
/// `None` when there is no such integration.
pub fn disconnect(conn: &Connection, id: &str, reason: &str) -> Result<Option<Integration>, Error> {
    conn.execute(
        "UPDATE integrations SET status = 'disconnected', webhook_secret = '', api_key = NULL,
             oauth_access_token = NULL, oauth_refresh_token = NULL, endpoint_id = NULL,
             endpoint_status = NULL, endpoint_checked_at = NULL,
             disconnected_at = ?2, disconnect_reason = ?3
         WHERE id = ?1",
        params![id, super::now_unix(), reason],
    )
    .map_err(classify_db_error)?;
    get(conn, id)
}

/// What an erase deletes, one table at a time: deliveries before the events they point to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Deliveries,
    Events,
    Plans,
    Products,
}

impl Held {
    pub const ALL: [Held; 4] = [Held::Deliveries, Held::Events, Held::Plans, Held::Products];

    fn table(self) -> &'static str {
        match self {
            Held::Deliveries => "deliveries",
            Held::Events => "events",
            Held::Plans => "catalog_plans",
            Held::Products => "catalog_products",
        }
    }
}

/// Deletes at most `DELETE_BATCH` of integration `id`'s rows of one table in one statement, so
/// in one short transaction that holds the write lock for milliseconds; returns how many went
/// (fewer than `DELETE_BATCH`: that table is empty of it). Each table has an index leading with
/// `integration_id` (deliveries: `deliveries_integration`), so a batch starts at its front.
pub fn erase_batch(conn: &Connection, id: &str, held: Held) -> Result<usize, Error> {
    let table = held.table();
    conn.prepare_cached(&format!(
        "DELETE FROM {table} WHERE integration_id = ?1 AND id IN (
             SELECT id FROM {table} WHERE integration_id = ?1 LIMIT CAST(?2 AS INTEGER))"
    ))
    .and_then(|mut s| s.execute(params![id, DELETE_BATCH as i64]))
    .map_err(classify_db_error)
}

/// Deletes a disconnected integration's row once `erase_batch` has emptied its tables: its own
/// templates and whatever arrived since the last batch go with it by cascade. Returns how many
/// templates of its own went; `None` when there is no such integration. A connected one is a
/// conflict: it is still listening, so it is disconnected first.
pub fn erase(conn: &Connection, id: &str) -> Result<Option<i64>, Error> {
    // Immediate: a deferred transaction that reads first cannot take the write lock once another
    // writer has committed (SQLITE_BUSY_SNAPSHOT, no busy wait), which under steady webhooks is
    // nearly always.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(classify_db_error)?;
    let Some(integration) = get(&tx, id)? else {
        return Ok(None);
    };
    if integration.is_listening() {
        return Err(still_connected(&integration));
    }
    let templates: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM templates WHERE integration_id = ?1",
            [id],
            |r| r.get(0),
        )
        .map_err(classify_db_error)?;
    tx.execute("DELETE FROM integrations WHERE id = ?1", [id])
        .map_err(classify_db_error)?;
    tx.commit().map_err(classify_db_error)?;
    Ok(Some(templates))
}

/// Why a connected integration is not erased.
pub fn still_connected(integration: &Integration) -> Error {
    Error::Conflict {
        field: "id",
        message: format!(
            "{:?} is still connected: disconnect it first (Disconnect on its page, or \
             `integration remove {}`), then erase it",
            integration.name, integration.id
        ),
    }
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
        let mut conn = crate::db::memory().unwrap();
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
    fn a_link_replaces_how_it_is_connected_and_a_disconnect_forgets_every_secret() {
        let conn = database();
        let id = add(&conn, "shop");
        let linked = set_link(
            &conn,
            &id,
            &Link {
                connected_by: ConnectedBy::ApiKey,
                webhook_secret: "whsec_from_the_endpoint",
                api_key: Some("rk_test_0123456789"),
                endpoint_id: Some("we_123"),
                endpoint_status: Some("enabled"),
                account_name: Some("Rosen Goods"),
                stripe_account: Some("acct_123"),
                livemode: Some(false),
                ..Link::default()
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(linked.connected_by, ConnectedBy::ApiKey);
        assert_eq!(linked.endpoint.as_ref().unwrap().id, "we_123");
        assert!(linked.endpoint.as_ref().unwrap().checked_at.is_some());
        assert!(
            by_account(&conn, "acct_123").unwrap().is_none(),
            "the platform's Connect events are only an OAuth integration's"
        );

        note_catch_up(&conn, &id, 1_000, 3).unwrap();
        note_catch_up(&conn, &id, 2_000, 2).unwrap();
        let caught = get(&conn, &id).unwrap().unwrap().catch_up;
        assert_eq!(
            (caught.from, caught.recovered_last, caught.recovered_total),
            (Some(2_000), 2, 5)
        );

        let gone = disconnect(&conn, &id, "disconnected by you")
            .unwrap()
            .unwrap();
        assert!(!gone.is_listening());
        assert_eq!(gone.webhook_secret.expose(), "");
        assert!(gone.api_key.is_none() && gone.endpoint.is_none());
        assert_eq!(gone.disconnected.unwrap().reason, "disconnected by you");
        assert_eq!(gone.catch_up.recovered_total, 5, "history stays");
        assert!(disconnect(&conn, "int_0000000000000000", "x")
            .unwrap()
            .is_none());
    }

    #[test]
    fn redaction_keeps_kind_and_last_four_only() {
        assert_eq!(redact("whsec_abcdefghijklmnop1234"), "whsec_…1234");
        assert_eq!(redact("sk_test_51Pgaf0000000000XYZW"), "sk_…XYZW");
        assert_eq!(redact("whsec_short"), "whsec_…");
    }
}
