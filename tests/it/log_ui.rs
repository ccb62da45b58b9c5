//! The delivery log's pages (issue 11) over real HTTP: signed out, CSRF, unknown ids and bad
//! filters; filters that really filter deliveries made from signed webhooks; keyset pages that
//! neither repeat nor skip a row, both ways; attempts recorded through a real relay that says 451
//! and then 250; the email frame's own policy; and a resend that reaches smtp-sink.

use std::path::Path;
use std::time::{Duration, Instant};

use mailmycustomer::app::App;
use mailmycustomer::db::{self, integrations};
use mailmycustomer::manage;
use mailmycustomer::trigger::TriggerKind;
use mailmycustomer::web::security::EMAIL_FRAME_POLICY;
use scraper::{Html, Selector};

use crate::fake_stripe::FakeStripe;
use crate::sink::Sink;
use crate::smtp_server::ScriptedServer;
use crate::support::ui::{signed_in, Page, UiClient};
use crate::support::*;

const KEY: &str = "rk_test_51RosenGoods000000";

/// A server whose integration has an API key for the fake Stripe, sending through `relay` (one
/// connection, so messages go in the order they were queued) or not at all.
async fn start(dir: &Path, fake: &FakeStripe, relay: Option<u16>) -> TestServer {
    let mut config = test_config(dir);
    config.stripe.api_base = fake.base_url.clone();
    if let Some(port) = relay {
        relay_to(&mut config, port);
        config.smtp.pool_size = 1;
        config.outbox.retry_base_secs = 1;
    }
    let mut conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let id = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Rosen Goods",
            webhook_secret: SECRET,
            api_key: Some(KEY),
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap()
    .id;
    TestServer::start_with(config, id).await
}

/// An `invoice.paid` of its own (event and invoice ids) to `to`.
fn paid(tag: &str, n: usize, to: &str) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&distinct_invoice_paid(tag, n)).unwrap();
    event["data"]["object"]["customer_email"] = to.into();
    serde_json::to_vec(&event).unwrap()
}

/// An `invoice.payment_failed` of its own to `to`.
fn payment_failed(n: usize, to: &str) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("invoice.payment_failed.json")).unwrap();
    event["id"] = format!("evt_log_failed_{n}").into();
    event["data"]["object"]["id"] = format!("in_log_failed_{n}").into();
    event["data"]["object"]["customer_email"] = to.into();
    serde_json::to_vec(&event).unwrap()
}

/// Waits until `sql` (one number) returns `n`.
async fn wait_count(server: &TestServer, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: i64 = server.db().query_row(sql, [], |r| r.get(0)).unwrap();
        if now == n {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {now}, waiting for {n}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The ids of deliveries `sql` selects, in its order.
fn ids_where(server: &TestServer, sql: &str) -> Vec<i64> {
    let conn = server.db();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The newest-first ids of every delivery matching `condition`, straight from the table.
fn expected(server: &TestServer, condition: &str) -> Vec<i64> {
    ids_where(
        server,
        &format!("SELECT id FROM deliveries WHERE {condition} ORDER BY created_at DESC, id DESC"),
    )
}

fn select<'a>(html: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    html.select(&Selector::parse(css).unwrap()).collect()
}

/// The delivery ids a log page lists, in order.
fn listed(page: &Page) -> Vec<i64> {
    assert_eq!(page.status, 200, "{}", page.text);
    let html = Html::parse_document(&page.text);
    select(&html, "table.log tbody tr td:first-child a")
        .iter()
        .map(|a| {
            a.value().attr("href").unwrap()["/log/".len()..]
                .parse()
                .unwrap()
        })
        .collect()
}

/// The href of the pager link that says `label` ("Older", "Newer"), if the page has one.
fn pager_link(page: &Page, label: &str) -> Option<String> {
    let html = Html::parse_document(&page.text);
    select(&html, "nav.pager a")
        .into_iter()
        .find(|a| a.text().collect::<String>().contains(label))
        .map(|a| a.value().attr("href").unwrap().to_owned())
}

async fn log(ui: &UiClient, query: &str) -> Vec<i64> {
    listed(&ui.get(&format!("/log{query}")).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_wants_a_session_a_token_and_a_real_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start(dir.path(), &fake, None).await;
    server
        .deliver(paid("routes", 1, "jenny@rosen.example"))
        .await
        .assert_stored(false);
    wait_count(&server, "SELECT COUNT(*) FROM deliveries", 1).await;
    let id = expected(&server, "1")[0];

    let stranger = UiClient::new(&server);
    for path in [
        "/log".to_owned(),
        "/log?status=failed".to_owned(),
        format!("/log/{id}"),
        format!("/log/{id}/email"),
    ] {
        let answer = stranger.get(&path).await;
        assert_eq!(answer.status, 303, "{path}: {}", answer.text);
        assert!(answer.location().unwrap().starts_with("/login"), "{path}");
    }
    let answer = stranger
        .post_without_csrf(&format!("/log/{id}/resend"), &[])
        .await;
    assert!(matches!(answer.status, 303 | 403), "{}", answer.status);

    let ui = signed_in(&server).await;
    let resend = format!("/log/{id}/resend");
    for answer in [
        ui.post_without_csrf(&resend, &[]).await,
        ui.post_without_csrf(&resend, &[("csrf", "not-the-token")])
            .await,
    ] {
        assert_eq!(answer.status, 403, "{}", answer.text);
    }
    assert_eq!(expected(&server, "1"), [id], "nothing was resent");

    for path in [
        "/log/999999",
        "/log/not-a-number",
        "/log/999999/email",
        "/log/-1",
    ] {
        assert_eq!(ui.get(path).await.status, 404, "{path}");
    }
    assert_eq!(ui.post("/log/999999/resend", &[]).await.status, 404);
    assert_eq!(ui.post("/log/not-a-number/resend", &[]).await.status, 404);

    // A filter that cannot be read: 422, the field marked, the rest as typed.
    for (query, field) in [
        ("?status=lost&recipient=ada%40rosen.example", "status"),
        ("?trigger=payment_lost", "trigger"),
        ("?from=2026-13-01", "from"),
        ("?from=2026-11-02&to=2026-11-01", "to"),
        ("?before=yesterday", "before"),
        ("?after=1:x", "after"),
    ] {
        let answer = ui.get(&format!("/log{query}")).await;
        assert_eq!(answer.status, 422, "{query}: {}", answer.text);
        let html = Html::parse_document(&answer.text);
        if !["before", "after"].contains(&field) {
            let marked = select(&html, &format!("#f-{field}[aria-invalid=true]"));
            assert_eq!(marked.len(), 1, "{query}: {field} is not marked");
        }
        assert_eq!(select(&html, "p.error").len(), 1, "{query}");
        assert!(select(&html, "table.log").is_empty(), "{query}");
    }
    let kept = ui
        .get("/log?status=lost&recipient=ada%40rosen.example")
        .await;
    assert!(kept.text.contains("value=\"ada@rosen.example\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_filter_by_status_trigger_recipient_product_plan_integration_and_day() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let relay = ScriptedServer::start(&[]).await;
    let server = start(dir.path(), &fake, Some(relay.port())).await;
    let app = App::new(server.config.clone()).unwrap();

    // One refused by the relay for good: failed.
    relay.reply_text("RCPT", "550 5.1.1 No such user here");
    server
        .deliver(paid("filters", 0, "gone@rosen.example"))
        .await
        .assert_stored(false);
    wait_count(
        &server,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'failed'",
        1,
    )
    .await;
    // Five sent: three to Jenny, two to Ada.
    for (n, to) in [
        "jenny@rosen.example",
        "ada@rosen.example",
        "jenny@rosen.example",
        "ada@rosen.example",
        "jenny@rosen.example",
    ]
    .into_iter()
    .enumerate()
    {
        server
            .deliver(paid("filters", n + 1, to))
            .await
            .assert_stored(false);
    }
    wait_count(
        &server,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'",
        5,
    )
    .await;
    // Two payment failures without a template: skipped.
    for template in manage::templates::list(&app).await.unwrap() {
        if template.trigger == TriggerKind::PaymentFailed {
            manage::templates::set_enabled(&app, template.id, false)
                .await
                .unwrap();
        }
    }
    for n in 0..2 {
        server
            .deliver(payment_failed(n, "jenny@rosen.example"))
            .await
            .assert_stored(false);
    }
    wait_count(
        &server,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'skipped'",
        2,
    )
    .await;
    assert_eq!(expected(&server, "1").len(), 8);

    let ui = signed_in(&server).await;
    let all = log(&ui, "").await;
    assert_eq!(all, expected(&server, "1"));
    let failed = log(&ui, "?status=failed").await;
    assert_eq!(failed, expected(&server, "status = 'failed'"));
    assert_eq!(failed.len(), 1);
    assert_eq!(
        log(&ui, "?status=skipped").await,
        expected(&server, "status = 'skipped'")
    );
    assert_eq!(
        log(&ui, "?trigger=payment_failed").await,
        expected(&server, "trigger = 'payment_failed'")
    );
    let ada = log(&ui, "?recipient=Ada%40Rosen.example").await;
    assert_eq!(ada, expected(&server, "recipient = 'ada@rosen.example'"));
    assert_eq!(ada.len(), 2);
    // Two filters no single index answers: still exact.
    let jenny_sent = log(&ui, "?status=sent&recipient=jenny%40rosen.example").await;
    assert_eq!(
        jenny_sent,
        expected(
            &server,
            "status = 'sent' AND recipient = 'jenny@rosen.example'"
        )
    );
    assert_eq!(jenny_sent.len(), 3);
    assert_eq!(
        log(&ui, "?status=skipped&trigger=payment_received").await,
        Vec::<i64>::new()
    );
    let integration = &server.integration_id;
    assert_eq!(log(&ui, &format!("?integration={integration}")).await, all);
    assert!(log(&ui, "?integration=int_0000000000000000")
        .await
        .is_empty());
    // Product and plan: the ids the pipeline stored.
    let (product, plan): (String, String) = server
        .db()
        .query_row(
            "SELECT product_id, plan_id FROM deliveries WHERE product_id IS NOT NULL LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let by_product = log(&ui, &format!("?product={product}")).await;
    assert_eq!(
        by_product,
        expected(&server, &format!("product_id = '{product}'"))
    );
    assert!(!by_product.is_empty());
    assert_eq!(
        log(&ui, &format!("?plan={plan}&trigger=payment_received")).await,
        expected(
            &server,
            &format!("plan_id = '{plan}' AND trigger = 'payment_received'")
        )
    );
    assert!(log(&ui, "?product=prod_nothing").await.is_empty());
    // Days, UTC: today holds everything, yesterday nothing.
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let yesterday = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24))
        .strftime("%Y-%m-%d")
        .to_string();
    assert_eq!(log(&ui, &format!("?from={today}&to={today}")).await, all);
    assert!(log(&ui, &format!("?to={yesterday}")).await.is_empty());
    assert_eq!(
        log(&ui, &format!("?status=failed&from={today}")).await,
        failed
    );

    // Each row: time, recipient, trigger, product and plan, subject, status badge.
    let page = ui.get("/log?status=failed").await;
    let html = Html::parse_document(&page.text);
    let cells: Vec<String> = select(&html, "table.log tbody tr td")
        .iter()
        .map(|td| td.text().collect::<String>())
        .collect();
    assert_eq!(cells.len(), 6, "{cells:?}");
    assert!(cells[1].contains("gone@rosen.example"), "{cells:?}");
    assert!(cells[2].contains("payment_received"), "{cells:?}");
    assert!(cells[4].contains("Payment received"), "{cells:?}");
    assert!(cells[5].contains("failed"), "{cells:?}");
    assert_eq!(select(&html, "table.log time[datetime]").len(), 1);
    // The dashboard's link lands here.
    assert!(ui.get("/").await.text.contains("/log?status=failed"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyset_pages_neither_repeat_nor_skip_a_row_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    // No relay: every delivery stays queued, many with the same created_at second.
    let server = start(dir.path(), &fake, None).await;
    let total = 123;
    for n in 0..total {
        server
            .deliver(paid("pages", n, &format!("c{}@rosen.example", n % 7)))
            .await
            .assert_stored(false);
    }
    wait_count(&server, "SELECT COUNT(*) FROM deliveries", total as i64).await;
    let ui = signed_in(&server).await;

    for query in [
        "",
        // Walked on the status index, the trigger checked row by row.
        "?status=queued&trigger=payment_received",
        "?recipient=c3%40rosen.example",
    ] {
        let want = match query {
            "?recipient=c3%40rosen.example" => expected(&server, "recipient = 'c3@rosen.example'"),
            _ => expected(&server, "1"),
        };
        // Older, page by page, to the end.
        let mut pages = Vec::new();
        let mut next = Some(format!("/log{query}"));
        while let Some(path) = next {
            let page = ui.get(&path).await;
            pages.push((path, listed(&page)));
            next = pager_link(&page, "Older");
            assert!(pages.len() < 10, "{query}: endless pages");
        }
        let seen: Vec<i64> = pages.iter().flat_map(|(_, ids)| ids.clone()).collect();
        assert_eq!(seen, want, "{query}: older pages");
        assert!(pages.iter().all(|(_, ids)| ids.len() <= 50));
        // Newer, back from the last page, shows each earlier page again, row for row.
        let mut back = pages.len() - 1;
        let mut page = ui.get(&pages[back].0).await;
        while let Some(newer) = pager_link(&page, "Newer") {
            back -= 1;
            page = ui.get(&newer).await;
            assert_eq!(listed(&page), pages[back].1, "{query}: newer page {back}");
        }
        assert_eq!(back, 0, "{query}: Newer stops at the newest page");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_shows_its_attempts_451_then_250_and_its_email_framed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let relay = ScriptedServer::start(&[]).await;
    relay.reply_text("RCPT", "451 4.3.0 Mailbox busy, try again later");
    let server = start(dir.path(), &fake, Some(relay.port())).await;
    server
        .deliver(paid("attempts", 0, "jenny@rosen.example"))
        .await
        .assert_stored(false);
    wait_count(
        &server,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'",
        1,
    )
    .await;
    let id = expected(&server, "1")[0];
    let attempts: Vec<(String, Option<i64>, String)> = {
        let conn = server.db();
        let mut stmt = conn
            .prepare(
                "SELECT outcome, reply_code, reply FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
            )
            .unwrap();
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        (attempts[0].0.as_str(), attempts[0].1),
        ("retry", Some(451))
    );
    assert!(attempts[0].2.contains("Mailbox busy"), "{attempts:?}");
    assert_eq!((attempts[1].0.as_str(), attempts[1].1), ("sent", Some(250)));
    let (from, version, template, event_id, message_id): (String, i64, i64, i64, String) = server
        .db()
        .query_row(
            "SELECT from_address, template_version, template_id, event_id, message_id
             FROM deliveries WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(from, "billing@rosen.example");

    let ui = signed_in(&server).await;
    let page = ui.get(&format!("/log/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let html = Html::parse_document(&page.text);
    let rows: Vec<String> = select(&html, "table.attempts tbody tr")
        .iter()
        .map(|tr| tr.text().collect::<String>())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].contains("retry") && rows[0].contains("451 4.3.0 Mailbox busy"));
    assert!(rows[1].contains("accepted") && rows[1].contains("250"));
    let text = html.root_element().text().collect::<String>();
    assert!(text.contains("billing@rosen.example"), "{text}");
    assert!(text.contains(&message_id), "{text}");
    assert!(text.contains(&format!("version {version}")), "{text}");
    assert_eq!(
        select(&html, &format!("a[href='/templates/{template}']")).len(),
        1
    );
    assert_eq!(
        select(&html, &format!("a[href='/events/{event_id}']")).len(),
        1
    );
    let frames = select(&html, "iframe.email-frame");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].value().attr("sandbox"), Some(""));
    assert_eq!(
        frames[0].value().attr("src"),
        Some(format!("/log/{id}/email").as_str())
    );
    assert_eq!(select(&html, "details.text-part pre").len(), 1);

    // The frame's document: the email as sent, under its own policy.
    let email = ui.get(&format!("/log/{id}/email")).await;
    assert_eq!(email.status, 200);
    assert_eq!(
        email.headers["content-security-policy"].to_str().unwrap(),
        EMAIL_FRAME_POLICY
    );
    assert_eq!(email.headers["x-frame-options"], "SAMEORIGIN");
    let sent_html: String = server
        .db()
        .query_row(
            "SELECT html FROM delivery_bodies WHERE delivery_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(email.text, sent_html);
    // Our page itself keeps the strict policy.
    assert!(page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_queues_a_new_delivery_that_reaches_smtp_sink() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let sink = Sink::start();
    let server = start(dir.path(), &fake, Some(sink.port)).await;
    let app = App::new(server.config.clone()).unwrap();
    server
        .deliver(paid("resend", 0, "jenny@rosen.example"))
        .await
        .assert_stored(false);
    sink.wait_for(1, Duration::from_secs(20)).await;
    wait_count(
        &server,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'",
        1,
    )
    .await;
    let id = expected(&server, "1")[0];

    let ui = signed_in(&server).await;
    let answer = ui.post(&format!("/log/{id}/resend"), &[]).await;
    let new = expected(&server, "1")[0];
    assert_ne!(new, id);
    answer.assert_redirect(&format!("/log/{new}"));
    let messages = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 2);
    assert!(String::from_utf8_lossy(&messages[1]).contains("jenny@rosen.example"));
    let page = ui.get(&format!("/log/{new}")).await;
    assert!(
        page.text.contains("Queued again as delivery"),
        "{}",
        page.text
    );
    assert!(page.text.contains(&format!("href=\"/log/{id}\"")));

    // A skipped delivery has no email: no Resend button, and a POST changes nothing.
    for template in manage::templates::list(&app).await.unwrap() {
        if template.trigger == TriggerKind::PaymentFailed {
            manage::templates::set_enabled(&app, template.id, false)
                .await
                .unwrap();
        }
    }
    server
        .deliver(payment_failed(0, "jenny@rosen.example"))
        .await
        .assert_stored(false);
    wait_count(
        &server,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'skipped'",
        1,
    )
    .await;
    let skipped = expected(&server, "status = 'skipped'")[0];
    let page = ui.get(&format!("/log/{skipped}")).await;
    let html = Html::parse_document(&page.text);
    assert!(select(&html, "form.resend").is_empty());
    assert!(page.text.contains("no template for"), "{}", page.text);
    assert_eq!(select(&html, ".why a[href='/templates']").len(), 1);
    let refused = ui.post(&format!("/log/{skipped}/resend"), &[]).await;
    refused.assert_redirect(&format!("/log/{skipped}"));
    assert_eq!(expected(&server, "1").len(), 3, "nothing was queued");
    let shown = ui.get(&format!("/log/{skipped}")).await;
    assert!(shown.text.contains("no email to resend"), "{}", shown.text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_show_prints_attempts_from_and_template_version() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let sink = Sink::start();
    let server = start(dir.path(), &fake, Some(sink.port)).await;
    server
        .deliver(paid("cli", 0, "jenny@rosen.example"))
        .await
        .assert_stored(false);
    wait_count(
        &server,
        "SELECT COUNT(*) FROM delivery_attempts WHERE outcome = 'sent'",
        1,
    )
    .await;
    let id = expected(&server, "1")[0];
    let binary = Path::new(env!("CARGO_BIN_EXE_mailmycustomer"));
    let out = crate::cli::mmc_with(binary, dir.path(), &["log", "show", &id.to_string()])
        .env("MMC_DATABASE__PATH", &server.config.database.path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("from:         billing@rosen.example"),
        "{stdout}"
    );
    assert!(stdout.contains(", version 1"), "{stdout}");
    assert!(stdout.contains("sent   250"), "{stdout}");
    server.stop().await;
}
