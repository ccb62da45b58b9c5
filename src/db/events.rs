//! The `events` table: every verified webhook, stored raw and once per (integration, event id).

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{classify_db_error, Error};
use crate::stripe::envelope::Envelope;

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub integration_id: String,
    pub envelope: Envelope,
    /// The exact body Stripe signed.
    pub payload: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// Stripe delivered this event id for this integration before; nothing was written.
    Duplicate,
}

/// Where an event is in processing (`events.processing`). `Pending` events are picked up by the
/// processor once `process_after` has passed; the others are final, `processing_detail` saying
/// why in words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Processing {
    #[default]
    Pending,
    /// A delivery was queued for it.
    Queued,
    /// A delivery row says why no email goes (no template, a disconnected integration), or
    /// another event's delivery covers the same business fact.
    Skipped,
    /// It needs the merchant (an API key lacking a permission), or kept failing until given up.
    Failed,
    /// Not one of the 7 triggers, or nothing to send (a catalog change, a foreign account).
    Ignored,
}

impl Processing {
    pub const ALL: [Processing; 5] = [
        Processing::Pending,
        Processing::Queued,
        Processing::Skipped,
        Processing::Failed,
        Processing::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Processing::Pending => "pending",
            Processing::Queued => "queued",
            Processing::Skipped => "skipped",
            Processing::Failed => "failed",
            Processing::Ignored => "ignored",
        }
    }
}

impl std::fmt::Display for Processing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Processing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Processing::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!("unknown processing state {s:?}: use pending, queued, skipped, failed or ignored")
            })
    }
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: i64,
    pub integration_id: String,
    pub stripe_event_id: String,
    pub event_type: String,
    pub account: Option<String>,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub created: i64,
    pub received_at: i64,
    pub payload: String,
    pub processing: Processing,
    pub processing_detail: Option<String>,
    pub processing_attempts: i64,
}

/// Inserts unless the event is already stored. Runs inside the caller's transaction.
pub fn insert(conn: &Connection, event: &NewEvent, received_at: i64) -> rusqlite::Result<Stored> {
    let e = &event.envelope;
    let changed = conn
        .prepare_cached(
            "INSERT INTO events (integration_id, stripe_event_id, type, account, api_version,
                                 livemode, created, received_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (integration_id, stripe_event_id) DO NOTHING",
        )?
        .execute(params![
            event.integration_id,
            e.id,
            e.event_type,
            e.account,
            e.api_version,
            e.livemode,
            e.created,
            received_at,
            event.payload,
        ])?;
    Ok(if changed == 1 {
        Stored::New
    } else {
        Stored::Duplicate
    })
}

const COLUMNS: &str = "id, integration_id, stripe_event_id, type, account, api_version, livemode,
    created, received_at, payload, processing, processing_detail, processing_attempts";

fn from_row(row: &rusqlite::Row) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        id: row.get(0)?,
        integration_id: row.get(1)?,
        stripe_event_id: row.get(2)?,
        event_type: row.get(3)?,
        account: row.get(4)?,
        api_version: row.get(5)?,
        livemode: row.get(6)?,
        created: row.get(7)?,
        received_at: row.get(8)?,
        payload: row.get(9)?,
        processing: row.get(10)?,
        processing_detail: row.get(11)?,
        processing_attempts: row.get(12)?,
    })
}

pub fn get(
    conn: &Connection,
    integration_id: &str,
    stripe_event_id: &str,
) -> Result<Option<StoredEvent>, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM events WHERE integration_id = ?1 AND stripe_event_id = ?2"),
        [integration_id, stripe_event_id],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
}

pub fn get_by_id(conn: &Connection, id: i64) -> Result<Option<StoredEvent>, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM events WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
}

/// Pending events whose time has come: fresh ones oldest first, then postponed ones that are due.
/// Each part reads its own partial index in order, so a backlog costs nothing per batch.
pub fn due(conn: &Connection, now: i64, limit: usize) -> Result<Vec<StoredEvent>, Error> {
    let mut rows = query(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM events
             WHERE processing = 'pending' AND process_after IS NULL ORDER BY id LIMIT ?1"
        ),
        rusqlite::params![limit as i64],
    )?;
    if rows.len() < limit {
        rows.extend(query(
            conn,
            &format!(
                "SELECT {COLUMNS} FROM events
                 WHERE processing = 'pending' AND process_after <= ?1
                 ORDER BY process_after, id LIMIT ?2"
            ),
            rusqlite::params![now, (limit - rows.len()) as i64],
        )?);
    }
    Ok(rows)
}

fn query(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>, Error> {
    let mut stmt = conn.prepare_cached(sql).map_err(classify_db_error)?;
    let rows = stmt
        .query_map(params, from_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// When the earliest postponed pending event is due (None: none is postponed).
pub fn next_due_at(conn: &Connection) -> Result<Option<i64>, Error> {
    conn.query_row(
        "SELECT MIN(process_after) FROM events
         WHERE processing = 'pending' AND process_after IS NOT NULL",
        [],
        |r| r.get(0),
    )
    .map_err(classify_db_error)
}

/// Records the final processing state of an event.
pub fn finish(
    conn: &Connection,
    id: i64,
    state: Processing,
    detail: &str,
    now: i64,
) -> Result<(), Error> {
    conn.prepare_cached(
        "UPDATE events SET processing = ?2, processing_detail = ?3, processed_at = ?4,
             processing_attempts = processing_attempts + 1, process_after = NULL WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, state, detail, now]))
    .map_err(classify_db_error)?;
    Ok(())
}

/// Leaves the event pending, to be tried again at `process_after`.
pub fn postpone(conn: &Connection, id: i64, detail: &str, process_after: i64) -> Result<(), Error> {
    conn.prepare_cached(
        "UPDATE events SET processing_detail = ?2, process_after = ?3,
             processing_attempts = processing_attempts + 1 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, detail, process_after]))
    .map_err(classify_db_error)?;
    Ok(())
}

/// How many events are stored for an integration (all integrations when `None`).
pub fn count(conn: &Connection, integration_id: Option<&str>) -> Result<i64, Error> {
    conn.query_row(
        "SELECT COUNT(*) FROM events WHERE ?1 IS NULL OR integration_id = ?1",
        [integration_id],
        |row| row.get(0),
    )
    .map_err(classify_db_error)
}

/// A due event as the concurrent processor reads it.
#[derive(Debug, Clone)]
pub struct DueEvent {
    pub event: StoredEvent,
    /// The customer's id, else the Stripe object's id (`order_key`, migration V3): events with
    /// the same key are processed in Stripe's order.
    pub order_key: Option<String>,
    /// Read from the postponed part (it had been postponed and its time has come).
    pub postponed: bool,
}

/// Due events for the concurrent processor: fresh ones after id `fresh_after`, oldest first,
/// then postponed ones that are due, reading `postponed_held` more of those because the caller
/// already holds up to that many of them. Same indexes as `due`.
pub fn due_after(
    conn: &Connection,
    now: i64,
    fresh_after: i64,
    postponed_held: usize,
    limit: usize,
) -> Result<Vec<DueEvent>, Error> {
    let read = |sql: &str, params: &[&dyn rusqlite::ToSql], postponed: bool| {
        let mut stmt = conn.prepare_cached(sql).map_err(classify_db_error)?;
        let rows = stmt
            .query_map(params, |row| {
                Ok(DueEvent {
                    event: from_row(row)?,
                    order_key: row.get(13)?,
                    postponed,
                })
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(classify_db_error)?;
        Ok::<_, Error>(rows)
    };
    let mut rows = read(
        &format!(
            "SELECT {COLUMNS}, order_key FROM events
             WHERE processing = 'pending' AND process_after IS NULL AND id > ?1
             ORDER BY id LIMIT ?2"
        ),
        &[&fresh_after, &(limit as i64)],
        false,
    )?;
    if rows.len() < limit {
        let more = (limit - rows.len() + postponed_held) as i64;
        rows.extend(read(
            &format!(
                "SELECT {COLUMNS}, order_key FROM events
                 WHERE processing = 'pending' AND process_after <= ?1
                 ORDER BY process_after, id LIMIT ?2"
            ),
            &[&now, &more],
            true,
        )?);
    }
    Ok(rows)
}

/// Postponed pending events that must go before an event with this `order_key` (same
/// integration and key, earlier by `created`, then id), first first, at most `limit`: each one's
/// id, Stripe id and when it is due.
pub fn postponed_before(
    conn: &Connection,
    integration_id: &str,
    order_key: &str,
    created: i64,
    id: i64,
    limit: usize,
) -> Result<Vec<(i64, String, i64)>, Error> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, stripe_event_id, process_after FROM events
             WHERE processing = 'pending' AND process_after IS NOT NULL
               AND integration_id = ?1 AND order_key = ?2
               AND (created < ?3 OR (created = ?3 AND id < ?4))
             ORDER BY created, id LIMIT ?5",
        )
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map(
            params![integration_id, order_key, created, id, limit as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// Leaves an event pending until `process_after` without counting an attempt: it waits for an
/// earlier event of the same customer, and has not failed itself.
pub fn hold(conn: &Connection, id: i64, detail: &str, process_after: i64) -> Result<(), Error> {
    conn.prepare_cached(
        "UPDATE events SET processing_detail = ?2, process_after = ?3 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, detail, process_after]))
    .map_err(classify_db_error)?;
    Ok(())
}
