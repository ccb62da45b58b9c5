//! Removing an integration in two steps (issue 12, "Remove"), over real HTTP against the
//! in-process server and the fake Stripe: *disconnect* deletes the endpoint the program created,
//! forgets the key and secret and makes the webhook URL answer 410 while the history stays;
//! *erase* deletes the history and the integration, others untouched. Also `integration remove
//! [--erase]` on the real binary, and a deauthorization seen the same way.

use std::time::{Duration, Instant};

use mailmycustomer::db::{self, integrations};
use scraper::{ElementRef, Html, Selector};

use crate::cli::{mmc, run};
use crate::fake_stripe::FakeStripe;
use crate::support::ui::{Page, UiClient};
use crate::support::*;

const KEY: &str = "rk_test_51RemoveEndpointKey000000wXyZ";
const OTHER_SECRET: &str = "whsec_the_other_integrations_secret";

fn html(page: &Page) -> Html {
    Html::parse_document(&page.text)
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn text(element: ElementRef) -> String {
    element
        .text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn one_text(page: &Page, css: &str) -> String {
    let doc = html(page);
    let found = select(&doc, css);
    assert_eq!(found.len(), 1, "{css} on {}", page.text);
    text(found[0])
}

/// The flash message a page shows, and whether it is an error.
fn flash(page: &Page) -> (String, bool) {
    let doc = html(page);
    let found = select(&doc, "div.flash");
    assert_eq!(found.len(), 1, "no flash on {}", page.text);
    let error = found[0].value().classes().any(|c| c == "error");
    (text(found[0]), error)
}

/// A server on `fake` with "shop" connected by API key to an endpoint on the fake (signed with
/// `SECRET`, as the endpoint's secret), and "other" connected by signing secret.
async fn serve(dir: &std::path::Path, fake: &FakeStripe) -> (TestServer, String) {
    let mut config = test_config(dir);
    config.stripe.api_base = fake.base_url.clone();
    let id = add_integration(&config, "shop", SECRET);
    let other = add_integration(&config, "other", OTHER_SECRET);
    let endpoint = fake.add_webhook_endpoint(&config.webhook_url(&id), "MailMyCustomer");
    let conn = db::open(&db::Options::new(&config).unwrap()).unwrap();
    integrations::set_link(
        &conn,
        &id,
        &integrations::Link {
            connected_by: integrations::ConnectedBy::ApiKey,
            webhook_secret: SECRET,
            api_key: Some(KEY),
            endpoint_id: Some(&endpoint),
            endpoint_status: Some("enabled"),
            account_name: Some("Rosen Goods"),
            livemode: Some(false),
            ..integrations::Link::default()
        },
    )
    .unwrap()
    .unwrap();
    (TestServer::start_with(config, id).await, other)
}

async fn deliver_to(server: &TestServer, id: &str, secret: &str, body: Vec<u8>) -> Reply {
    let sig = sign_now(&body, secret);
    let url = server.url(&format!("/webhooks/stripe/{id}"));
    server.post(&url, body, Some(sig)).await
}

/// The id of the endpoint `serve` made for "shop".
fn endpoint_of(server: &TestServer) -> String {
    stored(server, &server.integration_id)
        .and_then(|i| i.endpoint)
        .expect("an endpoint")
        .id
}

fn count(server: &TestServer, table: &str, id: &str) -> i64 {
    server
        .db()
        .query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE integration_id = ?1"),
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

fn stored(server: &TestServer, id: &str) -> Option<integrations::Integration> {
    integrations::get(&server.db(), id).unwrap()
}

/// Waits until the processor has turned `n` events of `id` into deliveries.
async fn wait_deliveries(server: &TestServer, id: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(server, "deliveries", id) < n {
        assert!(Instant::now() < deadline, "no deliveries for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Catalog rows and a template of its own, beside what the webhooks brought.
fn hold_catalog_and_template(server: &TestServer, id: &str, tag: &str) {
    let conn = server.db();
    conn.execute(
        "INSERT INTO catalog_products (integration_id, id, name, fetched_at)
         VALUES (?1, ?2, 'Tea', 0)",
        [id, &format!("prod_{tag}")],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO catalog_plans (integration_id, id, product_id, name, interval, fetched_at)
         VALUES (?1, ?2, ?3, 'Monthly', 'month', 0)",
        [id, &format!("price_{tag}"), &format!("prod_{tag}")],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO templates (trigger, subject, html, updated_at, integration_id)
         VALUES ('invoice.paid', 'Thanks', '<p>Thanks</p>', 0, ?1)",
        [id],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnecting_deletes_the_endpoint_keeps_the_history_and_its_url_answers_410() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let (server, other) = serve(dir.path(), &fake).await;
    let id = server.integration_id.clone();
    let endpoint = endpoint_of(&server);
    let ui = signed_in(&server).await;
    server
        .deliver(distinct_invoice_paid("kept", 1))
        .await
        .assert_stored(false);
    wait_deliveries(&server, &id, 1).await;

    // The page says what disconnecting does, naming the endpoint; seeing it changes nothing.
    let page = ui.get(&format!("/integrations/{id}/remove")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(one_text(&page, "h1"), "Disconnect “shop”?");
    let steps = one_text(&page, "#disconnect-heading + p + ul.goes");
    assert!(
        steps.contains(&endpoint) && steps.contains("is deleted"),
        "{steps}"
    );
    assert!(steps.contains("events and delivery log stay"), "{steps}");
    assert!(one_text(&page, ".danger-zone").contains("Once it is disconnected"));
    assert!(stored(&server, &id).unwrap().is_listening());
    assert_eq!(fake.count("/v1/webhook_endpoints"), 0);

    let answer = ui
        .post(&format!("/integrations/{id}/disconnect"), &[])
        .await;
    answer.assert_redirect(&format!("/integrations/{id}/remove"));
    let deletes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/webhook_endpoints"))
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].method, "DELETE");
    assert_eq!(deletes[0].path, format!("/v1/webhook_endpoints/{endpoint}"));
    assert_eq!(deletes[0].key(), KEY);
    assert!(
        fake.webhook_endpoints().is_empty(),
        "{:?}",
        fake.webhook_endpoints()
    );

    let after = ui.get(&format!("/integrations/{id}/remove")).await;
    let (message, error) = flash(&after);
    assert!(!error, "{message}");
    assert!(
        message.starts_with("Disconnected “shop”: its webhook URL now answers 410 Gone")
            && message.contains(&format!("webhook endpoint {endpoint} deleted"))
            && message.ends_with("Its events and delivery log stay."),
        "{message}"
    );
    assert_eq!(one_text(&after, "h1"), "Erase “shop”?");
    assert!(one_text(&after, "#disconnect-heading + p").contains("you disconnected it"));
    let now = stored(&server, &id).unwrap();
    assert!(!now.is_listening());
    assert!(now.api_key.is_none() && now.endpoint.is_none());
    assert_eq!(now.webhook_secret.expose(), "");

    // Its URL answers 410 at once (intake forgot it), before reading the body, and closes.
    let body = distinct_invoice_paid("kept", 2);
    let response = server
        .client
        .post(server.webhook_url())
        .header("Stripe-Signature", sign_now(&body, SECRET))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 410);
    assert_eq!(response.headers()["connection"], "close");
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["error"]["code"], "integration_disconnected");
    let said = json["error"]["message"].as_str().unwrap();
    assert!(
        said.contains("was disconnected") && said.contains("connect it again"),
        "{said}"
    );

    // Its history stays listed; the other integration still takes webhooks.
    assert_eq!(count(&server, "events", &id), 1);
    let events = ui.get("/events").await;
    assert!(events.text.contains("evt_kept_1"), "{}", events.text);
    let log = ui.get("/log").await;
    assert_eq!(log.status, 200);
    assert!(log.text.contains("shop"), "{}", log.text);
    deliver_to(
        &server,
        &other,
        OTHER_SECRET,
        distinct_invoice_paid("other", 1),
    )
    .await
    .assert_stored(false);

    // The dashboard says when and why.
    let dashboard = ui.get("/").await;
    let said = select(&html(&dashboard), ".attention-item.bad")
        .into_iter()
        .map(text)
        .find(|t| t.contains("shop is disconnected"))
        .unwrap_or_else(|| panic!("{}", dashboard.text));
    assert!(
        said.contains("you disconnected it") && said.contains("no longer emailed"),
        "{said}"
    );

    // A second disconnect changes nothing and says so.
    ui.post(&format!("/integrations/{id}/disconnect"), &[])
        .await
        .assert_redirect(&format!("/integrations/{id}/remove"));
    let again = ui.get(&format!("/integrations/{id}/remove")).await;
    assert_eq!(flash(&again).0, "“shop” was already disconnected.");
    assert_eq!(fake.count("/v1/webhook_endpoints"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_refused_by_stripe_still_disconnects_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let (server, _) = serve(dir.path(), &fake).await;
    let id = server.integration_id.clone();
    let endpoint = endpoint_of(&server);
    let ui = signed_in(&server).await;
    fake.fail_next("/v1/webhook_endpoints", 403, 1);

    ui.post(&format!("/integrations/{id}/disconnect"), &[])
        .await
        .assert_redirect(&format!("/integrations/{id}/remove"));
    let (message, error) = flash(&ui.get(&format!("/integrations/{id}/remove")).await);
    assert!(error, "{message}");
    assert!(
        message.starts_with("Disconnected “shop”, but on Stripe the webhook endpoint")
            && message.contains(&format!("{endpoint} could not be deleted"))
            && message.contains("delete it in the Stripe Dashboard"),
        "{message}"
    );
    assert!(!stored(&server, &id).unwrap().is_listening());
    server
        .deliver(distinct_invoice_paid("late", 1))
        .await
        .assert_refused(410, "integration_disconnected");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn erasing_deletes_its_rows_only_and_only_once_disconnected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let (server, other) = serve(dir.path(), &fake).await;
    let id = server.integration_id.clone();
    let ui = signed_in(&server).await;
    for n in 1..=3 {
        server
            .deliver(distinct_invoice_paid("gone", n))
            .await
            .assert_stored(false);
        deliver_to(
            &server,
            &other,
            OTHER_SECRET,
            distinct_invoice_paid("stays", n),
        )
        .await
        .assert_stored(false);
    }
    wait_deliveries(&server, &id, 3).await;
    wait_deliveries(&server, &other, 3).await;
    hold_catalog_and_template(&server, &id, "gone");
    hold_catalog_and_template(&server, &other, "stays");
    let holdings = |i: &str| {
        [
            "events",
            "deliveries",
            "catalog_products",
            "catalog_plans",
            "templates",
        ]
        .map(|table| count(&server, table, i))
    };
    // The processor may have cached the fixture's product too: compare with what it holds now.
    let (mine, others) = (holdings(&id), holdings(&other));
    assert_eq!((mine[0], mine[1], mine[4]), (3, 3, 1));
    assert!(mine[2] >= 1 && mine[3] >= 1, "{mine:?}");

    // A connected integration is not erased: 409, nothing deleted.
    let refused = ui
        .post(
            &format!("/integrations/{id}/erase"),
            &[("confirm_name", "shop")],
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused.text.contains("disconnect it first"),
        "{}",
        refused.text
    );
    assert_eq!(holdings(&id), mine);

    ui.post(&format!("/integrations/{id}/disconnect"), &[])
        .await
        .assert_redirect(&format!("/integrations/{id}/remove"));
    let page = ui.get(&format!("/integrations/{id}/remove")).await;
    let goes = one_text(&page, ".danger-zone ul.goes");
    assert!(
        goes.contains("3 deliveries in the delivery log")
            && goes.contains(&format!("{} product name", mine[2]))
            && goes.contains("its own templates"),
        "{goes}"
    );

    // The wrong name: 422, the field marked, what was typed kept, nothing deleted.
    let wrong = ui
        .post(
            &format!("/integrations/{id}/erase"),
            &[("confirm_name", "other")],
        )
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.text);
    let doc = html(&wrong);
    let field = select(&doc, "input[name=confirm_name]")[0];
    assert_eq!(field.value().attr("aria-invalid"), Some("true"));
    assert_eq!(field.value().attr("value"), Some("other"));
    assert!(text(select(&doc, ".field.invalid p.error")[0]).contains("type the integration's name"));
    assert_eq!(holdings(&id), mine);

    let erased = ui
        .post(
            &format!("/integrations/{id}/erase"),
            &[("confirm_name", " shop ")],
        )
        .await;
    erased.assert_redirect("/integrations");
    let (message, error) = flash(&ui.get("/integrations").await);
    assert!(!error);
    assert_eq!(
        message,
        "Erased “shop”: 3 events and 3 deliveries deleted, with its catalog and 1 template of its own."
    );
    assert!(stored(&server, &id).is_none());
    assert_eq!(holdings(&id), [0, 0, 0, 0, 0]);
    assert_eq!(holdings(&other), others);
    // Each erased event's payload went with it; the other integration's stay.
    let payloads: (i64, i64) = server
        .db()
        .query_row(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT EXISTS
                 (SELECT 1 FROM events e WHERE e.id = p.event_id))
             FROM event_payloads p",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(payloads, (others[0], 0), "(payloads, orphans)");
    let gone = server.deliver(distinct_invoice_paid("gone", 9)).await;
    gone.assert_refused(404, "unknown_integration");
    deliver_to(
        &server,
        &other,
        OTHER_SECRET,
        distinct_invoice_paid("stays", 9),
    )
    .await
    .assert_stored(false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_remove_route_needs_a_session_and_the_csrf_token_and_knows_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let (server, _) = serve(dir.path(), &fake).await;
    let id = server.integration_id.clone();
    let ui = signed_in(&server).await;
    let disconnect = format!("/integrations/{id}/disconnect");
    let erase = format!("/integrations/{id}/erase");

    let stranger = UiClient::new(&server);
    let answer = stranger.get(&format!("/integrations/{id}/remove")).await;
    assert_eq!(answer.status, 303);
    assert!(answer.location().unwrap().starts_with("/login"));
    for path in [&disconnect, &erase] {
        let answer = stranger
            .post_without_csrf(path, &[("confirm_name", "shop")])
            .await;
        assert!(
            matches!(answer.status, 303 | 403),
            "{path}: {}",
            answer.status
        );
    }
    for path in [&disconnect, &erase] {
        for fields in [
            vec![("confirm_name", "shop")],
            vec![("csrf", "not-the-token"), ("confirm_name", "shop")],
        ] {
            let answer = ui.post_without_csrf(path, &fields).await;
            assert_eq!(answer.status, 403, "{path}: {}", answer.text);
        }
        if path == &disconnect {
            assert!(stored(&server, &id).unwrap().is_listening());
            // Disconnected, so that erase without the token is refused for the token alone.
            ui.post(&disconnect, &[])
                .await
                .assert_redirect(&format!("/integrations/{id}/remove"));
        }
    }
    assert!(stored(&server, &id).is_some());
    assert_eq!(
        fake.count("/v1/webhook_endpoints"),
        1,
        "only the signed-in, tokened disconnect"
    );

    let unknown = "/integrations/int_0000000000000000";
    for page in [
        ui.get(&format!("{unknown}/remove")).await,
        ui.post(&format!("{unknown}/disconnect"), &[]).await,
        ui.post(&format!("{unknown}/erase"), &[("confirm_name", "shop")])
            .await,
    ] {
        assert_eq!(page.status, 404, "{}", page.text);
        assert!(one_text(&page, "p.lead").contains("int_0000000000000000"));
    }
    server.stop().await;
}

/// `account.application.deauthorized` for its account disconnects it: the URL answers 410 and
/// the dashboard says so, with why.
#[tokio::test(flavor = "multi_thread")]
async fn a_deauthorized_integration_answers_410_and_the_dashboard_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let id = server.integration_id.clone();
    let event =
        std::fs::read(fixtures_dir().join("events/account.application.deauthorized.json")).unwrap();
    let account: serde_json::Value = serde_json::from_slice(&event).unwrap();
    let account = account["account"].as_str().unwrap();
    server
        .db()
        .execute(
            "UPDATE integrations SET stripe_account = ?2 WHERE id = ?1",
            [&id, account],
        )
        .unwrap();
    server.deliver(event).await.assert_stored(false);

    let deadline = Instant::now() + Duration::from_secs(10);
    while stored(&server, &id).unwrap().is_listening() {
        assert!(Instant::now() < deadline, "not disconnected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Intake's memo of the integration lives at most a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server
        .deliver(distinct_invoice_paid("after", 1))
        .await
        .assert_refused(410, "integration_disconnected");
    let ui = signed_in(&server).await;
    let dashboard = ui.get("/").await;
    let said = select(&html(&dashboard), ".attention-item.bad")
        .into_iter()
        .map(text)
        .find(|t| t.contains("shop is disconnected"))
        .unwrap_or_else(|| panic!("{}", dashboard.text));
    assert!(
        said.contains(&format!("Stripe account {account} revoked access")),
        "{said}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn integration_remove_disconnects_and_with_erase_erases() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let (server, other) = serve(dir.path(), &fake).await;
    let id = server.integration_id.clone();
    let endpoint = endpoint_of(&server);
    server
        .deliver(distinct_invoice_paid("cli", 1))
        .await
        .assert_stored(false);
    let config = dir.path().join("mailmycustomer.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\npath = {:?}\n[stripe]\napi_base = {:?}\n",
            server.config.database.path, fake.base_url
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec![
            "--config",
            config.to_str().unwrap(),
            "integration",
            "remove",
        ];
        all.extend_from_slice(args);
        run(mmc(dir.path(), &all))
    };

    let (ok, out, err) = cli(&[&id]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("disconnected integration {id} (shop)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Stripe: webhook endpoint {endpoint} deleted")),
        "{out}"
    );
    assert!(out.contains("Kept: its events, delivery log"), "{out}");
    assert!(
        out.contains(&format!("integration remove {id} --erase")),
        "{out}"
    );
    assert_eq!(fake.count(&format!("/v1/webhook_endpoints/{endpoint}")), 1);
    assert!(!stored(&server, &id).unwrap().is_listening());
    assert_eq!(count(&server, "events", &id), 1);

    let (ok, out, err) = cli(&[&id, "--erase"]);
    assert!(ok, "{err}");
    assert!(out.contains("was already disconnected"), "{out}");
    assert!(
        out.contains(&format!("erased integration {id} (shop): 1 events")),
        "{out}"
    );
    assert!(stored(&server, &id).is_none());
    assert_eq!(count(&server, "events", &id), 0);

    // Both in one go, on a connected one; the other integration is left as it was.
    let (ok, out, err) = cli(&[&other, "--erase"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("disconnected integration {other}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("erased integration {other}")),
        "{out}"
    );
    assert!(integrations::list(&server.db()).unwrap().is_empty());

    let (ok, _, err) = cli(&[&id]);
    assert!(!ok && err.contains("no integration"), "{err}");
    server.stop().await;
}

/// Webhook latency to another integration while 200,000 events are erased, against the same
/// webhooks with nothing erased. A measurement, not a check (no timing is asserted): run with
/// `cargo test --test it remove::webhook_latency_while_erasing -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run it by name with --ignored --nocapture"]
async fn webhook_latency_while_erasing() {
    const EVENTS: i64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let (server, other) = serve(dir.path(), &fake).await;
    let id = server.integration_id.clone();
    let conn = server.db();
    let seeded = Instant::now();
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
         INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                             received_at, processing)
         SELECT ?1, 'evt_bulk_' || i, 'invoice.paid', 0, 1700000000 + i, 1700000000 + i,
                'ignored'
         FROM n",
        rusqlite::params![id, EVENTS],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO event_payloads (event_id, payload)
         SELECT id, json_object('id', stripe_event_id, 'object', 'event', 'type', type)
         FROM events WHERE stripe_event_id LIKE 'evt_bulk_%'",
        [],
    )
    .unwrap();
    integrations::disconnect(&conn, &id, "measuring").unwrap();
    println!("seeded {EVENTS} events in {:?}", seeded.elapsed());

    let mut n = 0;
    let mut send = || {
        n += 1;
        distinct_invoice_paid("latency", n)
    };
    let mut quiet = Vec::new();
    for _ in 0..400 {
        let body = send();
        let started = Instant::now();
        deliver_to(&server, &other, OTHER_SECRET, body)
            .await
            .assert_stored(false);
        quiet.push(started.elapsed());
    }

    // The page answers within seconds and leaves a long erase to go on in the background: it
    // is done when the integration's row is gone.
    let ui = signed_in(&server).await;
    let path = format!("/integrations/{id}/erase");
    let started = Instant::now();
    let erase = tokio::spawn(async move { ui.post(&path, &[("confirm_name", "shop")]).await });
    let mut busy = Vec::new();
    let mut refused = Vec::new();
    while stored(&server, &id).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the erase never finished"
        );
        let body = send();
        let sent = Instant::now();
        let reply = deliver_to(&server, &other, OTHER_SECRET, body).await;
        busy.push(sent.elapsed());
        if reply.status != 200 {
            refused.push((reply.status, reply.text));
        }
    }
    let took = started.elapsed();
    let answer = erase.await.unwrap();
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert_eq!(count(&server, "events", &id), 0);

    let summary = |mut all: Vec<Duration>| {
        all.sort();
        let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
        format!(
            "n={} p50={:?} p99={:?} max={:?}",
            all.len(),
            at(0.50),
            at(0.99),
            all[all.len() - 1]
        )
    };
    println!("erase of {EVENTS} events took {took:?}");
    println!("webhooks without an erase: {}", summary(quiet));
    println!("webhooks during the erase: {}", summary(busy));
    assert!(refused.is_empty(), "refused during the erase: {refused:?}");
    server.stop().await;
}
