//! Connecting with an API key in headless Chromium against the release binary (issue 12): from
//! the empty Integrations page, **Add one**, paste a key into "Connect with an API key", and the
//! card shows the account, the mode and the endpoint Stripe (the fake) made.
//! Screenshots: `connect-add-*.png` (the Add page) and `connect-card-*.png` (the card).

use std::path::Path;

use super::{Browser, Served};
use crate::cli::{mmc, run};
use crate::fake_stripe::FakeStripe;

const EMAIL: &str = "owner@rosen.example";
const PASSWORD: &str = "correct horse battery staple";
const KEY: &str = "rk_test_51BrowserConnectKey0000wXyZ";

fn add_user(dir: &Path) {
    let password = dir.join("password");
    std::fs::write(&password, PASSWORD).unwrap();
    let (ok, _, err) = run(mmc(
        dir,
        &[
            "user",
            "add",
            EMAIL,
            "--password-file",
            password.to_str().unwrap(),
        ],
    ));
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_with_an_api_key_from_the_add_page() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    fake.set_account("acct_1RosenCoffee", "Rosen Coffee");
    add_user(dir.path());
    let server = Served::start(
        dir.path(),
        &[
            ("MMC_STRIPE__API_BASE", fake.base_url.clone()),
            (
                "MMC_SERVER__PUBLIC_URL",
                "https://mmc.rosen.example".to_owned(),
            ),
        ],
    );
    let browser = Browser::start(&server.url("")).await;
    let mut problems = Vec::new();

    browser.open("/login").await;
    browser
        .fill_all(&[("Email", EMAIL), ("Password", PASSWORD)])
        .await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;

    browser.open("/integrations").await;
    browser.click_link("Add one").await;
    browser.wait_for_path("/integrations/new").await;
    let text = browser.wait_for_text("Connect with an API key").await;
    for shown in [
        "Write on Webhook endpoints",
        "Read on Customers",
        "Read on Events",
        "I have a webhook signing secret",
    ] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    problems.extend(browser.screenshot("connect-add").await);
    problems.extend(browser.console_errors().await);

    browser
        .fill_all(&[("connect_name", "Rosen Coffee"), ("connect_key", KEY)])
        .await;
    browser.click_button("Connect").await;
    let flash = browser.flash().await;
    assert!(
        flash.starts_with("Connected “Rosen Coffee” to Rosen Coffee (acct_1RosenCoffee)"),
        "{flash}"
    );
    let endpoints = fake.webhook_endpoints();
    assert_eq!(endpoints.len(), 1);
    let endpoint = endpoints[0]["id"].as_str().unwrap().to_owned();
    assert!(flash.contains(&endpoint), "{flash}");

    browser.open("/integrations").await;
    let text = browser.wait_for_text("Rosen Coffee").await;
    for shown in [
        "With an API key",
        "Test mode",
        "acct_1RosenCoffee",
        "Enabled",
        &endpoint,
    ] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    assert!(!text.contains(KEY), "the key is on the page");
    problems.extend(browser.screenshot("connect-card").await);
    problems.extend(browser.console_errors().await);

    // Re-check from the card comes back to the list with what Stripe says.
    browser.click_button("Re-check").await;
    let flash = browser.flash().await;
    assert!(flash.contains("all is well"), "{flash}");
    browser.wait_for_path("/integrations").await;

    assert!(problems.is_empty(), "{problems:#?}");
    browser.close().await;
}
