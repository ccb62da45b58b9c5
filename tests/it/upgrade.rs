//! Upgrades: a database made by the first release, with real rows, is migrated by this binary
//! without losing any, and what it held still works; a database from a newer release is refused.

use std::time::Duration;

use mailmycustomer::db;

use crate::sink::Sink;
use crate::support::*;

/// The schema as the first release shipped it, with an integration and two events that arrived
/// before the pipeline existed (so they are still waiting to be emailed).
fn first_release_database(config: &mailmycustomer::Config) -> String {
    let mut conn = db::open(&config.database.path, Duration::from_secs(5)).unwrap();
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

    let mut conn = db::open(&config.database.path, Duration::from_secs(5)).unwrap();
    let err = db::migrate(&mut conn).unwrap_err().to_string();
    assert!(
        err.contains("newer than this binary") && err.contains("restore a backup"),
        "{err}"
    );
    let (ok, _, err) = crate::cli::run(crate::cli::mmc(dir.path(), &["migrate"]));
    assert!(!ok && err.contains("newer than this binary"), "{err}");
}
