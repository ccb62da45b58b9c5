//! The `events` table: every verified webhook, stored raw and once per (integration, event id).
//! The raw body lives in `event_payloads` (migration V15), one row per event keyed by its id, so
//! recording an outcome rewrites a small row and never the payload.

use rusqlite::{params, Connection, OptionalExtension};

use super::{deliveries, payload};
use crate::error::{classify_db_error, Error};
use crate::stripe::envelope::Envelope;

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub integration_id: String,
    pub envelope: Envelope,
    /// The exact body Stripe signed, packed for storage (`payload::pack`).
    pub packed_payload: Vec<u8>,
}

impl NewEvent {
    /// Packs `body` here, on the caller's thread: intake's single writer only copies bytes.
    pub fn new(integration_id: String, envelope: Envelope, body: &str) -> NewEvent {
        NewEvent {
            integration_id,
            envelope,
            packed_payload: payload::pack(body),
        }
    }
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
    /// Why the stored payload cannot be read (its bytes were damaged at rest); `payload` is then
    /// empty. The processor marks such an event failed, and the pages say so, instead of one
    /// damaged row failing every read that meets it. `damage_notice` words it.
    pub payload_damage: Option<String>,
    pub processing: Processing,
    pub processing_detail: Option<String>,
    pub processing_attempts: i64,
    /// When its outcome was last recorded.
    pub processed_at: Option<i64>,
    /// When the merchant last asked to process it again (`reprocess`).
    pub reprocessed_at: Option<i64>,
}

impl StoredEvent {
    /// What the processor records, the event's page and `events show` print when the payload
    /// cannot be read: why, and what to do. None when it can be.
    pub fn damage_notice(&self) -> Option<String> {
        self.payload_damage.as_ref().map(|damage| {
            format!("{damage}: restore the database from a backup to see or email this event")
        })
    }
}

/// The ordering key of an event, as SQL over its `payload` column: the customer's id (plain or
/// expanded, or the customer object itself), else the Stripe object's id; NULL when the payload
/// has neither. Events with the same key are processed in Stripe's order. It was V3's generated
/// column; V15 stored it in `events.order_key` only for postponed pending events (the rows
/// `events_postponed_order` indexes). Intake now stores it with every new event (read while the
/// envelope is parsed, `Envelope::order_key`, the same rule); this SQL is for the rows stored
/// before, so that the processor's read parses no payload of a new event. (It reads only text:
/// a payload stored packed, since V17, has an empty `payload`, and always its key stored.)
pub const ORDER_KEY_SQL: &str = "CASE
        WHEN NOT json_valid(payload) THEN NULL
        WHEN json_extract(payload, '$.data.object.object') = 'customer'
             AND json_type(payload, '$.data.object.id') = 'text'
            THEN json_extract(payload, '$.data.object.id')
        WHEN json_type(payload, '$.data.object.customer') = 'text'
            THEN json_extract(payload, '$.data.object.customer')
        WHEN json_type(payload, '$.data.object.customer.id') = 'text'
            THEN json_extract(payload, '$.data.object.customer.id')
        WHEN json_type(payload, '$.data.object.id') = 'text'
            THEN json_extract(payload, '$.data.object.id')
    END";

/// Inserts unless the event is already stored: the event's row, then its payload's (only for a
/// new event). Runs inside the caller's transaction.
pub fn insert(conn: &Connection, event: &NewEvent, received_at: i64) -> rusqlite::Result<Stored> {
    let e = &event.envelope;
    let changed = conn
        .prepare_cached(
            "INSERT INTO events (integration_id, stripe_event_id, type, account, api_version,
                                 livemode, created, received_at, order_key)
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
            e.order_key,
        ])?;
    if changed != 1 {
        return Ok(Stored::Duplicate);
    }
    conn.prepare_cached(
        "INSERT INTO event_payloads (event_id, payload, payload_zstd) VALUES (?1, '', ?2)",
    )?
    .execute(params![conn.last_insert_rowid(), event.packed_payload])?;
    Ok(Stored::New)
}

const COLUMNS: &str = "e.id, e.integration_id, e.stripe_event_id, e.type, e.account,
    e.api_version, e.livemode, e.created, e.received_at, p.payload, e.processing,
    e.processing_detail, e.processing_attempts, e.processed_at, e.reprocessed_at, p.payload_zstd";

/// An event with its payload. CROSS JOIN keeps `events` the outer loop, so each query reads the
/// index its `WHERE` names and looks each payload up by id.
const FROM: &str = "events e CROSS JOIN event_payloads p ON p.event_id = e.id";

fn from_row(row: &rusqlite::Row) -> rusqlite::Result<StoredEvent> {
    let (payload, payload_damage) = match payload::from_columns(row, 9, 15)? {
        Ok(payload) => (payload, None),
        Err(damage) => (String::new(), Some(damage.to_string())),
    };
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
        payload,
        payload_damage,
        processing: row.get(10)?,
        processing_detail: row.get(11)?,
        processing_attempts: row.get(12)?,
        processed_at: row.get(13)?,
        reprocessed_at: row.get(14)?,
    })
}

pub fn get(
    conn: &Connection,
    integration_id: &str,
    stripe_event_id: &str,
) -> Result<Option<StoredEvent>, Error> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE e.integration_id = ?1 AND e.stripe_event_id = ?2"
        ),
        [integration_id, stripe_event_id],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
}

pub fn get_by_id(conn: &Connection, id: i64) -> Result<Option<StoredEvent>, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM {FROM} WHERE e.id = ?1"),
        [id],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
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

/// `SET` of `order_key` for an event that becomes postponed (enters `events_postponed_order`):
/// kept when intake stored it, else read from its payload once (a payload never changes).
fn set_order_key() -> String {
    format!(
        "order_key = COALESCE(order_key,
             (SELECT {ORDER_KEY_SQL} FROM event_payloads WHERE event_id = events.id))"
    )
}

/// Leaves the event pending, to be tried again at `process_after`.
pub fn postpone(conn: &Connection, id: i64, detail: &str, process_after: i64) -> Result<(), Error> {
    conn.prepare_cached(&format!(
        "UPDATE events SET processing_detail = ?2, process_after = ?3,
             processing_attempts = processing_attempts + 1, {} WHERE id = ?1",
        set_order_key()
    ))
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
    /// The customer's id, else the Stripe object's id (stored at intake, else `ORDER_KEY_SQL`
    /// over the payload): events with the same key are processed in Stripe's order.
    pub order_key: Option<String>,
    /// Read from the postponed part (it had been postponed and its time has come).
    pub postponed: bool,
}

/// Due events for the concurrent processor: fresh ones after id `fresh_after`, oldest first,
/// then postponed ones that are due, reading `postponed_held` more of those because the caller
/// already holds up to that many of them. Each part reads its own partial index in order, so a
/// backlog costs nothing per batch.
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
                    order_key: row.get(16)?,
                    postponed,
                })
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(classify_db_error)?;
        Ok::<_, Error>(rows)
    };
    let mut rows = read(
        &format!(
            "SELECT {COLUMNS}, COALESCE(e.order_key, {ORDER_KEY_SQL}) FROM {FROM}
             WHERE e.processing = 'pending' AND e.process_after IS NULL AND e.id > ?1
             ORDER BY e.id LIMIT CAST(?2 AS INTEGER)"
        ),
        &[&fresh_after, &(limit as i64)],
        false,
    )?;
    if rows.len() < limit {
        let more = (limit - rows.len() + postponed_held) as i64;
        rows.extend(read(
            &format!(
                "SELECT {COLUMNS}, COALESCE(e.order_key, {ORDER_KEY_SQL}) FROM {FROM}
                 WHERE e.processing = 'pending' AND e.process_after <= ?1
                 ORDER BY e.process_after, e.id LIMIT CAST(?2 AS INTEGER)"
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
             ORDER BY created, id LIMIT CAST(?5 AS INTEGER)",
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
    conn.prepare_cached(&format!(
        "UPDATE events SET processing_detail = ?2, process_after = ?3, {} WHERE id = ?1",
        set_order_key()
    ))
    .and_then(|mut s| s.execute(params![id, detail, process_after]))
    .map_err(classify_db_error)?;
    Ok(())
}

/// Puts a skipped or failed event back to `pending`, due now, and remembers that the merchant
/// asked (`reprocessed_at`): the processor reads it like a postponed event that came due, so
/// a running processor that already read past its id still finds it. Its attempts start again
/// from zero. False when the event is not skipped or failed (nothing changed).
pub fn reprocess(conn: &Connection, id: i64, now: i64) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE events SET processing = 'pending', process_after = ?2, reprocessed_at = ?2,
                 processing_attempts = 0, processing_detail = ?3, {}
             WHERE id = ?1 AND processing IN ('skipped', 'failed')",
            set_order_key()
        ))
        .and_then(|mut s| s.execute(params![id, now, REPROCESS_DETAIL]))
        .map_err(classify_db_error)?;
    Ok(changed == 1)
}

/// What a reprocessed event says until its new outcome is recorded.
pub const REPROCESS_DETAIL: &str = "waiting to be processed again, as asked";

/// Inserts the delivery an event produced, as `deliveries::insert` does. When the fact is
/// already held by a skipped or failed delivery and the event is one the merchant asked to
/// process again, that delivery is superseded: it stays in the log as it was, pointing at the
/// new row, which takes the fact's key. A queued, sending, retrying or sent delivery is never
/// superseded, so a fact is never emailed twice. Only a clash costs more than the insert.
pub fn insert_delivery(
    conn: &Connection,
    new: &deliveries::NewDelivery,
    now: i64,
) -> Result<deliveries::Inserted, Error> {
    use deliveries::Inserted;
    let existing = match deliveries::insert(conn, new, now)? {
        Inserted::AlreadyCovered(existing) => existing,
        inserted => return Ok(inserted),
    };
    // Superseded by itself for the moment: out of the unique index, so the row below goes in.
    // The caller's transaction holds the write lock, so no one sees this state.
    let released = conn
        .prepare_cached(
            "UPDATE deliveries SET superseded_by = id
             WHERE id = ?1 AND status IN ('skipped', 'failed') AND superseded_by IS NULL
               AND EXISTS (SELECT 1 FROM events WHERE id = ?2 AND reprocessed_at IS NOT NULL)",
        )
        .and_then(|mut s| s.execute(params![existing, new.event_id]))
        .map_err(classify_db_error)?;
    if released == 0 {
        return Ok(Inserted::AlreadyCovered(existing));
    }
    let Inserted::New(id) = deliveries::insert(conn, new, now)? else {
        return Err(Error::Io(std::io::Error::other(format!(
            "delivery {existing} was superseded but its fact's key is still taken"
        ))));
    };
    conn.prepare_cached("UPDATE deliveries SET superseded_by = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![existing, id]))
        .map_err(classify_db_error)?;
    Ok(Inserted::New(id))
}

/// The events list's filters. Paging goes by id, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub integration_id: Option<String>,
    pub event_type: Option<String>,
    pub outcome: Option<Processing>,
    /// Paging: only events with a smaller id.
    pub before: Option<i64>,
    pub limit: usize,
}

impl EventFilter {
    /// Filters read from each row rather than from an index: with one of them, a page looks
    /// through at most `SCAN` events (see `list`).
    fn scans(&self) -> bool {
        self.integration_id.is_some() || self.event_type.is_some()
    }
}

/// How many events one page of a filtered list looks through at most. The outcome has an
/// index (or is `pending`, which has two); integration and type are read from the rows, and a
/// rare value could otherwise mean reading every event to fill a page.
pub const SCAN: usize = 2000;

/// One event as the list shows it: no payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub integration_id: String,
    pub stripe_event_id: String,
    pub event_type: String,
    pub livemode: bool,
    pub created: i64,
    pub received_at: i64,
    pub processing: Processing,
    pub processing_detail: Option<String>,
    pub reprocessed_at: Option<i64>,
}

/// A page of the list, and where the next (older) one starts (`EventFilter::before`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    pub rows: Vec<EventRow>,
    pub older: Option<i64>,
    /// The page stopped at the `SCAN` bound rather than at a full page: older events may
    /// still match.
    pub scan_ended: bool,
}

/// Where a page's rows are read from, and the condition that goes with it: every event by id
/// (never through the integration's unique index, which would sort all its events), or the
/// events of one final outcome through `events_outcome`, both newest first. Pending events are
/// read by `PENDING`.
fn source(outcome: Option<Processing>) -> (&'static str, String) {
    match outcome {
        None | Some(Processing::Pending) => ("events NOT INDEXED", "1 = 1".to_owned()),
        Some(state) => (
            "events INDEXED BY events_outcome",
            format!(
                "processing != 'pending' AND processing = '{}'",
                state.as_str()
            ),
        ),
    }
}

const ROW_COLUMNS: &str = "id, integration_id, stripe_event_id, type, livemode, created,
    received_at, processing, processing_detail, reprocessed_at";

/// The statement behind one page, and its parameters, so tests can EXPLAIN the same query.
/// `?1`/`?2` bound the ids (`before`, and the floor of the scan when integration or type is
/// filtered).
pub fn list_query(filter: &EventFilter, floor: i64) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut args = vec![
        V::Integer(filter.before.unwrap_or(i64::MAX)),
        V::Integer(floor),
    ];
    let mut and = String::new();
    for (column, value) in [
        ("integration_id", &filter.integration_id),
        ("type", &filter.event_type),
    ] {
        if let Some(v) = value {
            args.push(V::Text(v.clone()));
            and.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    let sql = if filter.outcome == Some(Processing::Pending) {
        // Fresh ones through events_fresh in id order, postponed ones (a handful) through
        // events_postponed; pending events are the backlog, never the whole table.
        format!(
            "SELECT {ROW_COLUMNS} FROM events INDEXED BY events_fresh
             WHERE processing = 'pending' AND process_after IS NULL AND id < ?1 AND id >= ?2{and}
             UNION ALL
             SELECT {ROW_COLUMNS} FROM events INDEXED BY events_postponed
             WHERE processing = 'pending' AND process_after IS NOT NULL AND id < ?1 AND id >= ?2{and}
             ORDER BY 1 DESC"
        )
    } else {
        let (from, condition) = source(filter.outcome);
        format!(
            "SELECT {ROW_COLUMNS} FROM {from}
             WHERE {condition} AND id < ?1 AND id >= ?2{and} ORDER BY id DESC"
        )
    };
    args.push(V::Integer(filter.limit.clamp(1, 500) as i64 + 1));
    (
        format!("{sql} LIMIT CAST(?{} AS INTEGER)", args.len()),
        args,
    )
}

/// The lowest id among the `SCAN` events a filtered page may look through, and whether there
/// were that many (else the scan reaches the oldest event). Reads ids only.
pub fn floor_query(outcome: Option<Processing>) -> String {
    let (from, condition) = source(outcome);
    format!(
        "SELECT COUNT(*), MIN(id) FROM (SELECT id FROM {from}
             WHERE {condition} AND id < ?1 ORDER BY id DESC LIMIT CAST(?2 AS INTEGER))"
    )
}

/// One page of events, newest first. Without an integration or type filter (or for pending
/// events) it is exact; with one, it looks through at most `SCAN` events of the outcome (or of
/// all) and says where it stopped, so a page costs the same at a million events as at ten.
pub fn list(conn: &Connection, filter: &EventFilter) -> Result<EventPage, Error> {
    let limit = filter.limit.clamp(1, 500);
    let before = filter.before.unwrap_or(i64::MAX);
    let bounded = filter.scans() && filter.outcome != Some(Processing::Pending);
    let mut floor = (i64::MIN, false);
    if bounded {
        let (scanned, oldest): (i64, Option<i64>) = conn
            .prepare_cached(&floor_query(filter.outcome))
            .and_then(|mut s| {
                s.query_row(params![before, SCAN as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            })
            .map_err(classify_db_error)?;
        if scanned as usize >= SCAN {
            floor = (oldest.unwrap_or(i64::MIN), true);
        }
    }
    let (sql, args) = list_query(filter, floor.0);
    let mut stmt = conn.prepare_cached(&sql).map_err(classify_db_error)?;
    let mut rows: Vec<EventRow> = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok(EventRow {
                id: r.get(0)?,
                integration_id: r.get(1)?,
                stripe_event_id: r.get(2)?,
                event_type: r.get(3)?,
                livemode: r.get(4)?,
                created: r.get(5)?,
                received_at: r.get(6)?,
                processing: r.get(7)?,
                processing_detail: r.get(8)?,
                reprocessed_at: r.get(9)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    if rows.len() > limit {
        rows.truncate(limit);
        let older = rows.last().map(|r| r.id);
        return Ok(EventPage {
            rows,
            older,
            scan_ended: false,
        });
    }
    let (floor, ended) = floor;
    Ok(EventPage {
        rows,
        older: ended.then_some(floor),
        scan_ended: ended,
    })
}

/// A delivery as an event's page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDelivery {
    pub id: i64,
    pub status: deliveries::Status,
    pub trigger: crate::trigger::TriggerKind,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub is_resend: bool,
    /// The delivery that took its place when its event was processed again.
    pub superseded_by: Option<i64>,
    /// The delivery it took the place of.
    pub supersedes: Option<i64>,
}

/// The deliveries an event produced (its resends and those of its reprocessing included),
/// oldest first: index `deliveries_event`, and `deliveries_superseded` for each row's
/// predecessor.
pub fn deliveries_of(conn: &Connection, event_id: i64) -> Result<Vec<EventDelivery>, Error> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, status, trigger, recipient, subject, last_error, created_at, sent_at,
                    is_resend, superseded_by,
                    (SELECT s.id FROM deliveries s WHERE s.superseded_by = d.id LIMIT 1)
             FROM deliveries d WHERE event_id = ?1 ORDER BY id",
        )
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([event_id], |r| {
            Ok(EventDelivery {
                id: r.get(0)?,
                status: r.get(1)?,
                trigger: r.get(2)?,
                recipient: r.get(3)?,
                subject: r.get(4)?,
                last_error: r.get(5)?,
                created_at: r.get(6)?,
                sent_at: r.get(7)?,
                is_resend: r.get(8)?,
                superseded_by: r.get(9)?,
                supersedes: r.get(10)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::deliveries::{Inserted, NewDelivery, Status};
    use crate::trigger::TriggerKind;

    fn memory() -> (Connection, String) {
        let mut conn = crate::db::memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let id = crate::db::test_integration(&conn, "shop");
        (conn, id)
    }

    /// Intake's ordering key (`Envelope::order_key`) is `ORDER_KEY_SQL`'s, so that an event
    /// stored before intake read it and one stored after keep one order per customer.
    #[test]
    fn intake_reads_the_order_key_the_sql_reads() {
        let conn = Connection::open_in_memory().unwrap();
        let sql_key = |payload: &str| -> Option<String> {
            conn.query_row(
                &format!("SELECT {ORDER_KEY_SQL} FROM (SELECT ?1 AS payload)"),
                [payload],
                |r| r.get(0),
            )
            .unwrap()
        };
        let event = |object: &str| {
            format!(
                r#"{{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":{{"object":{object}}}}}"#
            )
        };
        let mut payloads: Vec<String> = [
            r#"{"object":"customer","id":"cus_self","customer":"cus_other"}"#,
            r#"{"object":"customer","id":7,"customer":"cus_other"}"#,
            r#"{"object":"invoice","id":"in_1","customer":"cus_plain"}"#,
            r#"{"object":"invoice","id":"in_1","customer":{"id":"cus_expanded","email":"a@b.c"}}"#,
            r#"{"object":"invoice","id":"in_1","customer":{"id":5}}"#,
            r#"{"object":"invoice","id":"in_1","customer":null}"#,
            r#"{"object":"invoice","id":"in_1","customer":["cus_x"]}"#,
            r#"{"id":"price_1"}"#,
            r#"{"id":12,"customer":12}"#,
            r#"{"object":"charge","customer":"cus_\u00e9\"q"}"#,
            r#"{"object":"invoice","id":"in_1","cust\u006fmer":"cus_escaped_key"}"#,
            r#"{}"#,
        ]
        .iter()
        .map(|o| event(o))
        .collect();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stripe/events");
        for entry in std::fs::read_dir(dir).unwrap() {
            payloads.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
        }
        for payload in &payloads {
            let envelope = Envelope::parse(payload.as_bytes()).unwrap();
            assert_eq!(envelope.order_key, sql_key(payload), "{payload}");
        }
        let keyed = payloads
            .iter()
            .filter(|p| Envelope::parse(p.as_bytes()).unwrap().order_key.is_some())
            .count();
        assert!(keyed >= 20, "only {keyed} payloads had a key");
    }

    /// An event stored before intake read its key (a NULL `order_key`, and so before V17: its
    /// payload is text) is still read with it.
    #[test]
    fn an_event_stored_without_its_key_is_read_with_the_key_from_its_payload() {
        let (conn, shop) = memory();
        let payload = include_str!("../../tests/fixtures/stripe/events/invoice.paid.json");
        let event = NewEvent::new(shop, Envelope::parse(payload.as_bytes()).unwrap(), payload);
        let key = event.envelope.order_key.clone();
        assert!(key.as_deref().is_some_and(|k| k.starts_with("cus_")));
        insert(&conn, &event, 1).unwrap();
        let due = due_after(&conn, 1, 0, 0, 10).unwrap();
        assert_eq!(due[0].order_key, key);
        conn.execute("UPDATE events SET order_key = NULL", [])
            .unwrap();
        conn.execute(
            "UPDATE event_payloads SET payload = ?1, payload_zstd = NULL",
            [payload],
        )
        .unwrap();
        let due = due_after(&conn, 1, 0, 0, 10).unwrap();
        assert_eq!(due[0].order_key, key);
        assert_eq!(due[0].event.payload, payload);
    }

    /// Intake stores a payload packed (V17) and every read gives back the exact body Stripe
    /// signed; a payload stored as text before V17 reads as it did.
    #[test]
    fn a_payload_is_stored_packed_and_read_back_exactly() {
        let (conn, shop) = memory();
        let body = include_str!("../../tests/fixtures/stripe/events/invoice.paid.json");
        let event = NewEvent::new(
            shop.clone(),
            Envelope::parse(body.as_bytes()).unwrap(),
            body,
        );
        insert(&conn, &event, 1).unwrap();
        let (text, packed): (String, Vec<u8>) = conn
            .query_row(
                "SELECT payload, payload_zstd FROM event_payloads",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(text, "");
        assert!(packed.len() * 2 < body.len(), "{} bytes", packed.len());
        let id = event.envelope.id.as_str();
        assert_eq!(get(&conn, &shop, id).unwrap().unwrap().payload, body);
        assert_eq!(
            due_after(&conn, 1, 0, 0, 10).unwrap()[0].event.payload,
            body
        );

        let old = "{\"id\":\"evt_before_v17\",\"note\":\"Zoë\"}";
        conn.execute(
            "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                 received_at)
             VALUES (?1, 'evt_before_v17', 'customer.updated', 0, 1, 1)",
            [&shop],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO event_payloads (event_id, payload) VALUES (last_insert_rowid(), ?1)",
            [old],
        )
        .unwrap();
        assert_eq!(
            get(&conn, &shop, "evt_before_v17")
                .unwrap()
                .unwrap()
                .payload,
            old
        );
    }

    /// What V17 and V18 are for: an intake commit of packed payloads writes far fewer WAL pages
    /// than the same events with their text (each 6 KB payload a page and an overflow chain), and
    /// fewer again packed with the dictionary (three rows to a page instead of two).
    #[test]
    fn a_commit_of_packed_payloads_writes_under_half_the_pages_of_their_text() {
        #[derive(Clone, Copy)]
        enum Form {
            Text,
            PackedAtV17,
            Packed,
        }
        let body = include_str!("../../tests/fixtures/stripe/events/invoice.paid.json");
        let frames = |form: Form| -> i64 {
            let dir = tempfile::tempdir().unwrap();
            let options = crate::db::Options::at(&dir.path().join("wal.db")).unwrap();
            let mut conn = crate::db::open(&options).unwrap();
            crate::db::migrate(&mut conn).unwrap();
            let shop = crate::db::test_integration(&conn, "shop");
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
            let tx = conn.transaction().unwrap();
            for n in 0..64 {
                let text = body.replacen("evt_", &format!("evt_{n}_"), 1);
                let event = NewEvent::new(
                    shop.clone(),
                    Envelope::parse(text.as_bytes()).unwrap(),
                    &text,
                );
                assert_eq!(insert(&tx, &event, 1).unwrap(), Stored::New);
                let (text, packed) = match form {
                    Form::Packed => continue,
                    Form::Text => (text, None),
                    Form::PackedAtV17 => (
                        String::new(),
                        Some(zstd::bulk::compress(text.as_bytes(), 1).unwrap()),
                    ),
                };
                tx.execute(
                    "UPDATE event_payloads SET payload = ?1, payload_zstd = ?2
                     WHERE event_id = last_insert_rowid()",
                    params![text, packed],
                )
                .unwrap();
            }
            tx.commit().unwrap();
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .unwrap()
        };
        let (packed, v17, text) = (
            frames(Form::Packed),
            frames(Form::PackedAtV17),
            frames(Form::Text),
        );
        eprintln!("64 events: {packed} WAL pages packed, {v17} packed as at V17, {text} as text");
        assert!(
            v17 * 2 < text,
            "{v17} pages packed as at V17, {text} as text"
        );
        assert!(packed < v17, "{packed} pages packed, {v17} as at V17");
    }

    /// Stores `n` events of `kind`, oldest first, `state` each.
    fn store(conn: &Connection, integration: &str, kind: &str, n: usize, state: Processing) {
        let mut stmt = conn
            .prepare(
                "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                     received_at, processing)
                 VALUES (?1, 'evt_' || ?2 || '_' || (SELECT COUNT(*) FROM events), ?2, 0, 1, 1, ?3)",
            )
            .unwrap();
        for _ in 0..n {
            stmt.execute(params![integration, kind, state]).unwrap();
            conn.execute(
                "INSERT INTO event_payloads (event_id, payload) VALUES (last_insert_rowid(), '{}')",
                [],
            )
            .unwrap();
        }
    }

    fn delivery(integration: &str, event_id: i64, status: Status) -> NewDelivery {
        NewDelivery {
            event_id: Some(event_id),
            status,
            recipient: (status == Status::Queued).then(|| "jenny@example.com".to_owned()),
            ..NewDelivery::new(
                integration,
                "evt",
                "payment_received:in_1",
                TriggerKind::PaymentReceived,
            )
        }
    }

    #[test]
    fn only_a_reprocessed_event_supersedes_and_only_a_skipped_or_failed_delivery() {
        let (conn, shop) = memory();
        store(&conn, &shop, "invoice.paid", 2, Processing::Pending);
        let skipped = insert_delivery(&conn, &delivery(&shop, 1, Status::Skipped), 10).unwrap();
        let Inserted::New(skipped) = skipped else {
            panic!("{skipped:?}")
        };
        // An event not asked to be processed again meets the skipped row: covered, as before.
        assert_eq!(
            insert_delivery(&conn, &delivery(&shop, 2, Status::Queued), 11).unwrap(),
            Inserted::AlreadyCovered(skipped)
        );
        // Asked again: the skipped row steps aside and points at the new one.
        assert!(
            !reprocess(&conn, 2, 12).unwrap(),
            "pending events are not reprocessed"
        );
        conn.execute("UPDATE events SET processing = 'skipped' WHERE id = 2", [])
            .unwrap();
        assert!(reprocess(&conn, 2, 12).unwrap());
        let Inserted::New(queued) =
            insert_delivery(&conn, &delivery(&shop, 2, Status::Queued), 13).unwrap()
        else {
            panic!("the reprocessed event's delivery goes in")
        };
        let old = deliveries_of(&conn, 1).unwrap();
        assert_eq!(old[0].superseded_by, Some(queued));
        assert_eq!(old[0].status, Status::Skipped);
        assert_eq!(
            deliveries_of(&conn, 2).unwrap()[0].supersedes,
            Some(skipped)
        );
        // A queued row is never superseded, whoever asks.
        assert_eq!(
            insert_delivery(&conn, &delivery(&shop, 2, Status::Queued), 14).unwrap(),
            Inserted::AlreadyCovered(queued)
        );
    }

    #[test]
    fn a_page_is_exact_without_row_filters_and_bounded_with_them() {
        let (conn, shop) = memory();
        store(&conn, &shop, "customer.updated", 1, Processing::Ignored);
        store(&conn, &shop, "invoice.paid", SCAN + 10, Processing::Queued);
        store(&conn, &shop, "invoice.paid", 3, Processing::Skipped);
        let all = |filter: EventFilter| list(&conn, &filter).unwrap();

        let page = all(EventFilter {
            limit: 5,
            ..Default::default()
        });
        assert_eq!(page.rows.len(), 5);
        assert_eq!(page.rows[0].id, SCAN as i64 + 14);
        assert_eq!(page.older, Some(page.rows[4].id));
        let skipped = all(EventFilter {
            outcome: Some(Processing::Skipped),
            limit: 5,
            ..Default::default()
        });
        assert_eq!((skipped.rows.len(), skipped.older), (3, None));

        // The one ignored event lies beyond the scan: the first page says where it stopped,
        // the next one finds it.
        let typed = EventFilter {
            event_type: Some("customer.updated".into()),
            limit: 5,
            ..Default::default()
        };
        let first = all(typed.clone());
        assert!(first.rows.is_empty() && first.scan_ended);
        let second = all(EventFilter {
            before: first.older,
            ..typed
        });
        assert_eq!(second.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1]);
        assert_eq!((second.older, second.scan_ended), (None, false));
    }

    #[test]
    fn every_list_query_reads_an_index_in_order() {
        let (conn, shop) = memory();
        let outcomes = [None, Some(Processing::Queued), Some(Processing::Pending)];
        for outcome in outcomes {
            for (integration, event_type) in [
                (None, None),
                (Some(shop.clone()), Some("invoice.paid".to_owned())),
            ] {
                let filter = EventFilter {
                    integration_id: integration,
                    event_type,
                    outcome,
                    before: Some(100),
                    limit: 50,
                };
                let (sql, args) = list_query(&filter, 0);
                let plan = explain(&conn, &sql, args);
                assert!(!plan.contains("SCAN events"), "{filter:?}: {plan}");
                // Pending events (the backlog) may be sorted; the others never are.
                if outcome != Some(Processing::Pending) {
                    assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: {plan}");
                }
            }
            let floor = explain(
                &conn,
                &floor_query(outcome.filter(|o| *o != Processing::Pending)),
                vec![100.into(), 2000.into()],
            );
            assert!(
                !floor.contains("SCAN events") && !floor.contains("TEMP B-TREE"),
                "{floor}"
            );
        }
    }

    /// Finishing an event rewrites its small state row, never its payload: the commit writes one
    /// page per B-tree it changes (the events table, the index the row leaves, `events_fresh`,
    /// and the one it enters, `events_outcome`), whatever the payload's size. With the payload
    /// in the row (before V15) it wrote the payload's overflow pages again, and the freelist.
    #[test]
    fn finishing_an_event_writes_no_page_of_its_payload() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::db::Options::at(&dir.path().join("wal.db")).unwrap();
        let mut conn = crate::db::open(&options).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let shop = crate::db::test_integration(&conn, "shop");
        let payload = include_str!("../../tests/fixtures/stripe/events/invoice.paid.json");
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert!(
            payload.len() as i64 > page_size,
            "the payload must overflow a page"
        );
        let event = NewEvent::new(shop, Envelope::parse(payload.as_bytes()).unwrap(), payload);
        assert_eq!(insert(&conn, &event, 1).unwrap(), Stored::New);
        let id = conn.last_insert_rowid();
        // An empty WAL, so the next checkpoint counts exactly the frames `finish` committed.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let tx = conn.transaction().unwrap();
        finish(&tx, id, Processing::Queued, "queued", 2).unwrap();
        tx.commit().unwrap();
        let frames: i64 = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        assert!(
            frames <= 3,
            "finishing wrote {frames} pages: more than the events row and its two indexes"
        );
        assert_eq!(get_by_id(&conn, id).unwrap().unwrap().payload, payload);
    }

    fn explain(conn: &Connection, sql: &str, args: Vec<rusqlite::types::Value>) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }
}
