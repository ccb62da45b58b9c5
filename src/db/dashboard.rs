//! The dashboard's reads: delivery counts per day from `daily_counts` (kept exact by triggers on
//! `deliveries`, see `migrations/V7__daily_counts.sql`), and the queries behind "what needs
//! attention". Each one reads an index range bounded by a few days or a handful of rows, never
//! the whole log, so the page costs the same with a million deliveries as with ten.

use rusqlite::{params, Connection, OptionalExtension};

use super::deliveries::{Reason, Status};
use crate::error::{classify_db_error, Error};
use crate::trigger::TriggerKind;

pub const DAY: i64 = 86_400;

/// The UTC day (days since 1970-01-01) a unix time falls on, as `daily_counts.day` has it.
pub fn day_of(unix: i64) -> i64 {
    unix.div_euclid(DAY)
}

/// Deliveries by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub retrying: i64,
    pub failed: i64,
    pub skipped: i64,
}

impl Counts {
    pub fn add(&mut self, status: Status, n: i64) {
        *match status {
            Status::Queued => &mut self.queued,
            Status::Sending => &mut self.sending,
            Status::Sent => &mut self.sent,
            Status::Retrying => &mut self.retrying,
            Status::Failed => &mut self.failed,
            Status::Skipped => &mut self.skipped,
        } += n;
    }

    /// Still to go out: queued, being sent, or waiting for another try.
    pub fn waiting(&self) -> i64 {
        self.queued + self.sending + self.retrying
    }

    pub fn total(&self) -> i64 {
        self.waiting() + self.sent + self.failed + self.skipped
    }

    pub fn plus(mut self, other: &Counts) -> Counts {
        for status in Status::ALL {
            self.add(status, other.get(status));
        }
        self
    }

    pub fn get(&self, status: Status) -> i64 {
        match status {
            Status::Queued => self.queued,
            Status::Sending => self.sending,
            Status::Sent => self.sent,
            Status::Retrying => self.retrying,
            Status::Failed => self.failed,
            Status::Skipped => self.skipped,
        }
    }
}

/// Counts of the deliveries created on each UTC day from `first_day` to `last_day` (inclusive),
/// every integration together; one entry per day, oldest first, days without deliveries
/// included with zeros.
pub fn per_day(
    conn: &Connection,
    first_day: i64,
    last_day: i64,
) -> Result<Vec<(i64, Counts)>, Error> {
    let mut days: Vec<(i64, Counts)> = (first_day..=last_day)
        .map(|d| (d, Counts::default()))
        .collect();
    let mut stmt = conn
        .prepare_cached(sql::PER_DAY)
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map(params![first_day, last_day], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Status>(1)?, r.get(2)?))
        })
        .map_err(classify_db_error)?;
    for row in rows {
        let (day, status, n) = row.map_err(classify_db_error)?;
        if let Some((_, counts)) = days.get_mut((day - first_day) as usize) {
            counts.add(status, n);
        }
    }
    Ok(days)
}

/// Counts over every day kept, every integration together: a scan of `daily_counts`, whose
/// rows are days × statuses × integrations (a few thousand after a year), never of the log.
pub fn totals(conn: &Connection) -> Result<Counts, Error> {
    let mut stmt = conn
        .prepare_cached(sql::TOTALS)
        .map_err(classify_db_error)?;
    let rows: Vec<(Status, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    let mut counts = Counts::default();
    for (status, n) in rows {
        counts.add(status, n);
    }
    Ok(counts)
}

/// One delivery as a list shows it: no bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub integration_id: String,
    pub trigger: TriggerKind,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub status: Status,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// The statements, public so the benchmark can show each one's `EXPLAIN QUERY PLAN`.
pub mod sql {
    /// `?1`, `?2`: the first and last day.
    pub const PER_DAY: &str = "SELECT day, status, SUM(n) FROM daily_counts
        WHERE day BETWEEN ?1 AND ?2 GROUP BY day, status";
    pub const TOTALS: &str = "SELECT status, SUM(n) FROM daily_counts GROUP BY status";
    /// `?1`: how many.
    pub const LATEST: &str = "SELECT id, integration_id, trigger, recipient, subject, status,
            last_error, created_at, sent_at
        FROM deliveries ORDER BY created_at DESC, id DESC LIMIT CAST(?1 AS INTEGER)";
    /// `?1`: the first day.
    pub const FAILED_COUNT: &str =
        "SELECT COALESCE(SUM(n), 0) FROM daily_counts WHERE day >= ?1 AND status = 'failed'";
    /// `?1`: since (unix seconds).
    pub const FAILED_RESENT: &str = "SELECT COUNT(DISTINCT o.id)
        FROM deliveries r INDEXED BY deliveries_resend_of JOIN deliveries o ON o.id = r.resend_of
        WHERE r.resend_of IS NOT NULL AND o.status = 'failed' AND o.created_at >= ?1";
    /// `?1`: since (unix seconds).
    pub const FAILED_NEWEST: &str = "SELECT id, integration_id, trigger, recipient, subject,
            status, last_error, created_at, sent_at
        FROM deliveries d INDEXED BY deliveries_status
        WHERE status = 'failed' AND created_at >= ?1 AND reason IS NULL
          AND superseded_by IS NULL
          AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.resend_of = d.id)
        ORDER BY created_at DESC, id DESC LIMIT 1";
    /// `?1`: since (unix seconds).
    pub const FAILED_WITH_REASON: &str =
        "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_reason
        WHERE reason IS NOT NULL AND created_at >= ?1 AND status = 'failed'
          AND superseded_by IS NULL";
    /// `?1`: since (unix seconds). Failures without a reason that an event processed again
    /// replaced (and that were not resent too, which `FAILED_RESENT` counts).
    pub const FAILED_SUPERSEDED: &str = "SELECT COUNT(*)
        FROM deliveries d INDEXED BY deliveries_superseded
        WHERE superseded_by IS NOT NULL AND status = 'failed' AND reason IS NULL
          AND created_at >= ?1
          AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.resend_of = d.id)";
    /// `?1`: since (unix seconds).
    pub const NOT_SENT: &str = "SELECT integration_id, reason, COUNT(*), MAX(created_at)
        FROM deliveries INDEXED BY deliveries_reason
        WHERE reason IS NOT NULL AND created_at >= ?1 AND superseded_by IS NULL
        GROUP BY integration_id, reason ORDER BY integration_id, reason";
    /// Each integration's newest event, as the event processor records it (migration V12).
    pub const ACTIVITY: &str = "SELECT id, last_event_at FROM integrations ORDER BY created_at, id";
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        integration_id: r.get(1)?,
        trigger: r.get(2)?,
        recipient: r.get(3)?,
        subject: r.get(4)?,
        status: r.get(5)?,
        last_error: r.get(6)?,
        created_at: r.get(7)?,
        sent_at: r.get(8)?,
    })
}

/// The newest deliveries, newest first (index `deliveries_created`, read backwards).
pub fn latest(conn: &Connection, limit: usize) -> Result<Vec<Row>, Error> {
    let mut stmt = conn
        .prepare_cached(sql::LATEST)
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([limit as i64], row)
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// Failed deliveries created on `first_day` (a `day_of`) or later that have not been sent again
/// (a resend is the fix) and have no `Reason` (those are counted by `not_sent_since`), and the
/// newest of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub count: i64,
    pub newest: Option<Row>,
}

pub fn failed_since(conn: &Connection, first_day: i64) -> Result<Failed, Error> {
    let since = first_day * DAY;
    // Failed rows from the daily counts, less those resent:
    // resends are few (a person asks for each), and `deliveries_resend_of` holds only them.
    let failed: i64 = conn
        .prepare_cached(sql::FAILED_COUNT)
        .and_then(|mut s| s.query_row([first_day], |r| r.get(0)))
        .map_err(classify_db_error)?;
    let resent: i64 = conn
        .prepare_cached(sql::FAILED_RESENT)
        .and_then(|mut s| s.query_row([since], |r| r.get(0)))
        .map_err(classify_db_error)?;
    // Failures an event processed again has replaced need nothing more: few, and indexed.
    let superseded: i64 = conn
        .prepare_cached(sql::FAILED_SUPERSEDED)
        .and_then(|mut s| s.query_row([since], |r| r.get(0)))
        .map_err(classify_db_error)?;
    // Failures with a reason are brought up with that reason (`not_sent_since`), not here.
    let with_reason: i64 = conn
        .prepare_cached(sql::FAILED_WITH_REASON)
        .and_then(|mut s| s.query_row([since], |r| r.get(0)))
        .map_err(classify_db_error)?;
    // The newest failed row not resent: index `deliveries_status` backwards from the newest.
    let newest = conn
        .prepare_cached(sql::FAILED_NEWEST)
        .and_then(|mut s| s.query_row([since], row).optional())
        .map_err(classify_db_error)?;
    Ok(Failed {
        count: failed - resent - superseded - with_reason,
        newest,
    })
}

/// Deliveries not sent for one `Reason`, per integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    pub integration_id: String,
    pub reason: Reason,
    pub count: i64,
    pub newest_at: i64,
}

/// Deliveries created since `since` with a reason, grouped by integration and reason (index
/// `deliveries_reason`, which holds only such rows).
pub fn not_sent_since(conn: &Connection, since: i64) -> Result<Vec<NotSent>, Error> {
    let mut stmt = conn
        .prepare_cached(sql::NOT_SENT)
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([since], |r| {
            Ok(NotSent {
                integration_id: r.get(0)?,
                reason: r.get(1)?,
                count: r.get(2)?,
                newest_at: r.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

/// What an integration has received, as far as the dashboard asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub integration_id: String,
    /// Whether any event was ever stored for it.
    pub any_event: bool,
    /// Its newest event received since the `since` given, if any.
    pub latest_since: Option<i64>,
}

/// For each integration: has it ever received an event, and its newest event since `since`.
/// Read from the integration rows, which the event processor keeps current, so it never
/// touches `events`.
pub fn activity(conn: &Connection, since: i64) -> Result<Vec<Activity>, Error> {
    let mut stmt = conn
        .prepare_cached(sql::ACTIVITY)
        .map_err(classify_db_error)?;
    let rows = stmt
        .query_map([], |r| {
            let last: Option<i64> = r.get(1)?;
            Ok(Activity {
                integration_id: r.get(0)?,
                any_event: last.is_some(),
                latest_since: last.filter(|at| *at >= since),
            })
        })
        .and_then(Iterator::collect)
        .map_err(classify_db_error)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::db::deliveries::{self, Inserted, NewDelivery};
    use crate::db::integrations;

    fn memory() -> Connection {
        let mut conn = crate::db::memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn
    }

    type Key = (i64, String, String);

    /// What `daily_counts` must hold: a GROUP BY over the log.
    fn grouped(conn: &Connection) -> BTreeMap<Key, i64> {
        let mut stmt = conn
            .prepare(
                "SELECT created_at / 86400, status, integration_id, COUNT(*) FROM deliveries
                 GROUP BY 1, 2, 3",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// The table itself; no count may be negative, and zeros say nothing.
    fn kept(conn: &Connection) -> BTreeMap<Key, i64> {
        let negative: i64 = conn
            .query_row("SELECT COUNT(*) FROM daily_counts WHERE n < 0", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(negative, 0, "a count went below zero");
        let mut stmt = conn
            .prepare("SELECT day, status, integration_id, n FROM daily_counts WHERE n > 0")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// splitmix64, seeded: each run replays the same sequence.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }

    fn new_delivery(integration_id: &str, key: u64, status: Status) -> NewDelivery {
        let mailable = status == Status::Queued || key.is_multiple_of(2);
        NewDelivery {
            recipient: mailable.then(|| format!("c{key}@example.com")),
            subject: mailable.then(|| "Receipt".to_owned()),
            status,
            note: (status != Status::Queued).then(|| "why".to_owned()),
            ..NewDelivery::new(
                integration_id,
                format!("evt_{key}"),
                format!("payment_received:in_{key}"),
                TriggerKind::PaymentReceived,
            )
        }
    }

    /// The counts equal a GROUP BY over the log after every step of a random mix of what
    /// changes deliveries: inserts (some of them duplicates of a business fact), the sender's
    /// claims and outcomes, start-up hand-back, resends, retention, integration removal (batched,
    /// and by the foreign-key cascade alone).
    #[test]
    fn daily_counts_follow_every_change_of_the_log() {
        let conn = memory();
        let mut rng = Rng(10);
        let mut live: Vec<String> = (0..3)
            .map(|i| crate::db::test_integration(&conn, &format!("shop {i}")))
            .collect();
        let base = 20_000 * DAY;
        let mut now = base;
        let mut claimed: Vec<(i64, i64)> = Vec::new();
        let mut created = 3;
        let mut resent = std::collections::HashSet::new();
        let mut peak = 0;
        for step in 0..3000 {
            now += rng.below(3600) as i64;
            match rng.below(100) {
                0..=39 if !live.is_empty() => {
                    let integration = &live[rng.below(live.len() as u64) as usize];
                    let status = [
                        Status::Queued,
                        Status::Queued,
                        Status::Skipped,
                        Status::Failed,
                    ][rng.below(4) as usize];
                    // A key space small enough that some facts arrive twice.
                    let key = rng.below(2500);
                    deliveries::insert(&conn, &new_delivery(integration, key, status), now)
                        .unwrap();
                }
                40..=54 => {
                    let rows =
                        deliveries::claim_due(&conn, now, 60, 1 + rng.below(8) as usize).unwrap();
                    claimed.extend(rows.iter().map(|d| (d.id, d.lease_owner.unwrap())));
                }
                55..=79 if !claimed.is_empty() => {
                    let (id, owner) = claimed.swap_remove(rng.below(claimed.len() as u64) as usize);
                    match rng.below(5) {
                        0 | 1 => deliveries::mark_sent(&conn, id, owner, "<m@x>", now).unwrap(),
                        2 => {
                            deliveries::mark_retry(&conn, id, owner, "421 later", now + 30).unwrap()
                        }
                        3 => deliveries::mark_failed(&conn, id, owner, "550 no").unwrap(),
                        _ => deliveries::release(&conn, id, owner, now).unwrap(),
                    };
                }
                80..=84 => {
                    deliveries::hand_back_orphans(&conn, now).unwrap();
                    claimed.clear();
                }
                85..=92 => {
                    let max: Option<i64> = conn
                        .query_row("SELECT MAX(id) FROM deliveries", [], |r| r.get(0))
                        .unwrap();
                    let pick = max.map(|m| 1 + rng.below(m as u64) as i64);
                    // Each delivery is resent at most once here: deleting a delivery resent twice
                    // fails today (both copies become originals of one fact), a bug of its own.
                    if let Some(id) = pick.filter(|id| resent.insert(*id)) {
                        // Skipped rows without an email are refused, and change nothing.
                        let _ = deliveries::resend(&conn, id, now);
                    }
                }
                93..=96 => {
                    deliveries::prune(
                        &conn,
                        now - (5 + rng.below(20) as i64) * DAY,
                        &Default::default(),
                    )
                    .unwrap();
                }
                97 if live.len() > 1 => {
                    let gone = live.swap_remove(rng.below(live.len() as u64) as usize);
                    if rng.below(2) == 0 {
                        integrations::disconnect(&conn, &gone, "erased").unwrap();
                        for held in integrations::Held::ALL {
                            while integrations::erase_batch(&conn, &gone, held).unwrap() > 0 {}
                        }
                        assert!(integrations::erase(&conn, &gone).unwrap().is_some());
                    } else {
                        conn.execute("DELETE FROM integrations WHERE id = ?1", [&gone])
                            .unwrap();
                    }
                    claimed.clear();
                }
                98 => {
                    live.push(crate::db::test_integration(
                        &conn,
                        &format!("shop {created}"),
                    ));
                    created += 1;
                }
                _ => {}
            }
            let expected = grouped(&conn);
            assert_eq!(kept(&conn), expected, "after step {step}");
            peak = peak.max(expected.values().sum());
        }
        assert!(
            peak > 150,
            "the sequence made too few rows to prove much: {peak}"
        );
        let statuses: i64 = conn
            .query_row("SELECT COUNT(DISTINCT status) FROM deliveries", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            statuses >= 5,
            "the sequence reached only {statuses} statuses"
        );
    }

    /// A database that had deliveries before V7 gets its counts (and reasons) from the migration.
    #[test]
    fn the_migration_backfills_existing_deliveries() {
        let mut conn = crate::db::memory().unwrap();
        super::super::embedded::migrations::runner()
            .set_target(refinery::Target::Version(6))
            .run(&mut conn)
            .unwrap();
        conn.execute(
            "INSERT INTO integrations (id, name, webhook_secret, created_at) VALUES ('int_a', 'A', 'whsec', 0)",
            [],
        )
        .unwrap();
        let notes = [
            ("skipped", "no template for payment_received, any product"),
            ("failed", "the event carries no email address for cus_1, and integration A has no Stripe API key to look it up: add one"),
            ("failed", "550 5.1.1 unknown user"),
            ("sent", ""),
        ];
        for n in 0..40_i64 {
            let (status, note) = notes[n as usize % notes.len()];
            conn.execute(
                "INSERT INTO deliveries (integration_id, stripe_event_id, business_key, trigger,
                     status, last_error, created_at)
                 VALUES ('int_a', ?1, ?1, 'payment_received', ?2, NULLIF(?3, ''), ?4)",
                params![format!("evt_{n}"), status, note, 19_000 * DAY + n * 7000],
            )
            .unwrap();
        }
        crate::db::migrate(&mut conn).unwrap();
        assert_eq!(kept(&conn), grouped(&conn));
        assert_eq!(kept(&conn).values().sum::<i64>(), 40);
        let not_sent = not_sent_since(&conn, 0).unwrap();
        let by_reason: Vec<(Reason, i64)> = not_sent.iter().map(|n| (n.reason, n.count)).collect();
        assert_eq!(
            by_reason,
            [(Reason::NoApiKey, 10), (Reason::NoTemplate, 10)]
        );
    }

    #[test]
    fn per_day_fills_the_days_without_deliveries() {
        let conn = memory();
        let a = crate::db::test_integration(&conn, "a");
        let b = crate::db::test_integration(&conn, "b");
        let day = 20_100;
        for (i, (integration, offset, status)) in [
            (&a, 0, Status::Queued),
            (&b, 0, Status::Failed),
            (&a, 2, Status::Skipped),
            (&b, 2, Status::Skipped),
            (&a, 5, Status::Queued),
        ]
        .into_iter()
        .enumerate()
        {
            let created = (day + offset) * DAY + 3600;
            deliveries::insert(&conn, &new_delivery(integration, i as u64, status), created)
                .unwrap();
        }
        let days = per_day(&conn, day, day + 3).unwrap();
        assert_eq!(
            days.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
            [day, day + 1, day + 2, day + 3]
        );
        assert_eq!(
            days[0].1,
            Counts {
                queued: 1,
                failed: 1,
                ..Counts::default()
            }
        );
        assert_eq!(days[1].1, Counts::default());
        assert_eq!(
            days[2].1,
            Counts {
                skipped: 2,
                ..Counts::default()
            }
        );
        assert_eq!(
            days[3].1.total(),
            0,
            "day + 5 is outside the range asked for"
        );
    }

    #[test]
    fn failed_counts_what_was_not_sent_again() {
        let conn = memory();
        let a = crate::db::test_integration(&conn, "a");
        let day = 20_200;
        let mut ids = Vec::new();
        for key in 0..3 {
            let now = day * DAY + key as i64 * 60;
            deliveries::insert(&conn, &new_delivery(&a, key, Status::Queued), now).unwrap();
            let claimed = deliveries::claim_due(&conn, now, 60, 1).unwrap();
            let d = &claimed[0];
            assert!(
                deliveries::mark_failed(&conn, d.id, d.lease_owner.unwrap(), "550 no").unwrap()
            );
            ids.push(d.id);
        }
        // One failed the day before the window: not counted.
        let old = (day - 1) * DAY;
        let Inserted::New(_) =
            deliveries::insert(&conn, &new_delivery(&a, 9, Status::Failed), old).unwrap()
        else {
            panic!("a new fact")
        };
        let failed = failed_since(&conn, day).unwrap();
        assert_eq!(failed.count, 3);
        assert_eq!(failed.newest.as_ref().map(|r| r.id), Some(ids[2]));

        deliveries::resend(&conn, ids[2], day * DAY + 600).unwrap();
        let failed = failed_since(&conn, day).unwrap();
        assert_eq!(failed.count, 2, "a resent failure needs nothing more");
        assert_eq!(failed.newest.as_ref().map(|r| r.id), Some(ids[1]));
        assert_eq!(failed_since(&conn, day - 1).unwrap().count, 3);

        // An event processed again replaced a failure (its row stays, pointing at the new one).
        conn.execute(
            "UPDATE deliveries SET superseded_by = 424242 WHERE id = ?1",
            [ids[1]],
        )
        .unwrap();
        let failed = failed_since(&conn, day).unwrap();
        assert_eq!(failed.count, 1, "a replaced failure needs nothing more");
        assert_eq!(failed.newest.as_ref().map(|r| r.id), Some(ids[0]));
    }

    #[test]
    fn not_sent_leaves_out_what_was_processed_again() {
        let conn = memory();
        let a = crate::db::test_integration(&conn, "a");
        let now = 20_200 * DAY;
        let mut ids = Vec::new();
        for key in [1, 3] {
            let skipped = NewDelivery {
                reason: Some(Reason::NoTemplate),
                ..new_delivery(&a, key, Status::Skipped)
            };
            let Inserted::New(id) = deliveries::insert(&conn, &skipped, now).unwrap() else {
                panic!("a new fact")
            };
            ids.push(id);
        }
        let count = |conn: &Connection| -> i64 {
            not_sent_since(conn, now - DAY)
                .unwrap()
                .iter()
                .map(|n| n.count)
                .sum()
        };
        assert_eq!(count(&conn), 2);
        conn.execute(
            "UPDATE deliveries SET superseded_by = 424242 WHERE id = ?1",
            [ids[0]],
        )
        .unwrap();
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn activity_tells_never_from_not_lately() {
        let conn = memory();
        let quiet = crate::db::test_integration(&conn, "quiet");
        let busy = crate::db::test_integration(&conn, "busy");
        let never = crate::db::test_integration(&conn, "never");
        for (integration, received) in [(&quiet, 1_000), (&busy, 1_000), (&busy, 9_000)] {
            let latest = crate::db::integrations::LatestEvent {
                received_at: received,
                livemode: false,
            };
            crate::db::integrations::note_event(&conn, integration, latest).unwrap();
        }
        let activity = activity(&conn, 5_000).unwrap();
        let of = |id: &str| {
            activity
                .iter()
                .find(|a| a.integration_id == id)
                .unwrap()
                .clone()
        };
        assert_eq!(
            (of(&quiet).any_event, of(&quiet).latest_since),
            (true, None)
        );
        assert_eq!(
            (of(&busy).any_event, of(&busy).latest_since),
            (true, Some(9_000))
        );
        assert_eq!(
            (of(&never).any_event, of(&never).latest_since),
            (false, None)
        );
    }

    #[test]
    fn latest_is_newest_first() {
        let conn = memory();
        let a = crate::db::test_integration(&conn, "a");
        for key in 0..5 {
            deliveries::insert(
                &conn,
                &new_delivery(&a, key, Status::Queued),
                1_000 + key as i64,
            )
            .unwrap();
        }
        let latest = latest(&conn, 3).unwrap();
        assert_eq!(
            latest.iter().map(|r| r.created_at).collect::<Vec<_>>(),
            [1_004, 1_003, 1_002]
        );
        assert!(latest.iter().all(|r| r.status == Status::Queued));
    }
}
