//! Connect with Stripe (issue 12, "Connect OAuth path") over real HTTP: the start redirect, the
//! fake Stripe's consent page and code exchange, the callback's refusals, the Connect webhook
//! routed by `account` (emailed through a real SMTP sink), deauthorization, and what happens
//! without `stripe.connect`.

use std::time::{Duration, Instant};

use mailmycustomer::config::Config;
use mailmycustomer::db::integrations::{self, ConnectedBy, Integration, Status};
use mailmycustomer::db::{self, catalog};
use scraper::{Html, Selector};

use crate::fake_stripe::{FakeStripe, CONNECTED_ACCOUNT};
use crate::sink::Sink;
use crate::support::ui::Page;
use crate::support::*;

const CLIENT_ID: &str = "ca_FakePlatform0000000000000001";
const PLATFORM_KEY: &str = "sk_test_FakePlatformKey000000000001";
const CONNECT_SECRET: &str = "whsec_connect_endpoint_of_the_platform";

fn connect_config(config: &mut Config, fake: &FakeStripe) {
    config.stripe.api_base = fake.base_url.clone();
    let connect = &mut config.stripe.connect;
    connect.client_id = CLIENT_ID.into();
    connect.secret_key = PLATFORM_KEY.into();
    connect.webhook_secret = CONNECT_SECRET.into();
    connect.authorize_url = format!("{}/oauth/authorize", fake.base_url);
    connect.token_url = format!("{}/oauth/token", fake.base_url);
    connect.deauthorize_url = format!("{}/oauth/deauthorize", fake.base_url);
}

/// A server with Connect configured against `fake`, one signing-secret integration, and mail
/// to `sink` when given.
async fn serve(dir: &std::path::Path, fake: &FakeStripe, sink: Option<&Sink>) -> TestServer {
    let mut config = test_config(dir);
    connect_config(&mut config, fake);
    if let Some(sink) = sink {
        relay_to(&mut config, sink.port);
    }
    let id = add_integration(&config, "Pasted shop", SECRET);
    TestServer::start_with(config, id).await
}

/// Presses the button (of the card of `integration`, or the Add page's), and returns where
/// Stripe's authorize page is.
async fn start(ui: &UiClient, integration: Option<&str>) -> url::Url {
    let fields: Vec<(&str, &str)> = integration
        .map(|id| ("integration", id))
        .into_iter()
        .collect();
    let answer = ui.post("/integrations/connect", &fields).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    url::Url::parse(answer.location().unwrap()).unwrap()
}

/// The fake consent page's link with `id` (`authorize` or `deny`): where Stripe sends the
/// browser back.
async fn consent_link(authorize: &url::Url, id: &str) -> url::Url {
    let page = reqwest::get(authorize.as_str()).await.unwrap();
    assert!(page.status().is_success());
    assert!(page
        .headers()
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap().starts_with("text/html")));
    let html = Html::parse_document(&page.text().await.unwrap());
    let href = html
        .select(&Selector::parse(&format!("a#{id}")).unwrap())
        .next()
        .unwrap_or_else(|| panic!("no #{id} link on the consent page"))
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    url::Url::parse(&href).unwrap()
}

/// Follows Stripe's redirect back to our callback with this client (its session).
async fn back(ui: &UiClient, redirect: &url::Url) -> Page {
    assert_eq!(redirect.path(), "/integrations/connect/callback");
    ui.get(&format!(
        "{}?{}",
        redirect.path(),
        redirect.query().unwrap_or("")
    ))
    .await
}

/// The whole flow, authorized; returns the callback's answer.
async fn connect(ui: &UiClient, integration: Option<&str>) -> Page {
    let authorize = start(ui, integration).await;
    back(ui, &consent_link(&authorize, "authorize").await).await
}

fn oauth_integrations(server: &TestServer) -> Vec<Integration> {
    integrations::list(&server.db())
        .unwrap()
        .into_iter()
        .filter(|i| i.connected_by == ConnectedBy::OAuth)
        .collect()
}

async fn post_connect_event(server: &TestServer, body: Vec<u8>, secret: &str) -> Reply {
    let sig = sign_now(&body, secret);
    server
        .post(&server.url("/webhooks/stripe/connect"), body, Some(sig))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_start_redirect_carries_client_id_scope_state_and_redirect_uri() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;

    // Signed out: to sign-in, for the button and the callback alike.
    let anonymous = UiClient::new(&server);
    let answer = anonymous
        .post_without_csrf("/integrations/connect", &[])
        .await;
    assert_eq!(answer.status, 303);
    assert!(answer.location().unwrap().starts_with("/login"));
    let answer = anonymous
        .get("/integrations/connect/callback?code=ac_1&state=x")
        .await;
    assert!(answer.location().unwrap().starts_with("/login"));

    let ui = signed_in(&server).await;
    let add = ui.get("/integrations/new").await;
    assert!(add.text.contains("Connect with Stripe"), "{}", add.text);
    assert!(add.text.contains("action=\"/integrations/connect\""));
    // The form's answer redirects to Stripe, which the page's form-action must allow.
    let policy = add.headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains(&format!("form-action 'self' {};", fake.base_url)),
        "{policy}"
    );

    // Without the CSRF token, or with a wrong one: 403, and Stripe is never asked.
    let answer = ui.post_without_csrf("/integrations/connect", &[]).await;
    assert_eq!(answer.status, 403);
    let answer = ui
        .post_without_csrf("/integrations/connect", &[("csrf", "wrong")])
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(fake.count("/oauth"), 0);

    // An unknown integration: 404.
    let answer = ui
        .post(
            "/integrations/connect",
            &[("integration", "int_0000000000000000")],
        )
        .await;
    assert_eq!(answer.status, 404, "{}", answer.text);

    let url = start(&ui, None).await;
    assert_eq!(url.path(), "/oauth/authorize");
    assert!(url.as_str().starts_with(&fake.base_url));
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("response_type").as_deref(), Some("code"));
    assert_eq!(param("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(param("scope").as_deref(), Some("read_write"));
    assert_eq!(
        param("redirect_uri"),
        Some(format!(
            "{}/integrations/connect/callback",
            server.config.base_url()
        ))
    );
    let state = param("state").unwrap();
    assert!(state.len() >= 32, "{state}");
    assert_ne!(start(&ui, None).await, url, "each start has its own state");
    assert!(!url.as_str().contains(PLATFORM_KEY));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_stores_the_account_and_its_tokens_and_reads_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;

    let answer = connect(&ui, None).await;
    answer.assert_redirect("/integrations");
    let connected = oauth_integrations(&server);
    assert_eq!(connected.len(), 1, "{connected:?}");
    let i = &connected[0];
    assert_eq!(i.stripe_account.as_deref(), Some(CONNECTED_ACCOUNT));
    assert_eq!(i.name, "Rosen Goods");
    assert_eq!(i.account_name.as_deref(), Some("Rosen Goods"));
    assert_eq!(i.livemode, Some(false));
    assert!(i.webhook_secret.is_empty());
    let token = i.oauth_access_token.as_ref().unwrap().expose().to_owned();
    assert!(token.starts_with("sk_test_oauth"), "{token}");
    assert!(i.oauth_refresh_token.is_some());
    assert_eq!(i.status, Status::Active);

    // The code went with the platform key as client_secret; the account was read with the
    // new token and no Stripe-Account header; the catalog with the same token.
    let requests = fake.requests();
    let exchange = requests.iter().find(|r| r.path == "/oauth/token").unwrap();
    assert_eq!(
        exchange.form("client_secret").as_deref(),
        Some(PLATFORM_KEY)
    );
    assert_eq!(
        exchange.form("grant_type").as_deref(),
        Some("authorization_code")
    );
    let account = requests.iter().find(|r| r.path == "/v1/account").unwrap();
    assert_eq!(account.key(), token);
    assert_eq!(account.stripe_account, None);
    let products = requests.iter().find(|r| r.path == "/v1/products").unwrap();
    assert_eq!(products.key(), token);
    let (products, plans) = catalog::counts(&server.db(), &i.id).unwrap();
    assert!(products >= 1 && plans >= 1, "{products} {plans}");

    let list = ui.get("/integrations").await;
    assert!(
        list.text
            .contains("Connected “Rosen Goods” (acct_1PgafTB7WZ01zgkW) with Stripe"),
        "{}",
        list.text
    );
    assert!(list.text.contains(CONNECTED_ACCOUNT));
    assert!(
        list.text
            .contains(&format!("name=\"integration\" value=\"{}\"", i.id))
            && list.text.contains("Connect again with Stripe"),
        "the card offers to connect again: {}",
        list.text
    );
    assert!(
        !list.text.contains(&token),
        "the token never reaches a page"
    );

    // Connecting the same account again from the Add page refreshes that integration rather
    // than making a second one.
    connect(&ui, None).await.assert_redirect("/integrations");
    let again = oauth_integrations(&server);
    assert_eq!(again.len(), 1);
    assert_ne!(
        again[0].oauth_access_token.as_ref().unwrap().expose(),
        token,
        "fresh tokens"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_again_from_a_card_changes_the_connected_account() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;
    let id = server.integration_id.clone();

    fake.connect_account("acct_1OtherShop0000001", "Other Shop");
    connect(&ui, Some(&id))
        .await
        .assert_redirect("/integrations");
    let i = integrations::get(&server.db(), &id).unwrap().unwrap();
    assert_eq!(i.connected_by, ConnectedBy::OAuth);
    assert_eq!(i.stripe_account.as_deref(), Some("acct_1OtherShop0000001"));
    assert_eq!(i.name, "Pasted shop", "its name, templates and log stay");
    assert_eq!(i.account_name.as_deref(), Some("Other Shop"));
    assert!(i.webhook_secret.is_empty(), "the pasted secret is gone");

    // Its own webhook URL now refuses what the pasted secret signs, and a body signed with the
    // empty key (what an OAuth integration holds) is no signature at all.
    let body = fixture("invoice.paid.json");
    server
        .deliver(body.clone())
        .await
        .assert_refused(400, "signature_mismatch");
    let sig = sign_now(&body, "");
    server
        .post(&server.webhook_url(), body, Some(sig))
        .await
        .assert_refused(400, "signature_mismatch");
    assert_eq!(server.stored_events(), 0);

    // Another account already connected elsewhere cannot be taken over from this card.
    fake.connect_account(CONNECTED_ACCOUNT, "Rosen Goods");
    connect(&ui, None).await.assert_redirect("/integrations");
    let answer = connect(&ui, Some(&id)).await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert!(
        answer.text.contains("already connected as"),
        "{}",
        answer.text
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_reused_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;

    let redirect = consent_link(&start(&ui, None).await, "authorize").await;
    let code = redirect
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    // A made-up state, and none at all.
    for query in [
        format!("code={code}&state=not-ours"),
        format!("code={code}"),
    ] {
        let answer = ui
            .get(&format!("/integrations/connect/callback?{query}"))
            .await;
        assert_eq!(answer.status, 422, "{}", answer.text);
        assert!(
            answer.text.contains("Nothing was connected"),
            "{}",
            answer.text
        );
    }
    // Another session's state.
    let other = signed_in_as(&server, "colleague@rosen.example").await;
    let answer = back(&other, &redirect).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(fake.count("/oauth/token"), 0, "no code was exchanged");
    assert!(oauth_integrations(&server).is_empty());

    // The right one works once; the same answer again is refused.
    back(&ui, &redirect).await.assert_redirect("/integrations");
    let answer = back(&ui, &redirect).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.text.contains("used already"), "{}", answer.text);
    assert_eq!(fake.count("/oauth/token"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denial_and_a_failed_exchange_are_shown_on_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;

    let denied = consent_link(&start(&ui, None).await, "deny").await;
    let answer = back(&ui, &denied).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(
        answer.text.contains("access was denied on Stripe")
            && answer.text.contains("The user denied your request"),
        "{}",
        answer.text
    );

    // A code Stripe does not know (expired, or made up): Stripe's invalid_grant, shown.
    let mut redirect = consent_link(&start(&ui, None).await, "authorize").await;
    let state = redirect
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    redirect
        .query_pairs_mut()
        .clear()
        .append_pair("code", "ac_expired000")
        .append_pair("state", &state);
    let answer = back(&ui, &redirect).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(
        answer.text.contains("invalid_grant")
            && answer.text.contains("Authorization code does not exist"),
        "{}",
        answer.text
    );
    assert!(!answer.text.contains(PLATFORM_KEY));

    // Stripe's token endpoint down: said so, not a crash.
    let redirect = consent_link(&start(&ui, None).await, "authorize").await;
    fake.fail_next("/oauth/token", 503, 1);
    let answer = back(&ui, &redirect).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.text.contains("code exchange"), "{}", answer.text);
    assert!(oauth_integrations(&server).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_event_is_routed_by_account_and_emailed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    crate::pipeline::populate(&fake);
    let sink = Sink::start();
    let server = serve(dir.path(), &fake, Some(&sink)).await;
    let ui = signed_in(&server).await;
    connect(&ui, None).await.assert_redirect("/integrations");
    let oauth = oauth_integrations(&server).remove(0);

    let body = fixture("invoice.paid.connect.json");
    // Signed with anything but the platform's Connect secret: refused.
    post_connect_event(&server, body.clone(), SECRET)
        .await
        .assert_refused(400, "signature_mismatch");
    post_connect_event(&server, body.clone(), CONNECT_SECRET)
        .await
        .assert_stored(false);
    post_connect_event(&server, body, CONNECT_SECRET)
        .await
        .assert_stored(true);
    assert_eq!(db::events::count(&server.db(), Some(&oauth.id)).unwrap(), 1);
    assert_eq!(server.stored_events(), 1);

    let mail = sink.wait_for(1, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&mail[0]);
    assert!(text.contains("Payment received"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_for_an_account_nobody_owns_is_acknowledged_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let before = mailmycustomer::manage::oauth::unrouted_events();

    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("invoice.paid.connect.json")).unwrap();
    event["account"] = "acct_1NobodyConnected01".into();
    let reply = post_connect_event(&server, event.to_string().into_bytes(), CONNECT_SECRET).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["stored"], false);
    assert_eq!(server.stored_events(), 0);
    assert!(mailmycustomer::manage::oauth::unrouted_events() > before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deauthorization_disconnects_at_once_and_the_dashboard_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;
    connect(&ui, None).await.assert_redirect("/integrations");
    let id = oauth_integrations(&server).remove(0).id;

    post_connect_event(
        &server,
        fixture("account.application.deauthorized.json"),
        CONNECT_SECRET,
    )
    .await
    .assert_stored(false);
    // At once: by the time Stripe has its 200, the token is forgotten.
    let i = integrations::get(&server.db(), &id).unwrap().unwrap();
    assert_eq!(i.status, Status::Disconnected);
    assert!(i.oauth_access_token.is_none() && i.oauth_refresh_token.is_none());
    assert!(i.disconnected.unwrap().reason.contains("revoked access"));

    let dashboard = ui.get("/").await;
    assert!(
        dashboard.text.contains("is disconnected from Stripe")
            && dashboard
                .text
                .contains("revoked access; emails for it stop"),
        "{}",
        dashboard.text
    );
    // Its later events are acknowledged and not stored (Stripe sends none after this).
    post_connect_event(
        &server,
        fixture("invoice.paid.connect.json"),
        CONNECT_SECRET,
    )
    .await
    .json["stored"]
        .as_bool()
        .filter(|stored| !stored)
        .expect("acknowledged, not stored");

    // The processor reaches the event too and leaves it disconnected.
    let deadline = Instant::now() + Duration::from_secs(10);
    while db::events::next_due_at(&server.db()).unwrap().is_some() {
        assert!(Instant::now() < deadline, "event not processed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let i = integrations::get(&server.db(), &id).unwrap().unwrap();
    assert_eq!(i.status, Status::Disconnected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_stripe_connect_there_is_no_button_and_the_routes_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let ui = signed_in(&server).await;

    let add = ui.get("/integrations/new").await;
    assert_eq!(add.status, 200);
    assert!(!add.text.contains("Connect with Stripe"), "{}", add.text);
    let policy = add.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("form-action 'self';"), "{policy}");
    let answer = ui.post("/integrations/connect", &[]).await;
    assert_eq!(answer.status, 404, "{}", answer.text);
    assert!(answer.text.contains("stripe.connect.client_id"));
    let answer = ui
        .get("/integrations/connect/callback?code=ac_1&state=x")
        .await;
    assert_eq!(answer.status, 404);

    let body = fixture("invoice.paid.connect.json");
    let reply = post_connect_event(&server, body, CONNECT_SECRET).await;
    reply.assert_refused(404, "connect_not_configured");
    assert!(reply.text.contains("stripe.connect"));
    assert_eq!(server.stored_events(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnect_revokes_the_platforms_access_on_stripe() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = serve(dir.path(), &fake, None).await;
    let ui = signed_in(&server).await;
    connect(&ui, None).await.assert_redirect("/integrations");
    let id = oauth_integrations(&server).remove(0).id;
    let remove_page = format!("/integrations/{id}/remove");

    ui.post(&format!("/integrations/{id}/disconnect"), &[])
        .await
        .assert_redirect(&remove_page);
    assert_eq!(fake.deauthorized(), [CONNECTED_ACCOUNT]);
    let request = fake
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/oauth/deauthorize")
        .unwrap();
    assert_eq!(request.key(), PLATFORM_KEY);
    assert_eq!(request.form("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        request.form("stripe_user_id").as_deref(),
        Some(CONNECTED_ACCOUNT)
    );
    let page = ui.get(&remove_page).await;
    assert!(
        page.text
            .contains("on Stripe the access to account acct_1PgafTB7WZ01zgkW was revoked"),
        "{}",
        page.text
    );
    let i = integrations::get(&server.db(), &id).unwrap().unwrap();
    assert_eq!(i.status, Status::Disconnected);
    assert!(i.oauth_access_token.is_none());

    // Connected again (the same integration comes back), then Stripe refuses the revocation:
    // disconnected all the same, and the page says what is left to do on Stripe.
    connect(&ui, None).await.assert_redirect("/integrations");
    assert!(integrations::get(&server.db(), &id)
        .unwrap()
        .unwrap()
        .is_listening());
    fake.fail_next("/oauth/deauthorize", 500, 1);
    ui.post(&format!("/integrations/{id}/disconnect"), &[])
        .await
        .assert_redirect(&remove_page);
    let page = ui.get(&remove_page).await;
    assert!(
        page.text.contains("is still granted") && page.text.contains("did not revoke"),
        "{}",
        page.text
    );
    assert_eq!(fake.deauthorized().len(), 1);
    let i = integrations::get(&server.db(), &id).unwrap().unwrap();
    assert_eq!(i.status, Status::Disconnected);
    server.stop().await;
}
