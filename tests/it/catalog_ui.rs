//! The catalog page (`/integrations/{id}/catalog`) and **Refresh from Stripe**, over real HTTP
//! against the in-process server reading the fake Stripe's paginated lists; and the
//! `catalog list|refresh` commands on the real binary (issue 11, "Products & plans").

use std::time::Duration;

use mailmycustomer::app::App;
use mailmycustomer::db::{self, catalog, integrations, templates::TemplateInput};
use mailmycustomer::templates::body::Format;
use mailmycustomer::trigger::TriggerKind;
use scraper::{ElementRef, Html, Selector};

use crate::cli::{add_integration_cli, mmc, run};
use crate::fake_stripe::FakeStripe;
use crate::support::ui::Page;
use crate::support::*;

const KEY: &str = "rk_test_51CatalogReadKey00000000wXyZ";

/// A server whose Stripe is `fake`, with one integration holding `key`.
async fn serve(dir: &std::path::Path, fake: &FakeStripe, key: Option<&str>) -> TestServer {
    let mut config = test_config(dir);
    config.stripe.api_base = fake.base_url.clone();
    // These tests count every request the fake gets; the catch-up's are `catchup.rs`'s.
    config.stripe.catch_up_interval_minutes = 0;
    let mut conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let id = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Rosen Goods",
            webhook_secret: SECRET,
            api_key: key,
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap()
    .id;
    TestServer::start_with(config, id).await
}

/// A fake Stripe listing exactly `n` products with one monthly price each.
async fn fake_with(n: usize) -> FakeStripe {
    let fake = FakeStripe::start().await;
    fake.clear("products");
    fake.clear("prices");
    fake.many_products(n);
    fake
}

fn page_path(server: &TestServer) -> String {
    format!("/integrations/{}/catalog", server.integration_id)
}

fn refresh_path(server: &TestServer) -> String {
    format!("/integrations/{}/catalog/refresh", server.integration_id)
}

fn counts(server: &TestServer) -> (i64, i64) {
    catalog::counts(&server.db(), &server.integration_id).unwrap()
}

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

/// The texts of what `css` selects.
fn texts(doc: &Html, css: &str) -> Vec<String> {
    select(doc, css).into_iter().map(text).collect()
}

/// The flash message a page shows, and whether it is an error.
fn flash(page: &Page) -> (String, bool) {
    let doc = html(page);
    let found = select(&doc, "div.flash");
    assert_eq!(found.len(), 1, "no flash on {}", page.text);
    let error = found[0].value().classes().any(|c| c == "error");
    (text(found[0]), error)
}

fn has_refresh_button(doc: &Html) -> bool {
    texts(doc, "button")
        .iter()
        .any(|b| b == "Refresh from Stripe")
}

/// Posts **Refresh from Stripe** and follows the 303 back to the page.
async fn refresh(ui: &crate::support::UiClient, server: &TestServer) -> Page {
    let answer = ui.post(&refresh_path(server), &[]).await;
    answer.assert_redirect(&page_path(server));
    ui.get(&page_path(server)).await
}

/// 250 products and 250 prices take three pages each; every one is stored, and the page shows
/// them 100 products at a time, by name, each with its plan.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_pages_through_250_products_and_prices_and_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with(250).await;
    let server = serve(dir.path(), &fake, Some(KEY)).await;
    let ui = signed_in(&server).await;

    let before = ui.get(&page_path(&server)).await;
    assert_eq!(before.status, 200, "{}", before.text);
    let doc = html(&before);
    assert!(has_refresh_button(&doc), "{}", before.text);
    assert_eq!(texts(&doc, ".empty h2"), ["No products yet"]);

    let after = refresh(&ui, &server).await;
    assert_eq!(
        flash(&after),
        (
            "Read 250 products and 250 plans from Stripe: 500 added, 0 unchanged.".to_owned(),
            false
        )
    );
    assert_eq!(counts(&server), (250, 250));

    // Three pages of each list, each after the last id of the one before.
    for (collection, prefix) in [("products", "prod_cat_"), ("prices", "price_cat_")] {
        let pages: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.path == format!("/v1/{collection}"))
            .collect();
        assert_eq!(pages.len(), 3, "{pages:?}");
        assert!(pages
            .iter()
            .all(|r| r.param("limit").as_deref() == Some("100")));
        assert!(pages
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&*format!("Bearer {KEY}"))));
        // Newest first: 250 … 151, then 150 … 51, then 50 … 1.
        let cursors: Vec<_> = pages.iter().map(|r| r.param("starting_after")).collect();
        assert_eq!(
            cursors,
            [
                None,
                Some(format!("{prefix}151")),
                Some(format!("{prefix}051"))
            ]
        );
    }

    // The page: products by name, 100 at a time, each followed by its plan.
    let doc = html(&after);
    let names = texts(&doc, "tr.product td:first-child");
    let expected: Vec<String> = (1..=100).map(|i| format!("Product {i:03}")).collect();
    assert_eq!(names, expected);
    let first_plan = select(&doc, "tr.plan")[0];
    let cells: Vec<String> = first_plan
        .select(&Selector::parse("td").unwrap())
        .map(text)
        .collect();
    assert_eq!(
        &cells[..4],
        ["Plan 001", "price_cat_001", "monthly", "none"]
    );
    assert_eq!(cells[4], "just now");
    assert!(text(select(&doc, ".catalog-intro")[0]).starts_with("250 products and 250 plans"));
    assert!(select(&doc, "p.note").is_empty());

    // The next pages, through the pager's link.
    let mut seen = names.len();
    let mut next = select(&doc, "nav.pager a")
        .first()
        .map(|a| a.value().attr("href").unwrap().to_owned());
    let mut pages = 1;
    while let Some(href) = next {
        let page = ui.get(&href).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let doc = html(&page);
        let names = texts(&doc, "tr.product td:first-child");
        assert_eq!(names.first(), Some(&format!("Product {:03}", seen + 1)));
        assert_eq!(texts(&doc, "tr.plan").len(), names.len());
        seen += names.len();
        pages += 1;
        next = select(&doc, "nav.pager a")
            .first()
            .map(|a| a.value().attr("href").unwrap().to_owned());
    }
    assert_eq!((seen, pages), (250, 3));

    // A second refresh changes nothing and says so.
    let again = refresh(&ui, &server).await;
    assert_eq!(
        flash(&again).0,
        "Read 250 products and 250 plans from Stripe: 500 unchanged."
    );
    assert_eq!(counts(&server), (250, 250));
    server.stop().await;
}

/// A product renamed on Stripe is reported as renamed, old → new, and shown by its new name
/// with its templates counted; one deleted on Stripe is named and kept; archived ones are kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_rename_on_stripe_is_reported_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with(12).await;
    let server = serve(dir.path(), &fake, Some(KEY)).await;
    let ui = signed_in(&server).await;
    refresh(&ui, &server).await;

    fake.change("products", "prod_cat_007", |p| {
        p["name"] = "Gold plus".into()
    });
    fake.change("prices", "price_cat_003", |p| {
        p["nickname"] = "Yearly gold".into()
    });
    fake.delete("products", "prod_cat_009");
    fake.archive("products", "prod_cat_011");
    fake.archive("prices", "price_cat_011");
    fake.product("prod_new", "Bronze");
    // A template made for the renamed product, and one for a plan.
    let app = App::new(server.config.clone()).unwrap();
    for (product, plan) in [(Some("prod_cat_007"), None), (None, Some("price_cat_003"))] {
        mailmycustomer::manage::templates::save(
            &app,
            TemplateInput {
                id: None,
                integration_id: None,
                trigger: TriggerKind::PaymentFailed,
                product_id: product.map(str::to_owned),
                plan_id: plan.map(str::to_owned),
                subject: "Your payment failed".into(),
                format: Format::Html,
                body: "<p>Please update your card.</p>".into(),
                text: None,
                enabled: true,
            },
        )
        .await
        .unwrap();
    }

    // Another shop's own template for the same product does not count here.
    let other = integrations::insert(
        &server.db(),
        &integrations::NewIntegration {
            name: "Other shop",
            webhook_secret: SECRET,
            api_key: None,
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap();
    mailmycustomer::manage::templates::save(
        &app,
        TemplateInput {
            integration_id: Some(other.id),
            product_id: Some("prod_cat_007".into()),
            ..TemplateInput::html(
                TriggerKind::PaymentFailed,
                "Other shop's subject",
                "<p>Other shop.</p>",
            )
        },
    )
    .await
    .unwrap();

    let page = refresh(&ui, &server).await;
    let (message, error) = flash(&page);
    assert!(!error, "{message}");
    assert_eq!(
        message,
        "Read 12 products and 12 plans from Stripe: 1 added, 2 renamed (Product 007 → Gold plus, \
         Plan 003 → Yearly gold), 21 unchanged. 1 no longer on Stripe (Product 009): kept, for \
         the log and the templates made for it. 2 archived on Stripe: kept, as earlier \
         subscriptions still use them."
    );
    // Nothing was deleted: the product Stripe no longer lists keeps its name.
    assert_eq!(counts(&server), (13, 12));
    let doc = html(&page);
    let rows: Vec<Vec<String>> = select(&doc, "tr.product")
        .into_iter()
        .map(|r| {
            r.select(&Selector::parse("td").unwrap())
                .map(text)
                .collect()
        })
        .collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
            .clone()
    };
    assert_eq!(row("Gold plus")[1], "prod_cat_007");
    assert_eq!(row("Gold plus")[3], "1 template");
    assert_eq!(row("Product 009")[1], "prod_cat_009");
    assert_eq!(row("Bronze")[2], "0 plans");
    assert!(rows.iter().all(|r| r[0] != "Product 007"), "{rows:?}");
    let plan_cells: Vec<Vec<String>> = select(&doc, "tr.plan")
        .into_iter()
        .map(|r| {
            r.select(&Selector::parse("td").unwrap())
                .map(text)
                .collect()
        })
        .collect();
    let yearly = plan_cells.iter().find(|r| r[0] == "Yearly gold").unwrap();
    assert_eq!(yearly[3], "1 template");
    let link = select(&doc, "tr.product a")
        .into_iter()
        .find(|a| text(*a) == "1 template")
        .unwrap();
    assert_eq!(
        link.value().attr("href"),
        Some(&*format!(
            "/templates?integration={}",
            server.integration_id
        ))
    );
    server.stop().await;
}

/// Without an API key the page says where to add one instead of offering the button, and a
/// refresh posted anyway asks Stripe nothing and says the same.
#[tokio::test(flavor = "multi_thread")]
async fn without_an_api_key_the_page_says_where_to_add_one() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with(3).await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;

    let page = ui.get(&page_path(&server)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let doc = html(&page);
    assert!(!has_refresh_button(&doc), "{}", page.text);
    assert!(select(&doc, "form.refresh").is_empty());
    let note = select(&doc, "p.note a");
    assert_eq!(note.len(), 1, "{}", page.text);
    assert_eq!(text(note[0]), "Add an API key on the integration's page");
    assert_eq!(
        note[0].value().attr("href"),
        Some(&*format!("/integrations/{}", server.integration_id))
    );

    let after = refresh(&ui, &server).await;
    let (message, error) = flash(&after);
    assert!(error, "{message}");
    assert!(
        message.contains("has no Stripe API key")
            && message.contains("add an API key on the integration's page"),
        "{message}"
    );
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    assert_eq!(counts(&server), (0, 0));

    // The integration's page links here.
    let edit = ui
        .get(&format!("/integrations/{}", server.integration_id))
        .await;
    let doc = html(&edit);
    let links: Vec<_> = select(&doc, "a")
        .into_iter()
        .filter(|a| a.value().attr("href") == Some(&*page_path(&server)))
        .map(text)
        .collect();
    assert_eq!(links, ["Products and plans from Stripe →"]);
    server.stop().await;
}

/// A key without the permission to read prices: the refresh names the permission, and stores
/// nothing (the products read before are not half a catalog).
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_permission_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with(3).await;
    let server = serve(dir.path(), &fake, Some(KEY)).await;
    let ui = signed_in(&server).await;

    fake.fail_next("/v1/prices", 403, 1);
    let page = refresh(&ui, &server).await;
    let (message, error) = flash(&page);
    assert!(error, "{message}");
    assert!(
        message.contains("lacks the 'rak_plan_read' permission")
            && message.contains("Developers → API keys"),
        "{message}"
    );
    assert!(!message.contains(KEY), "{message}");
    assert_eq!(counts(&server), (0, 0));
    assert!(has_refresh_button(&html(&page)));

    // A key Stripe refuses says to replace it.
    fake.fail_next("/v1/products", 401, 1);
    let (message, error) = flash(&refresh(&ui, &server).await);
    assert!(
        error && message.contains("check the integration's API key"),
        "{message}"
    );
    server.stop().await;
}

/// A list page Stripe fails once (a 500) is asked again by the client's retry, and the
/// refresh completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_page_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with(120).await;
    let server = serve(dir.path(), &fake, Some(KEY)).await;
    let ui = signed_in(&server).await;

    fake.fail_next("/v1/prices", 500, 1);
    let (message, error) = flash(&refresh(&ui, &server).await);
    assert!(!error, "{message}");
    assert!(
        message.starts_with("Read 120 products and 120 plans"),
        "{message}"
    );
    // Two pages of prices, the first asked twice.
    assert_eq!(fake.count("/v1/prices"), 3);
    assert_eq!(counts(&server), (120, 120));
    server.stop().await;
}

/// Signed out: both routes lead to sign-in. Without the CSRF token, or with a wrong one, a
/// refresh is refused and asks Stripe nothing. An unknown integration (or page cursor) is 404.
#[tokio::test(flavor = "multi_thread")]
async fn routes_need_a_session_a_csrf_token_and_a_known_integration() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with(3).await;
    let server = serve(dir.path(), &fake, Some(KEY)).await;

    let stranger = crate::support::UiClient::new(&server);
    let answer = stranger.get(&page_path(&server)).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert!(answer.location().unwrap().starts_with("/login"));
    let answer = stranger
        .post_without_csrf(&refresh_path(&server), &[])
        .await;
    assert!(matches!(answer.status, 303 | 403), "{}", answer.status);

    let ui = signed_in(&server).await;
    for answer in [
        ui.post_without_csrf(&refresh_path(&server), &[]).await,
        ui.post_without_csrf(&refresh_path(&server), &[("csrf", "not-the-token")])
            .await,
    ] {
        assert_eq!(answer.status, 403, "{}", answer.text);
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    assert_eq!(counts(&server), (0, 0));

    let unknown = "int_0000000000000000";
    for page in [
        ui.get(&format!("/integrations/{unknown}/catalog")).await,
        ui.post(&format!("/integrations/{unknown}/catalog/refresh"), &[])
            .await,
        ui.get(&format!("{}?after=prod_nope", page_path(&server)))
            .await,
    ] {
        assert_eq!(page.status, 404, "{}", page.text);
        assert_eq!(texts(&html(&page), "h1"), ["Not found"]);
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    server.stop().await;
}

/// `catalog refresh` and `catalog list` on the real binary, against the fake Stripe.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_refreshes_and_lists_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with(130).await;
    let (id, _) = add_integration_cli(
        dir.path(),
        &[
            "--name",
            "shop",
            "--webhook-secret",
            SECRET,
            "--api-key",
            KEY,
        ],
    );
    let cli = |args: &[&str]| {
        let mut cmd = mmc(dir.path(), args);
        cmd.env("MMC_STRIPE__API_BASE", &fake.base_url);
        run(cmd)
    };

    let (ok, out, err) = cli(&["catalog", "list", &id]);
    assert!(ok, "{err}");
    assert!(
        out.contains("0 product(s), 0 plan(s)") && out.contains("catalog refresh"),
        "{out}"
    );

    let (ok, out, err) = cli(&["catalog", "refresh", &id]);
    assert!(ok, "{err}");
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        "Read 130 products and 130 plans from Stripe: 260 added, 0 unchanged."
    );
    assert!(
        out.contains("added product prod_cat_042  Product 042"),
        "{out}"
    );

    fake.change("products", "prod_cat_042", |p| p["name"] = "Gold".into());
    let (ok, out, err) = cli(&["catalog", "refresh", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("1 renamed (Product 042 → Gold)"), "{out}");
    assert!(
        out.contains("renamed product prod_cat_042  Product 042 → Gold"),
        "{out}"
    );

    // Every page of the list, products by name, each with its plan.
    let (ok, out, err) = cli(&["catalog", "list", &id]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("shop: 130 product(s), 130 plan(s)\n"),
        "{out}"
    );
    let products: Vec<&str> = out.lines().filter(|l| l.starts_with("prod_")).collect();
    assert_eq!(products.len(), 130, "{out}");
    assert!(
        products[0].starts_with("prod_cat_042  Gold  templates=0  fetched "),
        "{out}"
    );
    assert!(
        products[1].starts_with("prod_cat_001  Product 001"),
        "{out}"
    );
    let plans = out
        .lines()
        .filter(|l| l.starts_with("  price_cat_"))
        .count();
    assert_eq!(plans, 130);
    assert!(
        out.contains("  price_cat_001  Plan 001  interval=month  templates=0"),
        "{out}"
    );

    // Refusals: an unknown integration, and one without a key (Stripe is not asked).
    let (ok, _, err) = cli(&["catalog", "refresh", "int_0000000000000000"]);
    assert!(!ok && err.contains("no integration"), "{err}");
    let (other, _) = add_integration_cli(
        dir.path(),
        &["--name", "keyless", "--webhook-secret", SECRET],
    );
    let asked = fake.requests().len();
    let (ok, _, err) = cli(&["catalog", "refresh", &other]);
    assert!(
        !ok && err.contains("add an API key on the integration's page"),
        "{err}"
    );
    assert_eq!(fake.requests().len(), asked);
}

/// The subjects of the integration's deliveries, oldest first, once there are `n`.
async fn subjects(server: &TestServer, n: usize) -> Vec<String> {
    for _ in 0..500 {
        let conn = server.db();
        let mut stmt = conn
            .prepare("SELECT subject FROM deliveries WHERE integration_id = ?1 ORDER BY id")
            .unwrap();
        let found: Vec<String> = stmt
            .query_map([&server.integration_id], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} deliveries");
}

/// The server's own name memo takes a refresh's new names: the next email after a rename says
/// the new name, though the old one was remembered from the email before.
#[tokio::test(flavor = "multi_thread")]
async fn the_next_email_after_a_refresh_uses_the_new_names() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture's own T-shirt product and its $20.00 a month price, which invoice.paid names.
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, Some(KEY)).await;
    let app = App::new(server.config.clone()).unwrap();
    mailmycustomer::manage::templates::save(
        &app,
        TemplateInput {
            id: None,
            integration_id: None,
            trigger: TriggerKind::PaymentReceived,
            product_id: None,
            plan_id: None,
            subject: "{{ product.name }} / {{ plan.name }}".into(),
            format: Format::Html,
            body: "<p>Thank you.</p>".into(),
            text: None,
            enabled: true,
        },
    )
    .await
    .unwrap();
    server
        .deliver(distinct_invoice_paid("memo", 1))
        .await
        .assert_stored(false);
    assert_eq!(subjects(&server, 1).await, ["T-shirt / $20.00 / month"]);

    fake.change("products", "prod_QXg1hqf4jFNsqG", |p| {
        p["name"] = "T-shirt club".into()
    });
    fake.change("prices", "price_1PgafmB7WZ01zgkW6dKueIc5", |p| {
        p["nickname"] = "Club monthly".into()
    });
    let ui = signed_in(&server).await;
    let (message, _) = flash(&refresh(&ui, &server).await);
    assert!(
        message.contains("2 renamed (T-shirt → T-shirt club, $20.00 / month → Club monthly)"),
        "{message}"
    );
    let asked = fake.count("/v1/products/") + fake.count("/v1/prices/");
    server
        .deliver(distinct_invoice_paid("memo", 2))
        .await
        .assert_stored(false);
    assert_eq!(subjects(&server, 2).await[1], "T-shirt club / Club monthly");
    // From the catalog the refresh wrote, not from Stripe again.
    assert_eq!(
        fake.count("/v1/products/") + fake.count("/v1/prices/"),
        asked
    );
    server.stop().await;
}
