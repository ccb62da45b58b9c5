//! The `deliveries` table: the outbox and the delivery log in one. A row is written in the same
//! transaction that marks its event processed; the sender then claims due rows, and every
//! attempt's outcome is kept on the row (status, attempts, next attempt, last error).
//!
//! The rendered email (`html`, `text`) lives in `delivery_bodies` (V16), written once with its
//! delivery: the state changes rewrite a small row, never the bodies. Only what sends or shows
//! the email reads them (`claim_due`, `get`); the log's lists and counts do not.

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::turns::WriteTurns;
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
    /// The email's parts (`delivery_bodies`): None when it has none, and in rows read without
    /// them (`search`).
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
    /// Why it was not sent, when the merchant can fix it.
    pub reason: Option<Reason>,
    /// The version of `template_id` it was rendered from (None before V10).
    pub template_version: Option<i64>,
    /// The From address: the integration's own when written, then the one the latest attempt
    /// used (None: the default sender, not sent yet).
    pub from_address: Option<String>,
}

/// The delivery's own columns: everything but the bodies.
const COLUMNS: &str =
    "id, integration_id, event_id, stripe_event_id, business_key, trigger, template_id,
    product_id, plan_id, recipient, recipient_name, subject, status, attempts,
    next_attempt_at, lease_until, last_error, message_id, created_at, sent_at, resend_of,
    lease_owner, reason, template_version, from_address";

/// `COLUMNS` followed by the bodies, from `deliveries` joined by `WITH_BODIES`.
const COLUMNS_AND_BODIES: &str =
    "id, integration_id, event_id, stripe_event_id, business_key, trigger, template_id,
    product_id, plan_id, recipient, recipient_name, subject, status, attempts,
    next_attempt_at, lease_until, last_error, message_id, created_at, sent_at, resend_of,
    lease_owner, reason, template_version, from_address, html, text";

/// The bodies beside their delivery (none for a delivery that has none); `delivery_bodies`
/// shares no column name with `deliveries`, so the columns above need no table name.
const WITH_BODIES: &str =
    "deliveries LEFT JOIN delivery_bodies ON delivery_bodies.delivery_id = deliveries.id";

/// A row of `COLUMNS`, its bodies None.
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
        html: None,
        text: None,
        status: r.get(12)?,
        attempts: r.get(13)?,
        next_attempt_at: r.get(14)?,
        lease_until: r.get(15)?,
        last_error: r.get(16)?,
        message_id: r.get(17)?,
        created_at: r.get(18)?,
        sent_at: r.get(19)?,
        resend_of: r.get(20)?,
        lease_owner: r.get(21)?,
        reason: r.get(22)?,
        template_version: r.get(23)?,
        from_address: r.get(24)?,
    })
}

/// A row of `COLUMNS_AND_BODIES`.
fn with_bodies(r: &Row) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        html: r.get(25)?,
        text: r.get(26)?,
        ..from_row(r)?
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
    /// The version of the template it is rendered from.
    pub template_version: Option<i64>,
    /// The integration's own From address, if it has one (else the default sender's is used).
    pub from_address: Option<String>,
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
            template_version: None,
            from_address: None,
        }
    }
}

/// Inserts unless this business fact already has a delivery; returns the new id, or the id of
/// the delivery that already covers the fact. The bodies, if any, are written only with a new
/// row: a fact already covered keeps the email it had.
pub fn insert(conn: &Connection, new: &NewDelivery, now: i64) -> Result<Inserted, Error> {
    atomically(conn, |conn| insert_in(conn, new, now))
}

/// Runs `f` in the caller's transaction, or in one of its own when there is none, so a
/// delivery and its bodies are committed together.
fn atomically<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, Error>,
) -> Result<T, Error> {
    if !conn.is_autocommit() {
        return f(conn);
    }
    let tx = conn.unchecked_transaction().map_err(classify_db_error)?;
    let done = f(&tx)?;
    tx.commit().map_err(classify_db_error)?;
    Ok(done)
}

fn insert_in(conn: &Connection, new: &NewDelivery, now: i64) -> Result<Inserted, Error> {
    let status = new.status;
    let next = (status == Status::Queued).then_some(now);
    let changed = conn
        .prepare_cached(
            "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key, trigger,
                 template_id, product_id, plan_id, recipient, recipient_name, subject,
                 status, next_attempt_at, last_error, created_at, reason, template_version,
                 from_address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18)
             ON CONFLICT (integration_id, business_key) WHERE is_resend = 0 AND superseded_by IS NULL DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                new.integration_id, new.event_id, new.stripe_event_id, new.business_key, new.trigger,
                new.template_id, new.product_id, new.plan_id, new.recipient, new.recipient_name,
                new.subject, status, next, new.note, now, new.reason, new.template_version,
                new.from_address
            ])
        })
        .map_err(classify_db_error)?;
    if changed == 1 {
        let id = conn.last_insert_rowid();
        if new.html.is_some() || new.text.is_some() {
            conn.prepare_cached(
                "INSERT INTO delivery_bodies (delivery_id, html, text) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![id, new.html, new.text]))
            .map_err(classify_db_error)?;
        }
        return Ok(Inserted::New(id));
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

/// One delivery with its bodies (its page, the CLI's `log show`).
pub fn get(conn: &Connection, id: i64) -> Result<Option<Delivery>, Error> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS_AND_BODIES} FROM {WITH_BODIES} WHERE deliveries.id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], with_bodies).optional())
    .map_err(classify_db_error)
}

/// One delivery without its bodies.
fn get_state(conn: &Connection, id: i64) -> Result<Option<Delivery>, Error> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], from_row).optional())
        .map_err(classify_db_error)
}

/// Claims up to `limit` rows that are due (queued or retrying and past their time, or `sending`
/// with an expired lease, i.e. held by a worker that stalled) and leases them to the caller under
/// a fresh random token, `lease_owner` on each returned row. Only that token can then record the
/// outcome, renew or hand the row back, so a worker whose lease ran out cannot overwrite the
/// worker that took the row over.
/// A claim moves `next_attempt_at` to the lease's end, so one index range finds all due rows in
/// order; `INDEXED BY` keeps the planner from the status index, which would sort the backlog.
/// The claim updates only the small state row; the bodies are then read by id (RETURNING
/// cannot join), unchanged since the delivery was written.
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
                 ORDER BY next_attempt_at, id LIMIT CAST(?3 AS INTEGER))
             RETURNING {COLUMNS}"
        ))
        .map_err(classify_db_error)?;
    let mut rows: Vec<Delivery> = stmt
        .query_map(params![now, lease_secs, limit as i64, owner], from_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    rows.sort_by_key(|d| d.id);
    let mut bodies = conn
        .prepare_cached("SELECT html, text FROM delivery_bodies WHERE delivery_id = ?1")
        .map_err(classify_db_error)?;
    for d in &mut rows {
        if let Some((html, text)) = bodies
            .query_row([d.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(classify_db_error)?
        {
            (d.html, d.text) = (html, text);
        }
    }
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
    set_sent(conn, id, owner, message_id, now, None)
}

/// `mark_sent`, and the From address the message went out with when given (`record_attempt`
/// writes both in one UPDATE: one rewrite of the row, not two). The same for the two below.
fn set_sent(
    conn: &Connection,
    id: i64,
    owner: i64,
    message_id: &str,
    now: i64,
    from: Option<&str>,
) -> Result<bool, Error> {
    update_leased(
        conn,
        "UPDATE deliveries SET status = 'sent', sent_at = ?3, message_id = ?4, lease_until = NULL,
             next_attempt_at = NULL, last_error = NULL, lease_owner = NULL,
             from_address = COALESCE(?5, from_address)
         WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        params![id, owner, now, message_id, from],
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
    set_retry(conn, id, owner, error, next_attempt_at, None)
}

fn set_retry(
    conn: &Connection,
    id: i64,
    owner: i64,
    error: &str,
    next_attempt_at: i64,
    from: Option<&str>,
) -> Result<bool, Error> {
    update_leased(
        conn,
        "UPDATE deliveries SET status = 'retrying', last_error = ?3, next_attempt_at = ?4,
             lease_until = NULL, lease_owner = NULL, from_address = COALESCE(?5, from_address)
         WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        params![id, owner, error, next_attempt_at, from],
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
    set_failed(conn, id, owner, error, None)
}

fn set_failed(
    conn: &Connection,
    id: i64,
    owner: i64,
    error: &str,
    from: Option<&str>,
) -> Result<bool, Error> {
    update_leased(
        conn,
        "UPDATE deliveries SET status = 'failed', last_error = ?3, next_attempt_at = NULL,
             lease_until = NULL, lease_owner = NULL, from_address = COALESCE(?4, from_address)
         WHERE id = ?1 AND status = 'sending' AND lease_owner = ?2",
        params![id, owner, error, from],
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

/// Queues a delivery again as a new row with a copy of its bodies (the old one stays in the log
/// as it was), both in one transaction.
pub fn resend(conn: &Connection, id: i64, now: i64) -> Result<Option<i64>, Error> {
    let Some(old) = get_state(conn, id)? else {
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
    atomically(conn, |tx| {
        tx.execute(
        "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key, trigger,
             template_id, product_id, plan_id, recipient, recipient_name, subject,
             status, next_attempt_at, created_at, resend_of, is_resend, template_version,
             from_address)
         SELECT integration_id, event_id, stripe_event_id, business_key, trigger, template_id,
             product_id, plan_id, recipient, recipient_name, subject,
             'queued', ?2, ?2, id, 1, template_version, from_address FROM deliveries WHERE id = ?1",
        params![id, now],
    )
    .map_err(classify_db_error)?;
        let new = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO delivery_bodies (delivery_id, html, text)
         SELECT ?2, html, text FROM delivery_bodies WHERE delivery_id = ?1",
            params![id, new],
        )
        .map_err(classify_db_error)?;
        Ok(Some(new))
    })
}

/// What one attempt at sending came to (`delivery_attempts.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The relay accepted the message.
    Sent,
    /// A transient failure: another attempt is scheduled.
    Retry,
    /// A permanent failure, or the last transient one: the delivery failed.
    Failed,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 3] = [
        AttemptOutcome::Sent,
        AttemptOutcome::Retry,
        AttemptOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AttemptOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AttemptOutcome::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown attempt outcome {s:?}: use sent, retry or failed"))
    }
}

/// One row of `delivery_attempts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: i64,
    pub at: i64,
    pub outcome: AttemptOutcome,
    pub reply_code: Option<i64>,
    pub reply: String,
    pub duration_ms: Option<i64>,
}

/// What the sender learnt from one attempt, to record on its leased row.
#[derive(Debug, Clone)]
pub struct AttemptResult<'a> {
    pub id: i64,
    /// The lease token the attempt was made under.
    pub owner: i64,
    pub outcome: Outcome<'a>,
    /// The relay's reply (`250 2.0.0 Ok: queued as …`), or what went wrong without one; for a
    /// retry or a failure it is also the row's `last_error`.
    pub reply: &'a str,
    pub reply_code: Option<u16>,
    /// The From address the message went out with.
    pub from_address: &'a str,
    pub duration_ms: i64,
    pub now: i64,
}

/// The outcome of an attempt, with what the row needs for it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Sent { message_id: &'a str },
    Retry { next_attempt_at: i64 },
    Failed,
}

/// Records an attempt's outcome on its row (as `mark_sent`, `mark_retry` or `mark_failed`) with
/// the From address it used, in one UPDATE, and its `delivery_attempts` row, in one transaction.
/// False (and nothing written) when `owner` no longer holds the lease: the new holder's attempt
/// is the one that counts.
pub fn record_attempt(conn: &Connection, a: &AttemptResult) -> Result<bool, Error> {
    Ok(record_attempts(conn, std::slice::from_ref(a))?[0])
}

/// `record_attempt` for several attempts in one transaction (the sender's group commit of
/// outcomes): whether each row was still held.
pub fn record_attempts(conn: &Connection, all: &[AttemptResult]) -> Result<Vec<bool>, Error> {
    let tx = conn.unchecked_transaction().map_err(classify_db_error)?;
    let held = all
        .iter()
        .map(|a| record_in(&tx, a))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().map_err(classify_db_error)?;
    Ok(held)
}

fn record_in(tx: &Connection, a: &AttemptResult) -> Result<bool, Error> {
    let from = Some(a.from_address);
    let (held, outcome) = match a.outcome {
        Outcome::Sent { message_id } => (
            set_sent(tx, a.id, a.owner, message_id, a.now, from)?,
            AttemptOutcome::Sent,
        ),
        Outcome::Retry { next_attempt_at } => (
            set_retry(tx, a.id, a.owner, a.reply, next_attempt_at, from)?,
            AttemptOutcome::Retry,
        ),
        Outcome::Failed => (
            set_failed(tx, a.id, a.owner, a.reply, from)?,
            AttemptOutcome::Failed,
        ),
    };
    if !held {
        return Ok(false);
    }
    tx.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, at, outcome, reply_code, reply, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            a.id,
            a.now,
            outcome.as_str(),
            a.reply_code,
            a.reply,
            a.duration_ms
        ])
    })
    .map_err(classify_db_error)?;
    Ok(true)
}

/// A delivery's attempts, oldest first.
pub fn attempts(conn: &Connection, delivery_id: i64) -> Result<Vec<Attempt>, Error> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, delivery_id, at, outcome, reply_code, reply, duration_ms
             FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
        )
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([delivery_id], |r| {
            let outcome: String = r.get(3)?;
            Ok(Attempt {
                id: r.get(0)?,
                delivery_id: r.get(1)?,
                at: r.get(2)?,
                outcome: outcome.parse().map_err(|e: String| {
                    rusqlite::Error::FromSqlConversionFailure(
                        3,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?,
                reply_code: r.get(4)?,
                reply: r.get(5)?,
                duration_ms: r.get(6)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// The delivery log's filters and page. Every filter is an equality on an indexed column or a
/// range of `created_at`; `log_query` reads one index ending in `(created_at, id)` in order.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub status: Option<Status>,
    pub trigger: Option<TriggerKind>,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    /// The whole address (stored lower-cased).
    pub recipient: Option<String>,
    pub integration_id: Option<String>,
    /// Only rows created at or after this (unix seconds).
    pub since: Option<i64>,
    /// Only rows created before this (unix seconds).
    pub until: Option<i64>,
    /// Paging: only rows older than this (created_at, id), newest first.
    pub before: Option<(i64, i64)>,
    /// Paging back: only rows newer than this (created_at, id); the page nearest to it.
    pub after: Option<(i64, i64)>,
    pub limit: usize,
}

/// How many index entries one page of the log reads at most when some filter is not part of
/// the index it walks (e.g. status and trigger together): a rare combination is then searched
/// among the newest this-many rows of the index, page by page, rather than through the whole log.
pub const SEARCH_WINDOW: usize = 5_000;

/// The index a filter walks, and which filters it answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Walk {
    index: &'static str,
    /// Equality columns that lead the index, in its order.
    columns: &'static [&'static str],
}

impl LogFilter {
    /// The most selective index for these filters: a recipient's rows are few, a plan's fewer
    /// than its product's, a status (failed, skipped) rarer than an integration's or a trigger's.
    fn walk(&self) -> Walk {
        let walk = |index, columns| Walk { index, columns };
        if self.recipient.is_some() {
            walk("deliveries_recipient", &["recipient"][..])
        } else if self.plan_id.is_some() && self.trigger.is_some() {
            walk("deliveries_plan", &["plan_id", "trigger"][..])
        } else if self.plan_id.is_some() {
            walk("deliveries_plan_all", &["plan_id"][..])
        } else if self.product_id.is_some() && self.trigger.is_some() {
            walk("deliveries_product", &["product_id", "trigger"][..])
        } else if self.product_id.is_some() {
            walk("deliveries_product_all", &["product_id"][..])
        } else if self.status.is_some() {
            walk("deliveries_status", &["status"][..])
        } else if self.integration_id.is_some() {
            walk("deliveries_integration", &["integration_id"][..])
        } else if self.trigger.is_some() {
            walk("deliveries_trigger", &["trigger"][..])
        } else {
            walk("deliveries_created", &[][..])
        }
    }

    /// Every equality filter set, as (column, value).
    fn equalities(&self) -> Vec<(&'static str, String)> {
        let mut eq = Vec::new();
        if let Some(v) = &self.recipient {
            eq.push(("recipient", v.trim().to_lowercase()));
        }
        if let Some(v) = &self.plan_id {
            eq.push(("plan_id", v.clone()));
        }
        if let Some(v) = &self.product_id {
            eq.push(("product_id", v.clone()));
        }
        if let Some(v) = self.status {
            eq.push(("status", v.as_str().to_owned()));
        }
        if let Some(v) = &self.integration_id {
            eq.push(("integration_id", v.clone()));
        }
        if let Some(v) = self.trigger {
            eq.push(("trigger", v.as_str().to_owned()));
        }
        eq
    }

    /// The same filter with only what its index answers (the window's walk).
    fn walk_only(&self) -> LogFilter {
        let columns = self.walk().columns;
        let keep = |column: &str| columns.contains(&column);
        LogFilter {
            status: self.status.filter(|_| keep("status")),
            trigger: self.trigger.filter(|_| keep("trigger")),
            product_id: self.product_id.clone().filter(|_| keep("product_id")),
            plan_id: self.plan_id.clone().filter(|_| keep("plan_id")),
            recipient: self.recipient.clone().filter(|_| keep("recipient")),
            integration_id: self
                .integration_id
                .clone()
                .filter(|_| keep("integration_id")),
            ..self.clone()
        }
    }

    /// Whether some filter is checked row by row rather than answered by the index, so that a
    /// page reads at most `SEARCH_WINDOW` index entries.
    pub fn is_windowed(&self) -> bool {
        let walk = self.walk();
        self.equalities()
            .iter()
            .any(|(column, _)| !walk.columns.contains(column))
    }
}

/// The statement for one page of the log (newest first; oldest first for `after`, which the
/// caller reverses), reading `walk.index` in order, `limit` rows, no sort. With `bound`, only
/// index entries up to that key (the end of the search window) are read.
fn page_query(
    filter: &LogFilter,
    columns: &str,
    bound: Option<(i64, i64)>,
    limit: usize,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let walk = filter.walk();
    let mut sql = format!(
        "SELECT {columns} FROM deliveries INDEXED BY {} WHERE 1 = 1",
        walk.index
    );
    let mut args: Vec<V> = Vec::new();
    // The index's own columns first, then the rest: the planner reads the index either way,
    // and the others are checked on each row it reaches.
    let mut eq = filter.equalities();
    eq.sort_by_key(|(column, _)| !walk.columns.contains(column));
    for (column, value) in eq {
        args.push(V::Text(value));
        sql.push_str(&format!(" AND {column} = ?{}", args.len()));
    }
    if let Some(since) = filter.since {
        args.push(V::Integer(since));
        sql.push_str(&format!(" AND created_at >= ?{}", args.len()));
    }
    if let Some(until) = filter.until {
        args.push(V::Integer(until));
        sql.push_str(&format!(" AND created_at < ?{}", args.len()));
    }
    let newer = filter.after.is_some() && filter.before.is_none();
    let mut key = |op: &str, (created, id): (i64, i64), sql: &mut String| {
        args.push(V::Integer(created));
        args.push(V::Integer(id));
        sql.push_str(&format!(
            " AND (created_at, id) {op} (?{}, ?{})",
            args.len() - 1,
            args.len()
        ));
    };
    match (filter.before, filter.after) {
        (Some(before), _) => key("<", before, &mut sql),
        (None, Some(after)) => key(">", after, &mut sql),
        (None, None) => {}
    }
    if let Some(bound) = bound {
        key(if newer { "<=" } else { ">=" }, bound, &mut sql);
    }
    args.push(V::Integer(limit as i64));
    let order = if newer { "ASC" } else { "DESC" };
    sql.push_str(&format!(
        " ORDER BY created_at {order}, id {order} LIMIT CAST(?{} AS INTEGER)",
        args.len()
    ));
    (sql, args)
}

/// The SQL of one page for `filter` (up to `filter.limit` rows, at most 1000), as `search` runs
/// it when the whole page lies within the search window; the benchmark and a test EXPLAIN it.
pub fn log_query(filter: &LogFilter) -> (String, Vec<rusqlite::types::Value>) {
    page_query(filter, COLUMNS, None, filter.limit.clamp(1, 1000))
}

/// The rows of the log as a page shows them: no bodies (a row's HTML is read only on its page).
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub id: i64,
    pub integration_id: String,
    pub trigger: TriggerKind,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub status: Status,
    pub created_at: i64,
}

const ROW_COLUMNS: &str =
    "id, integration_id, trigger, product_id, plan_id, recipient, subject, status, created_at";

fn log_row(r: &Row) -> rusqlite::Result<LogRow> {
    Ok(LogRow {
        id: r.get(0)?,
        integration_id: r.get(1)?,
        trigger: r.get(2)?,
        product_id: r.get(3)?,
        plan_id: r.get(4)?,
        recipient: r.get(5)?,
        subject: r.get(6)?,
        status: r.get(7)?,
        created_at: r.get(8)?,
    })
}

/// One page of the log, newest first, and where the pages beside it start.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage<T> {
    pub rows: Vec<T>,
    /// `before` for the next older page, if there may be one.
    pub older: Option<(i64, i64)>,
    /// `after` for the next newer page, if there may be one.
    pub newer: Option<(i64, i64)>,
    /// The page was cut short by the search window: only `SEARCH_WINDOW` rows of the index were
    /// read, and `older` (or `newer`, going back) goes on from where the search stopped.
    pub window_ended: bool,
}

/// One page of the log for `filter`. At most `filter.limit` rows (1 to 1000); reads at most
/// `SEARCH_WINDOW` index entries when some filter is checked row by row (`is_windowed`).
pub fn log_page(conn: &Connection, filter: &LogFilter) -> Result<LogPage<LogRow>, Error> {
    page(conn, filter, ROW_COLUMNS, log_row, |r| (r.created_at, r.id))
}

fn page<T>(
    conn: &Connection,
    filter: &LogFilter,
    columns: &str,
    from_row: fn(&Row) -> rusqlite::Result<T>,
    key: fn(&T) -> (i64, i64),
) -> Result<LogPage<T>, Error> {
    let limit = filter.limit.clamp(1, 1000);
    let newer = filter.after.is_some() && filter.before.is_none();
    // The last index entry of the search window, when the window does not reach the end: read
    // from the index alone (its entries hold created_at and id), never from the table.
    let bound = match filter.is_windowed() {
        true => {
            let (sql, mut args) = page_query(&filter.walk_only(), "created_at, id", None, 1);
            // The window's last entry: the query above with `LIMIT 1 OFFSET window - 1`, a
            // skip over index entries only.
            args.push(rusqlite::types::Value::Integer(SEARCH_WINDOW as i64 - 1));
            let sql = format!("{sql} OFFSET CAST(?{} AS INTEGER)", args.len());
            conn.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params_from_iter(args), |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(classify_db_error)?
        }
        false => None,
    };
    let (sql, args) = page_query(filter, columns, bound, limit + 1);
    let mut stmt = conn.prepare_cached(&sql).map_err(classify_db_error)?;
    let mut rows: Vec<T> = stmt
        .query_map(rusqlite::params_from_iter(args), from_row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let window_ended = !more && bound.is_some();
    // Where the search goes on in the direction of reading: after the last row shown, or after
    // the window's end when the window ended first.
    let onward = match (more, bound) {
        (true, _) => rows.last().map(key),
        (false, Some(bound)) => Some(bound),
        (false, None) => None,
    };
    if newer {
        rows.reverse();
        // Back towards older rows: from the oldest row shown, or from just past `after` when
        // nothing was found (the row at `after` itself belongs to the older page).
        let older = rows
            .last()
            .map(key)
            .or(filter.after.map(|(c, id)| (c, id + 1)));
        return Ok(LogPage {
            rows,
            older,
            newer: onward,
            window_ended,
        });
    }
    let newer_start = match filter.before {
        Some((c, id)) => rows.first().map(key).or(Some((c, id - 1))),
        None => None,
    };
    Ok(LogPage {
        rows,
        older: onward,
        newer: newer_start,
        window_ended,
    })
}

/// Deliveries matching `filter`, newest first, without their bodies (`html` and `text` None: a
/// list never reads them; `get` does): the CLI's `log`.
pub fn search(conn: &Connection, filter: &LogFilter) -> Result<Vec<Delivery>, Error> {
    Ok(page(conn, filter, COLUMNS, from_row, |d| (d.created_at, d.id))?.rows)
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
pub(crate) const MIN_PAUSE: Duration = Duration::from_millis(2);
pub(crate) const MAX_PAUSE: Duration = Duration::from_millis(100);

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
pub fn prune(conn: &Connection, before: i64, turns: &WriteTurns) -> Result<(usize, usize), Error> {
    // The status index holds exactly the finished rows by age: each batch starts at the front.
    let deliveries = delete_in_batches(|| {
        let _turn = turns.background_turn();
        conn.prepare_cached(
            "DELETE FROM deliveries WHERE id IN (
                 SELECT id FROM deliveries INDEXED BY deliveries_status
                 WHERE status IN ('sent', 'failed', 'skipped') AND created_at < ?1 LIMIT CAST(?2 AS INTEGER))",
        )
        .and_then(|mut s| s.execute(params![before, DELETE_BATCH as i64]))
        .map_err(classify_db_error)
    })?;
    // Old events that must stay (pending, or behind a delivery still kept) are stepped over once:
    // each batch goes on from the last (received_at, id) the previous one deleted.
    let mut after = (i64::MIN, i64::MIN);
    let events = delete_in_batches(|| {
        let _turn = turns.background_turn();
        let mut stmt = conn
            .prepare_cached(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events INDEXED BY events_received
                     WHERE received_at < ?1 AND (received_at, id) > (?2, ?3)
                       AND processing != 'pending'
                       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)
                     ORDER BY received_at, id LIMIT CAST(?4 AS INTEGER))
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
    use crate::db::integrations;

    #[test]
    fn a_delivery_resent_twice_can_be_pruned() {
        let mut conn = crate::db::memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let shop = crate::db::test_integration(&conn, "shop");
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
        let (pruned, _) = prune(&conn, 150, &Default::default()).unwrap();
        assert_eq!(pruned, 1);
        assert!(get(&conn, first).unwrap().unwrap().resend_of.is_none());
        assert_eq!(prune(&conn, 1000, &Default::default()).unwrap().0, 2);
    }

    fn migrated() -> (Connection, String) {
        let mut conn = crate::db::memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let shop = crate::db::test_integration(&conn, "shop");
        (conn, shop)
    }

    /// Every filter the log offers, alone and in every combination, with every kind of page:
    /// each statement reads the index `walk` picked, in order, never sorting and never a table
    /// scan; the window's bound query reads the index alone.
    #[test]
    fn every_filter_combination_reads_its_index_in_order() {
        let (conn, shop) = migrated();
        let plan_of = |sql: &str, args: Vec<rusqlite::types::Value>| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.join("; ")
        };
        for mask in 0..(1u32 << 8) {
            let on = |bit: u32| mask & (1 << bit) != 0;
            let base = LogFilter {
                status: on(0).then_some(Status::Failed),
                trigger: on(1).then_some(TriggerKind::PaymentFailed),
                product_id: on(2).then(|| "prod_1".to_owned()),
                plan_id: on(3).then(|| "price_1".to_owned()),
                recipient: on(4).then(|| "jenny@example.com".to_owned()),
                integration_id: on(5).then(|| shop.clone()),
                since: on(6).then_some(100),
                until: on(7).then_some(200),
                limit: 50,
                ..LogFilter::default()
            };
            for (before, after) in [(None, None), (Some((150, 7)), None), (None, Some((150, 7)))] {
                let filter = LogFilter {
                    before,
                    after,
                    ..base.clone()
                };
                let index = filter.walk().index;
                for bound in [None, Some((120, 3))] {
                    let (sql, args) = page_query(&filter, ROW_COLUMNS, bound, 51);
                    let plan = plan_of(&sql, args);
                    // A scan (no range on the index) only for the whole log, newest first,
                    // which the LIMIT ends after one page.
                    let whole_log = mask == 0 && before.is_none() && after.is_none();
                    let read = match whole_log && bound.is_none() {
                        true => format!("SCAN deliveries USING INDEX {index}"),
                        false => format!("SEARCH deliveries USING INDEX {index} ("),
                    };
                    assert!(
                        plan.contains(&read) && !plan.contains("TEMP B-TREE"),
                        "{filter:?} {bound:?}: {plan}"
                    );
                }
                if filter.is_windowed() {
                    let (sql, args) = page_query(&filter.walk_only(), "created_at, id", None, 1);
                    let plan = plan_of(&sql, args);
                    assert!(
                        plan.contains(&format!("SEARCH deliveries USING COVERING INDEX {index} ("))
                            && !plan.contains("TEMP B-TREE"),
                        "bound of {filter:?}: {plan}"
                    );
                }
            }
        }
    }

    /// A combination no index answers is searched `SEARCH_WINDOW` rows at a time: a match older
    /// than the window is found on a later page, none is repeated, and the page says where the
    /// search stopped.
    #[test]
    fn a_rare_combination_is_searched_window_by_window() {
        let (conn, shop) = migrated();
        let rows = SEARCH_WINDOW * 2 + 500;
        let tx = conn.unchecked_transaction().unwrap();
        for n in 0..rows {
            // Failed payment_failed rows: the oldest, and one just inside the second window.
            let rare = n == 0 || n == 1_000;
            let mut new = NewDelivery::new(
                &shop,
                format!("evt_{n}"),
                format!("key_{n}"),
                if rare {
                    TriggerKind::PaymentFailed
                } else {
                    TriggerKind::PaymentReceived
                },
            );
            new.status = Status::Failed;
            insert(&tx, &new, 1_000 + n as i64 / 10).unwrap();
        }
        tx.commit().unwrap();
        let filter = LogFilter {
            status: Some(Status::Failed),
            trigger: Some(TriggerKind::PaymentFailed),
            limit: 50,
            ..LogFilter::default()
        };
        assert!(filter.is_windowed());
        let mut found = Vec::new();
        let mut pages = 0;
        let mut next = Some(filter.clone());
        while let Some(f) = next {
            let page = log_page(&conn, &f).unwrap();
            pages += 1;
            found.extend(page.rows.iter().map(|r| r.id));
            assert!(page
                .rows
                .iter()
                .all(|r| r.trigger == TriggerKind::PaymentFailed));
            next = page.older.map(|before| LogFilter {
                before: Some(before),
                ..filter.clone()
            });
            if page.older.is_some() {
                assert!(page.window_ended || page.rows.len() == 50);
            }
        }
        assert_eq!(found, [1_001, 1]);
        // Three windows: the newest holds nothing, the second one match, the last the other.
        assert_eq!(pages, 3);

        // Back from the oldest match: Newer finds the other, then the newest window, empty.
        let oldest = log_page(
            &conn,
            &LogFilter {
                before: Some((1_000 + 1_000 / 10, 1_001)),
                ..filter.clone()
            },
        )
        .unwrap();
        assert_eq!(oldest.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1]);
        let newer = log_page(
            &conn,
            &LogFilter {
                after: oldest.newer,
                ..filter.clone()
            },
        )
        .unwrap();
        assert_eq!(newer.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1_001]);
    }

    /// An attempt is recorded with its outcome, only by the lease's holder, and goes with its
    /// delivery when retention deletes that.
    #[test]
    fn attempts_are_recorded_by_the_lease_holder_and_pruned_with_their_delivery() {
        let (conn, shop) = migrated();
        let mut new = NewDelivery::new(&shop, "evt_1", "in_1:paid", TriggerKind::PaymentReceived);
        new.recipient = Some("jenny@example.com".into());
        new.subject = Some("Thanks".into());
        let Inserted::New(id) = insert(&conn, &new, 100).unwrap() else {
            panic!("new");
        };
        let claimed = claim_due(&conn, 100, 300, 10).unwrap();
        let owner = claimed[0].lease_owner.unwrap();
        let attempt = |owner: i64, outcome: Outcome<'static>, reply: &'static str| AttemptResult {
            id,
            owner,
            outcome,
            reply,
            reply_code: reply.get(..3).and_then(|c| c.parse().ok()),
            from_address: "billing@example.com",
            duration_ms: 12,
            now: 101,
        };
        assert!(!record_attempt(&conn, &attempt(owner + 1, Outcome::Failed, "550 no")).unwrap());
        assert!(record_attempt(
            &conn,
            &attempt(
                owner,
                Outcome::Retry {
                    next_attempt_at: 102
                },
                "451 later"
            )
        )
        .unwrap());
        let owner = claim_due(&conn, 102, 300, 10).unwrap()[0]
            .lease_owner
            .unwrap();
        assert!(record_attempt(
            &conn,
            &attempt(
                owner,
                Outcome::Sent {
                    message_id: "<1.100@example.com>"
                },
                "250 ok"
            )
        )
        .unwrap());
        let got: Vec<(AttemptOutcome, Option<i64>)> = attempts(&conn, id)
            .unwrap()
            .into_iter()
            .map(|a| (a.outcome, a.reply_code))
            .collect();
        assert_eq!(
            got,
            [
                (AttemptOutcome::Retry, Some(451)),
                (AttemptOutcome::Sent, Some(250))
            ]
        );
        let d = get(&conn, id).unwrap().unwrap();
        assert_eq!(
            (d.status, d.from_address.as_deref()),
            (Status::Sent, Some("billing@example.com"))
        );
        assert_eq!(prune(&conn, 1_000, &Default::default()).unwrap().0, 1);
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM delivery_attempts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    /// A queued delivery with `body` as both parts, `id` 1.
    fn queued_with(conn: &Connection, shop: &str, body: &str) -> i64 {
        let mut new = NewDelivery::new(shop, "evt_1", "in_1:paid", TriggerKind::PaymentReceived);
        new.recipient = Some("jenny@example.com".into());
        new.subject = Some("Thanks".into());
        new.html = Some(format!("<p>{body}</p>"));
        new.text = Some(body.to_owned());
        let Inserted::New(id) = insert(conn, &new, 100).unwrap() else {
            panic!("new");
        };
        id
    }

    /// WAL frames the sender's claim and its `sent` mark write for a delivery whose parts are
    /// `body_len` bytes each, on a file database with no checkpoint in between.
    fn frames_to_claim_and_send(body_len: usize) -> i64 {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::db::Options::at(&dir.path().join("t.db"))
            .unwrap()
            .with_background_checkpoints();
        let mut conn = crate::db::open(&options).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let shop = crate::db::test_integration(&conn, "shop");
        // Not one repeated byte: compressible bodies are no concern of SQLite, but keep it real.
        let body: String = (0..body_len)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let id = queued_with(&conn, &shop, &body);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let claimed = claim_due(&conn, 100, 300, 10).unwrap();
        assert_eq!(claimed[0].text.as_deref(), Some(body.as_str()), "claimed");
        let sent = AttemptResult {
            id,
            owner: claimed[0].lease_owner.unwrap(),
            outcome: Outcome::Sent {
                message_id: "<1.100@example.com>",
            },
            reply: "250 ok",
            reply_code: Some(250),
            from_address: "billing@example.com",
            duration_ms: 12,
            now: 101,
        };
        assert!(record_attempt(&conn, &sent).unwrap());
        // (busy, frames in the WAL, frames checkpointed): the WAL was empty before the claim.
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    /// Issue 13, item 6: the claim and the `sent` mark rewrite the delivery's state, never its
    /// bodies. With 6 KB parts in the row (before V16) the two commits wrote 22 WAL frames
    /// against 10 for one-byte parts (the overflow chain freed and written again each time);
    /// now they write what a delivery with one-byte parts writes.
    #[test]
    fn claiming_and_marking_sent_write_no_page_of_the_bodies() {
        let small = frames_to_claim_and_send(1);
        let big = frames_to_claim_and_send(6 * 1024);
        assert!(small > 0);
        assert_eq!(
            big, small,
            "6 KB bodies: {big} WAL frames, 1-byte bodies: {small}"
        );
    }

    /// The claim hands the sender the bodies byte for byte; the log's lists and `search` do not
    /// read them; a resend copies them; and every delete (retention, an integration's erase)
    /// takes a delivery's bodies with it.
    #[test]
    fn bodies_go_with_their_delivery() {
        let (conn, shop) = migrated();
        let body = "Grüße, \u{0}\r\n<b>&amp;</b> ✓".repeat(300);
        let id = queued_with(&conn, &shop, &body);
        let mut skipped = NewDelivery::new(&shop, "evt_2", "in_2:paid", TriggerKind::PaymentFailed);
        skipped.status = Status::Skipped;
        let Inserted::New(skipped) = insert(&conn, &skipped, 100).unwrap() else {
            panic!("new");
        };
        let bodies = |conn: &Connection| -> i64 {
            conn.query_row("SELECT COUNT(*) FROM delivery_bodies", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            bodies(&conn),
            1,
            "a delivery without an email has no bodies row"
        );
        let d = get(&conn, skipped).unwrap().unwrap();
        assert_eq!((d.html, d.text), (None, None));

        // Covered already: the second insert neither writes nor replaces the bodies.
        let mut again = NewDelivery::new(&shop, "evt_1", "in_1:paid", TriggerKind::PaymentReceived);
        again.html = Some("other".into());
        assert_eq!(
            insert(&conn, &again, 100).unwrap(),
            Inserted::AlreadyCovered(id)
        );
        assert_eq!(bodies(&conn), 1);

        let claimed = claim_due(&conn, 100, 300, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            claimed[0].html.as_deref(),
            Some(format!("<p>{body}</p>").as_str())
        );
        assert_eq!(claimed[0].text.as_deref(), Some(body.as_str()));
        assert!(mark_sent(&conn, id, claimed[0].lease_owner.unwrap(), "<m@x>", 100).unwrap());
        let listed = search(
            &conn,
            &LogFilter {
                limit: 10,
                ..LogFilter::default()
            },
        )
        .unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|d| d.html.is_none() && d.text.is_none()));

        let copy = resend(&conn, id, 200).unwrap().unwrap();
        let copy = get(&conn, copy).unwrap().unwrap();
        assert_eq!(copy.text.as_deref(), Some(body.as_str()));
        assert_eq!(
            copy.html.as_deref(),
            Some(format!("<p>{body}</p>").as_str())
        );
        assert_eq!(bodies(&conn), 2);

        // Retention takes the sent original and the skipped row, not the queued resend.
        assert_eq!(prune(&conn, 150, &Default::default()).unwrap().0, 2);
        assert_eq!(bodies(&conn), 1);
        // Erasing the integration takes the rest.
        while integrations::erase_batch(&conn, &shop, integrations::Held::Deliveries).unwrap() > 0 {
        }
        assert_eq!(bodies(&conn), 0);
        let orphans: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM delivery_bodies b
                 WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = b.delivery_id)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
    }
}
