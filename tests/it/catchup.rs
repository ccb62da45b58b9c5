//! Issue 12, "Never miss an event": events that happened while no webhook came are listed from
//! the fake Stripe's `GET /v1/events` when the server starts (or by `integration catch-up`),
//! stored as if they had arrived by webhook and emailed once, and never twice when their
//! webhooks come late as well.

use std::path::Path;
use std::time::{Duration, Instant};

use mailmycustomer::config::Config;
use mailmycustomer::db::{self, integrations};
use mailmycustomer::pipeline::catchup::MARGIN_SECS;
use mailmycustomer::trigger::SUBSCRIBED_EVENTS;
use serde_json::Value;

use crate::cli::{add_integration_cli, mmc, run};
use crate::fake_stripe::{FakeStripe, Recorded};
use crate::pipeline::populate;
use crate::sink::Sink;
use crate::support::*;

const KEY: &str = "rk_test_51CatchUpRosen0000";
const NO_EVENTS_KEY: &str = "rk_test_51CatchUpNoEvents00";

/// A distinct `invoice.paid` (its own event and invoice: one email) created at `created`.
fn paid(tag: &str, n: usize, created: i64) -> Value {
    let mut event: Value = serde_json::from_slice(&distinct_invoice_paid(tag, n)).unwrap();
    event["created"] = created.into();
    event
}

fn add_keyed(config: &Config, name: &str, key: &str) -> String {
    let mut conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name,
            webhook_secret: SECRET,
            api_key: Some(key),
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap()
    .id
}

fn integration(db_path: &Path, id: &str) -> integrations::Integration {
    let conn = db::open(&db::Options::at(db_path).unwrap()).unwrap();
    integrations::get(&conn, id).unwrap().unwrap()
}

fn sql(db_path: &Path, statement: &str, params: impl rusqlite::Params) {
    let conn = db::open(&db::Options::at(db_path).unwrap()).unwrap();
    conn.execute(statement, params).unwrap();
}

/// The integration's stored event ids, in the order they were stored.
fn stored_ids(db_path: &Path, id: &str) -> Vec<String> {
    let conn = db::open(&db::Options::at(db_path).unwrap()).unwrap();
    let mut stmt = conn
        .prepare("SELECT stripe_event_id FROM events WHERE integration_id = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Waits until the integration's catch-up record satisfies `done`.
async fn wait_catch_up(
    db_path: &Path,
    id: &str,
    done: impl Fn(&integrations::CatchUp) -> bool,
) -> integrations::CatchUp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let caught = integration(db_path, id).catch_up;
        if done(&caught) {
            return caught;
        }
        assert!(Instant::now() < deadline, "catch-up of {id}: {caught:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until no event is left for the processor.
async fn wait_processed(db_path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let conn = db::open(&db::Options::at(db_path).unwrap()).unwrap();
        let pending: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE processing = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pending} events still pending");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every value of a repeated query parameter (`types[]`), decoded.
fn params(request: &Recorded, name: &str) -> Vec<String> {
    url::form_urlencoded::parse(request.query.as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

fn created_gte(request: &Recorded) -> i64 {
    request.param("created[gte]").unwrap().parse().unwrap()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_missed_while_down_are_emailed_once_even_when_their_webhooks_come_late() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    relay_to(&mut config, sink.port);
    let db_path = config.database.path.clone();
    let id = add_keyed(&config, "Rosen Goods", KEY);
    let created_at = integration(&db_path, &id).created_at;

    // While the server was down: three payments Stripe has, and no webhook came.
    let missed: Vec<Value> = (1..=3)
        .map(|n| paid("down", n, now() - 600 + n as i64))
        .collect();
    for event in &missed {
        fake.put_event(event.clone());
    }
    // Renewals from before the merchant connected, by more than the margin: not ours to email.
    fake.put_event(paid("before", 1, created_at - MARGIN_SECS - 60));
    // A type no trigger handles.
    let mut other = paid("other", 1, now() - 300);
    other["type"] = "customer.updated".into();
    fake.put_event(other);

    let server = TestServer::start_with(config.clone(), id.clone()).await;
    sink.wait_for(3, Duration::from_secs(20)).await;
    let caught = wait_catch_up(&db_path, &id, |c| c.at.is_some()).await;
    assert_eq!((caught.recovered_last, caught.recovered_total), (3, 3));
    assert_eq!(caught.from, Some(created_at - MARGIN_SECS));

    let requests = fake.event_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let request = &requests[0];
    assert_eq!(request.key(), KEY);
    assert_eq!(
        created_gte(request),
        created_at - MARGIN_SECS,
        "the window starts the margin before the integration existed"
    );
    assert_eq!(params(request, "types[]"), SUBSCRIBED_EVENTS);
    assert_eq!(request.param("limit").as_deref(), Some("100"));
    assert_eq!(
        stored_ids(&db_path, &id),
        ids(&missed),
        "stored oldest first, and only those"
    );

    // Stripe's retries bring the same events by webhook: each is a duplicate.
    for event in &missed {
        server
            .deliver(serde_json::to_vec(event).unwrap())
            .await
            .assert_stored(true);
    }
    // The next start lists them again and stores none.
    server.stop().await;
    let server = TestServer::start_with(config, id.clone()).await;
    let caught = wait_catch_up(&db_path, &id, |c| c.recovered_last == 0).await;
    assert_eq!(caught.recovered_total, 3);
    assert_eq!(fake.event_requests().len(), 2);
    wait_processed(&db_path).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 3, "each missed payment emailed once");
    assert_eq!(stored_ids(&db_path, &id).len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_starts_the_margin_before_the_last_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    let db_path = config.database.path.clone();
    let id = add_keyed(&config, "Rosen Goods", KEY);
    let last_run = now() - 2 * 3600;
    sql(
        &db_path,
        "UPDATE integrations SET created_at = ?2, caught_up_at = ?3, caught_up_from = ?4 \
         WHERE id = ?1",
        rusqlite::params![id, now() - 10 * 86_400, last_run, last_run - 86_400],
    );
    // Created before the last run but listed by Stripe only after it: within the margin.
    let late = paid("late", 1, last_run - MARGIN_SECS / 2);
    fake.put_event(late.clone());
    // Created long before the last run, which covered it.
    fake.put_event(paid("covered", 1, last_run - 2 * MARGIN_SECS));

    // Stripe's rate limit refuses the first request; the client tries again.
    fake.fail_next("/v1/events", 429, 1);

    let server = TestServer::start_with(config, id.clone()).await;
    let caught = wait_catch_up(&db_path, &id, |c| c.at > Some(last_run)).await;
    assert_eq!(caught.from, Some(last_run - MARGIN_SECS));
    assert_eq!(caught.recovered_last, 1);
    let requests = fake.event_requests();
    assert_eq!(requests.len(), 2, "the 429, then the page");
    assert_eq!(requests[0], requests[1], "the same page asked again");
    assert_eq!(created_gte(&requests[1]), last_run - MARGIN_SECS);
    assert_eq!(stored_ids(&db_path, &id), ids(&[late]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_catches_up_over_several_pages_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let (id, _) = add_integration_cli(
        dir.path(),
        &[
            "--name",
            "shop",
            "--webhook-secret",
            SECRET,
            "--api-key",
            KEY,
        ],
    );
    let start = now() - 3000;
    let events: Vec<Value> = (0..250)
        .map(|n| paid("page", n, start + n as i64))
        .collect();
    for event in &events {
        fake.put_event(event.clone());
    }
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    // Off: the server lists nothing itself, the CLI does it beside it.
    config.stripe.catch_up_interval_minutes = 0;
    let db_path = config.database.path.clone();
    let server = TestServer::start_with(config, id.clone()).await;

    let catch_up = || {
        let mut command = mmc(dir.path(), &["integration", "catch-up", &id]);
        command.env("MMC_STRIPE__API_BASE", &fake.base_url);
        run(command)
    };
    let (ok, out, err) = catch_up();
    assert!(ok, "{err}");
    assert!(out.contains("listed: 250 event(s)"), "{out}");
    assert!(out.contains("stored: 250 "), "{out}");

    let requests = fake.event_requests();
    assert_eq!(
        requests.len(),
        3,
        "100 + 100 + 50, and none from the server"
    );
    let newest_first: Vec<String> = ids(&events).into_iter().rev().collect();
    let cursors: Vec<Option<String>> = requests.iter().map(|r| r.param("starting_after")).collect();
    assert_eq!(
        cursors,
        [
            None,
            Some(newest_first[99].clone()),
            Some(newest_first[199].clone())
        ]
    );
    assert_eq!(stored_ids(&db_path, &id), ids(&events), "oldest first");
    let caught = integration(&db_path, &id).catch_up;
    assert_eq!((caught.recovered_last, caught.recovered_total), (250, 250));

    let (ok, out, err) = catch_up();
    assert!(ok, "{err}");
    assert!(
        out.contains("listed: 250 event(s)") && out.contains("stored: 0 "),
        "{out}"
    );
    assert_eq!(stored_ids(&db_path, &id).len(), 250);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_too_long_to_hold_is_read_again_page_by_page_oldest_first() {
    const EVENTS: usize = 2_050;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let (id, _) = add_integration_cli(
        dir.path(),
        &[
            "--name",
            "shop",
            "--webhook-secret",
            SECRET,
            "--api-key",
            KEY,
        ],
    );
    let start = now() - 3000;
    let events: Vec<Value> = (0..EVENTS)
        .map(|n| paid("long", n, start + (n / 2) as i64))
        .collect();
    for event in &events {
        fake.put_event(event.clone());
    }
    let mut command = mmc(dir.path(), &["integration", "catch-up", &id]);
    command.env("MMC_STRIPE__API_BASE", &fake.base_url);
    let (ok, out, err) = run(command);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("stored: {EVENTS} ")), "{out}");
    // 21 pages read to the end, then again from the last as they are stored.
    let cursors: Vec<Option<String>> = fake
        .event_requests()
        .iter()
        .map(|r| r.param("starting_after"))
        .collect();
    assert_eq!(cursors.len(), 42);
    let (first, again) = cursors.split_at(21);
    let reversed: Vec<Option<String>> = first.iter().rev().cloned().collect();
    assert_eq!(again, reversed.as_slice());

    let db_path = dir.path().join("mailmycustomer.db");
    let stored = stored_ids(&db_path, &id);
    assert_eq!(stored.len(), EVENTS);
    let conn = db::open(&db::Options::at(&db_path).unwrap()).unwrap();
    let created: Vec<i64> = conn
        .prepare("SELECT created FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        created.windows(2).all(|w| w[0] <= w[1]),
        "stored oldest first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_integration_failing_leaves_the_others_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    relay_to(&mut config, sink.port);
    let db_path = config.database.path.clone();
    // Listed first (older): a restricted key without Read on Events.
    let refused = add_keyed(&config, "No events", NO_EVENTS_KEY);
    sql(
        &db_path,
        "UPDATE integrations SET created_at = created_at - 60 WHERE id = ?1",
        [&refused],
    );
    fake.forbid_events(NO_EVENTS_KEY);
    fake.put_event_for(NO_EVENTS_KEY, paid("refused", 1, now() - 30));
    let working = add_keyed(&config, "Rosen Goods", KEY);
    fake.put_event_for(KEY, paid("working", 1, now() - 30));
    let keyless = add_integration(&config, "No key", "whsec_other");

    let server = TestServer::start_with(config, working.clone()).await;
    sink.wait_for(1, Duration::from_secs(20)).await;
    let caught = wait_catch_up(&db_path, &working, |c| c.at.is_some()).await;
    assert_eq!(caught.recovered_last, 1);
    let keys: Vec<String> = fake
        .event_requests()
        .iter()
        .map(|r| r.key().to_owned())
        .collect();
    assert_eq!(
        keys,
        [NO_EVENTS_KEY, KEY],
        "the refused one was tried first"
    );
    assert_eq!(integration(&db_path, &refused).catch_up.at, None);
    assert!(stored_ids(&db_path, &refused).is_empty());
    assert!(stored_ids(&db_path, &keyless).is_empty());

    // The CLI says why, naming the permission to grant.
    let catch_up = |id: &str| {
        let mut command = mmc(dir.path(), &["integration", "catch-up", id]);
        command.env("MMC_STRIPE__API_BASE", &fake.base_url);
        run(command)
    };
    let (ok, _, err) = catch_up(&refused);
    assert!(!ok);
    assert!(
        err.contains("Read on Events") && err.contains("rak_event_read"),
        "{err}"
    );
    assert!(!err.contains(NO_EVENTS_KEY), "{err}");
    let (ok, _, err) = catch_up(&keyless);
    assert!(!ok);
    assert!(err.contains("no Stripe API key"), "{err}");
    let (ok, _, err) = catch_up("int_0000000000000000");
    assert!(!ok);
    assert!(err.contains("no integration"), "{err}");
    server.stop().await;
}
