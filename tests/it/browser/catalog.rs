//! The catalog page in headless Chromium against the release binary: an integration with an API
//! key reads a small shop's products and prices from the fake Stripe with **Refresh from
//! Stripe**, a rename on Stripe shows as renamed, and one without a key shows where to add one.
//! Screenshots: `catalog-1280.png`, `catalog-390.png`, `catalog-1280-dark.png` and
//! `catalog-no-key-*`.

use std::path::Path;

use fantoccini::Locator;

use super::{Browser, Served};
use crate::cli::{add_integration_cli, mmc, run};
use crate::fake_stripe::FakeStripe;
use crate::support::SECRET;

const EMAIL: &str = "owner@rosen.example";
const PASSWORD: &str = "correct horse battery staple";
const KEY: &str = "rk_test_51BrowserCatalogKey00000wXyZ";

/// A small coffee shop's catalog: three products, five prices, one archived.
fn shop(fake: &FakeStripe) {
    fake.clear("products");
    fake.clear("prices");
    fake.product("prod_QsCoffeeClub01", "Coffee Club");
    fake.price(
        "price_1QsClubMonth01",
        "prod_QsCoffeeClub01",
        Some("Monthly"),
        Some("month"),
        1800,
        "eur",
    );
    fake.price(
        "price_1QsClubYear001",
        "prod_QsCoffeeClub01",
        Some("Yearly"),
        Some("year"),
        18000,
        "eur",
    );
    fake.product("prod_QsTastingBox1", "Tasting box");
    fake.price(
        "price_1QsTastingOne1",
        "prod_QsTastingBox1",
        None,
        None,
        3500,
        "eur",
    );
    fake.product("prod_QsBaristaCls1", "Barista class");
    fake.price(
        "price_1QsBaristaOld1",
        "prod_QsBaristaCls1",
        Some("Spring 2026"),
        None,
        9000,
        "eur",
    );
    fake.archive("prices", "price_1QsBaristaOld1");
    fake.price(
        "price_1QsBaristaNew1",
        "prod_QsBaristaCls1",
        Some("Autumn 2026"),
        None,
        9500,
        "eur",
    );
}

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
async fn the_catalog_page_refreshes_from_stripe() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    shop(&fake);
    add_user(dir.path());
    let (with_key, _) = add_integration_cli(
        dir.path(),
        &[
            "--name",
            "Rosen Coffee",
            "--webhook-secret",
            SECRET,
            "--api-key",
            KEY,
        ],
    );
    let (keyless, _) = add_integration_cli(
        dir.path(),
        &["--name", "Rosen Test Shop", "--webhook-secret", SECRET],
    );
    let server = Served::start(
        dir.path(),
        &[("MMC_STRIPE__API_BASE", fake.base_url.clone())],
    );
    let browser = Browser::start(&server.url("")).await;
    let mut problems = Vec::new();

    browser.open("/login").await;
    browser
        .fill_all(&[("Email", EMAIL), ("Password", PASSWORD)])
        .await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;

    // From the integration's page to its catalog, empty until refreshed.
    browser.open(&format!("/integrations/{with_key}")).await;
    browser.click_link("Products and plans from Stripe").await;
    browser
        .wait_for_path(&format!("/integrations/{with_key}/catalog"))
        .await;
    browser.wait_for_text("No products yet").await;

    browser.click_button("Refresh from Stripe").await;
    let flash = browser.flash().await;
    assert_eq!(
        flash,
        "Read 3 products and 5 plans from Stripe: 8 added, 0 unchanged. 1 archived on Stripe: \
         kept, as earlier subscriptions still use it."
    );
    let text = browser.wait_for_text("Coffee Club").await;
    for shown in ["price_1QsClubYear001", "yearly", "one-time", "Spring 2026"] {
        assert!(text.contains(shown), "{shown}: {text}");
    }

    // Renamed on Stripe: the next refresh says so.
    fake.change("products", "prod_QsTastingBox1", |p| {
        p["name"] = "Tasting box (6 origins)".into()
    });
    browser.click_button("Refresh from Stripe").await;
    browser
        .wait_for_text("1 renamed (Tasting box → Tasting box (6 origins))")
        .await;
    problems.extend(browser.screenshot("catalog").await);
    problems.extend(browser.console_errors().await);

    // Without a key: a note and a link to the integration's page instead of the button.
    browser
        .open(&format!("/integrations/{keyless}/catalog"))
        .await;
    let text = browser
        .wait_for_text("Refreshing needs a Stripe API key")
        .await;
    assert!(
        text.contains("Add an API key on the integration's page"),
        "{text}"
    );
    let button = browser
        .client
        .find(Locator::XPath(
            "//button[normalize-space()='Refresh from Stripe']",
        ))
        .await;
    assert!(button.is_err(), "a refresh button without a key");
    problems.extend(browser.screenshot("catalog-no-key").await);
    problems.extend(browser.console_errors().await);
    browser
        .click_link("Add an API key on the integration's page")
        .await;
    browser
        .wait_for_path(&format!("/integrations/{keyless}"))
        .await;

    assert!(problems.is_empty(), "{problems:#?}");
    browser.close().await;
}
