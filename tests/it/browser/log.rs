//! The delivery log in Chromium against the release binary: two signed webhooks become emails
//! at a real smtp-sink, the log lists them, a filter narrows it, a delivery's page shows the
//! email in its sandboxed frame with the relay's reply, and Resend makes a second delivery that
//! arrives too. Screenshots `log-*` and `delivery-*` at 1280 and 390 px, light and dark.

use std::time::Duration;

use fantoccini::Locator;
use mailmycustomer::app::App;
use mailmycustomer::manage::users;
use mailmycustomer::stripe::signature;

use super::{Browser, Served};
use crate::sink::Sink;
use crate::support::{add_integration, distinct_invoice_paid, fixture, now, test_config};

const EMAIL: &str = "owner@rosen.example";
const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "whsec_browser_log_000000000000";

#[tokio::test(flavor = "multi_thread")]
async fn the_log_filters_opens_a_delivery_and_resends_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let config = test_config(dir.path());
    let integration = add_integration(&config, "Rosen Goods", SECRET);
    let app = App::new(config.clone()).unwrap();
    users::add(&app, EMAIL, PASSWORD).await.unwrap();
    drop(app);
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

    // Two emails: one to Jenny (the fixture's customer), one to Ada.
    let mut to_ada: serde_json::Value =
        serde_json::from_slice(&distinct_invoice_paid("browser_log", 1)).unwrap();
    to_ada["data"]["object"]["customer_email"] = "ada@rosen.example".into();
    let http = reqwest::Client::new();
    for event in [
        fixture("invoice.paid.json"),
        serde_json::to_vec(&to_ada).unwrap(),
    ] {
        let answer = http
            .post(server.url(&format!("/webhooks/stripe/{integration}")))
            .header("content-type", "application/json")
            .header("Stripe-Signature", signature::sign(&event, SECRET, now()))
            .body(event)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    sink.wait_for(2, Duration::from_secs(20)).await;

    let browser = Browser::start(&server.url("")).await;
    let mut problems = Vec::new();
    browser.open("/login").await;
    browser
        .fill_all(&[("Email", EMAIL), ("Password", PASSWORD)])
        .await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;

    browser.click_link("Log").await;
    browser.wait_for_path("/log").await;
    browser.wait_for_text("ada@rosen.example").await;
    browser.wait_for_text("jenny.rosen@example.com").await;
    look(&browser, "log", &mut problems).await;

    // Filter by recipient: Ada's row only.
    browser.fill("Recipient", "ada@rosen.example").await;
    browser.click_button("Filter").await;
    browser.wait_for_text("Clear").await;
    let filtered = browser.path().await;
    assert!(
        filtered.starts_with("/log?") && filtered.contains("recipient=ada%40rosen.example"),
        "{filtered}"
    );
    let rows = browser
        .client
        .find_all(Locator::Css("table.log tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!browser.text().await.contains("jenny.rosen@example.com"));

    // Her delivery: the email in a sandboxed frame, the relay's 250.
    browser.click_link("Payment received").await;
    browser.wait_for_text("Attempts").await;
    let frame = browser.wait_for(Locator::Css("iframe.email-frame")).await;
    assert_eq!(frame.attr("sandbox").await.unwrap().as_deref(), Some(""));
    let text = browser.text().await;
    assert!(text.contains("billing@rosen.example"), "{text}");
    assert!(text.contains("accepted") && text.contains("250"), "{text}");
    let first = browser.path().await;
    look(&browser, "delivery", &mut problems).await;

    browser.click_button("Resend").await;
    let flash = browser.flash().await;
    assert!(flash.contains("Queued again"), "{flash}");
    assert_ne!(browser.path().await, first);
    let messages = sink.wait_for(3, Duration::from_secs(20)).await;
    let to_ada = messages
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains("ada@rosen.example"))
        .count();
    assert_eq!(to_ada, 2, "the resend arrived");
    // Once sent, the new delivery's page says so.
    for _ in 0..100 {
        browser.open(&browser.path().await).await;
        if browser.text().await.contains("accepted") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.wait_for_text("Resend of").await;
    browser.click_link("Log").await;
    browser.wait_for_path("/log").await;
    let rows = browser
        .client
        .find_all(Locator::Css("table.log tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "the second delivery is in the log");

    browser.close().await;
    assert!(
        problems.is_empty(),
        "pages a person would see as broken:\n{}",
        problems.join("\n")
    );
}

async fn look(browser: &Browser, name: &str, problems: &mut Vec<String>) {
    problems.extend(browser.screenshot(name).await);
    for error in browser.console_errors().await {
        problems.push(format!("{name}: console: {error}"));
    }
}
