//! From a stored event to a rendered email (issue 3): for every Stripe fixture, current and older
//! API shapes, the outcome, the chosen template and the rendered email, checked against readable
//! snapshots in tests/snapshots/pipeline/. Lookups go to the fake Stripe API over real HTTP.
//! Run with UPDATE_SNAPSHOTS=1 to rewrite the snapshots, then review the diff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailmycustomer::db::deliveries::NewDelivery;
use mailmycustomer::db::integrations::{self, Integration, NewIntegration};
use mailmycustomer::db::templates::{self, TemplateInput};
use mailmycustomer::db::{self, Pool};
use mailmycustomer::pipeline::prepare::{Outcome, Preparer};
use mailmycustomer::stripe::api::StripeClient;
use mailmycustomer::templates::body::Format;
use mailmycustomer::trigger::TriggerKind;

use crate::fake_stripe::FakeStripe;
use crate::support::fixtures_dir;

const PRODUCT: &str = "prod_QXg1hqf4jFNsqG";
const PRICE: &str = "price_1PgafmB7WZ01zgkW6dKueIc5";
const ADDON_PRODUCT: &str = "prod_QXhA7kZp2cVbNm";
const CHARGE: &str = "ch_1PgafuB7WZ01zgkWXYmPNZs8";
const REFUND: &str = "re_1Pgc72B7WZ01zgkWqPvrRrPE";

pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub pool: Pool,
    pub fake: FakeStripe,
    pub integration: Integration,
    pub preparer: Preparer,
}

/// The shop's Stripe data in the fake API, and templates at every level of specificity.
pub async fn setup(api_key: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mmc.db");
    let mut conn = db::open(&db::Options::at(&path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let integration = integrations::insert(
        &conn,
        &NewIntegration {
            name: "Rosen Goods",
            webhook_secret: "whsec_x",
            api_key,
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap();
    let template =
        |trigger, product: Option<&str>, plan: Option<&str>, subject: &str, html: &str, enabled| {
            templates::save(
                &conn,
                &TemplateInput {
                    id: None,
                    integration_id: None,
                    trigger,
                    product_id: product.map(Into::into),
                    plan_id: plan.map(Into::into),
                    subject: subject.into(),
                    format: Format::Html,
                    body: html.into(),
                    text: None,
                    enabled,
                },
            )
            .unwrap();
        };
    template(
        TriggerKind::SubscriptionCreated,
        Some(PRODUCT),
        Some(PRICE),
        "Welcome to the {{ plan.name }} plan of {{ product.name }}",
        "<p>Hi {{ customer.name }}, {{ amount }} per {{ plan.interval }}, next bill {{ renewal_date }}.</p>",
        true,
    );
    template(
        TriggerKind::SubscriptionCreated,
        Some(ADDON_PRODUCT),
        None,
        "Your gift wrap is on",
        "<p>{{ product.name }}</p>",
        true,
    );
    template(
        TriggerKind::PaymentReceived,
        Some(PRODUCT),
        None,
        "{{ product.name }} payment: {{ amount }}",
        "<p>Thanks {{ name }}! <a href=\"{{ invoice.url }}\">Invoice</a></p>",
        true,
    );
    template(
        TriggerKind::RenewalUpcoming,
        Some(PRODUCT),
        None,
        "disabled: must never be chosen",
        "<p>x</p>",
        false,
    );

    let fake = FakeStripe::start().await;
    populate(&fake);

    let pool = db::pool(&db::Options::at(&path).unwrap(), 2).unwrap();
    let preparer = Preparer::new(
        pool.clone(),
        StripeClient::new(&fake.base_url).with_retry_policy(1, Duration::from_millis(5)),
    );
    Setup {
        _dir: dir,
        pool,
        fake,
        integration,
        preparer,
    }
}

/// The shop's customer, products, prices, charge and refund, as the fixtures name them.
pub fn populate(fake: &FakeStripe) {
    fake.customer(
        "cus_QXg1o8vcGmoR32",
        Some("jenny.rosen@example.com"),
        Some("Jenny Rosen"),
    );
    fake.product(PRODUCT, "T-shirt club");
    fake.product(ADDON_PRODUCT, "Gift wrap");
    fake.price(PRICE, PRODUCT, Some("Monthly"), Some("month"), 2000, "usd");
    fake.price(
        "price_1PgbJpB7WZ01zgkWq2Lr8YtN",
        PRODUCT,
        None,
        Some("month"),
        2000,
        "jpy",
    );
    let mut charge = fake.example("charges");
    charge["customer"] = "cus_QXg1o8vcGmoR32".into();
    charge["billing_details"]["email"] = "jenny.rosen@example.com".into();
    charge["billing_details"]["name"] = "Jenny Rosen".into();
    charge["receipt_url"] =
        "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xUGdhZlRC".into();
    fake.put("charges", CHARGE, charge);
    let mut refund = fake.example("refunds");
    refund["charge"] = CHARGE.into();
    refund["amount"] = 2000.into();
    refund["status"] = "succeeded".into();
    fake.put("refunds", REFUND, refund);
}

impl Setup {
    pub fn templates(&self) -> Vec<templates::Template> {
        templates::list(&self.pool.get().unwrap()).unwrap()
    }

    /// Prepares `payload`, which must come out as a delivery row.
    async fn delivery(&self, integration: &Integration, payload: &str) -> Box<NewDelivery> {
        match self
            .preparer
            .prepare(integration, &self.templates(), None, payload)
            .await
        {
            Outcome::Delivery(d) => d,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
}

fn describe(outcome: &Outcome, scopes: &HashMap<i64, String>) -> String {
    match outcome {
        Outcome::Ignore(reason) => format!("ignored: {reason}\n"),
        Outcome::Retry(reason) => format!("retry: {reason}\n"),
        Outcome::Disconnect(reason) => format!("disconnect: {reason}\n"),
        Outcome::Delivery(d) => describe_delivery(d, scopes),
    }
}

fn describe_delivery(d: &NewDelivery, scopes: &HashMap<i64, String>) -> String {
    let template = d
        .template_id
        .map(|id| format!("{id} ({})", scopes[&id]))
        .unwrap_or_else(|| "none".into());
    let mut out = format!(
        "status: {:?}\ntrigger: {}\nbusiness key: {}\ntemplate: {template}\nproduct: {}\nplan: {}\nto: {} <{}>\n",
        d.status,
        d.trigger,
        d.business_key,
        d.product_id.as_deref().unwrap_or("-"),
        d.plan_id.as_deref().unwrap_or("-"),
        d.recipient_name.as_deref().unwrap_or("-"),
        d.recipient.as_deref().unwrap_or("-"),
    );
    if let Some(note) = &d.note {
        out.push_str(&format!("note: {note}\n"));
    }
    if let Some(subject) = &d.subject {
        out.push_str(&format!(
            "subject: {subject}\n--- text ---\n{}\n",
            d.text.as_deref().unwrap_or("").trim_end()
        ));
    }
    out
}

fn check_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/pipeline")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it)"
    );
}

fn fixture_files() -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for (label, dir) in [
        ("current", fixtures_dir().join("events")),
        ("older", fixtures_dir().join("../older")),
    ] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                files.push((format!("{label}__{stem}"), path));
            }
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_becomes_the_expected_email() {
    let s = setup(Some("rk_test_51Rosen00000000000000")).await;
    let scopes: HashMap<i64, String> = db::call(&s.pool, templates::list)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.scope()))
        .collect();
    let files = fixture_files();
    assert!(files.len() >= 29, "{}", files.len());
    let mut queued = 0;
    for (name, path) in files {
        let payload = std::fs::read_to_string(&path).unwrap();
        let outcome = s
            .preparer
            .prepare(&s.integration, &s.templates(), None, &payload)
            .await;
        if let Outcome::Delivery(d) = &outcome {
            queued += usize::from(d.subject.is_some());
        }
        check_snapshot(
            &name,
            &format!("event: {name}\n{}", describe(&outcome, &scopes)),
        );
    }
    assert!(queued >= 20, "only {queued} fixtures produced an email");
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_fetched_once_then_come_from_the_catalog() {
    let s = setup(Some("rk_test_51Rosen00000000000000")).await;
    let payload =
        std::fs::read_to_string(fixtures_dir().join("events/customer.subscription.created.json"))
            .unwrap();
    for _ in 0..3 {
        let d = s.delivery(&s.integration, &payload).await;
        assert_eq!(
            d.subject.as_deref(),
            Some("Welcome to the Monthly plan of T-shirt club")
        );
    }
    assert_eq!(s.fake.count("/v1/products/"), 1);
    assert_eq!(s.fake.count("/v1/prices/"), 1);
    // The customer's email is not kept between events: it is asked each time it is needed.
    assert_eq!(s.fake.count("/v1/customers/"), 3);
    // An invoice that carries the customer's email needs no customer lookup at all.
    let paid = std::fs::read_to_string(fixtures_dir().join("events/invoice.paid.json")).unwrap();
    s.preparer
        .prepare(&s.integration, &s.templates(), None, &paid)
        .await;
    assert_eq!(s.fake.count("/v1/customers/"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn refund_events_and_charge_refunded_share_one_business_key() {
    let s = setup(Some("rk_test_51Rosen00000000000000")).await;
    let mut keys = Vec::new();
    for file in [
        "refund.created.json",
        "refund.updated.json",
        "charge.refunded.json",
    ] {
        let payload = std::fs::read_to_string(fixtures_dir().join("events").join(file)).unwrap();
        let d = s.delivery(&s.integration, &payload).await;
        keys.push(d.business_key.clone());
    }
    assert_eq!(keys, vec![format!("refund:{REFUND}"); 3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lookup_failures_are_retried_or_recorded_with_the_fix() {
    let s = setup(Some("rk_test_51Rosen00000000000000")).await;
    let payload =
        std::fs::read_to_string(fixtures_dir().join("events/customer.subscription.created.json"))
            .unwrap();

    // One retry in the test policy: two requests per lookup.
    s.fake.fail_next("/v1/customers/", 500, 2);
    let outcome = s
        .preparer
        .prepare(&s.integration, &s.templates(), None, &payload)
        .await;
    assert!(
        matches!(&outcome, Outcome::Retry(r) if r.contains("500")),
        "{outcome:?}"
    );

    s.fake.fail_next("/v1/customers/", 429, 2);
    let outcome = s
        .preparer
        .prepare(&s.integration, &s.templates(), None, &payload)
        .await;
    assert!(matches!(&outcome, Outcome::Retry(_)), "{outcome:?}");

    s.fake.fail_next("/v1/customers/", 403, 1);
    let d = s.delivery(&s.integration, &payload).await;
    assert_eq!(d.status, mailmycustomer::db::deliveries::Status::Failed);
    assert!(
        d.note.as_deref().unwrap().contains("rak_customer_read"),
        "{:?}",
        d.note
    );

    s.fake.fail_next("/v1/customers/", 401, 1);
    let d = s.delivery(&s.integration, &payload).await;
    assert!(
        d.note.as_deref().unwrap().contains("API key"),
        "{:?}",
        d.note
    );

    s.fake.deleted_customer("cus_QXg1o8vcGmoR32");
    let d = s.delivery(&s.integration, &payload).await;
    assert!(
        d.note.as_deref().unwrap().contains("deleted"),
        "{:?}",
        d.note
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_api_key_only_what_the_payload_says_is_used() {
    let s = setup(None).await;
    let invoice = std::fs::read_to_string(fixtures_dir().join("events/invoice.paid.json")).unwrap();
    let d = s.delivery(&s.integration, &invoice).await;
    assert_eq!(d.recipient.as_deref(), Some("jenny.rosen@example.com"));
    // No product name without a key: the product-specific template still matches by id.
    assert_eq!(d.subject.as_deref(), Some("payment: $20.00"));

    let subscription =
        std::fs::read_to_string(fixtures_dir().join("events/customer.subscription.created.json"))
            .unwrap();
    let d = s.delivery(&s.integration, &subscription).await;
    assert_eq!(d.status, mailmycustomer::db::deliveries::Status::Failed);
    assert!(
        d.note.as_deref().unwrap().contains("no Stripe API key"),
        "{:?}",
        d.note
    );
    assert!(s.fake.requests().is_empty(), "no key, no Stripe calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_integrations_send_the_stripe_account_header() {
    let s = setup(Some("rk_test_51Rosen00000000000000")).await;
    let connect = Integration {
        stripe_account: Some("acct_1PgafTB7WZ01zgkW".into()),
        ..s.integration.clone()
    };
    let payload = std::fs::read_to_string(
        fixtures_dir().join("events/customer.subscription.created.connect.json"),
    )
    .unwrap();
    let d = s.delivery(&connect, &payload).await;
    assert!(d.subject.is_some(), "{d:?}");
    let requests = s.fake.requests();
    assert!(!requests.is_empty());
    assert!(requests
        .iter()
        .all(|r| r.stripe_account.as_deref() == Some("acct_1PgafTB7WZ01zgkW")));

    let deauthorized = std::fs::read_to_string(
        fixtures_dir().join("events/account.application.deauthorized.json"),
    )
    .unwrap();
    let account: serde_json::Value = serde_json::from_str(&deauthorized).unwrap();
    let mine = Integration {
        stripe_account: account["account"].as_str().map(Into::into),
        ..s.integration.clone()
    };
    assert!(matches!(
        s.preparer
            .prepare(&mine, &s.templates(), None, &deauthorized)
            .await,
        Outcome::Disconnect(_)
    ));
    assert!(matches!(
        s.preparer
            .prepare(&s.integration, &s.templates(), None, &deauthorized)
            .await,
        Outcome::Ignore(_)
    ));
}

/// Guards the processor's hot query: a backlog of pending events must not be sorted per batch.
#[test]
fn due_events_are_read_from_partial_indexes_without_sorting() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(
        &db::Options::at(&dir.path().join("q.db"))
            .unwrap()
            .with_busy_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    db::migrate(&mut conn).unwrap();
    let plan = |sql: &str| -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .join("; ")
    };
    let fresh = plan("SELECT * FROM events WHERE processing = 'pending' AND process_after IS NULL ORDER BY id LIMIT 64");
    assert!(
        fresh.contains("USING INDEX events_fresh") && !fresh.contains("TEMP B-TREE"),
        "{fresh}"
    );
    let postponed = plan("SELECT * FROM events WHERE processing = 'pending' AND process_after <= 5 ORDER BY process_after, id LIMIT 64");
    assert!(
        postponed.contains("USING INDEX events_postponed") && !postponed.contains("TEMP B-TREE"),
        "{postponed}"
    );
}
