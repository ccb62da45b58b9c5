//! The template matrix in Chromium, as a merchant uses it: opened at 1280 and 390 px
//! (`templates-matrix-*.png`), a product row's cell leading to the editor for exactly that
//! product and event, and a product-specific payment_failed template made from the shared one
//! with Duplicate, after which the matrix shows that cell as the integration's own.

use fantoccini::Locator;

use super::{Browser, Served};
use crate::cli::{add_integration_cli, mmc, run};
use crate::support::SECRET;

const EMAIL: &str = "owner@rosen.example";
const PASSWORD: &str = "correct horse battery staple";
const PRODUCT: &str = "prod_QXg1hqf4jFNsqG";

/// Runs the CLI in `dir`; panics with its output when it fails.
fn cli(dir: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = run(mmc(dir, args));
    assert!(ok, "{args:?}: {out}{err}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_matrix_shows_each_cell_and_a_product_template_is_made_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, _) = add_integration_cli(d, &["--name", "Rosen Goods", "--webhook-secret", SECRET]);
    std::fs::write(d.join("password"), PASSWORD).unwrap();
    cli(d, &["user", "add", EMAIL, "--password-file", "password"]);
    // A template for one product gives the matrix that product's row.
    std::fs::write(
        d.join("paid.html"),
        "<p>Thanks for the T-shirt, {{ customer.name }}</p>",
    )
    .unwrap();
    cli(
        d,
        &[
            "template",
            "add",
            "--integration",
            &id,
            "--trigger",
            "payment_received",
            "--product",
            PRODUCT,
            "--subject",
            "T-shirt paid",
            "--html-file",
            "paid.html",
        ],
    );

    let server = Served::start(d, &[]);
    let browser = Browser::start(&server.url("")).await;
    browser.open("/login").await;
    browser
        .fill_all(&[("Email", EMAIL), ("Password", PASSWORD)])
        .await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;

    browser.click_link("Templates").await;
    browser.wait_for_path("/templates").await;
    browser.wait_for(Locator::Css("table.matrix")).await;
    let problems = browser.screenshot("templates-matrix").await;
    assert!(problems.is_empty(), "{problems:?}");
    let console = browser.console_errors().await;
    assert!(console.is_empty(), "{console:?}");

    // The product row: its own payment_received, payment_failed inherited from any product.
    let own = browser
        .wait_for(Locator::Css("tr.product td:nth-of-type(6) a.cell.own"))
        .await;
    assert_eq!(own.text().await.unwrap().trim(), "T-shirt paid");
    let inherited = browser
        .wait_for(Locator::Css(
            "tr.product td:nth-of-type(3) a.cell.inherited",
        ))
        .await;
    let said = inherited.text().await.unwrap();
    assert!(said.contains("from any product, shared"), "{said}");
    // Its "+ Own" leads to the editor for exactly this integration, product and event.
    let make = browser
        .wait_for(Locator::Css("tr.product td:nth-of-type(3) a.make"))
        .await;
    make.click().await.unwrap();
    browser.wait_for_path("/templates/new").await;
    let url = browser.client.current_url().await.unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        query,
        [
            ("integration".to_owned(), id.clone()),
            ("trigger".to_owned(), "payment_failed".to_owned()),
            ("product".to_owned(), PRODUCT.to_owned()),
        ]
    );

    // Duplicate the shared payment_failed template to this product, for this integration.
    browser.open("/templates").await;
    let row = browser
        .wait_for(Locator::XPath(
            "//table[contains(@class,'templates')]//tr[contains(normalize-space(), 'Payment failed') \
             and contains(normalize-space(), 'any product')]//a[normalize-space()='Duplicate']",
        ))
        .await;
    row.click().await.unwrap();
    browser
        .wait_for(Locator::Css("form select[name=integration]"))
        .await;
    let problems = browser.screenshot("templates-duplicate").await;
    assert!(problems.is_empty(), "{problems:?}");
    browser
        .client
        .find(Locator::Css(&format!(
            "select[name=integration] option[value='{id}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.fill("Product", PRODUCT).await;
    browser.click_button("Duplicate").await;
    // The copy opens in the editor (`/templates/{id}`); back to the matrix.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while browser.path().await.ends_with("/duplicate") {
        assert!(
            std::time::Instant::now() < deadline,
            "the duplicate form did not submit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    browser.open(&format!("/templates?integration={id}")).await;
    let cell = browser
        .wait_for(Locator::Css("tr.product td:nth-of-type(3) a.cell.own"))
        .await;
    assert!(
        cell.text().await.unwrap().contains("payment"),
        "the product's payment_failed cell is its own now"
    );
    let problems = browser.screenshot("templates-matrix-own").await;
    assert!(problems.is_empty(), "{problems:?}");
    browser.close().await;
}
