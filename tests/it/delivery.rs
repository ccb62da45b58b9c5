//! The whole pipeline (issue 4): a signed webhook over HTTP in, a real email out through a real
//! SMTP server on loopback, and a delivery log that says what happened, through relay outages,
//! temporary and permanent refusals, duplicates and a SIGKILL.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};
use mailmycustomer::config::Config;
use mailmycustomer::db::deliveries::Status;
use mailmycustomer::db::{self, deliveries, integrations};
use mailmycustomer::trigger::TriggerKind;

use crate::fake_stripe::FakeStripe;
use crate::pipeline::populate;
use crate::sink::{free_port, Sink};
use crate::smtp_server::ScriptedServer;
use crate::support::*;

const KEY: &str = "rk_test_51RosenGoods000000";

fn smtp_config(config: &mut Config, port: u16) {
    relay_to(config, port);
    config.smtp.from_name = "Rosen Goods".into();
    config.smtp.pool_size = 2;
    config.outbox.retry_base_secs = 1;
}

/// A server on a fresh database with an integration that has an API key for the fake Stripe.
async fn start(dir: &Path, fake: &FakeStripe, smtp_port: Option<u16>) -> TestServer {
    let mut config = test_config(dir);
    config.stripe.api_base = fake.base_url.clone();
    if let Some(port) = smtp_port {
        smtp_config(&mut config, port);
    }
    let id = add_keyed_integration(&config, KEY);
    TestServer::start_with(config, id).await
}

/// Polls the log until `done` holds for the deliveries' status counts.
async fn wait_statuses(
    server: &TestServer,
    what: &str,
    done: impl Fn(&[(Status, i64)]) -> bool,
) -> Vec<(Status, i64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = deliveries::count_by_status(&server.db()).unwrap();
        if done(&counts) {
            return counts;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn count(counts: &[(Status, i64)], status: Status) -> i64 {
    counts
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(0, |(_, n)| *n)
}

fn only(server: &TestServer) -> deliveries::Delivery {
    let all = deliveries::search(
        &server.db(),
        &deliveries::LogFilter {
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_trigger_posted_over_http_arrives_as_a_proper_email() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let sink = Sink::start();
    let server = start(dir.path(), &fake, Some(sink.port)).await;

    let cases = [
        (
            "customer.subscription.created.json",
            "Welcome to T-shirt club",
            "is now active",
        ),
        (
            "customer.subscription.deleted.json",
            "Your T-shirt club subscription has been cancelled",
            "You will not be charged again",
        ),
        (
            "invoice.payment_failed.json",
            "Action needed: your payment to Rosen Goods failed",
            "We will try again on August 4, 2026",
        ),
        (
            "invoice.upcoming.json",
            "Your T-shirt club subscription renews on August 1, 2026",
            "renews in 7 days",
        ),
        (
            "customer.subscription.trial_will_end.json",
            "Your T-shirt club trial ends on July 15, 2026",
            "continues at $20.00 per month",
        ),
        (
            "invoice.paid.json",
            "Payment received: $20.00, thank you",
            "View your invoice",
        ),
        (
            "refund.created.json",
            "Your refund of $20.00 is on its way",
            "5 to 10 business days",
        ),
    ];
    for (file, _, _) in &cases {
        server.deliver(fixture(file)).await.assert_stored(false);
    }
    let received = sink.wait_for(cases.len(), Duration::from_secs(20)).await;
    wait_statuses(&server, "7 sent", |c| count(c, Status::Sent) == 7).await;
    assert_eq!(
        received.len(),
        cases.len(),
        "one email per trigger, no more"
    );

    let parsed: Vec<_> = received
        .iter()
        .map(|raw| MessageParser::default().parse(raw).expect("parses as MIME"))
        .collect();
    for (file, subject, phrase) in cases {
        let message = parsed
            .iter()
            .find(|m| m.subject() == Some(subject))
            .unwrap_or_else(|| {
                panic!(
                    "{file}: no email with subject {subject:?}; got {:?}",
                    parsed.iter().map(|m| m.subject()).collect::<Vec<_>>()
                )
            });
        let to = message.to().and_then(|a| a.first()).unwrap();
        assert_eq!(to.address(), Some("jenny.rosen@example.com"), "{file}");
        assert_eq!(to.name(), Some("Jenny Rosen"), "{file}");
        let from = message.from().and_then(|a| a.first()).unwrap();
        assert_eq!(
            (from.name(), from.address()),
            (Some("Rosen Goods"), Some("billing@rosen.example"))
        );
        assert!(message.date().is_some(), "{file}: Date header");
        assert!(
            message
                .message_id()
                .is_some_and(|id| id.ends_with("@rosen.example")),
            "{file}: {:?}",
            message.message_id()
        );
        let root = message.root_part().content_type().unwrap();
        assert_eq!(
            (root.ctype(), root.subtype()),
            ("multipart", Some("alternative")),
            "{file}"
        );
        let text = message.body_text(0).unwrap();
        let html = message.body_html(0).unwrap();
        assert!(
            text.contains(phrase),
            "{file}: text part lacks {phrase:?}:\n{text}"
        );
        assert!(
            html.contains("<html")
                && (html.contains("Hi Jenny Rosen")
                    || html.contains("Welcome aboard, Jenny Rosen")),
            "{file}: html part"
        );
        assert!(!text.contains('<'), "{file}: the text part is not HTML");
    }

    // The log has each delivery as sent, with the Message-ID the relay received.
    let log = deliveries::search(
        &server.db(),
        &deliveries::LogFilter {
            limit: 20,
            ..Default::default()
        },
    )
    .unwrap();
    let ids: HashSet<_> = parsed
        .iter()
        .filter_map(|m| m.message_id().map(|i| format!("<{i}>")))
        .collect();
    for d in &log {
        assert_eq!(d.status, Status::Sent);
        assert!(
            ids.contains(d.message_id.as_deref().unwrap()),
            "{:?} not received",
            d.message_id
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_subjects_and_names_are_encoded_and_decode_back() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    fake.customer(
        "cus_QXg1o8vcGmoR32",
        Some("jenny.rosen@example.com"),
        Some("Jenny Rösen-Łukasz"),
    );
    let sink = Sink::start();
    let server = start(dir.path(), &fake, Some(sink.port)).await;
    let html = dir.path().join("t.html");
    std::fs::write(
        &html,
        "<p>Grüße, {{ customer.name }}! Ihr Abo „{{ product.name }}“ läuft. 🎉</p>",
    )
    .unwrap();
    let conn = server.db();
    db::templates::save(
        &conn,
        &db::templates::TemplateInput {
            id: None,
            integration_id: None,
            trigger: mailmycustomer::trigger::TriggerKind::SubscriptionCreated,
            product_id: None,
            plan_id: None,
            subject: "Willkommen, {{ customer.name }} — ça marche ✓".into(),
            format: mailmycustomer::templates::body::Format::Html,
            body: std::fs::read_to_string(&html).unwrap(),
            text: None,
            enabled: true,
        },
    )
    .unwrap();
    server
        .deliver(fixture("customer.subscription.created.json"))
        .await
        .assert_stored(false);
    let raw = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    // smtp-sink stores lines with LF endings; the header ends at the first empty line.
    let text = String::from_utf8_lossy(&raw).replace("\r\n", "\n");
    let head = text.split("\n\n").next().unwrap().to_owned();
    assert!(
        head.is_ascii(),
        "headers must be 7-bit, encoded words for UTF-8:\n{head}"
    );
    let message = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        message.subject(),
        Some("Willkommen, Jenny Rösen-Łukasz — ça marche ✓")
    );
    assert_eq!(
        message.to().and_then(|a| a.first()).and_then(|a| a.name()),
        Some("Jenny Rösen-Łukasz")
    );
    assert!(message
        .body_text(0)
        .unwrap()
        .contains("Grüße, Jenny Rösen-Łukasz! Ihr Abo „T-shirt club“ läuft. 🎉"));
    assert!(message
        .body_html(0)
        .unwrap()
        .contains("Grüße, Jenny Rösen-Łukasz!"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_is_down_gets_the_mail_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let port = free_port();
    let server = start(dir.path(), &fake, Some(port)).await;
    server
        .deliver(fixture("invoice.paid.json"))
        .await
        .assert_stored(false);

    wait_statuses(&server, "a retry", |c| count(c, Status::Retrying) == 1).await;
    let waiting = only(&server);
    assert!(
        waiting.last_error.as_deref().unwrap().contains("refused"),
        "{:?}",
        waiting.last_error
    );
    assert!(waiting.next_attempt_at.is_some());

    let sink = Sink::start_on(port);
    sink.wait_for(1, Duration::from_secs(20)).await;
    wait_statuses(&server, "sent", |c| count(c, Status::Sent) == 1).await;
    let sent = only(&server);
    assert!(sent.attempts >= 2, "{sent:?}");
    assert_eq!(sent.last_error, None);
    assert_eq!(sink.messages().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_then_250_is_delivered_once_and_a_5xx_fails_with_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let relay = ScriptedServer::start(&[]).await;
    relay.reply_text("RCPT", "451 4.3.0 Mailbox busy, try again later");
    let server = start(dir.path(), &fake, Some(relay.port())).await;

    server
        .deliver(fixture("invoice.paid.json"))
        .await
        .assert_stored(false);
    wait_statuses(&server, "sent after a 451", |c| count(c, Status::Sent) == 1).await;
    let sent = only(&server);
    assert_eq!(sent.attempts, 2, "{sent:?}");
    assert_eq!(relay.log().messages.len(), 1, "delivered once");

    relay.reply_text(
        "RCPT",
        "550 5.1.1 <jenny.rosen@example.com>: Recipient address rejected",
    );
    server
        .deliver(fixture("refund.created.json"))
        .await
        .assert_stored(false);
    let counts = wait_statuses(&server, "a failure", |c| count(c, Status::Failed) == 1).await;
    assert_eq!(count(&counts, Status::Sent), 1);
    let failed = deliveries::search(
        &server.db(),
        &deliveries::LogFilter {
            status: Some(deliveries::Status::Failed),
            limit: 5,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(failed[0].attempts, 1, "a permanent failure is not retried");
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("550 5.1.1"),
        "{:?}",
        failed[0].last_error
    );
    assert!(failed[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("Recipient address rejected"));
    assert_eq!(relay.log().messages.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_fact_delivered_several_times_sends_one_email() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let sink = Sink::start();
    let server = start(dir.path(), &fake, Some(sink.port)).await;
    server
        .deliver(fixture("invoice.paid.json"))
        .await
        .assert_stored(false);
    server
        .deliver(fixture("invoice.paid.json"))
        .await
        .assert_stored(true);
    // Stripe's alias event for the same invoice, and a refund told three ways.
    server
        .deliver(fixture("invoice.payment_succeeded.json"))
        .await
        .assert_stored(false);
    server
        .deliver(fixture("refund.created.json"))
        .await
        .assert_stored(false);
    server
        .deliver(fixture("refund.updated.json"))
        .await
        .assert_stored(false);
    server
        .deliver(fixture("charge.refunded.json"))
        .await
        .assert_stored(false);

    sink.wait_for(2, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending_events(&server) > 0 {
        assert!(Instant::now() < deadline, "events still pending");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.messages().len(),
        2,
        "one payment email and one refund email"
    );
    let skipped: i64 = server
        .db()
        .query_row("SELECT COUNT(*) FROM events WHERE processing = 'skipped' AND processing_detail LIKE 'same business fact%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(skipped, 3);
    server.stop().await;
}

/// Events the processor has not handled yet.
fn pending_events(server: &TestServer) -> i64 {
    server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE processing = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_smtp_settings_mail_waits_then_goes_out_once_configured() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let server = start(dir.path(), &fake, None).await;
    server
        .deliver(fixture("invoice.paid.json"))
        .await
        .assert_stored(false);
    wait_statuses(&server, "queued", |c| count(c, Status::Queued) == 1).await;
    let waiting = only(&server);
    assert!(
        waiting
            .last_error
            .as_deref()
            .unwrap()
            .contains("waiting for SMTP settings"),
        "{waiting:?}"
    );
    let (mut config, id) = (server.config.clone(), server.integration_id.clone());
    server.stop().await;

    let sink = Sink::start();
    smtp_config(&mut config, sink.port);
    let server = TestServer::start_with(config, id).await;
    sink.wait_for(1, Duration::from_secs(20)).await;
    wait_statuses(&server, "sent", |c| count(c, Status::Sent) == 1).await;
    assert_eq!(only(&server).last_error, None);
    server.stop().await;
}

/// Waits until `sql` (a single count) on the database in `dir` reaches at least `n`.
async fn wait_count(db_path: &Path, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let conn = db::open(&db::Options::at(db_path).unwrap()).unwrap();
        let got: i64 = conn.query_row(sql, [], |r| r.get(0)).unwrap_or(0);
        if got >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got} < {n}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A webhook storm at concurrency 64 (issue 13: what Stripe does to a merchant after an outage),
/// and a SIGKILL as soon as the sender is mid-message, while the storm still runs when the
/// processor keeps up with it: no event answered 200 is lost, every stored one is emailed once.
/// Issue 8 item 5 as well: with the default lease (300 s), the rows the killed server was
/// sending go out as soon as the next one starts, not when their lease runs out.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_storm_at_concurrency_64_then_restart_emails_every_event_exactly_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::cli::{add_integration_cli, mmc, spawn_serve};
    use crate::smtp_server::Reply;
    /// Bounds the storm: ten events per connection.
    const EVENTS: usize = 640;
    const CONCURRENCY: usize = 64;

    let dir = tempfile::tempdir().unwrap();
    let (id, _) = add_integration_cli(
        dir.path(),
        &["--name", "Rosen Goods", "--webhook-secret", SECRET],
    );

    // First life: the relay takes connections but never answers DATA, so messages are claimed
    // and in flight when the process dies.
    let relay = ScriptedServer::start(&[]).await;
    for _ in 0..8 {
        relay.reply("DATA", Reply::Hang);
    }
    let env = |port: u16| {
        vec![
            ("MMC_SMTP__HOST", "127.0.0.1".to_owned()),
            ("MMC_SMTP__PORT", port.to_string()),
            ("MMC_SMTP__SECURITY", "none".to_owned()),
            ("MMC_SMTP__FROM_ADDRESS", "billing@rosen.example".to_owned()),
            ("MMC_SMTP__TIMEOUT_SECS", "60".to_owned()),
            ("MMC_SMTP__POOL_SIZE", "2".to_owned()),
        ]
    };
    let first = spawn_serve(dir.path(), &env(relay.port()));
    let url = format!("http://{}/webhooks/stripe/{id}", first.addr);
    // Each connection posts distinct events one after another until the storm is over or the
    // server is gone; it notes the ids answered 200 and any other answer.
    let next = Arc::new(AtomicUsize::new(0));
    let storm = Instant::now();
    let connections: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, url) = (next.clone(), url.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= EVENTS {
                        break;
                    }
                    let body = distinct_invoice_paid("storm", i);
                    let answer = client
                        .post(&url)
                        .header("Stripe-Signature", sign_now(&body, SECRET))
                        .body(body)
                        .send()
                        .await;
                    match answer.map(|r| r.status().as_u16()) {
                        Ok(200) => acknowledged.push(format!("evt_storm_{i}")),
                        Ok(status) => refused.push((i, status)),
                        // The server was killed.
                        Err(_) => break,
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();
    let db_path = dir.path().join("mailmycustomer.db");
    wait_count(
        &db_path,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'sending'",
        1,
    )
    .await;
    let mut first = first.child;
    assert!(Command::new("kill")
        .args(["-KILL", &first.id().to_string()])
        .status()
        .unwrap()
        .success());
    let (posted_at_kill, killed_at) = (next.load(Ordering::SeqCst).min(EVENTS), storm.elapsed());
    first.wait().unwrap();
    let mut acknowledged = HashSet::new();
    for connection in connections {
        let (acked, refused) = connection.await.unwrap();
        assert!(refused.is_empty(), "answers other than 200: {refused:?}");
        acknowledged.extend(acked);
    }
    assert!(
        relay.log().messages.is_empty(),
        "the first life completed no message"
    );
    // Every event answered 200 is stored; events whose answer the kill cut off may be too.
    let stored: HashSet<String> = {
        let conn = db::open(&db::Options::at(&db_path).unwrap()).unwrap();
        let mut select = conn.prepare("SELECT stripe_event_id FROM events").unwrap();
        let ids = select.query_map([], |r| r.get(0)).unwrap();
        ids.collect::<Result<_, _>>().unwrap()
    };
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
    eprintln!(
        "killed {:?} into the storm at concurrency {CONCURRENCY}, {posted_at_kill} of {EVENTS} events posted, {} answered 200, {} stored",
        killed_at,
        acknowledged.len(),
        stored.len()
    );
    let stored = stored.len();

    // Second life: a working relay; rows the dead process was sending go out at once.
    let sink = Sink::start();
    let log_path = dir.path().join("second-life.log");
    let restarted = Instant::now();
    let mut second = mmc(dir.path(), &["serve", "--listen", "127.0.0.1:0"])
        .env("MMC_LOG__FORMAT", "json")
        .envs(env(sink.port))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = restarted + Duration::from_secs(60);
    while sink.messages().len() < stored {
        assert!(
            Instant::now() < deadline,
            "{} of {stored} emails within 60 s of the restart: the killed server's rows wait for their 300 s lease",
            sink.messages().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "restart to last email: {:?} (lease_secs = 300)",
        restarted.elapsed()
    );
    let received = sink.messages();
    wait_count(
        &db_path,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'",
        stored as i64,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received_after = sink.messages();
    assert_eq!(
        received_after.len(),
        stored,
        "exactly one email per event, got {}",
        received.len()
    );
    let ids: HashSet<String> = received_after
        .iter()
        .map(|raw| {
            MessageParser::default()
                .parse(raw)
                .unwrap()
                .message_id()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), stored, "no message sent twice");
    let conn = db::open(&db::Options::at(&db_path).unwrap()).unwrap();
    let (rows, events): (i64, i64) = conn
        .query_row("SELECT (SELECT COUNT(*) FROM deliveries), (SELECT COUNT(*) FROM events WHERE processing = 'queued')", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((rows, events), (stored as i64, stored as i64));
    assert!(Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(second.wait().unwrap().success());
    let log: Vec<serde_json::Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let handed_back = log.iter().find_map(|l| l["fields"]["handed_back"].as_i64());
    assert!(handed_back.is_some_and(|n| n >= 1), "{log:#?}");
    // The delivery log is where customers' addresses are kept, not the sender's log.
    let sender = log
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .unwrap_or("")
                .starts_with("mailmycustomer::outbox")
        })
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    assert!(sender.iter().any(|l| l.contains("\"sent\"")), "{log:#?}");
    assert!(
        !sender.iter().any(|l| l.contains("jenny.rosen@example.com")),
        "{sender:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_commands_show_filter_and_resend() {
    use crate::cli::{mmc, run};
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let relay = ScriptedServer::start(&[]).await;
    let server = start(dir.path(), &fake, Some(relay.port())).await;
    relay.reply_text("RCPT", "550 5.1.1 No such user here");
    server
        .deliver(fixture("refund.created.json"))
        .await
        .assert_stored(false);
    wait_statuses(&server, "a failure", |c| count(c, Status::Failed) == 1).await;
    server
        .deliver(fixture("invoice.paid.json"))
        .await
        .assert_stored(false);
    wait_statuses(&server, "one sent", |c| count(c, Status::Sent) == 1).await;

    let db_path = server.config.database.path.to_str().unwrap().to_owned();
    let log = |args: &[&str]| {
        let mut all = vec!["--database", db_path.as_str(), "log"];
        all.extend_from_slice(args);
        run(mmc(dir.path(), &all))
    };
    let (ok, out, err) = log(&[]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].contains("sent")
            && rows[0].contains("payment_received")
            && rows[0].contains("Payment received: $20.00"),
        "newest first: {out}"
    );
    assert!(
        rows[1].contains("failed") && rows[1].contains("550 5.1.1 No such user here"),
        "{out}"
    );

    let (_, out, _) = log(&["--status", "failed"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out, _) = log(&[
        "--trigger",
        "payment_received",
        "--product",
        "prod_QXg1hqf4jFNsqG",
        "--to",
        "JENNY.ROSEN@example.com",
        "--since",
        "1d",
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out, _) = log(&["--since", "2099-01-01"]);
    assert!(out.contains("no deliveries match"), "{out}");
    let (ok, _, err) = log(&["--status", "lost"]);
    assert!(!ok && err.contains("queued, sending, sent"), "{err}");

    let failed_id = rows[1].split_whitespace().next().unwrap().to_owned();
    let (ok, out, _) = log(&["show", &failed_id]);
    assert!(ok);
    for expected in [
        "failed",
        "refund_completed",
        "550 5.1.1",
        "evt_",
        "refund.created",
        "attempts:     1",
    ] {
        assert!(
            out.contains(expected),
            "log show lacks {expected:?}:\n{out}"
        );
    }

    // A resend goes out as a new delivery; the failed one stays in the log as it was.
    let (ok, out, err) = log(&["resend", &failed_id]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("a resend of {failed_id}")), "{out}");
    wait_statuses(&server, "the resend sent", |c| count(c, Status::Sent) == 2).await;
    assert_eq!(relay.log().messages.len(), 2);
    let (_, out, _) = log(&["--status", "failed"]);
    assert_eq!(
        out.lines().count(),
        2,
        "the original failure is kept: {out}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn send_test_email_reports_the_reply_or_the_likely_fix() {
    use crate::cli::{mmc, run};
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let env = |port: u16| {
        let mut cmd = mmc(
            dir.path(),
            &["send-test-email", "--to", "owner@rosen.example"],
        );
        cmd.env("MMC_SMTP__HOST", "127.0.0.1")
            .env("MMC_SMTP__PORT", port.to_string())
            .env("MMC_SMTP__SECURITY", "none")
            .env("MMC_SMTP__FROM_ADDRESS", "billing@rosen.example");
        cmd
    };
    let (ok, out, err) = tokio::task::spawn_blocking({
        let cmd = env(sink.port);
        move || run(cmd)
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("250"), "the relay's reply is shown: {out}");
    let received = sink.wait_for(1, Duration::from_secs(10)).await;
    let message = MessageParser::default().parse(&received[0]).unwrap();
    assert_eq!(message.subject(), Some("MailMyCustomer test email"));

    let closed = free_port();
    let (ok, _, err) = run(env(closed));
    assert!(!ok);
    assert!(
        err.contains("refused") && err.contains("likely fix") && err.contains(&closed.to_string()),
        "{err}"
    );

    let (ok, _, err) = run(mmc(dir.path(), &["send-test-email", "--to", "x@y.example"]));
    assert!(!ok && err.contains("smtp.host is not set"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_integration_can_send_from_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    smtp_config(&mut config, sink.port);
    let mut conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let id = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Second shop",
            webhook_secret: SECRET,
            api_key: Some(KEY),
            stripe_account: None,
            from_address: Some("hello@second-shop.example"),
        },
    )
    .unwrap()
    .id;
    let server = TestServer::start_with(config, id).await;
    server
        .deliver(fixture("invoice.paid.json"))
        .await
        .assert_stored(false);
    let raw = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    let message = MessageParser::default().parse(&raw).unwrap();
    let from = message.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.address(), Some("hello@second-shop.example"));
    server.stop().await;
}

#[test]
fn retention_deletes_only_finished_old_deliveries_and_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let id = add_keyed_integration(&config, KEY);
    let conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    let (old, recent) = (1_000_000, 2_000_000);
    let add = |n: i64, created: i64, status: &str| {
        conn.execute(
            "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created, received_at, processing)
             VALUES (?1, ?2, 'invoice.paid', 0, ?3, ?3, 'queued')",
            rusqlite::params![id, format!("evt_{n}"), created],
        )
        .unwrap();
        let event = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO event_payloads (event_id, payload) VALUES (?1, '{}')",
            [event],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO deliveries (integration_id, event_id, stripe_event_id, business_key, trigger, status, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?3, 'payment_received', ?4, ?5, ?5)",
            rusqlite::params![id, event, format!("evt_{n}"), status, created],
        )
        .unwrap();
    };
    add(1, old, "sent");
    add(2, old, "failed");
    add(3, old, "skipped");
    add(4, old, "retrying");
    add(5, old, "queued");
    add(6, recent, "sent");
    conn.execute(
        "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created, received_at, processing)
         VALUES (?1, 'evt_ignored', 'customer.updated', 0, ?2, ?2, 'ignored')",
        rusqlite::params![id, old],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO event_payloads (event_id, payload) VALUES (last_insert_rowid(), '{}')",
        [],
    )
    .unwrap();

    let (gone_deliveries, gone_events) =
        deliveries::prune(&conn, (old + recent) / 2, &Default::default()).unwrap();
    assert_eq!(
        (gone_deliveries, gone_events),
        (3, 4),
        "3 finished deliveries, their 3 events and the ignored one"
    );
    let left: Vec<String> = conn
        .prepare("SELECT status FROM deliveries ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        left,
        ["retrying", "queued", "sent"],
        "waiting mail is kept whatever its age"
    );
    let (events, payloads): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM event_payloads)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (events, payloads),
        (3, 3),
        "a pruned event's payload goes with it"
    );
}

/// Every filter of the delivery log reads an index in "newest first" order: no sort, whatever
/// the table's size (the benchmark times them at a million rows).
#[test]
fn every_log_filter_reads_an_index_in_order() {
    use mailmycustomer::db::deliveries::{log_query, LogFilter, Status};
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(
        &db::Options::at(&dir.path().join("log.db"))
            .unwrap()
            .with_busy_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    db::migrate(&mut conn).unwrap();
    let some = |s: &str| Some(s.to_owned());
    let payment_failed = Some(TriggerKind::PaymentFailed);
    let filters = [
        LogFilter::default(),
        LogFilter {
            product_id: some("prod_1"),
            ..Default::default()
        },
        LogFilter {
            product_id: some("prod_1"),
            trigger: payment_failed,
            ..Default::default()
        },
        LogFilter {
            plan_id: some("price_1"),
            ..Default::default()
        },
        LogFilter {
            plan_id: some("price_1"),
            trigger: payment_failed,
            ..Default::default()
        },
        LogFilter {
            trigger: payment_failed,
            ..Default::default()
        },
        LogFilter {
            status: Some(Status::Failed),
            ..Default::default()
        },
        LogFilter {
            recipient: some("jenny@example.com"),
            ..Default::default()
        },
        LogFilter {
            since: Some(1),
            before: Some((5, 5)),
            ..Default::default()
        },
    ];
    for filter in filters {
        let (sql, args) = log_query(&LogFilter {
            limit: 50,
            ..filter.clone()
        });
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(
            plan.contains("USING INDEX") && !plan.contains("TEMP B-TREE"),
            "{filter:?}: {plan}"
        );
    }
}

/// The sender's claim reads due rows in order from one index: a backlog of queued mail is not
/// sorted for every claim (it was, and took a third of the server's CPU in the benchmark).
#[test]
fn claiming_due_deliveries_reads_one_index_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(
        &db::Options::at(&dir.path().join("due.db"))
            .unwrap()
            .with_busy_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    db::migrate(&mut conn).unwrap();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM deliveries INDEXED BY deliveries_due
             WHERE status IN ('queued', 'retrying', 'sending') AND next_attempt_at <= 5
             ORDER BY next_attempt_at, id LIMIT 32",
        )
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let plan = plan.join("; ");
    assert!(
        plan.contains("USING INDEX deliveries_due") && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
    // The same statement the sender runs prepares against the real schema.
    assert!(deliveries::claim_due(&conn, 5, 300, 32).unwrap().is_empty());
}

/// The relay's rate limit holds: six messages at 10 per second take at least half a second.
/// (A lower bound only: the limiter's sleeps make it exact, so this cannot flake on a slow machine.)
#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_spaces_messages_out() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    smtp_config(&mut config, sink.port);
    config.smtp.rate_limit_per_sec = 10;
    let id = add_keyed_integration(&config, KEY);
    let server = TestServer::start_with(config, id).await;
    let started = Instant::now();
    for i in 0..6 {
        server
            .deliver(distinct_invoice_paid("rate", i))
            .await
            .assert_stored(false);
    }
    sink.wait_for(6, Duration::from_secs(20)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}
