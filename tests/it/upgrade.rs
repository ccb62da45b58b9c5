//! Upgrades: a database made by the first release, with real rows, is migrated by this binary
//! without losing any, and what it held still works; a database from a newer release is refused.
//! A log written before V16 keeps every email byte for byte once the bodies move out of
//! `deliveries`, and `deliveries` keeps every other column, constraint, index and trigger.

use std::time::Duration;

use mailmycustomer::db;
use rusqlite::OptionalExtension;

use crate::sink::Sink;
use crate::support::*;

/// The schema as the first release shipped it, with an integration and two events that arrived
/// before the pipeline existed (so they are still waiting to be emailed).
fn first_release_database(config: &mailmycustomer::Config) -> String {
    let mut conn = db::open(&db::Options::new(config).unwrap()).unwrap();
    mailmycustomer::db::migrate_to(&mut conn, 1).unwrap();
    let id = "int_0123456789abcdef";
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at)
         VALUES (?1, 'Rosen Goods', ?2, 1700000000)",
        rusqlite::params![id, SECRET],
    )
    .unwrap();
    for n in 1..=2 {
        let body = distinct_invoice_paid("upgrade", n);
        let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
        conn.execute(
            "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                 received_at, payload)
             VALUES (?1, ?2, 'invoice.paid', 0, ?3, ?3, ?4)",
            rusqlite::params![
                id,
                event["id"].as_str().unwrap(),
                now(),
                String::from_utf8(body).unwrap()
            ],
        )
        .unwrap();
    }
    id.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_release_database_migrates_keeping_every_row_and_its_events_are_emailed() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    relay_to(&mut config, sink.port);
    let id = first_release_database(&config);

    let server = TestServer::start_with(config, id.clone()).await;
    let conn = server.db();
    assert_eq!(
        db::schema_version(&conn).unwrap(),
        db::latest_embedded_version()
    );
    let (name, secret): (String, String) = conn
        .query_row(
            "SELECT name, webhook_secret FROM integrations WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(name, "Rosen Goods");
    assert!(!secret.is_empty());
    assert_eq!(server.stored_events(), 2);

    // The two events waiting since the first release go out, and the old secret still verifies.
    sink.wait_for(2, Duration::from_secs(30)).await;
    server
        .deliver(distinct_invoice_paid("after-upgrade", 3))
        .await
        .assert_stored(false);
    sink.wait_for(3, Duration::from_secs(30)).await;
    server.stop().await;
}

/// Events of a V14 database, as (Stripe id, processing, process_after, body): pending (fresh
/// and postponed), finished, with a customer, without one, and a body that is not JSON.
fn v14_events(now: i64) -> Vec<(String, &'static str, Option<i64>, String)> {
    let text = |body: Vec<u8>| String::from_utf8(body).unwrap();
    let event = |id: &str, object: serde_json::Value| {
        serde_json::json!({
            "id": id, "object": "event", "type": "test.event", "created": now,
            "livemode": false, "data": {"object": object},
        })
        .to_string()
    };
    let mut postponed: serde_json::Value =
        serde_json::from_slice(&distinct_invoice_paid("v15", 2)).unwrap();
    postponed["data"]["object"]["customer"] = "cus_postponed".into();
    vec![
        // Emailed once upgraded.
        (
            "evt_v15_1".into(),
            "pending",
            None,
            text(distinct_invoice_paid("v15", 1)),
        ),
        (
            "evt_v15_2".into(),
            "pending",
            Some(now + 3_600),
            postponed.to_string(),
        ),
        (
            "evt_v15_3".into(),
            "queued",
            None,
            text(distinct_invoice_paid("v15", 3)),
        ),
        (
            "evt_v15_4".into(),
            "ignored",
            None,
            event(
                "evt_v15_4",
                serde_json::json!({"id": "cus_4", "object": "customer"}),
            ),
        ),
        (
            "evt_v15_5".into(),
            "pending",
            Some(now + 3_600),
            event(
                "evt_v15_5",
                serde_json::json!({"id": "prod_5", "object": "product"}),
            ),
        ),
        (
            "evt_v15_6".into(),
            "ignored",
            None,
            event("evt_v15_6", serde_json::json!({"object": "balance"})),
        ),
        ("evt_v15_7".into(), "ignored", None, "not JSON {".into()),
    ]
}

/// Migration V15 moves every payload out of `events` byte for byte, stores the ordering key of
/// the postponed events as V3 read it, keeps every other index and constraint of `events`, and
/// processing goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_v14_database_moves_its_payloads_apart_and_keeps_processing() {
    use mailmycustomer::db::events::{self, ORDER_KEY_SQL};
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    relay_to(&mut config, sink.port);
    let id = "int_0123456789abcdef".to_owned();
    let now = now();
    let mut conn = db::open(&db::Options::new(&config).unwrap()).unwrap();
    db::migrate_to(&mut conn, 14).unwrap();
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at)
         VALUES (?1, 'Rosen Goods', seal(?2), 1700000000)",
        rusqlite::params![id, SECRET],
    )
    .unwrap();
    for (n, (stripe_id, processing, process_after, body)) in v14_events(now).iter().enumerate() {
        conn.execute(
            "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                 received_at, payload, processing, process_after)
             VALUES (?1, ?2, 'invoice.paid', 0, ?3, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                id,
                stripe_id,
                now - 100 + n as i64,
                body,
                processing,
                process_after
            ],
        )
        .unwrap();
    }
    // A delivery of the finished event: its link must survive the rebuild of `events`.
    conn.execute(
        "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key,
             trigger, status, created_at)
         SELECT integration_id, id, stripe_event_id, 'payment_received:in_v15_3',
             'payment_received', 'sent', ?1
         FROM events WHERE stripe_event_id = 'evt_v15_3'",
        [now],
    )
    .unwrap();
    type Row = (i64, String, Option<String>);
    let read = |conn: &rusqlite::Connection, sql: &str| -> Vec<Row> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // What V3's generated column gave, and the schema `events` stands on besides the payload.
    let before = read(
        &conn,
        "SELECT id, payload, order_key FROM events ORDER BY id",
    );
    let schema = |conn: &rusqlite::Connection| {
        read(
            conn,
            "SELECT 0, name, sql FROM sqlite_master WHERE tbl_name = 'events' AND type != 'table'
             UNION ALL SELECT id, \"table\", \"from\" || on_delete FROM pragma_foreign_key_list('events')
             UNION ALL SELECT 1, name, NULL FROM pragma_table_info('events') ORDER BY 1, 2",
        )
    };
    let schema_before = schema(&conn);
    assert_eq!(before.len(), 7);
    drop(conn);

    let server = TestServer::start_with(config, id.clone()).await;
    let conn = server.db();
    assert_eq!(
        db::schema_version(&conn).unwrap(),
        db::latest_embedded_version()
    );
    let moved = read(
        &conn,
        &format!(
            "SELECT e.id, p.payload, {ORDER_KEY_SQL} FROM events e
             JOIN event_payloads p ON p.event_id = e.id ORDER BY e.id"
        ),
    );
    assert_eq!(
        moved, before,
        "payloads byte for byte, and the key read from each alike"
    );
    let stored = read(
        &conn,
        "SELECT id, stripe_event_id, order_key FROM events
         WHERE processing = 'pending' AND process_after IS NOT NULL ORDER BY id",
    );
    let v3 = |stripe_id: &str| {
        let n = v14_events(now)
            .iter()
            .position(|e| e.0 == stripe_id)
            .unwrap();
        before[n].2.clone()
    };
    assert_eq!(
        stored
            .iter()
            .map(|r| (r.1.as_str(), r.2.clone()))
            .collect::<Vec<_>>(),
        [
            ("evt_v15_2", Some("cus_postponed".to_owned())),
            ("evt_v15_5", Some("prod_5".to_owned()))
        ]
    );
    assert_eq!(stored[0].2, v3("evt_v15_2"));
    assert_eq!(stored[1].2, v3("evt_v15_5"));
    // Every index, trigger and foreign key is as it was; the columns are V14's less `payload`
    // (and `order_key`, now stored, last).
    let mut expected: Vec<Row> = schema_before
        .into_iter()
        .filter(|r| !(r.0 == 1 && (r.1 == "payload" || r.1 == "order_key")))
        .collect();
    expected.push((1, "order_key".into(), None));
    expected.sort();
    assert_eq!(schema(&conn), expected);
    let checks: (String, i64) = conn
        .query_row(
            "SELECT (SELECT integrity_check FROM pragma_integrity_check),
                    (SELECT COUNT(*) FROM pragma_foreign_key_check)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(checks, ("ok".to_owned(), 0));
    let linked: (i64, i64) = conn
        .query_row(
            "SELECT d.event_id, e.id FROM deliveries d, events e
             WHERE d.stripe_event_id = 'evt_v15_3' AND e.stripe_event_id = 'evt_v15_3'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(linked.0, linked.1, "the delivery still points at its event");

    // The postponed order is read from its index, and finds the postponed event.
    let plan = postponed_order_plan(&conn);
    assert!(
        plan.contains("USING INDEX events_postponed_order") && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
    assert_eq!(
        events::postponed_before(&conn, &id, "cus_postponed", now + 1, i64::MAX, 5).unwrap(),
        [(stored[0].0, "evt_v15_2".to_owned(), now + 3_600)]
    );

    // The pending event from before the upgrade is emailed, and so is a new one.
    sink.wait_for(1, Duration::from_secs(30)).await;
    server
        .deliver(distinct_invoice_paid("after-v15", 8))
        .await
        .assert_stored(false);
    sink.wait_for(2, Duration::from_secs(30)).await;
    let first = events::get(&conn, &id, "evt_v15_1").unwrap().unwrap();
    assert_eq!(first.processing, events::Processing::Queued);
    assert_eq!(first.payload.as_bytes(), distinct_invoice_paid("v15", 1));
    server.stop().await;
}

#[test]
fn a_database_from_a_newer_release_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    add_integration(&config, "shop", SECRET);
    let conn = rusqlite::Connection::open(&config.database.path).unwrap();
    conn.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         VALUES (?1, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
        [db::latest_embedded_version() + 1],
    )
    .unwrap();
    drop(conn);

    let mut conn = db::open(&db::Options::new(&config).unwrap()).unwrap();
    let err = db::migrate(&mut conn).unwrap_err().to_string();
    assert!(
        err.contains("newer than this binary") && err.contains("restore a backup"),
        "{err}"
    );
    let (ok, _, err) = crate::cli::run(crate::cli::mmc(dir.path(), &["migrate"]));
    assert!(!ok && err.contains("newer than this binary"), "{err}");
}

/// The last schema with the bodies in `deliveries`.
const BODIES_IN_ROW: i32 = 15;

/// A delivery written before V16, as (id, status, html, text).
struct OldDelivery {
    id: i64,
    status: &'static str,
    html: Option<String>,
    text: Option<String>,
}

/// Deliveries in every state a log holds, written at schema `BODIES_IN_ROW`: a queued one and
/// one a dead server left `sending` (both due), sent, failed, skipped without an email, and a
/// resend of the sent one. Bodies with what a byte-for-byte copy could lose: non-ASCII, CRLF, a
/// NUL, trailing spaces, an empty text part, and one past a page (an overflow chain).
fn log_before_v16(config: &mailmycustomer::Config) -> (String, Vec<OldDelivery>) {
    let mut conn = db::open(&db::Options::new(config).unwrap()).unwrap();
    db::migrate_to(&mut conn, BODIES_IN_ROW).unwrap();
    let integration = "int_0123456789abcdef";
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at)
         VALUES (?1, 'Rosen Goods', ?2, 1700000000)",
        rusqlite::params![integration, SECRET],
    )
    .unwrap();
    let long = "Grüße aus Köln ✓ — ".repeat(400);
    let rows = vec![
        OldDelivery {
            id: 1,
            status: "queued",
            html: Some("<p>queued-before-upgrade</p>".into()),
            text: Some("queued-before-upgrade".into()),
        },
        OldDelivery {
            id: 2,
            status: "sending",
            html: Some("<p>interrupted-before-upgrade</p>".into()),
            text: Some("interrupted-before-upgrade".into()),
        },
        OldDelivery {
            id: 3,
            status: "sent",
            html: Some(format!("<p>{long}</p>\r\n<p>a\u{0}b</p>  ")),
            text: Some(format!("{long}\r\nline two  \n")),
        },
        OldDelivery {
            id: 4,
            status: "failed",
            html: Some("<p>Zahlung fehlgeschlagen</p>".into()),
            text: Some(String::new()),
        },
        OldDelivery {
            id: 5,
            status: "skipped",
            html: None,
            text: None,
        },
        OldDelivery {
            id: 6,
            status: "sent",
            html: Some(format!("<p>{long}</p>\r\n<p>a\u{0}b</p>  ")),
            text: Some(format!("{long}\r\nline two  \n")),
        },
    ];
    let at = now() - 3_600;
    for d in &rows {
        let resend_of = (d.id == 6).then_some(3);
        let business_key = format!("in_{}:paid", resend_of.unwrap_or(d.id));
        let (lease_until, lease_owner) = match d.status {
            "sending" => (Some(at + 60), Some(42)),
            _ => (None, None),
        };
        let next_attempt_at = match d.status {
            "queued" => Some(at),
            "sending" => lease_until,
            _ => None,
        };
        conn.execute(
            "INSERT INTO deliveries (id, integration_id, stripe_event_id, business_key, trigger,
                 recipient, recipient_name, subject, html, text, status, attempts,
                 next_attempt_at, lease_until, lease_owner, created_at, resend_of, is_resend,
                 reason, last_error)
             VALUES (?1, ?2, ?3, ?4, 'payment_received', ?5, 'Jenny Rosen', ?6, ?7, ?8, ?9, ?10,
                 ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            rusqlite::params![
                d.id,
                integration,
                format!("evt_{}", d.id),
                business_key,
                (d.status != "skipped").then(|| format!("customer{}@example.com", d.id)),
                (d.status != "skipped").then(|| format!("Your receipt no. {}", d.id)),
                d.html,
                d.text,
                d.status,
                i64::from(d.status == "sending"),
                next_attempt_at,
                lease_until,
                lease_owner,
                at + d.id,
                resend_of,
                resend_of.is_some(),
                (d.status == "skipped").then_some("no_template"),
                (d.status == "skipped").then_some("no template for payment_received"),
            ],
        )
        .unwrap();
    }
    (integration.to_owned(), rows)
}

/// `deliveries` as the schema defines it: its CREATE statement, its columns, its references,
/// and its indexes and triggers (name and statement).
fn deliveries_schema(conn: &rusqlite::Connection) -> (String, Vec<String>, Vec<String>) {
    let table: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'deliveries'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i)
                        .map(|v| format!("{v:?}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.join(" "))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let mut indexes = rows(
        "SELECT type, name, sql FROM sqlite_schema
         WHERE tbl_name = 'deliveries' AND type IN ('index', 'trigger') ORDER BY name",
    );
    indexes.extend(rows("SELECT * FROM pragma_foreign_key_list('deliveries')"));
    (
        table,
        rows("SELECT * FROM pragma_table_info('deliveries')"),
        indexes,
    )
}

/// Issue 13, item 6: V16 takes the bodies out of `deliveries` and nothing else: after its
/// rebuild every other column (its type, default, NOT NULL and CHECK), the `resend_of`, event
/// and integration references, every index and the daily-count triggers are as they were.
#[test]
fn v16_drops_only_the_bodies_from_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    log_before_v16(&config);
    let mut conn = db::open(&db::Options::new(&config).unwrap()).unwrap();
    let counts = |conn: &rusqlite::Connection| -> Vec<(i64, String, i64)> {
        let mut stmt = conn
            .prepare("SELECT day, status, n FROM daily_counts ORDER BY 1, 2")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let (table, columns, rest) = deliveries_schema(&conn);
    let counted = counts(&conn);
    assert_eq!(counted.iter().map(|c| c.2).sum::<i64>(), 6);
    db::migrate_to(&mut conn, 16).unwrap();
    let (table_after, columns_after, rest_after) = deliveries_schema(&conn);
    // Dropping the old table fired no trigger: the counts still match the rows.
    assert_eq!(counts(&conn), counted);

    // The CREATE statements without comments, layout and quotes (V16 writes the columns V4 to
    // V11 added on lines of their own, and the rename quotes the name): the same definitions.
    let tokens = |sql: &str| -> String {
        sql.lines()
            .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
            .collect::<String>()
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"')
            .collect()
    };
    let without_bodies = tokens(&table)
        .replace("htmlTEXT,", "")
        .replace("textTEXT,", "");
    assert_ne!(without_bodies, tokens(&table), "{table}");
    assert_eq!(tokens(&table_after), without_bodies);
    let kept: Vec<&String> = columns
        .iter()
        .filter(|c| !c.contains("Text(\"html\")") && !c.contains("Text(\"text\")"))
        .collect();
    assert_eq!(kept.len(), columns.len() - 2, "{columns:?}");
    // Column numbers shift past the dropped ones: compare everything but the number.
    let without_cid = |c: &String| c.split_once(' ').unwrap().1.to_owned();
    assert_eq!(
        columns_after.iter().map(without_cid).collect::<Vec<_>>(),
        kept.into_iter().map(without_cid).collect::<Vec<_>>()
    );
    assert_eq!(rest_after, rest);
    assert!(
        rest.iter().any(|r| r.contains("daily_counts_update")),
        "{rest:?}"
    );
}

/// Issue 13, item 6: a log written before V16, migrated by `serve`, keeps every email byte for
/// byte (and no bodies row for a delivery that had none), is still searched through its
/// indexes, and what was waiting to be sent goes out with its email.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_with_bodies_in_its_rows_migrates_and_its_queued_emails_are_sent() {
    use mail_parser::MessageParser;
    use mailmycustomer::db::deliveries::{self, LogFilter, Status};

    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    relay_to(&mut config, sink.port);
    let (integration, rows) = log_before_v16(&config);

    let server = TestServer::start_with(config, integration).await;
    let conn = server.db();
    assert_eq!(
        db::schema_version(&conn).unwrap(),
        db::latest_embedded_version()
    );
    for d in &rows {
        let stored: Option<(Option<String>, Option<String>)> = conn
            .query_row(
                "SELECT html, text FROM delivery_bodies WHERE delivery_id = ?1",
                [d.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .unwrap();
        match (&d.html, &d.text) {
            (None, None) => assert_eq!(stored, None, "delivery {}", d.id),
            _ => assert_eq!(
                stored,
                Some((d.html.clone(), d.text.clone())),
                "delivery {}",
                d.id
            ),
        }
        let got = deliveries::get(&conn, d.id).unwrap().unwrap();
        assert_eq!(
            (&got.html, &got.text),
            (&d.html, &d.text),
            "delivery {}",
            d.id
        );
    }

    // The log is searched as before: by recipient, by status, newest first.
    let by_recipient = deliveries::search(
        &conn,
        &LogFilter {
            recipient: Some("Customer3@Example.com".into()),
            limit: 10,
            ..LogFilter::default()
        },
    )
    .unwrap();
    assert_eq!(by_recipient.len(), 1);
    assert_eq!(
        by_recipient[0].subject.as_deref(),
        Some("Your receipt no. 3")
    );
    let skipped = deliveries::log_page(
        &conn,
        &LogFilter {
            status: Some(Status::Skipped),
            limit: 10,
            ..LogFilter::default()
        },
    )
    .unwrap();
    assert_eq!(skipped.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [5]);

    // The queued delivery and the one a dead server left `sending` go out with their bodies.
    let mail = sink.wait_for(2, Duration::from_secs(30)).await;
    let mut texts: Vec<String> = mail
        .iter()
        .map(|raw| {
            let m = MessageParser::default().parse(raw).expect("parses as MIME");
            let text = m.body_text(0).unwrap().trim_end().to_owned();
            let html = m.body_html(0).unwrap();
            assert!(html.contains(&format!("<p>{text}</p>")), "{html}");
            text
        })
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        ["interrupted-before-upgrade", "queued-before-upgrade"]
    );
    for id in [1, 2] {
        let mut status = Status::Queued;
        for _ in 0..100 {
            status = deliveries::get(&conn, id).unwrap().unwrap().status;
            if status == Status::Sent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, Status::Sent, "delivery {id}");
    }
    server.stop().await;
}

/// How long migration V15 takes on a big V14 database: `MMC_MEASURE_EVENTS` events (100,000 by
/// default) of Stripe's 6 KB `invoice.paid`, one in a thousand postponed. With
/// `MMC_MEASURE_KEEP_V14=PATH`, a copy of the V14 file is left there (to time the migration's
/// SQL elsewhere, e.g. with an optimized sqlite3).
#[test]
#[ignore = "a measurement: run it by name with --ignored --nocapture"]
fn v15_migration_time_on_a_big_database() {
    use std::time::Instant;
    let events: i64 = std::env::var("MMC_MEASURE_EVENTS")
        .map(|n| n.parse().expect("MMC_MEASURE_EVENTS: a number of events"))
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let path = config.database.path.clone();
    let mut conn = db::open(&db::Options::new(&config).unwrap()).unwrap();
    db::migrate_to(&mut conn, 14).unwrap();
    let filled = Instant::now();
    conn.execute_batch("BEGIN").unwrap();
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at)
         VALUES ('int_0123456789abcdef', 'Rosen Goods', seal(?1), 1700000000)",
        [SECRET],
    )
    .unwrap();
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                             received_at, payload, processing, process_after)
         SELECT 'int_0123456789abcdef', 'evt_measure_' || i, 'invoice.paid', 0,
                1700000000 + i, 1700000000 + i,
                replace(replace(?2, 'evt_1Pgc76B7WZ01zgkW0008', 'evt_measure_' || i),
                        'in_1Pgc6tB7WZ01zgkWu9fdqL6I', 'in_measure_' || i),
                IIF(i % 1000 = 0, 'pending', 'queued'), IIF(i % 1000 = 0, 1900000000, NULL)
         FROM n",
        rusqlite::params![
            events,
            String::from_utf8(fixture("invoice.paid.json")).unwrap()
        ],
    )
    .unwrap();
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) >> 20;
    eprintln!(
        "filled {events} events at V14 in {:?}: {} MiB",
        filled.elapsed(),
        size(&path)
    );
    drop(conn);
    if let Ok(keep) = std::env::var("MMC_MEASURE_KEEP_V14") {
        std::fs::copy(&path, &keep).unwrap();
    }

    let mut conn = db::open(&db::Options::new(&config).unwrap()).unwrap();
    let migrating = Instant::now();
    assert_eq!(db::migrate_to(&mut conn, 15).unwrap(), 15);
    let took = migrating.elapsed();
    let wal = path.with_extension("db-wal");
    let wal_peak = size(&wal);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let (payloads, free_pages, page_size): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM event_payloads),
                    (SELECT freelist_count FROM pragma_freelist_count),
                    (SELECT page_size FROM pragma_page_size)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(payloads, events);
    eprintln!(
        "migrated to V15 in {took:?}: WAL {wal_peak} MiB before its checkpoint, file {} MiB \
         of which {} MiB free pages",
        size(&path),
        (free_pages * page_size) >> 20
    );
}

/// Issue 13: V17 stores new payloads packed. A payload stored as text at V16 is read and emailed
/// as before the upgrade; a new one is stored packed, at under half its size, and both
/// read back as the exact bodies Stripe signed.
#[tokio::test(flavor = "multi_thread")]
async fn a_v16_payload_is_emailed_after_the_upgrade_and_new_ones_are_stored_packed() {
    let old = emailed_after_upgrading_from(16, |conn, body| {
        conn.execute(
            "INSERT INTO event_payloads (event_id, payload) VALUES (last_insert_rowid(), ?1)",
            [std::str::from_utf8(body).unwrap()],
        )
        .unwrap();
    })
    .await;
    assert_eq!(
        old.stored_before,
        (String::from_utf8(old.body).unwrap(), None)
    );
}

/// Issue 13: V18 packs new payloads with a dictionary. One packed at V17, without it, is read and
/// emailed after the upgrade; a new frame names the dictionary and is smaller.
#[tokio::test(flavor = "multi_thread")]
async fn a_v17_payload_is_emailed_after_the_upgrade_and_new_ones_use_the_dictionary() {
    let old = emailed_after_upgrading_from(17, |conn, body| {
        let mut v17 = zstd::bulk::Compressor::new(1).unwrap();
        v17.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .unwrap();
        conn.execute(
            "INSERT INTO event_payloads (event_id, payload, payload_zstd)
             VALUES (last_insert_rowid(), '', ?1)",
            [v17.compress(body).unwrap()],
        )
        .unwrap();
    })
    .await;
    let before = old.stored_before.1.expect("stored packed at V17");
    let after = old.stored_after.1.expect("stored packed at V18");
    let dictionary = |frame: &[u8]| zstd::zstd_safe::get_dict_id_from_frame(frame);
    assert_eq!(dictionary(&before), None);
    assert_eq!(dictionary(&after).map(|id| id.get()), Some(0x4D4D_4301));
    assert!(
        after.len() < before.len(),
        "{} bytes with the dictionary, {} without",
        after.len(),
        before.len()
    );
}

/// What `emailed_after_upgrading_from` found: the old event's body, and each event's stored row
/// (`payload`, `payload_zstd`).
struct Upgraded {
    body: Vec<u8>,
    stored_before: (String, Option<Vec<u8>>),
    stored_after: (String, Option<Vec<u8>>),
}

/// A database at schema `version` holding one `invoice.paid` whose payload `store` wrote as that
/// version did, then the current server on it: the old event is emailed, a new one is stored
/// (its text empty, packed under half its size) and emailed, and both read back exactly.
async fn emailed_after_upgrading_from(
    version: i32,
    store: impl FnOnce(&rusqlite::Connection, &[u8]),
) -> Upgraded {
    use mailmycustomer::db::events;
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    relay_to(&mut config, sink.port);
    let id = "int_0123456789abcdef".to_owned();
    let tag = format!("v{version}");
    let old_body = distinct_invoice_paid(&tag, 1);
    let old_id = format!("evt_{tag}_1");
    let mut conn = db::open(&db::Options::new(&config).unwrap()).unwrap();
    db::migrate_to(&mut conn, version).unwrap();
    conn.execute(
        "INSERT INTO integrations (id, name, webhook_secret, created_at)
         VALUES (?1, 'Rosen Goods', seal(?2), 1700000000)",
        rusqlite::params![id, SECRET],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created, received_at)
         VALUES (?1, ?2, 'invoice.paid', 0, ?3, ?3)",
        rusqlite::params![id, old_id, now()],
    )
    .unwrap();
    store(&conn, &old_body);
    drop(conn);

    let server = TestServer::start_with(config, id.clone()).await;
    let conn = server.db();
    sink.wait_for(1, Duration::from_secs(30)).await;
    let new_body = distinct_invoice_paid("new", 2);
    server.deliver(new_body.clone()).await.assert_stored(false);
    let both = sink.wait_for(2, Duration::from_secs(30)).await;
    for message in &both {
        let text = String::from_utf8_lossy(message);
        assert!(text.contains("jenny.rosen@example.com"), "{text}");
        assert!(text.contains("20.00"), "{text}");
    }

    let stored = |stripe_id: &str| -> (String, Option<Vec<u8>>) {
        conn.query_row(
            "SELECT p.payload, p.payload_zstd FROM events e
             JOIN event_payloads p ON p.event_id = e.id WHERE e.stripe_event_id = ?1",
            [stripe_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let stored_after = stored("evt_new_2");
    assert_eq!(stored_after.0, "");
    let packed = stored_after.1.as_ref().expect("a new payload is packed");
    assert!(
        packed.len() * 2 < new_body.len(),
        "{} bytes packed of {}",
        packed.len(),
        new_body.len()
    );
    for (stripe_id, body) in [(old_id.as_str(), &old_body), ("evt_new_2", &new_body)] {
        let event = events::get(&conn, &id, stripe_id).unwrap().unwrap();
        assert_eq!(event.payload.as_bytes(), body.as_slice(), "{stripe_id}");
        assert_eq!(event.processing, events::Processing::Queued, "{stripe_id}");
    }
    let stored_before = stored(&old_id);
    server.stop().await;
    Upgraded {
        body: old_body,
        stored_before,
        stored_after,
    }
}
