//! Connecting a Stripe account with an API key (issue 12, "API key path"): the Stripe API calls
//! against the fake Stripe, and `manage::connect` end to end with a real server, a real SMTP
//! sink and the fake's webhook endpoints.

use std::time::Duration;

use mailmycustomer::app::App;
use mailmycustomer::db::integrations::{self, ConnectedBy};
use mailmycustomer::manage::connect::{self, KeyConnection};
use mailmycustomer::stripe::api::{Credentials, StripeClient};
use mailmycustomer::stripe::PINNED_API_VERSION;
use mailmycustomer::trigger::SUBSCRIBED_EVENTS;
use serde_json::Value;

use crate::fake_stripe::FakeStripe;
use crate::sink::Sink;
use crate::support::*;

pub const KEY: &str = "rk_test_51ConnectKeyRosenGoods000wXyZ";
pub const OTHER_KEY: &str = "rk_test_51ConnectKeyChanged00000QRST";
pub const PUBLIC_URL: &str = "https://mmc.rosen.example";

/// A server on a fresh database whose Stripe is `fake`, reachable (as far as the check can tell)
/// at `PUBLIC_URL`, sending through `sink` when given.
pub async fn serve(dir: &std::path::Path, fake: &FakeStripe, sink: Option<&Sink>) -> TestServer {
    let mut config = test_config(dir);
    config.stripe.api_base = fake.base_url.clone();
    config.server.public_url = PUBLIC_URL.into();
    if let Some(sink) = sink {
        relay_to(&mut config, sink.port);
        config.outbox.retry_base_secs = 1;
    }
    TestServer::start_with(config, "int_0000000000000000".into()).await
}

pub fn app(server: &TestServer) -> App {
    App::new(server.config.clone()).unwrap()
}

pub fn stored(server: &TestServer, id: &str) -> Option<integrations::Integration> {
    integrations::get(&server.db(), id).unwrap()
}

pub fn all_stored(server: &TestServer) -> Vec<integrations::Integration> {
    integrations::list(&server.db()).unwrap()
}

pub fn webhook_url(id: &str) -> String {
    format!("{PUBLIC_URL}/webhooks/stripe/{id}")
}

fn creds(key: &str) -> Credentials<'_> {
    Credentials {
        api_key: key,
        account: None,
    }
}

fn by_key(name: &str) -> KeyConnection {
    KeyConnection {
        id: None,
        name: name.into(),
        api_key: KEY.into(),
        from_address: None,
    }
}

/// The POSTs to `/v1/webhook_endpoints` the fake received.
pub fn creations(fake: &FakeStripe) -> Vec<crate::fake_stripe::Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/webhook_endpoints")
        .collect()
}

/// The API calls, against the fake: the account, the probe, and an endpoint's life (create with
/// its secret once, list over pages, retrieve without the secret, delete; the 16th is the last).
#[tokio::test(flavor = "multi_thread")]
async fn the_stripe_calls_read_the_account_probe_and_manage_endpoints() {
    let fake = FakeStripe::start().await;
    fake.set_account("acct_1RosenGoods", "Rosen Goods");
    let stripe = StripeClient::new(&fake.base_url);

    let account = stripe.account(&creds(KEY)).await.unwrap();
    assert_eq!(
        (account.id.as_str(), account.name.as_deref()),
        ("acct_1RosenGoods", Some("Rosen Goods"))
    );
    assert_eq!(fake.account_id(), "acct_1RosenGoods");
    assert!(stripe
        .missing_permissions(&creds(KEY))
        .await
        .unwrap()
        .is_empty());

    let restricted = "rk_test_51MissingProductsAndEvents0000";
    fake.restrict_key(restricted, &["rak_product_read", "rak_event_read"]);
    let missing = stripe
        .missing_permissions(&creds(restricted))
        .await
        .unwrap();
    let named: Vec<(&str, Option<&str>)> = missing
        .iter()
        .map(|m| (m.permission.label, m.stripe_name.as_deref()))
        .collect();
    assert_eq!(
        named,
        [
            ("Products", Some("rak_product_read")),
            ("Events", Some("rak_event_read"))
        ]
    );

    let url = webhook_url("int_0123456789abcdef");
    let made = stripe
        .create_webhook_endpoint(&creds(KEY), &url, "int_0123456789abcdef", "Rosen Goods")
        .await
        .unwrap();
    assert!(made.secret.as_ref().unwrap().expose().starts_with("whsec_"));
    assert_eq!(made.integration.as_deref(), Some("int_0123456789abcdef"));
    assert_eq!(made.api_version.as_deref(), Some(PINNED_API_VERSION));
    assert_eq!(made.enabled_events, SUBSCRIBED_EVENTS);
    let again = stripe
        .webhook_endpoint(&creds(KEY), &made.id)
        .await
        .unwrap();
    assert_eq!(again.secret, None, "only the create shows the secret");
    assert_eq!(again.url, url);

    // 15 more fill the account; listing reads them all over two pages of 10… and 100.
    for n in 0..15 {
        fake.add_webhook_endpoint(&format!("https://other.example/{n}"), "other");
    }
    let listed = stripe.webhook_endpoints(&creds(KEY)).await.unwrap();
    assert_eq!(listed.len(), 16);
    assert!(listed.iter().all(|e| e.secret.is_none()));
    let refused = stripe
        .create_webhook_endpoint(&creds(KEY), &url, "int_0123456789abcdef", "Rosen Goods")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("maximum of 16"), "{refused}");

    stripe
        .delete_webhook_endpoint(&creds(KEY), &made.id)
        .await
        .unwrap();
    // Deleting what is gone already is done, not a failure.
    stripe
        .delete_webhook_endpoint(&creds(KEY), &made.id)
        .await
        .unwrap();
    assert_eq!(fake.webhook_endpoints().len(), 15);
    let missing = stripe
        .webhook_endpoint(&creds(KEY), &made.id)
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("No such webhook endpoint"),
        "{missing}"
    );
}

/// Connecting by key makes one endpoint with the pinned version, exactly the subscribed events
/// and our URL; stores its secret; and a webhook signed with that secret is taken and emailed.
#[tokio::test(flavor = "multi_thread")]
async fn connecting_by_key_makes_the_endpoint_and_its_events_are_emailed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    fake.set_account("acct_1RosenGoods", "Rosen Goods");
    let sink = Sink::start();
    let server = serve(dir.path(), &fake, Some(&sink)).await;

    let connected = connect::connect_with_key(&app(&server), by_key("Rosen Goods"))
        .await
        .unwrap();
    let id = connected.integration.id.clone();
    assert_eq!(connected.webhook_url, webhook_url(&id));
    assert!(connected.catalog.is_ok(), "{:?}", connected.catalog);

    let posts = creations(&fake);
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post.form("url").as_deref(), Some(webhook_url(&id).as_str()));
    assert_eq!(
        post.form("api_version").as_deref(),
        Some(PINNED_API_VERSION)
    );
    assert_eq!(post.form_all("enabled_events[]"), SUBSCRIBED_EVENTS);
    assert_eq!(
        post.form("metadata[mailmycustomer_integration]").as_deref(),
        Some(id.as_str())
    );
    assert!(post.form("description").unwrap().contains("MailMyCustomer"));
    assert_eq!(post.key(), KEY);

    let row = stored(&server, &id).unwrap();
    assert_eq!(row.connected_by, ConnectedBy::ApiKey);
    assert_eq!(row.endpoint.as_ref().unwrap().id, connected.endpoint_id);
    assert_eq!(
        row.endpoint.as_ref().unwrap().status.as_deref(),
        Some("enabled")
    );
    assert_eq!(row.account_name.as_deref(), Some("Rosen Goods"));
    assert_eq!(row.stripe_account.as_deref(), Some("acct_1RosenGoods"));
    assert_eq!(row.livemode, Some(false));
    let endpoints = fake.webhook_endpoints();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["id"], connected.endpoint_id.as_str());

    // The secret the fake returned at creation is the one webhooks are checked against.
    let secret = row.webhook_secret.expose().to_owned();
    assert!(secret.starts_with("whsec_fake"), "{secret}");
    let body = with_event_id(&fixture("invoice.paid.json"), "evt_connect_key_paid");
    let url = server.url(&format!("/webhooks/stripe/{id}"));
    server
        .post(&url, body.clone(), Some(sign_now(&body, SECRET)))
        .await
        .assert_refused(400, "signature_mismatch");
    server
        .post(&url, body.clone(), Some(sign_now(&body, &secret)))
        .await
        .assert_stored(false);
    let mail = sink.wait_for(1, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&mail[0]);
    assert!(text.contains("jenny.rosen@example.com"), "{text}");
}

/// A restricted key without Products read is refused naming it; nothing is stored and no
/// endpoint is left on Stripe. Without the webhook write, every missing permission is named.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_missing_a_permission_is_refused_naming_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let app = app(&server);

    let no_products = "rk_test_51NoProductsRead0000000000AAAA";
    fake.restrict_key(no_products, &["rak_product_read"]);
    let error = connect::connect_with_key(
        &app,
        KeyConnection {
            api_key: no_products.into(),
            ..by_key("Rosen Goods")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(error.field(), Some("api_key"));
    let text = error.to_string();
    assert!(
        text.contains("Read on Products, rak_product_read"),
        "{text}"
    );
    assert!(!text.contains("Customers"), "{text}");
    assert!(all_stored(&server).is_empty());
    assert!(creations(&fake).is_empty());
    assert!(fake.webhook_endpoints().is_empty());

    let read_only = "rk_test_51NoWebhookWrite00000000BBBB";
    fake.restrict_key(
        read_only,
        &["rak_webhook_write", "rak_webhook_read", "rak_charge_read"],
    );
    let text = connect::connect_with_key(
        &app,
        KeyConnection {
            api_key: read_only.into(),
            ..by_key("Rosen Goods")
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(text.contains("Write on Webhook endpoints"), "{text}");
    assert!(text.contains("Read on Charges, rak_charge_read"), "{text}");
    assert!(fake.webhook_endpoints().is_empty());

    // A key that may list endpoints but not make one is refused at the create, the same way.
    let no_write = "rk_test_51ListButNoWrite000000000CCCC";
    fake.restrict_key(no_write, &["rak_webhook_write"]);
    let error = connect::connect_with_key(
        &app,
        KeyConnection {
            api_key: no_write.into(),
            ..by_key("Rosen Goods")
        },
    )
    .await
    .unwrap_err();
    assert_eq!(error.field(), Some("api_key"));
    assert!(
        error.to_string().contains("Write on Webhook endpoints"),
        "{error}"
    );
    assert!(all_stored(&server).is_empty());
    assert!(fake.webhook_endpoints().is_empty());
}

/// A new key makes a new endpoint at the same URL and deletes the old one; the id, name,
/// templates and log stay.
#[tokio::test(flavor = "multi_thread")]
async fn changing_the_key_replaces_the_endpoint_and_keeps_the_integration() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let app = app(&server);
    let first = connect::connect_with_key(&app, by_key("Rosen Goods"))
        .await
        .unwrap();
    let id = first.integration.id.clone();
    let before = stored(&server, &id).unwrap();

    let changed = connect::change_key(&app, &id, OTHER_KEY).await.unwrap();
    assert_eq!(changed.integration.id, id);
    assert_ne!(changed.endpoint_id, first.endpoint_id);
    let after = stored(&server, &id).unwrap();
    assert_eq!(after.name, "Rosen Goods");
    assert_eq!(after.created_at, before.created_at);
    assert_eq!(after.api_key.as_ref().unwrap().expose(), OTHER_KEY);
    assert_ne!(
        after.webhook_secret.expose(),
        before.webhook_secret.expose()
    );
    let endpoints = fake.webhook_endpoints();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0]["id"], changed.endpoint_id.as_str());
    assert_eq!(endpoints[0]["url"], webhook_url(&id).as_str());
    assert!(changed.warnings.is_empty(), "{:?}", changed.warnings);
}

/// An account already holding 16 endpoints is refused, naming the limit and where to delete one;
/// nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_with_16_endpoints_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    for n in 0..16 {
        fake.add_webhook_endpoint(&format!("https://elsewhere.example/hook/{n}"), "theirs");
    }
    let server = serve(dir.path(), &fake, None).await;
    let error = connect::connect_with_key(&app(&server), by_key("Rosen Goods"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("16"), "{text}");
    assert!(text.contains("Developers → Webhooks"), "{text}");
    assert!(all_stored(&server).is_empty());
    assert!(creations(&fake).is_empty());
    assert_eq!(fake.webhook_endpoints().len(), 16);
}

/// An endpoint made earlier for the same URL (a form sent again) is replaced, not doubled —
/// also when it fills the account's last slot.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_made_earlier_for_the_same_url_is_replaced_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let id = integrations::new_id().unwrap();
    for n in 0..15 {
        fake.add_webhook_endpoint(&format!("https://elsewhere.example/hook/{n}"), "theirs");
    }
    let earlier = fake.add_webhook_endpoint(&webhook_url(&id), "an earlier try");
    let server = serve(dir.path(), &fake, None).await;
    let connected = connect::connect_with_key(
        &app(&server),
        KeyConnection {
            id: Some(id.clone()),
            ..by_key("Rosen Goods")
        },
    )
    .await
    .unwrap();
    assert_eq!(connected.integration.id, id);
    let ours: Vec<Value> = fake
        .webhook_endpoints()
        .into_iter()
        .filter(|e| e["url"] == webhook_url(&id).as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0]["id"], connected.endpoint_id.as_str());
    assert_ne!(connected.endpoint_id, earlier);
    assert_eq!(fake.webhook_endpoints().len(), 16);
}

/// A `public_url` Stripe cannot reach is refused before Stripe is asked anything, with the
/// `stripe listen` way to test locally.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_public_url_is_refused_with_the_stripe_listen_hint() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    for (public_url, key, why) in [
        ("", KEY, "is not set"),
        ("http://127.0.0.1:8080", KEY, "loopback"),
        ("https://192.168.1.20", KEY, "private"),
        ("https://mmc.local", KEY, ".local"),
        (
            "http://mmc.rosen.example",
            "rk_live_51LiveKey0000000000000DDDD",
            "https",
        ),
    ] {
        let mut config = server.config.clone();
        config.server.public_url = public_url.into();
        let app = App::new(config).unwrap();
        let error = connect::connect_with_key(
            &app,
            KeyConnection {
                api_key: key.into(),
                ..by_key("Rosen Goods")
            },
        )
        .await
        .unwrap_err();
        let text = error.to_string();
        assert_eq!(error.field(), Some("public_url"), "{public_url}: {text}");
        assert!(text.contains(why), "{public_url}: {text}");
        assert!(
            text.contains("stripe listen --forward-to http://"),
            "{text}"
        );
    }
    assert!(
        fake.requests().is_empty(),
        "Stripe was asked: {:?}",
        fake.requests()
    );
    assert!(all_stored(&server).is_empty());
}

/// Re-check reads the endpoint's status as Stripe reports it: a disabled endpoint is stored and
/// said, with what to do.
#[tokio::test(flavor = "multi_thread")]
async fn recheck_finds_a_disabled_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let app = app(&server);
    let connected = connect::connect_with_key(&app, by_key("Rosen Goods"))
        .await
        .unwrap();
    let id = connected.integration.id;
    let (fine, _) = connect::recheck(&app, &id).await.unwrap().summary();
    assert!(fine);

    fake.set_endpoint_status(&connected.endpoint_id, "disabled");
    fake.set_account(&fake.account_id(), "Rosen Goods GmbH");
    let checked = connect::recheck(&app, &id).await.unwrap();
    let (fine, text) = checked.summary();
    assert!(!fine);
    assert!(text.contains("disabled"), "{text}");
    let row = stored(&server, &id).unwrap();
    assert_eq!(row.endpoint.unwrap().status.as_deref(), Some("disabled"));
    assert_eq!(row.account_name.as_deref(), Some("Rosen Goods GmbH"));
}
