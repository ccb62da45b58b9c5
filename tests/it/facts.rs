//! Every email carries the facts it promises (issue 8, items 1–4), from payloads shaped as Stripe
//! sends them (ids, not expanded objects), in the 2024-era and the current (basil and later) API
//! shapes, with the fake Stripe serving the objects behind the ids; and customer data reaches
//! the delivery without control characters (issue 9, hygiene).

use std::time::Duration;

use mail_parser::MessageParser;
use mailmycustomer::db::deliveries::{NewDelivery, Status};
use mailmycustomer::db::integrations::{self, Integration, NewIntegration};
use mailmycustomer::db::templates::{self, TemplateInput};
use mailmycustomer::db::{self, catalog, Pool};
use mailmycustomer::pipeline::prepare::{Outcome, Preparer};
use mailmycustomer::stripe::api::StripeClient;
use mailmycustomer::templates::body::Format;
use mailmycustomer::templates::context::variable_names;
use mailmycustomer::trigger::TriggerKind;
use serde_json::{json, Value};

use crate::fake_stripe::FakeStripe;
use crate::sink::Sink;
use crate::support::{fixtures_dir, relay_to, test_config, TestServer, SECRET};

const KEY: &str = "rk_test_51Rosen00000000000000";
const CUSTOMER: &str = "cus_QXg1o8vcGmoR32";
const PRODUCT: &str = "prod_QXg1hqf4jFNsqG";
const PRICE: &str = "price_1PgafmB7WZ01zgkW6dKueIc5";
const INVOICE: &str = "in_1Pgc6tB7WZ01zgkWu9fdqL6I";
/// The charge and payment intent the fixtures' refunds refund.
const CHARGE: &str = "ch_1PgafuB7WZ01zgkWXYmPNZs8";
const CHARGE_PI: &str = "pi_1PgafuB7WZ01zgkWbC3rD9Lx";
/// The charge and payment intent that tried to pay `INVOICE`, as the older invoice names them.
const INVOICE_CHARGE: &str = "ch_3Pgc6tB7WZ01zgkW1Hq2Zp0A";
const INVOICE_PI: &str = "pi_3Pgc6tB7WZ01zgkW1kWb8nRf";
const DECLINED: &str = "Your card was declined.";

/// The API shape of a payload, and the folder its fixtures are in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// 2024-era versions (before 2025-03-31.basil): `tests/fixtures/older/`.
    Older,
    /// 2025-03-31.basil and later: `tests/fixtures/stripe/events/`.
    Current,
}

impl Shape {
    fn payload(self, name: &str) -> Value {
        let dir = match self {
            Shape::Older => fixtures_dir().join("../older"),
            Shape::Current => fixtures_dir().join("events"),
        };
        let path = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        serde_json::from_str(&text).unwrap()
    }
}

/// What the refunded charge paid, in the fake's data.
#[derive(Clone, Copy, PartialEq)]
enum Refunded {
    /// `REFUNDED_INVOICE`, through the payment intent `CHARGE_PI` (and named by the charge's
    /// `invoice` in the older shape).
    Invoice,
    /// Nothing: a one-off payment.
    OneOff,
}

/// The invoice the refunded charge paid: another month of the T-shirt club.
const REFUNDED_INVOICE: &str = "in_1PgcR9B7WZ01zgkWe3Zq7TnA";

struct World {
    _dir: tempfile::TempDir,
    pool: Pool,
    fake: FakeStripe,
    integration: Integration,
    preparer: Preparer,
}

/// A shop whose Stripe data, in `shape`, is what the fixtures name: Jenny Rosen, the T-shirt
/// club at $20.00 a month, invoice `INVOICE` (paid, see [`World::attempt`]) and a charge `CHARGE`
/// that was refunded.
async fn world(shape: Shape, refunded: Refunded, api_key: Option<&str>) -> World {
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
    let fake = FakeStripe::start().await;
    stock(&fake, shape, refunded);

    let pool = db::pool(&db::Options::at(&path).unwrap(), 2).unwrap();
    let preparer = Preparer::new(
        pool.clone(),
        StripeClient::new(&fake.base_url).with_retry_policy(1, Duration::from_millis(5)),
    );
    World {
        _dir: dir,
        pool,
        fake,
        integration,
        preparer,
    }
}

/// The shop's Stripe data in the fake, as [`world`] describes it.
fn stock(fake: &FakeStripe, shape: Shape, refunded: Refunded) {
    crate::pipeline::populate(fake);
    // The invoices behind the ids, in the shape the account's API version answers with.
    let invoice = Shape::payload(shape, "invoice.paid")["data"]["object"].clone();
    fake.put("invoices", INVOICE, invoice.clone());
    fake.put("invoices", REFUNDED_INVOICE, invoice);
    // Current invoices name no payment: their invoice payment names the payment intent.
    fake.invoice_payment("inpay_1Pgc6tB7WZ01zgkW", INVOICE, INVOICE_PI);

    let mut charge = fake.example("charges");
    charge["customer"] = CUSTOMER.into();
    charge["billing_details"]["email"] = "jenny.rosen@example.com".into();
    charge["receipt_url"] =
        "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xUGdhZlRC".into();
    charge["payment_intent"] = CHARGE_PI.into();
    fake.payment_intent(CHARGE_PI, CUSTOMER, CHARGE, None);
    match refunded {
        Refunded::Invoice => {
            if shape == Shape::Older {
                charge["invoice"] = REFUNDED_INVOICE.into();
            }
            fake.invoice_payment("inpay_1PgcR9B7WZ01zgkW", REFUNDED_INVOICE, CHARGE_PI);
        }
        Refunded::OneOff => {
            if shape == Shape::Older {
                charge["invoice"] = Value::Null;
            }
        }
    }
    fake.put("charges", CHARGE, charge);
    attempt(fake, false);
}

/// The attempt to pay `INVOICE`: its charge and payment intent (one intent serves every retry
/// of an invoice), declined or paid.
fn attempt(fake: &FakeStripe, declined: bool) {
    let mut charge = fake.example("charges");
    charge["customer"] = CUSTOMER.into();
    charge["payment_intent"] = INVOICE_PI.into();
    charge["receipt_url"] = "https://pay.stripe.com/receipts/invoices/CAcaFwoVYWNjdF8xUGdh".into();
    if declined {
        charge["paid"] = false.into();
        charge["status"] = "failed".into();
        charge["failure_code"] = "card_declined".into();
        charge["failure_message"] = DECLINED.into();
    }
    fake.put("charges", INVOICE_CHARGE, charge);
    let failure = declined.then_some(DECLINED);
    fake.payment_intent(INVOICE_PI, CUSTOMER, INVOICE_CHARGE, failure);
}

impl World {
    fn attempt(&self, declined: bool) {
        attempt(&self.fake, declined);
    }

    fn template(
        &self,
        trigger: TriggerKind,
        scope: (Option<&str>, Option<&str>),
        subject: &str,
        text: Option<String>,
    ) {
        templates::save(
            &self.pool.get().unwrap(),
            &TemplateInput {
                id: None,
                integration_id: None,
                trigger,
                product_id: scope.0.map(Into::into),
                plan_id: scope.1.map(Into::into),
                subject: subject.into(),
                format: Format::Html,
                body: "<p>{{ customer.name }}</p>".into(),
                text,
                enabled: true,
            },
        )
        .unwrap();
    }

    async fn prepare_as(&self, integration: &Integration, payload: &Value) -> Outcome {
        let templates = db::call(&self.pool, templates::list).await.unwrap();
        self.preparer
            .prepare(integration, &templates, None, &payload.to_string())
            .await
    }

    async fn prepare(&self, payload: &Value) -> Outcome {
        self.prepare_as(&self.integration, payload).await
    }

    /// Prepares `payload`, which must come out as a delivery row.
    async fn delivery(&self, payload: &Value) -> Box<NewDelivery> {
        match self.prepare(payload).await {
            Outcome::Delivery(d) => d,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
}

/// A template printing every variable its trigger documents, one `name=[value]` per line.
fn probe(kind: TriggerKind) -> String {
    variable_names(kind)
        .iter()
        .map(|name| format!("{name}=[{{{{ {name} }}}}]\n"))
        .collect()
}

/// The variables the probe printed empty.
fn empty_variables(kind: TriggerKind, text: &str) -> Vec<String> {
    let names = variable_names(kind);
    let mut empty = Vec::new();
    for name in &names {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}=[")))
            .unwrap_or_else(|| panic!("{name} not printed in:\n{text}"));
        if line.ends_with("=[]") {
            empty.push(name.clone());
        }
    }
    empty
}

/// Issue 8, item 3: for each trigger, in both shapes, every variable the README promises is
/// filled; the only empty ones are those Stripe has no value for, each listed with its reason.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_variable_is_filled_from_unexpanded_payloads() {
    use TriggerKind::*;
    // (fixture, trigger, variables Stripe has no value for in that scenario)
    let cases: &[(&str, TriggerKind, &[&str])] = &[
        // The fixture's subscription has no trial.
        (
            "customer.subscription.created",
            SubscriptionCreated,
            &["trial_end"],
        ),
        ("customer.subscription.deleted", SubscriptionCancelled, &[]),
        ("customer.subscription.trial_will_end", TrialEnding, &[]),
        ("invoice.payment_failed", PaymentFailed, &[]),
        ("invoice.upcoming", RenewalUpcoming, &[]),
        ("invoice.paid", PaymentReceived, &[]),
        ("charge.refunded", RefundCompleted, &[]),
    ];
    let current_only: &[(&str, TriggerKind, &[&str])] = &[("refund.created", RefundCompleted, &[])];
    let older_only: &[(&str, TriggerKind, &[&str])] = &[
        ("charge.refund.updated", RefundCompleted, &[]),
        // A one-off payment: no invoice, no product, no plan.
        (
            "charge.succeeded.one_off",
            PaymentReceived,
            &[
                "invoice.url",
                "invoice.pdf",
                "product.id",
                "product.name",
                "plan.id",
                "plan.name",
                "plan.interval",
            ],
        ),
    ];
    let mut checked = 0;
    for shape in [Shape::Current, Shape::Older] {
        let w = world(shape, Refunded::Invoice, Some(KEY)).await;
        for kind in TriggerKind::ALL {
            w.template(kind, (None, None), "probe", Some(probe(kind)));
        }
        let extra = match shape {
            Shape::Older => older_only,
            Shape::Current => current_only,
        };
        for (name, kind, may_be_empty) in cases.iter().chain(extra) {
            let mut payload = shape.payload(name);
            if shape == Shape::Older && *name == "charge.refunded" {
                // The older fixture's charge was a one-off; here it paid an invoice.
                payload["data"]["object"]["invoice"] = REFUNDED_INVOICE.into();
            }
            w.attempt(*kind == PaymentFailed);
            let d = w.delivery(&payload).await;
            assert_eq!(d.status, Status::Queued, "{shape:?} {name}: {:?}", d.note);
            assert_eq!(d.trigger, *kind, "{shape:?} {name}");
            let text = d.text.as_deref().unwrap();
            let mut empty = empty_variables(*kind, text);
            let mut expected = may_be_empty.to_vec();
            empty.sort();
            expected.sort();
            assert_eq!(
                empty, expected,
                "{shape:?} {name}: unexpectedly empty variables; the email said:\n{text}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 17);
}

/// Issue 8, item 1: a refund reaches the product and plan of the invoice its charge paid, so a
/// product- and plan-specific template is chosen; a one-off charge keeps "any product".
#[tokio::test(flavor = "multi_thread")]
async fn refunds_choose_the_template_of_the_refunded_product() {
    let subject = "Refund for {{ product.name }} ({{ plan.name }}): {{ refund.amount }}";
    for shape in [Shape::Current, Shape::Older] {
        let w = world(shape, Refunded::Invoice, Some(KEY)).await;
        w.template(
            TriggerKind::RefundCompleted,
            (Some(PRODUCT), Some(PRICE)),
            subject,
            None,
        );
        let mut events = match shape {
            Shape::Older => vec![shape.payload("charge.refund.updated")],
            Shape::Current => vec![shape.payload("refund.created")],
        };
        let mut refunded = shape.payload("charge.refunded");
        if shape == Shape::Older {
            refunded["data"]["object"]["invoice"] = REFUNDED_INVOICE.into();
        }
        events.push(refunded);
        for payload in events {
            let d = w.delivery(&payload).await;
            let what = format!("{shape:?} {}", payload["type"]);
            assert_eq!(d.product_id.as_deref(), Some(PRODUCT), "{what}: {d:?}");
            assert_eq!(d.plan_id.as_deref(), Some(PRICE), "{what}");
            assert!(
                d.subject
                    .as_deref()
                    .unwrap()
                    .starts_with("Refund for T-shirt club (Monthly): "),
                "{what}: {:?}",
                d.subject
            );
        }
        // The older charge names its invoice: no invoice payment is asked for.
        let asked = w.fake.count("/v1/invoice_payments");
        match shape {
            Shape::Older => assert_eq!(asked, 0),
            Shape::Current => assert_eq!(asked, 2),
        }
        assert_eq!(w.fake.count(&format!("/v1/invoices/{REFUNDED_INVOICE}")), 2);

        let one_off = world(shape, Refunded::OneOff, Some(KEY)).await;
        one_off.template(
            TriggerKind::RefundCompleted,
            (Some(PRODUCT), Some(PRICE)),
            subject,
            None,
        );
        let name = match shape {
            Shape::Older => "charge.refund.updated",
            Shape::Current => "refund.created",
        };
        let d = one_off.delivery(&shape.payload(name)).await;
        assert_eq!(d.status, Status::Queued, "{d:?}");
        assert_eq!(d.product_id, None, "{shape:?}");
        assert!(
            d.subject.as_deref().unwrap().starts_with("Your refund of"),
            "the built-in any-product template: {:?}",
            d.subject
        );
        assert_eq!(one_off.fake.count("/v1/invoices/"), 0);
    }
}

/// Issue 8, item 1: the new lookups fail like the others: a transient failure postpones the
/// event, a missing permission fails the email with the permission's name.
#[tokio::test(flavor = "multi_thread")]
async fn refund_invoice_lookup_failures_are_retried_or_name_the_permission() {
    let w = world(Shape::Current, Refunded::Invoice, Some(KEY)).await;
    let refund = Shape::Current.payload("refund.created");
    w.fake.fail_next("/v1/invoice_payments", 503, 2);
    let outcome = w.prepare(&refund).await;
    assert!(
        matches!(&outcome, Outcome::Retry(r) if r.contains("503")),
        "{outcome:?}"
    );
    w.fake.fail_next("/v1/invoice_payments", 403, 1);
    let d = w.delivery(&refund).await;
    assert_eq!(d.status, Status::Failed);
    let note = d.note.as_deref().unwrap();
    assert!(
        note.contains("rak_invoice_read") && note.contains("refund"),
        "{note}"
    );
    w.fake.fail_next("/v1/invoices/", 403, 1);
    let d = w.delivery(&refund).await;
    assert!(
        d.note.as_deref().unwrap().contains("rak_invoice_read"),
        "{d:?}"
    );
    // Without a key there is nothing to ask: the refund keeps "any product".
    let none = world(Shape::Older, Refunded::Invoice, None).await;
    let mut refunded = Shape::Older.payload("charge.refunded");
    refunded["data"]["object"]["invoice"] = REFUNDED_INVOICE.into();
    let d = none.delivery(&refunded).await;
    assert_eq!((d.status, d.product_id.as_deref()), (Status::Queued, None));
    assert!(none.fake.requests().is_empty());
}

/// Issue 8, item 2: the decline message comes from the charge the older invoice names, or from
/// the payment intent of the current invoice's payment; when it cannot be read the email goes
/// without it and the delivery's note says why.
#[tokio::test(flavor = "multi_thread")]
async fn failure_reason_is_looked_up_when_the_payload_lacks_it() {
    let said = format!("but the payment failed: {DECLINED}");
    for shape in [Shape::Current, Shape::Older] {
        let w = world(shape, Refunded::OneOff, Some(KEY)).await;
        w.attempt(true);
        let failed = shape.payload("invoice.payment_failed");
        let d = w.delivery(&failed).await;
        assert_eq!(d.status, Status::Queued, "{d:?}");
        assert!(
            d.text.as_deref().unwrap().contains(&said),
            "{shape:?}: {:?}",
            d.text
        );
        assert_eq!(d.note, None);
        match shape {
            Shape::Older => {
                assert_eq!(w.fake.count(&format!("/v1/charges/{INVOICE_CHARGE}")), 1);
                assert_eq!(w.fake.count("/v1/invoice_payments"), 0);
            }
            Shape::Current => {
                let asked = w.fake.requests();
                let payments: Vec<_> = asked
                    .iter()
                    .filter(|r| r.path == "/v1/invoice_payments")
                    .collect();
                assert_eq!(payments.len(), 1);
                assert_eq!(payments[0].param("invoice").as_deref(), Some(INVOICE));
                assert_eq!(
                    w.fake.count(&format!("/v1/payment_intents/{INVOICE_PI}")),
                    1
                );
            }
        }
    }

    let w = world(Shape::Current, Refunded::OneOff, Some(KEY)).await;
    w.attempt(true);
    let failed = Shape::Current.payload("invoice.payment_failed");
    // A key without the permission: the email goes, without the reason, and says why.
    w.fake.fail_next("/v1/payment_intents/", 403, 1);
    let d = w.delivery(&failed).await;
    assert_eq!(d.status, Status::Queued, "{d:?}");
    assert!(
        d.text
            .as_deref()
            .unwrap()
            .contains("but the payment failed.\n"),
        "{:?}",
        d.text
    );
    let note = d.note.as_deref().unwrap();
    assert!(
        note.contains("decline reason") && note.contains("rak_payment_intent_read"),
        "{note}"
    );
    // A transient failure postpones the event like any lookup.
    w.fake.fail_next("/v1/invoice_payments", 500, 2);
    let outcome = w.prepare(&failed).await;
    assert!(
        matches!(&outcome, Outcome::Retry(r) if r.contains("500")),
        "{outcome:?}"
    );
    // A payment intent that carries no message: sent without a reason, nothing noted.
    w.attempt(false);
    let d = w.delivery(&failed).await;
    assert_eq!((d.status, d.note.as_deref()), (Status::Queued, None));
    assert!(d
        .text
        .as_deref()
        .unwrap()
        .contains("but the payment failed.\n"));
}

/// Issue 8, item 4: product and price events update the catalog and the memo, so the next email
/// says the new name; a stale event does not undo a newer name; a deleted object is forgotten.
#[tokio::test(flavor = "multi_thread")]
async fn product_and_price_events_keep_names_current() {
    let w = world(Shape::Current, Refunded::OneOff, Some(KEY)).await;
    w.template(
        TriggerKind::PaymentReceived,
        (None, None),
        "{{ product.name }} / {{ plan.name }}",
        None,
    );
    let paid = Shape::Current.payload("invoice.paid");
    let subject = |d: Box<NewDelivery>| d.subject.unwrap();
    assert_eq!(subject(w.delivery(&paid).await), "T-shirt club / Monthly");

    let mut product = json!({"id": "evt_1", "object": "event", "type": "product.updated",
        "created": 4_000_000_000i64, "data": {"object": w.fake.example("products")}});
    product["data"]["object"]["id"] = PRODUCT.into();
    product["data"]["object"]["name"] = "Tee\r\nclub\u{1b}[2J".into();
    let outcome = w.prepare(&product).await;
    assert!(
        matches!(&outcome, Outcome::Ignore(r) if r.contains("catalog is updated")),
        "{outcome:?}"
    );
    let mut price = json!({"id": "evt_2", "object": "event", "type": "price.updated",
        "created": 4_000_000_000i64, "data": {"object": w.fake.example("prices")}});
    price["data"]["object"]["id"] = PRICE.into();
    price["data"]["object"]["product"] = PRODUCT.into();
    price["data"]["object"]["nickname"] = "Monthly (2027)".into();
    assert!(matches!(w.prepare(&price).await, Outcome::Ignore(_)));

    let names = |w: &World| w.fake.count("/v1/products/") + w.fake.count("/v1/prices/");
    let before = names(&w);
    assert_eq!(
        subject(w.delivery(&paid).await),
        "Tee club / Monthly (2027)"
    );
    assert_eq!(names(&w), before, "names come from the memo");
    let conn = w.pool.get().unwrap();
    assert_eq!(
        catalog::product_name(&conn, &w.integration.id, PRODUCT)
            .unwrap()
            .as_deref(),
        Some("Tee club")
    );

    // An update created before the name the catalog holds arrived late: it is not applied.
    product["created"] = 3_999_999_999i64.into();
    product["data"]["object"]["name"] = "Old name".into();
    let outcome = w.prepare(&product).await;
    assert!(
        matches!(&outcome, Outcome::Ignore(r) if r.contains("older")),
        "{outcome:?}"
    );
    assert_eq!(
        subject(w.delivery(&paid).await),
        "Tee club / Monthly (2027)"
    );

    // Deleted: forgotten, so the next email asks Stripe again.
    product["type"] = "product.deleted".into();
    product["data"]["object"]["deleted"] = true.into();
    assert!(matches!(w.prepare(&product).await, Outcome::Ignore(_)));
    assert_eq!(
        catalog::product_name(&conn, &w.integration.id, PRODUCT).unwrap(),
        None
    );
    let asked = w.fake.count("/v1/products/");
    assert_eq!(
        subject(w.delivery(&paid).await),
        "T-shirt club / Monthly (2027)"
    );
    assert_eq!(w.fake.count("/v1/products/"), asked + 1);
}

/// Issue 8, item 4: a name not found while the integration had no API key is looked up once a
/// key is added, in the same process.
#[tokio::test(flavor = "multi_thread")]
async fn names_missed_without_a_key_are_looked_up_once_a_key_is_added() {
    let w = world(Shape::Current, Refunded::OneOff, None).await;
    w.template(
        TriggerKind::PaymentReceived,
        (None, None),
        "[{{ product.name }}] [{{ plan.name }}]",
        None,
    );
    let paid = Shape::Current.payload("invoice.paid");
    assert_eq!(w.delivery(&paid).await.subject.as_deref(), Some("[] []"));
    let keyed = Integration {
        api_key: Some(KEY.into()),
        ..w.integration.clone()
    };
    let d = match w.prepare_as(&keyed, &paid).await {
        Outcome::Delivery(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(d.subject.as_deref(), Some("[T-shirt club] [Monthly]"));
}

/// Issue 9, hygiene: names, email addresses and subjects lose their control characters when the
/// facts are built, whether they came in the payload or from a lookup.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_never_reach_a_delivery() {
    let w = world(Shape::Current, Refunded::OneOff, Some(KEY)).await;
    w.template(
        TriggerKind::PaymentReceived,
        (None, None),
        "Thanks {{ name }} for {{ product.name }}",
        None,
    );
    w.fake.product(
        PRODUCT,
        "T-shirt\u{1b}]8;;https://evil.example\u{7}\r\nclub",
    );
    let mut paid = Shape::Current.payload("invoice.paid");
    paid["data"]["object"]["customer_name"] = "Jenny\r\nBcc: all@example.com\u{0}\tRosen".into();
    let d = w.delivery(&paid).await;
    assert_eq!(
        d.recipient_name.as_deref(),
        Some("Jenny Bcc: all@example.com Rosen")
    );
    assert_eq!(
        d.subject.as_deref(),
        Some("Thanks Jenny Bcc: all@example.com Rosen for T-shirt club")
    );

    // From a lookup: the customer's name and email in Stripe.
    w.fake.customer(
        CUSTOMER,
        Some("jenny.rosen@example.com\u{7f}"),
        Some("\u{1b}[31mJenny\u{202E}"),
    );
    let created = Shape::Current.payload("customer.subscription.created");
    let d = w.delivery(&created).await;
    assert_eq!(d.recipient.as_deref(), Some("jenny.rosen@example.com"));
    assert_eq!(d.recipient_name.as_deref(), Some("Jenny"));
    for text in [
        d.subject.as_deref(),
        d.recipient_name.as_deref(),
        d.recipient.as_deref(),
    ] {
        assert!(!text.unwrap().chars().any(char::is_control), "{text:?}");
    }

    // An address that held a line break is no address at all.
    w.fake.customer(
        CUSTOMER,
        Some("jenny.rosen@example.com\r\nBcc: all@example.com"),
        None,
    );
    let d = w.delivery(&created).await;
    assert_eq!(d.status, Status::Failed, "{d:?}");
    assert_eq!(d.recipient, None);
}

/// Issue 8, items 1, 2 and 4 end to end: signed webhooks over HTTP to the server, emails out
/// through smtp-sink. A refund uses the refunded product's template, a failed payment says why,
/// and a renamed product is named anew.
#[tokio::test(flavor = "multi_thread")]
async fn through_the_server_refunds_declines_and_renames_reach_the_email() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    stock(&fake, Shape::Current, Refunded::Invoice);
    attempt(&fake, true);
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    relay_to(&mut config, sink.port);
    let mut conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let integration = integrations::insert(
        &conn,
        &NewIntegration {
            name: "Rosen Goods",
            webhook_secret: SECRET,
            api_key: Some(KEY),
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap();
    templates::save(
        &conn,
        &TemplateInput {
            id: None,
            integration_id: None,
            trigger: TriggerKind::RefundCompleted,
            product_id: Some(PRODUCT.into()),
            plan_id: None,
            subject: "Your {{ product.name }} refund: {{ refund.amount }}".into(),
            format: Format::Html,
            body: "<p>Hi {{ name }}</p>".into(),
            text: None,
            enabled: true,
        },
    )
    .unwrap();
    let server = TestServer::start_with(config, integration.id.clone()).await;

    let mut renamed = json!({"id": "evt_1PgcZZB7WZ01zgkWrename01", "object": "event",
        "type": "product.updated", "api_version": "2026-07-29.dahlia", "livemode": false,
        "created": 4_000_000_000i64, "pending_webhooks": 1,
        "data": {"object": fake.example("products")}});
    renamed["data"]["object"]["id"] = PRODUCT.into();
    renamed["data"]["object"]["name"] = "Tee club".into();
    server
        .deliver(serde_json::to_vec(&renamed).unwrap())
        .await
        .assert_stored(false);
    // The rename is applied before the events that name the product are sent.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE processing = 'pending'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the rename was not processed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for name in ["refund.created", "invoice.payment_failed"] {
        let payload = Shape::Current.payload(name);
        server
            .deliver(serde_json::to_vec(&payload).unwrap())
            .await
            .assert_stored(false);
    }
    let received = sink.wait_for(2, Duration::from_secs(20)).await;
    let messages: Vec<_> = received
        .iter()
        .map(|raw| MessageParser::default().parse(raw).expect("parses as MIME"))
        .collect();
    let subjects: Vec<_> = messages.iter().filter_map(|m| m.subject()).collect();
    assert!(
        subjects.contains(&"Your Tee club refund: $20.00"),
        "{subjects:?}"
    );
    let failed = messages
        .iter()
        .find(|m| m.subject().is_some_and(|s| s.contains("failed")))
        .unwrap_or_else(|| panic!("{subjects:?}"));
    let text = failed.body_text(0).unwrap();
    assert!(
        text.contains(&format!("Tee club, but the payment failed: {DECLINED}")),
        "{text}"
    );
    server.stop().await;
}
