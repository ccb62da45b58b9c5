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
const BODIES_IN_ROW: i32 = 14;

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

/// Issue 13, item 6: V16 takes the bodies out of `deliveries` and nothing else: every other
/// column (its type, default, NOT NULL and CHECK), the `resend_of` and integration references,
/// every index and the daily-count triggers are as they were.
#[test]
fn v16_drops_only_the_bodies_from_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    log_before_v16(&config);
    let mut conn = db::open(&db::Options::new(&config).unwrap()).unwrap();
    let (table, columns, rest) = deliveries_schema(&conn);
    db::migrate_to(&mut conn, 16).unwrap();
    let (table_after, columns_after, rest_after) = deliveries_schema(&conn);

    let without_bodies: String = table
        .lines()
        .filter(|l| !matches!(l.split_whitespace().next(), Some("html" | "text")))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(table_after, without_bodies);
    assert!(table_after
        .contains("resend_of       INTEGER REFERENCES deliveries(id) ON DELETE SET NULL"));
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
