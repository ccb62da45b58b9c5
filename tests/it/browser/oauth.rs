//! Connect with Stripe in headless Chromium against the release binary (issue 12, "Connect
//! OAuth path"): the Add page's button → the fake Stripe's consent page → "Authorize access to
//! this account" → back on Integrations, where the card shows the account. Screenshots:
//! `oauth-add-*` (the Add page with the button) and `oauth-card-*` (the card).

use std::path::Path;

use super::{Browser, Served};
use crate::cli::{mmc, run};
use crate::fake_stripe::{FakeStripe, CONNECTED_ACCOUNT};

const EMAIL: &str = "owner@rosen.example";
const PASSWORD: &str = "correct horse battery staple";

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
async fn connect_with_stripe_from_the_add_page_to_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    add_user(dir.path());
    let key_file = dir.path().join("platform-key");
    std::fs::write(&key_file, "sk_test_BrowserPlatformKey0000001\n").unwrap();
    let base = &fake.base_url;
    let server = Served::start(
        dir.path(),
        &[
            ("MMC_STRIPE__API_BASE", base.clone()),
            (
                "MMC_STRIPE__CONNECT__CLIENT_ID",
                "ca_BrowserPlatform000000001".into(),
            ),
            (
                "MMC_STRIPE__CONNECT__SECRET_KEY_FILE",
                key_file.to_str().unwrap().into(),
            ),
            (
                "MMC_STRIPE__CONNECT__WEBHOOK_SECRET",
                "whsec_browser_connect_endpoint".into(),
            ),
            (
                "MMC_STRIPE__CONNECT__AUTHORIZE_URL",
                format!("{base}/oauth/authorize"),
            ),
            (
                "MMC_STRIPE__CONNECT__TOKEN_URL",
                format!("{base}/oauth/token"),
            ),
            (
                "MMC_STRIPE__CONNECT__DEAUTHORIZE_URL",
                format!("{base}/oauth/deauthorize"),
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
    browser.wait_for_text("Connect with Stripe").await;
    problems.extend(browser.screenshot("oauth-add").await);
    problems.extend(browser.console_errors().await);

    // To Stripe (the fake's consent page, another origin) and back.
    browser.click_button("Connect with Stripe").await;
    let consent = browser
        .wait_for_text("Authorize access to this account")
        .await;
    assert!(consent.contains("Rosen Goods"), "{consent}");
    assert!(
        browser.path().await.starts_with("/oauth/authorize?"),
        "{}",
        browser.path().await
    );
    browser.click_link("Authorize access to this account").await;
    browser.wait_for_path("/integrations").await;
    let flash = browser.flash().await;
    assert!(
        flash.starts_with(&format!(
            "Connected “Rosen Goods” ({CONNECTED_ACCOUNT}) with Stripe"
        )),
        "{flash}"
    );
    let text = browser.wait_for_text(CONNECTED_ACCOUNT).await;
    assert!(text.contains("Rosen Goods"), "{text}");
    problems.extend(browser.screenshot("oauth-card").await);
    problems.extend(browser.console_errors().await);

    assert!(problems.is_empty(), "{problems:#?}\n{}", server.log());
    browser.close().await;
}
