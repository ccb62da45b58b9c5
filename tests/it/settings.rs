//! Issue 10, settings: values saved on the settings page sit between the config file and the
//! environment, say where they came from, and reach the sender without a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mailmycustomer::config::{Overrides, Source};
use mailmycustomer::db::deliveries::{self, Status};
use mailmycustomer::db::{self, integrations};
use mailmycustomer::pipeline::WAITING_FOR_SMTP;
use mailmycustomer::{Config, Error};

use crate::fake_stripe::FakeStripe;
use crate::pipeline::populate;
use crate::sink::{free_port, Sink};
use crate::support::{distinct_invoice_paid, signed_in, test_config, TestServer, UiClient, SECRET};

fn saved(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every combination of the four layers that can set `server.public_url`: the strongest one
/// present wins, and the config says which it was.
#[test]
fn precedence_defaults_file_page_env_flag() {
    let dir = tempfile::tempdir().unwrap();
    for mask in 0..16 {
        let (file, page, env, flag) = (mask & 1 != 0, mask & 2 != 0, mask & 4 != 0, mask & 8 != 0);
        let path = dir.path().join(format!("config{mask}.toml"));
        let text = match file {
            true => "[server]\npublic_url = \"https://file.example\"\n",
            false => "[log]\nlevel = \"info\"\n",
        };
        std::fs::write(&path, text).unwrap();
        let env_vars = match env {
            true => vars(&[("MMC_SERVER__PUBLIC_URL", "https://env.example")]),
            false => vars(&[]),
        };
        let flags = Overrides {
            public_url: flag.then(|| "https://flag.example".to_owned()),
            ..Overrides::default()
        };
        let page_values = match page {
            true => saved(&[("server.public_url", "https://page.example")]),
            false => saved(&[]),
        };
        let config = Config::load(Some(&path), env_vars, &flags)
            .unwrap()
            .with_saved(&page_values)
            .unwrap();
        let want = if flag {
            ("https://flag.example", Source::Flag("--public-url"))
        } else if env {
            (
                "https://env.example",
                Source::Env("MMC_SERVER__PUBLIC_URL".into()),
            )
        } else if page {
            ("https://page.example", Source::Page)
        } else if file {
            ("https://file.example", Source::File)
        } else {
            ("", Source::Default)
        };
        assert_eq!(
            (
                config.server.public_url.as_str(),
                config.source("server.public_url")
            ),
            want,
            "file={file} page={page} env={env} flag={flag}"
        );
    }
}

/// Saving again replaces what was saved: a key no longer saved returns to the file's value (or
/// the default) and says so; the environment's keys never take the page's value.
#[test]
fn saved_values_are_replaced_and_removed_and_never_beat_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[smtp]\nhost = \"file.example\"\nfrom_address = \"billing@file.example\"\nport = 2525\n",
    )
    .unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let env = vars(&[
        ("MMC_SMTP__USERNAME", "env-user"),
        ("MMC_SMTP__PASSWORD_FILE", secret.to_str().unwrap()),
    ]);
    let loaded = Config::load(Some(&path), env, &Overrides::default()).unwrap();
    assert_eq!(loaded.source("smtp.host"), Source::File);
    assert_eq!(loaded.source("smtp.port"), Source::File);
    assert_eq!(loaded.source("smtp.pool_size"), Source::Default);
    assert_eq!(
        loaded.source("smtp.password").read_only_reason().as_deref(),
        Some("set by MMC_SMTP__PASSWORD_FILE")
    );
    assert_eq!(loaded.smtp.password.expose(), "from-a-file");

    let first = loaded
        .with_saved(&saved(&[
            ("smtp.host", "page.example"),
            ("smtp.pool_size", "2"),
            ("smtp.username", "page-user"),
            ("smtp.password", "from-the-page"),
        ]))
        .unwrap();
    assert_eq!(first.smtp.host, "page.example");
    assert_eq!(first.source("smtp.host"), Source::Page);
    assert_eq!(first.smtp.pool_size, 2);
    assert_eq!(first.smtp.port, 2525, "not saved: the file's");
    assert_eq!(first.smtp.username, "env-user", "the environment wins");
    assert_eq!(first.smtp.password.expose(), "from-a-file");
    assert_eq!(
        first.below_page("smtp.host").as_deref(),
        Some("file.example")
    );

    let second = first
        .with_saved(&saved(&[("smtp.port", "465"), ("smtp.security", "tls")]))
        .unwrap();
    assert_eq!(second.smtp.host, "file.example", "back to the file's");
    assert_eq!(second.source("smtp.host"), Source::File);
    assert_eq!(second.smtp.pool_size, 4, "back to the default");
    assert_eq!(second.source("smtp.pool_size"), Source::Default);
    assert_eq!(second.smtp.port, 465);
    assert_eq!(second.smtp.security.name(), "tls");

    let nothing = second.with_saved(&BTreeMap::new()).unwrap();
    assert_eq!(nothing, loaded);
    assert_eq!(nothing.source("smtp.port"), Source::File);
}

/// A saved value is checked as the config file's would be, and the error names the key.
#[test]
fn invalid_saved_values_are_refused_naming_the_key() {
    let base = Config::default();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("smtp.port", "70000")], "smtp.port"),
        (&[("smtp.port", "abc")], "smtp.port"),
        (&[("smtp.security", "ssl")], "smtp.security"),
        (&[("smtp.pool_size", "-1")], "smtp.pool_size"),
        (&[("smtp.host", "relay.example")], "smtp.from_address"),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "nobody"),
            ],
            "smtp.from_address",
        ),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "a@b.example"),
                ("smtp.pool_size", "0"),
            ],
            "smtp.pool_size",
        ),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "a@b.example"),
                ("smtp.username", "someone"),
            ],
            "smtp.password",
        ),
        (
            &[("server.public_url", "ftp://x.example")],
            "server.public_url",
        ),
    ];
    for (values, field) in cases {
        match base.with_saved(&saved(values)) {
            Err(Error::Invalid {
                field: named,
                message,
            }) => {
                assert_eq!(&named, field, "{values:?}: {message}");
                assert!(message.contains(field), "{values:?}: {message}");
            }
            other => panic!("{values:?}: {other:?}"),
        }
    }
    // Only the page's keys can be saved; anything else in the table is not taken.
    let err = base
        .with_saved(&saved(&[("server.listen", "0.0.0.0:1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.listen"), "{err}");
}

/// Posts `form` as the signed-in merchant, expects 303 back to the settings page, and returns
/// that page as the redirect shows it (with its flash message).
async fn post_and_follow(ui: &UiClient, path: &str, form: &[(&str, &str)]) -> String {
    ui.post(path, form).await.assert_redirect("/settings");
    let page = ui.get("/settings").await;
    assert_eq!(page.status, 200);
    page.text
}

/// A form field as the page shows it, parsed from its HTML.
#[derive(Debug)]
struct FieldShown {
    value: String,
    readonly: bool,
    invalid: bool,
}

/// The `<input>` (or `<select>`) named `name` on `html`.
fn field(html: &str, name: &str) -> FieldShown {
    let doc = scraper::Html::parse_document(html);
    let selector =
        scraper::Selector::parse(&format!("input[name=\"{name}\"], select[name=\"{name}\"]"))
            .unwrap();
    let element = doc
        .select(&selector)
        .next()
        .unwrap_or_else(|| panic!("no field {name} in {html}"));
    let value = match element.value().name() {
        "select" => {
            let selected = scraper::Selector::parse("option[selected]").unwrap();
            element
                .select(&selected)
                .next()
                .and_then(|o| o.value().attr("value"))
                .unwrap_or_default()
                .to_owned()
        }
        _ => element.value().attr("value").unwrap_or_default().to_owned(),
    };
    FieldShown {
        value,
        readonly: element.value().attr("readonly").is_some()
            || element.value().attr("disabled").is_some(),
        invalid: element.value().attr("aria-invalid") == Some("true"),
    }
}

/// The flash message on a page, if any, as text.
fn flash(html: &str) -> Option<String> {
    let doc = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(".flash").unwrap();
    doc.select(&selector)
        .next()
        .map(|f| f.text().collect::<String>())
}

fn saved_settings(server: &TestServer) -> BTreeMap<String, String> {
    db::settings::load(&server.db()).unwrap()
}

/// A server on a fresh database, without SMTP, whose integration looks up what webhooks lack
/// in the fake Stripe.
async fn start_without_smtp(dir: &Path, fake: &FakeStripe) -> TestServer {
    let mut config = test_config(dir);
    config.stripe.api_base = fake.base_url.clone();
    let mut conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let integration = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Rosen Goods",
            webhook_secret: SECRET,
            api_key: Some("rk_test_51RosenGoods000000"),
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap();
    TestServer::start_with(config, integration.id).await
}

/// Polls the delivery log until `done` holds for it.
async fn wait_for_deliveries(
    server: &TestServer,
    what: &str,
    done: impl Fn(&[deliveries::Delivery]) -> bool,
) -> Vec<deliveries::Delivery> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = deliveries::search(
            &server.db(),
            &deliveries::LogFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap();
        if done(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {all:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn status_of(all: &[deliveries::Delivery], id: i64) -> Option<Status> {
    all.iter().find(|d| d.id == id).map(|d| d.status)
}

/// Issue 10 item 2: SMTP saved on the page of a server started without it sends what waited,
/// without a restart; a port changed to a dead one makes the next email wait for a retry, and
/// putting it back sends that one at once (not after its backoff).
#[tokio::test(flavor = "multi_thread")]
async fn smtp_saved_on_the_page_sends_without_a_restart_and_follows_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let server = start_without_smtp(dir.path(), &fake).await;
    let ui = signed_in(&server).await;

    server
        .deliver(distinct_invoice_paid("settings", 1))
        .await
        .assert_stored(false);
    let waiting = wait_for_deliveries(&server, "a waiting delivery", |all| {
        all.len() == 1 && all[0].last_error.as_deref() == Some(WAITING_FOR_SMTP)
    })
    .await;
    let first = waiting[0].id;
    let page = ui.get("/settings").await;
    assert!(page.text.contains("No relay yet"), "{}", page.text);

    let sink = Sink::start();
    let port = sink.port.to_string();
    let relay = |port: &str| {
        vec![
            ("smtp.host", "127.0.0.1".to_owned()),
            ("smtp.port", port.to_owned()),
            ("smtp.security", "none".to_owned()),
            ("smtp.from_address", "billing@rosen.example".to_owned()),
            ("smtp.pool_size", "2".to_owned()),
        ]
    };
    let posted = relay(&port);
    let pairs: Vec<(&str, &str)> = posted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = post_and_follow(&ui, "/settings", &pairs).await;
    let message = flash(&page).expect("a flash after saving");
    assert!(message.contains("smtp.host"), "{message}");
    assert!(
        page.contains("Emails go out through <code>127.0.0.1:"),
        "{page}"
    );
    assert_eq!(field(&page, "smtp.host").value, "127.0.0.1");
    sink.wait_for(1, Duration::from_secs(20)).await;
    let sent = wait_for_deliveries(&server, "the waiting one sent", |all| {
        status_of(all, first) == Some(Status::Sent)
    })
    .await;
    assert_eq!(sent[0].last_error, None, "the waiting note is gone");
    let saved = saved_settings(&server);
    assert_eq!(
        saved.get("smtp.host").map(String::as_str),
        Some("127.0.0.1")
    );
    assert!(
        !saved.contains_key("smtp.username"),
        "defaults are not stored: {saved:?}"
    );

    // A dead port: the next email fails to connect and waits for a retry (a minute away).
    let dead = free_port().to_string();
    let posted = relay(&dead);
    let pairs: Vec<(&str, &str)> = posted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post_and_follow(&ui, "/settings", &pairs).await;
    server
        .deliver(distinct_invoice_paid("settings", 2))
        .await
        .assert_stored(false);
    let retrying = wait_for_deliveries(&server, "the second one retrying", |all| {
        all.len() == 2 && all.iter().any(|d| d.status == Status::Retrying)
    })
    .await;
    let second = retrying
        .iter()
        .find(|d| d.status == Status::Retrying)
        .unwrap();
    assert!(
        second.last_error.as_deref().unwrap_or("").contains(&dead),
        "{second:?}"
    );
    let second = second.id;

    // Back to the live port: the waiting retry goes now, well before its backoff ends.
    let posted = relay(&port);
    let pairs: Vec<(&str, &str)> = posted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let back = Instant::now();
    post_and_follow(&ui, "/settings", &pairs).await;
    sink.wait_for(2, Duration::from_secs(20)).await;
    wait_for_deliveries(&server, "the second one sent", |all| {
        status_of(all, second) == Some(Status::Sent)
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(30),
        "{:?}",
        back.elapsed()
    );

    // Send test email: the relay's answer on the page.
    let page = post_and_follow(
        &ui,
        "/settings/test-email",
        &[("to", "merchant@rosen.example")],
    )
    .await;
    let message = flash(&page).expect("a flash after the test");
    assert!(message.contains("accepted the test email"), "{message}");
    sink.wait_for(3, Duration::from_secs(20)).await;

    // Unconfigured again: nothing is sent, and what comes in waits, saying why.
    let posted = [("smtp.host", "")];
    post_and_follow(&ui, "/settings", &posted).await;
    server
        .deliver(distinct_invoice_paid("settings", 3))
        .await
        .assert_stored(false);
    wait_for_deliveries(&server, "the third one waiting", |all| {
        all.len() == 3
            && all
                .iter()
                .any(|d| d.last_error.as_deref() == Some(WAITING_FOR_SMTP))
    })
    .await;
    assert_eq!(sink.messages().len(), 3);
    server.stop().await;
}

/// The test email names the likely fix when the relay cannot be reached, and an address that
/// is not one is refused next to its field, as typed.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_test_email_names_the_fix_and_a_bad_address_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start_without_smtp(dir.path(), &fake).await;
    let ui = signed_in(&server).await;

    let refused = ui
        .post("/settings/test-email", &[("to", "me@rosen.example")])
        .await;
    assert_eq!(refused.status, 422, "no relay yet");
    assert!(
        refused.text.contains("smtp.host is not set"),
        "{}",
        refused.text
    );

    let dead = free_port().to_string();
    post_and_follow(
        &ui,
        "/settings",
        &[
            ("smtp.host", "127.0.0.1"),
            ("smtp.port", &dead),
            ("smtp.security", "none"),
            ("smtp.from_address", "billing@rosen.example"),
        ],
    )
    .await;
    let page = post_and_follow(&ui, "/settings/test-email", &[("to", "me@rosen.example")]).await;
    let message = flash(&page).expect("a flash after the test");
    assert!(
        message.contains("failed") && message.contains("Likely fix: nothing listens on"),
        "{message}"
    );

    let bad = ui
        .post("/settings/test-email", &[("to", "not an <address>")])
        .await;
    assert_eq!(bad.status, 422);
    let to = field(&bad.text, "to");
    assert!(to.invalid, "{to:?}");
    assert_eq!(to.value, "not an <address>", "typed kept");
    server.stop().await;
}

/// The password is write-only: stored, said to be set, never shown, not even on a failed save;
/// an empty field keeps it and the box clears it.
#[tokio::test]
async fn the_password_never_appears_in_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start_without_smtp(dir.path(), &fake).await;
    let ui = signed_in(&server).await;
    const PASSWORD: &str = "hunter2-Zq9-settings";

    let page = post_and_follow(
        &ui,
        "/settings",
        &[("smtp.username", "rosen"), ("smtp.password", PASSWORD)],
    )
    .await;
    assert!(!page.contains(PASSWORD), "{page}");
    assert!(page.contains("Set. Leave empty to keep it."), "{page}");
    assert_eq!(field(&page, "smtp.password").value, "");
    assert_eq!(
        saved_settings(&server)
            .get("smtp.password")
            .map(String::as_str),
        Some(PASSWORD),
        "read back unsealed"
    );

    let failed = ui
        .post(
            "/settings",
            &[
                ("smtp.port", "70000"),
                ("smtp.password", "another-Secret-77"),
            ],
        )
        .await;
    assert_eq!(failed.status, 422);
    assert!(!failed.text.contains("another-Secret-77") && !failed.text.contains(PASSWORD));

    // Left empty: kept.
    post_and_follow(
        &ui,
        "/settings",
        &[("smtp.username", "rosen"), ("smtp.password", "")],
    )
    .await;
    assert_eq!(
        saved_settings(&server)
            .get("smtp.password")
            .map(String::as_str),
        Some(PASSWORD)
    );

    // Cleared, with the username that goes with it.
    let page = post_and_follow(
        &ui,
        "/settings",
        &[
            ("smtp.username", ""),
            ("smtp.password", ""),
            ("clear_password", "1"),
        ],
    )
    .await;
    assert!(page.contains("Not set. Leave empty to keep it."), "{page}");
    assert_eq!(saved_settings(&server), BTreeMap::new());
    server.stop().await;
}

/// A value the environment or a flag sets is shown read-only with the reason, and a POST
/// cannot change it.
#[tokio::test]
async fn environment_and_flag_values_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = Config::load(
        None,
        vars(&[
            ("MMC_SMTP__HOST", "relay.env.example"),
            ("MMC_SMTP__FROM_ADDRESS", "billing@env.example"),
        ]),
        &Overrides {
            public_url: Some("https://flag.example".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let mut config = test_config(dir.path());
    config.smtp = loaded.smtp.clone();
    config.server.public_url = loaded.server.public_url.clone();
    config.origin = loaded.origin.clone();
    let id = crate::support::add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    let ui = signed_in(&server).await;

    let page = ui.get("/settings").await.text;
    let host = field(&page, "smtp.host");
    assert!(
        host.readonly && host.value == "relay.env.example",
        "{host:?}"
    );
    assert!(page.contains("Read-only: set by MMC_SMTP__HOST"), "{page}");
    assert!(field(&page, "server.public_url").readonly);
    assert!(page.contains("Read-only: set by --public-url"), "{page}");
    assert!(!field(&page, "smtp.port").readonly);

    let refused = ui
        .post(
            "/settings",
            &[("smtp.host", "relay.page.example"), ("smtp.port", "2525")],
        )
        .await;
    assert_eq!(refused.status, 422);
    let host = field(&refused.text, "smtp.host");
    assert!(host.invalid, "{host:?}");
    assert!(refused.text.contains("MMC_SMTP__HOST"), "{}", refused.text);
    assert_eq!(saved_settings(&server), BTreeMap::new(), "nothing saved");

    // The read-only values sent back as shown are fine; the rest is saved.
    let page = post_and_follow(
        &ui,
        "/settings",
        &[
            ("smtp.host", "relay.env.example"),
            ("server.public_url", "https://flag.example"),
            ("smtp.port", "2525"),
        ],
    )
    .await;
    assert_eq!(field(&page, "smtp.port").value, "2525");
    assert_eq!(saved_settings(&server), saved(&[("smtp.port", "2525")]));
    server.stop().await;
}

/// A bad value is refused with 422, next to its field, as typed, and nothing is saved.
#[tokio::test]
async fn an_invalid_port_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start_without_smtp(dir.path(), &fake).await;
    let ui = signed_in(&server).await;

    let refused = ui
        .post(
            "/settings",
            &[
                ("smtp.host", "relay.example"),
                ("smtp.port", "70000"),
                ("smtp.from_address", "billing@rosen.example"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422);
    let port = field(&refused.text, "smtp.port");
    assert!(port.invalid && port.value == "70000", "{port:?}");
    assert!(
        refused
            .text
            .contains("smtp.port = &quot;70000&quot; is not a port number"),
        "{}",
        refused.text
    );
    assert_eq!(
        field(&refused.text, "smtp.host").value,
        "relay.example",
        "typed kept"
    );
    assert_eq!(saved_settings(&server), BTreeMap::new());

    // A host without a from address is refused as the config file would be.
    let refused = ui
        .post("/settings", &[("smtp.host", "relay.example")])
        .await;
    assert_eq!(refused.status, 422);
    assert!(field(&refused.text, "smtp.from_address").invalid);
    assert_eq!(saved_settings(&server), BTreeMap::new());
    server.stop().await;
}

/// Every settings route needs sign-in, and every POST its session's CSRF token: without them
/// nothing is saved or sent.
#[tokio::test]
async fn the_settings_routes_need_sign_in_and_the_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start_without_smtp(dir.path(), &fake).await;
    let change = [("smtp.port", "2525")];

    let stranger = UiClient::new(&server);
    stranger
        .get("/settings")
        .await
        .assert_redirect("/login?next=%2Fsettings");
    for path in ["/settings", "/settings/test-email"] {
        stranger
            .post_without_csrf(path, &[("smtp.port", "2525"), ("to", "x@rosen.example")])
            .await
            .assert_redirect("/login");
    }

    let ui = signed_in(&server).await;
    for csrf in [None, Some("wrong-token")] {
        let mut fields = change.to_vec();
        fields.push(("to", "x@rosen.example"));
        if let Some(token) = csrf {
            fields.push(("csrf", token));
        }
        for path in ["/settings", "/settings/test-email"] {
            let refused = ui.post_without_csrf(path, &fields).await;
            assert_eq!(refused.status, 403, "{path} {csrf:?}: {}", refused.text);
        }
    }
    assert_eq!(saved_settings(&server), BTreeMap::new(), "nothing saved");
    post_and_follow(&ui, "/settings", &change).await;
    assert_eq!(saved_settings(&server), saved(&change));
    server.stop().await;
}

/// A value that would break sending is refused when it is saved, not when the next email goes:
/// here turning SMTP on with a DKIM key (from the config file) that cannot be read.
#[tokio::test]
async fn settings_that_cannot_send_are_refused_at_save() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.smtp.dkim_key_path = dir.path().join("missing.pem").display().to_string();
    config.smtp.dkim_selector = "mmc".into();
    config.smtp.dkim_domain = "rosen.example".into();
    let id = crate::support::add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    let ui = signed_in(&server).await;

    let refused = ui
        .post(
            "/settings",
            &[
                ("smtp.host", "127.0.0.1"),
                ("smtp.from_address", "billing@rosen.example"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(field(&refused.text, "smtp.host").invalid);
    assert!(
        refused.text.contains("DKIM key") && refused.text.contains("nothing was saved"),
        "{}",
        refused.text
    );
    assert_eq!(saved_settings(&server), BTreeMap::new());
    let page = ui.get("/settings").await.text;
    assert!(page.contains("No relay yet"), "still unconfigured: {page}");
    server.stop().await;
}

/// `config dump` and `config check` read what the settings page saved (without changing the
/// database) and say which layer each value came from; a saved value the config no longer
/// accepts fails `config check`, naming the key and the page.
#[tokio::test]
async fn config_dump_and_check_include_what_the_page_saved() {
    use crate::cli::{mmc, run};
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let database = config.database.path.clone();
    let id = crate::support::add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    let ui = signed_in(&server).await;
    post_and_follow(&ui, "/settings", &[("smtp.port", "2526")]).await;
    server.stop().await;

    let db_flag = database.to_str().unwrap();
    let (ok, dump, err) = run(mmc(dir.path(), &["--database", db_flag, "config", "dump"]));
    assert!(ok, "{err}");
    assert!(dump.contains("port = 2526"), "{dump}");
    assert!(
        dump.contains("# From the settings page: smtp.port"),
        "{dump}"
    );
    assert!(dump.contains("--database"), "the flag is named: {dump}");
    let (ok, out, err) = run(mmc(dir.path(), &["--database", db_flag, "config", "check"]));
    assert!(ok, "{out}{err}");

    // A value saved by an older version that this one refuses.
    let conn = db::open(&db::Options::at(&database).unwrap()).unwrap();
    db::settings::replace(&conn, &saved(&[("smtp.port", "seventy")]), 0).unwrap();
    drop(conn);
    let (ok, out, err) = run(mmc(dir.path(), &["--database", db_flag, "config", "check"]));
    assert!(!ok, "{out}");
    assert!(
        err.contains("smtp.port") && err.contains("settings page"),
        "{err}"
    );

    // No database yet (a fresh install): the file and defaults alone.
    let (ok, out, err) = run(mmc(
        dir.path(),
        &["--database", "not-there.db", "config", "check"],
    ));
    assert!(ok, "{out}{err}");
    assert!(
        !dir.path().join("not-there.db").exists(),
        "check created it"
    );
}
