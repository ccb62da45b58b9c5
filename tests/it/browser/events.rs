//! Events in headless Chromium against the release binary: a signed webhook for a trigger
//! whose templates are all off is skipped; the merchant finds it in the events list, opens it,
//! turns its template on and presses **Process again**, and sees it emailed, the email in the
//! sink and the skipped delivery marked superseded. The list and the event are saved at 1280
//! and 390 px, light and dark (`events-*.png`, `event-*.png`, `event-skipped-*.png`), and the
//! event again once its stored payload is damaged (`event-damaged-*.png`).

use std::time::{Duration, Instant};

use mailmycustomer::app::App;
use mailmycustomer::manage;
use mailmycustomer::stripe::signature;
use mailmycustomer::trigger::TriggerKind;

use super::{Browser, Served};
use crate::sink::Sink;
use crate::support::{add_integration, fixture, now, test_config, ui};

const SECRET: &str = "whsec_browser_events_000000000";

#[tokio::test(flavor = "multi_thread")]
async fn a_skipped_event_is_processed_again_after_adding_its_template() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    // The database as a merchant would have it: an account, an integration, every template off.
    let config = test_config(dir.path());
    let integration = add_integration(&config, "Rosen Goods", SECRET);
    let app = App::new(config.clone()).unwrap();
    manage::users::add(&app, ui::EMAIL, ui::PASSWORD)
        .await
        .unwrap();
    for t in manage::templates::list(&app).await.unwrap() {
        manage::templates::set_enabled(&app, t.id, false)
            .await
            .unwrap();
    }
    let server = Served::start(
        dir.path(),
        &[
            (
                "MMC_DATABASE__PATH",
                config.database.path.display().to_string(),
            ),
            ("MMC_SMTP__HOST", "127.0.0.1".into()),
            ("MMC_SMTP__PORT", sink.port.to_string()),
            ("MMC_SMTP__SECURITY", "none".into()),
            ("MMC_SMTP__FROM_ADDRESS", "billing@rosen.example".into()),
        ],
    );
    let browser = Browser::start(&server.url("")).await;
    let mut problems = Vec::new();

    browser.open("/login").await;
    browser
        .fill_all(&[("Email", ui::EMAIL), ("Password", ui::PASSWORD)])
        .await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;

    // Stripe sends a payment; with no template it is skipped.
    let event = fixture("invoice.paid.json");
    let answer = reqwest::Client::new()
        .post(server.url(&format!("/webhooks/stripe/{integration}")))
        .header("content-type", "application/json")
        .header("Stripe-Signature", signature::sign(&event, SECRET, now()))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    browser.click_link("Events").await;
    browser.wait_for_path("/events").await;
    reload_until(&browser, "no template for payment_received").await;
    look(&browser, "events", &mut problems).await;
    browser.click_link("invoice.paid").await;
    browser.wait_for_text("Process again").await;
    look(&browser, "event-skipped", &mut problems).await;

    // The merchant turns the payment template on (the templates pages do it through the same
    // service), then processes the event again.
    for t in manage::templates::list(&app).await.unwrap() {
        if t.trigger == TriggerKind::PaymentReceived && t.product_id.is_none() {
            manage::templates::set_enabled(&app, t.id, true)
                .await
                .unwrap();
        }
    }
    browser.click_button("Process again").await;
    let flash = browser.flash().await;
    assert!(flash.contains("again"), "{flash}");
    let mail = sink.wait_for(1, Duration::from_secs(20)).await;
    assert!(String::from_utf8_lossy(&mail[0]).contains("jenny.rosen@example.com"));
    // "emailed" alone could be read off the pending event's page (its help text says it), so
    // wait for the superseded row, which the same commit as the new delivery writes.
    let text = reload_until(&browser, "superseded").await;
    assert!(text.contains("emailed"), "{text}");
    look(&browser, "event", &mut problems).await;

    // Its stored payload damaged at rest (cut short): the page still opens, and says so where
    // the payload was.
    let conn =
        mailmycustomer::db::open(&mailmycustomer::db::Options::new(&config).unwrap()).unwrap();
    conn.execute(
        "UPDATE event_payloads SET payload_zstd = substr(payload_zstd, 1, 12)",
        [],
    )
    .unwrap();
    let text = reload_until(&browser, "the stored payload is damaged").await;
    assert!(
        text.contains("restore the database from a backup"),
        "{text}"
    );
    look(&browser, "event-damaged", &mut problems).await;

    browser.close().await;
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(sink.messages().len(), 1);
}

/// Reloads the page until it says `expected` (the processor works beside the page).
async fn reload_until(browser: &Browser, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = browser.text().await;
        if text.contains(expected) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the page never said {expected:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.client.refresh().await.unwrap();
    }
}

async fn look(browser: &Browser, name: &str, problems: &mut Vec<String>) {
    problems.extend(browser.screenshot(name).await);
    for error in browser.console_errors().await {
        problems.push(format!("{name}: console: {error}"));
    }
}
