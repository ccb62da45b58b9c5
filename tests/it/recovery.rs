//! Recovery and fairness (issue 8, items 5 and 9): one `serve` per database, only the holder of
//! a delivery's lease records its outcome, a slow relay conversation keeps its lease, and big
//! deletes (retention, `integration remove`) leave webhook intake answering. The crash test
//! (rows a killed server was sending go out at the next start) is in `delivery.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailmycustomer::config::Config;
use mailmycustomer::db::{self, deliveries};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::{mmc, run};
use crate::sink::Sink;
use crate::support::*;

/// Runs `cmd` and waits at most `within` for it (a serve that wrongly starts would never end).
fn run_within(mut cmd: Command, within: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    match status {
        Some(status) => (status.success(), stderr),
        None => panic!("still running after {within:?}: {stderr}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_serve_on_the_same_database_is_refused_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let pid = std::process::id().to_string();

    // In process, as tests and embedders call it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = mailmycustomer::serve(server.config.clone(), listener, async {})
        .await
        .expect_err("a second serve on the same database must not start")
        .to_string();
    assert!(
        err.contains(&format!("process {pid}"))
            && err.contains("mailmycustomer.db.lock")
            && err.contains("database.path"),
        "{err}"
    );

    // The binary, as a user would start it by mistake: a clear error and a failing exit code.
    let (ok, stderr) = run_within(
        mmc(dir.path(), &["serve", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(20),
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("error: another `mailmycustomer serve`")
            && stderr.contains(&format!("process {pid}"))
            && stderr.contains("stop that one first"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The CLI still opens the database beside the running server, and the server still serves.
    let (ok, out, err) = run(mmc(dir.path(), &["integration", "list"]));
    assert!(ok && out.contains(&server.integration_id), "{out}{err}");
    server
        .deliver(fixture("invoice.paid.json"))
        .await
        .assert_stored(false);

    // Once the first one stopped, the database is free for the next.
    let (config, id) = (server.config.clone(), server.integration_id.clone());
    server.stop().await;
    TestServer::start_with(config, id).await.stop().await;
}

#[test]
fn only_the_worker_holding_a_lease_records_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let integration = add_integration(&config, "shop", SECRET);
    let conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    deliveries::insert(
        &conn,
        &deliveries::NewDelivery {
            recipient: Some("jenny.rosen@example.com".into()),
            subject: Some("Thanks".into()),
            html: Some("<p>Thanks</p>".into()),
            ..deliveries::NewDelivery::new(
                integration,
                "evt_1",
                "invoice:in_1",
                mailmycustomer::trigger::TriggerKind::PaymentReceived,
            )
        },
        1000,
    )
    .unwrap();

    let first = deliveries::claim_due(&conn, 1000, 10, 32)
        .unwrap()
        .remove(0);
    assert!(deliveries::claim_due(&conn, 1009, 10, 32)
        .unwrap()
        .is_empty());
    // The first worker stalls past its lease; another one takes the row over.
    let second = deliveries::claim_due(&conn, 1010, 10, 32)
        .unwrap()
        .remove(0);
    let (a, b) = (first.lease_owner.unwrap(), second.lease_owner.unwrap());
    assert_ne!(a, b);
    let id = first.id;

    // Whatever the first worker learns now, the row is no longer its to write.
    assert!(!deliveries::mark_sent(&conn, id, a, "<1.1000@rosen.example>", 1011).unwrap());
    assert!(!deliveries::mark_failed(&conn, id, a, "550 no such user").unwrap());
    assert!(!deliveries::mark_retry(&conn, id, a, "421 try later", 1100).unwrap());
    assert!(!deliveries::renew_lease(&conn, id, a, 1100).unwrap());
    assert!(!deliveries::release(&conn, id, a, 1011).unwrap());
    let row = deliveries::get(&conn, id).unwrap().unwrap();
    assert_eq!(
        (
            row.status.as_str(),
            row.lease_owner,
            row.lease_until,
            row.attempts
        ),
        ("sending", Some(b), Some(1020), 2)
    );
    assert_eq!((row.message_id, row.last_error), (None, None));

    // The holder renews (no one can claim it meanwhile) and records the outcome.
    assert!(deliveries::renew_lease(&conn, id, b, 1040).unwrap());
    assert!(deliveries::claim_due(&conn, 1030, 10, 32)
        .unwrap()
        .is_empty());
    assert!(deliveries::mark_sent(&conn, id, b, "<1.1000@rosen.example>", 1031).unwrap());
    let row = deliveries::get(&conn, id).unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.sent_at, row.lease_owner),
        ("sent", Some(1031), None)
    );
}

/// A TCP relay in front of a real smtp-sink that holds back the sink's answer to the first
/// message it carries (after the final ".") for `hold`: a relay slow to accept one message.
/// Everything else passes straight through.
async fn slow_to_accept_first_message(upstream: u16, hold: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let armed = Arc::new(AtomicBool::new(true));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let armed = armed.clone();
            tokio::spawn(async move {
                let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let hold_until: Arc<Mutex<Option<Instant>>> = Arc::default();
                let held = hold_until.clone();
                let up = async move {
                    let mut buf = vec![0; 64 * 1024];
                    let mut seen: Vec<u8> = Vec::new();
                    loop {
                        let n = from_client.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        // The last bytes of the previous read count too: ".\r\n" may be split.
                        seen.extend_from_slice(&buf[..n]);
                        if seen.windows(5).any(|w| w == b"\r\n.\r\n")
                            && armed.swap(false, Ordering::SeqCst)
                        {
                            *held.lock().unwrap() = Some(Instant::now() + hold);
                        }
                        seen.drain(..seen.len().saturating_sub(4));
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        let n = from_server.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        let until = *hold_until.lock().unwrap();
                        if let Some(until) = until {
                            tokio::time::sleep_until(until.into()).await;
                        }
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    port
}

fn smtp_config(config: &mut Config, port: u16) {
    relay_to(config, port);
    config.smtp.timeout_secs = 30;
    config.smtp.pool_size = 2;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_relay_conversation_renews_its_lease_and_the_email_goes_once() {
    const LEASE: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    // Longer than two leases: without renewal the other worker claims the row and sends it too.
    let relay = slow_to_accept_first_message(sink.port, Duration::from_secs(LEASE * 2 + 2)).await;
    let mut config = test_config(dir.path());
    smtp_config(&mut config, relay);
    // Below the 10 s a config file may set, to keep the test short; the sender takes it as is.
    config.outbox.lease_secs = LEASE;
    let id = add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    server
        .deliver(distinct_invoice_paid("slow", 0))
        .await
        .assert_stored(false);

    let deadline = Instant::now() + Duration::from_secs(40);
    let row = loop {
        let all = deliveries::search(
            &server.db(),
            &deliveries::LogFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
        if all.len() == 1 && all[0].status == deliveries::Status::Sent {
            break all.into_iter().next().unwrap();
        }
        assert!(Instant::now() < deadline, "not sent in time: {all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "the relay got the message once");
    assert_eq!(row.attempts, 1, "{row:#?}");
    server.stop().await;
}

/// The relay accepted the message, and the database is locked by another process for longer
/// than the busy timeout just then: the `sent` mark is recorded once the lock is gone, and the
/// email is not sent again when the lease runs out.
#[tokio::test(flavor = "multi_thread")]
async fn an_outcome_the_database_was_too_busy_to_record_is_recorded_later_and_the_email_goes_once()
{
    const LEASE: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let relay = slow_to_accept_first_message(sink.port, Duration::from_secs(1)).await;
    let mut config = test_config(dir.path());
    smtp_config(&mut config, relay);
    config.outbox.lease_secs = LEASE;
    config.database.busy_timeout_ms = 200;
    let id = add_integration(&config, "shop", SECRET);
    let path = config.database.path.clone();
    let server = TestServer::start_with(config, id).await;
    server
        .deliver(distinct_invoice_paid("busy", 0))
        .await
        .assert_stored(false);

    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &path,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'sending'",
    ) == 0
    {
        assert!(Instant::now() < deadline, "never sending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another process's write transaction, from before the relay's answer to well after it.
    let holder = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            std::thread::sleep(Duration::from_millis(2500));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    holder.await.unwrap();
    while count(
        &path,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'",
    ) == 0
    {
        assert!(Instant::now() < deadline, "not recorded as sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the lease: a row left `sending` would have been claimed and sent again by now.
    tokio::time::sleep(Duration::from_secs(LEASE + 2)).await;
    assert_eq!(sink.messages().len(), 1, "the relay got the message once");
    assert_eq!(
        count(&path, "SELECT SUM(attempts) FROM deliveries"),
        1,
        "one attempt"
    );
    server.stop().await;
}

/// Adds `n` finished deliveries and their events, created at `at`, each the size of a real one
/// (Stripe's 6 KB `invoice.paid` payload, a rendered HTML and text email, its own recipient).
fn add_history(path: &Path, integration: &str, n: usize, at: i64) {
    let conn = db::open(
        &db::Options::at(path)
            .unwrap()
            .with_busy_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let payload = String::from_utf8(fixture("invoice.paid.json")).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/email");
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
    let html = read("layout.html") + &read("payment_received.html");
    let text = read("payment_received.txt");
    conn.execute_batch("BEGIN").unwrap();
    let first: i64 = conn
        .query_row("SELECT IFNULL(MAX(id), 0) + 1 FROM events", [], |r| {
            r.get(0)
        })
        .unwrap();
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?3)
         INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                             received_at, processing)
         SELECT ?1, 'evt_old_' || i, 'invoice.paid', 0, ?2, ?2, 'queued' FROM n",
        rusqlite::params![integration, at, n as i64],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO event_payloads (event_id, payload) SELECT id, ?2 FROM events WHERE id >= ?1",
        rusqlite::params![first, payload],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key, trigger,
             recipient, recipient_name, subject, status, attempts, created_at,
             sent_at, message_id)
         SELECT integration_id, id, stripe_event_id, 'invoice:' || stripe_event_id,
             'payment_received', 'customer' || id || '@example.com', 'Jenny Rosen',
             'Thanks for your payment', 'sent', 1, received_at, received_at,
             '<' || id || '@rosen.example>'
         FROM events WHERE integration_id = ?1",
        [integration],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO delivery_bodies (delivery_id, html, text)
         SELECT id, ?2, ?3 FROM deliveries d WHERE integration_id = ?1
             AND NOT EXISTS (SELECT 1 FROM delivery_bodies b WHERE b.delivery_id = d.id)",
        rusqlite::params![integration, html, text],
    )
    .unwrap();
    conn.execute_batch("COMMIT").unwrap();
}

fn count(path: &Path, sql: &str) -> i64 {
    let conn = db::open(
        &db::Options::at(path)
            .unwrap()
            .with_busy_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// One webhook's answer: its status (or the transport error), how long it took, and whether the
/// delete was still running when it came.
type Answer = (Result<u16, String>, Duration, bool);

/// Webhooks posted by a few clients, one after another each, until `stop`.
struct Flood {
    stop: Arc<AtomicBool>,
    deleting: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl Flood {
    const CLIENTS: usize = 4;
    /// A bound on the load whatever happens: per client, at most this many requests.
    const MAX_PER_CLIENT: usize = 5_000;

    fn start(url: String) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let deleting = Arc::new(AtomicBool::new(true));
        let clients = (0..Self::CLIENTS)
            .map(|c| {
                let (stop, deleting, url) = (stop.clone(), deleting.clone(), url.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .unwrap();
                    let mut answers = Vec::new();
                    for i in 0..Self::MAX_PER_CLIENT {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let body = distinct_invoice_paid(&format!("flood{c}"), i);
                        let started = Instant::now();
                        let status = client
                            .post(&url)
                            .header("Stripe-Signature", sign_now(&body, SECRET))
                            .body(body)
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .map_err(|e| e.to_string());
                        answers.push((status, started.elapsed(), deleting.load(Ordering::SeqCst)));
                    }
                    answers
                })
            })
            .collect();
        Flood {
            stop,
            deleting,
            clients,
        }
    }

    /// Stops the clients, checks that every webhook was answered 200 and that enough of them
    /// were answered while the delete ran, and returns the worst latency during the delete.
    async fn finish(self, what: &str) -> Duration {
        self.stop.store(true, Ordering::SeqCst);
        let mut answers = Vec::new();
        for client in self.clients {
            answers.extend(client.await.unwrap());
        }
        let refused: Vec<_> = answers.iter().filter(|(s, ..)| *s != Ok(200)).collect();
        assert!(
            refused.is_empty(),
            "{what}: {} of {} webhooks not answered 200, e.g. {:?}",
            refused.len(),
            answers.len(),
            &refused[..refused.len().min(5)]
        );
        let during: Vec<Duration> = answers
            .iter()
            .filter(|(_, _, deleting)| *deleting)
            .map(|(_, latency, _)| *latency)
            .collect();
        assert!(
            during.len() >= 20,
            "{what}: only {} webhooks were answered while rows were deleted",
            during.len()
        );
        let worst = during.iter().max().copied().unwrap_or_default();
        let mut sorted = during.clone();
        sorted.sort();
        eprintln!(
            "{what}: {} webhooks answered 200 during the delete; median {:?}, p99 {:?}, worst {worst:?}",
            during.len(),
            sorted[sorted.len() / 2],
            sorted[sorted.len() * 99 / 100],
        );
        worst
    }
}

const HISTORY: usize = 100_000;
/// The two 100k-row tests write and delete about a gigabyte each: one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Intake's wait for the write lock before it answers 503 (5 s by default): low enough that a
/// delete holding the lock for seconds, as one 100k-row statement does, shows as a 503, and still
/// several times the longest batch measured on a loaded two-core machine (about 1 s, debug build).
const INTAKE_BUSY_TIMEOUT_MS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_100k_rows_while_webhooks_keep_being_answered() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.outbox.retention_days = 30;
    config.database.busy_timeout_ms = INTAKE_BUSY_TIMEOUT_MS;
    let id = add_integration(&config, "shop", SECRET);
    let path = config.database.path.clone();
    add_history(&path, &id, HISTORY, now() - 90 * 86_400);

    // The processor prunes as it starts; the webhooks begin as soon as the server answers.
    let server = TestServer::start_with(config, id).await;
    let flood = Flood::start(server.webhook_url());
    let started = Instant::now();
    let old = "SELECT (SELECT COUNT(*) FROM deliveries WHERE created_at < unixepoch() - 86400)
                    + (SELECT COUNT(*) FROM events WHERE received_at < unixepoch() - 86400)";
    while count(&path, old) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "retention did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flood.deleting.store(false, Ordering::SeqCst);
    let took = started.elapsed();
    flood.finish("retention").await;
    eprintln!("retention: {HISTORY} deliveries and events deleted within {took:?}");
    server.stop().await;
    assert_eq!(
        count(
            &path,
            "SELECT COUNT(*) FROM events WHERE stripe_event_id LIKE 'evt_old_%'"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_an_integration_with_100k_rows_leaves_webhooks_answered() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.database.busy_timeout_ms = INTAKE_BUSY_TIMEOUT_MS;
    let gone = add_integration(&config, "closed shop", "whsec_closed_shop_secret");
    let live = add_integration(&config, "shop", SECRET);
    let path = config.database.path.clone();
    add_history(&path, &gone, HISTORY, now() - 86_400);

    let server = TestServer::start_with(config, live).await;
    let flood = Flood::start(server.webhook_url());
    let started = Instant::now();
    let mut remove = mmc(dir.path(), &["integration", "remove", &gone, "--erase"]);
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(&mut remove))
        .await
        .unwrap();
    flood.deleting.store(false, Ordering::SeqCst);
    let took = started.elapsed();
    assert!(ok && out.contains("erased integration"), "{out}{err}");
    flood.finish("integration remove").await;
    eprintln!("integration remove: {HISTORY} deliveries and events deleted in {took:?}");
    server.stop().await;
    assert_eq!(
        count(&path, "SELECT (SELECT COUNT(*) FROM events WHERE stripe_event_id LIKE 'evt_old_%') + (SELECT COUNT(*) FROM deliveries WHERE stripe_event_id LIKE 'evt_old_%')"),
        0
    );
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM event_payloads p WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = p.event_id)"),
        0,
        "payloads left without their event"
    );
}

/// Batching keeps retention's rules over many batches: rows that must stay (pending events,
/// waiting mail and its events) sit among the old ones and are stepped over, never deleted, and
/// every other old row goes.
#[test]
fn retention_in_batches_keeps_exactly_what_must_stay() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let id = add_integration(&config, "shop", SECRET);
    let conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    let old = 1_000_000;
    conn.execute_batch("BEGIN").unwrap();
    for n in 0..3_000 {
        // Every third event is still pending; every fifth delivery still waits to be sent.
        let processing = if n % 3 == 0 { "pending" } else { "queued" };
        conn.execute(
            "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created, received_at, processing)
             VALUES (?1, ?2, 'invoice.paid', 0, ?3, ?3, ?4)",
            rusqlite::params![id, format!("evt_{n}"), old, processing],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO event_payloads (event_id, payload) VALUES (last_insert_rowid(), '{}')",
            [],
        )
        .unwrap();
        if processing == "queued" {
            let status = if n % 5 == 0 { "retrying" } else { "sent" };
            conn.execute(
                "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key, trigger, status, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?3, 'payment_received', ?4, ?5, ?5)",
                rusqlite::params![id, conn.last_insert_rowid(), format!("evt_{n}"), status, old],
            )
            .unwrap();
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let (waiting, pending) = (
        count("SELECT COUNT(*) FROM deliveries WHERE status = 'retrying'"),
        count("SELECT COUNT(*) FROM events WHERE processing = 'pending'"),
    );
    let deliveries_before = count("SELECT COUNT(*) FROM deliveries");

    let (gone_deliveries, gone_events) =
        deliveries::prune(&conn, old + 1, &Default::default()).unwrap();
    assert_eq!(gone_deliveries as i64, deliveries_before - waiting);
    assert_eq!(gone_events as i64, deliveries_before - waiting);
    assert_eq!(count("SELECT COUNT(*) FROM deliveries"), waiting);
    assert_eq!(count("SELECT COUNT(*) FROM events"), pending + waiting);
    assert_eq!(
        count("SELECT COUNT(*) FROM event_payloads"),
        pending + waiting,
        "each deleted event's payload went with it"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id"),
        waiting,
        "waiting mail keeps its event"
    );
}
