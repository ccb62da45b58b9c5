//! The Stripe API client against the fake Stripe API: what it reads and parses, the headers it
//! sends, how each Stripe error maps, and how often it retries.

use std::time::{Duration, Instant};

use mailmycustomer::stripe::api::{
    Credentials, Customer, Price, Product, StripeClient, StripeError,
};

use crate::fake_stripe::FakeStripe;

const KEY: &str = "rk_test_51FakeRestrictedKey000000wXyZ";
const RETRIES: u32 = 3;

fn creds() -> Credentials<'static> {
    Credentials {
        api_key: KEY,
        account: None,
    }
}

/// A client for the fake with 1 ms retry delays (so at most 16 ms between attempts).
fn client(fake: &FakeStripe) -> StripeClient {
    StripeClient::new(&fake.base_url).with_retry_policy(RETRIES, Duration::from_millis(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_product_and_price_are_fetched_and_parsed() {
    let fake = FakeStripe::start().await;
    fake.customer("cus_1", Some("ann@example.com"), Some("Ann Lee"));
    fake.product("prod_1", "Pro plan");
    fake.price(
        "price_1",
        "prod_1",
        Some("Monthly"),
        Some("month"),
        1500,
        "eur",
    );
    fake.price("price_once", "prod_1", None, None, 9900, "usd");
    let stripe = client(&fake);

    assert_eq!(
        stripe.customer(&creds(), "cus_1").await.unwrap(),
        Customer {
            id: "cus_1".into(),
            email: Some("ann@example.com".into()),
            name: Some("Ann Lee".into()),
            deleted: false,
        }
    );
    assert_eq!(
        stripe.product(&creds(), "prod_1").await.unwrap(),
        Product {
            id: "prod_1".into(),
            name: "Pro plan".into()
        }
    );
    assert_eq!(
        stripe.price(&creds(), "price_1").await.unwrap(),
        Price {
            id: "price_1".into(),
            nickname: Some("Monthly".into()),
            product_id: "prod_1".into(),
            interval: Some("month".into()),
            interval_count: Some(1),
            unit_amount: Some(1500),
            currency: "eur".into(),
        }
    );
    let once = stripe.price(&creds(), "price_once").await.unwrap();
    assert_eq!(
        (once.interval, once.interval_count, once.unit_amount),
        (None, None, Some(9900))
    );

    let paths: Vec<_> = fake
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            ("GET".to_owned(), "/v1/customers/cus_1".to_owned()),
            ("GET".into(), "/v1/products/prod_1".into()),
            ("GET".into(), "/v1/prices/price_1".into()),
            ("GET".into(), "/v1/prices/price_once".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn charge_invoice_and_raw_reads_return_stripes_json() {
    let fake = FakeStripe::start().await;
    let mut charge = fake.example("charges");
    charge["amount"] = 4200.into();
    charge["receipt_email"] = "bob@example.com".into();
    fake.put("charges", "ch_1", charge);
    let stripe = client(&fake);

    let charge = stripe.charge(&creds(), "ch_1").await.unwrap();
    assert_eq!(
        (&charge["id"], &charge["amount"], &charge["receipt_email"]),
        (&"ch_1".into(), &4200.into(), &"bob@example.com".into())
    );
    // The fixture's own invoice, served under its own id.
    let invoice = stripe
        .invoice(&creds(), "in_1Pgc6tB7WZ01zgkWu9fdqL6I")
        .await
        .unwrap();
    assert_eq!(invoice["object"], "invoice");
    assert_eq!(invoice["amount_due"], 1000);
    assert_eq!(invoice["customer"], "cus_QXg1o8vcGmoR32");

    let raw = stripe
        .get(&creds(), "charges/ch_1?expand[]=customer")
        .await
        .unwrap();
    assert_eq!(raw["amount"], 4200);
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/charges/ch_1");
    assert_eq!(last.param("expand[]").as_deref(), Some("customer"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_customer_reads_as_deleted() {
    let fake = FakeStripe::start().await;
    fake.deleted_customer("cus_gone");
    let customer = client(&fake).customer(&creds(), "cus_gone").await.unwrap();
    assert_eq!(
        customer,
        Customer {
            id: "cus_gone".into(),
            email: None,
            name: None,
            deleted: true,
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_is_sent_as_bearer_and_stripe_account_only_for_connect() {
    let fake = FakeStripe::start().await;
    fake.customer("cus_1", Some("ann@example.com"), None);
    let stripe = client(&fake);
    stripe.customer(&creds(), "cus_1").await.unwrap();
    let connect = Credentials {
        api_key: "sk_test_platformKey1234",
        account: Some("acct_1Merchant"),
    };
    stripe.customer(&connect, "cus_1").await.unwrap();

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(requests[0].stripe_account, None);
    assert_eq!(
        requests[1].authorization.as_deref(),
        Some("Bearer sk_test_platformKey1234")
    );
    assert_eq!(
        requests[1].stripe_account.as_deref(),
        Some("acct_1Merchant")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_object_is_not_found_with_stripes_message_and_no_retry() {
    let fake = FakeStripe::start().await;
    let error = client(&fake)
        .customer(&creds(), "cus_missing")
        .await
        .unwrap_err();
    let StripeError::NotFound { path, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(path, "/v1/customers/cus_missing");
    assert_eq!(
        message,
        "No such customer: 'cus_missing' (resource_missing, param id)"
    );
    assert!(!error.is_transient());
    assert_eq!(fake.count("/v1/customers/"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_key_is_invalid_key_after_exactly_one_request() {
    let fake = FakeStripe::start().await;
    fake.customer("cus_1", None, None);
    fake.fail_next("/v1/customers", 401, 5);
    let error = client(&fake).customer(&creds(), "cus_1").await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, StripeError::InvalidKey { .. }), "{error:?}");
    assert!(
        text.contains("Invalid API Key provided: rk_test_*************************wXyZ"),
        "{text}"
    );
    assert!(
        text.contains("check the integration's API key: a rolled or revoked key must be replaced with a current one on the integration's page (Integrations)"),
        "{text}"
    );
    assert!(!text.contains(KEY), "key leaked: {text}");
    assert!(!error.is_transient());
    assert_eq!(fake.count("/v1/customers"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_key_is_refused_by_stripe_as_invalid_key() {
    let fake = FakeStripe::start().await;
    fake.customer("cus_1", None, None);
    let no_key = Credentials {
        api_key: "",
        account: None,
    };
    let error = client(&fake).customer(&no_key, "cus_1").await.unwrap_err();
    assert!(matches!(error, StripeError::InvalidKey { .. }), "{error:?}");
    assert!(
        error.to_string().contains("You did not provide an API key"),
        "{error}"
    );
    assert_eq!(fake.count("/v1/customers/cus_1"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_key_without_the_permission_names_it() {
    let fake = FakeStripe::start().await;
    fake.customer("cus_1", None, None);
    fake.fail_next("/v1/customers", 403, 1);
    let error = client(&fake).customer(&creds(), "cus_1").await.unwrap_err();
    let StripeError::PermissionDenied {
        resource,
        message,
        account,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(resource, "customers");
    // Stripe's refusal names the account the key opens (the fake's, as no Stripe-Account was sent).
    assert_eq!(account.as_deref(), Some("acct_1FakePlatform"));
    assert_eq!(
        message,
        "the restricted API key may not read customers: it lacks the 'rak_customer_read' \
         permission; edit the key in the Stripe Dashboard (Developers → API keys) and set \
         customer to Read"
    );
    assert!(!error.is_transient());
    assert_eq!(fake.count("/v1/customers"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_twice_then_served_after_three_requests() {
    let fake = FakeStripe::start().await;
    fake.product("prod_1", "Pro plan");
    fake.fail_next("/v1/products/", 429, 2);
    let product = client(&fake).product(&creds(), "prod_1").await.unwrap();
    assert_eq!(product.name, "Pro plan");
    assert_eq!(fake.count("/v1/products/prod_1"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_beyond_the_retries_is_rate_limited_and_transient() {
    let fake = FakeStripe::start().await;
    fake.product("prod_1", "Pro plan");
    fake.fail_next("/v1/products/", 429, usize::MAX);
    let error = client(&fake).product(&creds(), "prod_1").await.unwrap_err();
    assert!(
        matches!(error, StripeError::RateLimited { attempts: 4 }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(fake.count("/v1/products/"), 1 + RETRIES as usize);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_forever_end_as_a_transient_server_error() {
    let fake = FakeStripe::start().await;
    fake.fail_next("/v1/invoices/", 500, usize::MAX);
    let error = client(&fake)
        .invoice(&creds(), "in_1Pgc6tB7WZ01zgkWu9fdqL6I")
        .await
        .unwrap_err();
    let StripeError::Server {
        status,
        attempts,
        message,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!((*status, *attempts), (500, 1 + RETRIES));
    assert!(
        message.starts_with("An unknown error occurred (api_error) [request req_fake"),
        "{message}"
    );
    assert!(error.is_transient());
    assert_eq!(fake.count("/v1/invoices/"), 1 + RETRIES as usize);
}

#[tokio::test(flavor = "multi_thread")]
async fn stripe_should_retry_false_stops_the_retries() {
    let fake = FakeStripe::start().await;
    fake.fail_next_with(
        "/v1/charges/",
        503,
        usize::MAX,
        &[("Stripe-Should-Retry", "false")],
    );
    let error = client(&fake).charge(&creds(), "ch_1").await.unwrap_err();
    assert!(
        matches!(
            error,
            StripeError::Server {
                status: 503,
                attempts: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(fake.count("/v1/charges/"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_but_capped_by_the_policy() {
    let fake = FakeStripe::start().await;
    fake.customer("cus_1", None, None);
    fake.fail_next_with("/v1/customers/", 429, 1, &[("Retry-After", "30")]);
    let started = Instant::now();
    client(&fake).customer(&creds(), "cus_1").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(fake.count("/v1/customers/"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_invoice_of_a_payment_intent_is_found_through_invoice_payments() {
    let fake = FakeStripe::start().await;
    fake.invoice_payment("inpay_1", "in_1", "pi_1");
    let stripe = client(&fake);

    assert_eq!(
        stripe
            .invoice_of_payment_intent(&creds(), "pi_1")
            .await
            .unwrap()
            .as_deref(),
        Some("in_1")
    );
    assert_eq!(
        stripe
            .invoice_of_payment_intent(&creds(), "pi_alone")
            .await
            .unwrap(),
        None
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, "/v1/invoice_payments");
    assert_eq!(
        requests[0].param("payment[type]").as_deref(),
        Some("payment_intent")
    );
    assert_eq!(
        requests[0].param("payment[payment_intent]").as_deref(),
        Some("pi_1")
    );
    assert_eq!(
        requests[1].param("payment[payment_intent]").as_deref(),
        Some("pi_alone")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_with_odd_characters_is_encoded_and_stays_in_its_path() {
    let fake = FakeStripe::start().await;
    let odd = "cus_1/../x?expand[]=y#z";
    fake.customer(odd, Some("odd@example.com"), None);
    fake.customer("x", Some("wrong@example.com"), None);
    let stripe = client(&fake);

    let customer = stripe.customer(&creds(), odd).await.unwrap();
    assert_eq!(customer.id, odd);
    assert_eq!(customer.email.as_deref(), Some("odd@example.com"));
    let request = fake.requests().pop().unwrap();
    assert_eq!(
        request.path,
        "/v1/customers/cus_1%2F..%2Fx%3Fexpand[]=y%23z"
    );
    assert_eq!(request.query, "");
    assert_eq!(fake.count("/v1/customers/x"), 0);

    // `..` alone cannot be a segment at all: it is refused before any request.
    for id in ["..", ".", ""] {
        let error = stripe.customer(&creds(), id).await.unwrap_err();
        assert!(
            matches!(error, StripeError::Invalid { .. }),
            "{id:?}: {error:?}"
        );
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_path_is_not_found_like_stripe() {
    let fake = FakeStripe::start().await;
    let error = client(&fake)
        .get(&creds(), "no_such_things/thing_1")
        .await
        .unwrap_err();
    let StripeError::NotFound { path, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(path, "/v1/no_such_things/thing_1");
    assert!(
        message.starts_with("Unrecognized request URL (GET: /v1/no_such_things/thing_1)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_is_a_transient_network_error_after_the_retries() {
    // A port that was just free: nothing listens there, so connections are refused at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let stripe =
        StripeClient::new(&format!("http://{addr}")).with_retry_policy(2, Duration::from_millis(1));
    let error = stripe.customer(&creds(), "cus_1").await.unwrap_err();
    let StripeError::Network { attempts, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*attempts, 3);
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(!message.contains(KEY), "{message}");
    assert!(error.is_transient());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_refuses_a_request_without_a_key_like_stripe() {
    let fake = FakeStripe::start().await;
    let response = reqwest::get(format!("{}/v1/customers/cus_QXg1o8vcGmoR32", fake.base_url))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You did not provide an API key."));
    assert_eq!(fake.requests()[0].authorization, None);
}
