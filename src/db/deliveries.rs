//! The `deliveries` table: the outbox and the delivery log in one. A row is written in the same
//! transaction that marks its event processed; the sender then claims due rows, and every
//! attempt's outcome is kept on the row (status, attempts, next attempt, last error).

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{classify_db_error, Error};
use crate::trigger::TriggerKind;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Queued,
    Sending,
    Sent,
    Retrying,
    Failed,
    Skipped,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Sending,
        Status::Sent,
        Status::Retrying,
        Status::Failed,
        Status::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Retrying => "retrying",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
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
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}: use queued, sending, sent, retrying, failed or skipped"
                )
            })
    }
}

/// Why a delivery was not sent, when the merchant can fix it (`deliveries.reason`, set by the
/// processor; the dashboard counts them). Most rows have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// No enabled template matches the event's trigger, product and plan.
    NoTemplate,
    /// The event lacks what only the Stripe API can tell, and the integration has no key.
    NoApiKey,
}

impl Reason {
    pub const ALL: [Reason; 2] = [Reason::NoTemplate, Reason::NoApiKey];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoTemplate => "no_template",
            Reason::NoApiKey => "no_api_key",
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Reason::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown reason {s:?}: use no_template or no_api_key"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub integration_id: String,
    pub event_id: Option<i64>,
    pub stripe_event_id: String,
    pub business_key: String,
    pub trigger: TriggerKind,
    pub template_id: Option<i64>,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub recipient: Option<String>,
    pub recipient_name: Option<String>,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub status: Status,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub resend_of: Option<i64>,
    /// The token of the claim holding a `sending` row (see `claim_due`).
    pub lease_owner: Option<i64>,
}

const COLUMNS: &str =
    "id, integration_id, event_id, stripe_event_id, business_key, trigger, template_id,
    product_id, plan_id, recipient, recipient_name, subject, html, text, status, attempts,
    next_attempt_at, lease_until, last_error, message_id, created_at, sent_at, resend_of,
    lease_owner";

fn from_row(r: &Row) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        integration_id: r.get(1)?,
        event_id: r.get(2)?,
        stripe_event_id: r.get(3)?,
        business_key: r.get(4)?,
        trigger: r.get(5)?,
        template_id: r.get(6)?,
        product_id: r.get(7)?,
        plan_id: r.get(8)?,
        recipient: r.get(9)?,
        recipient_name: r.get(10)?,
        subject: r.get(11)?,
        html: r.get(12)?,
        text: r.get(13)?,
        status: r.get(14)?,
        attempts: r.get(15)?,
        next_attempt_at: r.get(16)?,
        lease_until: r.get(17)?,
        last_error: r.get(18)?,
        message_id: r.get(19)?,
        created_at: r.get(20)?,
        sent_at: r.get(21)?,
        resend_of: r.get(22)?,
        lease_owner: r.get(23)?,
    })
}

/// A row to add. `Queued` rows are due at once; `Skipped` and `Failed` rows record why nothing
/// is sent, so the merchant sees it in the log.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub integration_id: String,
    pub event_id: Option<i64>,
    pub stripe_event_id: String,
    pub business_key: String,
    pub trigger: TriggerKind,
    pub template_id: Option<i64>,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub recipient: Option<String>,
    pub recipient_name: Option<String>,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub status: Status,
    /// Why the row waits, was skipped or failed, shown in the log.
    pub note: Option<String>,
    /// Why it was not sent, when the merchant can fix it.
    pub reason: Option<Reason>,
}

impl NewDelivery {
    /// A queued delivery of one business fact, with nothing else known yet.
    pub fn new(
        integration_id: impl Into<String>,
        stripe_event_id: impl Into<String>,
        business_key: impl Into<String>,
        trigger: TriggerKind,
    ) -> NewDelivery {
        NewDelivery {
            integration_id: integration_id.into(),
            event_id: None,
            stripe_event_id: stripe_event_id.into(),
            business_key: business_key.into(),
            trigger,
            template_id: None,
            product_id: None,
            plan_id: None,
            recipient: None,
            recipient_name: None,
            subject: None,
            html: None,
            text: None,
            reason: None,
            status: Status::Queued,
            note: None,
        }
    }
}

/// Inserts unless this business fact already has a delivery; returns the new id, or the id of
/// the delivery that already covers the fact.
pub fn insert(conn: &Connection, new: &NewDelivery, now: i64) -> Result<Inserted, Error> {
    let status = new.status;
    let next = (status == Status::Queued).then_some(now);
    let changed = conn
        .prepare_cached(
            "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key, trigger,
                 template_id, product_id, plan_id, recipient, recipient_name, subject, html, text,
                 status, next_attempt_at, last_error, created_at, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT (integration_id, business_key) WHERE is_resend = 0 AND superseded_by IS NULL DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                new.integration_id, new.event_id, new.stripe_event_id, new.business_key, new.trigger,
                new.template_id, new.product_id, new.plan_id, new.recipient, new.recipient_name,
                new.subject, new.html, new.text, status, next, new.note, now, new.reason
            ])
        })
        .map_err(classify_db_error)?;
    if changed == 1 {
        return Ok(Inserted::New(conn.last_insert_rowid()));
    }
    let existing = conn
        .query_row(
            "SELECT id FROM deliveries WHERE integration_id = ?1 AND business_key = ?2 AND is_resend = 0 AND superseded_by IS NULL",
            [&new.integration_id, &new.business_key],
            |r| r.get(0),
        )
        .map_err(classify_db_error)?;
    Ok(Inserted::AlreadyCovered(existing))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New(i64),
    AlreadyCovered(i64),
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Delivery>, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
    .map_err(classify_db_error)
}

/// Claims up to `limit` rows that are due (queued or retrying and past their time, or `sending`
/// with an expired lease, i.e. held by a worker that stalled) and leases them to the caller under
/// a fresh random token, `lease_owner` on each returned row. Only that token can then record the
/// outcome, renew or hand the row back, so a worker whose lease ran out cannot overwrite the
/// worker that took the row over.
/// A claim moves `next_attempt_at` to the lease's end, so one index range finds all due rows in
/// order; `INDEXED BY` keeps the planner from the status index, which would sort the backlog.
pub fn claim_due(
    conn: &Connection,
    now: i64,
    lease_secs: i64,
    limit: usize,
) -> Result<Vec<Delivery>, Error> {
    let owner = getrandom::u64().map_err(|e| {
        Error::Io(std::io::Error::other(format!(
            "no randomness for a lease: {e}"
        )))
    })? as i64;
    let mut stmt = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET status = 'sending', lease_until = ?1 + ?2,
                 next_attempt_at = ?1 + ?2, attempts = attempts + 1, lease_owner = ?4
             WHERE id IN (
                 SELECT id FROM deliveries INDEXED BY deliveries_due
                 WHERE status IN ('queued', 'retrying', 'sending') AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?3)
             RETURNING {COLUMNS}"
        ))
        .map_err(classify_db_error)?;
    let mut rows: Vec<Delivery> = stmt
        .query_map(params![now, lease_secs, limit as i64, owner], from_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    rows.sort_by_key(|d| d.id);
    Ok(rows)
}

/// When the next queued or retrying row (or lease) is due, so the sender can sleep until then.
pub fn next_due_at(conn: &Connection) -> Result<Option<i64>, Error> {
    conn.query_row(
        "SELECT MIN(next_attempt_at) FROM deliveries INDEXED BY deliveries_due
         WHERE status IN ('queued', 'retrying', 'sending')",
        [],
        |r| r.get(0),
    )
    .map_err(classify_db_error)
}

/// Runs an update guarded by `id = ?1 AND status = 'sending' AND lease_owner = ?2`; true when
/// the caller still held the lease and the row changed.
fn update_leased(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map_err(classify_db_error)?;
    Ok(changed == 1)
}

/// Records a message the relay accepted. False (and nothing written) when `owner` no longer
/// holds the row's lease.
pub fn mark_sent(
    conn: &Connection,
    id: i64,
    owner: i64,
    message_id: &str,
    now: i64,
) -> Result<bool, Error> {
    update_leased(
        conn,
        "UPDATE deliveries SET status = 'sent', sent_at = ?3, message_id = ?4, lease_until = NULL,
             next_attempt_at = NULL, last_error = NULL, lease_owner = NULL
         WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        params![id, owner, now, message_id],
    )
}

/// Schedules another attempt; false when `owner` no longer holds the lease.
pub fn mark_retry(
    conn: &Connection,
    id: i64,
    owner: i64,
    error: &str,
    next_attempt_at: i64,
) -> Result<bool, Error> {
    update_leased(
        conn,
        "UPDATE deliveries SET status = 'retrying', last_error = ?3, next_attempt_at = ?4,
             lease_until = NULL, lease_owner = NULL
         WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        params![id, owner, error, next_attempt_at],
    )
}

/// Makes every row waiting for a retry due at `now`, e.g. once the SMTP settings changed and
/// what failed may go through now. Their attempts keep counting.
pub fn retry_now(conn: &Connection, now: i64) -> Result<usize, Error> {
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?1 WHERE status = 'retrying' AND next_attempt_at > ?1",
        [now],
    )
    .map_err(classify_db_error)
}

/// Gives up on a row; false when `owner` no longer holds the lease.
pub fn mark_failed(conn: &Connection, id: i64, owner: i64, error: &str) -> Result<bool, Error> {
    update_leased(
        conn,
        "UPDATE deliveries SET status = 'failed', last_error = ?3, next_attempt_at = NULL,
             lease_until = NULL, lease_owner = NULL
         WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        params![id, owner, error],
    )
}

/// Extends a lease to `until` while its holder is still busy with the row (a slow relay), so
/// no other worker claims it meanwhile. False when `owner` had already lost it.
pub fn renew_lease(conn: &Connection, id: i64, owner: i64, until: i64) -> Result<bool, Error> {
    update_leased(
        conn,
        "UPDATE deliveries SET lease_until = ?3, next_attempt_at = ?3
         WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        params![id, owner, until],
    )
}

/// Hands a claimed row back unsent: due at `now`, its claim not counted as an attempt. False
/// when `owner` no longer holds the lease (the new holder keeps the row).
pub fn release(conn: &Connection, id: i64, owner: i64, now: i64) -> Result<bool, Error> {
    update_leased(
        conn,
        "UPDATE deliveries SET status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'queued' END,
             attempts = attempts - 1, next_attempt_at = ?3, lease_until = NULL, lease_owner = NULL
         WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        params![id, owner, now],
    )
}

/// What a row handed back at start-up says until it is sent.
pub const INTERRUPTED: &str =
    "the server stopped while sending this email; it is sent again (same Message-ID)";

/// Makes every `sending` row due at `now`. Only for `serve` at start-up, under the lock in
/// `db::lock`: no other server is alive then, so every lease left is a dead process's. The
/// interrupted try stays counted, since it may have reached the relay.
pub fn hand_back_orphans(conn: &Connection, now: i64) -> Result<usize, Error> {
    conn.execute(
        "UPDATE deliveries SET status = 'retrying', next_attempt_at = ?1, lease_until = NULL,
             lease_owner = NULL, last_error = ?2
         WHERE status = 'sending'",
        params![now, INTERRUPTED],
    )
    .map_err(classify_db_error)
}

/// Clears a waiting note (e.g. once SMTP is configured).
pub fn clear_note(conn: &Connection, note: &str) -> Result<usize, Error> {
    conn.execute(
        "UPDATE deliveries SET last_error = NULL WHERE status IN ('queued', 'retrying') AND last_error = ?1",
        [note],
    )
    .map_err(classify_db_error)
}

/// Records on waiting rows why they wait (e.g. no SMTP settings), without changing when they
/// are due.
pub fn note_waiting(conn: &Connection, note: &str) -> Result<usize, Error> {
    conn.execute(
        "UPDATE deliveries SET last_error = ?1 WHERE status IN ('queued', 'retrying') AND last_error IS NOT ?1",
        [note],
    )
    .map_err(classify_db_error)
}

/// Queues a delivery again as a new row (the old one stays in the log as it was).
pub fn resend(conn: &Connection, id: i64, now: i64) -> Result<Option<i64>, Error> {
    let Some(old) = get(conn, id)? else {
        return Ok(None);
    };
    if old.recipient.is_none() || old.subject.is_none() {
        return Err(Error::Conflict {
            field: "id",
            message: format!(
                "delivery {id} was {} ({}) and has no email to resend",
                old.status,
                old.last_error.as_deref().unwrap_or("no reason recorded")
            ),
        });
    }
    conn.execute(
        "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key, trigger,
             template_id, product_id, plan_id, recipient, recipient_name, subject, html, text,
             status, next_attempt_at, created_at, resend_of, is_resend)
         SELECT integration_id, event_id, stripe_event_id, business_key, trigger, template_id,
             product_id, plan_id, recipient, recipient_name, subject, html, text,
             'queued', ?2, ?2, id, 1 FROM deliveries WHERE id = ?1",
        params![id, now],
    )
    .map_err(classify_db_error)?;
    Ok(Some(conn.last_insert_rowid()))
}

/// The delivery log's filters. Each combination is served by an index ending in `created_at`.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub status: Option<Status>,
    pub trigger: Option<TriggerKind>,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub recipient: Option<String>,
    pub since: Option<i64>,
    /// Paging: only rows older than this (created_at, id).
    pub before: Option<(i64, i64)>,
    pub limit: usize,
}

/// Newest first. Returns the SQL and its parameters so the benchmark can EXPLAIN the same query.
pub fn log_query(filter: &LogFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut sql = format!("SELECT {COLUMNS} FROM deliveries WHERE 1 = 1");
    let mut args: Vec<V> = Vec::new();
    let mut eq = |column: &str, value: Option<String>, sql: &mut String| {
        if let Some(v) = value {
            args.push(V::Text(v));
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    };
    eq(
        "status",
        filter.status.map(|s| s.as_str().to_owned()),
        &mut sql,
    );
    eq(
        "trigger",
        filter.trigger.map(|t| t.as_str().to_owned()),
        &mut sql,
    );
    eq("product_id", filter.product_id.clone(), &mut sql);
    eq("plan_id", filter.plan_id.clone(), &mut sql);
    eq(
        "recipient",
        filter.recipient.as_ref().map(|r| r.trim().to_lowercase()),
        &mut sql,
    );
    if let Some(since) = filter.since {
        args.push(V::Integer(since));
        sql.push_str(&format!(" AND created_at >= ?{}", args.len()));
    }
    if let Some((created, id)) = filter.before {
        args.push(V::Integer(created));
        args.push(V::Integer(id));
        sql.push_str(&format!(
            " AND (created_at, id) < (?{}, ?{})",
            args.len() - 1,
            args.len()
        ));
    }
    args.push(V::Integer(filter.limit.clamp(1, 1000) as i64));
    sql.push_str(&format!(
        " ORDER BY created_at DESC, id DESC LIMIT ?{}",
        args.len()
    ));
    (sql, args)
}

pub fn search(conn: &Connection, filter: &LogFilter) -> Result<Vec<Delivery>, Error> {
    let (sql, args) = log_query(filter);
    let mut stmt = conn.prepare_cached(&sql).map_err(classify_db_error)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), from_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// Counts per status, for the log summary and tests.
pub fn count_by_status(conn: &Connection) -> Result<Vec<(Status, i64)>, Error> {
    let mut stmt = conn
        .prepare_cached("SELECT status, COUNT(*) FROM deliveries GROUP BY status ORDER BY status")
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// Rows a big delete removes per transaction. A batch holds SQLite's write lock for
/// milliseconds, so webhook intake is answered between batches, not after the whole delete.
pub(crate) const DELETE_BATCH: usize = 500;
/// Bounds of the pause between two batches (see `delete_in_batches`).
const MIN_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Runs `batch` (one statement deleting at most `DELETE_BATCH` rows in its own transaction,
/// returning how many went) until a batch comes back short, and returns the total. Between
/// batches it pauses as long as the batch took: SQLite keeps no queue for its write lock, a
/// waiting writer polls for it (busy_timeout), so a deleter that went straight on would take the
/// lock again before intake's next poll.
pub(crate) fn delete_in_batches(
    mut batch: impl FnMut() -> Result<usize, Error>,
) -> Result<usize, Error> {
    let mut total = 0;
    loop {
        let started = Instant::now();
        let deleted = batch()?;
        total += deleted;
        if deleted < DELETE_BATCH {
            return Ok(total);
        }
        std::thread::sleep(started.elapsed().clamp(MIN_PAUSE, MAX_PAUSE));
    }
}

/// Deletes finished deliveries and processed events older than `before` (unix seconds), in
/// batches (see `delete_in_batches`). Rows still waiting to be sent are kept whatever their age.
pub fn prune(conn: &Connection, before: i64) -> Result<(usize, usize), Error> {
    // The status index holds exactly the finished rows by age: each batch starts at the front.
    let deliveries = delete_in_batches(|| {
        conn.prepare_cached(
            "DELETE FROM deliveries WHERE id IN (
                 SELECT id FROM deliveries INDEXED BY deliveries_status
                 WHERE status IN ('sent', 'failed', 'skipped') AND created_at < ?1 LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![before, DELETE_BATCH as i64]))
        .map_err(classify_db_error)
    })?;
    // Old events that must stay (pending, or behind a delivery still kept) are stepped over once:
    // each batch goes on from the last (received_at, id) the previous one deleted.
    let mut after = (i64::MIN, i64::MIN);
    let events = delete_in_batches(|| {
        let mut stmt = conn
            .prepare_cached(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events INDEXED BY events_received
                     WHERE received_at < ?1 AND (received_at, id) > (?2, ?3)
                       AND processing != 'pending'
                       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)
                     ORDER BY received_at, id LIMIT ?4)
                 RETURNING received_at, id",
            )
            .map_err(classify_db_error)?;
        let gone: Vec<(i64, i64)> = stmt
            .query_map(
                params![before, after.0, after.1, DELETE_BATCH as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .and_then(Iterator::collect)
            .map_err(classify_db_error)?;
        after = gone.iter().copied().max().unwrap_or(after);
        Ok(gone.len())
    })?;
    Ok((deliveries, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::integrations::{self, NewIntegration};

    #[test]
    fn a_delivery_resent_twice_can_be_pruned() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let shop = integrations::insert(
            &conn,
            &NewIntegration {
                name: "shop",
                webhook_secret: "whsec_test",
                api_key: None,
                stripe_account: None,
                from_address: None,
            },
        )
        .unwrap()
        .id;
        let mut new = NewDelivery::new(&shop, "evt_1", "in_1:paid", TriggerKind::PaymentReceived);
        new.recipient = Some("jenny@example.com".into());
        new.subject = Some("Thanks".into());
        let Inserted::New(original) = insert(&conn, &new, 100).unwrap() else {
            panic!("first insert is new");
        };
        conn.execute(
            "UPDATE deliveries SET status = 'sent' WHERE id = ?1",
            [original],
        )
        .unwrap();
        let first = resend(&conn, original, 200).unwrap().unwrap();
        let second = resend(&conn, original, 300).unwrap().unwrap();
        conn.execute(
            "UPDATE deliveries SET status = 'sent' WHERE id IN (?1, ?2)",
            [first, second],
        )
        .unwrap();

        // Retention takes the original (oldest) first; both resends lose their link to it.
        let (pruned, _) = prune(&conn, 150).unwrap();
        assert_eq!(pruned, 1);
        assert!(get(&conn, first).unwrap().unwrap().resend_of.is_none());
        assert_eq!(prune(&conn, 1000).unwrap().0, 2);
    }
}
