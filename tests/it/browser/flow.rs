//! A new merchant's first session, in one headless Chromium against the release binary: the
//! setup link from the server's log, the first account, sign in, an integration added and its
//! secret replaced (its webhook URL unchanged), SMTP settings pointing at a real smtp-sink, a test
//! email that arrives, a signed Stripe webhook that becomes an email and shows on the dashboard,
//! and sign out. Every page is saved at 1280 and 390 px on the way (`target/screenshots/`), and
//! checked for what a person would see as broken: console errors (a CSP violation is one) and a
//! page that scrolls sideways on a phone.

use std::time::{Duration, Instant};

use mailmycustomer::stripe::signature;

use super::{Browser, Served};
use crate::sink::Sink;
use crate::support::{fixture, now};

const EMAIL: &str = "owner@rosen.example";
const PASSWORD: &str = "correct horse battery staple";
const FIRST_SECRET: &str = "whsec_browser_first_0000000000";
const NEW_SECRET: &str = "whsec_browser_second_111111111";

/// What the pages looked like: problems found on the way, reported together at the end so one
/// broken page does not hide the next.
struct Tour<'a> {
    browser: &'a Browser,
    problems: Vec<String>,
}

impl Tour<'_> {
    /// Screenshots the page shown now as `name` and notes its problems.
    async fn look(&mut self, name: &str) {
        let problems = self.browser.screenshot(name).await;
        self.problems.extend(problems);
        for error in self.browser.console_errors().await {
            self.problems.push(format!("{name}: console: {error}"));
        }
    }

    /// As `look`, for a page answered with an error status on purpose (422 on a faulty form):
    /// the browser reports that status in the console, and only that is expected there.
    async fn look_refused(&mut self, name: &str, status: u16) {
        let problems = self.browser.screenshot(name).await;
        self.problems.extend(problems);
        let expected = format!("status of {status}");
        for error in self.browser.console_errors().await {
            if !error.contains(&expected) {
                self.problems.push(format!("{name}: console: {error}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_merchant_sets_up_connects_stripe_and_sees_the_email_go_out() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let server = Served::start(dir.path(), &[]);
    let browser = Browser::start(&server.url("")).await;
    let mut tour = Tour {
        browser: &browser,
        problems: Vec::new(),
    };

    // Signed out, every page leads to the sign-in page.
    browser.open("/").await;
    browser.wait_for_path("/login").await;
    browser.field("Email").await;
    tour.look("login").await;
    // Keyboard only: Tab reaches the skip link first, then the form in reading order.
    let mut reached = Vec::new();
    for _ in 0..8 {
        reached.push(browser.tab().await);
        if reached.last().is_some_and(|r| r == "Sign in") {
            break;
        }
    }
    assert_eq!(reached.first().map(String::as_str), Some("Skip to content"));
    let form: Vec<&String> = reached
        .iter()
        .filter(|r| r.starts_with("Email") || r.starts_with("Password") || *r == "Sign in")
        .collect();
    assert_eq!(
        form,
        ["Email", "Password", "Sign in"],
        "Tab went: {reached:?}"
    );
    tour.look("login-keyboard").await;

    // First run: the link the server logged creates the first account and signs it in.
    browser.open(&server.setup_path()).await;
    browser.wait_for_path("/setup").await;
    tour.look("setup").await;
    browser
        .fill_all(&[
            ("Email", EMAIL),
            ("Password", PASSWORD),
            ("Password again", "not the same password"),
        ])
        .await;
    browser.click_button("Create account and sign in").await;
    let error = browser.field_error("Password again").await;
    assert!(error.contains("differ"), "{error}");
    assert_eq!(
        browser.value("Email").await,
        EMAIL,
        "the faulty form keeps what was typed"
    );
    tour.look_refused("setup-error", 422).await;
    browser
        .fill_all(&[("Password", PASSWORD), ("Password again", PASSWORD)])
        .await;
    browser.click_button("Create account and sign in").await;
    browser.wait_for_path("/").await;
    assert!(browser.flash().await.contains(EMAIL));
    tour.look("dashboard-empty").await;

    // Sign out and back in with the new account.
    sign_out(&browser).await;
    browser
        .fill_all(&[("Email", EMAIL), ("Password", "wrong password")])
        .await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("Wrong email or password").await;
    tour.look_refused("login-error", 422).await;
    browser
        .fill_all(&[("Email", EMAIL), ("Password", PASSWORD)])
        .await;
    browser.click_button("Sign in").await;
    browser.wait_for_path("/").await;

    // Integrations: the empty state says what to do, and "Add one" does it.
    browser.click_link("Integrations").await;
    browser.wait_for_path("/integrations").await;
    tour.look("integrations-empty").await;
    browser.click_link("Add one").await;
    browser.wait_for_text("signing secret").await;
    tour.look("integration-new").await;
    browser
        .fill_all(&[
            ("Name", "Rosen Shop"),
            ("Webhook signing secret", "sk_test_not_a_signing_secret"),
            ("Send from", "billing@rosen.example"),
        ])
        .await;
    browser.click_button("Add integration").await;
    let error = browser.field_error("Webhook signing secret").await;
    assert!(error.contains("whsec_"), "{error}");
    assert_eq!(browser.value("Name").await, "Rosen Shop");
    tour.look_refused("integration-new-error", 422).await;
    browser.fill("Webhook signing secret", FIRST_SECRET).await;
    browser.click_button("Add integration").await;
    browser.wait_for_path("/integrations").await;
    let flash = browser.flash().await;
    assert!(flash.contains("Rosen Shop"), "{flash}");
    let webhook_url = webhook_url_shown(&browser).await;
    tour.look("integrations").await;

    // The card opens the integration; replacing its secret keeps it, hence its webhook URL.
    browser.click_link("Rosen Shop").await;
    browser.wait_for_text("Webhook URL").await;
    assert_eq!(webhook_url_shown(&browser).await, webhook_url);
    tour.look("integration-edit").await;
    browser.fill("Webhook signing secret", NEW_SECRET).await;
    browser.click_button("Save changes").await;
    let flash = browser.flash().await;
    assert!(!flash.contains("whsec_"), "a secret shown: {flash}");
    assert_eq!(webhook_url_shown(&browser).await, webhook_url);
    let page = browser.text().await;
    assert!(!page.contains(NEW_SECRET), "the secret is shown: {page}");
    tour.look("integration-saved").await;
    browser.click_link("Remove…").await;
    browser.wait_for_text("1. Disconnect").await;
    tour.look("integration-remove").await;
    browser.click_link("Cancel").await;
    browser.wait_for_text("Webhook URL").await;

    // Settings: SMTP towards the sink, then a test email that arrives.
    browser.click_link("Settings").await;
    browser.wait_for_path("/settings").await;
    tour.look("settings").await;
    browser
        .fill_all(&[
            ("Host", "127.0.0.1"),
            ("Port", &sink.port.to_string()),
            ("Security", "none"),
            ("From address", "billing@rosen.example"),
            ("From name", "Rosen Shop"),
        ])
        .await;
    browser.click_button("Save settings").await;
    browser
        .wait_for_text(&format!("127.0.0.1:{}", sink.port))
        .await;
    browser.flash().await;
    tour.look("settings-saved").await;
    browser.fill("Send to", EMAIL).await;
    browser.click_button("Send test email").await;
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    let test_email = String::from_utf8_lossy(&messages[0]).into_owned();
    assert!(test_email.contains("billing@rosen.example"), "{test_email}");
    assert!(test_email.contains(EMAIL), "{test_email}");
    let reply = browser.flash().await;
    assert!(reply.contains("250"), "the relay's reply is shown: {reply}");
    tour.look("settings-test-sent").await;

    // Stripe posts a signed invoice.paid to the URL the page showed: with the replaced secret
    // it is refused, with the new one stored, and its email goes out and shows on the dashboard.
    let event = fixture("invoice.paid.json");
    let http = reqwest::Client::new();
    let post = |secret: &str| {
        http.post(&webhook_url)
            .header("content-type", "application/json")
            .header("Stripe-Signature", signature::sign(&event, secret, now()))
            .body(event.clone())
            .send()
    };
    assert_eq!(post(FIRST_SECRET).await.unwrap().status(), 400);
    let stored = post(NEW_SECRET).await.unwrap();
    assert_eq!(stored.status(), 200, "{:?}", stored.text().await);
    let messages = sink.wait_for(2, Duration::from_secs(20)).await;
    assert!(messages
        .iter()
        .any(|m| String::from_utf8_lossy(m).contains("jenny.rosen@example.com")));
    browser.click_link("Dashboard").await;
    browser.wait_for_path("/").await;
    wait_until_shown(&browser, "jenny.rosen@example.com").await;
    tour.look("dashboard").await;

    sign_out(&browser).await;
    browser.open("/integrations").await;
    browser.wait_for_path("/login").await;

    let Tour { problems, .. } = tour;
    browser.close().await;
    eprintln!(
        "browser flow: {:.1} s from start to sign out, screenshots in {}",
        started.elapsed().as_secs_f64(),
        super::screenshots_dir().display()
    );
    assert!(
        problems.is_empty(),
        "pages a person would see as broken:\n{}",
        problems.join("\n")
    );
}

/// Signs out from the page and checks the sign-in page says so.
async fn sign_out(browser: &Browser) {
    browser.click_button("Sign out").await;
    browser.wait_for_path("/login").await;
    let flash = browser.flash().await;
    assert!(flash.contains("Signed out"), "{flash}");
}

/// The webhook URL the page shows, as text or in a field to copy from (one, maybe shown twice).
async fn webhook_url_shown(browser: &Browser) -> String {
    browser.wait_for_text("/webhooks/stripe/").await;
    let shown = browser
        .client
        .execute(
            "return [document.body.innerText]
                .concat(Array.from(document.querySelectorAll('input'), i => i.value))",
            vec![],
        )
        .await
        .unwrap();
    let mut urls: Vec<String> = shown
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .flat_map(str::split_whitespace)
        .filter(|w| w.starts_with("http") && w.contains("/webhooks/stripe/"))
        .map(str::to_owned)
        .collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 1, "one webhook URL on the page: {urls:?}");
    urls.remove(0)
}

/// Reloads the page until it shows `expected` (the dashboard is not live).
async fn wait_until_shown(browser: &Browser, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if browser.text().await.contains(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {expected:?}:\n{}",
            browser.text().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.client.refresh().await.unwrap();
    }
}
