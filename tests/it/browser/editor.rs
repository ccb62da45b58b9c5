//! The template editor in headless Chromium against the release binary: typing in the body
//! changes the sandboxed preview, a variable clicked goes in at the cursor, a script typed into
//! the template does nothing to the page, a test email of the unsaved draft arrives at a real
//! smtp-sink, and the template saves. Screenshots: `editor-1280.png`, `editor-390.png`,
//! `editor-1280-dark.png`.

use std::time::{Duration, Instant};

use fantoccini::Locator;

use super::{Browser, Served};
use crate::sink::Sink;

const EMAIL: &str = "owner@rosen.example";
const PASSWORD: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread")]
async fn typing_changes_the_preview_variables_insert_and_a_test_email_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let env = [
        ("MMC_SMTP__HOST", "127.0.0.1".to_owned()),
        ("MMC_SMTP__PORT", sink.port.to_string()),
        ("MMC_SMTP__SECURITY", "none".to_owned()),
        ("MMC_SMTP__FROM_ADDRESS", "billing@rosen.example".to_owned()),
    ];
    let server = Served::start(dir.path(), &env);
    let browser = Browser::start(&server.url("")).await;
    let mut problems = Vec::new();

    browser.open(&server.setup_path()).await;
    browser
        .fill_all(&[
            ("Email", EMAIL),
            ("Password", PASSWORD),
            ("Password again", PASSWORD),
        ])
        .await;
    browser.click_button("Create account and sign in").await;
    browser.wait_for_path("/").await;

    browser
        .open("/templates/new?trigger=payment_failed&product=prod_browser")
        .await;
    browser.wait_for_text("New template").await;
    // The page renders a first preview itself: the built-in with the sample event.
    let first = frame_src(&browser).await;
    assert!(first.contains("/templates/preview/"), "{first}");
    frame_showing(&browser, "Jenny Rosen").await;
    problems.extend(browser.screenshot("editor").await);

    // Typing re-renders (debounced) into a new frame.
    browser
        .fill(
            "Body",
            "<h1>Hello {{ customer.name }}</h1><p>Typed in Chromium</p>",
        )
        .await;
    let second = wait_for_new_frame(&browser, &first).await;
    let shown = frame_showing(&browser, "Typed in Chromium").await;
    assert!(shown.contains("Hello Jenny Rosen"), "{shown}");

    // A variable goes in where the cursor is: here, at the end of the subject.
    browser.fill("Subject", "Payment failed: ").await;
    browser
        .client
        .find(Locator::Css("[data-insert='{{ failure.reason }}']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        browser.value("Subject").await,
        "Payment failed: {{ failure.reason }}"
    );
    wait_for_new_frame(&browser, &second).await;
    browser
        .wait_for_text("Payment failed: Your card was declined.")
        .await;

    // A script in the template runs neither in the frame nor on our page.
    browser
        .fill(
            "Body",
            "<p>Scripted</p><script>parent.document.title='pwned';document.body.textContent='ran'</script>",
        )
        .await;
    let third = wait_for_new_frame(&browser, &second).await;
    frame_showing(&browser, "Scripted").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = frame_showing(&browser, "Scripted").await;
    assert!(!after.contains("ran"), "the script ran: {after}");
    let title = browser.client.title().await.unwrap();
    assert!(!title.contains("pwned"), "{title}");
    for error in browser.console_errors().await {
        // Chromium reports the blocked script: that is the sandbox working.
        if !error.contains("Blocked script execution") {
            problems.push(format!("editor: console: {error}"));
        }
    }

    // The test email of the unsaved draft arrives; the page shows the relay's reply.
    browser
        .fill("Body", "<p>Draft sent from the editor</p>")
        .await;
    wait_for_new_frame(&browser, &third).await;
    browser.fill("Send to", EMAIL).await;
    browser.click_button("Send test email").await;
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    let mail = String::from_utf8_lossy(&messages[0]).into_owned();
    assert!(mail.contains("Draft sent from the editor"), "{mail}");
    assert!(mail.contains("Your card was declined."), "{mail}");
    browser.wait_for_text("accepted the test email").await;

    // Saving: the template's own page, with the flash.
    browser.click_button("Save template").await;
    browser.wait_for_text("Template saved").await;
    assert!(browser.path().await.starts_with("/templates/"));
    assert_eq!(
        browser.value("Subject").await,
        "Payment failed: {{ failure.reason }}"
    );
    for error in browser.console_errors().await {
        problems.push(format!("editor saved: console: {error}"));
    }

    browser.close().await;
    assert!(
        problems.is_empty(),
        "what a person would see as broken:\n{}",
        problems.join("\n")
    );
}

pub(super) async fn frame_src(browser: &Browser) -> String {
    let frame = browser.wait_for(Locator::Id("preview-frame")).await;
    frame.attr("src").await.unwrap().unwrap_or_default()
}

/// Waits until the preview frame loads something other than `old`; returns its address.
pub(super) async fn wait_for_new_frame(browser: &Browser, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = frame_src(browser).await;
        if now != old && !now.is_empty() {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the preview never changed from {old}:\n{}",
            browser.text().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text the preview frame shows once it contains `expected` (read inside the frame).
pub(super) async fn frame_showing(browser: &Browser, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let frame = browser.wait_for(Locator::Id("preview-frame")).await;
        frame.enter_frame().await.unwrap();
        let text = match browser.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        browser.client.enter_parent_frame().await.unwrap();
        if text.contains(expected) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the preview never showed {expected:?}; it shows:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
