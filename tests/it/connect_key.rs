//! Connecting a Stripe account with an API key (issue 12, "API key path"): the Stripe API calls
//! against the fake Stripe; `manage::connect` with a real server and the fake's webhook
//! endpoints; the Add page, the change-key form and Re-check over real HTTP (with a real SMTP
//! sink); and `integration connect|update` on the real binary.

use std::time::Duration;

use mailmycustomer::app::App;
use mailmycustomer::db::integrations::{self, ConnectedBy};
use mailmycustomer::manage::connect::{self, KeyConnection};
use mailmycustomer::stripe::api::{endpoints, Credentials, StripeClient};
use mailmycustomer::stripe::PINNED_API_VERSION;
use mailmycustomer::trigger::SUBSCRIBED_EVENTS;
use serde_json::Value;

use scraper::{ElementRef, Html, Selector};

use crate::cli::{mmc, run};
use crate::fake_stripe::FakeStripe;
use crate::sink::Sink;
use crate::support::ui::{Page, UiClient};
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

fn one<'a>(doc: &'a Html, css: &str) -> ElementRef<'a> {
    let found = select(doc, css);
    assert_eq!(found.len(), 1, "{css} in {}", doc.html());
    found[0]
}

/// The flash a page shows and whether it is an error.
fn flash(page: &Page) -> (String, bool) {
    let doc = html(page);
    let found = one(&doc, "div.flash");
    (text(found), found.value().classes().any(|c| c == "error"))
}

/// Fills the Add page's API-key form and posts it.
async fn connect_on_the_page(ui: &UiClient, name: &str, key: &str) -> (String, Page) {
    let form = html(&ui.get("/integrations/new").await);
    let id = one(&form, "input[name=connect_id]")
        .value()
        .attr("value")
        .unwrap()
        .to_owned();
    let answer = ui
        .post(
            "/integrations/new/key",
            &[
                ("connect_id", &id),
                ("connect_name", name),
                ("connect_key", key),
                ("connect_from", ""),
            ],
        )
        .await;
    (id, answer)
}

fn count(server: &TestServer, table: &str, id: &str) -> i64 {
    server
        .db()
        .query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE integration_id = ?1"),
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

/// The Add page leads with the API key and lists every permission with why; posting it makes
/// one endpoint (pinned version, exactly the subscribed events, our URL), the card shows the
/// account, mode and endpoint, and a webhook signed with the secret the fake returned is taken
/// and emailed. Neither the key nor the secret reaches a page.
#[tokio::test(flavor = "multi_thread")]
async fn connecting_on_the_add_page_makes_the_endpoint_and_its_events_are_emailed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    fake.set_account("acct_1RosenGoods", "Rosen Goods");
    let sink = Sink::start();
    let server = serve(dir.path(), &fake, Some(&sink)).await;
    let ui = signed_in(&server).await;

    let add = html(&ui.get("/integrations/new").await);
    let headings: Vec<String> = select(&add, "section.connect h2")
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(
        headings,
        ["Connect with an API key", "I have a webhook signing secret"]
    );
    let permissions: Vec<String> = select(&add, "ul.permissions li strong")
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(permissions.len(), endpoints::PERMISSIONS.len());
    assert_eq!(permissions[0], "Write on Webhook endpoints");
    for wanted in [
        "Read on Customers",
        "Read on Invoice payments",
        "Read on Events",
    ] {
        assert!(permissions.iter().any(|p| p == wanted), "{permissions:?}");
    }
    assert_eq!(
        one(&add, "input[name=connect_key]").value().attr("type"),
        Some("password")
    );
    assert!(select(&add, ".reach").is_empty(), "public_url is fine");

    let (id, answer) = connect_on_the_page(&ui, "Rosen Goods", KEY).await;
    answer.assert_redirect(&format!("/integrations/{id}"));
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
    let endpoint_id = row.endpoint.as_ref().unwrap().id.clone();
    assert_eq!(fake.webhook_endpoints()[0]["id"], endpoint_id.as_str());
    assert_eq!(row.account_name.as_deref(), Some("Rosen Goods"));
    assert_eq!(row.stripe_account.as_deref(), Some("acct_1RosenGoods"));
    assert_eq!(row.livemode, Some(false));

    let page = ui.get(&format!("/integrations/{id}")).await;
    let (message, error) = flash(&page);
    assert!(!error, "{message}");
    assert!(
        message.contains("Connected “Rosen Goods” to Rosen Goods (acct_1RosenGoods)"),
        "{message}"
    );
    assert!(message.contains(&endpoint_id), "{message}");
    assert!(
        message.contains("Read 1 product and 1 plan from Stripe"),
        "{message}"
    );
    let secret = row.webhook_secret.expose().to_owned();
    for shown in [&page.text, &ui.get("/integrations").await.text] {
        assert!(
            !shown.contains(&secret) && !shown.contains(KEY),
            "a secret is on a page"
        );
    }
    let list = html(&ui.get("/integrations").await);
    let facts = text(one(&list, "article.integration dl.facts"));
    for wanted in [
        "With an API key",
        "Test mode",
        "Rosen Goods acct_1RosenGoods",
        "Enabled",
        &endpoint_id,
    ] {
        assert!(facts.contains(wanted), "{wanted} not in {facts}");
    }
    assert_eq!(
        select(&list, "article.integration form.recheck button").len(),
        1
    );

    // The secret the fake returned at creation is the one webhooks are checked against.
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

/// On the page, a key without Products read is a 422 with the key's field marked, naming the
/// permission; nothing is stored, no endpoint is left, the name typed is kept and the key is
/// not sent back.
#[tokio::test(flavor = "multi_thread")]
async fn the_add_page_refuses_a_key_missing_a_permission_with_the_field_marked() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;
    let no_products = "rk_test_51NoProductsRead0000000000AAAA";
    fake.restrict_key(no_products, &["rak_product_read"]);

    let (id, answer) = connect_on_the_page(&ui, "Rosen Goods", no_products).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let doc = html(&answer);
    let marked = one(&doc, ".field.invalid");
    assert_eq!(
        one(&doc, ".field.invalid input").value().attr("name"),
        Some("connect_key")
    );
    let said = text(marked);
    assert!(
        said.contains("Read on Products, rak_product_read"),
        "{said}"
    );
    assert!(said.contains("Paste it again"), "{said}");
    assert_eq!(
        one(&doc, "input[name=connect_name]").value().attr("value"),
        Some("Rosen Goods")
    );
    assert_eq!(
        one(&doc, "input[name=connect_id]").value().attr("value"),
        Some(id.as_str())
    );
    assert!(!answer.text.contains(no_products), "the key was sent back");
    assert!(all_stored(&server).is_empty());
    assert!(fake.webhook_endpoints().is_empty());

    // An empty key is refused before Stripe is asked, on the same field.
    let before = fake.requests().len();
    let (_, empty) = connect_on_the_page(&ui, "Rosen Goods", "").await;
    assert_eq!(empty.status, 422);
    assert_eq!(
        one(&html(&empty), ".field.invalid input")
            .value()
            .attr("name"),
        Some("connect_key")
    );
    assert_eq!(fake.requests().len(), before);

    // A local public_url is said on the page before a key is pasted, and refused as a banner.
    // (Another database: one `serve` per database.)
    let elsewhere = tempfile::tempdir().unwrap();
    let mut config = test_config(elsewhere.path());
    config.stripe.api_base = fake.base_url.clone();
    config.server.public_url = "http://127.0.0.1:8080".into();
    let local = TestServer::start_with(config, "int_0000000000000000".into()).await;
    let ui = signed_in(&local).await;
    let add = html(&ui.get("/integrations/new").await);
    assert!(text(one(&add, ".reach")).contains("loopback"));
    let (_, refused) = connect_on_the_page(&ui, "Rosen Goods", KEY).await;
    assert_eq!(refused.status, 422);
    let banner = text(one(&html(&refused), "section.by-key div.flash.error"));
    assert!(banner.contains("stripe listen --forward-to"), "{banner}");
}

/// The new routes: signed out → /login; without or with a wrong CSRF token → 403 and nothing
/// changed; an unknown id → 404; a bad key → 422 naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn the_connect_routes_are_guarded_and_answer_404_and_422() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let connected = connect::connect_with_key(&app(&server), by_key("Rosen Goods"))
        .await
        .unwrap();
    let id = connected.integration.id.clone();
    let requests = fake.requests().len();
    let routes = [
        "/integrations/new/key".to_owned(),
        format!("/integrations/{id}/key"),
        format!("/integrations/{id}/recheck"),
    ];
    let fields = [
        ("connect_name", "Other"),
        ("connect_key", OTHER_KEY),
        ("new_api_key", OTHER_KEY),
    ];

    let stranger = UiClient::new(&server);
    for route in &routes {
        stranger
            .post_without_csrf(route, &fields)
            .await
            .assert_redirect("/login");
    }
    let ui = signed_in(&server).await;
    for route in &routes {
        assert_eq!(
            ui.post_without_csrf(route, &fields).await.status,
            403,
            "{route}"
        );
        let mut wrong = vec![("csrf", "not-the-token")];
        wrong.extend_from_slice(&fields);
        assert_eq!(
            ui.post_without_csrf(route, &wrong).await.status,
            403,
            "{route}"
        );
    }
    assert_eq!(fake.requests().len(), requests, "Stripe was asked");
    assert_eq!(all_stored(&server).len(), 1);
    assert_eq!(stored(&server, &id).unwrap().api_key.unwrap().expose(), KEY);

    for route in [
        "/integrations/int_ffffffffffffffff/key",
        "/integrations/int_ffffffffffffffff/recheck",
    ] {
        assert_eq!(
            ui.post(route, &[("new_api_key", OTHER_KEY)]).await.status,
            404,
            "{route}"
        );
    }
    let bad = ui
        .post(
            &format!("/integrations/{id}/key"),
            &[("new_api_key", "pk_test_publishable")],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(
        one(&html(&bad), ".change-key .field.invalid input")
            .value()
            .attr("name"),
        Some("new_api_key")
    );
    assert_eq!(fake.requests().len(), requests);
}

/// The change-key form: a new endpoint, the old one deleted on the fake, the id, templates and
/// log kept; the new secret is checked at once and the old one refused.
#[tokio::test(flavor = "multi_thread")]
async fn changing_the_key_on_its_page_keeps_id_templates_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let sink = Sink::start();
    let server = serve(dir.path(), &fake, Some(&sink)).await;
    let ui = signed_in(&server).await;
    let (id, answer) = connect_on_the_page(&ui, "Rosen Goods", KEY).await;
    answer.assert_redirect(&format!("/integrations/{id}"));
    let old = stored(&server, &id).unwrap();
    let old_endpoint = old.endpoint.clone().unwrap().id;
    let url = server.url(&format!("/webhooks/stripe/{id}"));
    let body = with_event_id(&fixture("invoice.paid.json"), "evt_before_change");
    server
        .post(
            &url,
            body.clone(),
            Some(sign_now(&body, old.webhook_secret.expose())),
        )
        .await
        .assert_stored(false);
    sink.wait_for(1, Duration::from_secs(20)).await;
    mailmycustomer::manage::templates::save(
        &app(&server),
        mailmycustomer::db::templates::TemplateInput {
            id: None,
            integration_id: Some(id.clone()),
            trigger: mailmycustomer::trigger::TriggerKind::PaymentReceived,
            product_id: None,
            plan_id: None,
            subject: "Thanks".into(),
            format: mailmycustomer::templates::body::Format::Html,
            body: "<p>Thank you.</p>".into(),
            text: None,
            enabled: true,
        },
    )
    .await
    .unwrap();
    let page = html(&ui.get(&format!("/integrations/{id}")).await);
    assert_eq!(text(one(&page, "#key-heading")), "Change the API key");
    assert!(select(&page, "input[name=webhook_secret]").is_empty());

    let changed = ui
        .post(
            &format!("/integrations/{id}/key"),
            &[("new_api_key", OTHER_KEY)],
        )
        .await;
    changed.assert_redirect(&format!("/integrations/{id}"));
    let (message, error) = flash(&ui.get(&format!("/integrations/{id}")).await);
    assert!(!error && message.contains("New key in place"), "{message}");
    let new = stored(&server, &id).unwrap();
    let new_endpoint = new.endpoint.clone().unwrap().id;
    assert_ne!(new_endpoint, old_endpoint);
    let on_stripe: Vec<Value> = fake.webhook_endpoints();
    assert_eq!(on_stripe.len(), 1);
    assert_eq!(on_stripe[0]["id"], new_endpoint.as_str());
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "DELETE"
                && r.path == format!("/v1/webhook_endpoints/{old_endpoint}"))
    );
    assert_eq!(
        (new.name.as_str(), new.created_at),
        ("Rosen Goods", old.created_at)
    );
    assert_eq!(count(&server, "templates", &id), 1);
    assert_eq!(count(&server, "deliveries", &id), 1);

    let body = with_event_id(&fixture("invoice.paid.json"), "evt_after_change");
    server
        .post(
            &url,
            body.clone(),
            Some(sign_now(&body, old.webhook_secret.expose())),
        )
        .await
        .assert_refused(400, "signature_mismatch");
    server
        .post(
            &url,
            body.clone(),
            Some(sign_now(&body, new.webhook_secret.expose())),
        )
        .await
        .assert_stored(false);
}

/// Re-check from the card: a disabled endpoint comes back as an error flash saying what to do,
/// and the card shows it.
#[tokio::test(flavor = "multi_thread")]
async fn recheck_on_the_card_shows_a_disabled_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;
    let (id, _) = connect_on_the_page(&ui, "Rosen Goods", KEY).await;
    let endpoint = stored(&server, &id).unwrap().endpoint.unwrap().id;
    fake.set_endpoint_status(&endpoint, "disabled");

    ui.post(&format!("/integrations/{id}/recheck"), &[("back", "list")])
        .await
        .assert_redirect("/integrations");
    let list = ui.get("/integrations").await;
    let (message, error) = flash(&list);
    assert!(error, "{message}");
    assert!(
        message.contains("Stripe disabled the webhook endpoint"),
        "{message}"
    );
    let doc = html(&list);
    assert_eq!(text(one(&doc, "dd.endpoint .badge")), "Disabled by Stripe");
    assert!(text(one(&doc, "dd.endpoint .note")).contains("Enable"));

    fake.set_endpoint_status(&endpoint, "enabled");
    ui.post(&format!("/integrations/{id}/recheck"), &[("back", "page")])
        .await
        .assert_redirect(&format!("/integrations/{id}"));
    let (message, error) = flash(&ui.get(&format!("/integrations/{id}")).await);
    assert!(!error && message.contains("all is well"), "{message}");
}

/// `integration connect` on the real binary prints the id, the webhook URL and the endpoint id;
/// `integration update ID --api-key -` (and its old name, `edit`) replaces the endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_connects_by_key_and_update_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let base = fake.base_url.clone();
    let path = dir.path().to_owned();
    let command = move |args: Vec<String>| {
        let (base, path) = (base.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut cmd = mmc(&path, &args);
            cmd.env("MMC_STRIPE__API_BASE", &base)
                .env("MMC_SERVER__PUBLIC_URL", PUBLIC_URL);
            run(cmd)
        })
    };
    let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    let (ok, out, err) = command(owned(&[
        "integration",
        "connect",
        "--name",
        "Rosen Goods",
        "--api-key",
        KEY,
    ]))
    .await
    .unwrap();
    assert!(ok, "{err}");
    let field = |out: &str, name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_owned()
    };
    let id = field(&out, "id");
    assert_eq!(field(&out, "webhook_url"), webhook_url(&id));
    let endpoint = field(&out, "endpoint_id");
    assert_eq!(fake.webhook_endpoints()[0]["id"], endpoint.as_str());
    assert!(!out.contains(KEY) && !out.contains("whsec_"), "{out}");

    for verb in ["update", "edit"] {
        let before = fake.webhook_endpoints()[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (ok, out, err) = command(owned(&["integration", verb, &id, "--api-key", OTHER_KEY]))
            .await
            .unwrap();
        assert!(ok, "{verb}: {err}");
        let now = field(&out, "endpoint_id");
        assert_ne!(now, before, "{verb}");
        let on_stripe = fake.webhook_endpoints();
        assert_eq!(on_stripe.len(), 1, "{verb}: {on_stripe:?}");
        assert_eq!(on_stripe[0]["id"], now.as_str());
    }

    // A loopback public_url is refused with the stripe listen way, and nothing is made.
    let (ok, _, err) = tokio::task::spawn_blocking({
        let (path, base) = (dir.path().to_owned(), fake.base_url.clone());
        move || {
            let mut cmd = mmc(
                &path,
                &[
                    "integration",
                    "connect",
                    "--name",
                    "Local",
                    "--api-key",
                    KEY,
                ],
            );
            cmd.env("MMC_STRIPE__API_BASE", &base)
                .env("MMC_SERVER__PUBLIC_URL", "http://127.0.0.1:8080");
            run(cmd)
        }
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        err.contains("loopback") && err.contains("stripe listen"),
        "{err}"
    );
    assert_eq!(fake.webhook_endpoints().len(), 1);
}

/// Stripe may refuse a restricted key the account itself (it asks for an account permission
/// the program needs nowhere else); its refusal names the account, so connecting goes on with
/// the account known by its id.
#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_key_refused_the_account_itself_still_connects() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let app = app(&server);
    let key = "rk_test_51NoAccountRead000000000CCCC";
    fake.restrict_key(key, &["rak_accounts_kyc_basic_read"]);
    connect::connect_with_key(
        &app,
        KeyConnection {
            api_key: key.into(),
            ..by_key("Rosen Goods")
        },
    )
    .await
    .unwrap();
    let stored = all_stored(&server);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].stripe_account.as_deref(),
        Some(fake.account_id().as_str())
    );
    assert_eq!(stored[0].account_name, None);
    assert_eq!(creations(&fake).len(), 1);
}
