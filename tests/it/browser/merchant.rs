//! Issue 11's path in one go, in Chromium against the release binary: from the template matrix,
//! the "+ Own" cell of one product's payment_failed opens the editor for exactly that
//! combination; typing re-renders the preview, a clicked variable goes into the subject, and the
//! template is saved. A signed `invoice.payment_failed` for that product is then emailed with it
//! (at a real smtp-sink), the log lists it with that template, and its page resends it: a second
//! email arrives.

use std::time::Duration;

use fantoccini::Locator;
use mailmycustomer::app::App;
use mailmycustomer::db::{self, catalog};
use mailmycustomer::manage::users;
use mailmycustomer::stripe::signature;

use super::editor::{frame_showing, frame_src, wait_for_new_frame};
use super::{Browser, Served};
use crate::sink::Sink;
use crate::support::{add_integration, fixture, now, test_config};

const EMAIL: &str = "owner@rosen.example";
const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "whsec_browser_merchant_0000000000";
/// The product of the fixture's invoice line.
const PRODUCT: &str = "prod_QXg1hqf4jFNsqG";

#[tokio::test(flavor = "multi_thread")]
async fn a_product_template_made_from_the_matrix_emails_that_product_and_is_resent() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let config = test_config(dir.path());
    let integration = add_integration(&config, "Rosen Goods", SECRET);
    {
        // The product's name, as a catalog refresh or an earlier event would have stored it.
        let conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
        catalog::put_product(&conn, &integration, PRODUCT, "T-shirt", now()).unwrap();
    }
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

    let browser = Browser::start(&server.url("")).await;
    browser.open("/login").await;
    browser
        .fill_all(&[("Email", EMAIL), ("Password", PASSWORD)])
        .await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;

    // The matrix: the T-shirt's payment_failed is inherited; its "+ Own" opens the editor.
    browser.click_link("Templates").await;
    browser.wait_for_path("/templates").await;
    browser.wait_for_text("T-shirt").await;
    browser
        .wait_for(Locator::Css(
            "tr.product td:nth-of-type(3) a.cell.inherited",
        ))
        .await;
    browser
        .wait_for(Locator::Css("tr.product td:nth-of-type(3) a.make"))
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for_path("/templates/new").await;
    browser.wait_for_text("New template").await;

    // Typing re-renders the preview; a clicked variable goes in at the cursor.
    let first = frame_src(&browser).await;
    browser
        .fill(
            "Body",
            "<p>Hi {{ customer.name }}, your T-shirt payment did not go through.</p>",
        )
        .await;
    let second = wait_for_new_frame(&browser, &first).await;
    frame_showing(&browser, "Hi Jenny Rosen, your T-shirt payment").await;
    browser.fill("Subject", "T-shirt payment failed for ").await;
    browser
        .client
        .find(Locator::Css("[data-insert='{{ customer.name }}']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        browser.value("Subject").await,
        "T-shirt payment failed for {{ customer.name }}"
    );
    wait_for_new_frame(&browser, &second).await;
    browser
        .wait_for_text("T-shirt payment failed for Jenny Rosen")
        .await;
    browser.click_button("Save template").await;
    browser.wait_for_text("Template saved").await;
    let template_page = browser.path().await;
    assert!(template_page.starts_with("/templates/"), "{template_page}");

    // The matrix now shows the cell as the integration's own.
    browser
        .open(&format!("/templates?integration={integration}"))
        .await;
    browser
        .wait_for(Locator::Css("tr.product td:nth-of-type(3) a.cell.own"))
        .await;

    // A payment of that product fails on Stripe: the email uses the new template.
    let event = fixture("invoice.payment_failed.json");
    let answer = reqwest::Client::new()
        .post(server.url(&format!("/webhooks/stripe/{integration}")))
        .header("content-type", "application/json")
        .header("Stripe-Signature", signature::sign(&event, SECRET, now()))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    let mail = String::from_utf8_lossy(&messages[0]).into_owned();
    assert!(
        mail.contains("your T-shirt payment did not go through"),
        "{mail}"
    );

    // The log lists it; its page names the template and resends it.
    browser.click_link("Log").await;
    browser.wait_for_path("/log").await;
    browser.click_link("T-shirt payment failed for").await;
    browser.wait_for_text("Attempts").await;
    let template_link = browser
        .wait_for(Locator::Css(&format!("a[href='{template_page}']")))
        .await;
    assert!(
        template_link.text().await.unwrap().contains("Template"),
        "the delivery names the template it came from"
    );
    browser.click_button("Resend").await;
    let flash = browser.flash().await;
    assert!(flash.contains("Queued again"), "{flash}");
    let messages = sink.wait_for(2, Duration::from_secs(20)).await;
    let again = String::from_utf8_lossy(&messages[1]).into_owned();
    assert!(
        again.contains("your T-shirt payment did not go through"),
        "{again}"
    );
    let console = browser.console_errors().await;
    assert!(console.is_empty(), "{console:?}");
    browser.close().await;
}
