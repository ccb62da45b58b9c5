//! The delivery log at scale: fills a database (real schema, from the migrations) with a year of
//! deliveries across 50 products, 200 plans and all 7 triggers, then times the log's queries
//! through `db::deliveries::search` (what the CLI and the UI call) and prints each one's
//! `EXPLAIN QUERY PLAN` from `db::deliveries::log_query`, the same SQL. Then the log's pages
//! themselves (`/log` with each filter, its first page and a page deep in the year, and one
//! delivery's page) through real HTTP to the release binary serving that database, signed in.

use std::time::{Duration, Instant};

use mailmycustomer::db::{
    self,
    deliveries::{self, Delivery, LogFilter, Status},
};
use mailmycustomer::trigger::TriggerKind;
use rusqlite::params;

use crate::support::{median, ms, rate, Bench, Table};

pub const PRODUCTS: usize = 50;
pub const PLANS: usize = 200;
pub const RECIPIENTS: u64 = 100_000;
const YEAR: i64 = 365 * 86_400;
const INTEGRATION: &str = "int_bench_log";

pub struct Query {
    pub name: &'static str,
    /// One of the four the issue sets the 10 ms target for.
    pub targeted: bool,
    pub rows: usize,
    pub median: Duration,
    pub max: Duration,
    pub plan: Vec<String>,
}

pub struct LogScale {
    pub rows: usize,
    pub fill: Duration,
    pub db_bytes: u64,
    pub queries: Vec<Query>,
    pub summary: Duration,
    pub startup: Option<crate::startup::Startup>,
    /// The dashboard's queries on this database.
    pub dashboard: Vec<crate::dashboard::Query>,
    /// What keeping the dashboard's counts costs the processor and the sender.
    pub upkeep: Option<crate::dashboard::Upkeep>,
    /// The log's pages over HTTP on this database.
    pub pages: Vec<PageTime>,
}

/// One page of the web UI timed over HTTP: request written → whole answer read, on one
/// keep-alive loopback connection, so it is the server's time plus a loopback round trip.
pub struct PageTime {
    pub name: String,
    pub rows: usize,
    pub median: Duration,
    pub max: Duration,
    /// The same filter on a page from the middle of the year (`before=`), when it has one.
    pub deep: Option<(usize, Duration, Duration)>,
}

pub fn run(b: &Bench, failures: &mut Vec<String>) -> anyhow::Result<LogScale> {
    let rows = if b.smoke { 10_000 } else { 1_000_000 };
    let dir = b.tempdir("log")?;
    let path = dir.path().join("log.db");
    let started = Instant::now();
    let newest = fill(&path, rows)?;
    let fill_time = started.elapsed();
    {
        let mut conn = db::open(&db::Options::at(&path)?)?;
        conn.execute_batch("PRAGMA synchronous = OFF;")?;
        fill_events(&mut conn, rows, newest.created_at)?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    }
    let db_bytes = std::fs::metadata(&path)?.len();

    // A fresh connection with the pool's settings, as the server's readers have.
    let conn = db::open(&db::Options::at(&path)?)?;
    let stored: i64 = conn.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))?;
    if stored != rows as i64 {
        failures.push(format!("log: {rows} deliveries generated, {stored} stored"));
    }
    let popular_product = product_id(0);
    let recipient = newest.recipient.clone().unwrap_or_default();
    let newest_page = deliveries::search(
        &conn,
        &LogFilter {
            limit: 50,
            ..LogFilter::default()
        },
    )?;
    let page_end = newest_page.last().map(|d| (d.created_at, d.id));
    let filters: Vec<(&'static str, bool, LogFilter)> = vec![
        (
            "newest page (limit 50)",
            true,
            LogFilter {
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "product + trigger (busiest product, payment_failed)",
            true,
            LogFilter {
                product_id: Some(popular_product.clone()),
                trigger: Some(TriggerKind::PaymentFailed),
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "recipient",
            true,
            LogFilter {
                recipient: Some(recipient.to_uppercase()),
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "status = failed",
            true,
            LogFilter {
                status: Some(Status::Failed),
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "next page of the newest (keyset, `before`)",
            false,
            LogFilter {
                before: page_end,
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "product only (busiest product)",
            false,
            LogFilter {
                product_id: Some(popular_product.clone()),
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "plan + trigger",
            false,
            LogFilter {
                plan_id: Some(plan_id(0)),
                trigger: Some(TriggerKind::PaymentReceived),
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "status = failed + trigger",
            false,
            LogFilter {
                status: Some(Status::Failed),
                trigger: Some(TriggerKind::PaymentFailed),
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "status = failed + product + trigger",
            false,
            LogFilter {
                status: Some(Status::Failed),
                product_id: Some(popular_product),
                trigger: Some(TriggerKind::RefundCompleted),
                limit: 50,
                ..LogFilter::default()
            },
        ),
        (
            "status = failed, last 7 days",
            false,
            LogFilter {
                status: Some(Status::Failed),
                since: Some(newest.created_at - 7 * 86_400),
                limit: 50,
                ..LogFilter::default()
            },
        ),
    ];

    let repeats = if b.smoke { 3 } else { 25 };
    let mut queries = Vec::new();
    for (name, targeted, filter) in &filters {
        let mut times = Vec::with_capacity(repeats);
        let mut found = Vec::new();
        for _ in 0..repeats {
            let t0 = Instant::now();
            found = deliveries::search(&conn, filter)?;
            times.push(t0.elapsed());
        }
        check(name, filter, &found, failures);
        if *targeted && found.is_empty() {
            failures.push(format!("log: `{name}` found nothing"));
        }
        queries.push(Query {
            name,
            targeted: *targeted,
            rows: found.len(),
            max: times.iter().max().copied().unwrap_or_default(),
            median: median(&mut times),
            plan: explain(&conn, filter)?,
        });
    }
    let mut summary_times = Vec::new();
    for _ in 0..repeats.min(5) {
        let t0 = Instant::now();
        let counts = deliveries::count_by_status(&conn)?;
        summary_times.push(t0.elapsed());
        let total: i64 = counts.iter().map(|(_, n)| n).sum();
        if total != rows as i64 {
            failures.push(format!("log: count_by_status sums to {total}, not {rows}"));
        }
    }
    drop(conn);
    let dashboard = crate::dashboard::queries(b, &path, newest.created_at, failures)?;
    let upkeep = crate::dashboard::upkeep(b, failures)?;

    // The server itself on this database: does a big log slow its start?
    let startup = crate::startup::measure(b, &path, if b.smoke { 2 } else { 5 }, failures)?;
    let pages = pages(b, &path, &newest, repeats, failures)?;

    let result = LogScale {
        rows,
        fill: fill_time,
        db_bytes,
        queries,
        summary: median(&mut summary_times),
        startup: Some(startup),
        dashboard,
        upkeep: Some(upkeep),
        pages,
    };
    print(&result);
    Ok(result)
}

/// The log's pages through the release binary: a session made in the database (the cookie a
/// sign-in would set), then each filter's first page and its page from the middle of the year,
/// and the newest delivery's page and email, each `repeats` times.
fn pages(
    b: &Bench,
    path: &std::path::Path,
    newest: &Delivery,
    repeats: usize,
    failures: &mut Vec<String>,
) -> anyhow::Result<Vec<PageTime>> {
    let token = crate::storm::sign_in(path)?;
    {
        let conn = db::open(&db::Options::at(path)?)?;
        // The delivery page shows attempts: two for the newest delivery, as a 451 then a 250.
        conn.execute(
            "INSERT INTO delivery_attempts (delivery_id, at, outcome, reply_code, reply, duration_ms)
             VALUES (?1, ?2, 'retry', 451, 'RCPT TO rejected: 451 4.7.0 Try again later', 12),
                    (?1, ?2 + 60, 'sent', 250, '250 2.0.0 Ok: queued as 4Bench', 9)",
            params![newest.id, newest.created_at],
        )?;
    }
    let log = path.with_extension("pages.log");
    let (mut server, _) = crate::support::Server::start(&b.bin, path, None, &log)?;
    let mut client = PageClient::open(server.addr, &token)?;

    let day = |t: i64| {
        jiff::Timestamp::from_second(t)
            .map(|t| t.strftime("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let recipient = newest.recipient.clone().unwrap_or_default();
    let middle = newest.created_at - YEAR / 2;
    let week = format!(
        "from={}&to={}",
        day(newest.created_at - 7 * 86_400),
        day(newest.created_at)
    );
    let p0 = product_id(0);
    let filters: Vec<(String, String)> = vec![
        ("newest, no filter".into(), String::new()),
        ("status = failed".into(), "status=failed".into()),
        (
            "trigger = payment_failed".into(),
            "trigger=payment_failed".into(),
        ),
        ("product (busiest)".into(), format!("product={p0}")),
        (
            "product + trigger".into(),
            format!("product={p0}&trigger=payment_failed"),
        ),
        ("plan".into(), format!("plan={}", plan_id(0))),
        (
            "plan + trigger".into(),
            format!("plan={}&trigger=payment_received", plan_id(0)),
        ),
        ("recipient".into(), format!("recipient={recipient}")),
        ("integration".into(), format!("integration={INTEGRATION}")),
        ("last 7 days".into(), week.clone()),
        (
            "status = failed, last 7 days".into(),
            format!("status=failed&{week}"),
        ),
        (
            "status = failed + trigger (window)".into(),
            "status=failed&trigger=refund_completed".into(),
        ),
        (
            "status = failed + product (window)".into(),
            format!("status=failed&product={p0}"),
        ),
        (
            "integration + trigger (window)".into(),
            format!("integration={INTEGRATION}&trigger=trial_ending"),
        ),
        (
            "recipient + status (window)".into(),
            format!("recipient={recipient}&status=sent"),
        ),
    ];
    let mut times = Vec::new();
    for (name, query) in filters {
        let sep = if query.is_empty() { "?" } else { "&" };
        let first = format!("/log?{query}");
        let deep = format!("/log?{query}{sep}before={middle}:0");
        let (rows, median_t, max_t) = time_page(&mut client, &first, repeats, failures)?;
        let deep = match query.starts_with("recipient") || query.contains("from=") {
            // A recipient's rows and the last week have no middle of the year.
            true => None,
            false => Some(time_page(&mut client, &deep, repeats, failures)?),
        };
        times.push(PageTime {
            name,
            rows,
            median: median_t,
            max: max_t,
            deep,
        });
    }
    let newest_event: i64 = {
        let conn = db::open(&db::Options::at(path)?)?;
        conn.query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))?
    };
    for (name, path) in [
        ("one delivery (`/log/{id}`)", format!("/log/{}", newest.id)),
        (
            "its email (`/log/{id}/email`)",
            format!("/log/{}/email", newest.id),
        ),
        // The other pages, on the same database.
        ("dashboard (`/`)", "/".to_owned()),
        ("integrations (`/integrations`)", "/integrations".to_owned()),
        (
            "an integration (`/integrations/{id}`)",
            format!("/integrations/{INTEGRATION}"),
        ),
        (
            "its products and plans",
            format!("/integrations/{INTEGRATION}/catalog"),
        ),
        (
            "template matrix (`/templates`)",
            format!("/templates?integration={INTEGRATION}"),
        ),
        ("events, newest (`/events`)", "/events".to_owned()),
        ("events, skipped", "/events?outcome=skipped".to_owned()),
        (
            "one event (`/events/{id}`)",
            format!("/events/{newest_event}"),
        ),
        ("settings (`/settings`)", "/settings".to_owned()),
    ] {
        let (_, median_t, max_t) = time_page(&mut client, &path, repeats, failures)?;
        times.push(PageTime {
            name: name.into(),
            rows: 1,
            median: median_t,
            max: max_t,
            deep: None,
        });
    }
    for error in server.logged_errors() {
        failures.push(format!("log pages: the server logged: {error}"));
    }
    server.guard.stop(Duration::from_secs(10));
    Ok(times)
}

/// Times `path` `repeats` times (after one warm-up); the rows a log page listed, median, max.
fn time_page(
    client: &mut PageClient,
    path: &str,
    repeats: usize,
    failures: &mut Vec<String>,
) -> anyhow::Result<(usize, Duration, Duration)> {
    let (status, body) = client.get(path)?;
    if status != 200 {
        failures.push(format!("log pages: {path} answered {status}"));
    }
    let rows = body.matches("<tr>").count().saturating_sub(1);
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t0 = Instant::now();
        client.get(path)?;
        times.push(t0.elapsed());
    }
    let max = times.iter().max().copied().unwrap_or_default();
    Ok((rows, median(&mut times), max))
}

/// A keep-alive HTTP/1.1 client with the session cookie, blocking, for page timings.
pub(crate) struct PageClient {
    stream: std::net::TcpStream,
    cookie: String,
}

impl PageClient {
    pub(crate) fn open(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<PageClient> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(PageClient {
            stream,
            cookie: format!("mmc_session={token}"),
        })
    }

    /// One GET; the status and the body (the answer must carry a Content-Length).
    pub(crate) fn get(&mut self, path: &str) -> anyhow::Result<(u16, String)> {
        use std::io::{Read, Write};
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\n\r\n",
            self.cookie
        );
        self.stream.write_all(request.as_bytes())?;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = self.stream.read(&mut chunk)?;
            anyhow::ensure!(n > 0, "the server closed the connection on {path}");
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status: u16 = head.get(9..12).unwrap_or("0").parse().unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| anyhow::anyhow!("{path}: no Content-Length"))?;
            while buf.len() < end + 4 + length {
                let n = self.stream.read(&mut chunk)?;
                anyhow::ensure!(n > 0, "the server closed the connection on {path}");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
            return Ok((status, body));
        }
    }
}

/// Every row returned matches the filter, newest first, within the limit.
fn check(name: &str, filter: &LogFilter, found: &[Delivery], failures: &mut Vec<String>) {
    let wrong = |d: &Delivery| {
        filter.status.is_some_and(|s| d.status != s)
            || filter.trigger.is_some_and(|t| d.trigger != t)
            || filter
                .product_id
                .as_ref()
                .is_some_and(|p| d.product_id.as_ref() != Some(p))
            || filter
                .plan_id
                .as_ref()
                .is_some_and(|p| d.plan_id.as_ref() != Some(p))
            || filter
                .recipient
                .as_ref()
                .is_some_and(|r| d.recipient.as_deref() != Some(r.to_lowercase().as_str()))
            || filter.since.is_some_and(|s| d.created_at < s)
            || filter.before.is_some_and(|b| (d.created_at, d.id) >= b)
    };
    let ordered = found
        .windows(2)
        .all(|w| (w[0].created_at, w[0].id) > (w[1].created_at, w[1].id));
    if found.len() > filter.limit || !ordered || found.iter().any(wrong) {
        failures.push(format!(
            "log: `{name}` returned rows that do not match, are out of order or over the limit"
        ));
    }
}

fn explain(conn: &rusqlite::Connection, filter: &LogFilter) -> anyhow::Result<Vec<String>> {
    let (sql, args) = deliveries::log_query(filter);
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let plan = stmt
        .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(plan)
}

pub fn product_id(n: usize) -> String {
    format!("prod_bench{n:02}")
}

pub fn plan_id(n: usize) -> String {
    format!("price_bench{n:03}")
}

/// splitmix64: deterministic, so every run fills the same database.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(crate::support::SPLITMIX_GAMMA);
        crate::support::mix64(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Picks from (weight, value) pairs whose weights sum to 1000.
    fn weighted<T: Copy>(&mut self, table: &[(u64, T)]) -> T {
        let mut pick = self.below(1000);
        for (weight, value) in table {
            if pick < *weight {
                return *value;
            }
            pick -= weight;
        }
        table[table.len() - 1].1
    }
}

/// A built-in-sized email: the rendered bodies of our templates are about 2 KB of HTML and
/// 0.6 KB of text.
pub(crate) fn bodies(name: &str, amount: &str, product: &str) -> (String, String) {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Receipt</title></head>\
         <body style=\"margin:0;padding:0;background:#f4f5f7;font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif\">\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td align=\"center\" style=\"padding:24px\">\
         <table role=\"presentation\" width=\"560\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#ffffff;border-radius:8px\">\
         <tr><td style=\"padding:32px 32px 8px 32px;font-size:20px;font-weight:600;color:#1a1f36\">Bench Shop</td></tr>\
         <tr><td style=\"padding:8px 32px;font-size:15px;line-height:24px;color:#3c4257\"><p>Hi {name},</p>\
         <p>Thank you for your payment of <strong>{amount}</strong> for <strong>{product}</strong>. \
         This email is your receipt; keep it for your records. Your subscription continues without \
         interruption and renews automatically at the end of the period.</p>\
         <p><a href=\"https://invoice.stripe.com/i/acct_bench/test_YWNjdF9iZW5jaCxfUVhnMW84dmNHbW9SMzI\" \
         style=\"color:#635bff\">View your invoice</a> · <a href=\"https://pay.stripe.com/invoice/acct_bench/test_YWNjdF9iZW5jaCxfUVhnMW84dmNHbW9SMzI/pdf\" \
         style=\"color:#635bff\">Download the PDF</a></p>\
         <p>If you have questions about this charge, reply to this email and we will help.</p></td></tr>\
         <tr><td style=\"padding:16px 32px 32px 32px;font-size:12px;line-height:18px;color:#8792a2\">\
         You receive this email because you have an account with Bench Shop. Payments are processed by Stripe.\
         </td></tr></table></td></tr></table></body></html>"
    );
    let text = format!(
        "Bench Shop\n\nHi {name},\n\nThank you for your payment of {amount} for {product}. This email is \
         your receipt; keep it for your records. Your subscription continues without interruption and \
         renews automatically at the end of the period.\n\nView your invoice: \
         https://invoice.stripe.com/i/acct_bench/test_YWNjdF9iZW5jaCxfUVhnMW84dmNHbW9SMzI\n\
         Download the PDF: https://pay.stripe.com/invoice/acct_bench/test_YWNjdF9iZW5jaCxfUVhnMW84dmNHbW9SMzI/pdf\n\n\
         If you have questions about this charge, reply to this email and we will help.\n"
    );
    (html, text)
}

/// Fills `path` with `rows` deliveries in time order over the last year; returns the newest.
fn fill(path: &std::path::Path, rows: usize) -> anyhow::Result<Delivery> {
    let mut conn = db::open(&db::Options::at(path)?)?;
    db::migrate(&mut conn)?;
    // Only the fill is sped up; the queries run on a fresh connection with the usual settings.
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at) VALUES (?1, 'Bench Shop', seal('whsec_bench_log'), 0)",
        [INTEGRATION],
    )?;
    let triggers: Vec<(u64, &str)> = TriggerKind::ALL
        .iter()
        .map(|k| {
            let weight = match k.as_str() {
                "payment_received" => 600,
                "renewal_upcoming" => 150,
                "subscription_created" => 80,
                "payment_failed" => 60,
                "trial_ending" => 40,
                "subscription_cancelled" => 40,
                _ => 30,
            };
            (weight, k.as_str())
        })
        .collect();
    let statuses: [(u64, Status); 6] = [
        (920, Status::Sent),
        (20, Status::Failed),
        (30, Status::Skipped),
        (10, Status::Retrying),
        (15, Status::Queued),
        (5, Status::Sending),
    ];
    let names = ["Jenny Rosen", "Ada Lovelace", "Grace Hopper", "Alan Turing"];
    let now = db::now_unix();
    let start = now - YEAR;
    let mut rng = Rng(0x6d6d_635f_6265_6e63);
    const PER_TX: usize = 50_000;
    let mut i = 0;
    while i < rows {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO deliveries (integration_id, stripe_event_id, business_key, trigger,
                     template_id, product_id, plan_id, recipient, recipient_name, subject,
                     status, attempts, next_attempt_at, lease_until, last_error, message_id,
                     created_at, sent_at, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18, ?19)",
            )?;
            let mut body = tx.prepare_cached(
                "INSERT INTO delivery_bodies (delivery_id, html, text) VALUES (?1, ?2, ?3)",
            )?;
            for n in i..(i + PER_TX).min(rows) {
                let created_at = start + (n as i64 * YEAR) / rows as i64;
                let trigger = rng.weighted(&triggers);
                let status = rng.weighted(&statuses);
                // Popular plans get more rows: plan k ∝ u², and plan k belongs to product k % 50.
                let u = rng.below(1 << 20) as f64 / (1u64 << 20) as f64;
                let plan = ((u * u) * PLANS as f64) as usize;
                let product = plan % PRODUCTS;
                let name = names[n % names.len()];
                let recipient = (status != Status::Skipped || n % 2 == 0)
                    .then(|| format!("customer{:05}@example.com", rng.below(RECIPIENTS)));
                let amount = format!("${}.00", 5 + rng.below(95));
                let (html, text) = bodies(name, &amount, &product_id(product));
                let (attempts, next_attempt, lease, error, message_id, sent_at) = match status {
                    Status::Sent => (
                        1,
                        None,
                        None,
                        None,
                        Some(format!("<d{n}.{created_at}@bench.example>")),
                        Some(created_at + 2),
                    ),
                    Status::Failed => (
                        1,
                        None,
                        None,
                        Some("550 5.1.1 Recipient address rejected: User unknown".to_owned()),
                        None,
                        None,
                    ),
                    Status::Skipped => (
                        0,
                        None,
                        None,
                        Some(format!("no template for {trigger}, any product")),
                        None,
                        None,
                    ),
                    Status::Retrying => (
                        2,
                        Some(now + 600),
                        None,
                        Some("421 4.7.0 Try again later".to_owned()),
                        None,
                        None,
                    ),
                    Status::Queued => (0, Some(now + 3600), None, None, None, None),
                    Status::Sending => (1, Some(created_at), Some(now + 300), None, None, None),
                };
                insert.execute(params![
                    INTEGRATION,
                    format!("evt_bench{n:012}"),
                    format!("{trigger}:bench{n:09}"),
                    trigger,
                    (triggers
                        .iter()
                        .position(|(_, t)| *t == trigger)
                        .unwrap_or(0)
                        + 1) as i64,
                    product_id(product),
                    plan_id(plan),
                    recipient,
                    name,
                    format!("Your receipt from Bench Shop ({amount})"),
                    status.as_str(),
                    attempts,
                    next_attempt,
                    lease,
                    error,
                    message_id,
                    created_at,
                    sent_at,
                    (status == Status::Skipped).then_some("no_template"),
                ])?;
                body.execute(params![tx.last_insert_rowid(), html, text])?;
            }
        }
        tx.commit()?;
        i = (i + PER_TX).min(rows);
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    let newest_id: i64 = conn.query_row("SELECT MAX(id) FROM deliveries", [], |r| r.get(0))?;
    // The newest row with a recipient, for the recipient query.
    let id: i64 = conn.query_row(
        "SELECT MAX(id) FROM deliveries WHERE recipient IS NOT NULL AND id <= ?1",
        [newest_id],
        |r| r.get(0),
    )?;
    deliveries::get(&conn, id)?.ok_or_else(|| anyhow::anyhow!("no delivery {id}"))
}

/// Events for the dashboard's "has this integration received anything": the busy integration
/// received one event (~6 KB, like Stripe's) per delivery of the last 30 days; a second one
/// received its last event 60 days ago, a third none at all.
fn fill_events(conn: &mut rusqlite::Connection, rows: usize, now: i64) -> anyhow::Result<()> {
    const MONTH: i64 = 30 * 86_400;
    let events = (rows as i64 * MONTH / YEAR) as usize;
    let pad = "x".repeat(6_000);
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at) VALUES
             ('int_bench_quiet', 'Quiet Shop', seal('whsec_bench_quiet'), 1),
             ('int_bench_new', 'New Shop', seal('whsec_bench_new'), 2)",
        [],
    )?;
    {
        let mut event = tx.prepare_cached(
            "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                 received_at, processing, processed_at)
             VALUES (?1, ?2, 'invoice.paid', 0, ?3, ?3, 'queued', ?3)",
        )?;
        let mut payload_of = tx.prepare_cached(
            "INSERT INTO event_payloads (event_id, payload) VALUES (last_insert_rowid(), ?1)",
        )?;
        let mut insert = |integration: &str, id: &str, at: i64, payload: &str| {
            event.execute(params![integration, id, at])?;
            payload_of.execute([payload])
        };
        for n in 0..events {
            let at = now - MONTH + (n as i64 * MONTH) / events.max(1) as i64;
            let id = format!("evt_bench_e{n:09}");
            let payload = format!("{{\"id\":\"{id}\",\"object\":\"event\",\"pad\":\"{pad}\"}}");
            insert(INTEGRATION, &id, at, &payload)?;
        }
        insert("int_bench_quiet", "evt_bench_quiet", now - 2 * MONTH, "{}")?;
    }
    // What the event processor records as it finishes each integration's events.
    tx.execute(
        "UPDATE integrations SET
             last_event_at = (SELECT MAX(received_at) FROM events WHERE integration_id = integrations.id),
             last_event_livemode = 0",
        [],
    )?;
    tx.commit()?;
    Ok(())
}

fn print(r: &LogScale) {
    println!(
        "### Delivery log at scale: {} deliveries ({} products, {} plans, 7 triggers, ~{}k recipients, one year)\n",
        r.rows,
        PRODUCTS,
        PLANS,
        RECIPIENTS / 1000
    );
    println!(
        "Filled in {} ({}), database {:.0} MB. Each query through `db::deliveries::search`, warm cache:\n",
        ms(r.fill),
        rate(r.rows as f64 / r.fill.as_secs_f64()),
        r.db_bytes as f64 / 1e6
    );
    let mut table = Table::new(&[
        "query",
        "target",
        "rows",
        "median",
        "max",
        "EXPLAIN QUERY PLAN",
    ]);
    for q in &r.queries {
        table.row(vec![
            q.name.to_owned(),
            if q.targeted { "≤ 10 ms" } else { "(extra)" }.to_owned(),
            q.rows.to_string(),
            ms(q.median),
            ms(q.max),
            q.plan.join("; "),
        ]);
    }
    table.row(vec![
        "`count_by_status` (log summary)".to_owned(),
        "(extra)".to_owned(),
        "6 groups".to_owned(),
        ms(r.summary),
        String::new(),
        String::new(),
    ]);
    table.print();
    if let Some(s) = &r.startup {
        println!("Start-up of the server on this database:\n");
        let mut table = Table::new(&[
            "database",
            "runs",
            "min",
            "median",
            "max",
            "SIGTERM → exit (median)",
        ]);
        table.row(crate::startup::row(&format!("{} deliveries", r.rows), s));
        table.print();
    }
    println!(
        "The log's pages through HTTP to the server on this database (one keep-alive loopback \
         connection, signed in; median and max of the repeats; `deep` is `before=` the middle \
         of the year):\n"
    );
    let mut table = Table::new(&[
        "page",
        "rows",
        "first page median",
        "max",
        "deep page rows",
        "deep median",
        "deep max",
    ]);
    for p in &r.pages {
        let (deep_rows, deep_median, deep_max) = match p.deep {
            Some((rows, median, max)) => (rows.to_string(), ms(median), ms(max)),
            None => ("—".into(), "—".into(), "—".into()),
        };
        table.row(vec![
            p.name.clone(),
            p.rows.to_string(),
            ms(p.median),
            ms(p.max),
            deep_rows,
            deep_median,
            deep_max,
        ]);
    }
    table.print();
    crate::dashboard::print_queries(&r.dashboard);
    if let Some(u) = &r.upkeep {
        crate::dashboard::print_upkeep(u);
    }
}
