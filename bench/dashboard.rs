//! The dashboard (issue 10) at scale: what keeping `daily_counts` exact costs the processor and
//! the sender (the same work on a database with and without the V7 triggers, alternately), and
//! the dashboard's queries on the log-at-scale database, each with its `EXPLAIN QUERY PLAN`.

use std::path::Path;
use std::time::{Duration, Instant};

use mailmycustomer::db::{
    self,
    dashboard::{self, sql, DAY},
    deliveries::{self, NewDelivery},
};
use mailmycustomer::trigger::TriggerKind;
use rusqlite::{Connection, ToSql};

use crate::support::{median, ms, Bench, Table};

/// One path's cost per delivery, without and with the counts.
pub struct PathCost {
    pub what: &'static str,
    pub without: Duration,
    pub with: Duration,
}

pub struct Upkeep {
    pub rows: usize,
    pub rounds: usize,
    pub paths: Vec<PathCost>,
}

/// The processor's and the sender's database work for `rows` deliveries, on fresh databases
/// with the real schema (`open_background` and `temp_store = MEMORY`: WAL, synchronous=NORMAL,
/// as they run), alternately
/// without the V7 triggers and with them; medians over the rounds.
pub fn upkeep(b: &Bench, failures: &mut Vec<String>) -> anyhow::Result<Upkeep> {
    let rows = if b.smoke { 2_000 } else { 30_000 };
    let rounds = if b.smoke { 1 } else { 3 };
    let mut insert = [Vec::new(), Vec::new()];
    let mut send = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, counts) in [false, true].into_iter().enumerate() {
            let (ins, snd) = one_round(b, rows, counts, failures)?;
            insert[i].push(ins / rows as u32);
            send[i].push(snd / rows as u32);
        }
    }
    let [mut ins_without, mut ins_with] = insert;
    let [mut snd_without, mut snd_with] = send;
    Ok(Upkeep {
        rows,
        rounds,
        paths: vec![
            PathCost {
                what: "processor: `deliveries::insert`, 64 per transaction",
                without: median(&mut ins_without),
                with: median(&mut ins_with),
            },
            PathCost {
                what: "sender: `claim_due` (32 at a time) + `mark_sent`, each its own commit",
                without: median(&mut snd_without),
                with: median(&mut snd_with),
            },
        ],
    })
}

fn one_round(
    b: &Bench,
    rows: usize,
    counts: bool,
    failures: &mut Vec<String>,
) -> anyhow::Result<(Duration, Duration)> {
    let dir = b.tempdir("counts")?;
    let path = dir.path().join("counts.db");
    {
        let mut conn = db::open(&db::Options::at(&path)?)?;
        db::migrate(&mut conn)?;
        if !counts {
            conn.execute_batch(
                "DROP TRIGGER daily_counts_insert; DROP TRIGGER daily_counts_update;
                 DROP TRIGGER daily_counts_delete;",
            )?;
        }
        conn.execute(
            "INSERT INTO integrations (id, name, webhook_secret, created_at) VALUES ('int_bench_counts', 'Counts', seal('whsec_x'), 0)",
            [],
        )?;
    }
    let mut conn = db::open_background(&db::Options::at(&path)?)?;
    // As `serve` opens its processor's and sender's connections: a trigger's statement journal
    // stays in memory.
    db::keep_temporary_data_in_memory(&conn)?;
    let now = db::now_unix();
    let html = "<p>".to_owned() + &"Thank you for your payment. ".repeat(70) + "</p>";
    let text = "Thank you for your payment. ".repeat(22);

    let t0 = Instant::now();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(64) {
        let tx = conn.transaction()?;
        for n in chunk {
            let new = NewDelivery {
                recipient: Some(format!("customer{n}@example.com")),
                subject: Some("Your receipt".into()),
                html: Some(html.clone()),
                text: Some(text.clone()),
                ..NewDelivery::new(
                    "int_bench_counts",
                    format!("evt_counts{n}"),
                    format!("payment_received:in_counts{n}"),
                    TriggerKind::PaymentReceived,
                )
            };
            deliveries::insert(&tx, &new, now)?;
        }
        tx.commit()?;
    }
    let inserted = t0.elapsed();

    let t0 = Instant::now();
    let mut sent = 0;
    loop {
        let claimed = deliveries::claim_due(&conn, now, 300, 32)?;
        if claimed.is_empty() {
            break;
        }
        for d in &claimed {
            let owner = d.lease_owner.unwrap_or_default();
            if deliveries::mark_sent(&conn, d.id, owner, "<bench@example>", now)? {
                sent += 1;
            }
        }
    }
    let sending = t0.elapsed();
    if sent != rows {
        failures.push(format!("counts upkeep: {rows} queued, {sent} marked sent"));
    }
    if counts {
        let kept: i64 = conn.query_row(
            "SELECT COALESCE(SUM(n), 0) FROM daily_counts WHERE status = 'sent'",
            [],
            |r| r.get(0),
        )?;
        if kept != rows as i64 {
            failures.push(format!(
                "counts upkeep: {rows} sent, daily_counts says {kept}"
            ));
        }
    }
    Ok((inserted, sending))
}

/// One dashboard query, timed.
pub struct Query {
    pub name: &'static str,
    pub rows: usize,
    pub median: Duration,
    pub max: Duration,
    pub plan: Vec<String>,
}

/// Times each dashboard query on the log-at-scale database at `path`; `newest` is the newest
/// delivery's time, which stands for "now".
pub fn queries(
    b: &Bench,
    path: &Path,
    newest: i64,
    failures: &mut Vec<String>,
) -> anyhow::Result<Vec<Query>> {
    let conn = db::open(&db::Options::at(path)?)?;
    let today = dashboard::day_of(newest);
    let week = newest - 7 * DAY;
    let repeats = if b.smoke { 3 } else { 25 };
    let mut out = Vec::new();
    let time = |name: &'static str,
                sql: &str,
                args: &[&dyn ToSql],
                run: &mut dyn FnMut(&Connection) -> anyhow::Result<usize>|
     -> anyhow::Result<Query> {
        let mut times = Vec::with_capacity(repeats);
        let mut rows = 0;
        for _ in 0..repeats {
            let t0 = Instant::now();
            rows = run(&conn)?;
            times.push(t0.elapsed());
        }
        Ok(Query {
            name,
            rows,
            max: times.iter().max().copied().unwrap_or_default(),
            median: median(&mut times),
            plan: explain(&conn, sql, args)?,
        })
    };
    // A statement a timed query runs besides its main one: its plan only.
    let plan_only = |name: &'static str, sql: &str, args: &[&dyn ToSql]| {
        anyhow::Ok(Query {
            name,
            rows: 0,
            median: Duration::ZERO,
            max: Duration::ZERO,
            plan: explain(&conn, sql, args)?,
        })
    };

    let mut per_day_total = 0;
    out.push(time(
        "counts per day and status, 30 days (`daily_counts`)",
        sql::PER_DAY,
        &[&(today - 29), &today],
        &mut |c| {
            let days = dashboard::per_day(c, today - 29, today)?;
            per_day_total = days.iter().map(|(_, n)| n.total()).sum();
            Ok(days.len())
        },
    )?);
    out.push(time(
        "latest 10 deliveries",
        sql::LATEST,
        &[&10],
        &mut |c| Ok(dashboard::latest(c, 10)?.len()),
    )?);
    let mut failed = 0;
    out.push(time(
        "failed in 7 days, not resent: count",
        sql::FAILED_COUNT,
        &[&(today - 6)],
        &mut |c| {
            failed = dashboard::failed_since(c, today - 6)?.count;
            Ok(1)
        },
    )?);
    let since = (today - 6) * DAY;
    out.push(plan_only(
        "  (with it: resent failures, subtracted)",
        sql::FAILED_RESENT,
        &[&since],
    )?);
    out.push(plan_only(
        "  (with it: failures processed again, subtracted)",
        sql::FAILED_SUPERSEDED,
        &[&since],
    )?);
    out.push(plan_only(
        "  (with it: the newest failure)",
        sql::FAILED_NEWEST,
        &[&since],
    )?);
    out.push(time(
        "not sent for want of a template or key, 7 days",
        sql::NOT_SENT,
        &[&week],
        &mut |c| Ok(dashboard::not_sent_since(c, week)?.len()),
    )?);
    let mut activity = Vec::new();
    out.push(time(
        "integrations' newest events (kept by the processor)",
        sql::ACTIVITY,
        &[],
        &mut |c| {
            activity = dashboard::activity(c, week)?;
            Ok(activity.len())
        },
    )?);
    // The counts agree with the log they summarize, and each state the fill made is seen.
    let counted: i64 = conn.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE created_at >= ?1",
        [(today - 29) * DAY],
        |r| r.get(0),
    )?;
    if counted != per_day_total {
        failures.push(format!(
            "dashboard: 30 days of daily_counts sum to {per_day_total}, the log has {counted}"
        ));
    }
    let failed_rows: i64 = conn.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE status = 'failed' AND created_at >= ?1",
        [(today - 6) * DAY],
        |r| r.get(0),
    )?;
    if failed != failed_rows {
        failures.push(format!(
            "dashboard: {failed} failed in 7 days by the counts, {failed_rows} in the log"
        ));
    }
    let states: Vec<(bool, bool)> = activity
        .iter()
        .map(|a| (a.any_event, a.latest_since.is_some()))
        .collect();
    for expected in [(true, true), (true, false), (false, false)] {
        if !states.contains(&expected) {
            failures.push(format!(
                "dashboard: no integration with (any event, recent event) = {expected:?}"
            ));
        }
    }
    Ok(out)
}

fn explain(conn: &Connection, sql: &str, args: &[&dyn ToSql]) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let plan = stmt
        .query_map(args, |r| r.get::<_, String>(3))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(plan)
}

pub fn print_upkeep(u: &Upkeep) {
    println!(
        "#### Keeping `daily_counts` (V7 triggers): {} deliveries per path, median of {} rounds, each round without then with the triggers on a fresh database\n",
        u.rows, u.rounds
    );
    let mut table = Table::new(&["path", "without counts", "with counts", "cost per delivery"]);
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    for p in &u.paths {
        let diff = p.with.as_secs_f64() - p.without.as_secs_f64();
        table.row(vec![
            p.what.to_owned(),
            us(p.without),
            us(p.with),
            format!(
                "{:+.1} µs ({:+.0}%)",
                diff * 1e6,
                100.0 * diff / p.without.as_secs_f64().max(1e-9)
            ),
        ]);
    }
    table.print();
}

pub fn print_queries(queries: &[Query]) {
    println!("#### The dashboard's queries on this database, warm cache\n");
    let mut table = Table::new(&["query", "rows", "median", "max", "EXPLAIN QUERY PLAN"]);
    for q in queries {
        let timed = q.median > Duration::ZERO;
        table.row(vec![
            q.name.to_owned(),
            if timed {
                q.rows.to_string()
            } else {
                String::new()
            },
            if timed { ms(q.median) } else { String::new() },
            if timed { ms(q.max) } else { String::new() },
            q.plan.join("; "),
        ]);
    }
    table.print();
}
